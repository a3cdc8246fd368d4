// SPDX-License-Identifier: GPL-2.0

//! The metadata device at run time: the superblock and the per-leg fracture
//! bitmaps, kept in memory and committed to disk in batches.
//!
//! Every change (a bit set, a leg state change) is made in memory under a
//! spinlock and stamped with the *epoch* (`open_seq`) it belongs to. A commit
//! closes the epoch, writes the changed blocks (bitmaps first, each with
//! REQ_FUA, then the superblock) and publishes the epoch as `committed`. A
//! host write that needed a change completes only once `committed` reaches
//! the change's epoch; a write whose bits are already durable does not wait
//! and costs no metadata I/O. The format itself lives in the shared crate
//! (`crate::format`).

use super::Fracture;
use crate::dm::device::Dev;
use crate::dm::io::{random_bytes, Block, IoClient};
use crate::dm::target::{BioStack, CtrError, EventRaiser};
use crate::format::{
    bit_position, count_ones, fill, is_zero, payload, payload_mut, seal, set_bit, verify,
    BlockType, FormatError, Layout, LegState, Superblock, SECTORS_PER_BLOCK,
};
use crate::region::Geometry;
use crate::table::MAX_LEGS;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::c_str;
use kernel::new_mutex;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex, SpinLock};

/// In-memory metadata, under [`Shared::state`].
pub(crate) struct MetaState {
    pub(crate) sb: Superblock,
    /// Epoch of the last superblock change; 0 = nothing to write.
    sb_seq: u64,
    /// Fracture bitmap blocks, leg-major, `layout.bitmap_blocks()` per leg.
    blocks: KVec<Block>,
    /// Epoch of each block's last change.
    block_seq: KVec<u64>,
    /// Blocks changed since they were last written.
    dirty: KVec<bool>,
    /// Set bits per leg.
    pub(crate) counts: [u64; MAX_LEGS],
    /// The epoch changes are stamped with now.
    open_seq: u64,
}

/// State shared by the target, its metadata thread and message handlers.
#[pin_data]
pub(crate) struct Shared {
    #[pin]
    pub(crate) state: SpinLock<MetaState>,
    /// Serialises commits; holds the buffer blocks are sealed and written from.
    #[pin]
    commit: Mutex<Block>,
    /// Last epoch durably on disk.
    committed: AtomicU64,
    /// Bit `i`: leg `i` is not in sync (gets no writes, its writes are logged).
    pub(crate) out_of_sync: AtomicU32,
    /// The primary failed a write (health `D`; failover is a later stage).
    pub(crate) primary_failed: AtomicBool,
    /// The metadata device failed a write: nothing new can be logged.
    pub(crate) meta_failed: AtomicBool,
    /// Ask the thread for a commit and an event.
    kick: AtomicBool,
    /// Legs that failed a flush or discard, for the thread to fracture.
    noted: AtomicU32,
    /// Bios waiting for the thread: a leg failed or their bits must commit.
    pub(crate) deferred: BioStack<Fracture>,
    layout: Layout,
    geometry: Geometry,
    nr_legs: u32,
    dev: Dev,
    io: IoClient,
    events: EventRaiser,
}

/// Why writes cannot be logged.
pub(crate) struct MetadataFailed;

/// What a commit did.
pub(crate) struct Committed {
    /// The epoch it made durable, if it succeeded.
    pub(crate) seq: Option<u64>,
}

fn ctr_err(reason: &'static CStr) -> CtrError {
    CtrError::inval(reason)
}

impl Shared {
    /// Opens the metadata on `dev` for a table with `nr_legs` legs: formats
    /// an all-zero device, otherwise loads and checks it against the table.
    pub(crate) fn open(
        dev: Dev,
        geometry: Geometry,
        nr_legs: u32,
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
        let nblocks = (u64::from(nr_legs) * layout.bitmap_blocks()) as usize;
        let mut blocks = KVec::with_capacity(nblocks, GFP_KERNEL)?;
        for _ in 0..nblocks {
            blocks.push(Block::new()?, GFP_KERNEL)?;
        }
        let mut buf = Block::new()?;
        io.read(&dev, 0, &mut buf).map_err(|e| {
            crate::dm_err!("cannot read the superblock of {} ({:?})", dev.name(), e);
            CtrError {
                reason: c_str!("metadata read error"),
                errno: e,
            }
        })?;

        let mut counts = [0u64; MAX_LEGS];
        let mut sb_seq = 0;
        let sb = if is_zero(buf.bytes()) {
            let mut uuid = [0u8; 16];
            random_bytes(&mut uuid);
            let sb = Superblock::new(uuid, &geometry, nr_legs);
            format(&io, &dev, &layout, &sb, &mut buf)?;
            crate::dm_info!(
                "formatted metadata device {}: {} regions of {} sectors, {} legs",
                dev.name(),
                geometry.nr_regions(),
                geometry.region_sectors(),
                nr_legs
            );
            sb
        } else {
            let mut sb = Superblock::decode(buf.bytes()).map_err(|e| {
                crate::dm_err!(
                    "metadata device {}: {}; refusing it (never reformatted)",
                    dev.name(),
                    e
                );
                ctr_err(c_str!("invalid metadata"))
            })?;
            sb.check_table(&geometry, nr_legs).map_err(|e| {
                crate::dm_err!("metadata device {}: {}", dev.name(), e);
                ctr_err(c_str!("metadata does not match the table"))
            })?;
            for leg in 0..nr_legs {
                for idx in 0..layout.bitmap_blocks() {
                    let nr = layout.fracture_block(leg, idx);
                    let b = &mut blocks[(u64::from(leg) * layout.bitmap_blocks() + idx) as usize];
                    read_verified(&io, &dev, nr, BlockType::FractureBitmap, &sb.uuid, b)?;
                    counts[leg as usize] += count_ones(payload(b.bytes()));
                }
                let rec = sb.leg_mut(leg);
                if rec.state == LegState::InSync && counts[leg as usize] != 0 {
                    // Bits win over the state: a crash between writing bits
                    // and the superblock must not lose them.
                    rec.state = LegState::Fractured;
                    sb_seq = 1;
                }
            }
            for idx in 0..layout.bitmap_blocks() {
                let nr = layout.intent_block(idx);
                read_verified(&io, &dev, nr, BlockType::IntentBitmap, &sb.uuid, &mut buf)?;
            }
            sb
        };

        let mut out_of_sync = 0u32;
        for leg in 0..nr_legs {
            if sb.leg(leg).state != LegState::InSync {
                out_of_sync |= 1 << leg;
            }
        }
        let mut block_seq = KVec::with_capacity(nblocks, GFP_KERNEL)?;
        let mut dirty = KVec::with_capacity(nblocks, GFP_KERNEL)?;
        for _ in 0..nblocks {
            block_seq.push(0, GFP_KERNEL)?;
            dirty.push(false, GFP_KERNEL)?;
        }
        let state = MetaState {
            sb,
            sb_seq,
            blocks,
            block_seq,
            dirty,
            counts,
            open_seq: 1,
        };
        Ok(Arc::pin_init(
            pin_init!(Self {
                state <- new_spinlock!(state, "fracture_meta"),
                commit <- new_mutex!(buf, "fracture_commit"),
                committed: AtomicU64::new(0),
                out_of_sync: AtomicU32::new(out_of_sync),
                primary_failed: AtomicBool::new(false),
                meta_failed: AtomicBool::new(false),
                // Nothing is written before the first resume, which
                // re-reads the metadata and kicks the thread.
                kick: AtomicBool::new(false),
                noted: AtomicU32::new(0),
                deferred: BioStack::default(),
                layout,
                geometry,
                nr_legs,
                dev,
                io,
                events,
            }),
            GFP_KERNEL,
        )?)
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The last durable epoch.
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Asks the thread to commit and raise an event.
    pub(crate) fn kick(&self) {
        self.kick.store(true, Ordering::Release);
    }

    /// Takes a pending kick.
    pub(crate) fn take_kick(&self) -> bool {
        self.kick.swap(false, Ordering::AcqRel)
    }

    /// Whether the thread has something to do.
    pub(crate) fn has_work(&self) -> bool {
        !self.deferred.is_empty()
            || self.kick.load(Ordering::Acquire)
            || self.noted.load(Ordering::Acquire) != 0
    }

    /// Records, from any context, that the secondaries in `legs` failed a
    /// flush or discard; the thread fractures them.
    pub(crate) fn note_failed(&self, legs: u32) {
        self.noted.fetch_or(legs, Ordering::AcqRel);
    }

    /// Fractures the legs recorded by [`Shared::note_failed`]. A failed
    /// flush may have lost any earlier write, so the whole leg is marked
    /// out of sync (the safe direction). Returns whether a leg changed.
    pub(crate) fn fracture_noted(&self) -> bool {
        let legs = self.noted.swap(0, Ordering::AcqRel);
        if legs == 0 {
            return false;
        }
        let per_leg = self.layout.bitmap_blocks();
        let nr_regions = self.geometry.nr_regions();
        let mut st = self.state.lock();
        let mut changed = false;
        for leg in 1..self.nr_legs {
            if legs & (1 << leg) == 0 {
                continue;
            }
            changed |= self.fracture_locked(&mut st, leg);
            for idx in 0..per_leg {
                let b = (u64::from(leg) * per_leg + idx) as usize;
                fill(payload_mut(st.blocks[b].bytes_mut()), idx, nr_regions);
                st.block_seq[b] = st.open_seq;
                st.dirty[b] = true;
            }
            st.counts[leg as usize] = nr_regions;
            crate::dm_warn!("leg {} fractured with every region out of sync", leg);
        }
        changed
    }

    /// Re-reads the metadata, for preresume: a table this one replaces may
    /// have committed changes after this one's constructor read it. No I/O
    /// runs on this table yet, and the old table is suspended.
    pub(crate) fn reload(&self) -> Result {
        let mut buf = self.commit.lock();
        self.io.read(&self.dev, 0, &mut buf)?;
        let mut sb = Superblock::decode(buf.bytes()).map_err(|e| {
            crate::dm_err!(
                "metadata device {} changed under the table: {}",
                self.dev.name(),
                e
            );
            EINVAL
        })?;
        sb.check_table(&self.geometry, self.nr_legs).map_err(|e| {
            crate::dm_err!(
                "metadata device {} changed under the table: {}",
                self.dev.name(),
                e
            );
            EINVAL
        })?;
        let per_leg = self.layout.bitmap_blocks();
        let mut counts = [0u64; MAX_LEGS];
        for leg in 0..self.nr_legs {
            for idx in 0..per_leg {
                let nr = self.layout.fracture_block(leg, idx);
                self.io.read(&self.dev, nr * SECTORS_PER_BLOCK, &mut buf)?;
                verify(buf.bytes(), BlockType::FractureBitmap, nr, Some(&sb.uuid)).map_err(
                    |e| {
                        crate::dm_err!("metadata device {}: {}", self.dev.name(), e);
                        EINVAL
                    },
                )?;
                counts[leg as usize] += count_ones(payload(buf.bytes()));
                let b = (u64::from(leg) * per_leg + idx) as usize;
                let mut st = self.state.lock();
                st.blocks[b].bytes_mut().copy_from_slice(buf.bytes());
                st.dirty[b] = false;
                st.block_seq[b] = 0;
            }
        }
        let mut st = self.state.lock();
        let mut out_of_sync = 0;
        for leg in 0..self.nr_legs {
            let rec = sb.leg_mut(leg);
            if rec.state == LegState::InSync && counts[leg as usize] != 0 {
                rec.state = LegState::Fractured;
                st.sb_seq = st.open_seq;
            }
            if rec.state != LegState::InSync {
                out_of_sync |= 1 << leg;
            }
        }
        st.sb = sb;
        st.counts = counts;
        self.out_of_sync.store(out_of_sync, Ordering::Release);
        Ok(())
    }

    /// The state of leg `leg`.
    pub(crate) fn leg_state(&self, leg: u32) -> LegState {
        self.state.lock().sb.leg(leg).state
    }

    /// Raises a dm event. Process context.
    pub(crate) fn raise_event(&self) {
        self.events.raise();
    }

    /// Sets the bits of sectors `sector..sector + sectors` in the bitmap of
    /// every leg in `legs`; `st` is the locked state. Returns the epoch that
    /// must be durable before a write to those sectors may complete (0 if
    /// the bits are already on disk).
    fn set_bits(&self, st: &mut MetaState, legs: u32, sector: u64, sectors: u64) -> u64 {
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

    /// Logs a host write in the bitmaps of the legs that are out of sync.
    /// Returns the legs it logged for (which must not get the write) and the
    /// epoch to wait for. Fails if something new would need logging but the
    /// metadata device has failed.
    pub(crate) fn log_write(
        &self,
        sector: u64,
        sectors: u64,
    ) -> Result<(u32, u64), MetadataFailed> {
        let mut st = self.state.lock();
        let legs = self.out_of_sync.load(Ordering::Relaxed);
        let need = self.set_bits(&mut st, legs, sector, sectors);
        if need > self.committed() && self.meta_failed.load(Ordering::Relaxed) {
            return Err(MetadataFailed);
        }
        Ok((legs, need))
    }

    /// Fractures leg `leg` (a failed write, or on purpose): it leaves the
    /// in-sync set, the array event count moves on and the legs still in
    /// sync take the new generation. Returns whether the state changed.
    fn fracture_locked(&self, st: &mut MetaState, leg: u32) -> bool {
        if st.sb.leg(leg).state != LegState::InSync {
            return false;
        }
        st.sb.leg_mut(leg).state = LegState::Fractured;
        st.sb.event += 1;
        let event = st.sb.event;
        for l in 0..self.nr_legs {
            if st.sb.leg(l).state == LegState::InSync {
                st.sb.leg_mut(l).generation = event;
            }
        }
        st.sb_seq = st.open_seq;
        self.out_of_sync.fetch_or(1 << leg, Ordering::Release);
        true
    }

    /// A write to the secondaries in `legs` failed: fracture them and log
    /// the write's sectors. Returns the epoch to wait for and whether a leg
    /// changed state.
    pub(crate) fn leg_write_failed(&self, legs: u32, sector: u64, sectors: u64) -> (u64, bool) {
        let mut st = self.state.lock();
        let mut changed = false;
        for leg in 1..self.nr_legs {
            if legs & (1 << leg) != 0 && self.fracture_locked(&mut st, leg) {
                crate::dm_warn!(
                    "leg {} failed a write: fractured, its changes are logged",
                    leg
                );
                changed = true;
            }
        }
        let need = self.set_bits(&mut st, legs, sector, sectors).max(st.sb_seq);
        (need, changed)
    }

    /// Splits in-sync secondary `leg` on purpose. The caller commits.
    pub(crate) fn fracture(&self, leg: u32) -> Result<(), LegState> {
        let mut st = self.state.lock();
        let state = st.sb.leg(leg).state;
        if self.fracture_locked(&mut st, leg) {
            Ok(())
        } else {
            Err(state)
        }
    }

    /// Makes every change so far durable. Sleeps; serialised with other
    /// commits. On a write error the metadata is marked failed: nothing
    /// already durable is lost, nothing new becomes durable.
    pub(crate) fn commit(&self) -> Committed {
        let mut buf = self.commit.lock();
        let (seq, uuid) = {
            let mut st = self.state.lock();
            let seq = st.open_seq;
            st.open_seq += 1;
            (seq, st.sb.uuid)
        };
        if self.meta_failed.load(Ordering::Acquire) {
            return Committed { seq: None };
        }
        let per_leg = self.layout.bitmap_blocks();
        let nblocks = (u64::from(self.nr_legs) * per_leg) as usize;
        let mut result = Ok(());
        for b in 0..nblocks {
            {
                let mut st = self.state.lock();
                if !st.dirty[b] {
                    continue;
                }
                st.dirty[b] = false;
                buf.bytes_mut().copy_from_slice(st.blocks[b].bytes());
            }
            let leg = (b as u64 / per_leg) as u32;
            let nr = self.layout.fracture_block(leg, b as u64 % per_leg);
            seal(buf.bytes_mut(), BlockType::FractureBitmap, nr, &uuid);
            result = self.io.write(&self.dev, nr * SECTORS_PER_BLOCK, &buf, true);
            if result.is_err() {
                self.state.lock().dirty[b] = true;
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
                let mut st = self.state.lock();
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
                result = self.io.write(&self.dev, 0, &buf, true);
                if result.is_err() {
                    let mut st = self.state.lock();
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
                }
                Committed { seq: None }
            }
        }
    }
}

/// Reads block `nr` into `b` and checks it.
fn read_verified(
    io: &IoClient,
    dev: &Dev,
    nr: u64,
    kind: BlockType,
    uuid: &[u8; 16],
    b: &mut Block,
) -> Result<(), CtrError> {
    io.read(dev, nr * SECTORS_PER_BLOCK, b).map_err(|e| {
        crate::dm_err!(
            "cannot read metadata block {} of {} ({:?})",
            nr,
            dev.name(),
            e
        );
        CtrError {
            reason: c_str!("metadata read error"),
            errno: e,
        }
    })?;
    verify(b.bytes(), kind, nr, Some(uuid)).map_err(|e: FormatError| {
        crate::dm_err!(
            "metadata device {}: {}; refusing it (fracturectl repair can rebuild it)",
            dev.name(),
            e
        );
        ctr_err(c_str!("corrupt metadata"))
    })
}

/// Writes an empty layout: zero bitmaps, then the superblock.
fn format(
    io: &IoClient,
    dev: &Dev,
    layout: &Layout,
    sb: &Superblock,
    buf: &mut Block,
) -> Result<(), CtrError> {
    let err = |e: Error| {
        crate::dm_err!("cannot format metadata device {} ({:?})", dev.name(), e);
        CtrError {
            reason: c_str!("metadata write error"),
            errno: e,
        }
    };
    for leg in 0..sb.nr_legs {
        for idx in 0..layout.bitmap_blocks() {
            let nr = layout.fracture_block(leg, idx);
            buf.bytes_mut().fill(0);
            seal(buf.bytes_mut(), BlockType::FractureBitmap, nr, &sb.uuid);
            io.write(dev, nr * SECTORS_PER_BLOCK, buf, true)
                .map_err(err)?;
        }
    }
    for idx in 0..layout.bitmap_blocks() {
        let nr = layout.intent_block(idx);
        buf.bytes_mut().fill(0);
        seal(buf.bytes_mut(), BlockType::IntentBitmap, nr, &sb.uuid);
        io.write(dev, nr * SECTORS_PER_BLOCK, buf, false)
            .map_err(err)?;
    }
    // The superblock last and with FUA: before it is durable, the device
    // is still "all zero" at block 0 and would be formatted again.
    sb.encode(buf.bytes_mut());
    io.write(dev, 0, buf, true).map_err(err)
}
