// SPDX-License-Identifier: GPL-2.0

//! `fracturectl fracture|rejoin|rebuild|primary <name> <leg>`.

use crate::bail;
use crate::device;
use crate::dm::Dm;
use crate::error::Result;
use crate::status::{self, Mirror};

// The arguments of fracture, rejoin, rebuild and primary; each command's
// help is the doc comment of its variant in main.rs.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl fracture m0 1
  fracturectl rejoin m0 vg2/b
  fracturectl rebuild m0 /dev/sdc
  fracturectl primary m0 1")]
pub struct Args {
    /// Mirror name.
    pub name: String,
    /// Leg number or device.
    pub leg: String,
}

/// Finds a leg by number or device.
pub fn leg_index(m: &Mirror, leg: &str) -> Result<u32> {
    if let Ok(i) = leg.parse::<u32>() {
        if (i as usize) < m.legs.len() {
            return Ok(i);
        }
        bail!("{}: no leg {i} (legs are 0..{})", m.name, m.legs.len() - 1);
    }
    let d = device::resolve(leg)?;
    let devt = d.devt();
    match m.legs.iter().find(|l| l.device.devt == devt) {
        Some(l) => Ok(l.index),
        None => bail!("{}: {leg} ({devt}) is not one of its legs", m.name),
    }
}

/// Runs `verb` (the message name) on the leg; returns the exit code.
pub fn run(verb: &str, a: Args) -> Result<i32> {
    let dm = Dm::new()?;
    let m = status::read(&dm, &a.name)?;
    let i = leg_index(&m, &a.leg)?;
    let was_failed = m.legs[i as usize].health == 'D';
    dm.message(&a.name, &format!("{verb} {i}"))?;
    let m = status::read(&dm, &a.name)?;
    let l = &m.legs[i as usize];
    let what = match verb {
        "fracture" => "split off; its changes are logged from now on",
        "rejoin" if was_failed => "is taken as working again (D cleared)",
        "rejoin" | "rebuild" => "recovering: the regions it misses are copied from the primary",
        _ => "is the primary now",
    };
    println!(
        "{}: leg {i} ({}) {what} [{}, {} regions dirty]",
        a.name, l.device.name, l.state, l.regions_dirty
    );
    Ok(0)
}
