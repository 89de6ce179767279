//! Framing and decoding never panic on arbitrary bytes; the advertised
//! versions decode; ApiVersions answers unknown versions the way clients
//! expect; SASL/PLAIN maps onto principals.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;

use super::codec;
use super::errors::code;
use super::versions::{self, SUPPORTED};

/// Decodes `bytes` as the request of `key` at `version`; the result is
/// ignored, only that it returns.
fn decode_any(key: ApiKey, version: i16, bytes: &[u8]) {
    macro_rules! try_decode {
        ($t:ty) => {{
            let _ = <$t>::decode(&mut Bytes::copy_from_slice(bytes), version);
        }};
    }
    match key {
        ApiKey::Produce => try_decode!(ProduceRequest),
        ApiKey::Fetch => try_decode!(FetchRequest),
        ApiKey::ListOffsets => try_decode!(ListOffsetsRequest),
        ApiKey::Metadata => try_decode!(MetadataRequest),
        ApiKey::OffsetCommit => try_decode!(OffsetCommitRequest),
        ApiKey::OffsetFetch => try_decode!(OffsetFetchRequest),
        ApiKey::FindCoordinator => try_decode!(FindCoordinatorRequest),
        ApiKey::JoinGroup => try_decode!(JoinGroupRequest),
        ApiKey::Heartbeat => try_decode!(HeartbeatRequest),
        ApiKey::LeaveGroup => try_decode!(LeaveGroupRequest),
        ApiKey::SyncGroup => try_decode!(SyncGroupRequest),
        ApiKey::DescribeGroups => try_decode!(DescribeGroupsRequest),
        ApiKey::ListGroups => try_decode!(ListGroupsRequest),
        ApiKey::SaslHandshake => try_decode!(SaslHandshakeRequest),
        ApiKey::ApiVersions => try_decode!(ApiVersionsRequest),
        ApiKey::CreateTopics => try_decode!(CreateTopicsRequest),
        ApiKey::DescribeConfigs => try_decode!(DescribeConfigsRequest),
        ApiKey::InitProducerId => try_decode!(InitProducerIdRequest),
        ApiKey::SaslAuthenticate => try_decode!(SaslAuthenticateRequest),
        other => panic!("{other:?} is advertised but not covered here"),
    }
}

/// Every (API, version) advertised.
fn advertised() -> Vec<(ApiKey, i16)> {
    SUPPORTED
        .iter()
        .flat_map(|(k, lo, hi)| (*lo..=*hi).map(move |v| (*k, v)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_advertised_request_decoder_survives_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        for (key, v) in advertised() {
            decode_any(key, v, &bytes);
        }
    }

    #[test]
    fn every_decoder_survives_huge_counts_at_any_position(
        pos in 0usize..48,
        filler in proptest::collection::vec(any::<u8>(), 48),
    ) {
        // A count of two billion elements dropped anywhere in a short
        // request must be refused, never allocated (the vendored patch).
        let mut bytes = filler;
        bytes.splice(pos..pos, [0x7f, 0xff, 0xff, 0xff]);
        for (key, v) in advertised() {
            decode_any(key, v, &bytes);
        }
    }

    #[test]
    fn framing_and_header_decoding_survive_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
        len in any::<i32>(),
    ) {
        let _ = codec::check_len(len, 1 << 20);
        if let Ok(p) = codec::prefix(&bytes) {
            if let Ok(key) = ApiKey::try_from(p.api_key) {
                let mut b = Bytes::copy_from_slice(&bytes);
                let _ = codec::header(&mut b, key, p.api_version);
            }
        }
    }
}

#[test]
fn lengths_are_checked_before_anything_is_allocated() {
    assert!(matches!(
        codec::check_len(i32::MAX, 1 << 20),
        Err(codec::FrameError::TooLarge { .. })
    ));
    assert!(matches!(
        codec::check_len(-5, 1 << 20),
        Err(codec::FrameError::BadLength(-5))
    ));
    assert!(matches!(
        codec::check_len(3, 1 << 20),
        Err(codec::FrameError::BadLength(3))
    ));
    assert_eq!(codec::check_len(100, 1 << 20).unwrap(), 100);
}

#[test]
fn a_count_of_two_billion_topics_is_refused_not_allocated() {
    // Metadata v1 body: topics array with i32::MAX entries, no bytes after.
    let body = [0x7f, 0xff, 0xff, 0xff];
    let r = MetadataRequest::decode(&mut Bytes::copy_from_slice(&body), 1);
    assert!(r.is_err());
}

#[test]
fn an_unknown_api_versions_version_is_answered_as_v0_with_our_ranges() {
    let (v, err) = versions::api_versions_answer(42);
    assert_eq!((v, err), (0, code::UNSUPPORTED_VERSION));
    let frame = codec::response(ApiKey::ApiVersions, v, 5, &versions::api_versions(err)).unwrap();
    // length, correlation id 5, error 35, then the array of ranges.
    assert_eq!(&frame[4..8], &5i32.to_be_bytes());
    assert_eq!(&frame[8..10], &35i16.to_be_bytes());
    let n = i32::from_be_bytes([frame[10], frame[11], frame[12], frame[13]]);
    assert_eq!(n as usize, SUPPORTED.len());
    assert_eq!(versions::api_versions_answer(3), (3, code::NONE));
}

#[test]
fn advertised_ranges_are_within_what_the_codec_supports() {
    for (k, lo, hi) in SUPPORTED {
        let r = k.valid_versions();
        assert!(
            r.min <= *lo && *hi <= r.max,
            "{k:?} {lo}..={hi} outside {r:?}"
        );
    }
}

#[test]
fn plain_credentials_map_onto_principals_by_token() {
    use crate::auth::{hex, sha256, Authenticator, PrincipalConfig};
    let auth = Authenticator::new(&[PrincipalConfig {
        name: "app".into(),
        token_sha256: Some(hex(&sha256(b"s3cret"))),
        ..Default::default()
    }])
    .unwrap();
    assert_eq!(
        super::sasl::check_plain(&auth, b"\0app\0s3cret")
            .unwrap()
            .name(),
        "app"
    );
    assert_eq!(
        super::sasl::check_plain(&auth, b"app\0app\0s3cret")
            .unwrap()
            .name(),
        "app"
    );
    use super::sasl::PlainError;
    assert_eq!(
        super::sasl::check_plain(&auth, b"\0other\0s3cret").unwrap_err(),
        PlainError::BadCredentials
    );
    assert_eq!(
        super::sasl::check_plain(&auth, b"\0app\0wrong").unwrap_err(),
        PlainError::BadCredentials
    );
    assert_eq!(
        super::sasl::check_plain(&auth, b"x\0app\0s3cret").unwrap_err(),
        PlainError::BadCredentials
    );
    assert_eq!(
        super::sasl::check_plain(&auth, b"nonsense").unwrap_err(),
        PlainError::Malformed
    );
}

#[test]
fn host_and_port_split_including_ipv6() {
    assert_eq!(
        super::split_host_port("kafka.example:9092"),
        Some(("kafka.example".into(), 9092))
    );
    assert_eq!(
        super::split_host_port("[::1]:9092"),
        Some(("::1".into(), 9092))
    );
    assert_eq!(super::split_host_port("nohost"), None);
    assert_eq!(super::split_host_port(":9092"), None);
}
