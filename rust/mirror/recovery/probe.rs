// SPDX-License-Identifier: GPL-2.0

//! Probing the legs fractured by a failure (`probe_interval`): a leg that
//! takes a read and a write again starts recovery.

use super::Worker;
use crate::dm::kthread::now_ns;
use crate::mirror::legmask::legs_of;
use crate::mirror::legs::late_legs;
use core::sync::atomic::Ordering;

impl Worker<'_, '_> {
    /// Probes the legs fractured by a failure if it is time to: a read of
    /// one block and a write of the same data back. A leg that takes both
    /// starts recovery. Returns whether one did.
    pub(super) fn probe(&mut self) -> bool {
        if self.r.probe_ms == 0 || now_ns() < self.next_probe_ns {
            return false;
        }
        self.next_probe_ns = now_ns().saturating_add(u64::from(self.r.probe_ms) * 1_000_000);
        let mirror = &self.r.mirror;
        let mut rejoined = 0;
        // Not a leg with late timed I/Os: the probe would hang behind them,
        // and a late write must not land after the copies.
        for leg in legs_of(mirror.failed_legs() & !late_legs(&self.r.legs)) {
            mirror.stats.probes.fetch_add(1, Ordering::Relaxed);
            // A fractured leg gets no other I/O, so writing back what was
            // just read changes nothing; a dirty region is used if there is
            // one, where nothing on the leg matters.
            let sector = mirror
                .first_dirty(leg)
                .map_or(0, |r| mirror.geometry().sectors_of(r).start);
            let dev = &self.r.legs[leg as usize].dev;
            let ok = self.r.io.read(dev, sector, &mut self.probe_buf).is_ok()
                && self.r.io.write(dev, sector, &self.probe_buf, true).is_ok();
            if ok && matches!(mirror.rejoin(leg), Ok(true)) {
                mirror.stats.probes_ok.fetch_add(1, Ordering::Relaxed);
                crate::dm_info!(
                    "probe: leg {} ({}) takes writes again; recovery started",
                    leg,
                    dev.name()
                );
                rejoined |= 1 << leg;
            }
        }
        if rejoined != 0 {
            self.r.stalled.fetch_and(!rejoined, Ordering::SeqCst);
            mirror.commit();
        }
        rejoined != 0
    }
}
