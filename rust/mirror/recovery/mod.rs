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

//!
//! This file holds the state shared with the target ([`Recovery`]) and the
//! thread's main loop; the work it does is split by kind: `copy` (issuing
//! and reaping the region copies), `probe` (trying legs fractured by a
//! failure) and `verify` (comparing in-sync secondaries with the primary).

mod copy;
mod probe;
mod verify;

pub(crate) use verify::{VerifyRefused, VerifyState};

use super::legs::Leg;
use super::metadata::{MirrorState, COPY_SLOTS};
use crate::dm::io::{Block, IoClient};
use crate::dm::kcopyd::Kcopyd;
use crate::dm::kthread::{now_ns, sleep_ms, ThreadCtx, Waker};
use crate::rate::RateLimit;
use copy::{InFlight, Job};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::new_condvar;
use kernel::new_mutex;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::{Arc, CondVar, Mutex, SpinLock};
use verify::{VerifyProgress, VerifyRun};

/// Copies in flight while host writes are running (instead of
/// [`COPY_SLOTS`]): recovery yields most of the legs' bandwidth to them.
pub(crate) const BUSY_SLOTS: usize = 2;

/// How often a recovering leg with late timed I/Os is looked at again.
const LATE_POLL_MS: u32 = 100;

/// Pause after a pass over the bitmaps that cleared nothing (every copy
/// raced with a host write), before the next.
const IDLE_PASS_MS: u32 = 100;

/// State shared by the target and its recovery thread.
#[pin_data]
pub(crate) struct Recovery {
    pub(crate) mirror: Arc<MirrorState>,
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
        mirror: Arc<MirrorState>,
        legs: Arc<KVec<Leg>>,
        rate: u64,
        probe_s: u64,
    ) -> Result<Arc<Self>> {
        let io = IoClient::new()?;
        Arc::pin_init(
            pin_init!(Self {
                mirror,
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

    /// Looks at the legs again: a leg rejoined (its stall, if any, is
    /// lifted), the rate changed.
    pub(crate) fn kick(&self, waker: &Waker, unstall: u32) {
        self.stalled.fetch_and(!unstall, Ordering::SeqCst);
        self.kick.store(true, Ordering::SeqCst);
        waker.wake();
    }
}

/// The recovery thread's working state.
struct Worker<'a, 'k> {
    r: &'a Recovery,
    kc: &'k Kcopyd<'a, Job>,
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

/// The thread function.
pub(crate) fn recovery_thread(r: &Recovery, ctx: &ThreadCtx) {
    let waker = ctx.waker();
    let jobs = KVec::with_capacity(COPY_SLOTS, GFP_KERNEL)
        .map_err(Error::from)
        .and_then(|mut jobs| {
            for _ in 0..COPY_SLOTS {
                jobs.push(
                    Job {
                        done: AtomicBool::new(false),
                        read_failed: AtomicBool::new(false),
                        write_failed: AtomicU64::new(0),
                        waker: waker.clone(),
                    },
                    GFP_KERNEL,
                )?;
            }
            Ok(jobs)
        });
    // The kcopyd client lives for the scope: its end waits for every
    // callback, so no job or waker is used after this function returns.
    let ran = match (jobs, Block::new()) {
        (Ok(jobs), Ok(probe_buf)) => Kcopyd::scope(jobs, |kc| {
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
                primary: r.mirror.primary(),
                verify: None,
            };
            w.run(ctx);
        })
        .is_ok(),
        _ => false,
    };
    if !ran {
        crate::dm_err!("recovery thread: out of memory; recovery is disabled for this table");
        // Still honour suspend, so that it does not hang.
        while !ctx.should_stop() {
            if r.paused.load(Ordering::SeqCst) {
                park(r, ctx);
            } else {
                ctx.wait(None, || r.paused.load(Ordering::SeqCst));
            }
        }
    }
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

impl Worker<'_, '_> {
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
            let primary = self.r.mirror.primary();
            if primary != self.primary {
                self.primary = primary;
                self.r.stalled.store(0, Ordering::SeqCst);
            }
            changed |= self.probe();
            changed |= self.finish_legs();
            if changed {
                self.r.mirror.raise_event();
            }
            let mut timeout = self.issue();
            if self.r.mirror.recovering.load(Ordering::SeqCst) != 0
                && self.r.mirror.failure_pending()
            {
                // A leg done copying is not in sync before the failure is
                // handled (`complete_recovered`): look again soon.
                timeout = Some(timeout.map_or(20, |t| t.min(20)));
            }
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
}
