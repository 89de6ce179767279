//! One open file being followed.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::identity::{self, Fingerprint};
use bytes::BytesMut;

use super::reader::{Cuts, LineSplitter};

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes were read (lines may or may not be complete yet).
    Data(usize),
    /// Nothing new.
    Eof,
    /// The file was truncated or its start rewritten (copytruncate): reading
    /// restarts at 0 under a new stream key.
    Truncated,
}

/// A followed file.
pub struct Tailer {
    pub path: PathBuf,
    file: File,
    pub dev: u64,
    pub ino: u64,
    /// Stream name of this file instance in the channels; changes on truncation.
    pub key: Arc<str>,
    pub fp: Fingerprint,
    /// Bytes consumed from the file.
    pub offset: u64,
    /// Offset just past the last line handed to the channels: what a checkpoint records.
    pub committed: u64,
    splitter: LineSplitter,
    /// Found by the most recent glob evaluation.
    pub in_glob: bool,
    /// When reads last returned data (or the file was opened).
    pub last_data: std::time::Instant,
    /// Discovery order: older files are drained first, so a rotated file is
    /// finished before its successor is read.
    pub order: u64,
    /// Cut lines already counted and logged: kept with the tailer (not by
    /// stream key, which changes on truncation in place) so that each cut
    /// line is reported once.
    pub reported_truncated: u64,
}

impl Tailer {
    /// Follows an open file from `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: PathBuf,
        file: File,
        dev: u64,
        ino: u64,
        key: Arc<str>,
        fp: Fingerprint,
        offset: u64,
        splitter: LineSplitter,
        order: u64,
    ) -> Self {
        Tailer {
            path,
            file,
            dev,
            ino,
            key,
            fp,
            offset,
            committed: offset,
            splitter,
            in_glob: true,
            last_data: std::time::Instant::now(),
            order,
            reported_truncated: 0,
        }
    }

    /// Lines cut at the length limit so far.
    pub fn truncated_lines(&self) -> u64 {
        self.splitter.truncated
    }

    /// The last line when it has no newline (the file is finished), with
    /// the offset it ends at.
    pub fn take_partial_line(&mut self) -> Option<(Vec<u8>, u64)> {
        self.splitter.flush().map(|l| (l, self.offset))
    }

    /// Reads up to `max` bytes into `buf` (after the unfinished line carried
    /// from the last read), noting its complete lines in `out`. `buf` is
    /// cleared first and holds the chunk the cuts refer to.
    pub fn read(
        &mut self,
        buf: &mut BytesMut,
        max: usize,
        fp_bytes: u64,
        out: &mut Cuts,
    ) -> io::Result<ReadOutcome> {
        buf.clear();
        let size = self.file.metadata()?.len();
        if size < self.offset || !identity::starts_with(&self.file, self.fp)? {
            self.offset = 0;
            self.committed = 0;
            self.splitter.reset();
            self.fp = identity::fingerprint(&self.file, fp_bytes)?;
            return Ok(ReadOutcome::Truncated);
        }
        if self.fp.len < fp_bytes && size > self.fp.len {
            // The file has grown past a short fingerprint: widen it.
            self.fp = identity::fingerprint(&self.file, fp_bytes)?;
        }
        if size == self.offset {
            return Ok(ReadOutcome::Eof);
        }
        let n = ((size - self.offset) as usize).min(max);
        let carried = self.splitter.carried();
        // Reclaims the previous chunk's memory once nothing refers to it.
        buf.reserve(carried.len() + n);
        buf.extend_from_slice(carried);
        let at = buf.len();
        buf.resize(at + n, 0);
        let got = match self.file.read_at(&mut buf[at..], self.offset) {
            Ok(g) => g,
            Err(e) => {
                buf.clear();
                return Err(e);
            }
        };
        buf.truncate(at + got);
        if got == 0 {
            buf.clear();
            return Ok(ReadOutcome::Eof);
        }
        self.splitter.split(buf, self.offset, out);
        self.offset += got as u64;
        self.last_data = std::time::Instant::now();
        Ok(ReadOutcome::Data(got))
    }
}
