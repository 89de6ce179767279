//! One topic-partition: an ordered list of segments, the producer table, and
//! the durable end offset that acknowledgements and consumers wait on.
//!
//! Durability: appends go to the page cache under the partition lock; a
//! per-partition sync task (see `store.rs`) fsyncs every file written since
//! the last sync and then publishes the new durable end. A producer is
//! acknowledged, and a consumer sees a batch, only once the durable end has
//! passed it. Many batches arriving while one fsync runs share the next one:
//! that is the group commit.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};
use weir_core::batch::{self, BatchHeader};
use weir_core::decode::InvalidBatch;

use super::producers::{Check, Producers};
use super::segment::Segment;

/// Limits a partition works within.
#[derive(Debug, Clone)]
pub struct PartitionLimits {
    /// Roll to a new segment past this size.
    pub segment_bytes: u64,
    /// Delete oldest segments while the partition is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this (ms).
    pub retention_ms: Option<i64>,
    /// When false (fsync policy `none`) appends count as durable at once.
    pub sync_before_ack: bool,
    /// Bounds every batch is validated against before it is appended.
    pub batch_limits: weir_core::decode::Limits,
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

/// What the durable-end watch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// One past the last offset known to be on stable storage.
    pub end: i64,
    /// Set after an fsync failed: nothing more can be acknowledged until restart.
    pub failed: bool,
}

struct Inner {
    segments: Vec<Segment>,
    producers: Producers,
    /// Files written since the last sync (rolled segments and the active one).
    unsynced: Vec<Arc<File>>,
    /// A segment file was created since the last sync: its directory entry
    /// must be made durable before the batches in it are acknowledged.
    dir_dirty: bool,
    failed: bool,
}

/// A partition of a topic.
pub struct Partition {
    pub id: u32,
    dir: PathBuf,
    limits: PartitionLimits,
    inner: Mutex<Inner>,
    durable: watch::Sender<Durable>,
    /// Signalled when there is something to sync.
    pub dirty: Notify,
}

impl Partition {
    /// Opens (or creates) the partition in `dir`, recovering its tail.
    pub fn open(dir: &Path, id: u32, limits: PartitionLimits) -> io::Result<Partition> {
        super::durable::create_dir_durable(dir)?;
        let mut bases: Vec<(i64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let base = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<i64>().ok());
            if let Some(base) = base {
                bases.push((base, path));
            }
        }
        bases.sort();
        let mut producers = Producers::default();
        let mut segments = Vec::with_capacity(bases.len());
        let count = bases.len();
        for (i, (base, path)) in bases.into_iter().enumerate() {
            let last = i + 1 == count;
            // Only the last segment can have been torn by a crash: sealed ones
            // were fsynced before the next segment was created.
            let (seg, rec) = Segment::open(&path, base, last, |h| producers.record(h))?;
            if rec.truncated_bytes > 0 {
                warn!(path = %path.display(), bytes = rec.truncated_bytes, next_offset = seg.next_offset,
                    "Truncated a torn or corrupt tail of a log segment to the last valid batch.");
            }
            if let Some(prev) = segments.last().map(|s: &Segment| s.next_offset) {
                if prev != base {
                    warn!(path = %path.display(), expected = prev, found = base, "Offset gap between segments.");
                }
            }
            segments.push(seg);
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0)?);
            super::durable::sync_dir(dir)?;
        }
        let end = segments.last().map_or(0, |s| s.next_offset);
        producers.expire_below(segments[0].base_offset);
        info!(dir = %dir.display(), segments = segments.len(), end_offset = end, "Opened partition.");
        let (durable, _) = watch::channel(Durable { end, failed: false });
        Ok(Partition {
            id,
            dir: dir.to_path_buf(),
            limits,
            inner: Mutex::new(Inner {
                segments,
                producers,
                unsynced: Vec::new(),
                dir_dirty: false,
                failed: false,
            }),
            durable,
            dirty: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written batch
        // accounted for (size is advanced only after write_all), so the state
        // is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates and appends one batch, unless it is a duplicate. Blocking.
    pub fn append(&self, mut bytes: Vec<u8>) -> Result<Appended, AppendError> {
        // Every record is checked here, in the one append path every
        // front-end uses, so no consumer is ever served a batch it cannot read.
        let mut h = weir_core::decode::validate(&bytes, &self.limits.batch_limits)?;
        let mut inner = self.lock();
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
        let next = inner.segments.last().map_or(0, |s| s.next_offset);
        h.base_offset = next;
        batch::set_base_offset(&mut bytes, next);
        let needs_roll = inner
            .segments
            .last()
            .is_some_and(|s| s.size > 0 && s.size + bytes.len() as u64 > self.limits.segment_bytes);
        if needs_roll {
            let new = Segment::create(&self.dir, next)
                .map_err(|e| AppendError::Storage(e.to_string()))?;
            // The sealed segment joins the files the next sync covers.
            if let Some(old) = inner.segments.last() {
                let f = old.file.clone();
                inner.unsynced.push(f);
            }
            inner.segments.push(new);
            inner.dir_dirty = true;
        }
        let Some(active) = inner.segments.last_mut() else {
            return Err(AppendError::Storage("no active segment".into()));
        };
        active
            .append(&bytes, &h)
            .map_err(|e| AppendError::Storage(e.to_string()))?;
        let f = active.file.clone();
        if !inner.unsynced.iter().any(|u| Arc::ptr_eq(u, &f)) {
            inner.unsynced.push(f);
        }
        inner.producers.record(&h);
        drop(inner);
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

    /// Fsyncs every file written since the last sync and publishes the new durable end. Blocking.
    pub fn sync(&self) -> io::Result<()> {
        let (files, end, dir_dirty) = {
            let mut inner = self.lock();
            let end = inner.segments.last().map_or(0, |s| s.next_offset);
            let dir_dirty = std::mem::take(&mut inner.dir_dirty);
            (std::mem::take(&mut inner.unsynced), end, dir_dirty)
        };
        let dir_sync = || {
            if dir_dirty {
                super::durable::sync_dir(&self.dir)
            } else {
                Ok(())
            }
        };
        for res in files
            .iter()
            .map(|f| f.sync_data())
            .chain(std::iter::once_with(dir_sync))
        {
            if let Err(e) = res {
                // After a failed fsync the page cache may have dropped the
                // dirty pages; retrying could report success for lost data
                // (the PostgreSQL "fsyncgate" lesson), so stop acknowledging.
                self.lock().failed = true;
                self.durable.send_modify(|d| d.failed = true);
                error!(dir = %self.dir.display(), error = %e, "Fsync failed; refusing further writes to this partition until restart.");
                return Err(e);
            }
        }
        self.durable.send_modify(|d| d.end = d.end.max(end));
        Ok(())
    }

    /// A receiver for the durable end.
    pub fn durable(&self) -> watch::Receiver<Durable> {
        self.durable.subscribe()
    }

    /// First retained offset and durable end.
    pub fn bounds(&self) -> (i64, i64) {
        let start = self.lock().segments.first().map_or(0, |s| s.base_offset);
        (start, self.durable.borrow().end)
    }

    /// (start offset, end offset, bytes, segment count).
    pub fn stats(&self) -> (i64, i64, u64, usize) {
        let inner = self.lock();
        let start = inner.segments.first().map_or(0, |s| s.base_offset);
        let size = inner.segments.iter().map(|s| s.size).sum();
        (start, self.durable.borrow().end, size, inner.segments.len())
    }

    /// (epoch, next sequence) of a producer in this partition.
    pub fn producer_position(&self, producer_id: i64) -> Option<(i16, i32)> {
        self.lock().producers.position(producer_id)
    }

    /// Reads durable batches from `offset`. Empty when `offset` is the durable end. Blocking.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<(Vec<u8>, i64), ReadError> {
        let end = self.durable.borrow().end;
        let inner = self.lock();
        let start = inner.segments.first().map_or(0, |s| s.base_offset);
        if offset < start || offset > end {
            return Err(ReadError::OutOfRange { offset, start, end });
        }
        if offset == end {
            return Ok((Vec::new(), offset));
        }
        // The segment holding `offset`, or the first one after a gap.
        let i = inner.segments.partition_point(|s| s.next_offset <= offset);
        let Some(seg) = inner.segments.get(i) else {
            return Ok((Vec::new(), offset));
        };
        let bytes = seg.read(offset.max(seg.base_offset), max_bytes, end)?;
        let next = batch::split(&bytes)
            .last()
            .and_then(|b| BatchHeader::parse(b).ok())
            .map_or(offset, |h| h.last_offset() + 1);
        Ok((bytes, next))
    }

    /// The first offset whose batch holds a record at or after `ts_ms`, or the end.
    pub fn offset_for_time(&self, ts_ms: i64) -> i64 {
        let end = self.durable.borrow().end;
        let inner = self.lock();
        inner
            .segments
            .iter()
            .filter(|s| s.max_timestamp >= ts_ms)
            .find_map(|s| s.offset_for_time(ts_ms))
            .map_or(end, |o| o.min(end))
    }

    /// Deletes whole segments past the retention limits; never the active one.
    /// Returns how many segments were deleted. Blocking.
    pub fn apply_retention(&self, now_ms: i64) -> usize {
        let mut inner = self.lock();
        let mut total: u64 = inner.segments.iter().map(|s| s.size).sum();
        let mut deleted = 0;
        while inner.segments.len() > 1 {
            let oldest = &inner.segments[0];
            let too_big = self.limits.retention_bytes.is_some_and(|max| total > max);
            let too_old = self.limits.retention_ms.is_some_and(|age| {
                oldest.max_timestamp >= 0 && oldest.max_timestamp < now_ms - age
            });
            if !(too_big || too_old) {
                break;
            }
            let seg = inner.segments.remove(0);
            total -= seg.size;
            if let Err(e) = std::fs::remove_file(&seg.path) {
                warn!(path = %seg.path.display(), error = %e, "Failed to delete a segment past retention.");
            }
            info!(path = %seg.path.display(), bytes = seg.size, reason = if too_big { "size" } else { "age" }, "Deleted segment past retention.");
            deleted += 1;
        }
        if deleted > 0 {
            let start = inner.segments[0].base_offset;
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
            p.read(0, 1 << 20).unwrap().0.len(),
            0,
            "nothing durable before sync"
        );
        p.sync().unwrap();
        let (_, _, _, segments) = p.stats();
        assert!(segments > 1, "segments rolled");
        let mut offset = 0;
        let mut records = 0;
        while offset < 100 {
            let (bytes, next) = p.read(offset, 1).unwrap();
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

    #[test]
    fn retention_by_age_deletes_segments_whose_newest_record_is_too_old() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = limits(1500);
        l.retention_ms = Some(60_000);
        let p = Partition::open(dir.path(), 0, l).unwrap();
        let old: Vec<Event> = (0..5)
            .map(|i| {
                let mut e = Event::from_message(format!("old {i}"), Metadata::default());
                e.timestamp = 1_000_000_000_000_000; // 2001
                e
            })
            .collect();
        let stamp = ProducerStamp {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        };
        for _ in 0..10 {
            p.append(
                encode_batch(&old, stamp, Compression::None)
                    .unwrap()
                    .to_vec(),
            )
            .unwrap();
        }
        // The newest segment holds recent records: it stays, and so does everything after it.
        p.append(batch(-1, -1, 5)).unwrap();
        p.sync().unwrap();
        let (_, _, _, before) = p.stats();
        assert!(before > 2);
        let now = weir_core::event::now_nanos() / 1_000_000;
        assert_eq!(p.apply_retention(now), before - 1);
        let (start, end, _, after) = p.stats();
        assert_eq!((after, end), (1, 55));
        // Whole segments are deleted: the kept one may begin with old batches.
        assert!(start > 0 && start <= 50, "start {start}");
    }
}
