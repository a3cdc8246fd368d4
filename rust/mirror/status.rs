// SPDX-License-Identifier: GPL-2.0

//! `dmsetup status` (the info line) and `dmsetup table` (the table line).

use super::legmask::{all_legs, legs_of};
use super::recovery::VerifyState;
use super::Fracture;
use crate::dm::status::Emitter;
use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

/// Writes the legs in `mask`, of a table with `nr_legs` legs, as a
/// comma-separated list (`0,2`).
fn write_leg_list(out: &mut Emitter<'_>, mask: u32, nr_legs: usize) -> fmt::Result {
    for (k, leg) in legs_of(mask & all_legs(nr_legs as u32)).enumerate() {
        write!(out, "{}{}", if k == 0 { "" } else { "," }, leg)?;
    }
    Ok(())
}

impl Fracture {
    /// `<nr_legs> <health> <primary_leg> <in_sync>/<regions>... <intent_regions>
    /// <recovery> <metadata_state> <verify>`.
    pub(super) fn status_info(&self, out: &mut Emitter<'_>) -> core::fmt::Result {
        let n = self.nr_legs();
        let regions = self.mirror.geometry().nr_regions();
        let primary_failed = self.mirror.primary_failed.load(Ordering::Acquire);
        let st = self.mirror.meta.lock();
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
        let recovering = self.mirror.recovering.load(Ordering::Acquire);
        let left: u64 = legs_of(recovering & all_legs(n as u32))
            .map(|i| st.counts[i as usize])
            .sum();
        let done = st.recovered;
        let intent = st.intent_count;
        drop(st);
        write!(out, " {} ", intent)?;
        if recovering == 0 {
            out.write_str("idle")?;
        } else {
            let stalled = self.recovery.stalled.load(Ordering::Acquire) & recovering;
            out.write_str(if stalled != 0 {
                "stalled:"
            } else {
                "recovering:"
            })?;
            write_leg_list(out, recovering, n)?;
            write!(out, ":{}/{}", done, done + left)?;
        }
        let meta = if self.mirror.meta_failed.load(Ordering::Acquire) {
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
        write_leg_list(out, v.legs, n)?;
        write!(
            out,
            ":{}/{}:{}:{}",
            v.done, v.total, v.mismatches, v.skipped
        )
    }

    /// The table line, devices as `major:minor`.
    pub(super) fn status_table(&self, out: &mut Emitter<'_>) -> core::fmt::Result {
        let meta = core::str::from_utf8(&self.metadata_name).unwrap_or("?");
        write!(
            out,
            "{} {} {}",
            meta,
            self.mirror.geometry().region_sectors(),
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
