// SPDX-License-Identifier: GPL-2.0

//! Bios: what a target may learn about one, bio sets for clones, and the
//! status a bio completes with.

use super::bindings;
use core::ptr::NonNull;
use kernel::prelude::*;

/// Completion status of a bio (`blk_status_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkStatus(pub(crate) u8);

impl BlkStatus {
    /// Success.
    pub const OK: Self = Self(bindings::BLK_STS_OK);
    /// A generic I/O error (`EIO`).
    pub const IOERR: Self = Self(bindings::BLK_STS_IOERR);
    /// Operation not supported (`EOPNOTSUPP`).
    pub const NOTSUPP: Self = Self(bindings::BLK_STS_NOTSUPP);

    /// Whether this is success.
    pub fn is_ok(self) -> bool {
        self == Self::OK
    }
}

/// The operation of a bio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `REQ_OP_READ`.
    Read,
    /// `REQ_OP_WRITE` (an empty one with [`BioKind::preflush`] is a flush).
    Write,
    /// `REQ_OP_DISCARD`.
    Discard,
    /// `REQ_OP_WRITE_ZEROES`.
    WriteZeroes,
    /// Anything else (zone operations, driver-private ones).
    Other(u32),
}

impl Op {
    fn from_raw(op: u32) -> Self {
        match op {
            bindings::req_op_REQ_OP_READ => Self::Read,
            bindings::req_op_REQ_OP_WRITE => Self::Write,
            bindings::req_op_REQ_OP_DISCARD => Self::Discard,
            bindings::req_op_REQ_OP_WRITE_ZEROES => Self::WriteZeroes,
            other => Self::Other(other),
        }
    }
}

/// What kind of bio a target is looking at: fields that stay valid for the
/// bio's whole life (unlike its position, which completion may advance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BioKind {
    /// The operation.
    pub op: Op,
    /// `REQ_PREFLUSH`: flush the device's volatile cache first. dm core
    /// hands a target flushes as empty bios of their own.
    pub preflush: bool,
    /// `REQ_FUA`: the data must be on stable media when the bio completes.
    pub fua: bool,
    /// Which of the copies dm core made of a flush, discard or write-zeroes
    /// bio this is (see `num_flush_bios` and friends); 0 for other bios.
    pub target_bio_nr: u32,
}

impl BioKind {
    /// # Safety
    ///
    /// `bio` must be a live bio that dm core passed to this target.
    pub(crate) unsafe fn of(bio: NonNull<bindings::bio>) -> Self {
        let p = bio.as_ptr();
        // SAFETY: `bio` is live (the caller's promise); these calls and the
        // field read do not modify it.
        unsafe {
            let opf = (*p).bi_opf;
            Self {
                op: Op::from_raw(bindings::fracture_bio_op(p)),
                preflush: opf & bindings::REQ_PREFLUSH != 0,
                fua: opf & bindings::REQ_FUA != 0,
                target_bio_nr: bindings::dm_bio_get_target_bio_nr(p),
            }
        }
    }
}

/// What a clone carries in front of itself (the bio set's front pad): the
/// index of the device it was sent to. Aligned like a pointer, since the
/// bio right after it must be.
#[repr(C, align(8))]
pub(crate) struct CloneTag {
    pub(crate) index: u32,
}

/// A pool of bios to clone from (`struct bio_set`), sized so that cloning
/// one bio per device per map call always makes progress.
///
/// Invariant: `bs` came from `fracture_bioset_alloc` and is freed only on drop.
pub struct BioSet {
    bs: NonNull<bindings::bio_set>,
}

// SAFETY: a `bio_set` is a set of mempools, which are internally locked.
unsafe impl Send for BioSet {}
// SAFETY: as above; allocation through `&self` is thread safe.
unsafe impl Sync for BioSet {}

impl BioSet {
    /// A bio set for clones carrying a [`CloneTag`]. May sleep.
    pub fn new() -> Result<Self> {
        Self::with_front_pad(core::mem::size_of::<CloneTag>() as u32, false)
    }

    /// A bio set whose bios carry `front` bytes in front of them, and can
    /// have their own bio_vecs if `bvecs`. May sleep.
    pub(crate) fn with_front_pad(front: u32, bvecs: bool) -> Result<Self> {
        // SAFETY: plain allocation; no pointer arguments.
        let bs = unsafe { bindings::fracture_bioset_alloc(bindings::BIO_POOL_SIZE, front, bvecs) };
        NonNull::new(bs).map(|bs| Self { bs }).ok_or(ENOMEM)
    }

    pub(crate) fn raw(&self) -> *mut bindings::bio_set {
        self.bs.as_ptr()
    }
}

impl Drop for BioSet {
    fn drop(&mut self) {
        // SAFETY: `bs` came from `fracture_bioset_alloc` (type invariant) and
        // no clone is in flight: clones hold their target's bio alive, and
        // the target (which owns this set) is only destroyed when idle.
        unsafe { bindings::fracture_bioset_free(self.bs.as_ptr()) };
    }
}

/// The bit of fan-out index `index` in a failure mask. An index the mask
/// cannot hold (>= 32) fails every index, never none: a failure is never
/// lost.
pub(crate) fn index_bit(index: u32) -> u32 {
    1u32.checked_shl(index).unwrap_or(u32::MAX)
}

/// Where one clone of a fanned-out bio goes.
pub struct FanTarget<'a> {
    /// The device.
    pub dev: &'a super::device::Dev,
    /// The bio set to clone from; one per device so that a map call never
    /// takes two bios from the same pool.
    pub set: &'a BioSet,
    /// An index the target chooses (a leg number, < 32), reported back in
    /// the failure mask (a larger one as a failure of every index).
    pub index: u32,
    /// Send a timed copy (see [`super::timed`]) rather than a clone: the
    /// bio may complete without this device if it does not answer in time.
    pub timed: Option<&'a super::timed::TimedSet>,
}
