//! DescribeGroups (API 15), versions 0–5 (flexible from 5).

use bytes::Bytes;

use super::wire::{Codec, Message, WireError};

/// The groups asked about.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeGroupsRequest {
    pub groups: Vec<String>,
    pub include_authorized_operations: bool,
}

impl Message for DescribeGroupsRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string_array(&mut self.groups)?;
        if v >= 3 {
            c.bool(&mut self.include_authorized_operations)?;
        }
        c.tags()
    }
}

/// Each group's state and members.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeGroupsResponse {
    pub throttle_time_ms: i32,
    pub groups: Vec<DescribedGroup>,
}

/// One group.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribedGroup {
    pub error_code: i16,
    pub group_id: String,
    pub group_state: String,
    pub protocol_type: String,
    pub protocol_data: String,
    pub members: Vec<DescribedGroupMember>,
    pub authorized_operations: i32,
}

impl Default for DescribedGroup {
    fn default() -> Self {
        DescribedGroup {
            error_code: 0,
            group_id: String::new(),
            group_state: String::new(),
            protocol_type: String::new(),
            protocol_data: String::new(),
            members: Vec::new(),
            authorized_operations: i32::MIN,
        }
    }
}

/// One member of a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribedGroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_metadata: Bytes,
    pub member_assignment: Bytes,
}

impl Message for DescribeGroupsResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 1 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.array(&mut self.groups, v)?;
        c.tags()
    }
}

impl Message for DescribedGroup {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i16(&mut self.error_code)?;
        c.string(&mut self.group_id)?;
        c.string(&mut self.group_state)?;
        c.string(&mut self.protocol_type)?;
        c.string(&mut self.protocol_data)?;
        c.array(&mut self.members, v)?;
        if v >= 3 {
            c.i32(&mut self.authorized_operations)?;
        }
        c.tags()
    }
}

impl Message for DescribedGroupMember {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.member_id)?;
        if v >= 4 {
            c.nullable_string(&mut self.group_instance_id)?;
        }
        c.string(&mut self.client_id)?;
        c.string(&mut self.client_host)?;
        c.bytes(&mut self.member_metadata)?;
        c.bytes(&mut self.member_assignment)?;
        c.tags()
    }
}
