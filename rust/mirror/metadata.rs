// SPDX-License-Identifier: GPL-2.0

//! The metadata device at run time: the superblock, the per-leg fracture
//! bitmaps and the write-intent bitmap, kept in memory and committed to
//! disk in batches.
//!
//! Every change (a bit set, a leg state change) is made in memory under a
//! spinlock and stamped with the *epoch* (`open_seq`) it belongs to. A commit
//! closes the epoch, writes the changed blocks (bitmaps first, each with
//! REQ_FUA, then the superblock) and publishes the epoch as `committed`. A
//! host write that needed a change completes only once `committed` reaches
//! the change's epoch; a write whose bits are already durable does not wait
//! and costs no metadata I/O. The format itself lives in the shared crate
//! (`crate::format`).
//!
//! Leg states: in sync (`A`, gets every write), fractured (`F`, gets no
//! writes, its written regions are set in its bitmap) and recovering (`R`,
//! gets every write while the recovery thread copies the regions still set
//! in its bitmap from the primary). A copy clears a region's bit only if no
//! host write to that region was in flight at any time during the copy
//! (see [`Shared::begin_write`] and [`Shared::start_copy`]); otherwise the
//! bit stays and the region is copied again later.
//!
//! Write-intent log: a host write is sent to the legs only once every
//! region it touches is set in the intent bitmap on disk (see
//! [`crate::intent`], which tracks that without this lock for regions
//! already marked). Bits are cleared lazily by [`Shared::settle`], after
//! the legs were flushed; a clean suspend leaves the bitmap empty. Regions
//! found set at activation had writes in flight at a crash: they are set
//! in every secondary's fracture bitmap and copied from the primary.

use super::Fracture;
use crate::dm::device::Dev;
use crate::dm::io::{random_bytes, Block, IoClient};
use crate::dm::target::{BioStack, CtrError, EventRaiser};
use crate::format::{
    bit_position, clear_bit, count_ones, fill, format_block, is_zero, next_set_bit, padding_clear, payload,
    payload_mut, seal, set_bit, test_bit, verify, BlockType, Layout, LegState, PrimaryCheck,
    Superblock, BITS_PER_BLOCK, FLAG_CLEAN, SECTORS_PER_BLOCK,
};
use crate::intent::{words_for, IntentTracker, WRITE_BUCKETS};
use core::ops::Range;
use crate::region::Geometry;
use crate::table::MAX_LEGS;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::c_str;
use kernel::new_mutex;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::alloc::KVVec;
use kernel::sync::{Arc, Mutex, SpinLock};

// Leg masks (fan-out failures, in-sync, fractured legs) are `u32`.
const _: () = assert!(MAX_LEGS <= 32);

/// The lock-free side of the write-intent log.
type Tracker = IntentTracker<KVVec<AtomicU64>, KVec<AtomicU32>>;

/// In-memory metadata, under [`Shared::state`].
pub(crate) struct MetaState {
    pub(crate) sb: Superblock,
    /// Epoch of the last superblock change; 0 = nothing to write.
    sb_seq: u64,
    /// Bitmap blocks, `layout.bitmap_blocks()` per bitmap: the fracture
    /// bitmap of leg 0, 1, ..., then the intent bitmap (the on-disk order).
    blocks: KVec<Block>,
    /// Epoch of each block's last change.
    block_seq: KVec<u64>,
    /// Blocks changed since they were last written.
    dirty: KVec<bool>,
    /// Set bits per leg.
    pub(crate) counts: [u64; MAX_LEGS],
    /// Set bits in the intent bitmap.
    pub(crate) intent_count: u64,
    /// The epoch changes are stamped with now.
    open_seq: u64,
    /// Regions the recovery thread is copying.
    copying: [CopySlot; COPY_SLOTS],
    /// Bits cleared by recovery since the set of recovering legs was last
    /// empty (status progress).
    pub(crate) recovered: u64,
}

/// Copies the recovery thread keeps in flight at most.
pub(crate) const COPY_SLOTS: usize = 8;

/// A region being copied, as the write path sees it.
#[derive(Clone, Copy, Default)]
struct CopySlot {
    active: bool,
    region: u64,
    /// Legs the copy writes to.
    legs: u32,
    /// A host write to the region was in flight at some time during the
    /// copy, or a leg of the copy changed state: clear nothing.
    void: bool,
    /// Voided by a host write (counted as a copy redone).
    raced: bool,
}

/// Counters for the `stats` message.
#[derive(Default)]
pub(crate) struct Stats {
    /// Region copies completed and cleared (one per leg and region).
    pub(crate) regions_copied: AtomicU64,
    /// Region copies done again because a host write raced with them.
    pub(crate) copies_redone: AtomicU64,
    /// Copies a leg failed to write.
    pub(crate) copy_write_errors: AtomicU64,
    /// Copies the primary failed to read.
    pub(crate) copy_read_errors: AtomicU64,
    /// Metadata blocks written.
    pub(crate) metadata_writes: AtomicU64,
    /// Probes of failed legs, and how many found the leg working.
    pub(crate) probes: AtomicU64,
    pub(crate) probes_ok: AtomicU64,
    /// Host reads a leg failed, and how many were retried on another.
    pub(crate) read_errors: AtomicU64,
    pub(crate) reads_retried: AtomicU64,
}

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
    /// Bit `i`: leg `i` is fractured (gets no writes, its writes are
    /// logged). Changed under `state`'s lock only.
    pub(crate) logged: AtomicU32,
    /// Bit `i`: leg `i` is recovering (gets every write, and copies).
    /// Changed under `state`'s lock only.
    pub(crate) recovering: AtomicU32,
    /// Bit `i`: leg `i` may serve host reads: in sync at the current
    /// generation when the metadata was loaded, or since its recovery
    /// completed. One word, so that a lock-free reader never sees a leg
    /// between two states (leaving `recovering` for `logged`, say) as in
    /// sync. Cleared before any write the leg misses is acknowledged: under
    /// the state lock first thing when it is fractured or put into
    /// recovery, and at once, from any context, when a write or flush to it
    /// is seen failing. Set only by [`Shared::load`] and
    /// [`Shared::complete_recovered`].
    readable: AtomicU32,
    /// Host writes in flight and the intent bits known durable.
    intent: Tracker,
    /// `nointent`: no region is ever marked; the superblock's clean flag
    /// is cleared while the table runs instead.
    no_intent: bool,
    /// Serialises [`Shared::settle`] and [`Shared::set_active`].
    #[pin]
    settle_lock: Mutex<()>,
    /// Resumed and not suspended since: [`Shared::settle`] may clear.
    active: AtomicBool,
    /// Host writes started, ever (recovery backs off while it moves).
    pub(crate) host_writes: AtomicU64,
    pub(crate) stats: Stats,
    /// The leg reads go to and copies come from (`sb.primary_leg`).
    /// Changed under `state`'s lock only.
    primary: AtomicU32,
    /// The primary failed a write and no in-sync leg could take over
    /// (health `D`); the writes it fails fail.
    pub(crate) primary_failed: AtomicBool,
    /// At activation no leg was in sync at the current generation: no leg
    /// holds every acknowledged write for sure, host I/O fails.
    pub(crate) no_source: AtomicBool,
    /// The metadata device failed a write: nothing new can be logged.
    pub(crate) meta_failed: AtomicBool,
    /// Ask the thread for a commit and an event.
    kick: AtomicBool,
    /// Legs that failed a flush or discard, for the thread to fracture.
    noted: AtomicU32,
    /// Writes and flushes that failed on some leg and that the thread has
    /// not handled yet: until it has, the primary may be about to fail
    /// over, so no copy may clear a bit (see [`Shared::failure_pending`]).
    pending_failures: AtomicU32,
    /// Bios waiting for the thread: a leg failed or their bits must commit.
    pub(crate) deferred: BioStack<Fracture>,
    /// Reads that failed on a leg, for the read-retry thread.
    pub(crate) failed_reads: BioStack<Fracture>,
    /// The region the recovery thread is comparing across legs (`verify`),
    /// [`NO_REGION`] if none.
    verify_region: AtomicU64,
    /// A host write of `verify_region` started during the comparison.
    verify_raced: AtomicBool,
    /// Regions discarded since the table was loaded: their contents are
    /// undefined on every leg (and a leg may not support discard), so
    /// `verify` does not compare them.
    discarded: KVVec<AtomicU64>,
    layout: Layout,
    geometry: Geometry,
    nr_legs: u32,
    dev: Dev,
    io: IoClient,
    events: EventRaiser,
}

/// What [`Shared::verify_mismatch`] did.
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

/// No region (for [`Shared::verify_region`]).
const NO_REGION: u64 = u64::MAX;

/// Why writes cannot be logged.
pub(crate) struct MetadataFailed;

/// What a write needs, from [`Shared::begin_write`].
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

/// What [`Shared::legs_failed_locked`] did.
struct LegsFailed {
    /// Legs fractured (or already fractured) whose I/O is to be logged.
    logged: u32,
    /// A leg changed state, or the primary was lost.
    changed: bool,
    /// The primary failed and no leg could take over.
    primary_lost: bool,
}

/// What [`Shared::write_failed`] decided.
pub(crate) struct WriteFailed {
    /// Epoch that must be durable before the write completes.
    pub(crate) need: u64,
    /// A leg changed state (raise an event).
    pub(crate) changed: bool,
    /// The write may succeed: a leg in sync has it.
    pub(crate) ok: bool,
}

/// Why a message refused a leg.
pub(crate) enum Refused {
    /// It is the primary.
    Primary,
    /// Its state does not allow it.
    State(LegState),
}

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
    /// an all-zero device (every secondary to be copied in full, unless
    /// `nosync`), otherwise loads and checks it against the table.
    pub(crate) fn open(
        dev: Dev,
        geometry: Geometry,
        nr_legs: u32,
        nosync: bool,
        no_intent: bool,
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
        // Every fracture bitmap, then the intent bitmap.
        let nblocks = (u64::from(nr_legs + 1) * layout.bitmap_blocks()) as usize;
        let mut blocks = KVec::with_capacity(nblocks, GFP_KERNEL)?;
        let mut block_seq = KVec::with_capacity(nblocks, GFP_KERNEL)?;
        let mut dirty = KVec::with_capacity(nblocks, GFP_KERNEL)?;
        for _ in 0..nblocks {
            blocks.push(Block::new()?, GFP_KERNEL)?;
            block_seq.push(0, GFP_KERNEL)?;
            dirty.push(false, GFP_KERNEL)?;
        }
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
        if is_zero(buf.bytes()) {
            if !nosync {
                sb.start_initial_sync();
            }
            format(&io, &dev, &layout, &sb, &mut buf)?;
            crate::dm_info!(
                "formatted metadata device {}: {} regions of {} sectors, {} legs{}",
                dev.name(),
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
        let bitmap = || -> Result<KVVec<AtomicU64>> {
            let mut v = KVVec::with_capacity(words, GFP_KERNEL)?;
            for _ in 0..words {
                v.push(AtomicU64::new(0), GFP_KERNEL)?;
            }
            Ok(v)
        };
        let mut buckets = KVec::with_capacity(WRITE_BUCKETS, GFP_KERNEL)?;
        for _ in 0..WRITE_BUCKETS {
            buckets.push(AtomicU32::new(0), GFP_KERNEL)?;
        }
        let intent = IntentTracker::new(bitmap()?, bitmap()?, bitmap()?, buckets, geometry.nr_regions())
            .map_err(|_| EINVAL)?;
        let discarded = bitmap()?;
        let shared = Arc::pin_init(
            pin_init!(Self {
                state <- new_spinlock!(state, "fracture_meta"),
                commit <- new_mutex!(buf, "fracture_commit"),
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
                layout,
                geometry,
                nr_legs,
                dev,
                io,
                events,
            }),
            GFP_KERNEL,
        )?;
        shared.load(false)?;
        Ok(shared)
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
        self.not_readable(legs);
        self.noted.fetch_or(legs, Ordering::AcqRel);
    }

    /// Writes or flushes to `legs` failed (any context): no read goes to
    /// them from now on (a leg that failed a flush may have lost writes it
    /// acknowledged), before the thread fractures them. Harmless for a
    /// primary, which reads do not leave for this mask.
    pub(crate) fn not_readable(&self, legs: u32) {
        self.readable.fetch_and(!legs, Ordering::SeqCst);
    }

    /// A write or flush failed on some leg and goes to the thread (any
    /// context). Paired with [`Shared::failure_handled`].
    pub(crate) fn failure_seen(&self) {
        self.pending_failures.fetch_add(1, Ordering::SeqCst);
    }

    /// The thread handled a failure counted by [`Shared::failure_seen`].
    pub(crate) fn failure_handled(&self) {
        self.pending_failures.fetch_sub(1, Ordering::SeqCst);
    }

    /// A leg failure is known but not handled yet, or no leg is known to be
    /// current (`no_source`): copies clear nothing. A failing leg may be the
    /// primary, which the thread is about to replace; a copy read from it
    /// may miss the failed write.
    fn failure_pending(&self) -> bool {
        self.pending_failures.load(Ordering::SeqCst) != 0
            || self.noted.load(Ordering::SeqCst) != 0
            || self.no_source.load(Ordering::SeqCst)
    }

    /// Secondaries `legs` did not complete a flush within `io_timeout`:
    /// they are fractured at once, before any intent bit is cleared on the
    /// strength of that flush (the fracture takes the intent bits into
    /// their bitmaps, which covers every write they may not have made
    /// durable). Returns whether a leg changed.
    pub(crate) fn flush_timed_out(&self, legs: u32) -> bool {
        let mut st = self.state.lock();
        let f = self.legs_failed_locked(&mut st, legs, 0, "flush within io_timeout");
        if self.no_intent {
            // No intent bits: nothing says what it may not have made
            // durable.
            for leg in legs_of(f.logged) {
                self.fill_leg_locked(&mut st, leg);
                crate::dm_warn!("leg {} fractured with every region out of sync (nointent)", leg);
            }
        }
        f.changed
    }

    /// Fractures the legs recorded by [`Shared::note_failed`]. A failed
    /// flush may have lost any earlier write, so the whole leg is marked
    /// out of sync (the safe direction). Returns whether a leg changed.
    pub(crate) fn fracture_noted(&self) -> bool {
        // Taken under the lock: a concurrent caller that finds the mask
        // empty then knows the legs are fractured already (not merely
        // taken by another thread that has yet to fracture them).
        let mut st = self.state.lock();
        let legs = self.noted.swap(0, Ordering::AcqRel);
        if legs == 0 {
            return false;
        }
        let failed = self.legs_failed_locked(&mut st, legs, 0, "flush");
        for leg in legs_of(failed.logged) {
            self.fill_leg_locked(&mut st, leg);
            crate::dm_warn!("leg {} fractured with every region out of sync", leg);
        }
        failed.changed
    }

    /// The leg reads are sent to and recovery copies from.
    pub(crate) fn primary(&self) -> u32 {
        self.primary.load(Ordering::Acquire)
    }

    /// The legs in `legs` failed I/O; `st` locked. The secondaries among
    /// them are fractured. If the primary is among them, the lowest in-sync
    /// leg not in `legs | exclude` (legs that did not take the I/O) takes
    /// over first, and the old primary is then fractured like a secondary;
    /// copies in flight (read from it) clear nothing. If no leg can take
    /// over, the primary stays (it is still the best copy) and is marked
    /// failed. The caller logs the failed I/O for the legs in `logged`.
    fn legs_failed_locked(&self, st: &mut MetaState, legs: u32, exclude: u32, what: &str) -> LegsFailed {
        let p = st.sb.primary_leg;
        let mut legs = legs & self.all_legs();
        let mut out = LegsFailed {
            logged: 0,
            changed: false,
            primary_lost: false,
        };
        if legs & (1 << p) != 0 {
            if let Some(q) = st.sb.fail_over(legs | exclude) {
                self.primary.store(q, Ordering::SeqCst);
                self.primary_failed.store(false, Ordering::SeqCst);
                st.sb_seq = st.open_seq;
                for slot in st.copying.iter_mut() {
                    slot.void |= slot.active;
                }
                crate::dm_warn!(
                    "primary leg {} failed a {}: leg {} is the primary now; leg {} is fractured, its changes are logged",
                    p,
                    what,
                    q,
                    p
                );
            } else {
                legs &= !(1 << p);
                out.primary_lost = true;
                if !self.primary_failed.swap(true, Ordering::AcqRel) {
                    out.changed = true;
                    crate::dm_err!(
                        "primary leg {} failed a {} and no leg in sync can take over: marked D, writes it fails fail",
                        p,
                        what
                    );
                }
            }
        }
        for leg in legs_of(legs) {
            if self.fracture_locked(st, leg, false) {
                out.changed = true;
                if leg != p {
                    crate::dm_warn!(
                        "leg {} failed a {}: fractured, its changes are logged",
                        leg,
                        what
                    );
                }
            }
        }
        out.logged = legs;
        out
    }

    /// Every leg of the table, as a mask.
    fn all_legs(&self) -> u32 {
        u32::MAX >> (32 - self.nr_legs)
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
        let per_leg = self.layout.bitmap_blocks();
        let mut counts = [0u64; MAX_LEGS];
        for leg in 0..self.nr_legs {
            for idx in 0..per_leg {
                counts[leg as usize] += self.load_bitmap_block(leg, idx, &sb.uuid, &mut buf)?;
            }
        }
        // The intent bitmap only at activation: at construction an older
        // table may still be rewriting it (a torn read would refuse a good
        // device) and its bits are not ours yet.
        let mut intent_count = 0;
        for idx in (0..per_leg).filter(|_| activate) {
            intent_count += self.load_bitmap_block(self.nr_legs, idx, &sb.uuid, &mut buf)?;
        }
        let mut st = self.state.lock();
        if !activate {
            for idx in 0..per_leg {
                let b = self.block_index(self.nr_legs, idx);
                payload_mut(st.blocks[b].bytes_mut()).fill(0);
                st.dirty[b] = false;
            }
        }
        if activate && sb.flags & FLAG_CLEAN == 0 {
            // A table without an intent log (`nointent`) did not shut down
            // cleanly: any region may have had writes in flight. A full
            // intent bitmap says so, and is handed to the legs below.
            let nr_regions = self.geometry.nr_regions();
            for idx in 0..per_leg {
                let b = self.block_index(self.nr_legs, idx);
                fill(payload_mut(st.blocks[b].bytes_mut()), idx, nr_regions);
                st.block_seq[b] = st.open_seq;
                st.dirty[b] = true;
            }
            intent_count = nr_regions;
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
        let mut dirty = (0..self.nr_legs)
            .filter(|&l| counts[l as usize] != 0)
            .fold(0u32, |m, l| m | 1 << l);
        let p = sb.primary_leg;
        let rec = *sb.leg(p);
        if dirty & (1 << p) != 0
            && rec.state == LegState::InSync
            && rec.generation == sb.event
            && sb.source_candidate(dirty | 1 << p).is_none()
        {
            // A failover's bitmap writes reached the disk, its superblock
            // did not, and no other leg can serve. The primary's bits are
            // writes it missed that were never acknowledged (they waited
            // for that commit): it holds every acknowledged write. It stays
            // the primary; the other legs copy those regions from it.
            st.counts = counts;
            for leg in (0..self.nr_legs).filter(|&l| l != p) {
                self.or_bitmap_into(&mut st, p, leg);
            }
            for idx in 0..self.layout.bitmap_blocks() {
                let b = self.block_index(p, idx);
                payload_mut(st.blocks[b].bytes_mut()).fill(0);
                st.dirty[b] = true;
            }
            st.counts[p as usize] = 0;
            counts = st.counts;
            dirty = (0..self.nr_legs)
                .filter(|&l| counts[l as usize] != 0)
                .fold(0u32, |m, l| m | 1 << l);
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
        for leg in 0..self.nr_legs {
            if dirty & (1 << leg) == 0 {
                continue;
            }
            if sb.leg(leg).state == LegState::InSync {
                sb.leave_sync(leg);
                let rec = sb.leg_mut(leg);
                rec.state = LegState::Fractured;
                rec.split = false;
                st.sb_seq = st.open_seq;
            }
        }
        let no_source = match sb.check_primary(dirty) {
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

    /// Reads and checks block `idx` of bitmap `which` (a leg's fracture
    /// bitmap, or `nr_legs` for the intent bitmap) through `buf` into its
    /// place in memory, clean. Returns its set bits.
    fn load_bitmap_block(&self, which: u32, idx: u64, uuid: &[u8; 16], buf: &mut Block) -> Result<u64, LoadError> {
        let (nr, kind) = if which == self.nr_legs {
            (self.layout.intent_block(idx), BlockType::IntentBitmap)
        } else {
            (self.layout.fracture_block(which, idx), BlockType::FractureBitmap)
        };
        read_verified(&self.io, &self.dev, nr, kind, uuid, buf)?;
        if !padding_clear(payload(buf.bytes()), idx, self.geometry.nr_regions()) {
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
        let mut st = self.state.lock();
        st.blocks[b].bytes_mut().copy_from_slice(buf.bytes());
        st.dirty[b] = false;
        st.block_seq[b] = 0;
        Ok(count_ones(payload(buf.bytes())))
    }

    /// Index in `MetaState::blocks` of block `idx` of bitmap `which`
    /// (a leg, or `nr_legs` for the intent bitmap).
    fn block_index(&self, which: u32, idx: u64) -> usize {
        (u64::from(which) * self.layout.bitmap_blocks() + idx) as usize
    }

    /// Sets every intent bit in the fracture bitmap of secondary `leg`, in
    /// the open epoch; `st` locked. Returns the bits newly set.
    fn or_intent_into(&self, st: &mut MetaState, leg: u32) -> u64 {
        self.or_bitmap_into(st, self.nr_legs, leg)
    }

    /// Sets every bit of bitmap `from` (a leg's, or `nr_legs` for the intent
    /// bitmap) in the fracture bitmap of leg `leg`, in the open epoch; `st`
    /// locked. Returns the bits newly set.
    fn or_bitmap_into(&self, st: &mut MetaState, from_bitmap: u32, leg: u32) -> u64 {
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

    /// At activation after a crash: the intent bits go into every
    /// secondary's fracture bitmap (in-sync legs start recovering), and
    /// the intent bitmap is emptied. `sb` and `counts` are the ones being
    /// loaded.
    fn intent_to_legs(&self, st: &mut MetaState, sb: &mut Superblock, counts: &mut [u64; MAX_LEGS]) {
        st.counts = *counts;
        let p = sb.primary_leg;
        for leg in (0..self.nr_legs).filter(|&l| l != p) {
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
        for idx in 0..self.layout.bitmap_blocks() {
            let b = self.block_index(self.nr_legs, idx);
            payload_mut(st.blocks[b].bytes_mut()).fill(0);
            st.dirty[b] = true;
        }
        st.intent_count = 0;
        st.sb_seq = st.open_seq;
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

    /// Starts a host write (or write-zeroes, discard) of `sector..sector +
    /// sectors`: counts it in flight until [`Shared::end_write`], makes
    /// sure its regions are set in the intent bitmap, voids any copy of its
    /// regions and, if `log`, sets its regions in the bitmaps of the
    /// fractured legs.
    ///
    /// Fails, having undone everything, if something new would need
    /// marking or logging but the metadata device has failed: a write is
    /// never sent unmarked, nor acknowledged unlogged.
    ///
    /// Ordering with [`Shared::start_copy`]: the write is counted in flight
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
        // Ordering with [`Shared::verify_begin`]: counted in flight before
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
        let mut st = self.state.lock();
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

    /// Sets `regions` in the intent bitmap; `st` locked. Returns the epoch
    /// that must be durable before a write to them is sent (at most the
    /// committed one if they are already on disk).
    fn set_intent(&self, st: &mut MetaState, regions: Range<u64>) -> u64 {
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

    /// A held write is about to be sent: legs fractured since
    /// [`Shared::begin_write`] (beyond `logged`) must not get it; its
    /// sectors are logged for them. Returns all legs not to send it to and
    /// the epoch the write must wait for before it completes.
    pub(crate) fn log_late(&self, logged: u32, sector: u64, sectors: u64) -> (u32, u64) {
        let now = self.logged.load(Ordering::SeqCst);
        let late = now & !logged;
        if late == 0 {
            return (logged, 0);
        }
        let mut st = self.state.lock();
        (logged | late, self.set_bits(&mut st, late, sector, sectors))
    }

    /// The intent bits of a write started with [`Shared::begin_write`] are
    /// on disk: it may be sent, and later writes to its regions need not
    /// wait for them.
    pub(crate) fn intent_durable(&self, sector: u64, sectors: u64) {
        self.intent.mark_durable(self.geometry.regions_of(sector, sectors));
    }

    /// Ends what [`Shared::begin_write`] started, once the write completed
    /// on every leg it was sent to (or was not sent).
    pub(crate) fn end_write(&self, sector: u64, sectors: u64) {
        self.intent.end_write(self.geometry.regions_of(sector, sectors));
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
            let st = self.state.lock();
            let b = self.block_index(self.nr_legs, idx);
            let mut bit = 0;
            while let Some(found) = next_set_bit(payload(st.blocks[b].bytes()), bit) {
                let r = idx * BITS_PER_BLOCK + found as u64;
                if r >= nr_regions {
                    break;
                }
                self.intent.consider(&mut scan, r);
                bit = found + 1;
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
            let mut st = self.state.lock();
            let b = self.block_index(self.nr_legs, idx);
            let mut bit = 0;
            let mut block_cleared = 0;
            while let Some(found) = next_set_bit(payload(st.blocks[b].bytes()), bit) {
                let r = idx * BITS_PER_BLOCK + found as u64;
                bit = found + 1;
                // No new epoch: a clear is never waited for, and a later
                // set stamps the block again.
                if r < nr_regions
                    && settled.try_clear(r)
                    && clear_bit(payload_mut(st.blocks[b].bytes_mut()), found)
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

    /// `nointent`: sets, in the bitmaps of the legs in `legs` (just
    /// fractured), every region a host write may be in flight to: such a
    /// write may have been sent to them before, and may complete there
    /// after a flush meant to make what they took durable (with the log,
    /// its intent bit covers it). Conservative: a region sharing an
    /// in-flight counter with a busy one is set too. A write counts itself
    /// in flight before it reads which legs are fractured, so one that was
    /// sent to these legs is seen here unless it completed. The caller
    /// commits.
    pub(crate) fn mark_in_flight(&self, legs: u32) {
        if legs == 0 {
            return;
        }
        // The lock per region found, not over the whole scan.
        for r in (0..self.geometry.nr_regions()).filter(|&r| self.intent.busy(r)) {
            let range = self.geometry.sectors_of(r);
            let mut st = self.state.lock();
            self.set_bits(&mut st, legs, range.start, range.end - range.start);
        }
    }

    /// Whether the table keeps no write-intent log (`nointent`).
    pub(crate) fn no_intent(&self) -> bool {
        self.no_intent
    }

    /// Sets or clears the superblock's clean flag and commits. A `nointent`
    /// table clears it before any write is sent after a resume, and sets
    /// it once suspended with the legs flushed: found clear at activation,
    /// every region is resynced. Returns whether the commit worked. Sleeps.
    pub(crate) fn set_clean(&self, clean: bool) -> bool {
        {
            let mut st = self.state.lock();
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

    /// The table is running (first resume done) or not (suspended): intent
    /// bits are cleared only while it runs.
    pub(crate) fn set_active(&self, active: bool) {
        let _serial = self.settle_lock.lock();
        self.active.store(active, Ordering::Release);
    }

    /// Fractures leg `leg` (a failed write, or on purpose when `split`): it
    /// gets no more writes and its writes are logged. An in-sync leg leaves
    /// the in-sync set: the array event count moves on and the legs still in
    /// sync take the new generation. A recovering leg keeps its bits and
    /// its copies clear nothing. Either way the regions set in the intent
    /// bitmap are set in its fracture bitmap. Returns whether the state
    /// changed.
    fn fracture_locked(&self, st: &mut MetaState, leg: u32, split: bool) -> bool {
        // Before anything else: no read may go to it from now on.
        self.readable.fetch_and(!(1 << leg), Ordering::SeqCst);
        match st.sb.leg(leg).state {
            LegState::InSync => st.sb.leave_sync(leg),
            LegState::Recovering => self.void_copies(st, leg),
            LegState::Fractured | LegState::Failed => return false,
        }
        // Writes the leg took may still be in flight, or in its volatile
        // cache (not flushed yet): the intent bits cover both.
        self.or_intent_into(st, leg);
        let rec = st.sb.leg_mut(leg);
        rec.state = LegState::Fractured;
        rec.split = split;
        st.sb_seq = st.open_seq;
        self.logged.fetch_or(1 << leg, Ordering::SeqCst);
        self.recovering.fetch_and(!(1 << leg), Ordering::SeqCst);
        true
    }

    /// Copies to `leg` in flight will clear nothing.
    fn void_copies(&self, st: &mut MetaState, leg: u32) {
        for slot in st.copying.iter_mut() {
            if slot.active && slot.legs & (1 << leg) != 0 {
                slot.void = true;
            }
        }
    }

    /// Puts leg `leg` into recovery; `st` locked.
    fn start_recovery_locked(&self, st: &mut MetaState, leg: u32) {
        // A rebuild of an in-sync leg: no read goes to it until recovered.
        self.readable.fetch_and(!(1 << leg), Ordering::SeqCst);
        if self.recovering.load(Ordering::Relaxed) == 0 {
            st.recovered = 0;
        }
        let rec = st.sb.leg_mut(leg);
        rec.state = LegState::Recovering;
        rec.split = false;
        st.sb_seq = st.open_seq;
        self.void_copies(st, leg);
        self.recovering.fetch_or(1 << leg, Ordering::SeqCst);
        self.logged.fetch_and(!(1 << leg), Ordering::SeqCst);
    }

    /// `rejoin`: a fractured secondary starts recovery. `Ok(true)` if it
    /// changed state, `Ok(false)` if it was already recovering. The caller
    /// commits.
    pub(crate) fn rejoin(&self, leg: u32) -> Result<bool, Refused> {
        let mut st = self.state.lock();
        if leg == st.sb.primary_leg {
            return Err(Refused::Primary);
        }
        match st.sb.leg(leg).state {
            LegState::Fractured | LegState::Failed => {
                self.start_recovery_locked(&mut st, leg);
                Ok(true)
            }
            LegState::Recovering => Ok(false),
            LegState::InSync => Err(Refused::State(LegState::InSync)),
        }
    }

    /// `rejoin <primary>` on a primary shown `D` (it failed I/O and no leg
    /// could take over): the administrator says it works again, `D` is
    /// cleared. Nothing else changes: the writes it failed are logged for
    /// the other legs already, and a new failure marks it `D` again. Not
    /// for a mirror activated with no known-current leg (`no_source`),
    /// which only `primary <leg>` or a new table resolves.
    pub(crate) fn primary_repaired(&self) -> bool {
        let _st = self.state.lock();
        !self.no_source.load(Ordering::SeqCst) && self.primary_failed.swap(false, Ordering::AcqRel)
    }

    /// Resume with the legs present: every secondary fractured by a failure
    /// (not split on request) starts recovery. Returns those legs.
    pub(crate) fn rejoin_failed(&self, skip: u32) -> u32 {
        let mut st = self.state.lock();
        let mut legs = 0;
        let p = st.sb.primary_leg;
        for leg in (0..self.nr_legs).filter(|&l| l != p && skip & (1 << l) == 0) {
            let rec = st.sb.leg(leg);
            if rec.state == LegState::Fractured && !rec.split {
                self.start_recovery_locked(&mut st, leg);
                legs |= 1 << leg;
            }
        }
        legs
    }

    /// `rebuild`: every region of secondary `leg` is to be copied again.
    /// The caller commits.
    pub(crate) fn rebuild(&self, leg: u32) -> Result<(), Refused> {
        let mut st = self.state.lock();
        if leg == st.sb.primary_leg {
            return Err(Refused::Primary);
        }
        if st.sb.leg(leg).state == LegState::InSync {
            // It leaves the in-sync set like a fracture does.
            self.fracture_locked(&mut st, leg, false);
        }
        self.start_recovery_locked(&mut st, leg);
        self.fill_leg_locked(&mut st, leg);
        Ok(())
    }

    /// Sets every bit of leg `leg`'s bitmap, in the open epoch.
    fn fill_leg_locked(&self, st: &mut MetaState, leg: u32) {
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

    /// A copy to the recovering legs in `legs` failed: they are fractured
    /// again (by a failure), their bits stay. Returns whether one changed.
    pub(crate) fn recovery_failed(&self, legs: u32) -> bool {
        let mut st = self.state.lock();
        let mut changed = false;
        for leg in legs_of(legs & self.all_legs()) {
            if st.sb.leg(leg).state == LegState::Recovering {
                changed |= self.fracture_locked(&mut st, leg, false);
                if self.no_intent {
                    // Host writes it took since its last good flush are
                    // covered by no intent bit: every region is marked.
                    self.fill_leg_locked(&mut st, leg);
                    crate::dm_warn!("leg {} fractured with every region out of sync (nointent)", leg);
                }
            }
        }
        changed
    }

    /// Secondaries fractured by a failure, for the probe.
    pub(crate) fn failed_legs(&self) -> u32 {
        let st = self.state.lock();
        (0..self.nr_legs)
            .filter(|&l| {
                l != st.sb.primary_leg
                    && st.sb.leg(l).state == LegState::Fractured
                    && !st.sb.leg(l).split
            })
            .fold(0, |m, l| m | 1 << l)
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
            let st = self.state.lock();
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

    /// Recovery is about to copy `region` from leg `source` to `legs`
    /// through slot `slot`. If a host write of the region is in flight now,
    /// or one starts before [`Shared::finish_copy`], or `source` is not the
    /// primary any more (a failover since it was chosen: the old primary
    /// may miss writes the legs took), the copy will clear nothing. A
    /// failover after this voids the copy too (`legs_failed_locked`).
    pub(crate) fn start_copy(&self, slot: usize, region: u64, legs: u32, source: u32) {
        let mut st = self.state.lock();
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
        let per_leg = self.layout.bitmap_blocks();
        let mut st = self.state.lock();
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
            let b = (u64::from(leg) * per_leg + idx) as usize;
            // No new epoch: clearing a bit is never waited for, and a later
            // set of it stamps the block again.
            if clear_bit(payload_mut(st.blocks[b].bytes_mut()), bit) {
                st.dirty[b] = true;
                st.counts[leg as usize] -= 1;
                cleared += 1;
            }
        }
        st.recovered += cleared;
        self.stats.regions_copied.fetch_add(cleared, Ordering::Relaxed);
        cleared
    }

    /// Recovering legs with no bit left and no copy in flight are in sync
    /// again: they take the current generation. Returns them.
    pub(crate) fn complete_recovered(&self) -> u32 {
        let mut st = self.state.lock();
        let mut done = 0;
        if self.no_source.load(Ordering::SeqCst) {
            // Nothing was copied from a leg known to be current.
            return 0;
        }
        for leg in 0..self.nr_legs {
            if st.sb.leg(leg).state != LegState::Recovering
                || st.counts[leg as usize] != 0
                || st.copying.iter().any(|s| s.active && s.legs & (1 << leg) != 0)
            {
                continue;
            }
            st.sb.enter_sync(leg);
            st.sb_seq = st.open_seq;
            self.recovering.fetch_and(!(1 << leg), Ordering::SeqCst);
            // Every region copied and no copy in flight: it holds every
            // acknowledged write.
            self.readable.fetch_or(1 << leg, Ordering::SeqCst);
            done |= 1 << leg;
        }
        done
    }

    /// A write (a flush if `flush`) sent to the legs in `sent` failed on
    /// the legs in `failed`, on those in `timed_out` by not completing
    /// within `io_timeout` (see [`Shared::legs_failed_locked`]): the
    /// failed legs are fractured and the write's sectors logged for them
    /// (every region, for a flush: it may have lost any earlier write).
    /// If the primary failed it and no leg could take over, the write
    /// fails, and recovering legs that took it copy its regions again.
    pub(crate) fn write_failed(
        &self,
        failed: u32,
        timed_out: u32,
        sent: u32,
        sector: u64,
        sectors: u64,
        flush: bool,
    ) -> WriteFailed {
        let mut st = self.state.lock();
        let what = match (flush, failed & !timed_out == 0) {
            (true, true) => "flush within io_timeout",
            (false, true) => "write within io_timeout",
            (true, false) => "flush",
            (false, false) => "write",
        };
        let f = self.legs_failed_locked(&mut st, failed, !sent, what);
        let mut need = st.sb_seq;
        if flush {
            // A leg whose flush only timed out lost nothing it had made
            // durable: the intent bits its fracture took cover every write
            // it may not have (unless there are none: `nointent`).
            let covered = if self.no_intent { 0 } else { timed_out };
            for leg in legs_of(f.logged & !covered) {
                self.fill_leg_locked(&mut st, leg);
                need = st.open_seq;
                crate::dm_warn!("leg {} fractured with every region out of sync", leg);
            }
        } else {
            need = need.max(self.set_bits(&mut st, f.logged, sector, sectors));
        }
        if f.primary_lost && !flush {
            // Legs that took it now differ from the primary there: a
            // recovering one, or one fractured since it was sent.
            let out_of_sync = self.recovering.load(Ordering::Relaxed) | self.logged.load(Ordering::Relaxed);
            let took = sent & !failed & out_of_sync & !(1 << st.sb.primary_leg);
            need = need.max(self.set_bits(&mut st, took, sector, sectors));
        }
        WriteFailed {
            need,
            changed: f.changed,
            ok: !f.primary_lost,
        }
    }

    /// `primary <leg>`: makes in-sync leg `leg` the primary. `Ok(false)` if
    /// it already is. Copies in flight clear nothing (they are done again
    /// from the new primary). A primary shown `D` hands over this way too.
    /// The caller commits.
    pub(crate) fn set_primary(&self, leg: u32) -> Result<bool, Refused> {
        let mut st = self.state.lock();
        if leg == st.sb.primary_leg && !self.no_source.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let state = st.sb.leg(leg).state;
        if !st.sb.switch_primary(leg) {
            return Err(Refused::State(state));
        }
        self.primary.store(leg, Ordering::SeqCst);
        self.primary_failed.store(false, Ordering::SeqCst);
        st.sb_seq = st.open_seq;
        for slot in st.copying.iter_mut() {
            slot.void |= slot.active;
        }
        Ok(true)
    }

    /// Secondaries a host read of `sector..sector + sectors` may go to
    /// besides the primary (bit per leg; 0: the primary only). Lock-free,
    /// any context.
    ///
    /// A leg qualifies if it holds every acknowledged write: in sync at the
    /// current generation, not fractured, failed or recovering. A leg
    /// leaves that set (its bit in `logged`, under the state lock) before
    /// any write it misses is acknowledged, so a read that follows the
    /// acknowledgement sees the bit (`readable`, one word: see there).
    /// While a leg failure is being handled (a failed write or flush not yet
    /// logged), reads stay on the primary: a leg that failed a flush may
    /// have lost writes it acknowledged before. Regions discarded since the table was loaded have undefined
    /// contents, which may differ from leg to leg: they are read from the
    /// primary, so that two reads of them agree.
    pub(crate) fn read_legs(&self, sector: u64, sectors: u64) -> u32 {
        if self.failure_pending() || self.primary_failed.load(Ordering::Acquire) {
            return 0;
        }
        let out = self.logged.load(Ordering::SeqCst) | self.recovering.load(Ordering::SeqCst) | 1 << self.primary();
        let legs = self.readable.load(Ordering::SeqCst) & self.all_legs() & !out;
        if legs == 0 || self.geometry.regions_of(sector, sectors).any(|r| self.was_discarded(r)) {
            return 0;
        }
        legs
    }

    /// A leg to retry a read on: in sync, not in `tried`.
    pub(crate) fn read_source(&self, tried: u32) -> Option<u32> {
        self.state.lock().sb.source_candidate(tried)
    }

    /// The recovery thread is about to compare `region` across the legs
    /// (`verify`). Returns whether no host write of it is in flight; one
    /// that starts before [`Shared::verify_end`] is reported there.
    pub(crate) fn verify_begin(&self, region: u64) -> bool {
        self.verify_raced.store(false, Ordering::SeqCst);
        self.verify_region.store(region, Ordering::SeqCst);
        !self.intent.busy(region)
    }

    /// The comparison [`Shared::verify_begin`] started is over. Returns
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

    /// Whether `region` was discarded since the table was loaded.
    pub(crate) fn was_discarded(&self, region: u64) -> bool {
        self.discarded
            .get((region / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (region % 64)) != 0)
    }

    /// In-sync secondaries among `legs` (the legs `verify` can compare).
    pub(crate) fn in_sync_secondaries(&self, legs: u32) -> u32 {
        let st = self.state.lock();
        let p = st.sb.primary_leg;
        (0..self.nr_legs)
            .filter(|&l| {
                legs & (1 << l) != 0 && l != p && st.sb.leg(l).state == LegState::InSync
            })
            .fold(0, |m, l| m | (1 << l))
    }

    /// The state of leg `leg`, and whether it is the primary.
    pub(crate) fn leg_state(&self, leg: u32) -> (LegState, bool) {
        let st = self.state.lock();
        (st.sb.leg(leg).state, leg == st.sb.primary_leg)
    }

    /// Whether `region` is set in leg `leg`'s fracture bitmap.
    pub(crate) fn region_dirty(&self, leg: u32, region: u64) -> bool {
        let (idx, bit) = bit_position(region);
        let b = (u64::from(leg) * self.layout.bitmap_blocks() + idx) as usize;
        let st = self.state.lock();
        st.blocks.get(b).is_some_and(|blk| test_bit(payload(blk.bytes()), bit))
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
    pub(crate) fn verify_mismatch(&self, leg: u32, region: u64, primary: u32, check: bool) -> VerifyMark {
        let mut st = self.state.lock();
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

    /// Splits secondary `leg` (in sync or recovering) on purpose. The
    /// caller commits.
    pub(crate) fn fracture(&self, leg: u32) -> Result<(), Refused> {
        let mut st = self.state.lock();
        if leg == st.sb.primary_leg {
            return Err(Refused::Primary);
        }
        let state = st.sb.leg(leg).state;
        if self.fracture_locked(&mut st, leg, true) {
            Ok(())
        } else {
            Err(Refused::State(state))
        }
    }

    /// Makes every change so far durable. Sleeps; serialised with other
    /// commits. On a write error the metadata is marked failed: nothing
    /// already durable is lost, nothing new becomes durable.
    pub(crate) fn commit(&self) -> Committed {
        let mut buf = self.commit.lock();
        self.commit_locked(&mut buf)
    }

    /// [`Shared::commit`] with the commit lock held (`buf` is its block).
    fn commit_locked(&self, buf: &mut Block) -> Committed {
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
        // The fracture bitmaps before the intent bitmap: bits moved from the
        // intent bitmap into a leg's (at activation) are on disk before
        // they leave it.
        let nblocks = (u64::from(self.nr_legs + 1) * per_leg) as usize;
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
            let which = (b as u64 / per_leg) as u32;
            let (nr, kind) = if which == self.nr_legs {
                (self.layout.intent_block(b as u64 % per_leg), BlockType::IntentBitmap)
            } else {
                (self.layout.fracture_block(which, b as u64 % per_leg), BlockType::FractureBitmap)
            };
            seal(buf.bytes_mut(), kind, nr, &uuid);
            result = self.io.write(&self.dev, nr * SECTORS_PER_BLOCK, buf, true);
            self.stats.metadata_writes.fetch_add(1, Ordering::Relaxed);
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
                result = self.io.write(&self.dev, 0, buf, true);
                self.stats.metadata_writes.fetch_add(1, Ordering::Relaxed);
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
                    // Whichever thread's commit found it (metadata,
                    // recovery, settle, suspend): `dmsetup wait` returns.
                    self.raise_event();
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
) -> Result<(), LoadError> {
    io.read(dev, nr * SECTORS_PER_BLOCK, b).map_err(|e| {
        crate::dm_err!(
            "cannot read metadata block {} of {} ({:?})",
            nr,
            dev.name(),
            e
        );
        LoadError {
            reason: c_str!("metadata read error"),
            errno: e,
        }
    })?;
    verify(b.bytes(), kind, nr, Some(uuid)).map_err(|e| {
        crate::dm_err!(
            "metadata device {}: {}; refusing it (fracturectl repair can rebuild it)",
            dev.name(),
            e
        );
        LoadError {
            reason: c_str!("corrupt metadata"),
            errno: EINVAL,
        }
    })
}

/// Writes a new layout: the bitmaps (all set for a leg that starts
/// recovering, else empty), then the superblock.
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
    for nr in 1..layout.total_blocks() {
        // Every block number below total_blocks() is in the layout.
        if format_block(sb, nr, buf.bytes_mut()).is_none() {
            return Err(err(EINVAL));
        }
        io.write(dev, nr * SECTORS_PER_BLOCK, buf, true)
            .map_err(err)?;
    }
    // The superblock last and with FUA: before it is durable, the device
    // is still "all zero" at block 0 and would be formatted again.
    sb.encode(buf.bytes_mut());
    io.write(dev, 0, buf, true).map_err(err)
}

/// The leg numbers set in `mask`, lowest first.
pub(crate) fn legs_of(mask: u32) -> impl Iterator<Item = u32> {
    (0..32).filter(move |i| mask & (1 << i) != 0)
}
