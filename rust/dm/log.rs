// SPDX-License-Identifier: GPL-2.0

//! Kernel log lines in device-mapper's style: `device-mapper: fracture: ...`.
//!
//! Use the [`dm_err!`], [`dm_warn!`] and [`dm_info!`] macros, and
//! [`worth_logging`] to thin out a message that may repeat without end. A line is
//! formatted into a bounded stack buffer (longer lines are cut), so logging
//! never allocates and may be used in any context.

use super::bindings;
use core::fmt::{self, Write};

/// Longest line printed; the rest is cut.
const LINE_MAX: usize = 200;

/// Log levels, as the kernel numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `KERN_ERR`.
    Err = 3,
    /// `KERN_WARNING`.
    Warn = 4,
    /// `KERN_INFO`.
    Info = 6,
}

struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE_MAX - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Prints one line at `level`. Used through the macros.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    let mut line = Line {
        buf: [0; LINE_MAX],
        len: 0,
    };
    // `Line::write_str` never fails; a formatting trait that does merely
    // shortens the line.
    let _ = line.write_fmt(args);
    // SAFETY: `buf` is valid for `len` bytes and `fracture_log` only reads
    // that many; it does not keep the pointer.
    unsafe { bindings::fracture_log(level as i32, line.buf.as_ptr().cast(), line.len) };
}

/// Whether occurrence `n` (counted from 0) of a message that may repeat
/// without end is logged: the first ten, then ever more rarely (at powers
/// of two), so that a failing disk does not flood the log.
pub fn worth_logging(n: u64) -> bool {
    n < 10 || n.is_power_of_two()
}

/// Logs an error: `device-mapper: fracture: <message>`.
#[macro_export]
macro_rules! dm_err {
    ($($arg:tt)*) => { $crate::dm::log::log($crate::dm::log::Level::Err, format_args!($($arg)*)) };
}

/// Logs a warning: `device-mapper: fracture: <message>`.
#[macro_export]
macro_rules! dm_warn {
    ($($arg:tt)*) => { $crate::dm::log::log($crate::dm::log::Level::Warn, format_args!($($arg)*)) };
}

/// Logs information: `device-mapper: fracture: <message>`.
#[macro_export]
macro_rules! dm_info {
    ($($arg:tt)*) => { $crate::dm::log::log($crate::dm::log::Level::Info, format_args!($($arg)*)) };
}
