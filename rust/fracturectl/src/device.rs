// SPDX-License-Identifier: GPL-2.0

//! Block devices as users name them: a path (`/dev/sdb`, `/dev/mapper/x`),
//! an LVM logical volume (`vg/lv`) or `major:minor`; and the checks done
//! before one is put under a mirror.

use crate::bail;
use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A resolved block device.
#[derive(Clone, Debug)]
pub struct BlockDev {
    /// The name the user gave.
    pub given: String,
    /// A path to its node.
    pub path: PathBuf,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Size in 512-byte sectors.
    pub sectors: u64,
}

impl BlockDev {
    /// `major:minor`, as table lines carry it.
    pub fn devt(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// Whether `s` names an LVM logical volume (`vg/lv`, no leading slash).
/// A relative path that exists (`imgs/meta.img`), or whose folder exists
/// when `/dev/<vg>` does not, is a file, not an LV.
pub fn is_lvm_name(s: &str) -> bool {
    let Some((vg, lv)) = s.split_once('/') else {
        return false;
    };
    let syntax = !s.starts_with('/')
        && !s.starts_with('.')
        && !vg.contains(':')
        && !lv.is_empty()
        && !lv.contains('/')
        && !lv.contains(':');
    syntax
        && !Path::new(s).exists()
        && (Path::new("/dev").join(vg).exists() || !Path::new(vg).is_dir())
}

/// Whether `s` is `major:minor`.
fn parse_devt(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The path a name refers to (not checked to exist).
pub fn path_of(name: &str) -> PathBuf {
    if let Some((ma, mi)) = parse_devt(name) {
        return node_of(ma, mi).unwrap_or_else(|| PathBuf::from(format!("/dev/block/{ma}:{mi}")));
    }
    if is_lvm_name(name) {
        return PathBuf::from(format!("/dev/{name}"));
    }
    PathBuf::from(name)
}

/// Resolves a user's device name to a block device with its size.
pub fn resolve(name: &str) -> Result<BlockDev> {
    let (major, minor) = match parse_devt(name) {
        Some(d) => d,
        None => {
            let path = path_of(name);
            let md = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound && is_lvm_name(name) => bail!(
                    "{name}: no such logical volume, or it is not active (lvchange -ay {name})"
                ),
                Err(e) => return Err(Error::io(name, e)),
            };
            if !md.file_type().is_block_device() {
                bail!("{name}: not a block device");
            }
            let rdev = md.rdev();
            (libc::major(rdev), libc::minor(rdev))
        }
    };
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let size = fs::read_to_string(sys.join("size"))
        .map_err(|_| Error::new(format!("{name}: no block device {major}:{minor}")))?;
    let sectors = size
        .trim()
        .parse()
        .map_err(|_| Error::new(format!("{name}: cannot read its size")))?;
    Ok(BlockDev {
        given: name.to_string(),
        path: node_of(major, minor).unwrap_or_else(|| path_of(name)),
        major,
        minor,
        sectors,
    })
}

/// A `/dev` path for `major:minor`: `/dev/mapper/<name>` for dm devices,
/// `/dev/<kernel name>` otherwise, if it exists.
pub fn node_of(major: u32, minor: u32) -> Option<PathBuf> {
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if let Ok(n) = fs::read_to_string(sys.join("dm/name")) {
        let p = PathBuf::from(format!("/dev/mapper/{}", n.trim()));
        if p.exists() {
            return Some(p);
        }
    }
    let uevent = fs::read_to_string(sys.join("uevent")).ok()?;
    let devname = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    let p = PathBuf::from(format!("/dev/{devname}"));
    p.exists().then_some(p)
}

/// A short name for `major:minor` for tables: the dm name or kernel name.
pub fn display_name(major: u32, minor: u32) -> String {
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if let Ok(n) = fs::read_to_string(sys.join("dm/name")) {
        return n.trim().to_string();
    }
    fs::read_to_string(sys.join("uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// What identifies `dev` across reboots, if anything does: a dm device's
/// UUID (an LVM volume's `LVM-...`), a disk's WWID, a loop device's backing
/// file. `None` for devices with no identity (RAM disks, ...).
pub fn identity(dev: &BlockDev) -> Option<String> {
    let sys = format!("/sys/dev/block/{}:{}", dev.major, dev.minor);
    let read = |p: &str| {
        fs::read_to_string(format!("{sys}/{p}"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    if let Some(u) = read("dm/uuid") {
        return Some(format!("dm-uuid:{u}"));
    }
    if let Some(n) = read("dm/name") {
        return Some(format!("dm-name:{n}"));
    }
    if let Some(w) = read("wwid").or_else(|| read("device/wwid")) {
        return Some(format!("wwid:{w}"));
    }
    read("loop/backing_file").map(|f| format!("loop:{f}"))
}

/// A name for `dev` that still means it after a reboot: the user's own if
/// it is an LVM name, a `/dev/mapper/` or `/dev/disk/by-*` path; else the
/// `/dev/mapper/` name of a dm device or a `/dev/disk/by-id/` link to it.
/// `None` when there is none (the kernel's `/dev/sdX`, `/dev/loopN` may
/// name another device next time).
pub fn stable_name(dev: &BlockDev) -> Option<String> {
    let g = &dev.given;
    if is_lvm_name(g) || g.starts_with("/dev/mapper/") || g.starts_with("/dev/disk/by-") {
        return Some(g.clone());
    }
    if let Ok(n) = fs::read_to_string(format!(
        "/sys/dev/block/{}:{}/dm/name",
        dev.major, dev.minor
    )) {
        return Some(format!("/dev/mapper/{}", n.trim()));
    }
    let mut links: Vec<PathBuf> = fs::read_dir("/dev/disk/by-id")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            fs::metadata(p)
                .map(|m| {
                    m.file_type().is_block_device()
                        && m.rdev() == libc::makedev(dev.major, dev.minor)
                })
                .unwrap_or(false)
        })
        .collect();
    // wwn- links first: they name the disk, not the path to it.
    links.sort_by_key(|p| (!p.to_string_lossy().contains("/wwn-"), p.clone()));
    links.first().map(|p| p.to_string_lossy().into_owned())
}

/// Devices holding `dev` open through the kernel (dm tables, md arrays,
/// ...): the names under its `holders` directory.
pub fn holders(dev: &BlockDev) -> Vec<String> {
    let dir = format!("/sys/dev/block/{}:{}/holders", dev.major, dev.minor);
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Where `dev` is mounted, if it is (from /proc/self/mountinfo).
pub fn mount_point(dev: &BlockDev) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = dev.devt();
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && f[2] == want).then(|| f[4].to_string())
    })
}

/// Refuses a device that is mounted, held by another device, or open
/// exclusively by anyone (a file system, another dm table, md, ...).
pub fn check_unused(dev: &BlockDev, role: &str) -> Result<()> {
    if let Some(m) = mount_point(dev) {
        bail!("{} ({role}) is mounted on {m}", dev.given);
    }
    let h = holders(dev);
    if !h.is_empty() {
        bail!(
            "{} ({role}) is in use by {} (see /sys/dev/block/{}/holders)",
            dev.given,
            h.iter()
                .map(|n| display_name_of_kname(n))
                .collect::<Vec<_>>()
                .join(", "),
            dev.devt()
        );
    }
    match open_exclusive(&dev.path, false) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            bail!(
                "{} ({role}) is in use (opened exclusively by another program)",
                dev.given
            )
        }
        Err(e) => Err(Error::io(&dev.given, e)),
    }
}

fn display_name_of_kname(kname: &str) -> String {
    fs::read_to_string(format!("/sys/block/{kname}/dm/name"))
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|_| kname.to_string())
}

/// Opens a block device with `O_EXCL` (fails with `EBUSY` while a file
/// system, a dm table or another `O_EXCL` opener holds it).
pub fn open_exclusive(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_EXCL)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_lvm_name("vg/lv"));
        assert!(!is_lvm_name("/dev/vg/lv"));
        assert!(!is_lvm_name("vg"));
        assert!(!is_lvm_name("a/b/c"));
        assert!(!is_lvm_name("vg/"));
        assert_eq!(path_of("vg/lv"), PathBuf::from("/dev/vg/lv"));
        assert_eq!(path_of("4095:4"), PathBuf::from("/dev/block/4095:4"));
        assert_eq!(path_of("/dev/sdb"), PathBuf::from("/dev/sdb"));
        assert_eq!(parse_devt("8:16"), Some((8, 16)));
        assert_eq!(parse_devt("8:x"), None);
    }
}
