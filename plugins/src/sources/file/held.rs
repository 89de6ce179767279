//! Reconciling the file source's checkpoints with what the spools hold.
//!
//! The spools commit each file stream's position with the lines themselves,
//! so they are never behind the source's own checkpoint in SQLite (which is
//! written only every `checkpoint_interval`). At start the source moves each
//! checkpoint forward to the position every holder already has, and — when
//! the state database was damaged and replaced by an empty one — rebuilds a
//! checkpoint for each stream the spools know, finding its file by device
//! and inode. Without this, a lost state database would make the source read
//! every file again from the start.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::identity;
use crate::state::FileCheckpoint;

/// The device, inode and first-seen time a stream key names
/// (`<source>/<dev>:<ino>:<first seen ns>`).
pub fn parse_key(key: &str) -> Option<(u64, u64, u64)> {
    let (_, rest) = key.rsplit_once('/')?;
    let mut it = rest.split(':');
    let dev = it.next()?.parse().ok()?;
    let ino = it.next()?.parse().ok()?;
    let seen = it.next()?.parse().ok()?;
    it.next().is_none().then_some((dev, ino, seen))
}

/// Moves checkpoints forward to the held positions and rebuilds missing
/// ones. `dirs` are the directories the globs start from. Returns how many
/// streams could not be rebuilt (their files are gone).
pub fn reconcile(
    source: &str,
    checkpoints: &mut Vec<FileCheckpoint>,
    held: &HashMap<String, u64>,
    dirs: &[PathBuf],
    fingerprint_bytes: u64,
) -> u64 {
    for c in checkpoints.iter_mut() {
        if let Some(&pos) = held.get(&c.key) {
            c.offset = c.offset.max(pos);
        }
    }
    // Streams without a checkpoint; per file, only the newest key counts
    // (an older one belongs to the file's content before a copytruncate).
    let known: HashSet<(u64, u64)> = checkpoints.iter().map(|c| (c.dev, c.ino)).collect();
    let mut newest: HashMap<(u64, u64), (u64, &str, u64)> = HashMap::new();
    for (key, &pos) in held {
        if checkpoints.iter().any(|c| &c.key == key) {
            continue;
        }
        let Some((dev, ino, seen)) = parse_key(key) else {
            continue;
        };
        if known.contains(&(dev, ino)) {
            continue;
        }
        let e = newest.entry((dev, ino)).or_insert((seen, key, pos));
        if seen > e.0 {
            *e = (seen, key, pos);
        }
    }
    let mut lost = 0;
    for ((dev, ino), (_, key, pos)) in newest {
        match find_by_inode(dirs, dev, ino) {
            Some((path, file)) => {
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                if size < pos {
                    // Not the file the spool knew (the inode was reused).
                    warn!(source, path = %path.display(), "A file the spool knows was replaced; reading it as new.");
                    continue;
                }
                let Ok(fp) = identity::fingerprint(&file, fingerprint_bytes) else {
                    continue;
                };
                info!(source, path = %path.display(), offset = pos, "Rebuilt a file position from the spool.");
                checkpoints.push(FileCheckpoint {
                    key: key.to_owned(),
                    path: path.display().to_string(),
                    dev,
                    ino,
                    fp_len: fp.len,
                    fp_crc: fp.crc,
                    offset: pos,
                });
            }
            None => lost += 1,
        }
    }
    if lost > 0 {
        warn!(
            source,
            streams = lost,
            "Files the spool knows are gone; their unread lines cannot be recovered."
        );
    }
    lost
}

fn find_by_inode(dirs: &[PathBuf], dev: u64, ino: u64) -> Option<(PathBuf, File)> {
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten().take(100_000) {
            let path = entry.path();
            if let Some(found) = open_if(&path, dev, ino) {
                return Some((path, found));
            }
        }
    }
    None
}

fn open_if(path: &Path, dev: u64, ino: u64) -> Option<File> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    if !m.is_file() || m.dev() != dev || m.ino() != ino {
        return None;
    }
    File::open(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn stream_keys_name_device_inode_and_first_seen() {
        assert_eq!(parse_key("app/2049:1234:1700"), Some((2049, 1234, 1700)));
        assert_eq!(parse_key("app/x:1:2"), None);
        assert_eq!(parse_key("app/1:2"), None);
    }

    #[test]
    fn lost_checkpoints_are_rebuilt_from_held_positions_and_old_ones_moved_forward() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        std::fs::File::create(&a)
            .unwrap()
            .write_all(b"one\ntwo\n")
            .unwrap();
        std::fs::File::create(&b)
            .unwrap()
            .write_all(b"x\ny\nz\n")
            .unwrap();
        let (ma, mb) = (
            std::fs::metadata(&a).unwrap(),
            std::fs::metadata(&b).unwrap(),
        );
        let key_a = format!("src/{}:{}:10", ma.dev(), ma.ino());
        let key_b_old = format!("src/{}:{}:5", mb.dev(), mb.ino());
        let key_b = format!("src/{}:{}:20", mb.dev(), mb.ino());
        let mut cps = vec![FileCheckpoint {
            key: key_a.clone(),
            path: a.display().to_string(),
            dev: ma.dev(),
            ino: ma.ino(),
            fp_len: 8,
            fp_crc: 0,
            offset: 0,
        }];
        let held: HashMap<String, u64> = [
            (key_a.clone(), 4),
            (key_b_old, 6),
            (key_b.clone(), 2),
            ("src/1:999999999:1".to_owned(), 3),
        ]
        .into();
        let lost = reconcile("src", &mut cps, &held, &[dir.path().to_path_buf()], 1024);
        assert_eq!(lost, 1, "the stream whose file is gone");
        assert_eq!(cps[0].offset, 4, "moved forward to what the spool holds");
        let rebuilt = cps.iter().find(|c| c.key == key_b).expect("rebuilt");
        assert_eq!(
            (rebuilt.offset, rebuilt.ino),
            (2, mb.ino()),
            "the newest key of the file"
        );
        assert_eq!(cps.len(), 2);
    }
}
