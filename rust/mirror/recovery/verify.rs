// SPDX-License-Identifier: GPL-2.0

//! The online `verify` (and `verify check`): the in-sync secondaries
//! compared with the primary region by region, chunk by chunk; a region
//! that differs is set in the leg's fracture bitmap (the leg split), or
//! only counted by a check.

use super::{Recovery, Worker};
use crate::dm::io::{Block, MAX_BUFFER_BYTES};
use crate::dm::kthread::{now_ns, yield_cpu, ThreadCtx, Waker};
use crate::format::LegState;
use crate::mirror::legmask::{legs_of, mask_of};
use crate::mirror::legs::{finish_split, late_legs};
use crate::mirror::metadata::VerifyMark;
use core::sync::atomic::Ordering;

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
    pub(super) generation: u64,
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

impl Recovery {
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
}

/// The recovery thread's side of a running `verify`.
pub(super) struct VerifyRun {
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

impl<'a> Worker<'a, '_> {
    /// Does one step of a running `verify`: compares one region of the
    /// legs with the primary's. Returns how long to sleep at most before
    /// the next step (`None`: no verify running).
    pub(super) fn verify_step(&mut self, ctx: &ThreadCtx) -> Option<u32> {
        let r: &'a Recovery = self.r;
        let mirror = &r.mirror;
        let progress = r.verify_progress();
        if progress.state != VerifyState::Running {
            self.verify = None;
            return None;
        }
        let nr_regions = mirror.geometry().nr_regions();
        let mut run = match self.verify.take() {
            Some(run) if run.generation == progress.generation => run,
            _ => {
                let name = progress.name();
                let (Ok(ours), Ok(theirs)) =
                    (Block::with_len(VERIFY_CHUNK), Block::with_len(VERIFY_CHUNK))
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
                    primary: mirror.primary(),
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
        if mirror.primary() != run.primary
            || mirror.primary_failed.load(Ordering::Acquire)
            || mirror.meta_failed.load(Ordering::Acquire)
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
        let keep = mirror.in_sync_secondaries(run.legs)
            | mask_of(
                legs_of(run.split & run.legs)
                    .filter(|&l| mirror.leg_state(l).0 == LegState::Fractured),
            );
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
        if mirror.was_discarded(region) {
            // Undefined contents on every leg: nothing to compare.
            self.count_verify(run.generation, 0, 0, considered);
            return self.next_region(run);
        }
        let range = mirror.geometry().sectors_of(region);
        let len = range.end - range.start;
        // Regions already out of sync on a leg need no comparison. A leg
        // with late I/Os (`io_timeout`) is not read: it may not answer,
        // and the thread would hang with it.
        let late = late_legs(&r.legs);
        let legs = mask_of(legs_of(run.legs & !late).filter(|&l| !mirror.region_dirty(l, region)));
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
        let quiet = n == 0 || mirror.verify_begin(region);
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
                if r.io
                    .read_part(source, sector, &mut run.ours, bytes)
                    .is_err()
                {
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
        let raced = n != 0 && !(mirror.verify_end() && quiet);
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
        // A leg split below is settled before intent bits may be cleared
        // (see `finish_split`); a check splits nothing.
        let hold = (!run.check && differ | unread != 0).then(|| mirror.hold_settle());
        let mut stale = false;
        for leg in legs_of(differ | unread) {
            // A host write to the region of a split leg, done before the
            // comparison began, set the bit after the look above: out of
            // sync already, not a finding.
            if mirror.region_dirty(leg, region) {
                continue;
            }
            match mirror.verify_mismatch(leg, region, run.primary, run.check) {
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
                    stale = true;
                    break;
                }
            }
        }
        if stale {
            // A leg split above is settled all the same.
            if split != 0 {
                finish_split(mirror, &r.legs, split);
                run.split |= split;
                drop(hold);
                let _ = mirror.commit();
                mirror.raise_event();
            }
            // Looked at again at the next step (which stops the verify if
            // the primary changed).
            self.verify = Some(run);
            return Some(VERIFY_RETRY_MS);
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
            finish_split(mirror, &r.legs, split);
        }
        drop(hold);
        run.split |= split;
        // A check marked nothing: nothing to write.
        if found != 0 && !run.check && mirror.commit().seq.is_none() {
            crate::dm_err!(
                "verify: cannot write the regions found different to the metadata: verify stopped"
            );
            self.end_verify(run.generation, VerifyState::Cancelled);
            return None;
        }
        if split != 0 {
            mirror.raise_event();
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
        self.r.mirror.raise_event();
        p
    }
}
