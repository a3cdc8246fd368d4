// SPDX-License-Identifier: GPL-2.0

//! `fracturectl format`: write new, empty metadata.

use crate::bail;
use crate::error::Result;
use crate::metadata::{
    parse_uuid, random_uuid, uuid_string, Access, Block, MetaDev, SuperblockRead,
};
use crate::offline::print_out;
use crate::units::{human, parse_sectors};
use fracture_core::format::{is_zero, Superblock, BLOCK_SIZE};
use fracture_core::region::Geometry;
use fracture_core::table::{MAX_LEGS, MIN_LEGS};

/// Format a metadata device for a new mirror.
///
/// Format a metadata device for a mirror of <LEGS> legs of <SIZE>: a new
/// UUID, every leg in sync (with --nosync) or every secondary to be copied
/// from the primary (the default). Refuses a device that is not all zero
/// unless --force is given: that throws away the fracture logs on it.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl format /dev/vg/meta --legs 2 --size 10G --region-size 512K
  fracturectl format meta.img --legs 3 --size 1G --nosync --force")]
pub struct Args {
    /// Metadata device (path, vg/lv, major:minor) or image file.
    pub metadata: String,
    /// Number of legs, primary included (2..9).
    #[arg(long)]
    pub legs: u32,
    /// Size of the mirror (e.g. 10G, 2097152s).
    #[arg(long)]
    pub size: String,
    /// Region size, a power of two from 4K to 1G.
    #[arg(long, default_value = "512K")]
    pub region_size: String,
    /// Record the secondaries as already identical to the primary.
    #[arg(long)]
    pub nosync: bool,
    /// Overwrite a device that is not all zero.
    #[arg(long)]
    pub force: bool,
    /// Use this metadata UUID instead of a random one (for tests and
    /// restores).
    #[arg(long, value_name = "UUID")]
    pub uuid: Option<String>,
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    if !(MIN_LEGS as u32..=MAX_LEGS as u32).contains(&a.legs) {
        bail!(
            "--legs {}: a mirror has {MIN_LEGS} to {MAX_LEGS} legs, the primary included",
            a.legs
        );
    }
    let size =
        parse_sectors(&a.size).map_err(|e| crate::error::Error::new(format!("--size {e}")))?;
    if size == 0 {
        bail!("--size {}: the mirror cannot be empty", a.size);
    }
    let region = parse_sectors(&a.region_size)
        .map_err(|e| crate::error::Error::new(format!("--region-size {e}")))?;
    if let Err(e) = Geometry::check_region_size(region) {
        bail!(
            "--region-size {}: {region} sectors {e} (a power of two from 4K to 1G)",
            a.region_size
        );
    }
    let geometry = match Geometry::new(size, region) {
        Ok(g) => g,
        Err(e) => bail!("--region-size {}: {e}", a.region_size),
    };
    let uuid = match &a.uuid {
        Some(s) => match parse_uuid(s) {
            Some(u) => u,
            None => bail!("--uuid {s}: not a UUID (32 hex digits, dashes optional)"),
        },
        None => random_uuid()?,
    };
    let mut sb = Superblock::new(uuid, &geometry, a.legs);
    let layout = sb.layout();
    if layout.bitmap_blocks() > u64::from(u32::MAX) {
        bail!(
            "{} regions are too many for the metadata format: use a larger --region-size",
            geometry.nr_regions()
        );
    }
    if !a.nosync {
        sb.start_initial_sync();
    }

    // An image file that does not exist yet is made, of the layout's size.
    let path = crate::device::path_of(&a.metadata);
    if !path.exists()
        && !crate::device::is_lvm_name(&a.metadata)
        && !a.metadata.starts_with("/dev/")
    {
        MetaDev::create_output(&a.metadata, layout.total_blocks() * BLOCK_SIZE as u64)?;
    }
    let dev = MetaDev::open(&a.metadata, Access::WriteOffline)?;
    let name = dev.name().to_string();
    let needed = layout.min_sectors();
    if dev.sectors() < needed {
        bail!(
            "{name} is too small: {} sectors ({}), the metadata of {} legs and {} regions needs {needed} sectors ({}, {} blocks of 4 KiB)",
            dev.sectors(),
            human(dev.bytes()),
            a.legs,
            geometry.nr_regions(),
            human(needed * 512),
            layout.total_blocks()
        );
    }
    if !a.force {
        if let Some(nr) = first_nonzero_block(&dev, layout.total_blocks())? {
            let what = match dev.read_superblock()? {
                SuperblockRead::Valid(old) => format!(
                    "holds dm-fracture metadata (uuid {}, {} legs, {} regions)",
                    uuid_string(&old.uuid),
                    old.nr_legs,
                    old.nr_regions
                ),
                _ => format!("is not all zero (block {nr} has data)"),
            };
            bail!(
                "{name} {what}: refusing to format it; --force overwrites it (any fracture log on it is lost)"
            );
        }
    }
    dev.format(&sb)?;
    print_out(&format!(
        "formatted {name}: uuid {}, {} legs, {} ({} sectors) in {} regions of {}, {} metadata blocks ({}); {}\n",
        uuid_string(&uuid),
        a.legs,
        human(size.saturating_mul(512)),
        size,
        geometry.nr_regions(),
        human(region * 512),
        layout.total_blocks(),
        human(layout.total_blocks() * BLOCK_SIZE as u64),
        if a.nosync {
            "every leg in sync (nosync)"
        } else {
            "every secondary will be copied from the primary"
        }
    ))?;
    Ok(0)
}

/// The first block below `blocks` that is not all zero.
fn first_nonzero_block(dev: &MetaDev, blocks: u64) -> Result<Option<u64>> {
    let mut b = Block::new();
    for nr in 0..blocks.min(dev.blocks()) {
        dev.read_block(nr, &mut b)?;
        if !is_zero(&b) {
            return Ok(Some(nr));
        }
    }
    Ok(None)
}
