// SPDX-License-Identifier: GPL-2.0

//! Device-mapper through the `devicemapper` crate's ioctls: the few
//! operations the tool needs, with errors worded for the user and the
//! kernel's own reason (from the kernel log) when it refuses a table or a
//! message.

use crate::bail;
use crate::error::{Error, Result};
use devicemapper::{errors, DevId, DmError, DmFlags, DmName, DmOptions, DmUuid, DM};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// The target type name.
pub const TARGET: &str = "fracture";
/// Prefix of the dm UUID of a mirror made by fracturectl; the metadata UUID
/// follows.
pub const UUID_PREFIX: &str = "FRACTURE-";

/// An open `/dev/mapper/control`.
pub struct Dm {
    dm: DM,
}

/// One target of a table or status: start, length, type, parameters.
pub type Line = (u64, u64, String, String);

fn errno_of(e: &DmError) -> Option<i32> {
    match e {
        DmError::Core(errors::Error::Ioctl(_, _, _, errno)) => Some(**errno as i32),
        _ => None,
    }
}

fn describe(e: &DmError) -> String {
    match errno_of(e) {
        Some(n) => {
            let s = std::io::Error::from_raw_os_error(n).to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
        None => e.to_string(),
    }
}

/// Reads what the kernel logs while an operation runs: opened (at the end of
/// the log) before it, read after it.
struct KernelLog(Option<File>);

impl KernelLog {
    fn start() -> Self {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()
            .and_then(|mut f| f.seek(SeekFrom::End(0)).ok().map(|_| f));
        Self(f)
    }

    /// The dm-fracture lines logged since [`KernelLog::start`], message text
    /// only.
    fn fracture_lines(self) -> Vec<String> {
        let Some(mut f) = self.0 else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        // One record per read; EAGAIN at the end.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            let rec = String::from_utf8_lossy(&buf[..n]);
            let text = rec.split_once(';').map(|x| x.1).unwrap_or(&rec);
            let text = text.lines().next().unwrap_or("").trim();
            if text.contains("fracture") || text.contains("table:") {
                out.push(text.to_string());
            }
        }
        out
    }
}

fn name(n: &str) -> Result<&DmName> {
    DmName::new(n).map_err(|_| Error::new(format!("invalid device name '{n}'")))
}

impl Dm {
    /// Opens the control device.
    pub fn new() -> Result<Self> {
        let dm = DM::new().map_err(|e| {
            Error::new(format!(
                "cannot open /dev/mapper/control ({}): are you root, is dm_mod loaded?",
                describe(&e)
            ))
        })?;
        Ok(Self { dm })
    }

    /// Whether a dm device called `n` exists.
    pub fn exists(&self, n: &str) -> Result<bool> {
        match self.dm.device_info(&DevId::Name(name(n)?)) {
            Ok(_) => Ok(true),
            Err(e) if errno_of(&e) == Some(libc::ENXIO) => Ok(false),
            Err(e) => bail!("{n}: {}", describe(&e)),
        }
    }

    /// Creates device `n` with `table` and resumes it; on any failure the
    /// half-made device is removed again.
    pub fn create(&self, n: &str, uuid: Option<&str>, table: &[Line]) -> Result<()> {
        let dm_name = name(n)?;
        let dm_uuid = match uuid {
            Some(u) => Some(DmUuid::new(u).map_err(|_| Error::new(format!("invalid uuid {u}")))?),
            None => None,
        };
        self.dm
            .device_create(dm_name, dm_uuid, DmOptions::default())
            .map_err(|e| Error::new(format!("cannot create {n}: {}", describe(&e))))?;
        let r = self.load(n, table).and_then(|()| self.resume(n));
        if let Err(e) = r {
            let _ = self
                .dm
                .device_remove(&DevId::Name(dm_name), DmOptions::default());
            return Err(e);
        }
        make_node(&self.dm, n);
        Ok(())
    }

    /// Loads `table` as the inactive table of `n`.
    pub fn load(&self, n: &str, table: &[Line]) -> Result<()> {
        let log = KernelLog::start();
        match self
            .dm
            .table_load(&DevId::Name(name(n)?), table, DmOptions::default())
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let why = log.fracture_lines();
                let mut msg = format!("the kernel refused the table of {n}: {}", describe(&e));
                for l in why {
                    msg.push_str("\n  kernel: ");
                    msg.push_str(&l);
                }
                Err(Error::new(msg))
            }
        }
    }

    /// Resumes `n` (activating a loaded table).
    pub fn resume(&self, n: &str) -> Result<()> {
        let log = KernelLog::start();
        self.dm
            .device_suspend(&DevId::Name(name(n)?), DmOptions::default())
            .map(|_| ())
            .map_err(|e| {
                let mut msg = format!("cannot resume {n}: {}", describe(&e));
                for l in log.fracture_lines() {
                    msg.push_str("\n  kernel: ");
                    msg.push_str(&l);
                }
                Error::new(msg)
            })
    }

    /// Removes `n`.
    pub fn remove(&self, n: &str) -> Result<()> {
        self.dm
            .device_remove(&DevId::Name(name(n)?), DmOptions::default())
            .map_err(|e| {
                if errno_of(&e) == Some(libc::EBUSY) {
                    Error::new(format!(
                        "cannot remove {n}: it is in use (mounted, or open)"
                    ))
                } else {
                    Error::new(format!("cannot remove {n}: {}", describe(&e)))
                }
            })?;
        remove_node(n);
        Ok(())
    }

    fn table_or_status(&self, n: &str, table: bool) -> Result<(u32, Vec<Line>)> {
        let flags = if table {
            DmFlags::DM_STATUS_TABLE
        } else {
            DmFlags::empty()
        };
        let (info, lines) = self
            .dm
            .table_status(
                &DevId::Name(name(n)?),
                DmOptions::default().set_flags(flags),
            )
            .map_err(|e| {
                if errno_of(&e) == Some(libc::ENXIO) {
                    Error::new(format!("no device {n}"))
                } else {
                    Error::new(format!("{n}: {}", describe(&e)))
                }
            })?;
        Ok((info.event_nr(), lines))
    }

    /// The fracture target's table parameters and status of `n`, with its
    /// event number. Refuses a device that is not a single fracture target.
    pub fn fracture(&self, n: &str) -> Result<(String, String, u32)> {
        let (_, t) = self.table_or_status(n, true)?;
        let (ev, s) = self.table_or_status(n, false)?;
        match (t.as_slice(), s.as_slice()) {
            ([(_, _, tt, tp)], [(_, _, st, sp)]) if tt == TARGET && st == TARGET => {
                Ok((tp.clone(), sp.clone(), ev))
            }
            ([], _) => bail!("{n} has no active table"),
            _ => bail!("{n} is not a dm-fracture device"),
        }
    }

    /// Length in sectors of `n`'s table.
    pub fn length(&self, n: &str) -> Result<u64> {
        let (_, t) = self.table_or_status(n, true)?;
        Ok(t.iter().map(|l| l.1).sum())
    }

    /// Sends message `msg` to `n`; returns its reply, if any. A refusal
    /// carries the kernel's reason.
    pub fn message(&self, n: &str, msg: &str) -> Result<Option<String>> {
        let log = KernelLog::start();
        self.dm
            .target_msg(&DevId::Name(name(n)?), None, msg)
            .map(|(_, out)| out)
            .map_err(|e| {
                let mut m = format!("{n}: '{msg}' refused: {}", describe(&e));
                for l in log.fracture_lines() {
                    m.push_str("\n  kernel: ");
                    m.push_str(&l);
                }
                Error::new(m)
            })
    }

    /// Names of every device whose table is a fracture target.
    pub fn list(&self) -> Result<Vec<String>> {
        let devs = self
            .dm
            .list_devices()
            .map_err(|e| Error::new(format!("cannot list dm devices: {}", describe(&e))))?;
        let mut out: Vec<String> = devs
            .into_iter()
            .map(|(n, _, _)| n.to_string())
            .filter(|n| self.fracture(n).is_ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// The dm UUID of `n`, if it has one.
    pub fn uuid(&self, n: &str) -> Result<Option<String>> {
        let info = self
            .dm
            .device_info(&DevId::Name(name(n)?))
            .map_err(|e| Error::new(format!("{n}: {}", describe(&e))))?;
        Ok(info.uuid().map(|u| u.to_string()))
    }

    /// Arms event polling: the control device polls readable once any dm
    /// device raises an event after this call.
    pub fn arm_poll(&self) -> Result<()> {
        self.dm
            .arm_poll()
            .map(|_| ())
            .map_err(|e| Error::new(format!("cannot arm dm event polling: {}", describe(&e))))
    }

    /// Waits up to `timeout_ms` for a dm event (after [`Dm::arm_poll`]).
    /// Returns whether one came.
    pub fn poll(&self, timeout_ms: i32) -> bool {
        use std::os::unix::io::AsRawFd;
        let mut p = libc::pollfd {
            fd: self.dm.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is a valid pollfd for the duration of the call and
        // the count is 1.
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        n > 0 && p.revents & libc::POLLIN != 0
    }
}

fn udev_running() -> bool {
    PathBuf::from("/run/udev/control").exists()
}

/// Without udev nobody makes `/dev/mapper/<n>`: make it, as libdevmapper
/// does when udev is off.
fn make_node(dm: &DM, n: &str) {
    let path = PathBuf::from(format!("/dev/mapper/{n}"));
    if udev_running() {
        // udev makes it; give it a moment.
        for _ in 0..50 {
            if path.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    if path.exists() {
        return;
    }
    let Ok(dmname) = DmName::new(n) else { return };
    let Ok(info) = dm.device_info(&DevId::Name(dmname)) else {
        return;
    };
    let d = info.device();
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return;
    };
    let _ = fs::create_dir_all("/dev/mapper");
    // SAFETY: `c` is a valid NUL-terminated path; mknod does not keep it.
    unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFBLK | 0o600,
            libc::makedev(d.major, d.minor),
        );
    }
}

fn remove_node(n: &str) {
    if udev_running() {
        return;
    }
    let _ = fs::remove_file(format!("/dev/mapper/{n}"));
}
