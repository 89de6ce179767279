//! The Kafka request and response messages the listener answers, written
//! from the protocol specification (kafka.apache.org/protocol and the
//! message schemas of Apache Kafka): exactly the APIs and versions in
//! `versions.rs`, nothing else.
//!
//! - `wire.rs`: the primitive types, a bounded [`Reader`] and a [`Writer`]
//!   behind one [`Codec`], so each message is described once.
//! - one module per API: its request and response structures and their
//!   `visit` (fields in wire order, with the versions that carry them).
//!
//! A request frame is `api_key: i16, api_version: i16, correlation_id: i32,
//! client_id: nullable string (always the classic i16 length)`, then tagged
//! fields when the API version is flexible (request header v2), then the
//! body. A response is `length: i32, correlation_id: i32`, tagged fields
//! when flexible (response header v1; ApiVersions always uses header v0 so
//! that any client can read it), then the body.
//!
//! Field defaults that are not zero follow the schemas (-1 for unknown
//! offsets, timestamps, epochs and ids; `i32::MIN` for authorised
//! operations that were not asked for).

pub mod api_versions;
pub mod create_topics;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod wire;

use bytes::{Bytes, BytesMut};

pub use wire::{Codec, Message, Reader, WireError, Writer};

/// The APIs answered (Kafka's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKey {
    Produce = 0,
    Fetch = 1,
    ListOffsets = 2,
    Metadata = 3,
    OffsetCommit = 8,
    OffsetFetch = 9,
    FindCoordinator = 10,
    JoinGroup = 11,
    Heartbeat = 12,
    LeaveGroup = 13,
    SyncGroup = 14,
    DescribeGroups = 15,
    ListGroups = 16,
    SaslHandshake = 17,
    ApiVersions = 18,
    CreateTopics = 19,
    InitProducerId = 22,
    DescribeConfigs = 32,
    SaslAuthenticate = 36,
}

impl ApiKey {
    /// Every API answered.
    pub const ALL: [ApiKey; 19] = [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::Metadata,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::SyncGroup,
        ApiKey::DescribeGroups,
        ApiKey::ListGroups,
        ApiKey::SaslHandshake,
        ApiKey::ApiVersions,
        ApiKey::CreateTopics,
        ApiKey::InitProducerId,
        ApiKey::DescribeConfigs,
        ApiKey::SaslAuthenticate,
    ];

    /// The metric label of this API (`kafka:Produce`, ...): a bounded set.
    pub fn route(self) -> &'static str {
        use ApiKey::*;
        match self {
            Produce => "kafka:Produce",
            Fetch => "kafka:Fetch",
            ListOffsets => "kafka:ListOffsets",
            Metadata => "kafka:Metadata",
            OffsetCommit => "kafka:OffsetCommit",
            OffsetFetch => "kafka:OffsetFetch",
            FindCoordinator => "kafka:FindCoordinator",
            JoinGroup => "kafka:JoinGroup",
            Heartbeat => "kafka:Heartbeat",
            LeaveGroup => "kafka:LeaveGroup",
            SyncGroup => "kafka:SyncGroup",
            DescribeGroups => "kafka:DescribeGroups",
            ListGroups => "kafka:ListGroups",
            SaslHandshake => "kafka:SaslHandshake",
            ApiVersions => "kafka:ApiVersions",
            CreateTopics => "kafka:CreateTopics",
            InitProducerId => "kafka:InitProducerId",
            DescribeConfigs => "kafka:DescribeConfigs",
            SaslAuthenticate => "kafka:SaslAuthenticate",
        }
    }

    /// The API of a request's key, if it is one we answer.
    pub fn from_i16(key: i16) -> Option<ApiKey> {
        ApiKey::ALL.into_iter().find(|k| *k as i16 == key)
    }

    /// The first version of this API in the flexible encodings (KIP-482),
    /// from the message schemas' `flexibleVersions`.
    pub fn first_flexible(self) -> i16 {
        use ApiKey::*;
        match self {
            Produce => 9,
            Fetch => 12,
            ListOffsets => 6,
            Metadata => 9,
            OffsetCommit => 8,
            OffsetFetch => 6,
            FindCoordinator => 3,
            JoinGroup => 6,
            Heartbeat => 4,
            LeaveGroup => 4,
            SyncGroup => 4,
            DescribeGroups => 5,
            ListGroups => 3,
            SaslHandshake => i16::MAX,
            ApiVersions => 3,
            CreateTopics => 5,
            InitProducerId => 2,
            DescribeConfigs => 4,
            SaslAuthenticate => 2,
        }
    }

    /// Whether `version` of this API is flexible.
    pub fn flexible(self, version: i16) -> bool {
        version >= self.first_flexible()
    }
}

/// A request's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// Reads the header of `frame` (an API we answer, at `version`) and
/// returns it with a reader positioned at the body, in the body's encoding.
pub fn read_header(
    frame: Bytes,
    key: ApiKey,
    version: i16,
) -> Result<(RequestHeader, Reader), WireError> {
    let mut r = Reader::new(frame, false);
    let mut h = RequestHeader {
        api_key: 0,
        api_version: 0,
        correlation_id: 0,
        client_id: None,
    };
    r.i16(&mut h.api_key)?;
    r.i16(&mut h.api_version)?;
    r.i32(&mut h.correlation_id)?;
    h.client_id = r.classic_nullable_string()?;
    let flexible = key.flexible(version);
    r.set_flexible(flexible);
    r.tags()?;
    Ok((h, r))
}

/// Decodes a request body of type `M` at `version` from `r`.
pub fn read_body<M: Message>(r: &mut Reader, version: i16) -> Result<M, WireError> {
    let mut m = M::default();
    m.visit(r, version)?;
    Ok(m)
}

/// Encodes a whole response frame: length, header, body.
pub fn response_frame<M: Message>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &mut M,
) -> Result<Bytes, WireError> {
    let mut w = Writer::new(BytesMut::with_capacity(256), false);
    w.i32(&mut 0)?;
    w.i32(&mut correlation_id.clone())?;
    let flexible = key.flexible(version);
    if key != ApiKey::ApiVersions {
        w.set_flexible(flexible);
        w.tags()?;
    }
    w.set_flexible(flexible);
    body.visit(&mut w, version)?;
    let mut buf = w.finish();
    let len = i32::try_from(buf.len() - 4).map_err(|_| WireError::TooLong("response"))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
pub mod tests;
