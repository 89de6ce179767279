//! Consistent Overhead Byte Stuffing: removes every 0x00 from a frame so that
//! 0x00 can delimit frames on the wire and a reader can resynchronise at the
//! next 0x00 after any damage.
//!
//! The stuffed form is a sequence of blocks. A block is a code byte `c`
//! (1..=255) followed by `c - 1` non-zero data bytes. A block with `c < 255`
//! stands for its data bytes followed by a 0x00, except that the zero after
//! the last block is dropped; a block with `c == 255` stands for its 254 data
//! bytes alone. The encoder closes a block at every zero and after 254 data
//! bytes, and always ends with a block (so an empty input stuffs to `01`).
//! Stuffing `n` bytes costs at most `1 + n / 254` extra bytes.

// Decoding runs on untrusted input: no indexing that could panic.
#![deny(clippy::indexing_slicing)]

use crate::DecodeError;

/// Largest stuffed size of `n` bytes.
pub const fn max_stuffed_len(n: usize) -> usize {
    n + 1 + n / 254
}

/// Stuffs `buf[src..src + len]` into `buf[dst..]`, in place, and returns the
/// stuffed length.
///
/// The output runs ahead of the input by at most `1 + i / 254` bytes at input
/// byte `i`, so the caller leaves that gap: `dst + 1 + len / 254 <= src`.
/// Every output byte is then written at or before the input byte being read,
/// never over an unread one. The builder reserves the gap at the front of the
/// caller's buffer, which is how it encodes without a second buffer.
///
/// Returns `None` (never panics) if the range or the gap is wrong.
pub(crate) fn stuff_in_place(buf: &mut [u8], src: usize, len: usize, dst: usize) -> Option<usize> {
    if dst.checked_add(1 + len / 254)? > src || src.checked_add(len)? > buf.len() {
        return None;
    }
    let mut code_at = dst;
    let mut out = dst + 1;
    let mut code: u8 = 1;
    for read in src..src + len {
        let byte = *buf.get(read)?;
        if byte == 0 {
            *buf.get_mut(code_at)? = code;
            code_at = out;
            out += 1;
            code = 1;
        } else {
            *buf.get_mut(out)? = byte;
            out += 1;
            code += 1;
            if code == 0xFF {
                *buf.get_mut(code_at)? = code;
                code_at = out;
                out += 1;
                code = 1;
            }
        }
    }
    *buf.get_mut(code_at)? = code;
    Some(out - dst)
}

/// Unstuffs `buf` (the bytes between two delimiters) in place and returns the
/// length of the original data at the start of `buf`.
///
/// Fails with [`DecodeError::BadCobs`] on a 0x00 inside the input or a block
/// whose code promises more bytes than remain. Output never overtakes input:
/// every block's code byte is consumed without output of its own and pays for
/// the implied zero, so the unstuffed prefix is never longer than what was
/// read.
pub(crate) fn unstuff_in_place(buf: &mut [u8]) -> Result<usize, DecodeError> {
    let mut read = 0;
    let mut write = 0;
    while let Some(&code) = buf.get(read) {
        read += 1;
        if code == 0 {
            return Err(DecodeError::BadCobs);
        }
        let end = read + usize::from(code) - 1;
        if end > buf.len() {
            return Err(DecodeError::BadCobs);
        }
        while read < end {
            let byte = buf.get(read).copied().ok_or(DecodeError::BadCobs)?;
            if byte == 0 {
                return Err(DecodeError::BadCobs);
            }
            *buf.get_mut(write).ok_or(DecodeError::BadCobs)? = byte;
            read += 1;
            write += 1;
        }
        if code != 0xFF && read < buf.len() {
            *buf.get_mut(write).ok_or(DecodeError::BadCobs)? = 0;
            write += 1;
        }
    }
    Ok(write)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn stuff(data: &[u8]) -> Vec<u8> {
        let gap = 1 + data.len() / 254;
        let mut buf = vec![0u8; gap + data.len() + 1];
        buf[gap..gap + data.len()].copy_from_slice(data);
        let n = stuff_in_place(&mut buf, gap, data.len(), 0).unwrap();
        buf.truncate(n);
        buf
    }

    fn unstuff(stuffed: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut buf = stuffed.to_vec();
        let n = unstuff_in_place(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    #[test]
    fn stuffs_the_textbook_examples() {
        assert_eq!(stuff(&[]), [0x01]);
        assert_eq!(stuff(&[0x00]), [0x01, 0x01]);
        assert_eq!(stuff(&[0x00, 0x00]), [0x01, 0x01, 0x01]);
        assert_eq!(
            stuff(&[0x11, 0x22, 0x00, 0x33]),
            [0x03, 0x11, 0x22, 0x02, 0x33]
        );
        assert_eq!(
            stuff(&[0x11, 0x00, 0x00, 0x00]),
            [0x02, 0x11, 0x01, 0x01, 0x01]
        );
    }

    #[test]
    fn closes_a_block_after_254_data_bytes() {
        let data: Vec<u8> = (1..=254).collect();
        let stuffed = stuff(&data);
        assert_eq!(stuffed.len(), 256);
        assert_eq!((stuffed[0], stuffed[255]), (0xFF, 0x01));
        let mut data255 = data.clone();
        data255.push(0xFF);
        assert_eq!(stuff(&data255)[255..], [0x02, 0xFF]);
        assert_eq!(unstuff(&stuffed).unwrap(), data);
        assert_eq!(unstuff(&stuff(&data255)).unwrap(), data255);
    }

    #[test]
    fn round_trips_every_short_pattern_of_zeros() {
        for mask in 0u32..(1 << 10) {
            let data: Vec<u8> = (0..10)
                .map(|i| if mask & (1 << i) != 0 { 0 } else { 7 })
                .collect();
            let stuffed = stuff(&data);
            assert!(!stuffed.contains(&0));
            assert!(stuffed.len() <= max_stuffed_len(data.len()));
            assert_eq!(unstuff(&stuffed).unwrap(), data);
        }
    }

    #[test]
    fn rejects_a_zero_or_a_short_block() {
        assert_eq!(unstuff(&[0x03, 0x11, 0x00]), Err(DecodeError::BadCobs));
        assert_eq!(unstuff(&[0x03, 0x11]), Err(DecodeError::BadCobs));
        assert_eq!(unstuff(&[0x00]), Err(DecodeError::BadCobs));
        assert_eq!(unstuff(&[]), Ok(Vec::new()));
    }

    #[test]
    fn refuses_a_gap_too_small_instead_of_corrupting() {
        let mut buf = [1u8; 8];
        assert_eq!(stuff_in_place(&mut buf, 0, 4, 0), None);
        assert_eq!(stuff_in_place(&mut buf, 1, 8, 0), None);
    }
}
