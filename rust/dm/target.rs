// SPDX-License-Identifier: GPL-2.0

//! Device-mapper targets: the [`Target`] trait a Rust target implements, the
//! C entry points that call it, and [`Registration`] of the target type.
//!
//! dm core calls `map` concurrently on many CPUs and `end_io` possibly in
//! interrupt context, so the trait takes `&self` everywhere but in the
//! constructor; the target's state must use interior mutability with locks
//! and atomics fit for that.

use super::bindings;
use super::bio::{index_bit, BioKind, BlkStatus, CloneTag, FanTarget};
use super::device::Dev;
use super::kthread::Waker;
use super::status::{Emitter, StatusType};
use super::timed::Outcome;
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_uint, c_void};
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::types::Opaque;

/// Why a constructor refused a table line.
#[derive(Debug)]
pub struct CtrError {
    /// A short reason dm core prints with the device name (`ti->error`).
    /// Print the details with [`crate::dm_err!`] before returning.
    pub reason: &'static CStr,
    /// The error code returned to userspace.
    pub errno: Error,
}

impl CtrError {
    /// An `EINVAL` error with `reason`.
    pub fn inval(reason: &'static CStr) -> Self {
        Self {
            reason,
            errno: EINVAL,
        }
    }
}

impl From<kernel::alloc::AllocError> for CtrError {
    fn from(_: kernel::alloc::AllocError) -> Self {
        ENOMEM.into()
    }
}

impl From<Error> for CtrError {
    fn from(errno: Error) -> Self {
        Self {
            reason: kernel::c_str!("out of resources"),
            errno,
        }
    }
}

/// A device-mapper target implemented in Rust.
pub trait Target: Sized + Send + Sync + 'static {
    /// State dm core keeps with every bio mapped by the target, set to its
    /// default before `map`. It is never dropped, so it may not need drop.
    type PerBio: Default + Send + Sync;

    /// Target name, as in the table line.
    const NAME: &'static CStr;
    /// Target version, shown by `dmsetup targets`.
    const VERSION: [u32; 3];

    /// Builds the target from the words of its table line.
    fn new(ti: &mut TargetCtx<'_>, args: &[&CStr]) -> Result<KBox<Self>, CtrError>;

    /// Maps a bio: remap it, fan it out, end it or kill it. Runs
    /// concurrently, in process context, possibly with a deep stack.
    fn map(&self, bio: MapBio<'_, Self>) -> MapResult;

    /// All clones of a fanned-out bio completed; `failed` has bit `index` set
    /// for every [`FanTarget`] whose clone failed, could not be made or (a
    /// timed one) did not complete in time, the last also in `timed_out`.
    /// The target must end `bio`. May run in interrupt or softirq context:
    /// no sleeping and no `GFP_KERNEL` allocation. Once `bio` is ended (or
    /// handed on and ended elsewhere) the target may be destroyed: hand it
    /// to a thread with [`BioStack::push_and_wake`] and touch nothing after.
    fn fanout_done(&self, bio: HeldBio<Self>, failed: u32, timed_out: u32);

    /// A bio the target mapped completes with `status`, which the target may
    /// change. May run in interrupt context.
    fn end_io(&self, _kind: BioKind, _per_bio: &Self::PerBio, _status: &mut BlkStatus) {}

    /// Writes `dmsetup status` (`Info`) or `dmsetup table` (`Table`) output.
    fn status(&self, kind: StatusType, out: &mut Emitter<'_>);

    /// Handles `dmsetup message`. The default refuses every message.
    fn message(&self, args: &[&CStr], _out: &mut Emitter<'_>) -> Result {
        let first = args.first().and_then(|a| a.to_str().ok()).unwrap_or("");
        crate::dm_err!("unknown message '{}'", first);
        Err(EINVAL)
    }

    /// Reports every data device and the range of it the target uses.
    fn iterate_devices(&self, visit: &mut DeviceVisitor<'_>) -> c_int;

    /// The device is about to be suspended: stop queuing new internal work.
    fn presuspend(&self) {}
    /// A suspend after `presuspend` did not happen: the target runs on.
    fn presuspend_undo(&self) {}
    /// The device is suspended and its I/O drained.
    fn postsuspend(&self) {}
    /// The device is about to resume; an error keeps it suspended. Any
    /// table this one replaces has been suspended by now.
    fn preresume(&self) -> Result {
        Ok(())
    }
    /// The device is about to resume.
    fn resume(&self) {}
}

/// Per-bio data as laid out by this layer: its own fan-out state, then the
/// target's.
struct PerBio<T: Target> {
    pending: AtomicU32,
    failed: AtomicU32,
    timed_out: AtomicU32,
    /// Set by [`MapBio::remap_retryable`]: the index it was given, plus one
    /// (0: the bio was not sent that way, or its completion was seen).
    remapped: AtomicU32,
    /// What the bio was before that remap (written then, read once when it
    /// fails).
    details: UnsafeCell<MaybeUninit<bindings::fracture_bio_details>>,
    target: *const T,
    ti: *const bindings::dm_target,
    user: T::PerBio,
}

impl<T: Target> PerBio<T> {
    fn new(target: &T, ti: *const bindings::dm_target) -> Self {
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

/// Size of the per-bio data of target `T`, as given to dm core.
const fn per_bio_size<T: Target>() -> usize {
    core::mem::size_of::<PerBio<T>>()
}

/// Gets the per-bio data of a bio of target `T`.
///
/// # Safety
///
/// `bio` must be a live bio that dm core passed to a target of type `T`.
unsafe fn per_bio_of<T: Target>(bio: NonNull<bindings::bio>) -> NonNull<PerBio<T>> {
    // SAFETY: dm core reserved `per_io_data_size = per_bio_size::<T>()` bytes
    // in front of every bio of this target (set in `ctr_cb`).
    let p = unsafe { bindings::dm_per_bio_data(bio.as_ptr(), per_bio_size::<T>()) };
    // dm core never returns NULL here; the cast is to our layout, whose
    // alignment `ctr_cb` checked against what dm core guarantees.
    NonNull::new(p.cast()).unwrap_or(NonNull::dangling())
}

/// The target being constructed, as the constructor may see and set it.
pub struct TargetCtx<'a> {
    ti: NonNull<bindings::dm_target>,
    _p: PhantomData<&'a mut bindings::dm_target>,
}

impl TargetCtx<'_> {
    fn ti(&self) -> &bindings::dm_target {
        // SAFETY: `ti` is the live target dm core is constructing; during the
        // constructor nothing else accesses it.
        unsafe { self.ti.as_ref() }
    }

    fn ti_mut(&mut self) -> &mut bindings::dm_target {
        // SAFETY: as in `ti`, and `&mut self` makes this the only reference.
        unsafe { self.ti.as_mut() }
    }

    /// Length of the target in sectors.
    pub fn len(&self) -> u64 {
        self.ti().len
    }

    /// Whether the target has length zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens a device named by a table-line word (`major:minor` or a path)
    /// with the table's mode.
    pub fn get_device(&mut self, name: &str) -> Result<Dev> {
        let path = CString::try_from_fmt(kernel::fmt!("{}", name))?;
        let ti = self.ti.as_ptr();
        let mut dev: *mut bindings::dm_dev = core::ptr::null_mut();
        // SAFETY: `ti` is the target being constructed; `path` is a
        // NUL-terminated string that outlives the call; `dev` is a valid
        // out-pointer.
        let ret = unsafe {
            let mode = bindings::dm_table_get_mode((*ti).table);
            bindings::dm_get_device(ti, path.as_char_ptr().cast(), mode, &mut dev)
        };
        kernel::error::to_result(ret)?;
        let dev = NonNull::new(dev).ok_or(ENODEV)?;
        // SAFETY: `dev` was just got for `ti`; the returned `Dev` ends up in
        // the target's private data or is dropped within the constructor,
        // both before the target's destructor returns.
        Ok(unsafe { Dev::from_raw(self.ti, dev) })
    }

    /// A handle to raise dm events for this target. Keep it in the
    /// target's state: it must not outlive the target.
    pub fn event_raiser(&self) -> EventRaiser {
        EventRaiser { ti: self.ti }
    }

    /// How many empty flush bios dm core sends the target for each flush
    /// (told apart by [`BioKind::target_bio_nr`]).
    pub fn set_num_flush_bios(&mut self, n: u32) {
        self.ti_mut().num_flush_bios = n;
    }

    /// How many copies of each discard bio dm core sends.
    pub fn set_num_discard_bios(&mut self, n: u32) {
        self.ti_mut().num_discard_bios = n;
    }

    /// How many copies of each write-zeroes bio dm core sends.
    pub fn set_num_write_zeroes_bios(&mut self, n: u32) {
        self.ti_mut().num_write_zeroes_bios = n;
    }

    /// Caps the bios the target is given at `sectors` (dm core splits
    /// longer ones).
    pub fn set_max_io_len(&mut self, sectors: u32) -> Result {
        // SAFETY: the target is being constructed; dm core allows setting
        // its limit from the constructor.
        kernel::error::to_result(unsafe {
            bindings::dm_set_target_max_io_len(self.ti_mut(), u64::from(sectors))
        })
    }
}

/// What `map` returns: obtained only by consuming the [`MapBio`], so every
/// bio is dealt with exactly once.
pub struct MapResult(c_int);

/// A bio handed to [`Target::map`].
///
/// Invariant: `bio` is live and belongs to target `T` (`ti`), and its
/// per-bio data has been initialised.
pub struct MapBio<'a, T: Target> {
    ti: NonNull<bindings::dm_target>,
    bio: NonNull<bindings::bio>,
    data: NonNull<PerBio<T>>,
    target: &'a T,
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

    /// First sector, relative to the start of the target.
    pub fn sector(&self) -> u64 {
        // SAFETY: `ti` is live while its bios are mapped.
        let begin = unsafe { self.ti.as_ref().begin };
        self.bio().bi_iter.bi_sector - begin
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
            st.remapped.store(index.saturating_add(1), Ordering::Relaxed);
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
/// passes to the fan-out.
unsafe fn fan_out_raw<'b, T: Target>(
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
                timed.submit(bio, t.dev, sector, t.index, report_timed::<T>, data.as_ptr().cast(), !timed_sent)
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
        // SAFETY: the source bio is live and ours; the device is held open
        // by `t.dev`; the bio set outlives every clone (it belongs to the
        // target, which is idle before it is destroyed).
        let clone = unsafe {
            bindings::bio_alloc_clone(t.dev.raw_bdev(), bio.as_ptr(), bindings::GFP_NOIO, t.set.raw())
        };
        let Some(clone) = NonNull::new(clone) else {
            st.failed.fetch_or(bit, Ordering::Relaxed);
            continue;
        };
        let c = clone.as_ptr();
        // SAFETY: `c` is a fresh clone from a bio set whose front pad is a
        // `CloneTag` (see `BioSet::new`), so the tag sits right before it;
        // the clone is ours until submitted. `bi_private` points at the
        // per-bio data, which lives until the source bio ends, i.e. after
        // every clone completed.
        unsafe {
            c.cast::<CloneTag>()
                .sub(1)
                .write(CloneTag { index: t.index });
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
unsafe fn end_bio(bio: NonNull<bindings::bio>, status: BlkStatus) {
    // SAFETY: the caller owns the live bio.
    unsafe {
        (*bio.as_ptr()).bi_status = status.0;
        bindings::bio_endio(bio.as_ptr());
    }
}

/// An RCU read-side critical section, from `new` until dropped. Not
/// `Send`: it ends in the task or context that began it.
struct RcuReadGuard(PhantomData<*mut ()>);

impl RcuReadGuard {
    fn new() -> Self {
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
unsafe fn fanout_finish<T: Target>(
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
    // SAFETY: `clone` is a completed clone made by `fan_out`: its front pad
    // holds the tag and `bi_private` the source bio's per-bio data, which is
    // alive because the source bio cannot end before this clone is counted.
    let (index, status, data) = unsafe {
        (
            (*clone.cast::<CloneTag>().sub(1)).index,
            (*clone).bi_status,
            NonNull::new_unchecked((*clone).bi_private.cast::<PerBio<T>>()),
        )
    };
    // SAFETY: the clone is ours to put; nothing refers to it any more.
    unsafe { bindings::bio_put(clone) };
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

/// A bio the target has taken over (its map returned "submitted", or it came
/// back from a failed remap) and must end exactly once with [`HeldBio::end`]
/// or hand on with [`HeldBio::fan_out`]. Dropping it ends it with `EIO`,
/// so a bio is never leaked.
pub struct HeldBio<T: Target> {
    bio: NonNull<bindings::bio>,
    data: NonNull<PerBio<T>>,
    _p: PhantomData<T>,
}

// SAFETY: a held bio may be ended from any context and any CPU.
unsafe impl<T: Target> Send for HeldBio<T> {}

impl<T: Target> HeldBio<T> {
    /// The kind of bio.
    pub fn kind(&self) -> BioKind {
        // SAFETY: the bio is live until ended.
        unsafe { BioKind::of(self.bio) }
    }

    /// The target's per-bio data.
    pub fn per_bio(&self) -> &T::PerBio {
        // SAFETY: initialised in map and alive until the bio ends.
        unsafe { &self.data.as_ref().user }
    }

    /// First sector, relative to the start of the target. Valid because a
    /// held bio itself is either never submitted (only clones are) or was
    /// restored after a failed remap (see [`MapBio::remap_retryable`]), so
    /// its position is the one it was mapped at.
    pub fn sector(&self) -> u64 {
        // SAFETY: the bio and its per-bio data are live until ended; `ti`
        // outlives its bios.
        unsafe { (*self.bio.as_ptr()).bi_iter.bi_sector - (*self.data.as_ref().ti).begin }
    }

    /// Length in sectors.
    pub fn sectors(&self) -> u64 {
        // SAFETY: the bio is live until ended.
        u64::from(unsafe { (*self.bio.as_ptr()).bi_iter.bi_size } >> 9)
    }

    /// Fans the bio out like [`MapBio::fan_out`]; [`Target::fanout_done`]
    /// is called when every clone completed. Process context (the clones
    /// are allocated with `GFP_NOIO` from the bio sets).
    pub fn fan_out<'b>(self, to: impl Iterator<Item = FanTarget<'b>>) {
        let (bio, data) = (self.bio, self.data);
        let sector = self.sector();
        core::mem::forget(self);
        // SAFETY: `map_cb` stored the target in the per-bio data; a target
        // is only destroyed once none of its bios is in flight, and this one
        // is.
        let target = unsafe { &*data.as_ref().target };
        // SAFETY: we own the live bio (held: never submitted, or restored
        // after a failed remap) and forgot `self`, so it is dealt with once,
        // by the fan-out.
        unsafe { fan_out_raw(target, bio, data, sector, to) };
    }

    /// Ends the bio with `status`.
    pub fn end(self, status: BlkStatus) {
        let bio = self.bio;
        core::mem::forget(self);
        // SAFETY: we own the live bio and forgot `self`, so it is ended once.
        unsafe { end_bio(bio, status) };
    }
}

impl<T: Target> Drop for HeldBio<T> {
    fn drop(&mut self) {
        // SAFETY: we own the live bio; this is its only ending.
        unsafe { end_bio(self.bio, BlkStatus::IOERR) };
    }
}

/// A lock-free stack of held bios, linked through `bi_next` (free while a
/// bio is held): [`BioStack::push`] from any context, including interrupts;
/// [`BioStack::take_all`] by one consumer. Dropping it ends what is left
/// with `EIO`.
pub struct BioStack<T: Target> {
    head: AtomicPtr<bindings::bio>,
    _p: PhantomData<T>,
}

// SAFETY: the stack hands bios between contexts; `HeldBio` is `Send`.
unsafe impl<T: Target> Send for BioStack<T> {}
// SAFETY: push and take_all are atomic operations on `head`.
unsafe impl<T: Target> Sync for BioStack<T> {}

impl<T: Target> Default for BioStack<T> {
    fn default() -> Self {
        Self {
            head: AtomicPtr::new(core::ptr::null_mut()),
            _p: PhantomData,
        }
    }
}

impl<T: Target> BioStack<T> {
    /// Pushes a held bio. From a completion, where the bio may be ended
    /// by its consumer before this returns, use [`BioStack::push_and_wake`].
    pub fn push(&self, bio: HeldBio<T>) {
        let p = bio.bio.as_ptr();
        core::mem::forget(bio);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: we own the held bio; `bi_next` is unused while held.
            unsafe { (*p).bi_next = head };
            match self
                .head
                .compare_exchange_weak(head, p, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
    }

    /// Pushes a held bio and wakes the thread of `waker`, which takes it:
    /// the hand-off of a completion ([`Target::fanout_done`]). The thread
    /// may end the bio at once, and dm core then destroy the target, before
    /// the wake-up: it runs inside an RCU read-side section, which the
    /// target's destructor waits for, so `self` and `waker` stay valid.
    pub fn push_and_wake(&self, bio: HeldBio<T>, waker: &Waker) {
        let _rcu = RcuReadGuard::new();
        self.push(bio);
        waker.wake();
    }

    /// Whether the stack is empty.
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// Takes every bio pushed so far (newest first).
    pub fn take_all(&self) -> BioChain<T> {
        BioChain {
            next: self.head.swap(core::ptr::null_mut(), Ordering::Acquire),
            _p: PhantomData,
        }
    }
}

impl<T: Target> Drop for BioStack<T> {
    fn drop(&mut self) {
        drop(self.take_all());
    }
}

/// Bios taken from a [`BioStack`]; an iterator of [`HeldBio`]s. Dropping
/// it ends the bios not yet taken with `EIO`.
pub struct BioChain<T: Target> {
    next: *mut bindings::bio,
    _p: PhantomData<T>,
}

impl<T: Target> Iterator for BioChain<T> {
    type Item = HeldBio<T>;

    fn next(&mut self) -> Option<HeldBio<T>> {
        let bio = NonNull::new(self.next)?;
        // SAFETY: every bio in the chain was a `HeldBio<T>` pushed by
        // `BioStack::push`: live, of a target of type `T`, owned by us.
        unsafe {
            self.next = (*bio.as_ptr()).bi_next;
            (*bio.as_ptr()).bi_next = core::ptr::null_mut();
            Some(HeldBio {
                bio,
                data: per_bio_of::<T>(bio),
                _p: PhantomData,
            })
        }
    }
}

impl<T: Target> Drop for BioChain<T> {
    fn drop(&mut self) {
        for bio in self.by_ref() {
            drop(bio);
        }
    }
}

/// Raises dm events for a target (`dmsetup wait` returns). Process context
/// only: dm core takes a mutex.
///
/// Invariant: `ti` is a constructed target that outlives this handle (it
/// is kept in the target's own state).
#[derive(Clone, Copy)]
pub struct EventRaiser {
    ti: NonNull<bindings::dm_target>,
}

// SAFETY: `dm_table_event` is safe to call from any thread in process
// context.
unsafe impl Send for EventRaiser {}
// SAFETY: as above.
unsafe impl Sync for EventRaiser {}

impl EventRaiser {
    /// Raises an event. Sleeps.
    pub fn raise(&self) {
        // SAFETY: `ti` is live (type invariant); process context is the
        // caller's contract.
        unsafe { bindings::fracture_table_event(self.ti.as_ptr()) };
    }
}

/// The callback `iterate_devices` passes each device to.
pub struct DeviceVisitor<'a> {
    ti: *mut bindings::dm_target,
    f: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
    _p: PhantomData<&'a ()>,
}

impl DeviceVisitor<'_> {
    /// Reports `dev`, of which the target uses `len` sectors from `start`.
    /// A non-zero return ends the iteration; return it.
    pub fn visit(&mut self, dev: &Dev, start: u64, len: u64) -> c_int {
        match self.f {
            // SAFETY: dm core's callout with its own `data`, for a device of
            // this target (`dev.raw_dm_dev()` is held by `ti`).
            Some(f) => unsafe { f(self.ti, dev.raw_dm_dev(), start, len, self.data) },
            None => 0,
        }
    }
}

/// The target type of `T`, registered with dm core for as long as it lives.
pub struct Registration<T: Target> {
    tt: Pin<KBox<Opaque<bindings::target_type>>>,
    _p: PhantomData<T>,
}

// SAFETY: after registration dm core owns the `target_type`; we only touch
// it again to unregister, which dm core serialises.
unsafe impl<T: Target> Send for Registration<T> {}
// SAFETY: no method takes `&self`.
unsafe impl<T: Target> Sync for Registration<T> {}

impl<T: Target> Registration<T> {
    /// Registers target type `T` on behalf of `module`.
    pub fn new(module: &'static ThisModule) -> Result<Self> {
        const {
            assert!(!core::mem::needs_drop::<T::PerBio>());
            // dm core places per-bio data right before an 8-byte aligned
            // structure, so a size that is a multiple of 8 keeps it aligned.
            assert!(core::mem::align_of::<PerBio<T>>() <= 8);
            assert!(per_bio_size::<T>() % 8 == 0);
        }
        // SAFETY: an all-zero `target_type` is valid: null pointers, `None`
        // callbacks, zero numbers and an empty (unused) list head.
        let mut tt: bindings::target_type = unsafe { core::mem::zeroed() };
        tt.name = T::NAME.as_char_ptr().cast();
        tt.module = module.as_ptr().cast();
        tt.version = T::VERSION;
        tt.ctr = Some(ctr_cb::<T>);
        tt.dtr = Some(dtr_cb::<T>);
        tt.map = Some(map_cb::<T>);
        tt.end_io = Some(end_io_cb::<T>);
        tt.status = Some(status_cb::<T>);
        tt.message = Some(message_cb::<T>);
        tt.iterate_devices = Some(iterate_devices_cb::<T>);
        tt.presuspend = Some(presuspend_cb::<T>);
        tt.presuspend_undo = Some(presuspend_undo_cb::<T>);
        tt.postsuspend = Some(postsuspend_cb::<T>);
        tt.preresume = Some(preresume_cb::<T>);
        tt.resume = Some(resume_cb::<T>);
        let tt = KBox::pin(Opaque::new(tt), GFP_KERNEL)?;
        // SAFETY: `tt` is a valid, pinned target type that stays registered
        // until `drop` unregisters it; its name is a static string.
        kernel::error::to_result(unsafe { bindings::dm_register_target(tt.get()) })?;
        Ok(Self {
            tt,
            _p: PhantomData,
        })
    }
}

impl<T: Target> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: registered in `new`; module unload only happens when no
        // table uses the target (dm holds a module reference per table).
        unsafe { bindings::dm_unregister_target(self.tt.get()) };
    }
}

/// The target's private data.
///
/// # Safety
///
/// `ti` must be a live target of type `T` whose constructor succeeded and
/// whose destructor has not run.
unsafe fn target<'a, T: Target>(ti: *mut bindings::dm_target) -> &'a T {
    // SAFETY: `ctr_cb` set `private` to a leaked `KBox<T>`, freed only in
    // `dtr_cb`.
    unsafe { &*(*ti).private.cast::<T>() }
}

/// Collects `argv` as C strings, refusing none.
///
/// # Safety
///
/// `argv` must hold `argc` valid NUL-terminated strings that outlive `'a`.
unsafe fn args<'a>(argc: c_uint, argv: *mut *mut c_char) -> Result<KVec<&'a CStr>> {
    let mut v = KVec::with_capacity(argc as usize, GFP_KERNEL)?;
    for i in 0..argc as usize {
        // SAFETY: `argv[i]` is a valid C string for `'a` (caller's promise).
        let s = unsafe { CStr::from_char_ptr((*argv.add(i)).cast()) };
        v.push(s, GFP_KERNEL)?;
    }
    Ok(v)
}

/// # Safety
///
/// dm core's `ctr` callout: `ti` is a target being constructed, `argv` holds
/// `argc` strings alive during the call.
unsafe extern "C" fn ctr_cb<T: Target>(
    ti: *mut bindings::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
) -> c_int {
    let Some(tip) = NonNull::new(ti) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the strings live for the duration of this call.
    let result = match unsafe { args(argc, argv) } {
        Ok(a) => {
            let mut ctx = TargetCtx {
                ti: tip,
                _p: PhantomData,
            };
            T::new(&mut ctx, &a)
        }
        Err(e) => Err(CtrError::from(e)),
    };
    match result {
        Ok(t) => {
            // SAFETY: `ti` is ours during construction. `private` keeps the
            // box until `dtr_cb`; `error` must point at a static string.
            unsafe {
                (*ti).per_io_data_size = per_bio_size::<T>() as c_uint;
                (*ti).private = KBox::into_raw(t).cast();
            }
            0
        }
        Err(e) => {
            // SAFETY: as above; `reason` is `'static`.
            unsafe { (*ti).error = e.reason.as_char_ptr().cast_mut().cast() };
            e.errno.to_errno()
        }
    }
}

/// # Safety
///
/// dm core's `dtr` callout: `ti` was constructed by `ctr_cb::<T>` and all
/// its bios have ended (a completion may still be returning from a
/// [`BioStack::push_and_wake`]).
unsafe extern "C" fn dtr_cb<T: Target>(ti: *mut bindings::dm_target) {
    // dm core destroys a table once its bios have ended, but a completion
    // that handed a bio to a thread (`BioStack::push_and_wake`) may still
    // be waking it inside an RCU read-side section: wait for that before
    // the target (and the thread's task reference) goes.
    // SAFETY: the destructor runs in process context and may sleep.
    unsafe { bindings::fracture_synchronize_rcu() };
    // SAFETY: `private` is the `KBox<T>` leaked by `ctr_cb`; nothing uses it
    // after the destructor.
    drop(unsafe { KBox::from_raw((*ti).private.cast::<T>()) });
}

/// # Safety
///
/// dm core's `map` callout for a bio of target `ti` of type `T`.
unsafe extern "C" fn map_cb<T: Target>(
    ti: *mut bindings::dm_target,
    bio: *mut bindings::bio,
) -> c_int {
    let (Some(tip), Some(bio)) = (NonNull::new(ti), NonNull::new(bio)) else {
        return bindings::DM_MAPIO_KILL as c_int;
    };
    // SAFETY: a bio of a target of type `T`.
    let data = unsafe { per_bio_of::<T>(bio) };
    // SAFETY: a constructed target of type `T`.
    let target = unsafe { target::<T>(ti) };
    // SAFETY: dm core reserved the per-bio data for us; it is uninitialised
    // before map, so it is written, not assigned.
    unsafe { data.as_ptr().write(PerBio::new(target, ti)) };
    let mb = MapBio {
        ti: tip,
        bio,
        data,
        target,
    };
    mb.target.map(mb).0
}

/// # Safety
///
/// dm core's `end_io` callout for a bio `map_cb::<T>` mapped; `error` valid.
unsafe extern "C" fn end_io_cb<T: Target>(
    ti: *mut bindings::dm_target,
    bio: *mut bindings::bio,
    error: *mut bindings::blk_status_t,
) -> c_int {
    let (Some(bio), false) = (NonNull::new(bio), error.is_null()) else {
        return bindings::DM_ENDIO_DONE as c_int;
    };
    // SAFETY: a live bio mapped by `map_cb::<T>`, whose per-bio data it
    // initialised; `error` is valid for reads and writes.
    unsafe {
        let data = per_bio_of::<T>(bio);
        let st = data.as_ref();
        // Seen once: a bio handed back below completes here again when the
        // target ends it, and is then done.
        let remapped = st.remapped.swap(0, Ordering::Relaxed);
        if remapped != 0 && *error != bindings::BLK_STS_OK {
            // `remap_retryable` recorded the bio before it went down; what
            // the layers below changed (position, device, splits) is put
            // back, so that it can be cloned or sent again. dm core leaves
            // a bio to its target after DM_ENDIO_INCOMPLETE, and nothing
            // below touches it after completing it.
            bindings::fracture_bio_restore((*st.details.get()).as_ptr(), bio.as_ptr());
            (*bio.as_ptr()).bi_status = bindings::BLK_STS_OK;
            // As a fan-out of one clone that failed.
            st.failed.store(index_bit(remapped - 1), Ordering::Relaxed);
            st.timed_out.store(0, Ordering::Relaxed);
            // `map_cb` stored the target, alive while its bios are. Not
            // touched again here: the target may end it at once.
            fanout_finish::<T>(&*st.target, bio, data);
            return bindings::DM_ENDIO_INCOMPLETE as c_int;
        }
        let mut status = BlkStatus(*error);
        target::<T>(ti).end_io(BioKind::of(bio), &data.as_ref().user, &mut status);
        *error = status.0;
    }
    bindings::DM_ENDIO_DONE as c_int
}

/// # Safety
///
/// dm core's `status` callout: `result` is valid for `maxlen` bytes.
unsafe extern "C" fn status_cb<T: Target>(
    ti: *mut bindings::dm_target,
    kind: bindings::status_type_t,
    _flags: c_uint,
    result: *mut c_char,
    maxlen: c_uint,
) {
    let kind = match kind {
        bindings::status_type_t_STATUSTYPE_INFO => StatusType::Info,
        bindings::status_type_t_STATUSTYPE_TABLE => StatusType::Table,
        _ => StatusType::Ima,
    };
    // SAFETY: dm core's result buffer, ours for the call.
    let mut out = unsafe { Emitter::new(result.cast(), maxlen as usize) };
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.status(kind, &mut out);
}

/// # Safety
///
/// dm core's `message` callout: `argv` holds `argc` strings, `result` is
/// valid for `maxlen` bytes.
unsafe extern "C" fn message_cb<T: Target>(
    ti: *mut bindings::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
    result: *mut c_char,
    maxlen: c_uint,
) -> c_int {
    // SAFETY: the strings live for the duration of this call.
    let a = match unsafe { args(argc, argv) } {
        Ok(a) => a,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: dm core's result buffer, ours for the call.
    let mut out = unsafe { Emitter::new(result.cast(), maxlen as usize) };
    // SAFETY: a constructed target of type `T`.
    match unsafe { target::<T>(ti) }.message(&a, &mut out) {
        Ok(()) => i32::from(!out.is_empty()),
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// dm core's `iterate_devices` callout.
unsafe extern "C" fn iterate_devices_cb<T: Target>(
    ti: *mut bindings::dm_target,
    f: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
) -> c_int {
    let mut v = DeviceVisitor {
        ti,
        f,
        data,
        _p: PhantomData,
    };
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.iterate_devices(&mut v)
}

/// # Safety
///
/// dm core's `presuspend_undo` callout for a constructed target.
unsafe extern "C" fn presuspend_undo_cb<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.presuspend_undo();
}

/// # Safety
///
/// dm core's `presuspend` callout for a constructed target.
unsafe extern "C" fn presuspend_cb<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.presuspend();
}

/// # Safety
///
/// dm core's `postsuspend` callout for a constructed target.
unsafe extern "C" fn postsuspend_cb<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.postsuspend();
}

/// # Safety
///
/// dm core's `preresume` callout for a constructed target.
unsafe extern "C" fn preresume_cb<T: Target>(ti: *mut bindings::dm_target) -> c_int {
    // SAFETY: a constructed target of type `T`.
    match unsafe { target::<T>(ti) }.preresume() {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// dm core's `resume` callout for a constructed target.
unsafe extern "C" fn resume_cb<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target of type `T`.
    unsafe { target::<T>(ti) }.resume();
}
