//! Idempotent append: per partition, what each producer has written.
//!
//! Kafka's idempotent producer rules, with one change that matters at the
//! edge: the state is not limited to a time window. It is rebuilt on start
//! from the batch headers in the log (which carry producer id, epoch and
//! sequence), so it lives exactly as long as the producer's data is retained.
//! An agent that was offline for days can resend its spool and nothing is
//! appended twice.
//!
//! Decision for a batch (pid, epoch, base_seq, count) against the entry of pid:
//! - pid = -1 (non-idempotent producer): append;
//! - no entry: append if base_seq = 0, else unknown producer (the producer
//!   starts a new epoch). Accepting any sequence here would let a pipelined
//!   second batch land before the first, which would then look "already held";
//! - epoch < entry epoch: fenced;
//! - epoch > entry epoch: append if base_seq = 0 (a new epoch restarts sequences);
//! - base_seq = entry.next_seq: append;
//! - the same (base_seq, last_seq) as one of the last RECENT batches: duplicate,
//!   answered with that batch's original offsets;
//! - otherwise: out of order, answered with the expected sequence.

use std::collections::{HashMap, VecDeque};

use weir_core::batch::{wrapping_seq_add, BatchHeader};

/// Batches per producer remembered with their offsets, for duplicate answers.
/// Larger than any agent's in-flight window, so a resend of unacknowledged
/// batches always finds them.
pub const RECENT: usize = 32;

/// How far ahead of the expected sequence a batch may be to be taken for
/// one that overtook its predecessors (16 batches in flight of up to a
/// million records each, the most an agent sends, is within it).
pub const AHEAD: i64 = 1 << 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    epoch: i16,
    next_seq: i32,
    last_offset: i64,
    recent: VecDeque<Written>,
}

/// The verdict on a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it.
    Append,
    /// Already written at these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
    /// Sequence gap or overlap; the producer should continue from `expected`.
    OutOfOrder { expected: i32 },
    /// A newer epoch of the producer exists.
    Fenced { current_epoch: i16 },
    /// No state for this producer (new, or its data expired) and the batch does not start an epoch.
    UnknownProducer,
}

/// Producer state of one partition.
#[derive(Debug, Default)]
pub struct Producers {
    entries: HashMap<i64, Entry>,
}

impl Producers {
    /// Decides what to do with a batch.
    pub fn check(&self, h: &BatchHeader) -> Check {
        if h.producer_id < 0 {
            return Check::Append;
        }
        let Some(e) = self.entries.get(&h.producer_id) else {
            return if h.base_sequence == 0 {
                Check::Append
            } else {
                Check::UnknownProducer
            };
        };
        if h.producer_epoch < e.epoch {
            return Check::Fenced {
                current_epoch: e.epoch,
            };
        }
        if h.producer_epoch > e.epoch {
            return if h.base_sequence == 0 {
                Check::Append
            } else {
                Check::OutOfOrder { expected: 0 }
            };
        }
        if h.base_sequence == e.next_seq {
            return Check::Append;
        }
        let last = h.last_sequence();
        if let Some(w) = e
            .recent
            .iter()
            .find(|w| w.first_seq == h.base_sequence && w.last_seq == last)
        {
            return Check::Duplicate {
                base_offset: w.base_offset,
                last_offset: w.last_offset,
            };
        }
        Check::OutOfOrder {
            expected: e.next_seq,
        }
    }

    /// Records a batch that is now in the log (`h.base_offset` assigned).
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let w = Written {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        let e = self.entries.entry(h.producer_id).or_insert_with(|| Entry {
            epoch: h.producer_epoch,
            next_seq: 0,
            last_offset: -1,
            recent: VecDeque::with_capacity(RECENT),
        });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.recent.clear();
        }
        e.next_seq = wrapping_seq_add(w.last_seq, 1);
        e.last_offset = w.last_offset;
        if e.recent.len() == RECENT {
            e.recent.pop_front();
        }
        e.recent.push_back(w);
    }

    /// Whether `h` is ahead of its producer: it is not appendable now, but
    /// would be once the batches before it arrive (a pipelining producer's
    /// next batch that overtook the one before it on another connection).
    /// True for a gap in the current epoch of at most [`AHEAD`] sequence
    /// numbers, and for a later batch of an epoch (or of a producer) whose
    /// first batch, sequence 0, is not appended yet. Never for a duplicate,
    /// an overlap, a fenced epoch or a producer that does not use sequences.
    pub fn waits_for_earlier(&self, h: &BatchHeader) -> bool {
        match self.check(h) {
            Check::UnknownProducer => h.base_sequence > 0,
            Check::OutOfOrder { expected } => {
                let current = self
                    .entries
                    .get(&h.producer_id)
                    .is_some_and(|e| e.epoch == h.producer_epoch);
                if !current {
                    return h.base_sequence > 0;
                }
                // Distance forward from `expected`, in the wrapping space.
                let span = i64::from(i32::MAX) + 1;
                let ahead = (i64::from(h.base_sequence) - i64::from(expected)).rem_euclid(span);
                ahead > 0 && ahead <= AHEAD
            }
            Check::Append | Check::Duplicate { .. } | Check::Fenced { .. } => false,
        }
    }

    /// (epoch, next sequence) of a producer, if known.
    pub fn position(&self, producer_id: i64) -> Option<(i16, i32)> {
        self.entries
            .get(&producer_id)
            .map(|e| (e.epoch, e.next_seq))
    }

    /// Headers that rebuild exactly this state when passed to [`Producers::record`]
    /// in order: each producer's remembered batches, by offset (for snapshots).
    pub fn replay_headers(&self) -> Vec<BatchHeader> {
        let mut out: Vec<BatchHeader> = self
            .entries
            .iter()
            .flat_map(|(&producer_id, e)| {
                e.recent.iter().map(move |w| BatchHeader {
                    base_offset: w.base_offset,
                    batch_length: (weir_core::batch::HEADER_LEN - weir_core::batch::LOG_OVERHEAD)
                        as i32,
                    attributes: 0,
                    last_offset_delta: (w.last_offset - w.base_offset) as i32,
                    first_timestamp: 0,
                    max_timestamp: 0,
                    producer_id,
                    producer_epoch: e.epoch,
                    base_sequence: w.first_seq,
                    record_count: (w.last_offset - w.base_offset) as i32 + 1,
                })
            })
            .collect();
        out.sort_by_key(|h| h.base_offset);
        out
    }

    /// Forgets producers whose last write is below the log start: their data is gone.
    pub fn expire_below(&mut self, log_start: i64) {
        self.entries.retain(|_, e| e.last_offset >= log_start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            attributes: 0,
            last_offset_delta: count - 1,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn resent_batch_is_a_duplicate_with_its_original_offsets() {
        let mut p = Producers::default();
        p.record(&h(1, 0, 0, 10, 500));
        p.record(&h(1, 0, 10, 5, 510));
        assert_eq!(
            p.check(&h(1, 0, 0, 10, -1)),
            Check::Duplicate {
                base_offset: 500,
                last_offset: 509
            }
        );
        assert_eq!(
            p.check(&h(1, 0, 10, 5, -1)),
            Check::Duplicate {
                base_offset: 510,
                last_offset: 514
            }
        );
        assert_eq!(p.check(&h(1, 0, 15, 1, -1)), Check::Append);
    }

    #[test]
    fn gaps_and_partial_overlaps_are_refused_with_the_expected_sequence() {
        let mut p = Producers::default();
        p.record(&h(1, 0, 0, 10, 0));
        assert_eq!(
            p.check(&h(1, 0, 11, 1, -1)),
            Check::OutOfOrder { expected: 10 }
        );
        assert_eq!(
            p.check(&h(1, 0, 5, 10, -1)),
            Check::OutOfOrder { expected: 10 }
        );
    }

    #[test]
    fn older_epoch_is_fenced_and_newer_epoch_restarts() {
        let mut p = Producers::default();
        p.record(&h(1, 2, 40, 1, 0));
        assert_eq!(
            p.check(&h(1, 1, 41, 1, -1)),
            Check::Fenced { current_epoch: 2 }
        );
        assert_eq!(p.check(&h(1, 3, 0, 1, -1)), Check::Append);
    }

    #[test]
    fn unknown_and_expired_producers_must_start_an_epoch_at_zero() {
        let mut p = Producers::default();
        // A pipelined second batch arriving first must not be taken as the start.
        assert_eq!(p.check(&h(9, 0, 777, 1, -1)), Check::UnknownProducer);
        assert_eq!(p.check(&h(9, 0, 0, 1, -1)), Check::Append);
        p.record(&h(9, 0, 0, 1, 3));
        p.expire_below(4);
        assert_eq!(p.position(9), None);
        assert_eq!(p.check(&h(9, 0, 1, 1, -1)), Check::UnknownProducer);
    }

    #[test]
    fn replaying_the_exported_headers_rebuilds_the_same_decisions() {
        let mut p = Producers::default();
        for k in 0..40 {
            p.record(&h(1, 0, k * 3, 3, 100 + i64::from(k) * 3));
        }
        p.record(&h(2, 5, 0, 1, 1000));
        let mut q = Producers::default();
        for x in p.replay_headers() {
            q.record(&x);
        }
        for probe in [
            h(1, 0, 117, 3, -1),
            h(1, 0, 120, 1, -1),
            h(1, 0, 60, 3, -1),
            h(2, 4, 1, 1, -1),
            h(2, 5, 1, 1, -1),
        ] {
            assert_eq!(p.check(&probe), q.check(&probe), "{probe:?}");
        }
        assert_eq!(p.position(1), q.position(1));
    }

    #[test]
    fn only_a_batch_that_overtook_its_predecessors_waits_for_them() {
        let mut p = Producers::default();
        // Sequence 0 of a new producer, or of a new epoch, not here yet.
        assert!(p.waits_for_earlier(&h(1, 0, 10, 10, -1)));
        assert!(!p.waits_for_earlier(&h(1, 0, 0, 10, -1)), "appendable now");
        p.record(&h(1, 0, 0, 10, 0));
        assert!(p.waits_for_earlier(&h(1, 0, 20, 10, -1)), "a gap ahead");
        assert!(
            p.waits_for_earlier(&h(1, 1, 5, 1, -1)),
            "a later epoch's second batch"
        );
        assert!(!p.waits_for_earlier(&h(1, 0, 10, 10, -1)), "next in line");
        assert!(!p.waits_for_earlier(&h(1, 0, 0, 10, -1)), "a duplicate");
        assert!(!p.waits_for_earlier(&h(1, 0, 5, 10, -1)), "an overlap");
        assert!(!p.waits_for_earlier(&h(-1, -1, -1, 1, -1)), "no sequences");
        let far = 10 + AHEAD as i32 + 1;
        assert!(!p.waits_for_earlier(&h(1, 0, far, 1, -1)), "too far ahead");
        p.record(&h(1, 2, 0, 1, 10));
        assert!(!p.waits_for_earlier(&h(1, 1, 11, 1, -1)), "fenced");
        // Ahead across the wrap of the sequence space.
        p.record(&h(3, 0, i32::MAX - 9, 5, 20));
        assert!(p.waits_for_earlier(&h(3, 0, 3, 1, -1)));
    }

    #[test]
    fn sequence_wraps_past_i32_max() {
        let mut p = Producers::default();
        p.record(&h(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(p.position(1), Some((0, 0)));
        assert_eq!(p.check(&h(1, 0, 0, 1, -1)), Check::Append);
    }
}
