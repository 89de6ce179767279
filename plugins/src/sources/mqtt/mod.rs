//! The `mqtt` source: subscribes to a broker over a persistent session and
//! acknowledges each QoS 1/2 message only once every channel downstream
//! holds it.
//!
//! Messages go into a keyed stream (one per source, client id and broker)
//! marked with their packet id and a fingerprint, so a QoS 2 message that
//! was spooled but not yet acknowledged when the agent died, and that the
//! broker redelivers with DUP set, is skipped by the spool. The bookkeeping
//! of acknowledgements and releases is in `ledger.rs` (its table says why
//! each rule exists); this file runs the connection around it.
//!
//! While a batch waits for full channels (`when_full: block`) the loop keeps
//! reading and answering keep-alives: QoS 1/2 messages simply stay
//! unacknowledged, so the broker stops at its in-flight limit and holds the
//! rest; past `buffer_events`/`buffer_bytes` the socket is no longer read,
//! and QoS 0 messages that arrive then are dropped and counted.

pub mod config;
pub mod decode;
pub mod filter;
pub mod ledger;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::{debug, error, warn};
use weir_core::metrics::Counter;
use weir_core::{Event, Metadata};

pub use config::MqttSourceConfig;
use decode::{fingerprint, Shape};
use ledger::{Item, Ledger, Taken};

use crate::component::{
    BuildError, ComponentError, DeadLetter, Mark, SendError, SourceBatch, SourceConfig,
    SourceContext, Stream, Task, ERRORS_OUTPUT,
};
use crate::mqtt::backoff::{Backoff, Outage};
use crate::mqtt::broker::{default_client_id, ConnectOptions};
use crate::mqtt::codec::{In, Message, Out, Protocol, Subscription};
use crate::mqtt::conn::{ConnError, Connection, KeepAlive, SessionRequest};

impl SourceConfig for MqttSourceConfig {
    fn problems(&self) -> Vec<String> {
        self.value_problems()
    }

    fn build(&self, ctx: SourceContext) -> Result<Task, BuildError> {
        let problems = self.value_problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        let filters = self.filters().map_err(BuildError::Config)?;
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| default_client_id(&ctx.host, &ctx.id));
        let opts = self.keys(&client_id).resolve().map_err(BuildError::Setup)?;
        let stream = Stream::keyed(format!(
            "mqtt:{}:{}@{}",
            ctx.id,
            client_id,
            opts.url.authority()
        ));
        let subscriptions = filters
            .iter()
            .zip(&self.topics)
            .map(|(f, t)| Subscription {
                filter: f.subscription().to_owned(),
                qos: t.qos,
            })
            .collect();
        let source = MqttSource {
            metrics: Metrics::new(&ctx),
            shape: Shape {
                decode: self.decode,
                filters,
                topic_field: self.topic_field.clone(),
            },
            cfg: self.clone(),
            opts,
            stream,
            subscriptions,
            ledger: Ledger::default(),
            ctx,
            last_warn: None,
            epoch: None,
        };
        Ok(Box::pin(source.run()))
    }
}

struct Metrics {
    messages: [Counter; 3],
    redeliveries: [Counter; 3],
    dropped: Counter,
    decode_errors: Counter,
}

impl Metrics {
    fn new(ctx: &SourceContext) -> Metrics {
        let r = &ctx.metrics;
        let id = ctx.id.as_str();
        let per_qos = |name, help| {
            ["0", "1", "2"].map(|q| r.counter(name, help, &[("component", id), ("qos", q)]))
        };
        Metrics {
            messages: per_qos("weir_mqtt_messages_total", "MQTT messages received."),
            redeliveries: per_qos(
                "weir_mqtt_redeliveries_total",
                "MQTT messages received with the DUP flag (the broker's redeliveries).",
            ),
            dropped: r.counter(
                "weir_mqtt_dropped_total",
                "QoS 0 MQTT messages dropped because the source's buffer was full.",
                &[("component", id)],
            ),
            decode_errors: r.counter(
                "weir_mqtt_decode_errors_total",
                "MQTT payloads that did not decode (sent to the errors output).",
                &[("component", id)],
            ),
        }
    }
}

/// Resolves once the agent stops (the guard `wait_for` returns is not `Send`).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A batch on its way to the channels.
struct Sending {
    task: JoinHandle<Result<(), SendError>>,
    taken: Taken,
}

/// How a connection's session ended.
enum End {
    Shutdown,
    Broken(ConnError),
    Fatal(ComponentError),
}

struct MqttSource {
    cfg: MqttSourceConfig,
    ctx: SourceContext,
    opts: ConnectOptions,
    shape: Shape,
    stream: Stream,
    subscriptions: Vec<Subscription>,
    ledger: Ledger,
    metrics: Metrics,
    last_warn: Option<Instant>,
    /// The session epoch in every fingerprint (state database; read at the first connect).
    epoch: Option<u64>,
}

/// Key in the state database: the session epoch, bumped whenever the broker
/// has no session for us, so that keys the spool holds from a lost session
/// never match a message of the new one.
const EPOCH_KEY: &str = "mqtt.session_epoch";

/// Key in the state database: the subscriptions the broker's session has (v3.1.1).
const SUBSCRIBED_KEY: &str = "mqtt.subscriptions";

impl MqttSource {
    async fn run(mut self) -> Result<(), ComponentError> {
        let broker = self.opts.url.authority();
        let mut backoff = Backoff::new(self.cfg.initial_backoff, self.cfg.max_backoff);
        let mut outage = Outage::default();
        let mut sending: Option<Sending> = None;
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            let opened = tokio::select! {
                r = Connection::open(&self.opts, self.session_request()) => r,
                _ = stopped(&mut shutdown) => return self.stop(None, sending).await,
            };
            let error = match opened {
                Ok(mut conn) => {
                    outage.recovered(&self.ctx.id, &broker);
                    let up = Instant::now();
                    self.ledger.connected(conn.connack.session_present);
                    debug!(source = %self.ctx.id, session_present = conn.connack.session_present, "MQTT connected.");
                    self.settle_epoch(conn.connack.session_present).await?;
                    let end = match self.subscribe(&mut conn).await {
                        Ok(()) => self.session(&mut conn, &mut sending).await,
                        Err(e) => End::Broken(e),
                    };
                    match end {
                        End::Shutdown => return self.stop(Some(conn), sending).await,
                        End::Fatal(e) => return Err(e),
                        End::Broken(e) => {
                            self.ledger.disconnected();
                            // A connection that lived a while was a success.
                            if up.elapsed() > Duration::from_secs(10) {
                                backoff.reset();
                            }
                            e
                        }
                    }
                }
                Err(e) => e,
            };
            outage.failed(&self.ctx.id, &broker, &error);
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut shutdown) => return self.stop(None, sending).await,
            }
        }
    }

    /// Loads the session epoch, and starts a new one (durably, before any
    /// message of the new session is spooled) when the broker lost ours.
    async fn settle_epoch(&mut self, session_present: bool) -> Result<(), ComponentError> {
        if self.epoch.is_some() && session_present {
            return Ok(());
        }
        let state = self.ctx.state.clone();
        let id = self.ctx.id.clone();
        let known = self.epoch;
        let epoch = tokio::task::spawn_blocking(move || -> Result<u64, ComponentError> {
            let stored = match known {
                Some(e) => e,
                None => state
                    .get(&id, EPOCH_KEY)?
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_le_bytes),
            };
            if session_present {
                return Ok(stored);
            }
            let next = stored + 1;
            state.put(&id, EPOCH_KEY, &next.to_le_bytes())?;
            Ok(next)
        })
        .await??;
        self.epoch = Some(epoch);
        Ok(())
    }

    fn session_request(&self) -> SessionRequest {
        SessionRequest {
            clean: false,
            session_expiry: (self.opts.protocol == Protocol::V5)
                .then(|| u32::try_from(self.cfg.session_expiry.as_secs()).unwrap_or(u32::MAX)),
            receive_maximum: (self.opts.protocol == Protocol::V5)
                .then_some(self.cfg.receive_maximum),
        }
    }

    fn subscriptions_text(&self) -> String {
        self.subscriptions
            .iter()
            .map(|s| format!("{} {}\n", s.qos, s.filter))
            .collect()
    }

    /// Subscribes unless the broker's session already has exactly our
    /// subscriptions: with MQTT 3.1.1, subscribing again would make the
    /// broker resend every retained message on each reconnect. (MQTT 5
    /// subscribes every time with "retained only for new subscriptions".)
    async fn subscribe(&mut self, conn: &mut Connection) -> Result<(), ConnError> {
        let want = self.subscriptions_text();
        if self.opts.protocol == Protocol::V311 && conn.connack.session_present {
            let state = self.ctx.state.clone();
            let id = self.ctx.id.clone();
            let had = tokio::task::spawn_blocking(move || state.get(&id, SUBSCRIBED_KEY))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            if had.as_deref() == Some(want.as_bytes()) {
                return Ok(());
            }
        }
        conn.queue(&Out::Subscribe {
            pkid: 1,
            filters: self.subscriptions.clone(),
        })?;
        conn.flush().await
    }

    async fn on_suback(&mut self, granted: Vec<Option<u8>>) {
        let mut all = true;
        for (s, g) in self.subscriptions.iter().zip(&granted) {
            match g {
                None => {
                    all = false;
                    error!(source = %self.ctx.id, filter = %s.filter, "The broker refused the subscription; nothing will arrive for it. Check the broker's ACL.");
                }
                Some(q) if *q < s.qos => {
                    warn!(source = %self.ctx.id, filter = %s.filter, asked = s.qos, granted = q, "The broker granted a lower QoS than configured.");
                }
                Some(_) => {}
            }
        }
        if all && self.opts.protocol == Protocol::V311 {
            let state = self.ctx.state.clone();
            let id = self.ctx.id.clone();
            let text = self.subscriptions_text();
            let saved = tokio::task::spawn_blocking(move || {
                state.put(&id, SUBSCRIBED_KEY, text.as_bytes())
            })
            .await;
            if !matches!(saved, Ok(Ok(()))) {
                warn!(source = %self.ctx.id, "Could not record the subscriptions; the next reconnect subscribes again.");
            }
        }
    }

    /// Runs one connection until it breaks or the agent stops.
    async fn session(&mut self, conn: &mut Connection, sending: &mut Option<Sending>) -> End {
        let mut keep = KeepAlive::new(self.cfg.keep_alive);
        let mut shutdown = self.ctx.shutdown.clone();
        let mut release_at: Option<tokio::time::Instant> = None;
        loop {
            if sending.is_none() {
                let now = tokio::time::Instant::now();
                let start = self.ledger.has_messages()
                    || (self.ledger.has_releases()
                        && now >= *release_at.get_or_insert(now + self.cfg.release_delay));
                if start {
                    release_at = None;
                    *sending = self.start_send();
                }
            }
            let (_, bytes, acked) = self.ledger.buffered();
            let reading =
                acked < self.cfg.buffer_events && (bytes as u64) < self.cfg.buffer_bytes.bytes();
            let release_wait = release_at.filter(|_| sending.is_none());
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return End::Shutdown,
                done = async { (&mut sending.as_mut().expect("guarded").task).await }, if sending.is_some() => {
                    let Some(s) = sending.take() else { continue };
                    match done {
                        Ok(Ok(())) => {
                            for p in self.ledger.held(s.taken) {
                                if let Err(e) = conn.queue(&p) {
                                    return End::Broken(e);
                                }
                            }
                            if conn.queued() > 0 {
                                if let Err(e) = conn.flush().await {
                                    return End::Broken(e);
                                }
                                keep.sent();
                            }
                        }
                        Ok(Err(SendError::Shutdown)) => return End::Shutdown,
                        Ok(Err(e)) => return End::Fatal(ComponentError::Fatal(e.to_string())),
                        Err(e) => return End::Fatal(ComponentError::Task(e)),
                    }
                }
                p = conn.read(), if reading => {
                    keep.received();
                    match p {
                        Ok(p) => {
                            if let Err(e) = self.on_packet(p).await {
                                return End::Broken(e);
                            }
                        }
                        Err(e) => return End::Broken(e),
                    }
                }
                _ = tokio::time::sleep_until(keep.deadline()) => {
                    match keep.tick(reading) {
                        Ok(true) => {
                            let sent = match conn.queue(&Out::PingReq) {
                                Ok(()) => conn.flush().await,
                                Err(e) => Err(e),
                            };
                            if let Err(e) = sent {
                                return End::Broken(e);
                            }
                            keep.sent();
                        }
                        Ok(false) => {}
                        Err(e) => return End::Broken(e),
                    }
                }
                _ = tokio::time::sleep_until(release_wait.unwrap_or_else(tokio::time::Instant::now)), if release_wait.is_some() => {}
            }
        }
    }

    async fn on_packet(&mut self, p: In) -> Result<(), ConnError> {
        match p {
            In::Publish(m) => self.on_publish(m),
            In::PubRel(pkid) => self.ledger.pubrel(pkid),
            In::SubAck(_, granted) => self.on_suback(granted).await,
            In::PingResp => {}
            In::Disconnect(why) => return Err(ConnError::Protocol(why)),
            In::ConnAck(_) => return Err(ConnError::Protocol("a second CONNACK".to_owned())),
            In::PubAck(..) | In::PubRec(..) | In::PubComp(_) | In::Unexpected(_) => {
                debug!(source = %self.ctx.id, packet = ?p, "Ignoring a packet a subscriber does not expect.");
            }
        }
        Ok(())
    }

    fn on_publish(&mut self, m: Message) {
        let q = usize::from(m.qos.min(2));
        self.metrics.messages[q].inc();
        if m.dup {
            self.metrics.redeliveries[q].inc();
        }
        let (n, bytes, _) = self.ledger.buffered();
        if m.qos == 0
            && (n >= self.cfg.buffer_events || bytes as u64 >= self.cfg.buffer_bytes.bytes())
        {
            self.metrics.dropped.inc();
            return;
        }
        let meta = Metadata {
            source: Arc::from(self.ctx.id.as_str()),
            host: self.ctx.host.clone(),
            topic: None,
            key: Some(m.topic.clone()),
        };
        let now = weir_core::event::now_nanos();
        let size = m.topic.len() + m.payload.len();
        let item = match self.shape.event(&m, meta.clone(), now) {
            Ok(event) => {
                let key = if m.qos == 0 { 0 } else { u64::from(m.pkid) };
                // Only QoS 2 redeliveries may be skipped: a QoS 0/1 message
                // reusing a packet id is never taken for a repeat.
                let mark = Mark::keyed(
                    key,
                    fingerprint(self.epoch.unwrap_or(0), &m.topic, &m.payload, m.qos),
                    m.qos == 2 && m.dup,
                );
                Item::new(event, false, m.qos, m.pkid, mark, size)
            }
            Err(e) => {
                self.metrics.decode_errors.inc();
                self.warn_rate_limited(&m, &e);
                let dead = DeadLetter::for_input(
                    &self.ctx.id,
                    "decode",
                    &e.to_string(),
                    Shape::original(&m),
                    meta,
                    now,
                );
                Item::new(dead, true, m.qos, m.pkid, Mark::default(), size)
            }
        };
        self.ledger.received(item);
    }

    fn warn_rate_limited(&mut self, m: &Message, e: &decode::DecodeError) {
        if self
            .last_warn
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            self.last_warn = Some(Instant::now());
            warn!(source = %self.ctx.id, topic = %String::from_utf8_lossy(&m.topic), error = %e, "Payload did not decode; sent to the errors output (further ones for 10s only counted).");
        }
    }

    fn start_send(&mut self) -> Option<Sending> {
        let mut taken = self.ledger.take(&self.stream)?;
        let batch = std::mem::take(&mut taken.batch);
        let dead: Vec<Event> = std::mem::take(&mut taken.dead);
        let out = self.ctx.output.clone();
        let task = tokio::spawn(async move {
            if !dead.is_empty() {
                out.send_to(ERRORS_OUTPUT, SourceBatch::unmarked(dead))
                    .await?;
            }
            if !batch.is_empty() {
                out.send(batch).await?;
            }
            Ok(())
        });
        Some(Sending { task, taken })
    }

    /// Stops: the batch in flight gets a moment to be held, and is then
    /// acknowledged, so the broker does not redeliver it after the restart.
    async fn stop(
        &mut self,
        conn: Option<Connection>,
        sending: Option<Sending>,
    ) -> Result<(), ComponentError> {
        if let Some(s) = sending {
            let held = matches!(
                tokio::time::timeout(Duration::from_secs(2), s.task).await,
                Ok(Ok(Ok(())))
            );
            if let (true, Some(mut c)) = (held, conn) {
                for p in self.ledger.held(s.taken) {
                    let _ = c.queue(&p);
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), c.flush()).await;
                c.close().await;
                return Ok(());
            }
            return Ok(());
        }
        if let Some(c) = conn {
            c.close().await;
        }
        Ok(())
    }
}
