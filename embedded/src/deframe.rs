//! Cutting a byte stream (a serial port, a pipe) into frames.
//!
//! Bytes are collected up to the next 0x00 delimiter, then the chunk is
//! unstuffed and its CRC checked in place ([`unframe`]). A chunk that fails
//! is dropped whole and its bytes counted as garbage; the next delimiter
//! starts afresh, which is all that resynchronising takes with COBS. Empty
//! chunks (two delimiters in a row, as between back-to-back frames) are
//! normal and not counted.

#![deny(clippy::indexing_slicing)]

use crate::cobs::max_stuffed_len;
use crate::decode::unframe;
use crate::{DecodeError, MAX_FRAME_LEN};

/// The longest stuffed chunk a frame of the format can produce; a deframer
/// buffer of this size accepts every valid frame.
pub const MAX_STUFFED_LEN: usize = max_stuffed_len(MAX_FRAME_LEN);

/// A deframer with a buffer that holds any valid frame.
pub type DefaultDeframer = Deframer<[u8; MAX_STUFFED_LEN]>;

/// Streaming deframer over a fixed buffer: an array it owns
/// (`Deframer::new([0u8; 256])`, or [`DefaultDeframer`]) or a slice the
/// caller lends (`Deframer::new(&mut buf[..])`).
///
/// Frames whose stuffed form is longer than the buffer are dropped as
/// [`DecodeError::TooLong`], so a small device can bound what it accepts.
#[derive(Debug, Clone)]
pub struct Deframer<B> {
    buf: B,
    /// Stuffed bytes of the current chunk held in `buf`.
    len: usize,
    /// The current chunk outgrew the buffer: its bytes are being skipped
    /// (and counted here) until the next delimiter.
    overflowed: Option<usize>,
    garbage: u64,
}

impl<const N: usize> Default for Deframer<[u8; N]> {
    fn default() -> Self {
        Self::new([0u8; N])
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Deframer<B> {
    /// A deframer collecting chunks in `buf`.
    pub const fn new(buf: B) -> Self {
        Self {
            buf,
            len: 0,
            overflowed: None,
            garbage: 0,
        }
    }

    /// Consumes bytes from the front of `input` up to and including the
    /// delimiter that completes a chunk, and returns what the chunk was: a
    /// frame body (CRC checked and removed, ready for [`decode`](crate::decode))
    /// or the reason it was dropped. Returns `None` once `input` is used up;
    /// a partial chunk is kept for the next call, so bytes may arrive in any
    /// chunking.
    ///
    /// Call it in a loop until it returns `None`:
    ///
    /// ```
    /// # use weir_embedded::{decode, DefaultDeframer};
    /// # let mut deframer = DefaultDeframer::default();
    /// # let bytes_from_port: &[u8] = &[0x42, 0x00];
    /// let mut input = bytes_from_port;
    /// while let Some(chunk) = deframer.feed(&mut input) {
    ///     match chunk.and_then(decode) {
    ///         Ok(frame) => { /* use frame */ }
    ///         Err(error) => { /* count error.reason() */ }
    ///     }
    /// }
    /// assert_eq!(deframer.garbage_bytes(), 1);
    /// ```
    pub fn feed<'s>(&'s mut self, input: &mut &[u8]) -> Option<Result<&'s [u8], DecodeError>> {
        let end = loop {
            let (&byte, rest) = input.split_first()?;
            *input = rest;
            if byte == 0 {
                match self.end_chunk() {
                    Some(end) => break end,
                    None => continue,
                }
            }
            self.collect(byte);
        };
        Some(end.and_then(|len| self.buf.as_ref().get(..len).ok_or(DecodeError::Truncated)))
    }

    /// Bytes dropped so far in chunks that failed the link-layer checks
    /// (COBS, length, CRC), delimiters not included: how much noise the line
    /// carried. A frame that passes them but fails [`decode`](crate::decode)
    /// arrived intact and is the caller's to count; a gap in a device's
    /// sequence numbers says how many frames were lost.
    pub fn garbage_bytes(&self) -> u64 {
        self.garbage
    }

    /// Drops a partial chunk, e.g. when the port was reopened and what was
    /// collected belongs to a stream that is gone. Its bytes count as garbage.
    pub fn reset(&mut self) {
        let partial = self.overflowed.take().unwrap_or(self.len);
        self.garbage += partial as u64;
        self.len = 0;
    }

    /// Stores one non-delimiter byte, or starts skipping the chunk when it
    /// has outgrown the buffer.
    fn collect(&mut self, byte: u8) {
        if let Some(skipped) = &mut self.overflowed {
            *skipped += 1;
            return;
        }
        let capacity = self.buf.as_ref().len().min(MAX_STUFFED_LEN);
        match self.buf.as_mut().get_mut(self.len) {
            Some(slot) if self.len < capacity => {
                *slot = byte;
                self.len += 1;
            }
            _ => {
                self.overflowed = Some(self.len + 1);
                self.len = 0;
            }
        }
    }

    /// At a delimiter: `None` for an empty chunk, else the chunk's verdict,
    /// with the body's length on success. The length rather than a slice is
    /// returned so that `feed` can keep borrowing `self` in its loop.
    fn end_chunk(&mut self) -> Option<Result<usize, DecodeError>> {
        if let Some(skipped) = self.overflowed.take() {
            self.garbage += skipped as u64;
            let limit = self.buf.as_ref().len().min(MAX_STUFFED_LEN);
            return Some(Err(DecodeError::TooLong { limit }));
        }
        let len = core::mem::take(&mut self.len);
        if len == 0 {
            return None;
        }
        let Some(chunk) = self.buf.as_mut().get_mut(..len) else {
            return Some(Err(DecodeError::Truncated));
        };
        let verdict = unframe(chunk).map(<[u8]>::len);
        if verdict.is_err() {
            self.garbage += len as u64;
        }
        Some(verdict)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::{decode, encode, Header, Reading, Timestamp, Value};
    use std::vec::Vec;

    fn frame(seq: u32) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let header = Header {
            device_id: 9,
            sequence: seq,
            timestamp: Timestamp::None,
        };
        let len = encode(&mut buf, &header, &[Reading::new(1, Value::I64(-1))]).unwrap();
        buf[..len].to_vec()
    }

    /// Feeds `bytes` in pieces of `step` and returns the sequence numbers
    /// decoded and the errors met.
    fn run<B: AsRef<[u8]> + AsMut<[u8]>>(
        d: &mut Deframer<B>,
        bytes: &[u8],
        step: usize,
    ) -> (Vec<u32>, Vec<DecodeError>) {
        let (mut seqs, mut errors) = (Vec::new(), Vec::new());
        for piece in bytes.chunks(step) {
            let mut input = piece;
            while let Some(chunk) = d.feed(&mut input) {
                match chunk.and_then(decode) {
                    Ok(f) => seqs.push(f.header.sequence),
                    Err(e) => errors.push(e),
                }
            }
        }
        (seqs, errors)
    }

    #[test]
    fn yields_frames_whatever_the_chunking() {
        let stream: Vec<u8> = (0..5).flat_map(frame).collect();
        for step in 1..=stream.len() {
            let (seqs, errors) = run(&mut DefaultDeframer::default(), &stream, step);
            assert_eq!(
                (seqs, errors),
                ((0..5).collect(), Vec::new()),
                "step {step}"
            );
        }
    }

    #[test]
    fn skips_garbage_and_counts_it() {
        let mut stream = b"\x13\x37noise".to_vec();
        stream.extend(frame(1));
        stream.extend_from_slice(&[0xAA, 0xBB, 0x00, 0x00, 0xCC]);
        stream.extend(frame(2));
        let mut d = DefaultDeframer::default();
        let (seqs, errors) = run(&mut d, &stream, 3);
        assert_eq!(seqs, [1, 2]);
        assert_eq!(errors.len(), 3);
        assert_eq!(d.garbage_bytes(), 7 + 2 + 1);
    }

    #[test]
    fn drops_a_chunk_longer_than_its_buffer_and_recovers() {
        let mut stream = vec![0x07; 100];
        stream.extend(frame(3));
        let mut d = Deframer::new([0u8; 32]);
        let (seqs, errors) = run(&mut d, &stream, 7);
        assert_eq!(seqs, [3]);
        assert_eq!(errors, [DecodeError::TooLong { limit: 32 }]);
        assert_eq!(d.garbage_bytes(), 100);
    }

    #[test]
    fn works_over_a_borrowed_buffer_and_resets() {
        let mut storage = [0u8; 40];
        let mut d = Deframer::new(&mut storage[..]);
        let f = frame(4);
        let (seqs, _) = run(&mut d, &f[..5], 5);
        assert!(seqs.is_empty());
        d.reset();
        assert_eq!(d.garbage_bytes(), 4);
        let (seqs, errors) = run(&mut d, &f, 2);
        assert_eq!((seqs, errors), (vec![4], vec![]));
    }
}
