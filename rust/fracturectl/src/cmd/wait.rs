// SPDX-License-Identifier: GPL-2.0

//! `fracturectl wait <name> --in-sync`.

use crate::bail;
use crate::dm::Dm;
use crate::error::Result;
use crate::status::{self, Mirror};
use crate::units;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Wait until every leg is in sync, showing progress.
///
/// Wait until every leg is in sync, showing recovery progress: a progress
/// bar on a terminal, a line every few seconds otherwise. Fails (exit 1) if
/// a leg is fractured or failed and nothing is copying it (rejoin it
/// first), or the mirror goes away, or --timeout passes.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl rejoin m0 1 && fracturectl wait m0 --in-sync
  fracturectl wait m0 --in-sync --timeout 3600 > resync.log")]
pub struct Args {
    /// Mirror name.
    pub name: String,
    /// Wait for every leg to be in sync (the only condition so far).
    #[arg(long, required = true)]
    pub in_sync: bool,
    /// Give up after SECONDS (exit 1).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// Why waiting cannot end well, if a leg is out of sync with nothing
/// copying it.
fn stuck(m: &Mirror) -> Option<String> {
    if m.recovery.state == "stalled" {
        return Some("recovery is stalled: the primary could not be read (rejoin to retry)".into());
    }
    m.legs
        .iter()
        .find(|l| l.health == 'F' || l.health == 'D')
        .map(|l| {
            format!(
                "leg {} ({}) is {} and nothing is copying it: `fracturectl rejoin {} {}` first",
                l.index, l.device.name, l.state, m.name, l.index
            )
        })
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    let dm = Dm::new()?;
    let t0 = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let bar = tty.then(|| {
        let b = ProgressBar::new(1);
        b.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} copies ({percent}%), {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_prefix(a.name.clone());
        b
    });
    let mut last_line = Instant::now() - Duration::from_secs(60);
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    loop {
        dm.arm_poll()?;
        let m = status::read(&dm, &a.name)?;
        if m.in_sync() {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            println!(
                "{}: every leg is in sync ({}s)",
                a.name,
                t0.elapsed().as_secs()
            );
            return Ok(0);
        }
        if let Some(why) = stuck(&m) {
            if let Some(b) = &bar {
                b.abandon();
            }
            bail!("{}: {why}", a.name);
        }
        if let Some(t) = a.timeout {
            if t0.elapsed() >= Duration::from_secs(t) {
                bail!("{}: not in sync after {t}s", a.name);
            }
        }
        let r = &m.recovery;
        let now = Instant::now();
        samples.push((now, r.done));
        samples.retain(|(t, d)| now.duration_since(*t) < Duration::from_secs(10) && *d <= r.done);
        let eta = samples.first().and_then(|&(t, d)| {
            let dt = now.duration_since(t).as_secs_f64();
            let rate = (r.done - d) as f64 / dt;
            (dt > 0.5 && rate > 0.0)
                .then(|| ((r.total - r.done.min(r.total)) as f64 / rate).ceil() as u64)
        });
        let eta_s = eta
            .map(|s| format!("about {} left", units::duration(s)))
            .unwrap_or_else(|| "estimating".into());
        match &bar {
            Some(b) => {
                b.set_length(r.total.max(1));
                b.set_position(r.done);
                b.set_message(eta_s);
            }
            None => {
                if last_line.elapsed() >= Duration::from_secs(5) {
                    let pct = (r.done * 100).checked_div(r.total).unwrap_or(0);
                    println!(
                        "{}: recovering leg {}: {}/{} region copies ({pct}%), {eta_s}",
                        a.name,
                        r.legs
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                        r.done,
                        r.total
                    );
                    last_line = Instant::now();
                }
            }
        }
        // An event (leg state change) wakes us at once; progress is polled.
        dm.poll(500);
    }
}
