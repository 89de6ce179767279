//! The transform contract: per event, zero or more events out, to the
//! default output, named outputs or the dead-letter output; timers; state
//! for the checkpoint.
//!
//! A transform never sees marks or streams: the runtime sets the input's
//! mark on the [`Emitter`] before each call and the emitter marks what the
//! transform emits (numbering the events derived from one input with `sub`),
//! so positions stay exact whatever a transform emits. Time comes only from
//! the emitter (`now`), never from the system clock: a stateful transform is
//! replayed from its input log after a crash and must make the same
//! decisions again, and `weir test` drives time by hand.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use weir_core::event::{Event, Fields, Metadata, Value};

use super::source::Mark;

/// The dead-letter output every transform (and source) has: `<id>.errors`.
pub const ERRORS_OUTPUT: &str = "errors";

/// Why a transform could not handle one event. The event goes to the
/// dead-letter output with this error; the next event is handled normally.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformError {
    /// A script failed (threw, or an operation on a wrong type).
    #[error("{message}{}", at(*.line, *.column))]
    Script {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    /// A script exceeded a sandbox limit (operations, sizes, call depth).
    #[error("{what} limit exceeded{}", at(*.line, None))]
    Limit { what: String, line: Option<usize> },
    /// A field the transform needs is missing or of the wrong type.
    #[error("field `{field}`: {message}")]
    Field { field: String, message: String },
    /// The transform emitted to an output it does not declare.
    #[error("no output named `{0}`")]
    UnknownOutput(String),
    /// State could not be saved or restored.
    #[error("state: {0}")]
    State(String),
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

impl TransformError {
    /// A short, stable name for metrics labels and dead-letter `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            TransformError::Script { .. } => "script",
            TransformError::Limit { .. } => "limit",
            TransformError::Field { .. } => "field",
            TransformError::UnknownOutput(_) => "unknown_output",
            TransformError::State(_) => "state",
        }
    }

    /// The script line the error happened at, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            TransformError::Script { line, .. } | TransformError::Limit { line, .. } => *line,
            _ => None,
        }
    }
}

/// Builds dead-letter events: the original event's fields under `event`,
/// with `error`, `reason`, the `component` and, where known, the `line`.
pub struct DeadLetter;

impl DeadLetter {
    /// A dead-letter event for `original`, which `component` could not handle.
    pub fn for_event(component: &str, original: Event, error: &TransformError) -> Event {
        let mut fields = Fields::with_capacity(6);
        fields.insert("error", Value::String(error.to_string()));
        fields.insert("reason", Value::String(error.reason().to_owned()));
        fields.insert("component", Value::String(component.to_owned()));
        if let Some(l) = error.line() {
            fields.insert("line", Value::Int(l as i64));
        }
        fields.insert("event_timestamp", Value::Timestamp(original.timestamp));
        fields.insert("event", Value::Map(original.fields));
        Event {
            timestamp: original.timestamp,
            fields,
            meta: original.meta,
        }
    }

    /// A dead-letter event for input a source could not decode (`original`
    /// describes it: topic, payload, port…).
    pub fn for_input(
        component: &str,
        reason: &str,
        error: &str,
        original: Fields,
        meta: Metadata,
        timestamp: i64,
    ) -> Event {
        let mut fields = Fields::with_capacity(5);
        fields.insert("error", Value::String(error.to_owned()));
        fields.insert("reason", Value::String(reason.to_owned()));
        fields.insert("component", Value::String(component.to_owned()));
        fields.insert("event", Value::Map(original));
        Event {
            timestamp,
            fields,
            meta,
        }
    }
}

/// A transform.
pub trait Transform: Send {
    /// Handles one event, emitting what it makes of it through `out` (or
    /// nothing, to drop it). Failures go through [`Emitter::fail`].
    fn process(&mut self, event: Event, out: &mut Emitter);

    /// When the transform next needs [`Transform::on_timer`] (ns since the
    /// epoch), if ever: a window's end, a throttle's refill.
    fn next_timer(&self) -> Option<i64> {
        None
    }

    /// Called once `out.now()` has reached `next_timer()`, even when no
    /// input arrives.
    fn on_timer(&mut self, _out: &mut Emitter) {}

    /// The state to checkpoint (stateful transforms only): everything that
    /// `restore` needs to continue exactly where this left off.
    fn snapshot(&self) -> Result<Vec<u8>, TransformError> {
        Ok(Vec::new())
    }

    /// Restores a state made by `snapshot` (of the same configuration).
    fn restore(&mut self, _state: &[u8]) -> Result<(), TransformError> {
        Ok(())
    }
}

/// The events emitted to one output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Emitted {
    /// `None` for the default output.
    pub output: Option<String>,
    pub events: Vec<Event>,
    /// One per event when the input had a mark, else empty.
    pub marks: Vec<Mark>,
}

#[derive(Debug, Default)]
struct Port {
    name: Option<String>,
    out: Emitted,
    /// The input (pos, fp) the last event was derived from, and the next `sub`.
    last: Option<(u64, u64)>,
    next_sub: u32,
}

/// Collects what a transform emits, per output, and marks it.
#[derive(Debug)]
pub struct Emitter {
    component: Arc<str>,
    now: i64,
    input: Option<Mark>,
    /// Default output first, then the named outputs, then `errors`.
    ports: Vec<Port>,
    failures: Vec<&'static str>,
}

impl Emitter {
    /// An emitter for transform `component` with its named `outputs`, at time `now`.
    pub fn new(component: &str, outputs: &[String], now: i64) -> Emitter {
        let mut ports = vec![Port::default()];
        for o in outputs.iter().map(String::as_str).chain([ERRORS_OUTPUT]) {
            if o != ERRORS_OUTPUT || !outputs.iter().any(|x| x == ERRORS_OUTPUT) {
                ports.push(Port {
                    name: Some(o.to_owned()),
                    out: Emitted {
                        output: Some(o.to_owned()),
                        ..Emitted::default()
                    },
                    ..Port::default()
                });
            }
        }
        Emitter {
            component: component.into(),
            now,
            input: None,
            ports,
            failures: Vec::new(),
        }
    }

    /// The transform's notion of now (ns since the epoch).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The component this emitter belongs to.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Sets the time (the runtime, or a test's clock).
    pub fn set_now(&mut self, now: i64) {
        self.now = now;
    }

    /// Sets the mark of the input about to be processed (`None` for timers
    /// and unmarked inputs).
    pub fn set_input(&mut self, mark: Option<Mark>) {
        self.input = mark;
    }

    /// Emits to the default output.
    pub fn emit(&mut self, event: Event) {
        self.push(0, event);
    }

    /// Emits to a named output (`""` is the default one). An output the
    /// transform did not declare sends the event to the dead-letter output
    /// instead, with an `UnknownOutput` error, and returns false.
    pub fn emit_to(&mut self, output: &str, event: Event) -> bool {
        if output.is_empty() {
            self.push(0, event);
            return true;
        }
        match self
            .ports
            .iter()
            .position(|p| p.name.as_deref() == Some(output))
        {
            Some(i) => {
                self.push(i, event);
                true
            }
            None => {
                self.fail(event, TransformError::UnknownOutput(output.to_owned()));
                false
            }
        }
    }

    /// Sends `event` to the dead-letter output with `error`.
    pub fn fail(&mut self, event: Event, error: TransformError) {
        self.failures.push(error.reason());
        let dead = DeadLetter::for_event(&self.component, event, &error);
        let errors = self.ports.len() - 1;
        self.push(errors, dead);
    }

    fn push(&mut self, port: usize, event: Event) {
        let input = self.input;
        let p = &mut self.ports[port];
        if let Some(m) = input {
            let key = (m.pos, m.fp);
            let sub = if p.last == Some(key) {
                p.next_sub
            } else {
                p.last = Some(key);
                0
            };
            p.next_sub = sub.saturating_add(1);
            p.out.marks.push(Mark { sub, ..m });
        }
        p.out.events.push(event);
    }

    /// Takes what was emitted since the last call, per output, leaving out
    /// outputs with nothing; and the reasons of the failures.
    pub fn take(&mut self) -> (Vec<Emitted>, Vec<&'static str>) {
        let mut out = Vec::new();
        for p in &mut self.ports {
            p.last = None;
            p.next_sub = 0;
            if !p.out.events.is_empty() {
                let name = p.out.output.clone();
                out.push(std::mem::replace(
                    &mut p.out,
                    Emitted {
                        output: name,
                        ..Emitted::default()
                    },
                ));
            }
        }
        (out, std::mem::take(&mut self.failures))
    }
}

/// Where time comes from: the system clock when running, a hand-driven one in tests.
pub trait Clock: Send + Sync {
    /// Nanoseconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        weir_core::event::now_nanos()
    }
}

/// A clock that moves only when told to (tests, `weir test`).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: i64) -> ManualClock {
        ManualClock(AtomicI64::new(now))
    }

    /// Sets the time.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `ns`.
    pub fn advance(&self, ns: i64) {
        self.0.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(m: &str) -> Event {
        Event::from_message(m, Metadata::default())
    }

    #[test]
    fn events_derived_from_one_input_are_numbered_per_output() {
        let mut out = Emitter::new("t", &["hot".to_owned()], 0);
        out.set_input(Some(Mark::at(10)));
        out.emit(ev("a"));
        out.emit(ev("b"));
        assert!(out.emit_to("hot", ev("c")));
        out.set_input(Some(Mark::at(20)));
        out.emit(ev("d"));
        let (emitted, failures) = out.take();
        assert!(failures.is_empty());
        assert_eq!(emitted.len(), 2);
        let subs: Vec<(u64, u32)> = emitted[0].marks.iter().map(|m| (m.pos, m.sub)).collect();
        assert_eq!(subs, vec![(10, 0), (10, 1), (20, 0)]);
        assert_eq!(emitted[1].output.as_deref(), Some("hot"));
        assert_eq!(emitted[1].marks, vec![Mark::at(10)]);
    }

    #[test]
    fn failures_go_to_the_errors_output_with_the_original_event() {
        let mut out = Emitter::new("parse", &[], 5);
        out.set_input(Some(Mark::at(3)));
        let err = TransformError::Script {
            message: "boom".into(),
            line: Some(4),
            column: Some(2),
        };
        out.fail(ev("bad"), err);
        assert!(!out.emit_to("nope", ev("x")), "undeclared output accepted");
        let (emitted, failures) = out.take();
        assert_eq!(failures, vec!["script", "unknown_output"]);
        assert_eq!(emitted.len(), 1);
        let dl = &emitted[0];
        assert_eq!(dl.output.as_deref(), Some(ERRORS_OUTPUT));
        assert_eq!(dl.marks[0].sub, 0);
        assert_eq!(dl.marks[1].sub, 1);
        let f = &dl.events[0].fields;
        assert_eq!(f.get("line"), Some(&Value::Int(4)));
        assert_eq!(
            f.get("error"),
            Some(&Value::String("boom (line 4, column 2)".into()))
        );
        match f.get("event") {
            Some(Value::Map(m)) => assert_eq!(m.get("message"), Some(&Value::from("bad"))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timer_outputs_carry_no_marks() {
        let mut out = Emitter::new("agg", &[], 0);
        out.set_input(None);
        out.emit(ev("window"));
        let (emitted, _) = out.take();
        assert!(emitted[0].marks.is_empty());
    }
}
