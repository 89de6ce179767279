//! JoinGroup (API 11), versions 0–7 (flexible from 6).

use bytes::Bytes;

use super::wire::{Codec, Message, WireError};

/// A member joining (or rejoining) a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinGroupRequest {
    pub group_id: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<JoinGroupRequestProtocol>,
}

/// An assignment protocol the member supports, with its metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinGroupRequestProtocol {
    pub name: String,
    pub metadata: Bytes,
}

impl Message for JoinGroupRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.group_id)?;
        c.i32(&mut self.session_timeout_ms)?;
        if v >= 1 {
            c.i32(&mut self.rebalance_timeout_ms)?;
        }
        c.string(&mut self.member_id)?;
        if v >= 5 {
            c.nullable_string(&mut self.group_instance_id)?;
        }
        c.string(&mut self.protocol_type)?;
        c.array(&mut self.protocols, v)?;
        c.tags()
    }
}

impl Message for JoinGroupRequestProtocol {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.bytes(&mut self.metadata)?;
        c.tags()
    }
}

/// The generation joined; the leader also gets every member's metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinGroupResponse {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinGroupResponseMember>,
}

/// A member, as the leader sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinGroupResponseMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

impl Message for JoinGroupResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 2 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.i16(&mut self.error_code)?;
        c.i32(&mut self.generation_id)?;
        if v >= 7 {
            c.nullable_string(&mut self.protocol_type)?;
            c.nullable_string(&mut self.protocol_name)?;
        } else {
            let mut n = self.protocol_name.take().unwrap_or_default();
            c.string(&mut n)?;
            self.protocol_name = Some(n);
        }
        c.string(&mut self.leader)?;
        c.string(&mut self.member_id)?;
        c.array(&mut self.members, v)?;
        c.tags()
    }
}

impl Message for JoinGroupResponseMember {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.member_id)?;
        if v >= 5 {
            c.nullable_string(&mut self.group_instance_id)?;
        }
        c.bytes(&mut self.metadata)?;
        c.tags()
    }
}
