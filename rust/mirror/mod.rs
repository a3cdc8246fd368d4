// SPDX-License-Identifier: GPL-2.0

//! The `fracture` target: a primary and 1..8 secondary legs kept identical
//! by synchronous mirroring.
//!
//! Writes go to every in-sync leg at once and complete when all legs have
//! answered; reads go to the primary. A secondary that fails a write, or is
//! split with the `fracture` message, becomes *fractured*: it gets no more
//! writes and every region written from then on is set in its fracture
//! bitmap on the metadata device, durably before the host's write completes
//! (see `metadata`). Flushes, discards and write-zeroes are duplicated by dm
//! core, one copy per leg (`num_*_bios = nr_legs`).

mod metadata;

use crate::dm::bio::{BioKind, BioSet, BlkStatus, FanTarget, Op};
use crate::dm::device::Dev;
use crate::dm::kthread::{KThread, ThreadCtx, Waker};
use crate::dm::status::{Emitter, StatusType};
use crate::dm::target::{
    BioStack, CtrError, DeviceVisitor, HeldBio, MapBio, MapResult, Target, TargetCtx,
};
use crate::format::LegState;
use crate::message::Message;
use crate::region::Geometry;
use crate::table::{find_duplicate, Features, TableArgs};
use core::ffi::c_int;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::c_str;
use kernel::prelude::*;
use kernel::sync::Arc;
use metadata::Shared;

/// One leg: a device and the bio set its clones come from.
struct Leg {
    dev: Dev,
    clones: BioSet,
}

/// A `fracture` target instance.
pub(crate) struct Fracture {
    /// Commits metadata and ends bios that wait for it. Declared first so
    /// that it is stopped before the rest is dropped.
    _thread: KThread<Shared>,
    waker: Waker,
    shared: Arc<Shared>,
    legs: KVec<Leg>,
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
}

impl Fracture {
    fn nr_legs(&self) -> usize {
        self.legs.len()
    }

    /// Legs that receive a write: the primary always (its failure fails the
    /// write), the secondaries not in `logged` (those out of sync, whose
    /// bitmaps record the write instead).
    fn write_targets(&self, logged: u32) -> impl Iterator<Item = FanTarget<'_>> {
        self.legs
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i == 0 || logged & (1 << i) == 0)
            .map(|(i, leg)| FanTarget {
                dev: &leg.dev,
                set: &leg.clones,
                index: i as u32,
            })
    }

    /// Hands a bio to the metadata thread.
    fn defer(&self, bio: HeldBio<Self>) {
        self.shared.deferred.push(bio);
        self.waker.wake();
    }

    fn primary_failed(&self, what: &str) {
        if !self.shared.primary_failed.swap(true, Ordering::AcqRel) {
            crate::dm_err!(
                "primary leg 0 ({}) failed a {}; marked D",
                self.legs[0].dev.name(),
                what
            );
            self.shared.kick();
            self.waker.wake();
        }
    }

    /// A secondary failed a flush, discard or write-zeroes outside the
    /// write path: fracture it. Any context: the thread does the work.
    fn secondary_failed(&self, leg: usize) {
        if self.shared.out_of_sync.load(Ordering::Acquire) & (1 << leg) == 0 {
            self.shared.note_failed(1 << leg);
            self.waker.wake();
        }
    }
}

/// The metadata thread: fractures legs whose writes failed, commits the
/// bitmaps and superblock, then ends the bios that waited for it.
fn metadata_thread(shared: &Shared, ctx: &ThreadCtx) {
    while !ctx.should_stop() {
        ctx.wait(None, || shared.has_work());
        let mut changed = shared.take_kick();
        let batch = BioStack::<Fracture>::default();
        for bio in shared.deferred.take_all() {
            let pb = bio.per_bio();
            let failed = pb.failed.load(Ordering::Relaxed);
            if failed & !1 != 0 {
                let (need, ch) = shared.leg_write_failed(failed & !1, bio.sector(), bio.sectors());
                pb.need.fetch_max(need, Ordering::Relaxed);
                changed |= ch;
            }
            batch.push(bio);
        }
        changed |= shared.fracture_noted();
        let was_failed = shared.meta_failed.load(Ordering::Acquire);
        shared.commit();
        changed |= !was_failed && shared.meta_failed.load(Ordering::Acquire);
        let committed = shared.committed();
        for bio in batch.take_all() {
            let pb = bio.per_bio();
            let ok = pb.failed.load(Ordering::Relaxed) & 1 == 0
                && pb.need.load(Ordering::Relaxed) <= committed;
            bio.end(if ok { BlkStatus::OK } else { BlkStatus::IOERR });
        }
        if changed {
            shared.raise_event();
        }
    }
}

/// Opens the table line's devices and checks them against each other.
fn open_devices(ti: &mut TargetCtx<'_>, t: &TableArgs<'_>) -> Result<(Dev, KVec<Leg>), CtrError> {
    let metadata = ti.get_device(t.metadata).map_err(|e| {
        crate::dm_err!(
            "cannot open metadata device '{}' (error {})",
            t.metadata,
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
                "cannot open leg {} device '{}' (error {})",
                i,
                name,
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
        legs.push(
            Leg {
                dev,
                clones: BioSet::new()?,
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
    const VERSION: [u32; 3] = [0, 2, 0];

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
        let mut metadata_name = KVec::new();
        metadata_name.extend_from_slice(metadata.name().as_bytes(), GFP_KERNEL)?;
        let n = legs.len() as u32;
        let shared = Shared::open(metadata, geometry, n, ti.event_raiser())?;
        let thread = KThread::spawn(kernel::fmt!("kfracture"), shared.clone(), metadata_thread)?;
        let waker = thread.waker();

        ti.set_num_flush_bios(n);
        ti.set_num_discard_bios(n);
        ti.set_num_write_zeroes_bios(n);

        Ok(KBox::new(
            Self {
                _thread: thread,
                waker,
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
        match kind.op {
            Op::Read => bio.remap(&self.legs[0].dev),
            Op::Write if kind.preflush => self.map_copy(bio, kind),
            Op::Write => {
                let (logged, need) = if self.shared.out_of_sync.load(Ordering::Acquire) == 0 {
                    (0, 0)
                } else {
                    match self.shared.log_write(bio.sector(), bio.sectors()) {
                        Ok(v) => v,
                        // Cannot be logged: fail it rather than acknowledge
                        // a write some leg silently misses.
                        Err(_) => return bio.end(BlkStatus::IOERR),
                    }
                };
                bio.per_bio().need.store(need, Ordering::Relaxed);
                bio.fan_out(self.write_targets(logged))
            }
            Op::Discard | Op::WriteZeroes | Op::SecureErase => self.map_copy(bio, kind),
            Op::Other(_) => bio.end(BlkStatus::NOTSUPP),
        }
    }

    fn fanout_done(&self, bio: HeldBio<Self>, failed: u32) {
        let pb = bio.per_bio();
        if failed & 1 != 0 {
            self.primary_failed("write");
        }
        if failed & !1 == 0 && pb.need.load(Ordering::Relaxed) <= self.shared.committed() {
            bio.end(if failed & 1 != 0 {
                BlkStatus::IOERR
            } else {
                BlkStatus::OK
            });
            return;
        }
        pb.failed.store(failed, Ordering::Relaxed);
        self.defer(bio);
    }

    fn end_io(&self, kind: BioKind, _per_bio: &PerBio, status: &mut BlkStatus) {
        // Copies made by dm core: a failed secondary must not fail the
        // host's flush or discard, only itself.
        let copy =
            kind.preflush || matches!(kind.op, Op::Discard | Op::WriteZeroes | Op::SecureErase);
        if !copy || status.is_ok() {
            return;
        }
        let leg = kind.target_bio_nr as usize;
        if leg >= self.nr_legs() {
            return;
        }
        if leg == 0 {
            self.primary_failed(if kind.preflush { "flush" } else { "discard" });
            return;
        }
        // Discard promises nothing about the data, so a secondary that
        // cannot discard is still in sync; anything else it missed is not.
        // The whole leg is then suspect: it is fractured (its later writes
        // are logged); what it lost before is for verify to find.
        if !(kind.op == Op::Discard && *status == BlkStatus::NOTSUPP) {
            crate::dm_warn!(
                "leg {} failed a {}",
                leg,
                if kind.preflush {
                    "flush"
                } else {
                    "discard or write-zeroes"
                }
            );
            self.secondary_failed(leg);
        }
        *status = BlkStatus::OK;
    }

    fn status(&self, kind: StatusType, out: &mut Emitter<'_>) {
        // The emitter truncates like DMEMIT; errors cannot happen.
        let _ = match kind {
            StatusType::Info => self.status_info(out),
            StatusType::Table => self.status_table(out),
            StatusType::Ima => Ok(()),
        };
    }

    fn message(&self, args: &[&CStr], _out: &mut Emitter<'_>) -> Result {
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
        match msg {
            Message::Fracture(leg) => {
                if let Err(state) = self.shared.fracture(leg) {
                    crate::dm_err!(
                        "cannot fracture leg {}: it is {}, not in sync",
                        leg,
                        state.name()
                    );
                    return Err(EINVAL);
                }
                let ok = self.shared.commit().seq.is_some();
                self.shared.raise_event();
                if !ok {
                    crate::dm_err!(
                        "leg {} fractured in memory but the metadata write failed",
                        leg
                    );
                    return Err(EIO);
                }
                crate::dm_info!(
                    "leg {} ({}) fractured on request: it keeps its current contents, changes are logged",
                    leg,
                    self.legs[leg as usize].dev.name()
                );
                Ok(())
            }
            Message::Rejoin(leg) => {
                let state = self.shared.leg_state(leg);
                if state == LegState::InSync {
                    crate::dm_err!("leg {} is already in sync", leg);
                    return Err(EINVAL);
                }
                crate::dm_info!(
                    "leg {}: rejoin accepted; it stays {} until resync is available (recovery thread)",
                    leg,
                    state.name()
                );
                Ok(())
            }
        }
    }

    fn preresume(&self) -> Result {
        // Only the first resume: later, memory is what was committed.
        if self.first_resume.swap(false, Ordering::AcqRel) {
            self.shared.reload()?;
        }
        self.shared.kick();
        self.waker.wake();
        Ok(())
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
    /// A copy dm core made of a flush, discard or write-zeroes for one leg.
    fn map_copy(&self, bio: MapBio<'_, Self>, kind: BioKind) -> MapResult {
        let leg = kind.target_bio_nr as usize;
        let Some(l) = self.legs.get(leg) else {
            return bio.kill();
        };
        if leg != 0 && self.shared.out_of_sync.load(Ordering::Acquire) & (1 << leg) != 0 {
            // A fractured secondary gets nothing; for write-zeroes its
            // bitmap must record the change instead.
            if matches!(kind.op, Op::WriteZeroes | Op::SecureErase | Op::Discard) {
                match self.shared.log_write(bio.sector(), bio.sectors()) {
                    Ok((_, need)) if need <= self.shared.committed() => {
                        return bio.end(BlkStatus::OK)
                    }
                    Ok((_, need)) => {
                        bio.per_bio().need.store(need, Ordering::Relaxed);
                        return bio.fan_out(core::iter::empty());
                    }
                    Err(_) => return bio.end(BlkStatus::IOERR),
                }
            }
            return bio.end(BlkStatus::OK);
        }
        if matches!(kind.op, Op::Discard) && !l.dev.supports_discard() {
            return bio.end(BlkStatus::OK);
        }
        bio.remap(&l.dev)
    }

    /// `<nr_legs> <health> <primary_leg> <in_sync>/<regions>... <intent_regions>
    /// <recovery> <metadata_state>`.
    fn status_info(&self, out: &mut Emitter<'_>) -> core::fmt::Result {
        let n = self.nr_legs();
        let regions = self.shared.geometry().nr_regions();
        let primary_failed = self.shared.primary_failed.load(Ordering::Acquire);
        let st = self.shared.state.lock();
        write!(out, "{} ", n)?;
        for i in 0..n {
            let c = if i == 0 && primary_failed {
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
        drop(st);
        let meta = if self.shared.meta_failed.load(Ordering::Acquire) {
            "fail"
        } else {
            "rw"
        };
        write!(out, " 0 idle {}", meta)
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
        if !self.features.is_default() {
            write!(out, " {}", self.features.nr_words())?;
            self.features.write(out)?;
        }
        Ok(())
    }
}
