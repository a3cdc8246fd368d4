// SPDX-License-Identifier: GPL-2.0

//! Safe abstractions over the kernel's device-mapper and bio C APIs.
//!
//! 6.12's `kernel` crate has no bio, device-mapper or kthread support, so this
//! layer provides what dm-fracture needs, over bindings that bindgen generates
//! at build time (`bindings`) and a small C shim (`rust/shim/helpers.c`) for
//! macros and static inlines. All raw FFI of the module lives here; the mirror
//! logic above it holds no raw pointers.

pub mod bindings;
pub mod bio;
pub mod carry;
pub mod device;
pub mod fanout;
pub mod held;
pub mod io;
pub mod kcopyd;
pub mod kthread;
pub mod kvec;
pub mod log;
pub mod status;
pub mod target;
pub mod timed;
