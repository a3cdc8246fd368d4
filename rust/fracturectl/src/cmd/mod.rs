// SPDX-License-Identifier: GPL-2.0

//! One file per command.

pub mod activate;
pub mod check;
pub mod create;
pub mod dump;
pub mod format;
pub mod leg;
pub mod monitor;
pub mod remove;
pub mod repair;
pub mod status;
pub mod verify;
pub mod wait;
