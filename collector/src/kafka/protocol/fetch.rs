//! Fetch (API 1), versions 4–12 (flexible from 12). Topics are named
//! (13+ name them by id, which the collector does not have).

use bytes::Bytes;

use super::wire::{Codec, Message, WireError};

/// A fetch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchRequest {
    pub replica_id: i32,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub isolation_level: i8,
    pub session_id: i32,
    pub session_epoch: i32,
    pub topics: Vec<FetchTopic>,
    pub forgotten_topics_data: Vec<ForgottenTopic>,
    pub rack_id: String,
}

/// One topic's partitions to fetch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchTopic {
    pub topic: String,
    pub partitions: Vec<FetchPartition>,
}

/// Where to read one partition from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchPartition {
    pub partition: i32,
    pub current_leader_epoch: i32,
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
    pub partition_max_bytes: i32,
}

/// Partitions a fetch session drops (v7+).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForgottenTopic {
    pub topic: String,
    pub partitions: Vec<i32>,
}

impl Message for FetchRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.replica_id)?;
        c.i32(&mut self.max_wait_ms)?;
        c.i32(&mut self.min_bytes)?;
        if v >= 3 {
            c.i32(&mut self.max_bytes)?;
        }
        if v >= 4 {
            c.i8(&mut self.isolation_level)?;
        }
        if v >= 7 {
            c.i32(&mut self.session_id)?;
            c.i32(&mut self.session_epoch)?;
        }
        c.array(&mut self.topics, v)?;
        if v >= 7 {
            c.array(&mut self.forgotten_topics_data, v)?;
        }
        if v >= 11 {
            c.string(&mut self.rack_id)?;
        }
        c.tags()
    }
}

impl Message for FetchTopic {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.topic)?;
        c.array(&mut self.partitions, v)?;
        c.tags()
    }
}

impl Message for FetchPartition {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.partition)?;
        if v >= 9 {
            c.i32(&mut self.current_leader_epoch)?;
        }
        c.i64(&mut self.fetch_offset)?;
        if v >= 12 {
            c.i32(&mut self.last_fetched_epoch)?;
        }
        if v >= 5 {
            c.i64(&mut self.log_start_offset)?;
        }
        c.i32(&mut self.partition_max_bytes)?;
        c.tags()
    }
}

impl Message for ForgottenTopic {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.topic)?;
        c.i32_array(&mut self.partitions)?;
        c.tags()
    }
}

/// A fetch answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchResponse {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub responses: Vec<FetchableTopicResponse>,
}

/// One topic's partitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchableTopicResponse {
    pub topic: String,
    pub partitions: Vec<PartitionData>,
}

/// One partition's batches, byte for byte as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionData {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
    pub preferred_read_replica: i32,
    pub records: Option<Bytes>,
}

impl Default for PartitionData {
    fn default() -> Self {
        PartitionData {
            partition_index: 0,
            error_code: 0,
            high_watermark: 0,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: None,
            preferred_read_replica: -1,
            records: None,
        }
    }
}

/// An aborted transaction in the answered range (never, here: no transactions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

impl Message for FetchResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 1 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        if v >= 7 {
            c.i16(&mut self.error_code)?;
            c.i32(&mut self.session_id)?;
        }
        c.array(&mut self.responses, v)?;
        c.tags()
    }
}

impl Message for FetchableTopicResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.topic)?;
        c.array(&mut self.partitions, v)?;
        c.tags()
    }
}

impl Message for PartitionData {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.partition_index)?;
        c.i16(&mut self.error_code)?;
        c.i64(&mut self.high_watermark)?;
        if v >= 4 {
            c.i64(&mut self.last_stable_offset)?;
        }
        if v >= 5 {
            c.i64(&mut self.log_start_offset)?;
        }
        if v >= 4 {
            c.nullable_array(&mut self.aborted_transactions, v)?;
        }
        if v >= 11 {
            c.i32(&mut self.preferred_read_replica)?;
        }
        c.nullable_bytes(&mut self.records)?;
        c.tags()
    }
}

impl Message for AbortedTransaction {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.i64(&mut self.producer_id)?;
        c.i64(&mut self.first_offset)?;
        c.tags()
    }
}
