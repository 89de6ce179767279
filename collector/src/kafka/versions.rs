//! The APIs and versions the listener advertises, and ApiVersions.
//!
//! Each range is what the handlers and the codec in `protocol/` implement
//! completely. The lower bounds are the oldest versions Kafka 4.0 still
//! answers (KIP-896), below which no client we test goes; the upper bounds stop before features the
//! collector does not have: Fetch 13+ and OffsetCommit 9+ name topics by
//! id, ListOffsets 7+ asks for the max-timestamp offset, OffsetFetch 8+ and
//! FindCoordinator batch groups (4 is supported), JoinGroup 8+ carries
//! rejoin reasons and KIP-814 skip-assignment, Produce 10+ is for
//! KIP-951 leader discovery. Clients pick the highest version both sides
//! support, so every client since Kafka 0.11 finds a common one.

use super::protocol::api_versions::{ApiVersion, ApiVersionsResponse};
use super::protocol::ApiKey;

use super::errors::code;

/// (API, lowest, highest) version answered.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The range answered for `key`, if it is supported at all.
pub fn range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// Whether `key` at `version` is answered.
pub fn supported(key: ApiKey, version: i16) -> bool {
    range(key).is_some_and(|(lo, hi)| (lo..=hi).contains(&version))
}

/// The ApiVersions answer. `error` is `UNSUPPORTED_VERSION` when the
/// client asked with a version we do not have: it is then encoded as v0,
/// which every client can read, and the client retries with one we list.
pub fn api_versions(error: i16) -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code: error,
        api_keys: SUPPORTED
            .iter()
            .map(|(k, lo, hi)| ApiVersion {
                api_key: *k as i16,
                min_version: *lo,
                max_version: *hi,
            })
            .collect(),
        throttle_time_ms: 0,
    }
}

/// The version to answer an ApiVersions request of `version` with, and the error.
pub fn api_versions_answer(version: i16) -> (i16, i16) {
    if supported(ApiKey::ApiVersions, version) {
        (version, code::NONE)
    } else {
        (0, code::UNSUPPORTED_VERSION)
    }
}
