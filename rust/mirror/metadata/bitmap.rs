// SPDX-License-Identifier: GPL-2.0

//! The bitmaps in memory (`MetaState::blocks`): setting and testing the
//! bits of regions, per leg and in the intent bitmap, merging one bitmap
//! into another, and finding the regions left to copy. Changes are
//! stamped with the open epoch and the blocks marked dirty; `store`
//! writes them.

use super::{MetaState, MirrorState};
use crate::format::{bit_position, fill, next_set_bit, payload, payload_mut, set_bit, test_bit, BITS_PER_BLOCK};
use core::ops::Range;

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
        let per_leg = self.layout.bitmap_blocks();
        for leg in 0..self.nr_legs {
            if legs & (1 << leg) == 0 {
                continue;
            }
            for region in self.geometry.regions_of(sector, sectors) {
                let (idx, bit) = bit_position(region);
                let b = (u64::from(leg) * per_leg + idx) as usize;
                if set_bit(payload_mut(st.blocks[b].bytes_mut()), bit) {
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
            if set_bit(payload_mut(st.blocks[b].bytes_mut()), bit) {
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
            let mut bit = 0;
            while let Some(found) = next_set_bit(payload(st.blocks[from].bytes()), bit) {
                if set_bit(payload_mut(st.blocks[to].bytes_mut()), found) {
                    block_added += 1;
                }
                bit = found + 1;
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
        let per_leg = self.layout.bitmap_blocks();
        let nr_regions = self.geometry.nr_regions();
        for idx in 0..per_leg {
            let b = (u64::from(leg) * per_leg + idx) as usize;
            fill(payload_mut(st.blocks[b].bytes_mut()), idx, nr_regions);
            st.block_seq[b] = st.open_seq;
            st.dirty[b] = true;
        }
        st.counts[leg as usize] = nr_regions;
    }

    /// Whether `region` is set in leg `leg`'s fracture bitmap.
    pub(crate) fn region_dirty(&self, leg: u32, region: u64) -> bool {
        let (idx, bit) = bit_position(region);
        let b = (u64::from(leg) * self.layout.bitmap_blocks() + idx) as usize;
        let st = self.meta.lock();
        st.blocks.get(b).is_some_and(|blk| test_bit(payload(blk.bytes()), bit))
    }

    /// The first region set in leg `leg`'s bitmap.
    pub(crate) fn first_dirty(&self, leg: u32) -> Option<u64> {
        self.next_dirty(0, 1 << leg).map(|(r, _)| r)
    }

    /// The first region at or after `from` set in the bitmap of one of
    /// `legs` and not being copied, with the legs of `legs` it is set for.
    pub(crate) fn next_dirty(&self, from: u64, legs: u32) -> Option<(u64, u32)> {
        let per_leg = self.layout.bitmap_blocks();
        let nr_regions = self.geometry.nr_regions();
        let mut region = from;
        while region < nr_regions {
            let (idx, mut bit) = bit_position(region);
            // One bitmap block per lock hold.
            let st = self.meta.lock();
            loop {
                let mut best: Option<usize> = None;
                for leg in 0..self.nr_legs {
                    if legs & (1 << leg) == 0 {
                        continue;
                    }
                    let b = (u64::from(leg) * per_leg + idx) as usize;
                    if let Some(found) = next_set_bit(payload(st.blocks[b].bytes()), bit) {
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
                let mut which = 0;
                for leg in 0..self.nr_legs {
                    let b = (u64::from(leg) * per_leg + idx) as usize;
                    if legs & (1 << leg) != 0 && test_bit(payload(st.blocks[b].bytes()), found) {
                        which |= 1 << leg;
                    }
                }
                return Some((r, which));
            }
            drop(st);
            region = (idx + 1) * BITS_PER_BLOCK;
        }
        None
    }
}
