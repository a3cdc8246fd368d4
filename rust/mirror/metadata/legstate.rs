// SPDX-License-Identifier: GPL-2.0

//! Leg states and their changes: a leg fractured (by a failure or on
//! request), rejoined, rebuilt, failed over from or back in sync after its
//! recovery; the failures noted from any context for the metadata thread;
//! and which legs a host read may go to.

use super::{MetaState, MirrorState};
use crate::dm::timed::late_ios;
use crate::format::LegState;
use crate::mirror::legmask::{legs_of, mask_of};
use core::sync::atomic::Ordering;

/// What [`MirrorState::legs_failed_locked`] did.
struct LegsFailed {
    /// Legs fractured (or already fractured) whose I/O is to be logged.
    logged: u32,
    /// A leg changed state, or the primary was lost.
    changed: bool,
    /// The primary failed and no leg could take over.
    primary_lost: bool,
}

/// What [`MirrorState::write_failed`] decided.
pub(crate) struct WriteFailed {
    /// Epoch that must be durable before the write completes.
    pub(crate) need: u64,
    /// A leg changed state (raise an event).
    pub(crate) changed: bool,
    /// The write may succeed: a leg in sync has it.
    pub(crate) ok: bool,
}

/// Why a message refused a leg.
pub(crate) enum Refused {
    /// It is the primary.
    Primary,
    /// Its state does not allow it.
    State(LegState),
    /// It has late I/O (see [`MirrorState::late_legs`]).
    Late,
}

impl MirrorState {
    /// Legs with late I/O: timed out under `io_timeout` and not completed
    /// by their device yet (from this table or an earlier one; see
    /// `Leg::late`). The one rule for every path that chooses a primary (a
    /// failover from the metadata thread, a flush timeout, a noted failure,
    /// `primary`, activation): such a leg is never chosen, since a late
    /// write may still land on it, and one whose timeout is not handled
    /// yet may be about to be fractured, missing writes. Not for read
    /// retries either (reads are not timed). Any context.
    pub(crate) fn late_legs(&self) -> u32 {
        mask_of(
            self.leg_devts
                .iter()
                .zip(0..self.nr_legs)
                .filter(|(d, _)| late_ios(**d) != 0)
                .map(|(_, i)| i),
        )
    }

    /// A write or flush failed on some leg and goes to the thread (any
    /// context). Paired with [`MirrorState::failure_handled`].
    pub(crate) fn failure_seen(&self) {
        self.pending_failures.fetch_add(1, Ordering::SeqCst);
    }

    /// A write or flush to the legs in `legs` failed (any context): counted
    /// as pending ([`MirrorState::failure_seen`]) first, then no read goes
    /// to them ([`MirrorState::not_readable`]). In this order, so that
    /// [`MirrorState::complete_recovered`], which sets a leg readable and
    /// then looks for a pending failure, either sees this one or has its
    /// bit cleared after it.
    pub(crate) fn write_failure_seen(&self, legs: u32) {
        self.failure_seen();
        self.not_readable(legs);
    }

    /// The thread handled a failure counted by [`MirrorState::failure_seen`].
    pub(crate) fn failure_handled(&self) {
        self.pending_failures.fetch_sub(1, Ordering::SeqCst);
    }

    /// A leg failure is known but not handled yet, or no leg is known to be
    /// current (`no_source`): copies clear nothing. A failing leg may be the
    /// primary, which the thread is about to replace; a copy read from it
    /// may miss the failed write.
    pub(crate) fn failure_pending(&self) -> bool {
        self.pending_failures.load(Ordering::SeqCst) != 0
            || self.noted.load(Ordering::SeqCst) != 0
            || self.no_source.load(Ordering::SeqCst)
    }

    /// Records, from any context, that the secondaries in `legs` failed a
    /// flush or discard; the thread fractures them.
    pub(crate) fn note_failed(&self, legs: u32) {
        // Pending first, then not readable: see `write_failure_seen`.
        self.noted.fetch_or(legs, Ordering::SeqCst);
        self.not_readable(legs);
    }

    /// Writes or flushes to `legs` failed (any context): no read goes to
    /// them from now on (a leg that failed a flush may have lost writes it
    /// acknowledged), before the thread fractures them. Harmless for a
    /// primary, which reads do not leave for this mask.
    pub(crate) fn not_readable(&self, legs: u32) {
        self.readable.fetch_and(!legs, Ordering::SeqCst);
    }

    /// Secondaries `legs` did not complete a flush within `io_timeout`:
    /// they are fractured at once, before any intent bit is cleared on the
    /// strength of that flush (the fracture takes the intent bits into
    /// their bitmaps, which covers every write they may not have made
    /// durable). Returns whether a leg changed.
    pub(crate) fn flush_timed_out(&self, legs: u32) -> bool {
        let mut st = self.meta.lock();
        let f = self.legs_failed_locked(&mut st, legs, 0, "flush within io_timeout");
        if self.no_intent {
            // No intent bits: nothing says what it may not have made
            // durable.
            for leg in legs_of(f.logged) {
                self.fill_leg_locked(&mut st, leg);
                crate::dm_warn!(
                    "leg {} fractured with every region out of sync (nointent)",
                    leg
                );
            }
        }
        f.changed
    }

    /// Secondary `leg`, just split (see [`MirrorState::fracture_locked`]),
    /// did not complete the flush that ends its in-sync life within
    /// `io_timeout`: what it acknowledged may not be durable. The intent
    /// bits cover every such write (none is cleared while the split is
    /// settled: [`MirrorState::hold_settle`]); without them (`nointent`)
    /// every region is marked. The caller commits.
    pub(crate) fn split_not_flushed(&self, leg: u32) {
        let mut st = self.meta.lock();
        if self.no_intent {
            self.fill_leg_locked(&mut st, leg);
        } else {
            self.or_intent_into(&mut st, leg);
        }
    }

    /// Fractures the legs recorded by [`MirrorState::note_failed`]. A failed
    /// flush may have lost any earlier write, so the whole leg is marked
    /// out of sync (the safe direction). Returns whether a leg changed.
    pub(crate) fn fracture_noted(&self) -> bool {
        // Taken under the lock: a concurrent caller that finds the mask
        // empty then knows the legs are fractured already (not merely
        // taken by another thread that has yet to fracture them).
        let mut st = self.meta.lock();
        let legs = self.noted.swap(0, Ordering::AcqRel);
        if legs == 0 {
            return false;
        }
        let failed = self.legs_failed_locked(&mut st, legs, 0, "flush");
        for leg in legs_of(failed.logged) {
            self.fill_leg_locked(&mut st, leg);
            crate::dm_warn!("leg {} fractured with every region out of sync", leg);
        }
        failed.changed
    }

    /// A write (a flush if `flush`) sent to the legs in `sent` failed on
    /// the legs in `failed`, on those in `timed_out` by not completing
    /// within `io_timeout` (see [`MirrorState::legs_failed_locked`]): the
    /// failed legs are fractured and the write's sectors logged for them
    /// (every region, for a flush: it may have lost any earlier write).
    /// If the primary failed it and no leg could take over, the write
    /// fails, and recovering legs that took it copy its regions again.
    pub(crate) fn write_failed(
        &self,
        failed: u32,
        timed_out: u32,
        sent: u32,
        sector: u64,
        sectors: u64,
        flush: bool,
    ) -> WriteFailed {
        let mut st = self.meta.lock();
        let what = match (flush, failed & !timed_out == 0) {
            (true, true) => "flush within io_timeout",
            (false, true) => "write within io_timeout",
            (true, false) => "flush",
            (false, false) => "write",
        };
        let f = self.legs_failed_locked(&mut st, failed, !sent, what);
        let mut need = st.sb_seq;
        if flush {
            // A leg whose flush only timed out lost nothing it had made
            // durable: the intent bits its fracture took cover every write
            // it may not have (unless there are none: `nointent`).
            let covered = if self.no_intent { 0 } else { timed_out };
            for leg in legs_of(f.logged & !covered) {
                self.fill_leg_locked(&mut st, leg);
                need = st.open_seq;
                crate::dm_warn!("leg {} fractured with every region out of sync", leg);
            }
        } else {
            need = need.max(self.set_bits(&mut st, f.logged, sector, sectors));
        }
        if f.primary_lost && !flush {
            // Legs that took it now differ from the primary there: a
            // recovering one, or one fractured since it was sent.
            let out_of_sync =
                self.recovering.load(Ordering::Relaxed) | self.logged.load(Ordering::Relaxed);
            let took = sent & !failed & out_of_sync & !(1 << st.sb.primary_leg);
            need = need.max(self.set_bits(&mut st, took, sector, sectors));
        }
        WriteFailed {
            need,
            changed: f.changed,
            ok: !f.primary_lost,
        }
    }

    /// The legs in `legs` failed I/O; `st` locked. The secondaries among
    /// them are fractured. If the primary is among them, the lowest in-sync
    /// leg not in `legs | exclude` (legs that did not take the I/O) and
    /// without late I/O ([`MirrorState::late_legs`]) takes over first, and the old primary is then fractured like a secondary;
    /// copies in flight (read from it) clear nothing. If no leg can take
    /// over, the primary stays (it is still the best copy) and is marked
    /// failed. The caller logs the failed I/O for the legs in `logged`.
    fn legs_failed_locked(
        &self,
        st: &mut MetaState,
        legs: u32,
        exclude: u32,
        what: &str,
    ) -> LegsFailed {
        let p = st.sb.primary_leg;
        let mut legs = legs & self.all_legs();
        let mut out = LegsFailed {
            logged: 0,
            changed: false,
            primary_lost: false,
        };
        if legs & (1 << p) != 0 {
            if let Some(q) = st.sb.fail_over(legs | exclude | self.late_legs()) {
                self.primary.store(q, Ordering::SeqCst);
                self.primary_failed.store(false, Ordering::SeqCst);
                st.sb_seq = st.open_seq;
                for slot in st.copying.iter_mut() {
                    slot.void |= slot.active;
                }
                crate::dm_warn!(
                    "primary leg {} failed a {}: leg {} is the primary now; leg {} is fractured, its changes are logged",
                    p,
                    what,
                    q,
                    p
                );
            } else {
                legs &= !(1 << p);
                out.primary_lost = true;
                if !self.primary_failed.swap(true, Ordering::AcqRel) {
                    out.changed = true;
                    crate::dm_err!(
                        "primary leg {} failed a {} and no leg in sync can take over: marked D, writes it fails fail",
                        p,
                        what
                    );
                }
            }
        }
        for leg in legs_of(legs) {
            if self.fracture_locked(st, leg, false) {
                out.changed = true;
                if leg != p {
                    crate::dm_warn!(
                        "leg {} failed a {}: fractured, its changes are logged",
                        leg,
                        what
                    );
                }
            }
        }
        out.logged = legs;
        out
    }

    /// Splits secondary `leg` (in sync or recovering) on purpose. The
    /// caller holds [`MirrorState::hold_settle`], calls
    /// `legs::finish_split` for the leg, and commits.
    pub(crate) fn fracture(&self, leg: u32) -> Result<(), Refused> {
        let mut st = self.meta.lock();
        if leg == st.sb.primary_leg {
            return Err(Refused::Primary);
        }
        let state = st.sb.leg(leg).state;
        if self.fracture_locked(&mut st, leg, true) {
            Ok(())
        } else {
            Err(Refused::State(state))
        }
    }

    /// Fractures leg `leg` (a failed write, or on purpose when `split`): it
    /// gets no more writes and its writes are logged. An in-sync leg leaves
    /// the in-sync set: the array event count moves on and the legs still in
    /// sync take the new generation. A recovering leg keeps its bits and
    /// its copies clear nothing. Returns whether the state changed.
    ///
    /// A leg fractured by a failure gets the regions set in the intent
    /// bitmap in its fracture bitmap: it may have acknowledged writes it
    /// did not make durable (its flush failed, or cannot be tried), and
    /// those bits cover every such write. A leg split on request does not:
    /// the caller holds [`MirrorState::hold_settle`] since before this
    /// call and, once it returned, calls `legs::finish_split`, which marks
    /// exactly the regions with writes in flight and flushes the leg (and
    /// falls back to the intent bits, or every region, if the flush does
    /// not work).
    pub(super) fn fracture_locked(&self, st: &mut MetaState, leg: u32, split: bool) -> bool {
        // Before anything else: no read may go to it from now on.
        self.readable.fetch_and(!(1 << leg), Ordering::SeqCst);
        match st.sb.leg(leg).state {
            LegState::InSync => st.sb.leave_sync(leg),
            LegState::Recovering => self.void_copies(st, leg),
            LegState::Fractured | LegState::Failed => return false,
        }
        if !split {
            // Writes the leg took may still be in flight, or in its
            // volatile cache (not flushed yet): the intent bits cover both.
            self.or_intent_into(st, leg);
        }
        let rec = st.sb.leg_mut(leg);
        rec.state = LegState::Fractured;
        rec.split = split;
        st.sb_seq = st.open_seq;
        self.logged.fetch_or(1 << leg, Ordering::SeqCst);
        self.recovering.fetch_and(!(1 << leg), Ordering::SeqCst);
        true
    }

    /// Copies to `leg` in flight will clear nothing.
    fn void_copies(&self, st: &mut MetaState, leg: u32) {
        for slot in st.copying.iter_mut() {
            if slot.active && slot.legs & (1 << leg) != 0 {
                slot.void = true;
            }
        }
    }

    /// `primary <leg>`: makes in-sync leg `leg` the primary. `Ok(false)` if
    /// it already is. Copies in flight clear nothing (they are done again
    /// from the new primary). A primary shown `D` hands over this way too.
    /// The caller commits.
    pub(crate) fn set_primary(&self, leg: u32) -> Result<bool, Refused> {
        let mut st = self.meta.lock();
        if leg == st.sb.primary_leg && !self.no_source.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let state = st.sb.leg(leg).state;
        if self.late_legs() & (1 << leg) != 0 {
            return Err(Refused::Late);
        }
        if !st.sb.switch_primary(leg) {
            return Err(Refused::State(state));
        }
        self.primary.store(leg, Ordering::SeqCst);
        self.primary_failed.store(false, Ordering::SeqCst);
        st.sb_seq = st.open_seq;
        for slot in st.copying.iter_mut() {
            slot.void |= slot.active;
        }
        Ok(true)
    }

    /// Puts leg `leg` into recovery; `st` locked.
    fn start_recovery_locked(&self, st: &mut MetaState, leg: u32) {
        // A rebuild of an in-sync leg: no read goes to it until recovered.
        self.readable.fetch_and(!(1 << leg), Ordering::SeqCst);
        if self.recovering.load(Ordering::Relaxed) == 0 {
            st.recovered = 0;
        }
        let rec = st.sb.leg_mut(leg);
        rec.state = LegState::Recovering;
        rec.split = false;
        st.sb_seq = st.open_seq;
        self.void_copies(st, leg);
        self.recovering.fetch_or(1 << leg, Ordering::SeqCst);
        self.logged.fetch_and(!(1 << leg), Ordering::SeqCst);
    }

    /// `rejoin`: a fractured secondary starts recovery. `Ok(true)` if it
    /// changed state, `Ok(false)` if it was already recovering. The caller
    /// commits.
    pub(crate) fn rejoin(&self, leg: u32) -> Result<bool, Refused> {
        let mut st = self.meta.lock();
        if leg == st.sb.primary_leg {
            return Err(Refused::Primary);
        }
        match st.sb.leg(leg).state {
            LegState::Fractured | LegState::Failed => {
                self.start_recovery_locked(&mut st, leg);
                Ok(true)
            }
            LegState::Recovering => Ok(false),
            LegState::InSync => Err(Refused::State(LegState::InSync)),
        }
    }

    /// `rejoin <primary>` on a primary shown `D` (it failed I/O and no leg
    /// could take over): the administrator says it works again, `D` is
    /// cleared. Nothing else changes: the writes it failed are logged for
    /// the other legs already, and a new failure marks it `D` again. Not
    /// for a mirror activated with no known-current leg (`no_source`),
    /// which only `primary <leg>` or a new table resolves.
    pub(crate) fn primary_repaired(&self) -> bool {
        let st = self.meta.lock();
        let repaired = !self.no_source.load(Ordering::SeqCst)
            && self.primary_failed.swap(false, Ordering::AcqRel);
        if repaired {
            // It may serve read retries again (its failure cleared the bit).
            self.readable
                .fetch_or(1 << st.sb.primary_leg, Ordering::SeqCst);
        }
        repaired
    }

    /// Resume with the legs present: every secondary fractured by a failure
    /// (not split on request) starts recovery. Returns those legs.
    pub(crate) fn rejoin_failed(&self, skip: u32) -> u32 {
        let mut st = self.meta.lock();
        let mut legs = 0;
        let p = st.sb.primary_leg;
        for leg in legs_of(self.all_legs() & !skip & !(1 << p)) {
            let rec = st.sb.leg(leg);
            if rec.state == LegState::Fractured && !rec.split {
                self.start_recovery_locked(&mut st, leg);
                legs |= 1 << leg;
            }
        }
        legs
    }

    /// `rebuild`: every region of secondary `leg` is to be copied again.
    /// The caller commits.
    pub(crate) fn rebuild(&self, leg: u32) -> Result<(), Refused> {
        let mut st = self.meta.lock();
        if leg == st.sb.primary_leg {
            return Err(Refused::Primary);
        }
        if st.sb.leg(leg).state == LegState::InSync {
            // It leaves the in-sync set like a fracture does.
            self.fracture_locked(&mut st, leg, false);
        }
        self.start_recovery_locked(&mut st, leg);
        self.fill_leg_locked(&mut st, leg);
        Ok(())
    }

    /// A copy to the recovering legs in `legs` failed: they are fractured
    /// again (by a failure), their bits stay. Returns whether one changed.
    pub(crate) fn recovery_failed(&self, legs: u32) -> bool {
        let mut st = self.meta.lock();
        let mut changed = false;
        for leg in legs_of(legs & self.all_legs()) {
            if st.sb.leg(leg).state == LegState::Recovering {
                changed |= self.fracture_locked(&mut st, leg, false);
                if self.no_intent {
                    // Host writes it took since its last good flush are
                    // covered by no intent bit: every region is marked.
                    self.fill_leg_locked(&mut st, leg);
                    crate::dm_warn!(
                        "leg {} fractured with every region out of sync (nointent)",
                        leg
                    );
                }
            }
        }
        changed
    }

    /// Secondaries fractured by a failure, for the probe.
    pub(crate) fn failed_legs(&self) -> u32 {
        let st = self.meta.lock();
        mask_of((0..self.nr_legs).filter(|&l| {
            l != st.sb.primary_leg
                && st.sb.leg(l).state == LegState::Fractured
                && !st.sb.leg(l).split
        }))
    }

    /// Recovering legs with no bit left and no copy in flight are in sync
    /// again: they take the current generation. Returns them.
    pub(crate) fn complete_recovered(&self) -> u32 {
        let mut st = self.meta.lock();
        let mut done = 0;
        if self.no_source.load(Ordering::SeqCst) {
            // Nothing was copied from a leg known to be current.
            return 0;
        }
        for leg in 0..self.nr_legs {
            if st.sb.leg(leg).state != LegState::Recovering
                || st.counts[leg as usize] != 0
                || st
                    .copying
                    .iter()
                    .any(|s| s.active && s.legs & (1 << leg) != 0)
            {
                continue;
            }
            // Every region copied and no copy in flight: it holds every
            // acknowledged write, unless a write or flush it failed is not
            // handled yet. Readable first, then the check (a failure seen
            // after it clears the bit again: `write_failure_seen`); with
            // one pending, it stays recovering and is looked at again
            // (the recovery thread polls while `failure_pending`).
            self.readable.fetch_or(1 << leg, Ordering::SeqCst);
            if self.failure_pending() {
                self.readable.fetch_and(!(1 << leg), Ordering::SeqCst);
                continue;
            }
            st.sb.enter_sync(leg);
            st.sb_seq = st.open_seq;
            self.recovering.fetch_and(!(1 << leg), Ordering::SeqCst);
            done |= 1 << leg;
        }
        done
    }

    /// Secondaries a host read of `sector..sector + sectors` may go to
    /// besides the primary (bit per leg; 0: the primary only). Lock-free,
    /// any context.
    ///
    /// A leg qualifies if it holds every acknowledged write: in sync at the
    /// current generation, not fractured, failed or recovering. A leg
    /// leaves that set (its bit in `logged`, under the state lock) before
    /// any write it misses is acknowledged, so a read that follows the
    /// acknowledgement sees the bit (`readable`, one word: see there).
    /// While a leg failure is being handled (a failed write or flush not yet
    /// logged), reads stay on the primary: a leg that failed a flush may
    /// have lost writes it acknowledged before. Regions discarded since the table was loaded have undefined
    /// contents, which may differ from leg to leg: they are read from the
    /// primary, so that two reads of them agree.
    pub(crate) fn read_legs(&self, sector: u64, sectors: u64) -> u32 {
        if self.failure_pending() || self.primary_failed.load(Ordering::Acquire) {
            return 0;
        }
        let out = self.logged.load(Ordering::SeqCst)
            | self.recovering.load(Ordering::SeqCst)
            | 1 << self.primary();
        let legs = self.readable.load(Ordering::SeqCst) & self.all_legs() & !out;
        if legs == 0
            || self
                .geometry
                .regions_of(sector, sectors)
                .any(|r| self.was_discarded(r))
        {
            return 0;
        }
        legs
    }

    /// A leg to retry a read on, not in `tried`: in sync at the current
    /// generation, readable (a leg whose write or flush failed is not,
    /// from the moment the failure is seen until it is in sync again, so
    /// no failure is pending for it), without late I/O (reads are not
    /// timed).
    pub(crate) fn read_source(&self, tried: u32) -> Option<u32> {
        let st = self.meta.lock();
        let out = tried | !self.readable.load(Ordering::SeqCst) | self.late_legs();
        st.sb.source_candidate(out)
    }

    /// In-sync secondaries among `legs` (the legs `verify` can compare).
    pub(crate) fn in_sync_secondaries(&self, legs: u32) -> u32 {
        let st = self.meta.lock();
        let p = st.sb.primary_leg;
        mask_of(
            legs_of(legs & self.all_legs())
                .filter(|&l| l != p && st.sb.leg(l).state == LegState::InSync),
        )
    }

    /// The state of leg `leg`, and whether it is the primary.
    pub(crate) fn leg_state(&self, leg: u32) -> (LegState, bool) {
        let st = self.meta.lock();
        (st.sb.leg(leg).state, leg == st.sb.primary_leg)
    }
}
