// SPDX-License-Identifier: GPL-2.0

//! `fracturectl monitor <name>`: follow dm events and log state changes.

use crate::dm::Dm;
use crate::error::Result;
use crate::metadata::{Access, MetaDev, SuperblockRead};
use crate::status::{self, Mirror};
use fracture_core::format::LegState;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

/// Follow a mirror's events and log every state change.
///
/// Follow a mirror's dm events and print every state change with a
/// timestamp: a leg fractured, recovering or back in sync, a failover, the
/// metadata device failing, recovery stalling. With --auto-rejoin, a leg
/// fractured by a failure (not one split on purpose) is rejoined, retried
/// with a growing delay (5 s up to 5 min) while it keeps failing. Runs
/// until the mirror is removed, interrupted, or --duration passes.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl monitor m0
  fracturectl monitor m0 --auto-rejoin >> /var/log/fracture-m0.log")]
pub struct Args {
    /// Mirror name.
    pub name: String,
    /// Rejoin legs fractured by a failure.
    #[arg(long)]
    pub auto_rejoin: bool,
    /// Stop after SECONDS (for scripts and tests).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
}

fn log(name: &str, what: &str) {
    let ts = humantime::format_rfc3339_seconds(SystemTime::now());
    println!("{ts} {name}: {what}");
    let _ = std::io::stdout().flush();
}

/// The state changes between two readings, one line each.
pub fn changes(old: &Mirror, new: &Mirror) -> Vec<String> {
    let mut v = Vec::new();
    if old.primary_leg != new.primary_leg {
        v.push(format!(
            "primary is now leg {} ({}), was leg {}",
            new.primary_leg, new.legs[new.primary_leg as usize].device.name, old.primary_leg
        ));
    }
    for (o, n) in old.legs.iter().zip(&new.legs) {
        if o.state != n.state {
            v.push(format!(
                "leg {} ({}): {} -> {} ({} regions dirty)",
                n.index, n.device.name, o.state, n.state, n.regions_dirty
            ));
        }
    }
    if old.metadata_state != new.metadata_state {
        v.push(format!(
            "metadata device {}: {}",
            new.metadata.name, new.metadata_state
        ));
    }
    if old.recovery.state != new.recovery.state {
        v.push(match new.recovery.state.as_str() {
            "idle" => "recovery finished".to_string(),
            s => format!(
                "recovery {s}: {}/{} region copies",
                new.recovery.done, new.recovery.total
            ),
        });
    }
    v
}

/// Whether leg `leg` may be rejoined automatically: its record on disk says
/// fractured by a failure. Anything else (split on purpose, or the record
/// not committed yet: the `fracture` message flushes the leg before it
/// writes the superblock, while the status already shows `F`) is left
/// alone, so that a point-in-time copy is never overwritten.
fn rejoinable(m: &Mirror, leg: u32) -> bool {
    let Ok(md) = MetaDev::open(&m.metadata.devt, Access::ReadShared) else {
        return false;
    };
    match md.read_superblock() {
        Ok(SuperblockRead::Valid(sb)) if leg < sb.nr_legs => {
            let r = sb.leg(leg);
            r.state == LegState::Fractured && !r.split
        }
        _ => false,
    }
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    let dm = Dm::new()?;
    dm.arm_poll()?;
    let mut m = status::read(&dm, &a.name)?;
    let legs: Vec<String> = m
        .legs
        .iter()
        .map(|l| format!("{}={}", l.index, l.state))
        .collect();
    log(
        &a.name,
        &format!(
            "monitoring: primary leg {}, legs {}",
            m.primary_leg,
            legs.join(" ")
        ),
    );
    let t0 = Instant::now();
    // Per leg: when to try a rejoin next, and the delay after that.
    let mut retry: Vec<(Instant, Duration)> =
        vec![(Instant::now(), Duration::from_secs(5)); m.legs.len()];
    loop {
        if let Some(d) = a.duration {
            if t0.elapsed() >= Duration::from_secs(d) {
                return Ok(0);
            }
        }
        dm.poll(1000);
        dm.arm_poll()?;
        let n = match status::read(&dm, &a.name) {
            Ok(n) => n,
            Err(_) if !dm.exists(&a.name).unwrap_or(true) => {
                log(&a.name, "removed");
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        if n.legs.len() != m.legs.len() {
            log(
                &a.name,
                &format!(
                    "table reloaded: {} legs now, was {}",
                    n.legs.len(),
                    m.legs.len()
                ),
            );
            retry.resize(n.legs.len(), (Instant::now(), Duration::from_secs(5)));
            m = n;
            continue;
        }
        let c = changes(&m, &n);
        if c.is_empty() && n.event_nr != m.event_nr {
            // Changes that came and went between two readings (a fast
            // resync): the event counter still moved.
            let legs: Vec<String> = n
                .legs
                .iter()
                .map(|l| format!("{}={}", l.index, l.state))
                .collect();
            log(
                &a.name,
                &format!("event {}: legs {}", n.event_nr, legs.join(" ")),
            );
        }
        for c in c {
            log(&a.name, &c);
        }
        if a.auto_rejoin {
            for l in n.legs.iter().filter(|l| l.health == 'F') {
                let (when, delay) = retry[l.index as usize];
                if Instant::now() < when || !rejoinable(&n, l.index) {
                    continue;
                }
                match dm.message(&a.name, &format!("rejoin {}", l.index)) {
                    Ok(_) => {
                        log(
                            &a.name,
                            &format!("auto-rejoin: leg {} ({}) rejoined", l.index, l.device.name),
                        );
                        retry[l.index as usize] = (
                            Instant::now() + delay,
                            (delay * 2).min(Duration::from_secs(300)),
                        );
                    }
                    Err(e) => {
                        log(
                            &a.name,
                            &format!(
                                "auto-rejoin: leg {}: {e}; retry in {}s",
                                l.index,
                                delay.as_secs()
                            ),
                        );
                        retry[l.index as usize] = (
                            Instant::now() + delay,
                            (delay * 2).min(Duration::from_secs(300)),
                        );
                    }
                }
            }
            for l in n.legs.iter().filter(|l| l.health == 'A') {
                retry[l.index as usize] = (Instant::now(), Duration::from_secs(5));
            }
        }
        m = n;
    }
}
