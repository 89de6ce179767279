//! Sending one journaled batch until the collector confirms it, retrying with
//! capped, jittered backoff. The bytes of every attempt are identical.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tracing::error;
use weir_core::http_client::{self, ClientError};
use weir_core::metrics::Counter;
use weir_core::protocol::{ApiError, ErrorKind, ProduceAck};
use weir_core::record::{encode_records, Compression, ProducerStamp, RecordParts};

use super::config::CollectorSinkConfig;
use super::journal::{Entry, Producer};
use super::partition_of;
use crate::component::{Record, SinkContext};
use crate::sinks::delivery::{self, Delivery};

/// How a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The collector holds it durably (appended now or before).
    Acked,
    /// The agent is shutting down.
    Shutdown,
    /// The collector refuses this producer's sequence or identity (it lost
    /// or fenced our state); the caller restarts under a new epoch, or a new
    /// producer id when `new_id`.
    Rejected { why: String, new_id: bool },
}

/// Largest JSON answer read from the collector: acknowledgements, topic and
/// producer answers are a few hundred bytes; anything past this is refused
/// rather than read into memory.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The HTTP side of the sink, shared by its batch tasks.
pub struct Sender {
    client: reqwest::Client,
    base: String,
    topic: String,
    initial_backoff: Duration,
    max_backoff: Duration,
    sink: String,
    delivery: Arc<Delivery>,
    batches: Counter,
    duplicates: Counter,
    conflicts: Counter,
}

/// A request failure, for logs.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Request(#[from] ClientError),
    #[error("collector answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unreadable answer: {0}")]
    Decode(String),
}

impl HttpError {
    /// A short reason for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            HttpError::Request(e) => e.reason(),
            HttpError::Status { .. } => delivery::HTTP_STATUS,
            HttpError::Decode(_) => "invalid_answer",
        }
    }
}

/// An HTTP client towards the collector of `cfg` (its TLS settings and
/// token) whose requests time out after `timeout`.
pub fn client(
    cfg: &CollectorSinkConfig,
    timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    let tls = cfg.tls.as_ref().map(|t| t.client()).unwrap_or_default();
    http_client::builder_with_token(&tls, cfg.token.as_deref())?
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .build()
        .map_err(|e| ClientError::Build(http_client::chain(&e)))
}

impl Sender {
    /// A sender for the sink configured by `cfg`.
    pub fn new(
        cfg: &CollectorSinkConfig,
        ctx: &SinkContext,
        delivery: Arc<Delivery>,
    ) -> Result<Sender, ClientError> {
        let client = client(cfg, cfg.request_timeout)?;
        let r = &ctx.metrics;
        Ok(Sender {
            client,
            base: cfg.url.trim_end_matches('/').to_owned(),
            topic: cfg.topic.clone(),
            initial_backoff: cfg.initial_backoff,
            max_backoff: cfg.max_backoff,
            sink: ctx.id.clone(),
            delivery,
            batches: r.counter(
                "weir_sink_acked_batches_total",
                "Batches the destination confirmed.",
                &[],
            ),
            duplicates: r.counter(
                "weir_sink_duplicate_batches_total",
                "Resent batches the collector already held (not appended twice).",
                &[],
            ),
            conflicts: r.counter(
                "weir_sink_conflicts_total",
                "Sends the collector refused as conflicting with a different batch it holds at our sequence numbers (not delivered; retried).",
                &[],
            ),
        })
    }

    /// POSTs JSON and decodes the JSON answer.
    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, HttpError> {
        let body = serde_json::to_vec(body).map_err(|e| HttpError::Decode(e.to_string()))?;
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(ClientError::from)?;
        decode(r).await
    }

    /// GETs and decodes a JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, HttpError> {
        decode(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .map_err(ClientError::from)?,
        )
        .await
    }

    /// Starts sending an encoded batch; the task ends when it is confirmed,
    /// refused or at shutdown. `acked` holds the first unconfirmed spool id:
    /// the task is the oldest in flight when it equals `entry.start`.
    pub fn spawn(
        self: &Arc<Self>,
        entry: Entry,
        batches: Vec<(u32, i32, i32, Bytes)>,
        acked: Arc<AtomicU64>,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<Outcome> {
        let me = self.clone();
        tokio::spawn(async move { me.send_entry(entry, batches, acked, shutdown).await })
    }

    async fn send_entry(
        &self,
        entry: Entry,
        batches: Vec<(u32, i32, i32, Bytes)>,
        acked: Arc<AtomicU64>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Outcome {
        for (partition, base_seq, count, bytes) in batches {
            let mut backoff = self.initial_backoff;
            let mut conflicted = false;
            let n = u64::try_from(count).unwrap_or(0);
            loop {
                self.delivery.sent_events.add(n);
                self.delivery.sent_bytes.add(bytes.len() as u64);
                match self.produce(partition, bytes.clone()).await {
                    Ok(ack) => {
                        if ack.duplicate {
                            self.duplicates.inc();
                        }
                        self.delivery.delivered();
                        self.delivery.acked_events.add(n);
                        self.delivery.acked_bytes.add(bytes.len() as u64);
                        break;
                    }
                    Err(Refusal::OutOfOrder(expected)) => {
                        if seq_at_or_after(expected, base_seq.wrapping_add(count)) {
                            // The collector is past this batch: it has it already.
                            self.duplicates.inc();
                            break;
                        }
                        if seq_at_or_after(expected, base_seq.wrapping_add(1)) {
                            error!(sink = %self.sink, partition, expected, base_seq, count, "Collector holds part of this batch only; treating it as delivered.");
                            break;
                        }
                        if acked.load(Ordering::SeqCst) == entry.start {
                            return Outcome::Rejected { why: format!("partition {partition}: collector expects sequence {expected}, oldest unconfirmed batch starts at {base_seq}"), new_id: false };
                        }
                        // An earlier batch has not landed yet; it will.
                        backoff = Duration::from_millis(20);
                    }
                    Err(Refusal::Fenced(why)) => return Outcome::Rejected { why, new_id: false },
                    Err(Refusal::Identity(why)) => return Outcome::Rejected { why, new_id: true },
                    Err(Refusal::Conflict(msg)) => {
                        // Not delivered: keep the batch, retry with backoff, and
                        // make noise. Someone wrote other data under our
                        // identity, or our state is older than the collector's.
                        self.conflicts.inc();
                        if !conflicted {
                            conflicted = true;
                            error!(sink = %self.sink, partition, base_seq, count, error = %msg, "The collector holds a different batch at our sequence numbers; this batch is NOT delivered and is retried. An operator must look (docs/operations.md: conflicts).");
                        }
                        self.delivery.failed("conflict", &msg, backoff);
                    }
                    Err(Refusal::UnknownProducer) => {
                        if acked.load(Ordering::SeqCst) == entry.start {
                            return Outcome::Rejected { why: format!("partition {partition}: the collector has no state for this producer"), new_id: false };
                        }
                        // The oldest batch in flight has not established us yet.
                        backoff = Duration::from_millis(20);
                    }
                    Err(Refusal::Retry { reason, msg }) => {
                        self.delivery.failed(
                            reason,
                            &format!("partition {partition}: {msg}"),
                            backoff,
                        );
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(jitter(backoff)) => {}
                    _ = shutdown.wait_for(|s| *s) => return Outcome::Shutdown,
                }
                backoff = (backoff * 2).min(self.max_backoff);
            }
        }
        self.batches.inc();
        Outcome::Acked
    }

    async fn produce(&self, partition: u32, body: Bytes) -> Result<ProduceAck, Refusal> {
        let url = format!("{}/v1/produce/{}/{partition}", self.base, self.topic);
        let r = self
            .client
            .post(url)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                // The cause chain: `... tcp connect error: Connection refused (os error 111)`.
                let e = ClientError::Request(e);
                Refusal::Retry {
                    reason: e.reason(),
                    msg: e.to_string(),
                }
            })?;
        let status = r.status();
        let bytes = http_client::read_limited(r, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| Refusal::Retry {
                reason: e.reason(),
                msg: e.to_string(),
            })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| Refusal::Retry {
                reason: "invalid_answer",
                msg: format!("unreadable acknowledgement: {e}"),
            });
        }
        let api: Option<ApiError> = serde_json::from_slice(&bytes).ok();
        match api {
            Some(ApiError {
                error: ErrorKind::OutOfOrderSequence,
                expected_sequence: Some(x),
                ..
            }) => Err(Refusal::OutOfOrder(x)),
            Some(ApiError {
                error: ErrorKind::ProducerFenced,
                message,
                ..
            }) => Err(Refusal::Fenced(message)),
            Some(ApiError {
                error: ErrorKind::UnknownProducer,
                ..
            }) => Err(Refusal::UnknownProducer),
            Some(ApiError {
                error: ErrorKind::ConflictingBatch,
                message,
                ..
            }) => Err(Refusal::Conflict(message)),
            Some(ApiError {
                error: ErrorKind::InvalidProducerEpoch,
                message,
                ..
            }) => Err(Refusal::Fenced(message)),
            Some(ApiError {
                error: ErrorKind::InvalidProducerId | ErrorKind::EpochExhausted,
                message,
                ..
            }) => Err(Refusal::Identity(message)),
            Some(a) => {
                if a.error == ErrorKind::CorruptBatch || a.error == ErrorKind::InvalidRequest {
                    error!(sink = %self.sink, status = status.as_u16(), error = %a.message, "Collector refused a batch as invalid; retrying (nothing is dropped).");
                }
                Err(Refusal::Retry {
                    reason: delivery::HTTP_STATUS,
                    msg: format!("collector answered {}: {}", status.as_u16(), a.message),
                })
            }
            None => Err(Refusal::Retry {
                reason: delivery::HTTP_STATUS,
                msg: format!(
                    "collector answered {}: {}",
                    status.as_u16(),
                    String::from_utf8_lossy(&bytes)
                ),
            }),
        }
    }
}

enum Refusal {
    OutOfOrder(i32),
    UnknownProducer,
    /// Our epoch is not the current one: re-init for a new epoch.
    Fenced(String),
    /// Our producer id is not ours (or exhausted): ask for a new id.
    Identity(String),
    /// A different batch is stored at our sequence numbers.
    Conflict(String),
    /// A transport failure or an error answer: retry the same batch.
    Retry {
        reason: &'static str,
        msg: String,
    },
}

async fn decode<T: serde::de::DeserializeOwned>(r: reqwest::Response) -> Result<T, HttpError> {
    let status = r.status();
    let bytes = http_client::read_limited(r, MAX_ANSWER_BYTES).await?;
    if !status.is_success() {
        return Err(HttpError::Status {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| HttpError::Decode(e.to_string()))
}

/// Encodes an entry's events: one RecordBatch per partition it writes to,
/// as (partition, base sequence, record count, bytes).
pub fn encode_entry(
    entry: &Entry,
    partitions: u32,
    producer: Producer,
    events: &[Record],
    compression: Compression,
) -> Result<Vec<(u32, i32, i32, Bytes)>, weir_core::record::RecordError> {
    let stamp = |p: u32| ProducerStamp {
        producer_id: producer.id,
        producer_epoch: producer.epoch,
        base_sequence: entry.base_seqs.get(&p).copied().unwrap_or(0),
    };
    if !events.is_empty() && events.iter().all(|e| e.meta.key.is_none()) {
        // The common case, one partition: no grouping of the records.
        let p = entry.keyless_partition;
        let s = stamp(p);
        let bytes = encode_records(events.iter().map(parts), s, compression)?;
        return Ok(vec![(p, s.base_sequence, events.len() as i32, bytes)]);
    }
    let mut groups: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
    for e in events {
        groups
            .entry(partition_of(
                &e.meta,
                partitions.max(1),
                entry.keyless_partition,
            ))
            .or_default()
            .push(e);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (p, evs) in groups {
        let s = stamp(p);
        let bytes = encode_records(evs.iter().map(|r| parts(r)), s, compression)?;
        out.push((p, s.base_sequence, evs.len() as i32, bytes));
    }
    Ok(out)
}

/// What `encode_records` takes of a record.
fn parts(r: &Record) -> RecordParts<'_> {
    RecordParts {
        timestamp: r.timestamp,
        meta: &r.meta,
        value: &r.value,
    }
}

/// Whether sequence `a` is at or after `b`, in Kafka's wrapping 31-bit space.
pub(super) fn seq_at_or_after(a: i32, b: i32) -> bool {
    let m = i64::from(i32::MAX) + 1;
    let d = (i64::from(a) - i64::from(b)).rem_euclid(m);
    d < m / 2
}

/// `d` scaled by a random factor in [0.5, 1.5).
pub fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Event, Metadata};

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_at_or_after(10, 10));
        assert!(seq_at_or_after(11, 10));
        assert!(!seq_at_or_after(9, 10));
        assert!(seq_at_or_after(2, i32::MAX - 2));
    }

    #[test]
    fn re_encoding_an_entry_gives_identical_batches() {
        let events: Vec<Record> = (0..20)
            .map(|i| {
                let mut e = Event::from_message(format!("m{i}"), Metadata::default());
                e.timestamp = i;
                if i % 3 == 0 {
                    e.meta.key = Some(Bytes::from(format!("k{i}")));
                }
                Record::from_event(i as u64, &e)
            })
            .collect();
        let entry = Entry {
            start: 0,
            end: 20,
            keyless_partition: 1,
            base_seqs: [(0, 5), (1, 7), (2, 9)].into(),
        };
        let p = Producer {
            id: 3,
            epoch: 0,
            issued: true,
        };
        let a = encode_entry(&entry, 3, p, &events, Compression::Zstd).unwrap();
        let b = encode_entry(&entry, 3, p, &events, Compression::Zstd).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.iter().map(|x| x.2).sum::<i32>(), 20);
        for (part, base, _, bytes) in &a {
            let h = weir_core::batch::verify(bytes).unwrap();
            assert_eq!(h.base_sequence, *base);
            assert_eq!(entry.base_seqs[part], *base);
        }
    }
}
