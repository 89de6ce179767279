//! One topic-partition: sealed segments, the active segment, the producer
//! table, and the durable end offset that acknowledgements and consumers
//! wait on.
//!
//! Durability: appends go to the page cache under the partition lock; the
//! per-partition sync task (see `store.rs`) then, in this order: fsyncs every
//! segment written since the last sync; writes the index and producer
//! snapshot of any segment sealed since (fsynced); fsyncs the partition
//! directory if a segment file was created (a new file's name is not durable
//! until its directory is); durably writes the checkpoint (`checkpoint.rs`)
//! with the new end; and only then publishes the new durable end. A producer
//! is acknowledged, and a consumer sees a batch, only once the durable end
//! has passed it. Batches arriving while one sync runs share the next one:
//! that is the group commit.
//!
//! The group commit is a two-stage pipeline: stage one
//! ([`Partition::sync_data`]: segments, seals, directory) ends with every
//! offset below its end on stable storage; stage two
//! ([`Partition::commit`]: checkpoint, then publish) records that end. The
//! sync task starts stage one of the next group while stage two of the
//! previous one runs, so under load the partition commits at the pace of
//! its data fsyncs instead of data plus checkpoint. Stage ones never
//! overlap each other; a stage two runs only after its own stage one, so
//! the rule recovery depends on is unchanged: **the durable checkpoint
//! never covers an offset whose data was not durable first**, and nothing
//! past the durable checkpoint was ever acknowledged. Data of the next group
//! reaching the disk before the previous group's checkpoint is the ordinary
//! state of an unacknowledged tail.
//!
//! Not done, and why: writing the checkpoint less often than once per
//! acknowledged group would let acknowledged batches sit past it, where a
//! flipped byte after a crash reads as a torn tail: cut, and its offsets
//! re-issued. Fsyncing the checkpoint of a group *concurrently* with that
//! group's data would let a power cut leave a checkpoint ahead of data that
//! never reached the disk: recovery would then report never-acknowledged
//! batches as lost and skip their offsets. A lone producer still waits for
//! both fsyncs in turn; the pipeline pays off when batches keep coming.
//!
//! Retention deletes whole sealed segments by the collector's own append
//! time, never by producer timestamps (a device stamped 1970 or 3000 neither
//! loses its data early nor pins everyone's). Append times are monotonic per
//! partition (`max(now, last)`), so a clock stepping backwards cannot make new
//! data look old.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};
use weir_core::batch;
use weir_core::decode::InvalidBatch;

use super::cache::{OpenSegment, SegmentCache};
use super::checkpoint::{Checkpoint, Mark};
use super::durable;
use super::index::{self, SegmentSummary, SparseIndex};
use super::producers::{Check, Producers};
use super::recovery::{self, Reporter};
use super::segment::{self, Active};
use super::snapshot;
use super::store::StoreMetrics;

/// Limits a partition works within.
#[derive(Debug, Clone)]
pub struct PartitionLimits {
    /// Roll to a new segment past this size.
    pub segment_bytes: u64,
    /// Delete oldest segments while the partition is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest batch was appended longer ago than this (ms).
    pub retention_ms: Option<i64>,
    /// When false (fsync policy `none`) appends count as durable at once.
    pub sync_before_ack: bool,
    /// Bounds every batch is validated against before it is appended.
    pub batch_limits: weir_core::decode::Limits,
}

impl PartitionLimits {
    /// Largest stored batch any scan will read: anything longer is damage.
    fn max_batch(&self) -> u64 {
        (self.batch_limits.max_decompressed_bytes as u64 * 2).max(64 << 20)
    }
}

/// What partitions of one store share.
#[derive(Clone)]
pub struct Shared {
    pub cache: Arc<SegmentCache>,
    pub metrics: StoreMetrics,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            cache: Arc::new(SegmentCache::new(64)),
            metrics: StoreMetrics::default(),
        }
    }
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The batch is malformed: header, CRC or records (resending it will not help).
    #[error("invalid batch: {0}")]
    Corrupt(#[from] InvalidBatch),
    #[error("out of order sequence from producer {producer_id}: got {got}, expected {expected}")]
    OutOfOrder {
        producer_id: i64,
        got: i32,
        expected: i32,
    },
    #[error("unknown producer {producer_id}: its first batch of an epoch must have sequence 0, got {got}")]
    UnknownProducer { producer_id: i64, got: i32 },
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    Fenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("storage error: {0}")]
    Storage(String),
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("offset {offset} out of range [{start}, {end}]")]
    OutOfRange { offset: i64, start: i64, end: i64 },
    #[error("storage error: {0}")]
    Storage(#[from] io::Error),
}

/// Where an accepted batch sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub duplicate: bool,
}

/// What a read returns.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Whole batches, byte for byte as stored (a damaged base offset field is served corrected).
    pub bytes: Vec<u8>,
    /// The offset to read next.
    pub next: i64,
    /// Inclusive offset ranges in [offset, next) lost to damage.
    pub lost: Vec<(i64, i64)>,
}

/// What the durable-end watch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// One past the last offset known to be on stable storage.
    pub end: i64,
    /// Set after an fsync failed: nothing more can be acknowledged until restart.
    pub failed: bool,
}

/// A sealed segment: only its summary is in memory; the file and index are
/// opened through the shared cache when read.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub summary: SegmentSummary,
    pub path: PathBuf,
}

/// Index and producer snapshot of a segment sealed since the last sync.
struct SealJob {
    index: SparseIndex,
    snapshot: Vec<u8>,
    snapshot_offset: i64,
}

struct Inner {
    sealed: Vec<Sealed>,
    active: Active,
    producers: Producers,
    /// Files written since the last sync (a just-sealed segment and the active one).
    unsynced: Vec<Arc<File>>,
    /// A segment file was created since the last sync.
    dir_dirty: bool,
    seal_jobs: Vec<SealJob>,
    failed: bool,
    /// Offset ranges no segment holds (a segment lost): reported to readers.
    gaps: Vec<(i64, i64)>,
    /// Newest append time given; append times never go below it.
    last_append_ms: i64,
    /// Damage already reported, by (segment base, byte position).
    reported: HashSet<(i64, u64)>,
}

/// A partition of a topic.
pub struct Partition {
    pub id: u32,
    dir: PathBuf,
    limits: PartitionLimits,
    shared: Shared,
    inner: Mutex<Inner>,
    checkpoint: Mutex<Checkpoint>,
    /// Serialises the data stage of syncs: two overlapping ones could take an
    /// end that the other has not fsynced yet.
    sync_lock: Mutex<()>,
    durable: watch::Sender<Durable>,
    /// Batches appended since open: moves at every append, for produces
    /// waiting for a batch that is to come before theirs.
    appends: watch::Sender<u64>,
    /// Signalled when there is something to sync.
    pub dirty: Notify,
}

/// The wall clock in milliseconds.
pub fn now_ms() -> i64 {
    weir_core::event::now_nanos() / 1_000_000
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave a half-written batch
    // accounted for (the index advances only after write_all), so the state
    // is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Partition {
    /// Opens (or creates) the partition in `dir`, recovering it (`recovery.rs`). Blocking.
    pub fn open(dir: &Path, id: u32, limits: PartitionLimits) -> io::Result<Partition> {
        Self::open_shared(dir, id, limits, Shared::default())
    }

    /// As [`Partition::open`], with the store's shared cache and metrics.
    pub fn open_shared(
        dir: &Path,
        id: u32,
        limits: PartitionLimits,
        shared: Shared,
    ) -> io::Result<Partition> {
        let r = recovery::recover(dir, &shared, limits.max_batch())?;
        let end = r.active.next_offset();
        let (durable, _) = watch::channel(Durable { end, failed: false });
        Ok(Partition {
            id,
            dir: dir.to_path_buf(),
            limits,
            shared,
            inner: Mutex::new(Inner {
                sealed: r.sealed,
                active: r.active,
                producers: r.producers,
                unsynced: Vec::new(),
                dir_dirty: false,
                seal_jobs: Vec::new(),
                failed: false,
                gaps: r.gaps,
                last_append_ms: r.last_append_ms,
                reported: r.reported,
            }),
            checkpoint: Mutex::new(r.checkpoint),
            sync_lock: Mutex::new(()),
            durable,
            appends: watch::Sender::new(0),
            dirty: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Validates and appends one batch, unless it is a duplicate. Blocking.
    pub fn append(&self, bytes: Vec<u8>) -> Result<Appended, AppendError> {
        let h = self.validate(&bytes)?;
        self.append_checked(self.lock(), bytes, h)
    }

    /// Checks every record of a batch (CRC, records, bounds) before anything
    /// is written: in the one append path every front-end uses, so no
    /// consumer is ever served a batch it cannot read. CPU only, no lock.
    pub fn validate(&self, bytes: &[u8]) -> Result<batch::BatchHeader, AppendError> {
        Ok(weir_core::decode::validate(
            bytes,
            &self.limits.batch_limits,
        )?)
    }

    /// Appends a batch [`Self::validate`] accepted (with header `h`) if the
    /// partition is free at once, without waiting for its lock: `Err` gives
    /// the batch back when another append holds it. What it does under the
    /// lock is the append itself (producer check, `write` into the page
    /// cache); nothing the client does can hold the lock.
    #[allow(clippy::result_large_err)]
    pub fn try_append_validated(
        &self,
        bytes: Vec<u8>,
        h: batch::BatchHeader,
    ) -> Result<Result<Appended, AppendError>, (Vec<u8>, batch::BatchHeader)> {
        let inner = match self.inner.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err((bytes, h)),
        };
        Ok(self.append_checked(inner, bytes, h))
    }

    /// Appends a batch [`Self::validate`] accepted (with header `h`). Blocking.
    pub fn append_validated(
        &self,
        bytes: Vec<u8>,
        h: batch::BatchHeader,
    ) -> Result<Appended, AppendError> {
        self.append_checked(self.lock(), bytes, h)
    }

    /// The append proper, under the partition lock (released before the
    /// sync task and waiters are woken).
    fn append_checked(
        &self,
        mut inner: MutexGuard<'_, Inner>,
        mut bytes: Vec<u8>,
        mut h: batch::BatchHeader,
    ) -> Result<Appended, AppendError> {
        if inner.failed {
            return Err(AppendError::Storage(
                "partition failed an fsync; restart the collector".into(),
            ));
        }
        match inner.producers.check(&h) {
            Check::Duplicate {
                base_offset,
                last_offset,
            } => {
                return Ok(Appended {
                    base_offset,
                    last_offset,
                    duplicate: true,
                })
            }
            Check::OutOfOrder { expected } => {
                return Err(AppendError::OutOfOrder {
                    producer_id: h.producer_id,
                    got: h.base_sequence,
                    expected,
                })
            }
            Check::Fenced { current_epoch } => {
                return Err(AppendError::Fenced {
                    producer_id: h.producer_id,
                    epoch: h.producer_epoch,
                    current: current_epoch,
                })
            }
            Check::UnknownProducer => {
                return Err(AppendError::UnknownProducer {
                    producer_id: h.producer_id,
                    got: h.base_sequence,
                })
            }
            Check::Append => {}
        }
        let next = inner.active.next_offset();
        h.base_offset = next;
        batch::set_base_offset(&mut bytes, next);
        let size = inner.active.size();
        if size > 0 && size + bytes.len() as u64 > self.limits.segment_bytes {
            self.roll(&mut inner, next)
                .map_err(|e| AppendError::Storage(e.to_string()))?;
        }
        let append_ms = now_ms().max(inner.last_append_ms);
        inner.last_append_ms = append_ms;
        inner
            .active
            .append(&bytes, &h, append_ms)
            .map_err(|e| AppendError::Storage(e.to_string()))?;
        let f = inner.active.file.clone();
        if !inner.unsynced.iter().any(|u| Arc::ptr_eq(u, &f)) {
            inner.unsynced.push(f);
        }
        inner.producers.record(&h);
        drop(inner);
        self.appends.send_modify(|n| *n += 1);
        if self.limits.sync_before_ack {
            self.dirty.notify_one();
        } else {
            self.durable
                .send_modify(|d| d.end = d.end.max(h.last_offset() + 1));
        }
        Ok(Appended {
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            duplicate: false,
        })
    }

    /// Whether the batch of header `h` waits for batches of its producer not
    /// appended yet (see [`Producers::waits_for_earlier`]).
    pub fn waits_for_earlier(&self, h: &batch::BatchHeader) -> bool {
        self.lock().producers.waits_for_earlier(h)
    }

    /// A watch that changes at every append.
    pub fn appends(&self) -> watch::Receiver<u64> {
        self.appends.subscribe()
    }

    /// Seals the active segment and starts a new one at `next`.
    fn roll(&self, inner: &mut Inner, next: i64) -> io::Result<()> {
        let new = Active::create(&self.dir, next)?;
        let old = std::mem::replace(&mut inner.active, new);
        if !inner.unsynced.iter().any(|u| Arc::ptr_eq(u, &old.file)) {
            inner.unsynced.push(old.file.clone());
        }
        inner.seal_jobs.push(SealJob {
            snapshot: snapshot::encode(&inner.producers, next),
            snapshot_offset: next,
            index: old.index.clone(),
        });
        inner.sealed.push(Sealed {
            summary: old.index.summary,
            path: old.path,
        });
        inner.dir_dirty = true;
        if !self.limits.sync_before_ack {
            // No sync task runs under fsync `none`: write the seal's files now.
            drop(self.finish_seals(std::mem::take(&mut inner.seal_jobs)));
        }
        Ok(())
    }

    /// Writes sealed segments' indexes and snapshots (fsynced), and prunes old snapshots.
    fn finish_seals(&self, jobs: Vec<SealJob>) -> io::Result<()> {
        for job in &jobs {
            let p = index::path(&self.dir, job.index.summary.base_offset);
            if let Err(e) = job.index.write(&p) {
                warn!(path = %p.display(), error = %e, "Failed to write a segment index; it will be rebuilt on the next start.");
            }
            let sp = snapshot::path(&self.dir, job.snapshot_offset);
            if let Err(e) = snapshot::write(&sp, &job.snapshot) {
                warn!(path = %sp.display(), error = %e, "Failed to write a producer snapshot; the next start replays more headers.");
            }
        }
        if !jobs.is_empty() {
            for (_, old) in snapshot::list(&self.dir).into_iter().skip(2) {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(())
    }

    fn fail(&self, what: &str, e: &io::Error) {
        // After a failed fsync the page cache may have dropped the dirty
        // pages; retrying could report success for lost data (the PostgreSQL
        // "fsyncgate" lesson), so stop acknowledging.
        self.lock().failed = true;
        self.durable.send_modify(|d| d.failed = true);
        error!(dir = %self.dir.display(), error = %e, what, "Fsync failed; refusing further writes to this partition until restart.");
    }

    /// Makes everything appended so far durable (see the module docs for the
    /// order) and publishes the new durable end. Blocking.
    pub fn sync(&self) -> io::Result<()> {
        let mark = self.sync_data()?;
        self.commit(mark)
    }

    /// Stage one of a sync: fsyncs the segments written since the last one,
    /// writes the indexes and snapshots of segments sealed since, and fsyncs
    /// the directory if a file was created. Returns the mark that stage two
    /// ([`Partition::commit`]) records: every offset below its end is now on
    /// stable storage. Blocking.
    pub fn sync_data(&self) -> io::Result<Mark> {
        let _one = lock(&self.sync_lock);
        let (files, dir_dirty, jobs, end, append_ms) = {
            let mut inner = self.lock();
            (
                std::mem::take(&mut inner.unsynced),
                std::mem::take(&mut inner.dir_dirty),
                std::mem::take(&mut inner.seal_jobs),
                inner.active.next_offset(),
                inner.last_append_ms,
            )
        };
        for f in &files {
            if let Err(e) = f.sync_data() {
                self.fail("segment", &e);
                return Err(e);
            }
        }
        let had_jobs = !jobs.is_empty();
        self.finish_seals(jobs)?;
        if dir_dirty || had_jobs {
            if let Err(e) = durable::sync_dir(&self.dir) {
                self.fail("directory", &e);
                return Err(e);
            }
        }
        Ok(Mark {
            end_offset: end,
            max_append_ms: append_ms,
        })
    }

    /// Stage two of a sync: durably writes the checkpoint for `mark` (from
    /// [`Partition::sync_data`], whose data is therefore already durable)
    /// and then publishes its end: producers are acknowledged and consumers
    /// served up to it. It may run while the next stage one fsyncs newer
    /// data: the checkpoint never goes backwards, and it never covers an
    /// offset whose data is not durable. Blocking.
    pub fn commit(&self, mark: Mark) -> io::Result<()> {
        match lock(&self.checkpoint).write(mark) {
            Ok(true) => durable::sync_dir(&self.dir).inspect_err(|e| self.fail("directory", e))?,
            Ok(false) => {}
            Err(e) => {
                self.fail("checkpoint", &e);
                return Err(e);
            }
        }
        self.durable
            .send_modify(|d| d.end = d.end.max(mark.end_offset));
        Ok(())
    }

    /// At a clean stop: makes everything durable, then writes the active
    /// segment's index and a producer snapshot at its end, so the next start
    /// scans only what is appended after this (nothing, if none). Blocking.
    pub fn close(&self) -> io::Result<()> {
        let (ix, snap) = {
            let inner = self.lock();
            let end = inner.active.next_offset();
            (
                inner.active.index.clone(),
                snapshot::encode(&inner.producers, end),
            )
        };
        // Everything the captured index covers is made durable first.
        self.sync()?;
        if ix.summary.size == 0 {
            return Ok(());
        }
        let _one = lock(&self.sync_lock);
        ix.write(&index::path(&self.dir, ix.summary.base_offset))?;
        snapshot::write(&snapshot::path(&self.dir, ix.summary.next_offset), &snap)?;
        for (_, old) in snapshot::list(&self.dir).into_iter().skip(2) {
            let _ = std::fs::remove_file(old);
        }
        durable::sync_dir(&self.dir)
    }

    /// A receiver for the durable end.
    pub fn durable(&self) -> watch::Receiver<Durable> {
        self.durable.subscribe()
    }

    fn start_of(inner: &Inner) -> i64 {
        inner
            .sealed
            .first()
            .map_or(inner.active.index.summary.base_offset, |s| {
                s.summary.base_offset
            })
    }

    /// First retained offset and durable end.
    pub fn bounds(&self) -> (i64, i64) {
        let start = Self::start_of(&self.lock());
        (start, self.durable.borrow().end)
    }

    /// (start offset, end offset, bytes, segment count).
    pub fn stats(&self) -> (i64, i64, u64, usize) {
        let inner = self.lock();
        let size = inner.sealed.iter().map(|s| s.summary.size).sum::<u64>() + inner.active.size();
        (
            Self::start_of(&inner),
            self.durable.borrow().end,
            size,
            inner.sealed.len() + 1,
        )
    }

    /// (epoch, next sequence) of a producer in this partition.
    pub fn producer_position(&self, producer_id: i64) -> Option<(i16, i32)> {
        self.lock().producers.position(producer_id)
    }

    /// Opens a sealed segment for reading: its file and index (rebuilt and
    /// rewritten if missing or not matching, with any damage reported).
    fn open_sealed(&self, s: &Sealed) -> io::Result<OpenSegment> {
        let file = File::open(&s.path)?;
        let ipath = index::path(&self.dir, s.summary.base_offset);
        if let Some(ix) = index::read(&ipath).filter(|ix| ix.summary == s.summary) {
            return Ok(OpenSegment { file, index: ix });
        }
        warn!(segment = %s.path.display(), "Segment index missing or damaged; rebuilding it.");
        let (mut ix, damage) = recovery::rebuild_sealed(
            &s.path,
            s.summary.base_offset,
            s.summary.size,
            s.summary.next_offset,
            s.summary.max_append_ms,
            self.limits.max_batch(),
        )?;
        // Keep what retention and time queries already rely on.
        ix.summary = s.summary;
        self.report(s.summary.base_offset, &s.path, &damage);
        if let Err(e) = ix.write(&ipath) {
            warn!(path = %ipath.display(), error = %e, "Failed to rewrite a segment index.");
        }
        Ok(OpenSegment { file, index: ix })
    }

    fn report(&self, base: i64, path: &Path, damage: &[super::scan::Damage]) {
        if damage.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let mut r = Reporter {
            dir: &self.dir,
            shared: &self.shared,
            reported: std::mem::take(&mut inner.reported),
        };
        drop(inner);
        r.report(base, path, damage);
        let mut inner = self.lock();
        inner.reported.extend(r.reported);
    }

    /// Reads durable batches from `offset`: whole batches up to `max_bytes`
    /// (at least one), and the ranges lost to damage among them. Empty when
    /// `offset` is the durable end. Blocking.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Fetched, ReadError> {
        let end = self.durable.borrow().end;
        let inner = self.lock();
        let start = Self::start_of(&inner);
        if offset < start || offset > end {
            return Err(ReadError::OutOfRange { offset, start, end });
        }
        let empty = Fetched {
            next: offset,
            ..Fetched::default()
        };
        if offset == end {
            return Ok(empty);
        }
        if let Some(&(_, last)) = inner.gaps.iter().find(|g| g.0 <= offset && offset <= g.1) {
            return Ok(Fetched {
                bytes: Vec::new(),
                next: last + 1,
                lost: vec![(offset, last)],
            });
        }
        let i = inner
            .sealed
            .partition_point(|s| s.summary.next_offset <= offset);
        let max_batch = self.limits.max_batch();
        let out = match inner.sealed.get(i).cloned() {
            Some(s) => {
                drop(inner);
                if offset < s.summary.base_offset {
                    return Ok(Fetched {
                        bytes: Vec::new(),
                        next: s.summary.base_offset,
                        lost: vec![(offset, s.summary.base_offset - 1)],
                    });
                }
                let open = self
                    .shared
                    .cache
                    .get_or_open(&s.path, || self.open_sealed(&s))?;
                let from = open.index.entry_for(offset);
                let out = segment::read(
                    &open.file, &s.summary, from, offset, max_bytes, end, max_batch,
                )?;
                self.report(s.summary.base_offset, &s.path, &out.damage);
                out
            }
            None => {
                let file = inner.active.file.clone();
                let summary = inner.active.index.summary;
                let from = inner.active.index.entry_for(offset);
                let path = inner.active.path.clone();
                drop(inner);
                let out = segment::read(&file, &summary, from, offset, max_bytes, end, max_batch)?;
                self.report(summary.base_offset, &path, &out.damage);
                out
            }
        };
        if out.bytes.is_empty() && out.lost.is_empty() && out.next <= offset && offset < end {
            // The segment ends before the durable end says it should (cut
            // after it was acknowledged): what is missing up to the next
            // segment, or the end, is lost, and said to be, rather than a
            // read that never moves on.
            let limit = self.next_base_after(offset).unwrap_or(end).min(end);
            if limit > offset {
                return Ok(Fetched {
                    bytes: Vec::new(),
                    next: limit,
                    lost: vec![(offset, limit - 1)],
                });
            }
        }
        Ok(Fetched {
            bytes: out.bytes,
            next: out.next,
            lost: out.lost,
        })
    }

    /// The base offset of the first segment starting after `offset`.
    fn next_base_after(&self, offset: i64) -> Option<i64> {
        let inner = self.lock();
        inner
            .sealed
            .iter()
            .map(|s| s.summary.base_offset)
            .chain(std::iter::once(inner.active.index.summary.base_offset))
            .find(|b| *b > offset)
    }

    /// The first offset of the first batch holding a record stamped at or
    /// after `ts_ms`, or the end: the sparse index finds the span, then the
    /// batch headers of that span are read (Kafka's ListOffsets by time
    /// answers a batch, not an index entry). Blocking.
    pub fn offset_for_time(&self, ts_ms: i64) -> i64 {
        let end = self.durable.borrow().end;
        let coarse = self.indexed_offset_for_time(ts_ms);
        // The span up to the next index entry holds the answer; a few reads
        // cover it (entries are INDEX_INTERVAL bytes apart), bounded anyway.
        let mut at = coarse;
        for _ in 0..64 {
            if at >= end {
                return end;
            }
            let Ok(f) = self.read(at, 256 * 1024) else {
                return coarse;
            };
            if f.next <= at {
                return coarse;
            }
            let mut rest = f.bytes.as_slice();
            while let Some(n) = weir_core::batch::peek_total_len(rest).filter(|n| *n <= rest.len())
            {
                match weir_core::batch::BatchHeader::parse(rest) {
                    Ok(h) if h.max_timestamp >= ts_ms => return h.base_offset.max(at).min(end),
                    Ok(_) => {}
                    Err(_) => return coarse,
                }
                rest = &rest[n..];
            }
            at = f.next;
        }
        coarse
    }

    /// [`Self::offset_for_time`] at index granularity.
    fn indexed_offset_for_time(&self, ts_ms: i64) -> i64 {
        let end = self.durable.borrow().end;
        let inner = self.lock();
        let sealed: Vec<Sealed> = inner
            .sealed
            .iter()
            .filter(|s| s.summary.max_timestamp >= ts_ms)
            .cloned()
            .collect();
        let active = inner.active.index.offset_for_time(ts_ms);
        drop(inner);
        for s in sealed {
            let found = self
                .shared
                .cache
                .get_or_open(&s.path, || self.open_sealed(&s))
                .ok()
                .and_then(|o| o.index.offset_for_time(ts_ms));
            if let Some(o) = found {
                return o.min(end);
            }
        }
        active.map_or(end, |o| o.min(end))
    }

    /// Deletes whole sealed segments past the retention limits: by size, or
    /// whose newest batch was appended (collector clock) longer ago than the
    /// maximum age. Returns how many were deleted. Blocking.
    pub fn apply_retention(&self, now_ms: i64) -> usize {
        let mut inner = self.lock();
        let mut total: u64 =
            inner.sealed.iter().map(|s| s.summary.size).sum::<u64>() + inner.active.size();
        let mut deleted = 0;
        while let Some(oldest) = inner.sealed.first() {
            let too_big = self.limits.retention_bytes.is_some_and(|max| total > max);
            let too_old = self
                .limits
                .retention_ms
                .is_some_and(|age| oldest.summary.max_append_ms < now_ms.saturating_sub(age));
            if !(too_big || too_old) {
                break;
            }
            let seg = inner.sealed.remove(0);
            total -= seg.summary.size;
            self.shared.cache.remove(&seg.path);
            if let Err(e) = std::fs::remove_file(&seg.path) {
                warn!(path = %seg.path.display(), error = %e, "Failed to delete a segment past retention.");
            }
            let _ = std::fs::remove_file(index::path(&self.dir, seg.summary.base_offset));
            info!(path = %seg.path.display(), bytes = seg.summary.size, reason = if too_big { "size" } else { "age" }, "Deleted segment past retention.");
            deleted += 1;
        }
        if deleted > 0 {
            let start = Self::start_of(&inner);
            inner.gaps.retain(|g| g.1 >= start);
            inner.producers.expire_below(start);
        }
        deleted
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::record::{encode_batch, Compression, ProducerStamp};
    use weir_core::{Event, Metadata};

    fn batch(pid: i64, seq: i32, n: usize) -> Vec<u8> {
        let events: Vec<Event> = (0..n)
            .map(|i| Event::from_message(format!("e{i}"), Metadata::default()))
            .collect();
        encode_batch(
            &events,
            ProducerStamp {
                producer_id: pid,
                producer_epoch: 0,
                base_sequence: seq,
            },
            Compression::None,
        )
        .unwrap()
        .to_vec()
    }

    fn limits(segment_bytes: u64) -> PartitionLimits {
        PartitionLimits {
            segment_bytes,
            retention_bytes: None,
            retention_ms: None,
            sync_before_ack: true,
            batch_limits: Default::default(),
        }
    }

    #[test]
    fn a_pipelined_commit_publishes_and_checkpoints_only_what_its_data_stage_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 0, limits(1 << 20)).unwrap();
        p.append(batch(-1, -1, 10)).unwrap();
        let mark = p.sync_data().unwrap();
        assert_eq!(mark.end_offset, 10);
        assert_eq!(
            p.bounds().1,
            0,
            "nothing is published before the checkpoint"
        );
        // The next group is appended (and its data stage may run) before
        // the first group's checkpoint is written.
        p.append(batch(-1, -1, 5)).unwrap();
        let next = p.sync_data().unwrap();
        p.commit(mark).unwrap();
        assert_eq!(p.bounds().1, 10, "published up to the first group only");
        let on_disk = || match super::super::checkpoint::Checkpoint::open(dir.path()).1 {
            super::super::checkpoint::Loaded::Valid(m) => m.end_offset,
            other => panic!("{other:?}"),
        };
        assert_eq!(on_disk(), 10);
        p.commit(next).unwrap();
        // A late commit of an older mark moves nothing back.
        p.commit(mark).unwrap();
        assert_eq!(p.bounds().1, 15);
        assert_eq!(on_disk(), 15);
    }

    #[test]
    fn duplicate_batch_is_not_appended_twice_even_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 0, limits(1 << 20)).unwrap();
        let a = p.append(batch(5, 0, 10)).unwrap();
        let b = p.append(batch(5, 10, 10)).unwrap();
        assert_eq!((a.base_offset, b.base_offset), (0, 10));
        p.sync().unwrap();
        drop(p);
        // Producer state is rebuilt from the log: the resend is recognised.
        let p = Partition::open(dir.path(), 0, limits(1 << 20)).unwrap();
        let again = p.append(batch(5, 10, 10)).unwrap();
        assert_eq!(
            again,
            Appended {
                base_offset: 10,
                last_offset: 19,
                duplicate: true
            }
        );
        assert!(matches!(
            p.append(batch(5, 30, 1)),
            Err(AppendError::OutOfOrder { expected: 20, .. })
        ));
        assert_eq!(p.stats().1, 20);
    }

    #[test]
    fn a_batch_whose_record_count_lies_is_refused_at_ingest_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 0, limits(1 << 20)).unwrap();
        let mut b = batch(-1, -1, 3);
        b[23..27].copy_from_slice(&3i32.to_be_bytes()); // last_offset_delta
        b[57..61].copy_from_slice(&4i32.to_be_bytes()); // record_count
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let e = p.append(b).unwrap_err();
        assert!(matches!(e, AppendError::Corrupt(_)), "{e}");
        assert!(e.to_string().contains("record 3"), "{e}");
        assert_eq!(p.stats().1, 0, "nothing appended");
    }

    #[test]
    fn reads_wait_for_durability_and_cross_segment_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(dir.path(), 0, limits(2000)).unwrap();
        for k in 0..20 {
            p.append(batch(-1, -1, 5))
                .map(|_| ())
                .unwrap_or_else(|e| panic!("append {k}: {e}"));
        }
        assert_eq!(
            p.read(0, 1 << 20).unwrap().bytes.len(),
            0,
            "nothing durable before sync"
        );
        p.sync().unwrap();
        let (_, _, _, segments) = p.stats();
        assert!(segments > 1, "segments rolled");
        let mut offset = 0;
        let mut records = 0;
        while offset < 100 {
            let Fetched { bytes, next, .. } = p.read(offset, 1).unwrap();
            records += weir_core::record::decode_batches(&bytes).unwrap().len();
            assert!(next > offset);
            offset = next;
        }
        assert_eq!(records, 100);
    }

    #[test]
    fn retention_by_size_keeps_the_active_segment_and_moves_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = limits(1500);
        l.retention_bytes = Some(1);
        let p = Partition::open(dir.path(), 0, l).unwrap();
        for _ in 0..20 {
            p.append(batch(-1, -1, 5)).unwrap();
        }
        p.sync().unwrap();
        assert!(p.apply_retention(0) > 0);
        let (start, end, _, segments) = p.stats();
        assert_eq!(segments, 1);
        assert!(start > 0 && end == 100);
        assert!(matches!(p.read(0, 100), Err(ReadError::OutOfRange { .. })));
    }

    fn stamped(ts_ms: i64, n: usize) -> Vec<u8> {
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let mut e = Event::from_message(format!("e{i}"), Metadata::default());
                e.timestamp = ts_ms * 1_000_000;
                e
            })
            .collect();
        let stamp = ProducerStamp {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        };
        encode_batch(&events, stamp, Compression::None)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn retention_by_age_follows_the_collectors_append_time_not_producer_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = limits(1500);
        l.retention_ms = Some(7 * 86_400_000);
        let p = Partition::open(dir.path(), 0, l).unwrap();
        // A device without a clock (1970), then one stamping the year 2200.
        for _ in 0..10 {
            p.append(stamped(5, 5)).unwrap();
        }
        p.append(stamped(7_258_118_400_000, 5)).unwrap();
        for _ in 0..10 {
            p.append(stamped(5, 5)).unwrap();
        }
        p.sync().unwrap();
        let (_, _, _, segments) = p.stats();
        assert!(segments > 3);
        let now = now_ms();
        assert_eq!(
            p.apply_retention(now),
            0,
            "1970 timestamps do not expire data just appended"
        );
        // Eight days later every sealed segment goes, the far-future batch pins nothing.
        let later = now + 8 * 86_400_000;
        assert_eq!(p.apply_retention(later), segments - 1);
        assert_eq!(p.stats().3, 1);
    }

    #[test]
    fn append_times_never_go_backwards_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = limits(1500);
        l.retention_ms = Some(60_000);
        let p = Partition::open(dir.path(), 0, l.clone()).unwrap();
        // As if the clock had been a day ahead when these were appended.
        p.lock().last_append_ms = now_ms() + 86_400_000;
        for _ in 0..20 {
            p.append(batch(-1, -1, 5)).unwrap();
        }
        p.sync().unwrap();
        drop(p);
        let p = Partition::open(dir.path(), 0, l).unwrap();
        assert!(p.lock().last_append_ms >= now_ms() + 86_000_000);
        // The clock is "back" to now: nothing is older than 60 s by the collector's times.
        assert_eq!(p.apply_retention(now_ms()), 0);
    }
}
