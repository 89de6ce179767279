//! Bounded reading and writing of the frame's primitive fields.
//!
//! Varints are LEB128: 7 bits per byte, least significant group first, the
//! high bit set on every byte but the last. Only the shortest encoding is
//! accepted (no final 0x00 group in a multi-byte varint, at most 10 bytes, and
//! a 10th byte of exactly 0x01), so every value has exactly one encoding and
//! a frame's bytes are a function of its contents. Signed values are zigzag
//! mapped first (0, -1, 1, -2 … → 0, 1, 2, 3 …) so small negatives stay short.

// Reading runs on untrusted input: no indexing that could panic.
#![deny(clippy::indexing_slicing)]

use crate::DecodeError;

/// Zigzag-maps a signed value so that small magnitudes get short varints.
pub const fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub const fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends into a fixed buffer without ever panicking.
///
/// Bytes past the end are not written but still counted in `pos`, so after a
/// write the caller learns how much room it would have needed (and whether
/// it fitted) from one comparison instead of a check at every byte.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pub pos: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    /// Whether everything written so far fitted.
    pub fn fits(&self) -> bool {
        self.pos <= self.buf.len()
    }

    pub fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.pos) {
            *slot = b;
        }
        self.pos = self.pos.saturating_add(1);
    }

    pub fn bytes(&mut self, data: &[u8]) {
        let end = self.pos.saturating_add(data.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(data);
        }
        self.pos = end;
    }

    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }
}

/// Reads from a body front to back; every read is bounds-checked.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            let group = u64::from(b & 0x7F);
            if i == 9 && b != 0x01 {
                // Bit 63 is the only one left for a 10th byte.
                return Err(DecodeError::BadVarint);
            }
            v |= group << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(DecodeError::BadVarint);
                }
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    /// A varint that must fit the field it encodes.
    pub fn varint_max(&mut self, max: u64, field: &'static str) -> Result<u64, DecodeError> {
        let v = self.varint()?;
        if v > max {
            return Err(DecodeError::OutOfRange { field });
        }
        Ok(v)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn encode(v: u64) -> ([u8; 10], usize) {
        let mut buf = [0u8; 10];
        let mut w = Writer::new(&mut buf, 0);
        w.varint(v);
        let n = w.pos;
        (buf, n)
    }

    #[test]
    fn round_trips_boundaries() {
        for v in [
            0,
            1,
            127,
            128,
            16383,
            16384,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let (buf, n) = encode(v);
            let mut r = Reader::new(&buf[..n]);
            assert_eq!(r.varint(), Ok(v));
            assert_eq!(r.remaining(), 0);
        }
        assert_eq!(encode(u64::MAX).1, 10);
    }

    #[test]
    fn rejects_non_canonical_and_overlong_encodings() {
        let bad: [&[u8]; 4] = [
            &[0x80, 0x00],
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02],
            &[0x80; 11],
            &[
                0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x81, 0x00,
            ],
        ];
        for b in bad {
            assert_eq!(
                Reader::new(b).varint(),
                Err(DecodeError::BadVarint),
                "{b:x?}"
            );
        }
        assert_eq!(Reader::new(&[0x80]).varint(), Err(DecodeError::Truncated));
    }

    #[test]
    fn zigzag_keeps_small_magnitudes_small() {
        assert_eq!([zigzag(0), zigzag(-1), zigzag(1), zigzag(-2)], [0, 1, 2, 3]);
        for v in [0, 1, -1, i64::MIN, i64::MAX, i64::from(i32::MIN)] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn writer_counts_what_did_not_fit() {
        let mut buf = [0u8; 2];
        let mut w = Writer::new(&mut buf, 1);
        w.bytes(&[1, 2, 3]);
        assert_eq!((w.pos, w.fits()), (4, false));
    }
}
