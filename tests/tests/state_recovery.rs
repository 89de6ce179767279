//! A damaged state database never stops the agent and never makes it read
//! and send everything again: it is moved aside, and the file positions are
//! rebuilt from what the spool holds.

use std::time::Duration;

use weir_tests::*;

#[test]
fn a_damaged_state_database_is_quarantined_and_positions_rebuilt_from_the_spool() {
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
  app:
    type: file
    include: ["{}/*.log"]
    poll_interval: 50ms
sinks:
  central:
    type: collector
    inputs: [app]
    url: {}
    topic: state
    batch: {{ max_events: 500, timeout: 50ms }}
"#,
            logs.display(),
            collector.url()
        ),
    );
    let data = dir.path().join("agent");
    let mut agent = Agent::start(&cfg, &data);
    let log = logs.join("app.log");
    append_lines(&log, (0..3000).map(line));
    // Acknowledged in the spool too: nothing in flight when the database
    // is lost (in-flight batches are the documented duplicate window).
    let landed = agent.wait_metric(
        "weir_channel_events_acked_total",
        "",
        Duration::from_secs(30),
        |v| v >= 3000.0,
    );
    assert!(
        landed.is_some(),
        "first lines not delivered: {}",
        agent.proc.log_text()
    );
    agent.proc.kill9();

    // Damage the database's header page and its WAL.
    let db = data.join("state.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..64].fill(0xa5);
    std::fs::write(&db, &bytes).unwrap();
    let _ = std::fs::write(data.join("state.db-wal"), b"garbage");

    let agent = Agent::start(&cfg, &data);
    append_lines(&log, (3000..5000).map(line));
    let done = wait_for(Duration::from_secs(30), || {
        let got = messages(&consume_all(&collector.url(), "state"));
        (got.len() >= 5000).then_some(got)
    });
    let got = done.unwrap_or_else(|| messages(&consume_all(&collector.url(), "state")));
    std::thread::sleep(Duration::from_millis(300));
    let text = agent.proc.log_text();
    assert_exactly_once_in_order(&got, 5000);
    assert!(text.contains("state database is damaged"), "{text}");
    assert!(
        text.contains("Rebuilt a file position from the spool"),
        "{text}"
    );
    assert_eq!(
        agent.metric("weir_state_db_quarantined_total", ""),
        Some(1.0)
    );
    let quarantined = std::fs::read_dir(data.join("quarantine"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        quarantined >= 1,
        "the damaged database is kept for inspection"
    );
}
