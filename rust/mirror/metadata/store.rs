// SPDX-License-Identifier: GPL-2.0

//! The metadata device itself: opening (an all-zero one is formatted by
//! `format.rs`), loading and checking it into memory, and committing what
//! changed. With `format.rs`, the only place that reads or writes the
//! metadata device.

use super::COPY_SLOTS;
use super::{CopySlot, MemBlock, MetaState, MirrorState, Stats, NO_REGION};
use crate::dm::device::{Dev, DevT};
use crate::dm::held::BioStack;
use crate::dm::io::{random_bytes, Block, IoClient, BLOCK_BYTES};
use crate::dm::kvec;
use crate::dm::target::{CtrError, EventRaiser};
use crate::format::{
    count_ones, is_zero, padding_clear, payload, seal, verify, BlockType, Layout, LegState,
    PrimaryCheck, Superblock, FLAG_CLEAN, SECTORS_PER_BLOCK,
};
use crate::intent::{words_for, IntentTracker, WRITE_BUCKETS};
use crate::memory::LOAD_CHUNK_BYTES;
use crate::mirror::legmask::{legs_of, mask_of};
use crate::region::Geometry;
use crate::table::MAX_LEGS;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::c_str;
use kernel::new_mutex;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::Arc;

/// Why metadata could not be loaded: a reason for dm core and an errno.
/// The details are already in the kernel log.
pub(crate) struct LoadError {
    pub(crate) reason: &'static CStr,
    pub(crate) errno: Error,
}

impl From<LoadError> for CtrError {
    fn from(e: LoadError) -> Self {
        CtrError {
            reason: e.reason,
            errno: e.errno,
        }
    }
}

/// What a commit did.
pub(crate) struct Committed {
    /// The epoch it made durable, if it succeeded.
    pub(crate) seq: Option<u64>,
}

fn ctr_err(reason: &'static CStr) -> CtrError {
    CtrError::inval(reason)
}

impl MirrorState {
    /// Opens the metadata on `dev` for a table with `nr_legs` legs: formats
    /// an all-zero device (every secondary to be copied in full, unless
    /// `nosync`), otherwise loads and checks it against the table.
    pub(crate) fn open(
        dev: Dev,
        geometry: Geometry,
        nr_legs: u32,
        nosync: bool,
        no_intent: bool,
        leg_devts: KVec<DevT>,
        events: EventRaiser,
    ) -> Result<Arc<Self>, CtrError> {
        let layout = Layout::new(nr_legs, geometry.nr_regions());
        if dev.nr_sectors() < layout.min_sectors() {
            crate::dm_err!(
                "metadata device {} has {} sectors; this table needs at least {} (superblock, {} fracture bitmaps and the intent log of {} blocks each)",
                dev.name(),
                dev.nr_sectors(),
                layout.min_sectors(),
                nr_legs,
                layout.bitmap_blocks()
            );
            return Err(ctr_err(c_str!("metadata device too small")));
        }
        let io = IoClient::new()?;
        // Every fracture bitmap, then the intent bitmap: arrays sized by the
        // number of regions, from kvmalloc (the table's memory need was
        // checked against the limit before the constructor got here).
        let nblocks = (u64::from(nr_legs + 1) * layout.bitmap_blocks()) as usize;
        let no_memory = |what: &str, bytes: u64| {
            crate::dm_err!(
                "cannot allocate {} KiB for {} ({} regions)",
                bytes >> 10,
                what,
                geometry.nr_regions()
            );
            CtrError {
                reason: c_str!("out of memory for the bitmaps"),
                errno: ENOMEM,
            }
        };
        let blocks = kvec::zeroed::<MemBlock>(nblocks)
            .map_err(|_| no_memory("the bitmaps", nblocks as u64 * BLOCK_BYTES as u64))?;
        let block_seq = kvec::zeroed::<u64>(nblocks)
            .map_err(|_| no_memory("the bitmap epochs", nblocks as u64 * 8))?;
        let dirty = kvec::zeroed::<bool>(nblocks)
            .map_err(|_| no_memory("the bitmap flags", nblocks as u64))?;
        let load_buf = Block::with_len(load_chunk(&layout))?;
        let mut buf = Block::new()?;
        io.read(&dev, 0, &mut buf).map_err(|e| {
            crate::dm_err!("cannot read the superblock of {} ({:?})", dev.name(), e);
            CtrError {
                reason: c_str!("metadata read error"),
                errno: e,
            }
        })?;
        let mut uuid = [0u8; 16];
        random_bytes(&mut uuid);
        let mut sb = Superblock::new(uuid, &geometry, nr_legs);
        let formatted = is_zero(buf.bytes());
        if formatted {
            if !nosync {
                sb.start_initial_sync();
            }
            let ms = super::format::format(&io, &dev, &layout, &sb, &mut buf)?;
            crate::dm_info!(
                "formatted metadata device {} in {}.{:03} s: {} regions of {} sectors, {} legs{}",
                dev.name(),
                ms / 1000,
                ms % 1000,
                geometry.nr_regions(),
                geometry.region_sectors(),
                nr_legs,
                if nosync {
                    ", all in sync (nosync)"
                } else {
                    "; every secondary will be copied from the primary"
                }
            );
        }
        let state = MetaState {
            sb,
            sb_seq: 0,
            blocks,
            block_seq,
            dirty,
            counts: [0; MAX_LEGS],
            intent_count: 0,
            open_seq: 1,
            copying: [CopySlot::default(); COPY_SLOTS],
            recovered: 0,
        };
        let words = words_for(geometry.nr_regions());
        let bitmap = || {
            kvec::zeroed::<AtomicU64>(words)
                .map_err(|_| no_memory("the write-intent tracker", words as u64 * 8))
        };
        let buckets = kvec::zeroed::<AtomicU32>(WRITE_BUCKETS)?;
        let intent = IntentTracker::new(
            bitmap()?,
            bitmap()?,
            bitmap()?,
            buckets,
            geometry.nr_regions(),
        )
        .map_err(|_| EINVAL)?;
        let discarded = bitmap()?;
        let mirror = Arc::pin_init(
            pin_init!(Self {
                meta <- new_spinlock!(state, "fracture_meta"),
                commit <- new_mutex!(buf, "fracture_commit"),
                load_buf <- new_mutex!(load_buf, "fracture_load"),
                committed: AtomicU64::new(0),
                logged: AtomicU32::new(0),
                recovering: AtomicU32::new(0),
                readable: AtomicU32::new(0),
                intent,
                no_intent,
                settle_lock <- new_mutex!((), "fracture_settle"),
                active: AtomicBool::new(false),
                host_writes: AtomicU64::new(0),
                stats: Stats::default(),
                primary: AtomicU32::new(0),
                primary_failed: AtomicBool::new(false),
                no_source: AtomicBool::new(false),
                meta_failed: AtomicBool::new(false),
                // Nothing is written before the first resume, which
                // re-reads the metadata and kicks the thread.
                kick: AtomicBool::new(false),
                noted: AtomicU32::new(0),
                pending_failures: AtomicU32::new(0),
                deferred: BioStack::default(),
                failed_reads: BioStack::default(),
                verify_region: AtomicU64::new(NO_REGION),
                verify_raced: AtomicBool::new(false),
                discarded,
                leg_devts,
                layout,
                geometry,
                nr_legs,
                dev,
                io,
                events,
            }),
            GFP_KERNEL,
        )?;
        if let Err(e) = mirror.load(false) {
            if formatted && e.errno == EINVAL {
                // What was just written read back wrong: not damaged
                // metadata, a device that loses writes.
                crate::dm_err!(
                    "metadata device {} did not keep what was written: the blocks just formatted read back different (see above)",
                    mirror.dev.name()
                );
            }
            return Err(e.into());
        }
        Ok(mirror)
    }

    /// Reads and checks the superblock and every bitmap block into memory,
    /// replacing what is there: at construction, and at the first resume (a
    /// table this one replaces may have committed changes after this one's
    /// constructor read it; no I/O runs on this table yet, and the old
    /// table is suspended). Messages go to the kernel log. Only when
    /// `activate` (the first resume) are regions left in the intent bitmap
    /// by a crash handed to the secondaries: at construction an older table
    /// may still be running and marking.
    pub(crate) fn load(&self, activate: bool) -> Result<(), LoadError> {
        let name = self.dev.name();
        let mut buf = self.commit.lock();
        self.io.read(&self.dev, 0, &mut buf).map_err(|e| {
            crate::dm_err!("cannot read the superblock of {} ({:?})", name, e);
            LoadError {
                reason: c_str!("metadata read error"),
                errno: e,
            }
        })?;
        let invalid = LoadError {
            reason: c_str!("invalid metadata"),
            errno: EINVAL,
        };
        let mut sb = match Superblock::decode(buf.bytes()) {
            Ok(sb) => sb,
            Err(e) => {
                crate::dm_err!(
                    "metadata device {}: {}; refusing it (never reformatted)",
                    name,
                    e
                );
                return Err(invalid);
            }
        };
        if let Err(e) = sb.check_table(&self.geometry, self.nr_legs) {
            crate::dm_err!("metadata device {}: {}", name, e);
            return Err(LoadError {
                reason: c_str!("metadata does not match the table"),
                errno: EINVAL,
            });
        }
        let mut counts = [0u64; MAX_LEGS];
        let mut chunk = self.load_buf.lock();
        for leg in 0..self.nr_legs {
            counts[leg as usize] = self.load_bitmap(leg, &sb.uuid, &mut chunk)?;
        }
        // The intent bitmap only at activation: at construction an older
        // table may still be rewriting it (a torn read would refuse a good
        // device) and its bits are not ours yet.
        let mut intent_count = if activate {
            self.load_bitmap(self.nr_legs, &sb.uuid, &mut chunk)?
        } else {
            0
        };
        drop(chunk);
        let mut st = self.meta.lock();
        if !activate {
            self.clear_bitmap(&mut st, self.nr_legs, false);
        }
        if activate && sb.flags & FLAG_CLEAN == 0 {
            // A table without an intent log (`nointent`) did not shut down
            // cleanly: any region may have had writes in flight. A full
            // intent bitmap says so, and is handed to the legs below.
            self.fill_bitmap(&mut st, self.nr_legs);
            intent_count = self.geometry.nr_regions();
            crate::dm_warn!(
                "metadata device {}: not shut down cleanly and no write-intent log was kept (nointent): every region is copied from the primary to the secondaries",
                name
            );
        }
        if activate && sb.flags & FLAG_CLEAN == 0 {
            // Handled; a `nointent` table clears it again when it resumes.
            sb.flags |= FLAG_CLEAN;
            st.sb_seq = st.open_seq;
        }
        st.intent_count = intent_count;
        let mut dirty = mask_of((0..self.nr_legs).filter(|&l| counts[l as usize] != 0));
        let p = sb.primary_leg;
        let rec = *sb.leg(p);
        // Never chosen to take over (see `late_legs`).
        let late = self.late_legs();
        if dirty & (1 << p) != 0
            && rec.state == LegState::InSync
            && rec.generation == sb.event
            && sb.source_candidate(dirty | late | 1 << p).is_none()
        {
            // A failover's bitmap writes reached the disk, its superblock
            // did not, and no other leg can serve. The primary's bits are
            // writes it missed that were never acknowledged (they waited
            // for that commit): it holds every acknowledged write. It stays
            // the primary; the other legs copy those regions from it.
            st.counts = counts;
            for leg in legs_of(self.all_legs() & !(1 << p)) {
                self.or_bitmap_into(&mut st, p, leg);
            }
            self.clear_bitmap(&mut st, p, true);
            st.counts[p as usize] = 0;
            counts = st.counts;
            dirty = mask_of((0..self.nr_legs).filter(|&l| counts[l as usize] != 0));
            st.sb_seq = st.open_seq;
            if activate {
                crate::dm_warn!(
                    "metadata device {}: primary leg {} has regions logged but no other leg can serve; it stays the primary and those regions are copied to the other legs",
                    name,
                    p
                );
            }
        }
        // Bits win over the state: a crash between writing bits and the
        // superblock must not lose them. Such a leg leaves the in-sync set.
        for leg in legs_of(dirty) {
            if sb.leg(leg).state == LegState::InSync {
                sb.leave_sync(leg);
                let rec = sb.leg_mut(leg);
                rec.state = LegState::Fractured;
                rec.split = false;
                st.sb_seq = st.open_seq;
            }
        }
        let no_source = match sb.check_primary_barring(dirty, late) {
            PrimaryCheck::Kept => false,
            PrimaryCheck::Switched { from, to } => {
                if activate {
                    crate::dm_warn!(
                        "metadata device {}: primary leg {} missed writes (a failover was not committed in full); leg {} is the primary",
                        name,
                        from,
                        to
                    );
                }
                st.sb_seq = st.open_seq;
                false
            }
            PrimaryCheck::NoSource => {
                crate::dm_err!(
                    "metadata device {}: no leg is in sync at generation {} (the primary, leg {}, missed writes and no leg can take over); host I/O fails",
                    name,
                    sb.event,
                    sb.primary_leg
                );
                true
            }
        };
        if activate && intent_count != 0 {
            // Not shut down cleanly: writes to these regions may have
            // reached some legs and not others. The primary is the source:
            // every secondary gets them in its fracture bitmap (an in-sync
            // one starts recovering), then the intent bitmap is emptied,
            // in the same commit and after them (see `commit`).
            self.intent_to_legs(&mut st, &mut sb, &mut counts);
            crate::dm_warn!(
                "metadata device {}: not shut down cleanly; {} regions that may have had writes in flight are copied from the primary to the secondaries",
                name,
                intent_count
            );
        }
        self.intent.reset();
        let (mut logged, mut recovering, mut readable) = (0, 0, 0);
        for leg in 0..self.nr_legs {
            match sb.leg(leg).state {
                // One recorded in sync at an older generation (not written
                // by this code) may miss writes: no read until recovered.
                LegState::InSync if sb.leg(leg).generation != sb.event => {}
                LegState::InSync => readable |= 1 << leg,
                LegState::Recovering => recovering |= 1 << leg,
                LegState::Fractured | LegState::Failed => logged |= 1 << leg,
            }
        }
        st.sb = sb;
        st.counts = counts;
        st.copying = [CopySlot::default(); COPY_SLOTS];
        st.recovered = 0;
        self.logged.store(logged, Ordering::SeqCst);
        self.recovering.store(recovering, Ordering::SeqCst);
        self.readable.store(readable, Ordering::SeqCst);
        self.primary.store(st.sb.primary_leg, Ordering::SeqCst);
        // With no source the primary shows `D`.
        self.primary_failed.store(no_source, Ordering::SeqCst);
        self.no_source.store(no_source, Ordering::SeqCst);
        Ok(())
    }

    /// Block number on the metadata device, and block type, of block `idx`
    /// of bitmap `which` (a leg, or `nr_legs` for the intent bitmap).
    fn disk_block(&self, which: u32, idx: u64) -> (u64, BlockType) {
        if which == self.nr_legs {
            (self.layout.intent_block(idx), BlockType::IntentBitmap)
        } else {
            (
                self.layout.fracture_block(which, idx),
                BlockType::FractureBitmap,
            )
        }
    }

    /// Reads and checks bitmap `which` (a leg's fracture bitmap, or
    /// `nr_legs` for the intent bitmap) through `chunk`, as many blocks per
    /// read as it holds (a bitmap's blocks are contiguous on disk), into
    /// its place in memory, clean. Returns its set bits.
    fn load_bitmap(
        &self,
        which: u32,
        uuid: &[u8; 16],
        chunk: &mut Block,
    ) -> Result<u64, LoadError> {
        let per_leg = self.layout.bitmap_blocks();
        let per_chunk = (chunk.bytes().len() / BLOCK_BYTES).max(1) as u64;
        let mut count = 0;
        let mut idx = 0;
        while idx < per_leg {
            let n = per_chunk.min(per_leg - idx);
            let (first, kind) = self.disk_block(which, idx);
            let len = n as usize * BLOCK_BYTES;
            if self
                .io
                .read_part(&self.dev, first * SECTORS_PER_BLOCK, chunk, len)
                .is_ok()
            {
                for (i, block) in chunk
                    .bytes()
                    .chunks_exact(BLOCK_BYTES)
                    .take(n as usize)
                    .enumerate()
                {
                    let i = i as u64;
                    count +=
                        self.load_bitmap_block(which, idx + i, first + i, kind, uuid, block)?;
                }
            } else {
                // Block by block, to name the one that cannot be read.
                for i in 0..n {
                    let nr = first + i;
                    self.io
                        .read_part(&self.dev, nr * SECTORS_PER_BLOCK, chunk, BLOCK_BYTES)
                        .map_err(|e| {
                            crate::dm_err!(
                                "cannot read metadata block {} of {} ({:?})",
                                nr,
                                self.dev.name(),
                                e
                            );
                            LoadError {
                                reason: c_str!("metadata read error"),
                                errno: e,
                            }
                        })?;
                    count += self.load_bitmap_block(
                        which,
                        idx + i,
                        nr,
                        kind,
                        uuid,
                        &chunk.bytes()[..BLOCK_BYTES],
                    )?;
                }
            }
            idx += n;
        }
        Ok(count)
    }

    /// Checks `block`, block `idx` of bitmap `which` read from block `nr`
    /// of type `kind`, and puts it in its place in memory, clean. Returns
    /// its set bits.
    fn load_bitmap_block(
        &self,
        which: u32,
        idx: u64,
        nr: u64,
        kind: BlockType,
        uuid: &[u8; 16],
        block: &[u8],
    ) -> Result<u64, LoadError> {
        verify(block, kind, nr, Some(uuid)).map_err(|e| {
            crate::dm_err!(
                "metadata device {}: {}; refusing it (fracturectl repair can rebuild it)",
                self.dev.name(),
                e
            );
            LoadError {
                reason: c_str!("corrupt metadata"),
                errno: EINVAL,
            }
        })?;
        if !padding_clear(payload(block), idx, self.geometry.nr_regions()) {
            crate::dm_err!(
                "metadata device {}: {} block {} has bits set past the last region; refusing it (fracturectl repair can rebuild it)",
                self.dev.name(),
                kind.name(),
                nr
            );
            return Err(LoadError {
                reason: c_str!("corrupt metadata"),
                errno: EINVAL,
            });
        }
        let b = self.block_index(which, idx);
        let mut st = self.meta.lock();
        st.blocks[b].copy_from_slice(block);
        st.dirty[b] = false;
        st.block_seq[b] = 0;
        Ok(count_ones(payload(block)))
    }

    /// At activation after a crash: the intent bits go into every
    /// secondary's fracture bitmap (in-sync legs start recovering), and
    /// the intent bitmap is emptied. `sb` and `counts` are the ones being
    /// loaded.
    fn intent_to_legs(
        &self,
        st: &mut MetaState,
        sb: &mut Superblock,
        counts: &mut [u64; MAX_LEGS],
    ) {
        st.counts = *counts;
        let p = sb.primary_leg;
        for leg in legs_of(self.all_legs() & !(1 << p)) {
            self.or_intent_into(st, leg);
            // Like a fracture: the event count moves on, the primary takes
            // it, and the recovering leg's older generation marks it as no
            // copy source.
            sb.leave_sync(leg);
            let rec = sb.leg_mut(leg);
            if rec.state == LegState::InSync {
                rec.state = LegState::Recovering;
                rec.split = false;
            }
        }
        *counts = st.counts;
        self.clear_bitmap(st, self.nr_legs, true);
        st.intent_count = 0;
        st.sb_seq = st.open_seq;
    }

    /// Sets or clears the superblock's clean flag and commits. A `nointent`
    /// table clears it before any write is sent after a resume, and sets
    /// it once suspended with the legs flushed: found clear at activation,
    /// every region is resynced. Returns whether the commit worked. Sleeps.
    pub(crate) fn set_clean(&self, clean: bool) -> bool {
        {
            let mut st = self.meta.lock();
            let flags = if clean {
                st.sb.flags | FLAG_CLEAN
            } else {
                st.sb.flags & !FLAG_CLEAN
            };
            if flags != st.sb.flags {
                st.sb.flags = flags;
                st.sb_seq = st.open_seq;
            }
        }
        self.commit().seq.is_some()
    }

    /// Makes every change so far durable. Sleeps; serialised with other
    /// commits. On a write error the metadata is marked failed: nothing
    /// already durable is lost, nothing new becomes durable.
    pub(crate) fn commit(&self) -> Committed {
        let mut buf = self.commit.lock();
        self.commit_locked(&mut buf)
    }

    /// [`MirrorState::commit`] with the commit lock held (`buf` is its block).
    pub(super) fn commit_locked(&self, buf: &mut Block) -> Committed {
        let (seq, uuid) = {
            let mut st = self.meta.lock();
            let seq = st.open_seq;
            st.open_seq += 1;
            (seq, st.sb.uuid)
        };
        if self.meta_failed.load(Ordering::Acquire) {
            return Committed { seq: None };
        }
        let per_leg = self.layout.bitmap_blocks();
        // The fracture bitmaps before the intent bitmap: bits moved from the
        // intent bitmap into a leg's (at activation) are on disk before
        // they leave it.
        let nblocks = (u64::from(self.nr_legs + 1) * per_leg) as usize;
        let mut result = Ok(());
        for b in 0..nblocks {
            {
                let mut st = self.meta.lock();
                if !st.dirty[b] {
                    continue;
                }
                st.dirty[b] = false;
                buf.bytes_mut().copy_from_slice(&st.blocks[b]);
            }
            let (nr, kind) = self.disk_block((b as u64 / per_leg) as u32, b as u64 % per_leg);
            seal(buf.bytes_mut(), kind, nr, &uuid);
            result = self.io.write(&self.dev, nr * SECTORS_PER_BLOCK, buf, true);
            self.stats.metadata_writes.fetch_add(1, Ordering::Relaxed);
            if result.is_err() {
                self.meta.lock().dirty[b] = true;
                break;
            }
        }
        if result.is_ok() {
            let sb = {
                // Any pending change is written, also one made after this
                // epoch closed: the snapshot holds every change so far (a
                // newer state is always fine on disk), and a change made
                // after the snapshot sets `sb_seq` again. Skipping a newer
                // change would leave an older one (e.g. a `fracture`
                // message that waits for this commit) off the disk.
                let mut st = self.meta.lock();
                if st.sb_seq != 0 {
                    st.sb_seq = 0;
                    st.sb.commit += 1;
                    Some(st.sb)
                } else {
                    None
                }
            };
            if let Some(sb) = sb {
                sb.encode(buf.bytes_mut());
                result = self.io.write(&self.dev, 0, buf, true);
                self.stats.metadata_writes.fetch_add(1, Ordering::Relaxed);
                if result.is_err() {
                    let mut st = self.meta.lock();
                    st.sb_seq = st.sb_seq.max(1);
                }
            }
        }
        match result {
            Ok(()) => {
                self.committed.store(seq, Ordering::Release);
                Committed { seq: Some(seq) }
            }
            Err(e) => {
                if !self.meta_failed.swap(true, Ordering::AcqRel) {
                    crate::dm_err!(
                        "metadata device {} failed a write ({:?}): writes needing new log bits now fail",
                        self.dev.name(),
                        e
                    );
                    // Whichever thread's commit found it (metadata,
                    // recovery, settle, suspend): `dmsetup wait` returns.
                    self.raise_event();
                }
                Committed { seq: None }
            }
        }
    }
}

/// Bytes written or read per metadata request when formatting or loading:
/// a bitmap's blocks are contiguous on disk, so they go in large requests
/// rather than 4 KiB at a time.
pub(super) const CHUNK_BYTES: usize = LOAD_CHUNK_BYTES as usize;

/// The loading buffer for `layout`: one bitmap at most, up to
/// [`CHUNK_BYTES`].
fn load_chunk(layout: &Layout) -> usize {
    let bitmap = layout.bitmap_blocks().saturating_mul(BLOCK_BYTES as u64);
    bitmap.min(CHUNK_BYTES as u64) as usize
}
