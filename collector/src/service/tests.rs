//! The service's rules, in process: identities, duplicates and conflicts,
//! ACLs, limits, creation races and long-polls.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir_core::record::{encode_batch, Compression, ProducerStamp};
use weir_core::{Event, Metadata};

use super::*;
use crate::auth::{Acl, Principal, PrincipalConfig};
use crate::log::{FsyncPolicy, StoreConfig};

pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub service: Arc<Service>,
    pub drain: watch::Sender<bool>,
    pub metrics: Metrics,
    _stop: watch::Sender<bool>,
}

pub(crate) fn fixture(limits: ServiceLimits) -> Fixture {
    fixture_in(tempfile::tempdir().unwrap(), limits)
}

/// A service over the store in `dir` (which may hold data already).
fn fixture_in(dir: tempfile::TempDir, limits: ServiceLimits) -> Fixture {
    let (stop, stop_rx) = watch::channel(false);
    let store = Store::open(
        StoreConfig {
            data_dir: dir.path().to_path_buf(),
            default_partitions: limits.default_partitions,
            segment_bytes: 1 << 20,
            retention_bytes: None,
            retention: None,
            fsync: FsyncPolicy::Batch,
            fsync_interval: Duration::from_millis(10),
            batch_limits: Default::default(),
            metrics: Default::default(),
        },
        stop_rx,
    )
    .unwrap();
    let groups = Arc::new(Groups::new(dir.path()));
    let (drain, drain_rx) = watch::channel(false);
    let metrics = Metrics::new();
    let service = Service::new(store, groups, limits, &metrics, drain_rx).unwrap();
    Fixture {
        dir,
        service,
        drain,
        metrics,
        _stop: stop,
    }
}

pub(crate) fn agent(name: &str, topics: &str) -> Principal {
    Principal::new(
        name,
        Acl::from_config(&PrincipalConfig {
            name: name.into(),
            produce: vec![topics.into()],
            create: vec![topics.into()],
            ..Default::default()
        }),
    )
}

pub(crate) fn batch(pid: i64, epoch: i16, seq: i32, lines: &[&str]) -> Vec<u8> {
    let events: Vec<Event> = lines
        .iter()
        .map(|l| Event::from_message((*l).to_owned(), Metadata::default()))
        .collect();
    let stamp = ProducerStamp {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
    };
    encode_batch(&events, stamp, Compression::None)
        .unwrap()
        .to_vec()
}

async fn produce(
    s: &Arc<Service>,
    who: &Principal,
    topic: &str,
    b: Vec<u8>,
) -> Result<BatchAck, ServiceError> {
    let req = ProduceRequest {
        topic: topic.into(),
        partitions: vec![PartitionBatch {
            partition: 0,
            batch: b,
        }],
        acks: Acks::Durable,
    };
    let mut r = s.produce(who, req).await?;
    r.pop().unwrap().result
}

#[tokio::test]
async fn a_batch_under_a_producer_id_issued_to_someone_else_or_never_issued_is_refused() {
    let f = fixture(ServiceLimits::default());
    let victim = agent("victim", "*");
    let thief = agent("thief", "*");
    let id = f.service.init_producer(&victim, None).await.unwrap();
    assert_eq!(id.producer_epoch, 0);
    let forged = batch(id.producer_id, 0, 0, &["forged"]);
    let e = produce(&f.service, &thief, "t", forged).await.unwrap_err();
    assert!(matches!(e, ServiceError::InvalidProducerId { .. }), "{e}");
    let e = produce(&f.service, &thief, "t", batch(987_654, 0, 0, &["x"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidProducerId);
    // The victim's own first batch is untouched by the attempts.
    let ack = produce(
        &f.service,
        &victim,
        "t",
        batch(id.producer_id, 0, 0, &["real"]),
    )
    .await
    .unwrap();
    assert_eq!((ack.base_offset, ack.duplicate), (0, false));
    // Nobody else may re-init (and so fence) the victim's id either.
    let e = f
        .service
        .init_producer(&thief, Some(id.producer_id))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidProducerId);
}

#[tokio::test]
async fn a_forged_epoch_is_refused_and_does_not_fence_the_producer() {
    let f = fixture(ServiceLimits::default());
    let a = agent("a", "*");
    let id = f.service.init_producer(&a, None).await.unwrap().producer_id;
    produce(&f.service, &a, "t", batch(id, 0, 0, &["one"]))
        .await
        .unwrap();
    let e = produce(&f.service, &a, "t", batch(id, i16::MAX, 0, &["forged"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidProducerEpoch, "{e}");
    let ack = produce(&f.service, &a, "t", batch(id, 0, 1, &["two"]))
        .await
        .unwrap();
    assert_eq!(ack.base_offset, 1, "the producer is not fenced");
}

#[tokio::test]
async fn re_init_bumps_the_epoch_and_fences_the_old_one_until_the_limit_which_is_refused() {
    let f = fixture(ServiceLimits::default());
    let a = agent("a", "*");
    let id = f.service.init_producer(&a, None).await.unwrap().producer_id;
    produce(&f.service, &a, "t", batch(id, 0, 0, &["one"]))
        .await
        .unwrap();
    let next = f.service.init_producer(&a, Some(id)).await.unwrap();
    assert_eq!((next.producer_id, next.producer_epoch), (id, 1));
    let e = produce(&f.service, &a, "t", batch(id, 0, 1, &["late"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProducerFenced);
    produce(&f.service, &a, "t", batch(id, 1, 0, &["new epoch"]))
        .await
        .unwrap();
    f.service
        .producers
        .set_epoch_for_test(id, producers::MAX_EPOCH);
    let e = f.service.init_producer(&a, Some(id)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::EpochExhausted, "{e}");
    // Never wrapped: the last epoch still writes, and a fresh id is available.
    assert!(f
        .service
        .producers
        .check("a", id, producers::MAX_EPOCH)
        .is_ok());
    assert_ne!(
        f.service.init_producer(&a, None).await.unwrap().producer_id,
        id
    );
}

#[tokio::test]
async fn a_resend_is_a_duplicate_only_when_the_stored_batch_is_the_same_otherwise_a_conflict() {
    let f = fixture(ServiceLimits::default());
    let a = agent("a", "*");
    let id = f.service.init_producer(&a, None).await.unwrap().producer_id;
    let original = batch(id, 0, 0, &["x", "y"]);
    let first = produce(&f.service, &a, "t", original.clone())
        .await
        .unwrap();
    let again = produce(&f.service, &a, "t", original).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.base_offset, again.last_offset),
        (first.base_offset, first.last_offset)
    );
    // Same producer, epoch and sequence range, different records: a conflict.
    let other = batch(id, 0, 0, &["X", "Y"]);
    let e = produce(&f.service, &a, "t", other).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConflictingBatch, "{e}");
    assert!(e.to_string().contains("CRC"), "{e}");
    // Nothing was appended by either resend.
    let (_, end) = f.service.store.topic("t").unwrap().partitions[0].bounds();
    assert_eq!(end, 2);
}

#[tokio::test]
async fn every_operation_checks_the_acl() {
    let f = fixture(ServiceLimits::default());
    let owner = agent("owner", "app-*");
    let reader = Principal::new(
        "reader",
        Acl::from_config(&PrincipalConfig {
            name: "reader".into(),
            consume: vec!["app-*".into()],
            groups: vec!["readers".into()],
            ..Default::default()
        }),
    );
    let id = f
        .service
        .init_producer(&owner, None)
        .await
        .unwrap()
        .producer_id;
    produce(&f.service, &owner, "app-1", batch(id, 0, 0, &["a"]))
        .await
        .unwrap();
    fn no<T: std::fmt::Debug>(r: Result<T, ServiceError>) {
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Unauthorized);
    }
    no(produce(&f.service, &owner, "other", batch(id, 0, 0, &["a"])).await);
    no(produce(&f.service, &reader, "app-1", batch(-1, -1, -1, &["a"])).await);
    no(f.service.create_topic(&reader, "app-2", None).await);
    no(f.service
        .list_offset(&owner, "app-1", 0, OffsetSpec::Latest)
        .await);
    no(f.service
        .commit_offsets(&reader, "others", "app-1", vec![])
        .await);
    assert_eq!(
        f.service
            .list_offset(&reader, "app-1", 0, OffsetSpec::Latest)
            .await
            .unwrap(),
        1
    );
    f.service
        .commit_offsets(
            &reader,
            "readers",
            "app-1",
            vec![weir_core::protocol::GroupOffset {
                partition: 0,
                offset: 1,
            }],
        )
        .await
        .unwrap();
    let listed = f
        .service
        .list_topics(&agent("stranger", "nothing-*"))
        .await
        .unwrap();
    assert!(
        listed.is_empty(),
        "a principal sees only topics it has rights on"
    );
}

#[tokio::test]
async fn topic_and_partition_limits_refuse_before_anything_is_created() {
    let f = fixture(ServiceLimits {
        max_topics: 2,
        max_partitions: 4,
        ..Default::default()
    });
    let a = agent("a", "*");
    f.service.create_topic(&a, "one", Some(4)).await.unwrap();
    let e = f
        .service
        .create_topic(&a, "big", Some(5))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    f.service.create_topic(&a, "two", None).await.unwrap();
    let e = produce(&f.service, &a, "three", batch(-1, -1, -1, &["x"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    for name in ["big", "three"] {
        assert!(
            !f.dir.path().join("topics").join(name).exists(),
            "{name} left files behind"
        );
    }
    let e = f
        .service
        .create_topic(&a, "../escape", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_first_writes_to_a_new_topic_all_succeed() {
    for round in 0..5 {
        let f = fixture(ServiceLimits::default());
        let a = agent("a", "*");
        let topic = format!("new-{round}");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (s, a, topic) = (f.service.clone(), a.clone(), topic.clone());
                tokio::spawn(async move {
                    produce(&s, &a, &topic, batch(-1, -1, -1, &[&format!("w{i}")])).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let (_, end) = f.service.store.topic(&topic).unwrap().partitions[0].bounds();
        assert_eq!(end, 16);
    }
}

#[tokio::test]
async fn a_long_poll_wakes_on_new_data_and_ends_when_the_collector_drains() {
    let f = fixture(ServiceLimits::default());
    let a = Principal::anonymous();
    f.service.create_topic(&a, "t", None).await.unwrap();
    let s = f.service.clone();
    let poll = tokio::spawn(async move {
        let req = FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1 << 20,
            max_wait: Duration::from_secs(20),
        };
        s.fetch(&Principal::anonymous(), req).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    produce(&f.service, &a, "t", batch(-1, -1, -1, &["wake"]))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!got.batches.is_empty());
    assert_eq!(got.next_offset, 1);
    // A poll at the end waits, until shutdown starts.
    let s = f.service.clone();
    let poll = tokio::spawn(async move {
        let req = FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            max_bytes: 1 << 20,
            max_wait: Duration::from_secs(20),
        };
        s.fetch(&Principal::anonymous(), req).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished());
    f.drain.send(true).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), poll)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(got.batches.is_empty());
}

#[tokio::test]
async fn a_batch_whose_records_are_invalid_is_refused_as_corrupt_with_its_reason() {
    let f = fixture(ServiceLimits::default());
    let who = agent("a", "*");
    // The header says 4 records; the batch holds 3 (CRC fixed up).
    let mut b = batch(-1, -1, -1, &["a", "b", "c"]);
    b[57..61].copy_from_slice(&4i32.to_be_bytes());
    b[23..27].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let e = produce(&f.service, &who, "t", b).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CorruptBatch);
    assert!(e.to_string().contains("invalid batch: record 3"), "{e}");
    // Nothing was appended.
    let t = f.service.describe_topic(&who, "t").await.unwrap();
    assert_eq!(t.partitions[0].end_offset, 0);
}

#[tokio::test]
async fn damaged_group_offsets_are_refused_through_the_service_and_never_reset() {
    let f = fixture(ServiceLimits::default());
    let who = Principal::anonymous();
    let o = |offset| weir_core::protocol::GroupOffset {
        partition: 0,
        offset,
    };
    f.service
        .commit_offsets(&who, "g", "t", vec![o(5)])
        .await
        .unwrap();
    let file = f.dir.path().join("groups/g/t.json");
    std::fs::write(&file, b"{\"0\":").unwrap();
    let e = f.service.group_offsets(&who, "g", "t").await.unwrap_err();
    assert!(matches!(e, ServiceError::Damaged(_)), "{e}");
    assert_eq!(e.kind(), ErrorKind::StorageError);
    assert!(e.to_string().contains("damaged"), "{e}");
    let e = f
        .service
        .commit_offsets(&who, "g", "t", vec![o(9)])
        .await
        .unwrap_err();
    assert!(matches!(e, ServiceError::Damaged(_)), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"{\"0\":", "left as found");
}

#[tokio::test]
async fn a_topic_with_damaged_metadata_is_refused_as_damaged_not_unknown_or_recreated() {
    let f = fixture(ServiceLimits::default());
    let who = Principal::anonymous();
    produce(&f.service, &who, "t", batch(-1, -1, -1, &["kept"]))
        .await
        .unwrap();
    let Fixture { dir, service, .. } = f;
    drop(service);
    let meta = dir.path().join("topics/t/topic.json");
    std::fs::write(&meta, b"{\"partit").unwrap();
    let f = fixture_in(dir, ServiceLimits::default());
    let req = FetchRequest {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        max_bytes: 1 << 20,
        max_wait: Duration::ZERO,
    };
    let e = f.service.fetch(&who, req).await.unwrap_err();
    assert!(matches!(e, ServiceError::Damaged(_)), "{e}");
    let e = f.service.describe_topic(&who, "t").await.unwrap_err();
    assert!(matches!(e, ServiceError::Damaged(_)), "{e}");
    let e = produce(&f.service, &who, "t", batch(-1, -1, -1, &["new"]))
        .await
        .unwrap_err();
    assert!(matches!(e, ServiceError::Damaged(_)), "{e}");
    assert_eq!(std::fs::read(&meta).unwrap(), b"{\"partit");
}

#[tokio::test]
async fn every_refused_batch_is_counted_under_its_reason() {
    let f = fixture(ServiceLimits::default());
    let who = agent("a", "t*");
    let mut corrupt = batch(-1, -1, -1, &["a"]);
    corrupt[30] ^= 0xff;
    let e = produce(&f.service, &who, "t", corrupt).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CorruptBatch);
    let id = f.service.init_producer(&who, None).await.unwrap();
    let e = produce(
        &f.service,
        &who,
        "t",
        batch(id.producer_id, id.producer_epoch, 5, &["late"]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownProducer);
    // A request refused as a whole counts its batch too.
    let e = produce(&f.service, &who, "other", batch(-1, -1, -1, &["x"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    let text = f.metrics.render();
    for reason in ["corrupt_batch", "unknown_producer", "unauthorized"] {
        let line = format!("weir_collector_rejected_batches_total{{reason=\"{reason}\"}} 1");
        assert!(text.contains(&line), "missing {line} in:\n{text}");
    }
}

#[tokio::test]
async fn a_batch_that_overtook_its_predecessor_waits_for_it_and_a_real_gap_is_refused_after_the_wait(
) {
    let f = fixture(ServiceLimits {
        sequence_wait: Duration::from_millis(300),
        ..Default::default()
    });
    let a = agent("a", "*");
    let id = f.service.init_producer(&a, None).await.unwrap();
    let pid = id.producer_id;
    produce(&f.service, &a, "t", batch(pid, 0, 0, &["a", "b"]))
        .await
        .unwrap();
    // The third batch (sequence 4) arrives before the second (sequence 2):
    // it waits; the second is appended meanwhile; the third then follows it.
    let third = batch(pid, 0, 4, &["e"]);
    let s = f.service.clone();
    let who = a.clone();
    let waiting = tokio::spawn(async move {
        s.wait_for_turn(&who, "t", 0, &third).await;
        produce(&s, &who, "t", third).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "the overtaking batch waits");
    let second = produce(&f.service, &a, "t", batch(pid, 0, 2, &["c", "d"]))
        .await
        .unwrap();
    assert_eq!((second.base_offset, second.last_offset), (2, 3));
    let third = waiting.await.unwrap().unwrap();
    assert_eq!((third.base_offset, third.duplicate), (4, false));
    // A gap nothing fills: refused as out of order once the wait is over.
    let started = std::time::Instant::now();
    let gap = batch(pid, 0, 9, &["x"]);
    f.service.wait_for_turn(&a, "t", 0, &gap).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let e = produce(&f.service, &a, "t", gap).await.unwrap_err();
    assert_eq!(e.expected_sequence(), Some(5), "{e}");
    // Nothing waits that is in line, a duplicate, or from a caller who may not produce.
    let started = std::time::Instant::now();
    f.service
        .wait_for_turn(&a, "t", 0, &batch(pid, 0, 5, &["f"]))
        .await;
    f.service
        .wait_for_turn(&a, "t", 0, &batch(pid, 0, 2, &["c", "d"]))
        .await;
    let outsider = agent("outsider", "other");
    f.service
        .wait_for_turn(&outsider, "t", 0, &batch(pid, 0, 9, &["x"]))
        .await;
    assert!(started.elapsed() < Duration::from_millis(300));
    let text = f.metrics.render();
    assert!(
        text.contains("weir_collector_overtaking_batches_total 2"),
        "{text}"
    );
}
