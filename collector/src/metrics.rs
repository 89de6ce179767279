//! What the collector tells Prometheus, beyond plain counters: the log by
//! topic and partition, consumer groups and their lag, producers, request
//! latency by route, rejections by reason, the process, and whether storage
//! takes writes (for `/ready`).
//!
//! Most of it is read at scrape time from the store (a lock per partition,
//! no I/O) and from the groups' small offset files (bounded by
//! [`MAX_GROUP_FILES`]). Producers are tracked as batches arrive, in a table
//! bounded by [`MAX_TRACKED_PRODUCERS`]; only the [`LISTED_PRODUCERS`] most
//! recently seen get labelled series, the rest are counted in
//! `weir_collector_producers_unlisted` — producer ids are chosen by clients
//! and a flood of them must not become a flood of series.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};
use weir_core::batch::BatchHeader;
use weir_core::metrics::{Emit, Histogram, Registry};
use weir_core::protocol::ErrorKind;

use crate::log::Store;

/// Producers whose series are listed, the most recently seen first.
pub const LISTED_PRODUCERS: usize = 50;
/// Producers remembered at most; the least recently seen is forgotten first.
pub const MAX_TRACKED_PRODUCERS: usize = 10_000;
/// Group offset files read per scrape at most.
pub const MAX_GROUP_FILES: usize = 1_000;
/// The file the storage probe writes, fsyncs and removes.
pub const PROBE_FILE: &str = ".ready-probe";

type ProducerKey = (i64, String, u32);
/// (last sequence, last seen in Unix seconds).
type Seen = (i32, f64);

#[derive(Default)]
struct Producers {
    /// (producer id, topic, partition) → (last sequence, last seen, unix seconds).
    seen: HashMap<ProducerKey, (i32, f64)>,
}

/// The collector's observed state, shared by the service and the HTTP front-end.
pub struct Observed {
    registry: Registry,
    producers: Arc<Mutex<Producers>>,
    /// The last storage probe's error; `None` while writes work.
    storage: Arc<Mutex<Option<String>>>,
    store: Weak<Store>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Observed {
    /// Registers everything on `registry`; `data_dir` holds the groups.
    pub fn register(registry: &Registry, store: &Arc<Store>, data_dir: &Path) -> Arc<Observed> {
        weir_core::process_metrics::register(
            registry,
            "weir_collector_build_info",
            env!("CARGO_PKG_VERSION"),
        );
        let o = Arc::new(Observed {
            registry: registry.clone(),
            producers: Arc::default(),
            storage: Arc::default(),
            store: Arc::downgrade(store),
        });
        register_partitions(registry, Arc::downgrade(store));
        register_groups(registry, Arc::downgrade(store), data_dir.join("groups"));
        register_producers(registry, Arc::downgrade(&o.producers));
        let storage = Arc::downgrade(&o.storage);
        registry.dynamic(
            "weir_collector_storage_writable",
            "1 while the data directory takes writes (the periodic probe and every partition's last fsync succeeded), else 0.",
            "gauge",
            move |emit| {
                if let Some(s) = storage.upgrade() {
                    emit(&[], f64::from(u8::from(lock(&s).is_none())));
                }
            },
        );
        o
    }

    /// Records an appended batch of a producer.
    pub fn produced(&self, topic: &str, partition: u32, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let mut p = lock(&self.producers);
        let key = (h.producer_id, topic.to_owned(), partition);
        if !p.seen.contains_key(&key) && p.seen.len() >= MAX_TRACKED_PRODUCERS {
            let oldest = p
                .seen
                .iter()
                .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                p.seen.remove(&k);
            }
        }
        p.seen.insert(key, (h.last_sequence(), now()));
    }

    /// Counts a refused batch by the kind of refusal.
    pub fn rejected(&self, kind: ErrorKind) {
        self.registry
            .counter(
                "weir_collector_rejected_batches_total",
                "Batches refused, by reason (corrupt_batch, out_of_order_sequence, producer_fenced, conflicting_batch, storage_error, ...).",
                &[("reason", kind.as_str())],
            )
            .inc();
    }

    /// The latency histogram of requests to `route` (a route pattern or a
    /// Kafka API name: a bounded set).
    pub fn request_latency(&self, route: &str) -> Histogram {
        self.registry.histogram(
            "weir_collector_request_duration_seconds",
            "Time to answer a request, by route (HTTP) or API (Kafka).",
            &[("route", route)],
        )
    }

    /// Counts an answered request by route and status code.
    pub fn answered(&self, route: &str, code: u16) {
        let code = code.to_string();
        self.registry
            .counter(
                "weir_collector_requests_total",
                "Requests answered, by route and status code.",
                &[("route", route), ("code", code.as_str())],
            )
            .inc();
    }

    /// Why storage is not writable, or `None` when it is.
    pub fn not_ready(&self) -> Option<String> {
        if let Some(e) = lock(&self.storage).clone() {
            return Some(format!("storage is not writable: {e}"));
        }
        let store = self.store.upgrade()?;
        for t in store.topics() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.durable().borrow().failed {
                    return Some(format!(
                        "partition {}/{i} failed an fsync; restart the collector",
                        t.name
                    ));
                }
            }
        }
        None
    }

    /// Probes every `every` that `data_dir` takes a write and an fsync,
    /// until `stop`; the result feeds `/ready`. A change is logged once.
    pub fn spawn_storage_probe(
        self: &Arc<Self>,
        data_dir: PathBuf,
        every: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let dir = data_dir.clone();
                let res = tokio::task::spawn_blocking(move || probe(&dir))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                let now = res.err().map(|e| weir_core::errors::chain(&e));
                let mut cur = lock(&me.storage);
                match (&*cur, &now) {
                    (None, Some(e)) => {
                        warn!(dir = %data_dir.display(), error = %e, "Storage probe failed: the data directory does not take writes; /ready answers 503.")
                    }
                    (Some(_), None) => {
                        info!(dir = %data_dir.display(), "Storage probe succeeded again; /ready answers 200.")
                    }
                    _ => {}
                }
                *cur = now;
            }
        });
    }
}

/// Writes, fsyncs and removes a small file in `dir`.
fn probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(PROBE_FILE);
    let mut f = std::fs::File::create(&path)?;
    f.write_all(b"probe")?;
    f.sync_all()?;
    drop(f);
    std::fs::remove_file(&path)
}

/// The route pattern of an API path, for labels: a fixed, small set
/// (topic and group names are not labels here).
pub fn route_of(path: &str) -> &'static str {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match seg.as_slice() {
        ["v1", "topics"] => "/v1/topics",
        ["v1", "topics", _] => "/v1/topics/{topic}",
        ["v1", "produce", _, _] => "/v1/produce/{topic}/{partition}",
        ["v1", "producers"] => "/v1/producers",
        ["v1", "producers", _, _] => "/v1/producers/{id}/{topic}",
        ["v1", "fetch", _, _] => "/v1/fetch/{topic}/{partition}",
        ["v1", "offsets", _, _] => "/v1/offsets/{topic}/{partition}",
        ["v1", "groups", _, _] => "/v1/groups/{group}/{topic}",
        ["metrics"] => "/metrics",
        ["health"] => "/health",
        ["ready"] => "/ready",
        _ => "other",
    }
}

fn register_partitions(registry: &Registry, store: Weak<Store>) {
    type Pick = fn((i64, i64, u64, usize)) -> f64;
    let families: [(&'static str, &'static str, Pick); 4] = [
        (
            "weir_collector_partition_end_offset",
            "The partition's durable end offset (the next offset to be written).",
            |s| s.1 as f64,
        ),
        (
            "weir_collector_partition_start_offset",
            "The partition's first retained offset.",
            |s| s.0 as f64,
        ),
        (
            "weir_collector_partition_bytes",
            "Bytes of the partition's segments.",
            |s| s.2 as f64,
        ),
        (
            "weir_collector_partition_segments",
            "Segment files of the partition.",
            |s| s.3 as f64,
        ),
    ];
    for (name, help, pick) in families {
        let store = store.clone();
        registry.dynamic(name, help, "gauge", move |emit| {
            let Some(store) = store.upgrade() else {
                return;
            };
            for t in store.topics() {
                for (i, p) in t.partitions.iter().enumerate() {
                    let part = i.to_string();
                    emit(
                        &[("topic", t.name.as_str()), ("partition", part.as_str())],
                        pick(p.stats()),
                    );
                }
            }
        });
    }
    registry.dynamic(
        "weir_collector_topics",
        "Topics in the log.",
        "gauge",
        move |emit| {
            if let Some(s) = store.upgrade() {
                emit(&[], s.topics().len() as f64);
            }
        },
    );
}

/// Every (group, topic, partition, committed offset) under `dir`, bounded.
fn committed(dir: &Path) -> Vec<(String, String, u32, i64)> {
    let mut out = Vec::new();
    let mut files = 0;
    let Ok(groups) = std::fs::read_dir(dir) else {
        return out;
    };
    for g in groups.flatten() {
        let Ok(topics) = std::fs::read_dir(g.path()) else {
            continue;
        };
        let group = g.file_name().to_string_lossy().into_owned();
        for t in topics.flatten() {
            files += 1;
            if files > MAX_GROUP_FILES {
                return out;
            }
            let name = t.file_name().to_string_lossy().into_owned();
            let Some(topic) = name.strip_suffix(".json") else {
                continue;
            };
            let offsets: HashMap<u32, i64> = std::fs::read(t.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            for (p, o) in offsets {
                out.push((group.clone(), topic.to_owned(), p, o));
            }
        }
    }
    out.sort();
    out
}

fn register_groups(registry: &Registry, store: Weak<Store>, dir: PathBuf) {
    let d = dir.clone();
    registry.dynamic(
        "weir_collector_group_committed_offset",
        "The offset a consumer group committed, by group, topic and partition.",
        "gauge",
        move |emit| {
            for (g, t, p, o) in committed(&d) {
                let p = p.to_string();
                emit(
                    &[
                        ("group", g.as_str()),
                        ("topic", t.as_str()),
                        ("partition", p.as_str()),
                    ],
                    o as f64,
                );
            }
        },
    );
    registry.dynamic(
        "weir_collector_group_lag",
        "Records a consumer group has yet to read: the partition's end offset minus the group's committed offset.",
        "gauge",
        move |emit: Emit<'_>| {
            let Some(store) = store.upgrade() else {
                return;
            };
            for (g, t, p, o) in committed(&dir) {
                let Some(end) = store
                    .topic(&t)
                    .and_then(|topic| topic.partitions.get(p as usize).map(|x| x.bounds().1))
                else {
                    continue;
                };
                let lag = (end - o).max(0);
                let p = p.to_string();
                emit(
                    &[("group", g.as_str()), ("topic", t.as_str()), ("partition", p.as_str())],
                    lag as f64,
                );
            }
        },
    );
}

/// The listed producers (most recently seen first) and how many are not listed.
fn listed(p: &Producers) -> (Vec<(&ProducerKey, Seen)>, usize) {
    let mut all: Vec<_> = p.seen.iter().map(|(k, v)| (k, *v)).collect();
    all.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1).then_with(|| a.0.cmp(b.0)));
    let unlisted = all.len().saturating_sub(LISTED_PRODUCERS);
    all.truncate(LISTED_PRODUCERS);
    (all, unlisted)
}

fn register_producers(registry: &Registry, producers: Weak<Mutex<Producers>>) {
    type Pick = fn((i32, f64)) -> f64;
    let families: [(&'static str, &'static str, Pick); 2] = [
        (
            "weir_collector_producer_last_sequence",
            "The last sequence number appended for a producer, by producer id, topic and partition (the most recently seen producers only; see weir_collector_producers_unlisted).",
            |v| f64::from(v.0),
        ),
        (
            "weir_collector_producer_last_seen_timestamp_seconds",
            "When a producer's last batch was appended (Unix seconds), by producer id, topic and partition (the most recently seen producers only).",
            |v| v.1,
        ),
    ];
    for (name, help, pick) in families {
        let producers = producers.clone();
        registry.dynamic(name, help, "gauge", move |emit| {
            let Some(p) = producers.upgrade() else {
                return;
            };
            let p = lock(&p);
            for ((id, topic, part), v) in listed(&p).0 {
                let (id, part) = (id.to_string(), part.to_string());
                emit(
                    &[
                        ("producer_id", id.as_str()),
                        ("topic", topic.as_str()),
                        ("partition", part.as_str()),
                    ],
                    pick(v),
                );
            }
        });
    }
    let p2 = producers.clone();
    registry.dynamic(
        "weir_collector_producers",
        "Producer series (producer id, topic, partition) seen since start, up to the tracking bound.",
        "gauge",
        move |emit| {
            if let Some(p) = p2.upgrade() {
                emit(&[], lock(&p).seen.len() as f64);
            }
        },
    );
    registry.dynamic(
        "weir_collector_producers_unlisted",
        "Producer series tracked but not listed with labels (beyond the most recently seen).",
        "gauge",
        move |emit| {
            if let Some(p) = producers.upgrade() {
                emit(&[], listed(&lock(&p)).1 as f64);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, base_sequence: i32, record_count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            attributes: 0,
            last_offset_delta: record_count - 1,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence,
            record_count,
        }
    }

    #[test]
    fn only_the_most_recent_producers_are_listed_and_the_rest_counted() {
        let r = Registry::new();
        let producers: Arc<Mutex<Producers>> = Arc::default();
        register_producers(&r, Arc::downgrade(&producers));
        let o = Observed {
            registry: r.clone(),
            producers: producers.clone(),
            storage: Arc::default(),
            store: Weak::new(),
        };
        for id in 0..(LISTED_PRODUCERS as i64 + 10) {
            o.produced("logs", 0, &header(id, 0, 5));
        }
        o.produced("logs", 0, &header(3, 5, 5));
        let text = r.render();
        let listed = text
            .lines()
            .filter(|l| l.starts_with("weir_collector_producer_last_sequence{"))
            .count();
        assert_eq!(listed, LISTED_PRODUCERS);
        assert!(text.contains("weir_collector_producers 60"), "{text}");
        assert!(text.contains("weir_collector_producers_unlisted 10"));
        assert!(text.contains(
            "weir_collector_producer_last_sequence{producer_id=\"3\",topic=\"logs\",partition=\"0\"} 9"
        ));
    }

    #[test]
    fn the_tracking_table_is_bounded() {
        let o = Observed {
            registry: Registry::new(),
            producers: Arc::default(),
            storage: Arc::default(),
            store: Weak::new(),
        };
        for id in 0..(MAX_TRACKED_PRODUCERS as i64 + 5) {
            o.produced("t", 0, &header(id, 0, 1));
        }
        assert_eq!(lock(&o.producers).seen.len(), MAX_TRACKED_PRODUCERS);
    }

    #[test]
    fn the_storage_probe_fails_where_the_probe_file_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe(dir.path()).is_ok());
        assert!(!dir.path().join(PROBE_FILE).exists());
        std::fs::create_dir(dir.path().join(PROBE_FILE)).unwrap();
        assert!(probe(dir.path()).is_err());
    }

    #[test]
    fn routes_are_named_by_pattern_never_by_topic() {
        assert_eq!(
            route_of("/v1/produce/logs/3"),
            "/v1/produce/{topic}/{partition}"
        );
        assert_eq!(route_of("/v1/groups/g/logs"), "/v1/groups/{group}/{topic}");
        assert_eq!(route_of("/v1/topics/x"), "/v1/topics/{topic}");
        assert_eq!(route_of("/anything/else/here"), "other");
    }

    #[test]
    fn rejections_are_counted_by_their_kind() {
        let r = Registry::new();
        let o = Observed {
            registry: r.clone(),
            producers: Arc::default(),
            storage: Arc::default(),
            store: Weak::new(),
        };
        o.rejected(ErrorKind::CorruptBatch);
        o.rejected(ErrorKind::CorruptBatch);
        assert!(r
            .render()
            .contains("weir_collector_rejected_batches_total{reason=\"corrupt_batch\"} 2"));
    }
}
