//! Channels: the bounded FIFO in front of each sink that absorbs outages and
//! bursts. `disk` (the default) survives crashes and power loss; `memory` does not.
//!
//! A source's `push` returns only once every downstream channel has taken the
//! events, so a source checkpoints only what is in the channels. Each sink has
//! its own channel: a slow or dead sink fills its own channel, never another's.

pub mod backlog;
pub mod disk;
pub mod frame;
pub mod memory;
pub mod streams;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tracing::warn;
use weir_core::metrics::{Counter, Gauge, Registry};
use weir_core::units::{opt_duration, ByteSize};
use weir_core::Event;

use backlog::Backlog;
use disk::{DiskOptions, DiskSpool, PayloadForm, SpoolError, StreamMarks};
use memory::MemoryChannel;
use weir_plugins::{Record, SourceBatch};

/// What a full channel does with new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Back-pressure: the source waits (a file source stops reading, MQTT stops acknowledging).
    #[default]
    Block,
    /// Discard the incoming events, counted in `weir_channel_dropped_events_total{reason="newest"}`.
    DropNewest,
    /// Discard the oldest unsent events to make room, counted with `reason="oldest"`.
    DropOldest,
}

/// When the disk spool fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every appended batch, before the source may checkpoint: survives power loss.
    #[default]
    Batch,
    /// Every `fsync_interval`: survives a crash of the agent; power loss can
    /// lose up to one interval of checkpointed data.
    Interval,
    /// Never (the OS writes back): survives a crash of the agent, not of the machine.
    None,
}

/// Where a channel keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    /// Durable spool on local disk under `data_dir/spool/<sink id>`.
    #[default]
    Disk,
    /// In memory; lost on restart.
    Memory,
}

/// A sink's channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// `disk` (default) or `memory`.
    #[serde(rename = "type", default)]
    pub kind: ChannelType,
    /// Bound on the channel's bytes: 256MiB on disk, 16MiB in memory by default.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// `block` (default), `drop_newest` or `drop_oldest`.
    #[serde(default)]
    pub when_full: WhenFull,
    /// Disk only: `batch` (default), `interval` or `none`.
    #[serde(default)]
    pub fsync: Option<FsyncPolicy>,
    /// Disk only: period of the `interval` policy (default 1s).
    #[serde(default, with = "opt_duration")]
    pub fsync_interval: Option<Duration>,
    /// Disk only: segment file size; default max_bytes/8, between 4KiB and 64MiB.
    #[serde(default)]
    pub segment_bytes: Option<ByteSize>,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            kind: ChannelType::Disk,
            max_bytes: None,
            when_full: WhenFull::Block,
            fsync: None,
            fsync_interval: None,
            segment_bytes: None,
        }
    }
}

impl ChannelConfig {
    /// The byte bound in force.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
            .map(|b| b.bytes())
            .unwrap_or(match self.kind {
                ChannelType::Disk => 256 << 20,
                ChannelType::Memory => 16 << 20,
            })
    }

    /// The fsync policy in force.
    pub fn fsync(&self) -> FsyncPolicy {
        self.fsync.unwrap_or_default()
    }

    /// The `interval` policy's period.
    pub fn fsync_interval(&self) -> Duration {
        self.fsync_interval.unwrap_or(Duration::from_secs(1))
    }

    /// Problems with the values, for `weir validate`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let max = self.max_bytes();
        if max < 4096 {
            p.push(format!(
                "max_bytes {} is below the minimum of 4KiB",
                ByteSize(max)
            ));
        }
        if let Some(s) = self.segment_bytes {
            if s.bytes() < 1024 || s.bytes() > max {
                p.push(format!(
                    "segment_bytes {s} must be between 1KiB and max_bytes ({})",
                    ByteSize(max)
                ));
            }
        }
        if let Some(d) = self.fsync_interval {
            p.extend(weir_core::units::duration_problem(
                "fsync_interval",
                d,
                Duration::from_millis(1),
                Duration::from_secs(3600),
            ));
        }
        if self.kind == ChannelType::Memory
            && (self.fsync.is_some()
                || self.fsync_interval.is_some()
                || self.segment_bytes.is_some())
        {
            p.push(
                "fsync, fsync_interval and segment_bytes apply to disk channels only".to_owned(),
            );
        }
        p
    }
}

/// Metrics of one channel. Its registry view carries the labels of the
/// component the channel feeds (`component`, `component_type`).
#[derive(Clone, Default)]
pub struct ChannelMetrics {
    pub events_in: Counter,
    pub events_out: Counter,
    pub dropped_newest: Counter,
    pub dropped_oldest: Counter,
    pub corrupt: Counter,
    pub no_space: Counter,
    /// Bytes of segment files on disk (acknowledged records included until
    /// their whole segment is).
    pub disk_bytes: Gauge,
    /// Records held and not yet acknowledged.
    pub records: Gauge,
    /// Unacknowledged bytes and their age.
    pub backlog: Arc<Mutex<Backlog>>,
}

impl ChannelMetrics {
    /// Registers the metrics of a channel bounded by `capacity` bytes.
    pub fn register(r: &Registry, capacity: u64) -> Self {
        let dropped = |reason| {
            r.counter(
                "weir_channel_dropped_events_total",
                "Events dropped because the channel was full, by reason (newest, oldest).",
                &[("reason", reason)],
            )
        };
        let m = ChannelMetrics {
            events_in: r.counter(
                "weir_channel_events_in_total",
                "Events written into a channel.",
                &[],
            ),
            events_out: r.counter(
                "weir_channel_events_acked_total",
                "Events acknowledged by the sink (or processed by a stateful transform) and released from the channel.",
                &[],
            ),
            dropped_newest: dropped("newest"),
            dropped_oldest: dropped("oldest"),
            corrupt: r.counter(
                "weir_channel_corrupt_records_total",
                "Spool records lost to on-disk damage (CRC failures).",
                &[],
            ),
            no_space: r.counter(
                "weir_channel_no_space_total",
                "Writes that found the disk full and were retried.",
                &[],
            ),
            disk_bytes: r.gauge(
                "weir_channel_disk_bytes",
                "Bytes of the channel's segment files on disk (0 for memory channels); acknowledged records stay until their whole segment is.",
                &[],
            ),
            records: r.gauge(
                "weir_channel_events",
                "Backlog: events held and not yet acknowledged.",
                &[],
            ),
            backlog: Arc::default(),
        };
        r.gauge(
            "weir_channel_capacity_bytes",
            "The channel's configured bound (max_bytes).",
            &[],
        )
        .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        let weak = Arc::downgrade(&m.backlog);
        r.dynamic(
            "weir_channel_bytes",
            "Backlog: bytes of the events held and not yet acknowledged.",
            "gauge",
            move |emit| {
                if let Some(b) = weak.upgrade() {
                    emit(&[], lock(&b).bytes() as f64);
                }
            },
        );
        let weak = Arc::downgrade(&m.backlog);
        r.dynamic(
            "weir_channel_lag_seconds",
            "Delivery lag: age of the oldest event held and not yet acknowledged (0 when none is).",
            "gauge",
            move |emit| {
                if let Some(b) = weak.upgrade() {
                    emit(&[], lock(&b).lag(backlog::now()));
                }
            },
        );
        m
    }

    /// Records an append of ids `first..end` taking `bytes`, written now.
    pub fn appended(&self, first: u64, end: u64, bytes: u64) {
        lock(&self.backlog).added(first, end, bytes, backlog::now());
    }

    /// Records that every id below `end` is gone (acknowledged or dropped).
    pub fn released(&self, end: u64) {
        lock(&self.backlog).acked(end);
    }

    /// The backlog now: (events, bytes).
    pub fn backlog(&self) -> (u64, u64) {
        let events = u64::try_from(self.records.get()).unwrap_or(0);
        (events, lock(&self.backlog).bytes())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Backend {
    Disk(Box<DiskSpool>),
    Memory(MemoryChannel),
}

struct Inner {
    name: String,
    backend: Backend,
    /// Signalled after an append.
    data: Notify,
    /// Signalled after an acknowledgement frees space.
    space: Notify,
    metrics: ChannelMetrics,
    /// Set when a reload removes the channel's reader: pushes stop waiting for room.
    retired: AtomicBool,
}

/// Why a push did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The agent is shutting down; the events were not (all) taken.
    #[error("shutting down")]
    Shutdown,
}

/// A handle on a channel, cheap to clone.
#[derive(Clone)]
pub struct Channel(Arc<Inner>);

impl Channel {
    /// Opens the channel of sink `name`; disk spools live in `spool_dir`
    /// and hold records in the form the sink sends. `registry` is the
    /// sink's view (its series carry the sink's labels).
    pub fn open(
        name: &str,
        cfg: &ChannelConfig,
        spool_dir: &Path,
        registry: &Registry,
    ) -> Result<Channel, SpoolError> {
        Self::open_with(name, cfg, spool_dir, registry, PayloadForm::Records)
    }

    /// Opens a channel whose disk spool holds `form` (typed events for a
    /// stateful transform's input log).
    pub fn open_with(
        name: &str,
        cfg: &ChannelConfig,
        spool_dir: &Path,
        registry: &Registry,
        form: PayloadForm,
    ) -> Result<Channel, SpoolError> {
        let max_bytes = cfg.max_bytes();
        let metrics = ChannelMetrics::register(registry, max_bytes);
        let backend = match cfg.kind {
            ChannelType::Disk => {
                let seg = cfg
                    .segment_bytes
                    .map(|s| s.bytes())
                    .unwrap_or((max_bytes / 8).clamp(4096, 64 << 20));
                let opts = DiskOptions {
                    form,
                    max_bytes,
                    segment_bytes: seg,
                    when_full: cfg.when_full,
                    fsync: cfg.fsync(),
                    min_free_bytes: disk::MIN_FREE_BYTES,
                };
                Backend::Disk(Box::new(DiskSpool::open(spool_dir, opts, metrics.clone())?))
            }
            ChannelType::Memory => Backend::Memory(MemoryChannel::new(
                max_bytes,
                cfg.when_full,
                metrics.clone(),
            )),
        };
        Ok(Channel(Arc::new(Inner {
            name: name.to_owned(),
            backend,
            data: Notify::new(),
            space: Notify::new(),
            metrics,
            retired: AtomicBool::new(false),
        })))
    }

    /// The sink this channel feeds.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// What the channel holds that its sink has not acknowledged: (events, bytes).
    pub fn backlog(&self) -> (u64, u64) {
        self.0.metrics.backlog()
    }

    /// Whether the channel keeps what it holds across restarts.
    pub fn is_durable(&self) -> bool {
        matches!(self.0.backend, Backend::Disk(_))
    }

    /// The positions this channel holds of the ordered streams whose names
    /// start with `prefix` (none for a memory channel).
    pub fn held_positions(&self, prefix: &str) -> Vec<(String, u64)> {
        match &self.0.backend {
            Backend::Disk(d) => d.ordered_positions(prefix),
            Backend::Memory(_) => Vec::new(),
        }
    }

    /// Takes the whole batch, waiting while full (`block`) or while the disk is
    /// full. Returns only when every event is written, skipped as already
    /// held, or dropped per policy.
    pub async fn push(
        &self,
        batch: Arc<SourceBatch>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), PushError> {
        let mut done = 0usize;
        let mut backoff = Duration::from_millis(50);
        // A batch of releases alone still needs its commit.
        let mut first = true;
        let total = batch.len();
        while done < total || (first && !batch.releases.is_empty()) {
            if self.0.retired.load(Ordering::SeqCst) {
                // Its sink is gone: what has not fit is no longer for anyone.
                return Ok(());
            }
            let inner = self.0.clone();
            let b = batch.clone();
            let from = done;
            let with_releases = first;
            let res = tokio::task::spawn_blocking(move || match &inner.backend {
                Backend::Disk(d) => {
                    let marks = b.stream.as_ref().map(|stream| StreamMarks {
                        stream,
                        marks: b.marks.get(from..).unwrap_or(&[]),
                        // Releases go with the first append of the batch only:
                        // a later one could forget a key this batch just took.
                        releases: if with_releases { &b.releases } else { &[] },
                    });
                    match &b.lines {
                        Some(lines) => d.append_lines(lines, from, marks),
                        None => d.append(&b.events[from..], marks),
                    }
                }
                Backend::Memory(m) => Ok(m.append(&b.events_from(from))),
            })
            .await;
            match res {
                Ok(Ok(a)) => {
                    first = false;
                    done += a.consumed;
                    backoff = Duration::from_millis(50);
                    if a.consumed > a.dropped_newest + a.skipped {
                        self.0.data.notify_waiters();
                    }
                    if done < total && a.consumed == 0 {
                        // Full under `block`: wait for the sink to free space.
                        tokio::select! {
                            _ = self.0.space.notified() => {}
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            _ = shutdown.wait_for(|s| *s) => return Err(PushError::Shutdown),
                        }
                    }
                }
                Ok(Err(e)) => {
                    if matches!(e, SpoolError::NoSpace { .. }) {
                        self.0.metrics.no_space.inc();
                    }
                    warn!(sink = %self.0.name, error = %e, retry_in = ?backoff, "Spool write failed; holding back the source and retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(jitter(backoff)) => {}
                        _ = shutdown.wait_for(|s| *s) => return Err(PushError::Shutdown),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(join) => {
                    warn!(sink = %self.0.name, error = %join, "Spool write task failed; retrying.");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
        Ok(())
    }

    /// The next events after the last ones read. Waits up to `wait` (forever
    /// if `None`) for data: `Some(empty)` when the wait ran out, `None` at
    /// shutdown. Callers await it to completion: dropping it mid-read would
    /// lose the records read (until the next rewind or restart).
    pub async fn next_batch(
        &self,
        max_events: usize,
        max_bytes: usize,
        wait: Option<Duration>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Vec<(u64, Event)>> {
        self.next_with(wait, shutdown, move |b| match b {
            Backend::Disk(d) => d.read(max_events, max_bytes),
            Backend::Memory(m) => Ok(m.read(max_events, max_bytes)),
        })
        .await
    }

    /// Like `next_batch`, as records in the form the sink sends.
    pub async fn next_records(
        &self,
        max_events: usize,
        max_bytes: usize,
        wait: Option<Duration>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Vec<Record>> {
        self.next_with(wait, shutdown, move |b| match b {
            Backend::Disk(d) => d.read_records(max_events, max_bytes),
            Backend::Memory(m) => Ok(m
                .read(max_events, max_bytes)
                .iter()
                .map(|(id, e)| Record::from_event(*id, e))
                .collect()),
        })
        .await
    }

    async fn next_with<T: Send + 'static>(
        &self,
        wait: Option<Duration>,
        shutdown: &mut watch::Receiver<bool>,
        read: impl Fn(&Backend) -> Result<Vec<T>, SpoolError> + Send + Sync + Clone + 'static,
    ) -> Option<Vec<T>> {
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        let mut backoff = Duration::from_millis(100);
        loop {
            let notified = self.0.data.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let inner = self.0.clone();
            let read = read.clone();
            let res = tokio::task::spawn_blocking(move || read(&inner.backend)).await;
            match res {
                Ok(Ok(batch)) if !batch.is_empty() => return Some(batch),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    warn!(sink = %self.0.name, error = %e, "Spool read failed; retrying.");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(e) => {
                    warn!(sink = %self.0.name, error = %e, "Spool read task failed; retrying.")
                }
            }
            if *shutdown.borrow() {
                return None;
            }
            let until =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(until) => {
                    if deadline.is_some() {
                        return Some(Vec::new());
                    }
                }
                _ = shutdown.wait_for(|s| *s) => return None,
            }
        }
    }

    /// Fsyncs a disk spool's active segment (the `interval` policy's tick).
    pub async fn sync(&self) {
        let inner = self.0.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Backend::Disk(d) = &inner.backend {
                if let Err(e) = d.sync() {
                    warn!(sink = %inner.name, error = %e, "Periodic spool fsync failed.");
                }
            }
        })
        .await;
    }

    /// Acknowledges every record below `end_id` (persisted for disk spools).
    pub async fn ack(&self, end_id: u64) -> Result<(), SpoolError> {
        let inner = self.0.clone();
        let res = tokio::task::spawn_blocking(move || match &inner.backend {
            Backend::Disk(d) => d.ack(end_id).map(|_| ()),
            Backend::Memory(m) => {
                m.ack(end_id);
                Ok(())
            }
        })
        .await
        .unwrap_or(Ok(()));
        self.0.space.notify_waiters();
        res
    }

    /// Marks the channel as no longer read (a reload removed its sink): a
    /// push waiting for room returns instead of waiting forever. What the
    /// channel holds stays on disk.
    pub fn retire(&self) {
        self.0.retired.store(true, Ordering::SeqCst);
        self.0.space.notify_waiters();
    }

    /// Restarts reading at the first unacknowledged record (after a sink error).
    pub fn rewind(&self) {
        match &self.0.backend {
            Backend::Disk(d) => d.rewind(),
            Backend::Memory(m) => m.rewind(),
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.5): retries of many agents spread out.
pub fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}
