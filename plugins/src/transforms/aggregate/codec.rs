//! The compact binary encoding of the aggregate's state and group keys, and
//! the stable hash the distinct-count sketch uses.
//!
//! Integers are LEB128 varints (signed ones zigzag-encoded first), floats
//! are their IEEE 754 bits as 8 little-endian bytes, byte strings are a
//! varint length and the bytes. A [`Value`] is a tag byte and its payload:
//!
//! | tag | value | payload |
//! |---|---|---|
//! | 0 | null | — |
//! | 1 | string | varint len, UTF-8 bytes |
//! | 2 | int | zigzag varint |
//! | 3 | float | 8 bytes |
//! | 4 | bool | 1 byte, 0 or 1 |
//! | 5 | timestamp | zigzag varint ns |
//! | 6 | bytes | varint len, bytes |
//! | 7 | array | varint n, n values |
//! | 8 | map | varint n, n × (varint len, key bytes, value) in key order |
//!
//! The encoding is canonical (one value, one byte string), which is what
//! lets a group key be the concatenation of its fields' encodings: equal
//! values give equal keys, and keys sort the same way in every run. The
//! decoder never panics and never allocates more than the input could
//! describe: every length is checked against the bytes left.

use bytes::Bytes;
use weir_core::event::Fields;
use weir_core::Value;

/// Deepest nesting of arrays and maps a decoder follows.
const MAX_DEPTH: usize = 32;

/// Why state bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes ended in the middle of an item.
    #[error("state truncated while reading {0}")]
    Truncated(&'static str),
    /// A byte or number that the encoder never writes.
    #[error("invalid {0} in state")]
    Invalid(&'static str),
}

/// Appends encoded items to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u64_le(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn f64(&mut self, v: f64) {
        self.u64_le(v.to_bits());
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    /// Appends `v` in the canonical encoding of the module docs.
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.u8(0),
            Value::String(s) => {
                self.u8(1);
                self.bytes(s.as_bytes());
            }
            Value::Int(i) => {
                self.u8(2);
                self.zigzag(*i);
            }
            Value::Float(f) => {
                self.u8(3);
                self.f64(*f);
            }
            Value::Bool(b) => {
                self.u8(4);
                self.u8(*b as u8);
            }
            Value::Timestamp(ns) => {
                self.u8(5);
                self.zigzag(*ns);
            }
            Value::Bytes(b) => {
                self.u8(6);
                self.bytes(b);
            }
            Value::Array(items) => {
                self.u8(7);
                self.varint(items.len() as u64);
                for i in items {
                    self.value(i);
                }
            }
            Value::Map(m) => {
                self.u8(8);
                self.varint(m.len() as u64);
                for (k, v) in m {
                    self.bytes(k.as_bytes());
                    self.value(v);
                }
            }
        }
    }
}

/// Reads encoded items from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated(what))?;
        self.buf = rest;
        Ok(b)
    }

    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            let bits = (b & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return Err(DecodeError::Invalid(what));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Invalid(what))
    }

    /// A varint that counts items of at least `min_bytes` each still to
    /// read: refused when the input cannot hold that many, so a corrupt
    /// count never makes the decoder allocate without bound.
    pub fn count(&mut self, min_bytes: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.varint(what)?;
        if n > (self.buf.len() / min_bytes.max(1)) as u64 {
            return Err(DecodeError::Truncated(what));
        }
        Ok(n as usize)
    }

    pub fn zigzag(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let u = self.varint(what)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub fn f64(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64_le(what)?))
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.count(1, what)?;
        self.take(n, what)
    }

    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid(what))
    }

    /// Reads a value written by [`Writer::value`].
    pub fn value(&mut self) -> Result<Value, DecodeError> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::Invalid("value nesting"));
        }
        Ok(match self.u8("value tag")? {
            0 => Value::Null,
            1 => Value::String(self.string("string value")?),
            2 => Value::Int(self.zigzag("int value")?),
            3 => Value::Float(self.f64("float value")?),
            4 => match self.u8("bool value")? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(DecodeError::Invalid("bool value")),
            },
            5 => Value::Timestamp(self.zigzag("timestamp value")?),
            6 => Value::Bytes(Bytes::copy_from_slice(self.bytes("bytes value")?)),
            7 => {
                let n = self.count(1, "array length")?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value_at(depth + 1)?);
                }
                Value::Array(items)
            }
            8 => {
                let n = self.count(2, "map length")?;
                let mut m = Fields::with_capacity(n);
                for _ in 0..n {
                    let k = self.string("map key")?;
                    let v = self.value_at(depth + 1)?;
                    m.insert(k, v);
                }
                Value::Map(m)
            }
            _ => return Err(DecodeError::Invalid("value tag")),
        })
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Invalid("trailing bytes"))
        }
    }
}

/// Writes a group key into `w` (cleared first): the canonical encodings of
/// the `group_by` values in order, a missing value as null.
pub fn group_key<'v>(w: &mut Writer, values: impl Iterator<Item = Option<&'v Value>>) {
    w.buf.clear();
    for v in values {
        w.value(v.unwrap_or(&Value::Null));
    }
}

/// The `group_by` values of a key made by [`group_key`].
pub fn group_values(key: &[u8], n: usize) -> Result<Vec<Value>, DecodeError> {
    let mut r = Reader::new(key);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.value()?);
    }
    r.finish()?;
    Ok(out)
}

/// A 64-bit hash of `bytes` that is the same on every platform and in every
/// version (it is part of the state: the distinct-count registers depend on
/// it): FNV-1a over the bytes, then the MurmurHash3 finalizer, so that every
/// output bit depends on every input bit.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

/// MurmurHash3's 64-bit finalizer: a bijection with full avalanche.
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Value {
        let mut m = Fields::new();
        m.insert("b", Value::Array(vec![Value::Int(-3), Value::Null]));
        m.insert("a", Value::Bytes(Bytes::from_static(b"\xff\x00")));
        Value::Map(m)
    }

    #[test]
    fn every_kind_of_value_round_trips() {
        let values = vec![
            Value::Null,
            Value::String("dévice".into()),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Float(-0.5),
            Value::Bool(true),
            Value::Timestamp(-1),
            sample(),
        ];
        let mut w = Writer::new();
        for v in &values {
            w.value(v);
        }
        let mut r = Reader::new(&w.buf);
        for v in &values {
            assert_eq!(&r.value().unwrap(), v);
        }
        r.finish().unwrap();
    }

    #[test]
    fn group_keys_of_equal_values_are_equal_and_decode_back() {
        let a = Value::String("dev-1".into());
        let (mut w1, mut w2) = (Writer::new(), Writer::new());
        w1.u8(9); // cleared first
        group_key(&mut w1, [Some(&a), None].into_iter());
        group_key(&mut w2, [Some(&a), Some(&Value::Null)].into_iter());
        let (k1, k2) = (w1.buf, w2.buf);
        assert_eq!(k1, k2, "a missing field is the null group");
        assert_eq!(group_values(&k1, 2).unwrap(), vec![a, Value::Null]);
        assert!(group_values(&k1, 1).is_err(), "leftover bytes are refused");
    }

    #[test]
    fn the_stable_hash_does_not_change() {
        // Pinned: the distinct-count registers in saved state depend on it.
        assert_eq!(stable_hash(b""), fmix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(stable_hash(b"device-1"), 16_375_277_482_478_185_796);
    }

    #[test]
    fn a_huge_length_prefix_is_refused_without_allocating() {
        let mut w = Writer::new();
        w.u8(7);
        w.varint(u64::MAX >> 1);
        assert!(Reader::new(&w.buf).value().is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.value();
            let _ = group_values(&bytes, 3);
        }

        #[test]
        fn varints_round_trip(v in any::<u64>(), s in any::<i64>()) {
            let mut w = Writer::new();
            w.varint(v);
            w.zigzag(s);
            let mut r = Reader::new(&w.buf);
            prop_assert_eq!(r.varint("v").unwrap(), v);
            prop_assert_eq!(r.zigzag("s").unwrap(), s);
            prop_assert!(r.finish().is_ok());
        }
    }
}
