//! The memory channel: the same bounded FIFO as the disk spool, in RAM, for
//! data that may be lost on a crash or restart. Sizes are estimates of the
//! event's heap footprint.

use std::collections::VecDeque;
use std::sync::Mutex;

use weir_core::{Event, Value};

use super::disk::Appended;
use super::{ChannelMetrics, WhenFull};

struct State {
    queue: VecDeque<(u64, Event, u64)>,
    bytes: u64,
    next_id: u64,
    read_id: u64,
}

/// An in-memory channel.
pub struct MemoryChannel {
    max_bytes: u64,
    when_full: WhenFull,
    state: Mutex<State>,
    metrics: ChannelMetrics,
}

/// Approximate heap bytes an event holds.
pub fn approx_size(e: &Event) -> u64 {
    fn value(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.len() as u64 + 24,
            Value::Bytes(b) => b.len() as u64 + 32,
            Value::Array(a) => 24 + a.iter().map(value).sum::<u64>(),
            Value::Map(m) => {
                48 + m
                    .iter()
                    .map(|(k, v)| k.len() as u64 + 24 + value(v))
                    .sum::<u64>()
            }
            _ => 16,
        }
    }
    96 + e
        .fields
        .iter()
        .map(|(k, v)| k.len() as u64 + 48 + value(v))
        .sum::<u64>()
}

impl MemoryChannel {
    /// A channel holding at most about `max_bytes`.
    pub fn new(max_bytes: u64, when_full: WhenFull, metrics: ChannelMetrics) -> Self {
        MemoryChannel {
            max_bytes,
            when_full,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                next_id: 0,
                read_id: 0,
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends from the front of `events` as the policy allows (see `DiskSpool::append`).
    pub fn append(&self, events: &[Event]) -> Appended {
        let mut s = self.lock();
        let mut out = Appended::default();
        let first_id = s.next_id;
        let mut added_bytes = 0;
        for e in events {
            let size = approx_size(e);
            if s.bytes + size > self.max_bytes {
                match self.when_full {
                    WhenFull::Block => break,
                    WhenFull::DropNewest => {
                        out.consumed += 1;
                        out.dropped_newest += 1;
                        continue;
                    }
                    WhenFull::DropOldest => {
                        while s.bytes + size > self.max_bytes {
                            let Some((id, _, sz)) = s.queue.pop_front() else {
                                break;
                            };
                            s.bytes -= sz;
                            s.read_id = s.read_id.max(id + 1);
                            out.dropped_oldest += 1;
                            self.metrics.released(id + 1);
                        }
                    }
                }
            }
            let id = s.next_id;
            s.next_id += 1;
            s.bytes += size;
            s.queue.push_back((id, e.clone(), size));
            added_bytes += size;
            out.consumed += 1;
        }
        self.metrics.appended(first_id, s.next_id, added_bytes);
        let written = (out.consumed - out.dropped_newest) as u64;
        self.metrics.events_in.add(written);
        self.metrics.dropped_newest.add(out.dropped_newest as u64);
        self.metrics.dropped_oldest.add(out.dropped_oldest);
        self.metrics.records.set(s.queue.len() as i64);
        out
    }

    /// Reads up to `max_events` records after the last one read.
    pub fn read(&self, max_events: usize, max_bytes: usize) -> Vec<(u64, Event)> {
        let mut s = self.lock();
        let first = s.queue.front().map_or(s.next_id, |(id, _, _)| *id);
        let skip = s.read_id.saturating_sub(first) as usize;
        let mut bytes = 0u64;
        let out: Vec<(u64, Event)> = s
            .queue
            .iter()
            .skip(skip)
            .take_while(|(_, _, sz)| {
                bytes += sz;
                bytes <= max_bytes as u64 || bytes == *sz
            })
            .take(max_events)
            .map(|(id, e, _)| (*id, e.clone()))
            .collect();
        if let Some((id, _)) = out.last() {
            s.read_id = id + 1;
        }
        out
    }

    /// Restarts reading at the first unacknowledged record.
    pub fn rewind(&self) {
        let mut s = self.lock();
        s.read_id = s.queue.front().map_or(s.next_id, |(id, _, _)| *id);
    }

    /// Drops every record below `end_id`.
    pub fn ack(&self, end_id: u64) {
        let mut s = self.lock();
        let mut n = 0;
        while s.queue.front().is_some_and(|(id, _, _)| *id < end_id) {
            if let Some((_, _, sz)) = s.queue.pop_front() {
                s.bytes -= sz;
                n += 1;
            }
        }
        self.metrics.events_out.add(n);
        self.metrics.records.set(s.queue.len() as i64);
        self.metrics.released(end_id);
    }
}
