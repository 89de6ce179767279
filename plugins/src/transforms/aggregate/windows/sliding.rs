//! Sliding windows: one window per event, ending at that event — a moving
//! aggregate of its group over the last `size` of event time, or over its
//! group's last `count` events (both: the last `count` events within
//! `size`).
//!
//! The window of an event at `t` closes when the watermark reaches
//! `t + allowed_lateness`; it holds the group's events with `(t', arrival)`
//! up to its own (`t' > t − size` by duration) that arrived before then. In
//! processing time, and in event time with `watermark: 0s` and in-order
//! input, that is at once: every event emits its window as it arrives.
//!
//! Each group keeps the events later windows still need (by duration: those
//! newer than the oldest future window's start; by count: the last
//! `count − 1` emitted ones) plus the events whose window is still open, at
//! most `max_events`; a window's values are computed from them when it
//! closes, so a window costs time proportional to its events.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use weir_core::Value;

use super::super::codec::{DecodeError, Reader, Writer};
use super::super::functions::{Acc, Layout};
use super::{read_key, Arrival, Key, Reject, Sink};

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    t: i64,
    seq: u64,
    values: Box<[Option<Value>]>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Buf {
    /// By (t, seq); the first `emitted` have had their window emitted.
    entries: VecDeque<Entry>,
    emitted: usize,
}

/// Every group's retained events, the windows waiting to close, and when
/// idle groups can be dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Sliding {
    size: Option<i64>,
    count: Option<usize>,
    max_events: usize,
    lateness: i64,
    groups: BTreeMap<Key, Buf>,
    /// (t, seq, group) of every event whose window is open.
    pending: BTreeSet<(i64, u64, Key)>,
    /// (time, group): when a group with nothing pending holds nothing any
    /// future window needs (duration windows only).
    expiry: BTreeSet<(i64, Key)>,
}

impl Sliding {
    pub fn new(
        size: Option<i64>,
        count: Option<usize>,
        max_events: usize,
        lateness: i64,
    ) -> Sliding {
        Sliding {
            size,
            count,
            max_events,
            lateness,
            groups: BTreeMap::new(),
            pending: BTreeSet::new(),
            expiry: BTreeSet::new(),
        }
    }

    pub fn accept(&mut self, a: &Arrival, watermark: i64, max_groups: usize) -> Result<(), Reject> {
        if a.t + self.lateness < watermark {
            return Err(Reject::Late);
        }
        match self.groups.get(a.key) {
            None if self.groups.len() + 1 > max_groups => return Err(Reject::MaxGroups),
            Some(b) if b.entries.len() >= self.max_events => return Err(Reject::MaxEvents),
            _ => {}
        }
        let buf = self.groups.entry(a.key.into()).or_default();
        if buf.emitted == buf.entries.len() {
            if let Some(exp) = expires(buf, self.size, self.lateness) {
                self.expiry.remove(&(exp, Key::from(a.key)));
            }
        }
        // After every emitted event: those have t + L ≤ watermark ≤ a.t + L.
        let at = buf.entries.partition_point(|e| e.t <= a.t).max(buf.emitted);
        buf.entries.insert(
            at,
            Entry {
                t: a.t,
                seq: a.seq,
                values: a.input.to_owned_values(),
            },
        );
        self.pending.insert((a.t, a.seq, a.key.into()));
        Ok(())
    }

    pub fn close(&mut self, watermark: i64, layout: &Layout, sink: Sink) {
        while let Some((t, seq, key)) = self.pending.first().cloned() {
            if t + self.lateness > watermark {
                break;
            }
            self.pending.pop_first();
            let Some(buf) = self.groups.get_mut(&key) else {
                continue;
            };
            let i = buf.emitted;
            if buf.entries.get(i).is_some_and(|e| (e.t, e.seq) == (t, seq)) {
                let (start, acc) = window(buf, i, self.size, self.count, layout);
                sink(start, t, &key, &acc);
                buf.emitted += 1;
            }
            let horizon = buf
                .entries
                .get(buf.emitted)
                .map_or(watermark.saturating_sub(self.lateness), |e| e.t);
            prune(buf, horizon, self.size, self.count);
            if buf.entries.is_empty() {
                self.groups.remove(&key);
            } else if buf.emitted == buf.entries.len() {
                if let Some(exp) = expires(buf, self.size, self.lateness) {
                    self.expiry.insert((exp, key));
                }
            }
        }
        while let Some((exp, key)) = self.expiry.first().cloned() {
            if exp > watermark {
                break;
            }
            self.expiry.pop_first();
            self.groups.remove(&key);
        }
    }

    pub fn next_close(&self) -> Option<i64> {
        self.pending.first().map(|(t, _, _)| t + self.lateness)
    }

    pub fn open(&self) -> usize {
        self.groups.len()
    }

    /// `varint groups, each: key, varint emitted, varint n, n × (zigzag t,
    /// varint seq, per field: u8 present, value)`.
    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.groups.len() as u64);
        for (key, buf) in &self.groups {
            w.bytes(key);
            w.varint(buf.emitted as u64);
            w.varint(buf.entries.len() as u64);
            for e in &buf.entries {
                w.zigzag(e.t);
                w.varint(e.seq);
                for v in e.values.iter() {
                    match v {
                        None => w.u8(0),
                        Some(v) => {
                            w.u8(1);
                            w.value(v);
                        }
                    }
                }
            }
        }
    }

    pub fn decode(
        &mut self,
        r: &mut Reader,
        layout: &Layout,
        valid_key: &dyn Fn(&[u8]) -> bool,
    ) -> Result<(), DecodeError> {
        let n = r.count(2, "groups")?;
        for _ in 0..n {
            let key = read_key(r, valid_key)?;
            let emitted = r.varint("emitted count")? as usize;
            let m = r.count(2, "events")?;
            if emitted > m || m > self.max_events {
                return Err(DecodeError::Invalid("sliding window events"));
            }
            let mut buf = Buf {
                entries: VecDeque::with_capacity(m),
                emitted,
            };
            for i in 0..m {
                let t = r.zigzag("event time")?;
                let seq = r.varint("event arrival")?;
                if buf.entries.back().is_some_and(|p| (p.t, p.seq) >= (t, seq)) {
                    return Err(DecodeError::Invalid("sliding window order"));
                }
                let mut values = Vec::with_capacity(layout.fields.len());
                for _ in 0..layout.fields.len() {
                    values.push(match r.u8("value flag")? {
                        0 => None,
                        1 => Some(r.value()?),
                        _ => return Err(DecodeError::Invalid("value flag")),
                    });
                }
                if i >= emitted {
                    self.pending.insert((t, seq, key.clone()));
                }
                buf.entries.push_back(Entry {
                    t,
                    seq,
                    values: values.into_boxed_slice(),
                });
            }
            if buf.entries.is_empty() {
                return Err(DecodeError::Invalid("empty sliding window group"));
            }
            if buf.emitted == buf.entries.len() {
                if let Some(exp) = expires(&buf, self.size, self.lateness) {
                    self.expiry.insert((exp, key.clone()));
                }
            }
            self.groups.insert(key, buf);
        }
        Ok(())
    }
}

/// When a group with nothing pending stops mattering (duration windows).
fn expires(buf: &Buf, size: Option<i64>, lateness: i64) -> Option<i64> {
    let last = buf.entries.back()?;
    Some(last.t + size? + lateness)
}

/// The window ending at entry `i`: its start and values.
fn window(
    buf: &Buf,
    i: usize,
    size: Option<i64>,
    count: Option<usize>,
    layout: &Layout,
) -> (i64, Acc) {
    let t = buf.entries[i].t;
    let mut lo = match count {
        Some(n) => (i + 1).saturating_sub(n),
        None => 0,
    };
    if let Some(size) = size {
        while lo < i && buf.entries[lo].t <= t - size {
            lo += 1;
        }
    }
    let mut acc = Acc::new(layout);
    for e in buf.entries.range(lo..=i) {
        acc.add(layout, e.t, e.seq, &layout.stored_input(&e.values));
    }
    let start = match (count, size) {
        (None, Some(size)) => t - size,
        _ => buf.entries[lo].t,
    };
    (start, acc)
}

/// Drops emitted events no window ending at or after `horizon` needs.
fn prune(buf: &mut Buf, horizon: i64, size: Option<i64>, count: Option<usize>) {
    while buf.emitted > 0 {
        let Some(front) = buf.entries.front() else {
            break;
        };
        let by_count = count.is_some_and(|n| buf.emitted > n.saturating_sub(1));
        let by_age = size.is_some_and(|s| front.t <= horizon - s);
        if !(by_count || by_age) {
            break;
        }
        buf.entries.pop_front();
        buf.emitted -= 1;
    }
}
