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

/// A test directory with a log directory, and a pipeline (with `channel`)
/// pointing at a collector that is not running yet.
struct Setup {
    dir: tempfile::TempDir,
    logs: std::path::PathBuf,
    /// Where the collector keeps its data once started.
    cdata: std::path::PathBuf,
    /// The address nothing listens on yet.
    addr: std::net::SocketAddr,
    cfg: std::path::PathBuf,
}

fn setup(channel: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let addr = free_port();
    let cfg = pipeline(dir.path(), &logs, &format!("http://{addr}"), channel);
    Setup {
        cdata: dir.path().join("collector"),
        dir,
        logs,
        addr,
        cfg,
    }
}

#[test]
fn spool_holds_during_an_outage_and_drains_exactly_once_after() {
    let Setup {
        dir,
        logs,
        cdata,
        addr,
        cfg,
    } = setup("{ type: disk, max_bytes: 64MiB }");
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let n = 20_000;
    append_lines(&logs.join("app.log"), (0..n).map(line));
    let held = agent.wait_metric(
        "weir_channel_events",
        "central",
        Duration::from_secs(30),
        |v| v as usize == n,
    );
    assert!(
        held.is_some(),
        "the spool should hold all {n} lines while the collector is down"
    );
    std::thread::sleep(Duration::from_secs(1));
    let collector = Collector::start_on(&cdata, addr);
    let done = wait_for(Duration::from_secs(60), || {
        collector.end_offset("outage").filter(|e| *e as usize >= n)
    });
    assert!(
        done.is_some(),
        "spool did not drain: {}",
        agent.proc.log_text()
    );
    assert_exactly_once_in_order(&messages(&consume_all(&collector.url(), "outage")), n);
    // Acknowledgements reach the spool just after the collector's answers.
    let empty = agent.wait_metric(
        "weir_channel_events",
        "central",
        Duration::from_secs(10),
        |v| v == 0.0,
    );
    assert!(
        empty.is_some(),
        "spool should be empty once drained: {:?}",
        agent.metric("weir_channel_events", "central")
    );
}

#[test]
fn a_full_spool_under_block_holds_the_source_back_and_loses_nothing() {
    let Setup {
        dir,
        logs,
        cdata,
        addr,
        cfg,
    } = setup("{ type: disk, max_bytes: 256KiB, segment_bytes: 32KiB, when_full: block }");
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let n = 10_000; // about 1.1 MB of lines: four times the spool
    append_lines(&logs.join("app.log"), (0..n).map(line));
    // The spool fills up to its bound, then the source waits.
    let full = agent.wait_metric(
        "weir_channel_bytes",
        "central",
        Duration::from_secs(30),
        |b| b > 200_000.0,
    );
    assert!(full.is_some(), "spool did not fill");
    std::thread::sleep(Duration::from_millis(500));
    let disk = agent
        .metric("weir_channel_disk_bytes", "central")
        .unwrap_or(0.0);
    assert!(disk <= 262_144.0, "spool exceeded max_bytes: {disk}");
    let backlog = agent.metric("weir_channel_bytes", "central").unwrap_or(0.0);
    assert!(
        backlog > 0.0 && backlog <= disk,
        "the backlog ({backlog}) is what the segments ({disk}) hold unacknowledged"
    );
    assert_eq!(
        agent.metric("weir_channel_capacity_bytes", "central"),
        Some(262_144.0)
    );
    assert!(
        agent
            .metric("weir_source_events_total", "app")
            .unwrap_or(0.0)
            < n as f64,
        "the source must be held back"
    );
    let collector = Collector::start_on(&cdata, addr);
    let done = wait_for(Duration::from_secs(60), || {
        collector.end_offset("outage").filter(|e| *e as usize >= n)
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
    let Setup {
        dir,
        logs,
        cdata,
        addr,
        cfg,
    } = setup("{ type: disk, max_bytes: 256KiB, segment_bytes: 32KiB, when_full: drop_newest }");
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let n = 10_000;
    append_lines(&logs.join("app.log"), (0..n).map(line));
    // The source reads everything; what does not fit is dropped and counted.
    let read = agent.wait_metric(
        "weir_source_events_total",
        "app",
        Duration::from_secs(30),
        |v| v as usize == n,
    );
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
        collector
            .end_offset("outage")
            .filter(|e| *e as usize >= expect)
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

/// Runs the agent in its own user and mount namespace with `data` on a tmpfs
/// of `kib` KiB, so the spool and state database meet a real ENOSPC.
fn agent_on_tiny_disk(cfg: &Path, data: &Path, kib: u32) -> Agent {
    std::fs::create_dir_all(data).unwrap();
    let metrics = free_port();
    let script = format!(
        "mount -t tmpfs -o size={kib}k tmpfs '{}' && exec '{}' run -c '{}' --data-dir '{}' --metrics-listen {metrics}",
        data.display(),
        bin("weir").display(),
        cfg.display(),
        data.display()
    );
    let log = data.with_extension("log");
    let f = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(f)
        .spawn()
        .expect("unshare (util-linux) is needed for the full-disk test");
    let agent = Agent {
        proc: Proc { child, log },
        config: cfg.to_path_buf(),
        data: data.to_path_buf(),
        metrics,
    };
    let up = wait_for(Duration::from_secs(15), || agent.metrics_text().map(|_| ()));
    assert!(
        up.is_some(),
        "agent on a tmpfs did not start: {}",
        agent.proc.log_text()
    );
    agent
}

#[test]
fn a_full_disk_holds_the_source_back_without_exiting_or_losing_lines() {
    // The spool's own bound (64MiB) is far above the disk (2MiB): the disk fills first.
    let Setup {
        dir,
        logs,
        cdata,
        addr,
        cfg,
    } = setup("{ type: disk, max_bytes: 64MiB, segment_bytes: 32KiB }");
    let mut agent = agent_on_tiny_disk(&cfg, &dir.path().join("agent"), 2048);
    let n = 10_000; // about 1.1 MB of lines, more than the disk leaves the spool
    append_lines(&logs.join("app.log"), (0..n).map(line));
    let full = agent.wait_metric(
        "weir_channel_no_space_total",
        "central",
        Duration::from_secs(30),
        |v| v > 0.0,
    );
    assert!(
        full.is_some(),
        "the spool should have hit ENOSPC: {}",
        agent.proc.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        agent.proc.child.try_wait().unwrap().is_none(),
        "a full disk must not stop the agent"
    );
    assert!(
        agent
            .metric("weir_source_events_total", "app")
            .unwrap_or(0.0)
            < n as f64,
        "the source must be held back"
    );
    // Space comes back as the collector drains the spool.
    let collector = Collector::start_on(&cdata, addr);
    let done = wait_for(Duration::from_secs(90), || {
        collector.end_offset("outage").filter(|e| *e as usize >= n)
    });
    assert!(
        done.is_some(),
        "did not drain after the disk freed up: {}",
        agent.proc.log_text()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_exactly_once_in_order(&messages(&consume_all(&collector.url(), "outage")), n);
    assert_eq!(
        agent.metric("weir_channel_dropped_events_total", "central"),
        Some(0.0)
    );
    assert_eq!(
        agent
            .proc
            .terminate(Duration::from_secs(15))
            .map(|s| s.success()),
        Some(true),
        "clean exit after the outage"
    );
}

#[test]
fn a_dead_sink_does_not_stall_a_live_one_fed_by_the_same_source() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let live = Collector::start(&dir.path().join("live"));
    let dead = free_port(); // nothing listens here
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "sources:\n  app: {{ type: file, include: [\"{}/*.log\"], poll_interval: 50ms }}\nsinks:\n  up: {{ type: collector, inputs: [app], url: {}, topic: t }}\n  down: {{ type: collector, inputs: [app], url: \"http://{dead}\", topic: t, max_backoff: 200ms }}\n",
            logs.display(),
            live.url()
        ),
    );
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let n = 20_000;
    append_lines(&logs.join("app.log"), (0..n).map(line));
    let done = wait_for(Duration::from_secs(60), || {
        live.end_offset("t").filter(|e| *e as usize >= n)
    });
    assert!(
        done.is_some(),
        "the live sink must deliver while the other is down: {}",
        agent.proc.log_text()
    );
    assert_exactly_once_in_order(&messages(&consume_all(&live.url(), "t")), n);
    // The dead sink's lines wait in its own spool.
    let held = agent.wait_metric(
        "weir_channel_events",
        "component=\"down\"",
        Duration::from_secs(10),
        |v| v as usize == n,
    );
    assert!(
        held.is_some(),
        "the dead sink's spool should hold every line"
    );
}
