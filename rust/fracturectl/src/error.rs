// SPDX-License-Identifier: GPL-2.0

//! One error type for every command: a message for stderr and an exit code.

use std::fmt;

/// Exit code of a command that failed (device refused, kernel said no, ...).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of an I/O error reading or writing a device.
pub const EXIT_IO: i32 = 2;

/// What went wrong, in one line for the user.
#[derive(Debug)]
pub struct Error {
    msg: String,
    code: i32,
}

impl Error {
    /// A failure (exit code 1).
    pub fn new(msg: impl Into<String>) -> Self {
        Self {
            msg: msg.into(),
            code: EXIT_FAILURE,
        }
    }

    /// An I/O error on `what` (exit code 2).
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        Self {
            msg: format!("{what}: {e}"),
            code: EXIT_IO,
        }
    }

    /// The process exit code for this error.
    pub fn code(&self) -> i32 {
        self.code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

/// Result of the tool's functions.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns early with an [`Error`] built like `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::new(format!($($arg)*)))
    };
}
