// SPDX-License-Identifier: GPL-2.0

//! Region copies: starting them with dm-kcopyd while slots, allowance and
//! dirty regions last, and reaping the finished ones (flush the legs
//! written, clear the bits, commit; a recovering leg with no bit left is in
//! sync again).

use super::{Recovery, Worker, BUSY_SLOTS, IDLE_PASS_MS, LATE_POLL_MS};
use crate::dm::device::Dev;
use crate::dm::kcopyd::CopyJob;
use crate::dm::kthread::{now_ns, Waker};
use crate::mirror::legmask::legs_of;
use crate::mirror::legs::late_legs;
use crate::mirror::metadata::COPY_SLOTS;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What a kcopyd copy reports to.
pub(super) struct Job {
    pub(super) done: AtomicBool,
    pub(super) read_failed: AtomicBool,
    pub(super) write_failed: AtomicU64,
    pub(super) waker: Waker,
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
pub(super) struct InFlight {
    region: u64,
    legs: u32,
    source: u32,
}

impl<'a> Worker<'a, '_> {
    /// Ends the copies that completed: flushes the legs written, clears the
    /// bits, commits. Returns whether a leg changed state.
    pub(super) fn reap(&mut self) -> bool {
        let mirror = &self.r.mirror;
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
            if job.read_failed.load(Ordering::Relaxed) && copy.source != mirror.primary() {
                // Read from a primary that failed over since: the bit
                // stays and the region is copied again from the new one.
                ok = 0;
            } else if job.read_failed.load(Ordering::Relaxed) {
                mirror
                    .stats
                    .copy_read_errors
                    .fetch_add(1, Ordering::Relaxed);
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
                mirror
                    .stats
                    .copy_write_errors
                    .fetch_add(1, Ordering::Relaxed);
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
                self.cleared_this_pass += mirror.finish_copy(slot, ok & !failed);
            }
        }
        let mut changed = stalled_now;
        if failed != 0 && mirror.recovery_failed(failed) {
            crate::dm_warn!(
                "recovery: legs {:#x} failed a copy: fractured again, their bits stay",
                failed
            );
            changed = true;
        }
        changed |= self.finish_legs_nocommit();
        mirror.commit();
        changed
    }

    /// Recovering legs with no bit left become in sync (committed).
    pub(super) fn finish_legs(&mut self) -> bool {
        if self.r.mirror.recovering.load(Ordering::SeqCst) == 0 || self.in_flight() != 0 {
            return false;
        }
        let changed = self.finish_legs_nocommit();
        if changed {
            self.r.mirror.commit();
        }
        changed
    }

    fn finish_legs_nocommit(&mut self) -> bool {
        let legs = self.r.mirror.complete_recovered();
        for leg in legs_of(legs) {
            crate::dm_info!(
                "leg {} ({}) is in sync again; its fracture log is empty",
                leg,
                self.r.legs[leg as usize].dev.name()
            );
        }
        legs != 0
    }

    /// Starts copies while there are free slots, allowance and dirty
    /// regions. Returns how long to sleep at most (`None`: until woken).
    pub(super) fn issue(&mut self) -> Option<u32> {
        let r: &'a Recovery = self.r;
        let mirror = &r.mirror;
        let mut timeout: Option<u32> = None;
        let mut min_timeout = |ms: u32| {
            timeout = Some(timeout.map_or(ms, |t: u32| t.min(ms)));
        };
        if self.r.probe_ms != 0 {
            let left = self.next_probe_ns.saturating_sub(now_ns()) / 1_000_000;
            min_timeout(u32::try_from(left).unwrap_or(u32::MAX).max(1));
        }
        let legs =
            mirror.recovering.load(Ordering::SeqCst) & !self.r.stalled.load(Ordering::SeqCst);
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
        let host = mirror.host_writes.load(Ordering::Relaxed);
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
            let Some((region, to)) = mirror.next_dirty(self.cursor, legs) else {
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
            let sectors = mirror.geometry().sectors_of(region);
            let len = sectors.end - sectors.start;
            if let Err(wait_ns) = self.limiter.admit(now_ns(), len * 512) {
                let ms = (wait_ns / 1_000_000).max(1);
                min_timeout(u32::try_from(ms).unwrap_or(u32::MAX));
                break;
            }
            let Some(slot) = self.busy.iter().position(Option::is_none) else {
                break;
            };
            let source = mirror.primary();
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
            mirror.start_copy(slot, region, to, source);
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
                mirror.finish_copy(slot, 0);
                break;
            }
        }
        timeout
    }
}
