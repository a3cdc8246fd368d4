// SPDX-License-Identifier: GPL-2.0

//! `fracturectl verify <name> [<leg>] [--check] [--wait] | --cancel`.

use crate::bail;
use crate::cmd::leg::leg_index;
use crate::dm::Dm;
use crate::error::{Error, Result};
use crate::status::{self, Verify};
use fracture_core::message::Message;
use std::time::{Duration, Instant};

/// Compare the in-sync legs with the primary, online.
///
/// Compare in-sync secondaries with the primary, region by region (the
/// target's `verify` message, run by its recovery thread, rate-limited
/// like recovery). A leg found different is split with the differing
/// regions marked out of sync: `fracturectl rejoin` then copies them from
/// the primary. With --check (`verify check`) the regions that differ are
/// only counted: nothing is marked, no leg split; run it first when the
/// primary itself may be losing writes. Without LEG every in-sync
/// secondary is compared. Exit code: 0 once the verify started (with
/// --wait: every region was compared and identical); 1 if it could not
/// start or, with --wait, some region differed, some could not be
/// compared, or it was cancelled; 2 on a usage error.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl verify m0 --wait
  fracturectl verify m0 vg1/b
  fracturectl verify m0 --check --wait   # compare only: split nothing
  fracturectl verify m0 --cancel
  fracturectl verify m0 --wait || fracturectl rejoin m0 1")]
pub struct Args {
    /// Mirror name.
    pub name: String,
    /// Leg number or device (default: every in-sync secondary).
    pub leg: Option<String>,
    /// Compare only: count the regions that differ, mark none, split no leg.
    #[arg(long, conflicts_with = "cancel")]
    pub check: bool,
    /// Wait for the verify to end, printing progress every 5 seconds.
    #[arg(long, conflicts_with = "cancel")]
    pub wait: bool,
    /// Stop the running verify or check (regions a verify found different
    /// stay marked).
    #[arg(long, conflicts_with = "leg")]
    pub cancel: bool,
}

fn legs(v: &Verify) -> String {
    v.legs
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn summary(name: &str, v: &Verify) -> String {
    format!(
        "{name}: verify {} (leg {}): {}/{} leg-regions compared, {} differed, {} skipped",
        v.state,
        legs(v),
        v.done,
        v.total,
        v.mismatches,
        v.skipped
    )
}

/// The states of a running and of a finished verify (or check).
fn states(check: bool) -> (&'static str, &'static str) {
    if check {
        ("checking", "checked")
    } else {
        ("verifying", "verified")
    }
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    let dm = Dm::new()?;
    let m = status::read(&dm, &a.name)?;
    if a.cancel {
        dm.message(&a.name, &Message::VerifyCancel.to_string())?;
        let m = status::read(&dm, &a.name)?;
        println!("{}", summary(&a.name, &m.verify));
        return Ok(0);
    }
    let leg = a.leg.as_deref().map(|l| leg_index(&m, l)).transpose()?;
    let msg = Message::Verify {
        leg,
        check: a.check,
    }
    .to_string();
    dm.message(&a.name, &msg).map_err(|e| {
        // A module older than `verify check` reads `check` as a leg.
        if a.check && e.to_string().contains("invalid leg 'check'") {
            Error::new(format!(
                "{e}\n(the loaded dm_fracture module predates `verify check`)"
            ))
        } else {
            e
        }
    })?;
    let m = status::read(&dm, &a.name)?;
    let what = if a.check { "check" } else { "verify" };
    println!("{}: {what} of leg {} started", a.name, legs(&m.verify));
    if !a.wait {
        return Ok(0);
    }
    let (running, done) = states(a.check);
    let t0 = Instant::now();
    let mut last = Instant::now();
    loop {
        dm.arm_poll()?;
        dm.poll(1000);
        let m = status::read(&dm, &a.name)?;
        let v = &m.verify;
        match v.state.as_str() {
            s if s == running => {
                if last.elapsed() >= Duration::from_secs(5) {
                    println!("{}", summary(&a.name, v));
                    last = Instant::now();
                }
            }
            s if s == done => {
                println!("{} ({}s)", summary(&a.name, v), t0.elapsed().as_secs());
                if v.mismatches != 0 {
                    if a.check {
                        eprintln!(
                            "fracturectl: {}: legs differ from the primary (nothing was marked or split); find out which leg is wrong before `fracturectl verify {}`, which splits the secondaries that differ (dm-fracture.rst, Verify)",
                            a.name, a.name
                        );
                    } else {
                        eprintln!(
                            "fracturectl: {}: legs differ from the primary: they are split with those regions marked; `fracturectl rejoin {} <leg>` copies them from the primary",
                            a.name, a.name
                        );
                    }
                    return Ok(1);
                }
                if v.skipped != 0 || v.done < v.total {
                    eprintln!(
                        "fracturectl: {}: not every region was compared: {} leg-regions skipped (discarded since the table was loaded, written all the time, or the primary unreadable), {} not reached (legs that left sync)",
                        a.name,
                        v.skipped,
                        v.total.saturating_sub(v.done + v.skipped)
                    );
                    return Ok(1);
                }
                return Ok(0);
            }
            "cancelled" => bail!("{}", summary(&a.name, v)),
            other => bail!(
                "{}: verify state '{other}' while waiting for a {what}",
                a.name
            ),
        }
    }
}
