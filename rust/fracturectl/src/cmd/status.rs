// SPDX-License-Identifier: GPL-2.0

//! `fracturectl status`.

use crate::dm::Dm;
use crate::error::Result;
use crate::status::{self, Mirror};
use crate::units;
use std::time::{Duration, Instant};

/// Show each leg's role, state, sync share and dirty regions.
///
/// Show mirrors: each leg's role, state, share in sync and dirty regions;
/// recovery progress with an estimate of the time left; the write-intent
/// log and the metadata device. Without NAME, every dm-fracture device.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl status
  fracturectl status m0 --json | jq '.[0].legs[1].state'

The JSON output is a list of mirrors, its shape versioned (\"version\": 1)
and documented in fracturectl.rst.")]
pub struct Args {
    /// Mirror name (default: all).
    pub name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A mirror and its recovery estimate.
#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    mirror: Mirror,
    /// Seconds until recovery is done, measured over a short sample; null
    /// when idle or no progress was seen.
    eta_seconds: Option<u64>,
}

/// The recovery estimate: samples progress for a moment.
pub fn eta(dm: &Dm, m: &Mirror, sample: Duration) -> Option<u64> {
    if m.recovery.state != "recovering" {
        return None;
    }
    let t0 = Instant::now();
    std::thread::sleep(sample);
    let m2 = status::read(dm, &m.name).ok()?;
    let rate = m2.recovery.done.checked_sub(m.recovery.done)? as f64 / t0.elapsed().as_secs_f64();
    if rate <= 0.0 {
        return None;
    }
    Some((m2.recovery.total.saturating_sub(m2.recovery.done) as f64 / rate).ceil() as u64)
}

/// Prints a mirror as a readable table.
pub fn print(m: &Mirror, eta: Option<u64>) {
    println!(
        "{}: {}, {} regions of {}, {} legs, primary leg {}{}",
        m.name,
        units::human(m.sectors * 512),
        m.regions,
        units::human(m.region_sectors * 512),
        m.legs.len(),
        m.primary_leg,
        if m.in_sync() { ", in sync" } else { "" }
    );
    println!(
        "  metadata {} ({}){}, write-intent log: {} regions marked{}",
        m.metadata.name,
        m.metadata_state,
        m.uuid
            .as_ref()
            .map(|u| format!(", uuid {u}"))
            .unwrap_or_default(),
        m.intent_regions,
        if m.options.nointent {
            " (nointent: off)"
        } else {
            ""
        }
    );
    let w = m
        .legs
        .iter()
        .map(|l| l.device.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "  {:<3} {:<w$} {:<9} {:<10} {:>8} {:>8}",
        "LEG", "DEVICE", "ROLE", "STATE", "IN SYNC", "DIRTY"
    );
    for l in &m.legs {
        println!(
            "  {:<3} {:<w$} {:<9} {:<10} {:>7.1}% {:>8}",
            l.index, l.device.name, l.role, l.state, l.percent_in_sync, l.regions_dirty
        );
    }
    let r = &m.recovery;
    if r.state != "idle" {
        let legs: Vec<String> = r.legs.iter().map(u32::to_string).collect();
        let pct = (r.done * 100).checked_div(r.total).unwrap_or(100);
        println!(
            "  recovery {} (leg {}): {}/{} region copies ({}%){}",
            r.state,
            legs.join(","),
            r.done,
            r.total,
            pct,
            match (r.state.as_str(), eta) {
                ("stalled", _) => ": the primary could not be read; rejoin to retry".to_string(),
                (_, Some(s)) => format!(", about {} left", units::duration(s)),
                _ => String::new(),
            }
        );
    } else {
        println!("  recovery idle");
    }
    let v = &m.verify;
    if v.state != "none" {
        let legs: Vec<String> = v.legs.iter().map(u32::to_string).collect();
        let pct = (v.done * 100).checked_div(v.total).unwrap_or(100);
        println!(
            "  verify {} (leg {}): {}/{} leg-regions compared ({}%), {} differed{}{}",
            v.state,
            legs.join(","),
            v.done,
            v.total,
            pct,
            v.mismatches,
            if v.skipped != 0 {
                format!(", {} skipped", v.skipped)
            } else {
                String::new()
            },
            match (v.mismatches, v.state.as_str()) {
                (0, _) => "",
                // A check marks nothing: the primary may be the wrong leg.
                (_, "checking" | "checked") => " (nothing marked: find out which leg is wrong)",
                // The status line does not say which of the two it was.
                (_, "cancelled") => " (marked out of sync if it was a verify, not a check)",
                _ => " (marked out of sync: rejoin the leg)",
            }
        );
    }
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    let dm = Dm::new()?;
    let names = match &a.name {
        Some(n) => vec![n.clone()],
        None => dm.list()?,
    };
    let mut reports = Vec::new();
    for n in &names {
        let m = status::read(&dm, n)?;
        let eta = eta(&dm, &m, Duration::from_millis(500));
        reports.push(Report {
            mirror: m,
            eta_seconds: eta,
        });
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("serialisable")
        );
    } else if reports.is_empty() {
        println!("no dm-fracture devices");
    } else {
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print(&r.mirror, r.eta_seconds);
        }
    }
    Ok(0)
}
