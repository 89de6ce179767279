//! The disk spool: a durable, bounded FIFO of events between sources and one sink.
//!
//! # On disk
//! ```text
//! <dir>/<first id, 20 digits>.spool   segments of framed records (frame.rs)
//! <dir>/ack                           u64 LE acked id (all ids below are acknowledged) + u32 LE CRC-32C
//! <dir>/quarantine/                   damaged segments, kept for inspection after salvage
//! ```
//!
//! # Invariants
//! - Ids are dense and increasing within a segment; between segments there may
//!   be a gap only where records were dropped (`drop_oldest`) or lost to damage.
//! - A reader sees a record only once it is *visible*: written and, under the
//!   `batch` fsync policy, fsynced. A source checkpoints only after `append`
//!   returns, so everything it checkpointed past is visible and durable.
//! - A segment is deleted only when every record in it is acknowledged, or by
//!   `drop_oldest` (counted).
//! - `total_bytes` (all segment files) never exceeds `max_bytes` except by one
//!   frame header when a single record is larger than the whole budget.
//!
//! # Recovery
//! On open the last segment (the only one a crash can tear) is scanned frame
//! by frame: a torn tail is truncated to the last good record and reported.
//! If a valid record follows a damaged region, the segment is rewritten with
//! every good record, the original is moved to `quarantine/`, and the lost ids
//! are counted. Sealed segments are checked as they are read, with the same
//! salvage. A damaged spool never stops the agent from starting.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tracing::{error, info, warn};
use weir_core::codec;
use weir_core::Event;

use super::frame::{self, Parsed};
use super::{ChannelMetrics, FsyncPolicy, WhenFull};

/// Settings of one disk spool.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub when_full: WhenFull,
    pub fsync: FsyncPolicy,
}

/// Errors of spool I/O.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The device is full; the caller backs off and retries.
    #[error("no space left on device writing {path}")]
    NoSpace { path: PathBuf },
    #[error("spool I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| {
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.raw_os_error() == Some(libc::EDQUOT)
        {
            SpoolError::NoSpace {
                path: path.to_path_buf(),
            }
        } else {
            SpoolError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Result of an append.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Events taken from the front of the input (written or dropped).
    pub consumed: usize,
    /// Of those, dropped under `drop_newest`.
    pub dropped_newest: usize,
    /// Unacknowledged records deleted under `drop_oldest`.
    pub dropped_oldest: u64,
}

#[derive(Debug, Clone)]
struct SegMeta {
    first_id: u64,
    path: PathBuf,
    /// Visible bytes.
    size: u64,
    /// One past the last visible id.
    end_id: u64,
}

struct Writer {
    file: Option<File>,
    first_id: u64,
    size: u64,
    next_id: u64,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

struct Shared {
    segments: VecDeque<SegMeta>,
    total_bytes: u64,
    acked: u64,
}

struct Reader {
    next_id: u64,
    seg_first: Option<u64>,
    file: Option<File>,
    pos: u64,
    buf: Vec<u8>,
}

/// A disk spool. All methods block on I/O: call them from `spawn_blocking`.
pub struct DiskSpool {
    dir: PathBuf,
    opts: DiskOptions,
    writer: Mutex<Writer>,
    shared: Mutex<Shared>,
    reader: Mutex<Reader>,
    ack_file: Mutex<File>,
    metrics: ChannelMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn seg_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.spool"))
}

impl DiskSpool {
    /// Opens or creates the spool in `dir`, recovering damage (never failing on it).
    pub fn open(
        dir: &Path,
        opts: DiskOptions,
        metrics: ChannelMetrics,
    ) -> Result<DiskSpool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let ack_path = dir.join("ack");
        let ack_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&ack_path)
            .map_err(io_err(&ack_path))?;
        let acked = read_ack(&ack_file);
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
            let p = entry.path();
            let id = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".spool"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                found.push((id, p));
            }
        }
        found.sort();
        let mut segments = VecDeque::new();
        let count = found.len();
        for (i, (first_id, path)) in found.into_iter().enumerate() {
            let meta = if i + 1 == count {
                recover_segment(dir, first_id, &path, &metrics)?
            } else {
                let size = fs::metadata(&path).map_err(io_err(&path))?.len();
                // Sealed: its end is the next segment's first id; fixed up below.
                SegMeta {
                    first_id,
                    path,
                    size,
                    end_id: u64::MAX,
                }
            };
            segments.push_back(meta);
        }
        for i in 0..segments.len().saturating_sub(1) {
            segments[i].end_id = segments[i + 1].first_id;
        }
        // Segments wholly acknowledged before a crash are deleted now.
        while segments.len() > 1 && segments[0].end_id <= acked {
            if let Some(s) = segments.pop_front() {
                let _ = fs::remove_file(&s.path);
            }
        }
        let next_id = segments.back().map_or(acked, |s| s.end_id.max(acked));
        let (file, first_id, size) = match segments.back() {
            Some(s) => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(&s.path)
                    .map_err(io_err(&s.path))?;
                (Some(f), s.first_id, s.size)
            }
            None => (None, next_id, 0),
        };
        let total_bytes = segments.iter().map(|s| s.size).sum();
        let unacked = next_id.saturating_sub(acked);
        metrics.bytes.set(total_bytes as i64);
        metrics.records.set(unacked as i64);
        if unacked > 0 {
            info!(dir = %dir.display(), records = unacked, bytes = total_bytes, "Spool has unacknowledged records from a previous run; resuming.");
        }
        Ok(DiskSpool {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer {
                file,
                first_id,
                size,
                next_id,
                buf: Vec::new(),
                scratch: Vec::new(),
            }),
            shared: Mutex::new(Shared {
                segments,
                total_bytes,
                acked,
            }),
            reader: Mutex::new(Reader {
                next_id: acked,
                seg_first: None,
                file: None,
                pos: 0,
                buf: Vec::new(),
            }),
            ack_file: Mutex::new(ack_file),
            opts,
            metrics,
        })
    }

    /// Bytes on disk.
    pub fn total_bytes(&self) -> u64 {
        lock(&self.shared).total_bytes
    }

    /// Appends as many events from the front of `events` as the policy allows.
    /// Under `block`, `consumed < events.len()` means "full: wait for space and retry the rest".
    pub fn append(&self, events: &[Event]) -> Result<Appended, SpoolError> {
        let mut w = lock(&self.writer);
        let mut out = Appended::default();
        let mut w_buf = std::mem::take(&mut w.buf);
        w_buf.clear();
        let mut id = w.next_id;
        let mut pending = 0u64;
        for e in events {
            w.scratch.clear();
            let mut scratch = std::mem::take(&mut w.scratch);
            codec::encode(e, &mut scratch);
            let need = (frame::HEADER + scratch.len()) as u64;
            // Roll when this record would overflow the segment.
            if w.size + pending + need > self.opts.segment_bytes && w.size + pending > 0 {
                if pending > 0 {
                    self.flush_pending(&mut w, &w_buf, id)?;
                    w_buf.clear();
                    pending = 0;
                }
                self.roll(&mut w)?;
            }
            if !self.reserve(need, pending, &mut out) {
                w.scratch = scratch;
                match self.opts.when_full {
                    WhenFull::Block => break,
                    WhenFull::DropNewest | WhenFull::DropOldest => {
                        out.consumed += 1;
                        out.dropped_newest += 1;
                        continue;
                    }
                }
            }
            frame::put(&mut w_buf, id, &scratch);
            w.scratch = scratch;
            id += 1;
            pending += need;
            out.consumed += 1;
        }
        if pending > 0 {
            self.flush_pending(&mut w, &w_buf, id)?;
        }
        w.buf = w_buf;
        let written = out.consumed - out.dropped_newest;
        self.metrics.events_in.add(written as u64);
        if out.dropped_newest > 0 {
            self.metrics.dropped_newest.add(out.dropped_newest as u64);
        }
        Ok(out)
    }

    /// Checks that `need` more bytes (beyond `already` reserved in this call) fit,
    /// deleting oldest segments under `drop_oldest`.
    fn reserve(&self, need: u64, already: u64, out: &mut Appended) -> bool {
        let mut s = lock(&self.shared);
        if s.total_bytes + already + need <= self.opts.max_bytes {
            return true;
        }
        if self.opts.when_full != WhenFull::DropOldest {
            return false;
        }
        while s.total_bytes + already + need > self.opts.max_bytes && s.segments.len() > 1 {
            let Some(old) = s.segments.pop_front() else {
                break;
            };
            let lost = old.end_id.saturating_sub(old.first_id.max(s.acked));
            s.acked = s.acked.max(old.end_id);
            s.total_bytes -= old.size;
            if let Err(e) = fs::remove_file(&old.path) {
                warn!(path = %old.path.display(), error = %e, "Failed to delete a dropped spool segment.");
            }
            out.dropped_oldest += lost;
            self.metrics.dropped_oldest.add(lost);
            self.metrics.records.add(-(lost as i64));
            warn!(dir = %self.dir.display(), records = lost, "Spool full: dropped the oldest segment (when_full: drop_oldest).");
        }
        self.metrics.bytes.set(s.total_bytes as i64);
        s.total_bytes + already + need <= self.opts.max_bytes
    }

    fn flush_pending(&self, w: &mut Writer, buf: &[u8], end_id: u64) -> Result<(), SpoolError> {
        if w.file.is_none() {
            let first = w.next_id;
            self.start_segment(w, first)?;
        }
        let path = seg_path(&self.dir, w.first_id);
        let Some(file) = w.file.as_mut() else {
            unreachable!("segment opened above")
        };
        if let Err(e) = file.write_all(buf) {
            // Cut a partial write back to the record boundary so the segment
            // stays well-formed; the caller retries (ENOSPC) or reports.
            let _ = file.set_len(w.size);
            return Err(io_err(&path)(e));
        }
        if self.opts.fsync == FsyncPolicy::Batch {
            if let Err(e) = file.sync_data() {
                let _ = file.set_len(w.size);
                return Err(io_err(&path)(e));
            }
        }
        w.size += buf.len() as u64;
        let added = end_id - w.next_id;
        w.next_id = end_id;
        let mut s = lock(&self.shared);
        s.total_bytes += buf.len() as u64;
        if let Some(last) = s.segments.back_mut() {
            last.size = w.size;
            last.end_id = end_id;
        }
        self.metrics.bytes.set(s.total_bytes as i64);
        self.metrics.records.add(added as i64);
        Ok(())
    }

    fn start_segment(&self, w: &mut Writer, first_id: u64) -> Result<(), SpoolError> {
        let path = seg_path(&self.dir, first_id);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if self.opts.fsync != FsyncPolicy::None {
            // Make the new file's directory entry durable too.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.dir))?;
        }
        w.file = Some(f);
        w.first_id = first_id;
        w.size = 0;
        lock(&self.shared).segments.push_back(SegMeta {
            first_id,
            path,
            size: 0,
            end_id: first_id,
        });
        Ok(())
    }

    fn roll(&self, w: &mut Writer) -> Result<(), SpoolError> {
        if let Some(f) = w.file.take() {
            if self.opts.fsync != FsyncPolicy::None {
                f.sync_data()
                    .map_err(io_err(&seg_path(&self.dir, w.first_id)))?;
            }
        }
        let next = w.next_id;
        self.start_segment(w, next)
    }

    /// Reads up to `max_events` visible records (and about `max_bytes`) after the last one read.
    pub fn read(
        &self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Event)>, SpoolError> {
        let mut r = lock(&self.reader);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // Bytes the next read must cover to hold one record larger than a chunk.
        let mut hint = 0usize;
        while out.len() < max_events && bytes < max_bytes {
            let (seg, sealed) = {
                let s = lock(&self.shared);
                if r.next_id < s.acked {
                    // drop_oldest removed records the reader had not reached.
                    r.next_id = s.acked;
                }
                match s.segments.iter().position(|m| m.end_id > r.next_id) {
                    Some(i) => (s.segments[i].clone(), i + 1 < s.segments.len()),
                    None => break,
                }
            };
            r.next_id = r.next_id.max(seg.first_id);
            if r.seg_first != Some(seg.first_id) {
                match File::open(&seg.path) {
                    Ok(f) => {
                        r.file = Some(f);
                        r.seg_first = Some(seg.first_id);
                        r.pos = 0;
                    }
                    // Deleted by drop_oldest between the snapshot and here: look again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&seg.path)(e)),
                }
            }
            if r.pos >= seg.size {
                if !sealed {
                    break;
                }
                // Whatever was not read of this sealed segment is gone.
                if r.next_id < seg.end_id {
                    self.count_lost(&seg, seg.end_id - r.next_id);
                    r.next_id = seg.end_id;
                }
                r.seg_first = None;
                continue;
            }
            let avail = (seg.size - r.pos) as usize;
            let want = avail.min(hint.max((max_bytes - bytes).clamp(1 << 16, 8 << 20)));
            let mut buf = std::mem::take(&mut r.buf);
            buf.resize(want, 0);
            if let Some(Err(e)) = r.file.as_ref().map(|f| f.read_exact_at(&mut buf, r.pos)) {
                r.buf = buf;
                return Err(io_err(&seg.path)(e));
            }
            let mut at = 0usize;
            let mut damaged = false;
            let grew = hint > 0;
            hint = 0;
            while at < buf.len() && out.len() < max_events && bytes < max_bytes {
                match frame::parse(&buf[at..]) {
                    Parsed::Record { id, payload, len } => {
                        at += len;
                        if id < r.next_id {
                            continue;
                        }
                        // A gap inside a segment was counted where it arose
                        // (salvage on open, or `salvage` below).
                        r.next_id = id + 1;
                        match codec::decode(payload) {
                            Ok(e) => {
                                bytes += len;
                                out.push((id, e));
                            }
                            Err(err) => {
                                self.metrics.corrupt.inc();
                                warn!(dir = %self.dir.display(), id, error = %err, "Spool record passed its CRC but does not decode; skipped.");
                            }
                        }
                    }
                    // Visible bytes always end on a record boundary, so a
                    // record cut by the chunk continues past it on disk.
                    Parsed::Incomplete if buf.len() < avail && !(at == 0 && grew) => {
                        if at == 0 {
                            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                            hint = frame::HEADER + len;
                        }
                        break;
                    }
                    _ => {
                        damaged = true;
                        break;
                    }
                }
            }
            r.pos += at as u64;
            r.buf = buf;
            if damaged {
                self.salvage(&mut r, &seg)?;
            }
        }
        Ok(out)
    }

    /// Moves the reader past damage at its position to the next valid record of the segment.
    fn salvage(&self, r: &mut Reader, seg: &SegMeta) -> Result<(), SpoolError> {
        let data = fs::read(&seg.path).map_err(io_err(&seg.path))?;
        let end = (seg.size as usize).min(data.len());
        let from = r.pos as usize;
        match frame::resync(&data[..end], from + 1, r.next_id.checked_sub(1)) {
            Some(p) => {
                error!(path = %seg.path.display(), at = from, resume = p, "Damaged spool record; skipping to the next valid one.");
                if let Parsed::Record { id, .. } = frame::parse(&data[p..end]) {
                    if id > r.next_id {
                        self.count_lost(seg, id - r.next_id);
                        r.next_id = id;
                    }
                }
                r.pos = p as u64;
            }
            None => {
                error!(path = %seg.path.display(), at = from, "Damaged spool segment; no valid record follows.");
                r.pos = seg.size;
            }
        }
        self.quarantine_copy(&seg.path);
        Ok(())
    }

    fn count_lost(&self, seg: &SegMeta, n: u64) {
        self.metrics.corrupt.add(n);
        self.metrics.records.add(-(n as i64));
        error!(path = %seg.path.display(), records = n, "Spool records lost to damage.");
    }

    fn quarantine_copy(&self, path: &Path) {
        let q = self.dir.join("quarantine");
        let _ = fs::create_dir_all(&q);
        if let Some(name) = path.file_name() {
            let _ = fs::copy(path, q.join(name));
        }
    }

    /// Fsyncs the active segment (the `interval` policy's tick).
    pub fn sync(&self) -> Result<(), SpoolError> {
        let w = lock(&self.writer);
        match &w.file {
            Some(f) => f
                .sync_data()
                .map_err(io_err(&seg_path(&self.dir, w.first_id))),
            None => Ok(()),
        }
    }

    /// Restarts reading at the first unacknowledged record.
    pub fn rewind(&self) {
        let acked = lock(&self.shared).acked;
        let mut r = lock(&self.reader);
        r.next_id = acked;
        r.seg_first = None;
    }

    /// Acknowledges every record below `end_id`: persists the cursor and
    /// deletes wholly acknowledged segments. Returns bytes freed.
    pub fn ack(&self, end_id: u64) -> Result<u64, SpoolError> {
        let mut s = lock(&self.shared);
        if end_id <= s.acked {
            return Ok(0);
        }
        let newly = end_id - s.acked;
        s.acked = end_id;
        {
            let f = lock(&self.ack_file);
            let mut rec = [0u8; 12];
            rec[..8].copy_from_slice(&end_id.to_le_bytes());
            let crc = crc32c::crc32c(&rec[..8]);
            rec[8..].copy_from_slice(&crc.to_le_bytes());
            let path = self.dir.join("ack");
            f.write_all_at(&rec, 0).map_err(io_err(&path))?;
            if self.opts.fsync != FsyncPolicy::None {
                f.sync_data().map_err(io_err(&path))?;
            }
        }
        self.metrics.records.add(-(newly as i64));
        self.metrics.events_out.add(newly);
        let mut freed = 0;
        while s.segments.len() > 1 && s.segments[0].end_id <= end_id {
            let Some(old) = s.segments.pop_front() else {
                break;
            };
            if let Err(e) = fs::remove_file(&old.path) {
                warn!(path = %old.path.display(), error = %e, "Failed to delete an acknowledged spool segment.");
            }
            freed += old.size;
            s.total_bytes -= old.size;
        }
        self.metrics.bytes.set(s.total_bytes as i64);
        Ok(freed)
    }
}

fn read_ack(f: &File) -> u64 {
    let mut rec = [0u8; 12];
    if f.read_exact_at(&mut rec, 0).is_err() {
        return 0;
    }
    let crc = u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]);
    if crc32c::crc32c(&rec[..8]) != crc {
        warn!("Spool ack cursor is damaged; replaying from the oldest retained record (the collector deduplicates).");
        return 0;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&rec[..8]);
    u64::from_le_bytes(b)
}

/// Scans the tail segment: truncates a torn tail, or salvages around damage.
fn recover_segment(
    dir: &Path,
    first_id: u64,
    path: &Path,
    metrics: &ChannelMetrics,
) -> Result<SegMeta, SpoolError> {
    let data = fs::read(path).map_err(io_err(path))?;
    let mut good: Vec<(usize, usize)> = Vec::new();
    let mut at = 0usize;
    let mut expect = first_id;
    let mut lost = 0u64;
    let mut damaged = false;
    while at < data.len() {
        match frame::parse(&data[at..]) {
            Parsed::Record { id, len, .. } if id >= expect => {
                lost += id - expect;
                good.push((at, len));
                expect = id + 1;
                at += len;
            }
            _ => match frame::resync(&data, at + 1, expect.checked_sub(1)) {
                Some(p) => {
                    damaged = true;
                    at = p;
                }
                None => break,
            },
        }
    }
    let valid_end = good.last().map_or(0, |&(a, l)| a + l);
    if damaged {
        // Records follow the damage: rewrite the good ones, keep the original aside.
        let q = dir.join("quarantine");
        fs::create_dir_all(&q).map_err(io_err(&q))?;
        let mut clean = Vec::with_capacity(data.len());
        for &(a, l) in &good {
            clean.extend_from_slice(&data[a..a + l]);
        }
        let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        fs::rename(path, q.join(&name)).map_err(io_err(path))?;
        let mut f = File::create(path).map_err(io_err(path))?;
        f.write_all(&clean)
            .and_then(|_| f.sync_all())
            .map_err(io_err(path))?;
        metrics.corrupt.add(lost.max(1));
        error!(path = %path.display(), salvaged = good.len(), lost, quarantined = %q.join(&name).display(),
            "Spool segment was damaged: salvaged its good records and quarantined the original.");
        return Ok(SegMeta {
            first_id,
            path: path.to_path_buf(),
            size: clean.len() as u64,
            end_id: expect,
        });
    }
    if valid_end < data.len() {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.set_len(valid_end as u64)
            .and_then(|_| f.sync_all())
            .map_err(io_err(path))?;
        warn!(path = %path.display(), bytes = data.len() - valid_end, records = good.len(),
            "Truncated a torn spool tail to the last good record.");
    }
    Ok(SegMeta {
        first_id,
        path: path.to_path_buf(),
        size: valid_end as u64,
        end_id: expect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Metadata;

    fn ev(i: u64) -> Event {
        Event::from_message(format!("line number {i}"), Metadata::default())
    }

    fn opts(max_bytes: u64, segment_bytes: u64, when_full: WhenFull) -> DiskOptions {
        DiskOptions {
            max_bytes,
            segment_bytes,
            when_full,
            fsync: FsyncPolicy::Batch,
        }
    }

    fn open(dir: &Path, o: DiskOptions) -> DiskSpool {
        DiskSpool::open(dir, o, ChannelMetrics::default()).unwrap()
    }

    fn messages(batch: &[(u64, Event)]) -> Vec<String> {
        batch
            .iter()
            .map(|(_, e)| e.message().unwrap().to_owned())
            .collect()
    }

    fn last_segment(dir: &Path) -> PathBuf {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "spool"))
            .collect();
        v.sort();
        v.pop().unwrap()
    }

    #[test]
    fn reopen_resumes_after_the_acknowledged_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), opts(1 << 20, 4096, WhenFull::Block));
        let evs: Vec<Event> = (0..100).map(ev).collect();
        assert_eq!(s.append(&evs).unwrap().consumed, 100);
        let b = s.read(30, usize::MAX).unwrap();
        assert_eq!(b.len(), 30);
        s.ack(b[29].0 + 1).unwrap();
        drop(s);
        let s = open(dir.path(), opts(1 << 20, 4096, WhenFull::Block));
        let rest = s.read(1000, usize::MAX).unwrap();
        assert_eq!(
            messages(&rest),
            (30..100)
                .map(|i| format!("line number {i}"))
                .collect::<Vec<_>>()
        );
        // New records continue the id sequence.
        s.append(&[ev(100)]).unwrap();
        assert_eq!(
            s.read(10, usize::MAX).unwrap()[0].0,
            rest.last().unwrap().0 + 1
        );
    }

    #[test]
    fn acknowledged_segments_are_deleted_and_space_freed() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), opts(1 << 20, 1024, WhenFull::Block));
        s.append(&(0..200).map(ev).collect::<Vec<_>>()).unwrap();
        let before = s.total_bytes();
        let b = s.read(1000, usize::MAX).unwrap();
        assert!(s.ack(b.last().unwrap().0 + 1).unwrap() > 0);
        assert!(s.total_bytes() < before);
        let segs = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "spool"))
            .count();
        assert_eq!(segs, 1, "only the active segment remains");
    }

    #[test]
    fn torn_tail_is_truncated_to_the_last_good_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), opts(1 << 20, 1 << 20, WhenFull::Block));
        s.append(&(0..10).map(ev).collect::<Vec<_>>()).unwrap();
        drop(s);
        let seg = last_segment(dir.path());
        let good_len = fs::metadata(&seg).unwrap().len();
        let mut torn = Vec::new();
        frame::put(&mut torn, 10, b"half a record that never finished");
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(f);
        let s = open(dir.path(), opts(1 << 20, 1 << 20, WhenFull::Block));
        assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
        assert_eq!(s.read(100, usize::MAX).unwrap().len(), 10);
        s.append(&[ev(10)]).unwrap();
        assert_eq!(s.read(100, usize::MAX).unwrap()[0].0, 10);
    }

    #[test]
    fn damaged_record_in_the_tail_is_quarantined_and_the_rest_salvaged() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), opts(1 << 20, 1 << 20, WhenFull::Block));
        s.append(&(0..10).map(ev).collect::<Vec<_>>()).unwrap();
        drop(s);
        let seg = last_segment(dir.path());
        let mut data = fs::read(&seg).unwrap();
        let rec = data.len() / 10;
        data[3 * rec + 20] ^= 0xff; // inside record 3's payload
        fs::write(&seg, &data).unwrap();
        let m = ChannelMetrics::default();
        let s = DiskSpool::open(
            dir.path(),
            opts(1 << 20, 1 << 20, WhenFull::Block),
            m.clone(),
        )
        .unwrap();
        let got = s.read(100, usize::MAX).unwrap();
        let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
        assert_eq!(m.corrupt.get(), 1);
        assert!(dir
            .path()
            .join("quarantine")
            .join(seg.file_name().unwrap())
            .exists());
    }

    #[test]
    fn reader_skips_a_damaged_record_in_a_sealed_segment_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = ChannelMetrics::default();
        let s =
            DiskSpool::open(dir.path(), opts(1 << 20, 2048, WhenFull::Block), m.clone()).unwrap();
        s.append(&(0..100).map(ev).collect::<Vec<_>>()).unwrap();
        let first = dir.path().join(format!("{:020}.spool", 0));
        let mut data = fs::read(&first).unwrap();
        data[frame::HEADER + 2] ^= 0xff; // payload of record 0
        fs::write(&first, &data).unwrap();
        let got = s.read(1000, usize::MAX).unwrap();
        assert_eq!(got.len(), 99);
        assert_eq!(got[0].0, 1);
        assert_eq!(m.corrupt.get(), 1);
    }

    #[test]
    fn block_policy_takes_only_what_fits() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), opts(4096, 1024, WhenFull::Block));
        let a = s.append(&(0..1000).map(ev).collect::<Vec<_>>()).unwrap();
        assert!(a.consumed > 0 && a.consumed < 1000);
        assert_eq!(a.dropped_newest, 0);
        assert!(s.total_bytes() <= 4096);
        assert_eq!(
            s.append(&[ev(0)]).unwrap().consumed,
            0,
            "full until acknowledged"
        );
    }

    #[test]
    fn drop_newest_counts_exactly_what_it_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let m = ChannelMetrics::default();
        let s = DiskSpool::open(
            dir.path(),
            opts(4096, 1024, WhenFull::DropNewest),
            m.clone(),
        )
        .unwrap();
        let a = s.append(&(0..1000).map(ev).collect::<Vec<_>>()).unwrap();
        assert_eq!(a.consumed, 1000);
        let kept = s.read(10_000, usize::MAX).unwrap().len();
        assert_eq!(kept + a.dropped_newest, 1000);
        assert_eq!(m.dropped_newest.get(), a.dropped_newest as u64);
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let m = ChannelMetrics::default();
        let s = DiskSpool::open(
            dir.path(),
            opts(4096, 1024, WhenFull::DropOldest),
            m.clone(),
        )
        .unwrap();
        s.append(&(0..1000).map(ev).collect::<Vec<_>>()).unwrap();
        let got = s.read(10_000, usize::MAX).unwrap();
        assert_eq!(got.last().unwrap().1.message(), Some("line number 999"));
        assert_eq!(got.len() as u64 + m.dropped_oldest.get(), 1000);
        assert!(s.total_bytes() <= 4096);
    }
}
