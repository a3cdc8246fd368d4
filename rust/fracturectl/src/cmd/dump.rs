// SPDX-License-Identifier: GPL-2.0

//! `fracturectl dump`: what an inactive metadata device says.

use crate::bail;
use crate::error::{Error, Result};
use crate::metadata::{uuid_string, Access, MetaDev};
use crate::offline::{
    analyse, print_out, ranges_text, regions, Analysis, BitmapReport, Contents, Damage, NO_METADATA,
};
use crate::units::human;
use fracture_core::format::{FLAG_CLEAN, VERSION};
use serde::Serialize;

/// Print a metadata device's superblock, leg states and dirty regions.
///
/// Print the superblock, each leg's state and generation, and the dirty
/// regions of every fracture bitmap and of the write-intent log as ranges.
/// The device must not be in use by an active mirror.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl dump /dev/vg/meta
  fracturectl dump vg/meta --json | jq .legs")]
pub struct Args {
    /// Metadata device (path, vg/lv, major:minor) or image file.
    pub metadata: String,
    /// Print JSON (the shape is documented in fracturectl.rst).
    #[arg(long)]
    pub json: bool,
}

/// Ranges printed per bitmap in human output.
const MAX_RANGES: usize = 64;

/// Version of the JSON shape.
const JSON_VERSION: u32 = 1;

#[derive(Serialize)]
struct JsonDump {
    version: u32,
    device: JsonDevice,
    superblock: JsonSuperblock,
    legs: Vec<JsonLeg>,
    intent: JsonBitmap,
}

#[derive(Serialize)]
struct JsonDevice {
    name: String,
    bytes: u64,
    needed_bytes: u64,
}

#[derive(Serialize)]
struct JsonSuperblock {
    uuid: String,
    format_version: u32,
    flags: u32,
    clean: bool,
    region_sectors: u64,
    nr_regions: u64,
    target_sectors: u64,
    nr_legs: u32,
    primary_leg: u32,
    event: u64,
    commit: u64,
    bitmap_blocks: u64,
    total_blocks: u64,
}

#[derive(Serialize)]
struct JsonLeg {
    leg: u32,
    state: &'static str,
    generation: u64,
    split: bool,
    primary: bool,
    #[serde(flatten)]
    bitmap: JsonBitmap,
}

#[derive(Serialize)]
struct JsonBitmap {
    dirty_regions: u64,
    ranges: Vec<[u64; 2]>,
    damaged_blocks: Vec<JsonBadBlock>,
    padding_blocks: Vec<u64>,
}

#[derive(Serialize)]
struct JsonBadBlock {
    block: u64,
    index: u64,
    first_region: u64,
    last_region: u64,
    error: String,
}

fn json_bitmap(r: &BitmapReport) -> JsonBitmap {
    JsonBitmap {
        dirty_regions: r.dirty,
        ranges: r.ranges.iter().map(|&(a, b)| [a, b]).collect(),
        damaged_blocks: r
            .bad
            .iter()
            .map(|b| JsonBadBlock {
                block: b.nr,
                index: b.index,
                first_region: b.regions.0,
                last_region: b.regions.1,
                error: b.damage.to_string(),
            })
            .collect(),
        padding_blocks: r.padding.clone(),
    }
}

fn json(name: &str, a: &Analysis) -> JsonDump {
    let sb = &a.sb;
    JsonDump {
        version: JSON_VERSION,
        device: JsonDevice {
            name: name.to_string(),
            bytes: a.bytes,
            needed_bytes: a.needed_bytes(),
        },
        superblock: JsonSuperblock {
            uuid: uuid_string(&sb.uuid),
            format_version: VERSION,
            flags: sb.flags,
            clean: sb.flags & FLAG_CLEAN != 0,
            region_sectors: sb.region_sectors,
            nr_regions: sb.nr_regions,
            target_sectors: sb.target_sectors,
            nr_legs: sb.nr_legs,
            primary_leg: sb.primary_leg,
            event: sb.event,
            commit: sb.commit,
            bitmap_blocks: a.layout.bitmap_blocks(),
            total_blocks: a.layout.total_blocks(),
        },
        legs: a
            .legs
            .iter()
            .enumerate()
            .map(|(l, r)| {
                let rec = sb.leg(l as u32);
                JsonLeg {
                    leg: l as u32,
                    state: rec.state.name(),
                    generation: rec.generation,
                    split: rec.split,
                    primary: l as u32 == sb.primary_leg,
                    bitmap: json_bitmap(r),
                }
            })
            .collect(),
        intent: json_bitmap(&a.intent),
    }
}

fn sectors_text(sectors: u64) -> String {
    format!("{sectors} sectors ({})", human(sectors.saturating_mul(512)))
}

/// The lines of one bitmap's dirty regions and damage, indented.
fn bitmap_lines(out: &mut String, r: &BitmapReport) {
    for b in &r.bad {
        let what = match b.damage {
            Damage::PastEnd => format!("blocks from {} on are past the end of the device", b.nr),
            Damage::Format(e) => format!("damaged: {e}"),
        };
        out.push_str(&format!(
            "  {what}; its regions {}-{} are not trusted (not counted)\n",
            b.regions.0, b.regions.1
        ));
    }
    for nr in &r.padding {
        out.push_str(&format!(
            "  {} block {nr} has bits set past the last region (ignored)\n",
            r.kind.name()
        ));
    }
    if r.dirty == 0 {
        out.push_str("  dirty: none\n");
    } else {
        out.push_str(&format!(
            "  dirty: {}: {}\n",
            regions(r.dirty),
            ranges_text(&r.ranges, MAX_RANGES)
        ));
    }
}

fn human_text(name: &str, a: &Analysis) -> String {
    let sb = &a.sb;
    let mut o = String::new();
    let mut line = |k: &str, v: String| o.push_str(&format!("{k:<14}{v}\n"));
    line(
        "device:",
        format!(
            "{name}, {} ({} bytes); the layout needs {} blocks ({} bytes){}",
            human(a.bytes),
            a.bytes,
            a.layout.total_blocks(),
            a.needed_bytes(),
            if a.size_ok() { "" } else { ": TOO SMALL" }
        ),
    );
    line("uuid:", uuid_string(&sb.uuid));
    line("version:", VERSION.to_string());
    line(
        "flags:",
        format!(
            "{:#x} ({})",
            sb.flags,
            if sb.flags & FLAG_CLEAN != 0 {
                "clean"
            } else {
                "not clean"
            }
        ),
    );
    line("region size:", sectors_text(sb.region_sectors));
    line("regions:", sb.nr_regions.to_string());
    line("target size:", sectors_text(sb.target_sectors));
    line("legs:", sb.nr_legs.to_string());
    line("primary:", format!("leg {}", sb.primary_leg));
    line("event:", sb.event.to_string());
    line("commit:", sb.commit.to_string());
    line(
        "bitmaps:",
        format!("{} blocks each", a.layout.bitmap_blocks()),
    );
    for (l, r) in a.legs.iter().enumerate() {
        let rec = sb.leg(l as u32);
        o.push_str(&format!(
            "leg {l}: {}, generation {}{}{}\n",
            rec.state.name(),
            rec.generation,
            if rec.split { ", split" } else { "" },
            if l as u32 == sb.primary_leg {
                ", primary"
            } else {
                ""
            }
        ));
        bitmap_lines(&mut o, r);
    }
    o.push_str("intent log:\n");
    bitmap_lines(&mut o, &a.intent);
    o
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    let dev = MetaDev::open(&a.metadata, Access::ReadOffline)?;
    let name = dev.name().to_string();
    match analyse(&dev, true)? {
        Contents::TooSmall => bail!("{name}: smaller than one 4 KiB block: no metadata"),
        Contents::Blank => bail!("{name}: {NO_METADATA}"),
        Contents::Invalid(e) => bail!("{name}: {e}"),
        Contents::Valid(an) => {
            if a.json {
                let s = serde_json::to_string_pretty(&json(&name, &an))
                    .map_err(|e| Error::new(format!("JSON: {e}")))?;
                print_out(&format!("{s}\n"))?;
            } else {
                print_out(&human_text(&name, &an))?;
            }
        }
    }
    Ok(0)
}
