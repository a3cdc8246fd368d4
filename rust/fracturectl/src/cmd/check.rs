// SPDX-License-Identifier: GPL-2.0

//! `fracturectl check`: is an inactive metadata device sound?

use crate::error::Result;
use crate::metadata::{Access, MetaDev};
use crate::offline::{analyse, print_out, Contents, NO_METADATA};
use crate::units::human;

/// Check a metadata device offline (checksums, geometry, stray bits).
///
/// Check every block of a metadata device: checksums, block types and
/// locations, the mirror UUID, the superblock's geometry, bits past the last
/// region. Exit code 0: clean; 1: problems found (one line each); 2: the
/// device could not be read.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl check /dev/vg/meta && echo clean
  fracturectl check meta.img")]
pub struct Args {
    /// Metadata device (path, vg/lv, major:minor) or image file.
    pub metadata: String,
    /// Print nothing when clean.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    let dev = MetaDev::open(&a.metadata, Access::ReadOffline)?;
    let name = dev.name().to_string();
    let (problems, notes, summary) = match analyse(&dev, false)? {
        Contents::TooSmall => (
            vec![format!(
                "{name} is smaller than one 4 KiB block: no superblock"
            )],
            vec![],
            None,
        ),
        Contents::Blank => (vec![NO_METADATA.to_string()], vec![], None),
        Contents::Invalid(e) => (vec![e.to_string()], vec![], None),
        Contents::Valid(an) => {
            let sb = &an.sb;
            let dirty: Vec<String> = an
                .legs
                .iter()
                .enumerate()
                .map(|(l, r)| format!("leg {l} {}", r.dirty))
                .collect();
            let summary = format!(
                "{name}: clean: {} legs, {} regions of {}, primary leg {}; dirty regions: {}; intent log {}",
                sb.nr_legs,
                sb.nr_regions,
                human(sb.region_sectors.saturating_mul(512)),
                sb.primary_leg,
                dirty.join(", "),
                an.intent.dirty
            );
            (an.problems(&name), an.notes(), Some(summary))
        }
    };
    let mut out = String::new();
    for p in &problems {
        out.push_str(p);
        out.push('\n');
    }
    if !a.quiet || !problems.is_empty() {
        for n in &notes {
            out.push_str(&format!("note: {n}\n"));
        }
    }
    if problems.is_empty() {
        if let (false, Some(s)) = (a.quiet, summary) {
            out.push_str(&s);
            out.push('\n');
        }
    }
    print_out(&out)?;
    if problems.is_empty() {
        return Ok(0);
    }
    let n = problems.len();
    eprintln!(
        "fracturectl: {n} problem{} found in {name}",
        if n == 1 { "" } else { "s" }
    );
    Ok(1)
}
