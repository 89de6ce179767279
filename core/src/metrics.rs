//! A small metrics registry: counters and gauges with labels, rendered in the
//! Prometheus text format. Components get handles once at build time; the hot
//! path is a relaxed atomic add.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Labels = Vec<(String, String)>;

#[derive(Default)]
struct Family {
    help: &'static str,
    kind: &'static str,
    counters: BTreeMap<Labels, Arc<AtomicU64>>,
    gauges: BTreeMap<Labels, Arc<AtomicI64>>,
}

/// The set of metrics of one process.
#[derive(Default, Clone)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<&'static str, Family>>>,
}

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds `d` (may be negative).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn labels(l: &[(&str, &str)]) -> Labels {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Registry {
    /// A new, empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter `name` with these labels, created at zero on first use.
    pub fn counter(&self, name: &'static str, help: &'static str, l: &[(&str, &str)]) -> Counter {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams.entry(name).or_insert_with(|| Family {
            help,
            kind: "counter",
            ..Default::default()
        });
        Counter(fam.counters.entry(labels(l)).or_default().clone())
    }

    /// The gauge `name` with these labels, created at zero on first use.
    pub fn gauge(&self, name: &'static str, help: &'static str, l: &[(&str, &str)]) -> Gauge {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams.entry(name).or_insert_with(|| Family {
            help,
            kind: "gauge",
            ..Default::default()
        });
        Gauge(fam.gauges.entry(labels(l)).or_default().clone())
    }

    /// All metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, fam) in fams.iter() {
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind);
            for (l, v) in &fam.counters {
                let _ = writeln!(out, "{name}{} {}", fmt_labels(l), v.load(Ordering::Relaxed));
            }
            for (l, v) in &fam.gauges {
                let _ = writeln!(out, "{name}{} {}", fmt_labels(l), v.load(Ordering::Relaxed));
            }
        }
        out
    }
}

fn fmt_labels(l: &Labels) -> String {
    if l.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = l
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_escaped_labels() {
        let r = Registry::new();
        let c = r.counter("weir_events_total", "Events.", &[("component", "a\"b")]);
        c.add(3);
        r.counter("weir_events_total", "Events.", &[("component", "a\"b")])
            .inc();
        let g = r.gauge("weir_bytes", "Bytes.", &[]);
        g.set(-2);
        let text = r.render();
        assert!(text.contains("# TYPE weir_events_total counter"));
        assert!(text.contains("weir_events_total{component=\"a\\\"b\"} 4"));
        assert!(text.contains("weir_bytes -2"));
    }
}
