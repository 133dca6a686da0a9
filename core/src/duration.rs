//! Durations and byte sizes written the way Prometheus writes them in its YAML (`15s`, `1m30s`,
//! `2h`, `10MB`), parsed and printed exactly like `prometheus/common/model.Duration` and
//! `alecthomas/units.Base2Bytes`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration as Prometheus writes it: `[0-9]+(y|w|d|h|m|s|ms)`, units from largest to smallest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub fn as_millis(&self) -> u64 {
        self.0.as_millis() as u64
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

const MS: u64 = 1;
const S: u64 = 1000 * MS;
const M: u64 = 60 * S;
const H: u64 = 60 * M;
const D: u64 = 24 * H;
const W: u64 = 7 * D;
const Y: u64 = 365 * D;

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration string")]
    Empty,
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    #[error("duration out of range: {0:?}")]
    OutOfRange(String),
}

impl FromStr for PromDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input {
            "" => return Err(DurationError::Empty),
            "0" => return Ok(Self(Duration::ZERO)),
            _ => {}
        }
        let invalid = || DurationError::Invalid(input.to_owned());
        let mut rest = input.as_bytes();
        let mut total: u64 = 0;
        let mut last_rank = 0;
        while !rest.is_empty() {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return Err(invalid());
            }
            let n: u64 = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| DurationError::OutOfRange(input.to_owned()))?;
            rest = &rest[digits..];
            let unit_len = rest.iter().take_while(|b| !b.is_ascii_digit()).count();
            if unit_len == 0 {
                return Err(invalid());
            }
            let unit = std::str::from_utf8(&rest[..unit_len]).map_err(|_| invalid())?;
            rest = &rest[unit_len..];
            let (mult, rank) = match unit {
                "y" => (Y, 1),
                "w" => (W, 2),
                "d" => (D, 3),
                "h" => (H, 4),
                "m" => (M, 5),
                "s" => (S, 6),
                "ms" => (MS, 7),
                _ => {
                    return Err(DurationError::UnknownUnit {
                        unit: unit.to_owned(),
                        input: input.to_owned(),
                    });
                }
            };
            if rank <= last_rank {
                return Err(invalid());
            }
            last_rank = rank;
            total = n
                .checked_mul(mult)
                .and_then(|v| v.checked_add(total))
                .filter(|v| *v <= (i64::MAX as u64) / 1_000_000)
                .ok_or_else(|| DurationError::OutOfRange(input.to_owned()))?;
        }
        Ok(Self(Duration::from_millis(total)))
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        // Years and weeks only when they divide evenly, as Prometheus prints them.
        for (unit, mult, exact) in [
            ("y", Y, true),
            ("w", W, true),
            ("d", D, false),
            ("h", H, false),
            ("m", M, false),
            ("s", S, false),
            ("ms", MS, false),
        ] {
            if exact && !ms.is_multiple_of(mult) {
                continue;
            }
            let v = ms / mult;
            if v > 0 {
                write!(f, "{v}{unit}")?;
                ms -= v * mult;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A size in bytes, written as Prometheus does for `body_size_limit`: `0`, `512`, `10MB`, `1GiB`
/// (base 2 either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("not a valid size: {input:?}"))?;
        let mult: u64 = match unit {
            "" | "B" => 1,
            "KB" | "KiB" => 1 << 10,
            "MB" | "MiB" => 1 << 20,
            "GB" | "GiB" => 1 << 30,
            "TB" | "TiB" => 1 << 40,
            "PB" | "PiB" => 1 << 50,
            "EB" | "EiB" => 1 << 60,
            _ => return Err(format!("unknown unit {unit:?} in size {input:?}")),
        };
        Ok(Self((n * mult as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse::<PromDuration>().unwrap().0
    }

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(d("15s"), Duration::from_secs(15));
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("2h"), Duration::from_secs(7200));
        assert_eq!(d("1d"), Duration::from_secs(86400));
        assert_eq!(d("1w"), Duration::from_secs(7 * 86400));
        assert_eq!(d("1y"), Duration::from_secs(365 * 86400));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("1h30m10s500ms"), Duration::from_millis(5_410_500));
        assert_eq!(d("0"), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "", "1", "s", "1.5s", "1s1m", "1x", "-1s", "1 s", "1ss", "1h1h",
        ] {
            assert!(
                bad.parse::<PromDuration>().is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn prints_like_prometheus() {
        for (s, want) in [
            ("90s", "1m30s"),
            ("2h", "2h"),
            ("0s", "0s"),
            ("14d", "2w"),
            ("13d", "13d"),
            ("8d", "8d"),
            ("365d", "1y"),
            ("1500ms", "1s500ms"),
        ] {
            assert_eq!(s.parse::<PromDuration>().unwrap().to_string(), want, "{s}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!("0".parse::<ByteSize>().unwrap().0, 0);
        assert_eq!("10MB".parse::<ByteSize>().unwrap().0, 10 << 20);
        assert_eq!("1KiB".parse::<ByteSize>().unwrap().0, 1024);
        assert!("10 parsecs".parse::<ByteSize>().is_err());
    }
}
