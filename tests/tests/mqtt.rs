//! The `mqtt` source and sink against a real mosquitto on a loopback port:
//! QoS 0/1/2, named wildcard levels, retained and large messages, dead
//! letters, a broker restart, `kill -9` of the agent mid-stream (QoS 2
//! exactly once, QoS 1 at least once with counted duplicates), a full
//! channel under `block`, and the sink publishing to a topic template.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir_tests::mosquitto::{publish_one, tool, Mosquitto, Publisher, Subscriber};
use weir_tests::*;

fn wait_records(c: &Collector, topic: &str, n: u64, limit: Duration) -> bool {
    wait_for(limit, || {
        (c.end_offset(topic).unwrap_or(0) >= n).then_some(())
    })
    .is_some()
}

/// How often each `n` occurs in the records' values.
fn counts(records: &[serde_json::Value]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for r in records {
        if let Some(n) = r["value"]["n"].as_i64() {
            *m.entry(n).or_default() += 1;
        }
    }
    m
}

/// The i-th test message: JSON with its number, padded to about 100 bytes.
fn payload(i: usize) -> String {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(80))
}

fn source(url: &str, client_id: &str, topics: &str, extra: &str) -> String {
    format!(
        r#"
  plant:
    type: mqtt
    url: {url}
    client_id: {client_id}
    topics: {topics}
    initial_backoff: 50ms
    max_backoff: 500ms
{extra}"#
    )
}

fn collector_sink(url: &str, extra: &str) -> String {
    format!(
        r#"
  central:
    type: collector
    inputs: [plant]
    url: {url}
    topic: mqtt
    initial_backoff: 50ms
    max_backoff: 300ms
    batch: {{ max_events: 500, max_bytes: 4MiB, timeout: 20ms }}
{extra}"#
    )
}

/// Publishes probes (no `n`, ignored by the checks) until the agent's
/// source has received one: its subscription is then in place, and the
/// broker's persistent session keeps everything after it.
fn wait_subscribed(broker: &Mosquitto, agent: &Agent, topic: &str) {
    for _ in 0..40 {
        publish_one(broker.port, topic, 1, false, br#"{"probe":true}"#);
        let got = agent.wait_metric(
            "weir_mqtt_messages_total",
            "component=\"plant\"",
            Duration::from_millis(300),
            |v| v > 0.0,
        );
        if got.is_some() {
            return;
        }
    }
    panic!("the source never subscribed: {}", agent.proc.log_text());
}

fn pipeline(dir: &Path, sources: &str, sinks: &str) -> PathBuf {
    write_pipeline(
        dir,
        "pipeline.yaml",
        &format!("sources:{sources}\nsinks:{sinks}\n"),
    )
}

#[test]
fn qos_levels_wildcards_retained_large_and_invalid_messages_arrive_where_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), "");
    let collector = Collector::start(&dir.path().join("collector"));
    // Retained before the agent subscribes: delivered on subscription, marked retained.
    publish_one(broker.port, "sensors/r1/state", 1, true, br#"{"n":0}"#);
    let errors = dir.path().join("errors.jsonl");
    let topics = r#"[{ filter: "sensors/+device/+metric", qos: 2 }, { filter: "q0/#rest", qos: 0 }, { filter: "q1/+device", qos: 1 }, { filter: "big", qos: 1 }]"#;
    let cfg = pipeline(
        dir.path(),
        &source(&broker.url(), "gw-features", topics, ""),
        &format!(
            "{}\n  dead:\n    type: file\n    inputs: [plant.errors]\n    path: {}\n",
            collector_sink(&collector.url(), ""),
            errors.display()
        ),
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    assert!(
        wait_records(&collector, "mqtt", 1, Duration::from_secs(15)),
        "the retained message did not arrive: {}",
        agent.proc.log_text()
    );
    publish_one(
        broker.port,
        "sensors/d1/temp",
        2,
        false,
        br#"{"n":1,"v":21.5}"#,
    );
    publish_one(broker.port, "q0/a/b/c", 0, false, br#"{"n":2}"#);
    publish_one(broker.port, "q1/d9", 1, false, br#"{"n":3}"#);
    let big = format!("{{\"n\":4,\"pad\":\"{}\"}}", "y".repeat(1 << 20));
    publish_one(broker.port, "big", 1, false, big.as_bytes());
    publish_one(broker.port, "sensors/d2/temp", 1, false, b"{not json");
    assert!(
        wait_records(&collector, "mqtt", 5, Duration::from_secs(20)),
        "messages missing: {}",
        agent.proc.log_text()
    );
    let records = consume_all(&collector.url(), "mqtt");
    let by_n: BTreeMap<i64, &serde_json::Value> = records
        .iter()
        .filter_map(|r| Some((r["value"]["n"].as_i64()?, &r["value"])))
        .collect();
    assert_eq!(by_n.len(), 5, "{records:?}");
    assert_eq!(by_n[&0]["retained"], true);
    assert_eq!(by_n[&0]["device"], "r1");
    assert_eq!(by_n[&1]["device"], "d1");
    assert_eq!(by_n[&1]["metric"], "temp");
    assert_eq!(by_n[&1]["topic"], "sensors/d1/temp");
    assert_eq!(by_n[&1]["v"], 21.5);
    assert!(by_n[&1].get("retained").is_none());
    assert_eq!(by_n[&2]["rest"], "a/b/c");
    assert_eq!(by_n[&3]["device"], "d9");
    assert_eq!(by_n[&4]["pad"].as_str().map(str::len), Some(1 << 20));
    // The undecodable payload went to the dead-letter sink, with its reason.
    let dead = wait_for(Duration::from_secs(10), || {
        let t = std::fs::read_to_string(&errors).ok()?;
        (!t.is_empty()).then_some(t)
    })
    .expect("dead letter written");
    let line: serde_json::Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(line["fields"]["reason"], "decode");
    assert_eq!(line["fields"]["event"]["topic"], "sensors/d2/temp");
    assert_eq!(line["fields"]["event"]["payload"], "{not json");
    assert!(line["fields"]["error"].as_str().unwrap().contains("JSON"));
    assert_eq!(
        agent.metric("weir_mqtt_decode_errors_total", "plant"),
        Some(1.0)
    );
}

/// Publishes `n` messages to `topic` over about `spread`, while the agent is
/// killed with -9 `kills` times and restarted; returns the redeliveries the
/// agents counted (read just before each kill and at the end).
fn publish_through_kills(
    broker: &Mosquitto,
    agent: &mut Agent,
    qos: u8,
    n: usize,
    kills: usize,
) -> f64 {
    let mut publisher = Publisher::start(broker.port, "sensors/d1/temp", qos, false);
    let chunks: Vec<Vec<String>> = (0..n)
        .map(payload)
        .collect::<Vec<_>>()
        .chunks(n / 40)
        .map(<[String]>::to_vec)
        .collect();
    let feeder = std::thread::spawn(move || {
        for c in chunks {
            publisher.send(&c);
            std::thread::sleep(Duration::from_millis(50));
        }
        publisher.finish();
    });
    let label = format!("qos=\"{qos}\"");
    let mut redelivered = 0.0;
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(450));
        redelivered += agent
            .metric("weir_mqtt_redeliveries_total", &label)
            .unwrap_or(0.0);
        agent.crash_and_restart(Duration::from_millis(100));
    }
    feeder.join().expect("publisher thread");
    redelivered
}

#[test]
fn qos2_messages_reach_the_collector_exactly_once_across_agent_kills() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), "");
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = pipeline(
        dir.path(),
        &source(
            &broker.url(),
            "gw-qos2",
            r#"[{ filter: "sensors/+device/+metric", qos: 2 }]"#,
            "",
        ),
        &collector_sink(&collector.url(), ""),
    );
    let mut agent = Agent::start(&cfg, &dir.path().join("agent"));
    wait_subscribed(&broker, &agent, "sensors/probe/x");
    let n = 4000;
    let mut redelivered = publish_through_kills(&broker, &mut agent, 2, n, 4);
    let arrived = wait_records(&collector, "mqtt", n as u64, Duration::from_secs(30));
    // Anything extra would arrive now: give it a moment before counting.
    std::thread::sleep(Duration::from_millis(500));
    redelivered += agent
        .metric("weir_mqtt_redeliveries_total", "qos=\"2\"")
        .unwrap_or(0.0);
    // How much of the duplicate window the kills hit (redelivered messages
    // the spool had to recognise), for the record.
    eprintln!("QoS 2 redeliveries across the kills: {redelivered}");
    let c = counts(&consume_all(&collector.url(), "mqtt"));
    let missing: Vec<i64> = (0..n as i64).filter(|i| !c.contains_key(i)).collect();
    let repeated: Vec<(i64, usize)> = c
        .iter()
        .filter(|(_, k)| **k > 1)
        .map(|(a, b)| (*a, *b))
        .collect();
    assert!(
        arrived && missing.is_empty() && repeated.is_empty() && c.len() == n,
        "QoS 2 must be exactly once: {} distinct, missing {:?}…, repeated {:?}…\nagent log:\n{}",
        c.len(),
        &missing[..missing.len().min(10)],
        &repeated[..repeated.len().min(10)],
        agent.proc.log_text()
    );
}

#[test]
fn qos1_messages_arrive_at_least_once_across_agent_kills_with_counted_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), "");
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = pipeline(
        dir.path(),
        &source(
            &broker.url(),
            "gw-qos1",
            r#"[{ filter: "sensors/#", qos: 1 }]"#,
            "",
        ),
        &collector_sink(&collector.url(), ""),
    );
    let mut agent = Agent::start(&cfg, &dir.path().join("agent"));
    wait_subscribed(&broker, &agent, "sensors/probe/x");
    let n = 4000;
    let mut redelivered = publish_through_kills(&broker, &mut agent, 1, n, 4);
    let complete = wait_for(Duration::from_secs(30), || {
        let c = counts(&consume_all(&collector.url(), "mqtt"));
        (c.len() == n).then_some(c)
    });
    std::thread::sleep(Duration::from_millis(500));
    redelivered += agent
        .metric("weir_mqtt_redeliveries_total", "qos=\"1\"")
        .unwrap_or(0.0);
    let c = counts(&consume_all(&collector.url(), "mqtt"));
    assert!(
        complete.is_some(),
        "QoS 1 lost messages: {} of {n} distinct\nagent log:\n{}",
        c.len(),
        agent.proc.log_text()
    );
    let duplicates: usize = c.values().map(|k| k - 1).sum();
    assert!(
        duplicates as f64 <= redelivered,
        "{duplicates} duplicates but only {redelivered} redeliveries counted"
    );
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing_and_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(&dir.path().join("broker"), "");
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = pipeline(
        dir.path(),
        &source(
            &broker.url(),
            "gw-restart",
            r#"[{ filter: "sensors/+device/+metric", qos: 1 }]"#,
            "    protocol: v5\n",
        ),
        &collector_sink(&collector.url(), ""),
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    wait_subscribed(&broker, &agent, "sensors/probe/x");
    let n = 2000;
    let mut p = Publisher::start(broker.port, "sensors/d1/temp", 1, false);
    p.send(&(0..n / 2).map(payload).collect::<Vec<_>>());
    p.finish();
    // SIGTERM: mosquitto writes its sessions and queued messages to disk.
    broker.stop();
    std::thread::sleep(Duration::from_millis(700));
    broker.restart("");
    let mut p = Publisher::start(broker.port, "sensors/d1/temp", 1, false);
    p.send(&(n / 2..n).map(payload).collect::<Vec<_>>());
    p.finish();
    let complete = wait_for(Duration::from_secs(30), || {
        let c = counts(&consume_all(&collector.url(), "mqtt"));
        (c.len() == n).then_some(())
    });
    let log = agent.proc.log_text();
    assert!(
        complete.is_some(),
        "messages lost across the broker restart:\n{log}"
    );
    assert_eq!(
        log.matches("MQTT broker unreachable").count(),
        1,
        "one WARN per outage:\n{log}"
    );
    assert_eq!(
        log.matches("MQTT broker reachable again").count(),
        1,
        "one INFO on recovery:\n{log}"
    );
}

#[test]
fn a_full_channel_under_block_holds_messages_at_the_broker_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), "");
    // The collector is not running yet: the channel fills and blocks.
    let caddr = free_port();
    let cfg = pipeline(
        dir.path(),
        &source(
            &broker.url(),
            "gw-block",
            r#"[{ filter: "sensors/#", qos: 1 }]"#,
            "    keep_alive: 1s\n",
        ),
        &collector_sink(
            &format!("http://{caddr}"),
            "    channel: { type: disk, max_bytes: 64KiB, segment_bytes: 8KiB, when_full: block }\n",
        ),
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    wait_subscribed(&broker, &agent, "sensors/probe/x");
    let n = 2000; // about 300 KB: almost five times the channel
    let mut p = Publisher::start(broker.port, "sensors/d1/temp", 1, false);
    p.send(&(0..n).map(payload).collect::<Vec<_>>());
    p.finish();
    let full = agent.wait_metric(
        "weir_channel_bytes",
        "central",
        Duration::from_secs(15),
        |b| b > 40_000.0,
    );
    assert!(full.is_some(), "the channel did not fill");
    // Blocked for several keep-alive intervals: the connection must stay up.
    std::thread::sleep(Duration::from_secs(4));
    let received = agent
        .metric("weir_mqtt_messages_total", "qos=\"1\"")
        .unwrap_or(0.0);
    assert!(
        received < n as f64,
        "the broker should hold messages back, got all {received}"
    );
    let collector = Collector::start_on(&dir.path().join("collector"), caddr);
    let started = Instant::now();
    let complete = wait_for(Duration::from_secs(30), || {
        let c = counts(&consume_all(&collector.url(), "mqtt"));
        (c.len() == n).then_some(())
    });
    let log = agent.proc.log_text();
    assert!(
        complete.is_some(),
        "messages lost after {:?} of draining: {} of {n} arrived; received {:?}\n{log}\nbroker:\n{}",
        started.elapsed(),
        counts(&consume_all(&collector.url(), "mqtt")).len(),
        agent.metric("weir_mqtt_messages_total", "qos=\"1\""),
        broker.proc.log_text()
    );
    assert!(
        !log.contains("MQTT broker unreachable"),
        "the connection dropped while blocked:\n{log}"
    );
    assert_eq!(
        agent.metric("weir_channel_dropped_events_total", "central"),
        Some(0.0)
    );
}

#[test]
fn the_sink_publishes_every_record_to_its_topic_template() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), "");
    let sub = Subscriber::start(broker.port, "site/#", 1, &dir.path().join("sub.txt"));
    let cfg = pipeline(
        dir.path(),
        &source(
            &broker.url(),
            "gw-sink-in",
            r#"[{ filter: "in/+device", qos: 1 }, { filter: "raw/#", qos: 1 }]"#,
            "",
        ),
        &format!(
            r#"
  alerts:
    type: mqtt
    inputs: [plant]
    url: {}
    client_id: gw-sink-out
    topic: "site/{{{{ device }}}}/alerts"
    default_topic: site/unknown/alerts
    qos: 2
"#,
            broker.url()
        ),
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    wait_subscribed(&broker, &agent, "in/probe");
    // The probe also shows that mosquitto_sub is subscribed.
    let probed = wait_for(Duration::from_secs(10), || {
        (!sub.lines().is_empty()).then_some(())
    });
    assert!(
        probed.is_some(),
        "the subscriber saw no probe: {}",
        agent.proc.log_text()
    );
    let n = 300;
    for d in 0..3 {
        let mut p = Publisher::start(broker.port, &format!("in/d{d}"), 1, false);
        p.send(
            &(0..n)
                .filter(|i| i % 3 == d)
                .map(payload)
                .collect::<Vec<_>>(),
        );
        p.finish();
    }
    let mut p = Publisher::start(broker.port, "raw/x", 1, false);
    p.send(&(n..n + 10).map(payload).collect::<Vec<_>>());
    p.finish();
    let numbered = || -> Vec<String> {
        sub.lines()
            .into_iter()
            .filter(|l| l.contains("\"n\":"))
            .collect()
    };
    let all = wait_for(Duration::from_secs(20), || {
        let lines = numbered();
        (lines.len() >= n + 10).then_some(lines)
    });
    let lines = all.unwrap_or_else(|| {
        panic!(
            "subscriber got {} of {} messages\n{}\nbroker:\n{}",
            numbered().len(),
            n + 10,
            agent.proc.log_text(),
            broker.proc.log_text()
        )
    });
    let mut seen = BTreeMap::new();
    for l in &lines {
        let (topic, body) = l.split_once(' ').expect("topic and payload");
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON payload");
        let i = v["n"].as_u64().expect("n") as usize;
        let want = if i < n {
            format!("site/d{}/alerts", i % 3)
        } else {
            "site/unknown/alerts".to_owned()
        };
        assert_eq!(topic, want, "message {i}");
        seen.insert(i, ());
    }
    assert_eq!(seen.len(), n + 10, "every record published");
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate and key signed by it for `name` with `ext`.
fn issue(dir: &Path, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

#[test]
fn messages_arrive_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    openssl(
        &pki,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=weir-test-ca",
        ],
    );
    issue(
        &pki,
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    issue(&pki, "client", "extendedKeyUsage=clientAuth\n");
    let p = |f: &str| pki.join(f).display().to_string();
    let broker = Mosquitto::start(
        &dir.path().join("broker"),
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            p("ca.pem"),
            p("server.pem"),
            p("server.key")
        ),
    );
    let out = dir.path().join("out.jsonl");
    let cfg = pipeline(
        dir.path(),
        &format!(
            r#"
  plant:
    type: mqtt
    url: mqtts://127.0.0.1:{}
    topics: [{{ filter: "secure/+device", qos: 1 }}]
    tls: {{ ca_file: {}, cert_file: {}, key_file: {} }}
    initial_backoff: 50ms
"#,
            broker.port,
            p("ca.pem"),
            p("client.pem"),
            p("client.key")
        ),
        &format!(
            "\n  out:\n    type: file\n    inputs: [plant]\n    path: {}\n",
            out.display()
        ),
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let publish = || {
        let status = std::process::Command::new(tool("mosquitto_pub"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &broker.port.to_string(),
                "-q",
                "1",
                "-t",
                "secure/d1",
            ])
            .args([
                "--cafile",
                &p("ca.pem"),
                "--cert",
                &p("client.pem"),
                "--key",
                &p("client.key"),
            ])
            .args(["-m", r#"{"n":7}"#])
            .status()
            .expect("mosquitto_pub");
        assert!(status.success(), "mosquitto_pub over TLS failed");
    };
    // Publish until the source (subscribing over TLS) has one.
    let got = wait_for(Duration::from_secs(15), || {
        publish();
        std::thread::sleep(Duration::from_millis(200));
        let t = std::fs::read_to_string(&out).ok()?;
        t.lines().next().map(str::to_owned)
    });
    let line = got.unwrap_or_else(|| {
        panic!(
            "nothing arrived over TLS:\n{}\nbroker:\n{}",
            agent.proc.log_text(),
            broker.proc.log_text()
        )
    });
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fields"]["n"], 7);
    assert_eq!(v["fields"]["device"], "d1");
}
