//! The sink's producer identity and in-flight journal, in the state database.
//!
//! Exactly-once into the collector needs a resent batch to be the *same*
//! batch: same records, partition and sequence numbers. Before a batch is
//! sent, its spool range, partition choice and base sequences are committed
//! here; after a crash the sink re-forms exactly those batches from the spool
//! and resends them, and the collector answers "duplicate" for the ones it has.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::{StateError, StateStore};

/// The producer identity of one sink, issued by the collector.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    /// Issued by the collector. False for an id an older agent made itself;
    /// such an id is replaced on start (see `CollectorSink::migrate`).
    #[serde(default)]
    pub issued: bool,
}

/// A batch sent or about to be sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Spool ids `[start, end)`.
    pub start: u64,
    pub end: u64,
    /// Partition of the batch's records without a key.
    pub keyless_partition: u32,
    /// Base sequence per partition the batch writes to.
    pub base_seqs: BTreeMap<u32, i32>,
}

/// Everything the sink persists.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Journal {
    pub producer: Option<Producer>,
    /// Next sequence per partition.
    pub next_seq: BTreeMap<u32, i32>,
    /// Batches not yet known to be acknowledged, oldest first.
    pub inflight: Vec<Entry>,
    /// Partition count the entries were formed with (keyed records hash by it).
    pub partitions: u32,
}

const KEY: &str = "collector_journal";

impl Journal {
    /// Loads the journal of sink `id`, or an empty one.
    pub fn load(state: &StateStore, id: &str) -> Result<Journal, StateError> {
        Ok(state
            .get(id, KEY)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// Commits the journal durably.
    pub fn save(&self, state: &StateStore, id: &str) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        state.put(id, KEY, &bytes)
    }

    /// Starts a new epoch (or a new id) the collector issued: sequences
    /// restart at 0 and the in-flight batches are forgotten (they are re-read
    /// from the channel and re-formed under the new identity).
    pub fn start_epoch(&mut self, p: Producer) {
        self.producer = Some(p);
        self.next_seq.clear();
        self.inflight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trips_through_the_state_db() {
        let s = StateStore::in_memory().unwrap();
        assert_eq!(Journal::load(&s, "sink").unwrap(), Journal::default());
        let mut j = Journal {
            producer: Some(Producer {
                id: 42,
                epoch: 0,
                issued: true,
            }),
            partitions: 2,
            ..Default::default()
        };
        j.next_seq.insert(1, 500);
        j.inflight.push(Entry {
            start: 10,
            end: 20,
            keyless_partition: 1,
            base_seqs: [(1, 490)].into(),
        });
        j.save(&s, "sink").unwrap();
        assert_eq!(Journal::load(&s, "sink").unwrap(), j);
        j.start_epoch(Producer {
            id: 42,
            epoch: 1,
            issued: true,
        });
        assert_eq!(j.producer.unwrap().epoch, 1);
        assert!(j.inflight.is_empty() && j.next_seq.is_empty());
        // A journal written before ids were issued loads as not issued.
        let old = r#"{"producer":{"id":7,"epoch":0},"next_seq":{},"inflight":[],"partitions":1}"#;
        let j: Journal = serde_json::from_str(old).unwrap();
        assert!(!j.producer.unwrap().issued);
    }
}
