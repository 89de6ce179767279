//! The `weir test` file: tests of a pipeline's transforms, beside it as
//! `<pipeline>.tests.yaml` (or given with `--tests`).
//!
//! ```yaml
//! start: 2024-05-01T12:00:00Z       # the test clock's start (default 2024-01-01T00:00:00Z)
//! tests:
//!   - name: hot readings are routed
//!     steps:
//!       - input: app_logs            # a source (its output; `src.output` for a named one),
//!                                    # or a transform (its input)
//!         timestamp: 2024-05-01T12:00:01Z   # of these events; the clock's time by default
//!         events:
//!           - { message: "level=info device=d1 temp=85.0" }
//!       - advance: 10s               # moves the clock; timers due on the way fire in order
//!       - restart: true              # snapshot, rebuild and restore every transform
//!     expect:
//!       - output: alerts.hot         # `id`, `id.output`, `id.errors`, or a sink id
//!         count: 1                   # how many events
//!         events:                    # exactly these events' fields, in order
//!           - { message: "level=info device=d1 temp=85.0", device: d1, temp: 85.0 }
//!         conditions:                # rhai expressions over `event`, true for every event
//!           - "event.temp > 80.0"
//! ```

use std::time::Duration;

use serde::Deserialize;
use weir_core::units::opt_duration;

/// A tests file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The test clock's start, RFC 3339.
    #[serde(default)]
    pub start: Option<String>,
    pub tests: Vec<TestCase>,
}

/// One test: steps, then what must have come out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub expect: Vec<Expect>,
}

/// One step: inject events, advance the clock, or restart the transforms.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Where the events go in: a source id (or `source.output`), meaning
    /// what that source emits, or a transform id, meaning its input.
    #[serde(default)]
    pub input: Option<String>,
    /// The events' fields.
    #[serde(default)]
    pub events: Vec<serde_json::Map<String, serde_json::Value>>,
    /// The events' timestamp (RFC 3339); the clock's time by default.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Move the clock forward by this much.
    #[serde(default, with = "opt_duration")]
    pub advance: Option<Duration>,
    /// Snapshot every transform, build it anew and restore the snapshot, as
    /// a restart of the agent does.
    #[serde(default)]
    pub restart: bool,
}

/// What one output must have carried during the test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// A component output (`id`, `id.output`, `id.errors`) or a sink id
    /// (everything its inputs carried).
    pub output: String,
    #[serde(default)]
    pub count: Option<usize>,
    #[serde(default)]
    pub events: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub conditions: Vec<String>,
}

/// Default clock start: a fixed time, so tests do not depend on when they run.
pub const DEFAULT_START: &str = "2024-01-01T00:00:00Z";
