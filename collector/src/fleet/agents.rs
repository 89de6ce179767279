//! The agents the collector has heard from: the last heartbeat of each, kept
//! in memory, at most `max_agents` of them (the least recently seen is
//! forgotten first), so a client sending heartbeats under ever new names
//! cannot grow the collector's memory. Each heartbeat is bounded by
//! `weir_core::fleet::Heartbeat::check` before it gets here.
//!
//! An agent's status is computed when read, from the time since its last
//! heartbeat and what that heartbeat says:
//!
//! | status    | when                                                                 |
//! |-----------|----------------------------------------------------------------------|
//! | `silent`  | no heartbeat for 3 × the interval the agent announced                 |
//! | `lagging` | a sink failing, a sink's lag over `LAG_SECONDS`, or a channel over `BACKLOG_FRACTION` of its capacity |
//! | `healthy` | otherwise                                                            |

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use weir_core::fleet::{Heartbeat, SinkBeat};

/// Heartbeats missed before an agent is silent.
pub const SILENT_AFTER_BEATS: u32 = 3;
/// Delivery lag (age of a sink's oldest unacknowledged event) past which an agent is lagging.
pub const LAG_SECONDS: f64 = 60.0;
/// Fill of a sink's channel past which an agent is lagging.
pub const BACKLOG_FRACTION: f64 = 0.8;
/// Agents remembered by default.
pub const DEFAULT_MAX_AGENTS: usize = 10_000;

/// An agent's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Lagging,
    Silent,
}

/// One agent, as `GET /v1/fleet` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentView {
    pub agent: String,
    pub host: String,
    pub version: String,
    pub status: Status,
    /// Why it is lagging or silent (empty when healthy).
    pub reason: String,
    /// The principal that sent its last heartbeat.
    pub principal: String,
    pub started_unix_ms: u64,
    /// Uptime now, as of its last heartbeat plus the time since.
    pub uptime_secs: f64,
    pub last_seen_unix_ms: u64,
    pub last_seen_secs_ago: f64,
    pub interval_ms: u64,
    /// Sums over its sinks.
    pub backlog_events: u64,
    pub backlog_bytes: u64,
    pub acked_per_sec: f64,
    pub sinks: Vec<SinkBeat>,
}

struct Entry {
    beat: Heartbeat,
    principal: String,
    seen: Instant,
    seen_wall: SystemTime,
}

/// The last heartbeat of each agent, bounded.
pub struct Agents {
    max: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Agents {
    /// Remembers at most `max` agents.
    pub fn new(max: usize) -> Agents {
        Agents {
            max: max.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Records `beat` (already checked) from `principal`, seen at `now`.
    /// Returns the agent forgotten to make room, if any.
    pub fn record(&self, beat: Heartbeat, principal: &str, now: Instant) -> Option<String> {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = None;
        if !e.contains_key(&beat.agent) && e.len() >= self.max {
            // O(n) at the bound only: a full table is the unusual case, and
            // n is bounded by `max`.
            if let Some(oldest) = e.iter().min_by_key(|(_, v)| v.seen).map(|(k, _)| k.clone()) {
                e.remove(&oldest);
                evicted = Some(oldest);
            }
        }
        e.insert(
            beat.agent.clone(),
            Entry {
                beat,
                principal: principal.to_owned(),
                seen: now,
                seen_wall: SystemTime::now(),
            },
        );
        evicted
    }

    /// How many agents are remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many agents are healthy, lagging and silent at `now`.
    pub fn counts(&self, now: Instant) -> [usize; 3] {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = [0; 3];
        for v in e.values() {
            let i = match status(&v.beat, now.saturating_duration_since(v.seen)).0 {
                Status::Healthy => 0,
                Status::Lagging => 1,
                Status::Silent => 2,
            };
            n[i] += 1;
        }
        n
    }

    /// Every agent with its status at `now`, sorted by id.
    pub fn view(&self, now: Instant) -> Vec<AgentView> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<AgentView> = e.values().map(|v| view_of(v, now)).collect();
        out.sort_by(|a, b| a.agent.cmp(&b.agent));
        out
    }
}

/// The status of an agent last heard from `ago` ago with `beat`, and why.
pub fn status(beat: &Heartbeat, ago: Duration) -> (Status, String) {
    let interval = Duration::from_millis(beat.interval_ms);
    if ago > interval * SILENT_AFTER_BEATS {
        return (
            Status::Silent,
            format!("no heartbeat for {:.0}s", ago.as_secs_f64()),
        );
    }
    let mut why = Vec::new();
    for s in &beat.sinks {
        if s.failing {
            why.push(format!("sink {} failing", s.id));
        }
        if s.lag_seconds > LAG_SECONDS {
            why.push(format!("sink {} lag {:.0}s", s.id, s.lag_seconds));
        }
        if s.capacity_bytes > 0
            && s.backlog_bytes as f64 > BACKLOG_FRACTION * s.capacity_bytes as f64
        {
            let pct = 100.0 * s.backlog_bytes as f64 / s.capacity_bytes as f64;
            why.push(format!("sink {} channel {pct:.0}% full", s.id));
        }
    }
    if why.is_empty() {
        (Status::Healthy, String::new())
    } else {
        (Status::Lagging, why.join("; "))
    }
}

fn view_of(e: &Entry, now: Instant) -> AgentView {
    let ago = now.saturating_duration_since(e.seen);
    let (status, reason) = status(&e.beat, ago);
    let b = &e.beat;
    let ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    AgentView {
        agent: b.agent.clone(),
        host: b.host.clone(),
        version: b.version.clone(),
        status,
        reason,
        principal: e.principal.clone(),
        started_unix_ms: b.started_unix_ms,
        uptime_secs: b.uptime_secs
            + if status == Status::Silent {
                0.0
            } else {
                ago.as_secs_f64()
            },
        last_seen_unix_ms: ms(e.seen_wall),
        last_seen_secs_ago: ago.as_secs_f64(),
        interval_ms: b.interval_ms,
        backlog_events: b.sinks.iter().map(|s| s.backlog_events).sum(),
        backlog_bytes: b.sinks.iter().map(|s| s.backlog_bytes).sum(),
        acked_per_sec: b.sinks.iter().map(|s| s.acked_per_sec).sum(),
        sinks: b.sinks.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(agent: &str) -> Heartbeat {
        Heartbeat {
            agent: agent.into(),
            host: "h".into(),
            version: "1.0".into(),
            started_unix_ms: 0,
            uptime_secs: 10.0,
            interval_ms: 1000,
            sinks: vec![SinkBeat {
                id: "central".into(),
                sink_type: "collector".into(),
                backlog_events: 1,
                backlog_bytes: 100,
                capacity_bytes: 1000,
                lag_seconds: 0.5,
                acked_per_sec: 3.0,
                failing: false,
            }],
        }
    }

    const S: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn an_agent_seen_within_three_intervals_with_quiet_sinks_is_healthy() {
        assert_eq!(
            status(&beat("a"), S(2900)),
            (Status::Healthy, String::new())
        );
        assert_eq!(status(&beat("a"), S(3000)).0, Status::Healthy);
    }

    #[test]
    fn an_agent_not_seen_for_three_intervals_is_silent_whatever_it_said() {
        let mut b = beat("a");
        b.sinks[0].failing = true;
        let (s, why) = status(&b, S(3001));
        assert_eq!(s, Status::Silent);
        assert!(why.contains("no heartbeat"), "{why}");
    }

    #[test]
    fn a_failing_sink_a_high_lag_or_a_full_channel_makes_it_lagging() {
        let mut b = beat("a");
        b.sinks[0].failing = true;
        assert_eq!(
            status(&b, S(0)),
            (Status::Lagging, "sink central failing".into())
        );
        let mut b = beat("a");
        b.sinks[0].lag_seconds = LAG_SECONDS + 1.0;
        assert_eq!(status(&b, S(0)).0, Status::Lagging);
        let mut b = beat("a");
        b.sinks[0].backlog_bytes = 801;
        assert_eq!(
            status(&b, S(0)),
            (Status::Lagging, "sink central channel 80% full".into())
        );
        b.sinks[0].backlog_bytes = 800;
        assert_eq!(status(&b, S(0)).0, Status::Healthy);
    }

    #[test]
    fn at_most_max_agents_are_kept_and_the_least_recently_seen_goes_first() {
        let agents = Agents::new(2);
        let t = Instant::now();
        assert_eq!(agents.record(beat("a"), "p", t), None);
        assert_eq!(agents.record(beat("b"), "p", t + S(1)), None);
        // a beats again: b is now the least recently seen.
        assert_eq!(agents.record(beat("a"), "p", t + S(2)), None);
        assert_eq!(agents.record(beat("c"), "p", t + S(3)), Some("b".into()));
        assert_eq!(agents.len(), 2);
        let ids: Vec<String> = agents.view(t + S(3)).into_iter().map(|a| a.agent).collect();
        assert_eq!(ids, ["a", "c"]);
    }

    #[test]
    fn the_view_sums_sinks_and_ages_the_uptime() {
        let agents = Agents::new(10);
        let t = Instant::now();
        agents.record(beat("a"), "edge", t);
        let v = &agents.view(t + S(500))[0];
        assert_eq!(v.status, Status::Healthy);
        assert_eq!(v.principal, "edge");
        assert_eq!((v.backlog_events, v.backlog_bytes), (1, 100));
        assert_eq!(v.acked_per_sec, 3.0);
        assert!((v.uptime_secs - 10.5).abs() < 1e-9);
        assert!((v.last_seen_secs_ago - 0.5).abs() < 1e-9);
        let json = serde_json::to_value(v).unwrap();
        assert_eq!(json["status"], "healthy");
        assert_eq!(json["sinks"][0]["type"], "collector");
    }
}
