//! The sink's producer identity and in-flight journal.
//!
//! Exactly-once into the collector needs a resent batch to be the *same*
//! batch: same records, partition and sequence numbers. Before a batch is
//! sent, its spool range, partition choice and base sequences are committed;
//! after a crash the sink re-forms exactly those batches from the spool and
//! resends them, and the collector answers "duplicate" for the ones it has.
//!
//! Where it is committed:
//!
//! | channel | journal kept in | per batch |
//! |---|---|---|
//! | disk | the spool's cursor, as the sink's *note* (`BlockingInput::commit`) | one write + fsync, which also carries the acknowledgement |
//! | memory | the state database | one SQLite transaction |
//!
//! Agents before the note kept it in the state database. On start a disk
//! channel without a note takes the database's journal (the upgrade); once
//! the first note is committed the database copy is replaced by a marker
//! (`in_spool`), so a note lost later (a damaged cursor) is told apart from
//! an upgrade: the sink then starts afresh under a new producer id instead
//! of resending under sequence numbers the collector has seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use tracing::warn;

use crate::component::BlockingInput;
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
    /// In the state database only: the journal lives in the spool's note.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_spool: bool,
}

/// Where [`Journal::load_from`] found the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// In the spool's note.
    Spool,
    /// In the state database, not yet marked as moved (an upgrade, a fresh
    /// sink, or a memory channel).
    Database,
    /// The database says it moved to the spool, but the spool has no note
    /// (a damaged cursor, a deleted spool): an empty journal.
    Lost,
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

    /// Loads the journal of sink `id`: from the spool's note when the channel
    /// is durable, else (or before the first note) from the state database.
    pub fn load_from(
        state: &StateStore,
        id: &str,
        spool: Option<&dyn BlockingInput>,
    ) -> Result<(Journal, Found), StateError> {
        let db = Journal::load(state, id)?;
        let Some(spool) = spool else {
            return Ok(if db.in_spool {
                (Journal::default(), Found::Lost)
            } else {
                (db, Found::Database)
            });
        };
        match spool.note().and_then(|n| serde_json::from_slice(&n).ok()) {
            Some(j) => Ok((j, Found::Spool)),
            None if db.in_spool => {
                warn!(sink = %id, "The sink journal kept in the spool is missing or damaged; starting afresh under a new producer id (batches that were in flight may be delivered again).");
                Ok((Journal::default(), Found::Lost))
            }
            None => Ok((db, Found::Database)),
        }
    }

    /// The journal as the spool's note.
    pub fn to_note(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Replaces the database copy by the marker saying the journal moved
    /// into the spool (after the first note is committed).
    pub fn mark_moved(state: &StateStore, id: &str) -> Result<(), StateError> {
        let marker = Journal {
            in_spool: true,
            ..Journal::default()
        };
        marker.save(state, id)
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

    /// The note store of a disk channel, in memory.
    #[derive(Default)]
    struct Notes(std::sync::Mutex<Option<Vec<u8>>>);

    impl BlockingInput for Notes {
        fn read(
            &self,
            _: usize,
            _: usize,
        ) -> Result<Vec<crate::Record>, crate::component::ReadError> {
            Ok(Vec::new())
        }
        fn commit(&self, _: u64, note: &[u8]) -> Result<(), crate::AckError> {
            *self.0.lock().unwrap() = Some(note.to_vec());
            Ok(())
        }
        fn note(&self) -> Option<Vec<u8>> {
            self.0.lock().unwrap().clone()
        }
    }

    #[test]
    fn an_upgrade_takes_the_database_journal_once_and_then_the_spool_note() {
        let s = StateStore::in_memory().unwrap();
        let mut old = Journal {
            producer: Some(Producer {
                id: 9,
                epoch: 1,
                issued: true,
            }),
            partitions: 1,
            ..Default::default()
        };
        old.next_seq.insert(0, 77);
        old.save(&s, "sink").unwrap();
        let spool = Notes::default();
        // First start after the upgrade: no note yet, the database's journal.
        let (j, found) = Journal::load_from(&s, "sink", Some(&spool)).unwrap();
        assert_eq!((&j, found), (&old, Found::Database));
        // The first commit moves it; the database keeps only the marker.
        let mut moved = j.clone();
        moved.next_seq.insert(0, 80);
        spool.commit(0, &moved.to_note()).unwrap();
        Journal::mark_moved(&s, "sink").unwrap();
        let (j, found) = Journal::load_from(&s, "sink", Some(&spool)).unwrap();
        assert_eq!((&j, found), (&moved, Found::Spool));
        assert!(Journal::load(&s, "sink").unwrap().producer.is_none());
    }

    #[test]
    fn a_lost_note_after_the_move_starts_afresh_instead_of_reusing_old_sequences() {
        let s = StateStore::in_memory().unwrap();
        Journal::mark_moved(&s, "sink").unwrap();
        let (j, found) = Journal::load_from(&s, "sink", Some(&Notes::default())).unwrap();
        assert_eq!((j, found), (Journal::default(), Found::Lost));
        // A memory channel keeps its journal in the database.
        let (j, found) = Journal::load_from(&s, "other", None).unwrap();
        assert_eq!((j, found), (Journal::default(), Found::Database));
    }
}
