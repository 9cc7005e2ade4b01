//! Spark's size and time strings (`100m`, `30s`), as the JVM service's `JavaUtils` reads them.
//! Below [`crate::config`] and [`crate::auth`], which both parse such values.

use std::time::Duration;

/// `JavaUtils.byteStringAsBytes`: an integer with an optional binary suffix (b, k, kb, m, mb,
/// g, gb, t, tb, p, pb); no suffix means bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("expected a size like 100m (b, k, m, g, t, p, optionally with b)".into());
    }
    let n: u64 = t[..digits].parse().map_err(|e| format!("{e}"))?;
    let shift = match &t[digits..] {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        "p" | "pb" => 50,
        other => {
            return Err(format!(
                "unknown size suffix {other:?}: expected a size like 100m (b, k, m, g, t, p, optionally with b)"
            ))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| "too large".into())
}

/// `JavaUtils.timeStringAs`: an integer with an optional suffix (us, ms, s, m, min, h, d);
/// no suffix means `default_unit`.
pub fn parse_time(s: &str, default_unit: Duration) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("expected a duration like 30s or 500ms".into());
    }
    let n: u64 = t[..digits].parse().map_err(|e| format!("{e}"))?;
    let unit = match &t[digits..] {
        "" => default_unit,
        "us" => Duration::from_micros(1),
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86400),
        other => {
            return Err(format!(
            "unknown time suffix {other:?}: expected a duration like 30s (us, ms, s, m, min, h, d)"
        ))
        }
    };
    unit.checked_mul(u32::try_from(n).map_err(|_| "too large".to_string())?)
        .ok_or_else(|| "too large".into())
}
