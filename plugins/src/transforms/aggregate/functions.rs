//! Aggregate functions: what one group keeps for one window (an [`Acc`]),
//! how an event updates it, how two merge (sessions that join), and the
//! values emitted when the window closes.
//!
//! Functions share state where they can: every numeric function of a field
//! (`sum`, `min`, `max`, `mean`, `stddev`, `rate` with a field) reads one
//! running summary of that field, and every `percentile` of a field reads
//! one sketch. The [`Layout`] decides these *slots* once, from the config.
//!
//! Values: numeric functions take integers, floats and strings that parse
//! as a finite number; a missing or null field is skipped, and so is any
//! other value (counted as `not_numeric`). `first` / `last` are the values
//! of the events with the smallest / largest event time (ties: the earlier
//! / later arrival); `count` with a field counts events where it is present
//! and not null; `distinct` counts distinct values of any type.

use weir_core::event::Fields;
use weir_core::Value;

use super::codec::{stable_hash, DecodeError, Reader, Writer};
use super::sketches::{DdSketch, Hll};

/// A function, as the config names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Func {
    Count,
    Sum,
    Min,
    Max,
    Mean,
    Stddev,
    First,
    Last,
    Rate,
    Distinct { precision: u8 },
    Percentile { q: f64 },
}

/// What one state slot keeps (of field index `.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotDef {
    Stats(usize),
    Present(usize),
    First(usize),
    Last(usize),
    Distinct(usize, u8),
    Sketch(usize),
}

/// How an output value is read from the slots.
#[derive(Debug, Clone, Copy, PartialEq)]
enum OutDef {
    Count,
    Present(usize),
    Sum(usize),
    Min(usize),
    Max(usize),
    Mean(usize),
    Stddev(usize),
    First(usize),
    Last(usize),
    Rate(Option<usize>),
    Distinct(usize),
    Percentile(usize, f64),
}

/// The fields, slots and outputs of one aggregate config.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Field names (paths) the functions read, each once.
    pub fields: Vec<String>,
    /// Whether a numeric function reads field `i` (its values are converted
    /// and non-numbers counted).
    numeric: Vec<bool>,
    slots: Vec<SlotDef>,
    outputs: Vec<(String, OutDef)>,
}

impl Layout {
    /// The layout for `(output name, function, field)` triples, in output order.
    pub fn new<'a>(aggs: impl IntoIterator<Item = (&'a str, Func, Option<&'a str>)>) -> Layout {
        let mut l = Layout {
            fields: Vec::new(),
            numeric: Vec::new(),
            slots: Vec::new(),
            outputs: Vec::new(),
        };
        for (name, func, field) in aggs {
            let f = field.map(|f| l.field(f, is_numeric(func)));
            let out = match (func, f) {
                (Func::Count, None) => OutDef::Count,
                (Func::Count, Some(f)) => OutDef::Present(l.slot(SlotDef::Present(f))),
                (Func::Rate, None) => OutDef::Rate(None),
                (Func::Rate, Some(f)) => OutDef::Rate(Some(l.slot(SlotDef::Stats(f)))),
                // The config requires a field for every other function.
                (_, None) => continue,
                (Func::Sum, Some(f)) => OutDef::Sum(l.slot(SlotDef::Stats(f))),
                (Func::Min, Some(f)) => OutDef::Min(l.slot(SlotDef::Stats(f))),
                (Func::Max, Some(f)) => OutDef::Max(l.slot(SlotDef::Stats(f))),
                (Func::Mean, Some(f)) => OutDef::Mean(l.slot(SlotDef::Stats(f))),
                (Func::Stddev, Some(f)) => OutDef::Stddev(l.slot(SlotDef::Stats(f))),
                (Func::First, Some(f)) => OutDef::First(l.slot(SlotDef::First(f))),
                (Func::Last, Some(f)) => OutDef::Last(l.slot(SlotDef::Last(f))),
                (Func::Distinct { precision }, Some(f)) => {
                    OutDef::Distinct(l.slot(SlotDef::Distinct(f, precision)))
                }
                (Func::Percentile { q }, Some(f)) => {
                    OutDef::Percentile(l.slot(SlotDef::Sketch(f)), q)
                }
            };
            l.outputs.push((name.to_owned(), out));
        }
        l
    }

    fn field(&mut self, name: &str, numeric: bool) -> usize {
        let i = match self.fields.iter().position(|f| f == name) {
            Some(i) => i,
            None => {
                self.fields.push(name.to_owned());
                self.numeric.push(false);
                self.fields.len() - 1
            }
        };
        self.numeric[i] |= numeric;
        i
    }

    fn slot(&mut self, def: SlotDef) -> usize {
        match self.slots.iter().position(|s| *s == def) {
            Some(i) => i,
            None => {
                self.slots.push(def);
                self.slots.len() - 1
            }
        }
    }

    /// A text that changes whenever the state's shape changes (slots and
    /// their fields), for the snapshot's fingerprint.
    pub fn shape(&self) -> String {
        self.slots
            .iter()
            .map(|s| match *s {
                SlotDef::Stats(f) => format!("stats({})", self.fields[f]),
                SlotDef::Present(f) => format!("present({})", self.fields[f]),
                SlotDef::First(f) => format!("first({})", self.fields[f]),
                SlotDef::Last(f) => format!("last({})", self.fields[f]),
                SlotDef::Distinct(f, p) => format!("distinct({},{p})", self.fields[f]),
                SlotDef::Sketch(f) => format!("sketch({})", self.fields[f]),
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The values the functions read from `fields`, and what was skipped.
    pub fn input<'a>(&self, fields: &'a Fields, skipped: &mut Skipped) -> Input<'a> {
        let values: Vec<Option<&Value>> = self
            .fields
            .iter()
            .map(|f| lookup(fields, f).filter(|v| !matches!(v, Value::Null)))
            .collect();
        let nums = values
            .iter()
            .zip(&self.numeric)
            .map(|(v, &numeric)| {
                if !numeric {
                    return None;
                }
                match v {
                    None => {
                        skipped.missing += 1;
                        None
                    }
                    Some(v) => {
                        let n = number(v);
                        if n.is_none() {
                            skipped.not_numeric += 1;
                        }
                        n
                    }
                }
            })
            .collect();
        Input { values, nums }
    }

    /// An input rebuilt from stored values (sliding windows), not counted again.
    pub fn stored_input<'a>(&self, values: &'a [Option<Value>]) -> Input<'a> {
        let values: Vec<Option<&Value>> = values.iter().map(Option::as_ref).collect();
        let nums = values
            .iter()
            .zip(&self.numeric)
            .map(|(v, &numeric)| if numeric { v.and_then(number) } else { None })
            .collect();
        Input { values, nums }
    }
}

fn is_numeric(f: Func) -> bool {
    matches!(
        f,
        Func::Sum
            | Func::Min
            | Func::Max
            | Func::Mean
            | Func::Stddev
            | Func::Rate
            | Func::Percentile { .. }
    )
}

/// The value at `path`: a top-level field of that exact name, else, when
/// the path has dots, the field nested in maps (`a.b` is `b` inside map `a`).
pub fn lookup<'a>(fields: &'a Fields, path: &str) -> Option<&'a Value> {
    if let Some(v) = fields.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    match fields.get(head)? {
        Value::Map(m) => lookup(m, rest),
        _ => None,
    }
}

/// A value as a finite number, if it is one.
pub fn number(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// Values numeric functions skipped, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    pub missing: u64,
    pub not_numeric: u64,
}

/// The values one event gives the functions, by field index.
#[derive(Debug)]
pub struct Input<'a> {
    values: Vec<Option<&'a Value>>,
    nums: Vec<Option<f64>>,
}

impl Input<'_> {
    /// The values to keep for recomputing (sliding windows).
    pub fn to_owned_values(&self) -> Box<[Option<Value>]> {
        self.values.iter().map(|v| v.cloned()).collect()
    }
}

/// A running summary of a numeric field.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    n: u64,
    sum: f64,
    /// Welford's running mean and sum of squared deviations.
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            n: 0,
            sum: 0.0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Stats {
    fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Chan et al.'s parallel combination.
    fn merge(&mut self, o: &Stats) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        self.mean += d * o.n as f64 / n as f64;
        self.m2 += o.m2 + d * d * (self.n as f64) * (o.n as f64) / n as f64;
        self.n = n;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    fn when_any(&self, f: impl Fn(&Stats) -> f64) -> Value {
        if self.n == 0 {
            Value::Null
        } else {
            Value::Float(f(self))
        }
    }
}

/// A value with the event time and arrival number it came with.
#[derive(Debug, Clone, PartialEq)]
struct Stamped {
    t: i64,
    seq: u64,
    value: Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Stats(Stats),
    Present(u64),
    First(Option<Stamped>),
    Last(Option<Stamped>),
    Distinct(Box<Hll>),
    Sketch(Box<DdSketch>),
}

/// What one group keeps for one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Acc {
    /// Events counted.
    pub events: u64,
    slots: Box<[Slot]>,
}

impl Acc {
    /// An empty accumulator.
    pub fn new(layout: &Layout) -> Acc {
        let slots = layout
            .slots
            .iter()
            .map(|s| match *s {
                SlotDef::Stats(_) => Slot::Stats(Stats::default()),
                SlotDef::Present(_) => Slot::Present(0),
                SlotDef::First(_) => Slot::First(None),
                SlotDef::Last(_) => Slot::Last(None),
                SlotDef::Distinct(_, p) => Slot::Distinct(Box::new(Hll::new(p))),
                SlotDef::Sketch(_) => Slot::Sketch(Box::new(DdSketch::new())),
            })
            .collect();
        Acc { events: 0, slots }
    }

    /// Counts an event of time `t`, arrival number `seq`.
    pub fn add(&mut self, layout: &Layout, t: i64, seq: u64, input: &Input) {
        self.events += 1;
        for (slot, def) in self.slots.iter_mut().zip(&layout.slots) {
            match (slot, *def) {
                (Slot::Stats(s), SlotDef::Stats(f)) => {
                    if let Some(x) = input.nums[f] {
                        s.add(x);
                    }
                }
                (Slot::Present(n), SlotDef::Present(f)) => {
                    *n += input.values[f].is_some() as u64;
                }
                (Slot::First(cur), SlotDef::First(f)) => {
                    if let Some(v) = input.values[f] {
                        if cur.as_ref().is_none_or(|c| t < c.t) {
                            *cur = Some(Stamped {
                                t,
                                seq,
                                value: v.clone(),
                            });
                        }
                    }
                }
                (Slot::Last(cur), SlotDef::Last(f)) => {
                    if let Some(v) = input.values[f] {
                        if cur.as_ref().is_none_or(|c| t >= c.t) {
                            *cur = Some(Stamped {
                                t,
                                seq,
                                value: v.clone(),
                            });
                        }
                    }
                }
                (Slot::Distinct(h), SlotDef::Distinct(f, _)) => {
                    if let Some(v) = input.values[f] {
                        let mut w = Writer::new();
                        w.value(v);
                        h.add_hash(stable_hash(&w.buf));
                    }
                }
                (Slot::Sketch(s), SlotDef::Sketch(f)) => {
                    if let Some(x) = input.nums[f] {
                        s.add(x);
                    }
                }
                _ => {}
            }
        }
    }

    /// Adds everything `other` counted (of the same layout).
    pub fn merge(&mut self, other: &Acc) {
        self.events += other.events;
        for (a, b) in self.slots.iter_mut().zip(other.slots.iter()) {
            match (a, b) {
                (Slot::Stats(a), Slot::Stats(b)) => a.merge(b),
                (Slot::Present(a), Slot::Present(b)) => *a += b,
                (Slot::First(a), Slot::First(Some(b)))
                    if a.as_ref().is_none_or(|a| (b.t, b.seq) < (a.t, a.seq)) =>
                {
                    *a = Some(b.clone());
                }
                (Slot::Last(a), Slot::Last(Some(b)))
                    if a.as_ref().is_none_or(|a| (b.t, b.seq) > (a.t, a.seq)) =>
                {
                    *a = Some(b.clone());
                }
                (Slot::Distinct(a), Slot::Distinct(b)) => a.merge(b),
                (Slot::Sketch(a), Slot::Sketch(b)) => a.merge(b),
                _ => {}
            }
        }
    }

    /// The output values (name, value) for a window from `start` to `end` (ns).
    pub fn outputs<'l>(
        &'l self,
        layout: &'l Layout,
        start: i64,
        end: i64,
    ) -> impl Iterator<Item = (&'l str, Value)> + 'l {
        let secs = end.saturating_sub(start) as f64 / 1e9;
        layout.outputs.iter().map(move |(name, out)| {
            let v = match *out {
                OutDef::Count => Value::Int(self.events as i64),
                OutDef::Present(s) => match &self.slots[s] {
                    Slot::Present(n) => Value::Int(*n as i64),
                    _ => Value::Null,
                },
                OutDef::Sum(s) => self.stats(s).map_or(Value::Null, |x| Value::Float(x.sum)),
                OutDef::Min(s) => self.stats_value(s, |x| x.min),
                OutDef::Max(s) => self.stats_value(s, |x| x.max),
                OutDef::Mean(s) => self.stats_value(s, |x| x.sum / x.n as f64),
                OutDef::Stddev(s) => self.stats_value(s, |x| (x.m2 / x.n as f64).max(0.0).sqrt()),
                OutDef::First(s) | OutDef::Last(s) => match &self.slots[s] {
                    Slot::First(Some(v)) | Slot::Last(Some(v)) => v.value.clone(),
                    _ => Value::Null,
                },
                OutDef::Rate(field) => {
                    let total = match field {
                        None => Some(self.events as f64),
                        Some(s) => self.stats(s).map(|x| x.sum),
                    };
                    match total {
                        Some(t) if secs > 0.0 => Value::Float(t / secs),
                        _ => Value::Null,
                    }
                }
                OutDef::Distinct(s) => match &self.slots[s] {
                    Slot::Distinct(h) => Value::Int(h.estimate() as i64),
                    _ => Value::Null,
                },
                OutDef::Percentile(s, q) => match &self.slots[s] {
                    Slot::Sketch(k) => k.quantile(q).map_or(Value::Null, Value::Float),
                    _ => Value::Null,
                },
            };
            (name.as_str(), v)
        })
    }

    fn stats(&self, s: usize) -> Option<&Stats> {
        match &self.slots[s] {
            Slot::Stats(x) => Some(x),
            _ => None,
        }
    }

    fn stats_value(&self, s: usize, f: impl Fn(&Stats) -> f64) -> Value {
        self.stats(s).map_or(Value::Null, |x| x.when_any(f))
    }

    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.events);
        for slot in self.slots.iter() {
            match slot {
                Slot::Stats(s) => {
                    w.varint(s.n);
                    if s.n > 0 {
                        for x in [s.sum, s.mean, s.m2, s.min, s.max] {
                            w.f64(x);
                        }
                    }
                }
                Slot::Present(n) => w.varint(*n),
                Slot::First(v) | Slot::Last(v) => match v {
                    None => w.u8(0),
                    Some(v) => {
                        w.u8(1);
                        w.zigzag(v.t);
                        w.varint(v.seq);
                        w.value(&v.value);
                    }
                },
                Slot::Distinct(h) => h.encode(w),
                Slot::Sketch(s) => s.encode(w),
            }
        }
    }

    pub fn decode(r: &mut Reader, layout: &Layout) -> Result<Acc, DecodeError> {
        let events = r.varint("event count")?;
        let mut slots = Vec::with_capacity(layout.slots.len());
        for def in &layout.slots {
            slots.push(match *def {
                SlotDef::Stats(_) => {
                    let n = r.varint("value count")?;
                    let mut s = Stats {
                        n,
                        ..Stats::default()
                    };
                    if n > 0 {
                        s.sum = r.f64("sum")?;
                        s.mean = r.f64("mean")?;
                        s.m2 = r.f64("m2")?;
                        s.min = r.f64("min")?;
                        s.max = r.f64("max")?;
                    }
                    Slot::Stats(s)
                }
                SlotDef::Present(_) => Slot::Present(r.varint("present count")?),
                SlotDef::First(_) => Slot::First(stamped(r)?),
                SlotDef::Last(_) => Slot::Last(stamped(r)?),
                SlotDef::Distinct(_, p) => Slot::Distinct(Box::new(Hll::decode(r, p)?)),
                SlotDef::Sketch(_) => Slot::Sketch(Box::new(DdSketch::decode(r)?)),
            });
        }
        Ok(Acc {
            events,
            slots: slots.into_boxed_slice(),
        })
    }
}

fn stamped(r: &mut Reader) -> Result<Option<Stamped>, DecodeError> {
    match r.u8("value flag")? {
        0 => Ok(None),
        1 => Ok(Some(Stamped {
            t: r.zigzag("value time")?,
            seq: r.varint("value arrival")?,
            value: r.value()?,
        })),
        _ => Err(DecodeError::Invalid("value flag")),
    }
}
