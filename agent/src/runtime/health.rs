//! Liveness and readiness. `/health` answers 200 while the agent serves
//! (liveness: restart me if this stops). `/ready` answers 503 with the
//! reasons while a sink has been failing to deliver, continuously, for
//! longer than `health.sink_failing_after` — the agent runs and spools, but
//! its data is not leaving the machine, which a load balancer or a fleet
//! check should hear about.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_core::units::duration;

/// The `health:` section of the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// How long a sink may fail to deliver, continuously, before `/ready`
    /// answers 503 (default `2m`). A sink that delivers again makes the
    /// agent ready at once.
    #[serde(default = "default_sink_failing_after", with = "duration")]
    pub sink_failing_after: Duration,
}

fn default_sink_failing_after() -> Duration {
    Duration::from_secs(120)
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            sink_failing_after: default_sink_failing_after(),
        }
    }
}

impl HealthConfig {
    /// Problems with the values, for `weir validate`.
    pub fn problems(&self) -> Vec<String> {
        weir_core::units::duration_problem(
            "sink_failing_after",
            self.sink_failing_after,
            Duration::from_secs(1),
            Duration::from_secs(7 * 24 * 3600),
        )
        .into_iter()
        .collect()
    }
}

#[derive(Debug, Clone)]
struct Failing {
    since: Instant,
    cause: String,
}

/// Which sinks are failing now, and since when; shared by the sinks' inputs
/// (which report) and the HTTP endpoint (which reads).
#[derive(Debug, Clone, Default)]
pub struct Health {
    sinks: Arc<Mutex<BTreeMap<String, Failing>>>,
}

impl Health {
    /// Records that `sink` is failing (`Some(cause)`; the outage's start is
    /// kept if it was already failing) or delivering (`None`).
    pub fn sink_failing(&self, sink: &str, cause: Option<&str>) {
        let mut m = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        match cause {
            Some(cause) => {
                let since = m.get(sink).map_or_else(Instant::now, |f| f.since);
                m.insert(
                    sink.to_owned(),
                    Failing {
                        since,
                        cause: cause.to_owned(),
                    },
                );
            }
            None => {
                m.remove(sink);
            }
        }
    }

    /// Forgets `sink` (it stopped).
    pub fn forget(&self, sink: &str) {
        self.sink_failing(sink, None);
    }

    /// Why the agent is not ready: one line per sink failing for longer than
    /// `after`; empty when ready.
    pub fn not_ready(&self, after: Duration) -> Vec<String> {
        let m = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter(|(_, f)| f.since.elapsed() >= after)
            .map(|(sink, f)| {
                let secs = f.since.elapsed().as_secs();
                format!(
                    "sink {sink} has been failing for {}: {}",
                    humantime::format_duration(Duration::from_secs(secs)),
                    f.cause
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_failing_past_the_threshold_makes_the_agent_not_ready_until_it_delivers() {
        let h = Health::default();
        assert!(h.not_ready(Duration::ZERO).is_empty());
        h.sink_failing("out", Some("Connection refused"));
        assert!(
            h.not_ready(Duration::from_secs(60)).is_empty(),
            "not yet past the threshold"
        );
        let why = h.not_ready(Duration::ZERO);
        assert_eq!(why.len(), 1);
        assert!(
            why[0].starts_with("sink out has been failing for"),
            "{why:?}"
        );
        assert!(why[0].ends_with("Connection refused"));
        h.sink_failing("out", None);
        assert!(h.not_ready(Duration::ZERO).is_empty());
    }

    #[test]
    fn the_health_section_has_a_default_and_refuses_unknown_keys() {
        let c: HealthConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(c.sink_failing_after, Duration::from_secs(120));
        let c: HealthConfig = serde_yaml::from_str("sink_failing_after: 5s").unwrap();
        assert_eq!(c.sink_failing_after, Duration::from_secs(5));
        assert!(serde_yaml::from_str::<HealthConfig>("sink_failing: 5s").is_err());
        let c: HealthConfig = serde_yaml::from_str("sink_failing_after: 0s").unwrap();
        assert_eq!(c.problems().len(), 1);
    }
}
