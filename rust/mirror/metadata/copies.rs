// SPDX-License-Identifier: GPL-2.0

//! What the recovery thread tells the write path: the copies in flight
//! (a host write to a region being copied voids its copy), and the region
//! `verify` is comparing, with the regions discarded since the table was
//! loaded (not compared).

use super::{CopySlot, MirrorState, NO_REGION};
use crate::dm::carry;
use crate::format::{bit_position, clear_bit, payload_mut, LegState};
use crate::mirror::legmask::legs_of;
use core::sync::atomic::Ordering;

/// What [`MirrorState::verify_mismatch`] did.
pub(crate) enum VerifyMark {
    /// The region is marked on the leg; `split`: the leg was in sync and
    /// is split now.
    Marked { split: bool },
    /// A `verify check`: the finding counts, nothing was marked.
    Found,
    /// The leg is neither in sync nor fractured any more (or became the
    /// primary): not compared further.
    LegGone,
    /// The primary changed or may be failing: the comparison proves
    /// nothing, nothing was marked.
    Stale,
}

impl MirrorState {
    /// Recovery is about to copy `region` from leg `source` to `legs`
    /// through slot `slot`. If a host write of the region is in flight now,
    /// or one starts before [`MirrorState::finish_copy`], or `source` is not the
    /// primary any more (a failover since it was chosen: the old primary
    /// may miss writes the legs took), the copy will clear nothing. A
    /// failover after this voids the copy too (`legs_failed_locked`).
    pub(crate) fn start_copy(&self, slot: usize, region: u64, legs: u32, source: u32) {
        let mut st = self.meta.lock();
        let raced = self.intent.busy(region);
        let void = raced || source != st.sb.primary_leg || self.failure_pending();
        if let Some(s) = st.copying.get_mut(slot) {
            *s = CopySlot {
                active: true,
                region,
                legs,
                void,
                raced,
            };
        }
    }

    /// The copy in slot `slot` ended; it was written (and the legs flushed)
    /// to the legs in `ok`. Clears the region's bit for those legs that are
    /// still recovering, unless the copy was voided. Returns the bits
    /// cleared. The caller commits.
    pub(crate) fn finish_copy(&self, slot: usize, ok: u32) -> u64 {
        let mut st = self.meta.lock();
        let Some(s) = st.copying.get_mut(slot) else {
            return 0;
        };
        let done = *s;
        *s = CopySlot::default();
        if !done.active {
            return 0;
        }
        if done.void || self.failure_pending() {
            if done.raced {
                self.stats.copies_redone.fetch_add(1, Ordering::Relaxed);
            }
            return 0;
        }
        let (idx, bit) = bit_position(done.region);
        let mut cleared = 0;
        for leg in legs_of(ok & done.legs & self.all_legs()) {
            if st.sb.leg(leg).state != LegState::Recovering {
                continue;
            }
            let b = self.block_index(leg, idx);
            // No new epoch: clearing a bit is never waited for, and a later
            // set of it stamps the block again.
            if clear_bit(payload_mut(&mut st.blocks[b]), bit) {
                st.dirty[b] = true;
                st.counts[leg as usize] -= 1;
                cleared += 1;
            }
        }
        st.recovered += cleared;
        self.stats
            .regions_copied
            .fetch_add(cleared, Ordering::Relaxed);
        cleared
    }

    /// The recovery thread is about to compare `region` across the legs
    /// (`verify`). Returns whether no host write of it is in flight; one
    /// that starts before [`MirrorState::verify_end`] is reported there.
    pub(crate) fn verify_begin(&self, region: u64) -> bool {
        self.verify_raced.store(false, Ordering::SeqCst);
        self.verify_region.store(region, Ordering::SeqCst);
        !self.intent.busy(region)
    }

    /// The comparison [`MirrorState::verify_begin`] started is over. Returns
    /// whether no host write of the region started meanwhile (if one did,
    /// the legs may have differed only for its moment: compare again).
    pub(crate) fn verify_end(&self) -> bool {
        self.verify_region.store(NO_REGION, Ordering::SeqCst);
        !self.verify_raced.swap(false, Ordering::SeqCst)
    }

    /// A discard of `sector..sector + sectors` is being sent: its regions'
    /// contents are undefined from now on (for `verify`). Any context.
    pub(crate) fn note_discard(&self, sector: u64, sectors: u64) {
        for r in self.geometry.regions_of(sector, sectors) {
            if let Some(w) = self.discarded.get((r / 64) as usize) {
                w.fetch_or(1 << (r % 64), Ordering::Relaxed);
            }
        }
    }

    /// The table is suspended (it may be replaced): the regions discarded
    /// are left for the next table of this metadata, which takes them at
    /// its resume ([`MirrorState::take_discards`]; `dm::carry`), so that a
    /// reload keeps reading them from the primary and `verify` keeps
    /// skipping them. Sleeps.
    pub(crate) fn leave_discards(&self) {
        let uuid = self.meta.lock().sb.uuid;
        if !carry::leave(&uuid, &self.discarded) {
            crate::dm_warn!(
                "suspend: no memory to hand the discarded regions to the next table: a verify after a reload may split a leg over them"
            );
        }
    }

    /// Resuming: takes the regions discarded under an earlier table of this
    /// metadata (see [`MirrorState::leave_discards`]), before any bio is
    /// mapped. Sleeps.
    pub(crate) fn take_discards(&self) {
        let uuid = self.meta.lock().sb.uuid;
        carry::take(&uuid, &self.discarded);
    }

    /// Whether `region` was discarded since the table was loaded, or under
    /// an earlier table of the same metadata (kept across reloads, not
    /// across a reboot).
    pub(crate) fn was_discarded(&self, region: u64) -> bool {
        self.discarded
            .get((region / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (region % 64)) != 0)
    }

    /// `verify` found secondary `leg` different from primary `primary` in
    /// `region` (or could not read it there): the region is set in its
    /// fracture bitmap. A leg still in sync is first split like by the
    /// `fracture` message (never rejoined automatically): it must not
    /// serve reads or take over as primary with the region wrong, and it
    /// may be losing writes. Nothing is marked if `primary` is not the
    /// healthy primary any more, or a failure that may move it is
    /// pending: what was read from it may be stale. The caller flushes the
    /// leg if it was split, and commits. With `check` (`verify check`)
    /// the same holds for whether the finding counts, but nothing is
    /// marked and no leg split: the primary may be the leg that is wrong.
    pub(crate) fn verify_mismatch(
        &self,
        leg: u32,
        region: u64,
        primary: u32,
        check: bool,
    ) -> VerifyMark {
        let mut st = self.meta.lock();
        if st.sb.primary_leg != primary
            || self.primary_failed.load(Ordering::Acquire)
            || self.failure_pending()
        {
            return VerifyMark::Stale;
        }
        if leg == primary {
            return VerifyMark::LegGone;
        }
        let split = match st.sb.leg(leg).state {
            LegState::InSync | LegState::Fractured if check => return VerifyMark::Found,
            LegState::InSync => self.fracture_locked(&mut st, leg, true),
            LegState::Fractured => false,
            LegState::Recovering | LegState::Failed => return VerifyMark::LegGone,
        };
        let range = self.geometry.sectors_of(region);
        self.set_bits(&mut st, 1 << leg, range.start, range.end - range.start);
        VerifyMark::Marked { split }
    }
}
