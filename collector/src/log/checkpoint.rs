//! The partition checkpoint: the end offset below which batches may have been
//! acknowledged, made durable before any acknowledgement depends on it.
//!
//! Why: after a crash the tail of the active segment can be torn. Without
//! knowing what was acknowledged, recovery cannot tell a torn, never
//! acknowledged tail (to cut) from damage to acknowledged data (to keep,
//! quarantine and report), and cutting the latter re-issues offsets that
//! consumers already read. With the checkpoint, recovery cuts only at or
//! past `end`, and the log's end never goes below it even if the segments
//! that held it are damaged or gone.
//!
//! Cost: one extra `fdatasync` of this file per group commit (an overwrite
//! in place of an allocated block, so no metadata journal commit). It is
//! pipelined: the checkpoint of one group commit is fsynced while the next
//! group's segment data is (see `partition.rs`), so under load a partition
//! commits at the pace of its data fsyncs alone.
//!
//! # Format (little-endian), file `checkpoint` in the partition directory
//! Two 40-byte slots, at byte 0 and byte 512 (separate sectors). A write
//! goes to the slot not holding the newest generation, so a torn write
//! leaves the other slot, and the previous value, intact.
//! ```text
//! 0   magic          "WCKP"
//! 4   version        u32 = 1
//! 8   generation     u64   +1 per write; the valid slot with the larger wins
//! 16  end_offset     i64   every acknowledged offset is below it
//! 24  max_append_ms  i64   newest collector append time written (retention clock)
//! 32  crc            u32   CRC-32C of bytes 0..32
//! 36  reserved       u32 = 0
//! ```

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"WCKP";
const SLOT: u64 = 512;
const SLOT_BYTES: usize = 40;

/// What a checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub end_offset: i64,
    pub max_append_ms: i64,
}

/// The checkpoint file of one partition.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    generation: u64,
    last: Option<Mark>,
}

/// What was found on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// No file: a new partition, or one written before checkpoints existed.
    Missing,
    /// Both slots damaged.
    Damaged,
    Valid(Mark),
}

impl Checkpoint {
    /// Opens the checkpoint in `dir`, reading its newest valid slot.
    pub fn open(dir: &Path) -> (Checkpoint, Loaded) {
        let path = dir.join("checkpoint");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(_) => {
                let c = Checkpoint {
                    path,
                    generation: 0,
                    last: None,
                };
                return (c, Loaded::Missing);
            }
        };
        let best = [0usize, SLOT as usize]
            .iter()
            .filter_map(|&at| decode_slot(bytes.get(at..at + SLOT_BYTES)?))
            .max_by_key(|(generation, _)| *generation);
        match best {
            Some((generation, mark)) => (
                Checkpoint {
                    path,
                    generation,
                    last: Some(mark),
                },
                Loaded::Valid(mark),
            ),
            None => (
                Checkpoint {
                    path,
                    generation: 0,
                    last: None,
                },
                Loaded::Damaged,
            ),
        }
    }

    /// Durably records `mark` (never lower than what it holds). Blocking.
    /// The caller fsyncs the directory when the file is new.
    pub fn write(&mut self, mark: Mark) -> io::Result<bool> {
        let mark = match self.last {
            Some(l) => Mark {
                end_offset: mark.end_offset.max(l.end_offset),
                max_append_ms: mark.max_append_ms.max(l.max_append_ms),
            },
            None => mark,
        };
        if self.last == Some(mark) {
            return Ok(false);
        }
        // Opened per write, not kept open: a descriptor per partition is
        // what bounds how many partitions fit under the open-files limit,
        // and an open costs microseconds next to the fdatasync.
        let created = !self.path.exists();
        let f: File = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)?;
        let generation = self.generation + 1;
        let at = if generation.is_multiple_of(2) {
            0
        } else {
            SLOT
        };
        f.write_all_at(&encode_slot(generation, mark), at)?;
        f.sync_data()?;
        self.generation = generation;
        self.last = Some(mark);
        Ok(created)
    }

    /// The last value written or read.
    pub fn mark(&self) -> Option<Mark> {
        self.last
    }
}

fn encode_slot(generation: u64, m: Mark) -> [u8; SLOT_BYTES] {
    let mut b = [0u8; SLOT_BYTES];
    b[..4].copy_from_slice(MAGIC);
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    b[8..16].copy_from_slice(&generation.to_le_bytes());
    b[16..24].copy_from_slice(&m.end_offset.to_le_bytes());
    b[24..32].copy_from_slice(&m.max_append_ms.to_le_bytes());
    let crc = crc32c::crc32c(&b[..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_slot(b: &[u8]) -> Option<(u64, Mark)> {
    let b: &[u8; SLOT_BYTES] = b.try_into().ok()?;
    let u64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let crc = u32::from_le_bytes([b[32], b[33], b[34], b[35]]);
    if &b[..4] != MAGIC || b[4..8] != 1u32.to_le_bytes() || crc32c::crc32c(&b[..32]) != crc {
        return None;
    }
    Some((
        u64_at(8),
        Mark {
            end_offset: u64_at(16) as i64,
            max_append_ms: u64_at(24) as i64,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(end: i64) -> Mark {
        Mark {
            end_offset: end,
            max_append_ms: end * 10,
        }
    }

    #[test]
    fn the_newest_valid_slot_wins_and_a_torn_write_leaves_the_previous_value() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, loaded) = Checkpoint::open(dir.path());
        assert_eq!(loaded, Loaded::Missing);
        assert!(c.write(m(10)).unwrap(), "created");
        assert!(!c.write(m(20)).unwrap());
        assert_eq!(Checkpoint::open(dir.path()).1, Loaded::Valid(m(20)));
        // Damage the newest slot (generation 2 is at byte 0): the older value is read.
        let path = dir.path().join("checkpoint");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Checkpoint::open(dir.path()).1, Loaded::Valid(m(10)));
        bytes[512 + 17] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Checkpoint::open(dir.path()).1, Loaded::Damaged);
    }

    #[test]
    fn the_end_never_goes_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _) = Checkpoint::open(dir.path());
        c.write(m(50)).unwrap();
        c.write(m(40)).unwrap();
        assert_eq!(c.mark(), Some(m(50)));
        assert_eq!(Checkpoint::open(dir.path()).1, Loaded::Valid(m(50)));
    }
}
