//! Produce: authorise, check the producer identity, append (or recognise a
//! duplicate), wait for durability as `acks` asks, and tell a genuine
//! duplicate from a conflict by reading the stored batch back.
//!
//! A resend is a *duplicate* only when the batch the log holds at that
//! producer's sequence range is the one sent: same producer id, epoch, base
//! sequence, record count, length and CRC (the CRC covers every record byte).
//! Anything else is a *conflict*: the sender is told, and nothing it sent is
//! counted as delivered. Without this check a batch forged under a victim's
//! identity would make the victim's real batch be answered "duplicate" and
//! dropped by its sender.

use std::sync::Arc;

use tracing::{error, warn};
use weir_core::batch::{self, BatchHeader};

use super::{blocking, Service, ServiceError};
use crate::auth::{Operation, Principal};
use crate::log::{AppendError, Appended, Partition};

/// When the service answers a produce, as Kafka's `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Once the batch is in the log file (page cache); a crash of the
    /// machine can still lose it (Kafka `acks=1`).
    Written,
    /// Once the batch is on stable storage per the fsync policy (Kafka `acks=all`).
    #[default]
    Durable,
}

/// One batch for one partition.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    pub partition: u32,
    /// Exactly one RecordBatch v2 (a Kafka front-end splits a partition's
    /// record set into its batches and sends them in order).
    pub batch: Vec<u8>,
}

/// A produce request to one topic.
#[derive(Debug, Clone)]
pub struct ProduceRequest {
    pub topic: String,
    pub partitions: Vec<PartitionBatch>,
    pub acks: Acks,
}

/// Where an accepted batch sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAck {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The log already held this exact batch; it was not appended again.
    pub duplicate: bool,
    /// The partition's first retained offset.
    pub log_start_offset: i64,
}

/// The outcome for one partition of a request.
#[derive(Debug, PartialEq, Eq)]
pub struct ProduceResult {
    pub partition: u32,
    pub result: Result<BatchAck, ServiceError>,
}

impl Service {
    /// Appends each partition's batch. A refusal of the whole request (not
    /// authorised, no such topic and may not create it, limits) is the
    /// outer error; a refusal of one batch is in its partition's result.
    pub async fn produce(
        self: &Arc<Self>,
        who: &Principal,
        req: ProduceRequest,
    ) -> Result<Vec<ProduceResult>, ServiceError> {
        let topic = match self.writable_topic(who, &req.topic).await {
            Ok(t) => t,
            Err(e) => {
                // Every batch of a refused request is refused with it.
                for _ in &req.partitions {
                    self.observed.rejected(e.kind());
                }
                warn!(principal = who.name(), topic = %req.topic, error = %e, "Refused a produce request.");
                return Err(e);
            }
        };
        let mut out = Vec::with_capacity(req.partitions.len());
        for pb in req.partitions {
            let partition = pb.partition;
            let header = weir_core::batch::BatchHeader::parse(&pb.batch).ok();
            let result = match topic.partitions.get(partition as usize) {
                None => Err(ServiceError::UnknownPartition {
                    topic: req.topic.clone(),
                    partition,
                }),
                Some(p) => self.produce_one(who, p.clone(), pb.batch, req.acks).await,
            };
            if let (Ok(_), Some(h)) = (&result, &header) {
                self.observed.produced(&req.topic, partition, h);
            }
            if let Err(e) = &result {
                self.observed.rejected(e.kind());
                if matches!(e, ServiceError::Conflict { .. }) {
                    self.counters.conflicts.inc();
                    error!(principal = who.name(), topic = %req.topic, partition, error = %e, "Refused a batch that conflicts with one already in the log.");
                } else {
                    warn!(principal = who.name(), topic = %req.topic, partition, error = %e, "Refused a batch.");
                }
            }
            out.push(ProduceResult { partition, result });
        }
        Ok(out)
    }

    /// Waits, at most `sequence_wait`, while the batch in `bytes` is ahead of
    /// its producer's sequence on `topic`/`partition`: a pipelining producer
    /// sends its batches on several connections, and a batch can arrive (or
    /// be read sooner) than the one before it. Refusing it as out of order
    /// made the producer send it again — the collector received, decompressed
    /// and validated it twice or more (up to 55 % of the produce requests in
    /// a run of `scripts/bench`). Waiting changes no rule: the batch is
    /// judged by [`Service::produce`] afterwards as before, and refused if
    /// still out of order.
    ///
    /// A front-end calls this after reading the body and before taking a
    /// produce slot, so waiting requests never hold the slots their
    /// predecessors need; what a waiting request holds (its connection and
    /// its body's share of the memory budget) is bounded as for any body in
    /// transit, and the wait ends at the deadline whatever the client does.
    /// Only a batch whose header names a producer and a sequence ahead of
    /// the partition's (`Producers::waits_for_earlier`) waits.
    pub async fn wait_for_turn(&self, who: &Principal, topic: &str, partition: u32, bytes: &[u8]) {
        if !who.may(Operation::Produce, topic) {
            return;
        }
        let Ok(h) = BatchHeader::parse(bytes) else {
            return;
        };
        let Some(p) = self
            .store
            .topic(topic)
            .and_then(|t| t.partitions.get(partition as usize).cloned())
        else {
            return;
        };
        let deadline = tokio::time::Instant::now() + self.limits.sequence_wait;
        // Subscribed before the first check: an append between the check
        // and the wait is seen as a change.
        let mut appends = p.appends();
        let mut counted = false;
        while p.waits_for_earlier(&h) {
            if !counted {
                counted = true;
                self.counters.overtaken.inc();
            }
            match tokio::time::timeout_at(deadline, appends.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// The topic a produce request writes to, if `who` may write (and create) it.
    async fn writable_topic(
        self: &Arc<Self>,
        who: &Principal,
        topic: &str,
    ) -> Result<Arc<crate::log::Topic>, ServiceError> {
        Self::authorize(who, Operation::Produce, topic)?;
        self.topic_for_write(who, topic).await
    }

    async fn produce_one(
        &self,
        who: &Principal,
        p: Arc<Partition>,
        bytes: Vec<u8>,
        acks: Acks,
    ) -> Result<BatchAck, ServiceError> {
        // The CRC and every record are checked once, by the append's
        // `decode::validate`, before anything is written: checking the CRC
        // here too read every byte twice (4 % of the collector's CPU under
        // load). The identity is checked on the header alone; a corrupt batch
        // is refused either way, for its identity or by the append.
        let sent = batch::verify_framing(&bytes)?;
        let sent_crc = crc_of(&bytes);
        self.producers
            .check(who.name(), sent.producer_id, sent.producer_epoch)?;
        let len = bytes.len() as u64;
        let mut durable = p.durable();
        let uncompressed = sent.attributes & 0x07 == 0;
        let appended = append(&p, bytes, uncompressed)
            .await?
            .map_err(from_append)?;
        if appended.duplicate || acks == Acks::Durable {
            // A duplicate is compared with what is stored, which is readable
            // only once durable; and it must be durable to be acknowledged.
            let last = appended.last_offset;
            let wait = durable.wait_for(|d| d.failed || d.end > last);
            match tokio::time::timeout(self.limits.durable_timeout, wait).await {
                Ok(Ok(d)) if !d.failed => {}
                Ok(Ok(_)) => {
                    return Err(ServiceError::Storage(
                        "the partition failed an fsync; restart the collector".into(),
                    ))
                }
                _ => {
                    return Err(ServiceError::Storage(
                        "batch written but not yet durable; retry".into(),
                    ))
                }
            }
        }
        if appended.duplicate {
            let part = p.clone();
            let base = appended.base_offset;
            let stored = blocking(move || part.read(base, 1)).await?;
            let stored = stored.map_err(|e| {
                ServiceError::Storage(format!("reading the stored batch to compare: {e}"))
            })?;
            compare_stored(&sent, sent_crc, &appended, &stored.bytes)?;
            self.counters.duplicates.inc();
        } else {
            self.counters.batches.inc();
            self.counters
                .records
                .add((appended.last_offset - appended.base_offset + 1) as u64);
            self.counters.bytes.add(len);
        }
        Ok(BatchAck {
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            duplicate: appended.duplicate,
            log_start_offset: p.bounds().0,
        })
    }
}

/// Largest uncompressed batch validated and appended on the calling task
/// (a few hundred microseconds of CPU at most) instead of on the blocking
/// pool. Handing each batch to a pool thread and back cost two thread
/// wake-ups and context switches per batch: about a quarter of the
/// collector's CPU under many producers. A compressed batch always goes to
/// the pool: what it decompresses to, and so the time its validation takes,
/// is only known by doing it, and a small hostile one could hold an
/// async worker (and every connection on it) for that long.
const INLINE_MAX: usize = 1 << 20;

/// Validates and appends `bytes` to `p`: on this task when the batch is
/// small and uncompressed and the partition's lock is free at once (the
/// append under the lock is the producer check and one `write` into the page
/// cache; no client I/O happens under it), on the blocking pool otherwise.
async fn append(
    p: &Arc<Partition>,
    bytes: Vec<u8>,
    uncompressed: bool,
) -> Result<Result<Appended, AppendError>, ServiceError> {
    let part = p.clone();
    if !(uncompressed && bytes.len() <= INLINE_MAX) {
        return blocking(move || part.append(bytes)).await;
    }
    let h = match p.validate(&bytes) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    match p.try_append_validated(bytes, h) {
        Ok(done) => Ok(done),
        Err((bytes, h)) => blocking(move || part.append_validated(bytes, h)).await,
    }
}

fn crc_of(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[17], b[18], b[19], b[20]])
}

/// Whether the batch stored at `appended` is the one `sent` describes.
fn compare_stored(
    sent: &BatchHeader,
    sent_crc: u32,
    appended: &Appended,
    stored: &[u8],
) -> Result<(), ServiceError> {
    let conflict = |differs: String| ServiceError::Conflict {
        producer_id: sent.producer_id,
        base_sequence: sent.base_sequence,
        last_sequence: sent.last_sequence(),
        base_offset: appended.base_offset,
        differs,
    };
    let first = batch::split(stored).next().ok_or_else(|| {
        ServiceError::Storage(format!(
            "no stored batch readable at offset {}",
            appended.base_offset
        ))
    })?;
    let h = BatchHeader::parse(first)?;
    if h.base_offset != appended.base_offset {
        return Err(conflict(format!(
            "the stored batch starts at offset {}",
            h.base_offset
        )));
    }
    let checks = [
        ("producer id", h.producer_id == sent.producer_id),
        ("epoch", h.producer_epoch == sent.producer_epoch),
        ("base sequence", h.base_sequence == sent.base_sequence),
        ("record count", h.record_count == sent.record_count),
        ("length", h.batch_length == sent.batch_length),
        ("CRC", crc_of(first) == sent_crc),
    ];
    let differs: Vec<&str> = checks.iter().filter(|c| !c.1).map(|c| c.0).collect();
    if differs.is_empty() {
        Ok(())
    } else {
        Err(conflict(format!("{} differ", differs.join(", "))))
    }
}

fn from_append(e: AppendError) -> ServiceError {
    match e {
        AppendError::Corrupt(b) => ServiceError::CorruptBatch(b),
        AppendError::OutOfOrder {
            producer_id,
            got,
            expected,
        } => ServiceError::OutOfOrder {
            producer_id,
            got,
            expected,
        },
        AppendError::UnknownProducer { producer_id, got } => {
            ServiceError::UnknownProducer { producer_id, got }
        }
        AppendError::Fenced {
            producer_id,
            epoch,
            current,
        } => ServiceError::Fenced {
            producer_id,
            epoch,
            current,
        },
        AppendError::Storage(s) => ServiceError::Storage(s),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use weir_core::batch::BatchError;
    use weir_core::decode::InvalidBatch;

    use super::*;
    use crate::http::status_of;

    #[test]
    fn every_append_error_maps_to_a_status_and_keeps_its_reason() {
        let cases = [
            (
                AppendError::Corrupt(InvalidBatch::Batch(BatchError::Crc {
                    stored: 1,
                    computed: 2,
                })),
                StatusCode::BAD_REQUEST,
            ),
            (
                AppendError::Corrupt(InvalidBatch::TooLarge { limit: 1 << 20 }),
                StatusCode::BAD_REQUEST,
            ),
            (
                AppendError::OutOfOrder {
                    producer_id: 7,
                    got: 9,
                    expected: 4,
                },
                StatusCode::CONFLICT,
            ),
            (
                AppendError::UnknownProducer {
                    producer_id: 7,
                    got: 3,
                },
                StatusCode::CONFLICT,
            ),
            (
                AppendError::Fenced {
                    producer_id: 7,
                    epoch: 1,
                    current: 2,
                },
                StatusCode::CONFLICT,
            ),
            (
                AppendError::Storage("No space left on device (os error 28)".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (e, status) in cases {
            let reason = e.to_string();
            let s = from_append(e);
            assert_eq!(status_of(s.kind()), status, "{reason}");
            assert!(s.to_string().contains(&reason), "{s} lost {reason}");
        }
    }
}
