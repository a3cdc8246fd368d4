// SPDX-License-Identifier: GPL-2.0

//! Synchronous block I/O for metadata, through dm-io, and the buffers it
//! reads into and writes from.

use super::bindings;
use super::device::Dev;
use core::ptr::NonNull;
use kernel::prelude::*;

/// Size of a [`Block`].
pub const BLOCK_BYTES: usize = 4096;

/// A buffer from kmalloc (so dm-io may use it as `DM_IO_KMEM`), 4 KiB
/// unless made with [`Block::with_len`].
///
/// Invariant: the length is a non-zero multiple of 512 bytes.
pub struct Block(KVec<u8>);

/// The largest [`Block::with_len`].
pub const MAX_BUFFER_BYTES: usize = 128 * 1024;

impl Block {
    /// A zeroed 4 KiB block. May sleep.
    pub fn new() -> Result<Self> {
        Self::with_len(BLOCK_BYTES)
    }

    /// A zeroed buffer of `len` bytes: a non-zero multiple of 512, at most
    /// [`MAX_BUFFER_BYTES`] (else `EINVAL`). May sleep.
    pub fn with_len(len: usize) -> Result<Self> {
        if len == 0 || len % 512 != 0 || len > MAX_BUFFER_BYTES {
            return Err(EINVAL);
        }
        Ok(Self(KVec::from_elem(0u8, len, GFP_KERNEL)?))
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, for changing.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// A dm-io client: private mempools for synchronous metadata I/O.
///
/// Invariant: `client` came from `dm_io_client_create` and is destroyed
/// only on drop.
pub struct IoClient {
    client: NonNull<bindings::dm_io_client>,
}

// SAFETY: dm-io clients are used concurrently by design (mempools).
unsafe impl Send for IoClient {}
// SAFETY: as above.
unsafe impl Sync for IoClient {}

impl IoClient {
    /// Creates a client. May sleep.
    pub fn new() -> Result<Self> {
        // SAFETY: plain constructor.
        let c = unsafe { bindings::fracture_dm_io_client_create() };
        NonNull::new(c).map(|client| Self { client }).ok_or(ENOMEM)
    }

    fn io(
        &self,
        dev: &Dev,
        sector: u64,
        buf: *mut u8,
        len: usize,
        write: bool,
        fua: bool,
    ) -> Result {
        // SAFETY: `buf` is a kmalloc'ed buffer of `len` bytes (a multiple of
        // 512, at most `MAX_BUFFER_BYTES`) that the caller borrows for the
        // whole (synchronous) call; the device is held open by `dev`; the
        // client is alive.
        let r = unsafe {
            bindings::fracture_dm_io_sync(
                self.client.as_ptr(),
                dev.raw_bdev(),
                sector,
                (len / 512) as u32,
                buf.cast(),
                write,
                fua,
            )
        };
        kernel::error::to_result(r)
    }

    /// Reads `block.bytes().len()` bytes at `sector` of `dev`. Sleeps.
    pub fn read(&self, dev: &Dev, sector: u64, block: &mut Block) -> Result {
        let len = block.0.len();
        self.io(dev, sector, block.0.as_mut_ptr(), len, false, false)
    }

    /// Reads `len` bytes at `sector` of `dev` into the start of `block`:
    /// `len` a non-zero multiple of 512, at most the block's length (else
    /// `EINVAL`). Sleeps.
    pub fn read_part(&self, dev: &Dev, sector: u64, block: &mut Block, len: usize) -> Result {
        if len == 0 || len % 512 != 0 || len > block.0.len() {
            return Err(EINVAL);
        }
        self.io(dev, sector, block.0.as_mut_ptr(), len, false, false)
    }

    /// Writes the whole of `block` at `sector` of `dev`, durably before returning when
    /// `fua`. Sleeps.
    pub fn write(&self, dev: &Dev, sector: u64, block: &Block, fua: bool) -> Result {
        // dm-io does not write to the buffer of a write; the cast only
        // satisfies the shared read/write signature.
        self.io(
            dev,
            sector,
            block.0.as_ptr().cast_mut(),
            block.0.len(),
            true,
            fua,
        )
    }
}

impl Drop for IoClient {
    fn drop(&mut self) {
        // SAFETY: created in `new`; no I/O is in flight (all I/O through a
        // client is synchronous and borrows it).
        unsafe { bindings::dm_io_client_destroy(self.client.as_ptr()) };
    }
}

/// Fills `buf` with random bytes (for UUIDs).
pub fn random_bytes(buf: &mut [u8]) {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { bindings::fracture_random(buf.as_mut_ptr().cast(), buf.len()) };
}
