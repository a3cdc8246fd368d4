// SPDX-License-Identifier: GPL-2.0

//! The legs: a device each, with its bio set and read counters; opening
//! them from the table line; choosing the legs a bio goes to (reads
//! balanced, writes to every leg not fractured, timed where `io_timeout`
//! asks); flushing them.

use super::legmask::{legs_of, mask_of};
use super::metadata::MirrorState;
use super::PerBio;
use crate::dm::bio::{BioKind, CloneBioSet, FanTarget, Op};
use crate::dm::device::Dev;
use crate::dm::target::{CtrError, TargetCtx};
use crate::dm::timed::{flush_many, late_ios, Outcome, TimedSet};
use crate::table::{find_duplicate, TableArgs};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::c_str;
use kernel::prelude::*;

/// Longest bio the target is given when `io_timeout` is set (dm core
/// splits longer ones): a timed copy of a write holds its own pages, and
/// each leg keeps a reserve of pages for one such bio.
pub(super) const TIMED_MAX_SECTORS: u32 = 1024;

/// One leg: a device and the bio set its clones come from.
pub(super) struct Leg {
    /// With `io_timeout`: writes and flushes go to the leg as timed copies
    /// while it is a secondary. First, so that dropping the leg waits for
    /// its late I/Os before the device is put.
    pub(super) timed: Option<TimedSet>,
    pub(super) dev: Dev,
    pub(super) clones: CloneBioSet,
    /// Host reads sent to the leg and not completed yet (read balancing).
    pub(super) reading: AtomicU32,
    /// Host reads sent to the leg, ever (`stats`).
    pub(super) reads: AtomicU64,
}

impl Leg {
    /// Timed I/Os to this leg's device that timed out and that it has not
    /// completed yet, sent by this table or an earlier one: nothing else
    /// may be written to the leg (a late write could land on top of it)
    /// until they are done.
    pub(super) fn late(&self) -> u32 {
        late_ios(self.dev.devt())
    }

    /// Flushes the leg, within `io_timeout` if set. Sleeps.
    pub(super) fn flush(&self) -> Outcome {
        match &self.timed {
            Some(t) => t.flush(&self.dev),
            None => match self.dev.flush() {
                Ok(()) => Outcome::Ok,
                Err(_) => Outcome::Failed,
            },
        }
    }
}

/// The legs whose bit is set in `mask`, with their numbers, lowest first.
fn legs_in(legs: &[Leg], mask: u32) -> impl Iterator<Item = (u32, &Leg)> {
    legs_of(mask).map_while(move |i| legs.get(i as usize).map(|l| (i, l)))
}

/// The legs with late I/Os (see [`Leg::late`]).
pub(super) fn late_legs(legs: &[Leg]) -> u32 {
    mask_of(
        legs_in(legs, u32::MAX)
            .filter(|(_, l)| l.late() != 0)
            .map(|(i, _)| i),
    )
}

/// The legs in `mask`, as fan-out targets; those in `timed` get timed
/// copies if `io_timeout` is set.
pub(super) fn leg_targets(
    legs: &[Leg],
    mask: u32,
    timed: u32,
) -> impl Iterator<Item = FanTarget<'_>> {
    legs_in(legs, mask).map(move |(i, leg)| FanTarget {
        dev: &leg.dev,
        set: &leg.clones,
        index: i,
        timed: leg.timed.as_ref().filter(|_| timed & (1 << i) != 0),
    })
}

/// A host read (its per-bio data `pb`) is about to be sent to leg `leg`:
/// counted as in flight there until [`read_done`]. Any context.
pub(super) fn start_read(legs: &[Leg], pb: &PerBio, leg: u32) {
    if let Some(l) = legs.get(leg as usize) {
        l.reading.fetch_add(1, Ordering::Relaxed);
        l.reads.fetch_add(1, Ordering::Relaxed);
    }
    pb.read_leg.store(leg + 1, Ordering::Relaxed);
    pb.tried.fetch_or(1 << leg, Ordering::Relaxed);
}

/// A read counted by [`start_read`] completed (or failed) on its leg.
pub(super) fn read_done(legs: &[Leg], pb: &PerBio) {
    let leg = pb.read_leg.swap(0, Ordering::Relaxed);
    if let Some(l) = leg.checked_sub(1).and_then(|l| legs.get(l as usize)) {
        l.reading.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The leg for a host read: of the primary and the secondaries in
/// `others` (see [`MirrorState::read_legs`]), the one with the fewest reads in
/// flight; the primary on a tie (at queue depth 1 every read goes to it).
pub(super) fn pick_read_leg(legs: &[Leg], primary: u32, others: u32) -> u32 {
    let in_flight = |l: u32| {
        legs.get(l as usize)
            .map_or(u32::MAX, |l| l.reading.load(Ordering::Relaxed))
    };
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
pub(super) fn write_targets(
    legs: &[Leg],
    logged: u32,
    primary: u32,
) -> impl Iterator<Item = FanTarget<'_>> {
    let p = legs.get(primary as usize);
    let p_timed = p.is_some_and(|l| l.timed.as_ref().is_some_and(|t| t.busy() || l.late() != 0));
    let untimed = if p_timed { 0 } else { 1u32 << primary };
    leg_targets(legs, !logged, !untimed)
}

/// Sends a write to its legs: discard only to legs that support it
/// (discard promises nothing about the data, so a leg that cannot discard
/// is left as it is and stays in sync).
pub(super) fn targets_for(
    legs: &[Leg],
    kind: BioKind,
    logged: u32,
    primary: u32,
) -> impl Iterator<Item = FanTarget<'_>> {
    write_targets(legs, logged, primary)
        .filter(move |t| kind.op != Op::Discard || t.dev.supports_discard())
}

/// Flushes every leg that gets writes, before intent bits are cleared. A
/// leg that fails is fractured with every region marked (a failed flush
/// may have lost any earlier write; a primary hands over first); if the
/// primary failed, nothing is cleared. Sleeps.
///
/// A secondary that does not complete its flush within `io_timeout` is
/// fractured before this returns (see [`MirrorState::flush_timed_out`]).
pub(super) fn flush_legs(mirror: &MirrorState, legs: &[Leg]) -> Result {
    let logged = mirror.logged.load(Ordering::SeqCst);
    let primary = mirror.primary();
    let mut result = Ok(());
    for (i, leg) in legs_in(legs, !logged) {
        if i == primary {
            if let Err(e) = leg.dev.flush() {
                mirror.note_failed(1 << i);
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
            mirror.note_failed(1 << i);
        }
    }
    // The timed ones all at once: dead legs cost one timeout, not one each.
    let timed = legs_in(legs, !logged & !(1 << primary))
        .filter_map(|(i, leg)| leg.timed.as_ref().map(|t| (t, &leg.dev, i)));
    let (failed, timed_out) = flush_many(timed);
    if failed != 0 {
        mirror.note_failed(failed);
    }
    let mut changed = timed_out != 0 && mirror.flush_timed_out(timed_out);
    changed |= mirror.fracture_noted();
    if changed {
        mirror.kick();
    }
    result
}

/// Ends the in-sync life of the secondaries in `split`, just split on
/// request (the `fracture` message, `verify`), with
/// [`MirrorState::hold_settle`] held since before the split. Their bitmaps
/// get exactly what they may miss: the regions written from the split on
/// (logged by the writes themselves), and those with writes in flight at
/// the split ([`MirrorState::mark_in_flight`], which says why none is
/// missed; a superset by bucket hashing), marked here before the legs are
/// flushed, so that what they acknowledged before is durable. A leg whose
/// flush fails gets every region marked (a failed flush may have lost any
/// earlier write); one whose flush does not complete within `io_timeout`
/// gets the intent bits (which cover every write it may not have made
/// durable; every region with `nointent`). The caller commits. Sleeps.
pub(super) fn finish_split(mirror: &MirrorState, legs: &[Leg], split: u32) {
    mirror.mark_in_flight(split);
    for (i, leg) in legs_in(legs, split) {
        match leg.flush() {
            Outcome::Ok => {}
            Outcome::TimedOut => {
                crate::dm_warn!(
                    "leg {} did not complete the flush that ends its in-sync life within io_timeout: its recent writes may not be durable ({} marked)",
                    i,
                    if mirror.no_intent() {
                        "every region"
                    } else {
                        "the write-intent regions"
                    }
                );
                mirror.split_not_flushed(i);
            }
            Outcome::Failed => {
                crate::dm_warn!(
                    "leg {} failed the flush that ends its in-sync life: every region marked out of sync",
                    i
                );
                mirror.note_failed(1 << i);
            }
        }
    }
    mirror.fracture_noted();
}

/// `nointent`: legs fractured by a failure are flushed before the failure
/// is committed, so that what they acknowledged before is durable (the
/// intent bits that would cover it otherwise are not kept). A leg whose
/// flush does not work gets every region marked. Sleeps.
pub(super) fn flush_fractured(mirror: &MirrorState, legs: &[Leg], fractured: u32) {
    let logged = mirror.logged.load(Ordering::SeqCst);
    // Writes still in flight to them are not covered by the flush.
    mirror.mark_in_flight(fractured & logged);
    for leg in legs_of(fractured & logged) {
        if legs[leg as usize].flush() != Outcome::Ok {
            mirror.note_failed(1 << leg);
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
pub(super) fn open_devices(
    ti: &mut TargetCtx<'_>,
    t: &TableArgs<'_>,
) -> Result<(Dev, KVec<Leg>), CtrError> {
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
                clones: CloneBioSet::new()?,
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
