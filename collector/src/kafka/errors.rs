//! The service's refusals as Kafka error codes.
//!
//! | service | Kafka | client does |
//! |---|---|---|
//! | not authorised (topic) | `TOPIC_AUTHORIZATION_FAILED` (29) | fails the request |
//! | not authorised (group) | `GROUP_AUTHORIZATION_FAILED` (30) | fails |
//! | unknown topic or partition | `UNKNOWN_TOPIC_OR_PARTITION` (3) | refreshes metadata, retries |
//! | invalid name | `INVALID_TOPIC_EXCEPTION` (17) | fails |
//! | limits | `POLICY_VIOLATION` (44) | fails |
//! | corrupt batch | `CORRUPT_MESSAGE` (2) | fails the batch |
//! | out of order | `OUT_OF_ORDER_SEQUENCE_NUMBER` (45) | idempotent producer recovers or fails |
//! | unknown producer | `UNKNOWN_PRODUCER_ID` (59) | resets its sequence / epoch |
//! | fenced, unissued epoch | `INVALID_PRODUCER_EPOCH` (47) | asks for a new epoch |
//! | producer id not yours | `INVALID_PRODUCER_ID_MAPPING` (49) | fails |
//! | conflicting batch | `INVALID_RECORD` (87) | fails the batch: never taken for delivered |
//! | offset out of range | `OFFSET_OUT_OF_RANGE` (1) | applies `auto.offset.reset` |
//! | storage error, not yet durable | `KAFKA_STORAGE_ERROR` (56) | retries |
//! | shutting down, busy | `REQUEST_TIMED_OUT` (7) | retries |

use crate::service::{GroupError, ServiceError};

/// Kafka error codes used here (kafka/common/protocol/Errors.java).
pub mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REQUEST: i16 = 42;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const INVALID_RECORD: i16 = 87;
}

/// The Kafka error code of a service refusal.
pub fn of(e: &ServiceError) -> i16 {
    use ServiceError::*;
    match e {
        Unauthorized { op, .. } if *op == crate::auth::Operation::Group => {
            code::GROUP_AUTHORIZATION_FAILED
        }
        Unauthorized { .. } => code::TOPIC_AUTHORIZATION_FAILED,
        InvalidRequest(m) if m.contains("name") => code::INVALID_TOPIC_EXCEPTION,
        InvalidRequest(_) => code::INVALID_REQUEST,
        UnknownTopic(_) | UnknownPartition { .. } => code::UNKNOWN_TOPIC_OR_PARTITION,
        LimitExceeded(_) => code::POLICY_VIOLATION,
        CorruptBatch(weir_core::decode::InvalidBatch::Batch(
            weir_core::batch::BatchError::Magic(_),
        )) => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        CorruptBatch(_) => code::CORRUPT_MESSAGE,
        OutOfOrder { .. } => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        UnknownProducer { .. } => code::UNKNOWN_PRODUCER_ID,
        Fenced { .. } | InvalidProducerEpoch { .. } => code::INVALID_PRODUCER_EPOCH,
        InvalidProducerId { .. } => code::INVALID_PRODUCER_ID_MAPPING,
        EpochExhausted { .. } => code::INVALID_PRODUCER_EPOCH,
        Conflict { .. } => code::INVALID_RECORD,
        OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        Storage(_) | Damaged(_) => code::KAFKA_STORAGE_ERROR,
        ShuttingDown => code::REQUEST_TIMED_OUT,
    }
}

/// The Kafka error code of a group refusal.
pub fn of_group(e: &GroupError) -> i16 {
    use GroupError::*;
    match e {
        Unauthorized { .. } => code::GROUP_AUTHORIZATION_FAILED,
        Invalid(_) => code::INVALID_REQUEST,
        UnknownMember(_) => code::UNKNOWN_MEMBER_ID,
        IllegalGeneration { .. } => code::ILLEGAL_GENERATION,
        RebalanceInProgress => code::REBALANCE_IN_PROGRESS,
        InconsistentProtocol => code::INCONSISTENT_GROUP_PROTOCOL,
        InvalidSessionTimeout(_) => code::INVALID_SESSION_TIMEOUT,
        GroupFull(_) => code::GROUP_MAX_SIZE_REACHED,
        NotAvailable => code::COORDINATOR_NOT_AVAILABLE,
    }
}
