//! The replication and consumer HTTP API between agents, consumers and the
//! collector: paths and JSON bodies. Batches travel as raw RecordBatch v2
//! bytes (`application/octet-stream`); everything else is JSON.
//!
//! | method | path | body → answer |
//! |---|---|---|
//! | GET  | `/v1/topics` | → `[TopicInfo]` |
//! | POST | `/v1/topics/{topic}` | `CreateTopic` → `TopicInfo` (idempotent; creates on first call) |
//! | POST | `/v1/produce/{topic}/{partition}` | batch bytes → `ProduceAck` or `ApiError` |
//! | POST | `/v1/producers` | `InitProducer` → `ProducerIdentity` (issue an id, or bump its epoch) |
//! | GET  | `/v1/producers/{id}/{topic}` | → `[ProducerPosition]` |
//! | GET  | `/v1/fetch/{topic}/{partition}?offset=&max_bytes=&wait_ms=` | → batch bytes, headers below |
//! | GET  | `/v1/offsets/{topic}/{partition}?at=earliest\|latest\|<ms>` | → `OffsetAnswer` |
//! | GET  | `/v1/groups/{group}/{topic}` | → `[GroupOffset]` |
//! | POST | `/v1/groups/{group}/{topic}` | `[GroupOffset]` → `{}` |

use serde::{Deserialize, Serialize};

/// Response header on fetch: the offset to fetch next.
pub const HEADER_NEXT_OFFSET: &str = "x-weir-next-offset";
/// Response header on fetch: the partition's end offset (one past the last record).
pub const HEADER_END_OFFSET: &str = "x-weir-end-offset";
/// Response header on fetch: the partition's first retained offset.
pub const HEADER_START_OFFSET: &str = "x-weir-start-offset";
/// Response header on fetch, present when records in the answered range were
/// lost to on-disk damage: inclusive offset ranges `first-last`, comma
/// separated, in order (e.g. `120-135,200-200`). The batches in the body are
/// every intact record around them; the next offset is past them.
pub const HEADER_LOST_OFFSETS: &str = "x-weir-lost-offsets";

/// Formats lost ranges for [`HEADER_LOST_OFFSETS`].
pub fn format_lost(ranges: &[(i64, i64)]) -> String {
    ranges
        .iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses [`HEADER_LOST_OFFSETS`]; malformed parts are skipped.
pub fn parse_lost(s: &str) -> Vec<(i64, i64)> {
    s.split(',')
        .filter_map(|r| {
            let (a, b) = r.trim().split_once('-')?;
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        })
        .collect()
}

/// Body of a topic creation request.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CreateTopic {
    /// Partitions for a new topic; the collector's default when absent.
    pub partitions: Option<u32>,
}

/// One partition of a topic as `weir-collector topics` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionInfo {
    pub partition: u32,
    /// First retained offset.
    pub start_offset: i64,
    /// One past the last offset.
    pub end_offset: i64,
    /// Bytes on disk in segments.
    pub size_bytes: u64,
    pub segments: usize,
}

/// A topic and its partitions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicInfo {
    pub topic: String,
    pub partitions: Vec<PartitionInfo>,
}

/// The collector's answer to an accepted (or already held) batch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProduceAck {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of the batch's last record.
    pub last_offset: i64,
    /// True when the collector already had this batch and did not append it again.
    pub duplicate: bool,
}

/// A refusal with a machine-readable kind; `expected_sequence` is set for `out_of_order_sequence`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    pub error: ErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sequence: Option<i32>,
}

/// Kinds of refusal.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The batch is malformed or its CRC fails; resending the same bytes will not help.
    CorruptBatch,
    /// The batch's sequence is not the next one expected from its producer.
    OutOfOrderSequence,
    /// A newer epoch of this producer has written; this one is fenced off.
    ProducerFenced,
    /// The collector has no state for this producer (new, or its data expired)
    /// and the batch does not start an epoch at sequence 0.
    UnknownProducer,
    /// No such topic or partition.
    UnknownTopicOrPartition,
    /// The request is invalid (bad name, too large, bad parameter).
    InvalidRequest,
    /// The collector could not store the batch (disk error); retry later.
    StorageError,
    /// Offset below the start or past the end of the log.
    OffsetOutOfRange,
    /// No credentials, or credentials the collector does not know.
    Unauthenticated,
    /// The caller's principal may not do this to this topic or group.
    Unauthorized,
    /// The batch's producer id was not issued to the calling principal.
    InvalidProducerId,
    /// The batch's producer epoch was never issued (newer than the current one).
    InvalidProducerEpoch,
    /// The producer id is at its last epoch; ask for a new producer id.
    EpochExhausted,
    /// The collector holds a batch with this producer's sequence numbers that
    /// is not the batch sent (different epoch, records or CRC). Not delivered:
    /// someone else wrote under this identity, or the producer's state was
    /// restored from an old copy. An operator must look (docs/operations.md).
    ConflictingBatch,
    /// A configured limit refuses this (topics, partitions, request size).
    LimitExceeded,
    /// The collector is busy or shutting down; retry after the `Retry-After` delay.
    Unavailable,
}

impl ErrorKind {
    /// The kind as it is written on the wire (`corrupt_batch`), for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        use ErrorKind::*;
        match self {
            CorruptBatch => "corrupt_batch",
            OutOfOrderSequence => "out_of_order_sequence",
            ProducerFenced => "producer_fenced",
            UnknownProducer => "unknown_producer",
            UnknownTopicOrPartition => "unknown_topic_or_partition",
            InvalidRequest => "invalid_request",
            StorageError => "storage_error",
            OffsetOutOfRange => "offset_out_of_range",
            Unauthenticated => "unauthenticated",
            Unauthorized => "unauthorized",
            InvalidProducerId => "invalid_producer_id",
            InvalidProducerEpoch => "invalid_producer_epoch",
            EpochExhausted => "epoch_exhausted",
            ConflictingBatch => "conflicting_batch",
            LimitExceeded => "limit_exceeded",
            Unavailable => "unavailable",
        }
    }
}

/// Body of a producer init request (Kafka's InitProducerId).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct InitProducer {
    /// An id the collector issued to this principal before: its epoch is
    /// bumped. Absent: a new id is issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<i64>,
}

/// A producer identity issued by the collector.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Where a producer stands in one partition, as the collector knows it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProducerPosition {
    pub partition: u32,
    pub producer_epoch: i16,
    /// Sequence the collector expects next from this producer in this partition.
    pub next_sequence: i32,
}

/// Answer to an offset lookup.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct OffsetAnswer {
    pub offset: i64,
}

/// A consumer group's committed position in one partition.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupOffset {
    pub partition: u32,
    /// The next offset the group will read.
    pub offset: i64,
}

/// Whether `name` is acceptable as a topic or group name: it becomes a directory name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_ranges_round_trip_and_garbage_is_skipped() {
        let r = vec![(120, 135), (200, 200)];
        assert_eq!(parse_lost(&format_lost(&r)), r);
        assert_eq!(parse_lost("x,5-3,7-9,-"), vec![(7, 9)]);
    }

    #[test]
    fn every_error_kind_is_named_as_on_the_wire() {
        use ErrorKind::*;
        for k in [
            CorruptBatch,
            OutOfOrderSequence,
            ProducerFenced,
            UnknownProducer,
            UnknownTopicOrPartition,
            InvalidRequest,
            StorageError,
            OffsetOutOfRange,
            Unauthenticated,
            Unauthorized,
            InvalidProducerId,
            InvalidProducerEpoch,
            EpochExhausted,
            ConflictingBatch,
            LimitExceeded,
            Unavailable,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str(), "{k:?}");
        }
    }

    #[test]
    fn names_that_could_escape_the_data_dir_are_invalid() {
        assert!(valid_name("app-logs.v1_x"));
        for bad in ["", ".", "..", "a/b", "../x", "a b", "ü"] {
            assert!(!valid_name(bad), "{bad:?} accepted");
        }
    }
}
