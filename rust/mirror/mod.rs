// SPDX-License-Identifier: GPL-2.0

//! The `fracture` target: a primary and 1..8 secondary legs kept identical
//! by synchronous mirroring.
//!
//! Writes go to every healthy leg at once and complete when all legs have
//! answered; reads go to the primary. A failed secondary is marked `D` and
//! gets no further writes (the fracture log that records what it misses
//! comes with the metadata format). Flushes, discards and write-zeroes are
//! duplicated by dm core, one copy per leg (`num_*_bios = nr_legs`).

use crate::dm::bio::{BioKind, BioSet, BlkStatus, FanTarget, Op};
use crate::dm::device::Dev;
use crate::dm::status::{Emitter, StatusType};
use crate::dm::target::{CtrError, DeviceVisitor, HeldBio, MapBio, MapResult, Target, TargetCtx};
use crate::region::Geometry;
use crate::table::{find_duplicate, Features, TableArgs};
use core::ffi::c_int;
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::c_str;
use kernel::prelude::*;

/// Smallest metadata device accepted: one 4 KiB block. The metadata format
/// (superblock, fracture bitmaps) will raise this per table.
const MIN_METADATA_SECTORS: u64 = 8;

/// One leg: a device and the bio set its clones come from.
struct Leg {
    dev: Dev,
    clones: BioSet,
}

/// A `fracture` target instance.
pub(crate) struct Fracture {
    geometry: Geometry,
    metadata: Dev,
    legs: KVec<Leg>,
    features: Features,
    /// Bit `i` set: leg `i` failed a write or flush and is out of sync.
    failed: AtomicU32,
}

impl Fracture {
    fn nr_legs(&self) -> usize {
        self.legs.len()
    }

    fn is_failed(&self, leg: usize) -> bool {
        self.failed.load(Ordering::Relaxed) & (1 << leg) != 0
    }

    /// Records that `legs` (a mask) failed; logs each leg the first time.
    fn mark_failed(&self, legs: u32, what: &str) {
        let before = self.failed.fetch_or(legs, Ordering::Relaxed);
        let new = legs & !before;
        for (i, leg) in self.legs.iter().enumerate() {
            if new & (1 << i) != 0 {
                let role = if i == 0 { "primary" } else { "secondary" };
                crate::dm_err!(
                    "{} leg {} ({}) failed a {}; marked D",
                    role,
                    i,
                    leg.dev.name(),
                    what
                );
            }
        }
    }

    /// Legs that receive writes: the primary always (its failure fails the
    /// write), the secondaries while healthy.
    fn write_targets(&self) -> impl Iterator<Item = FanTarget<'_>> {
        let failed = self.failed.load(Ordering::Relaxed);
        self.legs
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i == 0 || failed & (1 << i) == 0)
            .map(|(i, leg)| FanTarget {
                dev: &leg.dev,
                set: &leg.clones,
                index: i as u32,
            })
    }
}

/// Opens the table line's devices and checks them against each other.
fn open_devices(
    ti: &mut TargetCtx<'_>,
    t: &TableArgs<'_>,
) -> Result<(Dev, KVec<Leg>), CtrError> {
    let metadata = ti.get_device(t.metadata).map_err(|e| {
        crate::dm_err!("cannot open metadata device '{}' ({:?})", t.metadata, e);
        CtrError {
            reason: c_str!("cannot open metadata device"),
            errno: e,
        }
    })?;
    if metadata.nr_sectors() < MIN_METADATA_SECTORS {
        crate::dm_err!(
            "metadata device {} has {} sectors; at least {} are needed",
            metadata.name(),
            metadata.nr_sectors(),
            MIN_METADATA_SECTORS
        );
        return Err(CtrError::inval(c_str!("metadata device too small")));
    }
    let mut legs = KVec::with_capacity(t.legs().len(), GFP_KERNEL)?;
    for (i, name) in t.legs().iter().enumerate() {
        let dev = ti.get_device(name).map_err(|e| {
            crate::dm_err!("cannot open leg {} device '{}' ({:?})", i, name, e);
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
    type PerBio = ();

    const NAME: &'static CStr = c_str!("fracture");
    const VERSION: [u32; 3] = [0, 1, 0];

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

        let n = legs.len() as u32;
        ti.set_num_flush_bios(n);
        ti.set_num_discard_bios(n);
        ti.set_num_write_zeroes_bios(n);

        Ok(KBox::new(
            Self {
                geometry,
                metadata,
                legs,
                features: t.features,
                failed: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )?)
    }

    fn map(&self, bio: MapBio<'_, Self>) -> MapResult {
        let kind = bio.kind();
        match kind.op {
            Op::Read => bio.remap(&self.legs[0].dev),
            Op::Write if kind.preflush => self.map_copy(bio, kind),
            Op::Write => bio.fan_out(self.write_targets()),
            Op::Discard | Op::WriteZeroes | Op::SecureErase => self.map_copy(bio, kind),
            Op::Other(_) => bio.end(BlkStatus::NOTSUPP),
        }
    }

    fn fanout_done(&self, bio: HeldBio<Self>, failed: u32) {
        let secondaries = failed & !1;
        if secondaries != 0 {
            self.mark_failed(secondaries, "write");
        }
        if failed & 1 != 0 {
            self.mark_failed(1, "write");
            bio.end(BlkStatus::IOERR);
        } else {
            bio.end(BlkStatus::OK);
        }
    }

    fn end_io(&self, kind: BioKind, _per_bio: &(), status: &mut BlkStatus) {
        // Copies made by dm core: a failed secondary must not fail the
        // host's flush or discard, only itself.
        let copy = kind.preflush || matches!(kind.op, Op::Discard | Op::WriteZeroes | Op::SecureErase);
        if !copy || status.is_ok() {
            return;
        }
        let leg = kind.target_bio_nr as usize;
        if leg == 0 || leg >= self.nr_legs() {
            return;
        }
        // Discard promises nothing about the data, so a secondary that
        // cannot discard is still in sync; anything else it missed is not.
        if !(kind.op == Op::Discard && *status == BlkStatus::NOTSUPP) {
            let what = match kind.op {
                _ if kind.preflush => "flush",
                Op::Discard => "discard",
                Op::WriteZeroes => "write-zeroes",
                _ => "secure erase",
            };
            self.mark_failed(1 << leg, what);
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

    fn iterate_devices(&self, visit: &mut DeviceVisitor<'_>) -> c_int {
        for leg in self.legs.iter() {
            let r = visit.visit(&leg.dev, 0, self.geometry.len());
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
        if leg != 0 && self.is_failed(leg) {
            // An out-of-sync secondary has nothing worth flushing.
            return bio.end(BlkStatus::OK);
        }
        if matches!(kind.op, Op::Discard) && !l.dev.supports_discard() {
            return bio.end(BlkStatus::OK);
        }
        bio.remap(&l.dev)
    }

    /// `<nr_legs> <health>`: one character per leg, `A` alive, `D` failed.
    fn status_info(&self, out: &mut Emitter<'_>) -> core::fmt::Result {
        write!(out, "{} ", self.nr_legs())?;
        for i in 0..self.nr_legs() {
            out.write_char(if self.is_failed(i) { 'D' } else { 'A' })?;
        }
        Ok(())
    }

    /// The table line, devices as `major:minor`.
    fn status_table(&self, out: &mut Emitter<'_>) -> core::fmt::Result {
        write!(
            out,
            "{} {} {}",
            self.metadata.name(),
            self.geometry.region_sectors(),
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
