// SPDX-License-Identifier: GPL-2.0

//! The table line: parsing and checking of everything that does not need the
//! kernel (numbers, counts, features). Device lookup is the module's job.
//!
//! ```text
//! <metadata_dev> <region_size> <nr_legs> <leg_0> ... <leg_n-1> [<#features> <feature>...]
//! ```

use crate::region::{Geometry, RegionSizeError};

/// Fewest legs: a primary and one secondary.
pub const MIN_LEGS: usize = 2;

/// Most legs: a primary and eight secondaries.
pub const MAX_LEGS: usize = 9;

/// Why a decimal number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    /// Empty, or a character that is not a decimal digit (signs included).
    NotDecimal,
    /// Does not fit in 64 bits.
    Overflow,
}

/// Parses an unsigned decimal number: digits only, no sign, no spaces.
pub fn parse_u64(s: &str) -> Result<u64, NumberError> {
    if s.is_empty() {
        return Err(NumberError::NotDecimal);
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return Err(NumberError::NotDecimal);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(NumberError::Overflow)?;
    }
    Ok(v)
}

/// Longest accepted `probe_interval`, in seconds (one day).
pub const MAX_PROBE_INTERVAL: u64 = 86_400;

/// Longest accepted `intent_delay`, in milliseconds (one hour).
pub const MAX_INTENT_DELAY: u64 = 3_600_000;

/// `intent_delay` when the table line does not set it, in milliseconds.
pub const DEFAULT_INTENT_DELAY: u64 = 5_000;

/// Longest accepted `io_timeout`, in milliseconds (one minute: a thread
/// waiting for a timed flush must stay below the kernel's hung-task
/// warning).
pub const MAX_IO_TIMEOUT: u64 = 60_000;

/// Highest accepted `recovery_rate`, in KiB/s (about 1 TiB/s; 0 means
/// unlimited).
pub const MAX_RECOVERY_RATE: u64 = 1 << 30;

/// Optional features of the table line:
///
/// - `nosync`: a freshly formatted metadata device records every secondary
///   in sync (the legs are known identical, e.g. all zero) instead of
///   starting a full initial copy;
/// - `recovery_rate <KiB/s>`: cap on the recovery copy rate, 0 = unlimited;
/// - `probe_interval <s>`: every `s` seconds, try a write to each leg that
///   failed and start its recovery when it works again; 0 = never;
/// - `intent_delay <ms>`: a region's write-intent bit is cleared once no
///   write touched it for this long (up to twice that); 0 = the default;
/// - `nointent`: no write-intent log: writes never wait for a metadata
///   commit, and after an unclean shutdown every region is copied from the
///   primary to the secondaries (a superblock flag tells);
/// - `io_timeout <ms>`: a secondary that does not complete a write or flush
///   within this time is fractured and the host's I/O completes without
///   it; 0 = never (the default);
/// - `read_primary`: reads go to the primary only, not balanced over the
///   in-sync legs (for a secondary far away or much slower).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `nosync`.
    pub nosync: bool,
    /// `recovery_rate`, KiB/s; 0 = unlimited.
    pub recovery_rate: u64,
    /// `probe_interval`, seconds; 0 = off.
    pub probe_interval: u64,
    /// `intent_delay`, milliseconds; 0 = [`DEFAULT_INTENT_DELAY`].
    pub intent_delay: u64,
    /// `io_timeout`, milliseconds; 0 = off.
    pub io_timeout: u64,
    /// `nointent`.
    pub no_intent: bool,
    /// `read_primary`.
    pub read_primary: bool,
}

impl Features {
    /// Whether every feature has its default value (nothing to print).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Number of words [`Features::write`] emits after the count.
    pub fn nr_words(&self) -> usize {
        usize::from(self.nosync)
            + 2 * usize::from(self.recovery_rate != 0)
            + 2 * usize::from(self.probe_interval != 0)
            + 2 * usize::from(self.intent_delay != 0)
            + 2 * usize::from(self.io_timeout != 0)
            + usize::from(self.no_intent)
            + usize::from(self.read_primary)
    }

    /// The intent delay in effect, in milliseconds.
    pub fn intent_delay_ms(&self) -> u64 {
        if self.intent_delay == 0 {
            DEFAULT_INTENT_DELAY
        } else {
            self.intent_delay
        }
    }

    /// Writes the feature words, each preceded by a space, for the table
    /// line. The count is the caller's to write.
    pub fn write(&self, w: &mut dyn core::fmt::Write) -> core::fmt::Result {
        if self.nosync {
            w.write_str(" nosync")?;
        }
        if self.recovery_rate != 0 {
            write!(w, " recovery_rate {}", self.recovery_rate)?;
        }
        if self.probe_interval != 0 {
            write!(w, " probe_interval {}", self.probe_interval)?;
        }
        if self.intent_delay != 0 {
            write!(w, " intent_delay {}", self.intent_delay)?;
        }
        if self.io_timeout != 0 {
            write!(w, " io_timeout {}", self.io_timeout)?;
        }
        if self.no_intent {
            w.write_str(" nointent")?;
        }
        if self.read_primary {
            w.write_str(" read_primary")?;
        }
        Ok(())
    }
}

/// Why a table line was refused. Each variant prints as one line saying
/// what is wrong and with what value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError<'a> {
    /// Fewer words than the fixed part of the line needs.
    TooFewArgs(usize),
    /// A number field that is not a number.
    BadNumber {
        /// The field's name.
        field: &'static str,
        /// What was given.
        value: &'a str,
        /// What is wrong with it.
        error: NumberError,
    },
    /// An invalid region size.
    RegionSize(u64, RegionSizeError),
    /// `nr_legs` outside [`MIN_LEGS`]..=[`MAX_LEGS`].
    NrLegs(u64),
    /// Fewer legs on the line than `nr_legs` says.
    MissingLegs {
        /// `nr_legs`.
        expected: usize,
        /// Legs present.
        got: usize,
    },
    /// `#features` disagrees with the words that follow.
    FeatureCount {
        /// The count given.
        declared: u64,
        /// Words present after it.
        present: usize,
    },
    /// A feature word that is not known.
    UnknownFeature(&'a str),
    /// A feature given twice.
    RepeatedFeature(&'static str),
    /// A feature that needs a value is the last word.
    MissingValue(&'static str),
    /// `intent_delay` with `nointent`: there is no intent log to delay.
    IntentDelayWithoutLog,
    /// A feature value out of its range.
    FeatureRange {
        /// The feature.
        feature: &'static str,
        /// The value given.
        value: u64,
        /// The largest accepted value.
        max: u64,
    },
}

impl core::fmt::Display for TableError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::TooFewArgs(n) => write!(
                f,
                "too few arguments ({n}): expected <metadata_dev> <region_size> <nr_legs> <leg>..."
            ),
            Self::BadNumber {
                field,
                value,
                error: NumberError::NotDecimal,
            } => write!(f, "invalid {field} '{value}': not an unsigned decimal number"),
            Self::BadNumber {
                field,
                value,
                error: NumberError::Overflow,
            } => write!(f, "invalid {field} '{value}': too large"),
            Self::RegionSize(v, e) => write!(f, "invalid region_size {v}: {e}"),
            Self::NrLegs(n) => write!(
                f,
                "invalid nr_legs {n}: must be {MIN_LEGS}..{MAX_LEGS} (a primary and 1..8 secondaries)"
            ),
            Self::MissingLegs { expected, got } => {
                write!(f, "nr_legs is {expected} but only {got} leg devices follow")
            }
            Self::FeatureCount { declared, present } => write!(
                f,
                "#features is {declared} but {present} feature words follow"
            ),
            Self::UnknownFeature(w) => write!(
                f,
                "unknown feature '{w}' (known: nosync, recovery_rate <KiB/s>, probe_interval <s>, intent_delay <ms>, io_timeout <ms>, nointent, read_primary)"
            ),
            Self::RepeatedFeature(w) => write!(f, "feature {w} given twice"),
            Self::IntentDelayWithoutLog => {
                write!(f, "intent_delay with nointent: there is no write-intent log to delay")
            }
            Self::MissingValue(w) => write!(f, "feature {w} needs a value"),
            Self::FeatureRange {
                feature,
                value,
                max,
            } => write!(f, "invalid {feature} {value}: must be 0..{max}"),
        }
    }
}

/// A parsed table line, devices still as the strings the user gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableArgs<'a> {
    /// The metadata device.
    pub metadata: &'a str,
    /// Region size in sectors, checked by [`Geometry::check_region_size`].
    pub region_sectors: u64,
    legs: [&'a str; MAX_LEGS],
    nr_legs: usize,
    /// Optional features.
    pub features: Features,
}

impl<'a> TableArgs<'a> {
    /// The legs, primary first.
    pub fn legs(&self) -> &[&'a str] {
        &self.legs[..self.nr_legs]
    }

    /// Parses the words of a table line (after the target name).
    pub fn parse(args: &[&'a str]) -> Result<Self, TableError<'a>> {
        if args.len() < 3 {
            return Err(TableError::TooFewArgs(args.len()));
        }
        let number = |field, value: &'a str| {
            parse_u64(value).map_err(|error| TableError::BadNumber {
                field,
                value,
                error,
            })
        };
        let metadata = args[0];
        let region_sectors = number("region_size", args[1])?;
        Geometry::check_region_size(region_sectors)
            .map_err(|e| TableError::RegionSize(region_sectors, e))?;
        let nr = number("nr_legs", args[2])?;
        if nr < MIN_LEGS as u64 || nr > MAX_LEGS as u64 {
            return Err(TableError::NrLegs(nr));
        }
        // In range 2..=9 just above.
        let nr_legs = nr as usize;
        let rest = &args[3..];
        if rest.len() < nr_legs {
            return Err(TableError::MissingLegs {
                expected: nr_legs,
                got: rest.len(),
            });
        }
        let mut legs = [""; MAX_LEGS];
        legs[..nr_legs].copy_from_slice(&rest[..nr_legs]);
        let features = parse_features(&rest[nr_legs..])?;
        Ok(Self {
            metadata,
            region_sectors,
            legs,
            nr_legs,
            features,
        })
    }
}

/// Parses `[<#features> <feature>...]`; nothing at all means defaults.
fn parse_features<'a>(words: &[&'a str]) -> Result<Features, TableError<'a>> {
    let Some((&count, rest)) = words.split_first() else {
        return Ok(Features::default());
    };
    let declared = parse_u64(count).map_err(|error| TableError::BadNumber {
        field: "#features",
        value: count,
        error,
    })?;
    if declared != rest.len() as u64 {
        return Err(TableError::FeatureCount {
            declared,
            present: rest.len(),
        });
    }
    let mut f = Features::default();
    let mut seen = [false; 7];
    let mut words = rest.iter();
    while let Some(&w) = words.next() {
        let (idx, name): (usize, &'static str) = match w {
            "nosync" => (0, "nosync"),
            "recovery_rate" => (1, "recovery_rate"),
            "probe_interval" => (2, "probe_interval"),
            "intent_delay" => (3, "intent_delay"),
            "io_timeout" => (4, "io_timeout"),
            "nointent" => (5, "nointent"),
            "read_primary" => (6, "read_primary"),
            other => return Err(TableError::UnknownFeature(other)),
        };
        if core::mem::replace(&mut seen[idx], true) {
            return Err(TableError::RepeatedFeature(name));
        }
        if idx == 0 {
            f.nosync = true;
            continue;
        }
        if idx == 5 {
            f.no_intent = true;
            continue;
        }
        if idx == 6 {
            f.read_primary = true;
            continue;
        }
        let &value = words.next().ok_or(TableError::MissingValue(name))?;
        let v = parse_u64(value).map_err(|error| TableError::BadNumber {
            field: name,
            value,
            error,
        })?;
        let max = match idx {
            1 => MAX_RECOVERY_RATE,
            2 => MAX_PROBE_INTERVAL,
            3 => MAX_INTENT_DELAY,
            _ => MAX_IO_TIMEOUT,
        };
        if v > max {
            return Err(TableError::FeatureRange {
                feature: name,
                value: v,
                max,
            });
        }
        match idx {
            1 => f.recovery_rate = v,
            2 => f.probe_interval = v,
            3 => f.intent_delay = v,
            _ => f.io_timeout = v,
        }
    }
    if f.no_intent && seen[3] {
        return Err(TableError::IntentDelayWithoutLog);
    }
    Ok(f)
}

/// The first pair of equal items, by index: used to refuse a table that
/// names the same device twice.
pub fn find_duplicate<T: PartialEq>(items: &[T]) -> Option<(usize, usize)> {
    for (i, a) in items.iter().enumerate() {
        for (j, b) in items.iter().enumerate().skip(i + 1) {
            if a == b {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("0"), Ok(0));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_u64("18446744073709551616"),
            Err(NumberError::Overflow)
        );
        assert_eq!(parse_u64(""), Err(NumberError::NotDecimal));
        assert_eq!(parse_u64("-1"), Err(NumberError::NotDecimal));
        assert_eq!(parse_u64("+1"), Err(NumberError::NotDecimal));
        assert_eq!(parse_u64("1k"), Err(NumberError::NotDecimal));
        assert_eq!(parse_u64(" 1"), Err(NumberError::NotDecimal));
        assert_eq!(parse_u64("0x10"), Err(NumberError::NotDecimal));
    }

    #[test]
    fn good_lines() {
        let t = TableArgs::parse(&["252:0", "1024", "2", "252:1", "252:2"]).unwrap();
        assert_eq!(t.metadata, "252:0");
        assert_eq!(t.region_sectors, 1024);
        assert_eq!(t.legs(), &["252:1", "252:2"]);
        assert!(t.features.is_default());

        let t = TableArgs::parse(&["m", "8", "3", "a", "b", "c", "0"]).unwrap();
        assert_eq!(t.legs(), &["a", "b", "c"]);

        let nine = ["m", "8", "9", "0", "1", "2", "3", "4", "5", "6", "7", "8"];
        assert_eq!(TableArgs::parse(&nine).unwrap().legs().len(), 9);
    }

    fn err(args: &[&str]) -> std::string::String {
        TableArgs::parse(args).unwrap_err().to_string()
    }

    #[test]
    fn bad_lines() {
        assert_eq!(TableArgs::parse(&[]), Err(TableError::TooFewArgs(0)));
        assert_eq!(
            err(&["m", "1000", "2", "a", "b"]),
            "invalid region_size 1000: is not a power of two"
        );
        assert_eq!(
            err(&["m", "4", "2", "a", "b"]),
            "invalid region_size 4: is below the minimum of 8 sectors"
        );
        assert_eq!(
            err(&["m", "-8", "2", "a", "b"]),
            "invalid region_size '-8': not an unsigned decimal number"
        );
        assert_eq!(
            err(&["m", "99999999999999999999", "2", "a", "b"]),
            "invalid region_size '99999999999999999999': too large"
        );
        assert_eq!(
            TableArgs::parse(&["m", "8", "1", "a"]),
            Err(TableError::NrLegs(1))
        );
        assert_eq!(
            TableArgs::parse(&["m", "8", "10", "a"]),
            Err(TableError::NrLegs(10))
        );
        assert_eq!(
            TableArgs::parse(&["m", "8", "18446744073709551615", "a"]),
            Err(TableError::NrLegs(u64::MAX))
        );
        assert_eq!(
            TableArgs::parse(&["m", "8", "3", "a", "b"]),
            Err(TableError::MissingLegs {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            TableArgs::parse(&["m", "8", "2", "a", "b", "1"]),
            Err(TableError::FeatureCount {
                declared: 1,
                present: 0
            })
        );
        assert_eq!(
            TableArgs::parse(&["m", "8", "2", "a", "b", "c"]),
            Err(TableError::BadNumber {
                field: "#features",
                value: "c",
                error: NumberError::NotDecimal
            })
        );
        assert_eq!(
            TableArgs::parse(&["m", "8", "2", "a", "b", "1", "frobnicate"]),
            Err(TableError::UnknownFeature("frobnicate"))
        );
        assert_eq!(
            err(&["m", "8", "2", "a", "b", "0", "x"]),
            "#features is 0 but 1 feature words follow"
        );
    }

    #[test]
    fn features() {
        let f = |w: &[&'static str]| {
            let mut line = std::vec!["m", "8", "2", "a", "b"];
            line.extend_from_slice(w);
            TableArgs::parse(&line).map(|t| t.features)
        };
        assert_eq!(
            f(&["1", "nosync"]),
            Ok(Features {
                nosync: true,
                ..Features::default()
            })
        );
        let all = f(&[
            "9",
            "io_timeout",
            "500",
            "intent_delay",
            "250",
            "probe_interval",
            "30",
            "nosync",
            "recovery_rate",
            "1024",
        ])
        .unwrap();
        assert_eq!(
            all,
            Features {
                nosync: true,
                recovery_rate: 1024,
                probe_interval: 30,
                intent_delay: 250,
                io_timeout: 500,
                no_intent: false,
                read_primary: false,
            }
        );
        assert_eq!(all.intent_delay_ms(), 250);
        assert_eq!(Features::default().intent_delay_ms(), DEFAULT_INTENT_DELAY);
        let mut printed = std::string::String::new();
        all.write(&mut printed).unwrap();
        assert_eq!(
            printed,
            " nosync recovery_rate 1024 probe_interval 30 intent_delay 250 io_timeout 500"
        );
        assert_eq!(all.nr_words(), 9);
        // The printed line parses back to the same features.
        let words: std::vec::Vec<&str> = printed.split_whitespace().collect();
        let mut again = std::vec!["9"];
        again.extend(words);
        let mut line = std::vec!["m", "8", "2", "a", "b"];
        line.extend(again);
        assert_eq!(TableArgs::parse(&line).unwrap().features, all);
        assert_eq!(
            f(&["2", "recovery_rate", "0"]).unwrap(),
            Features::default()
        );
        assert_eq!(
            f(&["2", "nosync", "nosync"]),
            Err(TableError::RepeatedFeature("nosync"))
        );
        assert_eq!(
            f(&["1", "recovery_rate"]),
            Err(TableError::MissingValue("recovery_rate"))
        );
        assert_eq!(
            f(&["2", "probe_interval", "-1"]),
            Err(TableError::BadNumber {
                field: "probe_interval",
                value: "-1",
                error: NumberError::NotDecimal
            })
        );
        assert_eq!(
            f(&["2", "intent_delay", "3600001"])
                .unwrap_err()
                .to_string(),
            "invalid intent_delay 3600001: must be 0..3600000"
        );
        assert_eq!(
            f(&["4", "intent_delay", "1", "intent_delay", "2"]),
            Err(TableError::RepeatedFeature("intent_delay"))
        );
        assert_eq!(
            f(&["2", "probe_interval", "86401"])
                .unwrap_err()
                .to_string(),
            "invalid probe_interval 86401: must be 0..86400"
        );
        assert_eq!(
            f(&["2", "io_timeout", "60001"]).unwrap_err().to_string(),
            "invalid io_timeout 60001: must be 0..60000"
        );
        assert_eq!(f(&["2", "io_timeout", "0"]).unwrap(), Features::default());
        let ni = f(&["2", "nointent", "nosync"]).unwrap();
        assert!(ni.no_intent && ni.nosync);
        let mut printed = std::string::String::new();
        ni.write(&mut printed).unwrap();
        assert_eq!(printed, " nosync nointent");
        assert_eq!(ni.nr_words(), 2);
        assert_eq!(
            f(&["3", "nointent", "intent_delay", "10"])
                .unwrap_err()
                .to_string(),
            "intent_delay with nointent: there is no write-intent log to delay"
        );
        assert_eq!(
            f(&["2", "nointent", "nointent"]),
            Err(TableError::RepeatedFeature("nointent"))
        );
        let rp = f(&["2", "read_primary", "nosync"]).unwrap();
        assert!(rp.read_primary && rp.nosync && !rp.no_intent);
        let mut printed = std::string::String::new();
        rp.write(&mut printed).unwrap();
        assert_eq!(printed, " nosync read_primary");
        assert_eq!(rp.nr_words(), 2);
        assert_eq!(
            f(&["2", "read_primary", "read_primary"]),
            Err(TableError::RepeatedFeature("read_primary"))
        );
        assert_eq!(
            f(&["2", "recovery_rate", "99999999999999999999"])
                .unwrap_err()
                .to_string(),
            "invalid recovery_rate '99999999999999999999': too large"
        );
    }

    #[test]
    fn duplicates() {
        assert_eq!(find_duplicate::<u32>(&[]), None);
        assert_eq!(find_duplicate(&[1, 2, 3]), None);
        assert_eq!(find_duplicate(&[1, 2, 1]), Some((0, 2)));
        assert_eq!(find_duplicate(&[5, 2, 3, 2, 5]), Some((0, 4)));
    }

    /// No input makes the parser panic, and every accepted line has its
    /// invariants.
    #[test]
    fn parse_never_panics() {
        let words = [
            "",
            "0",
            "1",
            "2",
            "8",
            "9",
            "10",
            "1024",
            "-1",
            "m",
            "a",
            "1",
            "x",
            "nosync",
            "18446744073709551616",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (seed >> 60) as usize;
            let mut line = [""; 16];
            let mut s = seed;
            for w in line.iter_mut().take(n) {
                s = s.rotate_left(7) ^ 0x5555;
                *w = words[(s % words.len() as u64) as usize];
            }
            if let Ok(t) = TableArgs::parse(&line[..n]) {
                assert!((MIN_LEGS..=MAX_LEGS).contains(&t.legs().len()));
                assert!(Geometry::check_region_size(t.region_sectors).is_ok());
            }
        }
    }
}
