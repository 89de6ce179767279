//! The `mqtt` sink: publishes each record's JSON value to a topic rendered
//! from its fields, and acknowledges a channel range only once the broker
//! has confirmed every message in it (PUBACK for QoS 1, PUBCOMP for QoS 2;
//! QoS 0 once written to the socket).
//!
//! Delivery is at least once: the session starts clean, and after a broken
//! connection (or an agent crash) every unconfirmed message is published
//! again with a new packet id, which the broker cannot tell from a new one.

pub mod config;
pub mod template;
pub mod window;

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, error, warn};
use weir_core::metrics::Counter;

pub use config::MqttSinkConfig;
use template::Template;
use window::Window;

use crate::component::{BuildError, ComponentError, Record, SinkConfig, SinkContext, Task};
use crate::mqtt::backoff::{chain, Backoff};
use crate::mqtt::broker::{default_client_id, ConnectOptions};
use crate::mqtt::codec::{In, Message, Out};
use crate::mqtt::conn::{ConnError, Connection, KeepAlive, SessionRequest};
use crate::sinks::delivery::Delivery;

impl SinkConfig for MqttSinkConfig {
    fn problems(&self) -> Vec<String> {
        self.value_problems()
    }

    fn build(&self, ctx: SinkContext) -> Result<Task, BuildError> {
        let problems = self.value_problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| default_client_id(&ctx.host, &ctx.id));
        let opts = self.keys(&client_id).resolve().map_err(BuildError::Setup)?;
        let topic = Template::parse(&self.topic).map_err(|e| BuildError::Config(vec![e]))?;
        let r = &ctx.metrics;
        let id = ctx.id.as_str();
        let metrics = Metrics {
            delivery: Delivery::new(&ctx),
            unroutable: r.counter(
                "weir_mqtt_unroutable_total",
                "Records dropped because the topic template had no value and no default_topic is set.",
                &[("component", id)],
            ),
            rejected: r.counter(
                "weir_mqtt_rejected_total",
                "Messages the broker refused (MQTT 5 reason code) or that exceed its packet size.",
                &[("component", id)],
            ),
        };
        let sink = MqttSink {
            cfg: self.clone(),
            opts,
            topic,
            metrics,
            window: Window::default(),
            ctx,
            last_warn: None,
        };
        Ok(Box::pin(sink.run()))
    }
}

struct Metrics {
    delivery: std::sync::Arc<Delivery>,
    unroutable: Counter,
    rejected: Counter,
}

enum End {
    Shutdown,
    Broken(ConnError),
}

struct MqttSink {
    cfg: MqttSinkConfig,
    ctx: SinkContext,
    opts: ConnectOptions,
    topic: Template,
    metrics: Metrics,
    window: Window,
    last_warn: Option<Instant>,
}

async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl MqttSink {
    async fn run(mut self) -> Result<(), ComponentError> {
        // Reading the channel is not cancel safe: a task reads whole batches
        // and hands them over a channel of one.
        let (tx, mut batches) = mpsc::channel::<Vec<Record>>(1);
        let input = self.ctx.input.clone();
        let (n, bytes) = (self.cfg.batch_events, 16 << 20);
        let reader = tokio::spawn(async move {
            while let Some(batch) = input.next_batch(n, bytes, None).await {
                if !batch.is_empty() && tx.send(batch).await.is_err() {
                    break;
                }
            }
        });
        let broker = self.opts.url.authority();
        let mut backoff = Backoff::new(self.cfg.initial_backoff, self.cfg.max_backoff);
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            let opened = tokio::select! {
                r = Connection::open(&self.opts, SessionRequest { clean: true, session_expiry: None, receive_maximum: None }) => r,
                _ = stopped(&mut shutdown) => break,
            };
            let error = match opened {
                Ok(mut conn) => {
                    self.metrics.delivery.delivered();
                    let up = Instant::now();
                    let end = self.session(&mut conn, &mut batches).await;
                    self.window.reset();
                    match end {
                        End::Shutdown => {
                            conn.close().await;
                            break;
                        }
                        End::Broken(e) => {
                            if up.elapsed() > Duration::from_secs(10) {
                                backoff.reset();
                            }
                            e
                        }
                    }
                }
                Err(e) => e,
            };
            let delay = backoff.next_delay();
            self.metrics.delivery.failed(
                weir_core::errors::reason(&error),
                &format!("broker {broker}: {}", chain(&error)),
                delay,
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
        reader.abort();
        Ok(())
    }

    /// Publishes and collects acknowledgements until the connection breaks
    /// or the agent stops.
    async fn session(
        &mut self,
        conn: &mut Connection,
        batches: &mut mpsc::Receiver<Vec<Record>>,
    ) -> End {
        let mut keep = KeepAlive::new(self.cfg.keep_alive);
        let mut shutdown = self.ctx.shutdown.clone();
        let limit = usize::from(
            self.cfg
                .max_in_flight
                .min(conn.connack.receive_maximum.unwrap_or(u16::MAX)),
        );
        let max_out = conn
            .connack
            .max_packet_size
            .map_or(usize::MAX, |m| m as usize);
        loop {
            while let Some(m) = self.window.next_to_send(limit) {
                // Fixed header, topic length, packet id, properties: under 16 bytes.
                if m.topic.len() + m.payload.len() + 16 > max_out {
                    self.metrics.rejected.inc();
                    error!(sink = %self.ctx.id, bytes = m.payload.len(), limit = max_out, "Message larger than the broker accepts; dropped.");
                    if m.qos > 0 {
                        self.window.acked(m.pkid);
                    }
                    continue;
                }
                self.metrics.delivery.sent_events.inc();
                self.metrics.delivery.sent_bytes.add(m.payload.len() as u64);
                if let Err(e) = conn.queue(&Out::Publish(m)) {
                    return End::Broken(e);
                }
                if conn.queued() > (1 << 20) {
                    if let Err(e) = conn.flush().await {
                        return End::Broken(e);
                    }
                }
            }
            if conn.queued() > 0 {
                if let Err(e) = conn.flush().await {
                    return End::Broken(e);
                }
                keep.sent();
            }
            self.window.flushed();
            self.acknowledge().await;
            let room = self.window.unsent() == 0;
            tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => return End::Shutdown,
                p = conn.read() => {
                    keep.received();
                    match p {
                        Ok(p) => {
                            if let Err(e) = self.on_packet(p, conn) {
                                return End::Broken(e);
                            }
                        }
                        Err(e) => return End::Broken(e),
                    }
                }
                b = batches.recv(), if room => match b {
                    Some(b) => self.add(b),
                    None => return End::Shutdown,
                },
                _ = tokio::time::sleep_until(keep.deadline()) => match keep.tick(true) {
                    Ok(true) => {
                        if let Err(e) = conn.queue(&Out::PingReq) {
                            return End::Broken(e);
                        }
                    }
                    Ok(false) => {}
                    Err(e) => return End::Broken(e),
                },
            }
        }
    }

    fn add(&mut self, batch: Vec<Record>) {
        for r in batch {
            let topic = match self.topic.render(&r.value) {
                Ok(t) => t,
                Err(e) => match &self.cfg.default_topic {
                    Some(d) => d.clone(),
                    None => {
                        self.metrics.unroutable.inc();
                        if self
                            .last_warn
                            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
                        {
                            self.last_warn = Some(Instant::now());
                            warn!(sink = %self.ctx.id, error = %e, "Record has no topic and no default_topic is set; dropped (further ones for 10s only counted).");
                        }
                        self.window.push_done(r.id);
                        continue;
                    }
                },
            };
            self.window.push(
                r.id,
                Message {
                    topic: bytes::Bytes::from(topic.into_bytes()),
                    payload: r.value,
                    qos: self.cfg.qos,
                    pkid: 0,
                    dup: false,
                    retain: self.cfg.retain,
                },
            );
        }
    }

    fn on_packet(&mut self, p: In, conn: &mut Connection) -> Result<(), ConnError> {
        match p {
            In::PubAck(pkid, refused) | In::PubRec(pkid, refused @ Some(_)) => {
                if let Some(why) = refused {
                    self.metrics.rejected.inc();
                    error!(sink = %self.ctx.id, reason = %why, "The broker refused a message; it is dropped.");
                }
                self.window.acked(pkid);
            }
            In::PubRec(pkid, None) => {
                if self.window.received(pkid) {
                    conn.queue(&Out::PubRel(pkid))?;
                }
            }
            In::PubComp(pkid) => {
                self.window.completed(pkid);
            }
            In::PingResp => {}
            In::Disconnect(why) => return Err(ConnError::Protocol(why)),
            other => {
                debug!(sink = %self.ctx.id, packet = ?other, "Ignoring a packet a publisher does not expect.")
            }
        }
        Ok(())
    }

    /// Acknowledges the channel up to the first unconfirmed record.
    async fn acknowledge(&mut self) {
        let before = self.window.len();
        if let Some(end) = self.window.take_done() {
            self.metrics
                .delivery
                .acked_events
                .add((before - self.window.len()) as u64);
            if let Err(e) = self.ctx.input.ack(end).await {
                // The next acknowledgement covers it; a crash first resends (at least once).
                warn!(sink = %self.ctx.id, error = %e, "Acknowledgement not persisted; will retry.");
            }
        }
    }
}
