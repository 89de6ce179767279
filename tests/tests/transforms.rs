//! Transforms in the real agent: events a script cannot handle reach a
//! dead-letter sink with the error and the script line, are counted, and
//! the lines around them flow on.

use std::time::Duration;

use weir_tests::*;

#[test]
fn bad_lines_go_to_a_dead_letter_file_with_error_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let good = dir.path().join("good.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let cfg = write_pipeline(
        dir.path(),
        "p.yaml",
        &format!(
            r#"
sources:
  app: {{ type: file, include: ["{}/*.log"], poll_interval: 50ms }}
transforms:
  parse:
    type: script
    inputs: [app]
    source: |
      let f = parse_key_value(event.message);
      if f.device == () {{ throw "no device"; }}
      event.device = f.device;
      event.temp = to_float(f.temp);
      event
sinks:
  good: {{ type: file, inputs: [parse], path: "{}" }}
  dead: {{ type: file, inputs: [parse.errors], path: "{}" }}
"#,
            logs.display(),
            good.display(),
            dead.display()
        ),
    );
    let lines = [
        "device=d1 temp=20.5",
        "garbage",
        "device=d2 temp=hot",
        "device=d3 temp=-1",
    ];
    append_lines(&logs.join("a.log"), lines.iter().map(|l| l.to_string()));
    let agent = Agent::start(&cfg, &dir.path().join("agent"));
    let done = wait_for(Duration::from_secs(30), || {
        let g = agent.metric("weir_sink_acked_events_total", "good")?;
        let d = agent.metric("weir_sink_acked_events_total", "dead")?;
        (g == 2.0 && d == 2.0).then_some(())
    });
    assert!(
        done.is_some(),
        "sinks did not deliver: {}",
        agent.proc.log_text()
    );
    assert_eq!(
        agent.metric("weir_transform_errors_total", "reason=\"script\""),
        Some(2.0),
        "dead letters are counted"
    );
    let read = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let good = read(&good);
    let devices: Vec<&str> = good
        .iter()
        .map(|r| r["fields"]["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["d1", "d3"]);
    let dead = read(&dead);
    assert_eq!(dead.len(), 2);
    let summary: Vec<(String, i64, String)> = dead
        .iter()
        .map(|r| {
            let f = &r["fields"];
            (
                f["error"].as_str().unwrap().to_owned(),
                f["line"].as_i64().unwrap(),
                f["event"]["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "no device (line 2, column 21)".to_owned(),
                2,
                "garbage".to_owned()
            ),
            (
                "to_float: \"hot\" is not a number (line 4, column 14)".to_owned(),
                4,
                "device=d2 temp=hot".to_owned()
            ),
        ]
    );
    assert!(dead
        .iter()
        .all(|r| r["fields"]["component"] == "parse" && r["fields"]["reason"] == "script"));
}
