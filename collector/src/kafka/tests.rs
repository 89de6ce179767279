//! Framing checks lengths first; ApiVersions answers unknown versions the
//! way clients expect; SASL/PLAIN maps onto principals. The decoders'
//! property tests are in `protocol/tests.rs`.

use super::codec;
use super::errors::code;
use super::protocol::ApiKey;
use super::versions::{self, SUPPORTED};

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
fn an_unknown_api_versions_version_is_answered_as_v0_with_our_ranges() {
    let (v, err) = versions::api_versions_answer(42);
    assert_eq!((v, err), (0, code::UNSUPPORTED_VERSION));
    let frame =
        codec::response(ApiKey::ApiVersions, v, 5, &mut versions::api_versions(err)).unwrap();
    // length, correlation id 5, error 35, then the array of ranges.
    assert_eq!(&frame[4..8], &5i32.to_be_bytes());
    assert_eq!(&frame[8..10], &35i16.to_be_bytes());
    let n = i32::from_be_bytes([frame[10], frame[11], frame[12], frame[13]]);
    assert_eq!(n as usize, SUPPORTED.len());
    assert_eq!(versions::api_versions_answer(3), (3, code::NONE));
}

#[test]
fn every_advertised_api_is_one_the_codec_knows_and_ranges_are_ordered() {
    for (k, lo, hi) in SUPPORTED {
        assert_eq!(ApiKey::from_i16(*k as i16), Some(*k));
        assert!(0 <= *lo && lo <= hi, "{k:?} {lo}..={hi}");
    }
    assert_eq!(SUPPORTED.len(), ApiKey::ALL.len());
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
