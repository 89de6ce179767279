//! The agent's state database (SQLite in WAL mode, `synchronous=FULL`): file
//! source checkpoints and small per-component state such as a sink's producer
//! id and in-flight batch journal.
//!
//! Calls block on disk I/O; async callers wrap them in `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

/// A state database failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database's own consistency check failed.
    #[error("state database is damaged: {0}")]
    Damaged(String),
    /// A damaged database could not be moved aside.
    #[error("cannot move the damaged state database aside: {0}")]
    Quarantine(String),
}

/// Where a file source stands in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheckpoint {
    /// Stable name of this file instance (also its stream name in channels).
    pub key: String,
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    /// Bytes of the file's start covered by `fp_crc`.
    pub fp_len: u64,
    /// CRC-32C of the first `fp_len` bytes: tells a reused inode from the file we knew.
    pub fp_crc: u32,
    /// Byte offset just past the last line handed to the channels.
    pub offset: u64,
}

/// A handle on the state database; cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    conn: Arc<Mutex<Connection>>,
}

impl StateStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        Self::init(Connection::open(path)?)
    }

    /// Opens the database at `path`; if it is damaged (it does not open, or
    /// fails SQLite's `quick_check`), moves it and its WAL aside into
    /// `quarantine/` next to it and starts an empty one. A damaged state
    /// database must never stop the agent: sources rebuild their positions
    /// from what the spools hold (`SourceContext::held`). Returns the store
    /// and where the damaged copy went, if it was damaged.
    pub fn open_or_quarantine(path: &Path) -> Result<(StateStore, Option<PathBuf>), StateError> {
        let damage = match Self::open(path) {
            Ok(s) => match s.check() {
                Ok(()) => return Ok((s, None)),
                Err(e) => e,
            },
            Err(e) => e,
        };
        let dir = path.parent().unwrap_or(Path::new(".")).join("quarantine");
        let stamp = weir_core::event::now_nanos();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state.db".into());
        let moved = dir.join(format!("{name}.{stamp}"));
        std::fs::create_dir_all(&dir).map_err(|e| StateError::Quarantine(e.to_string()))?;
        for suffix in ["", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", path.display()));
            if from.exists() {
                let to = PathBuf::from(format!("{}{suffix}", moved.display()));
                std::fs::rename(&from, &to).map_err(|e| StateError::Quarantine(e.to_string()))?;
            }
        }
        tracing::error!(path = %path.display(), quarantined = %moved.display(), error = %damage,
            "The state database is damaged; moved it aside and started an empty one. Source positions are rebuilt from the spools.");
        Ok((Self::open(path)?, Some(moved)))
    }

    /// SQLite's fast consistency check.
    fn check(&self) -> Result<(), StateError> {
        let res: String = self
            .conn()
            .query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if res == "ok" {
            Ok(())
        } else {
            Err(StateError::Damaged(res))
        }
    }

    /// A private in-memory database (tests, and agents with no data dir).
    pub fn in_memory() -> Result<StateStore, StateError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<StateStore, StateError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed checkpoint survives power loss, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A small, reused WAL: the database shares the disk with the spools
        // and must keep working when that disk is nearly full.
        conn.pragma_update(None, "wal_autocheckpoint", 64)?;
        conn.pragma_update(None, "journal_size_limit", 512 * 1024)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS file_checkpoints (
                source TEXT NOT NULL, key TEXT NOT NULL, path TEXT NOT NULL,
                dev INTEGER NOT NULL, ino INTEGER NOT NULL,
                fp_len INTEGER NOT NULL, fp_crc INTEGER NOT NULL, offset INTEGER NOT NULL,
                PRIMARY KEY (source, key));
             CREATE TABLE IF NOT EXISTS component_state (
                component TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                PRIMARY KEY (component, key));",
        )?;
        Ok(StateStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// All checkpoints of a file source.
    pub fn file_checkpoints(&self, source: &str) -> Result<Vec<FileCheckpoint>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT key, path, dev, ino, fp_len, fp_crc, offset FROM file_checkpoints WHERE source = ?1")?;
        let rows = stmt.query_map([source], |r| {
            Ok(FileCheckpoint {
                key: r.get(0)?,
                path: r.get(1)?,
                dev: r.get::<_, i64>(2)? as u64,
                ino: r.get::<_, i64>(3)? as u64,
                fp_len: r.get::<_, i64>(4)? as u64,
                fp_crc: r.get::<_, i64>(5)? as u32,
                offset: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces a file source's checkpoints with `current` in one transaction;
    /// entries not in `current` (files that are gone) are deleted.
    pub fn replace_file_checkpoints(
        &self,
        source: &str,
        current: &[FileCheckpoint],
    ) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM file_checkpoints WHERE source = ?1", [source])?;
        {
            let mut ins = tx.prepare("INSERT INTO file_checkpoints (source, key, path, dev, ino, fp_len, fp_crc, offset) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
            for c in current {
                ins.execute(params![
                    source,
                    c.key,
                    c.path,
                    c.dev as i64,
                    c.ino as i64,
                    c.fp_len as i64,
                    i64::from(c.fp_crc),
                    c.offset as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A component's value for `key`.
    pub fn get(&self, component: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT value FROM component_state WHERE component = ?1 AND key = ?2",
                [component, key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Sets a component's value for `key` (committed durably before returning).
    pub fn put(&self, component: &str, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO component_state (component, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (component, key) DO UPDATE SET value = excluded.value",
            params![component, key, value],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_replaced_and_gone_files_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(&dir.path().join("state.db")).unwrap();
        let c = |key: &str, offset| FileCheckpoint {
            key: key.into(),
            path: "/x".into(),
            dev: 1,
            ino: 2,
            fp_len: 10,
            fp_crc: u32::MAX,
            offset,
        };
        s.replace_file_checkpoints("src", &[c("a", 5), c("b", 6)])
            .unwrap();
        s.replace_file_checkpoints("src", &[c("b", 9)]).unwrap();
        drop(s);
        let s = StateStore::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(s.file_checkpoints("src").unwrap(), vec![c("b", 9)]);
        assert!(s.file_checkpoints("other").unwrap().is_empty());
    }

    #[test]
    fn a_damaged_database_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = StateStore::open(&path).unwrap();
            s.put("sink", "k", b"v").unwrap();
        }
        // Garbage over the header: SQLite no longer recognises the file.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..100].fill(0x5a);
        std::fs::write(&path, &bytes).unwrap();
        assert!(StateStore::open(&path).and_then(|s| s.check()).is_err());
        let (s, moved) = StateStore::open_or_quarantine(&path).unwrap();
        let moved = moved.expect("reported as damaged");
        assert!(moved.exists() && moved.starts_with(dir.path().join("quarantine")));
        assert_eq!(s.get("sink", "k").unwrap(), None, "a fresh database");
        drop(s);
        let (_, again) = StateStore::open_or_quarantine(&path).unwrap();
        assert!(again.is_none(), "the fresh database is healthy");
    }

    #[test]
    fn component_values_round_trip() {
        let s = StateStore::in_memory().unwrap();
        assert_eq!(s.get("sink", "k").unwrap(), None);
        s.put("sink", "k", b"v1").unwrap();
        s.put("sink", "k", b"v2").unwrap();
        assert_eq!(s.get("sink", "k").unwrap(), Some(b"v2".to_vec()));
    }
}
