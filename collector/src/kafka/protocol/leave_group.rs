//! LeaveGroup (API 13), versions 0–4 (flexible from 4; v3+ leaves several members).

use super::wire::{Codec, Message, WireError};

/// Members leaving a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    /// v0–2: the one member leaving.
    pub member_id: String,
    /// v3+: the members leaving.
    pub members: Vec<MemberIdentity>,
}

/// A member leaving (v3+).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberIdentity {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl Message for LeaveGroupRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.group_id)?;
        if v <= 2 {
            c.string(&mut self.member_id)?;
        } else {
            c.array(&mut self.members, v)?;
        }
        c.tags()
    }
}

impl Message for MemberIdentity {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.member_id)?;
        c.nullable_string(&mut self.group_instance_id)?;
        c.tags()
    }
}

/// The outcome, per member from v3.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaveGroupResponse {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub members: Vec<MemberResponse>,
}

/// One member's outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberResponse {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error_code: i16,
}

impl Message for LeaveGroupResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 1 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.i16(&mut self.error_code)?;
        if v >= 3 {
            c.array(&mut self.members, v)?;
        }
        c.tags()
    }
}

impl Message for MemberResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.member_id)?;
        c.nullable_string(&mut self.group_instance_id)?;
        c.i16(&mut self.error_code)?;
        c.tags()
    }
}
