// SPDX-License-Identifier: GPL-2.0

//! `fracturectl create`: check the devices, format or reuse the metadata,
//! load the table, write the activation file.

use crate::bail;
use crate::config::{self, Config};
use crate::device::{self, BlockDev};
use crate::dm::{Dm, TARGET, UUID_PREFIX};
use crate::error::{Error, Result};
use crate::metadata::{self, Access, MetaDev, SuperblockRead};
use crate::units;
use fracture_core::format::{Layout, Superblock};
use fracture_core::region::Geometry;
use fracture_core::table::{
    MAX_INTENT_DELAY, MAX_IO_TIMEOUT, MAX_LEGS, MAX_PROBE_INTERVAL, MAX_RECOVERY_RATE,
};
use std::path::PathBuf;

/// Create a mirror of a primary, its secondaries and a metadata device.
///
/// The mirror is device NAME under /dev/mapper, the primary and every
/// secondary kept identical, change logs on the metadata device.
/// Devices may be paths, LVM logical volumes (vg/lv) or major:minor. The
/// legs must be unused (not mounted, not held by another device) and at
/// least --size big (default: the primary's size); the metadata device needs
/// 4 KiB plus 4 KiB per 32512 regions for each leg and for the intent log.
/// A blank (all zero) metadata device is formatted with a new UUID. One
/// that already holds metadata is refused unless --reuse-metadata (to
/// bring back a known mirror, `fracturectl activate` checks its UUID).
/// Unless --nosync, every secondary is first copied from the primary
/// (fracturectl wait NAME --in-sync).
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl create m0 --metadata vg/meta --primary vg/a --secondary vg2/b
  fracturectl create m1 --metadata /dev/sdd1 --primary /dev/sdb --secondary /dev/sdc \\
      --region-size 1M --recovery-rate 100M
  fracturectl create m2 --metadata vg/m2meta --primary vg/x --secondary vg/y --secondary vg/z --nosync")]
pub struct Args {
    /// Name of the new device (/dev/mapper/NAME).
    pub name: String,
    /// Metadata device: fracture logs and write-intent log.
    #[arg(long, value_name = "DEV")]
    pub metadata: String,
    /// The primary leg (leg 0).
    #[arg(long, value_name = "DEV")]
    pub primary: String,
    /// A secondary leg (legs 1..); give 1 to 8.
    #[arg(long = "secondary", value_name = "DEV", required = true)]
    pub secondaries: Vec<String>,
    /// Unit of change tracking: a power of two from 4K to 1G.
    #[arg(long, default_value = "512K", value_name = "SIZE")]
    pub region_size: String,
    /// Size of the mirror (default: the primary's size).
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// The legs are known identical (e.g. new and zeroed): skip the initial copy.
    #[arg(long, conflicts_with = "reuse_metadata")]
    pub nosync: bool,
    /// Cap recovery copies, per second (e.g. 100M); 0 = no cap.
    #[arg(long, value_name = "SIZE")]
    pub recovery_rate: Option<String>,
    /// Probe failed secondaries every SECONDS and resync them when they answer.
    #[arg(long, value_name = "SECONDS")]
    pub probe_interval: Option<u64>,
    /// Clear write-intent bits after MS without writes (default 5000).
    #[arg(long, value_name = "MS")]
    pub intent_delay: Option<u64>,
    /// Fracture a secondary that does not answer an I/O within MS.
    #[arg(long, value_name = "MS")]
    pub io_timeout: Option<u64>,
    /// Keep no write-intent log (full resync after a crash).
    #[arg(long, conflicts_with = "intent_delay")]
    pub nointent: bool,
    /// Send reads to the primary only, not balanced over the in-sync legs
    /// (for a secondary far away or much slower).
    #[arg(long)]
    pub read_primary: bool,
    /// Use metadata already on the device (same geometry): only with the same
    /// legs, in the same order, as when it was written; its logs say which
    /// regions each leg misses.
    #[arg(long)]
    pub reuse_metadata: bool,
    /// Where to write the activation file (default /etc/fracture, or $FRACTURE_CONFIG_DIR).
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Do not write an activation file.
    #[arg(long)]
    pub no_config: bool,
}

fn in_range(what: &str, v: u64, max: u64) -> Result<u64> {
    if v > max {
        bail!("--{what} {v} is out of range (0..{max})");
    }
    Ok(v)
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    let nr_legs = 1 + a.secondaries.len();
    if nr_legs > MAX_LEGS {
        bail!(
            "{} secondaries given: at most {}",
            a.secondaries.len(),
            MAX_LEGS - 1
        );
    }
    let region_bytes =
        units::parse_bytes(&a.region_size).map_err(|e| Error::new(format!("--region-size {e}")))?;
    if region_bytes % 512 != 0 {
        bail!(
            "--region-size {}: not a whole number of 512-byte sectors",
            a.region_size
        );
    }
    let region_sectors = region_bytes / 512;
    Geometry::check_region_size(region_sectors)
        .map_err(|e| Error::new(format!("--region-size {}: {e}", a.region_size)))?;
    let recovery_rate = match &a.recovery_rate {
        Some(r) => {
            let bytes =
                units::parse_bytes(r).map_err(|e| Error::new(format!("--recovery-rate {e}")))?;
            if bytes != 0 && bytes < 1024 {
                bail!("--recovery-rate {r}: the smallest cap is 1K per second (0 = no cap)");
            }
            in_range("recovery-rate (KiB/s)", bytes / 1024, MAX_RECOVERY_RATE)?
        }
        None => 0,
    };
    let probe_interval = in_range(
        "probe-interval",
        a.probe_interval.unwrap_or(0),
        MAX_PROBE_INTERVAL,
    )?;
    let intent_delay = in_range(
        "intent-delay",
        a.intent_delay.unwrap_or(0),
        MAX_INTENT_DELAY,
    )?;
    let io_timeout = in_range("io-timeout", a.io_timeout.unwrap_or(0), MAX_IO_TIMEOUT)?;

    let dm = Dm::new()?;
    if dm.exists(&a.name)? {
        bail!("a device called {} exists already", a.name);
    }
    let meta = device::resolve(&a.metadata)?;
    let mut legs: Vec<BlockDev> = vec![device::resolve(&a.primary)?];
    for s in &a.secondaries {
        legs.push(device::resolve(s)?);
    }
    // Duplicates, also under two names (vg/lv and /dev/dm-3).
    let all: Vec<(&BlockDev, String)> = std::iter::once((&meta, "metadata".to_string()))
        .chain(
            legs.iter()
                .enumerate()
                .map(|(i, l)| (l, format!("leg {i}"))),
        )
        .collect();
    for (i, (d, role)) in all.iter().enumerate() {
        for (e, role2) in &all[..i] {
            if (d.major, d.minor) == (e.major, e.minor) {
                bail!(
                    "{} ({role}) and {} ({role2}) are the same device {}",
                    d.given,
                    e.given,
                    d.devt()
                );
            }
        }
    }
    check_unused_all(&meta, &legs)?;
    let sectors = match &a.size {
        Some(s) => units::parse_sectors(s).map_err(|e| Error::new(format!("--size {e}")))?,
        None => legs[0].sectors,
    };
    if sectors == 0 {
        bail!(
            "the mirror would be empty: {} has no sectors",
            legs[0].given
        );
    }
    for (i, l) in legs.iter().enumerate() {
        if l.sectors < sectors {
            bail!(
                "{} (leg {i}) is too small: {} ({} sectors), the mirror is {} ({} sectors)",
                l.given,
                units::human(l.sectors * 512),
                l.sectors,
                units::human(sectors * 512),
                sectors
            );
        }
    }
    let geometry = Geometry::new(sectors, region_sectors).map_err(|e| Error::new(e.to_string()))?;
    let layout = Layout::new(nr_legs as u32, geometry.nr_regions());
    if meta.sectors < layout.min_sectors() {
        bail!(
            "{} (metadata) is too small: {}, a mirror of {} with {} legs and {} regions needs {}",
            meta.given,
            units::human(meta.sectors * 512),
            units::human(sectors * 512),
            nr_legs,
            geometry.nr_regions(),
            units::human(layout.min_sectors() * 512)
        );
    }

    // Format or reuse the metadata, exclusively (nobody else may use it).
    let md = MetaDev::open(&a.metadata, Access::WriteOffline)?;
    let (uuid, formatted) = match md.read_superblock()? {
        SuperblockRead::Blank => {
            // Block 0 alone says "never formatted" to the kernel; before
            // formatting, make sure the rest is not someone's data either
            // (a file system whose first block happens to be zero).
            let mut b = metadata::Block::new();
            for nr in 1..layout.total_blocks() {
                md.read_block(nr, &mut b)?;
                if !fracture_core::format::is_zero(&b) {
                    bail!(
                        "{} is not blank: block 0 is zero but block {nr} holds data; \
                         if nothing on it is needed, zero it (blkdiscard -z, or dd) first",
                        a.metadata
                    );
                }
            }
            let mut sb = Superblock::new(metadata::random_uuid()?, &geometry, nr_legs as u32);
            if !a.nosync {
                sb.start_initial_sync();
            }
            md.format(&sb)?;
            (sb.uuid, true)
        }
        SuperblockRead::Valid(sb) => {
            if !a.reuse_metadata {
                bail!(
                    "{} already holds the metadata of mirror {} ({} legs, {} regions): \
                     `fracturectl activate` brings a known mirror back; --reuse-metadata uses it \
                     with these legs (only if they are the ones it was written for); \
                     `fracturectl format --force` discards it",
                    a.metadata,
                    metadata::uuid_string(&sb.uuid),
                    sb.nr_legs,
                    sb.nr_regions
                );
            }
            // If this mirror's activation file is known, the legs must be
            // the ones it recorded.
            let dir = config::dir(a.config_dir.as_deref());
            let uuid_s = metadata::uuid_string(&sb.uuid);
            for n in Config::names(&dir).unwrap_or_default() {
                let Ok(c) = Config::load(&dir, &n) else { continue };
                if c.uuid != uuid_s {
                    continue;
                }
                for (i, (l, want)) in legs.iter().zip(&c.leg_ids).enumerate() {
                    let have = device::identity(l).unwrap_or_default();
                    if !want.is_empty() && &have != want {
                        bail!(
                            "{} holds the metadata of mirror {n} ({uuid_s}), whose leg {i} was {want}; {} is not that device",
                            a.metadata,
                            l.given
                        );
                    }
                }
            }
            sb.check_table(&geometry, nr_legs as u32).map_err(|e| {
                Error::new(format!(
                    "{} holds the metadata of another mirror ({}): {e}; use another device, or `fracturectl format --force` to discard it",
                    a.metadata,
                    metadata::uuid_string(&sb.uuid)
                ))
            })?;
            (sb.uuid, false)
        }
        SuperblockRead::Invalid(e) => bail!(
            "{} is neither blank nor dm-fracture metadata ({e}); use another device, or `fracturectl format --force` to overwrite it",
            a.metadata
        ),
    };
    drop(md);
    let uuid_s = metadata::uuid_string(&uuid);
    // Names that survive a reboot, and what identifies each device.
    let stable = |d: &BlockDev| {
        device::stable_name(d).unwrap_or_else(|| {
            if !a.no_config {
                eprintln!(
                    "fracturectl: warning: {} may name another device after a reboot (no stable name); \
                     activate checks that it is the same one, or refuses",
                    d.given
                );
            }
            d.given.clone()
        })
    };
    let ident = |d: &BlockDev| device::identity(d).unwrap_or_default();
    let cfg = Config {
        name: a.name.clone(),
        uuid: uuid_s.clone(),
        metadata: stable(&meta),
        legs: legs.iter().map(stable).collect(),
        metadata_id: ident(&meta),
        leg_ids: legs.iter().map(ident).collect(),
        sectors,
        region_sectors,
        recovery_rate,
        probe_interval,
        intent_delay,
        io_timeout,
        nointent: a.nointent,
        read_primary: a.read_primary,
    };
    let devts: Vec<String> = legs.iter().map(BlockDev::devt).collect();
    let params = cfg.params(&meta.devt(), &devts);
    dm.create(
        &a.name,
        Some(&format!("{UUID_PREFIX}{uuid_s}")),
        &[(0, sectors, TARGET.to_string(), params)],
    )?;
    println!(
        "created /dev/mapper/{}: {} legs, {}, {} regions of {}, metadata {} ({})",
        a.name,
        nr_legs,
        units::human(sectors * 512),
        geometry.nr_regions(),
        units::human(region_sectors * 512),
        a.metadata,
        if formatted { "formatted" } else { "reused" }
    );
    if formatted && !a.nosync {
        println!(
            "the secondaries are being copied from the primary: fracturectl wait {} --in-sync",
            a.name
        );
    }
    if !a.no_config {
        let dir = config::dir(a.config_dir.as_deref());
        match cfg.save(&dir) {
            Ok(p) => println!("activation file {}", p.display()),
            Err(e) => eprintln!("fracturectl: warning: the mirror works but its activation file was not written: {e}"),
        }
    }
    Ok(0)
}

/// Every device must be unused.
pub fn check_unused_all(meta: &BlockDev, legs: &[BlockDev]) -> Result<()> {
    device::check_unused(meta, "metadata")?;
    for (i, l) in legs.iter().enumerate() {
        device::check_unused(l, &format!("leg {i}"))?;
    }
    Ok(())
}
