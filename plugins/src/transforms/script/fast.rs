//! A native fast path for the common shape of scripts: straight-line
//! statements over the event, run as Rust over the event's fields instead
//! of through rhai's tree walker.
//!
//! A script qualifies when its top level is only
//!
//! | statement | |
//! |---|---|
//! | `let x = EXPR;` | |
//! | `if COND { return (); }` | drops the event |
//! | `event.f = EXPR;` | |
//! | `event` | the last statement, and only there |
//!
//! with `EXPR` a string literal, `()`, a variable, `event.f` or `x.f`,
//! `parse_regex(EXPR, "literal")`, `A == B`, `A != B`, `A || B`, `A && B`.
//! Anything else (another statement, a script function, `state`) keeps the
//! whole script on rhai.
//!
//! The fast path never decides anything rhai would decide differently: at
//! the first value it does not handle exactly as rhai does (a comparison of
//! other types, a condition that is not a boolean, a property of something
//! that is not a map, an invalid pattern, a value over a size limit) it
//! gives up on that event, and the caller runs rhai on the untouched input,
//! so every error, its message and its script line still come from rhai.
//! A qualifying script has no loops or calls of script functions, so its
//! operation count is bounded by its size: the plan is only used when that
//! bound is within `max_operations`, where rhai could not have stopped it.

use std::borrow::Cow;
use std::sync::Arc;

use rhai::{Expr as RExpr, ImmutableString, Stmt, AST};
use weir_core::event::{Fields, Value};

use super::functions::{captures_value as captures, Host, Pattern};
use super::Limits;

/// The fast path gave up on this event: run it through rhai.
#[derive(Debug, PartialEq, Eq)]
pub struct GiveUp;

/// A script compiled to native steps.
pub struct Plan {
    steps: Vec<Step>,
    /// Variables the steps use (one slot per `let`).
    slots: usize,
}

enum Step {
    /// `let`: the value goes to the next slot.
    Let(Expr),
    DropIf(Expr),
    Set(String, Expr),
}

enum Expr {
    Unit,
    Str(String),
    Var(usize),
    Field(String),
    Prop(usize, String),
    Regex(Box<Expr>, ImmutableString),
    Eq(Box<Expr>, Box<Expr>, bool),
    Or(Vec<Expr>),
    And(Vec<Expr>),
}

/// Operations rhai counts per AST node, at most (statements, expressions,
/// property steps and calls each count one or two; four is a margin).
const OPS_PER_NODE: u64 = 4;

impl Plan {
    /// The plan of `ast`, or `None` when the script does not qualify.
    pub fn new(ast: &AST, limits: &Limits) -> Option<Plan> {
        if ast.has_functions() {
            return None;
        }
        let (last, body) = ast.statements().split_last()?;
        if !is_var(last_expr(last)?, "event") {
            return None;
        }
        let mut c = Compiler {
            names: Vec::new(),
            nodes: 1,
        };
        let steps = body.iter().map(|s| c.stmt(s)).collect::<Option<Vec<_>>>()?;
        if c.nodes.saturating_mul(OPS_PER_NODE) > limits.max_operations {
            return None;
        }
        Some(Plan {
            steps,
            slots: c.names.len(),
        })
    }

    /// Runs the plan on a copy of `fields`: `Some` the event's new fields,
    /// `None` dropped.
    pub fn run(
        &self,
        fields: &Fields,
        host: &Host,
        limits: &Limits,
    ) -> Result<Option<Fields>, GiveUp> {
        let mut ev = fields.clone();
        let mut slots: Vec<Value> = Vec::with_capacity(self.slots);
        let run = Run { host, limits };
        for step in &self.steps {
            match step {
                Step::Let(e) => {
                    let v = run.eval(e, &ev, &slots)?.into_owned();
                    slots.push(v);
                }
                Step::DropIf(cond) => {
                    if as_bool(&*run.eval(cond, &ev, &slots)?)? {
                        return Ok(None);
                    }
                }
                Step::Set(name, e) => {
                    let v = run.eval(e, &ev, &slots)?.into_owned();
                    ev.insert(name.as_str(), v);
                    run.check(&ev)?;
                }
            }
        }
        Ok(Some(ev))
    }
}

struct Compiler {
    /// Variable names by slot (a later `let` of a name shadows an earlier).
    names: Vec<String>,
    /// AST nodes seen, for the operation bound.
    nodes: u64,
}

impl Compiler {
    fn slot(&self, name: &str) -> Option<usize> {
        self.names.iter().rposition(|n| n == name)
    }

    fn stmt(&mut self, s: &Stmt) -> Option<Step> {
        self.nodes += 1;
        match s {
            Stmt::Var(x, _, _) => {
                let (ident, value, _) = &**x;
                let name = ident.name.as_str();
                if name == "event" {
                    return None;
                }
                // The value is compiled before the name is bound, as
                // rhai evaluates it (`let m = m.a` reads the earlier `m`).
                let e = self.expr(value)?;
                self.names.push(name.to_owned());
                Some(Step::Let(e))
            }
            Stmt::If(x, _) => {
                if !x.branch.is_empty() {
                    return None;
                }
                match x.body.statements() {
                    [Stmt::Return(value, flags, _)] if flags.is_empty() => match value.as_deref() {
                        None | Some(RExpr::Unit(_)) => {}
                        Some(_) => return None,
                    },
                    _ => return None,
                }
                self.nodes += 2;
                Some(Step::DropIf(self.expr(&x.expr)?))
            }
            Stmt::Assignment(x) => {
                let (op, target) = &**x;
                if op.is_op_assignment() {
                    return None;
                }
                let RExpr::Dot(dot, flags, _) = &target.lhs else {
                    return None;
                };
                if !flags.is_empty() || !is_var(&dot.lhs, "event") {
                    return None;
                }
                let name = property(&dot.rhs)?;
                self.nodes += 2;
                Some(Step::Set(name.to_owned(), self.expr(&target.rhs)?))
            }
            _ => None,
        }
    }

    fn expr(&mut self, e: &RExpr) -> Option<Expr> {
        self.nodes += 1;
        Some(match e {
            RExpr::Unit(_) => Expr::Unit,
            RExpr::StringConstant(s, _) => Expr::Str(s.to_string()),
            RExpr::Variable(v, _, _) => Expr::Var(self.slot(v.1.as_str())?),
            RExpr::Dot(dot, flags, _) => {
                if !flags.is_empty() {
                    return None;
                }
                let name = property(&dot.rhs)?.to_owned();
                self.nodes += 1;
                if is_var(&dot.lhs, "event") && self.slot("event").is_none() {
                    Expr::Field(name)
                } else if let RExpr::Variable(v, _, _) = &dot.lhs {
                    Expr::Prop(self.slot(v.1.as_str())?, name)
                } else {
                    return None;
                }
            }
            RExpr::FnCall(call, _) => {
                if call.capture_parent_scope {
                    return None;
                }
                self.nodes += 1;
                match (call.name.as_str(), &call.args[..]) {
                    ("parse_regex", [s, RExpr::StringConstant(p, _)]) => {
                        Expr::Regex(Box::new(self.expr(s)?), p.clone())
                    }
                    (op @ ("==" | "!="), [a, b]) => {
                        Expr::Eq(Box::new(self.expr(a)?), Box::new(self.expr(b)?), op == "!=")
                    }
                    _ => return None,
                }
            }
            RExpr::Or(xs, _) => Expr::Or(xs.iter().map(|x| self.expr(x)).collect::<Option<_>>()?),
            RExpr::And(xs, _) => Expr::And(xs.iter().map(|x| self.expr(x)).collect::<Option<_>>()?),
            _ => return None,
        })
    }
}

/// The expression a statement is, if it is one.
fn last_expr(s: &Stmt) -> Option<&RExpr> {
    match s {
        Stmt::Expr(e) => Some(e),
        _ => None,
    }
}

fn is_var(e: &RExpr, name: &str) -> bool {
    matches!(e, RExpr::Variable(v, _, _) if v.1.as_str() == name)
}

/// The name of a property access (`.name`).
fn property(e: &RExpr) -> Option<&str> {
    match e {
        RExpr::Property(p, _) => Some(p.2.as_str()),
        _ => None,
    }
}

fn as_bool(v: &Value) -> Result<bool, GiveUp> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(GiveUp),
    }
}

struct Run<'a> {
    host: &'a Host,
    limits: &'a Limits,
}

impl Run<'_> {
    fn eval<'v>(
        &self,
        e: &Expr,
        ev: &'v Fields,
        slots: &'v [Value],
    ) -> Result<Cow<'v, Value>, GiveUp> {
        Ok(match e {
            Expr::Unit => Cow::Owned(Value::Null),
            Expr::Str(s) => Cow::Owned(Value::String(s.clone())),
            Expr::Var(i) => Cow::Borrowed(slots.get(*i).ok_or(GiveUp)?),
            // A missing property of a map is `()` in rhai.
            Expr::Field(name) => ev.get(name).map_or(Cow::Owned(Value::Null), Cow::Borrowed),
            Expr::Prop(i, name) => match slots.get(*i) {
                Some(Value::Map(m)) => m.get(name).map_or(Cow::Owned(Value::Null), Cow::Borrowed),
                _ => return Err(GiveUp),
            },
            Expr::Regex(s, pattern) => {
                let s = self.eval(s, ev, slots)?;
                let Value::String(s) = &*s else {
                    return Err(GiveUp);
                };
                let p = self.pattern(pattern)?;
                let v = captures(&p, s);
                let (a, m, t) = value_sizes(&v);
                self.within(a, m, t)?;
                Cow::Owned(v)
            }
            Expr::Eq(a, b, negate) => {
                let a = self.eval(a, ev, slots)?;
                let b = self.eval(b, ev, slots)?;
                Cow::Owned(Value::Bool(equal(&a, &b)? != *negate))
            }
            Expr::Or(xs) => {
                for x in xs {
                    if as_bool(&*self.eval(x, ev, slots)?)? {
                        return Ok(Cow::Owned(Value::Bool(true)));
                    }
                }
                Cow::Owned(Value::Bool(false))
            }
            Expr::And(xs) => {
                for x in xs {
                    if !as_bool(&*self.eval(x, ev, slots)?)? {
                        return Ok(Cow::Owned(Value::Bool(false)));
                    }
                }
                Cow::Owned(Value::Bool(true))
            }
        })
    }

    /// The compiled pattern, from the script functions' shared cache; an
    /// invalid one is left to rhai (which reports it).
    fn pattern(&self, pattern: &ImmutableString) -> Result<Arc<Pattern>, GiveUp> {
        self.host
            .regexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(pattern)
            .map_err(|_| GiveUp)
    }

    /// Gives up when the event is over a size limit (rhai checks after
    /// every write and reports it).
    fn check(&self, ev: &Fields) -> Result<(), GiveUp> {
        let (a, m, s) = fields_sizes(ev);
        self.within(a, m, s)
    }

    fn within(&self, arrays: usize, maps: usize, strings: usize) -> Result<(), GiveUp> {
        let l = self.limits;
        let string_max = usize::try_from(l.max_string_bytes.bytes()).unwrap_or(usize::MAX);
        if strings > string_max || arrays > l.max_array_len || maps > l.max_map_len {
            return Err(GiveUp);
        }
        Ok(())
    }
}

/// `==` where rhai's answer is known: strings by content, `()` equal to
/// itself, and a string or a map against `()` unequal (rhai's built-in
/// comparison of two different non-numeric types is `false`).
fn equal(a: &Value, b: &Value) -> Result<bool, GiveUp> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x == y),
        (Value::Null, Value::Null) => Ok(true),
        (Value::Null, Value::String(_) | Value::Map(_))
        | (Value::String(_) | Value::Map(_), Value::Null) => Ok(false),
        _ => Err(GiveUp),
    }
}

/// What rhai's data-size check counts in a map: (array elements, map
/// entries, string bytes), nested values included, as rhai counts them.
fn fields_sizes(f: &Fields) -> (usize, usize, usize) {
    let (mut a, mut m, mut s) = (0, 0, 0);
    for (_, v) in f.iter() {
        m += 1;
        let (x, y, z) = inner_sizes(v);
        (a, m, s) = (a + x, m + y, s + z);
    }
    (a, m, s)
}

fn array_sizes(items: &[Value]) -> (usize, usize, usize) {
    let (mut a, mut m, mut s) = (0, 0, 0);
    for v in items {
        a += 1;
        let (x, y, z) = inner_sizes(v);
        (a, m, s) = (a + x, m + y, s + z);
    }
    (a, m, s)
}

/// A value's sizes as an element of a map or array.
fn inner_sizes(v: &Value) -> (usize, usize, usize) {
    match v {
        Value::Array(items) => array_sizes(items),
        Value::Bytes(b) => (1 + b.len(), 0, 0),
        Value::Map(f) => fields_sizes(f),
        Value::String(s) => (0, 0, s.len()),
        _ => (0, 0, 0),
    }
}

/// A value's sizes on its own (rhai's check of a function's result).
fn value_sizes(v: &Value) -> (usize, usize, usize) {
    match v {
        Value::Array(items) => array_sizes(items),
        Value::Bytes(b) => (b.len(), 0, 0),
        Value::Map(f) => fields_sizes(f),
        Value::String(s) => (0, 0, s.len()),
        _ => (0, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use weir_core::event::{Event, Metadata};

    use super::*;
    use crate::component::{Emitted, Emitter, Transform, TransformContext};
    use crate::transforms::script::{Compiled, ScriptConfig};

    const REFERENCE: &str = r#"
let m = parse_regex(event.message, "^(?P<ts>\\S+) level=(?P<level>\\w+) device=(?P<device>\\S+)(?: temp=(?P<temp>\\S+))?");
if m == () || m.level == "debug" { return (); }
event.level = m.level;
event.device = m.device;
event
"#;

    /// Scripts of the shape the fast path takes, each with something the
    /// events below exercise: a missing field or group, another type, a
    /// comparison rhai answers, a property of `()`, a non-boolean condition.
    const QUALIFYING: &[&str] = &[
        REFERENCE,
        "event",
        "event.tag = \"x\";\nevent",
        "event.gone = ();\nevent",
        "let x = event.message;\nevent.copy = x;\nevent",
        "let m = parse_regex(event.message, \"level=(?P<level>\\\\w+)\");\nevent.level = m.level;\nevent",
        "let m = parse_regex(event.message, \"(?P<a>x)?level=(?P<level>\\\\w+)\");\nevent.a = m.a;\nevent",
        "if event.message == () { return (); }\nevent",
        "if event.missing != () { return (); }\nevent.seen = \"yes\";\nevent",
        "if event.message == \"a\" && event.count == () { return; }\nevent",
        "if event.count == \"3\" { return (); }\nevent",
        "if event.missing == \"x\" || \"x\" == event.missing { return (); }\nevent",
        "if event.message { return (); }\nevent",
        "let m = parse_regex(event.count, \"x\");\nevent",
        "let m = parse_regex(event.message, \"(\");\nevent",
        "let m = parse_regex(event.message, \"level=(?P<l>\\\\w+)\");\nlet m = m.l;\nevent.l = m;\nevent",
        "const d = \"debug\";\nlet m = parse_regex(event.message, \"level=(?P<l>\\\\w+)\");\nif m.l == d { return (); }\nevent",
    ];

    fn events() -> Vec<Event> {
        let mut v: Vec<Event> = [
            "2024-05-01T12:00:00Z level=info device=d1 temp=20.5",
            "2024-05-01T12:00:01Z level=debug device=d2 temp=1",
            "2024-05-01T12:00:02Z level=warn device=d3",
            "no match here",
            "a",
            "",
        ]
        .iter()
        .map(|m| Event::from_message_at(*m, Metadata::default(), 7))
        .collect();
        let mut odd = Event::from_message_at("level=info", Metadata::default(), 8);
        odd.fields.insert("count", Value::Int(3));
        v.push(odd);
        let mut int = Event::from_message_at("x", Metadata::default(), 9);
        int.fields.insert("message", Value::Int(5));
        v.push(int);
        let mut nested = Event::from_message_at("level=error device=d9", Metadata::default(), 10);
        let mut inner = Fields::new();
        inner.insert("k", Value::Array(vec![Value::from("v"), Value::Int(1)]));
        nested.fields.insert("inner", Value::Map(inner));
        v.push(nested);
        v
    }

    fn config(source: &str, limits: Limits) -> ScriptConfig {
        ScriptConfig {
            source: Some(source.to_owned()),
            file: None,
            outputs: Vec::new(),
            state: false,
            limits,
            log_rate: 10,
        }
    }

    fn ctx() -> TransformContext {
        TransformContext {
            id: "parse".into(),
            metrics: Default::default(),
        }
    }

    fn plan(source: &str, limits: &Limits) -> Option<Plan> {
        let c = Compiled::new(&config(source, limits.clone()), "parse", source).unwrap();
        Plan::new(&c.ast, limits)
    }

    /// Every event through the script, with the fast path or rhai alone.
    fn through(cfg: &ScriptConfig, native: bool, events: &[Event]) -> Vec<Emitted> {
        let mut t = cfg.script(ctx(), native).unwrap();
        assert_eq!(
            t.fast.is_some(),
            native && plan(cfg.source.as_deref().unwrap(), &cfg.limits).is_some()
        );
        let mut out = Emitter::new("parse", &cfg.outputs, 1);
        for e in events {
            t.process(e.clone(), &mut out);
        }
        out.take().0
    }

    #[test]
    fn the_reference_script_runs_natively_and_drops_what_it_should() {
        let limits = Limits::default();
        let p = plan(REFERENCE, &limits).expect("the reference script has a plan");
        let host = Host::new("parse", None, 10);
        let ev = events();
        let kept = p.run(&ev[0].fields, &host, &limits).unwrap().unwrap();
        assert_eq!(kept.get("level"), Some(&Value::from("info")));
        assert_eq!(kept.get("device"), Some(&Value::from("d1")));
        assert_eq!(kept.get("message"), ev[0].fields.get("message"));
        assert_eq!(p.run(&ev[1].fields, &host, &limits), Ok(None), "debug kept");
        assert_eq!(
            p.run(&ev[3].fields, &host, &limits),
            Ok(None),
            "no match kept"
        );
        // Only the event whose message is not a string is left to rhai.
        let given_up: Vec<usize> = (0..ev.len())
            .filter(|&i| p.run(&ev[i].fields, &host, &limits).is_err())
            .collect();
        assert_eq!(given_up, vec![7]);
    }

    #[test]
    fn both_paths_give_the_same_events_and_dead_letters() {
        let input = events();
        // The shallowest call depth too: native functions do not count.
        let shallow = Limits {
            max_call_depth: 1,
            ..Limits::default()
        };
        for limits in [Limits::default(), shallow] {
            for source in QUALIFYING {
                assert!(plan(source, &limits).is_some(), "no plan for {source}");
                let cfg = config(source, limits.clone());
                let rhai = through(&cfg, false, &input);
                let native = through(&cfg, true, &input);
                assert_eq!(native, rhai, "{source}");
            }
        }
    }

    #[test]
    fn values_over_a_size_limit_are_left_to_rhai_and_fail_the_same() {
        let input = events();
        let limits = Limits {
            max_string_bytes: weir_core::units::ByteSize(100),
            max_map_len: 3,
            ..Limits::default()
        };
        for source in [
            "let x = event.message;\nevent.copy = x;\nevent",
            "event.a = \"1\";\nevent.b = \"2\";\nevent.c = \"3\";\nevent",
            REFERENCE,
        ] {
            let cfg = config(source, limits.clone());
            let rhai = through(&cfg, false, &input);
            assert!(
                rhai.iter().any(|e| e.output.as_deref() == Some("errors")),
                "the limits are not reached by {source}"
            );
            assert_eq!(through(&cfg, true, &input), rhai, "{source}");
        }
        // An input already over the limits, read but not written.
        let big = vec![Event::from_message_at(
            "y".repeat(300),
            Metadata::default(),
            3,
        )];
        for source in [
            "event",
            "let x = event.message;\nevent",
            "let m = parse_regex(event.message, \"(?P<all>.*)\");\nevent",
        ] {
            let cfg = config(source, limits.clone());
            assert!(plan(source, &limits).is_some(), "no plan for {source}");
            assert_eq!(
                through(&cfg, true, &big),
                through(&cfg, false, &big),
                "{source}"
            );
        }
    }

    #[test]
    fn the_operation_bound_covers_what_rhai_counts() {
        let input = events();
        for source in QUALIFYING {
            // The smallest `max_operations` the plan accepts is its bound.
            let bound = (1..10_000)
                .find(|&n| {
                    let l = Limits {
                        max_operations: n,
                        ..Limits::default()
                    };
                    plan(source, &l).is_some()
                })
                .expect("a bound");
            let limits = Limits {
                max_operations: bound,
                ..Limits::default()
            };
            let cfg = config(source, limits.clone());
            let rhai = through(&cfg, false, &input);
            assert_eq!(through(&cfg, true, &input), rhai, "{source}");
            let tight = Limits {
                max_operations: bound - 1,
                ..Limits::default()
            };
            assert!(plan(source, &tight).is_none());
            for e in rhai.iter().flat_map(|e| &e.events) {
                let text = format!("{:?}", e.fields);
                assert!(!text.contains("max_operations"), "{source}: {text}");
            }
        }
    }

    #[test]
    fn scripts_of_other_shapes_stay_on_rhai() {
        let limits = Limits::default();
        for source in [
            "()",
            "event.n = 1;\nevent",
            "if event.count == 3 { return (); }\nevent",
            "event.x = \"a\";\nevent.x += \"b\";\nevent",
            "let i = 0;\nwhile i < 3 { i += 1; }\nevent",
            "fn f() { 1 }\nevent",
            "let m = event.m;\nevent.x = m?.a;\nevent",
            "event.x = event.message.len();\nevent",
            "event.tag = \"x\";\nemit(\"alerts\", event);\nevent",
            "if event.level == \"debug\" { return (); } else { event.x = \"y\"; }\nevent",
            "if event.level == \"debug\" { throw \"no\"; }\nevent",
            "event.tag = \"x\"",
            "let m = parse_regex(event.message, \"x\", \"y\");\nevent",
        ] {
            if let Ok(c) = Compiled::new(&config(source, limits.clone()), "parse", source) {
                assert!(Plan::new(&c.ast, &limits).is_none(), "a plan for {source}");
            }
        }
        let mut cfg = config("event.x = \"y\";\nevent", limits.clone());
        cfg.state = true;
        assert!(
            cfg.script(ctx(), true).unwrap().fast.is_none(),
            "a plan with state"
        );
    }
}
