//! The codec's promises, for every API and version advertised:
//!
//! - a request decoder given arbitrary bytes, or bytes declaring huge
//!   counts anywhere, returns (an error or a value), never panics, and
//!   allocates at most a small multiple of the frame (counted by a
//!   test-only global allocator);
//! - every response encodes and decodes back to the same bytes and, at the
//!   versions that carry all its fields, to the same value;
//! - requests written the way clients write them decode to what was written;
//! - headers: the client id is always a classic string, flexible requests
//!   carry tagged fields, and ApiVersions answers with header v0.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Debug;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::kafka::versions::{self, SUPPORTED};

/// Counts the bytes allocated by the current thread while counting is on.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<Option<usize>> = const { Cell::new(None) };
}

fn count(n: usize) {
    let _ = ALLOCATED.try_with(|c| {
        if let Some(total) = c.get() {
            c.set(Some(total + n));
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size());
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size());
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Bytes allocated while running `f` on this thread.
fn allocated_by(f: impl FnOnce()) -> usize {
    ALLOCATED.with(|c| c.set(Some(0)));
    f();
    ALLOCATED.with(|c| c.replace(None)).unwrap_or(0)
}

fn decode<M: Message>(bytes: &Bytes, key: ApiKey, v: i16) -> Result<M, WireError> {
    let mut r = Reader::new(bytes.clone(), key.flexible(v));
    read_body::<M>(&mut r, v)
}

/// Decodes `bytes` as the request body of `key` at `v`.
fn decode_request(key: ApiKey, v: i16, b: &Bytes) -> Result<(), WireError> {
    use ApiKey::*;
    match key {
        Produce => decode::<produce::ProduceRequest>(b, key, v).map(drop),
        Fetch => decode::<fetch::FetchRequest>(b, key, v).map(drop),
        ListOffsets => decode::<list_offsets::ListOffsetsRequest>(b, key, v).map(drop),
        Metadata => decode::<metadata::MetadataRequest>(b, key, v).map(drop),
        OffsetCommit => decode::<offset_commit::OffsetCommitRequest>(b, key, v).map(drop),
        OffsetFetch => decode::<offset_fetch::OffsetFetchRequest>(b, key, v).map(drop),
        FindCoordinator => decode::<find_coordinator::FindCoordinatorRequest>(b, key, v).map(drop),
        JoinGroup => decode::<join_group::JoinGroupRequest>(b, key, v).map(drop),
        Heartbeat => decode::<heartbeat::HeartbeatRequest>(b, key, v).map(drop),
        LeaveGroup => decode::<leave_group::LeaveGroupRequest>(b, key, v).map(drop),
        SyncGroup => decode::<sync_group::SyncGroupRequest>(b, key, v).map(drop),
        DescribeGroups => decode::<describe_groups::DescribeGroupsRequest>(b, key, v).map(drop),
        ListGroups => decode::<list_groups::ListGroupsRequest>(b, key, v).map(drop),
        SaslHandshake => decode::<sasl_handshake::SaslHandshakeRequest>(b, key, v).map(drop),
        ApiVersions => decode::<api_versions::ApiVersionsRequest>(b, key, v).map(drop),
        CreateTopics => decode::<create_topics::CreateTopicsRequest>(b, key, v).map(drop),
        InitProducerId => decode::<init_producer_id::InitProducerIdRequest>(b, key, v).map(drop),
        DescribeConfigs => decode::<describe_configs::DescribeConfigsRequest>(b, key, v).map(drop),
        SaslAuthenticate => {
            decode::<sasl_authenticate::SaslAuthenticateRequest>(b, key, v).map(drop)
        }
    }
}

/// Every (API, version) advertised.
fn advertised() -> Vec<(ApiKey, i16)> {
    SUPPORTED
        .iter()
        .flat_map(|(k, lo, hi)| (*lo..=*hi).map(move |v| (*k, v)))
        .collect()
}

/// The most a request of `len` bytes may cost to decode: a decoded
/// element is a few times larger in memory than its smallest encoding,
/// and vectors grow by doubling.
fn allowance(len: usize) -> usize {
    64 * len + 256
}

/// Decodes `bytes` as every advertised request, checking the allocation bound.
fn decode_all_checked(bytes: &[u8]) -> Result<(), TestCaseError> {
    let b = Bytes::copy_from_slice(bytes);
    for (key, v) in advertised() {
        let used = allocated_by(|| {
            let _ = decode_request(key, v, &b);
        });
        prop_assert!(
            used <= allowance(bytes.len()),
            "{key:?} v{v}: {used} bytes allocated for a {}-byte frame",
            bytes.len()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_request_decoder_survives_arbitrary_bytes_within_its_allocation_bound(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        decode_all_checked(&bytes)?;
    }

    #[test]
    fn every_request_decoder_refuses_huge_counts_anywhere_without_allocating_them(
        pos in 0usize..48,
        filler in proptest::collection::vec(any::<u8>(), 48),
        compact in any::<bool>(),
    ) {
        // Two billion elements as an i32 count, or as a compact varint.
        let huge: &[u8] = if compact { &[0xff, 0xff, 0xff, 0xff, 0x07] } else { &[0x7f, 0xff, 0xff, 0xff] };
        let mut bytes = filler;
        bytes.splice(pos..pos, huge.iter().copied());
        decode_all_checked(&bytes)?;
    }

    #[test]
    fn small_counts_of_mostly_zero_bytes_stay_within_the_bound(
        counts in proptest::collection::vec((0usize..64, 1u8..60), 1..6),
        len in 8usize..400,
    ) {
        // Zeros decode as empty strings and arrays (classic) or nulls
        // (compact): the cheapest elements, so the densest in memory.
        let mut bytes = vec![0u8; len];
        for (at, n) in counts {
            if at + 4 <= len {
                bytes[at + 3] = n;
            }
            if at < len {
                bytes[at] = n;
            }
        }
        decode_all_checked(&bytes)?;
    }

    #[test]
    fn request_headers_survive_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        for key in ApiKey::ALL {
            for v in [0, 3, 9, 12] {
                let _ = read_header(Bytes::copy_from_slice(&bytes), key, v);
            }
        }
    }
}

/// Encodes `m` at every advertised version of `key`, decodes it back and
/// checks the bytes are stable, nothing is left over, and at `exact`
/// versions the value is the same.
fn round_trip<M: Message + Clone + PartialEq + Debug>(key: ApiKey, m: M, exact: &[i16]) {
    let (lo, hi) = versions::range(key).unwrap();
    for v in lo..=hi {
        let flex = key.flexible(v);
        let mut w = Writer::new(BytesMut::new(), flex);
        m.clone().visit(&mut w, v).unwrap();
        let bytes = w.finish().freeze();
        let mut r = Reader::new(bytes.clone(), flex);
        let back: M = read_body(&mut r, v).unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
        assert_eq!(r.remaining(), 0, "{key:?} v{v}: bytes left over");
        let mut w = Writer::new(BytesMut::new(), flex);
        back.clone().visit(&mut w, v).unwrap();
        assert_eq!(w.finish().freeze(), bytes, "{key:?} v{v}: not stable");
        if exact.contains(&v) {
            assert_eq!(back, m, "{key:?} v{v}");
        }
    }
}

fn s(v: &str) -> String {
    v.to_owned()
}

#[test]
fn produce_and_fetch_answers_round_trip_at_every_version() {
    use fetch::*;
    use produce::*;
    let p = ProduceResponse {
        responses: vec![TopicProduceResponse {
            name: s("logs"),
            partition_responses: vec![
                PartitionProduceResponse {
                    index: 1,
                    error_code: 87,
                    base_offset: 42,
                    log_append_time_ms: 7,
                    log_start_offset: 3,
                    record_errors: vec![BatchIndexAndErrorMessage {
                        batch_index: 2,
                        batch_index_error_message: Some(s("bad")),
                    }],
                    error_message: Some(s("conflict")),
                },
                PartitionProduceResponse::default(),
            ],
        }],
        throttle_time_ms: 5,
    };
    round_trip(ApiKey::Produce, p, &[8, 9]);
    let f = FetchResponse {
        throttle_time_ms: 1,
        error_code: 0,
        session_id: 0,
        responses: vec![FetchableTopicResponse {
            topic: s("logs"),
            partitions: vec![PartitionData {
                partition_index: 2,
                error_code: 0,
                high_watermark: 10,
                last_stable_offset: 10,
                log_start_offset: 1,
                aborted_transactions: Some(vec![AbortedTransaction {
                    producer_id: 5,
                    first_offset: 6,
                }]),
                preferred_read_replica: -1,
                records: Some(Bytes::from_static(&[1, 2, 3])),
            }],
        }],
    };
    round_trip(ApiKey::Fetch, f, &[11, 12]);
}

#[test]
fn offset_and_metadata_answers_round_trip_at_every_version() {
    use list_offsets::*;
    use metadata::*;
    let l = ListOffsetsResponse {
        throttle_time_ms: 3,
        topics: vec![ListOffsetsTopicResponse {
            name: s("t"),
            partitions: vec![ListOffsetsPartitionResponse {
                partition_index: 0,
                error_code: 0,
                timestamp: -1,
                offset: 99,
                leader_epoch: 0,
            }],
        }],
    };
    round_trip(ApiKey::ListOffsets, l, &[4, 5, 6]);
    let m = MetadataResponse {
        throttle_time_ms: 0,
        brokers: vec![MetadataResponseBroker {
            node_id: 0,
            host: s("localhost"),
            port: 9092,
            rack: None,
        }],
        cluster_id: Some(s("abc")),
        controller_id: 0,
        topics: vec![
            MetadataResponseTopic {
                name: Some(s("t")),
                partitions: vec![MetadataResponsePartition {
                    partition_index: 3,
                    leader_id: 0,
                    leader_epoch: 0,
                    replica_nodes: vec![0],
                    isr_nodes: vec![0],
                    ..Default::default()
                }],
                ..Default::default()
            },
            MetadataResponseTopic {
                error_code: 3,
                name: Some(s("missing")),
                ..Default::default()
            },
        ],
        cluster_authorized_operations: i32::MIN,
    };
    round_trip(ApiKey::Metadata, m, &[7, 8, 9, 10, 11, 12]);
}

#[test]
fn group_answers_round_trip_at_every_version() {
    use describe_groups::*;
    use heartbeat::*;
    use join_group::*;
    use leave_group::*;
    use list_groups::*;
    use offset_commit::*;
    use offset_fetch::*;
    use sync_group::*;
    let j = JoinGroupResponse {
        throttle_time_ms: 0,
        error_code: 0,
        generation_id: 4,
        protocol_type: Some(s("consumer")),
        protocol_name: Some(s("range")),
        leader: s("m-1"),
        member_id: s("m-2"),
        members: vec![JoinGroupResponseMember {
            member_id: s("m-1"),
            group_instance_id: Some(s("static")),
            metadata: Bytes::from_static(b"meta"),
        }],
    };
    round_trip(ApiKey::JoinGroup, j, &[7]);
    let sy = SyncGroupResponse {
        throttle_time_ms: 0,
        error_code: 0,
        protocol_type: Some(s("consumer")),
        protocol_name: Some(s("range")),
        assignment: Bytes::from_static(b"assign"),
    };
    round_trip(ApiKey::SyncGroup, sy, &[5]);
    round_trip(
        ApiKey::Heartbeat,
        HeartbeatResponse {
            throttle_time_ms: 2,
            error_code: 27,
        },
        &[1, 2, 3, 4],
    );
    let lv = LeaveGroupResponse {
        throttle_time_ms: 0,
        error_code: 0,
        members: vec![MemberResponse {
            member_id: s("m"),
            group_instance_id: None,
            error_code: 25,
        }],
    };
    round_trip(ApiKey::LeaveGroup, lv, &[3, 4]);
    let oc = OffsetCommitResponse {
        throttle_time_ms: 0,
        topics: vec![OffsetCommitResponseTopic {
            name: s("t"),
            partitions: vec![OffsetCommitResponsePartition {
                partition_index: 1,
                error_code: 22,
            }],
        }],
    };
    round_trip(ApiKey::OffsetCommit, oc, &[3, 8]);
    let of = OffsetFetchResponse {
        throttle_time_ms: 0,
        topics: vec![OffsetFetchResponseTopic {
            name: s("t"),
            partitions: vec![OffsetFetchResponsePartition {
                partition_index: 0,
                committed_offset: 12,
                committed_leader_epoch: -1,
                metadata: Some(String::new()),
                error_code: 0,
            }],
        }],
        error_code: 30,
    };
    round_trip(ApiKey::OffsetFetch, of, &[5, 6, 7]);
    let dg = DescribeGroupsResponse {
        throttle_time_ms: 0,
        groups: vec![DescribedGroup {
            error_code: 0,
            group_id: s("g"),
            group_state: s("Stable"),
            protocol_type: s("consumer"),
            protocol_data: s("range"),
            members: vec![DescribedGroupMember {
                member_id: s("m"),
                group_instance_id: None,
                client_id: s("c"),
                client_host: s("/127.0.0.1"),
                member_metadata: Bytes::from_static(b"x"),
                member_assignment: Bytes::from_static(b"y"),
            }],
            authorized_operations: i32::MIN,
        }],
    };
    round_trip(ApiKey::DescribeGroups, dg, &[4, 5]);
    let lg = ListGroupsResponse {
        throttle_time_ms: 0,
        error_code: 0,
        groups: vec![ListedGroup {
            group_id: s("g"),
            protocol_type: s("consumer"),
            group_state: s("Stable"),
        }],
    };
    round_trip(ApiKey::ListGroups, lg, &[4]);
}

#[test]
fn coordinator_topic_producer_sasl_and_versions_answers_round_trip() {
    use find_coordinator::*;
    let old = FindCoordinatorResponse {
        throttle_time_ms: 0,
        error_code: 0,
        error_message: None,
        node_id: 0,
        host: s("h"),
        port: 9092,
        coordinators: Vec::new(),
    };
    round_trip(ApiKey::FindCoordinator, old, &[1, 2, 3]);
    let new = FindCoordinatorResponse {
        coordinators: vec![Coordinator {
            key: s("g"),
            node_id: 0,
            host: s("h"),
            port: 9092,
            error_code: 0,
            error_message: None,
        }],
        ..Default::default()
    };
    round_trip(ApiKey::FindCoordinator, new, &[4]);
    let ct = create_topics::CreateTopicsResponse {
        throttle_time_ms: 0,
        topics: vec![create_topics::CreatableTopicResult {
            name: s("t"),
            error_code: 36,
            error_message: Some(s("exists")),
            num_partitions: 3,
            replication_factor: 1,
            configs: Some(Vec::new()),
        }],
    };
    round_trip(ApiKey::CreateTopics, ct, &[5]);
    let dc = describe_configs::DescribeConfigsResponse {
        throttle_time_ms: 0,
        results: vec![describe_configs::DescribeConfigsResult {
            error_code: 0,
            error_message: None,
            resource_type: 2,
            resource_name: s("t"),
            configs: vec![describe_configs::DescribeConfigsResourceResult {
                name: s("retention.ms"),
                value: Some(s("-1")),
                read_only: true,
                config_source: 4,
                ..Default::default()
            }],
        }],
    };
    round_trip(ApiKey::DescribeConfigs, dc, &[3, 4]);
    let ip = init_producer_id::InitProducerIdResponse {
        throttle_time_ms: 0,
        error_code: 0,
        producer_id: 77,
        producer_epoch: 2,
    };
    round_trip(ApiKey::InitProducerId, ip, &[0, 1, 2, 3, 4]);
    let sh = sasl_handshake::SaslHandshakeResponse {
        error_code: 0,
        mechanisms: vec![s("PLAIN")],
    };
    round_trip(ApiKey::SaslHandshake, sh, &[0, 1]);
    let sa = sasl_authenticate::SaslAuthenticateResponse {
        error_code: 58,
        error_message: Some(s("no")),
        auth_bytes: Bytes::new(),
        session_lifetime_ms: 0,
    };
    round_trip(ApiKey::SaslAuthenticate, sa, &[0, 1, 2]);
    round_trip(ApiKey::ApiVersions, versions::api_versions(0), &[1, 2, 3]);
}

#[test]
fn requests_written_as_clients_write_them_decode_to_the_same_values() {
    let p = produce::ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![produce::TopicProduceData {
            name: s("logs"),
            partition_data: vec![produce::PartitionProduceData {
                index: 0,
                records: Some(Bytes::from_static(b"batch")),
            }],
        }],
    };
    round_trip(ApiKey::Produce, p, &[3, 9]);
    let f = fetch::FetchRequest {
        replica_id: -1,
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        isolation_level: 1,
        session_id: 0,
        session_epoch: -1,
        topics: vec![fetch::FetchTopic {
            topic: s("logs"),
            partitions: vec![fetch::FetchPartition {
                partition: 0,
                current_leader_epoch: -1,
                fetch_offset: 5,
                last_fetched_epoch: -1,
                log_start_offset: -1,
                partition_max_bytes: 1 << 20,
            }],
        }],
        forgotten_topics_data: Vec::new(),
        rack_id: String::new(),
    };
    round_trip(ApiKey::Fetch, f, &[12]);
    let m = metadata::MetadataRequest {
        topics: Some(vec![metadata::MetadataRequestTopic {
            topic_id: [0; 16],
            name: Some(s("t")),
        }]),
        allow_auto_topic_creation: true,
        include_cluster_authorized_operations: false,
        include_topic_authorized_operations: false,
    };
    round_trip(ApiKey::Metadata, m, &[4, 9, 12]);
    let j = join_group::JoinGroupRequest {
        group_id: s("g"),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        member_id: String::new(),
        group_instance_id: None,
        protocol_type: s("consumer"),
        protocols: vec![join_group::JoinGroupRequestProtocol {
            name: s("range"),
            metadata: Bytes::from_static(b"m"),
        }],
    };
    round_trip(ApiKey::JoinGroup, j, &[5, 6, 7]);
    let o = offset_fetch::OffsetFetchRequest {
        group_id: s("g"),
        topics: None,
        require_stable: true,
    };
    round_trip(ApiKey::OffsetFetch, o, &[7]);
}

#[test]
fn a_classic_metadata_request_decodes_field_by_field() {
    // Metadata v1: topics [ "ab" ].
    let body = Bytes::from_static(&[0, 0, 0, 1, 0, 2, b'a', b'b']);
    let m: metadata::MetadataRequest = decode(&body, ApiKey::Metadata, 1).unwrap();
    assert_eq!(m.topics.unwrap()[0].name.as_deref(), Some("ab"));
    // v1 with a null array: every topic.
    let body = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
    let m: metadata::MetadataRequest = decode(&body, ApiKey::Metadata, 1).unwrap();
    assert_eq!(m.topics, None);
}

#[test]
fn a_count_of_two_billion_topics_is_refused_not_allocated() {
    // The counter sees allocations (so the bounds above are not vacuous).
    assert!(allocated_by(|| drop(std::hint::black_box(vec![1u8; 4096]))) >= 4096);
    let body = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]);
    let used = allocated_by(|| {
        let r: Result<metadata::MetadataRequest, _> = decode(&body, ApiKey::Metadata, 1);
        assert!(matches!(r, Err(WireError::CountTooLarge { .. })));
    });
    assert!(used < 1024, "{used} bytes allocated");
}

#[test]
fn flexible_request_headers_carry_tags_after_a_classic_client_id() {
    // Heartbeat v4 (flexible): key 12, version 4, correlation 9, client id
    // "c" (classic i16 length), one tagged field, then a compact body.
    let mut f = BytesMut::new();
    f.put_i16(12);
    f.put_i16(4);
    f.put_i32(9);
    f.put_i16(1);
    f.put_u8(b'c');
    f.put_slice(&[1, 0, 1, 0xaa]);
    f.put_slice(&[2, b'g', 0, 0, 0, 3, 2, b'm', 0, 0]);
    let (h, mut r) = read_header(f.freeze(), ApiKey::Heartbeat, 4).unwrap();
    assert_eq!((h.correlation_id, h.client_id.as_deref()), (9, Some("c")));
    let hb: heartbeat::HeartbeatRequest = read_body(&mut r, 4).unwrap();
    assert_eq!(
        (
            hb.group_id.as_str(),
            hb.generation_id,
            hb.member_id.as_str()
        ),
        ("g", 3, "m")
    );
    assert_eq!(r.remaining(), 0);
}

#[test]
fn response_headers_are_v1_when_flexible_except_for_api_versions() {
    let mut hb = heartbeat::HeartbeatResponse::default();
    let classic = response_frame(ApiKey::Heartbeat, 3, 7, &mut hb).unwrap();
    // length 10: correlation id, throttle time, error code.
    assert_eq!(&classic[..], &[0, 0, 0, 10, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0]);
    let flexible = response_frame(ApiKey::Heartbeat, 4, 7, &mut hb).unwrap();
    // + the header's tagged fields and the body's.
    assert_eq!(
        &flexible[..],
        &[0, 0, 0, 12, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    let mut av = versions::api_versions(0);
    let v3 = response_frame(ApiKey::ApiVersions, 3, 7, &mut av).unwrap();
    // No tagged fields after the correlation id: error code 0 follows it,
    // then the compact array's count (entries + 1).
    assert_eq!(&v3[8..10], &[0, 0]);
    assert_eq!(v3[10] as usize, SUPPORTED.len() + 1);
}
