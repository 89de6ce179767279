//! Real Kafka clients against the collector's Kafka listener: kcat,
//! confluent-kafka (librdkafka), kafka-python, aiokafka and kafkajs produce
//! with every codec they ship and with idempotence, consume, seek by time;
//! what they write is what the HTTP consumers read, and the reverse.
//! Hostile frames are answered or refused without harming other clients.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;
use weir_tests::kafka::*;
use weir_tests::*;

const N: usize = 300;

fn recs(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["ev"] == "rec").collect()
}

/// Every codec the library ships: produce N records idempotently (acks=all),
/// then read them over HTTP (the same log) and with the library itself.
fn produces_every_codec_idempotently_and_reads_back(lib: Lib, codecs: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let k = KafkaCollector::start(&dir.path().join("c"), "");
    for codec in codecs {
        let topic = format!("{lib:?}-{codec}").to_lowercase();
        let n = N.to_string();
        let out = lib.run(
            &k.bootstrap(),
            "produce",
            &[
                "--topic",
                &topic,
                "--n",
                &n,
                "--codec",
                codec,
                "--idempotent",
                "true",
            ],
            Duration::from_secs(60),
        );
        assert_eq!(out.last().unwrap()["ev"], "produced", "{out:?}");
        // Over HTTP: every record once, keys and values as sent.
        let got = consume_all(&k.url(), &topic);
        let mut values: Vec<String> = messages(&got);
        values.sort();
        let mut want: Vec<String> = (0..N).map(|i| format!("v{i}")).collect();
        want.sort();
        assert_eq!(values, want, "{lib:?} {codec}: every record exactly once");
        assert!(got
            .iter()
            .all(|r| r["key"].as_str().is_some_and(|k| k.starts_with('k'))));
        if lib != Lib::KafkaJs {
            let back = lib.run(
                &k.bootstrap(),
                "consume",
                &["--topic", &topic, "--n", &n],
                Duration::from_secs(60),
            );
            assert_eq!(recs(&back).len(), N, "{lib:?} reads back {codec}");
        }
    }
    // One producer id per producer run, issued by the collector.
    let ids = std::fs::read_to_string(dir.path().join("c/producers.json")).unwrap();
    assert!(ids.contains("anonymous"), "{ids}");
}

#[test]
fn confluent_kafka_produces_every_codec_idempotently_and_reads_back() {
    produces_every_codec_idempotently_and_reads_back(
        Lib::Confluent,
        &["none", "gzip", "snappy", "lz4", "zstd"],
    );
}

#[test]
fn kafka_python_produces_every_codec_idempotently_and_reads_back() {
    produces_every_codec_idempotently_and_reads_back(
        Lib::KafkaPython,
        &["none", "gzip", "snappy", "lz4", "zstd"],
    );
}

#[test]
fn aiokafka_produces_every_codec_idempotently_and_reads_back() {
    produces_every_codec_idempotently_and_reads_back(
        Lib::AioKafka,
        &["none", "gzip", "snappy", "lz4", "zstd"],
    );
}

#[test]
fn kafkajs_produces_its_codecs_idempotently() {
    // kafkajs ships gzip only; snappy, lz4 and zstd are separate plugins.
    produces_every_codec_idempotently_and_reads_back(Lib::KafkaJs, &["none", "gzip"]);
}

/// Two bursts around a time; seeking to that time yields the second burst only.
fn seeks_by_time(lib: Lib) {
    let dir = tempfile::tempdir().unwrap();
    let k = KafkaCollector::start(&dir.path().join("c"), "");
    let topic = "timed";
    let produce = |prefix: &str| {
        Lib::Confluent.run(
            &k.bootstrap(),
            "produce",
            &["--topic", topic, "--n", "50", "--prefix", prefix],
            Duration::from_secs(60),
        )
    };
    produce("early");
    std::thread::sleep(Duration::from_millis(50));
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    std::thread::sleep(Duration::from_millis(50));
    produce("late");
    let out = lib.run(
        &k.bootstrap(),
        "seek",
        &["--topic", topic, "--ts", &ts],
        Duration::from_secs(60),
    );
    let values: Vec<String> = recs(&out)
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r["v"].as_str().unwrap()).unwrap();
            v["message"].as_str().unwrap().to_owned()
        })
        .collect();
    let want: Vec<String> = (0..50).map(|i| format!("late{i}")).collect();
    assert_eq!(
        values, want,
        "{lib:?}: seek by time starts at the first record at or after it"
    );
}

#[test]
fn confluent_kafka_seeks_by_time() {
    seeks_by_time(Lib::Confluent);
}

#[test]
fn kafka_python_seeks_by_time() {
    seeks_by_time(Lib::KafkaPython);
}

#[test]
fn aiokafka_seeks_by_time() {
    seeks_by_time(Lib::AioKafka);
}

#[test]
fn kafkajs_seeks_by_time() {
    seeks_by_time(Lib::KafkaJs);
}

#[test]
fn kcat_lists_produces_idempotently_and_consumes_from_beginning_by_time_and_in_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let k = KafkaCollector::start(&dir.path().join("c"), "");
    let b = k.bootstrap();
    let lines: String = (0..100).map(|i| format!("line-{i}\n")).collect();
    kcat(
        &[
            "-b",
            &b,
            "-P",
            "-t",
            "kc",
            "-z",
            "zstd",
            "-X",
            "enable.idempotence=true",
            "-X",
            "acks=all",
        ],
        Some(lines.as_bytes()),
        Duration::from_secs(30),
    );
    let meta = kcat(&["-b", &b, "-L"], None, Duration::from_secs(30));
    assert!(
        meta.contains(&format!("broker 0 at {b} (controller)")),
        "{meta}"
    );
    assert!(meta.contains("topic \"kc\" with 1 partitions"), "{meta}");

    let all = kcat(
        &[
            "-b",
            &b,
            "-C",
            "-t",
            "kc",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%o %s\n",
        ],
        None,
        Duration::from_secs(30),
    );
    let want: String = (0..100).map(|i| format!("{i} line-{i}\n")).collect();
    assert_eq!(all, want, "every line once, in order, at its offset");

    // By time: everything produced after `ts`.
    std::thread::sleep(Duration::from_millis(50));
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::thread::sleep(Duration::from_millis(50));
    kcat(
        &["-b", &b, "-P", "-t", "kc"],
        Some(b"after-1\nafter-2\n"),
        Duration::from_secs(30),
    );
    let later = kcat(
        &[
            "-b",
            &b,
            "-C",
            "-t",
            "kc",
            "-o",
            &format!("s@{ts}"),
            "-e",
            "-f",
            "%s\n",
        ],
        None,
        Duration::from_secs(30),
    );
    assert_eq!(later, "after-1\nafter-2\n");

    // A group: the first run reads everything and commits; the second resumes after it.
    let group = |extra: &[u8]| {
        if !extra.is_empty() {
            kcat(
                &["-b", &b, "-P", "-t", "kc"],
                Some(extra),
                Duration::from_secs(30),
            );
        }
        kcat(
            &[
                "-b",
                &b,
                "-G",
                "kc-group",
                "-X",
                "auto.offset.reset=earliest",
                "-e",
                "-f",
                "%s\n",
                "kc",
            ],
            None,
            Duration::from_secs(60),
        )
    };
    let first = group(b"");
    assert_eq!(first.lines().count(), 102, "{first}");
    let second = group(b"after-3\n");
    assert_eq!(
        second, "after-3\n",
        "the group resumes after its committed offset"
    );
    // The same committed offset is what HTTP consumers of the group see.
    let committed = http_get(k.collector.addr, "/v1/groups/kc-group/kc").unwrap();
    assert_eq!(committed, r#"[{"partition":0,"offset":103}]"#);

    // Kafka requests are timed per API beside the HTTP routes.
    let metrics = http_get(k.collector.addr, "/metrics").unwrap();
    for api in ["Produce", "Fetch", "Metadata", "JoinGroup", "OffsetCommit"] {
        let series =
            format!("weir_collector_request_duration_seconds_count{{route=\"kafka:{api}\"}}");
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok());
        assert!(matches!(count, Some(n) if n > 0), "{series} in\n{metrics}");
    }
}

fn frame(api_key: i16, version: i16, correlation: i32, rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&api_key.to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&correlation.to_be_bytes());
    body.extend_from_slice(rest);
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    f
}

fn answer(s: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

fn closed(s: &mut std::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn unsupported_versions_are_answered_and_hostile_frames_refused_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let k = KafkaCollector::start(&dir.path().join("c"), "");
    let connect = || {
        let s = std::net::TcpStream::connect(k.kafka).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    // ApiVersions at a version from the future: v0 answer, UNSUPPORTED_VERSION, our ranges.
    let mut s = connect();
    s.write_all(&frame(18, 99, 7, &[])).unwrap();
    let a = answer(&mut s).expect("an answer");
    assert_eq!(&a[..4], &7i32.to_be_bytes(), "correlation id");
    assert_eq!(&a[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    let count = i32::from_be_bytes([a[6], a[7], a[8], a[9]]);
    assert!(count >= 15, "the supported ranges follow: {count}");
    // The connection stays usable: ApiVersions v0 now succeeds.
    s.write_all(&frame(18, 0, 8, &[0, 0])).unwrap();
    let a = answer(&mut s).expect("an answer");
    assert_eq!(&a[4..6], &0i16.to_be_bytes());

    // A length prefix past the limit: closed before anything is allocated.
    let mut s = connect();
    s.write_all(&i32::MAX.to_be_bytes()).unwrap();
    assert!(closed(&mut s), "an oversized request closes the connection");
    // A Metadata request claiming two billion topics in a few bytes: refused, not allocated.
    let mut s = connect();
    s.write_all(&frame(3, 1, 9, &[0, 0, 0x7f, 0xff, 0xff, 0xff]))
        .unwrap();
    assert!(
        closed(&mut s),
        "an undecodable request closes the connection"
    );
    // An API we do not offer.
    let mut s = connect();
    s.write_all(&frame(21, 0, 10, &[0, 0])).unwrap();
    assert!(closed(&mut s));
    // Garbage.
    let mut s = connect();
    s.write_all(&[0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        .unwrap();
    assert!(closed(&mut s));

    // Everyone else is unharmed.
    let meta = kcat(&["-b", &k.bootstrap(), "-L"], None, Duration::from_secs(30));
    assert!(meta.contains("broker 0"), "{meta}");
    assert!(http_get(k.collector.addr, "/health").is_some());
}

#[test]
fn sasl_plain_maps_onto_principals_and_their_acls() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "principals:\n  - name: writer\n    token_sha256: {}\n    produce: [\"sasl-*\"]\n    create: [\"sasl-*\"]\n  - name: reader\n    token_sha256: {}\n    consume: [\"sasl-*\"]\n    groups: [\"readers\"]\n",
        token_sha256("w-secret"),
        token_sha256("r-secret")
    );
    let k = KafkaCollector::start(&dir.path().join("c"), &yaml);
    let b = k.bootstrap();
    let sasl = |user: &str, pass: &str| {
        vec![
            "-X".to_owned(),
            "security.protocol=SASL_PLAINTEXT".to_owned(),
            "-X".to_owned(),
            "sasl.mechanisms=PLAIN".to_owned(),
            "-X".to_owned(),
            format!("sasl.username={user}"),
            "-X".to_owned(),
            format!("sasl.password={pass}"),
        ]
    };
    let run = |user: &str, pass: &str, args: &[&str], input: Option<&[u8]>| {
        let mut all: Vec<String> = vec!["-b".into(), b.clone()];
        all.extend(sasl(user, pass));
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        kcat(&refs, input, Duration::from_secs(30))
    };
    run(
        "writer",
        "w-secret",
        &["-P", "-t", "sasl-a", "-X", "acks=all"],
        Some(b"one\ntwo\n"),
    );
    let got = run(
        "reader",
        "r-secret",
        &["-C", "-t", "sasl-a", "-o", "beginning", "-e", "-f", "%s\n"],
        None,
    );
    assert_eq!(got, "one\ntwo\n");
    // The reader may not write; a wrong password is refused; neither lands anything.
    let refused = std::panic::catch_unwind(|| {
        run(
            "reader",
            "r-secret",
            &["-P", "-t", "sasl-a", "-X", "message.timeout.ms=3000"],
            Some(b"x\n"),
        )
    });
    let denied = std::panic::catch_unwind(|| {
        run(
            "writer",
            "wrong",
            &["-P", "-t", "sasl-a", "-X", "message.timeout.ms=3000"],
            Some(b"y\n"),
        )
    });
    assert!(refused.is_err() && denied.is_err(), "both fail");
    assert_eq!(
        messages(&consume(
            &k.url(),
            "sasl-a",
            &["--from", "earliest", "--token", "r-secret"]
        ))
        .len(),
        2
    );
    assert!(k
        .collector
        .proc
        .log_text()
        .contains("authentication failed"));
}
