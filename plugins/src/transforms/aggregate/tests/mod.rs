//! The transform as the runtime drives it: events in, windows out, timers,
//! dead letters, late events, limits, snapshots.

mod config;
mod functions;
mod snapshot;
mod windows;

use weir_core::event::Fields;
use weir_core::metrics::Registry;
use weir_core::{Event, Metadata, Value};

use crate::component::{
    Clock, Emitter, ManualClock, Transform, TransformConfig, TransformContext, ERRORS_OUTPUT,
};

use super::config::AggregateConfig;

pub const S: i64 = 1_000_000_000;

/// An aggregate, its clock and what it emitted, driven like the runtime
/// drives a stateful transform.
pub struct Harness {
    pub t: Box<dyn Transform>,
    pub clock: ManualClock,
    pub metrics: Registry,
    outputs: Vec<String>,
    pub windows: Vec<Event>,
    pub late: Vec<Event>,
    pub errors: Vec<Event>,
}

pub fn config(yaml: &str) -> AggregateConfig {
    serde_yaml::from_str(yaml).unwrap()
}

impl Harness {
    pub fn new(yaml: &str) -> Harness {
        let cfg = config(yaml);
        assert_eq!(cfg.problems(), Vec::<String>::new());
        let metrics = Registry::new();
        let t = cfg
            .build(TransformContext {
                id: "agg".into(),
                metrics: metrics.clone(),
            })
            .unwrap();
        Harness {
            t,
            clock: ManualClock::new(0),
            metrics,
            outputs: cfg.outputs(),
            windows: Vec::new(),
            late: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn emitter(&self) -> Emitter {
        Emitter::new("agg", &self.outputs, self.clock.now())
    }

    fn collect(&mut self, mut out: Emitter) {
        let (emitted, _) = out.take();
        for e in emitted {
            match e.output.as_deref() {
                None => self.windows.extend(e.events),
                Some("late") => self.late.extend(e.events),
                Some(ERRORS_OUTPUT) => self.errors.extend(e.events),
                Some(o) => panic!("unexpected output {o}"),
            }
        }
    }

    /// Processes one event at the clock's time.
    pub fn send(&mut self, e: Event) {
        let mut out = self.emitter();
        self.t.process(e, &mut out);
        self.collect(out);
    }

    /// Fires the timers due at the clock's time, as the runtime does on a tick.
    pub fn tick(&mut self) {
        let now = self.clock.now();
        let mut out = self.emitter();
        for _ in 0..1024 {
            match self.t.next_timer() {
                Some(t) if t <= now => self.t.on_timer(&mut out),
                _ => break,
            }
        }
        self.collect(out);
    }

    /// Sets the clock to `secs` and fires due timers.
    pub fn at(&mut self, secs: f64) {
        self.clock.set((secs * S as f64) as i64);
        self.tick();
    }

    pub fn counter(&self, name: &'static str, labels: &[(&str, &str)]) -> u64 {
        let mut l = vec![("component", "agg")];
        l.extend_from_slice(labels);
        self.metrics.counter(name, "", &l).get()
    }

    /// Takes the windows emitted so far.
    pub fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.windows)
    }
}

/// An event with these fields, stamped at `ts` seconds.
pub fn ev(ts: f64, fields: &[(&str, Value)]) -> Event {
    let mut f = Fields::new();
    for (k, v) in fields {
        f.insert(*k, v.clone());
    }
    Event {
        timestamp: (ts * S as f64) as i64,
        fields: f,
        meta: Metadata {
            source: "src".into(),
            host: "gw-1".into(),
            ..Metadata::default()
        },
    }
}

/// A reading: `device`, `temp` and `ts` (event time, seconds).
pub fn reading(device: &str, ts: f64, temp: f64) -> Event {
    ev(
        0.0,
        &[
            ("device", Value::from(device)),
            ("temp", Value::Float(temp)),
            ("ts", Value::Float(ts)),
        ],
    )
}

pub fn field<'a>(e: &'a Event, name: &str) -> &'a Value {
    e.fields.get(name).unwrap_or(&Value::Null)
}

pub fn float(e: &Event, name: &str) -> f64 {
    match field(e, name) {
        Value::Float(f) => *f,
        Value::Int(i) => *i as f64,
        other => panic!("{name} is {other:?}"),
    }
}

pub fn int(e: &Event, name: &str) -> i64 {
    match field(e, name) {
        Value::Int(i) => *i,
        other => panic!("{name} is {other:?}"),
    }
}

/// (window_start, window_end) in seconds.
pub fn bounds(e: &Event) -> (f64, f64) {
    let s = |n| match field(e, n) {
        Value::Timestamp(t) => *t as f64 / S as f64,
        other => panic!("{n} is {other:?}"),
    };
    (s("window_start"), s("window_end"))
}

pub fn text(e: &Event, name: &str) -> String {
    match field(e, name) {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => format!("{other:?}"),
    }
}
