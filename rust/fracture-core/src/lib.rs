// SPDX-License-Identifier: GPL-2.0

//! Logic shared by the dm-fracture kernel module and its userspace tools.
//!
//! Everything here is pure: no allocation, no I/O, no `unsafe`. The kernel
//! module compiles these files as modules of its own crate (see
//! `rust/fracture.rs`), so they must build under the kernel's lints as well as
//! under `cargo test`, and refer to each other through `crate::`.

#![no_std]
#![forbid(unsafe_code)]

pub mod crc32c;
pub mod format;
pub mod intent;
pub mod memory;
pub mod message;
pub mod rate;
pub mod region;
pub mod table;
