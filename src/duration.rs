//! Durations as admins write them: `15s`, `5m`, `1h30m`, `250ms`, `7d`, or ISO 8601 (`PT15S`).

use std::time::Duration;

/// Parses a human duration. The error says what was expected, for `check` to print.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration: write e.g. \"15s\", \"5m\" or \"1h30m\"".into());
    }
    let upper = trimmed.to_ascii_uppercase();
    if let Some(rest) = upper.strip_prefix("PT") {
        return parse_units(rest, true).ok_or_else(|| {
            format!("`{trimmed}` is not an ISO 8601 duration like PT15S or PT1H30M")
        });
    }
    parse_units(trimmed, false).ok_or_else(|| {
        format!("`{trimmed}` is not a duration: write a number and a unit (ms, s, m, h, d), e.g. \"15s\" or \"1h30m\"")
    })
}

fn parse_units(text: &str, iso: bool) -> Option<Duration> {
    let mut total: u128 = 0;
    let mut rest = text;
    let mut any = false;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 12 {
            return None;
        }
        let number: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let micros_per_unit: u128 = match (iso, unit) {
            (false, "ms") => 1_000,
            (false, "s") | (true, "S") => 1_000_000,
            (false, "m") | (true, "M") => 60_000_000,
            (false, "h") | (true, "H") => 3_600_000_000,
            // Retention periods are counted in days. ISO 8601 puts days
            // before the `T` (`P7D`), which this parser does not take.
            (false, "d") => 86_400_000_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(micros_per_unit)?)?;
        any = true;
    }
    if !any {
        return None;
    }
    Some(Duration::from_micros(u64::try_from(total).ok()?))
}

/// Writes a duration the way admins write them (`1h30m`, `15s`, `250ms`, `7d`).
pub fn format_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".into();
    }
    if !total_ms.is_multiple_of(1000) {
        return format!("{total_ms}ms");
    }
    let mut secs = total_ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("PT15S"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("pt1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(format_duration(Duration::from_secs(7 * 86_400)), "7d");
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "15",
            "s",
            "15 s",
            "1.5s",
            "-5s",
            "15sec",
            "PT",
            "PT1D",
            "99999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,40}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn format_then_parse_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
