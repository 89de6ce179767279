//! Tumbling and hopping windows: fixed size, starts at multiples of `hop`
//! (`hop = size` for tumbling). An event at `t` is in every window with
//! `start ≤ t < start + size`: `⌈size / hop⌉` of them at most.

use std::collections::BTreeMap;

use super::super::codec::{DecodeError, Reader, Writer};
use super::super::functions::{Acc, Layout};
use super::{read_key, Arrival, Key, Reject, Sink};

/// Open fixed windows, by start, each with its groups in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    size: i64,
    hop: i64,
    lateness: i64,
    windows: BTreeMap<i64, BTreeMap<Key, Acc>>,
    open: usize,
}

impl Fixed {
    pub fn new(size: i64, hop: i64, lateness: i64) -> Fixed {
        Fixed {
            size,
            hop,
            lateness,
            windows: BTreeMap::new(),
            open: 0,
        }
    }

    /// Starts of the windows holding `t`, earliest first.
    fn starts(&self, t: i64) -> impl Iterator<Item = i64> {
        let last = t.div_euclid(self.hop) * self.hop;
        // The smallest multiple of hop above t − size.
        let first = (t - self.size).div_euclid(self.hop) * self.hop + self.hop;
        let hop = self.hop;
        (0..)
            .map(move |i| first + i * hop)
            .take_while(move |s| *s <= last)
    }

    fn close_time(&self, start: i64) -> i64 {
        start + self.size + self.lateness
    }

    pub fn accept(
        &mut self,
        a: &Arrival,
        layout: &Layout,
        watermark: i64,
        max_groups: usize,
    ) -> Result<(), Reject> {
        let Some(first) = self.starts(a.t).next() else {
            return Err(Reject::Late);
        };
        if self.close_time(first) <= watermark {
            return Err(Reject::Late);
        }
        let new = self
            .starts(a.t)
            .filter(|s| self.windows.get(s).is_none_or(|g| !g.contains_key(a.key)))
            .count();
        if self.open + new > max_groups {
            return Err(Reject::MaxGroups);
        }
        let starts: Vec<i64> = self.starts(a.t).collect();
        for s in starts {
            let groups = self.windows.entry(s).or_default();
            let acc = match groups.get_mut(a.key) {
                Some(acc) => acc,
                None => groups
                    .entry(a.key.into())
                    .or_insert_with(|| Acc::new(layout)),
            };
            acc.add(layout, a.t, a.seq, a.input);
        }
        self.open += new;
        Ok(())
    }

    pub fn close(&mut self, watermark: i64, sink: Sink) {
        while let Some(start) = self.windows.keys().next().copied() {
            if self.close_time(start) > watermark {
                break;
            }
            let Some(groups) = self.windows.remove(&start) else {
                break;
            };
            self.open -= groups.len();
            for (key, acc) in &groups {
                sink(start, start + self.size, key, acc);
            }
        }
    }

    pub fn next_close(&self) -> Option<i64> {
        self.windows.keys().next().map(|&s| self.close_time(s))
    }

    pub fn open(&self) -> usize {
        self.open
    }

    /// `varint windows, each: zigzag start, varint groups, each: key, acc`.
    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.windows.len() as u64);
        for (start, groups) in &self.windows {
            w.zigzag(*start);
            w.varint(groups.len() as u64);
            for (key, acc) in groups {
                w.bytes(key);
                acc.encode(w);
            }
        }
    }

    pub fn decode(
        &mut self,
        r: &mut Reader,
        layout: &Layout,
        valid_key: &dyn Fn(&[u8]) -> bool,
    ) -> Result<(), DecodeError> {
        let n = r.count(2, "windows")?;
        for _ in 0..n {
            let start = r.zigzag("window start")?;
            if start.rem_euclid(self.hop) != 0 {
                return Err(DecodeError::Invalid("window start"));
            }
            let g = r.count(2, "groups")?;
            let mut groups = BTreeMap::new();
            for _ in 0..g {
                let key = read_key(r, valid_key)?;
                groups.insert(key, Acc::decode(r, layout)?);
            }
            self.open += groups.len();
            self.windows.insert(start, groups);
        }
        Ok(())
    }
}
