//! One open file being followed.

use std::fs::File;
use std::io;
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
        let got = match read_at_end(&self.file, buf, n, self.offset) {
            Ok(g) => g,
            Err(e) => {
                buf.clear();
                return Err(e);
            }
        };
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

/// Reads up to `n` bytes at `offset` of `file` onto the end of `buf`
/// (which has room for them) and returns how many were read. The read goes
/// straight into the spare capacity: zeroing half a megabyte before every
/// read (what `resize` + `read_at` does) was about 1% of the agent's CPU.
fn read_at_end(file: &File, buf: &mut BytesMut, n: usize, offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    buf.reserve(n);
    let spare = buf.spare_capacity_mut();
    let n = n.min(spare.len());
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
    loop {
        // SAFETY: `spare` is writable memory of at least `n` bytes owned by
        // `buf`; pread writes at most `n` bytes into it and nothing else.
        let r = unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), n, offset) };
        if r >= 0 {
            let got = r as usize;
            // SAFETY: pread initialised the first `got` (≤ n) bytes of the
            // spare capacity.
            unsafe { buf.set_len(buf.len() + got) };
            return Ok(got);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn read_at_end_appends_the_bytes_at_the_offset_and_reads_nothing_past_the_end() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let mut buf = BytesMut::from(&b"ab"[..]);
        assert_eq!(read_at_end(&f, &mut buf, 4, 3).unwrap(), 4);
        assert_eq!(&buf[..], b"ab3456");
        assert_eq!(read_at_end(&f, &mut buf, 100, 8).unwrap(), 2);
        assert_eq!(&buf[..], b"ab345689");
        assert_eq!(read_at_end(&f, &mut buf, 100, 10).unwrap(), 0);
        assert_eq!(&buf[..], b"ab345689");
    }
}
