//! SyncGroup (API 14), versions 0–5 (flexible from 4).

use bytes::Bytes;

use super::wire::{Codec, Message, WireError};

/// A member's sync; the leader's carries every member's assignment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncGroupRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<SyncGroupRequestAssignment>,
}

/// One member's assignment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncGroupRequestAssignment {
    pub member_id: String,
    pub assignment: Bytes,
}

impl Message for SyncGroupRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.group_id)?;
        c.i32(&mut self.generation_id)?;
        c.string(&mut self.member_id)?;
        if v >= 3 {
            c.nullable_string(&mut self.group_instance_id)?;
        }
        if v >= 5 {
            c.nullable_string(&mut self.protocol_type)?;
            c.nullable_string(&mut self.protocol_name)?;
        }
        c.array(&mut self.assignments, v)?;
        c.tags()
    }
}

impl Message for SyncGroupRequestAssignment {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.member_id)?;
        c.bytes(&mut self.assignment)?;
        c.tags()
    }
}

/// This member's assignment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncGroupResponse {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl Message for SyncGroupResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 1 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.i16(&mut self.error_code)?;
        if v >= 5 {
            c.nullable_string(&mut self.protocol_type)?;
            c.nullable_string(&mut self.protocol_name)?;
        }
        c.bytes(&mut self.assignment)?;
        c.tags()
    }
}
