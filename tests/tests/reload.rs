//! Reload without loss, in the real agent: while a file source keeps
//! appending lines, the pipeline is reloaded again and again — a sink
//! added, a transform changed, an invalid file (refused; the old pipeline
//! goes on), a source removed by SIGHUP — and every line reaches every sink
//! that existed for it exactly once, in order.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_tests::*;

fn pipeline(logs: &Path, out: &Path, version: &str, extra: bool, side: bool) -> String {
    let mut p = format!(
        r#"
sources:
  app: {{ type: file, include: ["{logs}/a.log"], poll_interval: 20ms }}
"#,
        logs = logs.display()
    );
    if side {
        p += &format!(
            "  side: {{ type: file, include: [\"{}/b.log\"], poll_interval: 20ms }}\n",
            logs.display()
        );
    }
    p += &format!(
        r#"transforms:
  tag: {{ type: add_fields, inputs: [app], fields: {{ version: "{version}" }} }}
sinks:
  main: {{ type: file, inputs: [{inputs}], path: "{out}/main.jsonl" }}
"#,
        inputs = if side { "tag, side" } else { "tag" },
        out = out.display()
    );
    if extra {
        p += &format!(
            "  extra: {{ type: file, inputs: [tag], path: \"{}/extra.jsonl\" }}\n",
            out.display()
        );
    }
    p
}

fn read(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn messages(records: &[serde_json::Value], prefix: &str) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| r["fields"]["message"].as_str())
        .filter(|m| m.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

fn reload(cfg: &Path, data: &Path) -> std::process::Output {
    Command::new(bin("weir"))
        .args(["reload", "-c"])
        .arg(cfg)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

fn side_line(i: usize) -> String {
    format!("side {i:09}")
}

#[test]
fn reloads_under_load_deliver_every_line_exactly_once_to_every_sink_that_existed_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &pipeline(&logs, &out, "1", false, true),
    );
    let data = dir.path().join("agent");
    let agent = Agent::start(&cfg, &data);

    // Lines keep coming for the whole test: 40 every 10 ms into a.log.
    let written = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let (written, running, log) = (written.clone(), running.clone(), logs.join("a.log"));
        std::thread::spawn(move || {
            let mut i = 0;
            while running.load(Ordering::SeqCst) && i < 200_000 {
                append_lines(&log, (i..i + 40).map(line));
                i += 40;
                written.store(i, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let side_n = 500;
    append_lines(&logs.join("b.log"), (0..side_n).map(side_line));
    let main = out.join("main.jsonl");
    let extra = out.join("extra.jsonl");
    let wait_lines = |path: &Path, prefix: &str, n: usize| {
        wait_for(Duration::from_secs(30), || {
            (messages(&read(path), prefix).len() >= n).then_some(())
        })
    };
    assert!(
        wait_lines(&main, "line", 1000).is_some(),
        "{}",
        agent.proc.log_text()
    );

    // 1. A sink added: the source, transform and first sink keep running.
    std::fs::write(&cfg, pipeline(&logs, &out, "1", true, true)).unwrap();
    let r = reload(&cfg, &data);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "reloaded: sinks +extra"
    );
    let after_add = written.load(Ordering::SeqCst);
    assert!(
        wait_lines(&extra, "line", 500).is_some(),
        "{}",
        agent.proc.log_text()
    );

    // 2. The transform changed: only it restarts.
    std::fs::write(&cfg, pipeline(&logs, &out, "2", true, true)).unwrap();
    let r = reload(&cfg, &data);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "reloaded: transforms ~tag"
    );
    let after_change = written.load(Ordering::SeqCst);

    // 3. An invalid file: refused with its problems; the running pipeline goes on.
    let bad = pipeline(&logs, &out, "3", true, true).replace("path: \"", "pth: \"");
    std::fs::write(&cfg, bad).unwrap();
    let r = reload(&cfg, &data);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("p.yaml") && err.contains("sinks.main") && err.contains("pth"),
        "the problems name the file and key: {err}"
    );
    let before = messages(&read(&main), "line").len();
    assert!(
        wait_lines(&main, "line", before + 500).is_some(),
        "the old pipeline keeps delivering: {}",
        agent.proc.log_text()
    );
    assert!(agent.proc.log_text().contains("Reload refused"));

    // 4. A source removed, by SIGHUP, once all its lines are delivered.
    assert!(wait_lines(&main, "side", side_n).is_some());
    std::fs::write(&cfg, pipeline(&logs, &out, "2", true, false)).unwrap();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(agent.proc.child.id() as i32, libc::SIGHUP) };
    let hup = wait_for(Duration::from_secs(20), || {
        agent
            .proc
            .log_text()
            .contains("sources -side")
            .then_some(())
    });
    assert!(
        hup.is_some(),
        "SIGHUP reload not logged: {}",
        agent.proc.log_text()
    );
    append_lines(&logs.join("b.log"), (side_n..side_n + 100).map(side_line));
    std::thread::sleep(Duration::from_millis(500));

    running.store(false, Ordering::SeqCst);
    writer.join().unwrap();
    let n = written.load(Ordering::SeqCst);
    assert!(
        wait_lines(&main, "line", n).is_some(),
        "not all delivered to main"
    );
    assert!(
        wait_lines(&extra, "line", n - after_add).is_some(),
        "not all delivered to extra"
    );
    std::thread::sleep(Duration::from_millis(300));

    // Every line exactly once, in order, at the sink that had it from the start.
    let main_records = read(&main);
    assert_exactly_once_in_order(&messages(&main_records, "line"), n);
    // The added sink: every line from some point before the reload answered, to the end.
    let got = messages(&read(&extra), "line");
    let first: usize = got[0][5..14].parse().unwrap();
    assert!(
        first <= after_add,
        "extra starts at {first}, after the reload ({after_add})"
    );
    let want: Vec<String> = (first..n).map(line).collect();
    assert!(
        got == want,
        "extra: {} lines from {first}, want {}",
        got.len(),
        want.len()
    );
    // The removed source: its lines before the removal exactly once, none after.
    let side: Vec<String> = messages(&main_records, "side");
    assert_eq!(side, (0..side_n).map(side_line).collect::<Vec<_>>());
    // The changed transform: version 1 then 2, switching once, by the time the reload answered.
    let versions: Vec<&str> = main_records
        .iter()
        .filter(|r| {
            r["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("line"))
        })
        .map(|r| r["fields"]["version"].as_str().unwrap())
        .collect();
    let switch = versions.iter().position(|v| *v == "2").unwrap();
    assert!(versions[..switch].iter().all(|v| *v == "1"));
    assert!(versions[switch..].iter().all(|v| *v == "2"));
    assert!(
        switch <= after_change,
        "version 2 from {switch}, reload answered at {after_change}"
    );
    // Unchanged components were never restarted.
    let log = agent.proc.log_text();
    assert!(
        !log.lines().any(|l| l.contains("Component finished")
            && (l.contains("component=main") || l.contains("component=app"))),
        "an unchanged component was restarted: {log}"
    );
}

#[test]
fn a_changed_stateful_transform_keeps_its_state_and_its_output_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.path().join("out.jsonl");
    let text = |max: usize| {
        format!(
            r#"
sources:
  app: {{ type: file, include: ["{}/*.log"], poll_interval: 20ms }}
transforms:
  dedupe: {{ type: dedupe, inputs: [app], fields: [message], persist: true, max_entries: {max} }}
sinks:
  out: {{ type: file, inputs: [dedupe], path: "{}" }}
"#,
            logs.display(),
            out.display()
        )
    };
    let cfg = write_pipeline(dir.path(), "p.yaml", &text(10_000));
    let data = dir.path().join("agent");
    let agent = Agent::start(&cfg, &data);
    let log = logs.join("a.log");
    append_lines(&log, (0..1000).map(line));
    let got = |n: usize| {
        wait_for(Duration::from_secs(30), || {
            (messages(&read(&out), "line").len() >= n).then_some(())
        })
    };
    assert!(got(1000).is_some(), "{}", agent.proc.log_text());

    std::fs::write(&cfg, text(20_000)).unwrap();
    let r = reload(&cfg, &data);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "reloaded: transforms ~dedupe"
    );
    // Lines 500..999 again: the restored state knows them.
    append_lines(&log, (500..2000).map(line));
    assert!(got(2000).is_some(), "{}", agent.proc.log_text());
    std::thread::sleep(Duration::from_millis(500));
    assert_exactly_once_in_order(&messages(&read(&out), "line"), 2000);
    assert!(agent
        .proc
        .log_text()
        .contains("Restored the transform's state"));
}
