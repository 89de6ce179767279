//! The `aggregate` transform: windowed aggregation per group.
//!
//! For each window (tumbling, hopping, sliding or session; by event time
//! with a watermark, or by processing time) and each group (the values of
//! the `group_by` fields), it emits one event when the window closes:
//!
//! ```json
//! {"device": "d-1", "n": 60, "mean_temp": 21.4, "p95_temp": 23.9,
//!  "window_start": "2026-11-24T10:00:00.000000000Z",
//!  "window_end": "2026-11-24T10:01:00.000000000Z"}
//! ```
//! with the event's timestamp set to the window's end, `source` metadata
//! set to the transform's id and `host` to that of the last event seen.
//!
//! What goes where:
//! - an event without a usable event time → dead letters (`reason: field`),
//!   counted in `weir_aggregate_rejected_events_total{reason=no_time|bad_time}`;
//! - a late event (`windows`) → counted in `weir_aggregate_late_events_total`,
//!   dropped or sent unchanged to the `late` output;
//! - an event that would open more than `max_groups` groups (or, sliding,
//!   hold more than `max_events` in its group) → dead letters
//!   (`reason: limit`), counted in `weir_aggregate_overflow_total`;
//! - a missing or non-numeric value for a numeric function → skipped for
//!   that function only, counted in `weir_aggregate_skipped_values_total`.
//!
//! **Determinism.** The transform is stateful: the runtime checkpoints its
//! snapshot with the input-log position and, after a crash, replays the log
//! from there and skips downstream what it emits a second time by sequence.
//! So everything here is a function of the restored state, the inputs in
//! order and `out.now()`: no system clock, no randomness, maps iterated in
//! key order (windows close in order of close time, then group key), and
//! a hash that is the same in every process.
//!
//! Modules: `config` (keys and checks), `windows` (assignment, closing,
//! lateness), `functions` (accumulators), `sketches` (DDSketch, HLL),
//! `time` (event time, watermark), `state` and `codec` (the snapshot).

mod codec;
mod config;
mod functions;
mod sketches;
mod state;
mod time;
mod windows;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use weir_core::event::Fields;
use weir_core::metrics::{Counter, Gauge, Registry};
use weir_core::{Event, Metadata, Value};

use crate::component::{Emitter, Transform, TransformContext, TransformError};
use codec::{group_key, group_values, Writer};
use config::{Spec, LATE_OUTPUT, WINDOW_END, WINDOW_START};
use functions::{lookup, Acc, Skipped};
use state::State;
use time::event_time;
use windows::{Arrival, Reject};

pub use config::{AggregateConfig, AggregateFn, EventTimeConfig, LatePolicy, WindowConfig};
pub use time::TimeUnit;

/// The running transform.
pub struct Aggregate {
    spec: Spec,
    state: State,
    id: Arc<str>,
    metrics: Metrics,
    /// Reused buffer for group keys.
    key: Writer,
}

struct Metrics {
    late: Counter,
    overflow_groups: Counter,
    overflow_events: Counter,
    no_time: Counter,
    bad_time: Counter,
    missing: Counter,
    not_numeric: Counter,
    open_groups: Gauge,
}

impl Metrics {
    fn new(r: &Registry, id: &str) -> Metrics {
        let c = |name, help, extra: &[(&str, &str)]| {
            let mut labels = vec![("component", id)];
            labels.extend_from_slice(extra);
            r.counter(name, help, &labels)
        };
        const REJECTED: &str = "weir_aggregate_rejected_events_total";
        const REJECTED_HELP: &str =
            "Events an aggregate sent to dead letters for want of a usable event time, by reason.";
        const OVERFLOW: &str = "weir_aggregate_overflow_total";
        const OVERFLOW_HELP: &str =
            "Events an aggregate sent to dead letters because a bound was reached, by limit.";
        const SKIPPED: &str = "weir_aggregate_skipped_values_total";
        const SKIPPED_HELP: &str = "Field values numeric aggregate functions skipped, by reason.";
        Metrics {
            late: c(
                "weir_aggregate_late_events_total",
                "Events that arrived after a window they belong in was emitted.",
                &[],
            ),
            overflow_groups: c(OVERFLOW, OVERFLOW_HELP, &[("limit", "max_groups")]),
            overflow_events: c(OVERFLOW, OVERFLOW_HELP, &[("limit", "max_events")]),
            no_time: c(REJECTED, REJECTED_HELP, &[("reason", "no_time")]),
            bad_time: c(REJECTED, REJECTED_HELP, &[("reason", "bad_time")]),
            missing: c(SKIPPED, SKIPPED_HELP, &[("reason", "missing")]),
            not_numeric: c(SKIPPED, SKIPPED_HELP, &[("reason", "not_numeric")]),
            open_groups: r.gauge(
                "weir_aggregate_open_groups",
                "Groups open across an aggregate's open windows (bounded by max_groups).",
                &[("component", id)],
            ),
        }
    }
}

impl Aggregate {
    fn new(spec: Spec, ctx: &TransformContext) -> Aggregate {
        Aggregate {
            state: State::new(&spec),
            spec,
            id: ctx.id.as_str().into(),
            metrics: Metrics::new(&ctx.metrics, &ctx.id),
            key: Writer::new(),
        }
    }

    /// The event time of `event`, or the reason it has none.
    fn time_of(&self, event: &Event) -> Option<Result<i64, TransformError>> {
        let ts = self.spec.time.as_ref()?;
        let own = Value::Timestamp(event.timestamp);
        let v = match &ts.field {
            Some(f) => lookup(&event.fields, f),
            None => Some(&own),
        };
        Some(event_time(v, ts.unit).map_err(|e| {
            match e.reason() {
                "no_time" => self.metrics.no_time.inc(),
                _ => self.metrics.bad_time.inc(),
            }
            TransformError::Field {
                field: ts.field.clone().unwrap_or_else(|| "timestamp".into()),
                message: e.to_string(),
            }
        }))
    }

    /// Emits every window the watermark has passed.
    fn close(&mut self, out: &mut Emitter) {
        let w = self.state.progress.watermark;
        if self.state.windows.next_close().is_some_and(|c| c <= w) {
            let (spec, id, host) = (&self.spec, &self.id, &self.state.host);
            self.state
                .windows
                .close(w, &spec.layout, &mut |start, end, key, acc| {
                    out.emit(window_event(spec, id, host, start, end, key, acc));
                });
        }
        self.metrics
            .open_groups
            .set(self.state.windows.open() as i64);
    }

    /// Counts `event` at time `t` in its windows.
    fn accept(&mut self, t: i64, event: &Event) -> Result<(), Reject> {
        let fields = &event.fields;
        group_key(
            &mut self.key,
            self.spec.group_by.iter().map(|f| lookup(fields, f)),
        );
        let mut skipped = Skipped::default();
        let input = self.spec.layout.input(fields, &mut skipped);
        let seq = self.state.seq;
        self.state.seq += 1;
        let arrival = Arrival {
            t,
            seq,
            key: &self.key.buf,
            input: &input,
        };
        self.state.windows.accept(
            &arrival,
            &self.spec.layout,
            self.state.progress.watermark,
            self.spec.max_groups,
        )?;
        self.metrics.missing.add(skipped.missing);
        self.metrics.not_numeric.add(skipped.not_numeric);
        Ok(())
    }
}

/// The event for one closed window of one group.
fn window_event(
    spec: &Spec,
    id: &Arc<str>,
    host: &Arc<str>,
    start: i64,
    end: i64,
    key: &[u8],
    acc: &Acc,
) -> Event {
    let n = spec.group_by.len();
    // Keys are made by `group_key` or checked on restore; nulls are the
    // honest fallback should one not decode.
    let groups = group_values(key, n).unwrap_or_else(|_| vec![Value::Null; n]);
    let mut fields = Fields::with_capacity(n + 8);
    for (name, v) in spec.group_by.iter().zip(groups) {
        fields.insert(name.as_str(), v);
    }
    for (name, v) in acc.outputs(&spec.layout, start, end) {
        fields.insert(name, v);
    }
    fields.insert(WINDOW_START, Value::Timestamp(start));
    fields.insert(WINDOW_END, Value::Timestamp(end));
    Event {
        timestamp: end,
        fields,
        meta: Metadata {
            source: id.clone(),
            host: host.clone(),
            ..Metadata::default()
        },
    }
}

impl Transform for Aggregate {
    fn process(&mut self, event: Event, out: &mut Emitter) {
        let now = out.now();
        if event.meta.host != self.state.host {
            self.state.host = event.meta.host.clone();
        }
        let t = match self.time_of(&event) {
            None => {
                self.state.progress.clock(now);
                now
            }
            Some(Ok(t)) => {
                let delay = self.spec.time.as_ref().map_or(0, |ts| ts.delay);
                self.state.progress.arrival(t, delay, now);
                t
            }
            Some(Err(e)) => {
                out.fail(event, e);
                return;
            }
        };
        // Windows the watermark has passed close before this event is
        // judged: it may be late for them, and they free room.
        self.close(out);
        match self.accept(t, &event) {
            Ok(()) => {}
            Err(Reject::Late) => {
                self.metrics.late.inc();
                if self.spec.late_emit {
                    out.emit_to(LATE_OUTPUT, event);
                }
            }
            Err(Reject::MaxGroups) => {
                self.metrics.overflow_groups.inc();
                let what = format!("max_groups ({})", self.spec.max_groups);
                out.fail(event, TransformError::Limit { what, line: None });
            }
            Err(Reject::MaxEvents) => {
                self.metrics.overflow_events.inc();
                let what = "max_events of a sliding window group".to_owned();
                out.fail(event, TransformError::Limit { what, line: None });
            }
        }
        // A sliding window may close at once, at the event that ends it.
        self.close(out);
    }

    fn next_timer(&self) -> Option<i64> {
        let close = self.state.windows.next_close()?;
        match &self.spec.time {
            None => Some(close),
            Some(ts) => self.state.progress.idle_due(close, ts.idle?),
        }
    }

    fn on_timer(&mut self, out: &mut Emitter) {
        let now = out.now();
        match &self.spec.time {
            None => self.state.progress.clock(now),
            Some(ts) => {
                if let Some(idle) = ts.idle {
                    self.state.progress.idle(now, idle);
                }
            }
        }
        self.close(out);
    }

    fn snapshot(&self) -> Result<Vec<u8>, TransformError> {
        Ok(self.state.encode(&self.spec))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), TransformError> {
        if bytes.is_empty() {
            // A checkpoint made before any state (or by the runtime's
            // fallback): start empty.
            self.state = State::new(&self.spec);
            return Ok(());
        }
        self.state =
            State::decode(bytes, &self.spec).map_err(|e| TransformError::State(e.to_string()))?;
        self.metrics
            .open_groups
            .set(self.state.windows.open() as i64);
        Ok(())
    }
}
