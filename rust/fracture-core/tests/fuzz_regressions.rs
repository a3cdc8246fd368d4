// SPDX-License-Identifier: GPL-2.0

//! The fuzz inputs kept in the repository, replayed through the fuzz
//! targets' own checks under `cargo test`: the seeds (`fuzz/seeds/<target>/`,
//! made from valid examples by `checks::seeds`) and every crasher a fuzz
//! run found (`fuzz/regressions/<target>/`, one file each, kept once
//! fixed). The checks are `fuzz/src/lib.rs`, compiled here as a module:
//! the fuzz crate itself needs libFuzzer and is built only by
//! `scripts/fuzz.sh`.

#[path = "../../../fuzz/src/lib.rs"]
mod checks;

use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none if it does not exist.
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.expect("reading a fuzz input folder").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn is_target(name: &str) -> bool {
    checks::TARGETS.iter().any(|(t, _)| *t == name)
}

/// Every seed and every kept crasher passes its target's checks.
#[test]
fn seeds_and_regressions_pass() {
    let mut failed = Vec::new();
    for (target, check) in checks::TARGETS {
        let mut n = 0;
        for kind in ["seeds", "regressions"] {
            for path in files(kind, target) {
                let data = fs::read(&path).expect("reading a fuzz input");
                n += 1;
                if std::panic::catch_unwind(|| check(&data)).is_err() {
                    failed.push(path.display().to_string());
                }
            }
        }
        assert!(n > 0, "no input for fuzz target {target}");
    }
    assert!(
        failed.is_empty(),
        "fuzz inputs failing their checks: {failed:?}"
    );
}

/// No folder for a target that does not exist (a renamed target would
/// silently stop replaying its crashers).
#[test]
fn folders_name_targets() {
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            if e.path().is_dir() {
                assert!(is_target(&name), "fuzz/{kind}/{name}: no such fuzz target");
            }
        }
    }
    for (target, _) in checks::TARGETS {
        let bin = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(bin.is_file(), "{} is missing", bin.display());
    }
}

/// `fuzz/seeds/` is what `checks::seeds` makes. After changing the input
/// format of a target, rewrite it with
/// `FUZZ_WRITE_SEEDS=1 cargo test -p fracture-core --test fuzz_regressions`.
#[test]
fn seeds_are_current() {
    let seeds = checks::seeds();
    let write = std::env::var_os("FUZZ_WRITE_SEEDS").is_some();
    for (target, _) in checks::TARGETS {
        let dir = fuzz_dir().join("seeds").join(target);
        let wanted: Vec<_> = seeds.iter().filter(|s| s.0 == target).collect();
        if write {
            for old in files("seeds", target) {
                fs::remove_file(old).unwrap();
            }
            fs::create_dir_all(&dir).unwrap();
            for (_, name, bytes) in &wanted {
                fs::write(dir.join(name), bytes).unwrap();
            }
        }
        let mut names: Vec<String> = files("seeds", target)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want_names: Vec<String> = wanted.iter().map(|s| s.1.clone()).collect();
        want_names.sort();
        assert_eq!(
            names, want_names,
            "fuzz/seeds/{target}/ is out of date: FUZZ_WRITE_SEEDS=1 rewrites it"
        );
        for (_, name, bytes) in &wanted {
            assert_eq!(
                &fs::read(dir.join(name)).unwrap(),
                bytes,
                "fuzz/seeds/{target}/{name} is out of date: FUZZ_WRITE_SEEDS=1 rewrites it"
            );
        }
    }
}
