// SPDX-License-Identifier: GPL-2.0

//! A mirror's state, parsed from its table line and status line (the
//! formats of `Documentation/admin-guide/device-mapper/dm-fracture.rst`),
//! and the stable JSON shape `fracturectl status --json` prints.

use crate::device;
use crate::dm::{Dm, UUID_PREFIX};
use crate::error::{Error, Result};
use fracture_core::table::TableArgs;
use serde::Serialize;

/// Version of the JSON shape; bumped on any incompatible change.
pub const JSON_VERSION: u32 = 1;

/// A device named in a table line.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DevRef {
    /// `major:minor`.
    pub devt: String,
    /// Its dm name or kernel name.
    pub name: String,
}

/// One leg.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Leg {
    /// Position in the table line, 0..nr_legs-1.
    pub index: u32,
    /// The device.
    pub device: DevRef,
    /// `primary` or `secondary`.
    pub role: &'static str,
    /// `in-sync`, `fractured`, `recovering` or `failed`.
    pub state: &'static str,
    /// The status-line character: `A`, `F`, `R`, `D`.
    pub health: char,
    /// Regions known identical to the primary.
    pub regions_in_sync: u64,
    /// Regions set in its fracture bitmap (to be copied).
    pub regions_dirty: u64,
    /// `regions_in_sync` in percent of all regions.
    pub percent_in_sync: f64,
}

/// Recovery progress.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Recovery {
    /// `idle`, `recovering` or `stalled`.
    pub state: String,
    /// The recovering legs.
    pub legs: Vec<u32>,
    /// Region copies done since recovery started.
    pub done: u64,
    /// `done` plus the copies still to do.
    pub total: u64,
}

/// The verify states of the status line: running, done, and the same for
/// `verify check`, then stopped.
pub const VERIFY_STATES: [&str; 5] = ["verifying", "verified", "checking", "checked", "cancelled"];

/// The current or last online verify (`dmsetup message <dev> 0 verify`)
/// or check (`verify check`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Verify {
    /// `none` (none since the table was loaded), `verifying`, `verified`,
    /// `checking`, `checked` (a `verify check`) or `cancelled`.
    pub state: String,
    /// The legs compared with the primary.
    pub legs: Vec<u32>,
    /// Leg-regions compared (one per leg and region).
    pub done: u64,
    /// Leg-regions to compare.
    pub total: u64,
    /// Leg-regions found different from the primary (after a verify,
    /// marked out of sync: a `rejoin` copies them; a check marks nothing).
    pub mismatches: u64,
    /// Leg-regions not compared (discarded since the table was loaded, host
    /// writes kept racing, or the primary could not be read).
    pub skipped: u64,
}

/// Table options other than the devices.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Options {
    /// KiB/s, 0 = unlimited.
    pub recovery_rate: u64,
    /// Seconds, 0 = off.
    pub probe_interval: u64,
    /// Milliseconds, the value in effect (0 with `nointent`).
    pub intent_delay: u64,
    /// Milliseconds, 0 = off.
    pub io_timeout: u64,
    /// No write-intent log.
    pub nointent: bool,
    /// Reads go to the primary only (not balanced over the in-sync legs).
    pub read_primary: bool,
}

/// A mirror, as `fracturectl status` reports it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Mirror {
    /// JSON shape version ([`JSON_VERSION`]).
    pub version: u32,
    /// The dm name.
    pub name: String,
    /// The metadata UUID, when the device was made by fracturectl.
    pub uuid: Option<String>,
    /// Size in sectors.
    pub sectors: u64,
    /// Region size in sectors.
    pub region_sectors: u64,
    /// Number of regions.
    pub regions: u64,
    /// The metadata device.
    pub metadata: DevRef,
    /// `rw` or `fail`.
    pub metadata_state: String,
    /// Regions set in the write-intent log.
    pub intent_regions: u64,
    /// The leg serving as primary.
    pub primary_leg: u32,
    /// Every leg, in table order.
    pub legs: Vec<Leg>,
    /// Recovery progress.
    pub recovery: Recovery,
    /// The current or last online verify.
    pub verify: Verify,
    /// Table options.
    pub options: Options,
    /// The dm event counter (moves on every leg state change).
    pub event_nr: u32,
}

impl Mirror {
    /// Whether every leg is in sync and nothing is being copied.
    pub fn in_sync(&self) -> bool {
        self.legs.iter().all(|l| l.health == 'A') && self.recovery.state == "idle"
    }
}

fn devref(s: &str) -> DevRef {
    match s
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
    {
        Some((ma, mi)) => DevRef {
            devt: s.to_string(),
            name: device::display_name(ma, mi),
        },
        None => DevRef {
            devt: s.to_string(),
            name: s.to_string(),
        },
    }
}

/// Parses a table line's parameters and the status line into a [`Mirror`].
/// `resolve` turns `major:minor` into names (off in tests).
pub fn parse(
    name: &str,
    sectors: u64,
    table: &str,
    status: &str,
    event_nr: u32,
    resolve: bool,
) -> Result<Mirror> {
    let bad = |what: &str| {
        Error::new(format!(
            "{name}: unexpected {what}; is the module newer than this tool?"
        ))
    };
    let words: Vec<&str> = table.split_whitespace().collect();
    let t = TableArgs::parse(&words).map_err(|e| Error::new(format!("{name}: table line: {e}")))?;
    let d = |s: &str| {
        if resolve {
            devref(s)
        } else {
            DevRef {
                devt: s.to_string(),
                name: s.to_string(),
            }
        }
    };
    let s: Vec<&str> = status.split_whitespace().collect();
    let nr_legs = t.legs().len();
    // A module older than `verify` has no verify field.
    if s.len() != nr_legs + 6 && s.len() != nr_legs + 7 {
        return Err(bad("status line"));
    }
    if s[0].parse::<usize>().ok() != Some(nr_legs) {
        return Err(bad("leg count in the status line"));
    }
    let health: Vec<char> = s[1].chars().collect();
    if health.len() != nr_legs {
        return Err(bad("health field"));
    }
    let primary_leg: u32 = s[2].parse().map_err(|_| bad("primary leg"))?;
    if primary_leg as usize >= nr_legs {
        return Err(bad("primary leg"));
    }
    let mut legs = Vec::new();
    let mut regions = 0;
    for (i, dev) in t.legs().iter().enumerate() {
        let (a, b) = s[3 + i]
            .split_once('/')
            .ok_or_else(|| bad("in-sync field"))?;
        let in_sync: u64 = a.parse().map_err(|_| bad("in-sync count"))?;
        regions = b.parse().map_err(|_| bad("region count"))?;
        let (state, h) = match health[i] {
            'A' => ("in-sync", 'A'),
            'F' => ("fractured", 'F'),
            'R' => ("recovering", 'R'),
            'D' => ("failed", 'D'),
            _ => return Err(bad("health character")),
        };
        legs.push(Leg {
            index: i as u32,
            device: d(dev),
            role: if i as u32 == primary_leg {
                "primary"
            } else {
                "secondary"
            },
            state,
            health: h,
            regions_in_sync: in_sync,
            regions_dirty: regions - in_sync.min(regions),
            percent_in_sync: if regions == 0 {
                100.0
            } else {
                (in_sync as f64 * 1000.0 / regions as f64).floor() / 10.0
            },
        });
    }
    let intent_regions = s[3 + nr_legs].parse().map_err(|_| bad("intent count"))?;
    let rec = s[4 + nr_legs];
    let recovery = if rec == "idle" {
        Recovery {
            state: "idle".into(),
            legs: vec![],
            done: 0,
            total: 0,
        }
    } else {
        let f: Vec<&str> = rec.split(':').collect();
        if f.len() != 3 || !(f[0] == "recovering" || f[0] == "stalled") {
            return Err(bad("recovery field"));
        }
        let (done, total) = f[2]
            .split_once('/')
            .ok_or_else(|| bad("recovery progress"))?;
        Recovery {
            state: f[0].to_string(),
            legs: f[1]
                .split(',')
                .map(|l| l.parse().map_err(|_| bad("recovering leg")))
                .collect::<Result<_>>()?,
            done: done.parse().map_err(|_| bad("recovery progress"))?,
            total: total.parse().map_err(|_| bad("recovery progress"))?,
        }
    };
    let verify = match s.get(6 + nr_legs).copied() {
        None | Some("-") => Verify {
            state: "none".into(),
            legs: vec![],
            done: 0,
            total: 0,
            mismatches: 0,
            skipped: 0,
        },
        Some(v) => {
            let f: Vec<&str> = v.split(':').collect();
            // `checking`/`checked` only from a module with `verify check`;
            // an older one prints the others alone.
            if f.len() != 5 || !VERIFY_STATES.contains(&f[0]) {
                return Err(bad("verify field"));
            }
            let (done, total) = f[2].split_once('/').ok_or_else(|| bad("verify progress"))?;
            let num = |x: &str| x.parse::<u64>().map_err(|_| bad("verify progress"));
            Verify {
                state: f[0].to_string(),
                legs: f[1]
                    .split(',')
                    .map(|l| l.parse().map_err(|_| bad("verified leg")))
                    .collect::<Result<_>>()?,
                done: num(done)?,
                total: num(total)?,
                mismatches: num(f[3])?,
                skipped: num(f[4])?,
            }
        }
    };
    Ok(Mirror {
        version: JSON_VERSION,
        name: name.to_string(),
        uuid: None,
        sectors,
        region_sectors: t.region_sectors,
        regions,
        metadata: d(t.metadata),
        metadata_state: s[5 + nr_legs].to_string(),
        intent_regions,
        primary_leg,
        legs,
        recovery,
        verify,
        options: Options {
            recovery_rate: t.features.recovery_rate,
            probe_interval: t.features.probe_interval,
            intent_delay: if t.features.no_intent {
                0
            } else {
                t.features.intent_delay_ms()
            },
            io_timeout: t.features.io_timeout,
            nointent: t.features.no_intent,
            read_primary: t.features.read_primary,
        },
        event_nr,
    })
}

/// Reads mirror `name` from the kernel.
pub fn read(dm: &Dm, name: &str) -> Result<Mirror> {
    let (table, status, ev) = dm.fracture(name)?;
    let sectors = dm.length(name)?;
    let mut m = parse(name, sectors, &table, &status, ev, true)?;
    m.uuid = dm
        .uuid(name)?
        .and_then(|u| u.strip_prefix(UUID_PREFIX).map(str::to_string));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_recovering_mirror() {
        let m = parse(
            "m0",
            131072,
            "1:0 1024 3 1:1 1:2 1:3 2 recovery_rate 100",
            "3 AAR 0 128/128 128/128 126/128 5 recovering:2:2/4 rw",
            7,
            false,
        )
        .unwrap();
        assert_eq!(m.legs.len(), 3);
        assert_eq!(m.legs[0].role, "primary");
        assert_eq!(m.legs[2].state, "recovering");
        assert_eq!(m.legs[2].regions_dirty, 2);
        assert_eq!(m.legs[2].percent_in_sync, 98.4);
        assert_eq!(m.recovery.legs, vec![2]);
        assert_eq!((m.recovery.done, m.recovery.total), (2, 4));
        assert_eq!(m.options.recovery_rate, 100);
        assert_eq!(m.options.intent_delay, 5000);
        assert_eq!(m.intent_regions, 5);
        assert!(!m.in_sync());
    }

    #[test]
    fn parses_the_verify_field() {
        let p = |st: &str| parse("m0", 131072, "1:0 1024 2 1:1 1:2 0", st, 1, false);
        // A module older than verify, and no verify since the load.
        for st in [
            "2 AA 0 128/128 128/128 0 idle rw",
            "2 AA 0 128/128 128/128 0 idle rw -",
        ] {
            let m = p(st).unwrap();
            assert_eq!(m.verify.state, "none");
            assert!(m.verify.legs.is_empty());
        }
        let m = p("2 AF 0 128/128 125/128 0 idle rw verifying:1:40/128:3:2").unwrap();
        assert_eq!(m.verify.state, "verifying");
        assert_eq!(m.verify.legs, vec![1]);
        assert_eq!(
            (
                m.verify.done,
                m.verify.total,
                m.verify.mismatches,
                m.verify.skipped
            ),
            (40, 128, 3, 2)
        );
        // `verify check`: the legs stay in sync whatever it finds.
        let m = p("2 AA 0 128/128 128/128 0 idle rw checking:1:40/128:3:2").unwrap();
        assert_eq!(m.verify.state, "checking");
        assert_eq!(
            (
                m.verify.done,
                m.verify.total,
                m.verify.mismatches,
                m.verify.skipped
            ),
            (40, 128, 3, 2)
        );
        let m = p("2 AA 0 128/128 128/128 0 idle rw checked:1:128/128:1:0").unwrap();
        assert_eq!(m.verify.state, "checked");
        assert_eq!(m.verify.legs, vec![1]);
        assert_eq!((m.verify.done, m.verify.mismatches), (128, 1));
        for st in VERIFY_STATES {
            assert_eq!(
                p(&format!(
                    "2 AA 0 128/128 128/128 0 idle rw {st}:1:0/128:0:0"
                ))
                .unwrap()
                .verify
                .state,
                st
            );
        }
        for bad in [
            "2 AA 0 128/128 128/128 0 idle rw verifying",
            "2 AA 0 128/128 128/128 0 idle rw checking",
            "2 AA 0 128/128 128/128 0 idle rw none:1:1/2:0:0",
            "2 AA 0 128/128 128/128 0 idle rw check:1:1/2:0:0",
            "2 AA 0 128/128 128/128 0 idle rw checked:1:1/2:0",
            "2 AA 0 128/128 128/128 0 idle rw verified:1:1/2:x:0",
            "2 AA 0 128/128 128/128 0 idle rw verified:1:12:0:0",
            "2 AA 0 128/128 128/128 0 idle rw verified:a:1/2:0:0",
            "2 AA 0 128/128 128/128 0 idle rw - extra",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    /// The JSON shape is an interface: a change must be deliberate (and
    /// documented, and bump JSON_VERSION if incompatible).
    #[test]
    fn json_shape_is_stable() {
        let m = parse(
            "m0",
            131072,
            "1:0 1024 3 1:1 1:2 1:3 3 recovery_rate 100 nointent",
            "3 AFR 1 128/128 120/128 126/128 0 recovering:2:2/4 rw verified:1:128/128:8:0",
            7,
            false,
        )
        .unwrap();
        let got = serde_json::to_string_pretty(&m).unwrap();
        let want = include_str!("../tests/golden/status.json");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/status.json"),
                format!("{got}\n"),
            )
            .unwrap();
            return;
        }
        assert_eq!(got.trim(), want.trim());
    }

    #[test]
    fn refuses_garbage() {
        let t = "1:0 1024 2 1:1 1:2";
        assert!(parse("m", 8, t, "2 AA 0 1/1 1/1 0 idle", 0, false).is_err());
        assert!(parse("m", 8, t, "2 AX 0 1/1 1/1 0 idle rw", 0, false).is_err());
        assert!(parse("m", 8, t, "3 AA 0 1/1 1/1 0 idle rw", 0, false).is_err());
        assert!(parse("m", 8, t, "2 AA 0 1/1 1/1 0 busy:1:1/2 rw", 0, false).is_err());
        assert!(parse("m", 8, "1:0", "2 AA 0 1/1 1/1 0 idle rw", 0, false).is_err());
        let m = parse("m", 8, t, "2 AA 1 1/1 1/1 0 idle rw", 0, false).unwrap();
        assert_eq!(m.legs[1].role, "primary");
        assert!(m.in_sync());
    }
}
