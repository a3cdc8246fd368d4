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
//! nothing else happens. The set counts its late bios, so that the owner can
//! wait for them before it writes to the device by other means (a late write
//! must not land on top of newer data); dropping the set waits for every one
//! of its bios.

use super::bindings;
use super::bio::BioSet;
use super::device::Dev;
use super::kthread::sleep_ms;
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

/// Called exactly once per timed bio with its outcome, from any context
/// (interrupt, softirq, the sender's); must not sleep. `ctx` and `index` are
/// what the sender gave [`TimedSet::submit`].
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
    /// Bios that timed out and are not completed yet.
    late: AtomicU32,
    /// Bios that ever timed out.
    timeouts: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A late bio still uses the pools: wait for the device to complete
        // it (or fail it). Sleeps; process context (the target's dtr).
        let mut waited_ms = 0u32;
        while self.live.load(Ordering::Acquire) != 0 {
            if waited_ms % 10_000 == 0 {
                crate::dm_warn!(
                    "waiting for {} timed-out I/Os to complete before the table goes away",
                    self.live.load(Ordering::Relaxed)
                );
            }
            sleep_ms(10);
            waited_ms = waited_ms.wrapping_add(10);
        }
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

/// What [`TimedSet::flush`] waits on.
struct Waiter {
    done: Opaque<bindings::completion>,
    outcome: AtomicU32,
}

/// [`Report`] for [`TimedSet::flush`].
///
/// # Safety
///
/// `ctx` must point at a live [`Waiter`] whose completion was initialised.
unsafe fn report_to_waiter(ctx: *mut c_void, _index: u32, outcome: Outcome) {
    // SAFETY: the waiter lives until `complete` woke it (the caller's
    // promise); it is not touched after that.
    let w = unsafe { &*ctx.cast::<Waiter>() };
    w.outcome.store(outcome as u32, Ordering::Release);
    // SAFETY: an initialised completion; `complete` may run in any context.
    unsafe { bindings::complete(w.done.get()) };
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
                late: AtomicU32::new(0),
                timeouts: AtomicU64::new(0),
            },
            GFP_KERNEL,
        )?;
        Ok(Self { inner })
    }

    /// Bios that timed out and that the device has not completed yet.
    pub fn late(&self) -> u32 {
        self.inner.late.load(Ordering::Acquire)
    }

    /// Bios that ever timed out.
    pub fn timeouts(&self) -> u64 {
        self.inner.timeouts.load(Ordering::Relaxed)
    }

    /// Sends a timed copy of write, flush, discard or write-zeroes bio
    /// `src` to `dev` at `sector` (same operation, flags and length; a
    /// write's data copied). `report(ctx, index, _)` is called once with
    /// its outcome, possibly before this returns. Returns `false`, having
    /// sent nothing and reported nothing, if the copy cannot be made.
    ///
    /// # Safety
    ///
    /// `src` must be a live bio whose data and position do not change
    /// during the call; `ctx` must stay valid for `report` until it is
    /// called. Process context (allocations may sleep).
    pub(crate) unsafe fn submit(
        &self,
        src: NonNull<bindings::bio>,
        dev: &Dev,
        sector: u64,
        index: u32,
        report: Report,
        ctx: *mut c_void,
    ) -> bool {
        let s = src.as_ptr();
        // SAFETY: `src` is live (the caller's promise).
        let (opf, size, op) = unsafe { ((*s).bi_opf, (*s).bi_iter.bi_size, bindings::fracture_bio_op(s)) };
        let data = op == bindings::req_op_REQ_OP_WRITE && size != 0;
        // SAFETY: as above.
        unsafe { self.send(dev, opf, size, data.then_some(src), sector, index, report, ctx) }
    }

    /// Flushes `dev`'s volatile write cache with a timed empty flush and
    /// waits for its outcome (at most about the timeout). Sleeps.
    pub fn flush(&self, dev: &Dev, index: u32) -> Outcome {
        let w = Waiter {
            done: Opaque::uninit(),
            outcome: AtomicU32::new(Outcome::Failed as u32),
        };
        // SAFETY: `w` is not moved from here on; the completion is
        // initialised before anything can complete it.
        unsafe { bindings::fracture_init_completion(w.done.get()) };
        let opf = bindings::req_op_REQ_OP_WRITE | bindings::REQ_PREFLUSH;
        let ctx = core::ptr::from_ref(&w).cast_mut().cast::<c_void>();
        // SAFETY: no source bio; `w` outlives the report, which is waited
        // for below before `w` goes away.
        let sent = unsafe { self.send(dev, opf, 0, None, 0, index, report_to_waiter, ctx) };
        if !sent {
            return Outcome::Failed;
        }
        // SAFETY: an initialised completion, completed exactly once by the
        // report; process context.
        unsafe { bindings::wait_for_completion(w.done.get()) };
        match w.outcome.load(Ordering::Acquire) {
            x if x == Outcome::Ok as u32 => Outcome::Ok,
            x if x == Outcome::TimedOut as u32 => Outcome::TimedOut,
            _ => Outcome::Failed,
        }
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
    ) -> bool {
        let inner = &*self.inner;
        let pool = inner.pages.as_ptr();
        let nr_pages = if data.is_some() {
            (size as usize).div_ceil(PAGE_SIZE)
        } else {
            0
        };
        if nr_pages > bindings::BIO_MAX_VECS as usize {
            // Cannot happen: the target caps its bios (max_io_len).
            return false;
        }
        // SAFETY: the device is held open by `dev`; the bio set outlives its
        // bios (see `Inner`'s drop); GFP_NOIO in process context (the
        // caller's promise) waits on the pool rather than fail.
        let bio = unsafe {
            bindings::bio_alloc_bioset(dev.raw_bdev(), nr_pages as u16, opf, bindings::GFP_NOIO, inner.bs.raw())
        };
        let Some(bio) = NonNull::new(bio) else {
            return false;
        };
        let b = bio.as_ptr();
        if let Some(src) = data {
            let mut left = size;
            while left != 0 {
                let len = left.min(PAGE_SIZE as u32);
                // SAFETY: a page pool; GFP_NOIO in process context.
                let page = unsafe { bindings::fracture_page_pool_alloc(pool) };
                // SAFETY: `b` is ours, with room for `nr_pages` vecs; the
                // page is ours and at least `len` long.
                if page.is_null() || unsafe { bindings::bio_add_page(b, page, len, 0) } != len as i32 {
                    // SAFETY: pages added so far came from `pool`; the bio
                    // was never submitted; a page not added goes back.
                    unsafe {
                        if !page.is_null() {
                            bindings::mempool_free(page.cast(), pool);
                        }
                        bindings::fracture_bio_free_pages(b, pool);
                        bindings::bio_put(b);
                    }
                    return false;
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
        // SAFETY: the record in front of `b` is ours until submission; the
        // timer is set up before it can fire; `inner` outlives the bio.
        unsafe {
            (*b).bi_iter.bi_sector = sector;
            (*b).bi_end_io = Some(timed_endio);
            let rec = record_of(b);
            addr_of_mut!((*rec).state).write(AtomicU32::new(IN_FLIGHT));
            addr_of_mut!((*rec).refs).write(AtomicU32::new(2));
            addr_of_mut!((*rec).index).write(index);
            addr_of_mut!((*rec).set).write(inner);
            addr_of_mut!((*rec).report).write(report);
            addr_of_mut!((*rec).ctx).write(ctx);
            let timer = (*rec).timer.get();
            bindings::fracture_timer_setup(timer, Some(timer_fired));
            inner.live.fetch_add(1, Ordering::Relaxed);
            bindings::fracture_timer_arm(timer, inner.timeout_ms);
            bindings::submit_bio_noacct(b);
        }
        true
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
    // SAFETY: the set outlives its bios.
    let set = unsafe { &*r.set };
    match r.state.compare_exchange(IN_FLIGHT, DONE, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: the first and only report; `ctx` is valid until it.
        Ok(_) => unsafe {
            (r.report)(r.ctx, r.index, if ok { Outcome::Ok } else { Outcome::Failed })
        },
        // Reported as timed out already: only the late count moves.
        Err(_) => {
            set.late.fetch_sub(1, Ordering::AcqRel);
        }
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
    // Counted before the state moves, so that a completion racing with
    // this one never takes the count below what it will be.
    set.late.fetch_add(1, Ordering::AcqRel);
    if r.state.compare_exchange(IN_FLIGHT, LATE, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        set.timeouts.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the first and only report; `ctx` is valid until it.
        unsafe { (r.report)(r.ctx, r.index, Outcome::TimedOut) };
    } else {
        set.late.fetch_sub(1, Ordering::AcqRel);
    }
    // SAFETY: the timer's reference. Freeing a timer from its own callback
    // is allowed: the timer code does not touch it after calling us.
    unsafe { put(rec) };
}
