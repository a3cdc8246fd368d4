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
//! took it (*failover*, see `Shared::legs_failed_locked`); the write
//! succeeds and the old primary is fractured like a secondary. With no leg
//! to take over, the primary stays, marked `D`, and the writes it fails
//! fail.

mod metadata;
mod recovery;

use crate::dm::bio::{BioKind, BioSet, BlkStatus, FanTarget, Op};
use crate::dm::device::Dev;
use crate::dm::kthread::{now_ns, KThread, ThreadCtx, Waker};
use crate::dm::status::{Emitter, StatusType};
use crate::dm::target::{
    BioStack, CtrError, DeviceVisitor, HeldBio, MapBio, MapResult, Target, TargetCtx,
};
use crate::dm::timed::{flush_many, late_ios, Outcome, TimedSet};
use crate::message::Message;
use crate::region::Geometry;
use crate::table::{find_duplicate, Features, TableArgs};
use core::ffi::c_int;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::c_str;
use kernel::prelude::*;
use kernel::sync::Arc;
use metadata::{legs_of, Refused, Shared};
use recovery::{recovery_thread, Recovery, VerifyRefused, VerifyState};

/// Longest bio the target is given when `io_timeout` is set (dm core
/// splits longer ones): a timed copy of a write holds its own pages, and
/// each leg keeps a reserve of pages for one such bio.
const TIMED_MAX_SECTORS: u32 = 1024;

/// One leg: a device and the bio set its clones come from.
struct Leg {
    /// With `io_timeout`: writes and flushes go to the leg as timed copies
    /// while it is a secondary. First, so that dropping the leg waits for
    /// its late I/Os before the device is put.
    timed: Option<TimedSet>,
    dev: Dev,
    clones: BioSet,
    /// Host reads sent to the leg and not completed yet (read balancing).
    reading: AtomicU32,
    /// Host reads sent to the leg, ever (`stats`).
    reads: AtomicU64,
}

impl Leg {
    /// Timed I/Os to this leg's device that timed out and that it has not
    /// completed yet, sent by this table or an earlier one: nothing else
    /// may be written to the leg (a late write could land on top of it)
    /// until they are done.
    fn late(&self) -> u32 {
        late_ios(self.dev.devt())
    }

    /// Flushes the leg, within `io_timeout` if set. Sleeps.
    fn flush(&self) -> Outcome {
        match &self.timed {
            Some(t) => t.flush(&self.dev),
            None => match self.dev.flush() {
                Ok(()) => Outcome::Ok,
                Err(_) => Outcome::Failed,
            },
        }
    }
}

/// The legs with late I/Os (see [`Leg::late`]).
fn late_legs(legs: &[Leg]) -> u32 {
    legs.iter()
        .enumerate()
        .filter(|(_, l)| l.late() != 0)
        .fold(0, |m, (i, _)| m | 1 << i)
}

/// What the read-retry thread works with.
struct ReadThread {
    shared: Arc<Shared>,
    legs: Arc<KVec<Leg>>,
}

/// What the metadata thread works with.
struct MetaThread {
    shared: Arc<Shared>,
    legs: Arc<KVec<Leg>>,
    /// `intent_delay`: how long a region must go unwritten before its
    /// intent bit is cleared.
    intent_delay_ms: u32,
}

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
    shared: Arc<Shared>,
    legs: Arc<KVec<Leg>>,
    metadata_name: KVec<u8>,
    features: Features,
    /// The metadata is re-read at the first resume (see `Shared::reload`).
    first_resume: AtomicBool,
}

/// What the target keeps with each bio.
#[derive(Default)]
pub(crate) struct PerBio {
    /// Metadata epoch that must be durable before the bio may complete.
    need: AtomicU64,
    /// Legs whose clone failed (set before handing the bio to the thread).
    failed: AtomicU32,
    /// Length of the range counted by `Shared::begin_write` (0: none), and
    /// its start, for `Shared::end_write`.
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
        self.shared.deferred.push_and_wake(bio, &self.waker);
    }
}

/// The legs in `mask`, as fan-out targets; those in `timed` get timed
/// copies if `io_timeout` is set.
fn leg_targets(legs: &[Leg], mask: u32, timed: u32) -> impl Iterator<Item = FanTarget<'_>> {
    legs.iter()
        .enumerate()
        .filter(move |(i, _)| mask & (1 << i) != 0)
        .map(move |(i, leg)| FanTarget {
            dev: &leg.dev,
            set: &leg.clones,
            index: i as u32,
            timed: leg.timed.as_ref().filter(|_| timed & (1 << i) != 0),
        })
}

/// A host read (its per-bio data `pb`) is about to be sent to leg `leg`:
/// counted as in flight there until [`read_done`]. Any context.
fn start_read(legs: &[Leg], pb: &PerBio, leg: u32) {
    if let Some(l) = legs.get(leg as usize) {
        l.reading.fetch_add(1, Ordering::Relaxed);
        l.reads.fetch_add(1, Ordering::Relaxed);
    }
    pb.read_leg.store(leg + 1, Ordering::Relaxed);
    pb.tried.fetch_or(1 << leg, Ordering::Relaxed);
}

/// A read counted by [`start_read`] completed (or failed) on its leg.
fn read_done(legs: &[Leg], pb: &PerBio) {
    let leg = pb.read_leg.swap(0, Ordering::Relaxed);
    if let Some(l) = leg.checked_sub(1).and_then(|l| legs.get(l as usize)) {
        l.reading.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The leg for a host read: of the primary and the secondaries in
/// `others` (see [`Shared::read_legs`]), the one with the fewest reads in
/// flight; the primary on a tie (at queue depth 1 every read goes to it).
fn pick_read_leg(legs: &[Leg], primary: u32, others: u32) -> u32 {
    let in_flight = |l: u32| legs.get(l as usize).map_or(u32::MAX, |l| l.reading.load(Ordering::Relaxed));
    let mut best = (in_flight(primary), primary);
    for l in legs_of(others) {
        let n = in_flight(l);
        if n < best.0 {
            best = (n, l);
        }
    }
    best.1
}

/// Legs that receive a write: those not in `logged` (the fractured ones,
/// whose bitmaps record the write instead). Every one but the primary
/// gets it timed (`io_timeout`); the primary too while timed copies sent
/// to it as a secondary (before a failover or switchover) are in flight
/// or late: an untimed write must not be overtaken by one of them, and a
/// timed one is refused while one is late.
fn write_targets(legs: &[Leg], logged: u32, primary: u32) -> impl Iterator<Item = FanTarget<'_>> {
    let p = legs.get(primary as usize);
    let p_timed = p.is_some_and(|l| l.timed.as_ref().is_some_and(|t| t.busy() || l.late() != 0));
    let untimed = if p_timed { 0 } else { 1u32 << primary };
    leg_targets(legs, !logged, !untimed)
}

/// Sends a write to its legs: discard only to legs that support it
/// (discard promises nothing about the data, so a leg that cannot discard
/// is left as it is and stays in sync).
fn targets_for(legs: &[Leg], kind: BioKind, logged: u32, primary: u32) -> impl Iterator<Item = FanTarget<'_>> {
    write_targets(legs, logged, primary).filter(move |t| kind.op != Op::Discard || t.dev.supports_discard())
}

/// Flushes every leg that gets writes, before intent bits are cleared. A
/// leg that fails is fractured with every region marked (a failed flush
/// may have lost any earlier write; a primary hands over first); if the
/// primary failed, nothing is cleared. Sleeps.
///
/// A secondary that does not complete its flush within `io_timeout` is
/// fractured before this returns (see [`Shared::flush_timed_out`]).
fn flush_legs(shared: &Shared, legs: &[Leg]) -> Result {
    let logged = shared.logged.load(Ordering::SeqCst);
    let primary = shared.primary();
    let mut result = Ok(());
    for (i, leg) in legs.iter().enumerate() {
        if logged & (1 << i) != 0 {
            continue;
        }
        if i as u32 == primary {
            if let Err(e) = leg.dev.flush() {
                shared.note_failed(1 << i);
                crate::dm_err!(
                    "primary leg {} ({}) failed a flush ({:?}): write-intent bits kept",
                    i,
                    leg.dev.name(),
                    e
                );
                result = Err(e);
            }
            continue;
        }
        if leg.timed.is_none() && leg.dev.flush().is_err() {
            shared.note_failed(1 << i);
        }
    }
    // The timed ones all at once: dead legs cost one timeout, not one each.
    let timed = legs
        .iter()
        .enumerate()
        .filter(|&(i, _)| logged & (1 << i) == 0 && i as u32 != primary)
        .filter_map(|(i, leg)| leg.timed.as_ref().map(|t| (t, &leg.dev, i as u32)));
    let (failed, timed_out) = flush_many(timed);
    if failed != 0 {
        shared.note_failed(failed);
    }
    let mut changed = timed_out != 0 && shared.flush_timed_out(timed_out);
    changed |= shared.fracture_noted();
    if changed {
        shared.kick();
    }
    result
}

/// `nointent`: legs fractured by a failure are flushed before the failure
/// is committed, so that what they acknowledged before is durable (the
/// intent bits that would cover it otherwise are not kept). A leg whose
/// flush does not work gets every region marked. Sleeps.
fn flush_fractured(shared: &Shared, legs: &[Leg], fractured: u32) {
    let logged = shared.logged.load(Ordering::SeqCst);
    // Writes still in flight to them are not covered by the flush.
    shared.mark_in_flight(fractured & logged);
    for leg in legs_of(fractured & logged) {
        if legs[leg as usize].flush() != Outcome::Ok {
            shared.note_failed(1 << leg);
        }
    }
}

/// A read failed on the legs it was sent to: it is sent to another in-sync
/// leg, or fails if none is left. Process context (the read-retry thread).
fn retry_read(shared: &Shared, legs: &[Leg], bio: HeldBio<Fracture>) {
    let pb = bio.per_bio();
    let failed = pb.failed.swap(0, Ordering::Relaxed);
    let tried = pb.tried.load(Ordering::Relaxed);
    let n = shared.stats.read_errors.fetch_add(1, Ordering::Relaxed);
    // The first errors, then ever more rarely: a bad disk must not flood
    // the log.
    let say = n < 10 || n.is_power_of_two();
    let from = legs_of(failed).next().unwrap_or(0);
    match shared.read_source(tried) {
        Some(leg) => {
            shared.stats.reads_retried.fetch_add(1, Ordering::Relaxed);
            if say {
                crate::dm_warn!(
                    "leg {} failed a read at sector {} ({} read errors so far): retried on leg {}",
                    from,
                    bio.sector(),
                    n + 1,
                    leg
                );
            }
            start_read(legs, pb, leg);
            bio.fan_out(leg_targets(legs, 1 << leg, 0));
        }
        None => {
            if say {
                crate::dm_err!(
                    "leg {} failed a read at sector {} and no other leg in sync has it: the read fails",
                    from,
                    bio.sector()
                );
            }
            bio.end(BlkStatus::IOERR);
        }
    }
}

/// The read-retry thread: sends reads that failed to another leg.
fn read_thread(t: &ReadThread, ctx: &ThreadCtx) {
    while !ctx.should_stop() {
        ctx.wait(None, || !t.shared.failed_reads.is_empty());
        for bio in t.shared.failed_reads.take_all() {
            retry_read(&t.shared, &t.legs, bio);
        }
    }
}

/// The metadata thread: fractures legs whose writes failed, commits the
/// bitmaps and superblock, then sends the bios that waited for their
/// intent bits and ends those that waited for fracture bits. Every
/// `intent_delay` it clears the intent bits of regions gone quiet.
fn metadata_thread(t: &MetaThread, ctx: &ThreadCtx) {
    let shared = &*t.shared;
    let delay_ns = u64::from(t.intent_delay_ms) * 1_000_000;
    let mut next_settle = now_ns().saturating_add(delay_ns);
    while !ctx.should_stop() {
        let marked = shared.state.lock().intent_count != 0;
        let now = now_ns();
        if !marked {
            next_settle = now.saturating_add(delay_ns);
        }
        let timeout = marked.then(|| {
            u32::try_from(next_settle.saturating_sub(now) / 1_000_000 + 1).unwrap_or(u32::MAX)
        });
        ctx.wait(timeout, || shared.has_work());
        if marked && now_ns() >= next_settle {
            shared.settle(false, || flush_legs(shared, &t.legs));
            next_settle = now_ns().saturating_add(delay_ns);
        }
        let mut changed = shared.take_kick();
        let mut fractured_now = 0u32;
        let batch = BioStack::<Fracture>::default();
        let unsent = BioStack::<Fracture>::default();
        for bio in shared.deferred.take_all() {
            let pb = bio.per_bio();
            let kind = bio.kind();
            if pb.intent_need.load(Ordering::Relaxed) != 0 {
                unsent.push(bio);
                continue;
            }
            let failed = pb.failed.load(Ordering::Relaxed);
            if failed != 0 {
                let sent = !pb.logged.load(Ordering::Relaxed);
                let timed_out = pb.timed_out.load(Ordering::Relaxed);
                // A leg with late I/O may be about to be fractured (its
                // timeout not handled yet): never the one to take over.
                let sent = sent & !late_legs(&t.legs);
                let f = shared.write_failed(failed, timed_out, sent, bio.sector(), bio.sectors(), kind.preflush);
                pb.need.fetch_max(f.need, Ordering::Relaxed);
                pb.error.store(!f.ok, Ordering::Relaxed);
                changed |= f.changed;
                fractured_now |= failed;
                if let Some((s, n)) = pb.take_tracked() {
                    shared.end_write(s, n);
                }
                shared.failure_handled();
            }
            batch.push(bio);
        }
        if shared.no_intent() && fractured_now != 0 {
            flush_fractured(shared, &t.legs, fractured_now);
        }
        changed |= shared.fracture_noted();
        let was_failed = shared.meta_failed.load(Ordering::Acquire);
        shared.commit();
        let meta_failed = shared.meta_failed.load(Ordering::Acquire);
        changed |= !was_failed && meta_failed;
        let committed = shared.committed();
        for bio in unsent.take_all() {
            let pb = bio.per_bio();
            let (sector, sectors) = (bio.sector(), bio.sectors());
            if pb.intent_need.swap(0, Ordering::Relaxed) > committed {
                // The metadata device failed: never sent unmarked.
                if let Some((s, n)) = pb.take_tracked() {
                    shared.end_write(s, n);
                }
                bio.end(BlkStatus::IOERR);
                continue;
            }
            shared.intent_durable(sector, sectors);
            // A leg fractured while the bio was held (a failure, or a
            // split whose message has returned) must not get it.
            let (logged, need) = shared.log_late(pb.logged.load(Ordering::Relaxed), sector, sectors);
            pb.need.fetch_max(need, Ordering::Relaxed);
            pb.logged.store(logged, Ordering::Relaxed);
            let kind = bio.kind();
            bio.fan_out(targets_for(&t.legs, kind, logged, shared.primary()));
        }
        for bio in batch.take_all() {
            let pb = bio.per_bio();
            let ok = !pb.error.load(Ordering::Relaxed) && pb.need.load(Ordering::Relaxed) <= committed;
            bio.end(if ok { BlkStatus::OK } else { BlkStatus::IOERR });
        }
        if changed {
            shared.raise_event();
        }
    }
}

/// Why a device of the table line could not be opened, in words.
fn open_error(e: Error) -> &'static str {
    if e == ENOENT {
        "no such file"
    } else if e == ENOTBLK {
        "not a block device"
    } else if e == ENXIO || e == ENODEV {
        "no such device"
    } else if e == EBUSY {
        "in use (held exclusively by something else)"
    } else if e == EACCES || e == EPERM || e == EROFS {
        "not writable"
    } else if e == EINVAL {
        "not a device path or major:minor"
    } else {
        "error"
    }
}

/// Opens the table line's devices and checks them against each other.
fn open_devices(ti: &mut TargetCtx<'_>, t: &TableArgs<'_>) -> Result<(Dev, KVec<Leg>), CtrError> {
    let metadata = ti.get_device(t.metadata).map_err(|e| {
        crate::dm_err!(
            "cannot open metadata device '{}': {} ({})",
            t.metadata,
            open_error(e),
            e.to_errno()
        );
        CtrError {
            reason: c_str!("cannot open metadata device"),
            errno: e,
        }
    })?;
    let mut legs = KVec::with_capacity(t.legs().len(), GFP_KERNEL)?;
    for (i, name) in t.legs().iter().enumerate() {
        let dev = ti.get_device(name).map_err(|e| {
            crate::dm_err!(
                "cannot open leg {} device '{}': {} ({})",
                i,
                name,
                open_error(e),
                e.to_errno()
            );
            CtrError {
                reason: c_str!("cannot open leg device"),
                errno: e,
            }
        })?;
        if dev.nr_sectors() < ti.len() {
            crate::dm_err!(
                "leg {} ({}) has {} sectors, smaller than the target's {}",
                i,
                dev.name(),
                dev.nr_sectors(),
                ti.len()
            );
            return Err(CtrError::inval(c_str!("leg device too small")));
        }
        let timed = match t.features.io_timeout {
            0 => None,
            ms => Some(TimedSet::new(
                u32::try_from(ms).unwrap_or(u32::MAX),
                TIMED_MAX_SECTORS * 512,
            )?),
        };
        legs.push(
            Leg {
                timed,
                dev,
                clones: BioSet::new()?,
                reading: AtomicU32::new(0),
                reads: AtomicU64::new(0),
            },
            GFP_KERNEL,
        )?;
    }

    let mut devts = KVec::with_capacity(legs.len() + 1, GFP_KERNEL)?;
    for leg in legs.iter() {
        devts.push(leg.dev.devt(), GFP_KERNEL)?;
    }
    if let Some((a, b)) = find_duplicate(&devts) {
        crate::dm_err!("legs {} and {} are the same device {}", a, b, devts[a]);
        return Err(CtrError::inval(c_str!("duplicate leg device")));
    }
    if let Some(i) = devts.iter().position(|d| *d == metadata.devt()) {
        crate::dm_err!("leg {} is the metadata device {}", i, metadata.devt());
        return Err(CtrError::inval(c_str!("leg is the metadata device")));
    }
    Ok((metadata, legs))
}

impl Target for Fracture {
    type PerBio = PerBio;

    const NAME: &'static CStr = c_str!("fracture");
    const VERSION: [u32; 3] = [0, 6, 0];

    fn new(ti: &mut TargetCtx<'_>, args: &[&CStr]) -> Result<KBox<Self>, CtrError> {
        let mut words = KVec::with_capacity(args.len(), GFP_KERNEL)?;
        for (i, a) in args.iter().enumerate() {
            let Ok(w) = a.to_str() else {
                crate::dm_err!("argument {} is not valid UTF-8", i + 1);
                return Err(CtrError::inval(c_str!("invalid argument")));
            };
            words.push(w, GFP_KERNEL)?;
        }
        let t = TableArgs::parse(&words).map_err(|e| {
            crate::dm_err!("{}", e);
            CtrError::inval(c_str!("invalid table line"))
        })?;
        let geometry = Geometry::new(ti.len(), t.region_sectors).map_err(|e| {
            crate::dm_err!("invalid region_size {}: {}", t.region_sectors, e);
            CtrError::inval(c_str!("invalid region size"))
        })?;
        if ti.is_empty() {
            crate::dm_err!("target length is zero");
            return Err(CtrError::inval(c_str!("zero length")));
        }
        let (metadata, legs) = open_devices(ti, &t)?;
        if t.features.io_timeout != 0 {
            // A timed copy holds its own pages: keep bios small.
            ti.set_max_io_len(TIMED_MAX_SECTORS).map_err(|e| {
                crate::dm_err!("cannot cap the I/O size for io_timeout (error {})", e.to_errno());
                CtrError::from(e)
            })?;
        }
        let mut metadata_name = KVec::new();
        metadata_name.extend_from_slice(metadata.name().as_bytes(), GFP_KERNEL)?;
        let n = legs.len() as u32;
        let legs = Arc::new(legs, GFP_KERNEL)?;
        let shared = Shared::open(
            metadata,
            geometry,
            n,
            t.features.nosync,
            t.features.no_intent,
            ti.event_raiser(),
        )?;
        let meta = Arc::new(
            MetaThread {
                shared: shared.clone(),
                legs: legs.clone(),
                intent_delay_ms: u32::try_from(t.features.intent_delay_ms()).unwrap_or(u32::MAX),
            },
            GFP_KERNEL,
        )?;
        let thread = KThread::spawn(kernel::fmt!("kfracture"), meta, metadata_thread)?;
        let waker = thread.waker();
        let reads = Arc::new(
            ReadThread {
                shared: shared.clone(),
                legs: legs.clone(),
            },
            GFP_KERNEL,
        )?;
        let read_thread = KThread::spawn(kernel::fmt!("kfracture_rd"), reads, read_thread)?;
        let read_waker = read_thread.waker();
        let recovery = Recovery::new(
            shared.clone(),
            legs.clone(),
            t.features.recovery_rate,
            t.features.probe_interval,
        )?;
        let rec_thread = KThread::spawn(
            kernel::fmt!("kfracture_rec"),
            recovery.clone(),
            recovery_thread,
        )?;
        let rec_waker = rec_thread.waker();

        // One bio each: `map` fans them out to the legs itself.
        ti.set_num_flush_bios(1);
        ti.set_num_discard_bios(1);
        ti.set_num_write_zeroes_bios(1);

        Ok(KBox::new(
            Self {
                _recovery_thread: rec_thread,
                rec_waker,
                recovery,
                _thread: thread,
                waker,
                _read_thread: read_thread,
                read_waker,
                shared,
                legs,
                metadata_name,
                features: t.features,
                first_resume: AtomicBool::new(true),
            },
            GFP_KERNEL,
        )?)
    }

    fn map(&self, bio: MapBio<'_, Self>) -> MapResult {
        let kind = bio.kind();
        if self.shared.no_source.load(Ordering::Relaxed) {
            // No leg is known to hold every acknowledged write.
            return bio.end(BlkStatus::IOERR);
        }
        match kind.op {
            // Remapped (no clone); if it fails it comes back to
            // `fanout_done` as it was here and is sent again to another leg
            // (see `retry_read`). Balanced over the legs that hold every
            // acknowledged write of its range.
            Op::Read => {
                let primary = self.shared.primary();
                // Reads are not timed: with `io_timeout` (remote legs that
                // may stop answering) they stay on the primary.
                let others = if self.features.read_primary || self.features.io_timeout != 0 {
                    0
                } else {
                    self.shared.read_legs(bio.sector(), bio.sectors())
                };
                let leg = pick_read_leg(&self.legs, primary, others);
                let Some(l) = self.legs.get(leg as usize) else {
                    return bio.end(BlkStatus::IOERR);
                };
                start_read(&self.legs, bio.per_bio(), leg);
                bio.remap_retryable(&l.dev, leg)
            }
            // An empty flush (dm core strips REQ_PREFLUSH from data bios):
            // every leg that gets writes gets it.
            Op::Write if kind.preflush => {
                let logged = self.shared.logged.load(Ordering::Acquire);
                bio.per_bio().logged.store(logged, Ordering::Relaxed);
                bio.fan_out(write_targets(&self.legs, logged, self.shared.primary()))
            }
            Op::Write | Op::Discard | Op::WriteZeroes => {
                let (sector, sectors) = (bio.sector(), bio.sectors());
                let start = match self.shared.begin_write(sector, sectors, true) {
                    Ok(v) => v,
                    // Cannot be logged: fail it rather than acknowledge a
                    // write some leg silently misses.
                    Err(_) => return bio.end(BlkStatus::IOERR),
                };
                if kind.op == Op::Discard {
                    // What the legs hold there is undefined from now on.
                    self.shared.note_discard(sector, sectors);
                }
                let pb = bio.per_bio();
                pb.need.store(start.need, Ordering::Relaxed);
                pb.logged.store(start.logged, Ordering::Relaxed);
                pb.track(sector, sectors);
                if start.intent_need > self.shared.committed() {
                    // Its intent bits are not on disk yet: the metadata
                    // thread sends it after the commit.
                    pb.intent_need.store(start.intent_need, Ordering::Relaxed);
                    let (held, result) = bio.hold();
                    self.defer(held);
                    return result;
                }
                if start.intent_need != 0 {
                    self.shared.intent_durable(sector, sectors);
                }
                bio.fan_out(targets_for(&self.legs, kind, start.logged, self.shared.primary()))
            }
            Op::Other(_) => bio.end(BlkStatus::NOTSUPP),
        }
    }

    fn fanout_done(&self, bio: HeldBio<Self>, failed: u32, timed_out: u32) {
        let pb = bio.per_bio();
        let kind = bio.kind();
        if kind.op == Op::Read {
            read_done(&self.legs, pb);
        }
        // Discard promises nothing about the data: a leg that fails one
        // still has valid contents (as for a leg that cannot discard). But
        // one still in flight may land after a later write: a leg where it
        // timed out is fractured.
        let failed = if kind.op == Op::Discard {
            failed & timed_out
        } else {
            failed
        };
        pb.timed_out.store(timed_out & failed, Ordering::Relaxed);
        if failed == 0 {
            if let Some((sector, sectors)) = pb.take_tracked() {
                self.shared.end_write(sector, sectors);
            }
            if kind.op == Op::Read || pb.need.load(Ordering::Relaxed) <= self.shared.committed() {
                bio.end(BlkStatus::OK);
                return;
            }
        } else if kind.op != Op::Read {
            // No read goes to the failed legs from now on.
            self.shared.not_readable(failed);
            // Still counted as in flight until the thread has logged the
            // failure (and failed over): neither a copy nor an intent
            // clear may treat its regions as settled before that.
            self.shared.failure_seen();
        }
        pb.failed.store(failed, Ordering::Relaxed);
        if kind.op == Op::Read {
            self.shared.failed_reads.push_and_wake(bio, &self.read_waker);
            return;
        }
        // A failed leg (the thread fractures it or fails over), or log bits
        // still to commit.
        self.defer(bio);
    }

    fn end_io(&self, kind: BioKind, pb: &PerBio, _status: &mut BlkStatus) {
        // A remapped read that completed (a failed one, or one sent again
        // to another leg, went through `fanout_done`, which counted it).
        if kind.op == Op::Read {
            read_done(&self.legs, pb);
        }
    }

    fn status(&self, kind: StatusType, out: &mut Emitter<'_>) {
        // The emitter truncates like DMEMIT; errors cannot happen.
        let _ = match kind {
            StatusType::Info => self.status_info(out),
            StatusType::Table => self.status_table(out),
            StatusType::Ima => Ok(()),
        };
    }

    fn message(&self, args: &[&CStr], out: &mut Emitter<'_>) -> Result {
        let mut words = [""; 4];
        if args.len() > words.len() {
            crate::dm_err!("message has too many words ({})", args.len());
            return Err(EINVAL);
        }
        for (w, a) in words.iter_mut().zip(args) {
            *w = a.to_str().map_err(|_| EINVAL)?;
        }
        let msg = Message::parse(&words[..args.len()], self.nr_legs() as u32).map_err(|e| {
            crate::dm_err!("{}", e);
            EINVAL
        })?;
        if let Message::Rejoin(leg) | Message::Rebuild(leg) | Message::Primary(leg) = msg {
            // Its late writes could land on top of the copies.
            let late = self.legs[leg as usize].late();
            if late != 0 {
                crate::dm_err!(
                    "leg {} has {} late I/Os (timed out, not completed by its device yet): try again once they are done (late_ios in stats)",
                    leg,
                    late
                );
                return Err(EBUSY);
            }
        }
        match msg {
            Message::Fracture(leg) => {
                match self.shared.fracture(leg) {
                    Ok(()) => {}
                    Err(Refused::Primary) => {
                        crate::dm_err!("cannot fracture leg {}: it is the primary", leg);
                        return Err(EINVAL);
                    }
                    Err(Refused::State(state)) => {
                        crate::dm_err!(
                            "cannot fracture leg {}: it is {}, not in sync or recovering",
                            leg,
                            state.name()
                        );
                        return Err(EINVAL);
                    }
                }
                // What the leg acknowledged so far must survive its power
                // loss: the host's later flushes no longer reach it. If the
                // flush fails, any earlier write may be lost: every region
                // is marked. If it only times out, the regions with
                // writes in flight (the intent bits) are marked already.
                // Without the log, the regions of writes in flight (they
                // may complete after the flush) are marked first.
                if self.shared.no_intent() {
                    self.shared.mark_in_flight(1 << leg);
                }
                match self.legs[leg as usize].flush() {
                    Outcome::Ok => {}
                    // Without an intent log nothing marks what it may not
                    // have made durable.
                    Outcome::TimedOut if self.shared.no_intent() => {
                        crate::dm_warn!(
                            "leg {} did not complete the flush that ends its in-sync life within io_timeout (nointent): every region marked out of sync",
                            leg
                        );
                        self.shared.note_failed(1 << leg);
                        self.shared.fracture_noted();
                    }
                    Outcome::Failed => {
                        crate::dm_warn!(
                            "leg {} failed the flush that ends its in-sync life: every region marked out of sync",
                            leg
                        );
                        self.shared.note_failed(1 << leg);
                        self.shared.fracture_noted();
                    }
                    Outcome::TimedOut => crate::dm_warn!(
                        "leg {} did not complete the flush that ends its in-sync life within io_timeout: its recent writes may not be durable (their regions are marked)",
                        leg
                    ),
                }
                self.commit_change(leg, "fractured")?;
                crate::dm_info!(
                    "leg {} ({}) fractured on request: it keeps its current contents, changes are logged",
                    leg,
                    self.legs[leg as usize].dev.name()
                );
                Ok(())
            }
            Message::Rejoin(leg) => match self.shared.rejoin(leg) {
                Err(Refused::Primary) if self.shared.primary_repaired() => {
                    crate::dm_warn!(
                        "leg {} ({}): the primary is taken as working again (D cleared); a new failure marks it D again",
                        leg,
                        self.legs[leg as usize].dev.name()
                    );
                    // A recovery stopped by its read errors starts again.
                    self.recovery.kick(&self.rec_waker, self.shared.recovering.load(Ordering::SeqCst));
                    self.shared.raise_event();
                    Ok(())
                }
                Err(Refused::Primary) => {
                    crate::dm_err!("cannot rejoin leg {}: it is the primary", leg);
                    Err(EINVAL)
                }
                Err(Refused::State(_)) => {
                    crate::dm_err!("leg {} is already in sync", leg);
                    Err(EINVAL)
                }
                Ok(changed) => {
                    if changed {
                        self.commit_change(leg, "rejoined")?;
                    }
                    let to_copy = self.shared.state.lock().counts[leg as usize];
                    self.recovery.kick(&self.rec_waker, 1 << leg);
                    crate::dm_info!(
                        "leg {} ({}) {}: {} regions to copy from the primary",
                        leg,
                        self.legs[leg as usize].dev.name(),
                        if changed {
                            "rejoined"
                        } else {
                            "already recovering, restarted"
                        },
                        to_copy
                    );
                    Ok(())
                }
            },
            Message::Rebuild(leg) => {
                if self.shared.rebuild(leg).is_err() {
                    crate::dm_err!("cannot rebuild leg {}: it is the primary", leg);
                    return Err(EINVAL);
                }
                self.commit_change(leg, "set for rebuild")?;
                self.recovery.kick(&self.rec_waker, 1 << leg);
                crate::dm_info!(
                    "leg {} ({}): full rebuild from the primary started",
                    leg,
                    self.legs[leg as usize].dev.name()
                );
                Ok(())
            }
            Message::Primary(leg) => match self.shared.set_primary(leg) {
                Ok(false) => Ok(()),
                Ok(true) => {
                    self.commit_change(leg, "made the primary")?;
                    crate::dm_info!(
                        "leg {} ({}) is the primary now, on request",
                        leg,
                        self.legs[leg as usize].dev.name()
                    );
                    Ok(())
                }
                Err(r) => {
                    let state = match r {
                        Refused::State(s) => s.name(),
                        Refused::Primary => "the primary",
                    };
                    crate::dm_err!(
                        "cannot make leg {} the primary: it is {}, not in sync with every acknowledged write",
                        leg,
                        state
                    );
                    Err(EINVAL)
                }
            },
            Message::RecoveryRate(rate) => {
                self.recovery.rate.store(rate, Ordering::Relaxed);
                self.recovery.kick(&self.rec_waker, 0);
                Ok(())
            }
            Message::Verify { leg, check } => {
                let asked = leg.map_or((1u32 << self.nr_legs()) - 1, |l| 1 << l);
                let legs = self.shared.in_sync_secondaries(asked);
                if let Some(l) = leg.filter(|_| legs == 0) {
                    let (state, primary) = self.shared.leg_state(l);
                    if primary {
                        crate::dm_err!(
                            "cannot verify leg {}: it is the primary (verify compares the secondaries with it)",
                            l
                        );
                    } else {
                        crate::dm_err!(
                            "cannot verify leg {}: it is {}, not in sync (recovery copies what it lacks)",
                            l,
                            state.name()
                        );
                    }
                    return Err(EINVAL);
                }
                if legs == 0 {
                    crate::dm_err!("cannot verify: no secondary is in sync");
                    return Err(EINVAL);
                }
                let regions = self.shared.geometry().nr_regions();
                match self.recovery.start_verify(&self.rec_waker, legs, regions, check) {
                    Ok(()) => Ok(()),
                    Err(VerifyRefused::Running(p)) => {
                        crate::dm_err!(
                            "a {} of legs {:#x} is running: wait for it, or stop it with `verify cancel`",
                            p.name(),
                            p.legs
                        );
                        Err(EBUSY)
                    }
                    Err(VerifyRefused::NotRunning) => Err(EINVAL),
                }
            }
            Message::VerifyCancel => match self.recovery.cancel_verify(&self.rec_waker) {
                Ok(p) => {
                    crate::dm_info!(
                        "{} of legs {:#x} cancelled: {} of {} leg-regions compared, {} differed ({})",
                        p.name(),
                        p.legs,
                        p.done,
                        p.total,
                        p.mismatches,
                        if p.check {
                            "nothing was marked"
                        } else {
                            "they stay marked out of sync"
                        }
                    );
                    Ok(())
                }
                Err(_) => {
                    crate::dm_err!("no verify is running");
                    Err(EINVAL)
                }
            },
            Message::Stats => {
                let s = &self.shared.stats;
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                // The emitter truncates; a short reply is all that can go
                // wrong.
                let _ = write!(
                    out,
                    "regions_copied={} copies_redone={} copy_read_errors={} copy_write_errors={} probes={} probes_ok={} metadata_writes={} host_writes={} read_errors={} reads_retried={} io_timeouts={} late_ios={}",
                    get(&s.regions_copied),
                    get(&s.copies_redone),
                    get(&s.copy_read_errors),
                    get(&s.copy_write_errors),
                    get(&s.probes),
                    get(&s.probes_ok),
                    get(&s.metadata_writes),
                    get(&self.shared.host_writes),
                    get(&s.read_errors),
                    get(&s.reads_retried),
                    self.legs.iter().filter_map(|l| l.timed.as_ref()).map(TimedSet::timeouts).sum::<u64>(),
                    self.legs.iter().map(|l| u64::from(l.late())).sum::<u64>(),
                );
                // Host reads sent to each leg, leg 0 first.
                for (i, l) in self.legs.iter().enumerate() {
                    let _ = write!(out, "{}{}", if i == 0 { " reads=" } else { "," }, get(&l.reads));
                }
                Ok(())
            }
        }
    }

    fn presuspend(&self) {
        // No copy may run while suspended (the table may be replaced).
        self.recovery.pause(&self.rec_waker);
    }

    fn postsuspend(&self) {
        // Nothing is in flight: after a flush of the legs every intent bit
        // can go, so a clean shutdown resyncs nothing.
        self.shared.settle(true, || flush_legs(&self.shared, &self.legs));
        let ok = self.shared.commit().seq.is_some();
        let left = self.shared.state.lock().intent_count;
        if ok && left != 0 {
            crate::dm_warn!(
                "suspend: {} write-intent bits kept (a leg flush failed); those regions are resynced at the next activation",
                left
            );
        }
        // Without an intent log, the clean flag says the legs agree: set
        // once what they acknowledged is durable.
        if self.shared.no_intent() {
            match flush_legs(&self.shared, &self.legs) {
                Ok(()) => {
                    if !self.shared.set_clean(true) {
                        crate::dm_warn!(
                            "suspend: cannot mark the metadata clean; every region is resynced at the next activation"
                        );
                    }
                }
                Err(_) => crate::dm_warn!(
                    "suspend: the primary failed a flush; every region is resynced at the next activation"
                ),
            }
        }
        // Until the next resume, nothing is cleared: a table replacing this
        // one owns the metadata from its first resume.
        self.shared.set_active(false);
    }

    fn presuspend_undo(&self) {
        self.recovery.unpause(&self.rec_waker);
    }

    fn preresume(&self) -> Result {
        // Only the first resume: later, memory is what was committed. A
        // failed load is tried again at the next resume.
        let first = self.first_resume.load(Ordering::Acquire);
        if first {
            self.shared.load(true).map_err(|e| e.errno)?;
            self.first_resume.store(false, Ordering::Release);
        }
        // Without an intent log, nothing says which regions writes are in
        // flight to: the metadata says "not clean" before any is sent.
        if self.shared.no_intent() && !self.shared.set_clean(false) {
            crate::dm_err!("resume: cannot mark the metadata in use (nointent): refusing to resume");
            return Err(EIO);
        }
        // Resuming with the legs present retries the failed ones.
        let late = late_legs(&self.legs);
        let legs = self.shared.rejoin_failed(late);
        if late != 0 {
            crate::dm_warn!(
                "resume: legs {:#x} still have late I/Os: not rejoined (rejoin or probe_interval once they are done)",
                late
            );
        }
        if legs != 0 {
            crate::dm_info!(
                "resume: legs {:#x}, fractured by a failure, start recovery",
                legs
            );
            self.recovery.kick(&self.rec_waker, legs);
        }
        self.recovery.stalled.store(0, Ordering::SeqCst);
        self.shared.set_active(true);
        // The thread commits and raises an event for what changed (the
        // activation, legs rejoined); a plain resume raises none.
        if first || legs != 0 {
            self.shared.kick();
        }
        self.waker.wake();
        Ok(())
    }

    fn resume(&self) {
        self.recovery.unpause(&self.rec_waker);
    }

    fn iterate_devices(&self, visit: &mut DeviceVisitor<'_>) -> c_int {
        for leg in self.legs.iter() {
            let r = visit.visit(&leg.dev, 0, self.shared.geometry().len());
            if r != 0 {
                return r;
            }
        }
        0
    }
}

impl Fracture {
    /// Commits a leg state change made by a message and raises the event.
    fn commit_change(&self, leg: u32, what: &str) -> Result {
        let ok = self.shared.commit().seq.is_some();
        self.shared.raise_event();
        if !ok {
            crate::dm_err!(
                "leg {} {} in memory but the metadata write failed",
                leg,
                what
            );
            return Err(EIO);
        }
        Ok(())
    }

    /// `<nr_legs> <health> <primary_leg> <in_sync>/<regions>... <intent_regions>
    /// <recovery> <metadata_state> <verify>`.
    fn status_info(&self, out: &mut Emitter<'_>) -> core::fmt::Result {
        let n = self.nr_legs();
        let regions = self.shared.geometry().nr_regions();
        let primary_failed = self.shared.primary_failed.load(Ordering::Acquire);
        let st = self.shared.state.lock();
        let primary = st.sb.primary_leg as usize;
        write!(out, "{} ", n)?;
        for i in 0..n {
            let c = if i == primary && primary_failed {
                'D'
            } else {
                st.sb.leg(i as u32).state.health_char()
            };
            out.write_char(c)?;
        }
        write!(out, " {}", st.sb.primary_leg)?;
        for i in 0..n {
            write!(out, " {}/{}", regions.saturating_sub(st.counts[i]), regions)?;
        }
        let recovering = self.shared.recovering.load(Ordering::Acquire);
        let left: u64 = (0..n)
            .filter(|i| recovering & (1 << i) != 0)
            .map(|i| st.counts[i])
            .sum();
        let done = st.recovered;
        let intent = st.intent_count;
        drop(st);
        write!(out, " {} ", intent)?;
        if recovering == 0 {
            out.write_str("idle")?;
        } else {
            let stalled = self.recovery.stalled.load(Ordering::Acquire) & recovering;
            out.write_str(if stalled != 0 { "stalled:" } else { "recovering:" })?;
            let mut first = true;
            for i in 0..n {
                if recovering & (1 << i) != 0 {
                    write!(out, "{}{}", if first { "" } else { "," }, i)?;
                    first = false;
                }
            }
            write!(out, ":{}/{}", done, done + left)?;
        }
        let meta = if self.shared.meta_failed.load(Ordering::Acquire) {
            "fail"
        } else {
            "rw"
        };
        write!(out, " {}", meta)?;
        let v = self.recovery.verify_progress();
        let state = match (v.state, v.check) {
            (VerifyState::None, _) => return out.write_str(" -"),
            (VerifyState::Running, false) => "verifying",
            (VerifyState::Running, true) => "checking",
            (VerifyState::Done, false) => "verified",
            (VerifyState::Done, true) => "checked",
            (VerifyState::Cancelled, _) => "cancelled",
        };
        write!(out, " {}:", state)?;
        let mut first = true;
        for i in 0..n {
            if v.legs & (1 << i) != 0 {
                write!(out, "{}{}", if first { "" } else { "," }, i)?;
                first = false;
            }
        }
        write!(out, ":{}/{}:{}:{}", v.done, v.total, v.mismatches, v.skipped)
    }

    /// The table line, devices as `major:minor`.
    fn status_table(&self, out: &mut Emitter<'_>) -> core::fmt::Result {
        let meta = core::str::from_utf8(&self.metadata_name).unwrap_or("?");
        write!(
            out,
            "{} {} {}",
            meta,
            self.shared.geometry().region_sectors(),
            self.nr_legs()
        )?;
        for leg in self.legs.iter() {
            write!(out, " {}", leg.dev.name())?;
        }
        // The rate as it is now: a `recovery_rate` message survives a
        // reload of the printed line.
        let mut features = self.features;
        features.recovery_rate = self.recovery.rate.load(Ordering::Relaxed);
        if !features.is_default() {
            write!(out, " {}", features.nr_words())?;
            features.write(out)?;
        }
        Ok(())
    }
}
