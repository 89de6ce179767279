//! The agent heartbeat: what an agent reports to a collector about itself
//! (`POST /v1/agents/heartbeat`, docs/collector-api.md), and the bounds a
//! collector holds it to. The agent builds it from its own metrics; the
//! collector keeps the last one per agent for its fleet page.
//!
//! Everything here comes from the network on the collector's side, so
//! [`Heartbeat::check`] refuses anything past the bounds below rather than
//! trusting a client to be small.

use serde::{Deserialize, Serialize};

/// Path of the heartbeat endpoint.
pub const HEARTBEAT_PATH: &str = "/v1/agents/heartbeat";
/// Largest heartbeat body a collector reads.
pub const MAX_HEARTBEAT_BYTES: usize = 64 * 1024;
/// Most sinks one heartbeat may list.
pub const MAX_SINKS: usize = 64;
/// Longest string (in bytes) in a heartbeat: ids, types, versions.
pub const MAX_STRING: usize = 200;
/// Shortest and longest interval an agent may announce; the collector
/// derives the silent threshold from it, so a forged huge interval cannot
/// keep a dead agent "healthy" for days.
pub const MIN_INTERVAL_MS: u64 = 100;
/// See [`MIN_INTERVAL_MS`].
pub const MAX_INTERVAL_MS: u64 = 3_600_000;

/// One agent's report.
// Unknown fields are ignored (and dropped), so a newer agent can report
// more to an older collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Stable id of the agent: its host name, plus a short hash of its data
    /// directory when that is not the default one.
    pub agent: String,
    /// The agent's host name (the pipeline's `host`, or the machine's).
    pub host: String,
    /// The agent's version.
    pub version: String,
    /// When the agent's pipeline started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Seconds since then.
    pub uptime_secs: f64,
    /// The interval between heartbeats, in milliseconds: the collector calls
    /// the agent silent after three of them without one.
    pub interval_ms: u64,
    /// Every sink of the agent (not only collector sinks).
    pub sinks: Vec<SinkBeat>,
}

/// One sink of an agent, as its heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkBeat {
    /// The sink's id in the pipeline.
    pub id: String,
    /// Its `type:`.
    #[serde(rename = "type")]
    pub sink_type: String,
    /// Events in its channel not yet acknowledged.
    pub backlog_events: u64,
    /// Bytes of those events.
    pub backlog_bytes: u64,
    /// The channel's bound (`max_bytes`).
    pub capacity_bytes: u64,
    /// Age in seconds of the oldest unacknowledged event (0 when none).
    pub lag_seconds: f64,
    /// Events acknowledged by the destination per second since the previous beat.
    pub acked_per_sec: f64,
    /// Whether its deliveries are failing now.
    pub failing: bool,
}

/// Why a heartbeat is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// A string past `MAX_STRING` bytes.
    #[error("{field}: {len} bytes, limit {}", MAX_STRING)]
    TooLong { field: &'static str, len: usize },
    /// An empty string, or one with control characters.
    #[error("{0}: must be non-empty text without control characters")]
    BadText(&'static str),
    /// More than `MAX_SINKS` sinks.
    #[error("sinks: {n} listed, limit {max}", n = .0, max = MAX_SINKS)]
    TooManySinks(usize),
    /// An interval outside `MIN_INTERVAL_MS..=MAX_INTERVAL_MS`.
    #[error("interval_ms: {v}, must be between {min} and {max}", v = .0, min = MIN_INTERVAL_MS, max = MAX_INTERVAL_MS)]
    Interval(u64),
    /// A negative or non-finite number.
    #[error("{0}: must be a finite number, not negative")]
    BadNumber(&'static str),
}

fn text(field: &'static str, s: &str) -> Result<(), HeartbeatError> {
    if s.len() > MAX_STRING {
        return Err(HeartbeatError::TooLong {
            field,
            len: s.len(),
        });
    }
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(HeartbeatError::BadText(field));
    }
    Ok(())
}

fn number(field: &'static str, v: f64) -> Result<(), HeartbeatError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(HeartbeatError::BadNumber(field))
    }
}

impl Heartbeat {
    /// Checks every bound; the first violation is the error.
    pub fn check(&self) -> Result<(), HeartbeatError> {
        text("agent", &self.agent)?;
        text("host", &self.host)?;
        text("version", &self.version)?;
        number("uptime_secs", self.uptime_secs)?;
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.interval_ms) {
            return Err(HeartbeatError::Interval(self.interval_ms));
        }
        if self.sinks.len() > MAX_SINKS {
            return Err(HeartbeatError::TooManySinks(self.sinks.len()));
        }
        for s in &self.sinks {
            text("sinks[].id", &s.id)?;
            text("sinks[].type", &s.sink_type)?;
            number("sinks[].lag_seconds", s.lag_seconds)?;
            number("sinks[].acked_per_sec", s.acked_per_sec)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat() -> Heartbeat {
        Heartbeat {
            agent: "edge-1".into(),
            host: "edge-1".into(),
            version: "0.1.0".into(),
            started_unix_ms: 1,
            uptime_secs: 2.0,
            interval_ms: 10_000,
            sinks: vec![SinkBeat {
                id: "central".into(),
                sink_type: "collector".into(),
                backlog_events: 0,
                backlog_bytes: 0,
                capacity_bytes: 1 << 20,
                lag_seconds: 0.0,
                acked_per_sec: 5.0,
                failing: false,
            }],
        }
    }

    #[test]
    fn a_plain_heartbeat_passes_and_round_trips_with_type_named_type() {
        let b = beat();
        assert_eq!(b.check(), Ok(()));
        let json = serde_json::to_string(&b).unwrap();
        assert!(json.contains(r#""type":"collector""#), "{json}");
        assert_eq!(serde_json::from_str::<Heartbeat>(&json).unwrap(), b);
    }

    #[test]
    fn oversized_or_forged_fields_are_refused() {
        let mut b = beat();
        b.agent = "x".repeat(MAX_STRING + 1);
        assert!(matches!(
            b.check(),
            Err(HeartbeatError::TooLong { field: "agent", .. })
        ));
        let mut b = beat();
        b.version = "1\n2".into();
        assert_eq!(b.check(), Err(HeartbeatError::BadText("version")));
        let mut b = beat();
        b.sinks = vec![b.sinks[0].clone(); MAX_SINKS + 1];
        assert_eq!(b.check(), Err(HeartbeatError::TooManySinks(MAX_SINKS + 1)));
        let mut b = beat();
        b.interval_ms = MAX_INTERVAL_MS + 1;
        assert_eq!(
            b.check(),
            Err(HeartbeatError::Interval(MAX_INTERVAL_MS + 1))
        );
        let mut b = beat();
        b.sinks[0].lag_seconds = -1.0;
        assert_eq!(
            b.check(),
            Err(HeartbeatError::BadNumber("sinks[].lag_seconds"))
        );
    }
}
