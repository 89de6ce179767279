//! The serial source through the real `weir` binary, over socat pty pairs:
//! the sensor simulator's frames reach the collector, NMEA dead letters
//! reach their own sink, and an unplugged port is reopened without a restart.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use weir_tests::sensors::*;
use weir_tests::*;

/// Starts the agent and waits until it has the port open.
fn agent_on_port(cfg: &std::path::Path, data: &std::path::Path) -> Agent {
    let agent = Agent::start(cfg, data);
    let open = agent.wait_metric("weir_serial_connected", "", Duration::from_secs(15), |v| {
        v == 1.0
    });
    assert!(open.is_some(), "port not opened: {}", agent.proc.log_text());
    agent
}

fn simulate(port: &std::path::Path, args: &[&str]) {
    let out = Command::new(example("simulator"))
        .arg("--output")
        .arg(port)
        .args(args)
        .output()
        .expect("run the simulator");
    assert!(
        out.status.success(),
        "simulator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn simulated_sensor_frames_with_garbage_reach_the_collector_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let pair = PtyPair::start(dir.path(), "sensor", "gateway");
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "sources:\n  sensors:\n    type: serial\n    path: {}\n    baud: 921600\n    framing: frame\n    channels: {{ 0: temperature }}\nsinks:\n  c: {{ type: collector, inputs: [sensors], url: {}, topic: sensors }}\n",
            pair.b.display(),
            collector.url()
        ),
    );
    let agent = agent_on_port(&cfg, &dir.path().join("agent"));
    let n = 3000;
    simulate(
        &pair.a,
        &[
            "--format",
            "weir",
            "--rate",
            "0",
            "--count",
            &n.to_string(),
            "--devices",
            "3",
            "--readings",
            "6",
            "--garbage-every",
            "50",
        ],
    );
    let events = agent.wait_metric(
        "weir_source_events_total",
        "component=\"sensors\"",
        Duration::from_secs(60),
        |v| v >= n as f64,
    );
    assert_eq!(events, Some(n as f64), "{}", agent.proc.log_text());
    let records = wait_for(Duration::from_secs(30), || {
        let r = consume_all(&collector.url(), "sensors");
        (r.len() >= n).then_some(r)
    })
    .expect("every frame reaches the collector");
    let mut seen = std::collections::BTreeSet::new();
    for r in &records {
        let v = &r["value"];
        let key = (
            v["device_id"].as_i64().unwrap(),
            v["sequence"].as_i64().unwrap(),
        );
        assert!(seen.insert(key), "twice: {key:?}");
        assert!(v["temperature"].is_f64(), "{v}");
        assert!(v["device_time"].is_string(), "{v}");
        assert_eq!(v["port"], pair.b.display().to_string());
    }
    let expected: std::collections::BTreeSet<(i64, i64)> =
        (0..n as i64).map(|i| (1000 + i % 3, i / 3)).collect();
    assert_eq!(seen, expected);
    assert!(agent.metric("weir_serial_garbage_bytes_total", "").unwrap() > 0.0);
    assert_eq!(agent.metric("weir_serial_lost_frames_total", ""), Some(0.0));
}

#[test]
fn nmea_lines_reach_a_file_sink_and_bad_checksums_their_dead_letter_sink() {
    let dir = tempfile::tempdir().unwrap();
    let pair = PtyPair::start(dir.path(), "gps-dev", "gps");
    let (good, bad) = (dir.path().join("good.jsonl"), dir.path().join("bad.jsonl"));
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "sources:\n  gps: {{ type: serial, path: {}, baud: 9600, parser: nmea }}\nsinks:\n  fixes: {{ type: file, inputs: [gps], path: {} }}\n  rejects: {{ type: file, inputs: [gps.errors], path: {} }}\n",
            pair.b.display(),
            good.display(),
            bad.display()
        ),
    );
    let agent = agent_on_port(&cfg, &dir.path().join("agent"));
    simulate(
        &pair.a,
        &[
            "--format",
            "nmea",
            "--rate",
            "0",
            "--count",
            "100",
            "--bad-checksum-every",
            "10",
        ],
    );
    let fixes = wait_jsonl(&good, 90, Duration::from_secs(30));
    let rejects = wait_jsonl(&bad, 10, Duration::from_secs(30));
    assert_eq!((fixes.len(), rejects.len()), (90, 10));
    let f = &fixes[0]["fields"];
    assert_eq!(f["sentence"], "GGA");
    assert!(
        f["lat"].is_f64() && f["lon"].is_f64() && f["fix_quality"].is_i64(),
        "{f}"
    );
    assert_eq!(rejects[0]["fields"]["reason"], "bad_checksum");
    assert_eq!(
        agent.metric("weir_serial_parse_errors_total", "reason=\"bad_checksum\""),
        Some(10.0)
    );
}

#[test]
fn an_unplugged_port_is_reopened_without_a_restart_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = PtyPair::start(dir.path(), "dev", "ttyUSB-by-id");
    let out = dir.path().join("out.jsonl");
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "sources:\n  s: {{ type: serial, path: {}, initial_backoff: 50ms, max_backoff: 200ms }}\nsinks:\n  f: {{ type: file, inputs: [s], path: {} }}\n",
            pair.b.display(),
            out.display()
        ),
    );
    let agent = agent_on_port(&cfg, &dir.path().join("agent"));
    let send = |pair: &PtyPair, text: &str| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&pair.a)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    send(&pair, "before 1\nbefore 2\n");
    assert_eq!(wait_jsonl(&out, 2, Duration::from_secs(20)).len(), 2);
    pair.unplug();
    let down = agent.wait_metric("weir_serial_connected", "", Duration::from_secs(10), |v| {
        v == 0.0
    });
    assert!(down.is_some());
    // Away long enough for many reopen attempts (backoff capped at 200 ms).
    std::thread::sleep(Duration::from_secs(2));
    pair.restart();
    let up = agent.wait_metric("weir_serial_connected", "", Duration::from_secs(10), |v| {
        v == 1.0
    });
    assert!(up.is_some(), "{}", agent.proc.log_text());
    send(&pair, "after 1\n");
    let lines = wait_jsonl(&out, 3, Duration::from_secs(20));
    let msgs: Vec<&str> = lines
        .iter()
        .map(|l| l["fields"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["before 1", "before 2", "after 1"]);
    let log = agent.proc.log_text();
    assert_eq!(log.matches("Serial port lost").count(), 1, "{log}");
    assert_eq!(log.matches("Cannot open serial port").count(), 0, "{log}");
    assert_eq!(log.matches("Serial port is back").count(), 1, "{log}");
    assert_eq!(agent.metric("weir_serial_disconnects_total", ""), Some(1.0));
}
