//! The event: what flows from sources through transforms into channels and sinks.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::Serialize;

/// Field name a line-oriented source stores its text under.
pub const MESSAGE: &str = "message";

/// A typed field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absence of a value (JSON `null`).
    Null,
    /// UTF-8 text.
    String(String),
    /// Signed 64-bit integer.
    Int(i64),
    /// 64-bit float.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Nanoseconds since the Unix epoch.
    Timestamp(i64),
    /// Raw bytes (kept when a line is not valid UTF-8 and the source preserves it).
    Bytes(Bytes),
    /// Ordered list.
    Array(Vec<Value>),
    /// Nested map, ordered by key so encodings are deterministic.
    Map(Fields),
}

/// An event's fields: a map from name to value kept as a vector sorted by
/// name. Events usually have one to a few fields, where this is a fraction
/// of a `BTreeMap`'s size and allocations, with the same ordered iteration
/// (which keeps every encoding of an event byte-identical).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fields(Vec<(Name, Value)>);

/// A field name: borrowed for the names sources set on every event
/// (`message`), so creating an event does not allocate its field name.
type Name = std::borrow::Cow<'static, str>;

impl Fields {
    /// No fields.
    pub fn new() -> Self {
        Fields(Vec::new())
    }

    /// No fields, with room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        Fields(Vec::with_capacity(n))
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(name))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    /// Sets `name`, returning the value it replaced.
    pub fn insert(&mut self, name: impl Into<String> + AsRef<str>, value: Value) -> Option<Value> {
        match self.find(name.as_ref()) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (Name::Owned(name.into()), value));
                None
            }
        }
    }

    /// Sets a field whose name is a constant, without allocating the name.
    pub fn insert_static(&mut self, name: &'static str, value: Value) -> Option<Value> {
        match self.find(name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (Name::Borrowed(name), value));
                None
            }
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.find(name).ok().map(|i| self.0.remove(i).1)
    }

    /// Fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Name, Value)>,
        fn(&'a (Name, Value)) -> (&'a str, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl IntoIterator for Fields {
    type Item = (String, Value);
    type IntoIter =
        std::iter::Map<std::vec::IntoIter<(Name, Value)>, fn((Name, Value)) -> (String, Value)>;
    /// Fields in name order, by value (transforms that rebuild events move
    /// the values instead of cloning them).
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(|(k, v)| (k.into_owned(), v))
    }
}

impl FromIterator<(String, Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut f = Fields::new();
        for (k, v) in iter {
            f.insert(k, v);
        }
        f
    }
}

/// Where an event came from and where it goes; carried as record headers and key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata {
    /// Component id of the source that produced the event.
    pub source: Arc<str>,
    /// Host name of the agent.
    pub host: Arc<str>,
    /// Topic override; sinks use their configured topic when absent.
    pub topic: Option<Arc<str>>,
    /// Partitioning key; no key means round robin per batch.
    pub key: Option<Bytes>,
}

/// One event: a timestamp, typed fields and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
    /// Fields, ordered by name so that every encoding of an event is byte-identical;
    /// the collector's dedup relies on a resent batch being the same bytes.
    pub fields: Fields,
    /// Source, host, topic and key.
    pub meta: Metadata,
}

impl Event {
    /// An event holding one line of text in `message`, stamped now.
    pub fn from_message(message: impl Into<Value>, meta: Metadata) -> Self {
        Self::from_message_at(message, meta, now_nanos())
    }

    /// An event holding one line of text in `message`, stamped `timestamp`
    /// (sources stamp a whole batch with one clock read).
    pub fn from_message_at(message: impl Into<Value>, meta: Metadata, timestamp: i64) -> Self {
        let mut fields = Fields::with_capacity(1);
        fields.insert_static(MESSAGE, message.into());
        Event {
            timestamp,
            fields,
            meta,
        }
    }

    /// The `message` field as text, if it is a string.
    pub fn message(&self) -> Option<&str> {
        match self.fields.get(MESSAGE) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The fields as a JSON object, the default record value on the wire.
    pub fn fields_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_fields_json(&mut out);
        out
    }

    /// Appends the fields as a JSON object to `out`.
    pub fn write_fields_json(&self, out: &mut Vec<u8>) {
        crate::json::write_fields(out, &self.fields);
    }

    /// The fields as JSON through serde, which `json.rs` must match.
    #[cfg(test)]
    pub(crate) fn fields_json_serde(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = serde_json::to_writer(&mut out, &FieldsRef(&self.fields));
        out
    }
}

struct FieldsRef<'a>(&'a Fields);

impl Serialize for FieldsRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::String(v) => s.serialize_str(v),
            Value::Int(v) => s.serialize_i64(*v),
            // JSON has no NaN or infinity; null is the honest rendering.
            Value::Float(v) if !v.is_finite() => s.serialize_unit(),
            Value::Float(v) => s.serialize_f64(*v),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::Timestamp(ns) => s.serialize_str(&format_rfc3339_nanos(*ns)),
            Value::Bytes(b) => s.serialize_str(&String::from_utf8_lossy(b)),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(map) => FieldsRef(map).serialize(s),
        }
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<serde_json::Value> for Value {
    /// JSON into a field value: integers that fit stay integers, other
    /// numbers become floats, objects become ordered maps.
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => {
                Value::Map(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

/// Nanoseconds since the Unix epoch, now. A clock before 1970 reads as 0.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Formats nanoseconds since the epoch as RFC 3339 in UTC.
pub fn format_rfc3339_nanos(ns: i64) -> String {
    let t = if ns >= 0 {
        UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC.
/// Times outside 1970..=9999, which RFC 3339 cannot express, are written as
/// their milliseconds in decimal rather than clamped (or panicking).
pub fn format_rfc3339_millis(ms: i64) -> String {
    if !(0..=crate::decode::YEAR_9999_MS).contains(&ms) {
        return ms.to_string();
    }
    let t = UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses an RFC 3339 time into milliseconds since the epoch.
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_json_is_ordered_and_typed() {
        let mut e = Event::from_message("hello", Metadata::default());
        e.fields.insert("ratio", Value::Float(f64::NAN));
        e.fields.insert("count", Value::Int(3));
        e.fields.insert("ok", Value::Bool(true));
        assert_eq!(
            e.fields.insert("ok", Value::Bool(false)),
            Some(Value::Bool(true))
        );
        assert_eq!(e.fields.remove("nope"), None);
        let json = String::from_utf8(e.fields_json()).unwrap();
        assert_eq!(
            json,
            r#"{"count":3,"message":"hello","ok":false,"ratio":null}"#
        );
    }

    #[test]
    fn times_rfc3339_cannot_express_are_written_as_milliseconds() {
        assert_eq!(format_rfc3339_millis(1 << 62), (1i64 << 62).to_string());
        assert_eq!(format_rfc3339_millis(-5), "-5");
        assert_eq!(
            format_rfc3339_millis(crate::decode::YEAR_9999_MS),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn rfc3339_round_trips_at_millisecond_precision() {
        let ms = 1_700_000_000_123;
        let s = format_rfc3339_millis(ms);
        assert_eq!(s, "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_rfc3339_millis(&s), Some(ms));
    }
}
