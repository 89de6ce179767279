//! The modbus source through the real `weir` binary against a real Modbus
//! server (pymodbus, `tests/peers/modbus_server.py`, whose register map the
//! expectations below mirror): every type and word order, an exception
//! response, the server going away and coming back, and RTU over a pty.

use std::time::Duration;

use serde_json::json;
use weir_tests::sensors::*;
use weir_tests::*;

/// Reads of every type in the server's map, plus one illegal address.
const READS: &str = r#"
    reads:
      - { name: u16, kind: holding, address: 0, type: u16 }
      - { name: i16, kind: holding, address: 1, type: i16 }
      - { name: u32, kind: holding, address: 2, type: u32 }
      - { name: i32_little, kind: holding, address: 4, type: i32, word_order: little }
      - { name: f32, kind: holding, address: 6, type: f32 }
      - { name: f32_little, kind: holding, address: 8, type: f32, word_order: little }
      - { name: u64, kind: holding, address: 10, type: u64 }
      - { name: f64, kind: holding, address: 14, type: f64 }
      - { name: scaled, kind: holding, address: 18, scale: 0.1, offset: -5 }
      - { name: i64_little, kind: holding, address: 19, type: i64, word_order: little }
      - { name: in0, kind: input, address: 0 }
      - { name: in1, kind: input, address: 1 }
      - { name: coil0, kind: coil, address: 0 }
      - { name: coil1, kind: coil, address: 1 }
      - { name: coil3, kind: coil, address: 3 }
      - { name: di1, kind: discrete, address: 1 }
      - { name: other_unit, unit: 2, kind: holding, address: 0 }
      - { name: missing, kind: holding, address: 500 }
"#;

fn expected_fields() -> serde_json::Value {
    json!({
        "u16": 65535, "i16": -2, "u32": 65538, "i32_little": -3,
        "f32": 21.5, "f32_little": -0.25, "u64": 1234567890123i64,
        "f64": std::f64::consts::PI, "scaled": 20.0, "i64_little": -9876543210i64,
        "in0": 1000, "in1": 2000, "coil0": true, "coil1": false, "coil3": true,
        "di1": true, "other_unit": 42,
        "errors": ["missing: illegal_data_address"],
    })
}

fn pipeline(dir: &std::path::Path, url: &str, sink: &str) -> std::path::PathBuf {
    write_pipeline(
        dir,
        "p.yaml",
        &format!(
            "sources:\n  meters:\n    type: modbus\n    url: \"{url}\"\n    interval: 200ms\n    timeout: 500ms\n    initial_backoff: 100ms\n    max_backoff: 400ms\n{READS}sinks:\n{sink}"
        ),
    )
}

#[test]
fn modbus_tcp_values_of_every_type_reach_the_collector_and_exceptions_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let _server = ModbusServer::tcp(addr, &dir.path().join("modbus.log"));
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = pipeline(
        dir.path(),
        &format!("tcp://{addr}"),
        &format!(
            "  c: {{ type: collector, inputs: [meters], url: {}, topic: meters }}\n",
            collector.url()
        ),
    );
    let started = std::time::SystemTime::now();
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let polls = agent.wait_metric(
        "weir_source_events_total",
        "component=\"meters\"",
        Duration::from_secs(30),
        |v| v >= 3.0,
    );
    assert!(polls.is_some(), "{}", agent.proc.log_text());
    let records = wait_for(Duration::from_secs(30), || {
        let r = consume_all(&collector.url(), "meters");
        (r.len() >= 3).then_some(r)
    })
    .expect("the polls reach the collector");
    for r in &records {
        assert_eq!(r["value"], expected_fields());
    }
    // One event per poll, stamped with the poll's time.
    let t0 = humantime::parse_rfc3339_weak(records[0]["timestamp"].as_str().unwrap()).unwrap();
    assert!(
        t0 >= started - Duration::from_secs(1),
        "{:?}",
        records[0]["timestamp"]
    );
    let exceptions = agent
        .metric(
            "weir_modbus_errors_total",
            "reason=\"illegal_data_address\"",
        )
        .unwrap();
    assert!(exceptions >= records.len() as f64, "{exceptions}");
    // Coalesced: 18 reads in 7 requests per poll: holding 0–22, input 0–1,
    // coils 0–1, coil 3 (a hole at 2 splits them), discrete 1, unit 2's
    // holding 0, and the illegal address on its own.
    let (req, polls) = (
        agent.metric("weir_modbus_requests_total", "").unwrap(),
        agent.metric("weir_modbus_polls_total", "").unwrap(),
    );
    assert_eq!(req, polls * 7.0, "requests {req}, polls {polls}");
    let log = agent.proc.log_text();
    assert!(
        log.matches("Modbus request failed").count() <= 2,
        "rate-limited: {log}"
    );
}

#[test]
fn modbus_tcp_recovers_when_the_server_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let mut server = ModbusServer::tcp(addr, &dir.path().join("modbus.log"));
    let out = dir.path().join("out.jsonl");
    let cfg = pipeline(
        dir.path(),
        &format!("tcp://{addr}"),
        &format!(
            "  f: {{ type: file, inputs: [meters], path: {} }}\n",
            out.display()
        ),
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    assert!(wait_jsonl(&out, 2, Duration::from_secs(30)).len() >= 2);
    server.kill();
    let refused = agent.wait_metric(
        "weir_modbus_errors_total",
        "reason=\"connect\"",
        Duration::from_secs(20),
        |v| v >= 3.0,
    );
    assert!(refused.is_some(), "{}", agent.proc.log_text());
    let before = read_jsonl(&out).len();
    let _server = ModbusServer::tcp(addr, &dir.path().join("modbus.log"));
    let after = wait_jsonl(&out, before + 2, Duration::from_secs(30));
    assert!(after.len() >= before + 2, "{}", agent.proc.log_text());
    assert_eq!(after.last().unwrap()["fields"], expected_fields());
    let log = agent.proc.log_text();
    assert_eq!(
        log.matches("Lost the Modbus connection").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("Cannot reach the Modbus device").count(),
        0,
        "{log}"
    );
    assert_eq!(log.matches("reachable again").count(), 1, "{log}");
}

#[test]
fn modbus_rtu_over_a_pty_reads_the_same_values() {
    let dir = tempfile::tempdir().unwrap();
    let pair = PtyPair::start(dir.path(), "meter", "rs485");
    let _server = ModbusServer::rtu(&pair.a, 19200, &dir.path().join("modbus.log"));
    let out = dir.path().join("out.jsonl");
    let cfg = pipeline(
        dir.path(),
        &format!("rtu://{}?baud=19200&parity=N", pair.b.display()),
        &format!(
            "  f: {{ type: file, inputs: [meters], path: {} }}\n",
            out.display()
        ),
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let got = wait_jsonl(&out, 2, Duration::from_secs(30));
    assert!(got.len() >= 2, "{}", agent.proc.log_text());
    assert_eq!(got[1]["fields"], expected_fields());
}
