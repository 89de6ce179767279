//! Record framing of spool segments.
//!
//! ```text
//! 0   len   u32 LE   payload bytes
//! 4   crc   u32 LE   CRC-32C of bytes 8..16+len (id and payload)
//! 8   id    u64 LE   record id: dense, increasing within a spool
//! 16  payload        weir_core::codec encoding of one event
//! ```
//!
//! The id is inside the frame (and the CRC) so that a reader can resynchronise
//! after a damaged region, know exactly which ids were lost, and never take a
//! stale frame for a current one.

/// Bytes of frame header.
pub const HEADER: usize = 16;
/// Largest payload accepted; anything larger in a header is corruption.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Appends one framed record to `out`.
pub fn put(out: &mut Vec<u8>, id: u64, payload: &[u8]) {
    let idb = id.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&idb), payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&idb);
    out.extend_from_slice(payload);
}

/// What lies at a position of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A valid record.
    Record {
        id: u64,
        payload: &'a [u8],
        len: usize,
    },
    /// Not enough bytes to tell (the end of the data so far).
    Incomplete,
    /// Bytes that are not a valid frame.
    Corrupt,
}

/// Parses the frame at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < HEADER {
        return Parsed::Incomplete;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Parsed::Corrupt;
    }
    if buf.len() < HEADER + len {
        return Parsed::Incomplete;
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[8..HEADER + len];
    if crc32c::crc32c(body) != crc {
        return Parsed::Corrupt;
    }
    let mut idb = [0u8; 8];
    idb.copy_from_slice(&buf[8..16]);
    Parsed::Record {
        id: u64::from_le_bytes(idb),
        payload: &buf[HEADER..HEADER + len],
        len: HEADER + len,
    }
}

/// Finds the next position after `from` where a valid frame with an id above
/// `after_id` starts. Used to salvage the records after a damaged region.
pub fn resync(buf: &[u8], from: usize, after_id: Option<u64>) -> Option<usize> {
    (from..buf.len().saturating_sub(HEADER - 1)).find(|&p| match parse(&buf[p..]) {
        Parsed::Record { id, .. } => after_id.is_none_or(|a| id > a),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_skips_a_damaged_frame_and_finds_the_next() {
        let mut buf = Vec::new();
        put(&mut buf, 1, b"first record");
        let second = buf.len();
        put(&mut buf, 2, b"second record");
        let third = buf.len();
        put(&mut buf, 3, b"third record");
        buf[second + 20] ^= 0x55;
        assert_eq!(parse(&buf[second..]), Parsed::Corrupt);
        assert_eq!(resync(&buf, second + 1, Some(1)), Some(third));
        assert!(matches!(parse(&buf[third..]), Parsed::Record { id: 3, .. }));
    }

    #[test]
    fn a_huge_length_is_corruption_not_an_allocation() {
        let mut buf = vec![0xff; 32];
        buf[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&buf), Parsed::Corrupt);
    }
}
