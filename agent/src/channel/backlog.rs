//! What a channel holds that its sink has not acknowledged, in bytes and
//! by age: the figures behind `weir_channel_bytes` and
//! `weir_channel_lag_seconds`, and the backlog logged when a sink recovers.
//!
//! The channel records each append as a span of ids with its bytes and the
//! time it was written. An acknowledgement removes whole spans and
//! prorates a partly acknowledged one by its ids. The number of spans is
//! bounded: past [`MAX_SPANS`] a new append is merged into the newest span,
//! which keeps its (older) time, so under a long outage the age of the
//! newest records is over- rather than under-stated; the oldest ones, which
//! make the lag, stay exact.

use std::collections::VecDeque;

/// Spans kept before new appends are merged into the newest one.
pub const MAX_SPANS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    first: u64,
    end: u64,
    bytes: u64,
    /// When the span was written, seconds since the Unix epoch.
    at: f64,
}

/// A channel's unacknowledged records by id range, bytes and time written.
#[derive(Debug, Default)]
pub struct Backlog {
    spans: VecDeque<Span>,
    /// Every id below this is acknowledged (or dropped).
    acked: u64,
    /// The bytes of the spans, the first one whole.
    total: u64,
}

impl Backlog {
    /// Records that ids `first..end` were written at `at`, taking `bytes`.
    pub fn added(&mut self, first: u64, end: u64, bytes: u64, at: f64) {
        if end <= first.max(self.acked) {
            return;
        }
        self.total += bytes;
        let full = self.spans.len() >= MAX_SPANS;
        match self.spans.back_mut() {
            Some(last) if full => {
                last.end = last.end.max(end);
                last.bytes += bytes;
            }
            _ => self.spans.push_back(Span {
                first,
                end,
                bytes,
                at,
            }),
        }
    }

    /// Forgets every id below `end` (acknowledged, or dropped when full).
    pub fn acked(&mut self, end: u64) {
        self.acked = self.acked.max(end);
        while let Some(s) = self.spans.front() {
            if s.end > self.acked {
                break;
            }
            self.total -= s.bytes;
            self.spans.pop_front();
        }
    }

    /// Bytes not yet acknowledged (a partly acknowledged append prorated by ids).
    pub fn bytes(&self) -> u64 {
        let Some(head) = self.spans.front() else {
            return 0;
        };
        let ids = head.end - head.first;
        let done = self.acked.saturating_sub(head.first).min(ids);
        let head_acked = if ids == 0 {
            0
        } else {
            (u128::from(head.bytes) * u128::from(done) / u128::from(ids)) as u64
        };
        self.total - head_acked
    }

    /// When the oldest unacknowledged record was written, if any is left.
    pub fn oldest(&self) -> Option<f64> {
        self.spans.front().map(|s| s.at)
    }

    /// Seconds since the oldest unacknowledged record was written; 0 when none is.
    pub fn lag(&self, now: f64) -> f64 {
        self.oldest().map_or(0.0, |at| (now - at).max(0.0))
    }
}

/// Now, in seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledging_removes_bytes_and_prorates_a_partly_acknowledged_append() {
        let mut b = Backlog::default();
        b.added(0, 10, 1000, 100.0);
        b.added(10, 20, 500, 105.0);
        assert_eq!(b.bytes(), 1500);
        b.acked(5);
        assert_eq!(b.bytes(), 1000, "half of the first append is left");
        assert_eq!(b.lag(110.0), 10.0, "the first append is still the oldest");
        b.acked(10);
        assert_eq!(b.bytes(), 500);
        assert_eq!(b.lag(110.0), 5.0);
        b.acked(20);
        assert_eq!(b.bytes(), 0);
        assert_eq!(b.lag(110.0), 0.0);
    }

    #[test]
    fn spans_are_bounded_and_merged_into_the_newest() {
        let mut b = Backlog::default();
        for i in 0..(MAX_SPANS as u64 + 100) {
            b.added(i, i + 1, 10, i as f64);
        }
        assert_eq!(b.spans.len(), MAX_SPANS);
        assert_eq!(b.bytes(), 10 * (MAX_SPANS as u64 + 100));
        assert_eq!(b.oldest(), Some(0.0));
        b.acked(MAX_SPANS as u64 + 100);
        assert_eq!(b.bytes(), 0);
        assert!(b.spans.is_empty());
    }

    #[test]
    fn an_append_below_the_acknowledged_cursor_is_ignored() {
        let mut b = Backlog::default();
        b.acked(50);
        b.added(10, 20, 100, 1.0);
        assert_eq!(b.bytes(), 0);
        assert_eq!(b.oldest(), None);
    }
}
