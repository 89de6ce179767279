//! Produce (API 0), versions 3–9 (flexible from 9).

use bytes::Bytes;

use super::wire::{Codec, Message, WireError};

/// A produce request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProduceRequest {
    pub transactional_id: Option<String>,
    pub acks: i16,
    pub timeout_ms: i32,
    pub topic_data: Vec<TopicProduceData>,
}

/// One topic's partitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicProduceData {
    pub name: String,
    pub partition_data: Vec<PartitionProduceData>,
}

/// One partition's records (a RecordBatch, a slice of the request frame).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionProduceData {
    pub index: i32,
    pub records: Option<Bytes>,
}

impl Message for ProduceRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 3 {
            c.nullable_string(&mut self.transactional_id)?;
        }
        c.i16(&mut self.acks)?;
        c.i32(&mut self.timeout_ms)?;
        c.array(&mut self.topic_data, v)?;
        c.tags()
    }
}

impl Message for TopicProduceData {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.array(&mut self.partition_data, v)?;
        c.tags()
    }
}

impl Message for PartitionProduceData {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.i32(&mut self.index)?;
        c.nullable_bytes(&mut self.records)?;
        c.tags()
    }
}

/// A produce answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProduceResponse {
    pub responses: Vec<TopicProduceResponse>,
    pub throttle_time_ms: i32,
}

/// One topic's answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicProduceResponse {
    pub name: String,
    pub partition_responses: Vec<PartitionProduceResponse>,
}

/// One partition's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionProduceResponse {
    pub index: i32,
    pub error_code: i16,
    pub base_offset: i64,
    /// -1: the broker uses the producer's CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub record_errors: Vec<BatchIndexAndErrorMessage>,
    pub error_message: Option<String>,
}

impl Default for PartitionProduceResponse {
    fn default() -> Self {
        PartitionProduceResponse {
            index: 0,
            error_code: 0,
            base_offset: 0,
            log_append_time_ms: -1,
            log_start_offset: -1,
            record_errors: Vec::new(),
            error_message: None,
        }
    }
}

/// A record that made its batch fail (v8+).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchIndexAndErrorMessage {
    pub batch_index: i32,
    pub batch_index_error_message: Option<String>,
}

impl Message for ProduceResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.array(&mut self.responses, v)?;
        if v >= 1 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.tags()
    }
}

impl Message for TopicProduceResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.array(&mut self.partition_responses, v)?;
        c.tags()
    }
}

impl Message for PartitionProduceResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.index)?;
        c.i16(&mut self.error_code)?;
        c.i64(&mut self.base_offset)?;
        if v >= 2 {
            c.i64(&mut self.log_append_time_ms)?;
        }
        if v >= 5 {
            c.i64(&mut self.log_start_offset)?;
        }
        if v >= 8 {
            c.array(&mut self.record_errors, v)?;
            c.nullable_string(&mut self.error_message)?;
        }
        c.tags()
    }
}

impl Message for BatchIndexAndErrorMessage {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.i32(&mut self.batch_index)?;
        c.nullable_string(&mut self.batch_index_error_message)?;
        c.tags()
    }
}
