// SPDX-License-Identifier: GPL-2.0

//! Leg masks: sets of legs as a `u32`, bit `i` for leg `i` (fan-out
//! failures, in-sync, fractured, recovering legs, ...), and the one way to
//! walk and build them.

use crate::table::MAX_LEGS;

// Every leg has a bit.
const _: () = assert!(MAX_LEGS <= 32);

/// The leg numbers set in `mask`, lowest first.
pub(crate) fn legs_of(mask: u32) -> impl Iterator<Item = u32> {
    (0..32).filter(move |i| mask & (1 << i) != 0)
}

/// The mask of the leg numbers in `legs` (each below 32).
pub(crate) fn mask_of(legs: impl Iterator<Item = u32>) -> u32 {
    legs.fold(0, |m, l| m | 1 << l)
}

/// The mask of every leg of a table with `nr_legs` legs (1..=32).
pub(crate) fn all_legs(nr_legs: u32) -> u32 {
    u32::MAX >> (32 - nr_legs)
}
