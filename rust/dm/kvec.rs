// SPDX-License-Identifier: GPL-2.0

//! Large per-table arrays (the bitmaps in memory, the write-intent
//! tracker's atomic bitmaps): zeroed [`KVVec`]s from kvmalloc, which falls
//! back to vmalloc when kmalloc cannot give that much contiguous memory,
//! and which fails quietly (`__GFP_NOWARN`): a table too large for the
//! machine is refused with a reason instead of a page-allocator warning.

use core::sync::atomic::{AtomicU32, AtomicU64};
use kernel::alloc::{flags, AllocError, KVVec};

/// Types for which every byte zero is a valid value.
///
/// # Safety
///
/// The all-zero bit pattern must be a valid, initialised value of the type
/// (no references, no `NonNull`, no enums without a zero variant).
pub unsafe trait Zeroable {}

// SAFETY: integers and `bool` are valid when zero (`false`, 0).
unsafe impl Zeroable for u8 {}
// SAFETY: as above.
unsafe impl Zeroable for u32 {}
// SAFETY: as above.
unsafe impl Zeroable for u64 {}
// SAFETY: as above.
unsafe impl Zeroable for bool {}
// SAFETY: an atomic integer has the layout of its integer; zero is 0.
unsafe impl Zeroable for AtomicU32 {}
// SAFETY: as above.
unsafe impl Zeroable for AtomicU64 {}
// SAFETY: an array of zeroable elements is its elements, with no padding.
unsafe impl<T: Zeroable, const N: usize> Zeroable for [T; N] {}

/// A vector of `n` zeroed `T` from kvmalloc, without an allocation-failure
/// warning. May sleep.
pub fn zeroed<T: Zeroable>(n: usize) -> Result<KVVec<T>, AllocError> {
    let mut v = KVVec::with_capacity(n, flags::GFP_KERNEL | flags::__GFP_NOWARN)?;
    // SAFETY: `with_capacity` reserved room for at least `n` elements, so
    // the first `n` are valid for writes; they are zeroed here, and zero
    // is a valid `T` (`T: Zeroable`), so after `set_len(n)` every element
    // is initialised.
    unsafe {
        core::ptr::write_bytes(v.as_mut_ptr(), 0, n);
        v.set_len(n);
    }
    Ok(v)
}

/// The memory the page allocator manages (`totalram_pages()`), in bytes.
pub fn total_ram_bytes() -> u64 {
    // SAFETY: reads a counter; no arguments, any context.
    unsafe { super::bindings::fracture_totalram_bytes() }
}
