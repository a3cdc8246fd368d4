// SPDX-License-Identifier: GPL-2.0

//! Reading and writing a metadata device (or an image of one in a file),
//! 4 KiB block by block, with the format of `fracture_core::format`.
//!
//! Block devices are read and written with `O_DIRECT`: the kernel target
//! writes its metadata with bios that bypass the device's page cache, so a
//! buffered read could return blocks older than what is on disk.

use crate::bail;
use crate::device;
use crate::error::{Error, Result};
use fracture_core::format::{
    format_block, is_zero, FormatError, Superblock, BLOCK_SIZE, SECTORS_PER_BLOCK,
};
use std::fs::{File, OpenOptions};
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};

/// One 4 KiB block, aligned for `O_DIRECT`.
#[repr(C, align(4096))]
pub struct Block([u8; BLOCK_SIZE]);

impl Block {
    /// A zeroed block.
    pub fn new() -> Box<Self> {
        Box::new(Self([0; BLOCK_SIZE]))
    }
}

impl Deref for Block {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for Block {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// How a metadata device is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only, shared: also works while a mirror uses the device (what it
    /// reads may be a moment old).
    ReadShared,
    /// Read only, exclusive (`O_EXCL`): refused while a mirror uses it.
    ReadOffline,
    /// Read and write, exclusive.
    WriteOffline,
}

/// An open metadata device or image file.
pub struct MetaDev {
    file: File,
    name: String,
    bytes: u64,
}

/// What block 0 holds.
pub enum SuperblockRead {
    /// All zero: never formatted.
    Blank,
    /// A valid superblock.
    Valid(Superblock),
    /// Something else; why it is refused.
    Invalid(FormatError),
}

impl MetaDev {
    /// Opens `name`: a block device (path, `vg/lv`, `major:minor`) or a
    /// regular file holding an image.
    pub fn open(name: &str, access: Access) -> Result<Self> {
        let path = device::path_of(name);
        let md = std::fs::metadata(&path).map_err(|e| {
            if device::is_lvm_name(name) && e.kind() == std::io::ErrorKind::NotFound {
                Error::new(format!(
                    "{name}: no such logical volume, or it is not active (lvchange -ay {name})"
                ))
            } else {
                Error::io(name, e)
            }
        })?;
        let block = md.file_type().is_block_device();
        if !block && !md.is_file() {
            bail!("{name}: neither a block device nor an image file");
        }
        let mut o = OpenOptions::new();
        o.read(true).write(access == Access::WriteOffline);
        let mut flags = 0;
        if block {
            flags |= libc::O_DIRECT;
            if access != Access::ReadShared {
                flags |= libc::O_EXCL;
            }
        }
        o.custom_flags(flags);
        let file = o.open(&path).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                Error::new(format!(
                    "{name} is in use (the metadata of an active mirror?): offline commands need it unused; remove the mirror first"
                ))
            } else {
                Error::io(name, e)
            }
        })?;
        let bytes = if block {
            let dev = device::resolve(name)?;
            dev.sectors * 512
        } else {
            md.len()
        };
        Ok(Self {
            file,
            name: name.to_string(),
            bytes,
        })
    }

    /// Creates (or truncates) an image file of `bytes` bytes, or opens a
    /// block device for writing, exclusively.
    pub fn create_output(name: &str, bytes: u64) -> Result<Self> {
        let path = device::path_of(name);
        let is_block = std::fs::metadata(&path)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        if is_block || device::is_lvm_name(name) {
            let dev = Self::open(name, Access::WriteOffline)?;
            if dev.bytes < bytes {
                bail!("{name} is too small: {} bytes, {} needed", dev.bytes, bytes);
            }
            return Ok(dev);
        }
        if name.contains(':') {
            bail!("{name}: no such block device");
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io(name, e))?;
        file.set_len(bytes).map_err(|e| Error::io(name, e))?;
        Ok(Self {
            file,
            name: name.to_string(),
            bytes,
        })
    }

    /// The name it was opened by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whole 4 KiB blocks on the device.
    pub fn blocks(&self) -> u64 {
        self.bytes / BLOCK_SIZE as u64
    }

    /// Size in sectors.
    pub fn sectors(&self) -> u64 {
        self.bytes / 512
    }

    /// Reads block `nr`.
    pub fn read_block(&self, nr: u64, buf: &mut Block) -> Result<()> {
        if nr >= self.blocks() {
            bail!(
                "{}: block {nr} is past the end of the device ({} blocks)",
                self.name,
                self.blocks()
            );
        }
        self.file
            .read_exact_at(buf, nr * BLOCK_SIZE as u64)
            .map_err(|e| Error::io(format!("{}: reading block {nr}", self.name), e))
    }

    /// Writes block `nr`.
    pub fn write_block(&self, nr: u64, buf: &Block) -> Result<()> {
        if nr >= self.blocks() {
            bail!("{}: block {nr} is past the end of the device", self.name);
        }
        self.file
            .write_all_at(buf, nr * BLOCK_SIZE as u64)
            .map_err(|e| Error::io(format!("{}: writing block {nr}", self.name), e))
    }

    /// Makes what was written durable (a cache flush on a block device).
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io(format!("{}: flush", self.name), e))
    }

    /// Reads and decodes block 0.
    pub fn read_superblock(&self) -> Result<SuperblockRead> {
        if self.blocks() == 0 {
            bail!("{}: smaller than one 4 KiB block", self.name);
        }
        let mut b = Block::new();
        self.read_block(0, &mut b)?;
        if is_zero(&b) {
            return Ok(SuperblockRead::Blank);
        }
        Ok(match Superblock::decode(&b) {
            Ok(sb) => SuperblockRead::Valid(sb),
            Err(e) => SuperblockRead::Invalid(e),
        })
    }

    /// Writes a new metadata layout for `sb`: every bitmap block, a flush,
    /// then the superblock and a flush (a device cut half way is still blank
    /// at block 0, as the kernel's own formatting does it).
    pub fn format(&self, sb: &Superblock) -> Result<()> {
        let layout = sb.layout();
        if self.sectors() < layout.min_sectors() {
            bail!(
                "{} is too small: {} sectors, the metadata needs {} ({} blocks of 4 KiB)",
                self.name,
                self.sectors(),
                layout.min_sectors(),
                layout.min_sectors() / SECTORS_PER_BLOCK
            );
        }
        let mut b = Block::new();
        for nr in 1..layout.total_blocks() {
            if format_block(sb, nr, &mut b).is_none() {
                bail!("internal error: block {nr} outside the layout");
            }
            self.write_block(nr, &b)?;
        }
        self.sync()?;
        sb.encode(&mut b);
        self.write_block(0, &b)?;
        self.sync()
    }
}

/// 16 random bytes for a new metadata UUID.
pub fn random_uuid() -> Result<[u8; 16]> {
    let mut u = [0u8; 16];
    let mut f = File::open("/dev/urandom").map_err(|e| Error::io("/dev/urandom", e))?;
    std::io::Read::read_exact(&mut f, &mut u).map_err(|e| Error::io("/dev/urandom", e))?;
    Ok(u)
}

/// A UUID as text: `8-4-4-4-12` hex digits.
pub fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses [`uuid_string`]'s format (dashes optional).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let h: String = s.chars().filter(|&c| c != '-').collect();
    if h.len() != 32 {
        return None;
    }
    let mut u = [0u8; 16];
    for (i, b) in u.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        let u = [0xab; 16];
        let s = uuid_string(&u);
        assert_eq!(s, "abababab-abab-abab-abab-abababababab");
        assert_eq!(parse_uuid(&s), Some(u));
        assert_eq!(parse_uuid("abc"), None);
        assert_eq!(parse_uuid("zzababab-abab-abab-abab-abababababab"), None);
    }
}
