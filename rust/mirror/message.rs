// SPDX-License-Identifier: GPL-2.0

//! `dmsetup message`: `fracture`, `rejoin`, `rebuild`, `primary`,
//! `recovery_rate`, `verify` (`check`, `cancel`) and `stats`.

use super::legmask::all_legs;
use super::legs::finish_split;
use super::metadata::Refused;
use super::recovery::VerifyRefused;
use super::Fracture;
use crate::dm::status::Emitter;
use crate::dm::timed::TimedSet;
use crate::message::Message;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

impl Fracture {
    /// Handles `dmsetup message` (the target's [`crate::dm::target::Target::message`]):
    /// parses the words, changes leg states, starts or stops `verify`, or
    /// writes the `stats` reply to `out`.
    pub(super) fn handle_message(&self, args: &[&CStr], out: &mut Emitter<'_>) -> Result {
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
                // No intent bit is cleared until the split is settled (see
                // `finish_split`).
                let hold = self.mirror.hold_settle();
                match self.mirror.fracture(leg) {
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
                    // Only `primary` refuses a late leg.
                    Err(Refused::Late) => return Err(EBUSY),
                }
                // What the leg acknowledged so far must survive its power
                // loss (the host's later flushes no longer reach it); the
                // regions of writes still in flight are marked first.
                finish_split(&self.mirror, &self.legs, 1 << leg);
                drop(hold);
                self.commit_change(leg, "fractured")?;
                crate::dm_info!(
                    "leg {} ({}) fractured on request: it keeps its current contents, changes are logged",
                    leg,
                    self.legs[leg as usize].dev.name()
                );
                Ok(())
            }
            Message::Rejoin(leg) => match self.mirror.rejoin(leg) {
                Err(Refused::Primary) if self.mirror.primary_repaired() => {
                    crate::dm_warn!(
                        "leg {} ({}): the primary is taken as working again (D cleared); a new failure marks it D again",
                        leg,
                        self.legs[leg as usize].dev.name()
                    );
                    // A recovery stopped by its read errors starts again.
                    self.recovery.kick(
                        &self.rec_waker,
                        self.mirror.recovering.load(Ordering::SeqCst),
                    );
                    self.mirror.raise_event();
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
                // Only `primary` refuses a late leg.
                Err(Refused::Late) => Err(EBUSY),
                Ok(changed) => {
                    if changed {
                        self.commit_change(leg, "rejoined")?;
                    }
                    let to_copy = self.mirror.meta.lock().counts[leg as usize];
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
                if self.mirror.rebuild(leg).is_err() {
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
            Message::Primary(leg) => match self.mirror.set_primary(leg) {
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
                        // Refused above already, unless it just timed out.
                        Refused::Late => "waiting for late I/O",
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
                let asked = leg.map_or(all_legs(self.nr_legs() as u32), |l| 1 << l);
                let legs = self.mirror.in_sync_secondaries(asked);
                if let Some(l) = leg.filter(|_| legs == 0) {
                    let (state, primary) = self.mirror.leg_state(l);
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
                let regions = self.mirror.geometry().nr_regions();
                match self
                    .recovery
                    .start_verify(&self.rec_waker, legs, regions, check)
                {
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
                let s = &self.mirror.stats;
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
                    get(&self.mirror.host_writes),
                    get(&s.read_errors),
                    get(&s.reads_retried),
                    self.legs.iter().filter_map(|l| l.timed.as_ref()).map(TimedSet::timeouts).sum::<u64>(),
                    self.legs.iter().map(|l| u64::from(l.late())).sum::<u64>(),
                );
                // Host reads sent to each leg, leg 0 first.
                for (i, l) in self.legs.iter().enumerate() {
                    let _ = write!(
                        out,
                        "{}{}",
                        if i == 0 { " reads=" } else { "," },
                        get(&l.reads)
                    );
                }
                Ok(())
            }
        }
    }

    /// Commits a leg state change made by a message and raises the event.
    fn commit_change(&self, leg: u32, what: &str) -> Result {
        let ok = self.mirror.commit().seq.is_some();
        self.mirror.raise_event();
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
}
