// SPDX-License-Identifier: GPL-2.0

//! Block devices a target holds through `dm_get_device()`.

use super::bindings;
use super::target::TargetRef;
use core::ptr::NonNull;

/// A device number, `major:minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevT(pub u32);

impl DevT {
    /// The major number.
    pub fn major(self) -> u32 {
        self.0 >> 20
    }

    /// The minor number.
    pub fn minor(self) -> u32 {
        self.0 & ((1 << 20) - 1)
    }
}

impl core::fmt::Display for DevT {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.major(), self.minor())
    }
}

/// A device opened for a target with `dm_get_device()`, put back with
/// `dm_put_device()` when dropped.
///
/// Sound however long it is kept: it holds a counted handle to its target
/// ([`TargetRef`]), and the target's destructor (or failed constructor)
/// does not return while one exists, so the target and the `dm_dev` (which
/// dm core puts only after the destructor) are valid for the `Dev`'s whole
/// life. A leaked `Dev` makes the destructor wait for ever instead.
///
/// Invariants: `dev` came from `dm_get_device(target.ti(), ..)` and has not
/// been put.
pub struct Dev {
    dev: NonNull<bindings::dm_dev>,
    target: TargetRef,
}

// SAFETY: a `dm_dev` is a refcounted, immutable handle once got; dm core
// serialises `dm_get_device`/`dm_put_device` on a table internally, and the
// target outlives the `Dev` (see the type's doc).
unsafe impl Send for Dev {}
// SAFETY: all methods taking `&self` only read fields that never change
// after `dm_get_device()` returned.
unsafe impl Sync for Dev {}

impl Dev {
    /// # Safety
    ///
    /// `dev` must have been returned by `dm_get_device(target.ti(), ..)`
    /// and not be put by anything else.
    pub(super) unsafe fn from_raw(target: TargetRef, dev: NonNull<bindings::dm_dev>) -> Self {
        Self { dev, target }
    }

    fn bdev(&self) -> *mut bindings::block_device {
        // SAFETY: `dev` is a live `dm_dev` (type invariant); `bdev` is set by
        // `dm_get_device` and never changes.
        unsafe { (*self.dev.as_ptr()).bdev }
    }

    /// The raw block device, for the bio layer.
    pub(crate) fn raw_bdev(&self) -> *mut bindings::block_device {
        self.bdev()
    }

    /// The raw `dm_dev`, for dm core callouts.
    pub(crate) fn raw_dm_dev(&self) -> *mut bindings::dm_dev {
        self.dev.as_ptr()
    }

    /// The name dm core gave the device: `major:minor`.
    pub fn name(&self) -> &str {
        // SAFETY: `name` is a NUL-terminated string set by `dm_get_device`
        // and never changed while the device is held.
        let name = unsafe { &(*self.dev.as_ptr()).name };
        let bytes: &[u8] = {
            // SAFETY: `c_char` and `u8` have the same size and alignment.
            unsafe { core::slice::from_raw_parts(name.as_ptr().cast(), name.len()) }
        };
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        core::str::from_utf8(&bytes[..len]).unwrap_or("?")
    }

    /// The device number.
    pub fn devt(&self) -> DevT {
        // SAFETY: `bdev()` is a live block device while the `dm_dev` is held.
        DevT(unsafe { bindings::fracture_bdev_dev(self.bdev()) })
    }

    /// Size of the device in 512-byte sectors.
    pub fn nr_sectors(&self) -> u64 {
        // SAFETY: `bdev()` is a live block device while the `dm_dev` is held.
        unsafe { bindings::fracture_bdev_nr_sectors(self.bdev()) }
    }

    /// Flushes the device's volatile write cache: every write completed
    /// before the call is durable when this returns `Ok`. Sleeps.
    pub fn flush(&self) -> kernel::error::Result {
        // SAFETY: `bdev()` is a live block device while the `dm_dev` is held;
        // process context is the caller's (sleeping) contract.
        kernel::error::to_result(unsafe { bindings::blkdev_issue_flush(self.bdev()) })
    }

    /// Whether the device accepts discards.
    pub fn supports_discard(&self) -> bool {
        // SAFETY: `bdev()` is a live block device while the `dm_dev` is held.
        unsafe { bindings::fracture_bdev_max_discard_sectors(self.bdev()) != 0 }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: by the type invariants `dev` was got for the target, which
        // is alive while `self.target` is (dropped after this), and is put
        // exactly once, here.
        unsafe { bindings::dm_put_device(self.target.ti().as_ptr(), self.dev.as_ptr()) };
    }
}
