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
        let end = http_get(collector.addr, "/v1/topics").and_then(|t| {
            let v: serde_json::Value = serde_json::from_str(&t).ok()?;
            v[0]["partitions"][0]["end_offset"].as_u64()
        })? as usize;
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
