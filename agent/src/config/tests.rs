use super::*;

fn problems(text: &str) -> Vec<String> {
    match parse(Path::new("p.yaml"), text) {
        Ok(_) => Vec::new(),
        Err(p) => p.0.iter().map(|p| p.to_string()).collect(),
    }
}

const GOOD: &str = r#"
data_dir: /tmp/weir
sources:
  app_logs:
    type: file
    include: ["/var/log/app/*.log"]
    start_at: beginning
sinks:
  central:
    type: collector
    inputs: [app_logs]
    url: http://127.0.0.1:7400
    topic: app-logs
    channel: { type: disk, max_bytes: 1GiB, when_full: block }
"#;

#[test]
fn a_valid_pipeline_parses() {
    let p = parse(Path::new("p.yaml"), GOOD).unwrap();
    assert_eq!(p.sources[0].id, "app_logs");
    assert_eq!(p.sinks[0].inputs, vec!["app_logs"]);
    assert_eq!(p.data_dir, Some(PathBuf::from("/tmp/weir")));
}

#[test]
fn every_problem_is_reported_with_file_line_column_and_path() {
    let text = r#"
sources:
  app_logs:
    type: file
    include: ["/x/*.log"]
    max_line_bytes: lots
sinks:
  central:
    type: collector
    inputs: [app_logz]
    url: http://127.0.0.1:7400
    topic: app-logs
    batch: { max_events: 10, surprise: 1 }
    channel: { type: disk, when_full: explode }
  other:
    type: nosuch
    inputs: [app_logs]
"#;
    let got = problems(text);
    assert_eq!(got.len(), 5, "{got:#?}");
    assert!(
        got[0].starts_with("p.yaml:6:5: sources.app_logs.max_line_bytes: "),
        "{}",
        got[0]
    );
    assert!(
        got[1].starts_with(
            "p.yaml:10:14: sinks.central.inputs[0]: no source or transform named `app_logz`"
        ),
        "{}",
        got[1]
    );
    assert!(
        got[2].starts_with("p.yaml:13:30: sinks.central.batch.surprise: unknown field `surprise`"),
        "{}",
        got[2]
    );
    assert!(
        got[3].starts_with(
            "p.yaml:14:28: sinks.central.channel.when_full: unknown variant `explode`"
        ),
        "{}",
        got[3]
    );
    assert!(
        got[4].starts_with("p.yaml:16:5: sinks.other.type: unknown type `nosuch`"),
        "{}",
        got[4]
    );
}

#[test]
fn syntax_errors_name_the_position() {
    let got = problems("sources:\n  a: [unclosed\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("p.yaml:"), "{}", got[0]);
    assert!(got[0].contains("invalid YAML"), "{}", got[0]);
}

#[test]
fn unknown_top_level_keys_duplicate_ids_and_missing_parts_are_reported() {
    let got = problems("sourcez: {}\nsources:\n  x: { type: file, include: [\"/a\"] }\nsinks:\n  x: { type: stdout, inputs: [x] }\n");
    assert!(
        got.iter().any(|p| p.contains("sourcez: unknown key")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|p| p.contains("ids must be unique")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|p| p.contains("one of the sinks")),
        "{got:#?}"
    );
}

#[test]
fn value_problems_of_components_and_channels_are_reported() {
    let text = "sources:\n  a: { type: file, include: [] }\nsinks:\n  s: { type: collector, inputs: [a], url: ftp://x, topic: \"bad topic\", channel: { type: memory, max_bytes: 10 } }\n";
    let got = problems(text);
    assert!(
        got.iter()
            .any(|p| p.contains("p.yaml:2:20: sources.a.include: at least one glob")),
        "{got:#?}"
    );
    assert!(got.iter().any(|p| p.contains("url:")), "{got:#?}");
    assert!(got.iter().any(|p| p.contains("topic:")), "{got:#?}");
    assert!(
        got.iter()
            .any(|p| p.contains("sinks.s.channel: max_bytes 10B is below")),
        "{got:#?}"
    );
}

#[test]
fn every_problem_in_one_component_is_reported_at_once_in_plain_words() {
    let text = "sources:\n  a:\n    type: file\n    include: [\"/a\"]\n    poll_interval: 1ns\n    read_bytes: lots\n    max_line_bytes: 10\n    colour: blue\nsinks:\n  s: { type: stdout, inputs: [a], channel: { fsync_interval: 0s } }\n";
    let got = problems(text);
    // Two parse problems (a wrong size and an unknown key) in the same component…
    assert!(
        got.iter()
            .any(|p| p.contains("p.yaml:6:5: sources.a.read_bytes:") && p.contains("byte size")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|p| p.contains("sources.a.colour") && p.contains("unknown field")),
        "{got:#?}"
    );
    // …and the absurd durations, each at its key.
    assert!(
        got.iter()
            .any(|p| p.contains("p.yaml:5:5: sources.a.poll_interval: 1ns is too short")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|p| p.contains("sources.a.max_line_bytes: must be at least")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|p| p.contains("sinks.s.channel.fsync_interval: 0s is too short")),
        "{got:#?}"
    );
    for p in &got {
        assert!(
            !p.contains("usize") && !p.contains("u64") && !p.contains("enum"),
            "Rust words leak: {p}"
        );
    }
}

#[test]
fn transform_cycles_are_reported() {
    let text = "sources:\n  a: { type: file, include: [\"/a\"] }\ntransforms:\n  t1: { type: x, inputs: [t2] }\n  t2: { type: x, inputs: [t1] }\nsinks:\n  s: { type: stdout, inputs: [a] }\n";
    let got = problems(text);
    assert!(
        got.iter().any(|p| p.contains("cycle: t1 -> t2 -> t1")),
        "{got:#?}"
    );
}

#[test]
fn script_compile_errors_point_at_the_pipeline_line_and_column() {
    let text = "sources:\n  a: { type: file, include: [\"/a\"] }\ntransforms:\n  parse:\n    type: script\n    inputs: [a]\n    source: |\n      let f = parse_key_value(event.message);\n      event.x = f.a +* 2;\n      event\n  alerts:\n    type: route\n    inputs: [parse]\n    routes: { hot: \"event.t >> \" }\nsinks:\n  s: { type: stdout, inputs: [alerts.hot] }\n";
    let got = problems(text);
    assert_eq!(got.len(), 2, "{got:#?}");
    // Script line 2, column 16 (`*`) is line 9, column 22 of the file.
    assert!(
        got[0].starts_with("p.yaml:9:22: transforms.parse.source: the script does not compile:"),
        "{got:#?}"
    );
    assert!(got[0].contains("(script line 2, column 16)"), "{got:#?}");
    // Column 12 of the condition is just past its end: the closing quote.
    assert!(
        got[1].starts_with(
            "p.yaml:14:32: transforms.alerts.routes.hot: the condition does not compile"
        ),
        "{got:#?}"
    );
}

#[test]
fn reading_a_router_without_naming_an_output_is_an_error() {
    let text = "sources:\n  a: { type: file, include: [\"/a\"] }\ntransforms:\n  r: { type: route, inputs: [a], routes: { hot: \"event.t > 1\" } }\nsinks:\n  s: { type: stdout, inputs: [r] }\n  u: { type: stdout, inputs: [r._unmatched, r.hot, r.errors] }\n";
    let got = problems(text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].contains("sinks.s.inputs[0]: `r` has no default output; name one of its outputs as `r.<output>`: hot, _unmatched, errors"),
        "{got:#?}"
    );
}
