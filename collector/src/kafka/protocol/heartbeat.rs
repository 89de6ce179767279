//! Heartbeat (API 12), versions 0–4 (flexible from 4).

use super::wire::{Codec, Message, WireError};

/// A member's heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl Message for HeartbeatRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.group_id)?;
        c.i32(&mut self.generation_id)?;
        c.string(&mut self.member_id)?;
        if v >= 3 {
            c.nullable_string(&mut self.group_instance_id)?;
        }
        c.tags()
    }
}

/// The answer (a rebalance in progress is an error code).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatResponse {
    pub throttle_time_ms: i32,
    pub error_code: i16,
}

impl Message for HeartbeatResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 1 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.i16(&mut self.error_code)?;
        c.tags()
    }
}
