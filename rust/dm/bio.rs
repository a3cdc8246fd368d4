// SPDX-License-Identifier: GPL-2.0

//! Bios: what a target may learn about one, bio sets for clones, and the
//! status a bio completes with.

use super::bindings;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
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

/// What a clone carries in front of itself (its bio set's front pad): the
/// index of the device it was sent to and the set it came from. Aligned
/// like a pointer, since the bio right after it must be.
#[repr(C, align(8))]
struct CloneTag {
    index: u32,
    set: *const CloneInner,
}

/// A pool of bios (`struct bio_set`) with `front` bytes in front of each.
/// Private to this layer: its owners ([`CloneBioSet`] and the timed sets
/// of [`super::timed`]) know what the front pad holds, and wait in their
/// drop until no bio of the set is in flight.
///
/// Invariant: `bs` came from `fracture_bioset_alloc` and is freed only on
/// drop, when no bio of it is in flight (the owner's promise, above).
pub(super) struct BioSet {
    bs: NonNull<bindings::bio_set>,
}

// SAFETY: a `bio_set` is a set of mempools, which are internally locked.
unsafe impl Send for BioSet {}
// SAFETY: as above; allocation through `&self` is thread safe.
unsafe impl Sync for BioSet {}

impl BioSet {
    /// A bio set whose bios carry `front` bytes in front of them, and can
    /// have their own bio_vecs if `bvecs`. May sleep.
    pub(super) fn with_front_pad(front: u32, bvecs: bool) -> Result<Self> {
        // SAFETY: plain allocation; no pointer arguments.
        let bs = unsafe { bindings::fracture_bioset_alloc(bindings::BIO_POOL_SIZE, front, bvecs) };
        NonNull::new(bs).map(|bs| Self { bs }).ok_or(ENOMEM)
    }

    pub(super) fn raw(&self) -> *mut bindings::bio_set {
        self.bs.as_ptr()
    }
}

impl Drop for BioSet {
    fn drop(&mut self) {
        // SAFETY: `bs` came from `fracture_bioset_alloc` and no bio of it is
        // in flight (type invariant).
        unsafe { bindings::fracture_bioset_free(self.bs.as_ptr()) };
    }
}

/// A [`CloneBioSet`]'s state: boxed so that clones may point at it while
/// the handle moves.
struct CloneInner {
    bs: BioSet,
    /// Clones of this set not yet put.
    live: AtomicUsize,
}

impl Drop for CloneInner {
    fn drop(&mut self) {
        // A clone still in flight uses the pool: wait for it. The target
        // drops its sets when idle, so this does not wait there. Sleeps;
        // process context, like freeing the bio set itself.
        super::kthread::wait_until_zero(
            || self.live.load(Ordering::Acquire),
            "clones to complete before their bio set goes away",
        );
    }
}

/// A pool of bios to clone from for a fan-out (see
/// [`super::fanout::MapBio::fan_out`]), sized so that cloning one bio per
/// device per map call always makes progress.
///
/// Sound to use with any fan-out: its only constructor makes the front pad
/// a [`CloneTag`], which the fan-out writes in front of every clone; and
/// every clone is counted until it is put, dropping the set waiting for
/// that count to reach zero, so no clone outlives its pool however early
/// the set is dropped (if the set is leaked, so is the pool).
pub struct CloneBioSet {
    inner: KBox<CloneInner>,
}

impl CloneBioSet {
    /// A bio set for clones. May sleep.
    pub fn new() -> Result<Self> {
        let bs = BioSet::with_front_pad(core::mem::size_of::<CloneTag>() as u32, false)?;
        let inner = KBox::new(
            CloneInner {
                bs,
                live: AtomicUsize::new(0),
            },
            GFP_KERNEL,
        )?;
        Ok(Self { inner })
    }

    /// Clones `src` for `dev` (`GFP_NOIO`), tagged with `index` (see
    /// [`clone_index`]) and counted until [`put_clone`]; `None` if no bio
    /// could be allocated.
    ///
    /// # Safety
    ///
    /// `src` must be a live bio owned by the caller; process context (the
    /// allocation may sleep).
    pub(super) unsafe fn clone_bio(
        &self,
        src: NonNull<bindings::bio>,
        dev: &super::device::Dev,
        index: u32,
    ) -> Option<NonNull<bindings::bio>> {
        let inner: &CloneInner = &self.inner;
        // SAFETY: the source bio is live (the caller's promise); the device
        // is held open by `dev`; the set is alive, and stays so until the
        // clone is put (counted below before anyone can put it).
        let clone = NonNull::new(unsafe {
            bindings::bio_alloc_clone(
                dev.raw_bdev(),
                src.as_ptr(),
                bindings::GFP_NOIO,
                inner.bs.raw(),
            )
        })?;
        inner.live.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the front pad of this set is exactly one `CloneTag`, right
        // before the fresh clone, which is ours.
        unsafe {
            clone.as_ptr().cast::<CloneTag>().sub(1).write(CloneTag {
                index,
                set: core::ptr::from_ref(inner),
            })
        };
        Some(clone)
    }
}

/// The index a clone made by [`CloneBioSet::clone_bio`] was tagged with.
///
/// # Safety
///
/// `clone` must be a live clone made by [`CloneBioSet::clone_bio`].
pub(super) unsafe fn clone_index(clone: NonNull<bindings::bio>) -> u32 {
    // SAFETY: the tag is in front of the clone (the caller's promise).
    unsafe { (*clone.as_ptr().cast::<CloneTag>().sub(1)).index }
}

/// Puts a clone made by [`CloneBioSet::clone_bio`]; then its set may go.
///
/// # Safety
///
/// `clone` must be a clone made by [`CloneBioSet::clone_bio`] that nothing
/// refers to any more; the caller gives it up.
pub(super) unsafe fn put_clone(clone: NonNull<bindings::bio>) {
    // SAFETY: the tag is in front of the clone, and its set is alive until
    // the count below drops (its drop waits for it).
    unsafe {
        let set = (*clone.as_ptr().cast::<CloneTag>().sub(1)).set;
        bindings::bio_put(clone.as_ptr());
        // Last: the set may go away once this reaches zero.
        (*set).live.fetch_sub(1, Ordering::Release);
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
    pub set: &'a CloneBioSet,
    /// An index the target chooses (a leg number, < 32), reported back in
    /// the failure mask (a larger one as a failure of every index).
    pub index: u32,
    /// Send a timed copy (see [`super::timed`]) rather than a clone: the
    /// bio may complete without this device if it does not answer in time.
    pub timed: Option<&'a super::timed::TimedSet>,
}
