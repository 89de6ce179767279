//! ListGroups (API 16), versions 0–4 (flexible from 3; v4 filters by state).

use super::wire::{Codec, Message, WireError};

/// The request: states to keep (v4+; empty keeps all).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListGroupsRequest {
    pub states_filter: Vec<String>,
}

impl Message for ListGroupsRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 4 {
            c.string_array(&mut self.states_filter)?;
        }
        c.tags()
    }
}

/// The groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListGroupsResponse {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub groups: Vec<ListedGroup>,
}

/// One group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub group_state: String,
}

impl Message for ListGroupsResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 1 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.i16(&mut self.error_code)?;
        c.array(&mut self.groups, v)?;
        c.tags()
    }
}

impl Message for ListedGroup {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.group_id)?;
        c.string(&mut self.protocol_type)?;
        if v >= 4 {
            c.string(&mut self.group_state)?;
        }
        c.tags()
    }
}
