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
//! - Each append is a transaction: its event records and a commit record
//!   (carrying the source stream's new position) go out in one `write()`;
//!   recovery drops records after the last commit. An append never spans
//!   two segments, and every segment starts with a preamble listing every
//!   stream's position, so recovery reads only the last segment.
//! - An event whose mark says the spool already holds it (`streams.rs`) is
//!   skipped: a source re-reading after a crash, or a broker redelivering a
//!   message, adds nothing twice.
//! - `total_bytes` (all segment files, records and control records) never
//!   exceeds `max_bytes`, except by one append when nothing is left to
//!   acknowledge (so a record larger than the budget cannot block forever).
//! - The spool leaves [`MIN_FREE_BYTES`] free on its filesystem for the
//!   state database; less counts as a full disk.
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

use tracing::{info, warn};
use weir_core::codec;
use weir_core::lines::LineBatch;
use weir_core::Event;
use weir_plugins::{Mark, Stream, StreamKind};

use super::frame;
use super::streams::{encode_changes, Change, StreamStates};
use super::{ChannelMetrics, FsyncPolicy, WhenFull};

/// What a spool's records hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadForm {
    /// The record form a sink sends (JSON value): written once, sent as is.
    #[default]
    Records,
    /// Typed events (a stateful transform's input log needs the types back).
    Events,
}

/// Settings of one disk spool.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// What the records hold.
    pub form: PayloadForm,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub when_full: WhenFull,
    pub fsync: FsyncPolicy,
    /// Free space to leave on the filesystem (normally [`MIN_FREE_BYTES`]).
    pub min_free_bytes: u64,
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
    /// Events the spool already held (re-read by a source after a crash).
    pub skipped: usize,
}

/// The stream and marks of the events of one append (one mark per event),
/// and the keys the stream released. The spool commits what they change in
/// the same write as the events and skips events it already holds: this
/// is what makes a source's re-delivery after a crash (a file re-read from
/// an older checkpoint, a broker's redelivery) free of duplicates.
#[derive(Debug, Clone, Copy)]
pub struct StreamMarks<'a> {
    pub stream: &'a Stream,
    pub marks: &'a [Mark],
    pub releases: &'a [u64],
}

/// Free space the spool leaves on its filesystem. The state database (file
/// positions, sink journals) shares the disk and must always be writable:
/// a sink that cannot journal cannot send, acknowledge and free the spool,
/// so a spool that filled the disk to the last byte would never drain.
pub const MIN_FREE_BYTES: u64 = 1 << 20;

/// Bytes available to unprivileged writers on the filesystem holding `dir`.
fn available_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
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
    /// What this spool holds of each source stream (see `StreamMarks`).
    streams: StreamStates,
    file: Option<File>,
    first_id: u64,
    size: u64,
    next_id: u64,
    buf: Vec<u8>,
}

struct Shared {
    segments: VecDeque<SegMeta>,
    total_bytes: u64,
    acked: u64,
}

struct Reader {
    interner: codec::Interner,
    /// The last chunks read, reused when no record refers to them any more.
    spares: Vec<bytes::Bytes>,
    next_id: u64,
    seg_first: Option<u64>,
    file: Option<File>,
    pos: u64,
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
        // The tail segment is the only one a crash can leave unfinished. An
        // empty one (created, then the crash before its first write) is
        // removed so that the segment before it is recovered as the tail.
        let mut streams = StreamStates::default();
        let mut tail = None;
        while let Some((first_id, path)) = found.pop() {
            let (meta, pos) = recover_segment(dir, first_id, &path, &metrics)?;
            if meta.size == 0 && !found.is_empty() {
                let _ = fs::remove_file(&path);
                continue;
            }
            streams = pos;
            tail = Some(meta);
            break;
        }
        let mut segments = VecDeque::new();
        for (first_id, path) in found {
            let size = fs::metadata(&path).map_err(io_err(&path))?.len();
            segments.push_back(SegMeta {
                first_id,
                path,
                size,
                end_id: u64::MAX,
            });
        }
        segments.extend(tail);
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
        metrics.disk_bytes.set(total_bytes as i64);
        metrics.records.set(unacked as i64);
        seed_backlog(&metrics, &segments, acked);
        if unacked > 0 {
            info!(dir = %dir.display(), records = unacked, bytes = total_bytes, "Spool has unacknowledged records from a previous run; resuming.");
        }
        Ok(DiskSpool {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer {
                streams,
                file,
                first_id,
                size,
                next_id,
                buf: Vec::new(),
            }),
            shared: Mutex::new(Shared {
                segments,
                total_bytes,
                acked,
            }),
            reader: Mutex::new(Reader {
                interner: codec::Interner::default(),
                spares: Vec::new(),
                next_id: acked,
                seg_first: None,
                file: None,
                pos: 0,
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

    /// The ordered position this spool holds for a source stream.
    pub fn position(&self, stream: &str) -> Option<(u64, u32)> {
        lock(&self.writer).streams.position(stream)
    }

    /// The positions of the ordered streams whose names start with `prefix`.
    pub fn ordered_positions(&self, prefix: &str) -> Vec<(String, u64)> {
        lock(&self.writer).streams.ordered_with_prefix(prefix)
    }

    /// The keys this spool holds in flight for a keyed stream.
    pub fn keys(&self, stream: &str) -> Vec<u64> {
        lock(&self.writer).streams.keys(stream)
    }

    /// Appends as many events from the front of `events` as the policy allows,
    /// as one transaction: the event records and a commit record in a single
    /// write (and fsync under `batch`). Under `block`, `consumed < events.len()`
    /// means "full: wait for space and retry the rest".
    pub fn append(
        &self,
        events: &[Event],
        marks: Option<StreamMarks<'_>>,
    ) -> Result<Appended, SpoolError> {
        let form = self.opts.form;
        self.append_with(events.len(), marks, |i, out| match form {
            PayloadForm::Records => codec::encode_record(&events[i], out),
            PayloadForm::Events => codec::encode(&events[i], out),
        })
    }

    /// Like [`DiskSpool::append`], for lines `from..` of `lines` (the
    /// marks are those of the same lines). The record form is written
    /// straight from the lines' buffer; the typed form builds each event.
    pub fn append_lines(
        &self,
        lines: &LineBatch,
        from: usize,
        marks: Option<StreamMarks<'_>>,
    ) -> Result<Appended, SpoolError> {
        let n = lines.len().saturating_sub(from);
        match self.opts.form {
            PayloadForm::Records => {
                let records = lines.records();
                self.append_with(n, marks, |i, out| records.encode(from + i, out))
            }
            PayloadForm::Events => self.append_with(n, marks, |i, out| {
                codec::encode(&lines.event(from + i), out)
            }),
        }
    }

    /// The append transaction over `n` items, item `i` encoded by `encode`.
    fn append_with(
        &self,
        n: usize,
        marks: Option<StreamMarks<'_>>,
        mut encode: impl FnMut(usize, &mut Vec<u8>),
    ) -> Result<Appended, SpoolError> {
        let marks = marks.filter(|m| m.marks.len() == n);
        let mut w = lock(&self.writer);
        let mut out = Appended::default();
        let mut pending = marks.map(|m| w.streams.begin(m.stream, m.releases));
        let mut frames = std::mem::take(&mut w.buf);
        frames.clear();
        let mut id = w.next_id;
        // Room for the commit record and, if this append rolls, the preamble.
        // A keyed stream's commit grows with each event taken, so its room is
        // counted for the events taken so far (counting the whole batch up
        // front would refuse a large batch forever in a small spool).
        let preamble = Self::control_bytes(w.streams.encoded_full_len());
        let overhead = |taken_events: usize| {
            Self::control_bytes(marks.map_or(0, |m| {
                let taken = match m.stream.kind {
                    StreamKind::Ordered => 12,
                    StreamKind::Keyed => taken_events * 22,
                };
                m.stream.name.len() + 16 + m.releases.len() * 10 + taken
            })) + preamble
        };
        // Room known to be free: only this writer adds bytes (it holds the
        // writer lock) and acknowledgements only free more, so records that
        // fit in it need no look at the shared state each.
        let room = {
            let s = lock(&self.shared);
            self.opts.max_bytes.saturating_sub(s.total_bytes)
        };
        for i in 0..n {
            let overhead = overhead(out.consumed + 1);
            let mark = marks.map(|m| &m.marks[i]);
            if let (Some(p), Some(m)) = (&pending, mark) {
                if p.holds(m) {
                    out.consumed += 1;
                    out.skipped += 1;
                    continue;
                }
            }
            // Encoded straight into the frame buffer; taken back if it does not fit.
            let at = frame::open(&mut frames);
            encode(i, &mut frames);
            let need = (frames.len() - at) as u64;
            let first = (at == 0).then_some(id);
            let fits = at as u64 + need + overhead <= room;
            if !fits && !self.reserve(need + overhead, at as u64, first, &mut out) {
                frames.truncate(at);
                if self.opts.when_full == WhenFull::Block {
                    break;
                }
                out.consumed += 1;
                out.dropped_newest += 1;
            } else {
                frame::seal(&mut frames, at, id);
                id += 1;
                out.consumed += 1;
            }
            if let (Some(p), Some(m)) = (&mut pending, mark) {
                p.take(m);
            }
        }
        let change = pending.as_ref().and_then(|p| p.change());
        if frames.is_empty() && change.is_none() {
            w.buf = frames;
            return Ok(out);
        }
        let res = self.commit(&mut w, &mut frames, id, change);
        w.buf = frames;
        res?;
        let written = out.consumed - out.dropped_newest - out.skipped;
        self.metrics.events_in.add(written as u64);
        self.metrics.dropped_newest.add(out.dropped_newest as u64);
        Ok(out)
    }

    /// Bytes of a control record whose stream states take `body` bytes.
    fn control_bytes(body: usize) -> u64 {
        (frame::HEADER + 1 + body) as u64
    }

    /// Writes `frames` (events with ids up to `end_id`) and a commit record as one write.
    fn commit(
        &self,
        w: &mut Writer,
        frames: &mut Vec<u8>,
        end_id: u64,
        change: Option<(&str, Change)>,
    ) -> Result<(), SpoolError> {
        // Roll before writing, so that an append never spans two segments and
        // a segment's records after its last commit are exactly one torn append.
        // A segment that holds no event yet (only control records: a keyed
        // stream's releases) is not rolled: the next segment would have the
        // same first id, hence the same file name.
        let mut prefix = Vec::new();
        if w.file.is_none()
            || (w.size > 0
                && w.next_id > w.first_id
                && w.size + frames.len() as u64 > self.opts.segment_bytes)
        {
            self.roll(w)?;
        }
        if w.size == 0 && !w.streams.is_empty() {
            // A segment starts with every stream's state, so recovery
            // needs to read only the last segment. (Checked by size, not by
            // roll: a first write that failed for space is retried here.)
            let mut body = Vec::with_capacity(w.streams.encoded_full_len());
            w.streams.encode_full(&mut body);
            frame::put_control(&mut prefix, w.next_id, frame::kind::PREAMBLE, &body);
        }
        let mut body = Vec::new();
        encode_changes(&mut body, change.as_slice());
        frame::put_control(frames, end_id, frame::kind::COMMIT, &body);
        let need = (prefix.len() + frames.len()) as u64;
        if available_bytes(&self.dir).is_some_and(|free| free < need + self.opts.min_free_bytes) {
            return Err(SpoolError::NoSpace {
                path: self.dir.clone(),
            });
        }
        let path = seg_path(&self.dir, w.first_id);
        let Some(file) = w.file.as_mut() else {
            unreachable!("roll opened a segment")
        };
        let data: std::borrow::Cow<[u8]> = if prefix.is_empty() {
            std::borrow::Cow::Borrowed(frames.as_slice())
        } else {
            prefix.extend_from_slice(frames);
            std::borrow::Cow::Owned(prefix)
        };
        // One write: a crash of the process cannot split it. A partial write
        // (ENOSPC mid-way) is cut back so the segment ends on a commit.
        let res = file.write_all(&data).and_then(|_| {
            if self.opts.fsync == FsyncPolicy::Batch {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = res {
            let _ = file.set_len(w.size);
            return Err(io_err(&path)(e));
        }
        w.size += data.len() as u64;
        let added = end_id - w.next_id;
        w.next_id = end_id;
        if let Some((stream, c)) = &change {
            w.streams.apply(stream, c);
        }
        let mut s = lock(&self.shared);
        s.total_bytes += data.len() as u64;
        if let Some(last) = s.segments.back_mut() {
            last.size = w.size;
            last.end_id = end_id;
        }
        self.metrics.disk_bytes.set(s.total_bytes as i64);
        self.metrics.records.add(added as i64);
        self.metrics
            .appended(end_id - added, end_id, data.len() as u64);
        Ok(())
    }

    /// Checks that `need` more bytes (beyond `already` reserved in this call) fit,
    /// deleting oldest segments under `drop_oldest`.
    /// `first` is the id of the append's first record when `need` is for it.
    fn reserve(&self, need: u64, already: u64, first: Option<u64>, out: &mut Appended) -> bool {
        let mut s = lock(&self.shared);
        if s.total_bytes + already + need <= self.opts.max_bytes {
            return true;
        }
        if first.is_some_and(|id| s.acked >= id) {
            // Nothing is waiting for the sink, so no acknowledgement will ever
            // free space: take this record even past the bound (a record larger
            // than the budget, or an active segment of acknowledged records,
            // must not block the source forever). The append then rolls, and
            // the old segment goes at the next acknowledgement.
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
            self.metrics.released(s.acked);
            warn!(dir = %self.dir.display(), records = lost, "Spool full: dropped the oldest segment (when_full: drop_oldest).");
        }
        self.metrics.disk_bytes.set(s.total_bytes as i64);
        s.total_bytes + already + need <= self.opts.max_bytes
    }

    /// Seals the active segment (if any) and starts a new one at the next id.
    fn roll(&self, w: &mut Writer) -> Result<(), SpoolError> {
        if let Some(f) = w.file.take() {
            if self.opts.fsync != FsyncPolicy::None {
                f.sync_data()
                    .map_err(io_err(&seg_path(&self.dir, w.first_id)))?;
            }
        }
        let first_id = w.next_id;
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
        let mut s = lock(&self.shared);
        // Reopening after recovery may find the last segment empty and still listed.
        if s.segments.back().is_some_and(|l| l.first_id == first_id) {
            s.segments.pop_back();
        }
        s.segments.push_back(SegMeta {
            first_id,
            path,
            size: 0,
            end_id: first_id,
        });
        w.file = Some(f);
        w.first_id = first_id;
        w.size = 0;
        Ok(())
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
        self.metrics.released(end_id);
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
        self.metrics.disk_bytes.set(s.total_bytes as i64);
        Ok(freed)
    }
}

/// Seeds the backlog with the segments found at open: their records count
/// from when each segment was last written (the best a restart can know).
fn seed_backlog(metrics: &ChannelMetrics, segments: &VecDeque<SegMeta>, acked: u64) {
    let mut b = metrics.backlog.lock().unwrap_or_else(|p| p.into_inner());
    let now = super::backlog::now();
    for s in segments {
        let at = fs::metadata(&s.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(now, |d| d.as_secs_f64());
        b.added(s.first_id, s.end_id, s.size, at);
    }
    b.acked(acked);
}

#[cfg(test)]
mod lines_tests;
mod read;
mod recovery;
#[cfg(test)]
mod tests;

use recovery::{read_ack, recover_segment};
