// SPDX-License-Identifier: GPL-2.0

//! The per-bio layer: the data this layer keeps with every bio of a
//! target, the bio [`Target::map`] is given ([`MapBio`]: remap, end, hold
//! or fan out), and the fan-out itself: one clone (or timed copy) per
//! device, their completions counted down to [`Target::fanout_done`].

use super::bindings;
use super::bio::{clone_index, index_bit, put_clone, BioKind, BlkStatus, FanTarget};
use super::device::Dev;
use super::held::HeldBio;
use super::target::Target;
use super::timed::Outcome;
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

/// Per-bio data as laid out by this layer: its own fan-out state, then the
/// target's.
pub(super) struct PerBio<T: Target> {
    pub(super) pending: AtomicU32,
    pub(super) failed: AtomicU32,
    pub(super) timed_out: AtomicU32,
    /// Set by [`MapBio::remap_retryable`]: the index it was given, plus one
    /// (0: the bio was not sent that way, or its completion was seen).
    pub(super) remapped: AtomicU32,
    /// What the bio was before that remap (written then, read once when it
    /// fails).
    pub(super) details: UnsafeCell<MaybeUninit<bindings::fracture_bio_details>>,
    pub(super) target: *const T,
    pub(super) ti: *const bindings::dm_target,
    pub(super) user: T::PerBio,
}

impl<T: Target> PerBio<T> {
    pub(super) fn new(target: &T, ti: *const bindings::dm_target) -> Self {
        Self {
            pending: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            timed_out: AtomicU32::new(0),
            remapped: AtomicU32::new(0),
            details: UnsafeCell::new(MaybeUninit::uninit()),
            target,
            ti,
            user: T::PerBio::default(),
        }
    }
}

/// The target-relative first sector of `bio`, of a target starting at
/// `begin`. Only a bio with a range lies inside the target: dm core hands
/// an empty flush to every target of the table with the sector of the bio
/// it came from (0, or anything), which for a target that is not the
/// first of its table is usually before `begin`. Such a bio has no
/// position: 0 (its clones are sent at sector 0, as dm-linear leaves an
/// empty flush's sector alone).
pub(super) fn target_sector(bio: &bindings::bio, begin: u64) -> u64 {
    if bio.bi_iter.bi_size == 0 {
        return 0;
    }
    // Inside the target: dm core splits bios at target boundaries.
    bio.bi_iter.bi_sector.saturating_sub(begin)
}

/// Size of the per-bio data of target `T`, as given to dm core.
pub(super) const fn per_bio_size<T: Target>() -> usize {
    core::mem::size_of::<PerBio<T>>()
}

/// Gets the per-bio data of a bio of target `T`.
///
/// # Safety
///
/// `bio` must be a live bio that dm core passed to a target of type `T`.
pub(super) unsafe fn per_bio_of<T: Target>(bio: NonNull<bindings::bio>) -> NonNull<PerBio<T>> {
    // SAFETY: dm core reserved `per_io_data_size = per_bio_size::<T>()` bytes
    // in front of every bio of this target (set in `ctr_cb`).
    let p = unsafe { bindings::dm_per_bio_data(bio.as_ptr(), per_bio_size::<T>()) };
    // dm core never returns NULL here; the cast is to our layout, whose
    // alignment `ctr_cb` checked against what dm core guarantees.
    NonNull::new(p.cast()).unwrap_or(NonNull::dangling())
}

/// What `map` returns: obtained only by consuming the [`MapBio`], so every
/// bio is dealt with exactly once.
pub struct MapResult(pub(super) c_int);

/// A bio handed to [`Target::map`].
///
/// Invariant: `bio` is live and belongs to target `T` (`ti`), and its
/// per-bio data has been initialised.
pub struct MapBio<'a, T: Target> {
    pub(super) ti: NonNull<bindings::dm_target>,
    pub(super) bio: NonNull<bindings::bio>,
    pub(super) data: NonNull<PerBio<T>>,
    pub(super) target: &'a T,
}

impl<T: Target> MapBio<'_, T> {
    /// The kind of bio.
    pub fn kind(&self) -> BioKind {
        // SAFETY: `bio` is live and ours (type invariant).
        unsafe { BioKind::of(self.bio) }
    }

    fn bio(&self) -> &bindings::bio {
        // SAFETY: `bio` is live and ours until we end or hand it back.
        unsafe { self.bio.as_ref() }
    }

    /// First sector, relative to the start of the target, of a bio with
    /// a range (data, discard, write-zeroes); 0 for one without (an empty
    /// flush: see [`target_sector`]).
    pub fn sector(&self) -> u64 {
        // SAFETY: `ti` is live while its bios are mapped.
        let begin = unsafe { self.ti.as_ref().begin };
        target_sector(self.bio(), begin)
    }

    /// Length in sectors.
    pub fn sectors(&self) -> u64 {
        u64::from(self.bio().bi_iter.bi_size >> 9)
    }

    /// The target's per-bio data.
    pub fn per_bio(&self) -> &T::PerBio {
        // SAFETY: initialised before `map` (type invariant), and only shared
        // references are ever made to it.
        unsafe { &self.data.as_ref().user }
    }

    /// Sends the bio to `dev` at the same target-relative sector; dm core
    /// submits it.
    pub fn remap(self, dev: &Dev) -> MapResult {
        let sector = self.sector();
        let p = self.bio.as_ptr();
        // SAFETY: the bio is ours to remap until we return from `map`.
        unsafe {
            bindings::fracture_bio_set_dev(p, dev.raw_bdev());
            (*p).bi_iter.bi_sector = sector;
        }
        MapResult(bindings::DM_MAPIO_REMAPPED as c_int)
    }

    /// Sends the bio itself to `dev` like [`MapBio::remap`] (no clone is
    /// made). If it completes, dm core ends it and [`Target::end_io`] is
    /// called. If it fails, it is first restored to what it was here and
    /// handed to [`Target::fanout_done`] with bit `index` set in `failed`,
    /// as if it had been fanned out to `dev` alone: the target may fan it
    /// out again (a read retried on another device) or end it.
    pub fn remap_retryable(self, dev: &Dev, index: u32) -> MapResult {
        // SAFETY: the per-bio data is initialised (type invariant) and not
        // referenced elsewhere until the bio completes; the bio is live and
        // ours, and nothing below it has seen it yet.
        unsafe {
            let st = self.data.as_ref();
            bindings::fracture_bio_record((*st.details.get()).as_mut_ptr(), self.bio.as_ptr());
            st.remapped
                .store(index.saturating_add(1), Ordering::Relaxed);
        }
        self.remap(dev)
    }

    /// Completes the bio now with `status`.
    pub fn end(self, status: BlkStatus) -> MapResult {
        // SAFETY: the bio is live and ours; after `bio_endio` we return
        // DM_MAPIO_SUBMITTED and never touch it again.
        unsafe { end_bio(self.bio, status) };
        MapResult(bindings::DM_MAPIO_SUBMITTED as c_int)
    }

    /// Fails the bio with `EIO`.
    pub fn kill(self) -> MapResult {
        MapResult(bindings::DM_MAPIO_KILL as c_int)
    }

    /// Clones the bio once per entry of `to`, submits all clones at once and,
    /// when the last completes, calls [`Target::fanout_done`] with the bio.
    /// Each clone is written at the bio's target-relative sector.
    pub fn fan_out<'b>(self, to: impl Iterator<Item = FanTarget<'b>>) -> MapResult {
        let sector = self.sector();
        // SAFETY: the bio is live and ours, `data` its initialised per-bio
        // data; `map` returns DM_MAPIO_SUBMITTED, so dm core leaves it to us.
        // `map` runs in process context.
        unsafe { fan_out_raw(self.target, self.bio, self.data, sector, to) };
        MapResult(bindings::DM_MAPIO_SUBMITTED as c_int)
    }

    /// Takes the bio over, to be dealt with later (e.g. by a thread, once
    /// metadata is on disk): `map` returns the [`MapResult`].
    pub fn hold(self) -> (HeldBio<T>, MapResult) {
        (
            HeldBio {
                bio: self.bio,
                data: self.data,
                _p: PhantomData,
            },
            MapResult(bindings::DM_MAPIO_SUBMITTED as c_int),
        )
    }
}

/// Clones `bio` once per entry of `to` at target-relative `sector`,
/// submits the clones and calls [`Target::fanout_done`] when the last
/// completes (at once if none could be made).
///
/// # Safety
///
/// `bio` must be a live bio of `target` owned by the caller and not in
/// flight: never submitted itself, or restored after a failed remap (see
/// [`MapBio::remap_retryable`]), so that its position is the one it was
/// mapped at; `data` its initialised per-bio data. Ownership of the bio
/// passes to the fan-out. Process context: the clones are allocated with
/// `GFP_NOIO`, and a timed copy may wait for memory.
pub(super) unsafe fn fan_out_raw<'b, T: Target>(
    target: &T,
    bio: NonNull<bindings::bio>,
    data: NonNull<PerBio<T>>,
    sector: u64,
    to: impl Iterator<Item = FanTarget<'b>>,
) {
    // SAFETY: per-bio data is initialised (the caller's contract); the
    // atomics are only accessed through shared references.
    let st = unsafe { data.as_ref() };
    // A bias of one so that completions racing with submission cannot
    // finish the bio before every clone is out.
    st.pending.store(1, Ordering::Relaxed);
    st.failed.store(0, Ordering::Relaxed);
    st.timed_out.store(0, Ordering::Relaxed);
    // A timed copy was sent: in `map` (under `submit_bio`) it waits on the
    // submitter's bio list, its timer running, until `map` returns, so no
    // later copy of this fan-out may wait for memory (elsewhere, waiting
    // would only be slower: the rule is kept simple).
    let mut timed_sent = false;
    for t in to {
        let bit = index_bit(t.index);
        if let Some(timed) = t.timed {
            // Counted first: the report may come before `submit` returns.
            st.pending.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the source bio is live, ours and not in flight, so its
            // data and position do not change; the per-bio data lives until
            // the bio ends, which waits for this report (counted in
            // `pending`); `report_timed::<T>` matches the context.
            let sent = unsafe {
                timed.submit(
                    bio,
                    t.dev,
                    sector,
                    t.index,
                    report_timed::<T>,
                    data.as_ptr().cast(),
                    !timed_sent,
                )
            };
            timed_sent |= sent.is_ok();
            if let Err(outcome) = sent {
                st.failed.fetch_or(bit, Ordering::Relaxed);
                if outcome == Outcome::TimedOut {
                    st.timed_out.fetch_or(bit, Ordering::Relaxed);
                }
                // Not the last: the bias is still held.
                st.pending.fetch_sub(1, Ordering::Relaxed);
            }
            continue;
        }
        // SAFETY: the source bio is live and ours; process context (the
        // caller's contract).
        let Some(clone) = (unsafe { t.set.clone_bio(bio, t.dev, t.index) }) else {
            st.failed.fetch_or(bit, Ordering::Relaxed);
            continue;
        };
        let c = clone.as_ptr();
        // SAFETY: `c` is a fresh clone, ours until submitted. `bi_private`
        // points at the per-bio data, which lives until the source bio
        // ends, i.e. after every clone completed.
        unsafe {
            (*c).bi_iter.bi_sector = sector;
            // Completed by interrupt: a polling submitter polls only the
            // bio dm core made (see dm_poll_bio), never these, so one left
            // on a leg's poll queue would wait there for ever.
            (*c).bi_opf &= !bindings::REQ_POLLED;
            (*c).bi_end_io = Some(clone_endio::<T>);
            (*c).bi_private = data.as_ptr().cast();
        }
        st.pending.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a fully set-up clone; ownership passes to the block layer.
        unsafe { bindings::submit_bio_noacct(c) };
    }
    if st.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        // SAFETY: every clone completed (or none was made); the bio is ours.
        unsafe { fanout_finish::<T>(target, bio, data) };
    }
}

/// Sets `status` and ends `bio`.
///
/// # Safety
///
/// `bio` must be live and owned by the caller, who must not touch it again.
pub(super) unsafe fn end_bio(bio: NonNull<bindings::bio>, status: BlkStatus) {
    // SAFETY: the caller owns the live bio.
    unsafe {
        (*bio.as_ptr()).bi_status = status.0;
        bindings::bio_endio(bio.as_ptr());
    }
}

/// An RCU read-side critical section, from `new` until dropped. Not
/// `Send`: it ends in the task or context that began it.
pub(super) struct RcuReadGuard(PhantomData<*mut ()>);

impl RcuReadGuard {
    pub(super) fn new() -> Self {
        // SAFETY: allowed in any context; paired with the unlock in `drop`.
        unsafe { bindings::fracture_rcu_read_lock() };
        Self(PhantomData)
    }
}

impl Drop for RcuReadGuard {
    fn drop(&mut self) {
        // SAFETY: ends the section `new` began, in the same context.
        unsafe { bindings::fracture_rcu_read_unlock() };
    }
}

/// Calls [`Target::fanout_done`] for a bio whose clones all completed.
///
/// # Safety
///
/// `bio` is a live bio of `target` owned by the caller and not in flight
/// (all clones of its fan-out completed, or a failed remap restored it),
/// `data` its per-bio data with its fan-out outcome (`failed`,
/// `timed_out`) final.
pub(super) unsafe fn fanout_finish<T: Target>(
    target: &T,
    bio: NonNull<bindings::bio>,
    data: NonNull<PerBio<T>>,
) {
    // SAFETY: the per-bio data lives as long as the bio.
    let st = unsafe { data.as_ref() };
    let failed = st.failed.load(Ordering::Relaxed);
    let timed_out = st.timed_out.load(Ordering::Relaxed);
    target.fanout_done(
        HeldBio {
            bio,
            data,
            _p: PhantomData,
        },
        failed,
        timed_out,
    );
}

/// Completion of one clone made by [`MapBio::fan_out`].
///
/// # Safety
///
/// Called by the block layer only, for a clone set up by `fan_out` for a
/// target of type `T`.
unsafe extern "C" fn clone_endio<T: Target>(clone: *mut bindings::bio) {
    // SAFETY: the block layer passes the completed clone.
    let clone = unsafe { NonNull::new_unchecked(clone) };
    // SAFETY: `clone` is a completed clone made by `fan_out` with
    // `CloneBioSet::clone_bio`; `bi_private` holds the source bio's per-bio
    // data, which is alive because the source bio cannot end before this
    // clone is counted.
    let (index, status, data) = unsafe {
        (
            clone_index(clone),
            (*clone.as_ptr()).bi_status,
            NonNull::new_unchecked((*clone.as_ptr()).bi_private.cast::<PerBio<T>>()),
        )
    };
    // SAFETY: the clone is ours to put; nothing refers to it any more.
    unsafe { put_clone(clone) };
    // SAFETY: see above; only shared references to the atomics.
    let st = unsafe { data.as_ref() };
    if status != bindings::BLK_STS_OK {
        st.failed.fetch_or(index_bit(index), Ordering::Relaxed);
    }
    // SAFETY: `data` is the per-bio data of a live bio of a `T` target, and
    // this clone was counted in `pending`.
    unsafe { clone_finished::<T>(data) };
}

/// Outcome of one timed copy sent by [`fan_out_raw`] (a [`super::timed::Report`]).
///
/// # Safety
///
/// `ctx` is the per-bio data of a live fanned-out bio of a `T` target, and
/// the copy was counted in its `pending`.
unsafe fn report_timed<T: Target>(ctx: *mut c_void, index: u32, outcome: Outcome) {
    let bit = index_bit(index);
    // SAFETY: the caller's promise; a per-bio data pointer is never null.
    let data = unsafe { NonNull::new_unchecked(ctx.cast::<PerBio<T>>()) };
    // SAFETY: alive until every counted clone finished; shared access only.
    let st = unsafe { data.as_ref() };
    if outcome != Outcome::Ok {
        st.failed.fetch_or(bit, Ordering::Relaxed);
    }
    if outcome == Outcome::TimedOut {
        st.timed_out.fetch_or(bit, Ordering::Relaxed);
    }
    // SAFETY: the caller's promise.
    unsafe { clone_finished::<T>(data) };
}

/// One clone (or timed copy) of a fanned-out bio is done; the last one
/// hands the bio to [`Target::fanout_done`].
///
/// # Safety
///
/// `data` is the per-bio data of a live fanned-out bio of a `T` target, and
/// the finished clone was counted in its `pending`.
unsafe fn clone_finished<T: Target>(data: NonNull<PerBio<T>>) {
    // SAFETY: the caller's promise; shared access only.
    let st = unsafe { data.as_ref() };
    if st.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    // SAFETY: the per-bio data belongs to a live bio of a target of type `T`
    // with `per_io_data_size == per_bio_size::<T>()`.
    let bio =
        unsafe { bindings::dm_bio_from_per_bio_data(data.as_ptr().cast(), per_bio_size::<T>()) };
    let Some(bio) = NonNull::new(bio) else {
        return;
    };
    // SAFETY: `map_cb` stored the target, which is only destroyed (in
    // `dtr_cb`) once no bio of it is in flight.
    let target = unsafe { &*st.target };
    // SAFETY: this was the last clone; the bio is ours.
    unsafe { fanout_finish::<T>(target, bio, data) };
}
