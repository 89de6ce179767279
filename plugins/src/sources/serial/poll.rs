//! Poll mode: for sensors that answer only when asked. A request is written
//! every `interval`; the next complete record (line or frame) is its reply,
//! and none within `timeout` is counted in `weir_serial_poll_timeouts_total`.
//!
//! A request is text with escapes (`"MEAS?\r\n"`, `"\x02R\x03"`) or hex
//! bytes (`{ hex: "01 03 00 00 00 02 C4 0B" }`).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use weir_core::units::duration;

/// The request and its timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// What to write: text with escapes (`\r`, `\n`, `\t`, `\\`, `\xHH`) or `{ hex: "01 03 ..." }`.
    pub request: Request,
    /// How often to ask.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How long to wait for the reply (at most `interval`).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

impl PollConfig {
    /// Value problems serde cannot catch.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.interval < Duration::from_millis(1) {
            p.push("poll.interval: must be at least 1ms".to_owned());
        }
        if self.timeout.is_zero() || self.timeout > self.interval {
            p.push("poll.timeout: must be greater than zero and at most poll.interval".to_owned());
        }
        if self.request.bytes.is_empty() {
            p.push("poll.request: must not be empty".to_owned());
        }
        p
    }
}

/// Request bytes, with how they were written (for round trips).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub bytes: Vec<u8>,
    written: Written,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Written {
    Text(String),
    Hex(String),
}

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown escape `\\{0}` (use \\r, \\n, \\t, \\0, \\\\, \\\" or \\xHH)")]
    UnknownEscape(char),
    #[error("`\\x` needs two hex digits")]
    BadHexEscape,
    #[error("the text ends in a lone `\\`")]
    TrailingBackslash,
    #[error("hex: `{0}` is not a byte (two hex digits, optionally separated by spaces)")]
    BadHex(String),
}

impl Request {
    /// Text with escapes.
    pub fn text(s: &str) -> Result<Request, RequestError> {
        Ok(Request {
            bytes: unescape(s)?,
            written: Written::Text(s.to_owned()),
        })
    }

    /// Hex digit pairs, spaces, `:` or `-` between bytes allowed.
    pub fn hex(s: &str) -> Result<Request, RequestError> {
        let mut bytes = Vec::new();
        for group in s.split(|c: char| c.is_whitespace() || c == ':' || c == '-') {
            if group.is_empty() {
                continue;
            }
            if group.len() % 2 != 0 || !group.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(RequestError::BadHex(group.to_owned()));
            }
            for i in (0..group.len()).step_by(2) {
                let b = u8::from_str_radix(&group[i..i + 2], 16)
                    .map_err(|_| RequestError::BadHex(group.to_owned()))?;
                bytes.push(b);
            }
        }
        Ok(Request {
            bytes,
            written: Written::Hex(s.to_owned()),
        })
    }
}

/// Resolves `\r \n \t \0 \\ \" \xHH` in `s`.
pub fn unescape(s: &str) -> Result<Vec<u8>, RequestError> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('"') => out.push(b'"'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let b = (hex.len() == 2)
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or(RequestError::BadHexEscape)?;
                out.push(b);
            }
            Some(other) => return Err(RequestError::UnknownEscape(other)),
            None => return Err(RequestError::TrailingBackslash),
        }
    }
    Ok(out)
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match &self.written {
            Written::Text(t) => s.serialize_str(t),
            Written::Hex(h) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("hex", h)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Request;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("text with escapes, or { hex: \"01 03 ...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Request, E> {
                Request::text(v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Request, A::Error> {
                let mut hex: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "hex" || hex.is_some() {
                        return Err(de::Error::unknown_field(&key, &["hex"]));
                    }
                    hex = Some(map.next_value()?);
                }
                let hex = hex.ok_or_else(|| de::Error::missing_field("hex"))?;
                Request::hex(&hex).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_requests_resolve_escapes() {
        assert_eq!(unescape(r"MEAS?\r\n").unwrap(), b"MEAS?\r\n");
        assert_eq!(unescape(r"\x02R\x03\\").unwrap(), b"\x02R\x03\\");
        assert_eq!(unescape(r"\q"), Err(RequestError::UnknownEscape('q')));
        assert_eq!(unescape(r"\x4"), Err(RequestError::BadHexEscape));
        assert_eq!(unescape("a\\"), Err(RequestError::TrailingBackslash));
    }

    #[test]
    fn hex_requests_accept_separators_and_refuse_odd_digits() {
        let r = Request::hex("01 03 00:00-0002 c4 0b").unwrap();
        assert_eq!(r.bytes, [1, 3, 0, 0, 0, 2, 0xC4, 0x0B]);
        assert!(Request::hex("01 3").is_err());
        assert!(Request::hex("zz").is_err());
    }

    #[test]
    fn requests_parse_from_yaml_in_both_forms_and_round_trip() {
        let c: PollConfig =
            serde_yaml::from_str("request: \"R\\r\\n\"\ninterval: 1s\ntimeout: 200ms").unwrap();
        assert_eq!(c.request.bytes, b"R\r\n");
        let c: PollConfig =
            serde_yaml::from_str("request: { hex: \"01 03\" }\ninterval: 1s").unwrap();
        assert_eq!(c.request.bytes, [1, 3]);
        let again: PollConfig = serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        assert!(
            serde_yaml::from_str::<PollConfig>("request: { hax: \"01\" }\ninterval: 1s").is_err()
        );
        let bad = PollConfig {
            timeout: Duration::from_secs(2),
            ..c
        };
        assert_eq!(bad.problems().len(), 1);
    }
}
