//! Producer identities issued by the collector (Kafka's InitProducerId).
//!
//! A producer id is issued to the principal that asked for it and bound to
//! that principal for good; each re-init of the id bumps its epoch by one.
//! The log's per-partition producer tables (`log/producers.rs`) decide
//! order and duplicates; this registry decides who may write under an id and
//! which epochs exist:
//!
//! | batch carries | answer |
//! |---|---|
//! | id -1 (a non-idempotent producer) | allowed (no deduplication) |
//! | an id never issued | `InvalidProducerId` |
//! | an id issued to another principal | `InvalidProducerId` |
//! | the id's current epoch | allowed; the log checks the sequence |
//! | an older epoch | `ProducerFenced` |
//! | an epoch never issued (newer than the current one) | `InvalidProducerEpoch` |
//!
//! Epochs never wrap: re-initialising an id whose epoch is [`MAX_EPOCH`] is
//! refused with `EpochExhausted`, and the producer asks for a new id instead.
//!
//! On disk: `producers.json` in the data directory,
//! `{"next_id": N, "producers": {"<id>": {"principal": "...", "epoch": E}}}`,
//! replaced atomically on every change (temp file, fsync, rename, fsync the
//! directory) before the new identity is answered, so an issued id or epoch
//! is never issued twice. A file that does not parse stops the collector
//! from starting (it is never reset: that would re-issue ids).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The last epoch an id can have; re-init past it is refused.
pub const MAX_EPOCH: i16 = i16::MAX;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Issued {
    principal: String,
    epoch: i16,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct File {
    next_id: i64,
    producers: BTreeMap<i64, Issued>,
}

impl Default for File {
    fn default() -> Self {
        File {
            next_id: 1,
            producers: BTreeMap::new(),
        }
    }
}

/// Why an identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("producer id {producer_id} was not issued to principal {principal}")]
    NotYours { producer_id: i64, principal: String },
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    Fenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error(
        "producer {producer_id} epoch {epoch} was never issued (the current epoch is {current})"
    )]
    UnissuedEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error(
        "producer {producer_id} is at the last epoch ({MAX_EPOCH}); ask for a new producer id"
    )]
    EpochExhausted { producer_id: i64 },
    #[error("no producer ids left")]
    IdsExhausted,
    #[error("saving producer identities: {0}")]
    Storage(String),
}

/// Issued producer identities.
pub struct Registry {
    path: PathBuf,
    state: Mutex<File>,
}

impl Registry {
    /// Loads `data_dir/producers.json` (absent: nothing issued yet).
    pub fn open(data_dir: &Path) -> io::Result<Registry> {
        let path = data_dir.join("producers.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is damaged ({e}); restore it from a backup: resetting it would issue producer ids twice", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(e),
        };
        Ok(Registry {
            path,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, File> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a new id (epoch 0) to `principal`, or bumps the epoch of
    /// `existing`, which must be bound to `principal`. Durable before it
    /// returns. Blocking.
    pub fn init(
        &self,
        principal: &str,
        existing: Option<i64>,
    ) -> Result<(i64, i16), IdentityError> {
        let mut st = self.lock();
        let mut next = st.clone();
        let answer = match existing {
            None => {
                let id = next.next_id;
                if id == i64::MAX {
                    return Err(IdentityError::IdsExhausted);
                }
                next.next_id = id + 1;
                next.producers.insert(
                    id,
                    Issued {
                        principal: principal.to_owned(),
                        epoch: 0,
                    },
                );
                (id, 0)
            }
            Some(id) => {
                let Some(e) = next
                    .producers
                    .get_mut(&id)
                    .filter(|e| e.principal == principal)
                else {
                    return Err(IdentityError::NotYours {
                        producer_id: id,
                        principal: principal.to_owned(),
                    });
                };
                if e.epoch == MAX_EPOCH {
                    return Err(IdentityError::EpochExhausted { producer_id: id });
                }
                e.epoch += 1;
                (id, e.epoch)
            }
        };
        let bytes = serde_json::to_vec(&next).map_err(|e| IdentityError::Storage(e.to_string()))?;
        crate::log::durable::write_atomic(&self.path, &bytes)
            .map_err(|e| IdentityError::Storage(e.to_string()))?;
        *st = next;
        Ok(answer)
    }

    /// Whether `principal` may write a batch stamped (`id`, `epoch`).
    pub fn check(&self, principal: &str, id: i64, epoch: i16) -> Result<(), IdentityError> {
        if id < 0 {
            return Ok(());
        }
        let st = self.lock();
        let e = st
            .producers
            .get(&id)
            .filter(|e| e.principal == principal)
            .ok_or_else(|| IdentityError::NotYours {
                producer_id: id,
                principal: principal.to_owned(),
            })?;
        if epoch < e.epoch {
            return Err(IdentityError::Fenced {
                producer_id: id,
                epoch,
                current: e.epoch,
            });
        }
        if epoch > e.epoch {
            return Err(IdentityError::UnissuedEpoch {
                producer_id: id,
                epoch,
                current: e.epoch,
            });
        }
        Ok(())
    }

    /// Whether `principal` may look up where id `id` stands: it was issued to
    /// it, or never issued at all (an id an agent made itself before the
    /// collector issued ids; see `docs/operations.md`, migration).
    pub fn may_inspect(&self, principal: &str, id: i64) -> bool {
        self.lock()
            .producers
            .get(&id)
            .is_none_or(|e| e.principal == principal)
    }

    #[cfg(test)]
    pub(crate) fn set_epoch_for_test(&self, id: i64, epoch: i16) {
        if let Some(e) = self.lock().producers.get_mut(&id) {
            e.epoch = epoch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_issued_once_and_bound_to_their_principal() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        let (a, ea) = r.init("agent-a", None).unwrap();
        let (b, _) = r.init("agent-b", None).unwrap();
        assert_ne!(a, b);
        assert_eq!(ea, 0);
        assert!(r.check("agent-a", a, 0).is_ok());
        assert!(matches!(
            r.check("agent-b", a, 0),
            Err(IdentityError::NotYours { .. })
        ));
        assert!(matches!(
            r.check("agent-a", 999, 0),
            Err(IdentityError::NotYours { .. })
        ));
        assert!(matches!(
            r.init("agent-b", Some(a)),
            Err(IdentityError::NotYours { .. })
        ));
        // Survives a restart.
        let r = Registry::open(dir.path()).unwrap();
        let (c, _) = r.init("agent-c", None).unwrap();
        assert!(c > b);
        assert!(r.check("agent-a", a, 0).is_ok());
    }

    #[test]
    fn re_init_bumps_the_epoch_fencing_the_old_one_and_unissued_epochs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        let (id, _) = r.init("a", None).unwrap();
        assert_eq!(r.init("a", Some(id)).unwrap(), (id, 1));
        assert!(matches!(
            r.check("a", id, 0),
            Err(IdentityError::Fenced { current: 1, .. })
        ));
        assert!(matches!(
            r.check("a", id, i16::MAX),
            Err(IdentityError::UnissuedEpoch { current: 1, .. })
        ));
        assert!(r.check("a", id, 1).is_ok());
    }

    #[test]
    fn the_epoch_never_wraps_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        let (id, _) = r.init("a", None).unwrap();
        r.set_epoch_for_test(id, MAX_EPOCH - 1);
        assert_eq!(r.init("a", Some(id)).unwrap(), (id, MAX_EPOCH));
        assert_eq!(
            r.init("a", Some(id)),
            Err(IdentityError::EpochExhausted { producer_id: id })
        );
        assert!(r.check("a", id, MAX_EPOCH).is_ok());
        assert!(r.check("a", id, 0).is_err());
    }

    #[test]
    fn a_damaged_file_is_reported_never_reset() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        r.init("a", None).unwrap();
        let p = dir.path().join("producers.json");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = Registry::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn unissued_ids_may_be_inspected_by_anyone_issued_ones_by_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        let (id, _) = r.init("a", None).unwrap();
        assert!(r.may_inspect("a", id));
        assert!(!r.may_inspect("b", id));
        assert!(r.may_inspect("b", 123_456_789));
    }
}
