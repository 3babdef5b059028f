//! Durations as users write them in a routemap's guard, and as PromQL reads them: Go/Prometheus
//! text such as `500ms`, `10s`, `1m`, `1m30s`, `2h`.
//!
//! Hand-written rather than a crate: the one well-kept candidate (`humantime`) accepts far more
//! (`3 min`, `2 months`, `1.5h`) than a PromQL range selector does, and a window must go into a
//! query unchanged, so what we accept is exactly what we can print back as Prometheus text.
//! Accepted: one or more `<integer><unit>` parts, units `h`, `m`, `s`, `ms`, largest first, each
//! at most once (Prometheus' own rule). Days and weeks are not needed for a guard's bounds.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Units in the order they must appear, with their length in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Why a text is not a duration (for the field's error message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotADuration(pub String);

impl fmt::Display for NotADuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not a duration (e.g. 10s, 1m, 1m30s, 500ms)",
            crate::names::shown(&self.0)
        )
    }
}

/// Parses Go/Prometheus duration text into a [`Duration`] (millisecond resolution).
pub fn parse_duration(text: &str) -> Result<Duration, NotADuration> {
    let err = || NotADuration(text.to_string());
    let mut rest = text.as_bytes();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    // Index into UNITS of the next unit allowed: each later part must be a smaller unit.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 12 {
            // No number, or one so long that it cannot be a sensible duration (and would
            // overflow below).
            return Err(err());
        }
        let (number, after) = rest.split_at(digits);
        let value: u64 = std::str::from_utf8(number)
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(err)?;
        let letters = after.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let (unit, after) = after.split_at(letters);
        let position = UNITS[next_unit..]
            .iter()
            .position(|(name, _)| name.as_bytes() == unit)
            .ok_or_else(err)?;
        let (_, millis) = UNITS[next_unit + position];
        next_unit += position + 1;
        total = value
            .checked_mul(millis)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        rest = after;
    }
    Ok(Duration::from_millis(total))
}

/// A duration as Prometheus text, largest units first (`90s` -> `1m30s`, `0s` for zero).
/// Sub-millisecond parts are dropped: nothing we parse has them.
pub fn format_duration(d: Duration) -> String {
    let mut millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (name, len) in UNITS {
        let n = millis / len;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(name);
            millis -= n * len;
        }
    }
    out
}

/// A [`Duration`] that reads and writes as Prometheus text in the spec (`interval: 10s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        PromDuration(Duration::from_secs(secs))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::str::FromStr for PromDuration {
    type Err = NotADuration;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(PromDuration)
    }
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PromDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 10s, 1m or 500ms")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PromDuration, E> {
                v.parse().map_err(|e: NotADuration| E::custom(e))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn go_and_prometheus_forms_parse() {
        for (text, want) in [
            ("500ms", ms(500)),
            ("10s", ms(10_000)),
            ("1m", ms(60_000)),
            ("1m30s", ms(90_000)),
            ("2h", ms(7_200_000)),
            ("1h2m3s4ms", ms(3_723_004)),
            ("0s", ms(0)),
            ("90s", ms(90_000)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_an_example() {
        for text in [
            "",
            "10",
            "10x",
            "s",
            "1.5s",
            "-1s",
            "1s1m",
            "1s1s",
            "1m 30s",
            " 1m",
            "1M",
            "10sec",
            "1d",
            "1µs",
            "9999999999999h",
        ] {
            let e = parse_duration(text).expect_err(text);
            assert_eq!(
                e.to_string(),
                format!("{text:?} is not a duration (e.g. 10s, 1m, 1m30s, 500ms)")
            );
        }
    }

    #[test]
    fn formatting_is_prometheus_text_largest_units_first() {
        assert_eq!(format_duration(ms(90_000)), "1m30s");
        assert_eq!(format_duration(ms(500)), "500ms");
        assert_eq!(format_duration(ms(3_600_000)), "1h");
        assert_eq!(format_duration(ms(0)), "0s");
        assert_eq!(format_duration(ms(61_001)), "1m1s1ms");
    }

    #[test]
    fn formatted_text_parses_back_to_the_same_duration() {
        for n in [1, 999, 1_000, 59_999, 60_000, 3_599_999, 86_400_000] {
            let text = format_duration(ms(n));
            assert_eq!(parse_duration(&text), Ok(ms(n)), "{text}");
        }
    }

    #[test]
    fn serde_reads_and_writes_the_text() {
        let d: PromDuration = serde_json::from_str("\"1m30s\"").expect("a duration");
        assert_eq!(d.get(), ms(90_000));
        assert_eq!(serde_json::to_string(&d).expect("text"), "\"1m30s\"");
        let e = serde_json::from_str::<PromDuration>("10").expect_err("a number");
        assert!(e.to_string().contains("a duration such as 10s"), "{e}");
    }
}
