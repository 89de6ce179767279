//! The script transform end to end (in-process): what scripts emit, the
//! functions, the sandbox's limits, errors and state.

use std::time::{Duration, Instant};

use weir_core::event::{Event, Fields, Metadata, Value};

use super::*;
use crate::component::{Emitted, ERRORS_OUTPUT};

const NOW: i64 = 1_700_000_000_000_000_000; // 2023-11-14T22:13:20Z

fn config(yaml: &str) -> ScriptConfig {
    serde_yaml::from_str(yaml).unwrap()
}

fn build(cfg: &ScriptConfig) -> Box<dyn Transform> {
    cfg.build(TransformContext {
        id: "parse".into(),
        metrics: Default::default(),
    })
    .unwrap()
}

fn script(source: &str) -> (ScriptConfig, Box<dyn Transform>) {
    let cfg = ScriptConfig {
        source: Some(source.to_owned()),
        file: None,
        outputs: vec!["alerts".to_owned()],
        state: false,
        limits: Limits::default(),
        log_rate: 10,
    };
    let t = build(&cfg);
    (cfg, t)
}

fn msg(m: &str) -> Event {
    Event::from_message_at(m, Metadata::default(), NOW - 5)
}

/// Runs `events` through `t`; returns (default output, named outputs and errors).
fn run(cfg: &ScriptConfig, t: &mut Box<dyn Transform>, events: Vec<Event>) -> Vec<Emitted> {
    let mut out = Emitter::new("parse", &cfg.outputs, NOW);
    for e in events {
        t.process(e, &mut out);
    }
    out.take().0
}

fn on<'a>(emitted: &'a [Emitted], output: Option<&str>) -> Vec<&'a Event> {
    emitted
        .iter()
        .filter(|e| e.output.as_deref() == output)
        .flat_map(|e| &e.events)
        .collect()
}

fn field<'a>(e: &'a Event, name: &str) -> &'a Value {
    e.fields.get(name).unwrap_or(&Value::Null)
}

#[test]
fn the_issue_example_parses_drops_debug_and_converts() {
    let (cfg, mut t) = script(
        r#"
let f = parse_key_value(event.message);
if f.level == "debug" { return (); }
event.device = f.device;
event.temp = to_float(f.temp);
event
"#,
    );
    let got = run(
        &cfg,
        &mut t,
        vec![
            msg("level=info device=d1 temp=81.5"),
            msg("level=debug device=d1 temp=1"),
            msg("level=warn device=d2 temp=-3"),
        ],
    );
    let out = on(&got, None);
    assert_eq!(out.len(), 2);
    assert_eq!(field(out[0], "device"), &Value::from("d1"));
    assert_eq!(field(out[0], "temp"), &Value::Float(81.5));
    assert_eq!(field(out[1], "temp"), &Value::Float(-3.0));
    assert_eq!(out[0].timestamp, NOW - 5, "the event keeps its timestamp");
}

#[test]
fn an_array_emits_several_and_emit_sends_to_named_outputs() {
    let (cfg, mut t) = script(
        r#"
if event.message == "split" {
    let a = event; a.part = 1;
    let b = event; b.part = 2;
    emit("alerts", #{ kind: "split seen" });
    return [a, b];
}
event
"#,
    );
    let got = run(&cfg, &mut t, vec![msg("split"), msg("one")]);
    let out = on(&got, None);
    assert_eq!(out.len(), 3);
    assert_eq!(field(out[0], "part"), &Value::Int(1));
    assert_eq!(field(out[1], "part"), &Value::Int(2));
    assert_eq!(field(out[2], "message"), &Value::from("one"));
    let alerts = on(&got, Some("alerts"));
    assert_eq!(alerts.len(), 1);
    assert_eq!(field(alerts[0], "kind"), &Value::from("split seen"));
}

#[test]
fn a_script_error_dead_letters_its_event_with_the_line_and_the_next_event_goes_on() {
    let (cfg, mut t) = script("let x = 1;\nif event.message == \"bad\" {\n    throw \"bad input\";\n}\nemit(\"alerts\", event);\nevent");
    let mut out = Emitter::new("parse", &cfg.outputs, NOW);
    t.process(msg("bad"), &mut out);
    t.process(msg("good"), &mut out);
    let (got, failures) = out.take();
    assert_eq!(failures, vec!["script"], "the failure is counted");
    let dead = on(&got, Some(ERRORS_OUTPUT));
    assert_eq!(dead.len(), 1);
    assert_eq!(field(dead[0], "line"), &Value::Int(3));
    assert_eq!(
        field(dead[0], "error"),
        &Value::from("bad input (line 3, column 5)")
    );
    match field(dead[0], "event") {
        Value::Map(m) => assert_eq!(m.get("message"), Some(&Value::from("bad"))),
        other => panic!("{other:?}"),
    }
    assert_eq!(on(&got, None).len(), 1, "the good event passes");
    assert_eq!(
        on(&got, Some("alerts")).len(),
        1,
        "emits of the failed run are discarded"
    );
}

#[test]
fn emitting_to_an_undeclared_output_or_returning_a_non_event_is_an_error() {
    let (cfg, mut t) = script("if event.message == \"a\" { emit(\"nope\", event); }\nif event.message == \"b\" { return 42; }\n[event, 1]");
    let got = run(&cfg, &mut t, vec![msg("a"), msg("b"), msg("c")]);
    let dead = on(&got, Some(ERRORS_OUTPUT));
    assert_eq!(dead.len(), 3);
    let errors: Vec<String> = dead
        .iter()
        .map(|e| format!("{:?}", field(e, "error")))
        .collect();
    assert!(
        errors[0].contains("no output named `nope`"),
        "{}",
        errors[0]
    );
    assert!(errors[1].contains("gave a i64"), "{}", errors[1]);
    assert!(errors[2].contains("item 1 is a i64"), "{}", errors[2]);
    assert!(on(&got, None).is_empty());
}

/// Runs a hostile script on a thread with a runtime worker's 2 MiB stack;
/// returns the dead letter's error and how long the event took.
fn hostile(source: &str) -> (String, Option<i64>, Duration) {
    let source = source.to_owned();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let (cfg, mut t) = script(&source);
            let start = Instant::now();
            let got = run(&cfg, &mut t, vec![msg("x")]);
            let took = start.elapsed();
            let dead = on(&got, Some(ERRORS_OUTPUT));
            assert_eq!(dead.len(), 1, "{got:?}");
            let err = format!("{:?}", field(dead[0], "error"));
            let line = match field(dead[0], "line") {
                Value::Int(l) => Some(*l),
                _ => None,
            };
            // The next event is processed normally.
            let (cfg2, mut ok) = script("event");
            assert_eq!(on(&run(&cfg2, &mut ok, vec![msg("y")]), None).len(), 1);
            assert_eq!(
                on(&run(&cfg, &mut t, vec![msg("y")]), Some(ERRORS_OUTPUT)).len(),
                1
            );
            (err, line, took)
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn an_endless_loop_hits_the_operations_limit_quickly() {
    let (err, line, took) = hostile("let n = 0;\nloop {\n    n += 1;\n}");
    assert!(
        err.contains("max_operations (100000) limit exceeded"),
        "{err}"
    );
    assert!(line.is_some());
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_string_doubling_towards_a_gigabyte_hits_the_string_limit() {
    let (err, line, took) =
        hostile("let s = \"x\";\nwhile s.len() < 1_000_000_000 {\n    s += s;\n}\nevent");
    assert!(
        err.contains("max_string_bytes (4MiB) limit exceeded"),
        "{err}"
    );
    assert_eq!(line, Some(3));
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn deep_recursion_hits_the_call_depth_limit() {
    let (err, _, took) = hostile("fn down(n) { down(n + 1) }\ndown(0)");
    assert!(err.contains("max_call_depth (32) limit exceeded"), "{err}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn arrays_and_maps_are_bounded_too() {
    let (err, _, _) = hostile("let a = [];\nloop { a.push(1); }");
    assert!(err.contains("limit exceeded"), "{err}");
    let (err, _, _) = hostile("let m = #{};\nlet i = 0;\nloop { m[`k${i}`] = i; i += 1; }");
    assert!(err.contains("limit exceeded"), "{err}");
}

#[test]
fn the_sandbox_has_no_eval_sleep_or_modules() {
    let cfg = config("source: 'eval(\"1\")'");
    assert_eq!(
        cfg.text_problems("p").len(),
        1,
        "eval is not in the language"
    );
    let cfg = config("source: 'import \"x\" as y; event'");
    assert_eq!(cfg.text_problems("p").len(), 1, "no modules");
    let (err, _, took) = hostile("sleep(100);\nevent");
    assert!(err.contains("sleep is not available"), "{err}");
    assert!(took < Duration::from_secs(1));
}

#[test]
fn compile_errors_carry_the_script_line_and_column() {
    let cfg = config("source: |\n  let a = 1;\n  let b = a +* 2;\n  event\n");
    let p = cfg.text_problems("parse");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        (p[0].key.as_str(), p[0].line, p[0].column),
        ("source", 2, 12)
    );
    assert!(
        p[0].message.contains("script line 2, column 12"),
        "{}",
        p[0].message
    );
    let typo = config("source: 'evnt.x = 1; event'");
    let p = typo.text_problems("parse");
    assert!(
        p[0].message.contains("evnt"),
        "undeclared variables are found: {}",
        p[0].message
    );
    assert!(build_err(&typo).contains("does not compile"));
}

fn build_err(cfg: &ScriptConfig) -> String {
    match cfg.build(TransformContext {
        id: "p".into(),
        metrics: Default::default(),
    }) {
        Ok(_) => panic!("built"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_script_file_is_read_and_its_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s.rhai");
    std::fs::write(&f, "event.a = 1;\nevent.b = ;\nevent\n").unwrap();
    let cfg = config(&format!("file: {}", f.display()));
    let p = cfg.text_problems("p");
    assert_eq!(p[0].file.as_deref(), Some(f.as_path()));
    assert_eq!((p[0].key.as_str(), p[0].line), ("file", 2));
    std::fs::write(&f, "event.a = 1;\nevent\n").unwrap();
    let mut t = build(&cfg);
    let got = run(&cfg, &mut t, vec![msg("m")]);
    assert_eq!(field(on(&got, None)[0], "a"), &Value::Int(1));
    let both = config("source: event\nfile: /x");
    assert_eq!(both.problems().len(), 1);
    let none = config("outputs: [errors, ok, ok, \"a.b\"]");
    assert_eq!(none.problems().len(), 4, "{:?}", none.problems());
}

#[test]
fn metadata_and_time_come_from_the_event_and_the_emitter() {
    let (cfg, mut t) = script(
        r#"
event.src = source();
event.now = now();
event.age_ns = now() - event_timestamp();
set_event_timestamp(parse_timestamp("2024-01-02 03:04:05", "%Y-%m-%d %H:%M:%S", "+01:00"));
set_key(event.message);
set_topic("t2");
event.when = format_timestamp(event_timestamp(), "%H:%M", "UTC");
event
"#,
    );
    let meta = Metadata {
        source: "app".into(),
        ..Metadata::default()
    };
    let got = run(
        &cfg,
        &mut t,
        vec![Event::from_message_at("k1", meta, NOW - 5)],
    );
    let e = on(&got, None)[0];
    assert_eq!(field(e, "src"), &Value::from("app"));
    assert_eq!(field(e, "now"), &Value::Timestamp(NOW));
    assert_eq!(field(e, "age_ns"), &Value::Int(5));
    assert_eq!(field(e, "when"), &Value::from("02:04"));
    assert_eq!(e.timestamp, 1_704_161_045_000_000_000);
    assert_eq!(e.meta.key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(e.meta.topic.as_deref(), Some("t2"));
}

#[test]
fn every_parse_hash_and_number_function_works_from_a_script() {
    let (cfg, mut t) = script(
        r#"
let j = parse_json(`{"a": [1, 2.5, "x"], "b": {"c": null}}`);
event.j_a1 = j.a[1];
event.j_c = j.b.c;
event.json = encode_json(#{ z: 1, a: [true] });
let kv = parse_key_value("a:1|b:two", "|", ":");
event.kv = kv.a + kv.b;
let m = parse_regex("GET /index 200", "^(?P<method>\\w+) (?P<path>\\S+) (?P<status>\\d+)$");
event.status = to_int(m.status);
event.nomatch = parse_regex("nothing", "^(?P<x>\\d+)$") == ();
event.sha = sha256("abc");
event.crc = crc32("123456789");
event.h = hash64("a") == hash64("a");
event.i = to_int("x", -1);
event.f = to_float("2.5") + to_float(1);
event.ts = parse_timestamp("1700000000", "unix").unix_seconds;
event
"#,
    );
    let got = run(&cfg, &mut t, vec![msg("m")]);
    assert!(on(&got, Some(ERRORS_OUTPUT)).is_empty(), "{got:?}");
    let e = on(&got, None)[0];
    assert_eq!(field(e, "j_a1"), &Value::Float(2.5));
    assert_eq!(field(e, "j_c"), &Value::Null);
    assert_eq!(field(e, "json"), &Value::from(r#"{"a":[true],"z":1}"#));
    assert_eq!(field(e, "kv"), &Value::from("1two"));
    assert_eq!(field(e, "status"), &Value::Int(200));
    assert_eq!(field(e, "nomatch"), &Value::Bool(true));
    assert_eq!(
        field(e, "sha"),
        &Value::from("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(field(e, "crc"), &Value::Int(0xCBF4_3926));
    assert_eq!(field(e, "h"), &Value::Bool(true));
    assert_eq!(field(e, "i"), &Value::Int(-1));
    assert_eq!(field(e, "f"), &Value::Float(3.5));
    assert_eq!(field(e, "ts"), &Value::Int(1_700_000_000));
}

#[test]
fn conversion_failures_and_bad_json_go_to_dead_letters() {
    let (cfg, mut t) = script("if event.message == \"j\" { parse_json(\"{\"); }\nevent.t = to_float(event.message);\nevent");
    let got = run(&cfg, &mut t, vec![msg("j"), msg("hot"), msg("2")]);
    let dead = on(&got, Some(ERRORS_OUTPUT));
    assert_eq!(dead.len(), 2);
    assert!(format!("{:?}", field(dead[0], "error")).contains("parse_json"));
    assert_eq!(field(dead[0], "line"), &Value::Int(1));
    assert!(format!("{:?}", field(dead[1], "error")).contains("\\\"hot\\\" is not a number"));
    assert_eq!(field(dead[1], "line"), &Value::Int(2));
    assert_eq!(on(&got, None).len(), 1);
}

#[test]
fn logging_works_and_refuses_unknown_levels() {
    let (cfg, mut t) = script("log(\"info\", `saw ${event.message}`);\nprint(\"p\");\ndebug(\"d\");\nif event.message == \"x\" { log(\"loud\", \"?\"); }\nevent");
    let got = run(
        &cfg,
        &mut t,
        (0..50).map(|_| msg("m")).chain([msg("x")]).collect(),
    );
    assert_eq!(
        on(&got, None).len(),
        50,
        "rate-limited logging never fails an event"
    );
    let dead = on(&got, Some(ERRORS_OUTPUT));
    assert!(format!("{:?}", field(dead[0], "error")).contains("unknown level `loud`"));
}

#[test]
fn state_lives_across_events_and_restores_to_the_same_bytes() {
    let cfg = config(
        "state: true\nsource: |\n  state.n = (state.n ?? 0) + 1;\n  let d = event.message;\n  state.seen = state.seen ?? #{};\n  state.seen[d] = (state.seen[d] ?? 0) + 1;\n  event.n = state.n;\n  event\n",
    );
    assert!(cfg.stateful());
    let mut t = build(&cfg);
    let got = run(&cfg, &mut t, vec![msg("a"), msg("b"), msg("a")]);
    let ns: Vec<&Value> = on(&got, None).iter().map(|e| field(e, "n")).collect();
    assert_eq!(ns, vec![&Value::Int(1), &Value::Int(2), &Value::Int(3)]);
    let snap = t.snapshot().unwrap();
    let mut again = build(&cfg);
    again.restore(&snap).unwrap();
    assert_eq!(again.snapshot().unwrap(), snap);
    let got = run(&cfg, &mut again, vec![msg("a")]);
    assert_eq!(
        field(on(&got, None)[0], "n"),
        &Value::Int(4),
        "the count goes on after a restore"
    );
    assert!(again.restore(b"\x01\x08\xff").is_err());
}

#[test]
fn a_script_that_breaks_its_state_gets_an_empty_one_and_a_dead_letter() {
    let cfg = config("state: true\nsource: |\n  if event.message == \"break\" { state = 1; }\n  state.n = (state.n ?? 0) + 1;\n  event.n = state.n;\n  event\n");
    let mut t = build(&cfg);
    let got = run(&cfg, &mut t, vec![msg("a"), msg("break"), msg("b")]);
    assert_eq!(on(&got, Some(ERRORS_OUTPUT)).len(), 1);
    let ns: Vec<&Value> = on(&got, None).iter().map(|e| field(e, "n")).collect();
    assert_eq!(ns, vec![&Value::Int(1), &Value::Int(1)]);
}

#[test]
fn dropped_events_are_counted() {
    let registry = weir_core::metrics::Registry::new();
    let cfg = config("source: 'if event.message == \"d\" { () } else { event }'");
    let mut t = cfg
        .build(TransformContext {
            id: "p".into(),
            metrics: registry.clone(),
        })
        .unwrap();
    run(&cfg, &mut t, vec![msg("d"), msg("k"), msg("d")]);
    let text = registry.render();
    assert!(
        text.contains("weir_transform_dropped_events_total{component=\"p\",reason=\"script\"} 2"),
        "{text}"
    );
}

#[test]
fn nested_values_and_timestamps_round_trip_unchanged() {
    let (cfg, mut t) = script("event");
    let mut inner = Fields::new();
    inner.insert("x", Value::Array(vec![Value::Int(1), Value::Null]));
    let mut e = msg("m");
    e.fields.insert("nested", Value::Map(inner));
    e.fields.insert("at", Value::Timestamp(NOW));
    let got = run(&cfg, &mut t, vec![e.clone()]);
    assert_eq!(on(&got, None)[0], &e);
}

/// The examples of docs/configuration.md's function table, run.
#[test]
fn the_documented_examples_work() {
    let (cfg, mut t) = script(
        r#"
let j = parse_json(`{"user": {"name": "ann"}}`); event.user = j.user.name;
event.raw = encode_json(#{ a: 1, b: [true] });
event.kv = parse_key_value("level=info msg=\"disk full\" debug");
event.kv2 = parse_key_value("a: 1, b: 2", ",", ":");
let m = parse_regex("10.0.0.1 404 GET", "^(?P<ip>\\S+) (?P<status>\\d{3})");
if m == () { return (); }
event.status = to_int(m.status);
event.t1 = parse_timestamp("2024-05-01 12:00:00", "%Y-%m-%d %H:%M:%S");
event.t2 = parse_timestamp("01/05/2024 14:00", "%d/%m/%Y %H:%M", "Europe/Paris");
event.t3 = parse_timestamp(1714564800, "unix");
event.f1 = format_timestamp(event.t1, "%Y-%m-%dT%H:%M:%S%.3fZ");
event.local = format_timestamp(event.t1, "%H:%M %Z", "America/New_York");
event.received = now();
set_event_timestamp(parse_timestamp("2024-05-01T12:00:00Z", "rfc3339"));
event.origin = source() + "@" + host();
event.device = "d7";
set_key(event.device);
event.level = "error";
if event.level == "error" { set_topic("errors"); }
event.code = to_int(m.status, -1);
event.temp = to_float("x", 0.0);
event.user = sha256(event.user);
event.keep = hash64("session-1") % 10 != 0;
event.crc = crc32("payload");
event.mixed = "very hot" > 80.0;
emit("alerts", #{ device: event.device });
emit(#{ kind: "marker" });
log("warn", "odd reading: " + event.temp);
print(event);
event
"#,
    );
    let got = run(&cfg, &mut t, vec![msg("m")]);
    assert!(on(&got, Some(ERRORS_OUTPUT)).is_empty(), "{got:#?}");
    let out = on(&got, None);
    assert_eq!(out.len(), 2, "the marker, then the event");
    assert_eq!(field(out[0], "kind"), &Value::from("marker"));
    let e = out[1];
    let json = String::from_utf8(e.fields_json()).unwrap();
    for want in [
        r#""raw":"{\"a\":1,\"b\":[true]}""#,
        r#""kv":{"debug":true,"level":"info","msg":"disk full"}"#,
        r#""kv2":{"a":"1","b":"2"}"#,
        r#""status":404"#,
        r#""t1":"2024-05-01T12:00:00.000000000Z""#,
        r#""t2":"2024-05-01T12:00:00.000000000Z""#,
        r#""t3":"2024-05-01T12:00:00.000000000Z""#,
        r#""f1":"2024-05-01T12:00:00.000Z""#,
        r#""local":"08:00 EDT""#,
        r#""origin":"@""#,
        r#""code":404"#,
        r#""temp":0.0"#,
        r#""user":"49915e0d7d4b402e"#,
        r#""mixed":false"#,
    ] {
        assert!(json.contains(want), "missing {want} in {json}");
    }
    assert_eq!(e.timestamp, 1_714_564_800_000_000_000);
    assert_eq!(e.meta.key.as_deref(), Some(&b"d7"[..]));
    assert_eq!(e.meta.topic.as_deref(), Some("errors"));
    assert_eq!(on(&got, Some("alerts")).len(), 1);
}
