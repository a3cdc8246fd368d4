// SPDX-License-Identifier: GPL-2.0

//! The target's own threads besides recovery: the metadata thread
//! (`kfracture`: commits, fractures legs whose I/O failed, sends and ends
//! the bios that waited for it, settles intent bits) and the read-retry
//! thread (`kfracture_rd`: sends a failed read to another leg).

use super::legmask::legs_of;
use super::legs::{flush_fractured, flush_legs, leg_targets, start_read, targets_for, Leg};
use super::metadata::MirrorState;
use super::Fracture;
use crate::dm::bio::BlkStatus;
use crate::dm::held::{BioStack, HeldBio};
use crate::dm::kthread::{now_ns, ProcessCtx, ThreadCtx};
use crate::dm::log::worth_logging;
use core::sync::atomic::Ordering;
use kernel::prelude::*;
use kernel::sync::Arc;

/// What the read-retry thread works with.
pub(super) struct ReadThread {
    pub(super) mirror: Arc<MirrorState>,
    pub(super) legs: Arc<KVec<Leg>>,
}

/// What the metadata thread works with.
pub(super) struct MetaThread {
    pub(super) mirror: Arc<MirrorState>,
    pub(super) legs: Arc<KVec<Leg>>,
    /// `intent_delay`: how long a region must go unwritten before its
    /// intent bit is cleared.
    pub(super) intent_delay_ms: u32,
}

/// A read failed on the legs it was sent to: it is sent to another in-sync
/// leg, or fails if none is left. Process context (the read-retry thread).
fn retry_read(mirror: &MirrorState, legs: &[Leg], bio: HeldBio<Fracture>, ctx: &ProcessCtx) {
    let pb = bio.per_bio();
    let failed = pb.failed.swap(0, Ordering::Relaxed);
    let tried = pb.tried.load(Ordering::Relaxed);
    let n = mirror.stats.read_errors.fetch_add(1, Ordering::Relaxed);
    // A bad disk must not flood the log.
    let say = worth_logging(n);
    let from = legs_of(failed).next().unwrap_or(0);
    match mirror.read_source(tried) {
        Some(leg) => {
            mirror.stats.reads_retried.fetch_add(1, Ordering::Relaxed);
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
            bio.fan_out(ctx, leg_targets(legs, 1 << leg, 0));
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
pub(super) fn read_thread(t: &ReadThread, ctx: &ThreadCtx) {
    while !ctx.should_stop() {
        ctx.wait(None, || !t.mirror.failed_reads.is_empty());
        for bio in t.mirror.failed_reads.take_all() {
            retry_read(&t.mirror, &t.legs, bio, ctx.process());
        }
    }
}

/// The metadata thread: fractures legs whose writes failed, commits the
/// bitmaps and superblock, then sends the bios that waited for their
/// intent bits and ends those that waited for fracture bits. Every
/// `intent_delay` it clears the intent bits of regions gone quiet.
pub(super) fn metadata_thread(t: &MetaThread, ctx: &ThreadCtx) {
    let mirror = &*t.mirror;
    let delay_ns = u64::from(t.intent_delay_ms) * 1_000_000;
    let mut next_settle = now_ns().saturating_add(delay_ns);
    while !ctx.should_stop() {
        let marked = mirror.meta.lock().intent_count != 0;
        let now = now_ns();
        if !marked {
            next_settle = now.saturating_add(delay_ns);
        }
        let timeout = marked.then(|| {
            u32::try_from(next_settle.saturating_sub(now) / 1_000_000 + 1).unwrap_or(u32::MAX)
        });
        ctx.wait(timeout, || mirror.has_work());
        if marked && now_ns() >= next_settle {
            mirror.settle(false, || flush_legs(mirror, &t.legs));
            next_settle = now_ns().saturating_add(delay_ns);
        }
        let mut changed = mirror.take_kick();
        let mut fractured_now = 0u32;
        let batch = BioStack::<Fracture>::default();
        let unsent = BioStack::<Fracture>::default();
        for bio in mirror.deferred.take_all() {
            let pb = bio.per_bio();
            let kind = bio.kind();
            if pb.intent_need.load(Ordering::Relaxed) != 0 {
                unsent.push(bio);
                continue;
            }
            let failed = pb.failed.load(Ordering::Relaxed);
            if failed != 0 {
                // A leg with late I/O never takes over: see
                // `MirrorState::late_legs`.
                let sent = !pb.logged.load(Ordering::Relaxed);
                let timed_out = pb.timed_out.load(Ordering::Relaxed);
                let f = mirror.write_failed(
                    failed,
                    timed_out,
                    sent,
                    bio.sector(),
                    bio.sectors(),
                    kind.preflush,
                );
                pb.need.fetch_max(f.need, Ordering::Relaxed);
                pb.error.store(!f.ok, Ordering::Relaxed);
                changed |= f.changed;
                fractured_now |= failed;
                if let Some((s, n)) = pb.take_tracked() {
                    mirror.end_write(s, n);
                }
                mirror.failure_handled();
            }
            batch.push(bio);
        }
        if mirror.no_intent() && fractured_now != 0 {
            flush_fractured(mirror, &t.legs, fractured_now);
        }
        changed |= mirror.fracture_noted();
        let was_failed = mirror.meta_failed.load(Ordering::Acquire);
        mirror.commit();
        let meta_failed = mirror.meta_failed.load(Ordering::Acquire);
        changed |= !was_failed && meta_failed;
        let committed = mirror.committed();
        for bio in unsent.take_all() {
            let pb = bio.per_bio();
            let (sector, sectors) = (bio.sector(), bio.sectors());
            if pb.intent_need.swap(0, Ordering::Relaxed) > committed {
                // The metadata device failed: never sent unmarked.
                if let Some((s, n)) = pb.take_tracked() {
                    mirror.end_write(s, n);
                }
                bio.end(BlkStatus::IOERR);
                continue;
            }
            mirror.intent_durable(sector, sectors);
            // A leg fractured while the bio was held (a failure, or a
            // split whose message has returned) must not get it.
            let (logged, need) =
                mirror.log_late(pb.logged.load(Ordering::Relaxed), sector, sectors);
            pb.need.fetch_max(need, Ordering::Relaxed);
            pb.logged.store(logged, Ordering::Relaxed);
            let kind = bio.kind();
            bio.fan_out(
                ctx.process(),
                targets_for(&t.legs, kind, logged, mirror.primary()),
            );
        }
        for bio in batch.take_all() {
            let pb = bio.per_bio();
            let ok =
                !pb.error.load(Ordering::Relaxed) && pb.need.load(Ordering::Relaxed) <= committed;
            bio.end(if ok { BlkStatus::OK } else { BlkStatus::IOERR });
        }
        if changed {
            mirror.raise_event();
        }
    }
}
