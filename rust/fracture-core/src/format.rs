// SPDX-License-Identifier: GPL-2.0

//! The on-disk format of the metadata device, version 1.
//!
//! The device is an array of 4 KiB blocks:
//!
//! ```text
//! block 0                      superblock
//! blocks 1 ..                  fracture bitmap of leg 0, then leg 1, ... (B blocks each)
//! then B blocks                write-intent bitmap
//! ```
//!
//! where `B = ceil(nr_regions / BITS_PER_BLOCK)`. Every block starts with a
//! 32-byte header: crc32c of the rest of the block, block type, the block's
//! own number and the metadata UUID, so a torn, misdirected or foreign block
//! is detected. All integers are little-endian. Nothing read from disk is
//! trusted: sizes are recomputed from the geometry and compared, never used
//! to index. `Documentation/admin-guide/device-mapper/dm-fracture.rst`
//! describes the same layout byte by byte.

use crate::crc32c::crc32c;
use crate::region::Geometry;
use crate::table::{MAX_LEGS, MIN_LEGS};

/// Size of every metadata block.
pub const BLOCK_SIZE: usize = 4096;
/// Sectors per metadata block.
pub const SECTORS_PER_BLOCK: u64 = (BLOCK_SIZE / 512) as u64;
/// Bytes of the common block header.
pub const HEADER_SIZE: usize = 32;
/// Bitmap bits (regions) held by one bitmap block.
pub const BITS_PER_BLOCK: u64 = ((BLOCK_SIZE - HEADER_SIZE) * 8) as u64;
/// `"FRACTURE"` as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"FRACTURE");
/// The format version this code reads and writes.
pub const VERSION: u32 = 1;

/// Superblock flag: the target was shut down cleanly (no write in flight).
pub const FLAG_CLEAN: u32 = 1;

/// Largest event or commit count a superblock may carry. Both only ever
/// move on by one, so a higher count was not written by this code, and
/// incrementing it could overflow (a panic with overflow checks).
pub const MAX_COUNT: u64 = u64::MAX >> 1;

// Byte offsets inside blocks.
const OFF_CSUM: usize = 0;
const OFF_TYPE: usize = 4;
const OFF_BLOCKNR: usize = 8;
const OFF_UUID: usize = 16;
const SB_MAGIC: usize = 32;
const SB_VERSION: usize = 40;
const SB_FLAGS: usize = 44;
const SB_REGION: usize = 48;
const SB_NR_REGIONS: usize = 56;
const SB_TARGET: usize = 64;
const SB_NR_LEGS: usize = 72;
const SB_PRIMARY: usize = 76;
const SB_BITMAP_BLOCKS: usize = 80;
const SB_INTENT_BLOCKS: usize = 84;
const SB_EVENT: usize = 88;
const SB_COMMIT: usize = 96;
const SB_LEGS: usize = 104;
const LEG_RECORD: usize = 16;

/// What a block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockType {
    /// Block 0.
    Superblock = 1,
    /// Part of a leg's fracture bitmap.
    FractureBitmap = 2,
    /// Part of the write-intent bitmap.
    IntentBitmap = 3,
}

impl BlockType {
    /// A word for logs and tools.
    pub fn name(self) -> &'static str {
        match self {
            Self::Superblock => "superblock",
            Self::FractureBitmap => "fracture bitmap",
            Self::IntentBitmap => "intent bitmap",
        }
    }
}

/// The state of a leg, as recorded in the superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegState {
    /// Identical to the primary; receives every write.
    InSync = 0,
    /// Split off (failed or on purpose): receives no writes, its changed
    /// regions are logged in its fracture bitmap.
    Fractured = 1,
    /// Being resynchronised from the primary.
    Recovering = 2,
    /// Failed and not usable.
    Failed = 3,
}

impl LegState {
    /// Decodes a state byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::InSync),
            1 => Some(Self::Fractured),
            2 => Some(Self::Recovering),
            3 => Some(Self::Failed),
            _ => None,
        }
    }

    /// The status-line character: `A`, `F`, `R` or `D`.
    pub fn health_char(self) -> char {
        match self {
            Self::InSync => 'A',
            Self::Fractured => 'F',
            Self::Recovering => 'R',
            Self::Failed => 'D',
        }
    }

    /// A word for logs and tools.
    pub fn name(self) -> &'static str {
        match self {
            Self::InSync => "in-sync",
            Self::Fractured => "fractured",
            Self::Recovering => "recovering",
            Self::Failed => "failed",
        }
    }
}

/// Where things are on a metadata device for a given table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    nr_legs: u32,
    bitmap_blocks: u64,
}

impl Layout {
    /// The layout for `nr_legs` legs and `nr_regions` regions.
    pub fn new(nr_legs: u32, nr_regions: u64) -> Self {
        Self {
            nr_legs,
            bitmap_blocks: nr_regions.div_ceil(BITS_PER_BLOCK).max(1),
        }
    }

    /// Blocks of one bitmap (per leg, and of the intent log).
    pub fn bitmap_blocks(&self) -> u64 {
        self.bitmap_blocks
    }

    /// Block number of block `index` of leg `leg`'s fracture bitmap.
    pub fn fracture_block(&self, leg: u32, index: u64) -> u64 {
        1 + u64::from(leg) * self.bitmap_blocks + index
    }

    /// Block number of block `index` of the write-intent bitmap.
    pub fn intent_block(&self, index: u64) -> u64 {
        1 + u64::from(self.nr_legs) * self.bitmap_blocks + index
    }

    /// Blocks the whole layout needs.
    pub fn total_blocks(&self) -> u64 {
        1 + (u64::from(self.nr_legs) + 1) * self.bitmap_blocks
    }

    /// Smallest metadata device, in sectors.
    pub fn min_sectors(&self) -> u64 {
        self.total_blocks() * SECTORS_PER_BLOCK
    }
}

/// Where region `region` is within a bitmap: block index and bit within
/// that block's payload.
pub fn bit_position(region: u64) -> (u64, usize) {
    (region / BITS_PER_BLOCK, (region % BITS_PER_BLOCK) as usize)
}

/// A leg's record in the superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegRecord {
    /// Its state.
    pub state: LegState,
    /// The array event count when the leg was last known identical to the
    /// primary. A leg whose generation is below the superblock's event count
    /// missed writes and must never be a copy source.
    pub generation: u64,
    /// Fractured on request (`fracture` message), not by a failure: a
    /// point-in-time copy that is only resynchronised when asked to
    /// (`rejoin`), never automatically on resume or by the probe.
    pub split: bool,
}

/// Leg record flag (byte 1): fractured on request.
pub const LEG_FLAG_SPLIT: u8 = 1;

/// The superblock, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Identifies the mirror; every block carries it.
    pub uuid: [u8; 16],
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Region size in sectors.
    pub region_sectors: u64,
    /// Number of regions.
    pub nr_regions: u64,
    /// Length of the target in sectors.
    pub target_sectors: u64,
    /// Number of legs, 2..=9.
    pub nr_legs: u32,
    /// The leg serving as primary.
    pub primary_leg: u32,
    /// Array event count: bumped whenever a leg leaves the in-sync set.
    pub event: u64,
    /// Incremented on every superblock write.
    pub commit: u64,
    legs: [LegRecord; MAX_LEGS],
}

/// What [`Superblock::check_primary`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryCheck {
    /// The recorded primary serves.
    Kept,
    /// The recorded primary missed writes; another leg serves.
    Switched {
        /// The recorded primary.
        from: u32,
        /// The new one.
        to: u32,
    },
    /// No leg is in sync at the current generation.
    NoSource,
}

/// Why metadata was refused. Each prints as one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// A block's checksum does not match its contents.
    Checksum {
        /// Expected block type.
        kind: BlockType,
        /// Block number.
        block: u64,
    },
    /// A block holds another type than expected.
    WrongType {
        /// Expected block type.
        kind: BlockType,
        /// Block number.
        block: u64,
        /// The type found.
        found: u32,
    },
    /// A block says it lives elsewhere (misdirected write).
    WrongLocation {
        /// Expected block type.
        kind: BlockType,
        /// Block number read.
        block: u64,
        /// The number the block carries.
        found: u64,
    },
    /// A block belongs to another mirror.
    WrongUuid {
        /// Expected block type.
        kind: BlockType,
        /// Block number.
        block: u64,
    },
    /// No dm-fracture magic: not our metadata (and not all zero).
    BadMagic,
    /// A format version this code does not know.
    Version(u32),
    /// The superblock's fields contradict each other.
    Inconsistent(&'static str),
    /// A leg record has an unknown state.
    LegState {
        /// The leg.
        leg: u32,
        /// The state byte.
        value: u8,
    },
    /// A buffer that is not one block.
    BlockSize(usize),
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Checksum { kind, block } => {
                write!(f, "{} block {} fails its checksum", kind.name(), block)
            }
            Self::WrongType { kind, block, found } => write!(
                f,
                "block {} should be a {} block but has type {}",
                block,
                kind.name(),
                found
            ),
            Self::WrongLocation { kind, block, found } => write!(
                f,
                "{} block {} carries block number {} (misdirected write)",
                kind.name(),
                block,
                found
            ),
            Self::WrongUuid { kind, block } => write!(
                f,
                "{} block {} belongs to another mirror (UUID differs)",
                kind.name(),
                block
            ),
            Self::BadMagic => f.write_str("no dm-fracture superblock (bad magic) and not all zero"),
            Self::Version(v) => write!(
                f,
                "unsupported metadata format version {v} (this is {VERSION})"
            ),
            Self::Inconsistent(what) => write!(f, "inconsistent superblock: {what}"),
            Self::LegState { leg, value } => {
                write!(f, "superblock: leg {leg} has unknown state {value}")
            }
            Self::BlockSize(n) => write!(f, "metadata block of {n} bytes, expected {BLOCK_SIZE}"),
        }
    }
}

/// How a superblock disagrees with the table line it is used with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// Region size differs.
    RegionSize {
        /// On disk.
        disk: u64,
        /// In the table.
        table: u64,
    },
    /// Number of legs differs.
    NrLegs {
        /// On disk.
        disk: u32,
        /// In the table.
        table: u32,
    },
    /// Target length differs.
    Length {
        /// On disk.
        disk: u64,
        /// In the table.
        table: u64,
    },
}

impl core::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::RegionSize { disk, table } => {
                write!(f, "metadata has region_size {disk}, the table says {table}")
            }
            Self::NrLegs { disk, table } => {
                write!(f, "metadata has {disk} legs, the table says {table}")
            }
            Self::Length { disk, table } => write!(
                f,
                "metadata is for a target of {disk} sectors, the table says {table}"
            ),
        }
    }
}

fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Whether a block is all zero (a never-written metadata device).
pub fn is_zero(block: &[u8]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Writes the header of `block` (type, location, UUID) and its checksum.
/// Call last, after the payload is complete.
pub fn seal(block: &mut [u8], kind: BlockType, block_nr: u64, uuid: &[u8; 16]) {
    put_u32(block, OFF_TYPE, kind as u32);
    put_u64(block, OFF_BLOCKNR, block_nr);
    block[OFF_UUID..OFF_UUID + 16].copy_from_slice(uuid);
    let c = crc32c(&block[4..]);
    put_u32(block, OFF_CSUM, c);
}

/// Checks a block's size, checksum, type, location and (unless `uuid` is
/// `None`) its UUID.
pub fn verify(
    block: &[u8],
    kind: BlockType,
    block_nr: u64,
    uuid: Option<&[u8; 16]>,
) -> Result<(), FormatError> {
    if block.len() != BLOCK_SIZE {
        return Err(FormatError::BlockSize(block.len()));
    }
    if get_u32(block, OFF_CSUM) != crc32c(&block[4..]) {
        return Err(FormatError::Checksum {
            kind,
            block: block_nr,
        });
    }
    let found = get_u32(block, OFF_TYPE);
    if found != kind as u32 {
        return Err(FormatError::WrongType {
            kind,
            block: block_nr,
            found,
        });
    }
    let found = get_u64(block, OFF_BLOCKNR);
    if found != block_nr {
        return Err(FormatError::WrongLocation {
            kind,
            block: block_nr,
            found,
        });
    }
    if let Some(u) = uuid {
        if block[OFF_UUID..OFF_UUID + 16] != u[..] {
            return Err(FormatError::WrongUuid {
                kind,
                block: block_nr,
            });
        }
    }
    Ok(())
}

/// The bitmap bytes of a bitmap block.
pub fn payload(block: &[u8]) -> &[u8] {
    &block[HEADER_SIZE..]
}

/// The bitmap bytes of a bitmap block, for changing.
pub fn payload_mut(block: &mut [u8]) -> &mut [u8] {
    &mut block[HEADER_SIZE..]
}

/// Sets bit `bit` of a bitmap payload; returns whether it was clear.
pub fn set_bit(payload: &mut [u8], bit: usize) -> bool {
    let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
    let was_clear = payload[byte] & mask == 0;
    payload[byte] |= mask;
    was_clear
}

/// Clears bit `bit` of a bitmap payload; returns whether it was set.
pub fn clear_bit(payload: &mut [u8], bit: usize) -> bool {
    let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
    let was_set = payload[byte] & mask != 0;
    payload[byte] &= !mask;
    was_set
}

/// Whether bit `bit` of a bitmap payload is set.
pub fn test_bit(payload: &[u8], bit: usize) -> bool {
    payload[bit / 8] & (1u8 << (bit % 8)) != 0
}

/// Number of set bits in a bitmap payload.
pub fn count_ones(payload: &[u8]) -> u64 {
    payload.iter().map(|b| u64::from(b.count_ones())).sum()
}

/// The first set bit at or after `from` in a bitmap payload.
pub fn next_set_bit(payload: &[u8], from: usize) -> Option<usize> {
    let mut byte = from / 8;
    if byte >= payload.len() {
        return None;
    }
    let first = payload[byte] & (0xffu8 << (from % 8));
    if first != 0 {
        return Some(byte * 8 + first.trailing_zeros() as usize);
    }
    byte += 1;
    // Whole words while aligned, for the common long runs of zeros.
    while byte < payload.len() {
        if byte & 7 == 0 && byte + 8 <= payload.len() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&payload[byte..byte + 8]);
            let w = u64::from_le_bytes(w);
            if w == 0 {
                byte += 8;
                continue;
            }
            return Some(byte * 8 + w.trailing_zeros() as usize);
        }
        if payload[byte] != 0 {
            return Some(byte * 8 + payload[byte].trailing_zeros() as usize);
        }
        byte += 1;
    }
    None
}

/// Whether every bit of a payload past the last region is clear, given that
/// the payload is block `index` of a bitmap of `nr_regions` bits.
pub fn padding_clear(payload: &[u8], index: u64, nr_regions: u64) -> bool {
    let first = index.saturating_mul(BITS_PER_BLOCK);
    let n = nr_regions.saturating_sub(first).min(BITS_PER_BLOCK) as usize;
    next_set_bit(payload, n).is_none()
}

/// Sets every bit of a payload for regions `< nr_regions` given that the
/// payload is block `index` of its bitmap; bits past the end stay clear.
pub fn fill(payload: &mut [u8], index: u64, nr_regions: u64) {
    let first = index.saturating_mul(BITS_PER_BLOCK);
    let n = nr_regions.saturating_sub(first).min(BITS_PER_BLOCK) as usize;
    payload.fill(0);
    payload[..n / 8].fill(0xff);
    for bit in (n / 8) * 8..n {
        set_bit(payload, bit);
    }
}

/// The contents of block `block_nr` (1 .. `layout.total_blocks()`) of a
/// freshly formatted metadata device described by `sb`: a recovering leg's
/// fracture bitmap has every region set (initial sync), every other bitmap
/// is empty. Formatting writes these blocks first and the superblock
/// (`sb.encode`) last, so that a device cut half way is still "all zero" at
/// block 0. Returns the block's type, or `None` for a block number outside
/// the layout (nothing written to `block`).
pub fn format_block(sb: &Superblock, block_nr: u64, block: &mut [u8]) -> Option<BlockType> {
    let layout = sb.layout();
    let per_leg = layout.bitmap_blocks();
    if block_nr == 0 || block_nr >= layout.total_blocks() || block.len() != BLOCK_SIZE {
        return None;
    }
    let which = (block_nr - 1) / per_leg;
    let idx = (block_nr - 1) % per_leg;
    block.fill(0);
    let kind = if which < u64::from(sb.nr_legs) {
        if sb.leg(which as u32).state == LegState::Recovering {
            fill(payload_mut(block), idx, sb.nr_regions);
        }
        BlockType::FractureBitmap
    } else {
        BlockType::IntentBitmap
    };
    seal(block, kind, block_nr, &sb.uuid);
    Some(kind)
}

impl Superblock {
    /// A new superblock for a freshly formatted device: every leg in sync at
    /// generation 1, leg 0 primary.
    pub fn new(uuid: [u8; 16], geometry: &Geometry, nr_legs: u32) -> Self {
        let mut legs = [LegRecord {
            state: LegState::InSync,
            generation: 0,
            split: false,
        }; MAX_LEGS];
        for leg in legs.iter_mut().take(nr_legs as usize) {
            leg.generation = 1;
        }
        Self {
            uuid,
            flags: FLAG_CLEAN,
            region_sectors: geometry.region_sectors(),
            nr_regions: geometry.nr_regions(),
            target_sectors: geometry.len(),
            nr_legs,
            primary_leg: 0,
            event: 1,
            commit: 0,
            legs,
        }
    }

    /// Marks every secondary as never synchronised (state recovering,
    /// generation 0), for a new mirror whose legs are not known identical:
    /// their bitmaps must then be all set (see [`fill`]).
    pub fn start_initial_sync(&mut self) {
        for leg in self.legs.iter_mut().take(self.nr_legs as usize).skip(1) {
            leg.state = LegState::Recovering;
            leg.generation = 0;
        }
    }

    /// The layout this superblock describes.
    pub fn layout(&self) -> Layout {
        Layout::new(self.nr_legs, self.nr_regions)
    }

    /// Leg `leg`'s record. Panics if `leg >= nr_legs` (an invariant of the
    /// callers: legs come from the validated table).
    pub fn leg(&self, leg: u32) -> &LegRecord {
        &self.legs[leg as usize]
    }

    /// Leg `leg`'s record, for changing.
    pub fn leg_mut(&mut self, leg: u32) -> &mut LegRecord {
        &mut self.legs[leg as usize]
    }

    /// Leg `leg` leaves the in-sync set (it is fractured, or must be copied
    /// again): if it was in sync, the event count moves on and the legs
    /// still in sync take it as their generation, so that its older
    /// generation marks it as no copy source from now on. The caller sets
    /// its new state.
    pub fn leave_sync(&mut self, leg: u32) {
        if self.leg(leg).state != LegState::InSync {
            return;
        }
        self.event += 1;
        let event = self.event;
        for (l, rec) in self.legs.iter_mut().take(self.nr_legs as usize).enumerate() {
            if l as u32 != leg && rec.state == LegState::InSync {
                rec.generation = event;
            }
        }
    }

    /// Leg `leg` is identical to the primary again: in sync, at the current
    /// generation.
    pub fn enter_sync(&mut self, leg: u32) {
        let event = self.event;
        let rec = self.leg_mut(leg);
        rec.state = LegState::InSync;
        rec.split = false;
        rec.generation = event;
    }

    /// The lowest leg that may serve as primary: in sync at the current
    /// generation (it missed no write) and not in `exclude` (bit per leg).
    pub fn source_candidate(&self, exclude: u32) -> Option<u32> {
        (0..self.nr_legs).find(|&l| {
            let rec = self.leg(l);
            exclude & (1 << l) == 0 && rec.state == LegState::InSync && rec.generation == self.event
        })
    }

    /// The primary failed: the lowest in-sync leg not in `exclude` (legs
    /// that did not take the failed write) becomes the primary. The old
    /// primary is still in sync here; the caller fractures it (which moves
    /// the event count on). `None`, nothing changed, if no leg can take over.
    pub fn fail_over(&mut self, exclude: u32) -> Option<u32> {
        let q = self.source_candidate(exclude | 1 << self.primary_leg)?;
        self.primary_leg = q;
        Some(q)
    }

    /// A planned switchover: leg `leg` becomes the primary if it can serve
    /// (in sync at the current generation). Returns whether it could.
    pub fn switch_primary(&mut self, leg: u32) -> bool {
        if leg >= self.nr_legs || self.source_candidate(!(1 << leg)) != Some(leg) {
            return false;
        }
        self.primary_leg = leg;
        true
    }

    /// At activation: checks that the recorded primary can serve, given
    /// `dirty` (bit per leg: its fracture bitmap has bits set). A primary
    /// with bits (a crash between writing a failover's bitmap and its
    /// superblock) or out of sync hands over to the lowest leg that can
    /// serve, if any.
    pub fn check_primary(&mut self, dirty: u32) -> PrimaryCheck {
        self.check_primary_barring(dirty, 0)
    }

    /// [`Superblock::check_primary`], where no leg in `barred` is chosen to
    /// take over (the kernel bars legs with late I/O). The recorded
    /// primary is kept if it can serve, barred or not: keeping it chooses
    /// nothing.
    pub fn check_primary_barring(&mut self, dirty: u32, barred: u32) -> PrimaryCheck {
        let p = self.primary_leg;
        let rec = self.leg(p);
        if dirty & (1 << p) == 0 && rec.state == LegState::InSync && rec.generation == self.event {
            return PrimaryCheck::Kept;
        }
        match self.source_candidate(dirty | barred | 1 << p) {
            Some(q) => {
                self.primary_leg = q;
                PrimaryCheck::Switched { from: p, to: q }
            }
            None => PrimaryCheck::NoSource,
        }
    }

    /// Checks this superblock against the table line it is activated with.
    pub fn check_table(&self, geometry: &Geometry, nr_legs: u32) -> Result<(), Mismatch> {
        if self.region_sectors != geometry.region_sectors() {
            return Err(Mismatch::RegionSize {
                disk: self.region_sectors,
                table: geometry.region_sectors(),
            });
        }
        if self.nr_legs != nr_legs {
            return Err(Mismatch::NrLegs {
                disk: self.nr_legs,
                table: nr_legs,
            });
        }
        if self.target_sectors != geometry.len() {
            return Err(Mismatch::Length {
                disk: self.target_sectors,
                table: geometry.len(),
            });
        }
        Ok(())
    }

    /// Encodes into `block` (one [`BLOCK_SIZE`] buffer), header and checksum
    /// included.
    pub fn encode(&self, block: &mut [u8]) {
        block.fill(0);
        put_u64(block, SB_MAGIC, MAGIC);
        put_u32(block, SB_VERSION, VERSION);
        put_u32(block, SB_FLAGS, self.flags);
        put_u64(block, SB_REGION, self.region_sectors);
        put_u64(block, SB_NR_REGIONS, self.nr_regions);
        put_u64(block, SB_TARGET, self.target_sectors);
        put_u32(block, SB_NR_LEGS, self.nr_legs);
        put_u32(block, SB_PRIMARY, self.primary_leg);
        let layout = self.layout();
        // The block count is at most ceil(2^64 / 32512) < 2^50: it never
        // fits u32 only for absurd geometries, which `decode` refuses.
        put_u32(block, SB_BITMAP_BLOCKS, layout.bitmap_blocks() as u32);
        put_u32(block, SB_INTENT_BLOCKS, layout.bitmap_blocks() as u32);
        put_u64(block, SB_EVENT, self.event);
        put_u64(block, SB_COMMIT, self.commit);
        for (i, leg) in self.legs.iter().enumerate().take(self.nr_legs as usize) {
            let off = SB_LEGS + i * LEG_RECORD;
            block[off] = leg.state as u8;
            block[off + 1] = if leg.split { LEG_FLAG_SPLIT } else { 0 };
            put_u64(block, off + 8, leg.generation);
        }
        seal(block, BlockType::Superblock, 0, &self.uuid);
    }

    /// Decodes and validates a superblock.
    pub fn decode(block: &[u8]) -> Result<Self, FormatError> {
        if block.len() != BLOCK_SIZE {
            return Err(FormatError::BlockSize(block.len()));
        }
        // Magic first: a foreign device should say "not ours", not
        // "checksum".
        if get_u64(block, SB_MAGIC) != MAGIC {
            return Err(FormatError::BadMagic);
        }
        verify(block, BlockType::Superblock, 0, None)?;
        let version = get_u32(block, SB_VERSION);
        if version != VERSION {
            return Err(FormatError::Version(version));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&block[OFF_UUID..OFF_UUID + 16]);
        let region_sectors = get_u64(block, SB_REGION);
        let nr_regions = get_u64(block, SB_NR_REGIONS);
        let target_sectors = get_u64(block, SB_TARGET);
        let nr_legs = get_u32(block, SB_NR_LEGS);
        let primary_leg = get_u32(block, SB_PRIMARY);
        let geometry = Geometry::new(target_sectors, region_sectors)
            .map_err(|_| FormatError::Inconsistent("invalid region size"))?;
        if geometry.nr_regions() != nr_regions {
            return Err(FormatError::Inconsistent(
                "region count does not match target length and region size",
            ));
        }
        if nr_regions == 0 {
            return Err(FormatError::Inconsistent("zero-length target"));
        }
        if !(MIN_LEGS as u32..=MAX_LEGS as u32).contains(&nr_legs) {
            return Err(FormatError::Inconsistent("number of legs out of range"));
        }
        if primary_leg >= nr_legs {
            return Err(FormatError::Inconsistent("primary leg out of range"));
        }
        let layout = Layout::new(nr_legs, nr_regions);
        if u64::from(get_u32(block, SB_BITMAP_BLOCKS)) != layout.bitmap_blocks()
            || u64::from(get_u32(block, SB_INTENT_BLOCKS)) != layout.bitmap_blocks()
        {
            return Err(FormatError::Inconsistent(
                "bitmap size does not match the region count",
            ));
        }
        let mut legs = [LegRecord {
            state: LegState::InSync,
            generation: 0,
            split: false,
        }; MAX_LEGS];
        for (i, leg) in legs.iter_mut().enumerate().take(nr_legs as usize) {
            let off = SB_LEGS + i * LEG_RECORD;
            leg.state = LegState::from_u8(block[off]).ok_or(FormatError::LegState {
                leg: i as u32,
                value: block[off],
            })?;
            let flags = block[off + 1];
            if flags & !LEG_FLAG_SPLIT != 0 || block[off + 2..off + 8].iter().any(|&b| b != 0) {
                return Err(FormatError::Inconsistent("unknown leg record flags"));
            }
            leg.split = flags & LEG_FLAG_SPLIT != 0;
            leg.generation = get_u64(block, off + 8);
        }
        let event = get_u64(block, SB_EVENT);
        let commit = get_u64(block, SB_COMMIT);
        if event > MAX_COUNT || commit > MAX_COUNT {
            return Err(FormatError::Inconsistent(
                "event or commit count out of range",
            ));
        }
        if legs[..nr_legs as usize]
            .iter()
            .any(|l| l.generation > event)
        {
            return Err(FormatError::Inconsistent(
                "a leg generation is above the event count",
            ));
        }
        Ok(Self {
            uuid,
            flags: get_u32(block, SB_FLAGS),
            region_sectors,
            nr_regions,
            target_sectors,
            nr_legs,
            primary_leg,
            event,
            commit,
            legs,
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;
    use std::vec;

    fn geo() -> Geometry {
        Geometry::new(1 << 20, 1024).unwrap()
    }

    fn sb() -> Superblock {
        let mut s = Superblock::new([7; 16], &geo(), 3);
        s.leg_mut(2).state = LegState::Fractured;
        s.leg_mut(2).split = true;
        s.event = 5;
        s.leg_mut(0).generation = 5;
        s.leg_mut(1).generation = 5;
        s.leg_mut(2).generation = 4;
        s.commit = 42;
        s
    }

    #[test]
    fn check_primary_never_chooses_a_barred_leg() {
        // Three legs in sync at generation 5, primary 0 with bits set.
        let mk = || {
            let mut s = sb();
            s.leg_mut(2).state = LegState::InSync;
            s.leg_mut(2).split = false;
            s.leg_mut(2).generation = 5;
            s
        };
        let mut s = mk();
        assert_eq!(
            s.check_primary_barring(0b001, 0b010),
            PrimaryCheck::Switched { from: 0, to: 2 },
            "leg 1 barred: leg 2 takes over"
        );
        let mut s = mk();
        assert_eq!(
            s.check_primary_barring(0b001, 0b110),
            PrimaryCheck::NoSource
        );
        let mut s = mk();
        assert_eq!(
            s.check_primary_barring(0, 0b001),
            PrimaryCheck::Kept,
            "a primary that can serve is kept, barred or not"
        );
        let mut s = mk();
        assert_eq!(
            s.check_primary(0b001),
            PrimaryCheck::Switched { from: 0, to: 1 },
            "nothing barred: the lowest"
        );
    }

    #[test]
    fn format_blocks_match_layout() {
        let mut s = Superblock::new([3; 16], &geo(), 3);
        s.start_initial_sync();
        let l = s.layout();
        let mut b = vec![0u8; BLOCK_SIZE];
        assert_eq!(format_block(&s, 0, &mut b), None);
        assert_eq!(format_block(&s, l.total_blocks(), &mut b), None);
        for leg in 0..3 {
            let nr = l.fracture_block(leg, 0);
            assert_eq!(
                format_block(&s, nr, &mut b),
                Some(BlockType::FractureBitmap)
            );
            verify(&b, BlockType::FractureBitmap, nr, Some(&s.uuid)).unwrap();
            let want = if leg == 0 { 0 } else { s.nr_regions };
            assert_eq!(count_ones(payload(&b)), want);
            assert!(padding_clear(payload(&b), 0, s.nr_regions));
        }
        let nr = l.intent_block(0);
        assert_eq!(format_block(&s, nr, &mut b), Some(BlockType::IntentBitmap));
        verify(&b, BlockType::IntentBitmap, nr, Some(&s.uuid)).unwrap();
        assert_eq!(count_ones(payload(&b)), 0);
    }

    #[test]
    fn layout() {
        let l = Layout::new(2, 1);
        assert_eq!(l.bitmap_blocks(), 1);
        assert_eq!(l.fracture_block(0, 0), 1);
        assert_eq!(l.fracture_block(1, 0), 2);
        assert_eq!(l.intent_block(0), 3);
        assert_eq!(l.total_blocks(), 4);
        assert_eq!(l.min_sectors(), 32);
        let l = Layout::new(3, BITS_PER_BLOCK + 1);
        assert_eq!(l.bitmap_blocks(), 2);
        assert_eq!(l.fracture_block(2, 1), 6);
        assert_eq!(l.intent_block(1), 8);
        assert_eq!(l.total_blocks(), 9);
        assert_eq!(bit_position(BITS_PER_BLOCK), (1, 0));
        assert_eq!(
            bit_position(BITS_PER_BLOCK - 1),
            (0, BITS_PER_BLOCK as usize - 1)
        );
    }

    #[test]
    fn superblock_round_trip() {
        let s = sb();
        let mut b = vec![0u8; BLOCK_SIZE];
        s.encode(&mut b);
        assert_eq!(Superblock::decode(&b), Ok(s));
        assert_eq!(s.check_table(&geo(), 3), Ok(()));
        assert_eq!(
            s.check_table(&Geometry::new(1 << 20, 2048).unwrap(), 3),
            Err(Mismatch::RegionSize {
                disk: 1024,
                table: 2048
            })
        );
        assert_eq!(
            s.check_table(&geo(), 2),
            Err(Mismatch::NrLegs { disk: 3, table: 2 })
        );
        assert_eq!(
            s.check_table(&Geometry::new(1 << 21, 1024).unwrap(), 3),
            Err(Mismatch::Length {
                disk: 1 << 20,
                table: 1 << 21
            })
        );
    }

    #[test]
    fn initial_sync_marks_secondaries() {
        let mut s = Superblock::new([1; 16], &geo(), 3);
        s.start_initial_sync();
        assert_eq!(s.leg(0).state, LegState::InSync);
        assert_eq!(s.leg(0).generation, 1);
        for l in 1..3 {
            assert_eq!(s.leg(l).state, LegState::Recovering);
            assert_eq!(s.leg(l).generation, 0);
        }
        let mut b = vec![0u8; BLOCK_SIZE];
        s.encode(&mut b);
        assert_eq!(Superblock::decode(&b), Ok(s));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let mut b = vec![0u8; BLOCK_SIZE];
        sb().encode(&mut b);
        for i in (0..BLOCK_SIZE * 8).step_by(7) {
            let mut c = b.clone();
            c[i / 8] ^= 1 << (i % 8);
            assert!(
                Superblock::decode(&c).is_err(),
                "flip of bit {i} not detected"
            );
        }
    }

    #[test]
    fn refusals() {
        let mut b = vec![0u8; BLOCK_SIZE];
        assert_eq!(Superblock::decode(&b), Err(FormatError::BadMagic));
        assert_eq!(
            Superblock::decode(&b[..100]),
            Err(FormatError::BlockSize(100))
        );
        sb().encode(&mut b);
        let mut c = b.clone();
        c[200] ^= 1;
        assert_eq!(
            Superblock::decode(&c),
            Err(FormatError::Checksum {
                kind: BlockType::Superblock,
                block: 0
            })
        );
        // Valid checksum over insane contents: each field is still checked.
        let reseal = |f: &dyn Fn(&mut [u8])| {
            let mut c = b.clone();
            f(&mut c);
            seal(&mut c, BlockType::Superblock, 0, &[7; 16]);
            Superblock::decode(&c).unwrap_err().to_string()
        };
        assert!(reseal(&|c| put_u32(c, SB_VERSION, 2)).contains("version 2"));
        assert!(reseal(&|c| put_u64(c, SB_REGION, 1000)).contains("invalid region size"));
        assert!(reseal(&|c| put_u64(c, SB_NR_REGIONS, u64::MAX)).contains("region count"));
        assert!(reseal(&|c| put_u32(c, SB_NR_LEGS, 10)).contains("number of legs"));
        assert!(reseal(&|c| put_u32(c, SB_NR_LEGS, 0)).contains("number of legs"));
        assert!(reseal(&|c| put_u32(c, SB_PRIMARY, 3)).contains("primary leg"));
        assert!(reseal(&|c| put_u32(c, SB_BITMAP_BLOCKS, 1000)).contains("bitmap size"));
        assert!(reseal(&|c| c[SB_LEGS + 16] = 9).contains("unknown state 9"));
        assert!(reseal(&|c| c[SB_LEGS + 1] = 2).contains("unknown leg record flags"));
        assert!(reseal(&|c| c[SB_LEGS + 7] = 1).contains("unknown leg record flags"));
        assert!(reseal(&|c| put_u64(c, SB_LEGS + 8, 99)).contains("above the event count"));
        assert!(reseal(&|c| put_u64(c, SB_EVENT, MAX_COUNT + 1)).contains("count out of range"));
        assert!(reseal(&|c| put_u64(c, SB_COMMIT, u64::MAX)).contains("count out of range"));
        assert!(reseal(&|c| put_u64(c, SB_TARGET, 0)).contains("region count"));
        assert!(reseal(&|c| {
            put_u64(c, SB_TARGET, 0);
            put_u64(c, SB_NR_REGIONS, 0)
        })
        .contains("zero-length"));
    }

    #[test]
    fn bitmap_blocks_verify() {
        let mut b = vec![0u8; BLOCK_SIZE];
        set_bit(payload_mut(&mut b), 5);
        seal(&mut b, BlockType::FractureBitmap, 3, &[1; 16]);
        assert_eq!(
            verify(&b, BlockType::FractureBitmap, 3, Some(&[1; 16])),
            Ok(())
        );
        assert!(matches!(
            verify(&b, BlockType::FractureBitmap, 4, Some(&[1; 16])),
            Err(FormatError::WrongLocation { found: 3, .. })
        ));
        assert!(matches!(
            verify(&b, BlockType::FractureBitmap, 3, Some(&[2; 16])),
            Err(FormatError::WrongUuid { .. })
        ));
        assert!(matches!(
            verify(&b, BlockType::IntentBitmap, 3, Some(&[1; 16])),
            Err(FormatError::WrongType { found: 2, .. })
        ));
        b[100] ^= 0x10;
        assert!(matches!(
            verify(&b, BlockType::FractureBitmap, 3, Some(&[1; 16])),
            Err(FormatError::Checksum { .. })
        ));
    }

    /// Set, clear, test and count agree with a model (a plain bool array).
    #[test]
    fn bit_ops_match_model() {
        let mut p = vec![0u8; BLOCK_SIZE - HEADER_SIZE];
        let mut model = vec![false; BITS_PER_BLOCK as usize];
        let mut x = 0x1234_5678_9abc_def1u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bit = (x % BITS_PER_BLOCK) as usize;
            if x & (1 << 40) != 0 {
                assert_eq!(set_bit(&mut p, bit), !model[bit]);
                model[bit] = true;
            } else {
                assert_eq!(clear_bit(&mut p, bit), model[bit]);
                model[bit] = false;
            }
            assert_eq!(test_bit(&p, bit), model[bit]);
        }
        assert_eq!(count_ones(&p), model.iter().filter(|&&b| b).count() as u64);
    }

    #[test]
    fn padding_bits_are_checked() {
        let mut p = vec![0u8; BLOCK_SIZE - HEADER_SIZE];
        fill(&mut p, 0, 13);
        assert!(padding_clear(&p, 0, 13));
        assert!(!padding_clear(&p, 0, 12));
        set_bit(&mut p, 500);
        assert!(!padding_clear(&p, 0, 13));
        assert!(padding_clear(&p, 0, 501));
        // A block wholly past the end must be all clear.
        assert!(!padding_clear(&p, 1, BITS_PER_BLOCK));
        assert!(padding_clear(&vec![0u8; p.len()], 7, 5));
    }

    #[test]
    fn fill_stops_at_the_last_region() {
        let mut p = vec![0u8; BLOCK_SIZE - HEADER_SIZE];
        fill(&mut p, 0, 13);
        assert_eq!(count_ones(&p), 13);
        assert!(test_bit(&p, 12) && !test_bit(&p, 13));
        fill(&mut p, 1, BITS_PER_BLOCK + 100);
        assert_eq!(count_ones(&p), 100);
        fill(&mut p, 0, u64::MAX);
        assert_eq!(count_ones(&p), BITS_PER_BLOCK);
        fill(&mut p, 5, 10);
        assert_eq!(count_ones(&p), 0);
    }

    /// `next_set_bit` finds what a linear scan of `test_bit` finds, from
    /// every start, on sparse and dense random payloads.
    #[test]
    fn next_set_bit_matches_scan() {
        let len = BLOCK_SIZE - HEADER_SIZE;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for density in [0u64, 1, 20, 900, 10_000] {
            let mut p = vec![0u8; len];
            for _ in 0..density {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                set_bit(&mut p, (x % (len as u64 * 8)) as usize);
            }
            let mut expect = None;
            for from in (0..len * 8 + 9).rev() {
                if from < len * 8 && test_bit(&p, from) {
                    expect = Some(from);
                }
                assert_eq!(next_set_bit(&p, from), expect, "from {from}");
            }
        }
    }
}
