// SPDX-License-Identifier: GPL-2.0

//! The bitmaps in memory (`MetaState::blocks`): setting and testing the
//! bits of regions, per leg and in the intent bitmap, merging one bitmap
//! into another, and finding the regions left to copy. Changes are
//! stamped with the open epoch and the blocks marked dirty; `store`
//! writes them.

use super::{MemBlock, MetaState, MirrorState};
use crate::format::{
    bit_position, fill, next_set_bit, payload, payload_mut, set_bit, test_bit, BITS_PER_BLOCK,
};
use crate::mirror::legmask::{legs_of, mask_of};
use core::ops::Range;

/// A walk over the set bits of one bitmap block (block `idx` of its
/// bitmap), lowest first. Each step is handed the block, so that the
/// caller may change it between steps (clear the bit just found, say).
pub(super) struct SetBits {
    idx: u64,
    next: usize,
}

impl SetBits {
    /// A walk of block `idx` of a bitmap, from its first bit.
    pub(super) fn new(idx: u64) -> Self {
        Self { idx, next: 0 }
    }

    /// The next set bit of `block`: its number in the block, and the
    /// region it stands for (which may be past the last region).
    pub(super) fn next_in(&mut self, block: &MemBlock) -> Option<(usize, u64)> {
        let found = next_set_bit(payload(block), self.next)?;
        self.next = found + 1;
        Some((found, self.idx * BITS_PER_BLOCK + found as u64))
    }
}

impl MirrorState {
    /// Index in `MetaState::blocks` of block `idx` of bitmap `which`
    /// (a leg, or `nr_legs` for the intent bitmap).
    pub(super) fn block_index(&self, which: u32, idx: u64) -> usize {
        (u64::from(which) * self.layout.bitmap_blocks() + idx) as usize
    }

    /// Sets the bits of sectors `sector..sector + sectors` in the bitmap of
    /// every leg in `legs`; `st` is the locked state. Returns the epoch that
    /// must be durable before a write to those sectors may complete (0 if
    /// the bits are already on disk).
    pub(super) fn set_bits(&self, st: &mut MetaState, legs: u32, sector: u64, sectors: u64) -> u64 {
        let mut need = 0;
        for leg in legs_of(legs & self.all_legs()) {
            for region in self.geometry.regions_of(sector, sectors) {
                let (idx, bit) = bit_position(region);
                let b = self.block_index(leg, idx);
                if set_bit(payload_mut(&mut st.blocks[b]), bit) {
                    st.counts[leg as usize] += 1;
                    st.block_seq[b] = st.open_seq;
                    st.dirty[b] = true;
                }
                need = need.max(st.block_seq[b]);
            }
        }
        need
    }

    /// Sets `regions` in the intent bitmap; `st` locked. Returns the epoch
    /// that must be durable before a write to them is sent (at most the
    /// committed one if they are already on disk).
    pub(super) fn set_intent(&self, st: &mut MetaState, regions: Range<u64>) -> u64 {
        let mut need = 0;
        for region in regions {
            let (idx, bit) = bit_position(region);
            let b = self.block_index(self.nr_legs, idx);
            if set_bit(payload_mut(&mut st.blocks[b]), bit) {
                st.intent_count += 1;
                st.block_seq[b] = st.open_seq;
                st.dirty[b] = true;
            }
            need = need.max(st.block_seq[b]);
        }
        need
    }

    /// Sets every intent bit in the fracture bitmap of secondary `leg`, in
    /// the open epoch; `st` locked. Returns the bits newly set.
    pub(super) fn or_intent_into(&self, st: &mut MetaState, leg: u32) -> u64 {
        self.or_bitmap_into(st, self.nr_legs, leg)
    }

    /// Sets every bit of bitmap `from` (a leg's, or `nr_legs` for the intent
    /// bitmap) in the fracture bitmap of leg `leg`, in the open epoch; `st`
    /// locked. Returns the bits newly set.
    pub(super) fn or_bitmap_into(&self, st: &mut MetaState, from_bitmap: u32, leg: u32) -> u64 {
        let mut added = 0;
        for idx in 0..self.layout.bitmap_blocks() {
            let from = self.block_index(from_bitmap, idx);
            let to = self.block_index(leg, idx);
            let mut block_added = 0;
            let mut walk = SetBits::new(idx);
            while let Some((found, _)) = walk.next_in(&st.blocks[from]) {
                if set_bit(payload_mut(&mut st.blocks[to]), found) {
                    block_added += 1;
                }
            }
            if block_added != 0 {
                st.block_seq[to] = st.open_seq;
                st.dirty[to] = true;
                added += block_added;
            }
        }
        st.counts[leg as usize] += added;
        added
    }

    /// Sets every bit of leg `leg`'s bitmap, in the open epoch.
    pub(super) fn fill_leg_locked(&self, st: &mut MetaState, leg: u32) {
        self.fill_bitmap(st, leg);
        st.counts[leg as usize] = self.geometry.nr_regions();
    }

    /// Sets the bit of every region in bitmap `which` (a leg, or `nr_legs`
    /// for the intent bitmap), in the open epoch; `st` locked. Counts are
    /// the caller's.
    pub(super) fn fill_bitmap(&self, st: &mut MetaState, which: u32) {
        let nr_regions = self.geometry.nr_regions();
        for idx in 0..self.layout.bitmap_blocks() {
            let b = self.block_index(which, idx);
            fill(payload_mut(&mut st.blocks[b]), idx, nr_regions);
            st.block_seq[b] = st.open_seq;
            st.dirty[b] = true;
        }
    }

    /// Clears bitmap `which` (a leg, or `nr_legs` for the intent bitmap),
    /// its blocks marked dirty (to be written) if `dirty`, else clean;
    /// `st` locked. No new epoch: a clear is never waited for. Counts are
    /// the caller's.
    pub(super) fn clear_bitmap(&self, st: &mut MetaState, which: u32, dirty: bool) {
        for idx in 0..self.layout.bitmap_blocks() {
            let b = self.block_index(which, idx);
            payload_mut(&mut st.blocks[b]).fill(0);
            st.dirty[b] = dirty;
        }
    }

    /// Whether `region` is set in leg `leg`'s fracture bitmap.
    pub(crate) fn region_dirty(&self, leg: u32, region: u64) -> bool {
        let (idx, bit) = bit_position(region);
        let b = self.block_index(leg, idx);
        let st = self.meta.lock();
        st.blocks
            .get(b)
            .is_some_and(|blk| test_bit(payload(blk), bit))
    }

    /// The first region set in leg `leg`'s bitmap.
    pub(crate) fn first_dirty(&self, leg: u32) -> Option<u64> {
        self.next_dirty(0, 1 << leg).map(|(r, _)| r)
    }

    /// The first region at or after `from` set in the bitmap of one of
    /// `legs` and not being copied, with the legs of `legs` it is set for.
    pub(crate) fn next_dirty(&self, from: u64, legs: u32) -> Option<(u64, u32)> {
        let legs = legs & self.all_legs();
        let nr_regions = self.geometry.nr_regions();
        let mut region = from;
        while region < nr_regions {
            let (idx, mut bit) = bit_position(region);
            // One bitmap block per lock hold.
            let st = self.meta.lock();
            loop {
                let mut best: Option<usize> = None;
                for leg in legs_of(legs) {
                    let b = self.block_index(leg, idx);
                    if let Some(found) = next_set_bit(payload(&st.blocks[b]), bit) {
                        best = Some(best.map_or(found, |x| x.min(found)));
                    }
                }
                let Some(found) = best else { break };
                let r = idx * BITS_PER_BLOCK + found as u64;
                if r >= nr_regions {
                    break;
                }
                if st.copying.iter().any(|s| s.active && s.region == r) {
                    bit = found + 1;
                    continue;
                }
                let which = mask_of(legs_of(legs).filter(|&leg| {
                    test_bit(payload(&st.blocks[self.block_index(leg, idx)]), found)
                }));
                return Some((r, which));
            }
            drop(st);
            region = (idx + 1) * BITS_PER_BLOCK;
        }
        None
    }
}
