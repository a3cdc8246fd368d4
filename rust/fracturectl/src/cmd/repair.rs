// SPDX-License-Identifier: GPL-2.0

//! `fracturectl repair`: copy a damaged metadata device to a new one,
//! replacing what cannot be trusted by its safe value.

use crate::bail;
use crate::device;
use crate::error::{Error, Result};
use crate::metadata::{Access, Block, MetaDev, SuperblockRead};
use crate::offline::{block_regions, print_out, read_bitmap_block, BlockRead, NO_METADATA};
use fracture_core::format::{
    clear_bit, fill, next_set_bit, payload_mut, seal, BlockType, BLOCK_SIZE, FLAG_CLEAN,
};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Write a repaired copy of damaged metadata.
///
/// Write a repaired copy of metadata <IN> to <OUT> (a device or image
/// file, never <IN> itself). A bitmap block that fails its checksum, type,
/// location or UUID check is rebuilt with every region marked dirty (the
/// safe direction: those regions are copied again); bits past the last
/// region are cleared. A damaged superblock cannot be repaired (the
/// geometry is unknown): recreate the mirror and rebuild its secondaries.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl repair /dev/vg/meta /dev/vg/meta2
  fracturectl repair /dev/vg/meta repaired.img && fracturectl check repaired.img")]
pub struct Args {
    /// The damaged metadata device or image.
    pub input: String,
    /// Where to write the repaired copy.
    pub output: String,
}

/// Whether `a` and `b` name the same file or block device (`b` may not
/// exist yet).
fn same_target(a: &str, b: &str) -> Result<bool> {
    let ma = std::fs::metadata(device::path_of(a)).map_err(|e| Error::io(a, e))?;
    let mb = match std::fs::metadata(device::path_of(b)) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(b, e)),
    };
    if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
        return Ok(true);
    }
    Ok(ma.file_type().is_block_device()
        && mb.file_type().is_block_device()
        && ma.rdev() == mb.rdev())
}

/// Whether `name` is (or will be opened as) a block device.
fn is_block(name: &str) -> bool {
    device::is_lvm_name(name)
        || std::fs::metadata(name)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false)
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    if same_target(&a.input, &a.output)? {
        bail!(
            "{} and {} are the same {}: repair writes a copy, never over its input",
            a.input,
            a.output,
            if is_block(&a.input) { "device" } else { "file" }
        );
    }
    let input = MetaDev::open(&a.input, Access::ReadOffline)?;
    let iname = input.name().to_string();
    if input.blocks() == 0 {
        bail!("cannot repair {iname}: smaller than one 4 KiB block, no superblock");
    }
    let mut sb = match input.read_superblock()? {
        SuperblockRead::Valid(sb) => sb,
        SuperblockRead::Blank => bail!("cannot repair {iname}: {NO_METADATA}"),
        SuperblockRead::Invalid(e) => bail!(
            "cannot repair {iname}: {e}; the geometry is unknown: recreate the mirror (fracturectl format) and rebuild its secondaries"
        ),
    };
    let layout = sb.layout();
    let needed = layout.total_blocks().saturating_mul(BLOCK_SIZE as u64);
    // A truncated device is rebuilt with its missing blocks all dirty; but a
    // superblock that asks for far more than the device ever held is more
    // likely garbage with a valid checksum than a real mirror.
    if needed > input.bytes().saturating_mul(16).max(1 << 30) {
        bail!(
            "cannot repair {iname}: its superblock describes {} of metadata, the device holds {}: \
             not a truncated device; recreate the mirror (fracturectl format) and rebuild its secondaries",
            crate::units::human(needed),
            crate::units::human(input.bytes())
        );
    }
    let out_bytes = if is_block(&a.output) {
        needed
    } else {
        needed.max(input.bytes())
    };
    let output = MetaDev::create_output(&a.output, out_bytes)?;
    let oname = output.name().to_string();

    let mut lines = Vec::new();
    let mut buf = Block::new();
    for which in 0..=sb.nr_legs {
        let label = if which < sb.nr_legs {
            format!("leg {which}")
        } else {
            "intent log".to_string()
        };
        for index in 0..layout.bitmap_blocks() {
            let (nr, kind, state) = read_bitmap_block(&input, &sb, which, index, &mut buf)?;
            let (first, last) = block_regions(index, sb.nr_regions);
            match state {
                BlockRead::Good {
                    padding_clear: true,
                } => {}
                BlockRead::Good {
                    padding_clear: false,
                } => {
                    let n = (last - first + 1) as usize;
                    let p = payload_mut(&mut buf);
                    let mut cleared = 0u64;
                    while let Some(bit) = next_set_bit(p, n) {
                        clear_bit(p, bit);
                        cleared += 1;
                    }
                    lines.push(format!(
                        "{label}: {} block {nr}: cleared {cleared} bits set past the last region",
                        kind.name()
                    ));
                }
                BlockRead::Bad(damage) => {
                    buf.fill(0);
                    fill(payload_mut(&mut buf), index, sb.nr_regions);
                    if kind == BlockType::IntentBitmap {
                        sb.flags &= !FLAG_CLEAN;
                        lines.push(format!(
                            "{label}: {} block {nr} ({damage}): rebuilt with regions {first}-{last} marked, and the clean flag cleared: activation copies every region from the primary to the secondaries",
                            kind.name()
                        ));
                    } else {
                        lines.push(format!(
                            "{label}: {} block {nr} ({damage}): rebuilt with regions {first}-{last} dirty",
                            kind.name()
                        ));
                    }
                }
            }
            seal(&mut buf, kind, nr, &sb.uuid);
            output.write_block(nr, &buf)?;
        }
    }
    output.sync()?;
    sb.commit = sb.commit.wrapping_add(1);
    sb.encode(&mut buf);
    output.write_block(0, &buf)?;
    output.sync()?;

    let mut out = String::new();
    for l in &lines {
        out.push_str(&format!("repaired: {l}\n"));
    }
    if lines.is_empty() {
        out.push_str(&format!(
            "nothing needed repair: wrote a copy of {iname} to {oname} ({} blocks, commit {})\n",
            layout.total_blocks(),
            sb.commit
        ));
    } else {
        out.push_str(&format!(
            "wrote the repaired metadata of {iname} to {oname}: {} blocks, {} repaired, commit {}\n",
            layout.total_blocks(),
            lines.len(),
            sb.commit
        ));
    }
    print_out(&out)?;
    Ok(0)
}
