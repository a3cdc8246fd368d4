// SPDX-License-Identifier: GPL-2.0

//! The `fracture` target: a primary and 1..8 secondary legs kept identical
//! by synchronous mirroring.
//!
//! Writes go to every in-sync or recovering leg at once and complete when
//! all legs have answered; reads go to the in-sync leg with the fewest
//! reads in flight (the primary on a tie, or always with `read_primary`),
//! and are retried on another in-sync leg if it fails them. A secondary that fails a
//! write, or is split with the `fracture` message, becomes *fractured*: it
//! gets no more writes and every region written from then on is set in its
//! fracture bitmap on the metadata device, durably before the host's write
//! completes (see `metadata`). A rejoined leg is *recovering*: the recovery
//! thread (see `recovery`) copies its set regions from the primary. Flushes,
//! discards and write-zeroes are fanned out like writes, so that a leg that
//! fails one is fractured durably before the host's bio completes.
//!
//! A primary that fails a write hands over to the lowest in-sync leg that
//! took it (*failover*, see `MirrorState::legs_failed_locked` in `metadata`); the write
//! succeeds and the old primary is fractured like a secondary. With no leg
//! to take over, the primary stays, marked `D`, and the writes it fails
//! fail.
//!
//! This file holds the target's state ([`Fracture`], [`PerBio`]); the rest is
//! split by concern:
//!
//! - `target`: the dm callbacks (construction, `map`, completions, suspend
//!   and resume);
//! - `legs`: the legs, opening them, choosing where a bio goes, flushing;
//! - `threads`: the metadata thread and the read-retry thread;
//! - `message` and `status`: `dmsetup message` and `dmsetup status`/`table`;
//! - `metadata`: the run-time metadata and its commits;
//! - `recovery`: the recovery thread (copies, probes, `verify`).

mod legmask;
mod legs;
mod message;
mod metadata;
mod recovery;
mod status;
mod target;
mod threads;

use crate::dm::held::HeldBio;
use crate::dm::kthread::{KThread, Waker};
use crate::table::Features;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::sync::Arc;
use legs::Leg;
use metadata::MirrorState;
use recovery::Recovery;
use threads::{MetaThread, ReadThread};

/// A `fracture` target instance.
pub(crate) struct Fracture {
    /// Copies regions to recovering legs. Declared first so that it is
    /// stopped (with no copy in flight) before the rest is dropped.
    _recovery_thread: KThread<Recovery>,
    rec_waker: Waker,
    recovery: Arc<Recovery>,
    /// Commits metadata, sends bios that wait for their intent bits and ends
    /// bios that wait for fracture bits.
    _thread: KThread<MetaThread>,
    waker: Waker,
    /// Sends failed reads to another leg. Its own thread, so that a read
    /// does not wait behind the metadata thread (which may be flushing the
    /// very disk that failed it).
    _read_thread: KThread<ReadThread>,
    read_waker: Waker,
    mirror: Arc<MirrorState>,
    legs: Arc<KVec<Leg>>,
    metadata_name: KVec<u8>,
    features: Features,
    /// The metadata is re-read at the first resume (see `MirrorState::load`).
    first_resume: AtomicBool,
}

/// What the target keeps with each bio.
#[derive(Default)]
pub(crate) struct PerBio {
    /// Metadata epoch that must be durable before the bio may complete.
    need: AtomicU64,
    /// Legs whose clone failed (set before handing the bio to the thread).
    failed: AtomicU32,
    /// Length of the range counted by `MirrorState::begin_write` (0: none), and
    /// its start, for `MirrorState::end_write`.
    tracked_sectors: AtomicU64,
    tracked_sector: AtomicU64,
    /// Held until this metadata epoch is durable (its intent bits), then
    /// sent to the legs not in `logged`; 0 once sent.
    intent_need: AtomicU64,
    /// Legs the write was not sent to (fractured ones).
    logged: AtomicU32,
    /// The write failed on the primary and no leg could take over.
    error: AtomicBool,
    /// Legs a read was sent to so far.
    tried: AtomicU32,
    /// The leg a read is in flight on, plus one (0: none).
    read_leg: AtomicU32,
    /// Legs whose clone failed by not completing within `io_timeout`.
    timed_out: AtomicU32,
}

impl PerBio {
    fn track(&self, sector: u64, sectors: u64) {
        self.tracked_sector.store(sector, Ordering::Relaxed);
        self.tracked_sectors.store(sectors, Ordering::Relaxed);
    }

    /// The counted range, once.
    fn take_tracked(&self) -> Option<(u64, u64)> {
        match self.tracked_sectors.swap(0, Ordering::Relaxed) {
            0 => None,
            n => Some((self.tracked_sector.load(Ordering::Relaxed), n)),
        }
    }
}

impl Fracture {
    fn nr_legs(&self) -> usize {
        self.legs.len()
    }

    /// Hands a bio to the metadata thread.
    fn defer(&self, bio: HeldBio<Self>) {
        self.mirror.deferred.push_and_wake(bio, &self.waker);
    }
}
