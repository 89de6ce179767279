//! The Kafka wire types, read by a bounded [`Reader`] and written by a
//! [`Writer`], both behind one [`Codec`] trait so that each message is
//! described once (`Message::visit`) and that description serves decoding
//! requests, encoding responses, and the tests' round trips.
//!
//! | type | classic versions | flexible versions |
//! |---|---|---|
//! | `i8` `i16` `i32` `i64` | big-endian | same |
//! | string | `i16` length, then UTF-8 | unsigned varint length + 1, then UTF-8 |
//! | nullable string | length -1 is null | length 0 is null |
//! | bytes | `i32` length | unsigned varint length + 1 |
//! | array | `i32` count (-1 null) | unsigned varint count + 1 (0 null) |
//! | tagged fields | none | unsigned varint count, then (tag, size, bytes) each |
//!
//! Every length and count read off the wire is checked against the bytes
//! left in the frame before anything is allocated for it: a string or byte
//! field is at most the frame, and an array of `n` elements needs at least
//! `n` bytes. Arrays reserve at most [`PREALLOCATE`] elements and no more
//! memory than the bytes left, and grow as elements actually decode, so the
//! memory a request costs follows the bytes it really contains. Byte fields are slices of the frame (no copy); strings
//! are copied (at most the frame). Unknown tagged fields are skipped.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a message could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{what} needs {need} bytes, {left} left")]
    Truncated {
        what: &'static str,
        need: usize,
        left: usize,
    },
    #[error("{what} declares {count} entries, only {left} bytes left")]
    CountTooLarge {
        what: &'static str,
        count: usize,
        left: usize,
    },
    #[error("negative length {0} for a non-nullable field")]
    NegativeLength(i64),
    #[error("unsigned varint longer than 5 bytes")]
    Varint,
    #[error("string is not UTF-8")]
    Utf8,
    #[error("a null array where the version requires one")]
    NullArray,
    #[error("{0} is too long to encode")]
    TooLong(&'static str),
}

/// Capacity reserved up front for an array, whatever its declared count:
/// the rest grows only with elements that decode.
pub const PREALLOCATE: usize = 64;

/// A message (or part of one) at a given version.
pub trait Message: Default {
    /// Reads or writes every field present at `version`, in wire order.
    fn visit<C: Codec>(&mut self, c: &mut C, version: i16) -> Result<(), WireError>;
}

/// One direction of the wire: [`Reader`] fills the fields, [`Writer`] writes them.
pub trait Codec: Sized {
    /// Whether this message version uses the compact encodings and tagged fields.
    fn flexible(&self) -> bool;
    fn i8(&mut self, v: &mut i8) -> Result<(), WireError>;
    fn i16(&mut self, v: &mut i16) -> Result<(), WireError>;
    fn i32(&mut self, v: &mut i32) -> Result<(), WireError>;
    fn i64(&mut self, v: &mut i64) -> Result<(), WireError>;
    fn uuid(&mut self, v: &mut [u8; 16]) -> Result<(), WireError>;
    fn bool(&mut self, v: &mut bool) -> Result<(), WireError>;
    fn nullable_string(&mut self, v: &mut Option<String>) -> Result<(), WireError>;
    fn nullable_bytes(&mut self, v: &mut Option<Bytes>) -> Result<(), WireError>;
    /// A nullable array of messages.
    fn nullable_array<T: Message>(
        &mut self,
        v: &mut Option<Vec<T>>,
        version: i16,
    ) -> Result<(), WireError>;
    fn nullable_i32_array(&mut self, v: &mut Option<Vec<i32>>) -> Result<(), WireError>;
    fn nullable_string_array(&mut self, v: &mut Option<Vec<String>>) -> Result<(), WireError>;
    /// Tagged fields at the end of a structure (flexible versions only):
    /// read and skipped, written as none.
    fn tags(&mut self) -> Result<(), WireError>;

    fn string(&mut self, v: &mut String) -> Result<(), WireError> {
        let mut o = Some(std::mem::take(v));
        self.nullable_string(&mut o)?;
        *v = o.ok_or(WireError::NegativeLength(-1))?;
        Ok(())
    }
    fn bytes(&mut self, v: &mut Bytes) -> Result<(), WireError> {
        let mut o = Some(std::mem::take(v));
        self.nullable_bytes(&mut o)?;
        *v = o.ok_or(WireError::NegativeLength(-1))?;
        Ok(())
    }
    fn array<T: Message>(&mut self, v: &mut Vec<T>, version: i16) -> Result<(), WireError> {
        let mut o = Some(std::mem::take(v));
        self.nullable_array(&mut o, version)?;
        *v = o.ok_or(WireError::NullArray)?;
        Ok(())
    }
    fn i32_array(&mut self, v: &mut Vec<i32>) -> Result<(), WireError> {
        let mut o = Some(std::mem::take(v));
        self.nullable_i32_array(&mut o)?;
        *v = o.ok_or(WireError::NullArray)?;
        Ok(())
    }
    fn string_array(&mut self, v: &mut Vec<String>) -> Result<(), WireError> {
        let mut o = Some(std::mem::take(v));
        self.nullable_string_array(&mut o)?;
        *v = o.ok_or(WireError::NullArray)?;
        Ok(())
    }
}

/// Reads a message from a request frame, never past its end.
pub struct Reader {
    buf: Bytes,
    pos: usize,
    flexible: bool,
}

impl Reader {
    /// A reader over `buf`, in the flexible encodings or not.
    pub fn new(buf: Bytes, flexible: bool) -> Reader {
        Reader {
            buf,
            pos: 0,
            flexible,
        }
    }

    /// Switches encoding (a request header is read before the body's
    /// encoding is known to apply).
    pub fn set_flexible(&mut self, flexible: bool) {
        self.flexible = flexible;
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated {
                what,
                need: n,
                left: self.remaining(),
            });
        }
        let s = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(s)
    }

    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        if N > self.remaining() {
            return Err(WireError::Truncated {
                what,
                need: N,
                left: self.remaining(),
            });
        }
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }

    /// An unsigned varint of at most 32 bits.
    pub fn uvarint(&mut self) -> Result<u32, WireError> {
        let mut v: u64 = 0;
        for i in 0..5 {
            let [b] = self.fixed::<1>("varint")?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(v).map_err(|_| WireError::Varint);
            }
        }
        Err(WireError::Varint)
    }

    /// A length or count: `None` for null; checked against the bytes left
    /// (each element of an array takes at least `min` bytes).
    fn length(
        &mut self,
        wide: bool,
        min: usize,
        what: &'static str,
    ) -> Result<Option<usize>, WireError> {
        let n: i64 = if self.flexible {
            i64::from(self.uvarint()?) - 1
        } else if wide {
            i64::from(i32::from_be_bytes(self.fixed(what)?))
        } else {
            i64::from(i16::from_be_bytes(self.fixed(what)?))
        };
        if n < 0 {
            return if n == -1 {
                Ok(None)
            } else {
                Err(WireError::NegativeLength(n))
            };
        }
        let n = n as usize;
        if n.saturating_mul(min) > self.remaining() {
            return Err(WireError::CountTooLarge {
                what,
                count: n,
                left: self.remaining(),
            });
        }
        Ok(Some(n))
    }

    fn elements<T>(
        &mut self,
        v: &mut Option<Vec<T>>,
        min: usize,
        what: &'static str,
        mut each: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<(), WireError> {
        *v = match self.length(true, min, what)? {
            None => None,
            Some(n) => {
                // Reserve no more than the bytes left could fill, and at
                // most PREALLOCATE: the rest grows with decoded elements.
                let fits = self.remaining() / std::mem::size_of::<T>().max(1);
                let mut out = Vec::with_capacity(n.min(PREALLOCATE).min(fits));
                for _ in 0..n {
                    out.push(each(self)?);
                }
                Some(out)
            }
        };
        Ok(())
    }

    /// A classic (`i16`-length) nullable string whatever the encoding:
    /// the request header's client id.
    pub fn classic_nullable_string(&mut self) -> Result<Option<String>, WireError> {
        let flexible = std::mem::replace(&mut self.flexible, false);
        let mut s = None;
        let r = self.nullable_string(&mut s);
        self.flexible = flexible;
        r.map(|()| s)
    }
}

impl Codec for Reader {
    fn flexible(&self) -> bool {
        self.flexible
    }
    fn i8(&mut self, v: &mut i8) -> Result<(), WireError> {
        *v = i8::from_be_bytes(self.fixed("int8")?);
        Ok(())
    }
    fn i16(&mut self, v: &mut i16) -> Result<(), WireError> {
        *v = i16::from_be_bytes(self.fixed("int16")?);
        Ok(())
    }
    fn i32(&mut self, v: &mut i32) -> Result<(), WireError> {
        *v = i32::from_be_bytes(self.fixed("int32")?);
        Ok(())
    }
    fn i64(&mut self, v: &mut i64) -> Result<(), WireError> {
        *v = i64::from_be_bytes(self.fixed("int64")?);
        Ok(())
    }
    fn uuid(&mut self, v: &mut [u8; 16]) -> Result<(), WireError> {
        *v = self.fixed("uuid")?;
        Ok(())
    }
    fn bool(&mut self, v: &mut bool) -> Result<(), WireError> {
        let [b] = self.fixed::<1>("bool")?;
        *v = b != 0;
        Ok(())
    }
    fn nullable_string(&mut self, v: &mut Option<String>) -> Result<(), WireError> {
        *v = match self.length(false, 1, "string")? {
            None => None,
            Some(n) => {
                let b = self.take(n, "string")?;
                Some(
                    std::str::from_utf8(&b)
                        .map_err(|_| WireError::Utf8)?
                        .to_owned(),
                )
            }
        };
        Ok(())
    }
    fn nullable_bytes(&mut self, v: &mut Option<Bytes>) -> Result<(), WireError> {
        *v = match self.length(true, 1, "bytes")? {
            None => None,
            Some(n) => Some(self.take(n, "bytes")?),
        };
        Ok(())
    }
    fn nullable_array<T: Message>(
        &mut self,
        v: &mut Option<Vec<T>>,
        version: i16,
    ) -> Result<(), WireError> {
        self.elements(v, 1, "array", |r| {
            let mut t = T::default();
            t.visit(r, version)?;
            Ok(t)
        })
    }
    fn nullable_i32_array(&mut self, v: &mut Option<Vec<i32>>) -> Result<(), WireError> {
        self.elements(v, 4, "int32 array", |r| {
            Ok(i32::from_be_bytes(r.fixed("int32")?))
        })
    }
    fn nullable_string_array(&mut self, v: &mut Option<Vec<String>>) -> Result<(), WireError> {
        self.elements(v, 1, "string array", |r| {
            let mut s = String::new();
            r.string(&mut s)?;
            Ok(s)
        })
    }
    fn tags(&mut self) -> Result<(), WireError> {
        if !self.flexible {
            return Ok(());
        }
        let n = self.uvarint()? as usize;
        if n > self.remaining() {
            return Err(WireError::CountTooLarge {
                what: "tagged fields",
                count: n,
                left: self.remaining(),
            });
        }
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size, "tagged field")?;
        }
        Ok(())
    }
}

/// Writes a message into a buffer.
pub struct Writer {
    buf: BytesMut,
    flexible: bool,
}

impl Writer {
    /// A writer appending to `buf`.
    pub fn new(buf: BytesMut, flexible: bool) -> Writer {
        Writer { buf, flexible }
    }

    /// The bytes written.
    pub fn finish(self) -> BytesMut {
        self.buf
    }

    /// Switches encoding (the response header of ApiVersions is never flexible).
    pub fn set_flexible(&mut self, flexible: bool) {
        self.flexible = flexible;
    }

    /// Writes an unsigned varint.
    pub fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }

    fn length(
        &mut self,
        n: Option<usize>,
        wide: bool,
        what: &'static str,
    ) -> Result<(), WireError> {
        let limit = if wide || self.flexible {
            i32::MAX as usize - 1
        } else {
            i16::MAX as usize
        };
        let n = match n {
            Some(n) if n > limit => return Err(WireError::TooLong(what)),
            Some(n) => n as i64,
            None => -1,
        };
        if self.flexible {
            self.uvarint((n + 1) as u32);
        } else if wide {
            self.buf.put_i32(n as i32);
        } else {
            self.buf.put_i16(n as i16);
        }
        Ok(())
    }
}

impl Codec for Writer {
    fn flexible(&self) -> bool {
        self.flexible
    }
    fn i8(&mut self, v: &mut i8) -> Result<(), WireError> {
        self.buf.put_i8(*v);
        Ok(())
    }
    fn i16(&mut self, v: &mut i16) -> Result<(), WireError> {
        self.buf.put_i16(*v);
        Ok(())
    }
    fn i32(&mut self, v: &mut i32) -> Result<(), WireError> {
        self.buf.put_i32(*v);
        Ok(())
    }
    fn i64(&mut self, v: &mut i64) -> Result<(), WireError> {
        self.buf.put_i64(*v);
        Ok(())
    }
    fn uuid(&mut self, v: &mut [u8; 16]) -> Result<(), WireError> {
        self.buf.put_slice(v);
        Ok(())
    }
    fn bool(&mut self, v: &mut bool) -> Result<(), WireError> {
        self.buf.put_u8(u8::from(*v));
        Ok(())
    }
    fn nullable_string(&mut self, v: &mut Option<String>) -> Result<(), WireError> {
        self.length(v.as_ref().map(|s| s.len()), false, "string")?;
        if let Some(s) = v {
            self.buf.put_slice(s.as_bytes());
        }
        Ok(())
    }
    fn nullable_bytes(&mut self, v: &mut Option<Bytes>) -> Result<(), WireError> {
        self.length(v.as_ref().map(|s| s.len()), true, "bytes")?;
        if let Some(s) = v {
            self.buf.put_slice(s);
        }
        Ok(())
    }
    fn nullable_array<T: Message>(
        &mut self,
        v: &mut Option<Vec<T>>,
        version: i16,
    ) -> Result<(), WireError> {
        self.length(v.as_ref().map(|a| a.len()), true, "array")?;
        for t in v.iter_mut().flatten() {
            t.visit(self, version)?;
        }
        Ok(())
    }
    fn nullable_i32_array(&mut self, v: &mut Option<Vec<i32>>) -> Result<(), WireError> {
        self.length(v.as_ref().map(|a| a.len()), true, "int32 array")?;
        for x in v.iter().flatten() {
            self.buf.put_i32(*x);
        }
        Ok(())
    }
    fn nullable_string_array(&mut self, v: &mut Option<Vec<String>>) -> Result<(), WireError> {
        self.length(v.as_ref().map(|a| a.len()), true, "string array")?;
        for s in v.iter_mut().flatten() {
            self.string(s)?;
        }
        Ok(())
    }
    fn tags(&mut self) -> Result<(), WireError> {
        if self.flexible {
            self.uvarint(0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(flexible: bool, f: impl FnOnce(&mut Writer)) -> Bytes {
        let mut w = Writer::new(BytesMut::new(), flexible);
        f(&mut w);
        w.finish().freeze()
    }

    #[test]
    fn classic_strings_arrays_and_bytes_have_fixed_width_lengths() {
        let b = write(false, |w| {
            w.string(&mut "ab".to_owned()).unwrap();
            w.nullable_string(&mut None).unwrap();
            w.bytes(&mut Bytes::from_static(b"xyz")).unwrap();
            w.i32_array(&mut vec![7]).unwrap();
        });
        assert_eq!(
            &b[..],
            &[0, 2, b'a', b'b', 0xff, 0xff, 0, 0, 0, 3, b'x', b'y', b'z', 0, 0, 0, 1, 0, 0, 0, 7]
        );
        let mut r = Reader::new(b, false);
        let (mut s, mut n, mut by, mut a) =
            (String::new(), Some(String::new()), Bytes::new(), vec![]);
        r.string(&mut s).unwrap();
        r.nullable_string(&mut n).unwrap();
        r.bytes(&mut by).unwrap();
        r.i32_array(&mut a).unwrap();
        assert_eq!(
            (s.as_str(), n, &by[..], a),
            ("ab", None, &b"xyz"[..], vec![7])
        );
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn compact_lengths_are_varints_plus_one_and_zero_is_null() {
        let b = write(true, |w| {
            w.string(&mut "ab".to_owned()).unwrap();
            w.nullable_string(&mut None).unwrap();
            w.nullable_i32_array(&mut None).unwrap();
            w.bytes(&mut Bytes::from(vec![1u8; 200])).unwrap();
            w.tags().unwrap();
        });
        assert_eq!(&b[..5], &[3, b'a', b'b', 0, 0]);
        // 201 as an unsigned varint.
        assert_eq!(&b[5..7], &[0xc9, 0x01]);
        assert_eq!(b[b.len() - 1], 0);
        let mut r = Reader::new(b, true);
        let (mut s, mut n, mut a, mut by) = (
            String::new(),
            Some(String::new()),
            Some(vec![1]),
            Bytes::new(),
        );
        r.string(&mut s).unwrap();
        r.nullable_string(&mut n).unwrap();
        r.nullable_i32_array(&mut a).unwrap();
        r.bytes(&mut by).unwrap();
        r.tags().unwrap();
        assert_eq!((s.as_str(), n, a, by.len()), ("ab", None, None, 200));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn unknown_tagged_fields_are_skipped() {
        // Two tagged fields: tag 0 with 3 bytes, tag 5 with 0 bytes; then an int8.
        let mut r = Reader::new(Bytes::from_static(&[2, 0, 3, 9, 9, 9, 5, 0, 42]), true);
        r.tags().unwrap();
        let mut x = 0i8;
        r.i8(&mut x).unwrap();
        assert_eq!(x, 42);
    }

    #[test]
    fn a_count_larger_than_the_bytes_left_is_refused_before_allocating() {
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0]), false);
        let mut a: Vec<i32> = Vec::new();
        assert!(matches!(
            r.i32_array(&mut a),
            Err(WireError::CountTooLarge {
                count: 2147483647,
                ..
            })
        ));
        // Three int32s need 12 bytes; 8 are there.
        let mut r = Reader::new(
            Bytes::from_static(&[0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2]),
            false,
        );
        assert!(matches!(
            r.i32_array(&mut a),
            Err(WireError::CountTooLarge { count: 3, .. })
        ));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]), true);
        let mut s = String::new();
        assert!(r.string(&mut s).is_err());
    }

    #[test]
    fn truncated_input_is_an_error_and_overlong_varints_too() {
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 1]), false);
        let mut x = 0i32;
        assert!(matches!(
            r.i32(&mut x),
            Err(WireError::Truncated {
                need: 4,
                left: 3,
                ..
            })
        ));
        let mut r = Reader::new(Bytes::from_static(&[0xff; 8]), true);
        assert_eq!(r.uvarint(), Err(WireError::Varint));
    }

    #[test]
    fn null_where_a_value_is_required_is_an_error() {
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff]), false);
        assert!(r.string(&mut String::new()).is_err());
        let mut r = Reader::new(Bytes::from_static(&[0]), true);
        assert_eq!(r.i32_array(&mut Vec::new()), Err(WireError::NullArray));
    }

    #[test]
    fn byte_fields_are_slices_of_the_frame_not_copies() {
        let frame = Bytes::from_static(&[0, 0, 0, 2, 7, 8]);
        let mut r = Reader::new(frame.clone(), false);
        let mut b = Bytes::new();
        r.bytes(&mut b).unwrap();
        assert_eq!(b.as_ptr(), frame[4..].as_ptr());
    }

    #[test]
    fn strings_too_long_for_their_width_are_refused_when_writing() {
        let mut w = Writer::new(BytesMut::new(), false);
        assert_eq!(
            w.string(&mut "x".repeat(40_000)),
            Err(WireError::TooLong("string"))
        );
    }
}
