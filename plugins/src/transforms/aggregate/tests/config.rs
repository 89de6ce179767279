//! Config parsing and checks.

use super::*;

fn parse(yaml: &str) -> Result<Box<dyn TransformConfig>, crate::registry::ParseError> {
    let kind = crate::registry::transforms()
        .into_iter()
        .find(|k| k.name == "aggregate")
        .unwrap();
    (kind.parse)(serde_yaml::from_str(yaml).unwrap())
        .ok()
        .map_err(|mut errors| errors.remove(0))
}

#[test]
fn the_documented_example_parses_and_is_stateful() {
    let cfg = parse(
        r#"
window: { kind: tumbling, size: 10s }
event_time: { field: ts, watermark: 2s, allowed_lateness: 0s }
group_by: [device]
aggregates:
  n: { fn: count }
  mean_temp: { fn: mean, field: temp }
  p95_temp: { fn: percentile, field: temp, q: 0.95 }
"#,
    )
    .unwrap();
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    assert!(cfg.stateful());
    assert!(cfg.outputs().is_empty());
    let late = parse(
        "window: { kind: session, gap: 1m }\nevent_time: { field: ts, unit: ms, idle_timeout: 30s }\nlate: emit\naggregates: { u: { fn: count_distinct, field: user, precision: 14 } }",
    )
    .unwrap();
    assert!(late.problems().is_empty(), "{:?}", late.problems());
    assert_eq!(late.outputs(), vec!["late".to_owned()]);
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let cfg = parse(
        r#"
window: { kind: hopping, size: 10s, hop: 20s }
group_by: [device, device, window_end]
max_groups: 0
late: emit
aggregates:
  window_start: { fn: count }
  device: { fn: sum, field: temp }
  p0: { fn: percentile, field: temp, q: 0 }
  p2: { fn: percentile, field: temp, q: 1.5 }
  u: { fn: distinct, field: "", precision: 20 }
"#,
    )
    .unwrap();
    let p = cfg.problems().join("\n");
    for want in [
        "window.hop: must not exceed window.size",
        "group_by: `device` is listed twice",
        "group_by: `window_end` is empty or used for the window's bounds",
        "max_groups: must be at least 1",
        "late: `emit` needs event_time",
        "aggregates.window_start: the name is empty or used",
        "aggregates.device: also a group_by field",
        "aggregates.p0.q: must be in (0, 1], got 0",
        "aggregates.p2.q: must be in (0, 1], got 1.5",
        "aggregates.u.field: must not be empty",
        "aggregates.u.precision: from 4 to 16",
    ] {
        assert!(p.contains(want), "missing {want:?} in:\n{p}");
    }
}

#[test]
fn window_sizes_and_counts_are_checked() {
    let problems = |w: &str| {
        parse(&format!(
            "window: {w}\naggregates: {{ n: {{ fn: count }} }}"
        ))
        .unwrap()
        .problems()
        .join("\n")
    };
    assert!(problems("{ kind: tumbling, size: 0s }").contains("window.size: must be more than 0"));
    assert!(problems("{ kind: session, gap: 400days }").contains("window.gap: at most 366 days"));
    assert!(problems("{ kind: hopping, size: 1h, hop: 1s }").contains("windows per event"));
    assert!(problems("{ kind: sliding }").contains("needs `size`, `count` or both"));
    assert!(problems("{ kind: sliding, count: 0 }").contains("window.count"));
    assert!(
        problems("{ kind: sliding, count: 50, max_events: 10 }").contains("at least window.count")
    );
    assert_eq!(problems("{ kind: sliding, count: 5, size: 1m }"), "");
}

#[test]
fn unknown_keys_kinds_and_functions_are_refused() {
    for (yaml, word) in [
        ("window: { kind: tumbling, size: 10s, hop: 5s }\naggregates: { n: { fn: count } }", "hop"),
        ("window: { kind: weekly, size: 10s }\naggregates: { n: { fn: count } }", "weekly"),
        ("window: { kind: tumbling, size: 10s }\naggregates: { n: { fn: median, field: x } }", "median"),
        ("window: { kind: tumbling, size: 10s }\naggregates: { n: { fn: mean } }", "field"),
        ("window: { kind: tumbling, size: soon }\naggregates: { n: { fn: count } }", "soon"),
        ("window: { kind: tumbling, size: 1s }\nevent_time: { field: ts, unit: days }\naggregates: { n: { fn: count } }", "days"),
        ("window: { kind: tumbling, size: 1s }\ngroupby: [x]\naggregates: { n: { fn: count } }", "groupby"),
    ] {
        let e = parse(yaml).unwrap_err();
        assert!(e.message.contains(word), "{yaml}: {e:?}");
    }
}
