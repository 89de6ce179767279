//! End to end through the Kafka API: an agent tails a file into the
//! collector while the collector is killed with SIGKILL and restarted, and
//! kcat and confluent-kafka, reading through the Kafka listener the whole
//! time, see every line exactly once and in order; a quixstreams
//! application computes a windowed aggregate of an agent-fed topic and
//! writes it back through the Kafka API, where a Weir consumer reads it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use weir_tests::kafka::*;
use weir_tests::*;

fn pipeline(dir: &Path, logs: &Path, url: &str, topic: &str) -> std::path::PathBuf {
    write_pipeline(
        dir,
        "pipeline.yaml",
        &format!(
            "sources:\n  app:\n    type: file\n    include: [\"{}/*.log\"]\n    poll_interval: 50ms\nsinks:\n  central:\n    type: collector\n    inputs: [app]\n    url: {url}\n    topic: {topic}\n    initial_backoff: 50ms\n    max_backoff: 500ms\n    batch: {{ max_events: 1000, timeout: 50ms }}\n",
            logs.display()
        ),
    )
}

#[test]
fn kafka_consumers_see_every_agent_line_once_in_order_across_collector_kill9() {
    const TOTAL: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut k = KafkaCollector::start(&dir.path().join("c"), "");
    let cfg = pipeline(dir.path(), &logs, &k.url(), "tail");
    let _agent = Agent::start(&cfg, &dir.path().join("agent"));
    let log = logs.join("app.log");
    append_lines(&log, (0..100).map(line));
    assert!(
        wait_for(Duration::from_secs(30), || k
            .collector
            .end_offset("tail")
            .filter(|e| *e >= 100))
        .is_some(),
        "the agent's first lines arrive"
    );
    // Both Kafka consumers read through the kills, reconnecting by themselves.
    let kcat_out = dir.path().join("kcat.out");
    let total = TOTAL.to_string();
    let mut kcat = Command::new(need("kcat"))
        .args([
            "-b",
            &k.bootstrap(),
            "-C",
            "-t",
            "tail",
            "-o",
            "beginning",
            "-c",
            &total,
            "-f",
            "%o %s\n",
        ])
        .args(["-X", "reconnect.backoff.max.ms=200"])
        .stdout(std::fs::File::create(&kcat_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let confluent_out = dir.path().join("confluent.jsonl");
    let mut confluent = Lib::Confluent.spawn(
        &k.bootstrap(),
        "consume",
        &["--topic", "tail", "--n", &total, "--limit", "120"],
        &confluent_out,
    );
    let mut written = 100;
    while written < TOTAL {
        append_lines(&log, (written..written + 500).map(line));
        written += 500;
        std::thread::sleep(Duration::from_millis(20));
        if written == 6_000 || written == 13_000 {
            k.crash_and_restart(Duration::from_millis(500));
        }
    }
    let finished = wait_for(Duration::from_secs(120), || {
        let a = kcat.try_wait().ok().flatten()?;
        let b = confluent.try_wait().ok().flatten()?;
        Some((a, b))
    });
    let _ = kcat.kill();
    let _ = confluent.kill();
    assert!(
        finished.is_some(),
        "both consumers read {TOTAL} records within 120s"
    );
    // kcat: offsets 0.. and lines 0.., each once, in order.
    let text = std::fs::read_to_string(&kcat_out).unwrap();
    let got: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let (o, msg) = l.split_once(' ').unwrap();
            assert_eq!(o, i.to_string(), "kcat sees offset {i} in order");
            let v: Value = serde_json::from_str(msg).unwrap();
            v["message"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_exactly_once_in_order(&got, TOTAL);
    // confluent-kafka: the same, and the agent's headers and JSON values as they are.
    let recs: Vec<Value> = events(&confluent_out)
        .into_iter()
        .filter(|e| e["ev"] == "rec")
        .collect();
    let got: Vec<String> = recs
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r["v"].as_str().unwrap()).unwrap();
            v["message"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_exactly_once_in_order(&got, TOTAL);
    assert_eq!(recs[0]["h"]["weir.source"], "app", "{:?}", recs[0]);
    assert!(recs[0]["h"]["weir.host"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
}

#[test]
fn quixstreams_windows_an_agent_fed_topic_back_into_the_collector() {
    const LINES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let k = KafkaCollector::start(&dir.path().join("c"), "");
    let cfg = pipeline(dir.path(), &logs, &k.url(), "agent-logs");
    let _agent = Agent::start(&cfg, &dir.path().join("agent"));
    append_lines(&logs.join("app.log"), (0..LINES).map(line));
    assert!(wait_for(Duration::from_secs(30), || k
        .collector
        .end_offset("agent-logs")
        .filter(|e| *e >= LINES as u64))
    .is_some());

    let out = dir.path().join("quix.out");
    let n = LINES.to_string();
    let state = dir.path().join("quix-state");
    let mut app = Command::new(python())
        .arg(clients_dir().join("quix_window.py"))
        .args([
            "--bootstrap",
            &k.bootstrap(),
            "--input",
            "agent-logs",
            "--output",
            "windows",
            "--n",
            &n,
            "--limit",
            "25",
        ])
        .arg("--state-dir")
        .arg(&state)
        .current_dir(clients_dir())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let status = wait_for(Duration::from_secs(90), || app.try_wait().ok().flatten());
    let _ = app.kill();
    let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "quixstreams app failed: {err}"
    );

    // A Weir consumer reads the aggregates: the last count of each window
    // adds up to every input line.
    let windows = consume_all(&k.url(), "windows");
    assert!(
        !windows.is_empty(),
        "the application wrote its windows: {err}"
    );
    let mut last: BTreeMap<i64, i64> = BTreeMap::new();
    for w in &windows {
        let v = &w["value"];
        let start = v["start"].as_i64().expect("window start");
        assert_eq!(v["end"].as_i64().unwrap() - start, 1000, "1 s windows");
        last.insert(start, v["value"].as_i64().expect("count"));
    }
    assert_eq!(
        last.values().sum::<i64>(),
        LINES as i64,
        "every line counted once: {last:?}"
    );
}
