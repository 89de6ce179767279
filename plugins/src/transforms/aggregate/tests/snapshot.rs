//! Snapshots: a restored transform goes on exactly as the original would.

use proptest::prelude::*;
use weir_core::Value;

use super::*;

#[test]
fn a_restored_snapshot_encodes_to_the_same_bytes_and_closes_the_same_windows() {
    let yaml = "window: { kind: tumbling, size: 10s }\nevent_time: { field: ts }\ngroup_by: [device]\naggregates: { n: { fn: count }, p: { fn: percentile, field: temp, q: 0.9 }, u: { fn: distinct, field: temp }, f: { fn: first, field: temp } }";
    let mut a = Harness::new(yaml);
    for i in 0..200 {
        a.send(reading(&format!("d{}", i % 7), (i % 10) as f64, i as f64));
    }
    let snap = a.t.snapshot().unwrap();
    let mut b = Harness::new(yaml);
    b.t.restore(&snap).unwrap();
    assert_eq!(b.t.snapshot().unwrap(), snap);
    for h in [&mut a, &mut b] {
        h.send(reading("d0", 15.0, 0.0));
    }
    assert_eq!(a.take(), b.take());
}

#[test]
fn a_snapshot_of_another_configuration_or_garbage_is_refused() {
    let mut a =
        Harness::new("window: { kind: tumbling, size: 10s }\naggregates: { n: { fn: count } }");
    a.send(reading("d", 0.0, 0.0));
    let snap = a.t.snapshot().unwrap();
    let mut other =
        Harness::new("window: { kind: tumbling, size: 20s }\naggregates: { n: { fn: count } }");
    let e = other.t.restore(&snap).unwrap_err();
    assert!(e.to_string().contains("different window"), "{e}");
    for bad in [&b"nonsense"[..], &snap[..snap.len() - 1], b"WAGG\x09"] {
        assert!(a.t.restore(bad).is_err());
    }
    // The percentile's q is not part of the state: changing it keeps the snapshot.
    let p = |q| {
        format!("window: {{ kind: tumbling, size: 10s }}\naggregates: {{ p: {{ fn: percentile, field: temp, q: {q} }} }}")
    };
    let mut x = Harness::new(&p(0.5));
    x.send(reading("d", 0.0, 1.0));
    Harness::new(&p(0.99))
        .t
        .restore(&x.t.snapshot().unwrap())
        .unwrap();
}

/// One step of a test run.
#[derive(Debug, Clone)]
enum Step {
    /// An event: device, event-time offset (s), value (None: missing).
    Event(u8, i32, Option<i16>),
    /// The clock moves forward (s) and due timers fire.
    Tick(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..4, -20i32..60, proptest::option::weighted(0.9, any::<i16>()))
            .prop_map(|(d, t, v)| Step::Event(d, t, v)),
        1 => (0u16..40).prop_map(Step::Tick),
    ]
}

const WINDOWS: [&str; 6] = [
    "{ kind: tumbling, size: 10s }",
    "{ kind: hopping, size: 10s, hop: 4s }",
    "{ kind: session, gap: 7s }",
    "{ kind: sliding, size: 15s }",
    "{ kind: sliding, count: 3 }",
    "{ kind: sliding, count: 4, size: 20s, max_events: 6 }",
];

fn yaml(window: usize, event_time: bool) -> String {
    let time = if event_time {
        "event_time: { field: ts, watermark: 5s, allowed_lateness: 2s, idle_timeout: 30s }\nlate: emit\n"
    } else {
        ""
    };
    format!(
        "window: {}\n{time}group_by: [device]\nmax_groups: 9\naggregates:\n  n: {{ fn: count }}\n  s: {{ fn: sum, field: v }}\n  sd: {{ fn: stddev, field: v }}\n  p: {{ fn: percentile, field: v, q: 0.5 }}\n  u: {{ fn: distinct, field: v }}\n  f: {{ fn: first, field: v }}\n  l: {{ fn: last, field: v }}\n",
        WINDOWS[window]
    )
}

/// Runs `steps` on `h`, advancing its clock; the event time of an event is
/// the clock's seconds plus its offset.
fn run(h: &mut Harness, steps: &[Step]) {
    for s in steps {
        match s {
            Step::Event(d, dt, v) => {
                let now = h.clock.now() / S;
                let mut e = ev(
                    0.0,
                    &[
                        ("device", Value::String(format!("d{d}"))),
                        ("ts", Value::Int(now + *dt as i64)),
                    ],
                );
                if let Some(v) = v {
                    e.fields.insert("v", Value::Int(*v as i64));
                }
                h.send(e);
            }
            Step::Tick(dt) => {
                h.clock.advance(*dt as i64 * S);
                h.tick();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn restoring_at_any_cut_point_gives_the_same_outputs_as_an_uninterrupted_run(
        window in 0..WINDOWS.len(),
        event_time in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..120),
        cut in any::<prop::sample::Index>(),
    ) {
        let yaml = yaml(window, event_time);
        let start = 1_000 * S;
        let mut whole = Harness::new(&yaml);
        whole.clock.set(start);
        run(&mut whole, &steps);

        let cut = cut.index(steps.len() + 1);
        let mut before = Harness::new(&yaml);
        before.clock.set(start);
        run(&mut before, &steps[..cut]);
        let snap = before.t.snapshot().unwrap();
        let mut after = Harness::new(&yaml);
        after.t.restore(&snap).unwrap();
        after.clock.set(before.clock.now());
        run(&mut after, &steps[cut..]);

        let joined = |a: &Vec<Event>, b: &Vec<Event>| a.iter().chain(b).cloned().collect::<Vec<_>>();
        prop_assert_eq!(&whole.windows, &joined(&before.windows, &after.windows));
        prop_assert_eq!(&whole.late, &joined(&before.late, &after.late));
        prop_assert_eq!(&whole.errors, &joined(&before.errors, &after.errors));
        prop_assert_eq!(whole.t.snapshot().unwrap(), after.t.snapshot().unwrap());
    }
}
