// SPDX-License-Identifier: GPL-2.0

//! `dmsetup message <dev> 0 <words>`: parsing of the messages the target
//! understands.

use crate::table::{parse_u64, MAX_RECOVERY_RATE};

/// A parsed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// `fracture <leg>`: split an in-sync secondary on purpose.
    Fracture(u32),
    /// `rejoin <leg>`: hand a fractured secondary back for resync.
    Rejoin(u32),
    /// `rebuild <leg>`: copy the whole of a secondary again.
    Rebuild(u32),
    /// `primary <leg>`: make an in-sync leg the primary (a planned
    /// switchover).
    Primary(u32),
    /// `recovery_rate <KiB/s>`: change the recovery rate cap (0 = none).
    RecoveryRate(u64),
    /// `stats`: print the target's counters as the message's reply.
    Stats,
    /// `verify [check] [<leg>]`: compare an in-sync secondary with the
    /// primary, region by region.
    Verify {
        /// The leg; `None`: every in-sync secondary.
        leg: Option<u32>,
        /// `verify check`: only count the regions that differ (mark none,
        /// split no leg), for when the primary may be the leg that is wrong.
        check: bool,
    },
    /// `verify cancel`: stop a running verify (or check).
    VerifyCancel,
}

/// How a plain `verify` is used (the refusal of too many words).
const VERIFY_USAGE: &str = "verify [<leg>|cancel] or verify check [<leg>]";

/// How `verify check` is used.
const VERIFY_CHECK_USAGE: &str = "verify check [<leg>]";

/// `verify check cancel`: a check is stopped like any verify.
const VERIFY_CHECK_CANCEL_USAGE: &str =
    "verify check [<leg>] (a running check is stopped with `verify cancel`)";

/// The messages, for "unknown message" replies.
pub const KNOWN: &str = "fracture, rejoin, rebuild, primary, recovery_rate, stats, verify";

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError<'a> {
    /// No words at all.
    Empty,
    /// A first word that names no message.
    Unknown(&'a str),
    /// Wrong number of arguments.
    Usage(&'static str),
    /// A rate that is not a number in range.
    BadRate(&'a str),
    /// A leg number that is not a leg of this target.
    BadLeg {
        /// What was given.
        value: &'a str,
        /// Legs in the target.
        nr_legs: u32,
    },
}

impl core::fmt::Display for MessageError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Empty => f.write_str("empty message"),
            Self::Unknown(w) => write!(f, "unknown message '{w}' (known: {KNOWN})"),
            Self::BadRate(w) => write!(
                f,
                "invalid recovery_rate '{w}': KiB/s, 0..{MAX_RECOVERY_RATE} (0 = unlimited)"
            ),
            Self::Usage(u) => write!(f, "usage: {u}"),
            Self::BadLeg { value, nr_legs } => write!(
                f,
                "invalid leg '{value}': legs are 0..{}",
                nr_legs.saturating_sub(1)
            ),
        }
    }
}

/// A leg number of the table line. Whether it is the primary (which these
/// messages refuse) is known only to the running target.
fn leg_number<'a>(value: &'a str, nr_legs: u32) -> Result<u32, MessageError<'a>> {
    match parse_u64(value) {
        Ok(v) if v < u64::from(nr_legs) => Ok(v as u32),
        _ => Err(MessageError::BadLeg { value, nr_legs }),
    }
}

/// The message's words, separated by single spaces: what
/// [`Message::parse`] reads back as the same message.
impl core::fmt::Display for Message {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Fracture(l) => write!(f, "fracture {l}"),
            Self::Rejoin(l) => write!(f, "rejoin {l}"),
            Self::Rebuild(l) => write!(f, "rebuild {l}"),
            Self::Primary(l) => write!(f, "primary {l}"),
            Self::RecoveryRate(r) => write!(f, "recovery_rate {r}"),
            Self::Stats => f.write_str("stats"),
            Self::Verify { leg, check } => {
                f.write_str(if check { "verify check" } else { "verify" })?;
                match leg {
                    Some(l) => write!(f, " {l}"),
                    None => Ok(()),
                }
            }
            Self::VerifyCancel => f.write_str("verify cancel"),
        }
    }
}

impl Message {
    /// Parses the words of a message for a target with `nr_legs` legs.
    pub fn parse<'a>(words: &[&'a str], nr_legs: u32) -> Result<Self, MessageError<'a>> {
        let (&first, rest) = words.split_first().ok_or(MessageError::Empty)?;
        match first {
            "fracture" => match rest {
                [leg] => Ok(Self::Fracture(leg_number(leg, nr_legs)?)),
                _ => Err(MessageError::Usage("fracture <leg>")),
            },
            "rejoin" => match rest {
                [leg] => Ok(Self::Rejoin(leg_number(leg, nr_legs)?)),
                _ => Err(MessageError::Usage("rejoin <leg>")),
            },
            "rebuild" => match rest {
                [leg] => Ok(Self::Rebuild(leg_number(leg, nr_legs)?)),
                _ => Err(MessageError::Usage("rebuild <leg>")),
            },
            "primary" => match rest {
                [leg] => Ok(Self::Primary(leg_number(leg, nr_legs)?)),
                _ => Err(MessageError::Usage("primary <leg>")),
            },
            "recovery_rate" => match rest {
                [v] => match parse_u64(v) {
                    Ok(r) if r <= MAX_RECOVERY_RATE => Ok(Self::RecoveryRate(r)),
                    _ => Err(MessageError::BadRate(v)),
                },
                _ => Err(MessageError::Usage("recovery_rate <KiB/s>")),
            },
            "stats" => match rest {
                [] => Ok(Self::Stats),
                _ => Err(MessageError::Usage("stats")),
            },
            "verify" => match rest {
                [] => Ok(Self::Verify {
                    leg: None,
                    check: false,
                }),
                ["cancel"] => Ok(Self::VerifyCancel),
                ["check"] => Ok(Self::Verify {
                    leg: None,
                    check: true,
                }),
                // Not a leg named "cancel": say how a check is stopped.
                ["check", "cancel"] => Err(MessageError::Usage(VERIFY_CHECK_CANCEL_USAGE)),
                ["check", leg] => Ok(Self::Verify {
                    leg: Some(leg_number(leg, nr_legs)?),
                    check: true,
                }),
                ["check", ..] => Err(MessageError::Usage(VERIFY_CHECK_USAGE)),
                [leg] => Ok(Self::Verify {
                    leg: Some(leg_number(leg, nr_legs)?),
                    check: false,
                }),
                _ => Err(MessageError::Usage(VERIFY_USAGE)),
            },
            other => Err(MessageError::Unknown(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn parses() {
        assert_eq!(
            Message::parse(&["fracture", "1"], 3),
            Ok(Message::Fracture(1))
        );
        assert_eq!(Message::parse(&["rejoin", "2"], 3), Ok(Message::Rejoin(2)));
        assert_eq!(Message::parse(&[], 3), Err(MessageError::Empty));
        assert_eq!(
            Message::parse(&["rebuild", "1"], 3),
            Ok(Message::Rebuild(1))
        );
        assert_eq!(
            Message::parse(&["recovery_rate", "0"], 3),
            Ok(Message::RecoveryRate(0))
        );
        assert_eq!(
            Message::parse(&["recovery_rate", "2048"], 3),
            Ok(Message::RecoveryRate(2048))
        );
        for bad in ["-1", "1k", "", "1073741825"] {
            assert_eq!(
                Message::parse(&["recovery_rate", bad], 3),
                Err(MessageError::BadRate(bad))
            );
        }
        assert_eq!(Message::parse(&["stats"], 3), Ok(Message::Stats));
        assert_eq!(
            Message::parse(&["primary", "2"], 3),
            Ok(Message::Primary(2))
        );
        assert_eq!(
            Message::parse(&["primary"], 3),
            Err(MessageError::Usage("primary <leg>"))
        );
        assert_eq!(
            Message::parse(&["primary", "3"], 3),
            Err(MessageError::BadLeg {
                value: "3",
                nr_legs: 3
            })
        );
        assert_eq!(
            Message::parse(&["stats", "1"], 3),
            Err(MessageError::Usage("stats"))
        );
        assert_eq!(
            Message::parse(&["rebuild", "3"], 3),
            Err(MessageError::BadLeg {
                value: "3",
                nr_legs: 3
            })
        );
        assert_eq!(
            Message::parse(&["split", "1"], 3),
            Err(MessageError::Unknown("split"))
        );
        assert_eq!(
            Message::parse(&["fracture"], 3),
            Err(MessageError::Usage("fracture <leg>"))
        );
        assert_eq!(
            Message::parse(&["fracture", "1", "2"], 3),
            Err(MessageError::Usage("fracture <leg>"))
        );
        assert_eq!(
            Message::parse(&["fracture", "0"], 3),
            Ok(Message::Fracture(0))
        );
        for bad in ["3", "-1", "x", "99999999999999999999999", ""] {
            assert_eq!(
                Message::parse(&["fracture", bad], 3),
                Err(MessageError::BadLeg {
                    value: bad,
                    nr_legs: 3
                })
            );
        }
        let verify = |leg, check| Ok(Message::Verify { leg, check });
        assert_eq!(Message::parse(&["verify"], 3), verify(None, false));
        assert_eq!(Message::parse(&["verify", "2"], 3), verify(Some(2), false));
        assert_eq!(
            Message::parse(&["verify", "cancel"], 3),
            Ok(Message::VerifyCancel)
        );
        assert_eq!(Message::parse(&["verify", "check"], 3), verify(None, true));
        assert_eq!(
            Message::parse(&["verify", "check", "1"], 3),
            verify(Some(1), true)
        );
        for bad in [&["verify", "3"][..], &["verify", "check", "3"]] {
            assert_eq!(
                Message::parse(bad, 3),
                Err(MessageError::BadLeg {
                    value: "3",
                    nr_legs: 3
                })
            );
        }
        for bad in [
            &["verify", "1", "2"][..],
            &["verify", "1", "check"],
            &["verify", "cancel", "1"],
            &["verify", "cancel", "check"],
        ] {
            assert_eq!(
                Message::parse(bad, 3),
                Err(MessageError::Usage(VERIFY_USAGE)),
                "{bad:?}"
            );
        }
        for bad in [
            &["verify", "check", "1", "2"][..],
            &["verify", "check", "check", "1"],
        ] {
            assert_eq!(
                Message::parse(bad, 3),
                Err(MessageError::Usage(VERIFY_CHECK_USAGE)),
                "{bad:?}"
            );
        }
        let e = Message::parse(&["verify", "check", "cancel"], 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "usage: verify check [<leg>] (a running check is stopped with `verify cancel`)"
        );
        assert_eq!(
            Message::parse(&["verify", "check", "x"], 3),
            Err(MessageError::BadLeg {
                value: "x",
                nr_legs: 3
            })
        );
        assert_eq!(
            Message::parse(&["rejoin", "2"], 2).unwrap_err().to_string(),
            "invalid leg '2': legs are 0..1"
        );
    }

    /// Every message printed is its words: it parses back to itself.
    #[test]
    fn round_trips() {
        let verify = |leg, check| Message::Verify { leg, check };
        let all = [
            (Message::Fracture(1), "fracture 1"),
            (Message::Rejoin(2), "rejoin 2"),
            (Message::Rebuild(0), "rebuild 0"),
            (Message::Primary(8), "primary 8"),
            (Message::RecoveryRate(2048), "recovery_rate 2048"),
            (Message::Stats, "stats"),
            (verify(None, false), "verify"),
            (verify(Some(2), false), "verify 2"),
            (verify(None, true), "verify check"),
            (verify(Some(1), true), "verify check 1"),
            (Message::VerifyCancel, "verify cancel"),
        ];
        for (m, text) in all {
            assert_eq!(m.to_string(), text);
            let words: std::vec::Vec<&str> = text.split(' ').collect();
            assert_eq!(Message::parse(&words, 9), Ok(m), "{text}");
        }
    }
}
