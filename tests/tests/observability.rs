//! Metrics, readiness and outage logs, with real peers: a collector killed
//! under a running agent makes the agent's `/ready` fail past the configured
//! time and the outage show up once in its log with its cause, then once
//! more when delivery recovers; the collector's own `/ready` follows its
//! storage; both binaries publish the labelled metrics operators graph.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use weir_tests::*;

/// (status, body) of a GET, `None` when unreachable.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    raw_request(addr, req.as_bytes(), Duration::from_secs(5))
        .map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
}

fn wait_status(addr: SocketAddr, path: &str, status: u16, limit: Duration) -> Option<String> {
    wait_for(limit, || {
        get(addr, path)
            .filter(|(s, _)| *s == status)
            .map(|(_, b)| b)
    })
}

#[test]
fn a_collector_outage_fails_ready_past_the_threshold_and_is_logged_once_with_its_cause_and_recovery(
) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let cdata = dir.path().join("collector");
    let mut collector = Collector::start(&cdata);
    let cfg = write_pipeline(
        dir.path(),
        "pipeline.yaml",
        &format!(
            r#"
health:
  sink_failing_after: 2s
sources:
  app:
    type: file
    include: ["{}/*.log"]
    poll_interval: 50ms
sinks:
  central:
    type: collector
    inputs: [app]
    url: {}
    topic: obs
    initial_backoff: 50ms
    max_backoff: 200ms
    batch: {{ max_events: 100, timeout: 50ms }}
"#,
            logs.display(),
            collector.url()
        ),
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    append_lines(&logs.join("app.log"), (0..100).map(line));
    assert!(
        wait_for(Duration::from_secs(30), || collector
            .end_offset("obs")
            .filter(|e| *e >= 100))
        .is_some(),
        "first lines not delivered: {}",
        agent.proc.log_text()
    );
    assert!(get(agent.metrics, "/ready").is_some_and(|(s, _)| s == 200));

    // The collector dies; lines keep coming and wait in the spool.
    collector.proc.kill9();
    let killed = Instant::now();
    append_lines(&logs.join("app.log"), (100..600).map(line));
    let why = wait_status(agent.metrics, "/ready", 503, Duration::from_secs(20));
    let waited = killed.elapsed();
    let why = why.unwrap_or_else(|| panic!("/ready never failed: {}", agent.proc.log_text()));
    assert!(
        waited >= Duration::from_secs(2),
        "/ready failed after {waited:?}, before the 2s threshold"
    );
    assert!(why.contains("sink central has been failing for"), "{why}");
    assert!(why.to_lowercase().contains("connection refused"), "{why}");
    assert_eq!(
        get(agent.metrics, "/health").map(|(s, _)| s),
        Some(200),
        "liveness stays up"
    );
    let backlog = agent
        .wait_metric(
            "weir_channel_events",
            "central",
            Duration::from_secs(10),
            |v| v >= 500.0,
        )
        .expect("the spool holds the new lines");
    assert!(backlog >= 500.0);
    assert!(
        agent
            .metric("weir_channel_lag_seconds", "central")
            .unwrap_or(0.0)
            > 0.5
    );
    assert!(agent.metric("weir_channel_bytes", "central").unwrap_or(0.0) > 500.0 * 10.0);
    assert_eq!(agent.metric("weir_sink_failing", "central"), Some(1.0));
    assert!(
        agent
            .metric("weir_sink_retries_total", "reason=\"connection_refused\"")
            .unwrap_or(0.0)
            >= 2.0
    );

    // It comes back: delivery resumes, the agent is ready again.
    let collector = Collector::start_on(&cdata, collector.addr);
    assert!(
        wait_status(agent.metrics, "/ready", 200, Duration::from_secs(30)).is_some(),
        "not ready after recovery: {}",
        agent.proc.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(30), || collector
            .end_offset("obs")
            .filter(|e| *e >= 600))
        .is_some(),
        "backlog not delivered: {}",
        agent.proc.log_text()
    );
    assert_exactly_once_in_order(&messages(&consume_all(&collector.url(), "obs")), 600);
    assert!(agent
        .wait_metric(
            "weir_channel_lag_seconds",
            "central",
            Duration::from_secs(10),
            |v| v == 0.0
        )
        .is_some());
    assert_eq!(agent.metric("weir_sink_failing", "central"), Some(0.0));

    // The log: the outage once with its cause, the recovery once with its length and backlog.
    let log = agent.proc.log_text();
    let failing: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Delivery failing"))
        .collect();
    assert_eq!(failing.len(), 1, "one line at the outage's start:\n{log}");
    assert!(failing[0].contains("sink=central"), "{}", failing[0]);
    // A pooled connection may see a reset first; the refusals follow, said once.
    let outage: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Delivery failing") || l.contains("Delivery still failing"))
        .collect();
    assert!(
        outage.iter().any(|l| l.contains("Connection refused")),
        "the cause is named:\n{log}"
    );
    let retries = agent
        .metric("weir_sink_retries_total", "central")
        .unwrap_or(0.0);
    assert!(
        outage.len() <= 3 && retries >= 4.0 * outage.len() as f64,
        "{retries} failed attempts, {} lines: one per outage, not one per retry:\n{log}",
        outage.len()
    );
    let recovered: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Delivery recovered after"))
        .collect();
    assert_eq!(recovered.len(), 1, "one line at recovery:\n{log}");
    let events: u64 = recovered[0]
        .split("backlog_events=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no backlog in {}", recovered[0]));
    assert!(
        events >= 400,
        "the backlog built during the outage: {}",
        recovered[0]
    );
    assert!(recovered[0].contains("outage="), "{}", recovered[0]);
}

#[test]
fn both_binaries_publish_labelled_metrics_process_figures_and_build_info() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = write_pipeline(
        dir.path(),
        "pipeline.yaml",
        &format!(
            r#"
sources:
  app: {{ type: file, include: ["{}/*.log"], poll_interval: 50ms }}
transforms:
  tag: {{ type: add_fields, inputs: [app], fields: {{ site: a }} }}
sinks:
  central:
    type: collector
    inputs: [tag]
    url: {}
    topic: m
    batch: {{ max_events: 50, timeout: 50ms }}
"#,
            logs.display(),
            collector.url()
        ),
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    append_lines(&logs.join("app.log"), (0..200).map(line));
    assert!(agent
        .wait_metric(
            "weir_sink_acked_events_total",
            "central",
            Duration::from_secs(30),
            |v| v >= 200.0
        )
        .is_some());
    // The channel hears of the acknowledgement just after the sink does.
    assert!(agent
        .wait_metric(
            "weir_channel_events",
            "central",
            Duration::from_secs(10),
            |v| v == 0.0
        )
        .is_some());
    let m = agent.metrics_text().unwrap();
    for series in [
        "weir_build_info{version=\"",
        "weir_source_sent_events_total{component=\"app\",component_type=\"file\",output=\"default\"} 200",
        "weir_transform_events_out_total{component=\"tag\",component_type=\"add_fields\",output=\"default\"} 200",
        "weir_sink_acked_events_total{component=\"central\",component_type=\"collector\"} 200",
        "weir_channel_capacity_bytes{component=\"central\",component_type=\"collector\"} 268435456",
        "weir_channel_events{component=\"central\",component_type=\"collector\"} 0",
        "weir_channel_bytes{component=\"central\",component_type=\"collector\"} 0",
        "weir_sink_failing{component=\"central\",component_type=\"collector\"} 0",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_cpu_seconds_total ",
        "process_start_time_seconds ",
    ] {
        assert!(m.contains(series), "missing {series} in\n{m}");
    }
    assert!(!m.contains("sink=\""), "the old `sink` label is gone");

    // The collector: by topic and partition, by producer, by group, by route.
    let got = consume(
        &collector.url(),
        "m",
        &["--group", "g1", "--from", "earliest"],
    );
    assert_eq!(got.len(), 200);
    let c = http_get(collector.addr, "/metrics").unwrap();
    for series in [
        "weir_collector_build_info{version=\"",
        "weir_collector_partition_end_offset{topic=\"m\",partition=\"0\"} 200",
        "weir_collector_partition_segments{topic=\"m\",partition=\"0\"} 1",
        "weir_collector_group_committed_offset{group=\"g1\",topic=\"m\",partition=\"0\"} 200",
        "weir_collector_group_lag{group=\"g1\",topic=\"m\",partition=\"0\"} 0",
        "weir_collector_producer_last_sequence{producer_id=\"",
        "weir_collector_producers 1",
        "weir_collector_request_duration_seconds_bucket{route=\"/v1/produce/{topic}/{partition}\",le=\"+Inf\"}",
        "weir_collector_requests_total{route=\"/v1/produce/{topic}/{partition}\",code=\"200\"}",
        "weir_collector_storage_writable 1",
        "process_resident_memory_bytes ",
    ] {
        assert!(c.contains(series), "missing {series} in\n{c}");
    }
    let bytes: f64 = c
        .lines()
        .find_map(|l| {
            l.strip_prefix("weir_collector_partition_bytes{topic=\"m\",partition=\"0\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap();
    let sent = agent
        .metric("weir_sink_acked_bytes_total", "central")
        .unwrap();
    assert!(
        bytes >= sent && sent > 0.0,
        "the log holds what the sink sent: {bytes} < {sent}"
    );
}

#[test]
fn the_collector_is_not_ready_while_its_data_directory_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let c = Collector::start_with(&data, "storage_probe_interval: 100ms\n", &[]);
    assert!(wait_status(c.addr, "/ready", 200, Duration::from_secs(10)).is_some());
    // A directory where the probe writes its file: the write fails, as on a
    // read-only or broken filesystem (and unlike a chmod, also for root).
    let blocker = data.join(".ready-probe");
    std::fs::create_dir(&blocker).unwrap();
    let why = wait_status(c.addr, "/ready", 503, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("/ready stayed 200: {}", c.proc.log_text()));
    assert!(why.contains("storage is not writable"), "{why}");
    assert_eq!(get(c.addr, "/health").map(|(s, _)| s), Some(200));
    assert!(http_get(c.addr, "/metrics")
        .unwrap()
        .contains("weir_collector_storage_writable 0"));
    std::fs::remove_dir(&blocker).unwrap();
    assert!(
        wait_status(c.addr, "/ready", 200, Duration::from_secs(10)).is_some(),
        "ready again once writes work"
    );
}
