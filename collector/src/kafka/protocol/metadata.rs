//! Metadata (API 3), versions 0–12 (flexible from 9).

use super::wire::{Codec, Message, WireError};

/// Topics asked about: null (v1+) or empty (v0) for every topic.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataRequest {
    pub topics: Option<Vec<MetadataRequestTopic>>,
    pub allow_auto_topic_creation: bool,
    pub include_cluster_authorized_operations: bool,
    pub include_topic_authorized_operations: bool,
}

impl Default for MetadataRequest {
    fn default() -> Self {
        MetadataRequest {
            topics: Some(Vec::new()),
            // Before v4 a broker creates topics as its config says.
            allow_auto_topic_creation: true,
            include_cluster_authorized_operations: false,
            include_topic_authorized_operations: false,
        }
    }
}

/// A topic asked about (by name; v10+ carries an id we ignore).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataRequestTopic {
    pub topic_id: [u8; 16],
    pub name: Option<String>,
}

impl Message for MetadataRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 1 {
            c.nullable_array(&mut self.topics, v)?;
        } else {
            let mut t = self.topics.take().unwrap_or_default();
            c.array(&mut t, v)?;
            self.topics = Some(t);
        }
        if v >= 4 {
            c.bool(&mut self.allow_auto_topic_creation)?;
        }
        if (8..=10).contains(&v) {
            c.bool(&mut self.include_cluster_authorized_operations)?;
        }
        if v >= 8 {
            c.bool(&mut self.include_topic_authorized_operations)?;
        }
        c.tags()
    }
}

impl Message for MetadataRequestTopic {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 10 {
            c.uuid(&mut self.topic_id)?;
            c.nullable_string(&mut self.name)?;
        } else {
            let mut n = self.name.take().unwrap_or_default();
            c.string(&mut n)?;
            self.name = Some(n);
        }
        c.tags()
    }
}

/// The brokers (this collector) and the topics.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataResponse {
    pub throttle_time_ms: i32,
    pub brokers: Vec<MetadataResponseBroker>,
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub topics: Vec<MetadataResponseTopic>,
    pub cluster_authorized_operations: i32,
}

impl Default for MetadataResponse {
    fn default() -> Self {
        MetadataResponse {
            throttle_time_ms: 0,
            brokers: Vec::new(),
            cluster_id: None,
            controller_id: -1,
            topics: Vec::new(),
            cluster_authorized_operations: i32::MIN,
        }
    }
}

/// A broker's address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataResponseBroker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A topic, or the error asking about it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataResponseTopic {
    pub error_code: i16,
    pub name: Option<String>,
    pub topic_id: [u8; 16],
    pub is_internal: bool,
    pub partitions: Vec<MetadataResponsePartition>,
    pub topic_authorized_operations: i32,
}

impl Default for MetadataResponseTopic {
    fn default() -> Self {
        MetadataResponseTopic {
            error_code: 0,
            name: None,
            topic_id: [0; 16],
            is_internal: false,
            partitions: Vec::new(),
            topic_authorized_operations: i32::MIN,
        }
    }
}

/// A partition: its leader and replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataResponsePartition {
    pub error_code: i16,
    pub partition_index: i32,
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub replica_nodes: Vec<i32>,
    pub isr_nodes: Vec<i32>,
    pub offline_replicas: Vec<i32>,
}

impl Default for MetadataResponsePartition {
    fn default() -> Self {
        MetadataResponsePartition {
            error_code: 0,
            partition_index: 0,
            leader_id: 0,
            leader_epoch: -1,
            replica_nodes: Vec::new(),
            isr_nodes: Vec::new(),
            offline_replicas: Vec::new(),
        }
    }
}

impl Message for MetadataResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 3 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.array(&mut self.brokers, v)?;
        if v >= 2 {
            c.nullable_string(&mut self.cluster_id)?;
        }
        if v >= 1 {
            c.i32(&mut self.controller_id)?;
        }
        c.array(&mut self.topics, v)?;
        if (8..=10).contains(&v) {
            c.i32(&mut self.cluster_authorized_operations)?;
        }
        c.tags()
    }
}

impl Message for MetadataResponseBroker {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.node_id)?;
        c.string(&mut self.host)?;
        c.i32(&mut self.port)?;
        if v >= 1 {
            c.nullable_string(&mut self.rack)?;
        }
        c.tags()
    }
}

impl Message for MetadataResponseTopic {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i16(&mut self.error_code)?;
        if v >= 12 {
            c.nullable_string(&mut self.name)?;
        } else {
            let mut n = self.name.take().unwrap_or_default();
            c.string(&mut n)?;
            self.name = Some(n);
        }
        if v >= 10 {
            c.uuid(&mut self.topic_id)?;
        }
        if v >= 1 {
            c.bool(&mut self.is_internal)?;
        }
        c.array(&mut self.partitions, v)?;
        if v >= 8 {
            c.i32(&mut self.topic_authorized_operations)?;
        }
        c.tags()
    }
}

impl Message for MetadataResponsePartition {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i16(&mut self.error_code)?;
        c.i32(&mut self.partition_index)?;
        c.i32(&mut self.leader_id)?;
        if v >= 7 {
            c.i32(&mut self.leader_epoch)?;
        }
        c.i32_array(&mut self.replica_nodes)?;
        c.i32_array(&mut self.isr_nodes)?;
        if v >= 5 {
            c.i32_array(&mut self.offline_replicas)?;
        }
        c.tags()
    }
}
