//! Walking a segment file batch by batch, verifying each, and resynchronising
//! after damage.
//!
//! Batches in a segment are contiguous and their offsets dense, so at the
//! position right after a good batch the next batch must start, with the
//! next offset. A batch there that parses, fits in the file and passes its
//! CRC is good. Its base offset field lies outside the CRC: if only that
//! field is wrong, the batch is still ours, at this position, and is served
//! with the offset its position implies (`patched`).
//!
//! Anything else is damage. The scanner then looks, byte by byte, for the
//! next position where a batch with a plausible base offset (at or past the
//! expected one, below `end_hint`) parses, fits and passes its CRC; the bytes
//! in between are reported as one damaged region with the offsets it lost.
//! A CRC-32C match on garbage is a 1 in 2^32 event, and the offset range
//! check narrows it further.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use weir_core::batch::{self, BatchHeader, HEADER_LEN};

/// A damaged region of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte range in the file.
    pub pos: u64,
    pub end_pos: u64,
    /// First offset lost.
    pub first_offset: i64,
    /// Last offset lost, if known (the next good batch's base minus one, or
    /// the end hint minus one); `first_offset - 1` when no offset was lost.
    pub last_offset: Option<i64>,
    /// Why the batch at `pos` was refused.
    pub reason: String,
}

/// One step of a scan.
#[derive(Debug)]
pub enum Item {
    /// A good batch, its bytes (base offset patched if it was damaged).
    Batch {
        pos: u64,
        header: BatchHeader,
        bytes: Vec<u8>,
        patched: bool,
    },
    Damaged(Damage),
}

/// Scans a byte range of a segment file.
pub struct Scanner<'f> {
    file: &'f File,
    len: u64,
    pos: u64,
    expected: i64,
    end_hint: i64,
    max_batch: u64,
}

impl<'f> Scanner<'f> {
    /// Starts at `pos`, where a batch with base offset `expected` must begin,
    /// and stops at `len`. `end_hint` is one past the last offset this range
    /// can hold (`i64::MAX` if unknown); `max_batch` bounds any batch read.
    pub fn new(
        file: &'f File,
        pos: u64,
        len: u64,
        expected: i64,
        end_hint: i64,
        max_batch: u64,
    ) -> Self {
        Scanner {
            file,
            len,
            pos,
            expected,
            end_hint,
            max_batch,
        }
    }

    /// Position of the next step.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The offset the next batch must start with.
    pub fn expected(&self) -> i64 {
        self.expected
    }

    /// The next batch or damaged region; `None` at the end. I/O errors are returned as such.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        if self.pos >= self.len {
            return Ok(None);
        }
        match self.batch_at(self.pos, None)? {
            Ok((header, bytes, patched)) => {
                let pos = self.pos;
                self.pos += bytes.len() as u64;
                self.expected = header.last_offset() + 1;
                Ok(Some(Item::Batch {
                    pos,
                    header,
                    bytes,
                    patched,
                }))
            }
            Err(reason) => {
                let start = self.pos;
                let found = self.resync(start + 1)?;
                let (end_pos, last_offset) = match found {
                    Some((q, base)) => (q, Some(base - 1)),
                    None => (
                        self.len,
                        (self.end_hint != i64::MAX).then(|| self.end_hint - 1),
                    ),
                };
                let d = Damage {
                    pos: start,
                    end_pos,
                    first_offset: self.expected,
                    last_offset,
                    reason,
                };
                if let Some((_, base)) = found {
                    self.expected = base;
                }
                self.pos = end_pos;
                Ok(Some(Item::Damaged(d)))
            }
        }
    }

    /// The batch at `pos`: with `min_base` = None it must be the expected
    /// one (offset field patched if needed); with Some(o) (resync) its base
    /// offset must lie in [o, end_hint).
    #[allow(clippy::type_complexity)]
    fn batch_at(
        &self,
        pos: u64,
        min_base: Option<i64>,
    ) -> io::Result<Result<(BatchHeader, Vec<u8>, bool), String>> {
        if self.len - pos < HEADER_LEN as u64 {
            return Ok(Err(format!(
                "{} bytes left, less than a batch header",
                self.len - pos
            )));
        }
        let mut head = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut head, pos)?;
        let mut h = match BatchHeader::parse(&head) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let total = h.total_len() as u64;
        if total > self.len - pos {
            return Ok(Err(format!(
                "batch of {total} bytes runs past the end of the file"
            )));
        }
        if total > self.max_batch {
            return Ok(Err(format!(
                "batch length {total} is larger than any stored batch"
            )));
        }
        if let Some(o) = min_base {
            if h.base_offset < o || h.base_offset >= self.end_hint {
                return Ok(Err("offset out of range".into()));
            }
        }
        let mut bytes = vec![0u8; total as usize];
        self.file.read_exact_at(&mut bytes, pos)?;
        if let Err(e) = batch::check_crc(&bytes) {
            return Ok(Err(e.to_string()));
        }
        let mut patched = false;
        if min_base.is_none() && h.base_offset != self.expected {
            batch::set_base_offset(&mut bytes, self.expected);
            h.base_offset = self.expected;
            patched = true;
        }
        Ok(Ok((h, bytes, patched)))
    }

    /// The next position at or after `from` holding a good batch with a
    /// plausible offset: (position, base offset).
    fn resync(&self, from: u64) -> io::Result<Option<(u64, i64)>> {
        const CHUNK: usize = 1 << 20;
        let mut buf = vec![0u8; CHUNK];
        let mut at = from;
        while at + HEADER_LEN as u64 <= self.len {
            let n = (self.len - at).min(CHUNK as u64) as usize;
            self.file.read_exact_at(&mut buf[..n], at)?;
            let last = n.saturating_sub(HEADER_LEN);
            for i in 0..=last {
                // The magic byte is the cheapest filter.
                if buf[i + 16] != 2 {
                    continue;
                }
                let q = at + i as u64;
                if let Ok((h, _, _)) = self.batch_at(q, Some(self.expected))? {
                    return Ok(Some((q, h.base_offset)));
                }
            }
            at += last as u64 + 1;
        }
        Ok(None)
    }
}
