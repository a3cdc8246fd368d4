// SPDX-License-Identifier: GPL-2.0

//! Block devices a target holds through `dm_get_device()`.

use super::bindings;
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
/// Invariants: `dev` came from `dm_get_device(ti, ..)` and has not been put;
/// `ti` is the target it was got for. A `Dev` is only created by
/// [`super::target::TargetCtx::get_device`] and is dropped before the
/// target's destructor returns (it lives in the target's private data, or in
/// the constructor's locals), so `ti` is valid for its whole life.
pub struct Dev {
    ti: NonNull<bindings::dm_target>,
    dev: NonNull<bindings::dm_dev>,
}

// SAFETY: a `dm_dev` is a refcounted, immutable handle once got; dm core
// serialises `dm_get_device`/`dm_put_device` on a table internally, and the
// target (hence `ti`) outlives the `Dev`.
unsafe impl Send for Dev {}
// SAFETY: all methods taking `&self` only read fields that never change
// after `dm_get_device()` returned.
unsafe impl Sync for Dev {}

impl Dev {
    /// # Safety
    ///
    /// `dev` must have been returned by `dm_get_device(ti, ..)`, and the
    /// `Dev` must be dropped before `ti`'s destructor returns.
    pub(crate) unsafe fn from_raw(
        ti: NonNull<bindings::dm_target>,
        dev: NonNull<bindings::dm_dev>,
    ) -> Self {
        Self { ti, dev }
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
        // SAFETY: by the type invariants `dev` was got for `ti`, which is
        // still alive, and is put exactly once, here.
        unsafe { bindings::dm_put_device(self.ti.as_ptr(), self.dev.as_ptr()) };
    }
}
