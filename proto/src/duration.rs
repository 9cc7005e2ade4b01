//! The Mesos (stout `Duration`) text syntax: a non-negative decimal number immediately followed
//! by one of the units `ns`, `us`, `ms`, `secs`, `mins`, `hrs`, `days`, `weeks`
//! (`5secs`, `1.5mins`, `100ms`, `2hrs`, `1days`). This is what the agent writes into
//! `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`, `MESOS_RECOVERY_TIMEOUT` and
//! `MESOS_SUBSCRIPTION_BACKOFF_MAX`.

use std::time::Duration;

const NS: u128 = 1;
const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const SECS: u128 = 1_000_000_000;
const MINS: u128 = 60 * SECS;
const HRS: u128 = 60 * MINS;
const DAYS: u128 = 24 * HRS;
const WEEKS: u128 = 7 * DAYS;

const UNITS: [(&str, u128); 8] = [
    ("ns", NS),
    ("us", US),
    ("ms", MS),
    ("secs", SECS),
    ("mins", MINS),
    ("hrs", HRS),
    ("days", DAYS),
    ("weeks", WEEKS),
];

/// A string that is not a Mesos duration. Not retryable: the setting must be fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No unit after the number (or an empty string).
    #[error("invalid duration {input:?}: expected a number followed by one of ns, us, ms, secs, mins, hrs, days, weeks")]
    Invalid {
        /// The rejected text.
        input: String,
    },
    /// The numeric part is not a decimal number.
    #[error("invalid duration {input:?}: {number:?} is not a decimal number")]
    BadNumber {
        /// The rejected text.
        input: String,
        /// Its numeric prefix.
        number: String,
    },
    /// An unknown unit.
    #[error("invalid duration {input:?}: unknown unit {unit:?}; supported units are ns, us, ms, secs, mins, hrs, days, weeks")]
    UnknownUnit {
        /// The rejected text.
        input: String,
        /// The unit found.
        unit: String,
    },
    /// More than a signed 64-bit count of nanoseconds (what Mesos can represent).
    #[error("invalid duration {input:?}: out of range (more than 2^63-1 nanoseconds)")]
    OutOfRange {
        /// The rejected text.
        input: String,
    },
}

impl DurationError {
    /// Always `false`: fix the value.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Parse a Mesos duration (see the module docs). Like stout, fractions are truncated to whole
/// nanoseconds, and negative values and spaces are not accepted.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError::Invalid {
            input: s.to_owned(),
        })?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| DurationError::BadNumber {
        input: s.to_owned(),
        number: number.to_owned(),
    })?;
    let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(DurationError::UnknownUnit {
            input: s.to_owned(),
            unit: unit.to_owned(),
        });
    };
    let nanos = value * scale as f64;
    if !nanos.is_finite() || nanos >= i64::MAX as f64 {
        return Err(DurationError::OutOfRange {
            input: s.to_owned(),
        });
    }
    // Truncation toward zero, as stout's double -> int64 conversion.
    Ok(Duration::from_nanos(nanos as u64))
}

/// Format like stout's `operator<<`: pick the unit bucket the duration falls in, but use the
/// next smaller unit when that one gives a whole number and the bucket's does not
/// (`2500ms`, `90secs`, `15mins`, `10days`); otherwise a decimal in the bucket's unit.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    let (bucket, smaller) = if ns < US {
        return format!("{ns}ns");
    } else if ns < MS {
        (US, NS)
    } else if ns < SECS {
        (MS, US)
    } else if ns < MINS {
        (SECS, MS)
    } else if ns < HRS {
        (MINS, SECS)
    } else if ns < DAYS {
        (HRS, MINS)
    } else if ns < WEEKS {
        (DAYS, HRS)
    } else {
        (WEEKS, DAYS)
    };
    let unit = if !ns.is_multiple_of(bucket) && ns.is_multiple_of(smaller) {
        smaller
    } else {
        bucket
    };
    let name = UNITS
        .iter()
        .find(|(_, scale)| *scale == unit)
        .map(|(name, _)| *name)
        .unwrap_or("ns");
    if ns.is_multiple_of(unit) {
        format!("{}{name}", ns / unit)
    } else {
        // 15 significant digits, as stout prints doubles.
        let v = ns as f64 / unit as f64;
        let rounded: f64 = format!("{v:.14e}").parse().unwrap_or(v);
        format!("{rounded}{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let table: &[(&str, Duration)] = &[
            ("5secs", Duration::from_secs(5)),
            ("100ms", Duration::from_millis(100)),
            ("2hrs", Duration::from_secs(7200)),
            ("1days", Duration::from_secs(86_400)),
            ("1.5mins", Duration::from_secs(90)),
            ("15mins", Duration::from_secs(900)),
            ("2weeks", Duration::from_secs(14 * 86_400)),
            ("250us", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("0secs", Duration::ZERO),
            (".5secs", Duration::from_millis(500)),
            ("3.secs", Duration::from_secs(3)),
            ("0.0000000015secs", Duration::from_nanos(1)),
        ];
        for (text, want) in table {
            assert_eq!(parse(text).as_ref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn parse_rejects() {
        assert!(matches!(parse(""), Err(DurationError::Invalid { .. })));
        assert!(matches!(parse("5"), Err(DurationError::Invalid { .. })));
        assert!(matches!(
            parse("5s"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse("5sec"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse("5 secs"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse("secs"),
            Err(DurationError::BadNumber { .. })
        ));
        assert!(matches!(
            parse("-5secs"),
            Err(DurationError::BadNumber { .. })
        ));
        assert!(matches!(
            parse("1.2.3secs"),
            Err(DurationError::BadNumber { .. })
        ));
        assert!(matches!(
            parse("99999999weeks"),
            Err(DurationError::OutOfRange { .. })
        ));
        let msg = parse("5s").expect_err("bad unit").to_string();
        assert!(msg.contains("\"5s\"") && msg.contains("secs"), "{msg}");
    }

    #[test]
    fn format_table() {
        let table: &[(Duration, &str)] = &[
            (Duration::from_nanos(999), "999ns"),
            (Duration::from_micros(5), "5us"),
            (Duration::from_nanos(1500), "1500ns"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(2500), "2500ms"),
            (Duration::from_secs(5), "5secs"),
            (Duration::from_secs(90), "90secs"),
            (Duration::from_secs(900), "15mins"),
            (Duration::from_secs(7200), "2hrs"),
            (Duration::from_secs(86_400), "1days"),
            (Duration::from_secs(10 * 86_400), "10days"),
            (Duration::from_secs(14 * 86_400), "2weeks"),
            (Duration::from_nanos(1_000_000_001), "1.000000001secs"),
        ];
        for (d, want) in table {
            assert_eq!(&format(*d), want, "{d:?}");
        }
    }

    #[test]
    fn round_trip() {
        for text in [
            "5secs", "2500ms", "15mins", "2hrs", "1days", "3weeks", "20us", "3ns",
        ] {
            let d = parse(text).expect("valid");
            assert_eq!(format(d), text);
        }
    }
}
