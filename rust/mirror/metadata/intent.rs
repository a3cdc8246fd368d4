// SPDX-License-Identifier: GPL-2.0

//! Host writes and the write-intent log: what a write needs before it is
//! sent (its regions marked) and before it completes (its regions logged
//! for fractured legs), and the lazy clearing of intent bits once the legs
//! are flushed ([`MirrorState::settle`]).

use super::bitmap::SetBits;
use super::{MirrorState, NO_REGION};
use crate::format::{clear_bit, payload_mut};
use core::sync::atomic::Ordering;
use kernel::prelude::*;
use kernel::sync::lock::{mutex::MutexBackend, Guard};

/// What [`MirrorState::hold_settle`] returns.
pub(crate) type SettleHold<'a> = Guard<'a, (), MutexBackend>;

/// Why writes cannot be logged.
pub(crate) struct MetadataFailed;

/// What a write needs, from [`MirrorState::begin_write`].
pub(crate) struct WriteStart {
    /// Fractured legs: they must not get the write, it is logged for them.
    pub(crate) logged: u32,
    /// Epoch that must be durable before the write completes (fracture
    /// bits; the commit may run while the write is on its way).
    pub(crate) need: u64,
    /// Epoch that must be durable before the write is sent to any leg
    /// (intent bits); 0 if none.
    pub(crate) intent_need: u64,
}

impl MirrorState {
    /// Starts a host write (or write-zeroes, discard) of `sector..sector +
    /// sectors`: counts it in flight until [`MirrorState::end_write`], makes
    /// sure its regions are set in the intent bitmap, voids any copy of its
    /// regions and, if `log`, sets its regions in the bitmaps of the
    /// fractured legs.
    ///
    /// Fails, having undone everything, if something new would need
    /// marking or logging but the metadata device has failed: a write is
    /// never sent unmarked, nor acknowledged unlogged.
    ///
    /// Ordering with [`MirrorState::start_copy`]: the write is counted in flight
    /// before the leg masks are read (both `SeqCst`). A write that saw no
    /// recovering leg was counted before any copy could start; one that
    /// takes the lock either sees the copy's slot or was counted before the
    /// slot went in.
    pub(crate) fn begin_write(
        &self,
        sector: u64,
        sectors: u64,
        log: bool,
    ) -> Result<WriteStart, MetadataFailed> {
        let regions = self.geometry.regions_of(sector, sectors);
        let mut durable = self.intent.start_write(regions.clone());
        // Ordering with [`MirrorState::verify_begin`]: counted in flight before
        // the region being verified is read (both `SeqCst`): either the
        // verify sees the write in flight, or the write sees the region.
        let v = self.verify_region.load(Ordering::SeqCst);
        if v != NO_REGION && regions.contains(&v) {
            self.verify_raced.store(true, Ordering::SeqCst);
        }
        if !durable && self.no_intent {
            // No intent log: nothing to mark (the clean flag, cleared while
            // the table runs, covers every region).
            self.intent.mark_durable(regions.clone());
            durable = true;
        }
        self.host_writes.fetch_add(1, Ordering::Relaxed);
        let mut start = WriteStart {
            logged: 0,
            need: 0,
            intent_need: 0,
        };
        let recovering = self.recovering.load(Ordering::SeqCst);
        if durable && self.logged.load(Ordering::SeqCst) == 0 && recovering == 0 {
            return Ok(start);
        }
        let mut st = self.meta.lock();
        if recovering != 0 {
            for slot in st.copying.iter_mut() {
                if slot.active && regions.contains(&slot.region) {
                    slot.void = true;
                    slot.raced = true;
                }
            }
        }
        if !durable {
            start.intent_need = self.set_intent(&mut st, regions.clone());
        }
        if log {
            start.logged = self.logged.load(Ordering::Relaxed);
            start.need = self.set_bits(&mut st, start.logged, sector, sectors);
        }
        let committed = self.committed();
        if (start.need > committed || start.intent_need > committed)
            && self.meta_failed.load(Ordering::Relaxed)
        {
            drop(st);
            self.end_write(sector, sectors);
            return Err(MetadataFailed);
        }
        Ok(start)
    }

    /// A held write is about to be sent: legs fractured since
    /// [`MirrorState::begin_write`] (beyond `logged`) must not get it; its
    /// sectors are logged for them. Returns all legs not to send it to and
    /// the epoch the write must wait for before it completes.
    pub(crate) fn log_late(&self, logged: u32, sector: u64, sectors: u64) -> (u32, u64) {
        let now = self.logged.load(Ordering::SeqCst);
        let late = now & !logged;
        if late == 0 {
            return (logged, 0);
        }
        let mut st = self.meta.lock();
        (logged | late, self.set_bits(&mut st, late, sector, sectors))
    }

    /// The intent bits of a write started with [`MirrorState::begin_write`] are
    /// on disk: it may be sent, and later writes to its regions need not
    /// wait for them.
    pub(crate) fn intent_durable(&self, sector: u64, sectors: u64) {
        self.intent
            .mark_durable(self.geometry.regions_of(sector, sectors));
    }

    /// Ends what [`MirrorState::begin_write`] started, once the write completed
    /// on every leg it was sent to (or was not sent).
    pub(crate) fn end_write(&self, sector: u64, sectors: u64) {
        self.intent
            .end_write(self.geometry.regions_of(sector, sectors));
    }

    /// Clears the intent bits of regions no write touched for a whole scan
    /// period (every region with none in flight if `quiesced`: the device
    /// is suspended), once `flush` flushed every leg that gets writes.
    /// Returns the bits cleared; the caller commits. Sleeps.
    pub(crate) fn settle(&self, quiesced: bool, flush: impl FnOnce() -> Result) -> u64 {
        let _serial = self.settle_lock.lock();
        // Not before the first resume (an older table may still be running
        // and marking; a crash's bits are not handed to the legs yet), not
        // after a suspend, and not once nothing can be written.
        if !self.active.load(Ordering::Acquire) || self.meta_failed.load(Ordering::Acquire) {
            return 0;
        }
        let mut scan = self.intent.scan(quiesced);
        let per = self.layout.bitmap_blocks();
        let nr_regions = self.geometry.nr_regions();
        // One block per lock hold.
        for idx in 0..per {
            let st = self.meta.lock();
            let b = self.block_index(self.nr_legs, idx);
            let mut walk = SetBits::new(idx);
            while let Some((_, r)) = walk.next_in(&st.blocks[b]) {
                if r >= nr_regions {
                    break;
                }
                self.intent.consider(&mut scan, r);
            }
        }
        if scan.candidates() == 0 {
            return 0;
        }
        let Ok(settled) = self.intent.flush(scan, flush) else {
            return 0;
        };
        // Clear and commit under the commit lock: a commit already running
        // may have copied a leg's fracture bitmap before a fracture added
        // bits to it, and must not then write intent blocks cleared on the
        // strength of those bits. Ours writes the fracture bitmaps first.
        let mut buf = self.commit.lock();
        let mut cleared = 0;
        for idx in 0..per {
            let mut st = self.meta.lock();
            let b = self.block_index(self.nr_legs, idx);
            let mut block_cleared = 0;
            let mut walk = SetBits::new(idx);
            while let Some((found, r)) = walk.next_in(&st.blocks[b]) {
                // No new epoch: a clear is never waited for, and a later
                // set stamps the block again.
                if r < nr_regions
                    && settled.try_clear(r)
                    && clear_bit(payload_mut(&mut st.blocks[b]), found)
                {
                    block_cleared += 1;
                }
            }
            if block_cleared != 0 {
                st.dirty[b] = true;
                st.intent_count -= block_cleared;
                cleared += block_cleared;
            }
        }
        if cleared != 0 {
            self.commit_locked(&mut buf);
        }
        cleared
    }

    /// Sets, in the bitmaps of the legs in `legs` (just fractured: their
    /// bits in `logged` are set), every region a host write may be in
    /// flight to: such a write may have been sent to them before, and may
    /// complete there after the flush meant to make what they took
    /// durable. Conservative: a region sharing an in-flight counter with a
    /// busy one is set too ([`crate::intent::IntentTracker::in_flight`]).
    /// The caller commits.
    ///
    /// Why no write sent to these legs is missed. A write counts itself in
    /// flight (`start_write`, `SeqCst`) before it reads `logged` to choose
    /// its legs (`begin_write`: a `SeqCst` load, or a load under the state
    /// lock the fracture set the bit under; a held write reads it again in
    /// `log_late`, still counted), and stays counted until it completed on
    /// every leg it was sent to (`end_write`, from `fanout_done`, or from
    /// the metadata thread once a failure is logged). The fracture set the
    /// legs' bits before this scan (`SeqCst`). So for a write sent to one
    /// of them, its read of `logged` came before the fracture, hence its
    /// count before this scan's read of its bucket: the scan sees it, or
    /// it had already ended, i.e. completed on the leg, and the flush that
    /// follows this scan covers it. A write whose count the scan does not
    /// see started after the fracture and saw the bit: it was logged for
    /// the leg, not sent.
    pub(crate) fn mark_in_flight(&self, legs: u32) {
        if legs == 0 {
            return;
        }
        // The lock per region found, not over the whole scan.
        for r in self.intent.in_flight() {
            let range = self.geometry.sectors_of(r);
            let mut st = self.meta.lock();
            self.set_bits(&mut st, legs, range.start, range.end - range.start);
        }
    }

    /// Holds off the clearing of intent bits ([`MirrorState::settle`] waits)
    /// until dropped. Taken before a leg is split on request and held
    /// until its flush settled what it gets marked: until then the leg's
    /// acknowledged writes may sit in its volatile cache, covered by
    /// nothing but their intent bits (settle flushes only the legs that
    /// get writes, which the split one no longer does). Sleeps.
    pub(crate) fn hold_settle(&self) -> SettleHold<'_> {
        self.settle_lock.lock()
    }

    /// The table is running (first resume done) or not (suspended): intent
    /// bits are cleared only while it runs.
    pub(crate) fn set_active(&self, active: bool) {
        let _serial = self.settle_lock.lock();
        self.active.store(active, Ordering::Release);
    }
}
