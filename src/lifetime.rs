//! Durations as operators and users write them (`90s`, `15m`, `12h`, `30d`, `never`), and the
//! expiry policy that turns a requested lifetime into an expiry time.
//!
//! Pure code. The same rules serve the CLI and (later) the management API, so a lifetime that
//! one refuses the other refuses too.

use std::fmt;
use std::time::Duration;

/// A requested or configured credential lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// No expiry at all; only allowed when `policy.allow_no_expiry` is true.
    Never,
    /// Expires this long after creation.
    For(Duration),
}

/// Why a duration string or a requested lifetime is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifetimeError {
    /// Not of the form `<number><s|m|h|d>` or `never`.
    #[error("invalid duration {0:?}: write a positive number followed by s, m, h or d (e.g. 90s, 15m, 12h, 30d), or never")]
    Syntax(String),
    /// Longer than [`Lifetime::LONGEST`]: an expiry that far out is a typo or means `never`.
    #[error("duration {0:?} is longer than 100 years (36500d), the longest accepted")]
    TooLong(String),
    /// Longer than `policy.max_lifetime`.
    #[error("lifetime {requested} is above the policy maximum of {max}")]
    AboveMax {
        /// What was asked for.
        requested: Lifetime,
        /// `policy.max_lifetime`.
        max: Lifetime,
    },
    /// `never` while `policy.allow_no_expiry` is false.
    #[error(
        "credentials without expiry are not allowed by policy (policy.allow_no_expiry is false)"
    )]
    NoExpiryNotAllowed,
}

impl Lifetime {
    /// The longest finite lifetime accepted: 100 years. Anything longer is refused rather than
    /// stored, so every expiry (plus the retention Redis keeps an expired record for) fits the
    /// unix-seconds arithmetic and Redis's `EXPIREAT` with centuries to spare.
    pub const LONGEST: Duration = Duration::from_secs(36_500 * 86_400);

    /// Parses `90s`, `15m`, `12h`, `30d` or `never`.
    ///
    /// # Errors
    /// [`LifetimeError::Syntax`] for anything else, including zero and overflow;
    /// [`LifetimeError::TooLong`] above [`Lifetime::LONGEST`].
    pub fn parse(s: &str) -> Result<Lifetime, LifetimeError> {
        let syntax = || LifetimeError::Syntax(s.to_string());
        if s == "never" {
            return Ok(Lifetime::Never);
        }
        // The unit is the last byte, and only an ASCII one: a multi-byte last character is
        // refused before the split, which would otherwise cut it in half.
        let seconds_per_unit: u64 = match s.as_bytes().last() {
            Some(b's') => 1,
            Some(b'm') => 60,
            Some(b'h') => 3600,
            Some(b'd') => 86_400,
            _ => return Err(syntax()),
        };
        let number = &s[..s.len() - 1];
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let count: u64 = number.parse().map_err(|_| syntax())?;
        let seconds = count.checked_mul(seconds_per_unit).ok_or_else(syntax)?;
        if seconds == 0 {
            return Err(syntax());
        }
        let lifetime = Duration::from_secs(seconds);
        if lifetime > Lifetime::LONGEST {
            return Err(LifetimeError::TooLong(s.to_string()));
        }
        Ok(Lifetime::For(lifetime))
    }
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lifetime::Never => f.write_str("never"),
            Lifetime::For(d) => {
                let s = d.as_secs();
                if s % 86_400 == 0 {
                    write!(f, "{}d", s / 86_400)
                } else if s % 3600 == 0 {
                    write!(f, "{}h", s / 3600)
                } else if s % 60 == 0 {
                    write!(f, "{}m", s / 60)
                } else {
                    write!(f, "{s}s")
                }
            }
        }
    }
}

/// The operator's lifetime rules (`policy:` in the conf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// Used when a creation request names no lifetime.
    pub default_lifetime: Lifetime,
    /// Upper bound for any requested lifetime (`never` means unbounded).
    pub max_lifetime: Lifetime,
    /// Whether `never` may be requested explicitly.
    pub allow_no_expiry: bool,
}

impl ExpiryPolicy {
    /// Resolves a requested lifetime (or the default) into an absolute expiry in unix seconds,
    /// `None` meaning no expiry.
    ///
    /// # Errors
    /// [`LifetimeError::AboveMax`] or [`LifetimeError::NoExpiryNotAllowed`].
    pub fn expiry(
        &self,
        requested: Option<Lifetime>,
        now: u64,
    ) -> Result<Option<u64>, LifetimeError> {
        let lifetime = requested.unwrap_or(self.default_lifetime);
        match (lifetime, self.max_lifetime) {
            (Lifetime::Never, _) if !self.allow_no_expiry => Err(LifetimeError::NoExpiryNotAllowed),
            (Lifetime::Never, Lifetime::For(_)) => Err(LifetimeError::AboveMax {
                requested: lifetime,
                max: self.max_lifetime,
            }),
            (Lifetime::Never, Lifetime::Never) => Ok(None),
            (Lifetime::For(asked), Lifetime::For(max)) if asked > max => {
                Err(LifetimeError::AboveMax {
                    requested: lifetime,
                    max: self.max_lifetime,
                })
            }
            (Lifetime::For(asked), _) => Ok(Some(now.saturating_add(asked.as_secs()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: u64) -> Lifetime {
        Lifetime::For(Duration::from_secs(n * 86_400))
    }

    #[test]
    fn every_unit_parses() {
        assert_eq!(
            Lifetime::parse("90s"),
            Ok(Lifetime::For(Duration::from_secs(90)))
        );
        assert_eq!(
            Lifetime::parse("15m"),
            Ok(Lifetime::For(Duration::from_secs(900)))
        );
        assert_eq!(
            Lifetime::parse("12h"),
            Ok(Lifetime::For(Duration::from_secs(43_200)))
        );
        assert_eq!(Lifetime::parse("30d"), Ok(days(30)));
        assert_eq!(Lifetime::parse("never"), Ok(Lifetime::Never));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "",
            "d",
            "0d",
            "-5m",
            "5",
            "5w",
            "1.5h",
            "+3d",
            " 3d",
            "99999999999999999999d",
            "Never",
            "30é",
            "1天",
            "5µ",
            "é",
        ] {
            assert!(
                matches!(Lifetime::parse(bad), Err(LifetimeError::Syntax(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_hundred_years_is_the_longest_lifetime() {
        assert_eq!(
            Lifetime::parse("36500d"),
            Ok(Lifetime::For(Lifetime::LONGEST))
        );
        for too_long in [
            "36501d",
            "876001h",
            "200000000000d",
            "18446744073709551615s",
        ] {
            assert_eq!(
                Lifetime::parse(too_long),
                Err(LifetimeError::TooLong(too_long.to_string())),
                "{too_long:?}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["90s", "15m", "12h", "30d", "never"] {
            assert_eq!(Lifetime::parse(s).expect("valid").to_string(), s);
        }
    }

    #[test]
    fn policy_applies_default_and_bounds() {
        let policy = ExpiryPolicy {
            default_lifetime: days(30),
            max_lifetime: days(365),
            allow_no_expiry: false,
        };
        assert_eq!(policy.expiry(None, 1000), Ok(Some(1000 + 30 * 86_400)));
        assert_eq!(policy.expiry(Some(days(365)), 0), Ok(Some(365 * 86_400)));
        assert!(matches!(
            policy.expiry(Some(days(366)), 0),
            Err(LifetimeError::AboveMax { .. })
        ));
        assert_eq!(
            policy.expiry(Some(Lifetime::Never), 0),
            Err(LifetimeError::NoExpiryNotAllowed)
        );
    }

    #[test]
    fn never_needs_both_permission_and_no_maximum() {
        let bounded = ExpiryPolicy {
            default_lifetime: days(30),
            max_lifetime: days(365),
            allow_no_expiry: true,
        };
        assert!(matches!(
            bounded.expiry(Some(Lifetime::Never), 0),
            Err(LifetimeError::AboveMax { .. })
        ));
        let unbounded = ExpiryPolicy {
            max_lifetime: Lifetime::Never,
            ..bounded
        };
        assert_eq!(unbounded.expiry(Some(Lifetime::Never), 0), Ok(None));
    }
}
