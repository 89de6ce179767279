//! Checking and parsing a frame. Nothing here can panic on any input: every
//! read is bounds-checked (`clippy::indexing_slicing` is denied) and every
//! length is checked before use.

#![deny(clippy::indexing_slicing)]

use crate::cobs::unstuff_in_place;
use crate::crc::crc32c;
use crate::encode::{CLOCK_MASK, CLOCK_UNIX, CLOCK_UPTIME};
use crate::value::{read_reading, Header, Reading, Timestamp};
use crate::varint::Reader;
use crate::{DecodeError, CRC_LEN, FORMAT_VERSION, MAX_FRAME_LEN};

/// Checks one stuffed frame (the bytes between two 0x00 delimiters, without
/// them), unstuffing it in place, and returns its body without the CRC,
/// ready for [`decode`].
///
/// The [`Deframer`](crate::Deframer) does this for a byte stream; call it
/// directly when frames arrive one per datagram or message.
pub fn unframe(stuffed: &mut [u8]) -> Result<&[u8], DecodeError> {
    let len = unstuff_in_place(stuffed)?;
    let frame = stuffed.get(..len).ok_or(DecodeError::BadCobs)?;
    if frame.len() > MAX_FRAME_LEN {
        return Err(DecodeError::TooLong {
            limit: MAX_FRAME_LEN,
        });
    }
    let body_len = frame
        .len()
        .checked_sub(CRC_LEN)
        .ok_or(DecodeError::Truncated)?;
    let (body, crc) = frame.split_at(body_len);
    let mut expected = [0u8; CRC_LEN];
    expected.copy_from_slice(crc);
    let expected = u32::from_le_bytes(expected);
    let actual = crc32c(body);
    if actual != expected {
        return Err(DecodeError::BadCrc { expected, actual });
    }
    Ok(body)
}

/// Parses a frame body (as returned by [`Deframer::feed`](crate::Deframer::feed)
/// or [`unframe`]) and checks all of it, so that iterating the readings of
/// the result cannot fail.
pub fn decode(body: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let mut r = Reader::new(body);
    let version = r.byte()?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let flags = r.byte()?;
    if flags & !CLOCK_MASK != 0 || flags & CLOCK_MASK == CLOCK_MASK {
        return Err(DecodeError::ReservedFlags(flags));
    }
    let device_id = r.varint()?;
    let sequence = r.varint_max(u64::from(u32::MAX), "sequence")? as u32;
    let timestamp = match flags & CLOCK_MASK {
        CLOCK_UNIX => Timestamp::UnixMicros(r.varint()?),
        CLOCK_UPTIME => Timestamp::UptimeMicros(r.varint()?),
        _ => Timestamp::None,
    };
    let count = r.byte()?;
    let readings_at = r.pos;
    for _ in 0..count {
        read_reading(&mut r)?;
    }
    if r.remaining() > 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(Frame {
        header: Header {
            device_id,
            sequence,
            timestamp,
        },
        count,
        readings: body.get(readings_at..).unwrap_or_default(),
    })
}

/// A decoded frame, borrowing its readings from the buffer it was decoded
/// from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Device id, sequence number and timestamp.
    pub header: Header,
    count: u8,
    /// The readings' bytes, already checked by [`decode`].
    readings: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The readings, in the order the device added them.
    pub fn readings(&self) -> Readings<'a> {
        Readings {
            reader: Reader::new(self.readings),
            left: self.count,
        }
    }

    /// How many readings the frame holds.
    pub fn reading_count(&self) -> usize {
        usize::from(self.count)
    }
}

/// Iterator over a frame's readings (see [`Frame::readings`]).
#[derive(Clone)]
pub struct Readings<'a> {
    reader: Reader<'a>,
    left: u8,
}

impl<'a> Iterator for Readings<'a> {
    type Item = Reading<'a>;

    fn next(&mut self) -> Option<Reading<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // `decode` parsed these same bytes successfully, so this cannot fail;
        // if it somehow did, ending the iteration is the safe answer.
        read_reading(&mut self.reader).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for Readings<'_> {}

impl core::fmt::Debug for Readings<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Readings")
            .field("left", &self.left)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::{encode, Reading, Value, MAX_ENCODED_LEN};
    use std::vec::Vec;

    /// A frame's body with a valid header (device 1, seq 2, no clock) and
    /// `count` readings whose bytes are `rest`.
    fn body(count: u8, rest: &[u8]) -> Vec<u8> {
        let mut b = vec![1, 0, 1, 2, count];
        b.extend_from_slice(rest);
        b
    }

    #[test]
    fn decodes_every_value_type() {
        let readings = [
            Reading::new(0, Value::Bool(false)),
            Reading::new(1, Value::Bool(true)),
            Reading::new(2, Value::U32(u32::MAX)),
            Reading::new(3, Value::U64(u64::MAX)),
            Reading::new(4, Value::I32(i32::MIN)),
            Reading::new(5, Value::I64(i64::MIN)),
            Reading::new(6, Value::F32(-0.5)),
            Reading::new(7, Value::F64(core::f64::consts::PI)),
            Reading::new(8, Value::Bytes(&[0, 1, 0, 0xFF])),
            Reading::new(u16::MAX, Value::Str("grüezi")),
        ];
        let header = Header {
            device_id: u64::MAX,
            sequence: u32::MAX,
            timestamp: Timestamp::UptimeMicros(9),
        };
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let len = encode(&mut buf, &header, &readings).unwrap();
        let frame = decode(unframe(&mut buf[1..len - 1]).unwrap()).unwrap();
        assert_eq!(frame.header, header);
        assert_eq!(frame.readings().len(), readings.len());
        assert!(frame.readings().eq(readings.iter().copied()));
    }

    #[test]
    fn names_each_kind_of_malformed_body() {
        let cases: [(Vec<u8>, DecodeError); 12] = [
            (vec![], DecodeError::Truncated),
            (vec![2, 0], DecodeError::UnknownVersion(2)),
            (vec![1, 0x04], DecodeError::ReservedFlags(0x04)),
            (vec![1, 0x03], DecodeError::ReservedFlags(0x03)),
            (
                vec![1, 0, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0],
                DecodeError::OutOfRange { field: "sequence" },
            ),
            (vec![1, 1, 1, 2], DecodeError::Truncated),
            (
                body(1, &[0x80, 0x80, 0x04, 1]),
                DecodeError::OutOfRange { field: "channel" },
            ),
            (body(1, &[0, 0x0B]), DecodeError::BadValueTag(0x0B)),
            (
                body(1, &[0, 0x05, 0x80, 0x80, 0x80, 0x80, 0x10]),
                DecodeError::OutOfRange { field: "i32 value" },
            ),
            (body(1, &[0, 0x0A, 2, 0xC3, 0x28]), DecodeError::BadUtf8),
            (body(1, &[0, 0x09, 5, 1]), DecodeError::Truncated),
            (body(1, &[0, 0x01, 0x42]), DecodeError::TrailingBytes(1)),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(&bytes), Err(expected), "{bytes:x?}");
        }
        assert_eq!(
            decode(&body(1, &[0, 0x04, 0x80, 0])),
            Err(DecodeError::BadVarint)
        );
        assert_eq!(decode(&body(2, &[0, 0x01])), Err(DecodeError::Truncated));
    }

    #[test]
    fn unframe_names_link_layer_damage() {
        let mut buf = [0u8; 64];
        let header = Header {
            device_id: 1,
            sequence: 0,
            timestamp: Timestamp::None,
        };
        let len = encode(&mut buf, &header, &[Reading::new(0, Value::U32(5))]).unwrap();
        let good = buf[1..len - 1].to_vec();

        let mut flipped = good.clone();
        flipped[3] ^= 0x10;
        assert!(matches!(
            unframe(&mut flipped),
            Err(DecodeError::BadCrc { .. })
        ));
        let mut cut = good[..good.len() - 1].to_vec();
        assert!(unframe(&mut cut).is_err());
        assert_eq!(unframe(&mut [0x04, 0x01, 0x02]), Err(DecodeError::BadCobs));
        assert_eq!(
            unframe(&mut [0x03, 0x01, 0x02]),
            Err(DecodeError::Truncated)
        );
        let mut long = [0x01u8; MAX_FRAME_LEN + 2];
        assert_eq!(
            unframe(&mut long),
            Err(DecodeError::TooLong {
                limit: MAX_FRAME_LEN
            })
        );
    }
}
