//! The `modbus` source: polls Modbus TCP or RTU devices on a schedule and
//! makes one event per poll of the values read.
//!
//! - **Plan**: the configured reads are coalesced into as few requests as
//!   the register map allows ([`plan`]), made in order every `interval`.
//! - **One event per poll**, stamped with the poll's start: a field per
//!   read (decoded by [`decode`]); reads that failed are left out and named
//!   in an `errors` array. A poll where every read failed makes no event.
//! - **Failures are never fatal**: an exception response is counted
//!   (`weir_modbus_errors_total{reason="illegal_data_address"}`, …) and
//!   logged at most every 10 s; a timeout likewise. A broken connection (TCP
//!   closed, an answer that does not match the request, a TCP timeout) is
//!   dropped and re-established with capped, jittered backoff, logged once
//!   when lost (WARN, with the cause) and once when back (INFO, with the
//!   outage's length). On RTU a timeout only means that unit did not answer
//!   and the bus stays open for the others.
//! - **No replay**: a poll cannot be made again in the past, so events are
//!   unmarked; a crash loses at most the poll being sent. Polls that fall
//!   due while a full channel holds the source back are skipped, not queued.

pub mod client;
pub mod config;
pub mod decode;
pub mod plan;

use std::collections::HashMap;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_modbus::client::{Client, Context};
use tracing::{debug, info, warn};
use weir_core::event::{Fields, Value};
use weir_core::metrics::{Counter, Gauge, Registry};
use weir_core::{Event, Metadata};

pub use config::ModbusSourceConfig;

use crate::backoff::Backoff;
use crate::component::{
    BuildError, ComponentError, SourceBatch, SourceConfig, SourceContext, Task,
};
use crate::rate_limit::RateLimit;
use client::Outcome;
use config::{Endpoint, Kind};
use plan::Request;

/// At most one warning per this for per-request problems.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl SourceConfig for ModbusSourceConfig {
    fn problems(&self) -> Vec<String> {
        self.value_problems()
    }

    fn build(&self, ctx: SourceContext) -> Result<Task, BuildError> {
        let problems = self.value_problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        let endpoint = self.endpoint().map_err(|e| BuildError::Config(vec![e]))?;
        Ok(Box::pin(
            ModbusSource::new(self.clone(), endpoint, ctx).run(),
        ))
    }
}

/// Resolves once shutdown is signalled.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

struct Metrics {
    registry: Registry,
    id: String,
    events: Counter,
    polls: Counter,
    requests: Counter,
    connected: Gauge,
    errors: HashMap<&'static str, Counter>,
}

impl Metrics {
    fn new(r: &Registry, id: &str) -> Metrics {
        let l = [("component", id)];
        Metrics {
            registry: r.clone(),
            id: id.to_owned(),
            events: r.counter(
                "weir_source_events_total",
                "Events produced by a source.",
                &l,
            ),
            polls: r.counter(
                "weir_modbus_polls_total",
                "Polls made (each reads every configured value once).",
                &l,
            ),
            requests: r.counter("weir_modbus_requests_total", "Modbus requests sent.", &l),
            connected: r.gauge(
                "weir_modbus_connected",
                "1 while connected to the device (TCP) or its serial port is open (RTU), else 0.",
                &l,
            ),
            errors: HashMap::new(),
        }
    }

    fn error(&mut self, reason: &'static str) {
        let c = self.errors.entry(reason).or_insert_with(|| {
            self.registry.counter(
                "weir_modbus_errors_total",
                "Failed Modbus requests and connection attempts, by reason: an exception name (illegal_data_address, …), timeout, connect, transport or protocol.",
                &[("component", &self.id), ("reason", reason)],
            )
        });
        c.inc();
    }
}

struct ModbusSource {
    cfg: ModbusSourceConfig,
    endpoint: Endpoint,
    ctx: SourceContext,
    plan: Vec<Request>,
    metrics: Metrics,
    meta: Metadata,
    conn: Option<Context>,
    backoff: Backoff,
    /// No connection attempt before this.
    retry_at: Instant,
    /// Set while disconnected; the outage has been logged.
    down_since: Option<Instant>,
    request_log: RateLimit,
}

impl ModbusSource {
    fn new(cfg: ModbusSourceConfig, endpoint: Endpoint, ctx: SourceContext) -> ModbusSource {
        let metrics = Metrics::new(&ctx.metrics, &ctx.id);
        let meta = Metadata {
            source: ctx.id.as_str().into(),
            host: ctx.host.clone(),
            topic: None,
            key: None,
        };
        ModbusSource {
            plan: plan::plan(&cfg.reads),
            backoff: Backoff::new(cfg.initial_backoff, cfg.max_backoff),
            cfg,
            endpoint,
            ctx,
            metrics,
            meta,
            conn: None,
            retry_at: Instant::now(),
            down_since: None,
            request_log: RateLimit::new(WARN_EVERY),
        }
    }

    async fn run(mut self) -> Result<(), ComponentError> {
        let mut shutdown = self.ctx.shutdown.clone();
        let mut ticker = tokio::time::interval(self.cfg.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        info!(source = %self.ctx.id, url = %self.cfg.url, requests = self.plan.len(), reads = self.cfg.reads.len(), "Modbus source polling.");
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stopped(&mut shutdown) => break,
            }
            // A poll can take a while (a timeout per request): shutdown
            // does not wait for it.
            let polled = tokio::select! {
                e = self.poll() => e,
                () = stopped(&mut shutdown) => break,
            };
            let Some(event) = polled else {
                continue;
            };
            if self
                .ctx
                .output
                .send(SourceBatch::unmarked(vec![event]))
                .await
                .is_err()
            {
                break;
            }
            self.metrics.events.inc();
        }
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(self.cfg.timeout, c.disconnect()).await;
        }
        info!(source = %self.ctx.id, "Modbus source stopped.");
        Ok(())
    }

    /// Makes every request of the plan; the poll's event, if anything was read.
    async fn poll(&mut self) -> Option<Event> {
        let started = weir_core::event::now_nanos();
        if !self.ensure_connected().await {
            return None;
        }
        self.metrics.polls.inc();
        let mut fields = Fields::with_capacity(self.cfg.reads.len() + 1);
        let mut failed: Vec<Value> = Vec::new();
        for i in 0..self.plan.len() {
            let Some(conn) = self.conn.as_mut() else {
                self.failed(i, "not connected", &mut failed);
                continue;
            };
            self.metrics.requests.inc();
            let outcome = client::execute(conn, &self.plan[i], self.cfg.timeout).await;
            match outcome {
                Outcome::Words(w) => self.take_words(i, &w, &mut fields),
                Outcome::Bits(b) => self.take_bits(i, &b, &mut fields),
                Outcome::Exception(code) => {
                    let reason = client::exception_reason(code);
                    self.metrics.error(reason);
                    self.warn_request(i, reason);
                    self.failed(i, reason, &mut failed);
                }
                Outcome::Timeout => {
                    self.metrics.error("timeout");
                    self.failed(i, "timeout", &mut failed);
                    if matches!(self.endpoint, Endpoint::Tcp(_)) {
                        // A late answer would be taken for the next one's.
                        self.lost("no answer within the timeout".to_owned());
                    } else {
                        self.warn_request(i, "timeout");
                    }
                }
                Outcome::Broken { reason, error } => {
                    self.metrics.error(reason);
                    self.failed(i, reason, &mut failed);
                    self.lost(error);
                }
            }
        }
        if fields.is_empty() {
            return None;
        }
        if !failed.is_empty() {
            fields.insert("errors", Value::Array(failed));
        }
        Some(Event {
            timestamp: started,
            fields,
            meta: self.meta.clone(),
        })
    }

    /// Connects if needed and allowed by the backoff; whether connected.
    async fn ensure_connected(&mut self) -> bool {
        if self.conn.is_some() {
            return true;
        }
        if Instant::now() < self.retry_at {
            return false;
        }
        match client::connect(&self.endpoint, self.cfg.timeout).await {
            Ok(c) => {
                match self.down_since.take() {
                    Some(t) => {
                        info!(source = %self.ctx.id, url = %self.cfg.url, outage = %format!("{:.1}s", t.elapsed().as_secs_f64()), "Modbus device reachable again; polling.")
                    }
                    None => {
                        info!(source = %self.ctx.id, url = %self.cfg.url, "Connected to the Modbus device.")
                    }
                }
                self.conn = Some(c);
                self.metrics.connected.set(1);
                self.backoff.reset();
                true
            }
            Err(e) => {
                self.metrics.error("connect");
                if self.down_since.is_none() {
                    warn!(source = %self.ctx.id, url = %self.cfg.url, error = %e, "Cannot reach the Modbus device; retrying with backoff.");
                    self.down_since = Some(Instant::now());
                } else {
                    debug!(source = %self.ctx.id, error = %e, "Modbus device still unreachable.");
                }
                self.retry_at = Instant::now() + self.backoff.next_delay();
                false
            }
        }
    }

    /// Drops a connection that can no longer be trusted; logs the outage once.
    fn lost(&mut self, cause: String) {
        if self.conn.take().is_none() {
            return;
        }
        self.metrics.connected.set(0);
        warn!(source = %self.ctx.id, url = %self.cfg.url, cause = %cause, "Lost the Modbus connection; reconnecting with backoff.");
        self.down_since = Some(Instant::now());
        self.retry_at = Instant::now() + self.backoff.next_delay();
    }

    fn take_words(&self, i: usize, words: &[u16], fields: &mut Fields) {
        for &(r, off) in &self.plan[i].reads {
            let read = &self.cfg.reads[r];
            let from = usize::from(off);
            let to = from + usize::from(read.data_type().width());
            if let Some(w) = words.get(from..to) {
                fields.insert(read.name.as_str(), decode::registers(read, w));
            }
        }
    }

    fn take_bits(&self, i: usize, bits: &[bool], fields: &mut Fields) {
        for &(r, off) in &self.plan[i].reads {
            if let Some(&b) = bits.get(usize::from(off)) {
                fields.insert(self.cfg.reads[r].name.as_str(), decode::bit(b));
            }
        }
    }

    /// Names the reads of request `i` in the event's `errors`.
    fn failed(&self, i: usize, reason: &str, out: &mut Vec<Value>) {
        for &(r, _) in &self.plan[i].reads {
            out.push(Value::String(format!(
                "{}: {reason}",
                self.cfg.reads[r].name
            )));
        }
    }

    fn warn_request(&mut self, i: usize, reason: &str) {
        if let Some(earlier) = self.request_log.check() {
            let q = &self.plan[i];
            let kind = match q.kind {
                Kind::Holding => "holding",
                Kind::Input => "input",
                Kind::Coil => "coil",
                Kind::Discrete => "discrete",
            };
            warn!(source = %self.ctx.id, unit = q.unit, kind, address = q.address, count = q.count, reason, earlier, "Modbus request failed; its values are missing from this poll.");
        }
    }
}
