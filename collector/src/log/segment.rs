//! One segment file of a partition: concatenated RecordBatch v2 batches,
//! exactly as Kafka lays out a log segment, named by its base offset
//! (`00000000000000001234.log`), byte for byte what producers sent except
//! the base offset field, which the collector assigns.
//!
//! Invariants:
//! - every batch in a segment passed `decode::validate` before it was written;
//! - batches are contiguous and their offsets dense: batch k+1 starts where
//!   batch k ends, with base offset = batch k's last offset + 1 (damage
//!   excepted, which reads skip and report, see `scan.rs`);
//! - only the active (last) segment is written, by appending; a sealed
//!   segment never changes, except by retention deleting it whole.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_core::batch::{self, BatchHeader, HEADER_LEN};

use super::index::{IndexEntry, SegmentSummary, SparseIndex};
use super::scan::{Damage, Item, Scanner};

/// File name of the segment with this base offset.
pub fn file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

/// The segment being appended to, with its in-memory index.
pub struct Active {
    pub path: PathBuf,
    pub file: Arc<File>,
    pub index: SparseIndex,
}

impl Active {
    /// Creates an empty segment file at `base` (the caller makes the
    /// directory entry durable before acknowledging anything in it).
    pub fn create(dir: &Path, base: i64) -> io::Result<Active> {
        let path = dir.join(file_name(base));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        file.set_len(0)?;
        Ok(Active {
            path,
            file: Arc::new(file),
            index: SparseIndex::new(base),
        })
    }

    /// Opens an existing segment to append to, with the index recovery built.
    pub fn reopen(path: &Path, index: SparseIndex) -> io::Result<Active> {
        let file = OpenOptions::new().read(true).append(true).open(path)?;
        Ok(Active {
            path: path.to_path_buf(),
            file: Arc::new(file),
            index,
        })
    }

    /// One past the last offset.
    pub fn next_offset(&self) -> i64 {
        self.index.summary.next_offset
    }

    /// Bytes of batches.
    pub fn size(&self) -> u64 {
        self.index.summary.size
    }

    /// Appends a validated batch whose base offset has been set to `next_offset`.
    pub fn append(&mut self, bytes: &[u8], h: &BatchHeader, append_ms: i64) -> io::Result<()> {
        debug_assert_eq!(h.base_offset, self.next_offset());
        let pos = self.size();
        // `write_all` handles short writes; on failure the part of the batch
        // that reached the file is cut so the next append starts at a batch
        // boundary, and the index is not advanced.
        if let Err(e) = (&*self.file).write_all(bytes) {
            let _ = self.file.set_len(pos);
            return Err(e);
        }
        self.index.note(h, pos, append_ms);
        Ok(())
    }
}

/// What a read of one segment found.
#[derive(Debug, Default)]
pub struct ReadOut {
    /// Whole good batches, in order.
    pub bytes: Vec<u8>,
    /// Offset ranges (inclusive) lost to damage, within what was read.
    pub lost: Vec<(i64, i64)>,
    /// The offset to read next (unchanged if nothing was read).
    pub next: i64,
    /// Damage met on the way (for reporting once).
    pub damage: Vec<Damage>,
}

/// Reads from `offset` in a segment: whole batches up to `max_bytes` (at
/// least one), stopping before any batch that reaches `end_offset` (the
/// durable end). Every batch's CRC is checked; damage is skipped and
/// reported as a lost range, and the batches after it are still read.
///
/// The common case, a run of good batches in sequence, is read with one
/// `pread` into the answer's buffer and checked in place ([`bulk`]); the
/// batch-by-batch [`Scanner`] takes over at the first thing that is not one
/// (damage, a base offset to patch, a batch past what was read).
pub fn read(
    file: &File,
    summary: &SegmentSummary,
    start: Option<IndexEntry>,
    offset: i64,
    max_bytes: usize,
    end_offset: i64,
    max_batch: u64,
) -> io::Result<ReadOut> {
    let (pos, expected) = start.map_or((0, summary.base_offset), |e| (e.pos, e.offset));
    let mut out = ReadOut {
        next: offset,
        ..ReadOut::default()
    };
    let (pos, expected) = match skip_to(file, summary, pos, expected, offset, max_batch)? {
        Some((at, first)) => {
            let b = bulk(file, summary, at, first, max_bytes, end_offset, max_batch)?;
            out.bytes = b.bytes;
            out.next = b.next.unwrap_or(offset);
            if b.done {
                return Ok(out);
            }
            (b.pos, b.expected)
        }
        None => (pos, expected),
    };
    let mut sc = Scanner::new(
        file,
        pos,
        summary.size,
        expected,
        summary.next_offset,
        max_batch,
    );
    while let Some(item) = sc.next_item()? {
        match item {
            Item::Batch { header, bytes, .. } => {
                if header.last_offset() < offset {
                    continue;
                }
                if header.last_offset() >= end_offset {
                    break;
                }
                if !out.bytes.is_empty() && out.bytes.len() + bytes.len() > max_bytes {
                    break;
                }
                out.bytes.extend_from_slice(&bytes);
                out.next = header.last_offset() + 1;
            }
            Item::Damaged(d) => {
                let last = d
                    .last_offset
                    .unwrap_or(summary.next_offset - 1)
                    .min(end_offset - 1);
                let first = d.first_offset.max(offset);
                out.damage.push(d);
                if first <= last {
                    out.lost.push((first, last));
                    out.next = last + 1;
                }
                if last + 1 >= end_offset {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// From an index entry at `pos` (base offset `expected`), the position and
/// base offset of the batch holding `offset`, reading headers only; `None`
/// (the scanner starts at the entry instead) at anything unexpected.
fn skip_to(
    file: &File,
    summary: &SegmentSummary,
    mut pos: u64,
    mut expected: i64,
    offset: i64,
    max_batch: u64,
) -> io::Result<Option<(u64, i64)>> {
    let mut head = [0u8; HEADER_LEN];
    // Index entries are INDEX_INTERVAL bytes apart: a few headers at most.
    for _ in 0..64 {
        if summary.size.saturating_sub(pos) < HEADER_LEN as u64 {
            return Ok(None);
        }
        file.read_exact_at(&mut head, pos)?;
        let Ok(h) = BatchHeader::parse(&head) else {
            return Ok(None);
        };
        if h.base_offset != expected || h.total_len() as u64 > max_batch {
            return Ok(None);
        }
        if h.last_offset() >= offset {
            return Ok(Some((pos, expected)));
        }
        pos += h.total_len() as u64;
        expected = h.last_offset() + 1;
    }
    Ok(None)
}

/// What [`bulk`] read.
struct Bulk {
    /// Whole good batches, in order.
    bytes: Vec<u8>,
    /// The offset after the last batch kept, if one was.
    next: Option<i64>,
    /// The answer is complete: `max_bytes` or `end_offset` reached.
    done: bool,
    /// Where the scanner goes on otherwise, and the base offset expected there.
    pos: u64,
    expected: i64,
}

/// Reads up to `max_bytes` at `pos`, where the batch with base offset
/// `expected` starts, with one `pread`, and keeps the batches that follow in
/// sequence, each one's CRC checked in place, up to the first that is not a
/// good batch in sequence.
fn bulk(
    file: &File,
    summary: &SegmentSummary,
    pos: u64,
    expected: i64,
    max_bytes: usize,
    end_offset: i64,
    max_batch: u64,
) -> io::Result<Bulk> {
    let want = summary.size.saturating_sub(pos).min(max_bytes as u64) as usize;
    let mut buf = super::buffers::take(want);
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    let (mut at, mut expect, mut next, mut done) = (0usize, expected, None, false);
    while let Ok(h) = BatchHeader::parse(&buf[at..]) {
        let total = h.total_len();
        if h.base_offset != expect || total as u64 > max_batch {
            break;
        }
        if h.last_offset() >= end_offset {
            done = true;
            break;
        }
        if total > buf.len() - at {
            // Past what was read: past `max_bytes` (the answer is full
            // unless still empty), or past the file's end (the scanner says
            // what that is).
            done = at > 0 && at + total > max_bytes;
            break;
        }
        if batch::check_crc(&buf[at..at + total]).is_err() {
            break;
        }
        at += total;
        expect = h.last_offset() + 1;
        next = Some(expect);
    }
    done |= at >= max_bytes;
    buf.truncate(at);
    Ok(Bulk {
        bytes: buf,
        next,
        done,
        pos: pos + at as u64,
        expected: expect,
    })
}

/// Scans a whole segment, verifying every batch: its index (append times
/// set to `append_ms`, which recovery chooses so retention never deletes
/// early) and the damage found. `end_hint` is one past the last offset the
/// segment can hold, if known.
pub fn rebuild(
    file: &File,
    base: i64,
    len: u64,
    end_hint: i64,
    append_ms: i64,
    max_batch: u64,
    mut each: impl FnMut(&BatchHeader),
) -> io::Result<(SparseIndex, Vec<Damage>)> {
    let mut index = SparseIndex::new(base);
    let mut damage = Vec::new();
    let mut sc = Scanner::new(file, 0, len, base, end_hint, max_batch);
    while let Some(item) = sc.next_item()? {
        match item {
            Item::Batch { pos, header, .. } => {
                each(&header);
                index.note(&header, pos, append_ms);
            }
            Item::Damaged(d) => damage.push(d),
        }
    }
    Ok((index, damage))
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom};

    use weir_core::record::{encode_batch, Compression, ProducerStamp};
    use weir_core::{Event, Metadata};

    use super::*;

    const MAX_BATCH: u64 = 1 << 20;

    /// A segment of `n` batches of 3 records each; (file, summary, each batch's bytes).
    fn segment(n: usize) -> (tempfile::TempDir, File, SegmentSummary, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Active::create(dir.path(), 0).unwrap();
        let mut batches = Vec::new();
        for k in 0..n {
            let events: Vec<Event> = (0..3)
                .map(|i| Event::from_message(format!("b{k} r{i}"), Metadata::default()))
                .collect();
            let stamp = ProducerStamp {
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
            };
            let mut b = encode_batch(&events, stamp, Compression::None)
                .unwrap()
                .to_vec();
            batch::set_base_offset(&mut b, a.next_offset());
            let h = BatchHeader::parse(&b).unwrap();
            a.append(&b, &h, 0).unwrap();
            batches.push(b);
        }
        let file = File::open(&a.path).unwrap();
        (dir, file, a.index.summary, batches)
    }

    #[test]
    fn a_read_serves_whole_batches_from_the_one_holding_the_offset_up_to_max_bytes() {
        let (_d, file, summary, batches) = segment(10);
        let len = batches[0].len();
        // Offset 7 is inside batch 2 (offsets 6..8); room for two batches and a half.
        let out = read(&file, &summary, None, 7, len * 5 / 2, 30, MAX_BATCH).unwrap();
        assert_eq!(out.bytes, [batches[2].clone(), batches[3].clone()].concat());
        assert_eq!(out.next, 12);
        assert!(out.lost.is_empty());
        // Less room than one batch: still one whole batch.
        let out = read(&file, &summary, None, 0, 1, 30, MAX_BATCH).unwrap();
        assert_eq!(out.bytes, batches[0]);
        assert_eq!(out.next, 3);
        // Nothing at or past the durable end.
        let out = read(&file, &summary, None, 0, 1 << 20, 9, MAX_BATCH).unwrap();
        assert_eq!(out.bytes, batches[..3].concat());
        assert_eq!(out.next, 9);
    }

    #[test]
    fn a_damaged_batch_after_good_ones_is_reported_lost_and_the_batches_after_it_served() {
        let (_d, file, summary, batches) = segment(6);
        let len = batches[0].len() as u64;
        // Flip a byte inside batch 3's records (covered by its CRC).
        let mut f = OpenOptions::new().write(true).open(file_path(&_d)).unwrap();
        f.seek(SeekFrom::Start(3 * len + len - 2)).unwrap();
        f.write_all(b"#").unwrap();
        drop(f);
        let out = read(&file, &summary, None, 0, 1 << 20, 18, MAX_BATCH).unwrap();
        let good: Vec<u8> = batches
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != 3)
            .flat_map(|(_, b)| b.clone())
            .collect();
        assert_eq!(out.bytes, good);
        assert_eq!(out.lost, vec![(9, 11)]);
        assert_eq!(out.next, 18);
        assert_eq!(out.damage.len(), 1);
    }

    fn file_path(d: &tempfile::TempDir) -> PathBuf {
        d.path().join(file_name(0))
    }
}
