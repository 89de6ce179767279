//! Building a frame straight into the caller's buffer.
//!
//! The body is written at an offset (the *gap*) inside the buffer, and
//! [`FrameBuilder::finish`] appends the CRC and COBS-stuffs the body forward
//! into the gap, in place. The gap is the most the stuffing can run ahead of
//! its input (`2 + n / 254` bytes for an `n`-byte body and CRC, counting the
//! leading delimiter), so one buffer of the final wire size is enough: no
//! second buffer, no allocation.

use crate::cobs::stuff_in_place;
use crate::crc::crc32c;
use crate::value::{write_reading, Header, Reading, Timestamp, Value};
use crate::varint::Writer;
use crate::{EncodeError, CRC_LEN, FORMAT_VERSION, MAX_FRAME_LEN, MAX_READINGS};

/// Flags byte, bits 0–1: which clock the timestamp is from (0: none).
pub(crate) const CLOCK_MASK: u8 = 0b11;
pub(crate) const CLOCK_UNIX: u8 = 1;
pub(crate) const CLOCK_UPTIME: u8 = 2;

/// Wire size of a frame whose body and CRC take `n` bytes, in the worst case
/// of stuffing: two delimiters, one COBS code byte, one more per 254 bytes.
pub const fn max_encoded_len(n: usize) -> usize {
    n + 3 + n / 254
}

/// Builds one frame in a caller-provided buffer, reading by reading.
///
/// ```
/// use weir_embedded::{FrameBuilder, Header, Timestamp, Value, MAX_ENCODED_LEN};
///
/// let mut buf = [0u8; MAX_ENCODED_LEN];
/// let header = Header { device_id: 7, sequence: 41, timestamp: Timestamp::UptimeMicros(1_500) };
/// let mut frame = FrameBuilder::new(&mut buf, &header)?;
/// frame.push(0, Value::F32(21.5))?;
/// frame.push(1, Value::Bool(true))?;
/// let len = frame.finish();
/// // uart.write(&buf[..len]);
/// assert_eq!((buf[0], buf[len - 1]), (0, 0));
/// # Ok::<(), weir_embedded::EncodeError>(())
/// ```
#[derive(Debug)]
pub struct FrameBuilder<'b> {
    buf: &'b mut [u8],
    /// Where the body starts: the gap reserved for stuffing in place.
    gap: usize,
    /// End of the body written so far.
    pos: usize,
    /// The body may not extend past this (room for the CRC and the trailing
    /// delimiter is kept behind it).
    body_limit: usize,
    /// Where the reading count sits, patched on every push.
    count_at: usize,
    count: u8,
}

impl<'b> FrameBuilder<'b> {
    /// Starts a frame in `buf` and writes its header.
    ///
    /// Fails with [`EncodeError::BufferTooSmall`] if not even an empty frame
    /// fits. Any buffer of [`MAX_ENCODED_LEN`](crate::MAX_ENCODED_LEN) bytes
    /// holds any frame the format allows.
    pub fn new(buf: &'b mut [u8], header: &Header) -> Result<Self, EncodeError> {
        let capacity = buf.len();
        let gap = gap_for(capacity);
        let limit = capacity.saturating_sub(1).min(gap + MAX_FRAME_LEN);
        let body_limit = limit.saturating_sub(CRC_LEN);

        let (flags, time) = match header.timestamp {
            Timestamp::None => (0, None),
            Timestamp::UnixMicros(t) => (CLOCK_UNIX, Some(t)),
            Timestamp::UptimeMicros(t) => (CLOCK_UPTIME, Some(t)),
        };
        let (region, _) = buf.split_at_mut(body_limit);
        let mut w = Writer::new(region, gap);
        w.byte(FORMAT_VERSION);
        w.byte(flags);
        w.varint(header.device_id);
        w.varint(u64::from(header.sequence));
        if let Some(t) = time {
            w.varint(t);
        }
        let count_at = w.pos;
        w.byte(0);
        let pos = w.pos;
        if !w.fits() || pos < gap {
            return Err(too_big(pos - gap, capacity));
        }
        Ok(Self {
            buf,
            gap,
            pos,
            body_limit,
            count_at,
            count: 0,
        })
    }

    /// Appends a reading.
    ///
    /// On error nothing is appended and the frame so far stays valid, so a
    /// firmware can fill a frame until [`EncodeError::BufferTooSmall`], send
    /// it, and carry the rejected reading over to the next one.
    pub fn push(&mut self, channel: u16, value: Value<'_>) -> Result<(), EncodeError> {
        if usize::from(self.count) >= MAX_READINGS {
            return Err(EncodeError::TooManyReadings);
        }
        let (region, _) = self.buf.split_at_mut(self.body_limit);
        let mut w = Writer::new(region, self.pos);
        write_reading(&mut w, channel, &value);
        if !w.fits() {
            return Err(too_big(w.pos - self.gap, self.buf.len()));
        }
        self.pos = w.pos;
        self.count += 1;
        if let Some(slot) = self.buf.get_mut(self.count_at) {
            *slot = self.count;
        }
        Ok(())
    }

    /// Appends a [`Reading`].
    pub fn push_reading(&mut self, reading: &Reading<'_>) -> Result<(), EncodeError> {
        self.push(reading.channel, reading.value)
    }

    /// Readings pushed so far.
    pub fn reading_count(&self) -> usize {
        usize::from(self.count)
    }

    /// Appends the CRC, stuffs the frame and returns its wire length: send
    /// `buf[..len]`, which starts and ends with the 0x00 delimiter.
    pub fn finish(self) -> usize {
        let crc = crc32c(self.buf.get(self.gap..self.pos).unwrap_or_default());
        let end = self.pos + CRC_LEN;
        if let Some(slot) = self.buf.get_mut(self.pos..end) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        // new() and push() keep `gap >= 2 + n / 254` and room for the trailing
        // delimiter, so stuffing cannot fail; 0 ("nothing to send") stands in
        // for a broken invariant rather than a panic inside a firmware.
        let Some(stuffed) = stuff_in_place(self.buf, self.gap, end - self.gap, 1) else {
            debug_assert!(false, "frame builder invariant broken");
            return 0;
        };
        let len = stuffed + 2;
        match self.buf.get_mut(..len) {
            Some([first, .., last]) => {
                *first = 0;
                *last = 0;
                len
            }
            _ => 0,
        }
    }
}

/// Encodes a whole frame into `buf` and returns its wire length.
pub fn encode(
    buf: &mut [u8],
    header: &Header,
    readings: &[Reading<'_>],
) -> Result<usize, EncodeError> {
    let mut frame = FrameBuilder::new(buf, header)?;
    for reading in readings {
        frame.push_reading(reading)?;
    }
    Ok(frame.finish())
}

/// The smallest gap that keeps in-place stuffing safe for any body that fits
/// a buffer of `capacity` bytes. Chosen as small as possible so that a buffer
/// of exactly [`max_encoded_len`] bytes holds its frame.
fn gap_for(capacity: usize) -> usize {
    let mut gap = 2;
    // At most 1 + MAX_FRAME_LEN / 254 rounds.
    while capacity.saturating_sub(gap + 1).min(MAX_FRAME_LEN) / 254 > gap - 2 {
        gap += 1;
    }
    gap
}

fn too_big(frame_len_without_crc: usize, capacity: usize) -> EncodeError {
    let n = frame_len_without_crc + CRC_LEN;
    if n > MAX_FRAME_LEN {
        EncodeError::FrameTooLong
    } else {
        EncodeError::BufferTooSmall {
            needed: max_encoded_len(n),
            capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_ENCODED_LEN;

    const HEADER: Header = Header {
        device_id: 1,
        sequence: 0,
        timestamp: Timestamp::None,
    };

    #[test]
    fn encodes_the_worked_example_of_the_format_doc() {
        let mut buf = [0u8; 64];
        let header = Header {
            device_id: 300,
            sequence: 7,
            timestamp: Timestamp::UnixMicros(1_700_000_000_000_000),
        };
        let len = encode(
            &mut buf,
            &header,
            &[
                Reading::new(1, Value::F32(21.5)),
                Reading::new(2, Value::I32(-3)),
                Reading::new(3, Value::Bool(true)),
            ],
        )
        .unwrap();
        // Worked out independently (docs/frame-format.md walks through it).
        let expected = [
            0x00, 0x11, 0x01, 0x01, 0xAC, 0x02, 0x07, 0x80, 0x80, 0xF9, 0xC0, 0xC1, 0xC4, 0x82,
            0x03, 0x03, 0x01, 0x07, 0x01, 0x0C, 0xAC, 0x41, 0x02, 0x05, 0x05, 0x03, 0x02, 0xC2,
            0x5A, 0xC4, 0x53, 0x00,
        ];
        assert_eq!(buf[..len], expected);
    }

    #[test]
    fn a_buffer_of_exactly_the_worst_case_size_is_enough() {
        // Bodies whose length sits just below a multiple of 254 are where a
        // gap sized from the buffer alone would come up one byte short.
        for len in 0..=(MAX_FRAME_LEN - 64) {
            let data = [0x55u8; MAX_FRAME_LEN];
            let probe_len = {
                let mut probe = [0u8; MAX_ENCODED_LEN];
                let mut b = FrameBuilder::new(&mut probe, &HEADER).unwrap();
                b.push(0, Value::Bytes(&data[..len])).unwrap();
                b.pos + CRC_LEN - b.gap
            };
            let mut buf = [0u8; MAX_ENCODED_LEN];
            let exact = max_encoded_len(probe_len);
            let mut b = FrameBuilder::new(&mut buf[..exact], &HEADER).unwrap();
            assert_eq!(
                b.push(0, Value::Bytes(&data[..len])),
                Ok(()),
                "body {probe_len}"
            );
            assert!(b.finish() <= exact);
            let mut small = [0u8; MAX_ENCODED_LEN];
            let mut b = FrameBuilder::new(&mut small[..exact - 1], &HEADER).unwrap();
            assert_eq!(
                b.push(0, Value::Bytes(&data[..len])),
                Err(EncodeError::BufferTooSmall {
                    needed: exact,
                    capacity: exact - 1
                })
            );
        }
    }

    #[test]
    fn a_rejected_reading_leaves_the_frame_intact() {
        let mut buf = [0u8; 24];
        let mut b = FrameBuilder::new(&mut buf, &HEADER).unwrap();
        b.push(0, Value::U32(1)).unwrap();
        assert!(matches!(
            b.push(1, Value::Str("far too long for this buffer")),
            Err(EncodeError::BufferTooSmall { .. })
        ));
        b.push(2, Value::Bool(false)).unwrap();
        assert_eq!(b.reading_count(), 2);
        let len = b.finish();
        let frame = crate::unframe(&mut buf[1..len - 1])
            .and_then(crate::decode)
            .unwrap();
        let channels: [u16; 2] = core::array::from_fn(|i| frame.readings().nth(i).unwrap().channel);
        assert_eq!(channels, [0, 2]);
    }

    #[test]
    fn refuses_the_256th_reading_and_oversize_frames() {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let mut b = FrameBuilder::new(&mut buf, &HEADER).unwrap();
        for _ in 0..MAX_READINGS {
            b.push(0, Value::Bool(true)).unwrap();
        }
        assert_eq!(
            b.push(0, Value::Bool(true)),
            Err(EncodeError::TooManyReadings)
        );

        let mut big = [0u8; 2 * MAX_ENCODED_LEN];
        let mut b = FrameBuilder::new(&mut big, &HEADER).unwrap();
        assert_eq!(
            b.push(0, Value::Bytes(&[1; MAX_FRAME_LEN])),
            Err(EncodeError::FrameTooLong)
        );
    }

    #[test]
    fn tiny_buffers_are_refused_not_overrun() {
        for cap in 0..12 {
            let mut buf = [0u8; 12];
            let r = FrameBuilder::new(&mut buf[..cap], &HEADER).map(FrameBuilder::finish);
            match r {
                Ok(len) => assert!(len <= cap),
                Err(EncodeError::BufferTooSmall { needed, capacity }) => assert!(needed > capacity),
                Err(e) => panic!("{e}"),
            }
        }
    }
}
