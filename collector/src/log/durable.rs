//! Making files and directory entries durable, and the data directory lock.
//!
//! An fsync of a file makes its data durable, not the directory entry that
//! names it: after a power cut a new file whose directory was never fsynced
//! may simply not exist. So every function here that creates or renames a
//! name fsyncs the parent directory before it returns, and the collector
//! acknowledges nothing that depends on a name before that.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Fsyncs a directory, making the names created, renamed or removed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, fsyncing the parent of each one
/// created, so the whole path survives a power cut once this returns.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        p = d.parent();
    }
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            // Another thread created it first; it still needs the parent fsync
            // below before anyone relies on it, which is harmless to repeat.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Writes a small file atomically and durably: a temporary file, fsync,
/// rename over `path`, fsync the directory. A reader sees the old or the new
/// content, never a mix, before and after a power cut.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// An exclusive lock on a data directory, held for the life of the value.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("another collector is using data directory {dir} (it holds {dir}/lock); stop it first, or use another --data directory")]
    Held { dir: PathBuf },
    #[error("locking data directory {dir}: {source}")]
    Io { dir: PathBuf, source: io::Error },
}

/// Takes `dir/lock` with `flock(LOCK_EX | LOCK_NB)`. Two collectors on one
/// directory would assign the same offsets to different batches; the second
/// one must not start. The lock is released by the kernel when the process
/// exits, however it exits, so a crash never leaves a stale lock behind.
pub fn lock_dir(dir: &Path) -> Result<DirLock, LockError> {
    let io = |source| LockError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    create_dir_durable(dir).map_err(io)?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(io)?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            LockError::Held {
                dir: dir.to_path_buf(),
            }
        } else {
            io(e)
        });
    }
    Ok(DirLock { _file: f })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path()).unwrap();
        let second = lock_dir(dir.path()).unwrap_err();
        assert!(matches!(second, LockError::Held { .. }), "{second}");
        assert!(second.to_string().contains("another collector"));
        drop(first);
        lock_dir(dir.path()).unwrap();
    }

    #[test]
    fn create_dir_durable_creates_every_missing_level() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_durable(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_durable(&deep).unwrap();
    }
}
