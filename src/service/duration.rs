//! Durations on the command line: INTERVAL and `--summary` in seconds, `record --for`
//! with a unit (`90s`, `15m`, `24h`, `7d`). One parser each, shared by every command;
//! and a duration in the whole milliseconds libvirt's timers take.

use std::time::Duration;

/// INTERVAL bounds. Below 10 ms there is nothing to measure (QEMU's vCPU times move in
/// 10 ms steps) and the loop would only spin; above a year is surely a typo.
pub const MIN_INTERVAL: f64 = 0.01;
pub const MAX_INTERVAL: f64 = 365.0 * 86_400.0;

/// A finite number > 0, or `None`.
pub fn positive(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
}

/// Seconds within the INTERVAL range: INTERVAL itself and `--summary`.
pub fn seconds(s: &str) -> Result<Duration, String> {
    positive(s)
        .filter(|x| (MIN_INTERVAL..=MAX_INTERVAL).contains(x))
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .ok_or_else(|| format!("expected seconds from {MIN_INTERVAL} to {MAX_INTERVAL}"))
}

/// Whole milliseconds, saturating: what libvirt's timers are set in.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A span of time with a unit: `s`, `m`, `h` or `d` after a positive number (fractions
/// allowed: `1.5h`); a bare number is seconds. At least [`MIN_INTERVAL`], at most a year.
pub fn duration(s: &str) -> Result<Duration, String> {
    let bad = || "expected a duration such as 90s, 15m, 24h or 7d (at most 365d)".to_owned();
    let t = s.trim();
    let (number, unit) = match t.char_indices().last() {
        Some((i, c @ ('s' | 'm' | 'h' | 'd'))) => (&t[..i], c),
        _ => (t, 's'),
    };
    // Digits and one point only: no sign, exponent, `inf` or `nan` slips through.
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let scale = match unit {
        'm' => 60.0,
        'h' => 3_600.0,
        'd' => 86_400.0,
        _ => 1.0,
    };
    positive(number)
        .map(|x| x * scale)
        .filter(|x| (MIN_INTERVAL..=MAX_INTERVAL).contains(x))
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        let s = Duration::from_secs;
        assert_eq!(duration("90s"), Ok(s(90)));
        assert_eq!(duration("15m"), Ok(s(900)));
        assert_eq!(duration("24h"), Ok(s(86_400)));
        assert_eq!(duration("7d"), Ok(s(7 * 86_400)));
        assert_eq!(duration("1.5h"), Ok(s(5_400)));
        assert_eq!(duration("20"), Ok(s(20)));
        for bad in [
            "", "h", "-1h", "1e3s", "inf", "nan", "0s", "1w", "1 h", "1.2.3m", "400d", "+5m",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn seconds_stay_in_the_interval_range() {
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(seconds("0.001").is_err());
        assert!(seconds("inf").is_err());
    }
}
