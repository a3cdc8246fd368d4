// SPDX-License-Identifier: GPL-2.0

//! The checks of the fuzz targets of `fracture-core`, one function per
//! target. Each takes the fuzzer's bytes, calls the shared crate the way
//! the kernel module and fracturectl do, and asserts what the code
//! promises; a failed assertion, like any panic, is a crash for libFuzzer.
//!
//! This file is also compiled into
//! `rust/fracture-core/tests/fuzz_regressions.rs` (a `#[path]` module),
//! which replays the checked-in seeds and crashers through the same
//! functions under `cargo test`: it uses only `std` and `fracture_core`,
//! nothing of libFuzzer, and no crate-level attribute.
//!
//! Inputs are read as fields (see [`Input`]): fixed-size numbers first,
//! then the free-form part (a metadata block, a line of words).

use fracture_core::format::{
    bit_position, clear_bit, count_ones, fill, format_block, is_zero, next_set_bit, padding_clear,
    payload, payload_mut, seal, set_bit, test_bit, verify, BlockType, FormatError, Layout,
    LegState, Mismatch, PrimaryCheck, Superblock, BITS_PER_BLOCK, BLOCK_SIZE, FLAG_CLEAN, MAGIC,
    MAX_COUNT, SECTORS_PER_BLOCK, VERSION,
};
use fracture_core::intent::{words_for, IntentTracker, Scan, Settled, WRITE_BUCKETS};
use fracture_core::message::{Message, MessageError};
use fracture_core::rate::RateLimit;
use fracture_core::region::{Geometry, MAX_REGION_SECTORS, MIN_REGION_SECTORS};
use fracture_core::table::{
    find_duplicate, parse_u64, Features, NumberError, TableArgs, DEFAULT_INTENT_DELAY,
    MAX_INTENT_DELAY, MAX_IO_TIMEOUT, MAX_LEGS, MAX_PROBE_INTERVAL, MAX_RECOVERY_RATE, MIN_LEGS,
};
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// A fuzz target's check.
pub type Check = fn(&[u8]);

/// Every target: its name (the binary in `fuzz/fuzz_targets/`, the folders
/// in `fuzz/seeds/` and `fuzz/regressions/`) and its check.
pub const TARGETS: [(&str, Check); 7] = [
    ("superblock", superblock),
    ("bitmap", bitmap),
    ("intent", intent),
    ("table", table),
    ("message", message),
    ("region", region),
    ("rate", rate),
];

/// The fuzzer's bytes read as fields, little-endian. A field past the end
/// reads as zero, so every input is valid.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    /// Reads `data` from the start.
    pub fn new(data: &'a [u8]) -> Self {
        Self(data)
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let n = N.min(self.0.len());
        a[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        a
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    /// The next 2 bytes.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    /// The next 4 bytes.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    /// The next 8 bytes.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// Builds a seed input field by field, the writing side of [`Input`].
#[derive(Default)]
pub struct Seed(pub Vec<u8>);

impl Seed {
    /// Appends a byte.
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    /// Appends 2 bytes.
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends 4 bytes.
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends 8 bytes.
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends bytes.
    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// Whether the kernel's `isspace()` is true for `b` (lib/ctype.c: the ASCII
/// white space and Latin-1 no-break space).
fn is_dm_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0)
}

/// Splits a table line or a message into words as the kernel does
/// (`dm_split_args()`: the line ends at a NUL, words are separated by white
/// space, a backslash quotes the next byte), then makes them `&str` as the
/// target does: `None` when a word is not UTF-8 (the target refuses it
/// before parsing).
pub fn dm_words(line: &[u8]) -> Option<Vec<String>> {
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_dm_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Some(words);
        }
        let mut w = Vec::new();
        while i < line.len() {
            if line[i] == b'\\' && i + 1 < line.len() {
                w.push(line[i + 1]);
                i += 2;
                continue;
            }
            if is_dm_space(line[i]) {
                break;
            }
            w.push(line[i]);
            i += 1;
        }
        words.push(String::from_utf8(w).ok()?);
    }
}

/// A block of `BLOCK_SIZE` bytes holding `raw`, zero-padded or cut.
fn to_block(raw: &[u8]) -> [u8; BLOCK_SIZE] {
    let mut b = [0u8; BLOCK_SIZE];
    let n = raw.len().min(BLOCK_SIZE);
    b[..n].copy_from_slice(&raw[..n]);
    b
}

/// The UUID field of a block's header.
fn uuid_of(block: &[u8; BLOCK_SIZE]) -> [u8; 16] {
    let mut u = [0u8; 16];
    u.copy_from_slice(&block[16..32]);
    u
}

/// Regions covered by block `index` of a bitmap of `nr_regions` bits,
/// computed without the crate's saturating arithmetic.
fn regions_in_block(index: u64, nr_regions: u64) -> usize {
    let first = u128::from(index) * u128::from(BITS_PER_BLOCK);
    u128::from(nr_regions)
        .saturating_sub(first)
        .min(u128::from(BITS_PER_BLOCK)) as usize
}

/// `next_set_bit` written the slow, obvious way.
fn reference_next_set_bit(p: &[u8], from: usize) -> Option<usize> {
    let end = p.len() * 8;
    let mut b = from;
    while b < end {
        if b.is_multiple_of(8) && p[b / 8] == 0 {
            b += 8;
            continue;
        }
        if (p[b / 8] >> (b % 8)) & 1 != 0 {
            return Some(b);
        }
        b += 1;
    }
    None
}

// ---------------------------------------------------------------------------
// superblock

/// `superblock` mode bits.
pub mod sb_mode {
    /// Seal the block (checksum, type, number 0) after the fixes below, so
    /// that the fields are what decides.
    pub const RESEAL: u8 = 1;
    /// Write the magic.
    pub const MAGIC: u8 = 2;
    /// Write format version 1.
    pub const VERSION: u8 = 4;
    /// The intent log has bits at activation (unclean shutdown).
    pub const INTENT: u8 = 8;
}

/// Superblock decoding, then what the kernel and fracturectl do with a
/// decoded superblock.
///
/// Input: mode (`sb_mode`), dirty legs (u32), the table's length, region
/// size (u64 each) and leg count (u32) as XOR with the superblock's own,
/// two block numbers to format (u64; top bit clear: taken modulo the
/// layout's size), eight operations (u64, a byte each), then the block
/// (zero-padded to 4 KiB).
pub fn superblock(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let dirty = inp.u32();
    let table = (inp.u64(), inp.u64(), inp.u32());
    let nrs = [inp.u64(), inp.u64()];
    let ops = inp.u64().to_le_bytes();
    let raw = inp.rest();

    if raw.len() != BLOCK_SIZE {
        assert_eq!(
            Superblock::decode(raw),
            Err(FormatError::BlockSize(raw.len()))
        );
    }
    let mut block = to_block(raw);
    if mode & sb_mode::MAGIC != 0 {
        block[32..40].copy_from_slice(&MAGIC.to_le_bytes());
    }
    if mode & sb_mode::VERSION != 0 {
        block[40..44].copy_from_slice(&VERSION.to_le_bytes());
    }
    if mode & sb_mode::RESEAL != 0 {
        let uuid = uuid_of(&block);
        seal(&mut block, BlockType::Superblock, 0, &uuid);
    }
    let sb = match Superblock::decode(&block) {
        Ok(sb) => sb,
        Err(e) => {
            if is_zero(&block) {
                assert_eq!(e, FormatError::BadMagic);
            }
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(sb.uuid, uuid_of(&block));

    // What `decode` checked.
    let nr_legs = sb.nr_legs;
    assert!((MIN_LEGS as u32..=MAX_LEGS as u32).contains(&nr_legs));
    assert!(sb.primary_leg < nr_legs);
    let geometry = Geometry::new(sb.target_sectors, sb.region_sectors)
        .expect("decode accepted an invalid region size");
    assert_eq!(geometry.nr_regions(), sb.nr_regions);
    assert!(sb.nr_regions > 0);
    for l in 0..nr_legs {
        assert!(sb.leg(l).generation <= sb.event);
    }
    assert!(sb.event <= MAX_COUNT && sb.commit <= MAX_COUNT);
    round_trip(&sb);

    let layout = sb.layout();
    check_layout(&layout, nr_legs, sb.nr_regions);
    assert!(layout.bitmap_blocks() <= u64::from(u32::MAX));

    // Activation checks the table line against it.
    assert_eq!(sb.check_table(&geometry, nr_legs), Ok(()));
    if let Ok(g) = Geometry::new(sb.target_sectors ^ table.0, sb.region_sectors ^ table.1) {
        check_table(&sb, &g, nr_legs ^ table.2);
    }

    // Formatting (kernel and `fracturectl format`/`create`).
    for nr in nrs {
        let nr = if nr >> 63 == 0 {
            nr % (layout.total_blocks() + 1)
        } else {
            nr
        };
        check_format_block(&sb, &layout, nr);
    }

    // The primary check with any dirty mask, on a copy.
    let mut s = sb;
    check_primary(&mut s, dirty);

    // Activation as the kernel does it, then the changes of a running
    // target; the result must still encode to a superblock that decodes,
    // unless a count moved past `MAX_COUNT` (from a decoded count at most
    // that, so never in practice).
    let mut s = sb;
    activate(&mut s, dirty, mode & sb_mode::INTENT != 0);
    for op in ops {
        run_op(&mut s, op);
        assert!(s.primary_leg < nr_legs);
        for l in 0..nr_legs {
            assert!(s.leg(l).generation <= s.event);
        }
    }
    if s.event <= MAX_COUNT && s.commit <= MAX_COUNT {
        round_trip(&s);
    } else {
        let mut b = [0u8; BLOCK_SIZE];
        s.encode(&mut b);
        assert_eq!(
            Superblock::decode(&b),
            Err(FormatError::Inconsistent(
                "event or commit count out of range"
            ))
        );
    }
}

/// Encoding then decoding gives the same superblock.
fn round_trip(sb: &Superblock) {
    let mut b = [0u8; BLOCK_SIZE];
    sb.encode(&mut b);
    assert_eq!(Superblock::decode(&b), Ok(*sb));
}

/// The layout's blocks follow each other: superblock, each leg's bitmap,
/// the intent bitmap, nothing else.
fn check_layout(l: &Layout, nr_legs: u32, nr_regions: u64) {
    let bb = l.bitmap_blocks();
    assert!(bb >= 1);
    assert!(u128::from(bb) * u128::from(BITS_PER_BLOCK) >= u128::from(nr_regions));
    assert!(bb == 1 || u128::from(bb - 1) * u128::from(BITS_PER_BLOCK) < u128::from(nr_regions));
    assert_eq!(l.fracture_block(0, 0), 1);
    for leg in 1..nr_legs {
        assert_eq!(
            l.fracture_block(leg, 0),
            l.fracture_block(leg - 1, bb - 1) + 1
        );
    }
    assert_eq!(l.intent_block(0), l.fracture_block(nr_legs - 1, bb - 1) + 1);
    assert_eq!(l.total_blocks(), l.intent_block(bb - 1) + 1);
    assert_eq!(l.min_sectors(), l.total_blocks() * SECTORS_PER_BLOCK);
    if nr_regions > 0 {
        assert!(bit_position(nr_regions - 1).0 < bb);
    }
}

/// `check_table` accepts exactly the table the superblock was made for,
/// and names a field that differs.
fn check_table(sb: &Superblock, g: &Geometry, nr_legs: u32) {
    let same = sb.region_sectors == g.region_sectors()
        && sb.nr_legs == nr_legs
        && sb.target_sectors == g.len();
    let r = sb.check_table(g, nr_legs);
    assert_eq!(r.is_ok(), same);
    match r {
        Ok(()) => {}
        Err(Mismatch::RegionSize { disk, table }) => {
            assert_eq!((disk, table), (sb.region_sectors, g.region_sectors()));
            assert_ne!(disk, table);
        }
        Err(Mismatch::NrLegs { disk, table }) => {
            assert_eq!((disk, table), (sb.nr_legs, nr_legs));
            assert_ne!(disk, table);
        }
        Err(Mismatch::Length { disk, table }) => {
            assert_eq!((disk, table), (sb.target_sectors, g.len()));
            assert_ne!(disk, table);
        }
    }
    if let Err(e) = r {
        assert!(!e.to_string().is_empty());
    }
}

/// `format_block` writes exactly the layout's blocks, each sealed for its
/// place, bitmaps set for recovering legs only and never past the end.
fn check_format_block(sb: &Superblock, layout: &Layout, nr: u64) {
    let mut small = [0xa5u8; 64];
    assert_eq!(format_block(sb, nr, &mut small), None);
    assert!(
        small.iter().all(|&b| b == 0xa5),
        "written to a short buffer"
    );
    let mut b = [0u8; BLOCK_SIZE];
    let kind = format_block(sb, nr, &mut b);
    if nr == 0 || nr >= layout.total_blocks() {
        assert_eq!(kind, None);
        assert!(is_zero(&b), "written outside the layout");
        return;
    }
    let kind = kind.expect("a block of the layout was not formatted");
    assert_eq!(verify(&b, kind, nr, Some(&sb.uuid)), Ok(()));
    let bb = layout.bitmap_blocks();
    let (which, idx) = ((nr - 1) / bb, (nr - 1) % bb);
    let p = payload(&b);
    assert!(padding_clear(p, idx, sb.nr_regions));
    if which < u64::from(sb.nr_legs) {
        let leg = which as u32;
        assert_eq!(kind, BlockType::FractureBitmap);
        assert_eq!(layout.fracture_block(leg, idx), nr);
        let want = if sb.leg(leg).state == LegState::Recovering {
            regions_in_block(idx, sb.nr_regions) as u64
        } else {
            0
        };
        assert_eq!(count_ones(p), want);
    } else {
        assert_eq!(which, u64::from(sb.nr_legs));
        assert_eq!(kind, BlockType::IntentBitmap);
        assert_eq!(layout.intent_block(idx), nr);
        assert_eq!(count_ones(p), 0);
    }
}

/// Whether leg `l` may serve as primary: in sync, missed no write.
fn is_source(sb: &Superblock, l: u32) -> bool {
    sb.leg(l).state == LegState::InSync && sb.leg(l).generation == sb.event
}

/// `check_primary` keeps a primary that can serve, else hands over to the
/// lowest leg that can, else changes nothing.
fn check_primary(s: &mut Superblock, dirty: u32) {
    let before = *s;
    let p = before.primary_leg;
    let serves = |sb: &Superblock, l: u32| dirty & (1 << l) == 0 && is_source(sb, l);
    match s.check_primary(dirty) {
        PrimaryCheck::Kept => {
            assert_eq!(*s, before);
            assert!(serves(&before, p));
        }
        PrimaryCheck::Switched { from, to } => {
            assert!(!serves(&before, p));
            assert_eq!(from, p);
            assert_eq!(s.primary_leg, to);
            assert!(to < before.nr_legs && to != p && serves(&before, to));
            assert!((0..to).all(|l| l == p || !serves(&before, l)));
            let mut back = *s;
            back.primary_leg = p;
            assert_eq!(back, before, "more than the primary changed");
        }
        PrimaryCheck::NoSource => {
            assert_eq!(*s, before);
            assert!((0..before.nr_legs).all(|l| !serves(&before, l)));
        }
    }
}

/// What the kernel does to the superblock it loads at activation (see
/// `MirrorState::load` in `rust/mirror/metadata/store.rs`, and `fracturectl
/// check`'s forecast of it): legs with bits leave the in-sync set, the
/// primary is checked, and after an unclean shutdown every secondary gets
/// the intent log's regions.
fn activate(s: &mut Superblock, dirty: u32, intent: bool) {
    let all = (1u32 << s.nr_legs) - 1;
    let mut dirty = dirty & all;
    let p = s.primary_leg;
    if dirty & (1 << p) != 0 && is_source(s, p) && s.source_candidate(dirty | 1 << p).is_none() {
        // The primary's bits go into every other leg's bitmap.
        dirty = all & !(1 << p);
    }
    for leg in 0..s.nr_legs {
        if dirty & (1 << leg) != 0 && s.leg(leg).state == LegState::InSync {
            s.leave_sync(leg);
            let rec = s.leg_mut(leg);
            rec.state = LegState::Fractured;
            rec.split = false;
        }
    }
    check_primary(s, dirty);
    if intent || s.flags & FLAG_CLEAN == 0 {
        let p = s.primary_leg;
        let was_source = is_source(s, p);
        for leg in (0..s.nr_legs).filter(|&l| l != p) {
            s.leave_sync(leg);
            let rec = s.leg_mut(leg);
            if rec.state == LegState::InSync {
                rec.state = LegState::Recovering;
                rec.split = false;
            }
        }
        assert!((0..s.nr_legs).all(|l| l == p || s.leg(l).state != LegState::InSync));
        assert!(
            !was_source || is_source(s, p),
            "the primary stopped being a source"
        );
        s.flags |= FLAG_CLEAN;
    }
}

/// One change of a running target: byte `op`, low 3 bits the change, the
/// rest a leg (or a leg mask).
fn run_op(s: &mut Superblock, op: u8) {
    let arg = u32::from(op >> 3);
    let leg = arg % s.nr_legs;
    match op & 7 {
        0 => {
            // A leg fails, or is fractured on request.
            let was = *s.leg(leg);
            let event = s.event;
            s.leave_sync(leg);
            if was.state == LegState::InSync {
                assert_eq!(s.event, event + 1);
                assert_eq!(s.leg(leg).generation, was.generation);
                assert!((0..s.nr_legs)
                    .all(|l| l == leg || s.leg(l).state != LegState::InSync || is_source(s, l)));
            } else {
                assert_eq!(s.event, event);
            }
            let rec = s.leg_mut(leg);
            rec.state = LegState::Fractured;
            rec.split = arg & 1 != 0;
        }
        1 => {
            // Recovery finished.
            s.enter_sync(leg);
            assert!(is_source(s, leg) && !s.leg(leg).split);
        }
        2 => {
            // rejoin or rebuild.
            s.leave_sync(leg);
            s.leg_mut(leg).state = LegState::Recovering;
        }
        3 => {
            // The primary failed a write; legs in `arg` did not take it.
            let before = *s;
            let p = before.primary_leg;
            match s.fail_over(arg) {
                Some(q) => {
                    assert_eq!(s.primary_leg, q);
                    assert!(q != p && arg & (1 << q) == 0 && is_source(s, q));
                }
                None => {
                    assert_eq!(*s, before);
                    assert_eq!(s.source_candidate(arg | 1 << p), None);
                }
            }
        }
        4 => {
            // `primary <leg>` message: any number, also past the legs.
            let before = *s;
            let ok = s.switch_primary(arg);
            assert_eq!(ok, arg < s.nr_legs && is_source(&before, arg));
            if ok {
                assert_eq!(s.primary_leg, arg);
            } else {
                assert_eq!(*s, before);
            }
        }
        5 => {
            // A superblock write.
            s.commit += 1;
        }
        6 => match s.source_candidate(arg) {
            Some(l) => {
                assert!(l < s.nr_legs && arg & (1 << l) == 0 && is_source(s, l));
                assert!((0..l).all(|m| arg & (1 << m) != 0 || !is_source(s, m)));
            }
            None => assert!((0..s.nr_legs).all(|m| arg & (1 << m) != 0 || !is_source(s, m))),
        },
        _ => check_primary(s, arg),
    }
}

// ---------------------------------------------------------------------------
// bitmap

/// `bitmap` mode bits.
pub mod bitmap_mode {
    /// Seal the block as `kind` at `nr` with its own UUID before checking.
    pub const RESEAL: u8 = 1;
}

/// Sealed-block verification and the bitmap helpers.
///
/// Input: mode (`bitmap_mode`), block type (u8, modulo 3), block number
/// (u64), bitmap block index (u64), region count (u64), a bit to start
/// searching from (u64), a bit to set and clear (u16), a bit to flip
/// (u16), then the block (zero-padded to 4 KiB; the helpers also run on
/// it as given, of any length).
pub fn bitmap(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let kind = [
        BlockType::FractureBitmap,
        BlockType::IntentBitmap,
        BlockType::Superblock,
    ][usize::from(inp.u8() % 3)];
    let nr = inp.u64();
    let index = inp.u64();
    let nr_regions = inp.u64();
    let from = inp.u64() as usize;
    let bit = usize::from(inp.u16());
    let flip = usize::from(inp.u16());
    let raw = inp.rest();

    // The read-only helpers on a payload of any length.
    check_reads(raw, from, index, nr_regions);
    if raw.len() != BLOCK_SIZE {
        assert_eq!(
            verify(raw, kind, nr, None),
            Err(FormatError::BlockSize(raw.len()))
        );
    }

    let mut block = to_block(raw);
    let uuid = uuid_of(&block);
    let verified = if mode & bitmap_mode::RESEAL != 0 {
        seal(&mut block, kind, nr, &uuid);
        check_sealed(&mut block, kind, nr, &uuid, flip);
        true
    } else {
        verify(&block, kind, nr, Some(&uuid)).is_ok()
    };
    if verified && kind != BlockType::Superblock {
        // What the kernel and `fracturectl check` do with a verified
        // bitmap block: padding check, count, walk of the set bits.
        let p = payload(&block);
        let clear = padding_clear(p, index, nr_regions);
        let n = regions_in_block(index, nr_regions);
        let mut count = 0;
        let mut past_end = false;
        let mut b = 0;
        while let Some(found) = next_set_bit(p, b) {
            assert!(found >= b && test_bit(p, found));
            past_end |= found >= n;
            count += 1;
            b = found + 1;
        }
        assert_eq!(count, count_ones(p));
        assert_eq!(clear, !past_end);
    }

    // Changing a payload.
    let p = payload_mut(&mut block);
    let bit = bit % (p.len() * 8);
    let was = test_bit(p, bit);
    assert_eq!(set_bit(p, bit), !was);
    assert!(test_bit(p, bit));
    assert_eq!(next_set_bit(p, bit), Some(bit));
    assert!(clear_bit(p, bit));
    assert!(!test_bit(p, bit));
    assert!(!clear_bit(p, bit));
    assert_ne!(next_set_bit(p, bit), Some(bit));
    if was {
        set_bit(p, bit);
    }

    // `fill`: the regions of this block set, nothing past the end.
    fill(p, index, nr_regions);
    let n = regions_in_block(index, nr_regions);
    assert_eq!(count_ones(p), n as u64);
    assert!(padding_clear(p, index, nr_regions));
    assert_eq!(next_set_bit(p, 0), (n > 0).then_some(0));
    assert_eq!(next_set_bit(p, n), None);
    if n > 0 {
        assert!(test_bit(p, n - 1));
        if regions_in_block(index, nr_regions - 1) < n {
            assert!(!padding_clear(p, index, nr_regions - 1));
        }
    }

    let (idx, b) = bit_position(nr_regions);
    assert!((b as u64) < BITS_PER_BLOCK);
    assert_eq!(
        u128::from(idx) * u128::from(BITS_PER_BLOCK) + b as u128,
        u128::from(nr_regions)
    );
}

/// `next_set_bit` and `padding_clear` agree with the obvious versions, on
/// any slice and from any start.
fn check_reads(p: &[u8], from: usize, index: u64, nr_regions: u64) {
    assert_eq!(next_set_bit(p, from), reference_next_set_bit(p, from));
    let n = regions_in_block(index, nr_regions);
    assert_eq!(
        padding_clear(p, index, nr_regions),
        reference_next_set_bit(p, n).is_none()
    );
}

/// A sealed block verifies for its type, number and UUID and for nothing
/// else, and any one flipped bit is caught. One refusal per run, chosen by
/// `flip` (each costs a checksum of the whole block).
fn check_sealed(
    block: &mut [u8; BLOCK_SIZE],
    kind: BlockType,
    nr: u64,
    uuid: &[u8; 16],
    flip: usize,
) {
    let want_uuid = if flip & 1 != 0 { Some(uuid) } else { None };
    assert_eq!(verify(block, kind, nr, want_uuid), Ok(()));
    let other = |k: BlockType| match k {
        BlockType::Superblock => BlockType::FractureBitmap,
        BlockType::FractureBitmap => BlockType::IntentBitmap,
        BlockType::IntentBitmap => BlockType::Superblock,
    };
    match (flip >> 1) % 5 {
        0 => {
            let o = other(kind);
            assert_eq!(
                verify(block, o, nr, Some(uuid)),
                Err(FormatError::WrongType {
                    kind: o,
                    block: nr,
                    found: kind as u32
                })
            );
        }
        1 => {
            let elsewhere = nr ^ (1 << (flip % 64));
            assert_eq!(
                verify(block, kind, elsewhere, Some(uuid)),
                Err(FormatError::WrongLocation {
                    kind,
                    block: elsewhere,
                    found: nr
                })
            );
        }
        2 => {
            let mut foreign = *uuid;
            foreign[flip % 16] ^= 1 << (flip % 8);
            assert_eq!(
                verify(block, kind, nr, Some(&foreign)),
                Err(FormatError::WrongUuid { kind, block: nr })
            );
        }
        _ => {
            let flip = flip % (BLOCK_SIZE * 8);
            block[flip / 8] ^= 1 << (flip % 8);
            assert_eq!(
                verify(block, kind, nr, Some(uuid)),
                Err(FormatError::Checksum { kind, block: nr })
            );
            block[flip / 8] ^= 1 << (flip % 8);
        }
    }
}

// ---------------------------------------------------------------------------
// intent

/// What the intent tracker should know, region by region.
struct Model {
    durable: Vec<bool>,
    touched: Vec<bool>,
    settling: Vec<bool>,
    inflight: Vec<u32>,
    quiesced: bool,
}

impl Model {
    fn clip(&self, r: &Range<u64>) -> Range<usize> {
        let n = self.durable.len() as u64;
        r.start.min(n) as usize..r.end.min(n) as usize
    }
}

/// A range of regions for the intent tracker: start and length (u16 each;
/// below 64 regions unless `op` has bit 6, open-ended with bit 7). Never
/// inverted: ranges come from `Geometry::regions_of`.
fn intent_range(inp: &mut Input<'_>, n: u64, op: u8) -> Range<u64> {
    let start = u64::from(inp.u16()) % (n + 64);
    let len = u64::from(inp.u16()) % if op & 0x40 != 0 { 1 << 16 } else { 64 };
    let end = if op & 0x80 != 0 {
        u64::MAX
    } else {
        start + len
    };
    start..end
}

/// The in-memory write-intent log against a model: the rule that an
/// intent bit is cleared only when no write to its region is in flight or
/// started since the scan that chose it.
///
/// Input: the region count (u16, modulo 1536: past the 1024 buckets),
/// then operations: a byte (low 4 bits: which) and its arguments.
pub fn intent(data: &[u8]) {
    let mut inp = Input::new(data);
    let n = u64::from(inp.u16()) % 1536;
    let words = words_for(n);
    assert!(words as u64 * 64 >= n && (words as u64) * 64 < n + 64);
    let bits = |k: usize| (0..k).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
    let buckets = |k: usize| (0..k).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
    assert!(IntentTracker::new(
        bits(words + 1),
        bits(words + 1),
        bits(words + 1),
        buckets(WRITE_BUCKETS),
        n
    )
    .is_err());
    assert!(IntentTracker::new(
        bits(words),
        bits(words),
        bits(words),
        buckets(WRITE_BUCKETS - 1),
        n
    )
    .is_err());
    let t = IntentTracker::new(
        bits(words),
        bits(words),
        bits(words),
        buckets(WRITE_BUCKETS),
        n,
    )
    .expect("sizes as documented");
    let nu = n as usize;
    let mut m = Model {
        durable: vec![false; nu],
        touched: vec![false; nu],
        settling: vec![false; nu],
        inflight: vec![0; nu],
        quiesced: false,
    };
    let mut open: Vec<Range<u64>> = Vec::new();
    let mut scan: Option<Scan> = None;
    let mut settled: Option<Settled<'_, Vec<AtomicU64>, Vec<AtomicU32>>> = None;

    while !inp.is_empty() {
        let op = inp.u8();
        match op & 15 {
            0 | 1 if open.len() < 64 => {
                // A write starts.
                let r = intent_range(&mut inp, n, op);
                let c = m.clip(&r);
                let all = m.durable[c.clone()].iter().all(|&d| d);
                assert_eq!(t.start_write(r.clone()), all);
                for q in c {
                    m.touched[q] = true;
                    m.inflight[q] += 1;
                }
                open.push(r);
            }
            2 | 3 if !open.is_empty() => {
                // A write completes.
                let r = open.swap_remove(usize::from(inp.u8()) % open.len());
                t.end_write(r.clone());
                for q in m.clip(&r) {
                    m.inflight[q] -= 1;
                }
            }
            4 if !open.is_empty() => {
                // A write's bits were committed.
                let r = open[usize::from(inp.u8()) % open.len()].clone();
                t.mark_durable(r.clone());
                for q in m.clip(&r) {
                    m.durable[q] = true;
                }
            }
            5 => {
                settled = None;
                m.quiesced = op & 0x10 != 0;
                scan = Some(t.scan(m.quiesced));
                m.settling.iter_mut().for_each(|s| *s = false);
            }
            6 | 7 if n > 0 => {
                if let Some(s) = scan.as_mut() {
                    let r = u64::from(inp.u16()) % n;
                    let q = r as usize;
                    let hot = m.touched[q];
                    let before = s.candidates();
                    let chosen = t.consider(s, r);
                    m.touched[q] = false;
                    if chosen {
                        assert!(
                            !hot || m.quiesced,
                            "a region written since the last scan chosen"
                        );
                        assert_eq!(m.inflight[q], 0, "a region with a write in flight chosen");
                        assert_eq!(s.candidates(), before + 1);
                        m.settling[q] = true;
                    } else {
                        assert!((hot && !m.quiesced) || t.busy(r));
                        assert_eq!(s.candidates(), before);
                    }
                }
            }
            8 => {
                if let Some(s) = scan.take() {
                    let fail = op & 0x10 != 0;
                    let mut calls = 0;
                    let r = t.flush(s, || {
                        calls += 1;
                        if fail {
                            Err(())
                        } else {
                            Ok(())
                        }
                    });
                    assert_eq!(calls, 1);
                    assert_eq!(r.is_err(), fail);
                    settled = r.ok();
                }
            }
            9 | 10 => {
                if let Some(st) = settled.as_ref() {
                    let r = u64::from(inp.u16()) % (n + 128);
                    let cleared = st.try_clear(r);
                    if r >= n {
                        assert!(!cleared, "a region past the end cleared");
                    } else {
                        let q = r as usize;
                        if cleared {
                            assert!(m.settling[q], "cleared without being chosen");
                            assert_eq!(m.inflight[q], 0, "cleared with a write in flight");
                            assert!(!m.touched[q], "cleared with a write since the scan");
                            m.durable[q] = false;
                        } else {
                            assert!(!m.settling[q] || m.touched[q] || t.busy(r));
                        }
                        m.settling[q] = false;
                    }
                }
            }
            11 if open.is_empty() => {
                t.reset();
                for v in [&mut m.durable, &mut m.touched, &mut m.settling] {
                    v.iter_mut().for_each(|b| *b = false);
                }
            }
            _ => {
                let r = u64::from(inp.u16()) % (n + 128);
                check_region_state(&t, &m, &open, r);
            }
        }
    }
    for r in open.drain(..) {
        t.end_write(r.clone());
        for q in m.clip(&r) {
            m.inflight[q] -= 1;
        }
    }
    for r in 0..WRITE_BUCKETS as u64 {
        assert!(!t.busy(r), "busy with no write in flight");
    }
    for r in 0..n + 64 {
        assert_eq!(t.is_durable(r), r < n && m.durable[r as usize]);
    }
}

/// `is_durable` and `busy` of region `r` against the model.
fn check_region_state(
    t: &IntentTracker<Vec<AtomicU64>, Vec<AtomicU32>>,
    m: &Model,
    open: &[Range<u64>],
    r: u64,
) {
    let n = m.durable.len();
    let q = r as usize;
    assert_eq!(t.is_durable(r), q < n && m.durable[q]);
    if q < n && m.inflight[q] > 0 {
        assert!(t.busy(r), "a write in flight not seen");
    }
    if t.busy(r) {
        assert!(open.iter().any(|w| !m.clip(w).is_empty()));
    }
}

// ---------------------------------------------------------------------------
// table

/// `parse_u64` agrees with the standard library's parser, less its `+`.
fn check_number(w: &str) {
    let want = if w.starts_with('+') {
        Err(NumberError::NotDecimal)
    } else {
        w.parse::<u64>().map_err(|e| match e.kind() {
            std::num::IntErrorKind::PosOverflow => NumberError::Overflow,
            _ => NumberError::NotDecimal,
        })
    };
    assert_eq!(parse_u64(w), want, "{w:?}");
}

/// The words `Features::write` prints, checked for form.
fn feature_words(f: &Features) -> String {
    let mut s = String::new();
    f.write(&mut s).expect("writing to a String");
    assert_eq!(s.split(' ').count() - 1, f.nr_words());
    assert!(s.is_empty() || (s.starts_with(' ') && !s.contains("  ") && !s.ends_with(' ')));
    s
}

/// Checks of accepted features: ranges, and parse ∘ write = identity.
fn check_features(f: &Features) {
    assert!(f.recovery_rate <= MAX_RECOVERY_RATE);
    assert!(f.probe_interval <= MAX_PROBE_INTERVAL);
    assert!(f.intent_delay <= MAX_INTENT_DELAY);
    assert!(f.io_timeout <= MAX_IO_TIMEOUT);
    assert!(!(f.no_intent && f.intent_delay != 0));
    assert_eq!(f.is_default(), f.nr_words() == 0);
    let delay = f.intent_delay_ms();
    assert!(delay > 0 && delay <= MAX_INTENT_DELAY.max(DEFAULT_INTENT_DELAY));
    assert!(delay == DEFAULT_INTENT_DELAY || f.intent_delay == delay);
    let printed = feature_words(f);
    let count = f.nr_words().to_string();
    let mut words = vec!["m", "8", "2", "a", "b"];
    if !f.is_default() {
        words.push(&count);
        words.extend(printed.split_whitespace());
    }
    let again = TableArgs::parse(&words).expect("printed features refused");
    assert_eq!(again.features, *f);
}

/// Table-line parsing, the words split as the kernel splits them.
pub fn table(data: &[u8]) {
    let Some(owned) = dm_words(data) else { return };
    let words: Vec<&str> = owned.iter().map(String::as_str).collect();
    for w in &words {
        check_number(w);
    }
    let t = match TableArgs::parse(&words) {
        Ok(t) => t,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    // What an accepted line is made of: 3 fixed words, the legs, and
    // either nothing or a feature count that matches.
    let nr = t.legs().len();
    assert!((MIN_LEGS..=MAX_LEGS).contains(&nr));
    assert_eq!(t.metadata, words[0]);
    assert_eq!(parse_u64(words[1]), Ok(t.region_sectors));
    assert!(Geometry::check_region_size(t.region_sectors).is_ok());
    assert_eq!(parse_u64(words[2]), Ok(nr as u64));
    assert_eq!(t.legs(), &words[3..3 + nr]);
    let rest = &words[3 + nr..];
    if rest.is_empty() {
        assert!(t.features.is_default());
    } else {
        assert_eq!(parse_u64(rest[0]), Ok(rest.len() as u64 - 1));
    }
    check_features(&t.features);

    if let Some((i, j)) = find_duplicate(t.legs()) {
        assert!(i < j && t.legs()[i] == t.legs()[j]);
    } else {
        let l = t.legs();
        assert!((0..nr).all(|i| (i + 1..nr).all(|j| l[i] != l[j])));
    }

    // The line the target prints for `dmsetup table` parses back to the
    // same, unless a device name needs quoting (the kernel prints devices
    // as major:minor, which never does).
    let plain = |w: &str| !w.bytes().any(|b| is_dm_space(b) || b == b'\\');
    if plain(t.metadata) && t.legs().iter().all(|w| plain(w)) {
        let mut line = String::new();
        write!(line, "{} {} {}", t.metadata, t.region_sectors, nr).unwrap();
        for leg in t.legs() {
            write!(line, " {leg}").unwrap();
        }
        if !t.features.is_default() {
            write!(line, " {}", t.features.nr_words()).unwrap();
            line.push_str(&feature_words(&t.features));
        }
        let again = dm_words(line.as_bytes()).expect("printed line is UTF-8");
        let again: Vec<&str> = again.iter().map(String::as_str).collect();
        assert_eq!(TableArgs::parse(&again), Ok(t), "{line:?}");
    }
}

// ---------------------------------------------------------------------------
// message

/// Message parsing with any leg count.
///
/// Input: the target's leg count (u32), then the message.
pub fn message(data: &[u8]) {
    let mut inp = Input::new(data);
    let nr_legs = inp.u32();
    let Some(owned) = dm_words(inp.rest()) else {
        return;
    };
    let words: Vec<&str> = owned.iter().map(String::as_str).collect();
    for w in &words {
        check_number(w);
    }
    let r = Message::parse(&words, nr_legs);
    assert_eq!(r == Err(MessageError::Empty), words.is_empty());
    let leg_word = |name: &str, l: u32| {
        assert_eq!(words.len(), 2);
        assert_eq!(words[0], name);
        assert_eq!(parse_u64(words[1]), Ok(u64::from(l)));
        assert!(l < nr_legs);
    };
    match r {
        Ok(Message::Fracture(l)) => leg_word("fracture", l),
        Ok(Message::Rejoin(l)) => leg_word("rejoin", l),
        Ok(Message::Rebuild(l)) => leg_word("rebuild", l),
        Ok(Message::Primary(l)) => leg_word("primary", l),
        Ok(Message::RecoveryRate(rate)) => {
            assert_eq!(words.len(), 2);
            assert_eq!(words[0], "recovery_rate");
            assert_eq!(parse_u64(words[1]), Ok(rate));
            assert!(rate <= MAX_RECOVERY_RATE);
            // The new rate is printed in the table line from then on.
            check_features(&Features {
                recovery_rate: rate,
                ..Features::default()
            });
        }
        Ok(Message::Stats) => assert_eq!(words, ["stats"]),
        Ok(Message::Verify { leg, check }) => {
            // `verify [check] [<leg>]`.
            let head: &[&str] = if check {
                &["verify", "check"]
            } else {
                &["verify"]
            };
            assert!(words.starts_with(head));
            let rest = &words[head.len()..];
            match leg {
                None => assert!(rest.is_empty()),
                Some(l) => {
                    assert_eq!(rest.len(), 1);
                    assert_eq!(parse_u64(rest[0]), Ok(u64::from(l)));
                    assert!(l < nr_legs);
                }
            }
        }
        Ok(Message::VerifyCancel) => assert_eq!(words, ["verify", "cancel"]),
        Err(MessageError::Unknown(w)) => {
            assert_eq!(w, words[0]);
            let known = [
                "fracture",
                "rejoin",
                "rebuild",
                "primary",
                "recovery_rate",
                "stats",
                "verify",
            ];
            assert!(!known.contains(&w));
        }
        Err(MessageError::BadLeg { value, nr_legs: n }) => {
            assert_eq!(n, nr_legs);
            // `<message> <leg>`, or `verify check <leg>`.
            assert!(words.len() == 2 || (words.len() == 3 && words[..2] == ["verify", "check"]));
            assert_eq!(Some(&value), words.last());
            assert!(!(words[0] == "verify" && value == "cancel"));
            assert!(!(words.len() == 2 && words[0] == "verify" && value == "check"));
            assert!(!matches!(parse_u64(value), Ok(v) if v < u64::from(nr_legs)));
        }
        Err(MessageError::BadRate(v)) => {
            assert_eq!(words, ["recovery_rate", v]);
            assert!(!matches!(parse_u64(v), Ok(v) if v <= MAX_RECOVERY_RATE));
        }
        Err(MessageError::Usage(_)) => {
            let n = words.len();
            assert!(match words[0] {
                "stats" => n != 1,
                // `verify`, `verify <leg>`, `verify cancel`, `verify check`
                // and `verify check <leg>` are fine (not `verify check
                // cancel`).
                "verify" => n > 3 || (n == 3 && (words[1] != "check" || words[2] == "cancel")),
                _ => n != 2,
            });
        }
        Err(MessageError::Empty) => {}
    }
    match r {
        Ok(m) => {
            // Printed back as words, it parses to itself.
            let text = match m {
                Message::Fracture(l) => format!("fracture {l}"),
                Message::Rejoin(l) => format!("rejoin {l}"),
                Message::Rebuild(l) => format!("rebuild {l}"),
                Message::Primary(l) => format!("primary {l}"),
                Message::RecoveryRate(r) => format!("recovery_rate {r}"),
                Message::Stats => "stats".to_string(),
                Message::Verify { leg, check } => {
                    let name = if check { "verify check" } else { "verify" };
                    match leg {
                        Some(l) => format!("{name} {l}"),
                        None => name.to_string(),
                    }
                }
                Message::VerifyCancel => "verify cancel".to_string(),
            };
            // Display (what fracturectl sends) prints the same words.
            assert_eq!(m.to_string(), text);
            let w: Vec<&str> = text.split(' ').collect();
            assert_eq!(Message::parse(&w, nr_legs), Ok(m));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

// ---------------------------------------------------------------------------
// region

/// Region maths against 128-bit arithmetic.
///
/// Input: mode (bit 0: region size as given, else a power of two from its
/// low 6 bits), target length, region size, an I/O's sector and length,
/// a region (u64 each).
pub fn region(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let len = inp.u64();
    let region = inp.u64();
    let sector = inp.u64();
    let nr = inp.u64();
    let r = inp.u64();
    let region = if mode & 1 != 0 {
        region
    } else {
        1u64 << (region % 64)
    };
    let ok =
        region.is_power_of_two() && (MIN_REGION_SECTORS..=MAX_REGION_SECTORS).contains(&region);
    assert_eq!(Geometry::check_region_size(region).is_ok(), ok);
    let g = match Geometry::new(len, region) {
        Ok(g) => g,
        Err(e) => {
            assert!(!ok && !e.to_string().is_empty());
            return;
        }
    };
    assert!(ok);
    let (l, rs) = (u128::from(len), u128::from(region));
    assert_eq!(
        (g.len(), g.region_sectors(), g.is_empty()),
        (len, region, len == 0)
    );
    assert_eq!(1u64 << g.region_shift(), region);
    assert_eq!(u128::from(g.nr_regions()), l.div_ceil(rs));
    assert_eq!(g.region_of(sector), sector / region);

    let io = g.regions_of(sector, nr);
    if nr == 0 || sector >= len {
        assert_eq!(io, 0..0);
    } else {
        let end = (u128::from(sector) + u128::from(nr)).min(l);
        assert_eq!(u128::from(io.start), u128::from(sector) / rs);
        assert_eq!(u128::from(io.end), (end - 1) / rs + 1);
        assert!(io.end <= g.nr_regions());
    }

    let s = g.sectors_of(r);
    if r >= g.nr_regions() {
        assert_eq!(s, len..len);
    } else {
        assert_eq!(u128::from(s.start), u128::from(r) * rs);
        assert_eq!(u128::from(s.end), ((u128::from(r) + 1) * rs).min(l));
        assert!(!s.is_empty());
        assert_eq!(g.regions_of(s.start, s.end - s.start), r..r + 1);
    }
    let covers = g.covers_region(sector, nr, r);
    assert_eq!(
        covers,
        !s.is_empty()
            && sector <= s.start
            && u128::from(sector) + u128::from(nr) >= u128::from(s.end)
    );
    if covers {
        assert!(io.contains(&r));
    }
}

// ---------------------------------------------------------------------------
// rate

/// The recovery rate limit: never more than the rate allows, whatever the
/// clock and copy sizes.
///
/// Input: the rate (KiB/s, u64), the start time (ns, u64), then
/// operations: a byte (low 2 bits: which) and its arguments.
pub fn rate(data: &[u8]) {
    let mut inp = Input::new(data);
    let kib = inp.u64();
    let start = inp.u64();
    let mut r = RateLimit::new(kib, start);
    if kib <= u64::MAX / 1024 {
        assert_eq!(r.rate_kib(), kib);
    }
    let mut rate = u128::from(kib) * 1024;
    let mut now = start;
    // Bytes admitted, and whether the bound still applies (the rate did
    // not change).
    let mut admitted: u128 = 0;
    let mut fixed = true;
    while !inp.is_empty() {
        let op = inp.u8();
        let at = match op & 3 {
            0 | 1 => {
                let dt = if op & 0x80 != 0 {
                    inp.u64()
                } else {
                    u64::from(inp.u32())
                };
                now = now.saturating_add(dt);
                now
            }
            2 => {
                let k = inp.u64() % (MAX_RECOVERY_RATE + 1);
                r.set_rate(k);
                assert_eq!(r.rate_kib(), k);
                rate = u128::from(k) * 1024;
                fixed = false;
                continue;
            }
            // The clock goes backwards.
            _ => now.saturating_sub(inp.u64()),
        };
        // A copy is below 2^42 bytes (a region is at most 1 GiB).
        let bytes = inp.u64() % (1 << 42);
        match r.admit(at, bytes) {
            Ok(()) => {
                if rate != 0 && fixed {
                    // Saturated, still far above any sum of copies.
                    let allowed = rate.saturating_mul(u128::from(now - start)) / 1_000_000_000;
                    assert!(
                        admitted <= allowed,
                        "{admitted} bytes before this copy, {allowed} allowed"
                    );
                }
                admitted += u128::from(bytes);
            }
            Err(wait) => {
                assert!(rate != 0, "an unlimited rate made a copy wait");
                assert!(wait >= 1);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// seeds

/// The seed inputs, made from valid examples: target, file name, bytes.
/// `fuzz/seeds/` holds them; the regression test checks that it matches
/// and rewrites it with `FUZZ_WRITE_SEEDS=1`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_string(), bytes));
    };

    // Superblocks as formatting writes them, and after some history.
    let sbs = {
        let g = |len, region| Geometry::new(len, region).unwrap();
        let mut list = Vec::new();
        let s = Superblock::new([0x11; 16], &g(1 << 20, 1024), 2);
        list.push(("2-legs-nosync", s));
        let mut s = Superblock::new([0x22; 16], &g(131_072, 1024), 3);
        s.start_initial_sync();
        list.push(("3-legs-initial-sync", s));
        let mut s = Superblock::new([0x33; 16], &g(BITS_PER_BLOCK * 8 * 3 + 5, 8), 9);
        s.leave_sync(4);
        s.leg_mut(4).state = LegState::Fractured;
        s.leg_mut(4).split = true;
        s.leave_sync(7);
        s.leg_mut(7).state = LegState::Recovering;
        s.commit = 17;
        list.push(("9-legs-split-and-recovering", s));
        let mut s = Superblock::new([0x44; 16], &g(1 << 30, 2048), 3);
        s.fail_over(0);
        s.leave_sync(0);
        s.leg_mut(0).state = LegState::Failed;
        s.flags = 0;
        list.push(("3-legs-failed-over-unclean", s));
        list
    };
    for (name, s) in &sbs {
        let mut b = vec![0u8; BLOCK_SIZE];
        s.encode(&mut b);
        while b.last() == Some(&0) {
            b.pop();
        }
        let header = |mode: u8, dirty: u32, nr: u64| {
            Seed::default()
                .u8(mode)
                .u32(dirty)
                .u64(0)
                .u64(0)
                .u32(0)
                .u64(nr)
                .u64(u64::MAX)
                .u64(0x0d_2c_1b_0a_05_04_03_00)
        };
        add("superblock", name, header(0, 0, 1).bytes(&b).0);
        add(
            "superblock",
            &format!("{name}-resealed-dirty"),
            header(sb_mode::RESEAL | sb_mode::INTENT, 0b110, 2)
                .bytes(&b)
                .0,
        );
    }
    add("superblock", "zero", Seed::default().u8(0).0);

    // Bitmap blocks as formatting writes them, and one with a few bits.
    let (_, s) = &sbs[1];
    let layout = s.layout();
    for (name, nr) in [
        ("fracture-empty", layout.fracture_block(0, 0)),
        ("fracture-initial-sync", layout.fracture_block(1, 0)),
        ("intent-empty", layout.intent_block(0)),
    ] {
        let mut b = vec![0u8; BLOCK_SIZE];
        let kind = format_block(s, nr, &mut b).unwrap();
        while b.last() == Some(&0) {
            b.pop();
        }
        let seed = Seed::default()
            .u8(0)
            .u8(kind as u8 - 2)
            .u64(nr)
            .u64(0)
            .u64(s.nr_regions)
            .u64(0)
            .u16(5)
            .u16(100)
            .bytes(&b);
        add("bitmap", name, seed.0);
    }
    let mut b = vec![0u8; BLOCK_SIZE];
    for bit in [0, 1, 63, 64, 1000, 32_511] {
        set_bit(payload_mut(&mut b), bit);
    }
    seal(&mut b, BlockType::IntentBitmap, 9, &[0x55; 16]);
    let seed = Seed::default()
        .u8(0)
        .u8(1)
        .u64(9)
        .u64(1)
        .u64(BITS_PER_BLOCK * 2)
        .u64(64)
        .u16(7)
        .u16(4000)
        .bytes(&b);
    add("bitmap", "intent-some-bits", seed.0);

    // The intent log: writes, a commit, a scan, a flush, clears.
    let range = |s: Seed, op: u8, start: u16, len: u16| s.u8(op).u16(start).u16(len);
    let mut s = Seed::default().u16(1200);
    s = range(s, 0, 10, 3);
    s = s.u8(4).u8(0);
    s = s.u8(2).u8(0);
    s = range(s, 0, 11, 1);
    s = s.u8(5);
    for r in 9..14 {
        s = s.u8(6).u16(r);
    }
    s = s.u8(8);
    for r in 9..14 {
        s = s.u8(9).u16(r);
    }
    s = s.u8(2).u8(0).u8(5);
    for r in 9..14 {
        s = s.u8(6).u16(r);
    }
    s = s.u8(8);
    for r in 9..14 {
        s = s.u8(9).u16(r);
    }
    add("intent", "write-scan-clear", s.0);
    let mut s = Seed::default().u16(1500);
    s = range(s, 0x80, 5, 0);
    s = range(s, 1, 1029, 1);
    s = range(s, 0x41, 100, 2000);
    s = s.u8(4).u8(1).u8(4).u8(0).u8(0x15);
    for r in [5, 1029, 2000] {
        s = s.u8(6).u16(r);
    }
    s = s
        .u8(0x18)
        .u8(12)
        .u16(5)
        .u8(2)
        .u8(0)
        .u8(2)
        .u8(0)
        .u8(11)
        .u8(12)
        .u16(5);
    add("intent", "whole-device-write-quiesced", s.0);

    // Table lines.
    for (name, line) in [
        ("2-legs", "252:0 1024 2 252:1 252:2"),
        ("3-legs-nosync", "m 8 3 a b c 1 nosync"),
        ("9-legs", "m 2097152 9 0 1 2 3 4 5 6 7 8"),
        (
            "all-features",
            "253:0 1024 2 253:1 253:2 11 nosync recovery_rate 2048 probe_interval 30 intent_delay 100 io_timeout 5000",
        ),
        ("nointent", "253:0 1024 2 253:1 253:2 2 nointent nosync"),
        ("quoted", "/dev/meta\\ data 8 2 /dev/a\t/dev/b 0"),
        // Refusals that need a matching feature count.
        ("refused-repeated", "m 8 2 a b 2 nosync nosync"),
        ("refused-missing-value", "m 8 2 a b 1 io_timeout"),
        ("refused-delay-without-log", "m 8 2 a b 3 nointent intent_delay 10"),
    ] {
        add("table", name, line.as_bytes().to_vec());
    }

    // Messages.
    for (name, legs, text) in [
        ("fracture", 3, "fracture 1"),
        ("rejoin", 3, "rejoin 2"),
        ("rebuild", 2, "rebuild 1"),
        ("primary", 9, "primary 8"),
        ("recovery-rate", 2, "recovery_rate 2048"),
        ("stats", 2, "stats"),
        ("verify", 3, "verify"),
        ("verify-leg", 3, "verify 2"),
        ("verify-cancel", 2, "verify cancel"),
        ("verify-check", 3, "verify check"),
        ("verify-check-leg", 3, "verify check 1"),
        ("verify-check-cancel", 2, "verify check cancel"),
    ] {
        add(
            "message",
            name,
            Seed::default().u32(legs).bytes(text.as_bytes()).0,
        );
    }

    // Region maths and the rate limit.
    add(
        "region",
        "1gib-1024",
        Seed::default()
            .u8(0)
            .u64(1 << 21)
            .u64(10)
            .u64(1000)
            .u64(2048)
            .u64(1)
            .0,
    );
    add(
        "region",
        "partial-last",
        Seed::default()
            .u8(1)
            .u64(1000)
            .u64(64)
            .u64(960)
            .u64(40)
            .u64(15)
            .0,
    );
    let mut s = Seed::default().u64(1024).u64(1_000_000_000);
    for _ in 0..4 {
        s = s.u8(0).u32(50_000_000).u64(65_536);
    }
    s = s.u8(2).u64(100).u8(3).u64(1_000_000).u64(4096);
    add("rate", "copies", s.0);
    out
}
