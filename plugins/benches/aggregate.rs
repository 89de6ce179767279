//! Aggregation throughput, memory per open group, and snapshot size and
//! time, for docs/benchmarks.md: `cargo bench -p weir-plugins --bench aggregate`.
//!
//! Prints medians of several runs, and the throughput of the same counting
//! in plain Rust (a `BTreeMap` of count and sum per group) measured in the
//! same run as the baseline. Not a test: nothing here passes or fails.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use weir_core::event::Fields;
use weir_core::metrics::Registry;
use weir_core::{Event, Metadata, Value};
use weir_plugins::{Emitter, Transform, TransformContext};

/// Counts live heap bytes, to measure memory per open group.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const GROUPS: usize = 10_000;
const EVENTS: usize = 2_000_000;
const RUNS: usize = 5;

const BASIC: &str = "n: { fn: count }, mean_temp: { fn: mean, field: temp }";
const WITH_P95: &str =
    "n: { fn: count }, mean_temp: { fn: mean, field: temp }, p95_temp: { fn: percentile, field: temp, q: 0.95 }";
const WITH_DISTINCT: &str =
    "n: { fn: count }, mean_temp: { fn: mean, field: temp }, p95_temp: { fn: percentile, field: temp, q: 0.95 }, users: { fn: distinct, field: user }";

fn build(aggregates: &str, window: &str) -> Box<dyn Transform> {
    let yaml = format!(
        "window: {window}\nevent_time: {{ field: ts }}\ngroup_by: [device]\nmax_groups: 1000000\naggregates: {{ {aggregates} }}"
    );
    let kind = weir_plugins::registry::transforms()
        .into_iter()
        .find(|k| k.name == "aggregate")
        .expect("aggregate is compiled in");
    let cfg = (kind.parse)(serde_yaml::from_str(&yaml).expect("yaml"))
        .ok()
        .expect("config");
    cfg.build(TransformContext {
        id: "bench".into(),
        metrics: Registry::new(),
    })
    .expect("build")
}

/// Reading `i`: device `i % GROUPS`, event time advancing one second per
/// `GROUPS` events (so a 10 s window holds 10 readings per device), a
/// temperature in [15, 35) and one of `users` users.
fn reading(i: usize, users: usize) -> Event {
    let mut f = Fields::with_capacity(4);
    f.insert("device", Value::String(format!("device-{:05}", i % GROUPS)));
    f.insert(
        "temp",
        Value::Float(15.0 + (i * 7919 % 2000) as f64 / 100.0),
    );
    f.insert("ts", Value::Int(1_764_000_000 + (i / GROUPS) as i64));
    f.insert("user", Value::Int((i / GROUPS % users) as i64));
    Event {
        timestamp: 0,
        fields: f,
        meta: Metadata::default(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Events per second through the transform, in batches of 1,024 like the runtime.
fn throughput(aggregates: &str, window: &str) -> f64 {
    let rates = (0..RUNS)
        .map(|_| {
            let events: Vec<Event> = (0..EVENTS).map(|i| reading(i, 5)).collect();
            let mut t = build(aggregates, window);
            let start = Instant::now();
            let mut emitted = 0usize;
            let mut it = events.into_iter().peekable();
            while it.peek().is_some() {
                let mut out = Emitter::new("bench", &[], 0);
                for e in it.by_ref().take(1024) {
                    t.process(e, &mut out);
                }
                emitted += out.take().0.iter().map(|e| e.events.len()).sum::<usize>();
            }
            let secs = start.elapsed().as_secs_f64();
            assert!(emitted > 0, "windows closed during the run");
            EVENTS as f64 / secs
        })
        .collect();
    median(rates)
}

/// The baseline: count and sum per device in a `BTreeMap`, no windows.
fn baseline() -> f64 {
    let rates = (0..RUNS)
        .map(|_| {
            let events: Vec<Event> = (0..EVENTS).map(|i| reading(i, 5)).collect();
            let start = Instant::now();
            let mut groups: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
            for e in events {
                let Some(Value::String(d)) = e.fields.get("device") else {
                    continue;
                };
                let temp = match e.fields.get("temp") {
                    Some(Value::Float(f)) => *f,
                    _ => 0.0,
                };
                let g = match groups.get_mut(d.as_str()) {
                    Some(g) => g,
                    None => groups.entry(d.clone()).or_default(),
                };
                g.0 += 1;
                g.1 += temp;
            }
            assert_eq!(groups.len(), GROUPS);
            EVENTS as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    median(rates)
}

/// Heap bytes per open group with `readings` readings per group in one
/// open window, and the snapshot's size and encode/restore times.
fn state(aggregates: &str, readings: usize, users: usize) -> (f64, usize, f64, f64) {
    let mut t = build(aggregates, "{ kind: tumbling, size: 1h }");
    let mut out = Emitter::new("bench", &[], 0);
    let before = LIVE.load(Ordering::Relaxed);
    // Events are made one at a time and consumed: what stays allocated is state.
    for i in 0..GROUPS * readings {
        let mut e = reading(i, users);
        e.fields.insert("ts", Value::Int(1_764_000_000)); // one window
        t.process(e, &mut out);
    }
    let per_group = (LIVE.load(Ordering::Relaxed) - before) as f64 / GROUPS as f64;
    assert!(out.take().0.is_empty(), "nothing closed");
    let mut snap = Vec::new();
    let encode = median(
        (0..RUNS)
            .map(|_| {
                let s = Instant::now();
                snap = t.snapshot().expect("snapshot");
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    let restore = median(
        (0..RUNS)
            .map(|_| {
                let mut fresh = build(aggregates, "{ kind: tumbling, size: 1h }");
                let s = Instant::now();
                fresh.restore(&snap).expect("restore");
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    (per_group, snap.len(), encode, restore)
}

fn main() {
    println!("aggregate: {GROUPS} groups, {EVENTS} events per run, median of {RUNS} runs");
    let base = baseline();
    println!("  baseline (BTreeMap count+sum per group, no windows): {base:>12.0} events/s");
    for (name, aggs) in [
        ("count+mean", BASIC),
        ("count+mean+p95", WITH_P95),
        ("count+mean+p95+distinct", WITH_DISTINCT),
    ] {
        let r = throughput(aggs, "{ kind: tumbling, size: 10s }");
        println!(
            "  tumbling 10s, {name:<24} {r:>12.0} events/s  ({:.2}x the baseline's time)",
            base / r
        );
    }
    let r = throughput(BASIC, "{ kind: hopping, size: 10s, hop: 5s }");
    println!(
        "  hopping 10s/5s, count+mean            {r:>12.0} events/s  ({:.2}x)",
        base / r
    );
    println!("memory per open group and snapshot of {GROUPS} open groups:");
    for (name, aggs, readings, users) in [
        ("count+mean, 10 readings", BASIC, 10, 5),
        ("+p95, 10 readings", WITH_P95, 10, 5),
        ("+p95, 100 readings", WITH_P95, 100, 5),
        ("+p95+distinct (5 users)", WITH_DISTINCT, 10, 5),
        ("+p95+distinct (600 users)", WITH_DISTINCT, 600, 600),
    ] {
        let (per_group, size, enc, res) = state(aggs, readings, users);
        println!(
            "  {name:<28} {per_group:>8.0} B/group  snapshot {:>8.1} KiB ({:.0} B/group), encode {enc:.1} ms, restore {res:.1} ms",
            size as f64 / 1024.0,
            size as f64 / GROUPS as f64
        );
    }
}
