//! The `aggregate` transform's configuration, its checks, and the compiled
//! form the transform runs on.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::units::{duration, opt_duration};

use super::codec::stable_hash;
use super::functions::{Func, Layout};
use super::sketches::hll;
use super::time::TimeUnit;
use super::windows::WindowSpec;
use crate::component::{BuildError, Transform, TransformConfig, TransformContext};

/// Longest window size, hop, gap, watermark delay or lateness: a year.
const MAX_SPAN: Duration = Duration::from_secs(366 * 86_400);
/// Most windows one event may fall in (hopping: `size / hop`).
const MAX_WINDOWS_PER_EVENT: u128 = 1_000;
/// Largest sliding `count` and `max_events`.
const MAX_SLIDING_EVENTS: usize = 1_000_000;
/// Field names the emitted events use for the window.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
/// The named output late events go to with `late: emit`.
pub const LATE_OUTPUT: &str = "late";

/// Windowed aggregation: one event per group per window, with each
/// aggregate by its name, the `group_by` fields, `window_start` and
/// `window_end`. Stateful: open windows are checkpointed and survive a
/// crash (see docs/architecture.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The windows: `{ kind: tumbling, size }`, `{ kind: hopping, size, hop }`,
    /// `{ kind: sliding, size and/or count }` or `{ kind: session, gap }`.
    pub window: WindowConfig,
    /// Aggregate by event time read from each event, with a watermark;
    /// omitted: by processing time (the transform's clock when the event
    /// reaches it).
    #[serde(default)]
    pub event_time: Option<EventTimeConfig>,
    /// Fields whose values make a group (nested fields as `a.b`). An event
    /// without one of them belongs to the group where it is `null`.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Output field name → function.
    pub aggregates: BTreeMap<String, AggregateFn>,
    /// Late events (event time): `drop` (counted) or `emit` to the `late`
    /// output (`inputs: [<id>.late]`), unchanged.
    #[serde(default)]
    pub late: LatePolicy,
    /// Most groups open at once, across all open windows (a hopping window
    /// and a group count once per window; a session once; a sliding group
    /// once). An event that would open one more is dead-lettered and
    /// counted in `weir_aggregate_overflow_total`.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
}

fn default_max_groups() -> usize {
    10_000
}

/// Window kinds and their sizes (durations like `10s`, `1m`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowConfig {
    /// Back-to-back windows of `size`, aligned to the Unix epoch.
    Tumbling {
        #[serde(with = "duration")]
        size: Duration,
    },
    /// Windows of `size` starting every `hop` (overlapping when hop < size).
    Hopping {
        #[serde(with = "duration")]
        size: Duration,
        #[serde(with = "duration")]
        hop: Duration,
    },
    /// A window ending at every event: over the last `size` of time, or the
    /// group's last `count` events (both: the last `count` within `size`).
    Sliding {
        #[serde(default, with = "opt_duration")]
        size: Option<Duration>,
        #[serde(default)]
        count: Option<usize>,
        /// Most events a group keeps for its windows; more are dead-lettered.
        #[serde(default = "default_max_events")]
        max_events: usize,
    },
    /// A group's events less than `gap` apart form one window.
    Session {
        #[serde(with = "duration")]
        gap: Duration,
    },
}

fn default_max_events() -> usize {
    1_000
}

/// Where the event time comes from and how late events may be.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeConfig {
    /// The field holding the time: a timestamp, an RFC 3339 string or a
    /// number in `unit` since the epoch. Omitted: the event's own timestamp.
    #[serde(default)]
    pub field: Option<String>,
    /// Unit of numeric times: `s` (default), `ms`, `us` or `ns`.
    #[serde(default)]
    pub unit: TimeUnit,
    /// How far behind the latest event time seen the watermark trails: how
    /// out of order events may arrive and still be counted.
    #[serde(default = "zero", with = "duration")]
    pub watermark: Duration,
    /// How long past the watermark a window stays open for stragglers.
    #[serde(default = "zero", with = "duration")]
    pub allowed_lateness: Duration,
    /// When no event has arrived for this long (by the agent's clock), the
    /// watermark advances with the clock so that windows still close.
    /// Omitted: windows close only as newer events arrive.
    #[serde(default, with = "opt_duration")]
    pub idle_timeout: Option<Duration>,
}

fn zero() -> Duration {
    Duration::ZERO
}

/// What happens to late events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    #[default]
    Drop,
    Emit,
}

/// An aggregate function and its arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "fn", rename_all = "snake_case", deny_unknown_fields)]
pub enum AggregateFn {
    /// Events in the window; with `field`, events where it is present and not null.
    Count {
        #[serde(default)]
        field: Option<String>,
    },
    Sum {
        field: String,
    },
    Min {
        field: String,
    },
    Max {
        field: String,
    },
    Mean {
        field: String,
    },
    /// Population standard deviation.
    Stddev {
        field: String,
    },
    /// The value of the event with the earliest event time.
    First {
        field: String,
    },
    /// The value of the event with the latest event time.
    Last {
        field: String,
    },
    /// Per second over the window's span: events, or the sum of `field`.
    Rate {
        #[serde(default)]
        field: Option<String>,
    },
    /// Distinct values (HyperLogLog, 1.04/√2^precision standard error).
    #[serde(alias = "count_distinct")]
    Distinct {
        field: String,
        #[serde(default = "default_precision")]
        precision: u8,
    },
    /// The `q` quantile, `0 < q ≤ 1` (DDSketch, 1 % relative error).
    Percentile {
        field: String,
        q: f64,
    },
}

fn default_precision() -> u8 {
    hll::DEFAULT_PRECISION
}

impl AggregateFn {
    fn compiled(&self) -> (Func, Option<&str>) {
        match self {
            AggregateFn::Count { field } => (Func::Count, field.as_deref()),
            AggregateFn::Sum { field } => (Func::Sum, Some(field)),
            AggregateFn::Min { field } => (Func::Min, Some(field)),
            AggregateFn::Max { field } => (Func::Max, Some(field)),
            AggregateFn::Mean { field } => (Func::Mean, Some(field)),
            AggregateFn::Stddev { field } => (Func::Stddev, Some(field)),
            AggregateFn::First { field } => (Func::First, Some(field)),
            AggregateFn::Last { field } => (Func::Last, Some(field)),
            AggregateFn::Rate { field } => (Func::Rate, field.as_deref()),
            AggregateFn::Distinct { field, precision } => (
                Func::Distinct {
                    precision: *precision,
                },
                Some(field),
            ),
            AggregateFn::Percentile { field, q } => (Func::Percentile { q: *q }, Some(field)),
        }
    }
}

/// Event-time settings in ns.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSpec {
    pub field: Option<String>,
    pub unit: TimeUnit,
    pub delay: i64,
    pub lateness: i64,
    pub idle: Option<i64>,
}

/// The compiled config.
#[derive(Debug, Clone)]
pub struct Spec {
    pub window: WindowSpec,
    pub time: Option<TimeSpec>,
    pub group_by: Vec<String>,
    pub layout: Layout,
    pub late_emit: bool,
    pub max_groups: usize,
    /// Changes when saved state would mean something else under this config.
    pub fingerprint: u64,
}

fn ns(d: Duration) -> i64 {
    d.min(MAX_SPAN).as_nanos() as i64
}

impl AggregateConfig {
    /// The compiled form (call after `problems()` came back empty).
    pub fn spec(&self) -> Spec {
        let window = match &self.window {
            WindowConfig::Tumbling { size } => WindowSpec::Tumbling { size: ns(*size) },
            WindowConfig::Hopping { size, hop } => WindowSpec::Hopping {
                size: ns(*size),
                hop: ns(*hop),
            },
            WindowConfig::Sliding {
                size,
                count,
                max_events,
            } => WindowSpec::Sliding {
                size: size.map(ns),
                count: *count,
                max_events: *max_events,
            },
            WindowConfig::Session { gap } => WindowSpec::Session { gap: ns(*gap) },
        };
        let time = self.event_time.as_ref().map(|e| TimeSpec {
            field: e.field.clone(),
            unit: e.unit,
            delay: ns(e.watermark),
            lateness: ns(e.allowed_lateness),
            idle: e.idle_timeout.map(ns),
        });
        let layout = Layout::new(self.aggregates.iter().map(|(name, f)| {
            let (func, field) = f.compiled();
            (name.as_str(), func, field)
        }));
        let shape = format!(
            "aggregate-state-v1|{}|{}|{}|{}",
            window.shape(),
            if time.is_some() {
                "event"
            } else {
                "processing"
            },
            self.group_by.join(","),
            layout.shape()
        );
        Spec {
            window,
            time,
            group_by: self.group_by.clone(),
            layout,
            late_emit: self.late == LatePolicy::Emit,
            max_groups: self.max_groups,
            fingerprint: stable_hash(shape.as_bytes()),
        }
    }

    fn window_problems(&self, p: &mut Vec<String>) {
        let span = |p: &mut Vec<String>, key: &str, d: Duration| {
            if d.is_zero() {
                p.push(format!("window.{key}: must be more than 0"));
            } else if d > MAX_SPAN {
                p.push(format!("window.{key}: at most 366 days"));
            }
        };
        match &self.window {
            WindowConfig::Tumbling { size } => span(p, "size", *size),
            WindowConfig::Hopping { size, hop } => {
                span(p, "size", *size);
                span(p, "hop", *hop);
                if hop > size {
                    p.push(
                        "window.hop: must not exceed window.size (windows would leave gaps)".into(),
                    );
                } else if !hop.is_zero()
                    && size.as_nanos().div_ceil(hop.as_nanos()) > MAX_WINDOWS_PER_EVENT
                {
                    p.push(format!(
                        "window.hop: size / hop is more than {MAX_WINDOWS_PER_EVENT} windows per event; use a larger hop"
                    ));
                }
            }
            WindowConfig::Sliding {
                size,
                count,
                max_events,
            } => {
                if size.is_none() && count.is_none() {
                    p.push("window: a sliding window needs `size`, `count` or both".into());
                }
                if let Some(s) = size {
                    span(p, "size", *s);
                }
                if let Some(c) = count {
                    if *c == 0 || *c > MAX_SLIDING_EVENTS {
                        p.push(format!("window.count: from 1 to {MAX_SLIDING_EVENTS}"));
                    } else if c > max_events {
                        p.push(format!(
                            "window.max_events: must be at least window.count ({c})"
                        ));
                    }
                }
                if *max_events == 0 || *max_events > MAX_SLIDING_EVENTS {
                    p.push(format!("window.max_events: from 1 to {MAX_SLIDING_EVENTS}"));
                }
            }
            WindowConfig::Session { gap } => span(p, "gap", *gap),
        }
    }

    fn aggregate_problems(&self, p: &mut Vec<String>) {
        if self.aggregates.is_empty() {
            p.push("aggregates: at least one aggregate is required".into());
        }
        for (name, f) in &self.aggregates {
            if name.is_empty() || name == WINDOW_START || name == WINDOW_END {
                p.push(format!(
                    "aggregates.{name}: the name is empty or used for the window's bounds"
                ));
            }
            if self.group_by.contains(name) {
                p.push(format!(
                    "aggregates.{name}: also a group_by field; rename one"
                ));
            }
            if let (_, Some("")) = f.compiled() {
                p.push(format!("aggregates.{name}.field: must not be empty"));
            }
            match f {
                AggregateFn::Percentile { q, .. } if !(*q > 0.0 && *q <= 1.0) => {
                    p.push(format!("aggregates.{name}.q: must be in (0, 1], got {q}"));
                }
                AggregateFn::Distinct { precision, .. }
                    if !(hll::MIN_PRECISION..=hll::MAX_PRECISION).contains(precision) =>
                {
                    p.push(format!(
                        "aggregates.{name}.precision: from {} to {}",
                        hll::MIN_PRECISION,
                        hll::MAX_PRECISION
                    ));
                }
                _ => {}
            }
        }
    }
}

impl TransformConfig for AggregateConfig {
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        self.window_problems(&mut p);
        self.aggregate_problems(&mut p);
        let mut seen = std::collections::BTreeSet::new();
        for g in &self.group_by {
            if g.is_empty() || g == WINDOW_START || g == WINDOW_END {
                p.push(format!(
                    "group_by: `{g}` is empty or used for the window's bounds"
                ));
            } else if !seen.insert(g) {
                p.push(format!("group_by: `{g}` is listed twice"));
            }
        }
        if self.max_groups == 0 {
            p.push("max_groups: must be at least 1".into());
        }
        match &self.event_time {
            Some(e) => {
                for (key, d) in [
                    ("watermark", e.watermark),
                    ("allowed_lateness", e.allowed_lateness),
                ] {
                    if d > MAX_SPAN {
                        p.push(format!("event_time.{key}: at most 366 days"));
                    }
                }
                if e.idle_timeout.is_some_and(|d| d.is_zero() || d > MAX_SPAN) {
                    p.push("event_time.idle_timeout: from more than 0 to 366 days".into());
                }
                if e.field.as_deref() == Some("") {
                    p.push("event_time.field: must not be empty".into());
                }
            }
            None if self.late == LatePolicy::Emit => {
                p.push("late: `emit` needs event_time (in processing time nothing is late)".into());
            }
            None => {}
        }
        p
    }

    fn outputs(&self) -> Vec<String> {
        if self.late == LatePolicy::Emit {
            vec![LATE_OUTPUT.to_owned()]
        } else {
            Vec::new()
        }
    }

    fn stateful(&self) -> bool {
        true
    }

    fn build(&self, ctx: TransformContext) -> Result<Box<dyn Transform>, BuildError> {
        let problems = self.problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        Ok(Box::new(super::Aggregate::new(self.spec(), &ctx)))
    }
}
