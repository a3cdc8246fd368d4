// SPDX-License-Identifier: GPL-2.0

//! `fracturectl activate`: bring a mirror back from its activation file.

use crate::bail;
use crate::cmd::create::check_unused_all;
use crate::config::{self, Config};
use crate::device::{self, BlockDev};
use crate::dm::{Dm, TARGET, UUID_PREFIX};
use crate::error::{Error, Result};
use crate::metadata::{self, Access, MetaDev, SuperblockRead};
use std::path::PathBuf;
use std::process::Command;

/// Load a mirror again from its activation file (after a reboot).
///
/// Load a mirror again with the table `create` gave it, from its activation
/// file (/etc/fracture/NAME.toml): after a reboot, or after `remove`.
/// Logical volumes named vg/lv that are not active are activated first
/// (lvchange -ay). The metadata device must hold the metadata of this
/// mirror (its UUID is in the file): a blank device or another mirror's
/// metadata is refused, never formatted. A mirror already active with the
/// same UUID is left alone.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl activate m0
  fracturectl activate --all        # every file in /etc/fracture, e.g. from a boot unit")]
pub struct Args {
    /// Mirror names.
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
    /// Every mirror with an activation file.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Directory of activation files.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
}

/// Activates an LVM name if it has no node yet.
fn lv_up(name: &str) -> Result<()> {
    if !device::is_lvm_name(name) || device::path_of(name).exists() {
        return Ok(());
    }
    let out = Command::new("lvchange")
        .args(["-ay", name])
        .output()
        .map_err(|e| {
            Error::new(format!(
                "{name} is not active and lvchange could not run: {e}"
            ))
        })?;
    if !out.status.success() {
        bail!(
            "cannot activate logical volume {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn activate(dm: &Dm, c: &Config) -> Result<()> {
    let want_uuid = format!("{UUID_PREFIX}{}", c.uuid);
    if dm.exists(&c.name)? {
        if dm.uuid(&c.name)?.as_deref() == Some(want_uuid.as_str()) {
            println!("{}: already active", c.name);
            return Ok(());
        }
        bail!("{}: a different device of that name is active", c.name);
    }
    for n in std::iter::once(&c.metadata).chain(&c.legs) {
        lv_up(n)?;
    }
    let meta = device::resolve(&c.metadata)?;
    let legs: Vec<BlockDev> = c
        .legs
        .iter()
        .map(|l| device::resolve(l))
        .collect::<Result<_>>()?;
    // Each device must be the one the mirror was made of: a leg that is
    // another disk now would be taken as in sync when it is not.
    let recorded = std::iter::once((&meta, "metadata".to_string(), &c.metadata_id)).chain(
        legs.iter()
            .enumerate()
            .zip(&c.leg_ids)
            .map(|((i, l), id)| (l, format!("leg {i}"), id)),
    );
    for (d, role, want) in recorded {
        if want.is_empty() {
            continue;
        }
        let have = device::identity(d).unwrap_or_default();
        if &have != want {
            bail!(
                "{}: {} ({role}) is not the device the mirror was created on (it is {}, the activation file says {want}): refusing to activate",
                c.name,
                d.given,
                if have.is_empty() { "unidentified".to_string() } else { have }
            );
        }
    }
    check_unused_all(&meta, &legs)?;
    for (i, l) in legs.iter().enumerate() {
        if l.sectors < c.sectors {
            bail!(
                "{}: {} (leg {i}) has {} sectors, the mirror {}",
                c.name,
                l.given,
                l.sectors,
                c.sectors
            );
        }
    }
    let md = MetaDev::open(&c.metadata, Access::ReadOffline)?;
    match md.read_superblock()? {
        SuperblockRead::Valid(sb) => {
            let uuid = metadata::uuid_string(&sb.uuid);
            if uuid != c.uuid {
                bail!(
                    "{}: {} holds the metadata of another mirror (UUID {uuid}, expected {}): refusing to activate",
                    c.name,
                    c.metadata,
                    c.uuid
                );
            }
        }
        SuperblockRead::Blank => bail!(
            "{}: {} is blank (all zero), not this mirror's metadata (UUID {}): refusing to activate (it would be formatted as a new mirror)",
            c.name,
            c.metadata,
            c.uuid
        ),
        SuperblockRead::Invalid(e) => bail!(
            "{}: {} does not hold valid metadata ({e}); see fracturectl check",
            c.name,
            c.metadata
        ),
    }
    drop(md);
    let devts: Vec<String> = legs.iter().map(BlockDev::devt).collect();
    dm.create(
        &c.name,
        Some(&want_uuid),
        &[(
            0,
            c.sectors,
            TARGET.to_string(),
            c.params(&meta.devt(), &devts),
        )],
    )?;
    println!(
        "{}: activated (metadata {}, uuid {})",
        c.name, c.metadata, c.uuid
    );
    Ok(())
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    let dir = config::dir(a.config_dir.as_deref());
    let names = if a.all {
        Config::names(&dir)?
    } else {
        a.names.clone()
    };
    let mut failed = 0;
    let mut configs = Vec::new();
    for n in &names {
        match Config::load(&dir, n) {
            Ok(c) => configs.push(c),
            Err(e) => {
                eprintln!("fracturectl: {e}");
                failed += 1;
            }
        }
    }
    if !configs.is_empty() {
        let dm = Dm::new()?;
        for c in &configs {
            if let Err(e) = activate(&dm, c) {
                eprintln!("fracturectl: {e}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}
