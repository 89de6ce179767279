//! The promise under faults: every line of a tailed file, across rotation,
//! reaches the collector's log exactly once and in order, while the agent is
//! killed with SIGKILL twice and the collector once.

use std::path::Path;
use std::time::{Duration, Instant};

use weir_tests::*;

const TOTAL: usize = 200_000;

fn pipeline(dir: &Path, logs: &Path, url: &str) -> std::path::PathBuf {
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
sinks:
  central:
    type: collector
    inputs: [app]
    url: {url}
    topic: crash
    initial_backoff: 50ms
    max_backoff: 500ms
    batch: {{ max_events: 5000, timeout: 50ms }}
"#,
            logs.display()
        ),
    )
}

#[test]
fn every_line_arrives_exactly_once_in_order_through_rotations_and_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut collector = Collector::start(&dir.path().join("collector"));
    let cfg = pipeline(dir.path(), &logs, &collector.url());
    let mut agent = Agent::start(&cfg, &dir.path().join("agent"));

    // The writer: 200,000 lines in steady chunks, rotating by rename twice.
    let log = logs.join("app.log");
    let chunk = 2_000;
    let mut written = 0;
    let mut events = vec![
        (30_000, "kill agent"),
        (60_000, "rotate"),
        (90_000, "kill collector"),
        (128_000, "rotate + kill agent"),
    ]
    .into_iter()
    .peekable();
    while written < TOTAL {
        append_lines(&log, (written..written + chunk).map(line));
        written += chunk;
        std::thread::sleep(Duration::from_millis(20));
        while let Some((_, what)) = events.next_if(|(at, _)| *at <= written) {
            match what {
                "kill agent" => agent.crash_and_restart(Duration::from_millis(300)),
                "kill collector" => collector.crash_and_restart(Duration::from_millis(800)),
                "rotate" => std::fs::rename(&log, logs.join(format!("app.log.{written}"))).unwrap(),
                "rotate + kill agent" => {
                    // The agent is down while the file rotates: on restart it
                    // must find the rotated file by inode and finish it first.
                    agent.proc.kill9();
                    append_lines(&log, (written..written + chunk).map(line));
                    written += chunk;
                    std::fs::rename(&log, logs.join(format!("app.log.{written}"))).unwrap();
                    append_lines(&log, (written..written + chunk).map(line));
                    written += chunk;
                    agent = Agent::start(&cfg, &dir.path().join("agent"));
                }
                _ => unreachable!(),
            }
        }
    }

    let start = Instant::now();
    // The collector's end offset says when everything (or more, if wrong) has landed.
    let done = wait_for(Duration::from_secs(120), || {
        let end = collector.end_offset("crash")? as usize;
        (end >= TOTAL).then_some(end)
    });
    assert!(
        done.is_some(),
        "not all lines arrived within 120s; agent log:\n{}",
        agent.proc.log_text()
    );
    // A moment for any (wrong) duplicate still in flight to land, so the check can see it.
    std::thread::sleep(Duration::from_millis(500));
    let got = messages(&consume_all(&collector.url(), "crash"));
    let checked = std::panic::catch_unwind(|| assert_exactly_once_in_order(&got, TOTAL));
    if let Err(e) = checked {
        // Keep the logs and data for diagnosis.
        let kept = dir.keep();
        eprintln!("kept test directory {}", kept.display());
        std::panic::resume_unwind(e);
    }
    eprintln!("drained in {:?} after the writer finished", start.elapsed());
    assert_eq!(
        agent
            .proc
            .terminate(Duration::from_secs(15))
            .map(|s| s.success()),
        Some(true),
        "agent exits 0 on SIGTERM"
    );
}

/// What the `split` script makes of line `i`: nothing (every tenth line from
/// the third), two events (every tenth from the seventh), or the line.
fn derived(i: usize) -> Vec<(String, Option<i64>)> {
    match i % 10 {
        3 => Vec::new(),
        7 => vec![(line(i), Some(1)), (line(i), Some(2))],
        _ => vec![(line(i), None)],
    }
}

const SPLIT: &str = r#"
      let n = to_int(event.message.sub_string(5, 9));
      if n % 10 == 3 { return (); }
      if n % 10 == 7 {
          let a = event; a.part = 1;
          let b = event; b.part = 2;
          return [a, b];
      }
      event"#;

#[test]
fn derived_events_arrive_exactly_once_in_order_through_kill9() {
    const LINES: usize = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let collector = Collector::start(&dir.path().join("collector"));
    // The same logic twice: stateless (inline, marks numbered per input) and
    // with a checkpointed `state` counting the inputs it has seen (input log,
    // replay after a crash: the count must come out exact).
    let cfg = write_pipeline(
        dir.path(),
        "pipeline.yaml",
        &format!(
            r#"
sources:
  app: {{ type: file, include: ["{logs}/*.log"], poll_interval: 50ms }}
transforms:
  split:
    type: script
    inputs: [app]
    source: |{SPLIT}
  counted:
    type: script
    inputs: [app]
    state: true
    source: |
      state.seen = (state.seen ?? 0) + 1;
      event.seen = state.seen;{SPLIT}
sinks:
  to_split: {{ type: collector, inputs: [split], url: {url}, topic: split, batch: {{ max_events: 2000, timeout: 50ms }} }}
  to_counted: {{ type: collector, inputs: [counted], url: {url}, topic: counted, batch: {{ max_events: 2000, timeout: 50ms }} }}
"#,
            logs = logs.display(),
            url = collector.url()
        ),
    );
    let mut agent = Agent::start(&cfg, &dir.path().join("agent"));
    let log = logs.join("app.log");
    let chunk = 2_000;
    let mut written = 0;
    let kills = [8_000, 20_000, 32_000];
    while written < LINES {
        append_lines(&log, (written..written + chunk).map(line));
        written += chunk;
        std::thread::sleep(Duration::from_millis(30));
        if kills.contains(&written) {
            agent.crash_and_restart(Duration::from_millis(200));
        }
    }
    let expected: Vec<(String, Option<i64>)> = (0..LINES).flat_map(derived).collect();
    let done = wait_for(Duration::from_secs(120), || {
        ["split", "counted"]
            .iter()
            .all(|t| {
                collector
                    .end_offset(t)
                    .is_some_and(|e| e as usize >= expected.len())
            })
            .then_some(())
    });
    assert!(
        done.is_some(),
        "not everything arrived: {}",
        agent.proc.log_text()
    );
    // A moment for any (wrong) duplicate still in flight to land.
    std::thread::sleep(Duration::from_millis(500));
    for topic in ["split", "counted"] {
        let records = consume_all(&collector.url(), topic);
        let got: Vec<(String, Option<i64>)> = records
            .iter()
            .map(|r| {
                (
                    r["value"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    r["value"]["part"].as_i64(),
                )
            })
            .collect();
        let first_diff =
            (0..got.len().max(expected.len())).find(|&i| got.get(i) != expected.get(i));
        assert!(
            first_diff.is_none(),
            "{topic}: expected {} derived events exactly once in order, got {}; first difference at {:?}: got {:?}, expected {:?}",
            expected.len(),
            got.len(),
            first_diff,
            first_diff.and_then(|i| got.get(i)),
            first_diff.and_then(|i| expected.get(i)),
        );
        if topic == "counted" {
            // `seen` counts inputs, dropped ones included: line i has seen i + 1.
            for r in &records {
                let msg = r["value"]["message"].as_str().unwrap_or_default();
                let i: i64 = msg[5..14].parse().unwrap();
                assert_eq!(r["value"]["seen"].as_i64(), Some(i + 1), "{r}");
            }
        }
    }
}
