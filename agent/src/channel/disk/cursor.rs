//! The acknowledged cursor, and the sink's note committed with it.
//!
//! A sink that must remember something about what it has in flight (the
//! collector sink's journal: which spool ranges went out in which batch,
//! under which sequence numbers) commits it *with* the acknowledgement, in
//! the same write and the same fsync: one durable write per batch instead of
//! an acknowledgement plus a database transaction, and the two can never
//! disagree after a crash.
//!
//! # On disk: `<dir>/ack`
//! ```text
//! version 2: two slots of `slot` bytes; the file is exactly 2 × slot long
//! 0   magic  u32 LE  0x324b4341 ("ACK2")
//! 4   crc    u32 LE  CRC-32C of bytes 8 .. 32 + len
//! 8   slot   u32 LE  the slot size (the same in both slots)
//! 12  len    u32 LE  bytes of the note
//! 16  gen    u64 LE  commit generation: written to slot gen % 2
//! 24  acked  u64 LE  every id below is acknowledged
//! 32  note   len bytes, opaque to the spool (empty when the sink keeps none)
//!
//! version 1 (agents before the note): 12 bytes, u64 LE acked + u32 LE CRC-32C
//! ```
//!
//! # Invariants
//! - A commit overwrites the slot of the *older* generation and fsyncs (unless
//!   the policy is `none`): a crash or power loss tears at most that slot, and
//!   the other still holds the previous commit. Open takes the valid slot with
//!   the higher generation. Callers act on a commit only after it returns.
//! - A version 1 file is read once; the first commit rewrites the file whole
//!   (a new file, fsync, rename over `ack`, directory fsync), and so does a
//!   note that outgrows its slot (slots then double). A crash during a
//!   rewrite leaves either the old file or the new one.
//! - One slot unreadable that was written before (a torn commit, or media
//!   damage): the other slot is used and the fallback is logged.
//! - Both slots damaged (media damage, not a crash): acked 0 and no note,
//!   reported; the spool replays what it retains.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::warn;

const MAGIC: u32 = 0x324b_4341;
const HEAD: usize = 32;
const MIN_SLOT: usize = 4096;
/// Largest slot accepted when reading: anything larger in a header is damage.
const MAX_SLOT: usize = 64 << 20;

/// The cursor file of one spool, open for commits.
pub(super) struct Cursor {
    path: PathBuf,
    file: File,
    /// Slot size of the file in version 2 form; 0 for a version 1 (or new) file.
    slot: usize,
    gen: u64,
    acked: u64,
    note: Vec<u8>,
    fsync: bool,
    /// Reused record buffer.
    buf: Vec<u8>,
    /// Whether open found a slot that was written once and no longer reads.
    torn: bool,
}

impl Cursor {
    /// Opens (or creates) the cursor file `dir/ack`.
    pub(super) fn open(dir: &Path, fsync: bool) -> io::Result<Cursor> {
        let path = dir.join("ack");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let len = file.metadata()?.len() as usize;
        let mut c = Cursor {
            path,
            file,
            slot: 0,
            gen: 0,
            acked: 0,
            note: Vec::new(),
            fsync,
            torn: false,
            buf: Vec::new(),
        };
        if len < HEAD * 2 {
            c.acked = read_v1(&c.file, len);
            return Ok(c);
        }
        let slot = len / 2;
        let slots = [0, 1].map(|k| read_slot(&c.file, k * slot, slot));
        c.torn = slots
            .iter()
            .enumerate()
            .any(|(k, s)| s.is_none() && !never_written(&c.file, k * slot));
        let best = slots.into_iter().flatten().max_by_key(|s| s.gen);
        match best {
            Some(s) => {
                if c.torn {
                    // A crash during a commit tears the slot being written;
                    // media damage can hit either. Both leave the other slot.
                    warn!(path = %c.path.display(), generation = s.gen, acked = s.acked, "One slot of the spool ack cursor is torn or damaged; using the other (the collector deduplicates anything sent again).");
                }
                c.slot = slot;
                c.gen = s.gen;
                c.acked = s.acked;
                c.note = s.note;
            }
            None => {
                warn!(path = %c.path.display(), "Spool ack cursor is damaged (both slots); replaying from the oldest retained record, and the sink's note is lost.")
            }
        }
        Ok(c)
    }

    /// Every id below this is acknowledged.
    pub(super) fn acked(&self) -> u64 {
        self.acked
    }

    /// The note of the last commit (empty when none).
    pub(super) fn note(&self) -> &[u8] {
        &self.note
    }

    /// Durably records `acked` and, when given, a new note (else the last one is kept).
    pub(super) fn commit(&mut self, acked: u64, note: Option<&[u8]>) -> io::Result<()> {
        let mut keep = std::mem::take(&mut self.note);
        if let Some(n) = note {
            keep.clear();
            keep.extend_from_slice(n);
        }
        let gen = self.gen + 1;
        let res = self.write(gen, acked, &keep);
        self.note = keep;
        res?;
        self.gen = gen;
        self.acked = acked;
        Ok(())
    }

    fn write(&mut self, gen: u64, acked: u64, note: &[u8]) -> io::Result<()> {
        if self.slot == 0 || HEAD + note.len() > self.slot {
            return self.rewrite(gen, acked, note);
        }
        encode(&mut self.buf, self.slot, gen, acked, note);
        let at = (gen % 2) * self.slot as u64;
        self.file.write_all_at(&self.buf, at)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Writes a new file in version 2 form with slots large enough for
    /// `note`, and renames it over the old one.
    fn rewrite(&mut self, gen: u64, acked: u64, note: &[u8]) -> io::Result<()> {
        let mut slot = MIN_SLOT.max(self.slot);
        while HEAD + note.len() > slot {
            slot *= 2;
        }
        let tmp = self.path.with_extension("new");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        encode(&mut self.buf, slot, gen, acked, note);
        f.write_all_at(&self.buf, (gen % 2) * slot as u64)?;
        f.set_len(2 * slot as u64)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = f;
        self.slot = slot;
        Ok(())
    }
}

struct Slot {
    gen: u64,
    acked: u64,
    note: Vec<u8>,
}

fn encode(buf: &mut Vec<u8>, slot: usize, gen: u64, acked: u64, note: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&MAGIC.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&(slot as u32).to_le_bytes());
    buf.extend_from_slice(&(note.len() as u32).to_le_bytes());
    buf.extend_from_slice(&gen.to_le_bytes());
    buf.extend_from_slice(&acked.to_le_bytes());
    buf.extend_from_slice(note);
    let crc = crc32c::crc32c(&buf[8..]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The slot at `at`, if it is whole and valid.
fn read_slot(f: &File, at: usize, slot: usize) -> Option<Slot> {
    let mut head = [0u8; HEAD];
    f.read_exact_at(&mut head, at as u64).ok()?;
    let len = u32_at(&head, 12) as usize;
    if u32_at(&head, 0) != MAGIC
        || u32_at(&head, 8) as usize != slot
        || slot > MAX_SLOT
        || HEAD + len > slot
    {
        return None;
    }
    let mut note = vec![0u8; len];
    f.read_exact_at(&mut note, (at + HEAD) as u64).ok()?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[8..]), &note);
    (crc == u32_at(&head, 4)).then(|| Slot {
        gen: u64_at(&head, 16),
        acked: u64_at(&head, 24),
        note,
    })
}

/// Whether the slot at `at` still holds the zeros a first commit leaves in
/// the slot it did not write (so its failing to read is not damage).
fn never_written(f: &File, at: usize) -> bool {
    let mut head = [0u8; HEAD];
    f.read_exact_at(&mut head, at as u64).is_ok() && head.iter().all(|&b| b == 0)
}

/// The acked id of a version 1 file (0 when absent or damaged).
fn read_v1(f: &File, len: usize) -> u64 {
    let mut rec = [0u8; 12];
    if len < rec.len() || f.read_exact_at(&mut rec, 0).is_err() {
        return 0;
    }
    if crc32c::crc32c(&rec[..8]) != u32_at(&rec, 8) {
        warn!("Spool ack cursor is damaged; replaying from the oldest retained record (the collector deduplicates).");
        return 0;
    }
    u64_at(&rec, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(dir: &Path, acked: u64) {
        let mut rec = acked.to_le_bytes().to_vec();
        rec.extend_from_slice(&crc32c::crc32c(&rec).to_le_bytes());
        std::fs::write(dir.join("ack"), rec).unwrap();
    }

    #[test]
    fn a_version_1_cursor_is_read_and_rewritten_as_version_2_on_the_first_commit() {
        let d = tempfile::tempdir().unwrap();
        v1(d.path(), 1234);
        let mut c = Cursor::open(d.path(), true).unwrap();
        assert_eq!(c.acked(), 1234);
        assert!(c.note().is_empty());
        c.commit(1300, Some(b"journal")).unwrap();
        assert_eq!(
            std::fs::metadata(d.path().join("ack")).unwrap().len(),
            2 * MIN_SLOT as u64
        );
        let c = Cursor::open(d.path(), true).unwrap();
        assert_eq!((c.acked(), c.note()), (1300, &b"journal"[..]));
    }

    #[test]
    fn commits_alternate_slots_and_a_commit_without_a_note_keeps_the_last_one() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Cursor::open(d.path(), true).unwrap();
        assert_eq!(c.acked(), 0);
        for i in 1..=5u64 {
            c.commit(i * 10, Some(format!("note {i}").as_bytes()))
                .unwrap();
        }
        c.commit(60, None).unwrap();
        let c = Cursor::open(d.path(), true).unwrap();
        assert_eq!((c.acked(), c.note()), (60, &b"note 5"[..]));
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_previous_commit() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Cursor::open(d.path(), true).unwrap();
        c.commit(10, Some(b"first")).unwrap();
        c.commit(20, Some(b"second")).unwrap();
        // Generation 2 lives in slot 0: damage it as a torn write would.
        let f = OpenOptions::new()
            .write(true)
            .open(d.path().join("ack"))
            .unwrap();
        f.write_all_at(b"\xff\xff\xff", HEAD as u64).unwrap();
        let mut c = Cursor::open(d.path(), true).unwrap();
        assert_eq!((c.acked(), c.note()), (10, &b"first"[..]));
        assert!(c.torn, "the damaged slot is reported");
        // The next commit overwrites the damaged slot, not the good one.
        c.commit(30, Some(b"third")).unwrap();
        let c = Cursor::open(d.path(), true).unwrap();
        assert_eq!((c.acked(), c.note()), (30, &b"third"[..]));
        assert!(!c.torn);
    }

    #[test]
    fn the_slot_a_first_commit_left_unwritten_is_not_reported_as_damage() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Cursor::open(d.path(), true).unwrap();
        c.commit(10, Some(b"only")).unwrap();
        let c = Cursor::open(d.path(), true).unwrap();
        assert_eq!((c.acked(), c.note(), c.torn), (10, &b"only"[..], false));
    }

    #[test]
    fn a_note_larger_than_its_slot_grows_the_file_and_survives_reopening() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Cursor::open(d.path(), true).unwrap();
        c.commit(1, Some(b"small")).unwrap();
        let big = vec![7u8; 3 * MIN_SLOT];
        c.commit(2, Some(&big)).unwrap();
        c.commit(3, Some(b"small again")).unwrap();
        let c = Cursor::open(d.path(), true).unwrap();
        assert_eq!((c.acked(), c.note()), (3, &b"small again"[..]));
        assert_eq!(
            std::fs::metadata(d.path().join("ack")).unwrap().len(),
            2 * 4 * MIN_SLOT as u64
        );
    }

    #[test]
    fn both_slots_damaged_reads_as_nothing_acknowledged_and_no_note() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Cursor::open(d.path(), true).unwrap();
        c.commit(10, Some(b"a")).unwrap();
        c.commit(20, Some(b"b")).unwrap();
        let len = std::fs::metadata(d.path().join("ack")).unwrap().len();
        std::fs::write(d.path().join("ack"), vec![0x5a; len as usize]).unwrap();
        let c = Cursor::open(d.path(), true).unwrap();
        assert_eq!((c.acked(), c.note()), (0, &b""[..]));
    }
}
