//! Compact binary encoding of an [`Event`], used for records in the agent's spool.
//!
//! Layout (all integers little-endian, `varint` is unsigned LEB128):
//!
//! ```text
//! version  u8 = 1
//! ts       i64             nanoseconds since the epoch
//! source   varint len, bytes
//! host     varint len, bytes
//! topic    u8 0|1, then varint len, bytes when 1
//! key      u8 0|1, then varint len, bytes when 1
//! fields   varint count, then per field: varint len, name bytes, value
//! value    u8 tag, then: 0 null | 1 str(varint len, bytes) | 2 int(i64)
//!          | 3 float(f64 bits) | 4 bool(u8) | 5 timestamp(i64)
//!          | 6 bytes(varint len, bytes) | 7 array(varint n, values)
//!          | 8 map(varint n, (name, value)*)
//! ```
//!
//! **Record form** (version 2), what a sink's spool holds: the event as the
//! sink will send it, its fields already rendered as the JSON object that is
//! the Kafka record value, so the sink moves bytes instead of rebuilding
//! events (see `docs/architecture.md`, "Encode once"):
//!
//! ```text
//! version  u8 = 2
//! ts       i64             nanoseconds since the epoch
//! source, host, topic, key as in version 1
//! value    the remaining bytes: the fields as a JSON object
//! ```
//!
//! The spool frames and CRC-checks each record; this codec still checks every
//! length against the remaining input so a record that passes the CRC but was
//! written by a buggy or newer agent yields an error, never a panic.

use std::sync::Arc;

use bytes::Bytes;

use crate::event::{Event, Fields, Metadata, Value};

const VERSION: u8 = 1;
/// Version byte of the record form.
pub const RECORD_VERSION: u8 = 2;
/// Nesting bound: a hostile record cannot overflow the decoder's stack.
const MAX_DEPTH: usize = 64;

/// Why a spool record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The record ended before a field it announced.
    #[error("record truncated at byte {0}")]
    Truncated(usize),
    /// The record starts with a version this agent does not know.
    #[error("unknown event encoding version {0}")]
    Version(u8),
    /// A value tag outside the known set.
    #[error("unknown value tag {tag} at byte {at}")]
    Tag { tag: u8, at: usize },
    /// Text that is not UTF-8 where the format requires it.
    #[error("invalid UTF-8 at byte {0}")]
    Utf8(usize),
    /// Arrays or maps nested deeper than the decoder allows.
    #[error("values nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Bytes left over after the event.
    #[error("{0} trailing bytes after event")]
    Trailing(usize),
    /// A record form's value is not JSON.
    #[error("record value at byte {0} is not JSON")]
    Json(usize),
}

/// Appends the encoding of `event` to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    out.push(VERSION);
    put_head(event, out);
    put_map(out, &event.fields);
}

/// Appends the record form of `event` to `out`: its metadata, then its
/// fields as a JSON object.
pub fn encode_record(event: &Event, out: &mut Vec<u8>) {
    out.push(RECORD_VERSION);
    put_head(event, out);
    event.write_fields_json(out);
}

/// A record-form payload, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub timestamp: i64,
    pub source: &'a str,
    pub host: &'a str,
    pub topic: Option<&'a str>,
    pub key: Option<&'a [u8]>,
    /// Where the JSON value starts in the payload (it runs to the end).
    pub value_at: usize,
}

/// Reads a record-form payload.
pub fn decode_record(buf: &[u8]) -> Result<RecordView<'_>, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.u8()?;
    if version != RECORD_VERSION {
        return Err(DecodeError::Version(version));
    }
    let (timestamp, source, host, topic, key) = r.head()?;
    Ok(RecordView {
        timestamp,
        source,
        host,
        topic,
        key,
        value_at: r.pos,
    })
}

/// The version byte a payload starts with.
pub fn version_of(buf: &[u8]) -> Option<u8> {
    buf.first().copied()
}

/// The interned metadata of a record view.
pub fn metadata_of(v: &RecordView<'_>, interner: &mut Interner) -> Metadata {
    Metadata {
        source: intern(&mut interner.source, v.source),
        host: intern(&mut interner.host, v.host),
        topic: v.topic.map(Into::into),
        key: v.key.map(Bytes::copy_from_slice),
    }
}

fn put_head(event: &Event, out: &mut Vec<u8>) {
    put_head_of(event.timestamp, &event.meta, out);
}

/// Appends the head every form shares: the timestamp and the metadata.
pub(crate) fn put_head_of(timestamp: i64, meta: &Metadata, out: &mut Vec<u8>) {
    out.extend_from_slice(&timestamp.to_le_bytes());
    put_bytes(out, meta.source.as_bytes());
    put_bytes(out, meta.host.as_bytes());
    match &meta.topic {
        Some(t) => {
            out.push(1);
            put_bytes(out, t.as_bytes());
        }
        None => out.push(0),
    }
    match &meta.key {
        Some(k) => {
            out.push(1);
            put_bytes(out, k);
        }
        None => out.push(0),
    }
}

/// Reuses the metadata strings of consecutive events: nearly every record in
/// a spool has the same source and host, and sharing them saves two
/// allocations per event on the hot path.
#[derive(Default)]
pub struct Interner {
    source: Option<Arc<str>>,
    host: Option<Arc<str>>,
    /// The encoded head (after the timestamp) of the last record read by
    /// [`decode_record_meta`], and the metadata decoded from it.
    head: Vec<u8>,
    meta: Option<Metadata>,
}

/// Longest head [`decode_record_meta`] remembers: heads are a few dozen
/// bytes (source, host, flags); a long topic is decoded every time.
const MAX_CACHED_HEAD: usize = 256;

/// A record-form payload's timestamp, interned metadata and where its value
/// starts. A record whose head (its metadata as encoded, after the
/// timestamp) is the same bytes as the previous record's shares that
/// record's metadata without decoding it again: nearly every record of a
/// spool has the same head, and checking its strings' UTF-8 and interning
/// them was a few percent of the agent's CPU. The head encoding is
/// self-delimiting, so equal bytes decode to equal metadata.
pub fn decode_record_meta(
    buf: &[u8],
    interner: &mut Interner,
) -> Result<(i64, Metadata, usize), DecodeError> {
    const TS_END: usize = 1 + 8;
    if let (Some(meta), Some(&RECORD_VERSION), Some(rest)) =
        (&interner.meta, buf.first(), buf.get(TS_END..))
    {
        if rest.starts_with(&interner.head) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&buf[1..TS_END]);
            return Ok((
                i64::from_le_bytes(ts),
                meta.clone(),
                TS_END + interner.head.len(),
            ));
        }
    }
    let v = decode_record(buf)?;
    let meta = metadata_of(&v, interner);
    interner.head.clear();
    interner.meta = None;
    let head = &buf[TS_END..v.value_at];
    // A keyed record's head differs from the next one's: not worth keeping.
    if v.key.is_none() && head.len() <= MAX_CACHED_HEAD {
        interner.head.extend_from_slice(head);
        interner.meta = Some(meta.clone());
    }
    Ok((v.timestamp, meta, v.value_at))
}

fn intern(slot: &mut Option<Arc<str>>, s: &str) -> Arc<str> {
    match slot {
        Some(a) if &**a == s => a.clone(),
        _ => {
            let a: Arc<str> = s.into();
            *slot = Some(a.clone());
            a
        }
    }
}

/// Decodes one event that fills `buf` exactly.
pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    decode_with(buf, &mut Interner::default())
}

/// Decodes one event (either form), sharing metadata strings through
/// `interner`. The record form's fields come back from their JSON, so
/// timestamps and bytes come back as strings.
pub fn decode_with(buf: &[u8], interner: &mut Interner) -> Result<Event, DecodeError> {
    if version_of(buf) == Some(RECORD_VERSION) {
        let v = decode_record(buf)?;
        let json: serde_json::Value = serde_json::from_slice(&buf[v.value_at..])
            .map_err(|_| DecodeError::Json(v.value_at))?;
        let fields = match Value::from(json) {
            Value::Map(m) => m,
            other => std::iter::once(("value".to_owned(), other)).collect(),
        };
        return Ok(Event {
            timestamp: v.timestamp,
            fields,
            meta: metadata_of(&v, interner),
        });
    }
    let mut r = Reader { buf, pos: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let (timestamp, source, host, topic, key) = r.head()?;
    let source = intern(&mut interner.source, source);
    let host = intern(&mut interner.host, host);
    let topic = topic.map(Into::into);
    let key = key.map(Bytes::copy_from_slice);
    let fields = r.map(0)?;
    if r.pos != buf.len() {
        return Err(DecodeError::Trailing(buf.len() - r.pos));
    }
    Ok(Event {
        timestamp,
        fields,
        meta: Metadata {
            source,
            host,
            topic,
            key,
        },
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_map(out: &mut Vec<u8>, map: &Fields) {
    put_varint(out, map.len() as u64);
    for (k, v) in map {
        put_bytes(out, k.as_bytes());
        put_value(out, v);
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::String(s) => {
            out.push(1);
            put_bytes(out, s.as_bytes());
        }
        Value::Int(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Bool(b) => {
            out.push(4);
            out.push(*b as u8);
        }
        Value::Timestamp(t) => {
            out.push(5);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Value::Bytes(b) => {
            out.push(6);
            put_bytes(out, b);
        }
        Value::Array(items) => {
            out.push(7);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
        Value::Map(m) => {
            out.push(8);
            put_map(out, m);
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Timestamp, source, host, topic and key.
type Head<'a> = (i64, &'a str, &'a str, Option<&'a str>, Option<&'a [u8]>);

impl<'a> Reader<'a> {
    fn head(&mut self) -> Result<Head<'a>, DecodeError> {
        let timestamp = i64::from_le_bytes(self.array()?);
        let source = self.str()?;
        let host = self.str()?;
        let topic = if self.u8()? == 1 {
            Some(self.str()?)
        } else {
            None
        };
        let key = if self.u8()? == 1 {
            Some(self.bytes()?)
        } else {
            None
        };
        Ok((timestamp, source, host, topic, key))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Truncated(self.pos))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        // A length can never exceed what is left; checking here keeps a
        // corrupt length from turning into a huge allocation.
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(DecodeError::Truncated(self.pos));
        }
        Ok(n as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::Utf8(at))
    }

    fn map(&mut self, depth: usize) -> Result<Fields, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let n = self.len()?;
        let mut map = Fields::with_capacity(n.min(64));
        for _ in 0..n {
            let k = self.str()?;
            let v = self.value(depth)?;
            map.insert(k, v);
        }
        Ok(map)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let at = self.pos;
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::String(self.str()?.to_owned()),
            2 => Value::Int(i64::from_le_bytes(self.array()?)),
            3 => Value::Float(f64::from_bits(u64::from_le_bytes(self.array()?))),
            4 => Value::Bool(self.u8()? != 0),
            5 => Value::Timestamp(i64::from_le_bytes(self.array()?)),
            6 => Value::Bytes(Bytes::copy_from_slice(self.bytes()?)),
            7 => {
                if depth >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            8 => Value::Map(self.map(depth + 1)?),
            tag => return Err(DecodeError::Tag { tag, at }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Event {
        let mut e = Event::from_message(
            "GET /index.html 200",
            Metadata {
                source: "app".into(),
                host: "gw-1".into(),
                topic: Some("logs".into()),
                key: Some(Bytes::from_static(b"k1")),
            },
        );
        let mut inner = Fields::new();
        inner.insert(
            "x".to_owned(),
            Value::Array(vec![Value::Null, Value::Bool(false)]),
        );
        e.fields.insert("nested", Value::Map(inner));
        e.fields
            .insert("raw", Value::Bytes(Bytes::from_static(&[0xff, 0])));
        e.fields.insert("t", Value::Timestamp(-5));
        e.fields.insert("f", Value::Float(1.5));
        e
    }

    #[test]
    fn round_trips_every_value_kind() {
        let e = sample();
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        assert_eq!(decode(&buf).unwrap(), e);
    }

    #[test]
    fn rejects_truncation_at_every_length_without_panicking() {
        let mut buf = Vec::new();
        encode(&sample(), &mut buf);
        for n in 0..buf.len() {
            assert!(decode(&buf[..n]).is_err(), "prefix of {n} bytes decoded");
        }
    }

    #[test]
    fn decode_record_meta_gives_what_a_full_decode_gives_for_any_sequence_of_heads() {
        let meta = |source: &str, host: &str, topic: Option<&str>, key: Option<&[u8]>| Metadata {
            source: source.into(),
            host: host.into(),
            topic: topic.map(Into::into),
            key: key.map(Bytes::copy_from_slice),
        };
        // Same head twice, then each part changed (a source that extends
        // the previous one, a topic, a key, a host), then back.
        let metas = [
            meta("app", "gw-1", None, None),
            meta("app", "gw-1", None, None),
            meta("app2", "gw-1", None, None),
            meta("app2", "gw-1", Some("t"), None),
            meta("app2", "gw-1", Some("t"), Some(b"k")),
            meta("app2", "gw-1", Some("t"), Some(b"k")),
            meta("app2", "gw-2", Some("t"), None),
            meta("app", "gw-1", None, None),
        ];
        let mut interner = Interner::default();
        for (i, m) in metas.iter().enumerate() {
            let mut e = Event::from_message(format!("line {i}"), m.clone());
            e.timestamp = 1_000 + i as i64;
            let mut buf = Vec::new();
            encode_record(&e, &mut buf);
            let (ts, got, value_at) = decode_record_meta(&buf, &mut interner).unwrap();
            let v = decode_record(&buf).unwrap();
            assert_eq!((ts, value_at), (v.timestamp, v.value_at), "record {i}");
            assert_eq!(&got, m, "record {i}");
            assert_eq!(&buf[value_at..], &e.fields_json()[..], "record {i}");
        }
    }

    #[test]
    fn decode_record_meta_shares_the_strings_of_a_repeated_head() {
        let mut interner = Interner::default();
        let mut decoded = Vec::new();
        let keyless = Metadata {
            key: None,
            ..sample().meta
        };
        for i in 0..3 {
            let e = Event::from_message(format!("line {i}"), keyless.clone());
            let mut buf = Vec::new();
            encode_record(&e, &mut buf);
            decoded.push(decode_record_meta(&buf, &mut interner).unwrap().1);
        }
        assert!(Arc::ptr_eq(&decoded[0].source, &decoded[2].source));
        assert!(Arc::ptr_eq(&decoded[0].host, &decoded[2].host));
    }

    #[test]
    fn decode_record_meta_rejects_a_damaged_head_after_a_good_one() {
        let mut interner = Interner::default();
        let keyless = Metadata {
            key: None,
            ..sample().meta
        };
        let e = Event::from_message("x", keyless);
        let mut buf = Vec::new();
        encode_record(&e, &mut buf);
        decode_record_meta(&buf, &mut interner).unwrap();
        // The source's length now runs past the payload.
        buf[9] = 0x7f;
        assert!(decode_record_meta(&buf, &mut interner).is_err());
        assert!(decode_record_meta(&buf[..5], &mut interner).is_err());
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut buf = Vec::new();
        encode(&sample(), &mut buf);
        buf.push(0);
        assert_eq!(decode(&buf), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn the_record_form_carries_the_value_json_and_decodes_to_the_event() {
        let mut e = Event::from_message("a \"quoted\" line", sample().meta);
        e.fields.insert("n", Value::Int(7));
        let mut buf = Vec::new();
        encode_record(&e, &mut buf);
        let v = decode_record(&buf).unwrap();
        assert_eq!((v.source, v.host, v.topic), ("app", "gw-1", Some("logs")));
        assert_eq!(&buf[v.value_at..], &e.fields_json()[..]);
        assert_eq!(decode(&buf).unwrap(), e);
        for n in 0..v.value_at {
            assert!(decode_record(&buf[..n]).is_err());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&data);
        }

        #[test]
        fn messages_round_trip(msg in ".*", ts in any::<i64>()) {
            let mut e = Event::from_message(msg, Metadata::default());
            e.timestamp = ts;
            let mut buf = Vec::new();
            encode(&e, &mut buf);
            prop_assert_eq!(decode(&buf).unwrap(), e);
        }
    }
}
