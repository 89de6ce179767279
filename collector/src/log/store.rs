//! Topics: creation on first write, reopening on start, and the background
//! tasks each partition needs (group-commit sync, retention).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{error, info};
use weir_core::protocol::valid_name;

use super::partition::{Partition, PartitionLimits};

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
}

/// All topics of a collector.
pub struct Store {
    cfg: StoreConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    shutdown: watch::Receiver<bool>,
}

impl Store {
    /// Opens every topic under the data dir and starts its partitions' tasks.
    /// Must be called within a tokio runtime.
    pub fn open(
        cfg: StoreConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Store>, StoreError> {
        let store = Arc::new(Store {
            cfg,
            topics: RwLock::new(HashMap::new()),
            shutdown,
        });
        let tdir = store.cfg.data_dir.join("topics");
        std::fs::create_dir_all(&tdir).map_err(|source| StoreError::Io {
            topic: "*".into(),
            source,
        })?;
        let entries = std::fs::read_dir(&tdir).map_err(|source| StoreError::Io {
            topic: "*".into(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) {
                continue;
            }
            let meta = std::fs::read(entry.path().join("topic.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<TopicMeta>(&b).ok());
            if let Some(meta) = meta {
                store.open_topic(&name, meta.partitions)?;
            }
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
        if !valid_name(name) {
            return Err(StoreError::InvalidName(name.to_owned()));
        }
        let n = partitions.unwrap_or(self.cfg.default_partitions);
        if n == 0 || n > 1024 {
            return Err(StoreError::InvalidPartitions(n));
        }
        let dir = self.topic_dir(name);
        let io = |source| StoreError::Io {
            topic: name.to_owned(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let meta = serde_json::to_vec(&TopicMeta { partitions: n })
            .map_err(|e| io(io::Error::other(e)))?;
        write_atomic(&dir.join("topic.json"), &meta).map_err(io)?;
        info!(topic = name, partitions = n, "Created topic.");
        self.open_topic(name, n)
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
        };
        let mut partitions = Vec::with_capacity(n as usize);
        for id in 0..n {
            let dir = self.topic_dir(name).join(id.to_string());
            let p = Partition::open(&dir, id, limits.clone()).map_err(|source| StoreError::Io {
                topic: name.to_owned(),
                source,
            })?;
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

    /// Syncs every partition; used at shutdown. Blocking.
    pub fn sync_all(&self) {
        for t in self.topics() {
            for p in &t.partitions {
                if let Err(e) = p.sync() {
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
        loop {
            tokio::select! {
                _ = p.dirty.notified() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            if policy == FsyncPolicy::Interval {
                tokio::time::sleep(interval).await;
            }
            let part = p.clone();
            match tokio::task::spawn_blocking(move || part.sync()).await {
                Ok(Ok(())) => {}
                // The partition has marked itself failed and logged why.
                Ok(Err(_)) => break,
                Err(e) => {
                    error!(error = %e, "Sync task panicked.");
                    break;
                }
            }
        }
    });
}

/// Writes a small file atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
