// SPDX-License-Identifier: GPL-2.0

//! Formatting an all-zero metadata device: the bitmaps in large requests,
//! then the superblock, durable and read back (a device that loses writes
//! is refused as such), with progress in the kernel log for a large one.

use super::store::CHUNK_BYTES;
use crate::dm::device::Dev;
use crate::dm::io::{Block, IoClient, BLOCK_BYTES};
use crate::dm::kthread::now_ns;
use crate::dm::target::CtrError;
use crate::format::{format_block, is_zero, Layout, Superblock, SECTORS_PER_BLOCK};
use kernel::c_str;
use kernel::prelude::*;

/// A format taking longer than this many seconds logs its progress, at
/// this interval.
const PROGRESS_SECS: u64 = 5;

/// Writes a new layout: the bitmaps (all set for a leg that starts
/// recovering, else empty), in large requests, then the superblock after a
/// cache flush and with FUA, which is then read back: a device that loses
/// writes is refused as such. Returns the time it took, in milliseconds.
pub(super) fn format(
    io: &IoClient,
    dev: &Dev,
    layout: &Layout,
    sb: &Superblock,
    buf: &mut Block,
) -> Result<u64, CtrError> {
    let err = |e: Error| {
        crate::dm_err!("cannot format metadata device {} ({:?})", dev.name(), e);
        CtrError {
            reason: c_str!("metadata write error"),
            errno: e,
        }
    };
    let total = layout.total_blocks();
    let start = now_ns();
    let big = total * BLOCK_BYTES as u64 >= BIG_FORMAT_BYTES;
    if big {
        crate::dm_info!(
            "formatting metadata device {}: {} MiB ({} blocks)",
            dev.name(),
            (total * BLOCK_BYTES as u64) >> 20,
            total
        );
    }
    let len = (total * BLOCK_BYTES as u64).min(CHUNK_BYTES as u64) as usize;
    let mut chunk = Block::with_len(len)?;
    let per_chunk = (len / BLOCK_BYTES) as u64;
    let mut next_report = start + PROGRESS_SECS * NSEC_PER_SEC;
    let mut nr = 1;
    while nr < total {
        let n = per_chunk.min(total - nr);
        for (i, block) in chunk
            .bytes_mut()
            .chunks_exact_mut(BLOCK_BYTES)
            .take(n as usize)
            .enumerate()
        {
            // Every block number below total_blocks() is in the layout.
            if format_block(sb, nr + i as u64, block).is_none() {
                return Err(err(EINVAL));
            }
        }
        io.write_part(
            dev,
            nr * SECTORS_PER_BLOCK,
            &chunk,
            n as usize * BLOCK_BYTES,
        )
        .map_err(err)?;
        nr += n;
        let now = now_ns();
        if now >= next_report {
            crate::dm_info!(
                "formatting metadata device {}: {} of {} MiB written",
                dev.name(),
                (nr * BLOCK_BYTES as u64) >> 20,
                (total * BLOCK_BYTES as u64) >> 20
            );
            next_report = now + PROGRESS_SECS * NSEC_PER_SEC;
        }
    }
    // The superblock last, after a flush of the bitmaps and with FUA:
    // before it is durable, the device is still "all zero" at block 0 and
    // would be formatted again.
    sb.encode(buf.bytes_mut());
    io.write_after_flush(dev, 0, buf).map_err(err)?;
    let mut back = Block::new()?;
    io.read(dev, 0, &mut back).map_err(err)?;
    if back.bytes() != buf.bytes() {
        crate::dm_err!(
            "metadata device {} did not keep what was written: the superblock read back right after the format {}; refusing it",
            dev.name(),
            if is_zero(back.bytes()) {
                "is all zero"
            } else {
                "differs"
            }
        );
        return Err(CtrError {
            reason: c_str!("metadata device loses writes"),
            errno: EIO,
        });
    }
    Ok((now_ns() - start) / 1_000_000)
}

/// Formats of at least this many bytes say when they start.
const BIG_FORMAT_BYTES: u64 = 16 << 20;

const NSEC_PER_SEC: u64 = 1_000_000_000;
