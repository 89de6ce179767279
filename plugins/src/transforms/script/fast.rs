//! A native fast path for the common shape of scripts: statements over
//! the event, run as Rust over the event's fields instead of through
//! rhai's tree walker.
//!
//! A script qualifies when its top level is only these steps, then `event`:
//!
//! | step | |
//! |---|---|
//! | `let x = EXPR;` | scoped to its block, as in rhai |
//! | `event.f = EXPR;` | |
//! | `if EXPR { STEPS }`, optionally `else { STEPS }` / `else if …` | branches are steps too |
//! | `return ();` / `return;` | drops the event |
//! | `EXPR;` | evaluated, the value unused |
//!
//! and `EXPR` is one of
//!
//! | expression | |
//! |---|---|
//! | literals | strings, integers, floats, `true`/`false`, `()` |
//! | `x`, `event.f`, `x.f`, `event.f.g` | a variable, a field, properties of maps |
//! | `==`, `!=`, `<`, `<=`, `>`, `>=` | numbers (rhai's int/float mixing and float tolerance), strings; booleans and `()` for equality; values of different non-numeric types are unequal and unordered, as in rhai |
//! | `!`, `&&`, `\|\|` | on booleans |
//! | `+`, `-` | two numbers (integer overflow gives up); `+` of two strings |
//! | `parse_regex(s, "literal")`, `parse_key_value(s)`, `parse_json(s)` | the same Rust the rhai functions call |
//! | `to_int(v)`, `to_float(v)`, `to_string(v)` | of strings and numbers (and booleans for `to_string`) |
//! | `to_int(v, default)`, `to_float(v, default)` | of any value |
//! | `len`, `to_upper`, `to_lower`, `contains`, `starts_with`, `ends_with` | on strings, as functions or methods |
//!
//! Anything else (another statement, a script function, `state`) keeps the
//! whole script on rhai.
//!
//! The fast path never decides anything rhai would decide differently: at
//! the first value it does not handle exactly as rhai does (an operator on
//! types it does not know, a condition that is not a boolean, a property
//! of something that is not a map, a function's error, a value over a size
//! limit) it gives up on that event, and the caller runs rhai on the
//! untouched input, so every error, its message and its script line still
//! come from rhai. A qualifying script has no loops or calls of script
//! functions, so its operation count is bounded by its size: the plan is
//! only used when that bound is within `max_operations`, where rhai could
//! not have stopped it. `fast_props.rs` checks all this against rhai on
//! generated scripts and events.

use std::borrow::Cow;
use std::sync::Arc;

use rhai::{Expr as RExpr, FnCallExpr, ImmutableString, Stmt, AST};
use weir_core::event::{Fields, Value};

use super::convert::to_dynamic_ref;
use super::functions::numbers::{to_float, to_int};
use super::functions::{captures_value as captures, json_value, key_values_value, Host, Pattern};
use super::Limits;

/// The fast path gave up on this event: run it through rhai.
#[derive(Debug, PartialEq, Eq)]
pub struct GiveUp;

/// A script compiled to native steps.
pub struct Plan {
    steps: Vec<Step>,
    /// Most variables alive at once (one slot per `let`).
    slots: usize,
}

enum Step {
    /// `let`: the value goes to the next slot.
    Let(Expr),
    Set(String, Expr),
    /// The condition, the steps when true, the steps when false.
    If(Expr, Vec<Step>, Vec<Step>),
    /// `return ();`
    Drop,
    /// An expression whose value is not used (what rhai's optimiser
    /// leaves of an `if` with empty branches).
    Eval(Expr),
}

enum Expr {
    Lit(Value),
    Var(usize),
    Field(String),
    Prop(usize, String),
    /// A property of a property (`event.f.g`, `x.f.g`).
    Get(Box<Expr>, String),
    Regex(Box<Expr>, ImmutableString),
    Cmp(Box<Expr>, Box<Expr>, Cmp),
    Not(Box<Expr>),
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy)]
enum Func {
    ToInt,
    ToFloat,
    /// `to_int(v, default)`
    ToIntOr,
    /// `to_float(v, default)`
    ToFloatOr,
    ToString,
    ParseKeyValue,
    ParseJson,
    Len,
    ToUpper,
    ToLower,
    Contains,
    StartsWith,
    EndsWith,
}

impl Func {
    /// The function called `name` with `args` arguments.
    fn named(name: &str, args: usize) -> Option<Func> {
        Some(match (name, args) {
            ("to_int", 1) => Func::ToInt,
            ("to_float", 1) => Func::ToFloat,
            ("to_int", 2) => Func::ToIntOr,
            ("to_float", 2) => Func::ToFloatOr,
            ("to_string", 1) => Func::ToString,
            ("parse_key_value", 1) => Func::ParseKeyValue,
            ("parse_json", 1) => Func::ParseJson,
            ("len", 1) => Func::Len,
            ("to_upper", 1) => Func::ToUpper,
            ("to_lower", 1) => Func::ToLower,
            ("contains", 2) => Func::Contains,
            ("starts_with", 2) => Func::StartsWith,
            ("ends_with", 2) => Func::EndsWith,
            _ => return None,
        })
    }
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
            most: 0,
            nodes: 1,
        };
        let steps = c.block(body)?;
        if c.nodes.saturating_mul(OPS_PER_NODE) > limits.max_operations {
            return None;
        }
        Some(Plan {
            steps,
            slots: c.most,
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
        match run.steps(&self.steps, &mut ev, &mut slots)? {
            Flow::Next => Ok(Some(ev)),
            Flow::Dropped => Ok(None),
        }
    }
}

struct Compiler {
    /// Variable names by slot (a later `let` of a name shadows an earlier).
    names: Vec<String>,
    /// Most names alive at once.
    most: usize,
    /// AST nodes seen, for the operation bound.
    nodes: u64,
}

impl Compiler {
    fn slot(&self, name: &str) -> Option<usize> {
        self.names.iter().rposition(|n| n == name)
    }

    /// A block's steps; its variables end with it.
    fn block(&mut self, stmts: &[Stmt]) -> Option<Vec<Step>> {
        let depth = self.names.len();
        let steps = stmts.iter().map(|s| self.stmt(s)).collect();
        self.names.truncate(depth);
        steps
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
                self.most = self.most.max(self.names.len());
                Some(Step::Let(e))
            }
            Stmt::If(x, _) => {
                self.nodes += 2;
                let cond = self.expr(&x.expr)?;
                let then = self.block(x.body.statements())?;
                let other = self.block(x.branch.statements())?;
                Some(Step::If(cond, then, other))
            }
            Stmt::Expr(e) => Some(Step::Eval(self.expr(e)?)),
            Stmt::FnCall(call, _) => Some(Step::Eval(self.call(call)?)),
            Stmt::Return(value, flags, _) if flags.is_empty() => match value.as_deref() {
                None | Some(RExpr::Unit(_)) => Some(Step::Drop),
                Some(_) => None,
            },
            Stmt::Assignment(x) => {
                let (op, target) = &**x;
                if op.is_op_assignment() {
                    return None;
                }
                let RExpr::Dot(dot, flags, _) = &target.lhs else {
                    return None;
                };
                if !flags.is_empty() || !is_var(&dot.lhs, "event") || self.slot("event").is_some() {
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
            RExpr::Unit(_) => Expr::Lit(Value::Null),
            RExpr::StringConstant(s, _) => Expr::Lit(Value::String(s.to_string())),
            RExpr::IntegerConstant(i, _) => Expr::Lit(Value::Int(*i)),
            RExpr::FloatConstant(f, _) => Expr::Lit(Value::Float(**f)),
            RExpr::BoolConstant(b, _) => Expr::Lit(Value::Bool(*b)),
            RExpr::Variable(v, _, _) => Expr::Var(self.slot(v.1.as_str())?),
            RExpr::Dot(dot, flags, _) => {
                if !flags.is_empty() {
                    return None;
                }
                self.nodes += 1;
                // `a.f.g…`, optionally ending with a method call
                // (`a.m(..)`, `a.f.m(..)`): rhai nests them to the right.
                let mut names = Vec::new();
                let mut rhs = &dot.rhs;
                let method = loop {
                    match rhs {
                        RExpr::Dot(inner, flags, _) if flags.is_empty() => {
                            names.push(property(&inner.lhs)?);
                            rhs = &inner.rhs;
                        }
                        RExpr::MethodCall(call, _) => break Some(call),
                        last => {
                            names.push(property(last)?);
                            break None;
                        }
                    }
                };
                let mut base = match names.split_first() {
                    Some((first, _)) => self.prop(&dot.lhs, first)?,
                    None => self.expr(&dot.lhs)?,
                };
                for name in names.iter().skip(1) {
                    self.nodes += 1;
                    base = Expr::Get(Box::new(base), (*name).to_owned());
                }
                match method {
                    None => base,
                    Some(call) => {
                        if call.capture_parent_scope {
                            return None;
                        }
                        self.nodes += 1;
                        let f = Func::named(call.name.as_str(), call.args.len() + 1)?;
                        let mut args = vec![base];
                        for a in call.args.iter() {
                            args.push(self.expr(a)?);
                        }
                        Expr::Call(f, args)
                    }
                }
            }
            RExpr::FnCall(call, _) => self.call(call)?,
            RExpr::Or(xs, _) => Expr::Or(xs.iter().map(|x| self.expr(x)).collect::<Option<_>>()?),
            RExpr::And(xs, _) => Expr::And(xs.iter().map(|x| self.expr(x)).collect::<Option<_>>()?),
            _ => return None,
        })
    }

    /// A call of an operator or a function of the subset.
    fn call(&mut self, call: &FnCallExpr) -> Option<Expr> {
        if call.capture_parent_scope {
            return None;
        }
        self.nodes += 1;
        Some(match (call.name.as_str(), &call.args[..]) {
            ("parse_regex", [s, RExpr::StringConstant(p, _)]) => {
                Expr::Regex(Box::new(self.expr(s)?), p.clone())
            }
            ("!", [a]) => Expr::Not(Box::new(self.expr(a)?)),
            ("+", [a, b]) => Expr::Add(Box::new(self.expr(a)?), Box::new(self.expr(b)?)),
            ("-", [a, b]) => Expr::Sub(Box::new(self.expr(a)?), Box::new(self.expr(b)?)),
            (op @ ("==" | "!=" | "<" | "<=" | ">" | ">="), [a, b]) => {
                let op = match op {
                    "==" => Cmp::Eq,
                    "!=" => Cmp::Ne,
                    "<" => Cmp::Lt,
                    "<=" => Cmp::Le,
                    ">" => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                Expr::Cmp(Box::new(self.expr(a)?), Box::new(self.expr(b)?), op)
            }
            (name, args) => {
                let f = Func::named(name, args.len())?;
                Expr::Call(f, args.iter().map(|a| self.expr(a)).collect::<Option<_>>()?)
            }
        })
    }

    /// `base.name`, with `base` the event or a variable.
    fn prop(&mut self, base: &RExpr, name: &str) -> Option<Expr> {
        if is_var(base, "event") && self.slot("event").is_none() {
            Some(Expr::Field(name.to_owned()))
        } else if let RExpr::Variable(v, _, _) = base {
            Some(Expr::Prop(self.slot(v.1.as_str())?, name.to_owned()))
        } else {
            None
        }
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

fn as_str(v: &Value) -> Result<&str, GiveUp> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(GiveUp),
    }
}

/// What a run of steps ended with.
enum Flow {
    Next,
    Dropped,
}

struct Run<'a> {
    host: &'a Host,
    limits: &'a Limits,
}

impl Run<'_> {
    fn steps(
        &self,
        steps: &[Step],
        ev: &mut Fields,
        slots: &mut Vec<Value>,
    ) -> Result<Flow, GiveUp> {
        let depth = slots.len();
        for step in steps {
            match step {
                Step::Let(e) => {
                    let v = self.eval(e, ev, slots)?.into_owned();
                    slots.push(v);
                }
                Step::Set(name, e) => {
                    let v = self.eval(e, ev, slots)?.into_owned();
                    ev.insert(name.as_str(), v);
                    self.check(ev)?;
                }
                Step::If(cond, then, other) => {
                    let branch = if as_bool(&*self.eval(cond, ev, slots)?)? {
                        then
                    } else {
                        other
                    };
                    if let Flow::Dropped = self.steps(branch, ev, slots)? {
                        return Ok(Flow::Dropped);
                    }
                }
                Step::Drop => return Ok(Flow::Dropped),
                Step::Eval(e) => {
                    self.eval(e, ev, slots)?;
                }
            }
        }
        slots.truncate(depth);
        Ok(Flow::Next)
    }

    fn eval<'v>(
        &self,
        e: &'v Expr,
        ev: &'v Fields,
        slots: &'v [Value],
    ) -> Result<Cow<'v, Value>, GiveUp> {
        Ok(match e {
            Expr::Lit(v) => Cow::Borrowed(v),
            Expr::Var(i) => Cow::Borrowed(slots.get(*i).ok_or(GiveUp)?),
            // A missing property of a map is `()` in rhai.
            Expr::Field(name) => ev.get(name).map_or(Cow::Owned(Value::Null), Cow::Borrowed),
            Expr::Prop(i, name) => match slots.get(*i) {
                Some(Value::Map(m)) => m.get(name).map_or(Cow::Owned(Value::Null), Cow::Borrowed),
                _ => return Err(GiveUp),
            },
            Expr::Get(base, name) => match self.eval(base, ev, slots)? {
                Cow::Borrowed(Value::Map(m)) => {
                    m.get(name).map_or(Cow::Owned(Value::Null), Cow::Borrowed)
                }
                Cow::Owned(Value::Map(mut m)) => Cow::Owned(m.remove(name).unwrap_or(Value::Null)),
                _ => return Err(GiveUp),
            },
            Expr::Regex(s, pattern) => {
                let s = self.eval(s, ev, slots)?;
                let p = self.pattern(pattern)?;
                self.sized(captures(&p, as_str(&s)?))?
            }
            Expr::Cmp(a, b, op) => {
                let a = self.eval(a, ev, slots)?;
                let b = self.eval(b, ev, slots)?;
                Cow::Owned(Value::Bool(compare(&a, &b, *op)?))
            }
            Expr::Not(a) => Cow::Owned(Value::Bool(!as_bool(&*self.eval(a, ev, slots)?)?)),
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
            Expr::Add(a, b) => {
                let a = self.eval(a, ev, slots)?;
                let b = self.eval(b, ev, slots)?;
                self.sized(add(&a, &b)?)?
            }
            Expr::Sub(a, b) => {
                let a = self.eval(a, ev, slots)?;
                let b = self.eval(b, ev, slots)?;
                Cow::Owned(sub(&a, &b)?)
            }
            Expr::Call(f, args) => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(self.eval(a, ev, slots)?);
                }
                self.sized(call(*f, &values)?)?
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

    /// A computed value, when it is within the size limits (rhai checks
    /// every function's and operator's result and reports it).
    fn sized<'v>(&self, v: Value) -> Result<Cow<'v, Value>, GiveUp> {
        let (a, m, s) = value_sizes(&v);
        self.within(a, m, s)?;
        Ok(Cow::Owned(v))
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

/// A comparison where rhai's answer is known. Numbers as rhai's built-in
/// operators do (an integer with a float as floats, floats within a
/// relative epsilon); strings, booleans and `()` for equality, strings
/// ordered too; values of different, not both numeric, types are unequal
/// and not ordered. Anything else (arrays, maps, timestamps, bytes of the
/// same type, which have registered or library operators) gives up.
fn compare(a: &Value, b: &Value, op: Cmp) -> Result<bool, GiveUp> {
    use Value::{Bool, Float, Int, Null, String};
    Ok(match (a, b) {
        (Int(x), Int(y)) => ordered(x.cmp(y), op),
        (Float(x), Float(y)) => float_cmp(*x, *y, op),
        (Int(x), Float(y)) => float_cmp(*x as f64, *y, op),
        (Float(x), Int(y)) => float_cmp(*x, *y as f64, op),
        (String(x), String(y)) => ordered(x.as_str().cmp(y.as_str()), op),
        (Bool(x), Bool(y)) if matches!(op, Cmp::Eq | Cmp::Ne) => (x == y) == (op == Cmp::Eq),
        (Null, Null) if matches!(op, Cmp::Eq | Cmp::Ne) => op == Cmp::Eq,
        (Value::Timestamp(_), _) | (_, Value::Timestamp(_)) => return Err(GiveUp),
        (x, y) if std::mem::discriminant(x) != std::mem::discriminant(y) => op == Cmp::Ne,
        _ => return Err(GiveUp),
    })
}

fn ordered(o: std::cmp::Ordering, op: Cmp) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        Cmp::Eq => o == Equal,
        Cmp::Ne => o != Equal,
        Cmp::Lt => o == Less,
        Cmp::Le => o != Greater,
        Cmp::Gt => o == Greater,
        Cmp::Ge => o != Less,
    }
}

/// rhai's (checked) float comparison: relative to the larger magnitude,
/// within `f64::EPSILON` is equal.
fn float_cmp(x: f64, y: f64, op: Cmp) -> bool {
    let max = if x * y == 0.0 {
        1.0
    } else {
        x.abs().max(y.abs())
    };
    if max == 0.0 {
        return matches!(op, Cmp::Eq | Cmp::Le | Cmp::Ge);
    }
    match op {
        Cmp::Eq => (x - y).abs() / max <= f64::EPSILON,
        Cmp::Ne => (x - y).abs() / max > f64::EPSILON,
        Cmp::Gt => (x - y) / max > f64::EPSILON,
        Cmp::Ge => (x - y) / max > -f64::EPSILON,
        Cmp::Lt => (y - x) / max > f64::EPSILON,
        Cmp::Le => (y - x) / max > -f64::EPSILON,
    }
}

/// `a + b` for two strings or two numbers; integer overflow (an error in
/// rhai) and other types give up.
fn add(a: &Value, b: &Value) -> Result<Value, GiveUp> {
    use Value::{Float, Int, String};
    Ok(match (a, b) {
        (String(x), String(y)) => String(format!("{x}{y}")),
        (Int(x), Int(y)) => Int(x.checked_add(*y).ok_or(GiveUp)?),
        (Float(x), Float(y)) => Float(x + y),
        (Int(x), Float(y)) => Float(*x as f64 + y),
        (Float(x), Int(y)) => Float(x + *y as f64),
        _ => return Err(GiveUp),
    })
}

/// `a - b` for two numbers; integer overflow and other types give up.
fn sub(a: &Value, b: &Value) -> Result<Value, GiveUp> {
    use Value::{Float, Int};
    Ok(match (a, b) {
        (Int(x), Int(y)) => Int(x.checked_sub(*y).ok_or(GiveUp)?),
        (Float(x), Float(y)) => Float(x - y),
        (Int(x), Float(y)) => Float(*x as f64 - y),
        (Float(x), Int(y)) => Float(x - *y as f64),
        _ => return Err(GiveUp),
    })
}

/// A function of the subset; its error gives up (rhai reports it).
fn call(f: Func, args: &[Cow<'_, Value>]) -> Result<Value, GiveUp> {
    let arg = |i: usize| -> Result<&Value, GiveUp> { args.get(i).map(|v| &**v).ok_or(GiveUp) };
    let text = |i: usize| -> Result<&str, GiveUp> { as_str(arg(i)?) };
    Ok(match f {
        // Strings and integers reach the registered functions (rhai's
        // library has its own `to_int` of a float); the same Rust here.
        Func::ToInt => match arg(0)? {
            v @ (Value::String(_) | Value::Int(_)) => {
                Value::Int(to_int(&to_dynamic_ref(v)).map_err(|_| GiveUp)?)
            }
            _ => return Err(GiveUp),
        },
        Func::ToFloat => match arg(0)? {
            v @ (Value::String(_) | Value::Int(_) | Value::Float(_)) => {
                Value::Float(to_float(&to_dynamic_ref(v)).map_err(|_| GiveUp)?)
            }
            _ => return Err(GiveUp),
        },
        // Only the registered functions have two arguments, for any types.
        Func::ToIntOr => match to_int(&to_dynamic_ref(arg(0)?)) {
            Ok(i) => Value::Int(i),
            Err(_) => arg(1)?.clone(),
        },
        Func::ToFloatOr => match to_float(&to_dynamic_ref(arg(0)?)) {
            Ok(f) => Value::Float(f),
            Err(_) => arg(1)?.clone(),
        },
        Func::ToString => match arg(0)? {
            Value::String(s) => Value::String(s.clone()),
            Value::Int(i) => Value::String(i.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            _ => return Err(GiveUp),
        },
        Func::ParseKeyValue => key_values_value(text(0)?),
        Func::ParseJson => json_value(text(0)?).map_err(|_| GiveUp)?,
        Func::Len => Value::Int(i64::try_from(text(0)?.chars().count()).map_err(|_| GiveUp)?),
        Func::ToUpper => Value::String(text(0)?.to_uppercase()),
        Func::ToLower => Value::String(text(0)?.to_lowercase()),
        Func::Contains => Value::Bool(text(0)?.contains(text(1)?)),
        Func::StartsWith => Value::Bool(text(0)?.starts_with(text(1)?)),
        Func::EndsWith => Value::Bool(text(0)?.ends_with(text(1)?)),
    })
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
#[path = "fast_props.rs"]
mod props;

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

    /// The example of issue 7: key-value parsing, a filter, a conversion.
    const EXAMPLE: &str = r#"
let f = parse_key_value(event.message);
if f.level == "debug" { return (); }
event.device = f.device;
event.temp = to_float(f.temp);
event
"#;

    /// Scripts of the shape the fast path takes, each with something the
    /// events below exercise: a missing field or group, another type, a
    /// comparison rhai answers, a property of `()`, a non-boolean condition.
    const QUALIFYING: &[&str] = &[
        REFERENCE,
        EXAMPLE,
        "let f = parse_key_value(event.message);\nif to_float(f.temp) > 20.0 && !f.level.contains(\"deb\") {\n  event.hot = true;\n} else if f.level == \"info\" {\n  let t = to_int(f.device);\n  event.t = t + 1;\n} else {\n  return ();\n}\nevent.level = f.level.to_upper();\nevent",
        "let j = parse_json(event.message);\nevent.n = j.a.b;\nevent.len = event.message.len();\nevent.s = \"n=\" + to_string(event.count);\nevent",
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
        v.push(Event::from_message_at(
            "{\"a\": {\"b\": [1, 2.5]}}",
            Metadata::default(),
            11,
        ));
        v.push(Event::from_message_at(
            "level=info device=42 temp=20.0",
            Metadata::default(),
            12,
        ));
        let mut nested = Event::from_message_at("level=error device=d9", Metadata::default(), 10);
        let mut inner = Fields::new();
        inner.insert("k", Value::Array(vec![Value::from("v"), Value::Int(1)]));
        nested.fields.insert("inner", Value::Map(inner));
        v.push(nested);
        v
    }

    /// An inline script's config (also used by `fast_props.rs`).
    pub(super) fn config(source: &str, limits: Limits) -> ScriptConfig {
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
    fn the_issues_example_script_runs_natively() {
        let limits = Limits::default();
        let p = plan(EXAMPLE, &limits).expect("the example has a plan");
        let host = Host::new("parse", None, 10);
        let hot = Event::from_message_at("level=info device=d1 temp=81.5", Metadata::default(), 7);
        let kept = p.run(&hot.fields, &host, &limits).unwrap().unwrap();
        assert_eq!(kept.get("device"), Some(&Value::from("d1")));
        assert_eq!(kept.get("temp"), Some(&Value::Float(81.5)));
        let debug = Event::from_message_at("level=debug device=d2 temp=1", Metadata::default(), 7);
        assert_eq!(p.run(&debug.fields, &host, &limits), Ok(None));
        // A temperature that is not a number: rhai reports it.
        let bad = Event::from_message_at("level=info device=d3 temp=hot", Metadata::default(), 7);
        assert_eq!(p.run(&bad.fields, &host, &limits), Err(GiveUp));
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
            "event.x = \"a\";\nevent.x += \"b\";\nevent",
            "let i = 0;\nwhile i < 3 { i += 1; }\nevent",
            "fn f() { 1 }\nevent",
            "let m = event.m;\nevent.x = m?.a;\nevent",
            "event.x = event.message.sub_string(1);\nevent",
            "event.x = event.tags[0];\nevent",
            "event.tag = \"x\";\nemit(\"alerts\", event);\nevent",
            "if event.level == \"debug\" { return 1; }\nevent",
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
