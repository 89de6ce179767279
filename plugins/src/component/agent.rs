//! What a sink may know about the agent it runs in: its id, version, start
//! time and a snapshot of every sink's channel and delivery figures, read
//! back from the agent's root metrics registry. The collector sink reports
//! this in its heartbeat (`sinks/collector/heartbeat.rs`).
//!
//! The snapshot reads the same series `/metrics` serves (`weir_channel_*`,
//! `weir_sink_*`, labelled by `component`), so the heartbeat and Prometheus
//! can never disagree.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use weir_core::metrics::Registry;

/// A cheap, cloneable handle on the agent's identity and figures.
#[derive(Clone, Debug)]
pub struct AgentInfo(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    id: String,
    version: String,
    started: SystemTime,
    started_at: Instant,
    metrics: Registry,
    /// (id, type) of every sink of the pipeline (replaced by a reload).
    sinks: Mutex<Vec<(String, String)>>,
}

/// One sink's figures now.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSnapshot {
    pub id: String,
    pub type_name: String,
    pub backlog_events: u64,
    pub backlog_bytes: u64,
    pub capacity_bytes: u64,
    pub lag_seconds: f64,
    /// Events the destination confirmed since the agent started (a counter).
    pub acked_events: u64,
    pub failing: bool,
}

impl AgentInfo {
    /// The agent `id` of `version`, whose sinks are `sinks` (id, type) and
    /// whose root registry is `metrics`; started now.
    pub fn new(id: String, version: &str, metrics: Registry, sinks: Vec<(String, String)>) -> Self {
        AgentInfo(Arc::new(Inner {
            id,
            version: version.to_owned(),
            started: SystemTime::now(),
            started_at: Instant::now(),
            metrics,
            sinks: Mutex::new(sinks),
        }))
    }

    /// Replaces the list of sinks (id, type): the runtime calls it when a
    /// reload adds or removes sinks, so heartbeats list the current ones.
    pub fn set_sinks(&self, sinks: Vec<(String, String)>) {
        *self.0.sinks.lock().unwrap_or_else(|p| p.into_inner()) = sinks;
    }

    /// An agent with no sinks and no metrics (tests, tools).
    pub fn unknown() -> Self {
        Self::new("unknown".into(), "0", Registry::new(), Vec::new())
    }

    /// The agent id of a host: the host name alone for the default data
    /// directory (`data_dir` `None`), else the host name and a short hash of
    /// the directory, so two agents on one machine are told apart.
    pub fn id_for(host: &str, data_dir: Option<&Path>) -> String {
        match data_dir {
            None => host.to_owned(),
            Some(d) => {
                // FNV-1a: stable across builds and platforms, unlike std's hasher.
                let mut h: u32 = 0x811c_9dc5;
                for b in d.as_os_str().as_encoded_bytes() {
                    h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
                }
                format!("{host}-{h:08x}")
            }
        }
    }

    /// The agent's id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The agent's version.
    pub fn version(&self) -> &str {
        &self.0.version
    }

    /// When the pipeline started.
    pub fn started(&self) -> SystemTime {
        self.0.started
    }

    /// Seconds since the pipeline started.
    pub fn uptime_secs(&self) -> f64 {
        self.0.started_at.elapsed().as_secs_f64()
    }

    /// Every sink's figures now.
    pub fn sinks(&self) -> Vec<SinkSnapshot> {
        let by = |name: &str| -> HashMap<String, f64> {
            let mut m = HashMap::new();
            for (labels, v) in self.0.metrics.samples(name) {
                if let Some((_, c)) = labels.iter().find(|(k, _)| k == "component") {
                    *m.entry(c.clone()).or_insert(0.0) += v;
                }
            }
            m
        };
        let events = by("weir_channel_events");
        let bytes = by("weir_channel_bytes");
        let capacity = by("weir_channel_capacity_bytes");
        let lag = by("weir_channel_lag_seconds");
        let acked = by("weir_sink_acked_events_total");
        let failing = by("weir_sink_failing");
        let get = |m: &HashMap<String, f64>, id: &str| m.get(id).copied().unwrap_or(0.0);
        let sinks = self
            .0
            .sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        sinks
            .iter()
            .map(|(id, t)| SinkSnapshot {
                id: id.clone(),
                type_name: t.clone(),
                backlog_events: get(&events, id).max(0.0) as u64,
                backlog_bytes: get(&bytes, id).max(0.0) as u64,
                capacity_bytes: get(&capacity, id).max(0.0) as u64,
                lag_seconds: get(&lag, id).max(0.0),
                acked_events: get(&acked, id).max(0.0) as u64,
                failing: get(&failing, id) > 0.0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_reads_each_sinks_series_and_only_its_own() {
        let root = Registry::new();
        let a = root.component("a", "collector");
        a.gauge("weir_channel_events", "", &[]).set(7);
        a.gauge("weir_channel_capacity_bytes", "", &[]).set(1000);
        a.dynamic("weir_channel_bytes", "", "gauge", |e| e(&[], 70.0));
        a.dynamic("weir_channel_lag_seconds", "", "gauge", |e| e(&[], 1.5));
        a.counter("weir_sink_acked_events_total", "", &[]).add(42);
        a.gauge("weir_sink_failing", "", &[]).set(1);
        // A transform's log has channel series too; it is not a sink.
        root.component("t", "window")
            .gauge("weir_channel_events", "", &[])
            .set(99);
        let info = AgentInfo::new(
            "h".into(),
            "1.2.3",
            root,
            vec![
                ("a".into(), "collector".into()),
                ("b".into(), "file".into()),
            ],
        );
        let s = info.sinks();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            SinkSnapshot {
                id: "a".into(),
                type_name: "collector".into(),
                backlog_events: 7,
                backlog_bytes: 70,
                capacity_bytes: 1000,
                lag_seconds: 1.5,
                acked_events: 42,
                failing: true,
            }
        );
        assert_eq!(s[1].backlog_events, 0);
        assert!(!s[1].failing);
    }

    #[test]
    fn agent_ids_tell_data_directories_apart() {
        assert_eq!(AgentInfo::id_for("edge", None), "edge");
        let a = AgentInfo::id_for("edge", Some(Path::new("/srv/a")));
        let b = AgentInfo::id_for("edge", Some(Path::new("/srv/b")));
        assert!(
            a.starts_with("edge-") && a.len() == "edge-".len() + 8,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(a, AgentInfo::id_for("edge", Some(Path::new("/srv/a"))));
    }
}
