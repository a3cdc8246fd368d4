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
//! (see [`MirrorState::begin_write`] and [`MirrorState::start_copy`]); otherwise the
//! bit stays and the region is copied again later.
//!
//! Write-intent log: a host write is sent to the legs only once every
//! region it touches is set in the intent bitmap on disk (see
//! [`crate::intent`], which tracks that without this lock for regions
//! already marked). Bits are cleared lazily by [`MirrorState::settle`], after
//! the legs were flushed; a clean suspend leaves the bitmap empty. Regions
//! found set at activation had writes in flight at a crash: they are set
//! in every secondary's fracture bitmap and copied from the primary.
//!
//! The state lives in [`MirrorState`] (this file, with its small accessors); the
//! rest is split by concern:
//!
//! - `store`: opening, formatting, loading and committing the metadata
//!   device, the only place that does metadata I/O;
//! - `bitmap`: the in-memory bitmaps, bit by bit and block by block;
//! - `legstate`: leg state changes: fracture, rejoin, recovery, failover
//!   and which legs may serve reads;
//! - `intent`: host writes: marking their regions before they are sent,
//!   logging them for fractured legs, and settling the intent bits;
//! - `copies`: what the recovery thread's copies and `verify` tell the
//!   write path.

mod bitmap;
mod copies;
mod format;
mod intent;
mod legstate;
mod store;

pub(crate) use copies::VerifyMark;
pub(crate) use legstate::Refused;

use super::Fracture;
use crate::dm::device::{Dev, DevT};
use crate::dm::held::BioStack;
use crate::dm::io::{Block, IoClient, BLOCK_BYTES};
use crate::dm::target::EventRaiser;
use crate::format::{Layout, Superblock};
use crate::intent::IntentTracker;
use crate::mirror::legmask::all_legs;
use crate::region::Geometry;
use crate::table::MAX_LEGS;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::alloc::KVVec;
use kernel::prelude::*;
use kernel::sync::{Mutex, SpinLock};

/// The lock-free side of the write-intent log.
type Tracker = IntentTracker<KVVec<AtomicU64>, KVVec<AtomicU32>>;

/// A bitmap block in memory: the image of its 4 KiB on disk (the header
/// is sealed into the commit buffer when it is written).
pub(crate) type MemBlock = [u8; BLOCK_BYTES];

/// In-memory metadata, under [`MirrorState::meta`].
pub(crate) struct MetaState {
    pub(crate) sb: Superblock,
    /// Epoch of the last superblock change; 0 = nothing to write.
    sb_seq: u64,
    /// Bitmap blocks, `layout.bitmap_blocks()` per bitmap: the fracture
    /// bitmap of leg 0, 1, ..., then the intent bitmap (the on-disk order).
    /// One array (kvmalloc), sized by the number of regions.
    blocks: KVVec<MemBlock>,
    /// Epoch of each block's last change.
    block_seq: KVVec<u64>,
    /// Blocks changed since they were last written.
    dirty: KVVec<bool>,
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

/// The mirror's run-time state: the metadata in memory (under
/// [`MirrorState::meta`]) and its commits, the leg state masks the I/O
/// path reads without the lock, the write-intent tracker, the bios waiting
/// for the threads and the counters. Shared by the target, its threads and
/// message handlers.
#[pin_data]
pub(crate) struct MirrorState {
    #[pin]
    pub(crate) meta: SpinLock<MetaState>,
    /// Serialises commits; holds the buffer blocks are sealed and written from.
    #[pin]
    commit: Mutex<Block>,
    /// The buffer bitmaps are read through at load, many blocks at a time
    /// (taken under `commit`).
    #[pin]
    load_buf: Mutex<Block>,
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
    /// is seen failing. Set only by [`MirrorState::load`] and
    /// [`MirrorState::complete_recovered`].
    readable: AtomicU32,
    /// Host writes in flight and the intent bits known durable.
    intent: Tracker,
    /// `nointent`: no region is ever marked; the superblock's clean flag
    /// is cleared while the table runs instead.
    no_intent: bool,
    /// Serialises [`MirrorState::settle`] and [`MirrorState::set_active`].
    #[pin]
    settle_lock: Mutex<()>,
    /// Resumed and not suspended since: [`MirrorState::settle`] may clear.
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
    /// over, so no copy may clear a bit (see [`MirrorState::failure_pending`]).
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
    /// Regions discarded since the device was activated (handed from table
    /// to table across reloads: `leave_discards`, `take_discards`): their
    /// contents are undefined on every leg (and a leg may not support
    /// discard), so reads of them go to the primary and `verify` does not
    /// compare them.
    discarded: KVVec<AtomicU64>,
    /// The legs' devices, for their late I/O (see [`MirrorState::late_legs`]).
    leg_devts: KVec<DevT>,
    layout: Layout,
    geometry: Geometry,
    nr_legs: u32,
    dev: Dev,
    io: IoClient,
    events: EventRaiser,
}

/// No region (for [`MirrorState::verify_region`]).
const NO_REGION: u64 = u64::MAX;

impl MirrorState {
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

    /// The leg reads are sent to and recovery copies from.
    pub(crate) fn primary(&self) -> u32 {
        self.primary.load(Ordering::Acquire)
    }

    /// Every leg of the table, as a mask.
    fn all_legs(&self) -> u32 {
        all_legs(self.nr_legs)
    }

    /// Raises a dm event. Process context.
    pub(crate) fn raise_event(&self) {
        self.events.raise();
    }

    /// Whether the table keeps no write-intent log (`nointent`).
    pub(crate) fn no_intent(&self) -> bool {
        self.no_intent
    }
}
