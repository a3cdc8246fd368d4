// SPDX-License-Identifier: GPL-2.0

//! Offline analysis of a metadata device (dump, check, repair).
//!
//! [`analyse`] reads block 0 and, if it holds a valid superblock, every
//! bitmap block of the layout it describes: each block is verified
//! (checksum, type, location, UUID) and its bits past the last region are
//! checked; the dirty regions of the blocks that can be trusted are counted
//! and, on request, collected as ranges. Nothing read from disk is used to
//! index or size anything before `Superblock::decode` has validated it.

use crate::error::Result;
use crate::metadata::{Block, MetaDev, SuperblockRead};
use fracture_core::format::{
    count_ones, next_set_bit, padding_clear, payload, verify, BlockType, FormatError, Layout,
    LegState, PrimaryCheck, Superblock, BITS_PER_BLOCK, BLOCK_SIZE, FLAG_CLEAN,
};

/// Why a bitmap block cannot be trusted.
#[derive(Clone, Copy, Debug)]
pub enum Damage {
    /// It fails `verify`.
    Format(FormatError),
    /// The device ends before it.
    PastEnd,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Format(e) => write!(f, "{e}"),
            Self::PastEnd => f.write_str("past the end of the device"),
        }
    }
}

/// A bitmap block that cannot be trusted.
#[derive(Clone, Copy, Debug)]
pub struct BadBlock {
    /// Its block number on the device.
    pub nr: u64,
    /// Its index within its bitmap.
    pub index: u64,
    /// The regions it covers, first and last (inclusive).
    pub regions: (u64, u64),
    /// Why it is not trusted.
    pub damage: Damage,
}

/// What one bitmap (a leg's fracture bitmap, or the intent log) holds.
#[derive(Clone, Debug)]
pub struct BitmapReport {
    /// Block type of its blocks.
    pub kind: BlockType,
    /// Dirty regions in the blocks that can be trusted.
    pub dirty: u64,
    /// Those regions as inclusive ranges, ascending (if asked for).
    pub ranges: Vec<(u64, u64)>,
    /// Blocks that cannot be trusted (their bits are not counted).
    pub bad: Vec<BadBlock>,
    /// Trusted blocks with bits set past the last region (those bits are
    /// not counted).
    pub padding: Vec<u64>,
}

impl BitmapReport {
    fn new(kind: BlockType) -> Self {
        Self {
            kind,
            dirty: 0,
            ranges: Vec::new(),
            bad: Vec::new(),
            padding: Vec::new(),
        }
    }

    /// Adds region `r`, in ascending order, to the ranges.
    fn push_region(&mut self, r: u64) {
        if let Some(last) = self.ranges.last_mut() {
            if last.1.checked_add(1) == Some(r) {
                last.1 = r;
                return;
            }
        }
        self.ranges.push((r, r));
    }
}

/// Everything found on a device with a valid superblock.
pub struct Analysis {
    /// The device's size in bytes.
    pub bytes: u64,
    /// The superblock.
    pub sb: Superblock,
    /// Its layout.
    pub layout: Layout,
    /// One report per leg.
    pub legs: Vec<BitmapReport>,
    /// The write-intent log.
    pub intent: BitmapReport,
}

impl Analysis {
    /// Bytes the layout needs.
    pub fn needed_bytes(&self) -> u64 {
        self.layout.total_blocks() * BLOCK_SIZE as u64
    }

    /// Whether the device holds every block of the layout.
    pub fn size_ok(&self) -> bool {
        self.bytes >= self.needed_bytes()
    }

    /// The bitmaps, legs first, then the intent log, each with a label.
    pub fn bitmaps(&self) -> impl Iterator<Item = (String, &BitmapReport)> {
        self.legs
            .iter()
            .enumerate()
            .map(|(l, r)| (format!("leg {l}"), r))
            .chain(std::iter::once(("intent log".to_string(), &self.intent)))
    }

    /// Problems found, one line each (empty: sound).
    pub fn problems(&self, name: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !self.size_ok() {
            p.push(size_problem(name, self.bytes, &self.layout));
        }
        for (label, bm) in self.bitmaps() {
            for b in &bm.bad {
                if let Damage::Format(e) = b.damage {
                    p.push(format!("{label}: {e}"));
                }
            }
            for nr in &bm.padding {
                p.push(format!(
                    "{label}: {} block {nr} has bits set past the last region",
                    bm.kind.name()
                ));
            }
        }
        p
    }

    /// Observations about what activation will do with this metadata,
    /// which are not damage. Mirrors the kernel's load logic
    /// (`MirrorState::load` in `rust/mirror/metadata/store.rs`).
    pub fn notes(&self) -> Vec<String> {
        let mut n = Vec::new();
        let mut sb = self.sb;
        if sb.flags & FLAG_CLEAN == 0 {
            n.push(
                "not shut down cleanly (clean flag clear): activation copies every region from the primary to the secondaries"
                    .to_string(),
            );
        }
        if sb.flags & !FLAG_CLEAN != 0 {
            n.push(format!(
                "unknown superblock flags {:#x} (ignored)",
                sb.flags & !FLAG_CLEAN
            ));
        }
        if self.intent.dirty != 0 {
            n.push(format!(
                "the write-intent log has {} set (not shut down cleanly): activation copies them from the primary to the secondaries",
                regions(self.intent.dirty)
            ));
        }
        let mut dirty = (0..sb.nr_legs)
            .filter(|&l| self.legs[l as usize].dirty != 0)
            .fold(0u32, |m, l| m | 1 << l);
        let p = sb.primary_leg;
        let rec = *sb.leg(p);
        if dirty & (1 << p) != 0
            && rec.state == LegState::InSync
            && rec.generation == sb.event
            && sb.source_candidate(dirty | 1 << p).is_none()
        {
            n.push(format!(
                "primary leg {p} has {} dirty and no other leg can serve: it stays the primary and those regions are copied to the other legs",
                regions(self.legs[p as usize].dirty)
            ));
            dirty = (0..sb.nr_legs)
                .filter(|&l| l != p)
                .fold(0u32, |m, l| m | 1 << l);
        }
        for leg in 0..sb.nr_legs {
            if dirty & (1 << leg) == 0 || sb.leg(leg).state != LegState::InSync {
                continue;
            }
            if leg != p {
                n.push(format!(
                    "leg {leg} is in sync but has {} dirty: activation takes it as fractured",
                    regions(self.legs[leg as usize].dirty)
                ));
            }
            sb.leave_sync(leg);
            let rec = sb.leg_mut(leg);
            rec.state = LegState::Fractured;
            rec.split = false;
        }
        match sb.check_primary(dirty) {
            PrimaryCheck::Kept => {}
            PrimaryCheck::Switched { from, to } => {
                let d = self.legs[from as usize].dirty;
                if d != 0 {
                    n.push(format!(
                        "primary leg {from} has {} dirty: activation will hand over to leg {to}",
                        regions(d)
                    ));
                } else {
                    n.push(format!(
                        "primary leg {from} missed writes (generation {}, event {}): activation will hand over to leg {to}",
                        self.sb.leg(from).generation,
                        self.sb.event
                    ));
                }
            }
            PrimaryCheck::NoSource => n.push(format!(
                "no leg is in sync at event {}: after activation no leg can serve as the primary and host I/O fails",
                sb.event
            )),
        }
        n
    }
}

/// What a device holds.
pub enum Contents {
    /// Less than one block: not even a superblock.
    TooSmall,
    /// Block 0 all zero: never formatted.
    Blank,
    /// Block 0 is not a valid superblock.
    Invalid(FormatError),
    /// A valid superblock; its bitmaps analysed.
    Valid(Box<Analysis>),
}

/// The problem line for a device smaller than its layout.
pub fn size_problem(name: &str, bytes: u64, layout: &Layout) -> String {
    format!(
        "{name} is smaller than its metadata layout: {} sectors, the layout needs {} ({} blocks of 4 KiB)",
        bytes / 512,
        layout.min_sectors(),
        layout.total_blocks()
    )
}

/// The message for a blank device.
pub const NO_METADATA: &str = "no metadata: the superblock (block 0) is all zero (never formatted)";

/// The regions covered by block `index` of a bitmap of `nr_regions`
/// regions, first and last. `index` must be below the bitmap's block count.
pub fn block_regions(index: u64, nr_regions: u64) -> (u64, u64) {
    let first = index.saturating_mul(BITS_PER_BLOCK);
    let end = first.saturating_add(BITS_PER_BLOCK).min(nr_regions);
    (first, end.saturating_sub(1).max(first))
}

/// The state of one bitmap block as read.
pub enum BlockRead {
    /// Verified; whether its bits past the last region are clear.
    Good {
        /// No bit set past the last region.
        padding_clear: bool,
    },
    /// Cannot be trusted.
    Bad(Damage),
}

/// Reads block `index` of bitmap `which` (a leg, or `sb.nr_legs` for the
/// intent log) into `buf` and checks it. `buf` holds the block's contents
/// unless it is past the end.
pub fn read_bitmap_block(
    dev: &MetaDev,
    sb: &Superblock,
    which: u32,
    index: u64,
    buf: &mut Block,
) -> Result<(u64, BlockType, BlockRead)> {
    let layout = sb.layout();
    let (nr, kind) = if which >= sb.nr_legs {
        (layout.intent_block(index), BlockType::IntentBitmap)
    } else {
        (
            layout.fracture_block(which, index),
            BlockType::FractureBitmap,
        )
    };
    if nr >= dev.blocks() {
        return Ok((nr, kind, BlockRead::Bad(Damage::PastEnd)));
    }
    dev.read_block(nr, buf)?;
    let state = match verify(buf, kind, nr, Some(&sb.uuid)) {
        Ok(()) => BlockRead::Good {
            padding_clear: padding_clear(payload(buf), index, sb.nr_regions),
        },
        Err(e) => BlockRead::Bad(Damage::Format(e)),
    };
    Ok((nr, kind, state))
}

/// Reads and analyses `dev`; with `ranges`, collects the dirty ranges.
pub fn analyse(dev: &MetaDev, ranges: bool) -> Result<Contents> {
    if dev.blocks() == 0 {
        return Ok(Contents::TooSmall);
    }
    let sb = match dev.read_superblock()? {
        SuperblockRead::Blank => return Ok(Contents::Blank),
        SuperblockRead::Invalid(e) => return Ok(Contents::Invalid(e)),
        SuperblockRead::Valid(sb) => sb,
    };
    let layout = sb.layout();
    let mut buf = Block::new();
    let mut reports = Vec::with_capacity(sb.nr_legs as usize + 1);
    for which in 0..=sb.nr_legs {
        let kind = if which < sb.nr_legs {
            BlockType::FractureBitmap
        } else {
            BlockType::IntentBitmap
        };
        let mut rep = BitmapReport::new(kind);
        for index in 0..layout.bitmap_blocks() {
            let (nr, _, state) = read_bitmap_block(dev, &sb, which, index, &mut buf)?;
            let padding_clear = match state {
                BlockRead::Bad(Damage::PastEnd) => {
                    // One entry for the whole missing rest of this bitmap:
                    // a truncated device (or an insane geometry with a
                    // valid checksum) must not cost a line per block.
                    rep.bad.push(BadBlock {
                        nr,
                        index,
                        regions: (block_regions(index, sb.nr_regions).0, sb.nr_regions - 1),
                        damage: Damage::PastEnd,
                    });
                    break;
                }
                BlockRead::Bad(damage) => {
                    rep.bad.push(BadBlock {
                        nr,
                        index,
                        regions: block_regions(index, sb.nr_regions),
                        damage,
                    });
                    continue;
                }
                BlockRead::Good { padding_clear } => padding_clear,
            };
            let (first, last) = block_regions(index, sb.nr_regions);
            // Bits of this block that stand for real regions.
            let n = (last - first + 1) as usize;
            let p = payload(&buf);
            if !padding_clear {
                rep.padding.push(nr);
            }
            if padding_clear && !ranges {
                rep.dirty += count_ones(p);
                continue;
            }
            let mut count = 0;
            let mut bit = 0;
            while let Some(b) = next_set_bit(p, bit) {
                if b >= n {
                    break;
                }
                count += 1;
                if ranges {
                    rep.push_region(first + b as u64);
                }
                bit = b + 1;
            }
            rep.dirty += count;
        }
        reports.push(rep);
    }
    let intent = reports.pop().expect("the intent report");
    Ok(Contents::Valid(Box::new(Analysis {
        bytes: dev.bytes(),
        sb,
        layout,
        legs: reports,
        intent,
    })))
}

/// `1 region`, `2 regions`.
pub fn regions(n: u64) -> String {
    format!("{n} region{}", if n == 1 { "" } else { "s" })
}

/// Writes `text` to stdout (a closed pipe is an error, not a panic).
pub fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|()| o.flush())
        .map_err(|e| crate::error::Error::io("stdout", e))
}

/// Ranges as text: `0-99,200,305-310`, at most `max` of them, then
/// `... (N more ranges)`.
pub fn ranges_text(ranges: &[(u64, u64)], max: usize) -> String {
    let mut s = String::new();
    for (i, &(a, b)) in ranges.iter().take(max).enumerate() {
        if i != 0 {
            s.push(',');
        }
        if a == b {
            s.push_str(&a.to_string());
        } else {
            s.push_str(&format!("{a}-{b}"));
        }
    }
    if ranges.len() > max {
        s.push_str(&format!(" ... ({} more ranges)", ranges.len() - max));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_text() {
        assert_eq!(ranges_text(&[], 64), "");
        assert_eq!(
            ranges_text(&[(0, 99), (200, 200), (305, 310)], 64),
            "0-99,200,305-310"
        );
        assert_eq!(
            ranges_text(&[(0, 0), (2, 2), (4, 5)], 2),
            "0,2 ... (1 more ranges)"
        );
    }

    #[test]
    fn ranges_merge() {
        let mut r = BitmapReport::new(BlockType::FractureBitmap);
        for x in [0, 1, 2, 5, 7, 8, u64::MAX - 1, u64::MAX] {
            r.push_region(x);
        }
        assert_eq!(r.ranges, [(0, 2), (5, 5), (7, 8), (u64::MAX - 1, u64::MAX)]);
    }

    #[test]
    fn regions_of_blocks() {
        assert_eq!(block_regions(0, 128), (0, 127));
        assert_eq!(
            block_regions(0, BITS_PER_BLOCK + 5),
            (0, BITS_PER_BLOCK - 1)
        );
        assert_eq!(
            block_regions(1, BITS_PER_BLOCK + 5),
            (BITS_PER_BLOCK, BITS_PER_BLOCK + 4)
        );
    }
}
