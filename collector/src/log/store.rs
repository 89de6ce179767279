//! Topics: creation on first write, reopening on start, and the background
//! tasks each partition needs (group-commit sync, retention).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{error, info};
use weir_core::protocol::valid_name;

use super::durable::{self, DirLock, LockError};
use super::partition::{Partition, PartitionLimits, Shared};

/// When the collector fsyncs before acknowledging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// fsync as soon as writes are pending; batches that arrive during one
    /// fsync share the next (group commit). Acknowledged means on disk.
    #[default]
    Batch,
    /// fsync every `fsync_interval`; acknowledgements wait for it. Fewer
    /// fsyncs, higher latency, same guarantee.
    Interval,
    /// Never fsync before acknowledging: the OS writes back on its own.
    /// A power loss can lose acknowledged batches.
    None,
}

/// How the store lays out and keeps data.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub default_partitions: u32,
    pub segment_bytes: u64,
    pub retention_bytes: Option<u64>,
    pub retention: Option<Duration>,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    /// Bounds every batch is validated against before it is appended.
    pub batch_limits: weir_core::decode::Limits,
    /// Counters the store updates (registered by the caller).
    pub metrics: StoreMetrics,
}

/// Sealed segments kept open for reading, across all partitions.
pub const OPEN_SEALED_SEGMENTS: usize = 64;

/// Counters of on-disk damage found by recovery and reads.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    /// `weir_collector_damaged_batches_total`: damaged regions found (each one or more batches).
    pub damaged_batches: weir_core::metrics::Counter,
    /// `weir_collector_damaged_bytes_total`: bytes in them.
    pub damaged_bytes: weir_core::metrics::Counter,
}

impl StoreMetrics {
    /// The counters, registered in `registry`.
    pub fn register(registry: &weir_core::metrics::Registry) -> Self {
        StoreMetrics {
            damaged_batches: registry.counter(
                "weir_collector_damaged_batches_total",
                "Damaged regions (one or more batches each) found in the log; their records are lost.",
                &[],
            ),
            damaged_bytes: registry.counter(
                "weir_collector_damaged_bytes_total",
                "Bytes of damaged regions found in the log.",
                &[],
            ),
        }
    }
}

/// A topic and its partitions.
pub struct Topic {
    pub name: String,
    pub partitions: Vec<Arc<Partition>>,
}

#[derive(Serialize, Deserialize)]
struct TopicMeta {
    partitions: u32,
}

/// Why a topic could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid topic name {0:?}: use letters, digits, '.', '_' and '-'")]
    InvalidName(String),
    #[error("invalid partition count {0}: must be 1..=1024")]
    InvalidPartitions(u32),
    #[error("topic {topic}: {source}")]
    Io { topic: String, source: io::Error },
    /// The data directory is locked by another collector (or cannot be locked).
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The topic's metadata is damaged: the topic is refused, its data left as it is.
    #[error("topic {topic} is refused: its metadata {path} is damaged ({reason}); restore it (see docs/operations.md) and restart")]
    Damaged {
        topic: String,
        path: PathBuf,
        reason: String,
    },
}

/// All topics of a collector.
pub struct Store {
    cfg: StoreConfig,
    shared: Shared,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Topics found with damaged metadata at start: refused, never recreated
    /// (recreating would overwrite the metadata and reset the topic).
    damaged: HashMap<String, (PathBuf, String)>,
    /// Serialises topic creation: two first writes to a new topic must not
    /// race on its directory and metadata file.
    creating: Mutex<()>,
    shutdown: watch::Receiver<bool>,
    _lock: DirLock,
}

impl Store {
    /// Locks the data dir, opens every topic under it and starts its
    /// partitions' tasks. Must be called within a tokio runtime.
    pub fn open(
        cfg: StoreConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Store>, StoreError> {
        let lock = durable::lock_dir(&cfg.data_dir)?;
        let tdir = cfg.data_dir.join("topics");
        let io_all = |source| StoreError::Io {
            topic: "*".into(),
            source,
        };
        durable::create_dir_durable(&tdir).map_err(io_all)?;
        let mut found = Vec::new();
        let mut damaged = HashMap::new();
        for entry in std::fs::read_dir(&tdir).map_err(io_all)? {
            let entry = entry.map_err(io_all)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) || !entry.path().is_dir() {
                continue;
            }
            let path = entry.path().join("topic.json");
            match read_meta(&path) {
                Ok(meta) => found.push((name, meta.partitions)),
                Err(reason) => {
                    error!(topic = %name, path = %path.display(), reason = %reason,
                        "Topic metadata is damaged; refusing the topic (its data is left untouched).");
                    damaged.insert(name, (path, reason));
                }
            }
        }
        let shared = Shared {
            cache: Arc::new(super::cache::SegmentCache::new(OPEN_SEALED_SEGMENTS)),
            metrics: cfg.metrics.clone(),
        };
        let store = Arc::new(Store {
            shared,
            cfg,
            topics: RwLock::new(HashMap::new()),
            damaged,
            creating: Mutex::new(()),
            shutdown,
            _lock: lock,
        });
        for (name, partitions) in found {
            store.open_topic(&name, partitions)?;
        }
        Ok(store)
    }

    /// The configuration in force.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// A topic, if it exists.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The topic, created with `partitions` (or the default) if it does not exist.
    pub fn get_or_create(
        &self,
        name: &str,
        partitions: Option<u32>,
    ) -> Result<Arc<Topic>, StoreError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if let Some(e) = self.refused(name) {
            return Err(e);
        }
        if !valid_name(name) {
            return Err(StoreError::InvalidName(name.to_owned()));
        }
        let n = partitions.unwrap_or(self.cfg.default_partitions);
        if n == 0 || n > 1024 {
            return Err(StoreError::InvalidPartitions(n));
        }
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        let dir = self.topic_dir(name);
        let io = |source| StoreError::Io {
            topic: name.to_owned(),
            source,
        };
        // The directories (fsynced into their parents) and the metadata
        // (atomic, fsynced) are durable before any batch can be acknowledged
        // in the topic; each partition directory is made durable when the
        // partition opens.
        durable::create_dir_durable(&dir).map_err(io)?;
        let meta = serde_json::to_vec(&TopicMeta { partitions: n })
            .map_err(|e| io(io::Error::other(e)))?;
        durable::write_atomic(&dir.join("topic.json"), &meta).map_err(io)?;
        info!(topic = name, partitions = n, "Created topic.");
        self.open_topic(name, n)
    }

    /// Why topic `name` is refused, if its metadata was found damaged at start.
    pub fn refused(&self, name: &str) -> Option<StoreError> {
        self.damaged
            .get(name)
            .map(|(path, reason)| StoreError::Damaged {
                topic: name.to_owned(),
                path: path.clone(),
                reason: reason.clone(),
            })
    }

    /// Topics refused at start because their metadata is damaged.
    pub fn damaged_topics(&self) -> Vec<String> {
        let mut v: Vec<String> = self.damaged.keys().cloned().collect();
        v.sort();
        v
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.cfg.data_dir.join("topics").join(name)
    }

    fn open_topic(&self, name: &str, n: u32) -> Result<Arc<Topic>, StoreError> {
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = topics.get(name) {
            return Ok(t.clone());
        }
        let limits = PartitionLimits {
            segment_bytes: self.cfg.segment_bytes,
            retention_bytes: self.cfg.retention_bytes,
            retention_ms: self.cfg.retention.map(|d| d.as_millis() as i64),
            sync_before_ack: self.cfg.fsync != FsyncPolicy::None,
            batch_limits: self.cfg.batch_limits,
        };
        let mut partitions = Vec::with_capacity(n as usize);
        for id in 0..n {
            let dir = self.topic_dir(name).join(id.to_string());
            let p = Partition::open_shared(&dir, id, limits.clone(), self.shared.clone()).map_err(
                |source| StoreError::Io {
                    topic: name.to_owned(),
                    source,
                },
            )?;
            let p = Arc::new(p);
            spawn_sync_task(
                p.clone(),
                self.cfg.fsync,
                self.cfg.fsync_interval,
                self.shutdown.clone(),
            );
            partitions.push(p);
        }
        let t = Arc::new(Topic {
            name: name.to_owned(),
            partitions,
        });
        topics.insert(name.to_owned(), t.clone());
        Ok(t)
    }

    /// Applies retention to every partition. Blocking.
    pub fn apply_retention(&self) -> usize {
        let now = weir_core::event::now_nanos() / 1_000_000;
        self.topics()
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.apply_retention(now))
            .sum()
    }

    /// Syncs every partition and writes what makes the next start fast
    /// (`Partition::close`); used at shutdown. Blocking.
    pub fn sync_all(&self) {
        for t in self.topics() {
            for p in &t.partitions {
                if let Err(e) = p.close() {
                    error!(topic = %t.name, partition = p.id, error = %e, "Final fsync failed.");
                }
            }
        }
    }
}

fn spawn_sync_task(
    p: Arc<Partition>,
    policy: FsyncPolicy,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if policy == FsyncPolicy::None {
        return;
    }
    tokio::spawn(async move {
        // The group commit is pipelined: the checkpoint of one group is
        // written and fsynced while the next group's data is fsynced (see
        // `partition.rs`). At most one of each runs at a time.
        let mut committing: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;
        loop {
            tokio::select! {
                _ = p.dirty.notified() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            if policy == FsyncPolicy::Interval {
                tokio::time::sleep(interval).await;
            }
            let part = p.clone();
            let mark = match tokio::task::spawn_blocking(move || part.sync_data()).await {
                Ok(Ok(mark)) => mark,
                // The partition has marked itself failed and logged why.
                Ok(Err(_)) => break,
                Err(e) => {
                    error!(error = %e, "Sync task panicked.");
                    break;
                }
            };
            if let Some(previous) = committing.take() {
                if !committed(previous.await) {
                    break;
                }
            }
            let part = p.clone();
            committing = Some(tokio::task::spawn_blocking(move || part.commit(mark)));
        }
        if let Some(last) = committing {
            committed(last.await);
        }
    });
}

/// Whether a checkpoint commit succeeded; a failed one has marked its
/// partition failed and logged why.
fn committed(r: Result<std::io::Result<()>, tokio::task::JoinError>) -> bool {
    match r {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(e) => {
            error!(error = %e, "Checkpoint task panicked.");
            false
        }
    }
}

/// Reads a topic's metadata; any problem is returned as a sentence.
fn read_meta(path: &Path) -> Result<TopicMeta, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let meta: TopicMeta = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if meta.partitions == 0 || meta.partitions > 1024 {
        return Err(format!("partition count {} out of range", meta.partitions));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> StoreConfig {
        StoreConfig {
            data_dir: dir.to_path_buf(),
            default_partitions: 2,
            segment_bytes: 1 << 20,
            retention_bytes: None,
            retention: None,
            fsync: FsyncPolicy::Batch,
            fsync_interval: Duration::from_millis(10),
            batch_limits: Default::default(),
            metrics: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let first = Store::open(cfg(dir.path()), rx.clone()).unwrap();
        let Err(e) = Store::open(cfg(dir.path()), rx.clone()) else {
            panic!("second store opened");
        };
        assert!(e.to_string().contains("another collector"), "{e}");
        drop(first);
        Store::open(cfg(dir.path()), rx).unwrap();
    }

    #[tokio::test]
    async fn a_damaged_topic_json_refuses_the_topic_instead_of_resetting_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let store = Store::open(cfg(dir.path()), rx.clone()).unwrap();
        store.get_or_create("t", Some(3)).unwrap();
        drop(store);
        let meta = dir.path().join("topics/t/topic.json");
        let text = std::fs::read(&meta).unwrap();
        std::fs::write(&meta, &text[..text.len() / 2]).unwrap();
        let store = Store::open(cfg(dir.path()), rx).unwrap();
        assert_eq!(store.damaged_topics(), vec!["t".to_owned()]);
        assert!(store.topic("t").is_none());
        let e = store.get_or_create("t", None).err().unwrap();
        assert!(matches!(e, StoreError::Damaged { .. }), "{e}");
        // Nothing was rewritten.
        assert_eq!(std::fs::read(&meta).unwrap(), &text[..text.len() / 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_first_writes_to_a_new_topic_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let store = Store::open(cfg(dir.path()), rx).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = store.clone();
                tokio::task::spawn_blocking(move || {
                    s.get_or_create("new", None).map(|t| t.partitions.len())
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.await.unwrap().unwrap(), 2);
        }
    }
}
