use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the way people write them in plans: `500ms`, `2s`, `30m`, `1h`, `1h30m`,
/// `2d`. Units are `ms`, `s`, `m`, `h` and `d`, largest first, each at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(Duration);

impl HumanDuration {
    /// Wraps a [`Duration`].
    pub fn new(d: Duration) -> Self {
        Self(d)
    }

    /// The duration.
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// A duration that is not written as a sequence of `<number><unit>` with units ms, s, m, h, d.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason} (write e.g. `500ms`, `2s`, `30m`, `1h30m`)")]
pub struct DurationError {
    /// The text as written.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(err("it is empty"));
        }
        let mut rest = input;
        let mut total_ms: u64 = 0;
        // Index into UNITS of the last unit used: units must come largest first, each once.
        let mut last_unit: Option<usize> = None;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err("expected a number"));
            }
            let value: u64 = rest[..digits]
                .parse()
                .map_err(|_| err("the number is too large"))?;
            rest = &rest[digits..];
            let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            if letters == 0 {
                return Err(err("a number needs a unit"));
            }
            let unit = &rest[..letters];
            rest = &rest[letters..];
            let index = UNITS
                .iter()
                .position(|(name, _)| *name == unit)
                .ok_or_else(|| err("unknown unit; use ms, s, m, h or d"))?;
            if last_unit.is_some_and(|last| index <= last) {
                return Err(err("units must go from largest to smallest, each once"));
            }
            last_unit = Some(index);
            total_ms = value
                .checked_mul(UNITS[index].1)
                .and_then(|ms| total_ms.checked_add(ms))
                .ok_or_else(|| err("the duration is too large"))?;
        }
        Ok(Self(Duration::from_millis(total_ms)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        for (name, size) in UNITS {
            if ms >= size {
                write!(f, "{}{name}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u128 {
        s.parse::<HumanDuration>()
            .unwrap()
            .as_duration()
            .as_millis()
    }

    #[test]
    fn parses() {
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("2s"), 2_000);
        assert_eq!(ms("30m"), 1_800_000);
        assert_eq!(ms("1h"), 3_600_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("1d2h3m4s5ms"), 93_784_005);
        assert_eq!(ms("0s"), 0);
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "30",
            "m",
            "1.5h",
            "30 m",
            "1x",
            "1m1h",
            "1s1s",
            "-1s",
            "99999999999999999999s",
            "1h ",
        ] {
            assert!(
                matches!(bad.parse::<HumanDuration>(), Err(DurationError { ref input, .. }) if input == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["500ms", "2s", "30m", "1h", "1h30m", "1d2h3m4s5ms", "0s"] {
            assert_eq!(s.parse::<HumanDuration>().unwrap().to_string(), s);
        }
    }
}
