// SPDX-License-Identifier: GPL-2.0

//! dm-fracture: a device-mapper target that mirrors a primary block device
//! onto 1..8 secondaries and logs what a failed secondary misses.
//!
//! See `Documentation/admin-guide/device-mapper/dm-fracture.rst`.

#![recursion_limit = "256"]

#[path = "fracture-core/src/crc32c.rs"]
pub mod crc32c;
#[path = "fracture-core/src/format.rs"]
pub mod format;
#[path = "fracture-core/src/intent.rs"]
pub mod intent;
#[path = "fracture-core/src/memory.rs"]
pub mod memory;
#[path = "fracture-core/src/message.rs"]
pub mod message;
#[path = "fracture-core/src/rate.rs"]
pub mod rate;
#[path = "fracture-core/src/region.rs"]
pub mod region;
#[path = "fracture-core/src/table.rs"]
pub mod table;

pub mod dm;
mod mirror;

use kernel::prelude::*;

module! {
    type: DmFracture,
    name: "dm_fracture",
    author: "dm-fracture developers",
    description: "device-mapper mirror target with a fracture log",
    license: "GPL",
    alias: ["dm-fracture"],
}

struct DmFracture {
    /// First: unregistered before the registry below goes.
    _target: dm::target::Registration<mirror::Fracture>,
    /// What a table hands on to the next across a reload.
    _carry: dm::carry::CarryRegistration,
}

impl kernel::Module for DmFracture {
    fn init(module: &'static ThisModule) -> Result<Self> {
        // The registry before the target: a table may use it at once.
        let carry = dm::carry::CarryRegistration::new()?;
        Ok(Self {
            _target: dm::target::Registration::new(module)?,
            _carry: carry,
        })
    }
}
