// SPDX-License-Identifier: GPL-2.0

//! `fracturectl`: the userspace tool for dm-fracture mirrors.
//!
//! One binary, one file per command under `cmd/`. The on-disk format comes
//! from the `fracture-core` crate the kernel module is built from, so the
//! tool and the target can never disagree about a block.

mod cmd;
mod config;
mod device;
mod dm;
mod error;
mod metadata;
mod offline;
mod status;
mod units;

use clap::{Parser, Subcommand};

/// Manage dm-fracture mirrors: a primary block device and 1..8 secondaries
/// kept identical, with a fracture log of what a split or failed secondary
/// missed and a write-intent log for crashes.
#[derive(Parser)]
#[command(
    name = "fracturectl",
    version,
    propagate_version = true,
    after_help = "\
Examples:
  fracturectl create m0 --metadata vg/meta --primary vg/a --secondary vg2/b
  fracturectl status m0
  fracturectl fracture m0 1        # split leg 1 (a point-in-time copy)
  fracturectl rejoin m0 1          # copy back what it missed
  fracturectl wait m0 --in-sync
  fracturectl dump /dev/vg/meta    # offline: what the metadata says

Documentation: Documentation/admin-guide/device-mapper/fracturectl.rst"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Create(cmd::create::Args),
    Remove(cmd::remove::Args),
    Status(cmd::status::Args),
    /// Split a secondary off on purpose; its changes are logged from now on.
    ///
    /// The leg keeps the data of the moment of the split (a point-in-time
    /// copy, e.g. for a backup); `rejoin` copies back what it missed.
    ///
    /// LEG is the leg's number (as in `fracturectl status`) or its device.
    Fracture(cmd::leg::Args),
    /// Copy back what a fractured secondary missed; mirror to it again.
    ///
    /// Only the regions its fracture log marks are copied. For a leg shown
    /// failed (D) that was repaired, rejoin clears D.
    ///
    /// LEG is the leg's number (as in `fracturectl status`) or its device.
    Rejoin(cmd::leg::Args),
    /// Copy a whole leg again from the primary.
    ///
    /// For a leg whose fracture log cannot be trusted (a new or replaced
    /// disk), or the rejoin of a primary shown failed (D).
    ///
    /// LEG is the leg's number (as in `fracturectl status`) or its device.
    Rebuild(cmd::leg::Args),
    /// Make an in-sync leg the primary.
    ///
    /// Recovery and verify copy from the primary, and reads go to it first;
    /// the old primary stays an in-sync secondary.
    ///
    /// LEG is the leg's number (as in `fracturectl status`) or its device.
    Primary(cmd::leg::Args),
    Verify(cmd::verify::Args),
    Wait(cmd::wait::Args),
    Monitor(cmd::monitor::Args),
    Activate(cmd::activate::Args),
    Dump(cmd::dump::Args),
    Check(cmd::check::Args),
    Repair(cmd::repair::Args),
    Format(cmd::format::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(a) => cmd::create::run(a),
        Command::Remove(a) => cmd::remove::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::Fracture(a) => cmd::leg::run("fracture", a),
        Command::Rejoin(a) => cmd::leg::run("rejoin", a),
        Command::Rebuild(a) => cmd::leg::run("rebuild", a),
        Command::Primary(a) => cmd::leg::run("primary", a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Wait(a) => cmd::wait::run(a),
        Command::Monitor(a) => cmd::monitor::run(a),
        Command::Activate(a) => cmd::activate::run(a),
        Command::Dump(a) => cmd::dump::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Repair(a) => cmd::repair::run(a),
        Command::Format(a) => cmd::format::run(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("fracturectl: {e}");
            std::process::exit(e.code());
        }
    }
}
