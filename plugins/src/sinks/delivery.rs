//! What every sink reports about its deliveries, one way: counters of sent
//! and acknowledged events and bytes, failed attempts by `reason`, and the
//! outage log — one warning when deliveries start failing (with the cause
//! chain), one line when they work again (how long the outage lasted, how
//! many attempts failed and how much had built up in the channel) — and the
//! runtime told, for the agent's `/ready`.
//!
//! A sink calls [`Delivery::failed`] for each failed attempt it retries and
//! [`Delivery::delivered`] for each success; both are cheap, and safe to call
//! from concurrent tasks of one sink.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use weir_core::metrics::{Counter, Gauge, Registry};
use weir_core::units::ByteSize;

use crate::component::{SinkContext, SinkInput};

/// Reason label of a failed attempt whose peer answered with an HTTP error status.
pub const HTTP_STATUS: &str = "http_status";

/// The delivery reporting of one sink.
pub struct Delivery {
    sink: String,
    input: Arc<dyn SinkInput>,
    metrics: Registry,
    /// Events and bytes handed to the destination (retries included).
    pub sent_events: Counter,
    pub sent_bytes: Counter,
    /// Events and bytes the destination confirmed (made durable).
    pub acked_events: Counter,
    pub acked_bytes: Counter,
    failing: Gauge,
    retries: Mutex<HashMap<&'static str, Counter>>,
    outage: Mutex<Option<Outage>>,
}

struct Outage {
    since: Instant,
    failures: u64,
    reason: &'static str,
}

impl Delivery {
    /// The reporting of the sink running with `ctx`.
    pub fn new(ctx: &SinkContext) -> Arc<Delivery> {
        let r = &ctx.metrics;
        Arc::new(Delivery {
            sink: ctx.id.clone(),
            input: ctx.input.clone(),
            metrics: r.clone(),
            sent_events: r.counter(
                "weir_sink_sent_events_total",
                "Events a sink handed to its destination, retries included.",
                &[],
            ),
            sent_bytes: r.counter(
                "weir_sink_sent_bytes_total",
                "Bytes a sink handed to its destination (as encoded for it), retries included.",
                &[],
            ),
            acked_events: r.counter(
                "weir_sink_acked_events_total",
                "Events the destination confirmed as durable.",
                &[],
            ),
            acked_bytes: r.counter(
                "weir_sink_acked_bytes_total",
                "Bytes (as encoded for the destination) it confirmed as durable.",
                &[],
            ),
            failing: r.gauge(
                "weir_sink_failing",
                "1 while the sink's deliveries are failing (an outage), else 0.",
                &[],
            ),
            retries: Mutex::new(HashMap::new()),
            outage: Mutex::new(None),
        })
    }

    /// Counts a failed attempt that will be retried in `retry_in`, with its
    /// `reason` (see `weir_core::errors::reason`) and its cause chain. The
    /// first failure of an outage is logged as a warning; the others at
    /// debug level only, so an outage of hours is a few lines, not thousands.
    pub fn failed(&self, reason: &'static str, cause: &str, retry_in: Duration) {
        self.retry_counter(reason).inc();
        let mut o = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        match o.as_mut() {
            None => {
                *o = Some(Outage {
                    since: Instant::now(),
                    failures: 1,
                    reason,
                });
                self.failing.set(1);
                self.input.delivery_failing(Some(cause));
                let (events, bytes) = self.input.backlog();
                warn!(sink = %self.sink, reason, error = %cause, retry_in = ?retry_in, backlog_events = events, backlog_bytes = bytes,
                    "Delivery failing; events stay in the channel and are retried (logged once per outage, recovery is logged too).");
            }
            Some(out) => {
                out.failures += 1;
                if out.reason != reason {
                    // The cause changed (refused, then DNS): worth one line.
                    out.reason = reason;
                    self.input.delivery_failing(Some(cause));
                    warn!(sink = %self.sink, reason, error = %cause, retry_in = ?retry_in, "Delivery still failing, for another reason.");
                } else {
                    debug!(sink = %self.sink, reason, error = %cause, retry_in = ?retry_in, "Delivery failed again; retrying.");
                }
            }
        }
    }

    /// Records a successful delivery; ends the outage if there was one,
    /// logging how long it lasted and what had built up meanwhile.
    pub fn delivered(&self) {
        let ended = {
            let mut o = self.outage.lock().unwrap_or_else(|p| p.into_inner());
            o.take()
        };
        if let Some(out) = ended {
            self.failing.set(0);
            self.input.delivery_failing(None);
            let (events, bytes) = self.input.backlog();
            let lasted =
                humantime::format_duration(Duration::from_secs(out.since.elapsed().as_secs()));
            info!(sink = %self.sink, outage = %lasted, failed_attempts = out.failures, backlog_events = events, backlog_bytes = bytes,
                "Delivery recovered after {lasted}; {events} events ({}) had built up and are being sent.", ByteSize(bytes));
        }
    }

    /// Whether deliveries are failing now.
    pub fn is_failing(&self) -> bool {
        self.outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn retry_counter(&self, reason: &'static str) -> Counter {
        let mut m = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(reason)
            .or_insert_with(|| {
                self.metrics.counter(
                    "weir_sink_retries_total",
                    "Delivery attempts that failed and will be retried, by reason (connection_refused, dns, tls, timeout, http_status, ...).",
                    &[("reason", reason)],
                )
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{AckError, BoxFuture, Record};

    #[derive(Default)]
    struct FakeInput {
        failing: Mutex<Vec<Option<String>>>,
    }

    impl SinkInput for FakeInput {
        fn next_batch(
            &self,
            _: usize,
            _: usize,
            _: Option<Duration>,
        ) -> BoxFuture<'_, Option<Vec<Record>>> {
            Box::pin(async { None })
        }
        fn ack(&self, _: u64) -> BoxFuture<'_, Result<(), AckError>> {
            Box::pin(async { Ok(()) })
        }
        fn rewind(&self) {}
        fn backlog(&self) -> (u64, u64) {
            (7, 700)
        }
        fn delivery_failing(&self, cause: Option<&str>) {
            self.failing.lock().unwrap().push(cause.map(str::to_owned));
        }
    }

    #[test]
    fn an_outage_is_reported_once_at_start_and_once_at_recovery() {
        let input = Arc::new(FakeInput::default());
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let registry = Registry::new().component("out", "collector");
        let ctx = SinkContext {
            id: "out".into(),
            host: "h".into(),
            input: input.clone(),
            state: crate::state::StateStore::in_memory().unwrap(),
            shutdown,
            metrics: registry.clone(),
        };
        let d = Delivery::new(&ctx);
        d.delivered();
        for _ in 0..5 {
            d.failed(
                "connection_refused",
                "Connection refused",
                Duration::from_secs(1),
            );
        }
        assert!(d.is_failing());
        d.delivered();
        d.delivered();
        assert!(!d.is_failing());
        assert_eq!(
            *input.failing.lock().unwrap(),
            vec![Some("Connection refused".to_owned()), None],
            "the runtime hears of the outage once and of its end once"
        );
        let text = registry.render();
        assert!(text.contains(
            "weir_sink_retries_total{component=\"out\",component_type=\"collector\",reason=\"connection_refused\"} 5"
        ), "{text}");
        assert!(
            text.contains("weir_sink_failing{component=\"out\",component_type=\"collector\"} 0")
        );
    }
}
