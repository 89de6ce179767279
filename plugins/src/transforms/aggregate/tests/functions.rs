//! Every function against an exact computation over the same values.

use weir_core::Value;

use super::*;

const ALL: &str = r#"
window: { kind: tumbling, size: 60s }
event_time: { field: ts }
group_by: [device]
aggregates:
  n: { fn: count }
  with_temp: { fn: count, field: temp }
  total: { fn: sum, field: temp }
  low: { fn: min, field: temp }
  high: { fn: max, field: temp }
  mean: { fn: mean, field: temp }
  sd: { fn: stddev, field: temp }
  first: { fn: first, field: temp }
  last: { fn: last, field: temp }
  per_sec: { fn: rate }
  temp_per_sec: { fn: rate, field: temp }
  users: { fn: distinct, field: user }
  p50: { fn: percentile, field: temp, q: 0.5 }
  p95: { fn: percentile, field: temp, q: 0.95 }
  p100: { fn: percentile, field: temp, q: 1.0 }
"#;

fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}

#[test]
fn every_function_matches_an_exact_computation() {
    let mut h = Harness::new(ALL);
    // 500 readings in [0, 60) out of time order, a few users repeating.
    let mut temps = Vec::new();
    let mut times = Vec::new();
    for i in 0..500u64 {
        let t = ((i * 7919) % 6000) as f64 / 100.0;
        let temp = 15.0 + ((i * 37) % 200) as f64 / 10.0 - (i % 3) as f64 * 0.25;
        temps.push(temp);
        times.push(t);
        let mut e = reading("d1", t, temp);
        e.fields
            .insert("user", Value::String(format!("u{}", i % 41)));
        h.send(e);
    }
    assert!(h.windows.is_empty(), "the window is still open");
    h.send(reading("d1", 61.0, 0.0)); // the watermark passes 60 s
    let w = h.take();
    assert_eq!(w.len(), 1);
    let w = &w[0];

    let n = temps.len() as f64;
    let sum: f64 = temps.iter().sum();
    let mean = sum / n;
    let var = temps.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let close = |name: &str, want: f64| {
        let got = float(w, name);
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{name}: {got} vs {want}"
        );
    };
    assert_eq!(int(w, "n"), 500);
    assert_eq!(int(w, "with_temp"), 500);
    close("total", sum);
    close("low", temps.iter().cloned().fold(f64::INFINITY, f64::min));
    close(
        "high",
        temps.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    );
    close("mean", mean);
    close("sd", var.sqrt());
    let earliest = times
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    let latest = times
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    close("first", temps[earliest]);
    close("last", temps[latest]);
    close("per_sec", 500.0 / 60.0);
    close("temp_per_sec", sum / 60.0);
    assert_eq!(int(w, "users"), 41, "small sets are counted exactly");
    let mut sorted = temps.clone();
    sorted.sort_by(f64::total_cmp);
    for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p100", 1.0)] {
        let want = exact_quantile(&sorted, q);
        let got = float(w, name);
        assert!(
            (got - want).abs() <= 0.01 * want,
            "{name}: {got} vs exact {want}"
        );
    }
    assert_eq!(bounds(w), (0.0, 60.0));
}

#[test]
fn first_and_last_break_ties_of_event_time_by_arrival() {
    let mut h = Harness::new(
        "window: { kind: tumbling, size: 10s }\nevent_time: { field: ts }\naggregates: { a: { fn: first, field: v }, z: { fn: last, field: v } }",
    );
    for v in ["one", "two", "three"] {
        h.send(ev(0.0, &[("ts", Value::Int(5)), ("v", Value::from(v))]));
    }
    h.send(ev(0.0, &[("ts", Value::Int(11))]));
    let w = h.take();
    assert_eq!(
        (text(&w[0], "a"), text(&w[0], "z")),
        ("one".into(), "three".into())
    );
}

#[test]
fn distinct_counts_stay_within_the_stated_error_on_known_cardinalities() {
    // Precision 12: 1.04/√4096 = 1.6 % standard error; allow three.
    let mut h = Harness::new(
        "window: { kind: tumbling, size: 10s }\nevent_time: { field: ts }\naggregates: { users: { fn: distinct, field: user } }",
    );
    for (n, offset) in [(3_000u64, 0), (20_000, 10)] {
        for i in 0..n {
            // Every user twice, as numbers and strings alike.
            let user = if i % 2 == 0 {
                Value::Int(i as i64)
            } else {
                Value::String(format!("user-{i}"))
            };
            for _ in 0..2 {
                h.send(ev(
                    0.0,
                    &[("ts", Value::Int(offset + 1)), ("user", user.clone())],
                ));
            }
        }
    }
    h.send(ev(0.0, &[("ts", Value::Int(30))]));
    let w = h.take();
    assert_eq!(w.len(), 2);
    for (e, n) in w.iter().zip([3_000.0, 20_000.0]) {
        let got = int(e, "users") as f64;
        assert!(
            (got - n).abs() / n <= 3.0 * 0.01625,
            "{got} distinct vs {n}"
        );
    }
}

#[test]
fn several_percentiles_of_one_field_share_one_sketch() {
    let snapshot_len = |aggs: &str| {
        let mut h = Harness::new(&format!(
            "window: {{ kind: tumbling, size: 10s }}\nevent_time: {{ field: ts }}\naggregates: {{ {aggs} }}"
        ));
        for i in 0..1000 {
            h.send(ev(
                0.0,
                &[("ts", Value::Int(1)), ("x", Value::Float(1.0 + i as f64))],
            ));
        }
        h.t.snapshot().unwrap().len()
    };
    let one = snapshot_len("p95: { fn: percentile, field: x, q: 0.95 }");
    let three = snapshot_len(
        "p50: { fn: percentile, field: x, q: 0.5 }, p95: { fn: percentile, field: x, q: 0.95 }, p99: { fn: percentile, field: x, q: 0.99 }",
    );
    assert_eq!(one, three);
}

#[test]
fn missing_and_non_numeric_values_are_skipped_for_numeric_functions_and_counted() {
    let mut h = Harness::new(
        "window: { kind: tumbling, size: 10s }\nevent_time: { field: ts }\naggregates: { n: { fn: count }, m: { fn: mean, field: x }, c: { fn: count, field: x } }",
    );
    let send = |h: &mut Harness, x: Option<Value>| {
        let mut e = ev(0.0, &[("ts", Value::Int(1))]);
        if let Some(x) = x {
            e.fields.insert("x", x);
        }
        h.send(e);
    };
    send(&mut h, Some(Value::Int(2)));
    send(&mut h, Some(Value::String(" 4.0 ".into()))); // a numeric string counts
    send(&mut h, Some(Value::String("warm".into())));
    send(&mut h, Some(Value::Bool(true)));
    send(&mut h, Some(Value::Float(f64::NAN)));
    send(&mut h, Some(Value::Null));
    send(&mut h, None);
    h.send(ev(0.0, &[("ts", Value::Int(20))]));
    let w = &h.take()[0];
    assert_eq!(int(w, "n"), 7, "every event counts");
    assert_eq!(int(w, "c"), 5, "present and not null");
    assert_eq!(float(w, "m"), 3.0, "mean of 2 and 4 only");
    let skipped = |r| h.counter("weir_aggregate_skipped_values_total", &[("reason", r)]);
    assert_eq!(skipped("not_numeric"), 3);
    // The null, the missing one, and the closing event without `x`.
    assert_eq!(skipped("missing"), 3);
}

#[test]
fn functions_with_no_values_emit_null_or_zero() {
    let mut h = Harness::new(ALL);
    h.send(ev(
        0.0,
        &[("ts", Value::Int(1)), ("device", Value::from("d"))],
    ));
    h.send(ev(0.0, &[("ts", Value::Int(70))]));
    let w = &h.take()[0];
    assert_eq!(int(w, "n"), 1);
    assert_eq!(int(w, "with_temp"), 0);
    assert_eq!(int(w, "users"), 0);
    assert_eq!(float(w, "total"), 0.0);
    assert_eq!(float(w, "per_sec"), 1.0 / 60.0);
    for name in [
        "low",
        "high",
        "mean",
        "sd",
        "first",
        "last",
        "p50",
        "p95",
        "temp_per_sec",
    ] {
        let want = if name == "temp_per_sec" {
            Value::Float(0.0)
        } else {
            Value::Null
        };
        assert_eq!(field(w, name), &want, "{name}");
    }
}
