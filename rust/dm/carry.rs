// SPDX-License-Identifier: GPL-2.0

//! What a table hands on to the next table of the same device across a
//! reload: a bitmap left under a 16-byte key (the target picks it: the
//! mirror uses its metadata UUID) when a table is suspended, and taken
//! when a table of the same key resumes. In memory, for the module's
//! lifetime: not across a reboot or a module reload.
//!
//! In a reload dm core suspends the old table before it resumes the new
//! one, and destroys the old one only after that, so "left at suspend,
//! taken at resume" reaches the successor; a plain suspend and resume of
//! one table takes back what it left (and so leaves no entry behind). An
//! entry is left over only by a table removed for good: one per key at
//! most (a new one replaces it), [`CARRY_SLOTS`] in all (when they are
//! full, the oldest is replaced: only more than that many devices
//! reloaded at the same moment could lose one), freed at module exit.

use kernel::prelude::*;
use kernel::sync::{new_mutex, Mutex};

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Entries kept at most.
pub const CARRY_SLOTS: usize = 16;

/// One key's bitmap.
struct Entry {
    key: [u8; 16],
    /// When it was left ([`Slots::next`] then): the oldest goes first.
    seq: u64,
    words: KVVec<u64>,
}

/// The entries.
struct Slots {
    slot: [Option<Entry>; CARRY_SLOTS],
    next: u64,
}

/// The entries, under a mutex.
#[pin_data]
pub struct Carried {
    #[pin]
    entries: Mutex<Slots>,
}

/// The module's registry, set while a [`CarryRegistration`] lives.
static REGISTRY: AtomicPtr<Carried> = AtomicPtr::new(ptr::null_mut());

/// Owns the registry: created at module init, dropped at module exit.
pub struct CarryRegistration {
    _owned: Pin<KBox<Carried>>,
}

impl CarryRegistration {
    /// Creates the registry and makes it the module's.
    pub fn new() -> Result<Self> {
        let c = KBox::pin_init(
            pin_init!(Carried {
                entries <- new_mutex!(
                    Slots {
                        slot: [const { None }; CARRY_SLOTS],
                        next: 0,
                    },
                    "fracture_carry"
                ),
            }),
            GFP_KERNEL,
        )?;
        let p: *const Carried = &*c;
        REGISTRY.store(p.cast_mut(), Ordering::Release);
        Ok(Self { _owned: c })
    }
}

impl Drop for CarryRegistration {
    fn drop(&mut self) {
        REGISTRY.store(ptr::null_mut(), Ordering::Release);
    }
}

/// The module's registry, if any.
fn registry() -> Option<&'static Carried> {
    let p = REGISTRY.load(Ordering::Acquire);
    // SAFETY: `p` is null or points at the pinned registry, which lives
    // until its `CarryRegistration` is dropped at module exit. The callers
    // are tables of this module's targets, and a module is not unloaded
    // while a table of it exists (dm core holds a module reference per
    // table), so no caller outlives it.
    unsafe { p.as_ref() }
}

/// Leaves the bitmap `words` under `key` for the next table (replacing
/// what was left under it before). Nothing is left if `words` has no bit
/// set or memory is short (the caller says what that costs). Returns
/// whether it was left or nothing needed to be. Sleeps.
pub fn leave(key: &[u8; 16], words: &[AtomicU64]) -> bool {
    let Some(reg) = registry() else {
        return false;
    };
    let any = words.iter().any(|w| w.load(Ordering::Relaxed) != 0);
    let copy = if any {
        let Ok(mut copy) = KVVec::with_capacity(words.len(), GFP_KERNEL) else {
            return false;
        };
        for w in words {
            if copy.push(w.load(Ordering::Relaxed), GFP_KERNEL).is_err() {
                return false;
            }
        }
        Some(copy)
    } else {
        None
    };
    let mut slots = reg.entries.lock();
    let seq = slots.next;
    slots.next += 1;
    // Its own slot, else a free one, else the oldest.
    let mine = slots
        .slot
        .iter()
        .position(|e| e.as_ref().is_some_and(|e| e.key == *key));
    let free = slots.slot.iter().position(|e| e.is_none());
    let oldest = slots
        .slot
        .iter()
        .enumerate()
        .min_by_key(|(_, e)| e.as_ref().map_or(0, |e| e.seq))
        .map(|(i, _)| i);
    let Some(words) = copy else {
        // Nothing to hand on; and nothing older either.
        if let Some(s) = mine.and_then(|i| slots.slot.get_mut(i)) {
            *s = None;
        }
        return true;
    };
    let Some(s) = mine.or(free).or(oldest).and_then(|i| slots.slot.get_mut(i)) else {
        return false;
    };
    // Dropping an old entry here frees it (process context: a mutex).
    *s = Some(Entry {
        key: *key,
        seq,
        words,
    });
    true
}

/// Takes what was left under `key`, if anything: its bits are set in
/// `words` (those past its end are ignored) and the entry is removed.
/// Returns whether there was one. Sleeps.
pub fn take(key: &[u8; 16], words: &[AtomicU64]) -> bool {
    let Some(reg) = registry() else {
        return false;
    };
    let mut slots = reg.entries.lock();
    for s in slots.slot.iter_mut() {
        if s.as_ref().is_some_and(|e| e.key == *key) {
            if let Some(e) = s.take() {
                for (w, v) in words.iter().zip(e.words.iter()) {
                    w.fetch_or(*v, Ordering::Relaxed);
                }
            }
            return true;
        }
    }
    false
}
