// SPDX-License-Identifier: GPL-2.0

//! The recovery thread (`kfracture_rec`): copies the regions set in the
//! bitmaps of recovering legs from the primary with dm-kcopyd, up to
//! [`COPY_SLOTS`] at a time, and clears each bit once its copy is on the leg
//! and the leg was flushed. A leg whose last bit is cleared is in sync
//! again.
//!
//! Copies are rate-limited (`recovery_rate`) and fewer run while host writes
//! are coming in ([`BUSY_SLOTS`]). Suspending the target parks the thread
//! with no copy in flight and everything committed; it resumes where the
//! bitmaps say. The thread also probes legs fractured by a failure every
//! `probe_interval` seconds and starts their recovery when a write works
//! again, and runs the online `verify`: in-sync secondaries compared with
//! the primary region by region, a region that differs set in the leg's
//! fracture bitmap (the leg split), for a `rejoin` to copy. `verify check`
//! compares the same way and only counts the regions that differ.

use super::metadata::{legs_of, Shared, VerifyMark, COPY_SLOTS};
use crate::dm::io::MAX_BUFFER_BYTES;
use crate::format::LegState;
use super::{flush_fractured, late_legs, Leg};
use crate::dm::device::Dev;
use crate::dm::io::{Block, IoClient};
use crate::dm::kcopyd::{CopyJob, Kcopyd};
use crate::dm::kthread::{now_ns, sleep_ms, yield_cpu, ThreadCtx, Waker};
use crate::rate::RateLimit;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::new_condvar;
use kernel::new_mutex;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::{Arc, CondVar, Mutex, SpinLock};

/// Copies in flight while host writes are running (instead of
/// [`COPY_SLOTS`]): recovery yields most of the legs' bandwidth to them.
pub(crate) const BUSY_SLOTS: usize = 2;

/// How often a recovering leg with late timed I/Os is looked at again.
const LATE_POLL_MS: u32 = 100;

/// Pause after a pass over the bitmaps that cleared nothing (every copy
/// raced with a host write), before the next.
const IDLE_PASS_MS: u32 = 100;

/// Bytes `verify` reads from each leg at a time.
const VERIFY_CHUNK: usize = if MAX_BUFFER_BYTES < 64 * 1024 {
    MAX_BUFFER_BYTES
} else {
    64 * 1024
};

/// Times `verify` compares a region again when host writes to it keep
/// racing with the comparison, before it counts the region as skipped.
const VERIFY_TRIES: u32 = 20;

/// Pause before a region that raced with a host write is compared again.
const VERIFY_RETRY_MS: u32 = 10;

/// Where a `verify` stands.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyState {
    /// None since the table was loaded.
    None,
    /// Comparing.
    Running,
    /// Every region was looked at.
    Done,
    /// Stopped by `verify cancel`, a failover or a metadata failure.
    Cancelled,
}

/// The current or last `verify`, as status shows it.
#[derive(Clone, Copy)]
pub(crate) struct VerifyProgress {
    pub(crate) state: VerifyState,
    /// Moves on with every `verify` started.
    generation: u64,
    /// `verify check`: regions found different are counted, not marked.
    pub(crate) check: bool,
    /// The legs asked for.
    pub(crate) legs: u32,
    /// Leg-regions compared (one per leg and region).
    pub(crate) done: u64,
    /// Leg-regions to compare.
    pub(crate) total: u64,
    /// Leg-regions found different (or unreadable on the leg); marked out
    /// of sync unless `check`.
    pub(crate) mismatches: u64,
    /// Leg-regions not compared: host writes to them kept racing.
    pub(crate) skipped: u64,
}

impl VerifyProgress {
    /// What the kernel log calls this verify.
    pub(crate) fn name(&self) -> &'static str {
        verify_name(self.check)
    }
}

/// What the kernel log calls a verify, or a `verify check`.
fn verify_name(check: bool) -> &'static str {
    if check {
        "verify check"
    } else {
        "verify"
    }
}

/// Why a `verify` cannot start or be cancelled.
pub(crate) enum VerifyRefused {
    /// One is running: its progress.
    Running(VerifyProgress),
    /// None is running.
    NotRunning,
}

/// State shared by the target and its recovery thread.
#[pin_data]
pub(crate) struct Recovery {
    pub(crate) shared: Arc<Shared>,
    legs: Arc<KVec<Leg>>,
    /// Rate cap in KiB/s; 0 = none.
    pub(crate) rate: AtomicU64,
    /// Probe interval in ms; 0 = no probing.
    probe_ms: u32,
    /// Legs whose recovery stopped on a primary read error (until the next
    /// `rejoin`, `rebuild` or resume).
    pub(crate) stalled: AtomicU32,
    /// Set while the target is suspended (and before the first resume).
    paused: AtomicBool,
    /// Something changed (a leg rejoined, the rate): look again.
    kick: AtomicBool,
    /// Moves on with every `unpause`: a parked thread leaves `park` when it
    /// changes (not on `paused` alone, which a quick `pause` may set again
    /// before the thread ran).
    resumes: AtomicU64,
    /// The thread acknowledged `paused`: no copy in flight.
    #[pin]
    parked: Mutex<bool>,
    #[pin]
    parked_cv: CondVar,
    /// For probes and verify.
    io: IoClient,
    /// The current or last `verify`.
    #[pin]
    verify: SpinLock<VerifyProgress>,
}

impl Recovery {
    pub(crate) fn new(
        shared: Arc<Shared>,
        legs: Arc<KVec<Leg>>,
        rate: u64,
        probe_s: u64,
    ) -> Result<Arc<Self>> {
        let io = IoClient::new()?;
        Arc::pin_init(
            pin_init!(Self {
                shared,
                legs,
                rate: AtomicU64::new(rate),
                probe_ms: u32::try_from(probe_s.saturating_mul(1000)).unwrap_or(u32::MAX),
                stalled: AtomicU32::new(0),
                paused: AtomicBool::new(true),
                kick: AtomicBool::new(false),
                resumes: AtomicU64::new(0),
                parked <- new_mutex!(false, "fracture_parked"),
                parked_cv <- new_condvar!("fracture_parked"),
                io,
                verify <- new_spinlock!(
                    VerifyProgress {
                        state: VerifyState::None,
                        generation: 0,
                        check: false,
                        legs: 0,
                        done: 0,
                        total: 0,
                        mismatches: 0,
                        skipped: 0,
                    },
                    "fracture_verify"
                ),
            }),
            GFP_KERNEL,
        )
    }

    /// Stops copying and waits until no copy is in flight and what was
    /// copied is committed. Sleeps.
    pub(crate) fn pause(&self, waker: &Waker) {
        self.paused.store(true, Ordering::SeqCst);
        waker.wake();
        let mut parked = self.parked.lock();
        while !*parked {
            self.parked_cv.wait(&mut parked);
        }
    }

    /// Lets the thread copy again.
    pub(crate) fn unpause(&self, waker: &Waker) {
        // Un-park here, not in the thread: a `pause` right after this must
        // wait for the thread to park again, not see the old acknowledgement.
        *self.parked.lock() = false;
        self.paused.store(false, Ordering::SeqCst);
        self.resumes.fetch_add(1, Ordering::SeqCst);
        waker.wake();
    }

    /// Starts a `verify` (with `check`: a `verify check`) of the in-sync
    /// secondaries `legs` (the thread picks it up), over `nr_regions`
    /// regions each.
    pub(crate) fn start_verify(
        &self,
        waker: &Waker,
        legs: u32,
        nr_regions: u64,
        check: bool,
    ) -> Result<(), VerifyRefused> {
        {
            let mut v = self.verify.lock();
            if v.state == VerifyState::Running {
                return Err(VerifyRefused::Running(*v));
            }
            *v = VerifyProgress {
                state: VerifyState::Running,
                generation: v.generation + 1,
                check,
                legs,
                done: 0,
                total: nr_regions * u64::from(legs.count_ones()),
                mismatches: 0,
                skipped: 0,
            };
        }
        self.kick(waker, 0);
        Ok(())
    }

    /// Stops the running `verify` (what it found so far stays marked) or
    /// `verify check`.
    pub(crate) fn cancel_verify(&self, waker: &Waker) -> Result<VerifyProgress, VerifyRefused> {
        let p = {
            let mut v = self.verify.lock();
            if v.state != VerifyState::Running {
                return Err(VerifyRefused::NotRunning);
            }
            v.state = VerifyState::Cancelled;
            *v
        };
        self.kick(waker, 0);
        Ok(p)
    }

    /// The current or last `verify`.
    pub(crate) fn verify_progress(&self) -> VerifyProgress {
        *self.verify.lock()
    }

    /// Looks at the legs again: a leg rejoined (its stall, if any, is
    /// lifted), the rate changed.
    pub(crate) fn kick(&self, waker: &Waker, unstall: u32) {
        self.stalled.fetch_and(!unstall, Ordering::SeqCst);
        self.kick.store(true, Ordering::SeqCst);
        waker.wake();
    }
}

/// What a kcopyd copy reports to.
struct Job {
    done: AtomicBool,
    read_failed: AtomicBool,
    write_failed: AtomicU64,
    waker: Waker,
}

impl CopyJob for Job {
    fn done(&self, read_failed: bool, write_failed: u64) {
        self.read_failed.store(read_failed, Ordering::Relaxed);
        self.write_failed.store(write_failed, Ordering::Relaxed);
        self.done.store(true, Ordering::Release);
        // The client's destruction (at the end of the thread function)
        // waits for this callback to return, so the thread is still there.
        self.waker.wake();
    }
}

/// A copy in flight: the region, the legs it goes to (in the order given
/// to kcopyd) and the leg it reads from (the primary when it started).
#[derive(Clone, Copy)]
struct InFlight {
    region: u64,
    legs: u32,
    source: u32,
}

/// The recovery thread's working state.
struct Worker<'a> {
    r: &'a Recovery,
    kc: Kcopyd<'a, Job>,
    busy: [Option<InFlight>; COPY_SLOTS],
    cursor: u64,
    cleared_this_pass: u64,
    limiter: RateLimit,
    last_host_writes: u64,
    next_probe_ns: u64,
    probe_buf: Block,
    /// The primary when last looked at: a stall on its read errors ends
    /// when another leg takes over.
    primary: u32,
    /// The `verify` being run, if any.
    verify: Option<VerifyRun>,
}

/// The recovery thread's side of a running `verify`.
struct VerifyRun {
    /// [`VerifyProgress::generation`] of the verify.
    generation: u64,
    /// Legs still compared.
    legs: u32,
    /// Legs this verify split (they stay compared while fractured).
    split: u32,
    /// `verify check`: mark nothing, split nothing, write no metadata.
    check: bool,
    /// Legs this check found different (for one log line per leg).
    differed: u32,
    /// The primary when it started: a failover ends it.
    primary: u32,
    /// The next region.
    cursor: u64,
    /// Comparisons of `cursor` that raced with a host write.
    tries: u32,
    /// Read buffers: the primary's, a leg's.
    ours: Block,
    theirs: Block,
}

/// The thread function.
pub(crate) fn recovery_thread(r: &Recovery, ctx: &ThreadCtx) {
    let Some(waker) = ctx.waker() else {
        return;
    };
    let kc = KVec::with_capacity(COPY_SLOTS, GFP_KERNEL).map_err(Error::from).and_then(|mut jobs| {
        for _ in 0..COPY_SLOTS {
            jobs.push(
                Job {
                    done: AtomicBool::new(false),
                    read_failed: AtomicBool::new(false),
                    write_failed: AtomicU64::new(0),
                    waker,
                },
                GFP_KERNEL,
            )?;
        }
        Kcopyd::new(jobs)
    });
    let (kc, probe_buf) = match (kc, Block::new()) {
        (Ok(kc), Ok(b)) => (kc, b),
        _ => {
            crate::dm_err!("recovery thread: out of memory; recovery is disabled for this table");
            // Still honour suspend, so that it does not hang.
            while !ctx.should_stop() {
                if r.paused.load(Ordering::SeqCst) {
                    park(r, ctx);
                } else {
                    ctx.wait(None, || r.paused.load(Ordering::SeqCst));
                }
            }
            return;
        }
    };
    let now = now_ns();
    let mut w = Worker {
        r,
        kc,
        busy: [None; COPY_SLOTS],
        cursor: 0,
        cleared_this_pass: 0,
        limiter: RateLimit::new(r.rate.load(Ordering::Relaxed), now),
        last_host_writes: 0,
        next_probe_ns: now.saturating_add(u64::from(r.probe_ms) * 1_000_000),
        probe_buf,
        primary: r.shared.primary(),
        verify: None,
    };
    w.run(ctx);
    // Dropping `w` destroys the kcopyd client, which waits for every
    // callback: no job or waker is used after this function returns.
}

/// Tells `pause` that the thread is parked, waits for the next `unpause`
/// (the caller then looks at `paused` again and parks again if it is set).
fn park(r: &Recovery, ctx: &ThreadCtx) {
    let seen = r.resumes.load(Ordering::SeqCst);
    {
        let mut parked = r.parked.lock();
        *parked = true;
        r.parked_cv.notify_all();
    }
    ctx.wait(None, || r.resumes.load(Ordering::SeqCst) != seen);
}

impl<'a> Worker<'a> {
    fn in_flight(&self) -> usize {
        self.busy.iter().filter(|b| b.is_some()).count()
    }

    fn any_done(&self) -> bool {
        self.kc
            .jobs()
            .iter()
            .zip(self.busy.iter())
            .any(|(j, b)| b.is_some() && j.done.load(Ordering::Acquire))
    }

    fn run(&mut self, ctx: &ThreadCtx) {
        loop {
            let mut changed = self.reap();
            let stop = ctx.should_stop();
            if stop || self.r.paused.load(Ordering::SeqCst) {
                if self.in_flight() != 0 {
                    if stop {
                        // `wait` returns at once once stopping: sleep.
                        sleep_ms(10);
                    } else {
                        ctx.wait(Some(20), || self.any_done());
                    }
                    continue;
                }
                if stop {
                    return;
                }
                park(self.r, ctx);
                continue;
            }
            self.r.kick.store(false, Ordering::SeqCst);
            let primary = self.r.shared.primary();
            if primary != self.primary {
                self.primary = primary;
                self.r.stalled.store(0, Ordering::SeqCst);
            }
            changed |= self.probe();
            changed |= self.finish_legs();
            if changed {
                self.r.shared.raise_event();
            }
            let mut timeout = self.issue();
            if let Some(ms) = self.verify_step(ctx) {
                timeout = Some(timeout.map_or(ms, |t| t.min(ms)));
            }
            ctx.wait(timeout, || {
                self.any_done()
                    || self.r.kick.load(Ordering::SeqCst)
                    || self.r.paused.load(Ordering::SeqCst)
            });
        }
    }

    /// Ends the copies that completed: flushes the legs written, clears the
    /// bits, commits. Returns whether a leg changed state.
    fn reap(&mut self) -> bool {
        let shared = &self.r.shared;
        let mut done = [None; COPY_SLOTS];
        let mut written = 0u32;
        let mut failed = 0u32;
        // A recovery that stops raises an event (the status shows it).
        let mut stalled_now = false;
        for (i, (job, slot)) in self.kc.jobs().iter().zip(self.busy.iter_mut()).enumerate() {
            let Some(copy) = *slot else { continue };
            if !job.done.load(Ordering::Acquire) {
                continue;
            }
            *slot = None;
            job.done.store(false, Ordering::Relaxed);
            let mut ok = copy.legs;
            if job.read_failed.load(Ordering::Relaxed) && copy.source != shared.primary() {
                // Read from a primary that failed over since: the bit
                // stays and the region is copied again from the new one.
                ok = 0;
            } else if job.read_failed.load(Ordering::Relaxed) {
                shared.stats.copy_read_errors.fetch_add(1, Ordering::Relaxed);
                let legs = copy.legs & !self.r.stalled.fetch_or(copy.legs, Ordering::SeqCst);
                if legs != 0 {
                    crate::dm_err!(
                        "recovery: primary read error in region {}; recovery of legs {:#x} stopped (nothing marked in sync); rejoin to retry",
                        copy.region,
                        legs
                    );
                    stalled_now = true;
                }
                ok = 0;
            }
            let wf = job.write_failed.load(Ordering::Relaxed);
            if wf != 0 {
                shared.stats.copy_write_errors.fetch_add(1, Ordering::Relaxed);
                // Bit i of `wf` is the i-th leg of the copy, lowest first.
                for (i, leg) in legs_of(copy.legs).enumerate() {
                    if wf & (1 << i) != 0 {
                        ok &= !(1 << leg);
                        failed |= 1 << leg;
                    }
                }
            }
            written |= ok;
            done[i] = Some(ok);
        }
        if done.iter().all(Option::is_none) {
            return stalled_now;
        }
        // The copies are on the legs' caches: flush before any bit goes.
        for leg in legs_of(written) {
            if let Err(e) = self.r.legs[leg as usize].dev.flush() {
                crate::dm_warn!("recovery: leg {} failed a flush ({:?})", leg, e);
                failed |= 1 << leg;
            }
        }
        for (slot, ok) in done.iter().enumerate() {
            if let Some(ok) = *ok {
                self.cleared_this_pass += shared.finish_copy(slot, ok & !failed);
            }
        }
        let mut changed = stalled_now;
        if failed != 0 && shared.recovery_failed(failed) {
            crate::dm_warn!(
                "recovery: legs {:#x} failed a copy: fractured again, their bits stay",
                failed
            );
            changed = true;
        }
        changed |= self.finish_legs_nocommit();
        shared.commit();
        changed
    }

    /// Recovering legs with no bit left become in sync (committed).
    fn finish_legs(&mut self) -> bool {
        if self.r.shared.recovering.load(Ordering::SeqCst) == 0 || self.in_flight() != 0 {
            return false;
        }
        let changed = self.finish_legs_nocommit();
        if changed {
            self.r.shared.commit();
        }
        changed
    }

    fn finish_legs_nocommit(&mut self) -> bool {
        let legs = self.r.shared.complete_recovered();
        for leg in legs_of(legs) {
            crate::dm_info!(
                "leg {} ({}) is in sync again; its fracture log is empty",
                leg,
                self.r.legs[leg as usize].dev.name()
            );
        }
        legs != 0
    }

    /// Probes the legs fractured by a failure if it is time to: a read of
    /// one block and a write of the same data back. A leg that takes both
    /// starts recovery. Returns whether one did.
    fn probe(&mut self) -> bool {
        if self.r.probe_ms == 0 || now_ns() < self.next_probe_ns {
            return false;
        }
        self.next_probe_ns = now_ns().saturating_add(u64::from(self.r.probe_ms) * 1_000_000);
        let shared = &self.r.shared;
        let mut rejoined = 0;
        // Not a leg with late timed I/Os: the probe would hang behind them,
        // and a late write must not land after the copies.
        for leg in legs_of(shared.failed_legs() & !late_legs(&self.r.legs)) {
            shared.stats.probes.fetch_add(1, Ordering::Relaxed);
            // A fractured leg gets no other I/O, so writing back what was
            // just read changes nothing; a dirty region is used if there is
            // one, where nothing on the leg matters.
            let sector = shared
                .first_dirty(leg)
                .map_or(0, |r| shared.geometry().sectors_of(r).start);
            let dev = &self.r.legs[leg as usize].dev;
            let ok = self.r.io.read(dev, sector, &mut self.probe_buf).is_ok()
                && self.r.io.write(dev, sector, &self.probe_buf, true).is_ok();
            if ok && matches!(shared.rejoin(leg), Ok(true)) {
                shared.stats.probes_ok.fetch_add(1, Ordering::Relaxed);
                crate::dm_info!(
                    "probe: leg {} ({}) takes writes again; recovery started",
                    leg,
                    dev.name()
                );
                rejoined |= 1 << leg;
            }
        }
        if rejoined != 0 {
            self.r.stalled.fetch_and(!rejoined, Ordering::SeqCst);
            shared.commit();
        }
        rejoined != 0
    }

    /// Starts copies while there are free slots, allowance and dirty
    /// regions. Returns how long to sleep at most (`None`: until woken).
    fn issue(&mut self) -> Option<u32> {
        let r: &'a Recovery = self.r;
        let shared = &r.shared;
        let mut timeout: Option<u32> = None;
        let mut min_timeout = |ms: u32| {
            timeout = Some(timeout.map_or(ms, |t: u32| t.min(ms)));
        };
        if self.r.probe_ms != 0 {
            let left = self.next_probe_ns.saturating_sub(now_ns()) / 1_000_000;
            min_timeout(u32::try_from(left).unwrap_or(u32::MAX).max(1));
        }
        let legs = shared.recovering.load(Ordering::SeqCst) & !self.r.stalled.load(Ordering::SeqCst);
        // A leg with late timed I/Os (`io_timeout`) gets no copy until they
        // are done: a late write landing after a copy would undo it. Look
        // again soon.
        let late = late_legs(&r.legs) & legs;
        if late != 0 {
            min_timeout(LATE_POLL_MS);
        }
        let legs = legs & !late;
        if legs == 0 {
            return timeout;
        }
        self.limiter.set_rate(self.r.rate.load(Ordering::Relaxed));
        let host = shared.host_writes.load(Ordering::Relaxed);
        let depth = if host != self.last_host_writes {
            BUSY_SLOTS
        } else {
            COPY_SLOTS
        };
        self.last_host_writes = host;
        if depth < COPY_SLOTS {
            // Look again soon: the host may have stopped.
            min_timeout(20);
        }
        let mut wrapped = false;
        while self.in_flight() < depth {
            let Some((region, to)) = shared.next_dirty(self.cursor, legs) else {
                if self.cursor == 0 || wrapped {
                    break;
                }
                // End of a pass; the next starts at region 0.
                wrapped = true;
                self.cursor = 0;
                if core::mem::take(&mut self.cleared_this_pass) == 0 && self.in_flight() == 0 {
                    min_timeout(IDLE_PASS_MS);
                    break;
                }
                continue;
            };
            let sectors = shared.geometry().sectors_of(region);
            let len = sectors.end - sectors.start;
            if let Err(wait_ns) = self.limiter.admit(now_ns(), len * 512) {
                let ms = (wait_ns / 1_000_000).max(1);
                min_timeout(u32::try_from(ms).unwrap_or(u32::MAX));
                break;
            }
            let Some(slot) = self.busy.iter().position(Option::is_none) else {
                break;
            };
            let source = shared.primary();
            let Some(from) = r.legs.get(source as usize) else {
                break;
            };
            let mut dests: [&'a Dev; COPY_SLOTS] = [&from.dev; COPY_SLOTS];
            let mut n = 0;
            for leg in legs_of(to) {
                if n < dests.len() {
                    dests[n] = &r.legs[leg as usize].dev;
                    n += 1;
                }
            }
            shared.start_copy(slot, region, to, source);
            self.busy[slot] = Some(InFlight {
                region,
                legs: to,
                source,
            });
            self.cursor = region + 1;
            if self
                .kc
                .copy(slot, &from.dev, sectors.start, len, &dests[..n])
                .is_err()
            {
                // Cannot happen (arguments are in range); undo.
                self.busy[slot] = None;
                shared.finish_copy(slot, 0);
                break;
            }
        }
        timeout
    }

    /// Does one step of a running `verify`: compares one region of the
    /// legs with the primary's. Returns how long to sleep at most before
    /// the next step (`None`: no verify running).
    fn verify_step(&mut self, ctx: &ThreadCtx) -> Option<u32> {
        let r: &'a Recovery = self.r;
        let shared = &r.shared;
        let progress = r.verify_progress();
        if progress.state != VerifyState::Running {
            self.verify = None;
            return None;
        }
        let nr_regions = shared.geometry().nr_regions();
        let mut run = match self.verify.take() {
            Some(run) if run.generation == progress.generation => run,
            _ => {
                let name = progress.name();
                let (Ok(ours), Ok(theirs)) = (Block::with_len(VERIFY_CHUNK), Block::with_len(VERIFY_CHUNK))
                else {
                    crate::dm_err!("{}: out of memory; {} stopped", name, name);
                    self.end_verify(progress.generation, VerifyState::Cancelled);
                    return None;
                };
                crate::dm_info!(
                    "{} of legs {:#x} started: {} regions to compare with the primary's{}",
                    name,
                    progress.legs,
                    nr_regions,
                    if progress.check {
                        " (compare only: nothing is marked, no leg split)"
                    } else {
                        ""
                    }
                );
                VerifyRun {
                    generation: progress.generation,
                    legs: progress.legs,
                    split: 0,
                    check: progress.check,
                    differed: 0,
                    primary: shared.primary(),
                    cursor: 0,
                    tries: 0,
                    ours,
                    theirs,
                }
            }
        };
        let name = verify_name(run.check);
        // A check writes no metadata but stops on a metadata failure too:
        // one rule for both, and the device wants a table reload then
        // (which forgets the check anyway).
        if shared.primary() != run.primary
            || shared.primary_failed.load(Ordering::Acquire)
            || shared.meta_failed.load(Ordering::Acquire)
        {
            crate::dm_warn!(
                "{}: the primary failed or changed, or the metadata failed: {} stopped at region {}",
                name,
                name,
                run.cursor
            );
            self.end_verify(run.generation, VerifyState::Cancelled);
            return None;
        }
        // Legs still compared: in sync, or split by this verify and still
        // fractured (their clear bits are compared on).
        let keep = shared.in_sync_secondaries(run.legs)
            | legs_of(run.split & run.legs)
                .filter(|&l| shared.leg_state(l).0 == LegState::Fractured)
                .fold(0, |m, l| m | (1 << l));
        if keep != run.legs {
            crate::dm_warn!(
                "{}: legs {:#x} left sync (or were rejoined) at region {}: not compared further",
                name,
                run.legs & !keep,
                run.cursor
            );
            run.legs = keep;
        }
        if run.legs == 0 {
            crate::dm_warn!("{}: no leg left to compare; {} stopped", name, name);
            self.end_verify(run.generation, VerifyState::Cancelled);
            return None;
        }
        if run.cursor >= nr_regions {
            let p = self.end_verify(run.generation, VerifyState::Done)?;
            if p.check {
                crate::dm_info!(
                    "verify check of legs {:#x} done: {} of {} leg-regions compared, {} differed, {} skipped (a check: nothing marked, no leg split)",
                    p.legs,
                    p.done,
                    p.total,
                    p.mismatches,
                    p.skipped
                );
                // A line of its own: log lines are cut at 200 bytes.
                if p.mismatches != 0 {
                    crate::dm_warn!(
                        "verify check: the legs differ; if the primary may be the wrong one, do not `verify` (it splits the secondaries)"
                    );
                }
                return None;
            }
            crate::dm_info!(
                "verify of legs {:#x} done: {} of {} leg-regions compared, {} differed{}, {} skipped",
                p.legs,
                p.done,
                p.total,
                p.mismatches,
                if p.mismatches != 0 {
                    " and are marked out of sync: `rejoin` the legs to copy them from the primary"
                } else {
                    ""
                },
                p.skipped
            );
            return None;
        }
        let region = run.cursor;
        // Legs looked at for this region (those out of sync already too).
        let considered = u64::from(run.legs.count_ones());
        if shared.was_discarded(region) {
            // Undefined contents on every leg: nothing to compare.
            self.count_verify(run.generation, 0, 0, considered);
            return self.next_region(run);
        }
        let range = shared.geometry().sectors_of(region);
        let len = range.end - range.start;
        // Regions already out of sync on a leg need no comparison. A leg
        // with late I/Os (`io_timeout`) is not read: it may not answer,
        // and the thread would hang with it.
        let late = late_legs(&r.legs);
        let legs = legs_of(run.legs)
            .filter(|&l| late & (1 << l) == 0 && !shared.region_dirty(l, region))
            .fold(0u32, |m, l| m | (1 << l));
        let n = u64::from(legs.count_ones());
        if n != 0 && run.tries == 0 {
            // Charged once per region, not per retry.
            self.limiter.set_rate(r.rate.load(Ordering::Relaxed));
            if let Err(wait_ns) = self.limiter.admit(now_ns(), len * 512 * n) {
                self.verify = Some(run);
                return Some(u32::try_from((wait_ns / 1_000_000).max(1)).unwrap_or(u32::MAX));
            }
        }
        let mut differ = 0u32;
        let mut unread = 0u32;
        let mut primary_unread = false;
        let mut interrupted = false;
        let quiet = n == 0 || shared.verify_begin(region);
        if quiet && n != 0 {
            let chunk = (VERIFY_CHUNK / 512) as u64;
            let mut sector = range.start;
            while sector < range.end && differ | unread != legs {
                // A region may be large: a suspend or stop does not wait
                // for all of it (the region is compared again later).
                if r.paused.load(Ordering::SeqCst) || ctx.should_stop() {
                    interrupted = true;
                    break;
                }
                let count = chunk.min(range.end - sector);
                let bytes = (count * 512) as usize;
                let source = &r.legs[run.primary as usize].dev;
                if r.io.read_part(source, sector, &mut run.ours, bytes).is_err() {
                    primary_unread = true;
                    break;
                }
                for leg in legs_of(legs & !(differ | unread)) {
                    let dev = &r.legs[leg as usize].dev;
                    if r.io.read_part(dev, sector, &mut run.theirs, bytes).is_err() {
                        unread |= 1 << leg;
                    } else if run.ours.bytes()[..bytes] != run.theirs.bytes()[..bytes] {
                        differ |= 1 << leg;
                    }
                }
                sector += count;
            }
        }
        let raced = n != 0 && !(shared.verify_end() && quiet);
        if interrupted {
            self.verify = Some(run);
            return Some(0);
        }
        if raced {
            run.tries += 1;
            if run.tries < VERIFY_TRIES {
                // Compare again once the write is done.
                self.verify = Some(run);
                return Some(VERIFY_RETRY_MS);
            }
            self.count_verify(run.generation, 0, 0, considered);
            return self.next_region(run);
        }
        if primary_unread {
            crate::dm_warn!(
                "{}: the primary could not be read in region {}: region not compared",
                name,
                region
            );
        }
        // Findings (from the chunks read, also when a later chunk of the
        // primary could not be read).
        let mut found = 0;
        let mut split = 0;
        // Legs a check finds different for the first time.
        let mut first = 0;
        for leg in legs_of(differ | unread) {
            // A host write to the region of a split leg, done before the
            // comparison began, set the bit after the look above: out of
            // sync already, not a finding.
            if shared.region_dirty(leg, region) {
                continue;
            }
            match shared.verify_mismatch(leg, region, run.primary, run.check) {
                VerifyMark::Marked { split: s } => {
                    if unread & (1 << leg) != 0 {
                        crate::dm_warn!(
                            "verify: leg {} ({}) could not be read in region {}: marked out of sync",
                            leg,
                            r.legs[leg as usize].dev.name(),
                            region
                        );
                    }
                    found += 1;
                    if s {
                        split |= 1 << leg;
                    }
                }
                VerifyMark::Found => {
                    if unread & (1 << leg) != 0 {
                        crate::dm_warn!(
                            "verify check: leg {} ({}) could not be read in region {}: counted as different, nothing marked",
                            leg,
                            r.legs[leg as usize].dev.name(),
                            region
                        );
                    } else if run.differed & (1 << leg) == 0 {
                        first |= 1 << leg;
                    }
                    found += 1;
                }
                VerifyMark::LegGone => run.legs &= !(1 << leg),
                VerifyMark::Stale => {
                    // Looked at again at the next step (which stops the
                    // verify if the primary changed).
                    self.verify = Some(run);
                    return Some(VERIFY_RETRY_MS);
                }
            }
        }
        // Once per leg: a primary that lost writes makes every region it
        // lost differ, on every leg.
        for leg in legs_of(first) {
            crate::dm_warn!(
                "verify check: leg {} ({}) differs from the primary in region {} (its first such region; nothing is marked, no leg split)",
                leg,
                r.legs[leg as usize].dev.name(),
                region
            );
        }
        run.differed |= first;
        for leg in legs_of(split) {
            crate::dm_warn!(
                "verify: leg {} ({}) differs from the primary in region {}: leg split, the regions where it differs are marked out of sync (rejoin it to copy them)",
                leg,
                r.legs[leg as usize].dev.name(),
                region
            );
        }
        if split != 0 {
            // Like the `fracture` message: what the legs acknowledged so
            // far must survive their power loss (a leg whose flush fails
            // gets every region marked).
            flush_fractured(shared, &r.legs, split);
            shared.fracture_noted();
        }
        run.split |= split;
        // A check marked nothing: nothing to write.
        if found != 0 && !run.check && shared.commit().seq.is_none() {
            crate::dm_err!(
                "verify: cannot write the regions found different to the metadata: verify stopped"
            );
            self.end_verify(run.generation, VerifyState::Cancelled);
            return None;
        }
        if split != 0 {
            shared.raise_event();
        }
        if primary_unread {
            self.count_verify(run.generation, found, found, considered - found);
        } else {
            self.count_verify(run.generation, considered, found, 0);
        }
        self.next_region(run)
    }

    /// Moves a verify on to its next region.
    fn next_region(&mut self, mut run: VerifyRun) -> Option<u32> {
        run.cursor += 1;
        run.tries = 0;
        self.verify = Some(run);
        // Regions known out of sync cost no I/O: without this a long run
        // of them would never give the CPU up.
        yield_cpu();
        Some(0)
    }

    /// Adds to the progress of verify `generation` (if it still runs).
    fn count_verify(&self, generation: u64, done: u64, mismatches: u64, skipped: u64) {
        let mut v = self.r.verify.lock();
        if v.generation == generation && v.state == VerifyState::Running {
            v.done += done;
            v.mismatches += mismatches;
            v.skipped += skipped;
        }
    }

    /// Ends verify `generation` in `state` if it still runs; returns its
    /// final progress then (`None`: it was cancelled, maybe another started).
    fn end_verify(&mut self, generation: u64, state: VerifyState) -> Option<VerifyProgress> {
        self.verify = None;
        let p = {
            let mut v = self.r.verify.lock();
            (v.generation == generation && v.state == VerifyState::Running).then(|| {
                v.state = state;
                *v
            })
        };
        // Not under the spinlock: raising an event takes a mutex.
        self.r.shared.raise_event();
        p
    }
}
