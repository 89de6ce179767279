//! The command-line contract: validation output and exit codes, pipelines in
//! the repo, graceful shutdown, and consumer groups resuming where they stopped.

use std::process::Command;
use std::time::Duration;

use weir_tests::*;

#[test]
fn every_pipeline_in_the_repo_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let tests_file = p.to_string_lossy().ends_with(".tests.yaml");
        if p.extension().is_some_and(|e| e == "yaml" || e == "yml") && !tests_file {
            let out = Command::new(bin("weir"))
                .args(["validate", "-c"])
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} does not validate:\n{}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 3, "expected the example pipelines, found {n}");
}

#[test]
fn every_pipeline_with_tests_passes_them() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let tests = entry.unwrap().path();
        let name = tests.to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".tests.yaml") else {
            continue;
        };
        let out = Command::new(bin("weir"))
            .args(["test", "-c", &format!("{stem}.yaml")])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name} fails:\n{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(report.contains(" passed, 0 failed"), "{report}");
        n += 1;
    }
    assert!(n >= 1, "expected example pipelines with tests");
}

#[test]
fn a_failing_weir_test_exits_1_with_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(
        dir.path(),
        "p.yaml",
        "sources:\n  app: { type: file, include: [\"/x/*.log\"] }\ntransforms:\n  up:\n    type: script\n    inputs: [app]\n    source: |\n      event.message = event.message.to_upper();\n      event\nsinks:\n  out: { type: stdout, inputs: [up] }\n",
    );
    write_pipeline(
        dir.path(),
        "p.tests.yaml",
        "tests:\n  - name: shouts\n    steps:\n      - input: app\n        events: [{ message: hello }, { message: bye }]\n    expect:\n      - output: out\n        events: [{ message: HELLO }, { message: bye }]\n",
    );
    let out = Command::new(bin("weir"))
        .args(["test", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    for want in [
        "FAIL shouts",
        "out: the events differ (- expected, + got; 2 expected, 2 got)",
        "      {\"message\":\"HELLO\"}",
        "    - {\"message\":\"bye\"}",
        "    + {\"message\":\"BYE\"}",
        "        message: expected \"bye\", got \"BYE\"",
        "0 passed, 1 failed",
    ] {
        assert!(report.contains(want), "missing {want:?} in:\n{report}");
    }
    // A tests file naming something that is not there is refused with its position.
    write_pipeline(
        dir.path(),
        "p.tests.yaml",
        "tests:\n  - name: x\n    steps: [{ advance: 1s }]\n    expect: [{ output: nope, count: 0 }]\n",
    );
    let out = Command::new(bin("weir"))
        .args(["test", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.tests.yaml:4:"), "{err}");
    assert!(
        err.contains("no component output or sink named `nope`"),
        "{err}"
    );
}

#[test]
fn an_invalid_pipeline_exits_1_listing_every_problem_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(dir.path(), "bad.yaml", "sources:\n  a:\n    type: file\n    include: [\"/x\"]\n    bogus: 1\nsinks:\n  s:\n    type: collector\n    inputs: [b]\n    url: http://x\n    topic: t\n");
    let out = Command::new(bin("weir"))
        .args(["validate", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:5:5: sources.a.bogus: unknown field `bogus`",
            p.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:9:14: sinks.s.inputs[0]: no source or transform named `b`",
            p.display()
        )),
        "{err}"
    );
    assert!(err.contains("2 problems found"), "{err}");
    // `run` refuses the same file the same way.
    let out = Command::new(bin("weir"))
        .args(["run", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn sigterm_stops_both_programs_cleanly_and_positions_survive() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut collector = Collector::start(&dir.path().join("collector"));
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!("sources:\n  app: {{ type: file, include: [\"{}/*.log\"], poll_interval: 50ms }}\nsinks:\n  c: {{ type: collector, inputs: [app], url: {}, topic: t }}\n", logs.display(), collector.url()),
    );
    append_lines(&logs.join("a.log"), (0..1000).map(line));
    let mut agent = Agent::start(&cfg, &dir.path().join("agent"));
    assert!(agent
        .wait_metric(
            "weir_sink_acked_events_total",
            "c",
            Duration::from_secs(30),
            |v| v == 1000.0
        )
        .is_some());
    let status = agent.proc.terminate(Duration::from_secs(15));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "agent exit on SIGTERM"
    );
    append_lines(&logs.join("a.log"), (1000..1500).map(line));
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    assert!(
        agent
            .wait_metric(
                "weir_sink_acked_events_total",
                "c",
                Duration::from_secs(30),
                |v| v == 500.0
            )
            .is_some(),
        "the restarted agent sends only the new lines"
    );
    assert_exactly_once_in_order(&messages(&consume_all(&collector.url(), "t")), 1500);
    let status = collector.proc.terminate(Duration::from_secs(15));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "collector exit on SIGTERM"
    );
}

#[test]
fn a_consumer_group_resumes_where_it_stopped_and_from_accepts_offsets_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!("sources:\n  app: {{ type: file, include: [\"{}/*.log\"], poll_interval: 50ms }}\nsinks:\n  c: {{ type: collector, inputs: [app], url: {}, topic: t, batch: {{ max_events: 100 }} }}\n", logs.display(), collector.url()),
    );
    append_lines(&logs.join("a.log"), (0..1000).map(line));
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    assert!(agent
        .wait_metric(
            "weir_sink_acked_events_total",
            "c",
            Duration::from_secs(30),
            |v| v == 1000.0
        )
        .is_some());
    let url = collector.url();
    let first = messages(&consume(
        &url,
        "t",
        &["--group", "g1", "--max-records", "300"],
    ));
    assert_eq!(first, (0..300).map(line).collect::<Vec<_>>());
    let rest = messages(&consume(&url, "t", &["--group", "g1"]));
    assert_eq!(
        rest,
        (300..1000).map(line).collect::<Vec<_>>(),
        "the group resumes after the last record printed"
    );
    assert!(
        consume(&url, "t", &["--group", "g1"]).is_empty(),
        "nothing left for the group"
    );
    assert_eq!(
        messages(&consume(&url, "t", &["--from", "990"])),
        (990..1000).map(line).collect::<Vec<_>>()
    );
    assert!(consume(&url, "t", &["--from", "latest"]).is_empty());
    assert_eq!(
        consume(&url, "t", &["--from", "2000-01-01T00:00:00Z"]).len(),
        1000
    );
    assert!(consume(&url, "t", &["--from", "2999-01-01T00:00:00Z"]).is_empty());
}

#[test]
fn file_and_stdout_sinks_write_every_line_and_the_collector_serves_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.path().join("copy.txt");
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            "sources:\n  app: {{ type: file, include: [\"{}/*.log\"], poll_interval: 50ms }}\nsinks:\n  copy: {{ type: file, inputs: [app], path: \"{}\", encoding: text }}\n  console: {{ type: stdout, inputs: [app], channel: {{ type: memory }} }}\n",
            logs.display(),
            out.display()
        ),
    );
    append_lines(&logs.join("a.log"), (0..2000).map(line));
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let done = wait_for(Duration::from_secs(30), || {
        let copied = agent.metric("weir_sink_acked_events_total", "copy")?;
        let printed = agent.metric("weir_sink_acked_events_total", "console")?;
        (copied == 2000.0 && printed == 2000.0).then_some(())
    });
    assert!(
        done.is_some(),
        "sinks did not deliver: {}",
        agent.proc.log_text()
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let got: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_exactly_once_in_order(&got, 2000);

    let collector = Collector::start(&dir.path().join("collector"));
    let m = http_get(collector.addr, "/metrics").expect("collector metrics");
    assert!(
        m.contains("# TYPE weir_collector_batches_appended_total counter"),
        "{m}"
    );
}

#[test]
fn a_transform_enriches_one_branch_and_positions_stay_exact_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
sources:
  app: {{ type: file, include: ["{}/*.log"], poll_interval: 50ms }}
transforms:
  tag: {{ type: add_fields, inputs: [app], fields: {{ site: gw-7, rack: 3 }} }}
sinks:
  raw: {{ type: collector, inputs: [app], url: {url}, topic: raw }}
  tagged: {{ type: collector, inputs: [tag], url: {url}, topic: tagged }}
"#,
            logs.display(),
            url = collector.url()
        ),
    );
    append_lines(&logs.join("a.log"), (0..3000).map(line));
    let mut agent = Agent::start(&cfg, &dir.path().join("agent"));
    assert!(agent
        .wait_metric(
            "weir_sink_acked_events_total",
            "tagged",
            Duration::from_secs(30),
            |v| v > 0.0
        )
        .is_some());
    agent.crash_and_restart(Duration::from_millis(200));
    append_lines(&logs.join("a.log"), (3000..5000).map(line));
    let done = wait_for(Duration::from_secs(30), || {
        ["raw", "tagged"]
            .iter()
            .all(|t| collector.end_offset(t).is_some_and(|e| e >= 5000))
            .then_some(())
    });
    assert!(
        done.is_some(),
        "both branches should deliver: {}",
        agent.proc.log_text()
    );
    let raw = consume_all(&collector.url(), "raw");
    let tagged = consume_all(&collector.url(), "tagged");
    assert_exactly_once_in_order(&messages(&raw), 5000);
    assert_exactly_once_in_order(&messages(&tagged), 5000);
    assert!(
        tagged
            .iter()
            .all(|r| r["value"]["site"] == "gw-7" && r["value"]["rack"] == 3),
        "every tagged event carries the fields"
    );
    assert!(
        raw.iter().all(|r| r["value"].get("site").is_none()),
        "the raw branch is untouched"
    );
}
