//! OffsetFetch (API 9), versions 1–7 (flexible from 6), one group per request.

use super::wire::{Codec, Message, WireError};

/// A group's committed offsets asked for: null topics (v2+) means all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetFetchRequest {
    pub group_id: String,
    pub topics: Option<Vec<OffsetFetchRequestTopic>>,
    pub require_stable: bool,
}

/// One topic's partitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetFetchRequestTopic {
    pub name: String,
    pub partition_indexes: Vec<i32>,
}

impl Message for OffsetFetchRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.group_id)?;
        if v >= 2 {
            c.nullable_array(&mut self.topics, v)?;
        } else {
            let mut t = self.topics.take().unwrap_or_default();
            c.array(&mut t, v)?;
            self.topics = Some(t);
        }
        if v >= 7 {
            c.bool(&mut self.require_stable)?;
        }
        c.tags()
    }
}

impl Message for OffsetFetchRequestTopic {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.i32_array(&mut self.partition_indexes)?;
        c.tags()
    }
}

/// The committed offsets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetFetchResponse {
    pub throttle_time_ms: i32,
    pub topics: Vec<OffsetFetchResponseTopic>,
    pub error_code: i16,
}

/// One topic's partitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetFetchResponseTopic {
    pub name: String,
    pub partitions: Vec<OffsetFetchResponsePartition>,
}

/// One partition's committed offset (-1: none).
#[derive(Debug, Clone, PartialEq)]
pub struct OffsetFetchResponsePartition {
    pub partition_index: i32,
    pub committed_offset: i64,
    pub committed_leader_epoch: i32,
    pub metadata: Option<String>,
    pub error_code: i16,
}

impl Default for OffsetFetchResponsePartition {
    fn default() -> Self {
        OffsetFetchResponsePartition {
            partition_index: 0,
            committed_offset: 0,
            committed_leader_epoch: -1,
            metadata: Some(String::new()),
            error_code: 0,
        }
    }
}

impl Message for OffsetFetchResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 3 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.array(&mut self.topics, v)?;
        if v >= 2 {
            c.i16(&mut self.error_code)?;
        }
        c.tags()
    }
}

impl Message for OffsetFetchResponseTopic {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.array(&mut self.partitions, v)?;
        c.tags()
    }
}

impl Message for OffsetFetchResponsePartition {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.partition_index)?;
        c.i64(&mut self.committed_offset)?;
        if v >= 5 {
            c.i32(&mut self.committed_leader_epoch)?;
        }
        c.nullable_string(&mut self.metadata)?;
        c.i16(&mut self.error_code)?;
        c.tags()
    }
}
