//! The channel under a long collector outage: it holds what it can, applies
//! its `when_full` policy, and drains when the collector returns.

use std::path::Path;
use std::time::Duration;

use weir_tests::*;

fn pipeline(dir: &Path, logs: &Path, url: &str, channel: &str) -> std::path::PathBuf {
    write_pipeline(
        dir,
        "pipeline.yaml",
        &format!(
            r#"
sources:
  app:
    type: file
    include: ["{}/*.log"]
    poll_interval: 50ms
    read_bytes: 16KiB
sinks:
  central:
    type: collector
    inputs: [app]
    url: {url}
    topic: outage
    initial_backoff: 50ms
    max_backoff: 300ms
    batch: {{ max_events: 500, timeout: 50ms }}
    channel: {channel}
"#,
            logs.display()
        ),
    )
}

/// A collector address that nothing listens on yet.
fn down_collector(dir: &Path) -> (std::path::PathBuf, std::net::SocketAddr) {
    (dir.join("collector"), free_port())
}

fn end_offset(c: &Collector) -> Option<u64> {
    let t = http_get(c.addr, "/v1/topics")?;
    let v: serde_json::Value = serde_json::from_str(&t).ok()?;
    v[0]["partitions"][0]["end_offset"].as_u64()
}

#[test]
fn spool_holds_during_an_outage_and_drains_exactly_once_after() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let (cdata, addr) = down_collector(dir.path());
    let cfg = pipeline(
        dir.path(),
        &logs,
        &format!("http://{addr}"),
        "{ type: disk, max_bytes: 64MiB }",
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let n = 20_000;
    append_lines(&logs.join("app.log"), (0..n).map(line));
    let held = wait_for(Duration::from_secs(30), || {
        agent
            .metric("weir_channel_records", "central")
            .filter(|v| *v as usize == n)
    });
    assert!(
        held.is_some(),
        "the spool should hold all {n} lines while the collector is down"
    );
    std::thread::sleep(Duration::from_secs(1));
    let collector = Collector::start_on(&cdata, addr);
    let done = wait_for(Duration::from_secs(60), || {
        end_offset(&collector).filter(|e| *e as usize >= n)
    });
    assert!(
        done.is_some(),
        "spool did not drain: {}",
        agent.proc.log_text()
    );
    assert_exactly_once_in_order(&messages(&consume_all(&collector.url(), "outage")), n);
    // Acknowledgements reach the spool just after the collector's answers.
    let empty = wait_for(Duration::from_secs(10), || {
        agent
            .metric("weir_channel_records", "central")
            .filter(|v| *v == 0.0)
    });
    assert!(
        empty.is_some(),
        "spool should be empty once drained: {:?}",
        agent.metric("weir_channel_records", "central")
    );
}

#[test]
fn a_full_spool_under_block_holds_the_source_back_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let (cdata, addr) = down_collector(dir.path());
    let cfg = pipeline(
        dir.path(),
        &logs,
        &format!("http://{addr}"),
        "{ type: disk, max_bytes: 256KiB, segment_bytes: 32KiB, when_full: block }",
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let n = 10_000; // about 1.1 MB of lines: four times the spool
    append_lines(&logs.join("app.log"), (0..n).map(line));
    // The spool fills up to its bound, then the source waits.
    let full = wait_for(Duration::from_secs(30), || {
        agent
            .metric("weir_channel_bytes", "central")
            .filter(|b| *b > 200_000.0)
    });
    assert!(full.is_some(), "spool did not fill");
    std::thread::sleep(Duration::from_millis(500));
    let bytes = agent.metric("weir_channel_bytes", "central").unwrap_or(0.0);
    assert!(bytes <= 262_144.0, "spool exceeded max_bytes: {bytes}");
    assert!(
        agent
            .metric("weir_source_events_total", "app")
            .unwrap_or(0.0)
            < n as f64,
        "the source must be held back"
    );
    let collector = Collector::start_on(&cdata, addr);
    let done = wait_for(Duration::from_secs(60), || {
        end_offset(&collector).filter(|e| *e as usize >= n)
    });
    assert!(done.is_some(), "did not drain: {}", agent.proc.log_text());
    assert_exactly_once_in_order(&messages(&consume_all(&collector.url(), "outage")), n);
    assert_eq!(
        agent.metric("weir_channel_dropped_events_total", "central"),
        Some(0.0)
    );
}

#[test]
fn a_full_spool_under_drop_newest_counts_exactly_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let (cdata, addr) = down_collector(dir.path());
    let cfg = pipeline(
        dir.path(),
        &logs,
        &format!("http://{addr}"),
        "{ type: disk, max_bytes: 256KiB, segment_bytes: 32KiB, when_full: drop_newest }",
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let n = 10_000;
    append_lines(&logs.join("app.log"), (0..n).map(line));
    // The source reads everything; what does not fit is dropped and counted.
    let read = wait_for(Duration::from_secs(30), || {
        agent
            .metric("weir_source_events_total", "app")
            .filter(|v| *v as usize == n)
    });
    assert!(
        read.is_some(),
        "source did not read all lines: {}",
        agent.proc.log_text()
    );
    let dropped = agent
        .metric("weir_channel_dropped_events_total", "reason=\"newest\"")
        .unwrap_or(0.0) as usize;
    assert!(
        dropped > 0,
        "a spool a quarter of the data's size must drop"
    );
    let collector = Collector::start_on(&cdata, addr);
    let expect = n - dropped;
    let done = wait_for(Duration::from_secs(60), || {
        end_offset(&collector).filter(|e| *e as usize >= expect)
    });
    assert!(done.is_some(), "did not drain: {}", agent.proc.log_text());
    std::thread::sleep(Duration::from_millis(500));
    let got = messages(&consume_all(&collector.url(), "outage"));
    assert_eq!(
        got.len(),
        n - dropped,
        "the drop counter equals the number missing"
    );
    // What arrived is the oldest lines, in order, each once.
    assert_exactly_once_in_order(&got, expect);
}
