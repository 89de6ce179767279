//! Window kinds, watermarks, lateness, timers and limits.

use weir_core::Value;

use super::*;

fn counts(ws: &[Event]) -> Vec<(String, (f64, f64), i64)> {
    ws.iter()
        .map(|w| (text(w, "device"), bounds(w), int(w, "n")))
        .collect()
}

fn event_time(window: &str, extra: &str) -> Harness {
    Harness::new(&format!(
        "window: {window}\nevent_time: {{ field: ts{extra} }}\ngroup_by: [device]\naggregates: {{ n: {{ fn: count }}, mean: {{ fn: mean, field: temp }} }}"
    ))
}

#[test]
fn tumbling_windows_close_when_the_watermark_passes_their_end() {
    let mut h = event_time("{ kind: tumbling, size: 10s }", ", watermark: 2s");
    for t in [1.0, 5.0, 9.0, 11.0] {
        h.send(reading("a", t, t));
    }
    assert!(h.windows.is_empty(), "watermark 9 s < end 10 s");
    h.send(reading("a", 12.0, 0.0));
    let w = h.take();
    assert_eq!(counts(&w), vec![("a".into(), (0.0, 10.0), 3)]);
    assert_eq!(float(&w[0], "mean"), 5.0);
    assert_eq!(w[0].timestamp, 10 * S, "stamped at the window's end");
}

#[test]
fn an_out_of_order_event_within_the_watermark_still_counts() {
    let mut h = event_time("{ kind: tumbling, size: 10s }", ", watermark: 5s");
    h.send(reading("a", 12.0, 0.0));
    h.send(reading("a", 8.0, 0.0)); // behind the max, but W = 7 < 10
    h.send(reading("a", 20.0, 0.0));
    assert_eq!(counts(&h.take()), vec![("a".into(), (0.0, 10.0), 1)]);
    assert_eq!(h.counter("weir_aggregate_late_events_total", &[]), 0);
}

#[test]
fn late_events_are_counted_and_dropped_or_sent_to_the_late_output() {
    for emit in [false, true] {
        let late = if emit { "late: emit\n" } else { "" };
        let mut h = Harness::new(&format!(
            "{late}window: {{ kind: tumbling, size: 10s }}\nevent_time: {{ field: ts }}\ngroup_by: [device]\naggregates: {{ n: {{ fn: count }} }}"
        ));
        h.send(reading("a", 3.0, 0.0));
        h.send(reading("a", 15.0, 0.0)); // closes [0, 10)
        assert_eq!(h.take().len(), 1);
        h.send(reading("a", 4.0, 21.5)); // [0, 10) is gone
        h.send(reading("a", 25.0, 0.0)); // closes [10, 20)
        let w = h.take();
        assert_eq!(
            counts(&w),
            vec![("a".into(), (10.0, 20.0), 1)],
            "the late event is in no window"
        );
        assert_eq!(h.counter("weir_aggregate_late_events_total", &[]), 1);
        if emit {
            assert_eq!(h.late.len(), 1);
            assert_eq!(field(&h.late[0], "temp"), &Value::Float(21.5), "unchanged");
        } else {
            assert!(h.late.is_empty());
        }
    }
}

#[test]
fn allowed_lateness_keeps_a_window_open_for_stragglers() {
    let mut h = event_time("{ kind: tumbling, size: 10s }", ", allowed_lateness: 5s");
    h.send(reading("a", 2.0, 0.0));
    h.send(reading("a", 12.0, 0.0)); // W = 12: past the end, within the lateness
    assert!(h.windows.is_empty());
    h.send(reading("a", 8.0, 0.0)); // a straggler, still counted
    h.send(reading("a", 14.9, 0.0));
    assert!(h.windows.is_empty());
    h.send(reading("a", 15.0, 0.0)); // W = end + lateness
    assert_eq!(counts(&h.take()), vec![("a".into(), (0.0, 10.0), 2)]);
    h.send(reading("a", 9.0, 0.0));
    assert_eq!(h.counter("weir_aggregate_late_events_total", &[]), 1);
}

#[test]
fn hopping_windows_overlap_and_an_event_counts_in_each() {
    let mut h = event_time("{ kind: hopping, size: 10s, hop: 5s }", "");
    h.send(reading("a", 7.0, 0.0)); // [0, 10) and [5, 15)
    h.send(reading("a", 12.0, 0.0)); // [5, 15) and [10, 20); closes [0, 10)
    h.send(reading("a", 30.0, 0.0));
    assert_eq!(
        counts(&h.take()),
        vec![
            ("a".into(), (0.0, 10.0), 1),
            ("a".into(), (5.0, 15.0), 2),
            ("a".into(), (10.0, 20.0), 1),
        ]
    );
}

#[test]
fn an_event_late_for_its_earliest_hopping_window_joins_none() {
    let mut h = event_time("{ kind: hopping, size: 10s, hop: 5s }", "");
    h.send(reading("a", 11.0, 0.0)); // closes nothing yet: [5, 15), [10, 20) open
    h.send(reading("a", 16.0, 0.0)); // closes [5, 15)
    let first = h.take();
    assert_eq!(counts(&first), vec![("a".into(), (5.0, 15.0), 1)]);
    h.send(reading("a", 12.0, 0.0)); // [5, 15) is gone: late, not counted in [10, 20)
    h.send(reading("a", 40.0, 0.0));
    let w = h.take();
    assert_eq!(counts(&w)[0], ("a".into(), (10.0, 20.0), 2));
    assert_eq!(h.counter("weir_aggregate_late_events_total", &[]), 1);
}

#[test]
fn session_windows_split_on_gaps_and_merge_when_an_event_bridges_them() {
    let mut h = event_time("{ kind: session, gap: 5s }", ", watermark: 30s");
    h.send(reading("a", 0.0, 0.0));
    h.send(reading("a", 3.0, 0.0)); // [0, 8)
    h.send(reading("a", 14.0, 0.0)); // [14, 19)
    h.send(reading("a", 10.0, 0.0)); // joins the second: [10, 19)
    h.send(reading("b", 5.0, 0.0)); // another group's own session
    h.send(reading("a", 6.0, 0.0)); // within 5 s of both: one session [0, 19)
    h.send(reading("a", 60.0, 0.0)); // W = 30: both sessions close
    assert_eq!(
        counts(&h.take()),
        vec![("b".into(), (5.0, 10.0), 1), ("a".into(), (0.0, 19.0), 5)]
    );
    h.send(reading("a", 64.9, 0.0));
    h.send(reading("a", 70.0, 0.0)); // 5.1 s after the last: a new session
    h.send(reading("a", 200.0, 0.0));
    assert_eq!(
        counts(&h.take()),
        vec![("a".into(), (60.0, 69.9), 2), ("a".into(), (70.0, 75.0), 1)]
    );
}

#[test]
fn sliding_windows_by_count_average_each_groups_last_n_events() {
    let mut h = Harness::new(
        "window: { kind: sliding, count: 3 }\ngroup_by: [device]\naggregates: { n: { fn: count }, mean: { fn: mean, field: temp } }",
    );
    for (i, x) in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0].into_iter().enumerate() {
        h.clock.set(i as i64 * S);
        h.send(reading("a", 0.0, x));
        h.send(reading("b", 0.0, 10.0 * x));
    }
    let w = h.take();
    assert_eq!(
        w.len(),
        12,
        "one window per event, at once in processing time"
    );
    let a: Vec<(f64, i64)> = w
        .iter()
        .filter(|e| text(e, "device") == "a")
        .map(|e| (float(e, "mean"), int(e, "n")))
        .collect();
    assert_eq!(
        a,
        vec![(1.0, 1), (1.5, 2), (2.0, 3), (3.0, 3), (4.0, 3), (5.0, 3)]
    );
    let last_b = w.last().unwrap();
    assert_eq!(
        (text(last_b, "device"), float(last_b, "mean")),
        ("b".into(), 50.0)
    );
    assert_eq!(
        bounds(last_b),
        (3.0, 5.0),
        "from the oldest event counted to this one"
    );
}

#[test]
fn sliding_windows_by_duration_cover_the_span_before_each_event() {
    let mut h = event_time("{ kind: sliding, size: 10s }", "");
    for t in [0.0, 4.0, 9.0, 10.0, 15.0, 30.0] {
        h.send(reading("a", t, t));
    }
    let w = h.take();
    let got: Vec<((f64, f64), i64)> = w.iter().map(|e| (bounds(e), int(e, "n"))).collect();
    assert_eq!(
        got,
        vec![
            ((-10.0, 0.0), 1),
            ((-6.0, 4.0), 2),
            ((-1.0, 9.0), 3),
            ((0.0, 10.0), 3), // (0, 10]: the event at 0 is out
            ((5.0, 15.0), 3),
            ((20.0, 30.0), 1),
        ]
    );
    assert_eq!(float(&w[4], "mean"), (9.0 + 10.0 + 15.0) / 3.0);
}

#[test]
fn sliding_windows_wait_for_the_watermark_and_take_in_out_of_order_events() {
    let mut h = event_time("{ kind: sliding, size: 10s }", ", watermark: 5s");
    h.send(reading("a", 10.0, 1.0));
    h.send(reading("a", 8.0, 3.0)); // out of order, before the window at 10 closed
    assert!(h.windows.is_empty());
    h.send(reading("a", 16.0, 0.0)); // W = 11: windows at 8 and 10 close, in time order
    let w = h.take();
    let got: Vec<(f64, i64, f64)> = w
        .iter()
        .map(|e| (bounds(e).1, int(e, "n"), float(e, "mean")))
        .collect();
    assert_eq!(got, vec![(8.0, 1, 3.0), (10.0, 2, 2.0)]);
    h.send(reading("a", 5.0, 0.0)); // 5 < W: late
    assert_eq!(h.counter("weir_aggregate_late_events_total", &[]), 1);
}

#[test]
fn sliding_groups_are_dropped_once_no_window_needs_their_events() {
    let mut h = event_time("{ kind: sliding, size: 10s }", "");
    h.send(reading("a", 0.0, 0.0));
    h.send(reading("b", 5.0, 0.0));
    assert_eq!(
        h.metrics
            .gauge("weir_aggregate_open_groups", "", &[("component", "agg")])
            .get(),
        2
    );
    h.send(reading("b", 12.0, 0.0)); // W = 12: nothing later needs a's event at 0
    assert_eq!(
        h.metrics
            .gauge("weir_aggregate_open_groups", "", &[("component", "agg")])
            .get(),
        1
    );
}

#[test]
fn a_sliding_group_holding_max_events_dead_letters_more() {
    let mut h = Harness::new(
        "window: { kind: sliding, size: 1h, max_events: 3 }\nevent_time: { field: ts, watermark: 1h }\ngroup_by: [device]\naggregates: { n: { fn: count } }",
    );
    for t in 0..5 {
        h.send(reading("a", t as f64, 0.0));
    }
    assert_eq!(h.errors.len(), 2);
    assert_eq!(text(&h.errors[0], "reason"), "limit");
    assert_eq!(
        h.counter("weir_aggregate_overflow_total", &[("limit", "max_events")]),
        2
    );
}

#[test]
fn processing_time_windows_close_on_the_clock_even_without_input() {
    let mut h = Harness::new(
        "window: { kind: tumbling, size: 10s }\ngroup_by: [device]\naggregates: { n: { fn: count } }",
    );
    h.at(101.0);
    h.send(reading("a", 0.0, 0.0));
    h.at(105.0);
    h.send(reading("a", 0.0, 0.0));
    h.send(reading("b", 0.0, 0.0));
    assert_eq!(h.t.next_timer(), Some(110 * S), "the window's end");
    h.at(109.9);
    assert!(h.windows.is_empty());
    h.at(110.0); // no input: the timer closes it
    assert_eq!(
        counts(&h.take()),
        vec![
            ("a".into(), (100.0, 110.0), 2),
            ("b".into(), (100.0, 110.0), 1)
        ]
    );
    assert_eq!(h.t.next_timer(), None, "nothing open");
}

#[test]
fn an_idle_input_closes_event_time_windows_after_idle_timeout() {
    let mut h = event_time("{ kind: tumbling, size: 10s }", ", idle_timeout: 30s");
    h.at(1000.0);
    h.send(reading("a", 5.0, 0.0));
    assert_eq!(h.t.next_timer(), Some(1030 * S));
    h.at(1029.0);
    assert!(h.windows.is_empty(), "not idle long enough");
    h.at(1030.0); // idle 30 s: W = 5 + 30 ≥ 10
    assert_eq!(counts(&h.take()), vec![("a".into(), (0.0, 10.0), 1)]);
}

#[test]
fn an_idle_watermark_moves_with_the_clock_from_the_last_arrival() {
    let mut h = event_time("{ kind: tumbling, size: 100s }", ", idle_timeout: 10s");
    h.at(1000.0);
    h.send(reading("a", 5.0, 0.0));
    // W = 5 at the arrival; the window closes at 100: 95 s later by the clock.
    assert_eq!(h.t.next_timer(), Some(1095 * S));
    h.at(1094.0);
    assert!(h.windows.is_empty());
    h.at(1095.0);
    assert_eq!(h.take().len(), 1);
}

#[test]
fn without_idle_timeout_event_time_windows_wait_for_newer_events() {
    let mut h = event_time("{ kind: tumbling, size: 10s }", "");
    h.send(reading("a", 5.0, 0.0));
    assert_eq!(h.t.next_timer(), None);
    h.at(1e6);
    assert!(h.windows.is_empty());
}

#[test]
fn an_event_without_a_usable_time_goes_to_dead_letters_with_a_counted_reason() {
    let mut h = event_time("{ kind: tumbling, size: 10s }", "");
    h.send(ev(0.0, &[("device", Value::from("a"))]));
    h.send(ev(0.0, &[("ts", Value::from("yesterday"))]));
    h.send(ev(0.0, &[("ts", Value::Bool(true))]));
    assert_eq!(h.errors.len(), 3);
    let e = &h.errors[0];
    assert_eq!(text(e, "reason"), "field");
    assert!(
        text(e, "error").contains("field `ts`"),
        "{}",
        text(e, "error")
    );
    let rejected = |r| h.counter("weir_aggregate_rejected_events_total", &[("reason", r)]);
    assert_eq!((rejected("no_time"), rejected("bad_time")), (1, 2));
}

#[test]
fn event_times_may_be_timestamps_rfc3339_strings_numbers_or_the_events_own_time() {
    let mut ms = Harness::new(
        "window: { kind: tumbling, size: 1s }\nevent_time: { field: at, unit: ms }\naggregates: { n: { fn: count } }",
    );
    ms.send(ev(0.0, &[("at", Value::Int(1_500))]));
    ms.send(ev(0.0, &[("at", Value::from("1970-01-01T00:00:01.9Z"))]));
    ms.send(ev(0.0, &[("at", Value::Timestamp(1_200_000_000))]));
    ms.send(ev(0.0, &[("at", Value::Int(3_000))]));
    assert_eq!(int(&ms.take()[0], "n"), 3);

    let mut own = Harness::new(
        "window: { kind: tumbling, size: 1s }\nevent_time: {}\naggregates: { n: { fn: count } }",
    );
    own.send(ev(7.2, &[]));
    own.send(ev(8.1, &[]));
    assert_eq!(bounds(&own.take()[0]), (7.0, 8.0));
}

#[test]
fn max_groups_overflow_is_dead_lettered_and_counted_until_windows_close() {
    let mut h = Harness::new(
        "max_groups: 2\nwindow: { kind: tumbling, size: 10s }\nevent_time: { field: ts }\ngroup_by: [device]\naggregates: { n: { fn: count } }",
    );
    let mut h2 = Harness::new(
        "window: { kind: hopping, size: 10s, hop: 5s }\nevent_time: { field: ts }\ngroup_by: [device]\nmax_groups: 3\naggregates: { n: { fn: count } }",
    );
    h.send(reading("a", 1.0, 0.0));
    h.send(reading("b", 1.0, 0.0));
    h.send(reading("c", 1.0, 0.0)); // a third group: over the bound
    h.send(reading("a", 2.0, 0.0)); // an open group still takes events
    assert_eq!(h.errors.len(), 1);
    assert_eq!(text(&h.errors[0], "reason"), "limit");
    assert!(text(&h.errors[0], "error").contains("max_groups (2)"));
    assert_eq!(
        h.counter("weir_aggregate_overflow_total", &[("limit", "max_groups")]),
        1
    );
    h.send(reading("c", 11.0, 0.0)); // [0, 10) closed: room again
    assert_eq!(h.errors.len(), 1);
    assert_eq!(
        counts(&h.take()),
        vec![("a".into(), (0.0, 10.0), 2), ("b".into(), (0.0, 10.0), 1)]
    );

    // Hopping: an event needing two new groups with room for one joins none.
    h2.send(reading("a", 7.0, 0.0)); // [0, 10), [5, 15): two groups
    h2.send(reading("b", 7.0, 0.0)); // needs two more, one left
    assert_eq!(h2.errors.len(), 1);
    h2.send(reading("a", 30.0, 0.0));
    let w = counts(&h2.take());
    assert!(w.iter().all(|(d, _, _)| d == "a"), "{w:?}");
}

#[test]
fn groups_close_in_key_order_and_a_missing_field_is_the_null_group() {
    let mut h = event_time("{ kind: tumbling, size: 10s }", "");
    for d in ["m", "b", "z"] {
        h.send(reading(d, 1.0, 0.0));
    }
    h.send(ev(0.0, &[("ts", Value::Int(2))])); // no device
    h.send(ev(0.0, &[("ts", Value::Int(3)), ("device", Value::Null)]));
    h.send(reading("a", 20.0, 0.0));
    let w = counts(&h.take());
    assert_eq!(
        w,
        vec![
            ("null".into(), (0.0, 10.0), 2),
            ("b".into(), (0.0, 10.0), 1),
            ("m".into(), (0.0, 10.0), 1),
            ("z".into(), (0.0, 10.0), 1),
        ]
    );
}

#[test]
fn the_emitted_event_has_the_groups_aggregates_and_window_bounds() {
    let mut h = Harness::new(
        "window: { kind: tumbling, size: 60s }\nevent_time: { field: ts }\ngroup_by: [device, site.room]\naggregates: { n: { fn: count }, mean_temp: { fn: mean, field: temp } }",
    );
    let mut e = reading("d-1", 1_764_000_010.0, 20.0);
    let mut site = weir_core::event::Fields::new();
    site.insert("room", Value::Int(7));
    e.fields.insert("site", Value::Map(site));
    h.send(e);
    h.send(reading("d-1", 1_764_000_100.0, 0.0));
    let w = &h.take()[0];
    let json = String::from_utf8(w.fields_json()).unwrap();
    assert_eq!(
        json,
        r#"{"device":"d-1","mean_temp":20.0,"n":1,"site.room":7,"window_end":"2025-11-24T16:01:00.000000000Z","window_start":"2025-11-24T16:00:00.000000000Z"}"#
    );
    assert_eq!(w.timestamp, 1_764_000_060 * S);
    assert_eq!(&*w.meta.source, "agg");
    assert_eq!(&*w.meta.host, "gw-1");
}
