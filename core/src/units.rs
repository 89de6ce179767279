//! Typed configuration values: byte sizes (`"64MiB"`) and durations (`"5s"`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written in config as `1024`, `"64KiB"`, `"1GiB"` or `"10MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid byte size {s:?}: expected e.g. 512KiB, 64MiB, 1GiB"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" | "K" | "k" => 1 << 10,
            "MiB" | "M" => 1 << 20,
            "GiB" | "G" => 1 << 30,
            "TiB" | "T" => 1 << 40,
            u => return Err(format!("unknown byte size unit {u:?} in {s:?}")),
        };
        let v = n * mult as f64;
        if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
            return Err(format!("byte size {s:?} out of range"));
        }
        Ok(ByteSize(v as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{}", self.0 / size, name);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum, so a wrong value is
        // reported in the user's words, not as "no variant of enum Raw".
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size such as 512KiB, 64MiB or 1GiB")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("byte size {n} is negative")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ByteSize, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Serde adapter for `Duration` written as `"250ms"`, `"5s"`, `"1h 30m"`.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}): expected e.g. 500ms, 5s, 1h"
            ))
        })
    }
}

/// Serde adapter for `Option<Duration>` (absent or null: `None`), written like [`duration`].
pub mod opt_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "duration")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().0, 64 << 20);
        assert_eq!("1GiB".parse::<ByteSize>().unwrap().0, 1 << 30);
        assert_eq!("10MB".parse::<ByteSize>().unwrap().0, 10_000_000);
        assert_eq!("512".parse::<ByteSize>().unwrap().0, 512);
        assert_eq!(" 1.5 KiB".parse::<ByteSize>().unwrap().0, 1536);
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn optional_durations_parse_or_stay_absent() {
        #[derive(Deserialize)]
        struct C {
            #[serde(default, with = "opt_duration")]
            d: Option<Duration>,
        }
        let c: C = serde_json::from_str(r#"{"d": "1s 500ms"}"#).unwrap();
        assert_eq!(c.d, Some(Duration::from_millis(1500)));
        assert_eq!(serde_json::from_str::<C>("{}").unwrap().d, None);
        assert!(serde_json::from_str::<C>(r#"{"d": "soon"}"#).is_err());
    }

    #[test]
    fn a_wrong_byte_size_is_explained_in_plain_words() {
        #[derive(Debug, Deserialize)]
        struct C {
            #[allow(dead_code)]
            b: ByteSize,
        }
        let e = serde_json::from_str::<C>(r#"{"b": true}"#).unwrap_err();
        assert!(e.to_string().contains("a byte size such as"), "{e}");
        assert!(!e.to_string().contains("enum"), "{e}");
        assert_eq!(
            serde_json::from_str::<C>(r#"{"b": 5}"#).unwrap().b,
            ByteSize(5)
        );
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }
}
