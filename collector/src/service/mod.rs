//! The collector's protocol rules, in one place: produce (idempotent append,
//! producer identities, duplicate or conflict), fetch (long-poll), offsets by
//! position or time, topics (create with limits, list, describe), consumer
//! group offsets and producer init.
//!
//! Every call takes the caller's [`Principal`] and typed requests and returns
//! typed results or a [`ServiceError`] whose [`ErrorKind`] a front-end maps to
//! its own wire (an HTTP status today, a Kafka error code later). Front-ends
//! only decode, authenticate, bound their resources (`crate::limits`) and
//! encode; they hold no rules of their own.
//!
//! Blocking store work runs on the blocking pool inside these calls, so a
//! front-end simply awaits them.

mod fleet;
mod groups;
pub mod membership;
mod produce;
pub mod producers;
mod read;
mod topics;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use weir_core::batch::BatchError;
use weir_core::decode::InvalidBatch;
use weir_core::metrics::{Counter, Registry as Metrics};
use weir_core::protocol::ErrorKind;

use crate::auth::{Operation, Principal};
use crate::groups::Groups;
use crate::log::Store;

pub use membership::{GroupError, MembershipLimits};
pub use produce::{Acks, BatchAck, PartitionBatch, ProduceRequest, ProduceResult};
pub use read::{FetchRequest, FetchResponse, OffsetSpec};

/// How long a batch that overtook an earlier one of its producer waits for
/// it: far longer than the moments by which a pipelining agent's requests on
/// different connections overtake each other, short enough that a real gap
/// is refused soon.
pub const DEFAULT_SEQUENCE_WAIT: Duration = Duration::from_secs(2);

/// Limits the service enforces.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    /// Most topics; creating one more is refused before anything is written.
    pub max_topics: usize,
    /// Most agents the fleet view remembers.
    pub max_agents: usize,
    /// Most partitions of a topic.
    pub max_partitions: u32,
    /// Partitions of a topic created without a count.
    pub default_partitions: u32,
    /// Longest a produce waits for its batch to be durable before answering "retry".
    pub durable_timeout: Duration,
    /// Longest a produce whose batch overtook an earlier batch of its
    /// producer waits for that batch before it is judged (and refused as out
    /// of order if it is still ahead): see [`Service::wait_for_turn`].
    pub sequence_wait: Duration,
    /// Longest a fetch long-polls.
    pub max_wait: Duration,
    /// Largest fetch answer asked for.
    pub max_fetch_bytes: usize,
    /// Bounds of consumer-group membership (the Kafka group protocol).
    pub membership: MembershipLimits,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_topics: 1000,
            max_agents: crate::fleet::agents::DEFAULT_MAX_AGENTS,
            max_partitions: 64,
            default_partitions: 1,
            durable_timeout: Duration::from_secs(30),
            sequence_wait: DEFAULT_SEQUENCE_WAIT,
            max_wait: Duration::from_secs(30),
            max_fetch_bytes: 16 << 20,
            membership: MembershipLimits::default(),
        }
    }
}

/// Why a request (or one partition of it) was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("principal {principal} may not {op} {name}")]
    Unauthorized {
        principal: String,
        op: Operation,
        name: String,
    },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no topic {0}")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("{0}")]
    LimitExceeded(String),
    /// The batch is refused as it is: header, CRC, records, compression,
    /// size or timestamps (the reason says which).
    #[error("invalid batch: {0}")]
    CorruptBatch(#[from] InvalidBatch),
    #[error("out of order sequence from producer {producer_id}: got {got}, expected {expected}")]
    OutOfOrder {
        producer_id: i64,
        got: i32,
        expected: i32,
    },
    #[error("unknown producer {producer_id}: its first batch of an epoch must have sequence 0, got {got}")]
    UnknownProducer { producer_id: i64, got: i32 },
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    Fenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer id {producer_id} was not issued to principal {principal}")]
    InvalidProducerId { producer_id: i64, principal: String },
    #[error("producer {producer_id} epoch {epoch} was never issued (current {current})")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id} is at its last epoch; ask for a new producer id")]
    EpochExhausted { producer_id: i64 },
    #[error("conflict: the log holds a different batch at producer {producer_id} sequences {base_sequence}..={last_sequence} (offset {base_offset}): {differs}")]
    Conflict {
        producer_id: i64,
        base_sequence: i32,
        last_sequence: i32,
        base_offset: i64,
        differs: String,
    },
    #[error("offset {offset} outside [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("storage error: {0}")]
    Storage(String),
    /// Stored data the request needs is damaged (a topic's metadata, a
    /// group's offsets): refused, never reset, until an operator restores it.
    #[error("{0}")]
    Damaged(String),
    #[error("the collector is shutting down")]
    ShuttingDown,
}

impl ServiceError {
    /// The wire-independent kind of refusal.
    pub fn kind(&self) -> ErrorKind {
        use ServiceError::*;
        match self {
            Unauthorized { .. } => ErrorKind::Unauthorized,
            InvalidRequest(_) => ErrorKind::InvalidRequest,
            UnknownTopic(_) | UnknownPartition { .. } => ErrorKind::UnknownTopicOrPartition,
            LimitExceeded(_) => ErrorKind::LimitExceeded,
            CorruptBatch(_) => ErrorKind::CorruptBatch,
            OutOfOrder { .. } => ErrorKind::OutOfOrderSequence,
            UnknownProducer { .. } => ErrorKind::UnknownProducer,
            Fenced { .. } => ErrorKind::ProducerFenced,
            InvalidProducerId { .. } => ErrorKind::InvalidProducerId,
            InvalidProducerEpoch { .. } => ErrorKind::InvalidProducerEpoch,
            EpochExhausted { .. } => ErrorKind::EpochExhausted,
            Conflict { .. } => ErrorKind::ConflictingBatch,
            OffsetOutOfRange { .. } => ErrorKind::OffsetOutOfRange,
            Storage(_) | Damaged(_) => ErrorKind::StorageError,
            ShuttingDown => ErrorKind::Unavailable,
        }
    }

    /// The sequence the producer should continue from, for `OutOfOrder`.
    pub fn expected_sequence(&self) -> Option<i32> {
        match self {
            ServiceError::OutOfOrder { expected, .. } => Some(*expected),
            _ => None,
        }
    }
}

impl From<BatchError> for ServiceError {
    fn from(e: BatchError) -> Self {
        ServiceError::CorruptBatch(InvalidBatch::Batch(e))
    }
}

impl From<crate::groups::GroupError> for ServiceError {
    fn from(e: crate::groups::GroupError) -> Self {
        use crate::groups::GroupError as E;
        match e {
            E::Damaged { .. } => ServiceError::Damaged(e.to_string()),
            E::Io(e) => ServiceError::Storage(format!("consumer group storage: {e}")),
        }
    }
}

impl From<crate::log::StoreError> for ServiceError {
    fn from(e: crate::log::StoreError) -> Self {
        use crate::log::StoreError as E;
        match e {
            E::Damaged { .. } => ServiceError::Damaged(e.to_string()),
            E::InvalidName(_) | E::InvalidPartitions(_) => {
                ServiceError::InvalidRequest(e.to_string())
            }
            e => ServiceError::Storage(e.to_string()),
        }
    }
}

impl From<producers::IdentityError> for ServiceError {
    fn from(e: producers::IdentityError) -> Self {
        use producers::IdentityError as E;
        match e {
            E::NotYours {
                producer_id,
                principal,
            } => ServiceError::InvalidProducerId {
                producer_id,
                principal,
            },
            E::Fenced {
                producer_id,
                epoch,
                current,
            } => ServiceError::Fenced {
                producer_id,
                epoch,
                current,
            },
            E::UnissuedEpoch {
                producer_id,
                epoch,
                current,
            } => ServiceError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current,
            },
            E::EpochExhausted { producer_id } => ServiceError::EpochExhausted { producer_id },
            E::IdsExhausted => ServiceError::LimitExceeded("no producer ids left".into()),
            E::Storage(s) => ServiceError::Storage(s),
        }
    }
}

struct Counters {
    batches: Counter,
    records: Counter,
    bytes: Counter,
    duplicates: Counter,
    conflicts: Counter,
    overtaken: Counter,
}

impl Counters {
    fn new(m: &Metrics) -> Counters {
        let c = |name, help| m.counter(name, help, &[]);
        Counters {
            batches: c("weir_collector_batches_appended_total", "Batches appended to the log."),
            records: c("weir_collector_records_appended_total", "Records appended to the log."),
            bytes: c("weir_collector_bytes_appended_total", "Bytes appended to the log."),
            duplicates: c(
                "weir_collector_duplicate_batches_total",
                "Resent batches recognised as already written (same producer, epoch, sequences and CRC).",
            ),
            conflicts: c(
                "weir_collector_conflicting_batches_total",
                "Batches whose sequence range the log holds with different contents (refused).",
            ),
            overtaken: c(
                "weir_collector_overtaking_batches_total",
                "Batches that arrived before an earlier batch of their producer and waited for it.",
            ),
        }
    }
}

/// The collector's service: one per process, shared by every front-end.
pub struct Service {
    store: Arc<Store>,
    groups: Arc<Groups>,
    producers: producers::Registry,
    membership: membership::Membership,
    limits: ServiceLimits,
    /// Serialises topic creation: the count against `max_topics` and the
    /// directory and metadata writes of two first writes to the same new
    /// topic cannot interleave.
    create_lock: Mutex<()>,
    counters: Counters,
    /// Labelled metrics and the storage probe (`crate::metrics`).
    observed: Arc<crate::metrics::Observed>,
    /// Set when the collector starts shutting down: long-polls end at once.
    draining: watch::Receiver<bool>,
    /// Agents' last heartbeats and the topic rate history.
    fleet: Arc<crate::fleet::Fleet>,
}

impl Service {
    /// A service over an opened store. `draining` ends long-polls.
    pub fn new(
        store: Arc<Store>,
        groups: Arc<Groups>,
        limits: ServiceLimits,
        metrics: &Metrics,
        draining: watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Service>> {
        let producers = producers::Registry::open(&store.config().data_dir)?;
        let observed =
            crate::metrics::Observed::register(metrics, &store, &store.config().data_dir);
        let fleet = Arc::new(crate::fleet::Fleet::new(limits.max_agents));
        crate::metrics::register_fleet(metrics, Arc::downgrade(&fleet));
        Ok(Arc::new(Service {
            fleet,
            observed,
            store,
            groups,
            producers,
            membership: membership::Membership::new(limits.membership.clone()),
            limits,
            create_lock: Mutex::new(()),
            counters: Counters::new(metrics),
            draining,
        }))
    }

    /// The limits in force.
    pub fn limits(&self) -> &ServiceLimits {
        &self.limits
    }

    /// Whether the collector is shutting down (long waits end).
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Labelled metrics, request latencies and storage readiness.
    pub fn observed(&self) -> &Arc<crate::metrics::Observed> {
        &self.observed
    }

    /// The store (for shutdown sync and retention).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Refuses unless `who` may do `op` on `name`.
    fn authorize(who: &Principal, op: Operation, name: &str) -> Result<(), ServiceError> {
        if who.may(op, name) {
            Ok(())
        } else {
            Err(ServiceError::Unauthorized {
                principal: who.name().to_owned(),
                op,
                name: name.to_owned(),
            })
        }
    }
}

/// Runs blocking store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Storage(format!("store task failed: {e}")))
}

#[cfg(test)]
pub(crate) mod tests;
