//! The agent's heartbeat to the collector: every `heartbeat_interval`, a
//! small JSON report (`weir_core::fleet::Heartbeat`) of the agent's id,
//! version, uptime and every sink's backlog, lag, rate and failing state,
//! posted to `/v1/agents/heartbeat` with the sink's TLS and token.
//!
//! It runs as its own task with its own client and a short timeout, so a
//! slow or refusing collector delays only the next heartbeat, never a batch.
//! Failures are counted and logged at debug level: delivery problems are
//! already reported by the sink itself.

use std::collections::HashMap;
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;
use weir_core::fleet::{Heartbeat, SinkBeat, HEARTBEAT_PATH};
use weir_core::metrics::Counter;

use super::config::CollectorSinkConfig;
use crate::component::{AgentInfo, SinkContext, SinkSnapshot};

/// Longest one heartbeat request may take.
const MAX_TIMEOUT: Duration = Duration::from_secs(5);

/// The running heartbeat task; stopped when dropped (with its sink).
pub struct Heartbeats(JoinHandle<()>);

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts heartbeats for the sink of `cfg`, unless they are turned off.
pub fn start(cfg: &CollectorSinkConfig, ctx: &SinkContext) -> Option<Heartbeats> {
    let interval = cfg.heartbeat_interval;
    if interval.is_zero() {
        return None;
    }
    let timeout = interval.min(MAX_TIMEOUT);
    let client = match super::send::client(cfg, timeout) {
        Ok(c) => c,
        Err(e) => {
            // The data path builds the same client and reports this itself.
            debug!(sink = %ctx.id, error = %e, "No heartbeat client; heartbeats are off.");
            return None;
        }
    };
    let counter = |result| {
        ctx.metrics.counter(
            "weir_sink_heartbeats_total",
            "Heartbeats the collector sink sent to its collector, by result (sent, failed).",
            &[("result", result)],
        )
    };
    let beater = Beater {
        client,
        url: format!("{}{HEARTBEAT_PATH}", cfg.url.trim_end_matches('/')),
        sink: ctx.id.clone(),
        host: ctx.host.to_string(),
        agent: ctx.agent.clone(),
        interval,
        sent: counter("sent"),
        failed: counter("failed"),
        previous: HashMap::new(),
    };
    Some(Heartbeats(tokio::spawn(beater.run(ctx.shutdown.clone()))))
}

struct Beater {
    client: reqwest::Client,
    url: String,
    sink: String,
    host: String,
    agent: AgentInfo,
    interval: Duration,
    sent: Counter,
    failed: Counter,
    /// Each sink's acknowledged-events counter at the previous beat.
    previous: HashMap<String, (u64, Instant)>,
}

impl Beater {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let beat = self.beat(Instant::now());
            let body = match serde_json::to_vec(&beat) {
                Ok(b) => b,
                Err(e) => {
                    self.failed.inc();
                    debug!(sink = %self.sink, error = %e, "Heartbeat not encoded.");
                    continue;
                }
            };
            let request = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .body(body);
            match request.send().await {
                Ok(r) if r.status().is_success() => self.sent.inc(),
                Ok(r) => {
                    self.failed.inc();
                    debug!(sink = %self.sink, status = r.status().as_u16(), "Collector refused the heartbeat.");
                }
                Err(e) => {
                    self.failed.inc();
                    debug!(sink = %self.sink, error = %weir_core::http_client::chain(&e), "Heartbeat not sent.");
                }
            }
        }
    }

    /// The heartbeat at `now`, with rates since the previous one.
    fn beat(&mut self, now: Instant) -> Heartbeat {
        let sinks = self
            .agent
            .sinks()
            .into_iter()
            .map(|s| self.sink_beat(s, now))
            .collect();
        Heartbeat {
            agent: self.agent.id().to_owned(),
            host: self.host.clone(),
            version: self.agent.version().to_owned(),
            started_unix_ms: self
                .agent
                .started()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            uptime_secs: self.agent.uptime_secs(),
            interval_ms: self.interval.as_millis() as u64,
            sinks,
        }
    }

    fn sink_beat(&mut self, s: SinkSnapshot, now: Instant) -> SinkBeat {
        let rate = match self.previous.insert(s.id.clone(), (s.acked_events, now)) {
            Some((before, at)) if now > at => {
                s.acked_events.saturating_sub(before) as f64 / (now - at).as_secs_f64()
            }
            _ => 0.0,
        };
        SinkBeat {
            id: s.id,
            sink_type: s.type_name,
            backlog_events: s.backlog_events,
            backlog_bytes: s.backlog_bytes,
            capacity_bytes: s.capacity_bytes,
            lag_seconds: s.lag_seconds,
            acked_per_sec: rate,
            failing: s.failing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::metrics::Registry;

    fn beater(agent: AgentInfo) -> Beater {
        Beater {
            client: reqwest::Client::new(),
            url: String::new(),
            sink: "c".into(),
            host: "h".into(),
            agent,
            interval: Duration::from_secs(1),
            sent: Counter::default(),
            failed: Counter::default(),
            previous: HashMap::new(),
        }
    }

    #[test]
    fn rates_are_acknowledged_events_per_second_between_beats() {
        let root = Registry::new();
        let acked =
            root.component("c", "collector")
                .counter("weir_sink_acked_events_total", "", &[]);
        let agent = AgentInfo::new(
            "a".into(),
            "9.9",
            root,
            vec![("c".into(), "collector".into())],
        );
        let mut b = beater(agent);
        let t0 = Instant::now();
        acked.add(100);
        let first = b.beat(t0);
        assert_eq!(
            first.sinks[0].acked_per_sec, 0.0,
            "no rate before a second beat"
        );
        assert_eq!(first.version, "9.9");
        assert_eq!(first.interval_ms, 1000);
        acked.add(50);
        let second = b.beat(t0 + Duration::from_secs(2));
        assert_eq!(second.sinks[0].acked_per_sec, 25.0);
        assert_eq!(second.check(), Ok(()));
    }
}
