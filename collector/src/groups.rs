//! Consumer groups: the collector keeps each group's committed offsets per
//! topic-partition, so a consumer resumes where the last one of its group stopped.
//! One small JSON file per (group, topic), replaced atomically on each commit.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use weir_core::protocol::GroupOffset;

use crate::log::durable::{create_dir_durable, write_atomic};

/// Why a group's offsets could not be read or committed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The group's file is damaged: it is refused, not reset (a reset would
    /// make the group read everything again, or skip what it never read).
    #[error("consumer group {group} offsets for topic {topic} are damaged ({path}: {reason}); restore or delete the file (see docs/operations.md)")]
    Damaged {
        group: String,
        topic: String,
        path: PathBuf,
        reason: String,
    },
    #[error("consumer group storage: {0}")]
    Io(#[from] io::Error),
}

/// Committed offsets of all groups.
pub struct Groups {
    dir: PathBuf,
    /// Serialises read-modify-write of the files.
    lock: Mutex<()>,
}

impl Groups {
    /// Groups stored under `data_dir/groups`.
    pub fn new(data_dir: &std::path::Path) -> Groups {
        Groups {
            dir: data_dir.join("groups"),
            lock: Mutex::new(()),
        }
    }

    fn path(&self, group: &str, topic: &str) -> PathBuf {
        self.dir.join(group).join(format!("{topic}.json"))
    }

    /// The stored offsets; a missing file is an empty group, a damaged one an error.
    fn load(&self, group: &str, topic: &str) -> Result<BTreeMap<u32, i64>, GroupError> {
        let path = self.path(group, topic);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            let err = GroupError::Damaged {
                group: group.to_owned(),
                topic: topic.to_owned(),
                path: path.clone(),
                reason: e.to_string(),
            };
            tracing::error!(error = %err, "Consumer group offsets are damaged; refusing the group.");
            err
        })
    }

    /// The group's committed offsets in the topic. Blocking.
    pub fn offsets(&self, group: &str, topic: &str) -> Result<Vec<GroupOffset>, GroupError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self
            .load(group, topic)?
            .into_iter()
            .map(|(partition, offset)| GroupOffset { partition, offset })
            .collect())
    }

    /// Groups with committed offsets. Blocking.
    pub fn list(&self) -> Vec<String> {
        names_in(&self.dir, |p| p.is_dir(), "")
    }

    /// Topics in which `group` has committed offsets. Blocking.
    pub fn topics(&self, group: &str) -> Vec<String> {
        names_in(&self.dir.join(group), |p| p.is_file(), ".json")
    }

    /// Commits offsets (merging with the partitions not named). Blocking.
    /// The file is replaced atomically and durably (and its directory made
    /// durable when new) before this returns.
    pub fn commit(
        &self,
        group: &str,
        topic: &str,
        offsets: &[GroupOffset],
    ) -> Result<(), GroupError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.load(group, topic)?;
        for o in offsets {
            all.insert(o.partition, o.offset);
        }
        create_dir_durable(&self.dir.join(group))?;
        let bytes = serde_json::to_vec(&all).map_err(io::Error::other)?;
        Ok(write_atomic(&self.path(group, topic), &bytes)?)
    }
}

/// Names of the entries of `dir` that pass `keep`, with `suffix` removed
/// (entries without it are skipped), sorted.
fn names_in(
    dir: &std::path::Path,
    keep: impl Fn(&std::path::Path) -> bool,
    suffix: &str,
) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| keep(&e.path()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(name.strip_suffix(suffix)?.to_owned())
        })
        .filter(|n| weir_core::protocol::valid_name(n))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_merge_and_survive_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        let g = Groups::new(dir.path());
        g.commit(
            "g1",
            "t",
            &[
                GroupOffset {
                    partition: 0,
                    offset: 5,
                },
                GroupOffset {
                    partition: 1,
                    offset: 7,
                },
            ],
        )
        .unwrap();
        g.commit(
            "g1",
            "t",
            &[GroupOffset {
                partition: 1,
                offset: 9,
            }],
        )
        .unwrap();
        let g = Groups::new(dir.path());
        assert_eq!(
            g.offsets("g1", "t").unwrap(),
            vec![
                GroupOffset {
                    partition: 0,
                    offset: 5
                },
                GroupOffset {
                    partition: 1,
                    offset: 9
                }
            ]
        );
        assert!(g.offsets("other", "t").unwrap().is_empty());
        assert_eq!(g.list(), vec!["g1".to_owned()]);
        assert_eq!(g.topics("g1"), vec!["t".to_owned()]);
        assert!(g.topics("other").is_empty());
    }

    #[test]
    fn a_damaged_group_file_is_refused_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        let g = Groups::new(dir.path());
        let o = |partition, offset| GroupOffset { partition, offset };
        g.commit("g", "t", &[o(0, 500)]).unwrap();
        let path = dir.path().join("groups/g/t.json");
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 2]).unwrap();
        let g = Groups::new(dir.path());
        assert!(matches!(
            g.offsets("g", "t"),
            Err(GroupError::Damaged { .. })
        ));
        // A commit must not overwrite the damaged file with a partial view.
        assert!(g.commit("g", "t", &[o(1, 7)]).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), &text[..text.len() - 2]);
    }
}
