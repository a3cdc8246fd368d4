// SPDX-License-Identifier: GPL-2.0

//! The command line: every command has help with examples, bad arguments
//! fail with a message on stderr and a non-zero exit, nothing on stdout.

use std::process::Command;

const COMMANDS: &[&str] = &[
    "create", "remove", "status", "fracture", "rejoin", "rebuild", "primary", "verify", "wait",
    "monitor", "activate", "dump", "check", "repair", "format",
];

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_fracturectl"))
        .args(args)
        .env("FRACTURE_CONFIG_DIR", "/nonexistent-fracture-test")
        .output()
        .expect("runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn top_level_help_lists_every_command() {
    let (rc, out, _) = run(&["--help"]);
    assert_eq!(rc, 0);
    for c in COMMANDS {
        assert!(
            out.contains(&format!("  {c} ")),
            "--help does not list {c}:\n{out}"
        );
    }
    assert!(out.contains("Examples:"));
}

/// `fracturectl --help` is a summary, one line per command (as git and lvm
/// do); the detail is in `fracturectl <command> --help`.
#[test]
fn top_level_help_has_one_line_per_command() {
    let (_, out, _) = run(&["--help"]);
    let commands: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        commands.len(),
        COMMANDS.len() + 1,
        "one line each and help:\n{out}"
    );
    for (line, c) in commands.iter().zip(COMMANDS) {
        assert!(
            line.starts_with(&format!("  {c} ")),
            "{line:?} is not {c}'s line"
        );
        assert!(
            line.len() <= 80,
            "{c}: its summary is over 80 columns: {line:?}"
        );
    }
}

#[test]
fn every_command_has_help_with_examples() {
    for c in COMMANDS {
        let (rc, out, err) = run(&[c, "--help"]);
        assert_eq!(rc, 0, "{c} --help: {err}");
        assert!(out.contains("Usage: fracturectl"), "{c}: no usage line");
        assert!(out.contains("Examples:"), "{c} --help has no examples");
        assert!(
            out.contains(&format!("fracturectl {c}")),
            "{c}: examples do not use it"
        );
    }
}

#[test]
fn verify_help_documents_check_and_exit_codes() {
    let (rc, out, _) = run(&["verify", "--help"]);
    assert_eq!(rc, 0);
    for want in [
        "--check",
        "Compare only",
        "Exit code: 0 once the verify started",
        "fracturectl verify m0 --check --wait",
    ] {
        assert!(out.contains(want), "verify --help lacks '{want}':\n{out}");
    }
}

#[test]
fn version() {
    let (rc, out, _) = run(&["--version"]);
    assert_eq!(rc, 0);
    assert!(out.starts_with("fracturectl "));
}

#[test]
fn usage_errors_exit_2_on_stderr() {
    for args in [
        &["create", "m0"][..],
        &[
            "create",
            "m0",
            "--metadata",
            "/dev/null",
            "--primary",
            "/dev/null",
        ],
        &["fracture", "m0"],
        &["wait", "m0"],
        &["verify", "m0", "1", "--cancel"],
        &["verify", "m0", "--wait", "--cancel"],
        &["verify", "m0", "--check", "--cancel"],
        &["bogus"],
        &["activate"],
        &["activate", "m0", "--all"],
        &["format", "x.img", "--legs", "two", "--size", "1M"],
        &[
            "create",
            "m0",
            "--metadata",
            "a",
            "--primary",
            "b",
            "--secondary",
            "c",
            "--nointent",
            "--intent-delay",
            "5",
        ],
    ] {
        let (rc, out, err) = run(args);
        assert_eq!(rc, 2, "{args:?}: exit {rc}, stderr {err}");
        assert!(out.is_empty(), "{args:?}: stdout {out}");
        assert!(
            err.contains("Usage:") || err.contains("error:"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_values_are_refused_before_touching_devices() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "create",
                "m0",
                "--metadata",
                "/x",
                "--primary",
                "/y",
                "--secondary",
                "/z",
                "--region-size",
                "100K",
            ],
            "not a power of two",
        ),
        (
            &[
                "create",
                "m0",
                "--metadata",
                "/x",
                "--primary",
                "/y",
                "--secondary",
                "/z",
                "--region-size",
                "1Q",
            ],
            "unknown unit",
        ),
        (
            &[
                "create",
                "m0",
                "--metadata",
                "/x",
                "--primary",
                "/y",
                "--secondary",
                "/z",
                "--io-timeout",
                "60001",
            ],
            "out of range",
        ),
        (
            &[
                "create",
                "m0",
                "--metadata",
                "/x",
                "--primary",
                "/y",
                "--secondary",
                "/1",
                "--secondary",
                "/2",
                "--secondary",
                "/3",
                "--secondary",
                "/4",
                "--secondary",
                "/5",
                "--secondary",
                "/6",
                "--secondary",
                "/7",
                "--secondary",
                "/8",
                "--secondary",
                "/9",
            ],
            "at most 8",
        ),
        (&["activate", "nothere"], "nothere.toml"),
    ];
    for (args, want) in cases {
        let (rc, out, err) = run(args);
        assert_eq!(rc, 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: stdout {out}");
        assert!(err.starts_with("fracturectl: "), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: '{err}' lacks '{want}'");
    }
}
