// SPDX-License-Identifier: GPL-2.0

//! The dm callbacks of the `fracture` target: the constructor, `map` and
//! the completions of bios, status and message entry points, suspend and
//! resume, and the devices it uses.

use super::legs::{
    flush_legs, late_legs, open_devices, pick_read_leg, read_done, start_read, targets_for,
    write_targets, TIMED_MAX_SECTORS,
};
use super::metadata::MirrorState;
use super::recovery::{recovery_thread, Recovery};
use super::threads::{metadata_thread, read_thread, MetaThread, ReadThread};
use super::{Fracture, PerBio};
use crate::dm::bio::{BioKind, BlkStatus, Op};
use crate::dm::fanout::{MapBio, MapResult};
use crate::dm::held::HeldBio;
use crate::dm::kthread::KThread;
use crate::dm::status::{Emitter, StatusType};
use crate::dm::target::{CtrError, DeviceVisitor, Target, TargetCtx};
use crate::memory::{fitting_region_size, MemoryNeed};
use crate::region::Geometry;
use crate::table::TableArgs;
use core::ffi::c_int;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::c_str;
use kernel::prelude::*;
use kernel::sync::Arc;

/// A table's change tracking may use at most this fraction of the
/// machine's memory (`1 / MEMORY_SHARE`): see "Memory" in the admin guide.
const MEMORY_SHARE: u64 = 8;

/// Refuses a table whose bitmaps in memory would exceed the limit (or one
/// kvmalloc allocation), before anything is allocated, naming the region
/// size that would fit.
fn check_memory(geometry: &Geometry, nr_legs: u32) -> Result<(), CtrError> {
    let limit = crate::dm::kvec::total_ram_bytes() / MEMORY_SHARE;
    let need = MemoryNeed::of(nr_legs, geometry.nr_regions());
    if need.fits(limit) {
        return Ok(());
    }
    let region = geometry.region_sectors();
    let mib = |b: u64| b.div_ceil(1 << 20);
    match fitting_region_size(geometry.len(), nr_legs, limit, region) {
        Some(r) => crate::dm_err!(
            "region_size {} needs {} MiB of memory for {} regions; a table may use {} MiB (1/{} of RAM): region_size {} ({} KiB) or larger fits",
            region,
            mib(need.total),
            geometry.nr_regions(),
            mib(limit),
            MEMORY_SHARE,
            r,
            r / 2
        ),
        None => crate::dm_err!(
            "region_size {} needs {} MiB of memory for {} regions; a table may use {} MiB (1/{} of RAM), and no region size fits",
            region,
            mib(need.total),
            geometry.nr_regions(),
            mib(limit),
            MEMORY_SHARE
        ),
    }
    Err(CtrError::inval(c_str!(
        "region_size too small for the target's length (too much memory)"
    )))
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
        check_memory(&geometry, t.legs().len() as u32)?;
        let (metadata, legs) = open_devices(ti, &t)?;
        if t.features.io_timeout != 0 {
            // A timed copy holds its own pages: keep bios small.
            ti.set_max_io_len(TIMED_MAX_SECTORS).map_err(|e| {
                crate::dm_err!(
                    "cannot cap the I/O size for io_timeout (error {})",
                    e.to_errno()
                );
                CtrError::from(e)
            })?;
        }
        let mut metadata_name = KVec::new();
        metadata_name.extend_from_slice(metadata.name().as_bytes(), GFP_KERNEL)?;
        let n = legs.len() as u32;
        let mut leg_devts = KVec::with_capacity(legs.len(), GFP_KERNEL)?;
        for leg in legs.iter() {
            leg_devts.push(leg.dev.devt(), GFP_KERNEL)?;
        }
        let legs = Arc::new(legs, GFP_KERNEL)?;
        let mirror = MirrorState::open(
            metadata,
            geometry,
            n,
            t.features.nosync,
            t.features.no_intent,
            leg_devts,
            ti.event_raiser(),
        )?;
        let meta = Arc::new(
            MetaThread {
                mirror: mirror.clone(),
                legs: legs.clone(),
                intent_delay_ms: u32::try_from(t.features.intent_delay_ms()).unwrap_or(u32::MAX),
            },
            GFP_KERNEL,
        )?;
        let thread = KThread::spawn(kernel::fmt!("kfracture"), meta, metadata_thread)?;
        let waker = thread.waker();
        let reads = Arc::new(
            ReadThread {
                mirror: mirror.clone(),
                legs: legs.clone(),
            },
            GFP_KERNEL,
        )?;
        let read_thread = KThread::spawn(kernel::fmt!("kfracture_rd"), reads, read_thread)?;
        let read_waker = read_thread.waker();
        let recovery = Recovery::new(
            mirror.clone(),
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
                mirror,
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
        if self.mirror.no_source.load(Ordering::Relaxed) {
            // No leg is known to hold every acknowledged write.
            return bio.end(BlkStatus::IOERR);
        }
        match kind.op {
            // Remapped (no clone); if it fails it comes back to
            // `fanout_done` as it was here and is sent again to another leg
            // (see `retry_read`). Balanced over the legs that hold every
            // acknowledged write of its range.
            Op::Read => {
                let primary = self.mirror.primary();
                // Reads are not timed: with `io_timeout` (remote legs that
                // may stop answering) they stay on the primary.
                let others = if self.features.read_primary || self.features.io_timeout != 0 {
                    0
                } else {
                    self.mirror.read_legs(bio.sector(), bio.sectors())
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
                let logged = self.mirror.logged.load(Ordering::Acquire);
                bio.per_bio().logged.store(logged, Ordering::Relaxed);
                bio.fan_out(write_targets(&self.legs, logged, self.mirror.primary()))
            }
            Op::Write | Op::Discard | Op::WriteZeroes => {
                let (sector, sectors) = (bio.sector(), bio.sectors());
                let start = match self.mirror.begin_write(sector, sectors, true) {
                    Ok(v) => v,
                    // Cannot be logged: fail it rather than acknowledge a
                    // write some leg silently misses.
                    Err(_) => return bio.end(BlkStatus::IOERR),
                };
                if kind.op == Op::Discard {
                    // What the legs hold there is undefined from now on.
                    self.mirror.note_discard(sector, sectors);
                }
                let pb = bio.per_bio();
                pb.need.store(start.need, Ordering::Relaxed);
                pb.logged.store(start.logged, Ordering::Relaxed);
                pb.track(sector, sectors);
                if start.intent_need > self.mirror.committed() {
                    // Its intent bits are not on disk yet: the metadata
                    // thread sends it after the commit.
                    pb.intent_need.store(start.intent_need, Ordering::Relaxed);
                    let (held, result) = bio.hold();
                    self.defer(held);
                    return result;
                }
                if start.intent_need != 0 {
                    self.mirror.intent_durable(sector, sectors);
                }
                bio.fan_out(targets_for(
                    &self.legs,
                    kind,
                    start.logged,
                    self.mirror.primary(),
                ))
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
                self.mirror.end_write(sector, sectors);
            }
            if kind.op == Op::Read || pb.need.load(Ordering::Relaxed) <= self.mirror.committed() {
                bio.end(BlkStatus::OK);
                return;
            }
        } else if kind.op != Op::Read {
            // Pending, and no read goes to the failed legs from now on.
            // Still counted as in flight until the thread has logged the
            // failure (and failed over): neither a copy nor an intent
            // clear may treat its regions as settled before that.
            self.mirror.write_failure_seen(failed);
        }
        pb.failed.store(failed, Ordering::Relaxed);
        if kind.op == Op::Read {
            self.mirror
                .failed_reads
                .push_and_wake(bio, &self.read_waker);
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
        self.handle_message(args, out)
    }

    fn presuspend(&self) {
        // No copy may run while suspended (the table may be replaced).
        self.recovery.pause(&self.rec_waker);
    }

    fn postsuspend(&self) {
        // Nothing is in flight: after a flush of the legs every intent bit
        // can go, so a clean shutdown resyncs nothing.
        self.mirror
            .settle(true, || flush_legs(&self.mirror, &self.legs));
        let ok = self.mirror.commit().seq.is_some();
        let left = self.mirror.meta.lock().intent_count;
        if ok && left != 0 {
            crate::dm_warn!(
                "suspend: {} write-intent bits kept (a leg flush failed); those regions are resynced at the next activation",
                left
            );
        }
        // Without an intent log, the clean flag says the legs agree: set
        // once what they acknowledged is durable.
        if self.mirror.no_intent() {
            match flush_legs(&self.mirror, &self.legs) {
                Ok(()) => {
                    if !self.mirror.set_clean(true) {
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
        self.mirror.set_active(false);
        // What was discarded stays undefined under the next table too.
        self.mirror.leave_discards();
    }

    fn presuspend_undo(&self) {
        self.recovery.unpause(&self.rec_waker);
    }

    fn preresume(&self) -> Result {
        // Only the first resume: later, memory is what was committed. A
        // failed load is tried again at the next resume.
        let first = self.first_resume.load(Ordering::Acquire);
        if first {
            self.mirror.load(true).map_err(|e| e.errno)?;
            self.first_resume.store(false, Ordering::Release);
        }
        // Without an intent log, nothing says which regions writes are in
        // flight to: the metadata says "not clean" before any is sent.
        if self.mirror.no_intent() && !self.mirror.set_clean(false) {
            crate::dm_err!(
                "resume: cannot mark the metadata in use (nointent): refusing to resume"
            );
            return Err(EIO);
        }
        // Regions an earlier table (or this one, before its suspend)
        // discarded.
        self.mirror.take_discards();
        // Resuming with the legs present retries the failed ones.
        let late = late_legs(&self.legs);
        let legs = self.mirror.rejoin_failed(late);
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
        self.mirror.set_active(true);
        // The thread commits and raises an event for what changed (the
        // activation, legs rejoined); a plain resume raises none.
        if first || legs != 0 {
            self.mirror.kick();
        }
        self.waker.wake();
        Ok(())
    }

    fn resume(&self) {
        self.recovery.unpause(&self.rec_waker);
    }

    fn iterate_devices(&self, visit: &mut DeviceVisitor<'_>) -> c_int {
        for leg in self.legs.iter() {
            let r = visit.visit(&leg.dev, 0, self.mirror.geometry().len());
            if r != 0 {
                return r;
            }
        }
        0
    }
}
