// SPDX-License-Identifier: GPL-2.0

//! The memory a table keeps for its change tracking, which grows with the
//! number of regions: the bitmaps in memory (every leg's fracture bitmap
//! and the write-intent bitmap, as the 4 KiB blocks they are on disk, with
//! 9 bytes of bookkeeping per block), the write-intent tracker's three
//! atomic bitmaps and its in-flight counters, the bitmap of regions
//! discarded since the table was loaded, and the buffer bitmaps are read
//! through (one bitmap, up to [`LOAD_CHUNK_BYTES`]). The kernel checks it against its
//! limit before allocating anything, and names a region size that fits.

use crate::format::{Layout, BLOCK_SIZE};
use crate::intent::{words_for, WRITE_BUCKETS};
use crate::region::{MAX_REGION_SECTORS, MIN_REGION_SECTORS};

/// The largest single allocation kvmalloc makes (`INT_MAX` bytes): a table
/// with a larger array is refused whatever the memory limit.
pub const MAX_ALLOCATION: u64 = i32::MAX as u64;

/// The largest buffer the metadata is read (and formatted) through.
pub const LOAD_CHUNK_BYTES: u64 = 1 << 20;

/// Memory a table's change tracking needs, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Everything, together.
    pub total: u64,
    /// The largest single array (one allocation).
    pub largest: u64,
}

impl MemoryNeed {
    /// What a table with `nr_legs` legs and `nr_regions` regions needs.
    pub fn of(nr_legs: u32, nr_regions: u64) -> Self {
        let layout = Layout::new(nr_legs, nr_regions);
        // Every fracture bitmap, then the intent bitmap.
        let nblocks = (u64::from(nr_legs) + 1).saturating_mul(layout.bitmap_blocks());
        let blocks = nblocks.saturating_mul(BLOCK_SIZE as u64);
        // Per block: the epoch of its last change (u64) and a dirty flag.
        let seqs = nblocks.saturating_mul(8);
        let dirty = nblocks;
        // One atomic bitmap: the tracker has three, plus `discarded`.
        let bitmap = (words_for(nr_regions) as u64).saturating_mul(8);
        let buckets = WRITE_BUCKETS as u64 * 4;
        let load = layout
            .bitmap_blocks()
            .saturating_mul(BLOCK_SIZE as u64)
            .min(LOAD_CHUNK_BYTES);
        let total = blocks
            .saturating_add(load)
            .saturating_add(seqs)
            .saturating_add(dirty)
            .saturating_add(bitmap.saturating_mul(4))
            .saturating_add(buckets);
        Self {
            total,
            largest: blocks.max(bitmap).max(seqs),
        }
    }

    /// Whether a table may allocate it under a limit of `limit` bytes.
    pub fn fits(&self, limit: u64) -> bool {
        self.total <= limit && self.largest <= MAX_ALLOCATION
    }
}

/// Regions of `region_sectors` in a target of `len` sectors (the last one
/// may be partial). `region_sectors` must be a power of two.
fn regions(len: u64, region_sectors: u64) -> u64 {
    len.div_ceil(region_sectors)
}

/// The smallest region size, in sectors, from `region_sectors` up (powers
/// of two up to the maximum), at which a target of `len` sectors with
/// `nr_legs` legs fits under `limit` bytes; `None` if none does.
pub fn fitting_region_size(len: u64, nr_legs: u32, limit: u64, region_sectors: u64) -> Option<u64> {
    let mut r = region_sectors
        .max(MIN_REGION_SECTORS)
        .checked_next_power_of_two()?;
    while r <= MAX_REGION_SECTORS {
        if MemoryNeed::of(nr_legs, regions(len, r)).fits(limit) {
            return Some(r);
        }
        r <<= 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    /// 16 TiB in sectors.
    const LEN_16T: u64 = 1 << 35;

    #[test]
    fn sixteen_tib() {
        // 4 KiB regions: 2^32 regions, 132105 blocks per bitmap.
        let n = MemoryNeed::of(2, LEN_16T >> 3);
        assert_eq!(n.largest, 3 * 132_105 * 4096);
        assert_eq!(
            n.total,
            3 * 132_105 * (4096 + 9) + 4 * (1u64 << 32) / 8 + 4096 + MIB
        );
        assert!(n.total > 3500 * MIB && n.total < 3700 * MIB);
        // 64 KiB regions: 2^28 regions.
        let n = MemoryNeed::of(2, LEN_16T >> 7);
        assert!(n.total > 220 * MIB && n.total < 230 * MIB, "{}", n.total);
        // 512 KiB regions.
        let n = MemoryNeed::of(2, LEN_16T >> 10);
        assert!(n.total > 28 * MIB && n.total < 30 * MIB, "{}", n.total);
    }

    #[test]
    fn small_tables_need_little() {
        // One block per bitmap at least.
        let n = MemoryNeed::of(2, 1);
        assert_eq!(n.largest, 3 * 4096);
        assert_eq!(n.total, 3 * (4096 + 9) + 4 * 8 + 4096 + 4096);
        assert!(MemoryNeed::of(9, 128).fits(MIB));
    }

    #[test]
    fn suggestion() {
        // 330 MiB: 4 KiB regions need 3.5 GiB; 32 KiB regions 448 MiB,
        // 64 KiB 224 MiB.
        let limit = 330 * MIB;
        assert!(!MemoryNeed::of(2, LEN_16T >> 3).fits(limit));
        assert_eq!(fitting_region_size(LEN_16T, 2, limit, 8), Some(128));
        // The answer itself fits, the next smaller size does not.
        let r = fitting_region_size(LEN_16T, 2, limit, 8).unwrap();
        assert!(MemoryNeed::of(2, regions(LEN_16T, r)).fits(limit));
        assert!(!MemoryNeed::of(2, regions(LEN_16T, r / 2)).fits(limit));
        // Never below the size asked for.
        assert_eq!(fitting_region_size(LEN_16T, 2, limit, 1024), Some(1024));
        // Nothing fits in nothing.
        assert_eq!(fitting_region_size(LEN_16T, 2, 0, 8), None);
        // A size that is not a power of two is rounded up.
        assert_eq!(fitting_region_size(1 << 20, 2, MIB, 9), Some(16));
    }

    #[test]
    fn single_allocation_cap() {
        // A machine with memory to spare still cannot kvmalloc an array
        // above INT_MAX: 64 TiB at 4 KiB regions has 2^34 regions, 2 GiB
        // per atomic bitmap; at 8 KiB the three bitmaps' blocks together
        // are still 3.2 GiB.
        let n = MemoryNeed::of(2, 1 << 34);
        assert!(n.largest > MAX_ALLOCATION);
        assert!(!n.fits(u64::MAX));
        assert!(!MemoryNeed::of(2, 1 << 33).fits(u64::MAX));
        assert_eq!(fitting_region_size(1 << 37, 2, u64::MAX, 8), Some(32));
    }

    #[test]
    fn no_overflow_at_the_extremes() {
        let n = MemoryNeed::of(9, u64::MAX >> 3);
        assert!(!n.fits(u64::MAX));
        assert_eq!(fitting_region_size(u64::MAX, 9, u64::MAX, 8), None);
        assert_eq!(fitting_region_size(u64::MAX, 9, u64::MAX, u64::MAX), None);
    }
}
