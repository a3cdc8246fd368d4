// SPDX-License-Identifier: GPL-2.0

//! Synchronous block I/O for metadata, through dm-io, and the buffers it
//! reads into and writes from.

use super::bindings;
use super::device::Dev;
use core::ptr::NonNull;
use kernel::alloc::KVVec;
use kernel::prelude::*;

/// Size of a [`Block`].
pub const BLOCK_BYTES: usize = 4096;

/// A buffer for metadata I/O, 4 KiB unless made with [`Block::with_len`]:
/// from kvmalloc, so a large one need not be physically contiguous (dm-io
/// takes it as `DM_IO_KMEM` or `DM_IO_VMA`, whichever it is).
///
/// Invariant: the length is a non-zero multiple of 512 bytes.
pub struct Block(KVVec<u8>);

/// The largest [`Block::with_len`].
pub const MAX_BUFFER_BYTES: usize = 1024 * 1024;

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
        Ok(Self(KVVec::from_elem(0u8, len, GFP_KERNEL)?))
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

/// What a metadata request does.
#[derive(Clone, Copy)]
enum IoKind {
    Read,
    Write,
    /// A write with `REQ_FUA`.
    WriteFua,
    /// A write with `REQ_PREFLUSH` and `REQ_FUA`.
    WriteFlushFua,
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

    fn io(&self, dev: &Dev, sector: u64, buf: *mut u8, len: usize, kind: IoKind) -> Result {
        let (write, fua, preflush) = match kind {
            IoKind::Read => (false, false, false),
            IoKind::Write => (true, false, false),
            IoKind::WriteFua => (true, true, false),
            IoKind::WriteFlushFua => (true, true, true),
        };
        // SAFETY: `buf` is a kmalloc'ed or vmalloc'ed buffer of at least
        // `len` bytes (a multiple of 512, at most `MAX_BUFFER_BYTES`) that
        // the caller borrows for the whole (synchronous) call; the device
        // is held open by `dev`; the client is alive.
        let r = unsafe {
            bindings::fracture_dm_io_sync(
                self.client.as_ptr(),
                dev.raw_bdev(),
                sector,
                (len / 512) as u32,
                buf.cast(),
                write,
                fua,
                preflush,
            )
        };
        kernel::error::to_result(r)
    }

    /// Reads `block.bytes().len()` bytes at `sector` of `dev`. Sleeps.
    pub fn read(&self, dev: &Dev, sector: u64, block: &mut Block) -> Result {
        let len = block.0.len();
        self.io(dev, sector, block.0.as_mut_ptr(), len, IoKind::Read)
    }

    /// Reads `len` bytes at `sector` of `dev` into the start of `block`:
    /// `len` a non-zero multiple of 512, at most the block's length (else
    /// `EINVAL`). Sleeps.
    pub fn read_part(&self, dev: &Dev, sector: u64, block: &mut Block, len: usize) -> Result {
        if len == 0 || len % 512 != 0 || len > block.0.len() {
            return Err(EINVAL);
        }
        self.io(dev, sector, block.0.as_mut_ptr(), len, IoKind::Read)
    }

    /// Writes the whole of `block` at `sector` of `dev`, durably before returning when
    /// `fua`. Sleeps.
    pub fn write(&self, dev: &Dev, sector: u64, block: &Block, fua: bool) -> Result {
        let kind = if fua { IoKind::WriteFua } else { IoKind::Write };
        self.write_with(dev, sector, block, block.0.len(), kind)
    }

    /// Writes the first `len` bytes of `block` at `sector` of `dev`, no
    /// FUA: `len` a non-zero multiple of 512, at most the block's length
    /// (else `EINVAL`). Sleeps.
    pub fn write_part(&self, dev: &Dev, sector: u64, block: &Block, len: usize) -> Result {
        if len == 0 || len % 512 != 0 || len > block.0.len() {
            return Err(EINVAL);
        }
        self.write_with(dev, sector, block, len, IoKind::Write)
    }

    /// Writes the whole of `block` at `sector` of `dev` after a cache flush
    /// and with FUA: when it returns, every write that completed before it
    /// and this one are durable. Sleeps.
    pub fn write_after_flush(&self, dev: &Dev, sector: u64, block: &Block) -> Result {
        self.write_with(dev, sector, block, block.0.len(), IoKind::WriteFlushFua)
    }

    fn write_with(
        &self,
        dev: &Dev,
        sector: u64,
        block: &Block,
        len: usize,
        kind: IoKind,
    ) -> Result {
        // dm-io does not write to the buffer of a write; the cast only
        // satisfies the shared read/write signature.
        self.io(dev, sector, block.0.as_ptr().cast_mut(), len, kind)
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
