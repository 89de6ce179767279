//! The per-segment index: where batches sit, and when they were appended.
//!
//! In memory for the active segment (built as batches are appended); in a
//! file `<base>.index` for each sealed segment, written once when the segment
//! is sealed. Start-up reads only each file's 72-byte header (a summary of the
//! segment), so it costs one small read per segment whatever the log holds;
//! the entries are loaded on the first read of the segment.
//!
//! # File format (little-endian)
//! ```text
//! 0   magic          "WIDX"
//! 4   version        u32 = 1
//! 8   base_offset    i64   first offset of the segment
//! 16  next_offset    i64   one past its last offset
//! 24  size           u64   bytes of the segment file
//! 32  last_batch_pos u64   position of its last batch (checked at start)
//! 40  max_append_ms  i64   newest collector append time (retention)
//! 48  max_timestamp  i64   newest producer timestamp (time queries)
//! 56  entry_count    u32
//! 60  entries_crc    u32   CRC-32C of the entries
//! 64  header_crc     u32   CRC-32C of bytes 0..64
//! 68  reserved       u32 = 0
//! 72  entries, 32 bytes each:
//!       offset i64 (base offset of a batch), position u64,
//!       max_append_ms i64, max_timestamp i64 (both over the batches from
//!       this entry's to the next entry's)
//! ```
//! An entry is kept for the first batch and then for the first batch at
//! least [`INDEX_INTERVAL`] bytes after the previous entry, so the index is
//! about 0.8 % of the log. A damaged or missing file is rebuilt by scanning
//! the segment (see `recovery.rs`); nothing in it is needed for durability.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use weir_core::batch::BatchHeader;

/// Bytes of log between two index entries.
pub const INDEX_INTERVAL: u64 = 4096;
/// Bytes of an index file header.
pub const HEADER_BYTES: usize = 72;
const ENTRY_BYTES: usize = 32;
const MAGIC: &[u8; 4] = b"WIDX";

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: i64,
    pub pos: u64,
    pub max_append_ms: i64,
    pub max_timestamp: i64,
}

/// What is known of a segment without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub last_batch_pos: u64,
    pub max_append_ms: i64,
    pub max_timestamp: i64,
}

impl SegmentSummary {
    /// An empty segment at `base`.
    pub fn empty(base: i64) -> Self {
        SegmentSummary {
            base_offset: base,
            next_offset: base,
            size: 0,
            last_batch_pos: 0,
            max_append_ms: i64::MIN,
            max_timestamp: i64::MIN,
        }
    }
}

/// The sparse index of one segment, with its summary.
#[derive(Debug, Clone)]
pub struct SparseIndex {
    pub summary: SegmentSummary,
    pub entries: Vec<IndexEntry>,
}

impl SparseIndex {
    /// An empty index for a segment at `base`.
    pub fn new(base: i64) -> Self {
        SparseIndex {
            summary: SegmentSummary::empty(base),
            entries: Vec::new(),
        }
    }

    /// Notes a batch written at `pos` (its base offset set) and appended at `append_ms`.
    pub fn note(&mut self, h: &BatchHeader, pos: u64, append_ms: i64) {
        let due = self
            .entries
            .last()
            .is_none_or(|e| pos >= e.pos + INDEX_INTERVAL);
        if due {
            self.entries.push(IndexEntry {
                offset: h.base_offset,
                pos,
                max_append_ms: append_ms,
                max_timestamp: h.max_timestamp,
            });
        } else if let Some(e) = self.entries.last_mut() {
            e.max_append_ms = e.max_append_ms.max(append_ms);
            e.max_timestamp = e.max_timestamp.max(h.max_timestamp);
        }
        let s = &mut self.summary;
        s.next_offset = h.last_offset() + 1;
        s.size = pos + h.total_len() as u64;
        s.last_batch_pos = pos;
        s.max_append_ms = s.max_append_ms.max(append_ms);
        s.max_timestamp = s.max_timestamp.max(h.max_timestamp);
    }

    /// The entry to start scanning from for `offset` (the last at or before it).
    pub fn entry_for(&self, offset: i64) -> Option<IndexEntry> {
        // Below the first entry (the segment's first batches were damaged,
        // so the index starts after them): none, so that a read scans from
        // the segment's start and reports the damage instead of skipping it.
        match self.entries.partition_point(|e| e.offset <= offset) {
            0 => None,
            i => self.entries.get(i - 1).copied(),
        }
    }

    /// First offset of the first entry holding a batch stamped at or after `ts`.
    pub fn offset_for_time(&self, ts: i64) -> Option<i64> {
        self.entries
            .iter()
            .find(|e| e.max_timestamp >= ts)
            .map(|e| e.offset)
    }

    /// The file bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut entries = Vec::with_capacity(self.entries.len() * ENTRY_BYTES);
        for e in &self.entries {
            entries.extend(e.offset.to_le_bytes());
            entries.extend(e.pos.to_le_bytes());
            entries.extend(e.max_append_ms.to_le_bytes());
            entries.extend(e.max_timestamp.to_le_bytes());
        }
        let s = &self.summary;
        let mut out = Vec::with_capacity(HEADER_BYTES + entries.len());
        out.extend(MAGIC);
        out.extend(1u32.to_le_bytes());
        out.extend(s.base_offset.to_le_bytes());
        out.extend(s.next_offset.to_le_bytes());
        out.extend(s.size.to_le_bytes());
        out.extend(s.last_batch_pos.to_le_bytes());
        out.extend(s.max_append_ms.to_le_bytes());
        out.extend(s.max_timestamp.to_le_bytes());
        out.extend((self.entries.len() as u32).to_le_bytes());
        out.extend(crc32c::crc32c(&entries).to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend(crc.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(entries);
        out
    }

    /// Writes the index file and fsyncs it.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(&self.encode())?;
        f.sync_data()
    }

    /// Parses a whole index file; `None` if anything is wrong with it.
    pub fn decode(bytes: &[u8]) -> Option<SparseIndex> {
        let (summary, count, crc) = decode_header(bytes)?;
        let body = bytes.get(HEADER_BYTES..)?;
        if body.len() != count.checked_mul(ENTRY_BYTES)? || crc32c::crc32c(body) != crc {
            return None;
        }
        let entries = body
            .chunks_exact(ENTRY_BYTES)
            .map(|c| IndexEntry {
                offset: i64_at(c, 0),
                pos: i64_at(c, 8) as u64,
                max_append_ms: i64_at(c, 16),
                max_timestamp: i64_at(c, 24),
            })
            .collect();
        Some(SparseIndex { summary, entries })
    }
}

/// Reads only the header of an index file: the segment's summary.
pub fn read_summary(path: &Path) -> Option<SegmentSummary> {
    use std::io::Read;
    let mut head = [0u8; HEADER_BYTES];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    decode_header(&head).map(|(s, _, _)| s)
}

/// Reads and checks a whole index file.
pub fn read(path: &Path) -> Option<SparseIndex> {
    SparseIndex::decode(&std::fs::read(path).ok()?)
}

fn decode_header(b: &[u8]) -> Option<(SegmentSummary, usize, u32)> {
    let h = b.get(..HEADER_BYTES)?;
    if &h[..4] != MAGIC || u32_at(h, 4) != 1 || crc32c::crc32c(&h[..64]) != u32_at(h, 64) {
        return None;
    }
    let s = SegmentSummary {
        base_offset: i64_at(h, 8),
        next_offset: i64_at(h, 16),
        size: i64_at(h, 24) as u64,
        last_batch_pos: i64_at(h, 32) as u64,
        max_append_ms: i64_at(h, 40),
        max_timestamp: i64_at(h, 48),
    };
    if s.next_offset < s.base_offset || s.last_batch_pos > s.size {
        return None;
    }
    Some((s, u32_at(h, 56) as usize, u32_at(h, 60)))
}

/// Path of the index file of the segment at `base` in `dir`.
pub fn path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(base: i64, count: i32, len: i32, ts: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: len,
            attributes: 0,
            last_offset_delta: count - 1,
            first_timestamp: ts,
            max_timestamp: ts,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: count,
        }
    }

    fn index() -> SparseIndex {
        let mut ix = SparseIndex::new(100);
        let mut pos = 0;
        for k in 0..100 {
            let b = h(100 + k * 10, 10, 988, 5_000 + k);
            ix.note(&b, pos, 9_000 + k);
            pos += 1000;
        }
        ix
    }

    #[test]
    fn entries_are_sparse_and_carry_the_newest_times_they_cover() {
        let ix = index();
        assert_eq!(ix.entries.len(), 20, "one entry per 4 KiB + a batch");
        assert_eq!(ix.summary.next_offset, 1100);
        assert_eq!(ix.summary.size, 100_000);
        assert_eq!(ix.summary.last_batch_pos, 99_000);
        assert_eq!(ix.summary.max_append_ms, 9_099);
        assert_eq!(ix.entries[0].max_append_ms, 9_004);
        assert_eq!(ix.entry_for(137).map(|e| e.offset), Some(100));
        assert_eq!(ix.entry_for(155).map(|e| e.offset), Some(150));
        assert_eq!(ix.offset_for_time(5_051), Some(600));
        assert_eq!(ix.offset_for_time(6_000), None);
    }

    #[test]
    fn the_file_round_trips_and_any_flipped_bit_is_detected() {
        let ix = index();
        let bytes = ix.encode();
        let back = SparseIndex::decode(&bytes).unwrap();
        assert_eq!(back.summary, ix.summary);
        assert_eq!(back.entries, ix.entries);
        for i in 0..bytes.len() {
            if (68..72).contains(&i) {
                continue; // reserved
            }
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(SparseIndex::decode(&bad).is_none(), "flip at {i} unnoticed");
        }
        assert!(SparseIndex::decode(&bytes[..bytes.len() - 1]).is_none());
    }
}
