//! One segment file of a partition: concatenated RecordBatch v2 batches,
//! exactly as Kafka lays out a log segment, named by its base offset
//! (`00000000000000001234.log`).
//!
//! Invariants:
//! - every batch in a segment passed `batch::verify` before it was written;
//! - batches are in offset order with no gaps: batch k+1's base offset is
//!   batch k's last offset + 1;
//! - `size` is the byte length of the valid prefix; bytes past it (a torn
//!   write) are truncated on open.
//!
//! The sparse offset and time indexes are kept in memory and rebuilt from the
//! batch headers on open: a header is 61 bytes, so a rebuild reads ~61 bytes
//! per batch, not the whole segment.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_core::batch::{self, BatchHeader, HEADER_LEN};

/// Bytes of log between two sparse index entries.
pub const INDEX_INTERVAL: u64 = 4096;

/// What an open found in a segment file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end because they did not form a valid batch.
    pub truncated_bytes: u64,
}

/// A segment with its in-memory indexes.
pub struct Segment {
    pub base_offset: i64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Bytes of valid batches.
    pub size: u64,
    /// One past the last offset in this segment (= base_offset when empty).
    pub next_offset: i64,
    /// Largest record timestamp in the segment (ms), -1 when empty.
    pub max_timestamp: i64,
    /// (first offset of a batch, byte position) every ~INDEX_INTERVAL bytes.
    index: Vec<(i64, u64)>,
    /// (max timestamp so far, first offset of the batch that raised it).
    time_index: Vec<(i64, i64)>,
    last_indexed_pos: Option<u64>,
}

/// File name of the segment with this base offset.
pub fn file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

impl Segment {
    /// Creates an empty segment.
    pub fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let path = dir.join(file_name(base_offset));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        file.set_len(0)?;
        Ok(Segment::empty(base_offset, path, file))
    }

    fn empty(base_offset: i64, path: PathBuf, file: File) -> Segment {
        Segment {
            base_offset,
            path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            index: Vec::new(),
            time_index: Vec::new(),
            last_indexed_pos: None,
        }
    }

    /// Opens a segment, scanning its batch headers to rebuild the indexes.
    ///
    /// With `verify_crc` (used for the last segment, the one a crash can tear)
    /// every batch's CRC is checked too. Scanning stops at the first batch
    /// that is incomplete, malformed, out of sequence or fails its CRC; the
    /// file is truncated there and the cut is reported.
    pub fn open(
        path: &Path,
        base_offset: i64,
        verify_crc: bool,
        mut each: impl FnMut(&BatchHeader),
    ) -> io::Result<(Segment, Recovery)> {
        let file = OpenOptions::new().read(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        let mut seg = Segment::empty(base_offset, path.to_path_buf(), file);
        let mut pos = 0u64;
        let mut head = [0u8; HEADER_LEN];
        let mut body = Vec::new();
        while pos + HEADER_LEN as u64 <= len {
            if seg.file.read_exact_at(&mut head, pos).is_err() {
                break;
            }
            let Ok(h) = BatchHeader::parse(&head) else {
                break;
            };
            let total = h.total_len() as u64;
            if pos + total > len || h.base_offset != seg.next_offset {
                break;
            }
            if verify_crc {
                body.resize(total as usize, 0);
                if seg.file.read_exact_at(&mut body, pos).is_err()
                    || batch::check_crc(&body).is_err()
                {
                    break;
                }
            }
            each(&h);
            seg.note_batch(&h, pos);
            pos += total;
        }
        let truncated_bytes = len - pos;
        if truncated_bytes > 0 {
            seg.file.set_len(pos)?;
            seg.file.sync_all()?;
        }
        Ok((seg, Recovery { truncated_bytes }))
    }

    fn note_batch(&mut self, h: &BatchHeader, pos: u64) {
        let due = self
            .last_indexed_pos
            .is_none_or(|last| pos >= last + INDEX_INTERVAL);
        if due {
            self.index.push((h.base_offset, pos));
            self.last_indexed_pos = Some(pos);
        }
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.time_index.push((h.max_timestamp, h.base_offset));
        }
        self.size = pos + h.total_len() as u64;
        self.next_offset = h.last_offset() + 1;
    }

    /// Appends a verified batch whose base offset has been set to `next_offset`.
    pub fn append(&mut self, bytes: &[u8], h: &BatchHeader) -> io::Result<()> {
        debug_assert_eq!(h.base_offset, self.next_offset);
        let pos = self.size;
        // `write_all` handles short writes; a failure mid-batch leaves a torn
        // tail that the next open truncates, and `size` is not advanced.
        let res = (&*self.file).write_all(bytes);
        if let Err(e) = res {
            // Cut back whatever part of the batch reached the file so the
            // next append starts at a batch boundary.
            let _ = self.file.set_len(pos);
            return Err(e);
        }
        self.note_batch(h, pos);
        Ok(())
    }

    /// Byte position from which to scan for `offset` (the greatest indexed batch at or before it).
    pub fn position_for(&self, offset: i64) -> u64 {
        match self.index.partition_point(|&(o, _)| o <= offset) {
            0 => 0,
            i => self.index[i - 1].1,
        }
    }

    /// First offset whose batch has a timestamp at or after `ts`, if any in this segment.
    pub fn offset_for_time(&self, ts: i64) -> Option<i64> {
        let i = self.time_index.partition_point(|&(t, _)| t < ts);
        self.time_index.get(i).map(|&(_, o)| o)
    }

    /// Reads whole batches starting with the one containing `offset`, up to
    /// `max_bytes` (at least one batch), stopping before any batch that
    /// reaches `end_offset` (the durable end: consumers never see a batch that
    /// a crash could still take back).
    pub fn read(&self, offset: i64, max_bytes: usize, end_offset: i64) -> io::Result<Vec<u8>> {
        let mut pos = self.position_for(offset);
        let mut head = [0u8; HEADER_LEN];
        let header_at =
            |pos: u64, head: &mut [u8; HEADER_LEN]| -> io::Result<Option<BatchHeader>> {
                if pos + HEADER_LEN as u64 > self.size {
                    return Ok(None);
                }
                self.file.read_exact_at(head, pos)?;
                let h = BatchHeader::parse(head)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Ok((h.last_offset() < end_offset).then_some(h))
            };
        // Skip batches that end before `offset`.
        while let Some(h) = header_at(pos, &mut head)? {
            if h.last_offset() >= offset {
                break;
            }
            pos += h.total_len() as u64;
        }
        let start = pos;
        let mut end = pos;
        while let Some(h) = header_at(end, &mut head)? {
            let next = end + h.total_len() as u64;
            if end > start && (next - start) as usize > max_bytes {
                break;
            }
            end = next;
        }
        let mut buf = vec![0u8; (end - start) as usize];
        self.file.read_exact_at(&mut buf, start)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::record::{encode_batch, Compression, ProducerStamp};
    use weir_core::{Event, Metadata};

    pub(crate) fn batch_at(offset: i64, n: usize, seq: i32) -> Vec<u8> {
        let events: Vec<Event> = (0..n)
            .map(|i| Event::from_message(format!("m{}", offset + i as i64), Metadata::default()))
            .collect();
        let stamp = ProducerStamp {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: seq,
        };
        let mut b = encode_batch(&events, stamp, Compression::None)
            .unwrap()
            .to_vec();
        batch::set_base_offset(&mut b, offset);
        b
    }

    fn append(seg: &mut Segment, b: &[u8]) {
        let h = batch::verify(b).unwrap();
        seg.append(b, &h).unwrap();
    }

    #[test]
    fn torn_tail_is_truncated_to_the_last_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0).unwrap();
        append(&mut seg, &batch_at(0, 5, 0));
        append(&mut seg, &batch_at(5, 5, 5));
        let good = seg.size;
        let torn = batch_at(10, 5, 10);
        (&*seg.file).write_all(&torn[..torn.len() / 2]).unwrap();
        drop(seg);
        let (seg, rec) = Segment::open(&dir.path().join(file_name(0)), 0, true, |_| {}).unwrap();
        assert_eq!(rec.truncated_bytes, (torn.len() / 2) as u64);
        assert_eq!(seg.size, good);
        assert_eq!(seg.next_offset, 10);
        assert_eq!(std::fs::metadata(&seg.path).unwrap().len(), good);
    }

    #[test]
    fn corrupt_last_batch_is_cut_by_crc() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0).unwrap();
        append(&mut seg, &batch_at(0, 3, 0));
        let mut bad = batch_at(3, 3, 3);
        let n = bad.len();
        bad[n - 3] ^= 0xff;
        (&*seg.file).write_all(&bad).unwrap();
        drop(seg);
        let (seg, rec) = Segment::open(&dir.path().join(file_name(0)), 0, true, |_| {}).unwrap();
        assert_eq!(rec.truncated_bytes, n as u64);
        assert_eq!(seg.next_offset, 3);
    }

    #[test]
    fn read_returns_whole_batches_from_the_one_holding_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 100).unwrap();
        for k in 0..50 {
            append(&mut seg, &batch_at(100 + k * 10, 10, (k * 10) as i32));
        }
        let bytes = seg.read(237, 1, seg.next_offset).unwrap();
        let h = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(h.base_offset, 230);
        assert_eq!(
            bytes.len(),
            h.total_len(),
            "max_bytes=1 still returns one batch"
        );
        let all = seg.read(100, usize::MAX, seg.next_offset).unwrap();
        assert_eq!(all.len() as u64, seg.size);
        assert_eq!(seg.offset_for_time(i64::MIN), Some(100));
    }
}
