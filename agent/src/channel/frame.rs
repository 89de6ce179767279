//! Record framing of spool segments.
//!
//! ```text
//! 0   len   u32 LE   payload bytes; bit 31 set marks a control record
//! 4   crc   u32 LE   CRC-32C of bytes 8..16+len (id and payload)
//! 8   id    u64 LE   record id: dense, increasing within a spool
//! 16  payload        event record: weir_core::codec encoding of one event
//!                    control record: u8 kind, then the stream states
//!                    (`streams.rs`): kind 3 commit and 4 preamble;
//!                    kinds 1 and 2 are their version 1 forms, still read
//! ```
//!
//! A control record does not consume an id: it carries the id of the next
//! event. Every append ends with a commit record, so the records after the
//! last commit in a segment are an append that never completed.
//!
//! The id is inside the frame (and the CRC) so that a reader can resynchronise
//! after a damaged region, know exactly which ids were lost, and never take a
//! stale frame for a current one.

/// Bytes of frame header.
pub const HEADER: usize = 16;
/// Largest payload accepted; anything larger in a header is corruption.
pub const MAX_PAYLOAD: usize = 64 << 20;

const CONTROL: u32 = 1 << 31;

/// Appends one framed event record to `out`.
pub fn put(out: &mut Vec<u8>, id: u64, payload: &[u8]) {
    put_raw(out, id, payload, 0);
}

/// Starts an event record at the end of `out`: a header to be filled by
/// [`seal`] once the payload has been written after it (encoding straight
/// into the frame buffer saves a copy of every record). Returns where it starts.
pub fn open(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER]);
    at
}

/// Completes the event record started at `at` by [`open`] with id `id`:
/// the same bytes [`put`] writes for the payload that follows the header.
pub fn seal(out: &mut [u8], at: usize, id: u64) {
    let len = out.len() - at - HEADER;
    out[at + 8..at + HEADER].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&out[at + 8..]);
    out[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Control record kinds.
pub mod kind {
    /// Version 1 commit: `n × (name, u64 pos)`.
    pub const COMMIT_V1: u8 = 1;
    /// Version 1 preamble.
    pub const PREAMBLE_V1: u8 = 2;
    /// The end of an append, with the changes it made to its stream.
    pub const COMMIT: u8 = 3;
    /// The start of a segment, with every stream's state.
    pub const PREAMBLE: u8 = 4;
}

/// Appends a control record: `kind`, then `body` (stream states, see `streams.rs`).
pub fn put_control(out: &mut Vec<u8>, id: u64, kind: u8, body: &[u8]) {
    let mut payload = Vec::with_capacity(1 + body.len());
    payload.push(kind);
    payload.extend_from_slice(body);
    put_raw(out, id, &payload, CONTROL);
}

/// Decodes a control record's stream changes; `None` if malformed or of an unknown kind.
pub fn control_changes(payload: &[u8]) -> Option<Vec<(String, super::streams::Change)>> {
    let (&k, body) = payload.split_first()?;
    match k {
        kind::COMMIT_V1 | kind::PREAMBLE_V1 => super::streams::decode_v1(body),
        kind::COMMIT | kind::PREAMBLE => super::streams::decode_changes(body),
        _ => None,
    }
}

fn put_raw(out: &mut Vec<u8>, id: u64, payload: &[u8], flags: u32) {
    let idb = id.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&idb), payload);
    out.extend_from_slice(&(payload.len() as u32 | flags).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&idb);
    out.extend_from_slice(payload);
}

/// What lies at a position of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A valid record; `control` for commit and preamble records.
    Record {
        id: u64,
        payload: &'a [u8],
        len: usize,
        control: bool,
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
    let raw = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let control = raw & CONTROL != 0;
    let len = (raw & !CONTROL) as usize;
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
        control,
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
    fn a_record_sealed_in_place_is_the_record_put_writes() {
        let mut put_buf = b"before".to_vec();
        put(&mut put_buf, 7, b"payload \x00 bytes");
        let mut sealed = b"before".to_vec();
        let at = open(&mut sealed);
        sealed.extend_from_slice(b"payload \x00 bytes");
        seal(&mut sealed, at, 7);
        assert_eq!(sealed, put_buf);
    }

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
    fn control_records_round_trip_their_changes() {
        use crate::channel::streams::{encode_changes, Change};
        let mut body = Vec::new();
        let changes = [("src/a", Change::Ordered { pos: 10, sub: 0 })];
        encode_changes(&mut body, &changes);
        let mut buf = Vec::new();
        put_control(&mut buf, 9, kind::COMMIT, &body);
        match parse(&buf) {
            Parsed::Record {
                id: 9,
                control: true,
                payload,
                ..
            } => {
                assert_eq!(
                    control_changes(payload).unwrap(),
                    vec![("src/a".to_owned(), Change::Ordered { pos: 10, sub: 0 })]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_huge_length_is_corruption_not_an_allocation() {
        let mut buf = vec![0xff; 32];
        buf[..4].copy_from_slice(&(u32::MAX >> 1).to_le_bytes());
        assert_eq!(parse(&buf), Parsed::Corrupt);
    }
}
