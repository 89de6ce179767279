//! Session windows: a group's events less than `gap` apart form one
//! session, from its first event to its last event plus `gap`.
//!
//! Events may arrive out of order, so a group can have several open
//! sessions; an event within `gap` of two of them joins them into one. A
//! session spans `[start, last + gap)`; an event at `t` joins every open
//! session that overlaps `[t, t + gap)` (two at most, since sessions are at
//! least `gap` long and do not overlap).

use std::collections::{BTreeMap, BTreeSet};

use super::super::codec::{DecodeError, Reader, Writer};
use super::super::functions::{Acc, Layout};
use super::{read_key, Arrival, Key, Reject, Sink};

#[derive(Debug, Clone, PartialEq)]
struct Session {
    start: i64,
    last: i64,
    acc: Acc,
}

/// Open sessions by group, and their close order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sessions {
    gap: i64,
    lateness: i64,
    /// Each group's sessions, by start.
    groups: BTreeMap<Key, Vec<Session>>,
    /// (end, group, start) of every open session: the order they close in.
    closing: BTreeSet<(i64, Key, i64)>,
}

impl Sessions {
    pub fn new(gap: i64, lateness: i64) -> Sessions {
        Sessions {
            gap,
            lateness,
            groups: BTreeMap::new(),
            closing: BTreeSet::new(),
        }
    }

    pub fn accept(
        &mut self,
        a: &Arrival,
        layout: &Layout,
        watermark: i64,
        max_groups: usize,
    ) -> Result<(), Reject> {
        let gap = self.gap;
        let joins: Vec<usize> = self
            .groups
            .get(a.key)
            .map(|ss| {
                ss.iter()
                    .enumerate()
                    .filter(|(_, s)| a.t < s.last + gap && s.start < a.t + gap)
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default();
        if joins.is_empty() {
            if a.t + gap + self.lateness <= watermark {
                return Err(Reject::Late);
            }
            if self.closing.len() + 1 > max_groups {
                return Err(Reject::MaxGroups);
            }
            let mut acc = Acc::new(layout);
            acc.add(layout, a.t, a.seq, a.input);
            let s = Session {
                start: a.t,
                last: a.t,
                acc,
            };
            self.closing.insert((a.t + gap, a.key.into(), a.t));
            let ss = self.groups.entry(a.key.into()).or_default();
            let at = ss.partition_point(|x| x.start < a.t);
            ss.insert(at, s);
            return Ok(());
        }
        let Some(ss) = self.groups.get_mut(a.key) else {
            return Ok(());
        };
        // Take the sessions it joins out (last first, so indices hold),
        // merge them in start order, and put the result back.
        let mut taken: Vec<Session> = joins.iter().rev().map(|&i| ss.remove(i)).collect();
        taken.reverse();
        for s in &taken {
            self.closing
                .remove(&(s.last + gap, Key::from(a.key), s.start));
        }
        let mut it = taken.into_iter();
        let Some(mut merged) = it.next() else {
            return Ok(());
        };
        for s in it {
            merged.start = merged.start.min(s.start);
            merged.last = merged.last.max(s.last);
            merged.acc.merge(&s.acc);
        }
        merged.start = merged.start.min(a.t);
        merged.last = merged.last.max(a.t);
        merged.acc.add(layout, a.t, a.seq, a.input);
        self.closing
            .insert((merged.last + gap, a.key.into(), merged.start));
        let at = ss.partition_point(|x| x.start < merged.start);
        ss.insert(at, merged);
        Ok(())
    }

    pub fn close(&mut self, watermark: i64, sink: Sink) {
        while let Some((end, key, start)) = self.closing.first().cloned() {
            if end + self.lateness > watermark {
                break;
            }
            self.closing.pop_first();
            let Some(ss) = self.groups.get_mut(&key) else {
                continue;
            };
            if let Some(i) = ss.iter().position(|s| s.start == start) {
                let s = ss.remove(i);
                sink(s.start, end, &key, &s.acc);
            }
            if ss.is_empty() {
                self.groups.remove(&key);
            }
        }
    }

    pub fn next_close(&self) -> Option<i64> {
        self.closing.first().map(|(end, _, _)| end + self.lateness)
    }

    pub fn open(&self) -> usize {
        self.closing.len()
    }

    /// `varint groups, each: key, varint sessions, each: zigzag start, zigzag last, acc`.
    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.groups.len() as u64);
        for (key, ss) in &self.groups {
            w.bytes(key);
            w.varint(ss.len() as u64);
            for s in ss {
                w.zigzag(s.start);
                w.zigzag(s.last);
                s.acc.encode(w);
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
            let m = r.count(3, "sessions")?;
            let mut ss: Vec<Session> = Vec::with_capacity(m);
            for _ in 0..m {
                let start = r.zigzag("session start")?;
                let last = r.zigzag("session last event")?;
                let ordered = ss.last().is_none_or(|p| p.last + self.gap <= start);
                if last < start || !ordered {
                    return Err(DecodeError::Invalid("session bounds"));
                }
                let acc = Acc::decode(r, layout)?;
                self.closing.insert((last + self.gap, key.clone(), start));
                ss.push(Session { start, last, acc });
            }
            if !ss.is_empty() {
                self.groups.insert(key, ss);
            }
        }
        Ok(())
    }
}
