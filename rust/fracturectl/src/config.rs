// SPDX-License-Identifier: GPL-2.0

//! The activation file of a mirror: what `fracturectl activate` needs to
//! load the same table again after a reboot, written by `create`.
//!
//! ```toml
//! name = "m0"
//! uuid = "6f0c...-..."          # the metadata UUID: activation checks it
//! metadata = "vg/meta"
//! legs = ["vg/a", "vg2/b"]      # primary first, as given to create
//! metadata_id = "dm-uuid:LVM-..." # what identifies each device
//! leg_ids = ["dm-uuid:LVM-...", "dm-uuid:LVM-..."]
//! sectors = 2097152
//! region_sectors = 1024
//! recovery_rate = 0
//! probe_interval = 0
//! intent_delay = 0
//! io_timeout = 0
//! nointent = false
//! read_primary = false
//! ```

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where activation files live unless `--config-dir` or
/// `FRACTURE_CONFIG_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/etc/fracture";

/// The activation file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// dm device name.
    pub name: String,
    /// Metadata UUID (8-4-4-4-12 hex).
    pub uuid: String,
    /// Metadata device as given (path, `vg/lv`, ...).
    pub metadata: String,
    /// Legs, primary first: stable names where there are (see
    /// `device::stable_name`), else as given.
    pub legs: Vec<String>,
    /// What identified the metadata device and each leg at create
    /// (`device::identity`; empty: nothing did). `activate` refuses a device
    /// that is not the same one.
    #[serde(default)]
    pub metadata_id: String,
    /// Same, per leg.
    #[serde(default)]
    pub leg_ids: Vec<String>,
    /// Target length in sectors.
    pub sectors: u64,
    /// Region size in sectors.
    pub region_sectors: u64,
    /// KiB/s, 0 = unlimited.
    #[serde(default)]
    pub recovery_rate: u64,
    /// Seconds, 0 = off.
    #[serde(default)]
    pub probe_interval: u64,
    /// Milliseconds, 0 = default.
    #[serde(default)]
    pub intent_delay: u64,
    /// Milliseconds, 0 = off.
    #[serde(default)]
    pub io_timeout: u64,
    /// No write-intent log.
    #[serde(default)]
    pub nointent: bool,
    /// Reads go to the primary only.
    #[serde(default)]
    pub read_primary: bool,
}

/// The configuration directory in effect.
pub fn dir(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("FRACTURE_CONFIG_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

impl Config {
    /// The file for mirror `name` in `dir`.
    pub fn path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.toml"))
    }

    /// Reads mirror `name`'s file.
    pub fn load(dir: &Path, name: &str) -> Result<Self> {
        let p = Self::path(dir, name);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(format!(
                    "no activation file {} (fracturectl create writes it; --config-dir or $FRACTURE_CONFIG_DIR)",
                    p.display()
                ))
            } else {
                Error::io(p.display(), e)
            }
        })?;
        let c: Self = toml::from_str(&text)
            .map_err(|e| Error::new(format!("{}: {}", p.display(), e.message())))?;
        if c.name != name {
            return Err(Error::new(format!(
                "{}: names mirror '{}', not '{name}'",
                p.display(),
                c.name
            )));
        }
        Ok(c)
    }

    /// Every mirror with a file in `dir`, sorted.
    pub fn names(dir: &Path) -> Result<Vec<String>> {
        let rd = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(dir.display(), e)),
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".toml"))
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        Ok(v)
    }

    /// Writes the file (atomically: a temporary file renamed over it).
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        let p = Self::path(dir, &self.name);
        let tmp = p.with_extension("toml.tmp");
        let text = format!(
            "# dm-fracture mirror '{}', written by fracturectl create; read by fracturectl activate\n{}",
            self.name,
            toml::to_string(self).map_err(|e| Error::new(e.to_string()))?
        );
        std::fs::write(&tmp, text).map_err(|e| Error::io(tmp.display(), e))?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::io(p.display(), e))?;
        Ok(p)
    }

    /// The table line's parameters with these devices (`major:minor`).
    pub fn params(&self, metadata: &str, legs: &[String]) -> String {
        let mut words = Vec::new();
        if self.recovery_rate != 0 {
            words.push(format!("recovery_rate {}", self.recovery_rate));
        }
        if self.probe_interval != 0 {
            words.push(format!("probe_interval {}", self.probe_interval));
        }
        if self.intent_delay != 0 {
            words.push(format!("intent_delay {}", self.intent_delay));
        }
        if self.io_timeout != 0 {
            words.push(format!("io_timeout {}", self.io_timeout));
        }
        if self.nointent {
            words.push("nointent".to_string());
        }
        if self.read_primary {
            words.push("read_primary".to_string());
        }
        let nwords: usize = words.iter().map(|w| w.split(' ').count()).sum();
        let mut s = format!(
            "{metadata} {} {} {}",
            self.region_sectors,
            legs.len(),
            legs.join(" ")
        );
        if nwords > 0 {
            s.push_str(&format!(" {nwords} {}", words.join(" ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            name: "m0".into(),
            uuid: "abababab-abab-abab-abab-abababababab".into(),
            metadata: "vg/meta".into(),
            legs: vec!["vg/a".into(), "vg2/b".into()],
            metadata_id: "dm-uuid:LVM-x".into(),
            leg_ids: vec!["".into(), "wwid:y".into()],
            sectors: 2048,
            region_sectors: 1024,
            recovery_rate: 100,
            probe_interval: 0,
            intent_delay: 0,
            io_timeout: 2000,
            nointent: false,
            read_primary: false,
        }
    }

    #[test]
    fn params_round_trip_through_the_table_parser() {
        let c = cfg();
        let p = c.params("1:0", &["1:1".into(), "1:2".into()]);
        assert_eq!(p, "1:0 1024 2 1:1 1:2 4 recovery_rate 100 io_timeout 2000");
        let w: Vec<&str> = p.split(' ').collect();
        let t = fracture_core::table::TableArgs::parse(&w).unwrap();
        assert_eq!(t.features.recovery_rate, 100);
        assert_eq!(t.features.io_timeout, 2000);
        let c = Config {
            read_primary: true,
            nointent: true,
            ..cfg()
        };
        let p = c.params("1:0", &["1:1".into(), "1:2".into()]);
        assert!(
            p.ends_with(" 6 recovery_rate 100 io_timeout 2000 nointent read_primary"),
            "{p}"
        );
        let w: Vec<&str> = p.split(' ').collect();
        let t = fracture_core::table::TableArgs::parse(&w).unwrap();
        assert!(t.features.read_primary && t.features.no_intent);
    }

    #[test]
    fn save_load() {
        let d = std::env::temp_dir().join(format!("fracturectl-cfg-{}", std::process::id()));
        let c = cfg();
        c.save(&d).unwrap();
        assert_eq!(Config::load(&d, "m0").unwrap(), c);
        assert_eq!(Config::names(&d).unwrap(), vec!["m0".to_string()]);
        assert!(Config::load(&d, "m1").is_err());
        std::fs::write(Config::path(&d, "bad"), "name = 'bad'\nbogus = 1\n").unwrap();
        assert!(Config::load(&d, "bad").is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
