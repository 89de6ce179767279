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
//! The spool frames and CRC-checks each record; this codec still checks every
//! length against the remaining input so a record that passes the CRC but was
//! written by a buggy or newer agent yields an error, never a panic.

use std::sync::Arc;

use bytes::Bytes;

use crate::event::{Event, Fields, Metadata, Value};

const VERSION: u8 = 1;
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
}

/// Appends the encoding of `event` to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    out.push(VERSION);
    out.extend_from_slice(&event.timestamp.to_le_bytes());
    put_bytes(out, event.meta.source.as_bytes());
    put_bytes(out, event.meta.host.as_bytes());
    match &event.meta.topic {
        Some(t) => {
            out.push(1);
            put_bytes(out, t.as_bytes());
        }
        None => out.push(0),
    }
    match &event.meta.key {
        Some(k) => {
            out.push(1);
            put_bytes(out, k);
        }
        None => out.push(0),
    }
    put_map(out, &event.fields);
}

/// Reuses the metadata strings of consecutive events: nearly every record in
/// a spool has the same source and host, and sharing them saves two
/// allocations per event on the hot path.
#[derive(Default)]
pub struct Interner {
    source: Option<Arc<str>>,
    host: Option<Arc<str>>,
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

/// Decodes one event, sharing metadata strings through `interner`.
pub fn decode_with(buf: &[u8], interner: &mut Interner) -> Result<Event, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let timestamp = i64::from_le_bytes(r.array()?);
    let source = intern(&mut interner.source, r.str()?);
    let host = intern(&mut interner.host, r.str()?);
    let topic = if r.u8()? == 1 {
        Some(r.str()?.into())
    } else {
        None
    };
    let key = if r.u8()? == 1 {
        Some(Bytes::copy_from_slice(r.bytes()?))
    } else {
        None
    };
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

impl<'a> Reader<'a> {
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
    fn rejects_trailing_bytes() {
        let mut buf = Vec::new();
        encode(&sample(), &mut buf);
        buf.push(0);
        assert_eq!(decode(&buf), Err(DecodeError::Trailing(1)));
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
