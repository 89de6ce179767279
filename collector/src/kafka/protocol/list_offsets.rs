//! ListOffsets (API 2), versions 1–6 (flexible from 6).

use super::wire::{Codec, Message, WireError};

/// Offsets asked for by time (-2 earliest, -1 latest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOffsetsRequest {
    pub replica_id: i32,
    pub isolation_level: i8,
    pub topics: Vec<ListOffsetsTopic>,
}

/// One topic's partitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOffsetsTopic {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartition>,
}

/// One partition and the time asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOffsetsPartition {
    pub partition_index: i32,
    pub current_leader_epoch: i32,
    pub timestamp: i64,
}

impl Message for ListOffsetsRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.replica_id)?;
        if v >= 2 {
            c.i8(&mut self.isolation_level)?;
        }
        c.array(&mut self.topics, v)?;
        c.tags()
    }
}

impl Message for ListOffsetsTopic {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.array(&mut self.partitions, v)?;
        c.tags()
    }
}

impl Message for ListOffsetsPartition {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.partition_index)?;
        if v >= 4 {
            c.i32(&mut self.current_leader_epoch)?;
        }
        c.i64(&mut self.timestamp)?;
        c.tags()
    }
}

/// The offsets found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOffsetsResponse {
    pub throttle_time_ms: i32,
    pub topics: Vec<ListOffsetsTopicResponse>,
}

/// One topic's partitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOffsetsTopicResponse {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartitionResponse>,
}

/// One partition's offset.
#[derive(Debug, Clone, PartialEq)]
pub struct ListOffsetsPartitionResponse {
    pub partition_index: i32,
    pub error_code: i16,
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: i32,
}

impl Default for ListOffsetsPartitionResponse {
    fn default() -> Self {
        ListOffsetsPartitionResponse {
            partition_index: 0,
            error_code: 0,
            timestamp: -1,
            offset: -1,
            leader_epoch: -1,
        }
    }
}

impl Message for ListOffsetsResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 2 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.array(&mut self.topics, v)?;
        c.tags()
    }
}

impl Message for ListOffsetsTopicResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.array(&mut self.partitions, v)?;
        c.tags()
    }
}

impl Message for ListOffsetsPartitionResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.partition_index)?;
        c.i16(&mut self.error_code)?;
        c.i64(&mut self.timestamp)?;
        c.i64(&mut self.offset)?;
        if v >= 4 {
            c.i32(&mut self.leader_epoch)?;
        }
        c.tags()
    }
}
