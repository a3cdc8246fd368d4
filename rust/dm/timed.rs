// SPDX-License-Identifier: GPL-2.0

//! Timed bios: I/O to a device that may stop answering (a remote leg), sent
//! so that whoever waits for it can go on without it.
//!
//! A timed bio is not a clone sharing the source bio's pages: it carries its
//! own copy of the data, in pages from its [`TimedSet`]'s page pool, so that
//! the source bio may complete (and its pages be reused) while the device
//! still holds the copy. Each timed bio has a timer. Exactly one of two
//! things reports its outcome, once: the device completing it (success or
//! failure), or the timer firing first (timed out). A bio that timed out is
//! *late* until the device completes it; then its memory is freed and
//! nothing else happens. Late bios are counted per device for the whole
//! module ([`late_ios`]), so that any table (also one that replaced the
//! table that sent them) can keep from writing to the device by other means
//! until they are done (a late write must not land on top of newer data);
//! no new timed bio is sent to a device with late ones. Dropping a set
//! waits for every one of its bios.
//!
//! Allocations do not wait for the pools (`GFP_NOWAIT`): a late bio holds
//! its part of the set's reserves until the device answers, so waiting on
//! them could wait for a dead link. Every part of a copy has a reserve (the
//! bio, its vector table, its pages), so one copy in flight never finds
//! memory short. If memory is short all the same (several copies in
//! flight), a sender that may wait tries again every few milliseconds while
//! reclaim runs, for up to the timeout; a copy that still cannot be
//! allocated then counts as timed out (it could not be sent in time). A
//! sender may not wait once it has sent another timed copy under
//! `submit_bio`: that copy's timer runs while it waits on the submitter's
//! bio list.

use super::bindings;
use super::bio::BioSet;
use super::device::{Dev, DevT};
use super::kthread::{sleep_ms, wait_until_zero};
use super::log::worth_logging;
use core::ffi::c_void;
use core::ptr::{addr_of_mut, NonNull};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::types::Opaque;

/// How a timed bio ended, as reported to its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The device completed it successfully.
    Ok,
    /// The device completed it with an error, or it could not be sent.
    Failed,
    /// The device did not complete it in time; it is late now.
    TimedOut,
}

/// Vectors a bio carries inline (`BIO_INLINE_VECS`, private to the block
/// layer: block/blk.h). Should it change, a small copy's vector table may
/// come from a slab without reserve: the retry below still applies.
const BIO_INLINE_VECS: usize = 4;

/// How long a sender that found memory short waits before it tries again.
const ALLOC_RETRY_MS: u32 = 10;

/// A point in time, in jiffies.
struct Deadline(core::ffi::c_ulong);

impl Deadline {
    /// `ms` milliseconds from now.
    fn after_ms(ms: u32) -> Self {
        // SAFETY: both helpers take no arguments that could be invalid and
        // have no preconditions; they only read `jiffies` and compute.
        Self(unsafe {
            bindings::fracture_jiffies().wrapping_add(bindings::fracture_msecs_to_jiffies(ms))
        })
    }

    /// Whether it has come (`time_after_eq`, so that jiffies may wrap).
    fn passed(&self) -> bool {
        // SAFETY: no arguments, no preconditions: a read of `jiffies`.
        let now = unsafe { bindings::fracture_jiffies() };
        now.wrapping_sub(self.0) as core::ffi::c_long >= 0
    }
}

/// Slots of the late-I/O registry: more devices with late I/O at once than
/// this count in [`LATE_OVERFLOW`].
const LATE_SLOTS: usize = 64;

/// Late I/Os per device: bits 63..32 the device number, 31..0 the count.
/// A slot whose count is zero may be taken by another device.
static LATE_IOS: [AtomicU64; LATE_SLOTS] = [const { AtomicU64::new(0) }; LATE_SLOTS];

/// Late I/Os that found no free slot: while there are any, every device
/// counts as having late I/O (the safe direction).
static LATE_OVERFLOW: AtomicU32 = AtomicU32::new(0);

/// [`Record::slot`] of a late bio counted in [`LATE_OVERFLOW`].
const OVERFLOW_SLOT: u32 = u32::MAX;

/// Counts a late I/O to `devt`; returns the slot to give back to
/// [`late_done`]. Any context.
fn late_begin(devt: u32) -> u32 {
    for (i, slot) in LATE_IOS.iter().enumerate() {
        let mut v = slot.load(Ordering::Acquire);
        loop {
            let (dev, count) = ((v >> 32) as u32, v as u32);
            let new = if dev == devt {
                v + 1
            } else if count == 0 {
                (u64::from(devt) << 32) | 1
            } else {
                break;
            };
            match slot.compare_exchange(v, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return i as u32,
                Err(now) => v = now,
            }
        }
    }
    LATE_OVERFLOW.fetch_add(1, Ordering::AcqRel);
    OVERFLOW_SLOT
}

/// A late I/O counted by [`late_begin`] in `slot` completed. Any context.
fn late_done(slot: u32) {
    match LATE_IOS.get(slot as usize) {
        // The count is at least one (ours): no borrow from the device bits.
        Some(s) => s.fetch_sub(1, Ordering::AcqRel),
        None => u64::from(LATE_OVERFLOW.fetch_sub(1, Ordering::AcqRel)),
    };
}

/// I/Os to device `dev` that timed out and that it has not completed yet,
/// sent by any table of this module. Any context.
pub fn late_ios(dev: DevT) -> u32 {
    let mine: u32 = LATE_IOS
        .iter()
        .map(|s| s.load(Ordering::Acquire))
        .filter(|v| (v >> 32) as u32 == dev.0)
        .map(|v| v as u32)
        .sum();
    mine.max(LATE_OVERFLOW.load(Ordering::Acquire).min(1))
}

/// Called exactly once per timed bio with its outcome, from any context
/// (interrupt, softirq, the sender's); must not sleep. `ctx` and `index` are
/// what the sender gave [`TimedSet::submit`].
///
/// # Safety
///
/// Callers pass the `ctx` and `index` given with the function, once; the
/// sender keeps `ctx` valid until then.
pub(crate) type Report = unsafe fn(ctx: *mut c_void, index: u32, outcome: Outcome);

/// [`Record::state`]: sent, nothing reported yet.
const IN_FLIGHT: u32 = 0;
/// The device completed it first; reported.
const DONE: u32 = 1;
/// The timer fired first; reported as timed out, the bio is late.
const LATE: u32 = 2;

/// What a timed bio carries in front of itself (its bio set's front pad).
#[repr(C, align(8))]
struct Record {
    /// First: the timer callback gets the timer's address, which is the
    /// record's.
    timer: Opaque<bindings::timer_list>,
    state: AtomicU32,
    /// Two while in flight: one for the completion, one for the timer.
    /// The last one frees the bio.
    refs: AtomicU32,
    index: u32,
    /// The device, for the late-I/O registry.
    devt: u32,
    /// Where the registry counts it once late (written by the timer before
    /// it moves `state`, read by the completion after it saw `LATE`).
    slot: AtomicU32,
    set: *const Inner,
    report: Report,
    ctx: *mut c_void,
}

/// The record in front of `bio`.
///
/// # Safety
///
/// `bio` must come from the bio set of an [`Inner`] (whose front pad is a
/// `Record`).
unsafe fn record_of(bio: *mut bindings::bio) -> *mut Record {
    // SAFETY: the front pad is exactly one `Record`, right before the bio
    // (the caller's promise), so this stays inside the allocation.
    unsafe { bio.cast::<Record>().sub(1) }
}

/// A set's state: boxed so that records may point at it while the
/// [`TimedSet`] handle moves.
struct Inner {
    bs: BioSet,
    /// Pages for the copies of the data.
    pages: NonNull<bindings::mempool_t>,
    timeout_ms: u32,
    /// Bios of this set not yet freed.
    live: AtomicU32,
    /// Bios that ever timed out.
    timeouts: AtomicU64,
    /// Copies that could not be allocated in time.
    no_memory: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A late bio still uses the pools: wait for the device to complete
        // it (or fail it). Sleeps; process context (the target's dtr).
        wait_until_zero(
            || self.live.load(Ordering::Acquire) as usize,
            "timed-out I/Os to complete before the table goes away",
        );
        // SAFETY: the pool came from `fracture_page_pool_create` and no bio
        // holds a page of it any more (`live` is zero).
        unsafe { bindings::mempool_destroy(self.pages.as_ptr()) };
    }
}

/// Timed bios to one device: a bio set, a page pool and the timeout.
pub struct TimedSet {
    inner: KBox<Inner>,
}

// SAFETY: the pools are internally locked, the counters atomic; records
// point at `Inner`, which does not move and outlives them (see `Drop`).
unsafe impl Send for TimedSet {}
// SAFETY: as above; submission through `&self` is thread safe.
unsafe impl Sync for TimedSet {}

/// What [`flush_many`] waits on.
struct Waiter {
    done: Opaque<bindings::completion>,
    /// Flushes not reported yet, plus one while they are being sent.
    pending: AtomicU32,
    failed: AtomicU32,
    timed_out: AtomicU32,
}

/// [`Report`] for [`flush_many`].
///
/// # Safety
///
/// `ctx` must point at a live [`Waiter`] whose completion was initialised
/// and whose `pending` counts this report.
unsafe fn report_to_waiter(ctx: *mut c_void, index: u32, outcome: Outcome) {
    // SAFETY: the waiter lives until it is woken or sees `pending` reach
    // zero itself (the caller's promise); not touched after the decrement
    // unless this was the last report.
    let w = unsafe { &*ctx.cast::<Waiter>() };
    w.note(index, outcome);
    if w.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        // SAFETY: an initialised completion; `complete` may run in any
        // context; the waiter waits for it (its own decrement was not the
        // last).
        unsafe { bindings::complete(w.done.get()) };
    }
}

impl Waiter {
    fn note(&self, index: u32, outcome: Outcome) {
        let bit = super::bio::index_bit(index);
        match outcome {
            Outcome::Ok => {}
            Outcome::Failed => {
                self.failed.fetch_or(bit, Ordering::AcqRel);
            }
            Outcome::TimedOut => {
                self.timed_out.fetch_or(bit, Ordering::AcqRel);
            }
        }
    }
}

/// Flushes the volatile write cache of every `(set, device, index)` at once
/// with timed empty flushes, and waits until each has completed or timed
/// out (about the longest timeout). Returns the indexes whose flush failed
/// and those whose flush timed out, as masks. Sleeps.
pub fn flush_many<'a>(items: impl Iterator<Item = (&'a TimedSet, &'a Dev, u32)>) -> (u32, u32) {
    let w = Waiter {
        done: Opaque::uninit(),
        pending: AtomicU32::new(1),
        failed: AtomicU32::new(0),
        timed_out: AtomicU32::new(0),
    };
    // SAFETY: `w` is not moved from here on; the completion is initialised
    // before anything can complete it.
    unsafe { bindings::fracture_init_completion(w.done.get()) };
    let opf = bindings::req_op_REQ_OP_WRITE | bindings::REQ_PREFLUSH;
    let ctx = core::ptr::from_ref(&w).cast_mut().cast::<c_void>();
    for (set, dev, index) in items {
        w.pending.fetch_add(1, Ordering::AcqRel);
        // SAFETY: no source bio; `w` outlives every report: it is waited
        // for below before `w` goes away.
        // Process context, outside `submit_bio`: each flush is on its way
        // before the next is allocated, so waiting for memory is allowed.
        let sent = unsafe { set.send(dev, opf, 0, None, 0, index, report_to_waiter, ctx, true) };
        if let Err(outcome) = sent {
            w.note(index, outcome);
            // Not the last: the bias is held.
            w.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
    if w.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
        // SAFETY: an initialised completion, completed once by the last
        // report (which is not ours); process context.
        unsafe { bindings::wait_for_completion(w.done.get()) };
    }
    (
        w.failed.load(Ordering::Acquire),
        w.timed_out.load(Ordering::Acquire),
    )
}

impl TimedSet {
    /// A set whose bios time out after `timeout_ms`, with a page reserve
    /// for one bio of `max_bytes`. May sleep.
    pub fn new(timeout_ms: u32, max_bytes: u32) -> Result<Self> {
        let bs = BioSet::with_front_pad(core::mem::size_of::<Record>() as u32, true)?;
        let min = (max_bytes as usize).div_ceil(PAGE_SIZE).max(1);
        // SAFETY: plain allocation; no pointer arguments.
        let pages = unsafe { bindings::fracture_page_pool_create(min as i32) };
        let pages = NonNull::new(pages).ok_or(ENOMEM)?;
        // If this fails, dropping the `Inner` destroys the pool.
        let inner = KBox::new(
            Inner {
                bs,
                pages,
                timeout_ms: timeout_ms.max(1),
                live: AtomicU32::new(0),
                timeouts: AtomicU64::new(0),
                no_memory: AtomicU64::new(0),
            },
            GFP_KERNEL,
        )?;
        Ok(Self { inner })
    }

    /// Whether a bio of this set is in flight or late: a device that
    /// becomes the primary gets its writes timed until none is, so that
    /// none lands after a newer write.
    pub fn busy(&self) -> bool {
        self.inner.live.load(Ordering::Acquire) != 0
    }

    /// Bios that ever timed out.
    pub fn timeouts(&self) -> u64 {
        self.inner.timeouts.load(Ordering::Relaxed)
    }

    /// Sends a timed copy of write, flush, discard or write-zeroes bio
    /// `src` to `dev` at `sector` (same operation, flags and length; a
    /// write's data copied). `report(ctx, index, _)` is called once with
    /// its outcome, possibly before this returns. Returns the outcome to
    /// count instead, having sent and reported nothing, if the device has
    /// late I/O or the copy cannot be allocated in time (within the
    /// timeout, or at once if not `may_wait`) (`TimedOut`: it cannot be
    /// sent in time), or is too long (`Failed`).
    ///
    /// # Safety
    ///
    /// `src` must be a live bio whose data and position do not change
    /// during the call; `ctx` must stay valid for `report` until it is
    /// called. Process context: if memory is short and `may_wait`, this
    /// sleeps (for up to about the timeout) while reclaim runs.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn submit(
        &self,
        src: NonNull<bindings::bio>,
        dev: &Dev,
        sector: u64,
        index: u32,
        report: Report,
        ctx: *mut c_void,
        may_wait: bool,
    ) -> Result<(), Outcome> {
        let s = src.as_ptr();
        // SAFETY: `src` is live (the caller's promise).
        let (opf, size, op) = unsafe {
            (
                (*s).bi_opf,
                (*s).bi_iter.bi_size,
                bindings::fracture_bio_op(s),
            )
        };
        // Completed by interrupt, like the clones of a fan-out.
        let opf = opf & !bindings::REQ_POLLED;
        let data = op == bindings::req_op_REQ_OP_WRITE && size != 0;
        // SAFETY: as above.
        unsafe {
            self.send(
                dev,
                opf,
                size,
                data.then_some(src),
                sector,
                index,
                report,
                ctx,
                may_wait,
            )
        }
    }

    /// Flushes `dev`'s volatile write cache with a timed empty flush and
    /// waits for its outcome (at most about the timeout). Sleeps.
    pub fn flush(&self, dev: &Dev) -> Outcome {
        match flush_many(core::iter::once((self, dev, 0))) {
            (0, 0) => Outcome::Ok,
            (0, _) => Outcome::TimedOut,
            _ => Outcome::Failed,
        }
    }

    /// Allocates a timed bio of `size` bytes to `dev` with room for its
    /// record and a copy of `data`'s pages if given, without waiting;
    /// `None` if something could not be allocated (anything taken is given
    /// back).
    ///
    /// # Safety
    ///
    /// `data`, if any, is a live bio of `size` bytes, needing `nr_pages`
    /// pages (at most `BIO_MAX_VECS`).
    unsafe fn alloc(
        &self,
        dev: &Dev,
        opf: u32,
        size: u32,
        nr_pages: usize,
        data: Option<NonNull<bindings::bio>>,
    ) -> Option<NonNull<bindings::bio>> {
        let inner = &*self.inner;
        let pool = inner.pages.as_ptr();
        // A vector table longer than the bio's inline one comes from the
        // set's reserve only at its largest size: a smaller one comes from
        // a slab, with no fallback under GFP_NOWAIT (`bvec_alloc`).
        let vecs = if nr_pages > BIO_INLINE_VECS {
            bindings::BIO_MAX_VECS
        } else {
            nr_pages as u32
        };
        // SAFETY: the device is held open by `dev`; the bio set outlives its
        // bios (see `Inner`'s drop); `vecs` is at most BIO_MAX_VECS, so it
        // fits in a u16; GFP_NOWAIT never sleeps.
        let bio = NonNull::new(unsafe {
            bindings::bio_alloc_bioset(
                dev.raw_bdev(),
                vecs as u16,
                opf,
                bindings::GFP_NOWAIT,
                inner.bs.raw(),
            )
        })?;
        let b = bio.as_ptr();
        if let Some(src) = data {
            let mut left = size;
            while left != 0 {
                let len = left.min(PAGE_SIZE as u32);
                // SAFETY: a page pool; the allocation does not sleep.
                let page = unsafe { bindings::fracture_page_pool_alloc(pool) };
                if page.is_null()
                    // SAFETY: `b` is ours, with room for `nr_pages` vecs; the
                    // page is ours and at least `len` long.
                    || unsafe { bindings::bio_add_page(b, page, len, 0) } != len as i32
                {
                    // SAFETY: pages added so far came from `pool`; the bio
                    // was never submitted; a page not added goes back.
                    unsafe {
                        if !page.is_null() {
                            bindings::mempool_free(page.cast(), pool);
                        }
                        bindings::fracture_bio_free_pages(b, pool);
                        bindings::bio_put(b);
                    }
                    return None;
                }
                left -= len;
            }
            // SAFETY: both bios are live and `size` bytes long; the source
            // is only read.
            unsafe { bindings::bio_copy_data(b, src.as_ptr()) };
        } else {
            // SAFETY: `b` is ours and not submitted yet. A discard or
            // write-zeroes has a length and no data; a flush neither.
            unsafe { (*b).bi_iter.bi_size = size };
        }
        Some(bio)
    }

    /// Builds and submits one timed bio of `size` bytes, a copy of `data`'s
    /// if given.
    ///
    /// # Safety
    ///
    /// As [`TimedSet::submit`]; `data`, if any, is a live bio of `size`
    /// bytes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn send(
        &self,
        dev: &Dev,
        opf: u32,
        size: u32,
        data: Option<NonNull<bindings::bio>>,
        sector: u64,
        index: u32,
        report: Report,
        ctx: *mut c_void,
        may_wait: bool,
    ) -> Result<(), Outcome> {
        let inner = &*self.inner;
        let devt = dev.devt();
        if late_ios(devt) != 0 {
            return Err(Outcome::TimedOut);
        }
        let nr_pages = if data.is_some() {
            (size as usize).div_ceil(PAGE_SIZE)
        } else {
            0
        };
        if nr_pages > bindings::BIO_MAX_VECS as usize {
            // Cannot happen: the target caps its bios (max_io_len).
            return Err(Outcome::Failed);
        }
        // Set at the first failure only: the usual copy reads no clock.
        let mut deadline = None;
        let bio = loop {
            // SAFETY: `data` is live and `size` bytes long (the caller's
            // promise); `nr_pages` was checked above.
            if let Some(bio) = unsafe { self.alloc(dev, opf, size, nr_pages, data) } {
                break bio;
            }
            // Memory is short (the failed attempt woke reclaim): try again
            // shortly, unless the copy could not be sent in time anyway.
            let deadline = deadline.get_or_insert_with(|| Deadline::after_ms(inner.timeout_ms));
            if !may_wait || deadline.passed() || late_ios(devt) != 0 {
                let n = inner.no_memory.fetch_add(1, Ordering::Relaxed);
                if worth_logging(n) {
                    crate::dm_warn!(
                        "no memory for a timed I/O of {} bytes in time ({} so far): counted as timed out",
                        size,
                        n + 1
                    );
                }
                return Err(Outcome::TimedOut);
            }
            sleep_ms(ALLOC_RETRY_MS);
        };
        let b = bio.as_ptr();
        // SAFETY: the record in front of `b` is ours until submission; the
        // timer is set up before it can fire; `inner` outlives the bio.
        unsafe {
            (*b).bi_iter.bi_sector = sector;
            (*b).bi_end_io = Some(timed_endio);
            let rec = record_of(b);
            addr_of_mut!((*rec).state).write(AtomicU32::new(IN_FLIGHT));
            addr_of_mut!((*rec).refs).write(AtomicU32::new(2));
            addr_of_mut!((*rec).index).write(index);
            addr_of_mut!((*rec).devt).write(devt.0);
            addr_of_mut!((*rec).slot).write(AtomicU32::new(OVERFLOW_SLOT));
            addr_of_mut!((*rec).set).write(inner);
            addr_of_mut!((*rec).report).write(report);
            addr_of_mut!((*rec).ctx).write(ctx);
            let timer = (*rec).timer.get();
            bindings::fracture_timer_setup(timer, Some(timer_fired));
            inner.live.fetch_add(1, Ordering::Relaxed);
            bindings::fracture_timer_arm(timer, inner.timeout_ms);
            bindings::submit_bio_noacct(b);
        }
        Ok(())
    }
}

/// Drops one reference to a timed bio's record; the last frees the pages
/// and the bio, then tells the set.
///
/// # Safety
///
/// `rec` is the record of a live timed bio and the caller holds one of its
/// references, which it gives up.
unsafe fn put(rec: *mut Record) {
    // SAFETY: live while the caller holds a reference.
    let r = unsafe { &*rec };
    if r.refs.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    let set = r.set;
    // SAFETY: the bio follows its record; ours alone now (both the timer and
    // the completion are done with it); `set` outlives it.
    unsafe {
        let bio = rec.add(1).cast::<bindings::bio>();
        bindings::fracture_bio_free_pages(bio, (*set).pages.as_ptr());
        bindings::bio_put(bio);
        // Last: the set may go away once this reaches zero.
        (*set).live.fetch_sub(1, Ordering::Release);
    }
}

/// Completion of a timed bio.
///
/// # Safety
///
/// Called by the block layer only, for a bio sent by [`TimedSet::send`].
unsafe extern "C" fn timed_endio(bio: *mut bindings::bio) {
    // SAFETY: a timed bio, so a record is in front of it; this completion
    // holds a reference to it.
    let rec = unsafe { record_of(bio) };
    // SAFETY: as above.
    let r = unsafe { &*rec };
    // SAFETY: the bio is live until the last reference goes.
    let ok = unsafe { (*bio).bi_status } == bindings::BLK_STS_OK;
    // A timer deactivated here will not run: its reference is ours to drop
    // (not the last: ours is still held). `timer_delete` is irq-safe.
    // SAFETY: the timer was set up before submission.
    if unsafe { bindings::timer_delete(r.timer.get()) } != 0 {
        r.refs.fetch_sub(1, Ordering::AcqRel);
    }
    match r
        .state
        .compare_exchange(IN_FLIGHT, DONE, Ordering::AcqRel, Ordering::Acquire)
    {
        // SAFETY: the first and only report; `ctx` is valid until it.
        Ok(_) => unsafe {
            (r.report)(
                r.ctx,
                r.index,
                if ok { Outcome::Ok } else { Outcome::Failed },
            )
        },
        // Reported as timed out already: only the late count moves (the
        // timer set `slot` before it moved the state).
        Err(_) => late_done(r.slot.load(Ordering::Acquire)),
    }
    // SAFETY: this completion's reference.
    unsafe { put(rec) };
}

/// Timer of a timed bio: the device did not complete it in time.
///
/// # Safety
///
/// Called by the timer code only, for the timer of a [`Record`].
unsafe extern "C" fn timer_fired(timer: *mut bindings::timer_list) {
    // The timer is the record's first field (`repr(C)`, `Opaque` is
    // transparent).
    let rec = timer.cast::<Record>();
    // SAFETY: the timer holds a reference to its record until `put` below.
    let r = unsafe { &*rec };
    // SAFETY: the set outlives its bios.
    let set = unsafe { &*r.set };
    // Counted before the state moves, so that the device never looks free
    // of late I/O while this one is, and a completion racing with this one
    // finds the slot to give back.
    r.slot.store(late_begin(r.devt), Ordering::Release);
    if r.state
        .compare_exchange(IN_FLIGHT, LATE, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        set.timeouts.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the first and only report; `ctx` is valid until it.
        unsafe { (r.report)(r.ctx, r.index, Outcome::TimedOut) };
    } else {
        late_done(r.slot.load(Ordering::Acquire));
    }
    // SAFETY: the timer's reference. Freeing a timer from its own callback
    // is allowed: the timer code does not touch it after calling us.
    unsafe { put(rec) };
}
