// SPDX-License-Identifier: GPL-2.0

//! Writing into the result buffer of a status or message call, with the
//! semantics of C's `DMEMIT()`: output past the buffer is dropped and the
//! buffer always stays NUL terminated.

use core::fmt;

/// Which status dm asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusType {
    /// `dmsetup status`: the state.
    Info,
    /// `dmsetup table`: a line the constructor accepts again.
    Table,
    /// The IMA measurement line.
    Ima,
}

/// The result buffer dm passes to `status` and `message`.
///
/// Invariant: `buf` is valid for writes of `max` bytes for `'a`, and
/// `len < max` whenever `max > 0`.
pub struct Emitter<'a> {
    buf: *mut u8,
    max: usize,
    len: usize,
    _p: core::marker::PhantomData<&'a mut [u8]>,
}

impl<'a> Emitter<'a> {
    /// Wraps dm's result buffer and makes it an empty string.
    ///
    /// # Safety
    ///
    /// `buf` must be valid for writes of `max` bytes for `'a` and not
    /// accessed by anything else meanwhile.
    pub(crate) unsafe fn new(buf: *mut u8, max: usize) -> Self {
        if max > 0 {
            // SAFETY: `buf` is valid for `max >= 1` bytes (the caller's promise).
            unsafe { buf.write(0) };
        }
        Self {
            buf,
            max,
            len: 0,
            _p: core::marker::PhantomData,
        }
    }

    /// Whether something was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Write for Emitter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.max == 0 {
            return Ok(());
        }
        // Keep one byte for the NUL; the type invariant gives len < max.
        let room = self.max - 1 - self.len;
        let n = s.len().min(room);
        // SAFETY: `len + n <= max - 1`, so the copy and the NUL after it stay
        // within the `max` bytes that `buf` is valid for; `s` cannot overlap
        // dm's result buffer, which only we write to.
        unsafe {
            core::ptr::copy_nonoverlapping(s.as_ptr(), self.buf.add(self.len), n);
            self.buf.add(self.len + n).write(0);
        }
        self.len += n;
        Ok(())
    }
}
