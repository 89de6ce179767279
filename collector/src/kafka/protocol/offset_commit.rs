//! OffsetCommit (API 8), versions 2–8 (flexible from 8).

use super::wire::{Codec, Message, WireError};

/// Offsets a group member commits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    pub generation_id_or_member_epoch: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub retention_time_ms: i64,
    pub topics: Vec<OffsetCommitRequestTopic>,
}

/// One topic's offsets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetCommitRequestTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitRequestPartition>,
}

/// One partition's offset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetCommitRequestPartition {
    pub partition_index: i32,
    pub committed_offset: i64,
    pub committed_leader_epoch: i32,
    pub committed_metadata: Option<String>,
}

impl Message for OffsetCommitRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.group_id)?;
        if v >= 1 {
            c.i32(&mut self.generation_id_or_member_epoch)?;
            c.string(&mut self.member_id)?;
        }
        if v >= 7 {
            c.nullable_string(&mut self.group_instance_id)?;
        }
        if (2..=4).contains(&v) {
            c.i64(&mut self.retention_time_ms)?;
        }
        c.array(&mut self.topics, v)?;
        c.tags()
    }
}

impl Message for OffsetCommitRequestTopic {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.array(&mut self.partitions, v)?;
        c.tags()
    }
}

impl Message for OffsetCommitRequestPartition {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.partition_index)?;
        c.i64(&mut self.committed_offset)?;
        if v >= 6 {
            c.i32(&mut self.committed_leader_epoch)?;
        }
        c.nullable_string(&mut self.committed_metadata)?;
        c.tags()
    }
}

/// Each partition's outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetCommitResponse {
    pub throttle_time_ms: i32,
    pub topics: Vec<OffsetCommitResponseTopic>,
}

/// One topic's partitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetCommitResponseTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitResponsePartition>,
}

/// One partition's outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffsetCommitResponsePartition {
    pub partition_index: i32,
    pub error_code: i16,
}

impl Message for OffsetCommitResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 3 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.array(&mut self.topics, v)?;
        c.tags()
    }
}

impl Message for OffsetCommitResponseTopic {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.array(&mut self.partitions, v)?;
        c.tags()
    }
}

impl Message for OffsetCommitResponsePartition {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.i32(&mut self.partition_index)?;
        c.i16(&mut self.error_code)?;
        c.tags()
    }
}
