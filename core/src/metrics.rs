//! A small metrics registry: counters, gauges and histograms with labels,
//! rendered in the Prometheus text format. Components get handles once at
//! build time; the hot path is a relaxed atomic add.
//!
//! # Labels
//! Every series of a component carries the same two labels first,
//! `component` (its id) and `component_type` (its `type:` name), then
//! `output` where a metric is per output, then metric-specific ones such as
//! `reason`. The runtime hands each component a [`Registry::scoped`] view
//! that adds the first two, so a component names only its own labels.
//!
//! # Computed at scrape time
//! Values that are cheap to read but change without an event (the age of
//! the oldest unacknowledged record, the process's RSS, a topic's end
//! offset) are registered as functions ([`Registry::dynamic`]) called by
//! [`Registry::render`]; such a function must not call back into the registry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Labels = Vec<(String, String)>;

/// Emits one sample (its labels besides the registry's scope, and its value).
pub type Emit<'a> = &'a mut dyn FnMut(&[(&str, &str)], f64);
type DynamicFn = Arc<dyn Fn(Emit<'_>) + Send + Sync>;

#[derive(Default)]
struct Family {
    help: &'static str,
    kind: &'static str,
    counters: BTreeMap<Labels, Arc<AtomicU64>>,
    gauges: BTreeMap<Labels, Arc<AtomicI64>>,
    histograms: BTreeMap<Labels, Arc<HistogramInner>>,
    /// Functions producing samples at render time, by the scope that registered them.
    dynamic: BTreeMap<Labels, DynamicFn>,
}

/// The set of metrics of one process, or a view of it that adds labels.
#[derive(Default, Clone)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<&'static str, Family>>>,
    /// Labels this view puts first on every series it creates.
    scope: Arc<Labels>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("scope", &self.scope)
            .finish()
    }
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

/// Bucket bounds (seconds) for request and send latencies: 1 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// One count per bound, plus the +Inf bucket; not cumulative.
    buckets: Vec<AtomicU64>,
    /// The sum of observations, as f64 bits.
    sum: AtomicU64,
}

/// A distribution of observed values (latencies) in fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(Arc::new(HistogramInner::new(LATENCY_BUCKETS)))
    }
}

impl HistogramInner {
    fn new(bounds: &'static [f64]) -> Self {
        HistogramInner {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let i = self.0.bounds.partition_point(|b| *b < v);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .0
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }
    /// Records the seconds elapsed since `start`.
    pub fn observe_since(&self, start: std::time::Instant) {
        self.observe(start.elapsed().as_secs_f64());
    }
    /// How many observations were made.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

impl Registry {
    /// A new, empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A view of the same registry that puts `labels` first on every series
    /// it creates (after this view's own). A label the caller also passes is
    /// taken from the scope, so a component cannot mislabel itself.
    pub fn scoped(&self, labels: &[(&str, &str)]) -> Registry {
        let mut scope = (*self.scope).clone();
        for (k, v) in labels {
            scope.retain(|(sk, _)| sk != k);
            scope.push((k.to_string(), v.to_string()));
        }
        Registry {
            families: self.families.clone(),
            scope: Arc::new(scope),
        }
    }

    /// The view of component `id` of type `type_name`: its series carry
    /// `component` and `component_type`.
    pub fn component(&self, id: &str, type_name: &str) -> Registry {
        self.scoped(&[("component", id), ("component_type", type_name)])
    }

    /// The labels this view adds.
    pub fn scope(&self) -> Vec<(String, String)> {
        (*self.scope).clone()
    }

    fn labels(&self, l: &[(&str, &str)]) -> Labels {
        let mut out = (*self.scope).clone();
        for (k, v) in l {
            if !out.iter().any(|(sk, _)| sk == k) {
                out.push((k.to_string(), v.to_string()));
            }
        }
        out
    }

    fn family<T>(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        f: impl FnOnce(&mut Family) -> T,
    ) -> T {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams.entry(name).or_insert_with(|| Family {
            help,
            kind,
            ..Default::default()
        });
        f(fam)
    }

    /// The counter `name` with these labels, created at zero on first use.
    pub fn counter(&self, name: &'static str, help: &'static str, l: &[(&str, &str)]) -> Counter {
        let labels = self.labels(l);
        self.family(name, help, "counter", |f| {
            Counter(f.counters.entry(labels).or_default().clone())
        })
    }

    /// The gauge `name` with these labels, created at zero on first use.
    pub fn gauge(&self, name: &'static str, help: &'static str, l: &[(&str, &str)]) -> Gauge {
        let labels = self.labels(l);
        self.family(name, help, "gauge", |f| {
            Gauge(f.gauges.entry(labels).or_default().clone())
        })
    }

    /// The histogram `name` with these labels and [`LATENCY_BUCKETS`].
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        l: &[(&str, &str)],
    ) -> Histogram {
        let labels = self.labels(l);
        self.family(name, help, "histogram", |f| {
            Histogram(
                f.histograms
                    .entry(labels)
                    .or_insert_with(|| Arc::new(HistogramInner::new(LATENCY_BUCKETS)))
                    .clone(),
            )
        })
    }

    /// Registers `f` to produce samples of `name` (a `gauge` or `counter`)
    /// each time the registry is rendered, labelled with this view's scope
    /// and what `f` passes. Registering again from the same scope replaces
    /// the previous function (a component rebuilt by a reload). `f` must not
    /// call back into the registry; hold what it reads weakly if the owner
    /// can go away.
    pub fn dynamic(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        f: impl Fn(Emit<'_>) + Send + Sync + 'static,
    ) {
        let scope = (*self.scope).clone();
        self.family(name, help, kind, |fam| {
            fam.dynamic.insert(scope, Arc::new(f));
        })
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
            for (l, h) in &fam.histograms {
                render_histogram(&mut out, name, l, h);
            }
            for (scope, f) in &fam.dynamic {
                f(&mut |l: &[(&str, &str)], v: f64| {
                    let mut labels = scope.clone();
                    labels.extend(l.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                    let _ = writeln!(out, "{name}{} {}", fmt_labels(&labels), fmt_f64(v));
                });
            }
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, l: &Labels, h: &HistogramInner) {
    let mut cumulative = 0u64;
    for (i, b) in h.buckets.iter().enumerate() {
        cumulative += b.load(Ordering::Relaxed);
        let le = h.bounds.get(i).map_or("+Inf".to_owned(), |b| fmt_f64(*b));
        let mut labels = l.clone();
        labels.push(("le".to_owned(), le));
        let _ = writeln!(out, "{name}_bucket{} {cumulative}", fmt_labels(&labels));
    }
    let sum = f64::from_bits(h.sum.load(Ordering::Relaxed));
    let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(l), fmt_f64(sum));
    let _ = writeln!(out, "{name}_count{} {cumulative}", fmt_labels(l));
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
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

    #[test]
    fn a_component_view_labels_every_series_and_wins_over_the_caller() {
        let r = Registry::new();
        let c = r.component("in", "file");
        c.counter(
            "weir_x_total",
            "X.",
            &[("component", "forged"), ("reason", "r")],
        )
        .inc();
        let text = r.render();
        assert!(
            text.contains("weir_x_total{component=\"in\",component_type=\"file\",reason=\"r\"} 1"),
            "{text}"
        );
        assert!(!text.contains("forged"));
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let r = Registry::new();
        let h = r.histogram("weir_t_seconds", "T.", &[("route", "/a")]);
        h.observe(0.003);
        h.observe(0.003);
        h.observe(100.0);
        let text = r.render();
        assert!(text.contains("# TYPE weir_t_seconds histogram"));
        assert!(text.contains("weir_t_seconds_bucket{route=\"/a\",le=\"0.0025\"} 0"));
        assert!(text.contains("weir_t_seconds_bucket{route=\"/a\",le=\"0.005\"} 2"));
        assert!(text.contains("weir_t_seconds_bucket{route=\"/a\",le=\"30\"} 2"));
        assert!(text.contains("weir_t_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3"));
        assert!(text.contains("weir_t_seconds_sum{route=\"/a\"} 100.006"));
        assert!(text.contains("weir_t_seconds_count{route=\"/a\"} 3"));
    }

    #[test]
    fn dynamic_samples_are_computed_at_render_and_replaced_per_scope() {
        let r = Registry::new();
        let s = r.scoped(&[("component", "k")]);
        s.dynamic("weir_age_seconds", "Age.", "gauge", |emit| {
            emit(&[("part", "0")], 1.5)
        });
        s.dynamic("weir_age_seconds", "Age.", "gauge", |emit| {
            emit(&[("part", "1")], 2.0)
        });
        let text = r.render();
        assert!(
            text.contains("weir_age_seconds{component=\"k\",part=\"1\"} 2\n"),
            "{text}"
        );
        assert!(!text.contains("part=\"0\""));
    }
}
