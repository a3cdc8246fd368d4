// SPDX-License-Identifier: GPL-2.0

//! `fracturectl remove`.

use crate::config::{self, Config};
use crate::dm::Dm;
use crate::error::{Error, Result};
use crate::status;
use std::path::PathBuf;

/// Remove a mirror's device, keeping its logs.
///
/// Remove a mirror's device. The metadata keeps the logs (a later create
/// or activate with the same devices goes on from them). The activation
/// file is kept unless --forget.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  fracturectl remove m0
  fracturectl remove m0 --forget     # also delete /etc/fracture/m0.toml")]
pub struct Args {
    /// Mirror name.
    pub name: String,
    /// Also delete the activation file.
    #[arg(long)]
    pub forget: bool,
    /// Directory of activation files.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
}

/// Runs the command; returns the exit code.
pub fn run(a: Args) -> Result<i32> {
    let dm = Dm::new()?;
    // Only fracture devices.
    status::read(&dm, &a.name)?;
    dm.remove(&a.name)?;
    println!("removed {}", a.name);
    if a.forget {
        let p = Config::path(&config::dir(a.config_dir.as_deref()), &a.name);
        match std::fs::remove_file(&p) {
            Ok(()) => println!("deleted {}", p.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(p.display(), e)),
        }
    }
    Ok(0)
}
