//! The fast path against rhai on generated scripts and events: scripts are
//! random sequences of the fast path's statement forms over random
//! expressions (fields, variables, literals of every type, operators and
//! functions, some of which make the fast path give up), events random
//! maps of strings, numbers, booleans, nulls, timestamps, bytes, nested
//! maps and arrays.
//! Every event goes through the transform with the fast path and with rhai
//! alone; the events out and the dead letters must be identical.

use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use weir_core::event::{Event, Fields, Metadata, Value};
use weir_core::units::ByteSize;

use super::tests::config;
use super::Plan;
use crate::component::{Emitted, Emitter, Transform, TransformContext};
use crate::transforms::script::functions::Host;
use crate::transforms::script::{Compiled, Limits, ScriptConfig};

const FIELDS: &[&str] = &["message", "level", "n", "f", "m", "missing"];
const PROPS: &[&str] = &["level", "temp", "device", "a", "b", "missing"];
const LITERALS: &[&str] = &[
    "()",
    "\"\"",
    "\"info\"",
    "\"debug\"",
    "\"3\"",
    "\" 42 \"",
    "\"20.5\"",
    "\"hot\"",
    "\"Ab\u{e9}\"",
    "\"level=debug device=d2 temp=x\"",
    "\"{\\\"a\\\": 1, \\\"b\\\": [1, 2.5]}\"",
    "0",
    "3",
    "-2",
    "9223372036854775807",
    "0.0",
    "2.5",
    "3.0",
    "-0.1",
    "true",
    "false",
    "\"d1\"",
    "81",
    "20.5",
];
/// Literals equal to values the events carry (the last of `LITERALS`
/// and some before), so that comparisons meet equal values often.
const LIKELY: &[usize] = &[0, 2, 3, 4, 6, 12, 16, 17, 21, 22, 23];
const PATTERNS: &[&str] = &[
    "level=(?P<level>\\\\w+)",
    "(?P<a>x)?(?P<b>\\\\d+)",
    "^(?P<level>\\\\S+)$",
    "(",
];
const BINARY: &[&str] = &["==", "!=", "<", "<=", ">", ">=", "&&", "||", "+", "-"];
const UNARY_FNS: &[&str] = &[
    "to_int",
    "to_float",
    "to_string",
    "parse_key_value",
    "parse_json",
    "len",
    "to_upper",
    "to_lower",
];
const BINARY_FNS: &[&str] = &["contains", "starts_with", "ends_with", "to_int", "to_float"];

/// An expression; variables are chosen among those in scope when rendered.
#[derive(Debug, Clone)]
enum E {
    Lit(usize),
    Field(usize),
    Var(usize),
    Prop(usize, usize),
    FieldProp(usize, usize),
    Bin(usize, Box<E>, Box<E>),
    Not(Box<E>),
    Call(usize, Box<E>),
    Call2(usize, Box<E>, Box<E>),
    Method(usize, Box<E>),
    Regex(Box<E>, usize),
}

#[derive(Debug, Clone)]
enum S {
    Let(usize, E),
    Set(usize, E),
    If(E, Vec<S>, Option<Vec<S>>),
    Drop,
}

fn leaf() -> BoxedStrategy<E> {
    prop_oneof![
        2 => (0..LITERALS.len()).prop_map(E::Lit),
        2 => (0..FIELDS.len()).prop_map(E::Field),
        1 => (0..4usize).prop_map(E::Var),
        2 => (0..4usize, 0..PROPS.len()).prop_map(|(v, p)| E::Prop(v, p)),
        1 => (0..FIELDS.len(), 0..PROPS.len()).prop_map(|(f, p)| E::FieldProp(f, p)),
    ]
    .boxed()
}

/// A likely value of a field: the literals scripts compare with, mostly.
fn likely() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(vec![
            Value::from("info"),
            Value::from("debug"),
            Value::from("d1"),
            Value::from("20.5"),
            Value::from("3"),
            Value::Int(3),
            Value::Int(81),
            Value::Float(20.5),
            Value::Float(3.0),
            Value::Float(2.5),
            Value::Null,
        ]),
        1 => value(),
    ]
}

/// One operator or function over `inner`.
fn over(inner: BoxedStrategy<E>) -> BoxedStrategy<E> {
    prop_oneof![
        (0..BINARY.len(), inner.clone(), inner.clone()).prop_map(|(o, a, b)| E::Bin(
            o,
            Box::new(a),
            Box::new(b)
        )),
        inner.clone().prop_map(|a| E::Not(Box::new(a))),
        (0..UNARY_FNS.len(), inner.clone()).prop_map(|(f, a)| E::Call(f, Box::new(a))),
        (0..BINARY_FNS.len(), inner.clone(), inner.clone()).prop_map(|(f, a, b)| E::Call2(
            f,
            Box::new(a),
            Box::new(b)
        )),
        (0..UNARY_FNS.len(), inner.clone()).prop_map(|(f, a)| E::Method(f, Box::new(a))),
        (inner, 0..PATTERNS.len()).prop_map(|(a, p)| E::Regex(Box::new(a), p)),
    ]
    .boxed()
}

/// Mostly shallow expressions, as scripts have: a value, one operator or
/// function over values, sometimes two levels.
fn expr() -> BoxedStrategy<E> {
    prop_oneof![
        3 => leaf(),
        4 => over(leaf()),
        1 => over(over(leaf())),
    ]
    .boxed()
}

/// A condition: mostly a comparison (some of types rhai compares, some
/// not), a combination of comparisons or a string test; sometimes anything.
fn cond() -> BoxedStrategy<E> {
    // A value of the event against a literal it often equals, mostly.
    let value = prop_oneof![
        2 => (0..4usize, 0..3usize).prop_map(|(v, p)| E::Prop(v, p)),
        1 => (1..3usize).prop_map(E::Field),
        1 => leaf(),
    ];
    let other = prop_oneof![
        3 => prop::sample::select(LIKELY).prop_map(E::Lit),
        1 => leaf(),
    ];
    let cmp = (0..6usize, value, other)
        .prop_map(|(o, a, b)| E::Bin(o, Box::new(a), Box::new(b)))
        .boxed();
    prop_oneof![
        4 => cmp.clone(),
        1 => (6..8usize, cmp.clone(), cmp.clone())
            .prop_map(|(o, a, b)| E::Bin(o, Box::new(a), Box::new(b))),
        1 => cmp.prop_map(|a| E::Not(Box::new(a))),
        1 => (0..BINARY_FNS.len(), leaf(), leaf())
            .prop_map(|(f, a, b)| E::Call2(f, Box::new(a), Box::new(b))),
        1 => expr(),
    ]
    .boxed()
}

/// What a `let` usually holds: a parsed message, else any expression.
fn let_value() -> BoxedStrategy<E> {
    prop_oneof![
        1 => (0..PATTERNS.len()).prop_map(|p| E::Regex(Box::new(E::Field(0)), p)),
        2 => Just(E::Call(3, Box::new(E::Field(0)))),
        1 => Just(E::Call(4, Box::new(E::Field(0)))),
        1 => expr(),
    ]
    .boxed()
}

fn stmt() -> impl Strategy<Value = S> {
    let simple = prop_oneof![
        4 => (0..3usize, let_value()).prop_map(|(v, e)| S::Let(v, e)),
        4 => (0..FIELDS.len(), expr()).prop_map(|(f, e)| S::Set(f, e)),
        1 => Just(S::Drop),
    ];
    simple.prop_recursive(2, 12, 3, |inner| {
        (
            cond(),
            prop::collection::vec(inner.clone(), 1..3),
            prop::option::of(prop::collection::vec(inner, 0..2)),
        )
            .prop_map(|(c, t, e)| S::If(c, t, e))
    })
}

fn render(e: &E, scope: &[String]) -> String {
    let var = |v: usize| scope.get(v % scope.len().max(1)).cloned();
    match e {
        E::Lit(i) => LITERALS[*i].to_owned(),
        E::Field(f) => format!("event.{}", FIELDS[*f]),
        E::Var(v) => var(*v).unwrap_or_else(|| "()".to_owned()),
        E::Prop(v, p) => match var(*v) {
            Some(v) => format!("{v}.{}", PROPS[*p]),
            None => format!("event.{}", PROPS[*p]),
        },
        E::FieldProp(f, p) => format!("event.{}.{}", FIELDS[*f], PROPS[*p]),
        E::Bin(o, a, b) => format!("({} {} {})", render(a, scope), BINARY[*o], render(b, scope)),
        E::Not(a) => format!("!{}", render(a, scope)),
        E::Call(f, a) => format!("{}({})", UNARY_FNS[*f], render(a, scope)),
        E::Call2(f, a, b) => format!(
            "{}({}, {})",
            BINARY_FNS[*f],
            render(a, scope),
            render(b, scope)
        ),
        E::Method(f, a) => match &**a {
            // A method on a variable or field, as users write it.
            E::Field(_) | E::Var(_) | E::Prop(..) => {
                format!("{}.{}()", render(a, scope), UNARY_FNS[*f])
            }
            _ => format!("({}).{}()", render(a, scope), UNARY_FNS[*f]),
        },
        E::Regex(a, p) => format!("parse_regex({}, \"{}\")", render(a, scope), PATTERNS[*p]),
    }
}

fn render_block(stmts: &[S], scope: &mut Vec<String>, out: &mut String) {
    let depth = scope.len();
    for s in stmts {
        match s {
            S::Let(v, e) => {
                let text = render(e, scope);
                let name = format!("v{v}");
                out.push_str(&format!("let {name} = {text};\n"));
                scope.push(name);
            }
            S::Set(f, e) => {
                out.push_str(&format!("event.{} = {};\n", FIELDS[*f], render(e, scope)));
            }
            S::If(c, t, e) => {
                out.push_str(&format!("if {} {{\n", render(c, scope)));
                render_block(t, scope, out);
                if let Some(e) = e {
                    out.push_str("} else {\n");
                    render_block(e, scope, out);
                }
                out.push_str("}\n");
            }
            S::Drop => out.push_str("return ();\n"),
        }
    }
    scope.truncate(depth);
}

fn script() -> impl Strategy<Value = String> {
    // Most scripts start by parsing the message, as users' do.
    let parse = prop::option::weighted(0.75, let_value().prop_map(|e| S::Let(0, e)));
    (parse, prop::collection::vec(stmt(), 1..4)).prop_map(|(parse, mut stmts)| {
        if let Some(p) = parse {
            stmts.insert(0, p);
        }
        let mut out = String::new();
        render_block(&stmts, &mut Vec::new(), &mut out);
        out.push_str("event\n");
        out
    })
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        prop::sample::select(vec![
            "level=info device=d1 temp=20.5",
            "level=debug device=d2 temp=x",
            "level=warn temp=81 b=3",
            "a=x7 device=\"d 4\"",
            "{\"a\": 1, \"b\": \"x\"}",
            "3",
            " 42 ",
            "2.5",
            "info",
            "debug",
            "d1",
            "x1",
            "",
            "\u{e9}t\u{e9}",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        prop_oneof![Just(i64::MAX), Just(i64::MIN), -5i64..5, any::<i64>()].prop_map(Value::Int),
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(3.0),
            Just(2.5),
            -1e6f64..1e6,
            Just(1e300)
        ]
        .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![Just(0i64), Just(1_714_564_800_000_000_000)].prop_map(Value::Timestamp),
        Just(Value::Bytes(bytes::Bytes::from_static(b"3\xff"))),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(PROPS), inner), 0..3).prop_map(|kv| {
                let mut f = Fields::new();
                for (k, v) in kv {
                    f.insert(k, v);
                }
                Value::Map(f)
            }),
        ]
    })
}

fn event() -> impl Strategy<Value = Event> {
    let message = prop_oneof![
        4 => prop::sample::select(vec![
            "level=info device=d1 temp=20.5",
            "level=debug device=d2 temp=x",
            "level=warn temp=81 b=3",
            "device=d3 level=info temp=-4",
            "{\"level\": \"info\", \"temp\": 20.5, \"a\": [1]}",
        ])
        .prop_map(|s| Some(Value::String(s.to_owned()))),
        1 => prop::option::of(value()),
    ];
    (
        message,
        prop::collection::vec(
            (
                prop::sample::select(&FIELDS[1..5]),
                prop::option::of(likely()),
            ),
            0..4,
        ),
    )
        .prop_map(|(message, fields)| {
            let mut e = Event::from_message_at("", Metadata::default(), 7);
            e.fields = Fields::new();
            if let Some(m) = message {
                e.fields.insert("message", m);
            }
            for (k, v) in fields.into_iter() {
                if let Some(v) = v {
                    e.fields.insert(k, v);
                }
            }
            e
        })
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        3 => Just(Limits::default()),
        1 => Just(Limits {
            max_string_bytes: ByteSize(64),
            max_map_len: 6,
            max_array_len: 4,
            ..Limits::default()
        }),
    ]
}

fn through(cfg: &ScriptConfig, native: bool, events: &[Event]) -> Vec<Emitted> {
    let ctx = TransformContext {
        id: "parse".into(),
        metrics: Default::default(),
    };
    let mut t = cfg.script(ctx, native).unwrap();
    let mut out = Emitter::new("parse", &cfg.outputs, 1);
    for e in events {
        t.process(e.clone(), &mut out);
    }
    out.take().0
}

/// Per event: the fast path's outcome, if the script has a plan.
fn fast_outcomes(cfg: &ScriptConfig, events: &[Event]) -> Option<Vec<bool>> {
    let source = cfg.source.as_deref()?;
    let c = Compiled::new(cfg, "parse", source).ok()?;
    let plan = Plan::new(&c.ast, &cfg.limits)?;
    let host = Host::new("parse", None, 10);
    Some(
        events
            .iter()
            .map(|e| plan.run(&e.fields, &host, &cfg.limits).is_ok())
            .collect(),
    )
}

#[derive(Default)]
struct Share {
    cases: Cell<u64>,
    planned: Cell<u64>,
    events: Cell<u64>,
    native: Cell<u64>,
    /// Events of planned scripts that rhai sends to the dead letters.
    failed: Cell<u64>,
}

/// Runs `cases` generated scripts, each on a few events, through both
/// paths; returns how many ran natively.
fn differential(cases: u32) -> Share {
    let share = Share::default();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let input = (script(), prop::collection::vec(event(), 1..6), limits());
    let result = runner.run(&input, |(source, events, limits)| {
        let cfg = config(&source, limits);
        if Compiled::new(&cfg, "parse", &source).is_err() {
            return Ok(());
        }
        share.cases.set(share.cases.get() + 1);
        if let Some(outcomes) = fast_outcomes(&cfg, &events) {
            share.planned.set(share.planned.get() + 1);
            share.events.set(share.events.get() + outcomes.len() as u64);
            let n = outcomes.iter().filter(|&&ok| ok).count() as u64;
            share.native.set(share.native.get() + n);
        }
        let rhai = through(&cfg, false, &events);
        let native = through(&cfg, true, &events);
        if fast_outcomes(&cfg, &[]).is_some() {
            let failed = rhai
                .iter()
                .filter(|e| e.output.as_deref() == Some("errors"))
                .map(|e| e.events.len() as u64)
                .sum::<u64>();
            share.failed.set(share.failed.get() + failed);
        }
        if native != rhai {
            return Err(TestCaseError::fail(format!(
                "the paths differ for\n{source}\non {events:?}\nnative: {native:?}\nrhai: {rhai:?}"
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    share
}

#[test]
fn generated_scripts_give_the_same_events_and_dead_letters_on_both_paths() {
    let share = differential(2000);
    let (cases, planned) = (share.cases.get(), share.planned.get());
    let (events, native) = (share.events.get(), share.native.get());
    let failed = share.failed.get();
    eprintln!(
        "{cases} scripts compiled, {planned} planned; {native} of {events} events native, {failed} failed in rhai"
    );
    // Most scripts are of the fast path's shape, and of their events that
    // rhai does not fail (an error can only come from rhai) a good share
    // really run on it: the test cannot pass by giving up.
    assert!(cases >= 1600, "only {cases} scripts compiled");
    assert!(planned * 10 >= cases * 8, "{planned} of {cases} planned");
    assert!(
        native * 10 >= (events - failed) * 7,
        "{native} of {} events rhai does not fail ran natively",
        events - failed
    );
}
