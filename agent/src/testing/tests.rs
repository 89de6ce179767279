use super::*;

const PIPELINE: &str = r#"
sources:
  app: { type: file, include: ["/x/*.log"] }
transforms:
  count:
    type: script
    inputs: [app]
    state: true
    source: |
      state.n = (state.n ?? 0) + 1;
      event.n = state.n;
      event
  calm:
    type: throttle
    inputs: [count]
    rate: 1
    interval: 10s
sinks:
  out: { type: stdout, inputs: [calm] }
"#;

/// Runs `tests` against `pipeline`; the report and the outcome (or the problems).
fn run_texts(pipeline: &str, tests: &str) -> (String, Result<Outcome, String>) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, pipeline).unwrap();
    std::fs::write(dir.path().join("p.tests.yaml"), tests).unwrap();
    let mut out = Vec::new();
    let r = run(&p, None, &mut out).map_err(|e| e.to_string());
    (String::from_utf8(out).unwrap(), r)
}

#[test]
fn the_tests_file_defaults_to_the_pipeline_name_beside_it() {
    assert_eq!(
        default_tests_path(Path::new("/etc/weir/edge.yaml")),
        PathBuf::from("/etc/weir/edge.tests.yaml")
    );
}

#[test]
fn stateful_transforms_keep_their_state_across_a_restart_and_time_is_the_test_clock() {
    let tests = r#"
tests:
  - name: counts go on after a restart; the throttle refills with advance
    steps:
      - input: app
        events: [{ message: a }, { message: b }]
      - restart: true
      - advance: 10s
      - input: app
        events: [{ message: c }]
    expect:
      - output: count
        events: [{ message: a, n: 1 }, { message: b, n: 2 }, { message: c, n: 3 }]
      - output: out
        conditions: ["event.message != \"b\""]
        count: 2
"#;
    let (report, outcome) = run_texts(PIPELINE, tests);
    assert_eq!(
        outcome,
        Ok(Outcome {
            passed: 1,
            failed: 0
        }),
        "{report}"
    );
    assert!(report.ends_with("1 passed, 0 failed\n"), "{report}");
}

#[test]
fn a_failing_test_shows_a_diff_and_the_failing_condition() {
    let tests = r#"
tests:
  - name: wrong on purpose
    steps:
      - input: count
        events: [{ message: a }, { message: b }]
    expect:
      - output: count
        events: [{ message: a, n: 1 }, { message: b, n: 7 }]
      - output: calm
        count: 2
        conditions: ["event.n < 1"]
"#;
    let (report, outcome) = run_texts(PIPELINE, tests);
    assert_eq!(
        outcome,
        Ok(Outcome {
            passed: 0,
            failed: 1
        }),
        "{report}"
    );
    for want in [
        "FAIL wrong on purpose",
        "count: the events differ (- expected, + got; 2 expected, 2 got)",
        r#"    - {"message":"b","n":7}"#,
        r#"    + {"message":"b","n":2}"#,
        "        n: expected 7, got 2",
        "calm: expected 2 events, got 1",
        r#"calm: condition `event.n < 1` is false for event 1: {"message":"a","n":1}"#,
        "0 passed, 1 failed",
    ] {
        assert!(report.contains(want), "missing {want:?} in:\n{report}");
    }
}

#[test]
fn every_problem_of_a_tests_file_is_reported_with_its_position() {
    let tests = "tests:\n  - name: bad\n    steps:\n      - input: nowhere\n        events: [{ a: 1 }]\n      - advance: 1s\n        restart: true\n    expect:\n      - output: calm.nope\n        count: 1\n      - output: count\n        conditions: [\"event.n >>\"]\n";
    let (_, outcome) = run_texts(PIPELINE, tests);
    let err = outcome.unwrap_err();
    for want in [
        ":4:9: tests[0].steps[0].input: `nowhere` is not a source output or transform",
        ": tests[0].steps[1]: a step is one of",
        ":9:9: tests[0].expect[0].output: no component output or sink named `calm.nope`",
        ":12:33: tests[0].expect[1].conditions[0]: the condition does not compile",
        "4 problems found",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// A transform with a timer: emits one `tick` event per `every` of time.
#[derive(Debug)]
struct TickerConfig;

struct Ticker {
    next: i64,
}

impl weir_plugins::TransformConfig for TickerConfig {
    fn build(
        &self,
        _: weir_plugins::TransformContext,
    ) -> Result<Box<dyn weir_plugins::Transform>, weir_plugins::BuildError> {
        Ok(Box::new(Ticker { next: 0 }))
    }
}

impl weir_plugins::Transform for Ticker {
    fn process(&mut self, event: Event, out: &mut weir_plugins::Emitter) {
        if self.next == 0 {
            self.next = out.now() + 5_000_000_000;
        }
        out.emit(event);
    }
    fn next_timer(&self) -> Option<i64> {
        (self.next > 0).then_some(self.next)
    }
    fn on_timer(&mut self, out: &mut weir_plugins::Emitter) {
        let mut e = Event::from_message_at("tick", Metadata::default(), out.now());
        e.fields.insert("at", weir_core::Value::Int(out.now()));
        out.emit(e);
        self.next += 5_000_000_000;
    }
}

#[test]
fn advance_fires_each_timer_at_its_due_time() {
    let mut p = config::parse(Path::new("p.yaml"), PIPELINE).unwrap();
    p.transforms.push(config::TransformSpec {
        id: "ticker".into(),
        type_name: "ticker".into(),
        inputs: vec!["app".into()],
        config: Box::new(TickerConfig),
        raw: serde_yaml::Value::Null,
    });
    let mut g = Graph::new(&p, 1_000).unwrap();
    g.emit_from(
        ("app".into(), None),
        vec![Event::from_message_at("m", Metadata::default(), 0)],
    );
    g.advance(12_000_000_000).unwrap();
    let ticks: Vec<&weir_core::Value> = g.recorded["ticker"]
        .iter()
        .filter_map(|e| e.fields.get("at"))
        .collect();
    assert_eq!(
        ticks,
        vec![
            &weir_core::Value::Int(5_000_001_000),
            &weir_core::Value::Int(10_000_001_000)
        ],
        "two timers, each at its own time"
    );
    assert_eq!(g.now(), 12_000_001_000);
}
