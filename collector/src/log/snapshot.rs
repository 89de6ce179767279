//! Producer-state snapshots, so start-up does not read every batch header
//! of the log to rebuild the dedup table.
//!
//! A snapshot `<offset>.snapshot` holds the state after every batch below
//! `offset`: for each producer, the batches it remembers (see
//! `producers.rs`). One is written when a segment is sealed (`offset` = the
//! new active segment's base); start-up loads the newest valid one and
//! replays only the headers after it. The two newest are kept. A missing or
//! damaged snapshot costs time, never correctness: the state is rebuilt from
//! an older snapshot or from the headers in the log.
//!
//! # Format (little-endian)
//! ```text
//! 0   magic     "WPRS"
//! 4   version   u32 = 1
//! 8   offset    i64
//! 16  count     u32   batches that follow
//! 20  reserved  u32 = 0
//! 24  count × 32 bytes: producer_id i64, base_offset i64, base_sequence i32,
//!     last_offset_delta i32, producer_epoch i16, reserved 6 bytes
//! end crc       u32   CRC-32C of everything before it
//! ```

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use weir_core::batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD};

use super::producers::Producers;

const MAGIC: &[u8; 4] = b"WPRS";
const ENTRY: usize = 32;

/// Path of the snapshot at `offset`.
pub fn path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

/// Encodes the state of `p` as of `offset`.
pub fn encode(p: &Producers, offset: i64) -> Vec<u8> {
    let headers = p.replay_headers();
    let mut b = Vec::with_capacity(28 + headers.len() * ENTRY);
    b.extend(MAGIC);
    b.extend(1u32.to_le_bytes());
    b.extend(offset.to_le_bytes());
    b.extend((headers.len() as u32).to_le_bytes());
    b.extend(0u32.to_le_bytes());
    for h in headers {
        b.extend(h.producer_id.to_le_bytes());
        b.extend(h.base_offset.to_le_bytes());
        b.extend(h.base_sequence.to_le_bytes());
        b.extend(h.last_offset_delta.to_le_bytes());
        b.extend(h.producer_epoch.to_le_bytes());
        b.extend([0u8; 6]);
    }
    let crc = crc32c::crc32c(&b);
    b.extend(crc.to_le_bytes());
    b
}

/// Writes a snapshot file and fsyncs it.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

/// Decodes a snapshot: its offset and the state; `None` if anything is wrong.
pub fn decode(b: &[u8]) -> Option<(i64, Producers)> {
    let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
    if crc32c::crc32c(body).to_le_bytes() != *crc || body.get(..4)? != MAGIC {
        return None;
    }
    let le8 = |at: usize| -> Option<i64> {
        Some(i64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
    };
    let le4 = |at: usize| -> Option<i32> {
        Some(i32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?))
    };
    if le4(4)? != 1 {
        return None;
    }
    let offset = le8(8)?;
    let count = le4(16)? as u32 as usize;
    if body.len() != 24 + count.checked_mul(ENTRY)? {
        return None;
    }
    let mut p = Producers::default();
    for i in 0..count {
        let at = 24 + i * ENTRY;
        let delta = le4(at + 20)?;
        if delta < 0 {
            return None;
        }
        p.record(&BatchHeader {
            base_offset: le8(at + 8)?,
            batch_length: (HEADER_LEN - LOG_OVERHEAD) as i32,
            attributes: 0,
            last_offset_delta: delta,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: le8(at)?,
            producer_epoch: i16::from_le_bytes(body.get(at + 24..at + 26)?.try_into().ok()?),
            base_sequence: le4(at + 16)?,
            record_count: delta.checked_add(1)?,
        });
    }
    Some((offset, p))
}

/// Snapshot files in `dir`, newest first: (offset, path).
pub fn list(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut v: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let o = p
                .file_name()?
                .to_str()?
                .strip_suffix(".snapshot")?
                .parse()
                .ok()?;
            Some((o, p))
        })
        .collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.0));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_damage_is_detected() {
        let mut p = Producers::default();
        for k in 0..5 {
            p.record(&BatchHeader {
                base_offset: k * 10,
                batch_length: 100,
                attributes: 0,
                last_offset_delta: 9,
                first_timestamp: 0,
                max_timestamp: 0,
                producer_id: 42,
                producer_epoch: 3,
                base_sequence: (k * 10) as i32,
                record_count: 10,
            });
        }
        let b = encode(&p, 50);
        let (offset, q) = decode(&b).unwrap();
        assert_eq!(offset, 50);
        assert_eq!(q.position(42), Some((3, 50)));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 4;
            assert!(decode(&bad).is_none(), "flip at {i}");
        }
        assert!(decode(&b[..b.len() - 3]).is_none());
    }
}
