//! CreateTopics (API 19), versions 2–5 (flexible from 5).

use super::wire::{Codec, Message, WireError};

/// Topics to create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateTopicsRequest {
    pub topics: Vec<CreatableTopic>,
    pub timeout_ms: i32,
    pub validate_only: bool,
}

/// One topic to create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreatableTopic {
    pub name: String,
    /// -1: the broker's default.
    pub num_partitions: i32,
    /// -1: the broker's default.
    pub replication_factor: i16,
    pub assignments: Vec<CreatableReplicaAssignment>,
    pub configs: Vec<CreatableTopicConfig>,
}

/// A manual replica assignment (refused here).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreatableReplicaAssignment {
    pub partition_index: i32,
    pub broker_ids: Vec<i32>,
}

/// A topic setting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreatableTopicConfig {
    pub name: String,
    pub value: Option<String>,
}

impl Message for CreateTopicsRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.array(&mut self.topics, v)?;
        c.i32(&mut self.timeout_ms)?;
        if v >= 1 {
            c.bool(&mut self.validate_only)?;
        }
        c.tags()
    }
}

impl Message for CreatableTopic {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.i32(&mut self.num_partitions)?;
        c.i16(&mut self.replication_factor)?;
        c.array(&mut self.assignments, v)?;
        c.array(&mut self.configs, v)?;
        c.tags()
    }
}

impl Message for CreatableReplicaAssignment {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.i32(&mut self.partition_index)?;
        c.i32_array(&mut self.broker_ids)?;
        c.tags()
    }
}

impl Message for CreatableTopicConfig {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.nullable_string(&mut self.value)?;
        c.tags()
    }
}

/// Each topic's outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateTopicsResponse {
    pub throttle_time_ms: i32,
    pub topics: Vec<CreatableTopicResult>,
}

/// One topic's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatableTopicResult {
    pub name: String,
    pub error_code: i16,
    pub error_message: Option<String>,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// The created topic's settings (v5+; none listed here).
    pub configs: Option<Vec<CreatableTopicConfigs>>,
}

impl Default for CreatableTopicResult {
    fn default() -> Self {
        CreatableTopicResult {
            name: String::new(),
            error_code: 0,
            error_message: None,
            num_partitions: -1,
            replication_factor: -1,
            configs: Some(Vec::new()),
        }
    }
}

/// A created topic's setting.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatableTopicConfigs {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    pub config_source: i8,
    pub is_sensitive: bool,
}

impl Default for CreatableTopicConfigs {
    fn default() -> Self {
        CreatableTopicConfigs {
            name: String::new(),
            value: None,
            read_only: false,
            config_source: -1,
            is_sensitive: false,
        }
    }
}

impl Message for CreateTopicsResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 2 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.array(&mut self.topics, v)?;
        c.tags()
    }
}

impl Message for CreatableTopicResult {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.i16(&mut self.error_code)?;
        if v >= 1 {
            c.nullable_string(&mut self.error_message)?;
        }
        if v >= 5 {
            c.i32(&mut self.num_partitions)?;
            c.i16(&mut self.replication_factor)?;
            c.nullable_array(&mut self.configs, v)?;
        }
        c.tags()
    }
}

impl Message for CreatableTopicConfigs {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.nullable_string(&mut self.value)?;
        c.bool(&mut self.read_only)?;
        c.i8(&mut self.config_source)?;
        c.bool(&mut self.is_sensitive)?;
        c.tags()
    }
}
