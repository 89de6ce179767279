//! Opening a partition after a clean stop, a crash or a power cut, without
//! ever destroying or re-issuing acknowledged data.
//!
//! | found at start | what recovery does |
//! |---|---|
//! | sealed segment whose index header matches (size, last batch CRC) | trusted: 72 + one batch read, no scan; full CRC checks happen on every read |
//! | sealed segment with no index, a damaged one, or a mismatch | scanned in full, index rebuilt (append times = restart time, so retention never deletes early) |
//! | damage in a sealed segment | kept in place, copied to `quarantine/`, reported (log, metrics); readers get the lost range and every other batch |
//! | active segment | scanned with CRC from the end of the index a clean stop wrote for it (in full without one); the prefix that index covers is checked like a sealed segment |
//! | bad batch in the active segment at or past the checkpoint | a torn, never acknowledged tail: cut (the producer resends it) |
//! | bad batch in the active segment below the checkpoint | acknowledged data damaged: kept, quarantined, reported; the segment is sealed and a new one starts at the end |
//! | no checkpoint (older data dir, or both slots damaged): bad batch followed by a good one | damage, as above; with nothing good after it: a torn tail, cut, and a copy of the cut bytes kept in `quarantine/` |
//! | the log ends below the checkpoint (tail segment truncated or deleted) | the end stays at the checkpoint; the missing range is reported as lost; nothing is re-issued |
//! | gap between two segments | reported as lost |
//! | producer state | newest valid snapshot at or below the active segment, plus the headers after it; without one, every header in the log |

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};
use weir_core::batch::{self, BatchHeader, HEADER_LEN};

use super::checkpoint::{Checkpoint, Loaded};
use super::durable;
use super::index::{self, SegmentSummary, SparseIndex};
use super::partition::{Sealed, Shared};
use super::producers::Producers;
use super::scan::{Damage, Item, Scanner};
use super::segment::{self, Active};
use super::snapshot;

/// A partition's state as recovered from disk.
pub(super) struct Recovered {
    pub sealed: Vec<Sealed>,
    pub active: Active,
    pub producers: Producers,
    pub gaps: Vec<(i64, i64)>,
    pub last_append_ms: i64,
    pub checkpoint: Checkpoint,
    pub reported: HashSet<(i64, u64)>,
}

/// Segment files in `dir`, by base offset.
fn list_segments(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<i64>().ok());
        if let Some(base) = base {
            bases.push((base, path));
        }
    }
    bases.sort();
    Ok(bases)
}

pub(super) fn recover(dir: &Path, shared: &Shared, max_batch: u64) -> io::Result<Recovered> {
    durable::create_dir_durable(dir)?;
    let now = super::partition::now_ms();
    let bases = list_segments(dir)?;
    let (mut checkpoint, loaded) = Checkpoint::open(dir);
    let ckpt = match loaded {
        Loaded::Valid(m) => Some(m),
        Loaded::Missing => None,
        Loaded::Damaged => {
            error!(dir = %dir.display(), "Partition checkpoint is damaged; the end offset is taken from the log, and a damaged tail cannot be told from a torn one.");
            None
        }
    };
    // Batches whose append time was not recorded are stamped with the restart
    // time (or the last recorded one, if the clock went back): later, never earlier.
    let append_ms = ckpt.map_or(now, |m| m.max_append_ms.max(now));
    let mut r = Reporter {
        dir,
        shared,
        reported: HashSet::new(),
    };

    let mut sealed = Vec::new();
    for w in bases.windows(2) {
        let ((base, path), (next_base, _)) = (&w[0], &w[1]);
        sealed.push(open_sealed(
            dir, *base, path, *next_base, append_ms, max_batch, &mut r,
        )?);
    }
    let mut gaps: Vec<(i64, i64)> = Vec::new();
    let mut replay: Vec<BatchHeader> = Vec::new();
    let end = ckpt.map(|m| m.end_offset);
    // Where the header replay of the last segment starts (past a trusted prefix).
    let mut scanned_from = bases.last().map_or(0, |b| b.0);
    let mut active = match bases.last() {
        Some((base, path)) => open_active(
            dir,
            *base,
            path,
            end,
            append_ms,
            max_batch,
            &mut r,
            &mut replay,
            &mut sealed,
            &mut scanned_from,
        )?,
        None => {
            let a = Active::create(dir, end.unwrap_or(0))?;
            durable::sync_dir(dir)?;
            a
        }
    };
    // Offsets never go backwards: the end is at least the checkpoint's.
    if let Some(e) = end.filter(|e| *e > active.next_offset()) {
        let from = active.next_offset();
        error!(dir = %dir.display(), first = from, last = e - 1,
            "The log ends below its checkpoint: acknowledged records are missing from its end; they are reported as lost and their offsets are not re-issued.");
        if active.size() == 0 {
            std::fs::remove_file(&active.path)?;
        } else {
            let s = active.index.summary;
            write_index(dir, &active.index);
            sealed.push(Sealed {
                summary: s,
                path: active.path.clone(),
            });
        }
        active = Active::create(dir, e)?;
        durable::sync_dir(dir)?;
    }
    let mut bounds: Vec<(i64, i64)> = sealed
        .iter()
        .map(|s| (s.summary.base_offset, s.summary.next_offset))
        .collect();
    bounds.push((active.index.summary.base_offset, active.next_offset()));
    for w in bounds.windows(2) {
        let ((_, a_next), (b_base, _)) = (w[0], w[1]);
        if a_next < b_base {
            error!(dir = %dir.display(), first = a_next, last = b_base - 1,
                "Offsets missing between two segments (a segment file is gone or was cut); reported as lost.");
            gaps.push((a_next, b_base - 1));
        }
    }
    gaps.sort();
    let first = sealed
        .first()
        .map_or(active.index.summary.base_offset, |s| s.summary.base_offset);
    let last = bases.last().map(|(b, p)| (*b, p.clone()));
    let producers = rebuild_producers(dir, &sealed, last, scanned_from, replay, first, max_batch)?;
    if ckpt.is_none() {
        let created = checkpoint.write(super::checkpoint::Mark {
            end_offset: active.next_offset(),
            max_append_ms: append_ms,
        })?;
        if created {
            durable::sync_dir(dir)?;
        }
    }
    info!(dir = %dir.display(), segments = sealed.len() + 1, end_offset = active.next_offset(), "Opened partition.");
    Ok(Recovered {
        sealed,
        active,
        producers,
        gaps,
        last_append_ms: append_ms,
        checkpoint,
        reported: r.reported,
    })
}

/// Reports damage once: log, metrics, quarantine copy.
pub(super) struct Reporter<'a> {
    pub dir: &'a Path,
    pub shared: &'a Shared,
    pub reported: HashSet<(i64, u64)>,
}

impl Reporter<'_> {
    pub fn report(&mut self, base: i64, path: &Path, damage: &[Damage]) {
        let new: Vec<Damage> = damage
            .iter()
            .filter(|d| self.reported.insert((base, d.pos)))
            .cloned()
            .collect();
        if new.is_empty() {
            return;
        }
        let copy = super::quarantine::keep(self.dir, path, &new);
        for d in &new {
            self.shared.metrics.damaged_batches.inc();
            self.shared.metrics.damaged_bytes.add(d.end_pos - d.pos);
            error!(segment = %path.display(), first_offset = d.first_offset,
                last_offset = ?d.last_offset, bytes = d.end_pos - d.pos, reason = %d.reason,
                quarantined = ?copy.as_ref().ok(),
                "Damaged batches in a log segment: the records in this range are lost; every other record stays readable.");
        }
        if let Err(e) = copy {
            error!(segment = %path.display(), error = %e, "Failed to copy a damaged segment to quarantine.");
        }
    }
}

fn write_index(dir: &Path, ix: &SparseIndex) {
    let p = index::path(dir, ix.summary.base_offset);
    if let Err(e) = ix.write(&p) {
        warn!(path = %p.display(), error = %e, "Failed to write a segment index; it will be rebuilt on the next start.");
    }
}

/// Checks a sealed segment against its index header cheaply, or rebuilds it.
#[allow(clippy::too_many_arguments)]
fn open_sealed(
    dir: &Path,
    base: i64,
    path: &Path,
    next_base: i64,
    append_ms: i64,
    max_batch: u64,
    r: &mut Reporter,
) -> io::Result<Sealed> {
    let len = std::fs::metadata(path)?.len();
    if let Some(s) = index::read_summary(&index::path(dir, base)) {
        if s.base_offset == base
            && s.size == len
            && s.next_offset <= next_base
            && last_batch_ok(path, &s, max_batch)?
        {
            return Ok(Sealed {
                summary: s,
                path: path.to_path_buf(),
            });
        }
        warn!(segment = %path.display(), "Segment index does not match its segment; rebuilding it.");
    }
    let (ix, damage) = rebuild_sealed(path, base, len, next_base, append_ms, max_batch)?;
    r.report(base, path, &damage);
    write_index(dir, &ix);
    Ok(Sealed {
        summary: ix.summary,
        path: path.to_path_buf(),
    })
}

/// Scans a sealed segment and returns its index (summary covering the whole
/// file up to `next_base`) and the damage found.
pub(super) fn rebuild_sealed(
    path: &Path,
    base: i64,
    len: u64,
    next_base: i64,
    append_ms: i64,
    max_batch: u64,
) -> io::Result<(SparseIndex, Vec<Damage>)> {
    let file = File::open(path)?;
    let (mut ix, damage) =
        segment::rebuild(&file, base, len, next_base, append_ms, max_batch, |_| {})?;
    ix.summary.size = len;
    if next_base != i64::MAX {
        ix.summary.next_offset = ix.summary.next_offset.max(next_base);
    }
    if ix.summary.max_append_ms == i64::MIN {
        ix.summary.max_append_ms = append_ms;
    }
    Ok((ix, damage))
}

/// The last batch named by the summary is whole, ends at the summary's size and passes its CRC.
fn last_batch_ok(path: &Path, s: &SegmentSummary, max_batch: u64) -> io::Result<bool> {
    if s.size == 0 {
        return Ok(s.next_offset == s.base_offset);
    }
    let f = File::open(path)?;
    let mut head = [0u8; HEADER_LEN];
    if f.read_exact_at(&mut head, s.last_batch_pos).is_err() {
        return Ok(false);
    }
    let Ok(h) = BatchHeader::parse(&head) else {
        return Ok(false);
    };
    let total = h.total_len() as u64;
    if s.last_batch_pos + total != s.size
        || total > max_batch
        || h.last_offset() + 1 != s.next_offset
    {
        return Ok(false);
    }
    let mut body = vec![0u8; total as usize];
    f.read_exact_at(&mut body, s.last_batch_pos)?;
    Ok(batch::check_crc(&body).is_ok())
}

/// Scans the active segment: cuts a torn tail, keeps damaged acknowledged
/// data (sealing the segment), collects headers for producer state.
#[allow(clippy::too_many_arguments)]
fn open_active(
    dir: &Path,
    base: i64,
    path: &Path,
    end: Option<i64>,
    append_ms: i64,
    max_batch: u64,
    r: &mut Reporter,
    replay: &mut Vec<BatchHeader>,
    sealed: &mut Vec<Sealed>,
    scanned_from: &mut i64,
) -> io::Result<Active> {
    let file = OpenOptions::new().read(true).append(true).open(path)?;
    let len = file.metadata()?.len();
    // A clean stop leaves the active segment's index: the prefix it covers
    // was fsynced before it was written and is never changed (appends only;
    // cuts happen only past the checkpoint), so only what follows it is scanned.
    let trusted = index::read(&index::path(dir, base)).filter(|ix| {
        ix.summary.base_offset == base
            && ix.summary.size > 0
            && ix.summary.size <= len
            && last_batch_ok(path, &ix.summary, max_batch).unwrap_or(false)
    });
    let (mut index, from_pos, from_offset) = match trusted {
        Some(ix) => {
            let (p, o) = (ix.summary.size, ix.summary.next_offset);
            (ix, p, o)
        }
        None => (SparseIndex::new(base), 0, base),
    };
    *scanned_from = from_offset;
    let mut damage: Vec<Damage> = Vec::new();
    let mut cut = None;
    let mut sc = Scanner::new(&file, from_pos, len, from_offset, i64::MAX, max_batch);
    while let Some(item) = sc.next_item()? {
        match item {
            Item::Batch { pos, header, .. } => {
                replay.push(header);
                index.note(&header, pos, append_ms);
            }
            Item::Damaged(d) => {
                let acknowledged = match end {
                    Some(e) => d.first_offset < e,
                    // No checkpoint: only a good batch after it proves damage.
                    None => d.last_offset.is_some(),
                };
                if !acknowledged {
                    cut = Some(d);
                    break;
                }
                damage.push(d);
            }
        }
    }
    if let Some(d) = cut {
        if end.is_none() && d.end_pos > d.pos {
            // Without a checkpoint the cut may be damage, not a torn write: keep a copy.
            r.report(base, path, std::slice::from_ref(&d));
        }
        warn!(segment = %path.display(), bytes = len - d.pos, next_offset = d.first_offset, reason = %d.reason,
            "Truncated a torn tail of the active segment (never acknowledged; producers resend it).");
        file.set_len(d.pos)?;
        file.sync_all()?;
    }
    if damage.is_empty() {
        return Active::reopen(path, index);
    }
    r.report(base, path, &damage);
    // Keep the damaged segment as it is, sealed; append to a fresh one.
    let mut summary = index.summary;
    summary.size = file.metadata()?.len();
    let lost_to = damage
        .iter()
        .filter_map(|d| d.last_offset)
        .max()
        .unwrap_or(i64::MIN);
    summary.next_offset = summary
        .next_offset
        .max(end.unwrap_or(i64::MIN))
        .max(lost_to + 1);
    if summary.max_append_ms == i64::MIN {
        summary.max_append_ms = append_ms;
    }
    let ix = SparseIndex {
        summary,
        entries: index.entries,
    };
    write_index(dir, &ix);
    sealed.push(Sealed {
        summary,
        path: path.to_path_buf(),
    });
    let a = Active::create(dir, summary.next_offset)?;
    durable::sync_dir(dir)?;
    Ok(a)
}

/// Producer state: the newest usable snapshot, then the headers after it.
/// `last` is the last segment file (its base and path); its headers from
/// `scanned_from` on were collected by its scan (`tail_headers`).
fn rebuild_producers(
    dir: &Path,
    sealed: &[Sealed],
    last: Option<(i64, PathBuf)>,
    scanned_from: i64,
    tail_headers: Vec<BatchHeader>,
    log_start: i64,
    max_batch: u64,
) -> io::Result<Producers> {
    let snap = snapshot::list(dir)
        .into_iter()
        .filter(|(o, _)| *o <= scanned_from)
        .find_map(|(o, p)| {
            let got = std::fs::read(&p).ok().and_then(|b| snapshot::decode(&b));
            if got.is_none() {
                warn!(path = %p.display(), "Producer snapshot is damaged; using an older one or the log.");
            }
            got.filter(|(off, _)| *off == o)
        });
    let (from, mut producers) = snap.unwrap_or((i64::MIN, Producers::default()));
    if from == i64::MIN && !sealed.is_empty() {
        info!(dir = %dir.display(), "No producer snapshot: rebuilding producer state from the batch headers.");
    }
    let last_base = last.as_ref().map_or(i64::MAX, |l| l.0);
    // Segment files before the snapshot's position: sealed ones (none in the
    // usual case), then the part of the last one its scan skipped.
    let mut files: Vec<(PathBuf, i64, u64, i64)> = sealed
        .iter()
        .filter(|s| s.summary.next_offset > from && s.summary.base_offset < last_base)
        .map(|s| {
            (
                s.path.clone(),
                s.summary.base_offset,
                s.summary.size,
                s.summary.next_offset,
            )
        })
        .collect();
    if let Some((base, path)) = last.filter(|_| from < scanned_from && scanned_from > last_base) {
        let len = std::fs::metadata(&path)?.len();
        files.push((path, base, len, scanned_from));
    }
    for (path, base, size, next) in files {
        let f = File::open(&path)?;
        let mut sc = Scanner::new(&f, 0, size, base, next, max_batch);
        while let Some(item) = sc.next_item()? {
            if let Item::Batch { header, .. } = item {
                if header.base_offset >= next {
                    break;
                }
                if header.base_offset >= from {
                    producers.record(&header);
                }
            }
        }
    }
    if from < scanned_from && scanned_from > log_start {
        // Snapshot the state where the scan started, so the next start does
        // not replay these headers again.
        let p = snapshot::path(dir, scanned_from);
        if let Err(e) = snapshot::write(&p, &snapshot::encode(&producers, scanned_from)) {
            warn!(path = %p.display(), error = %e, "Failed to write a producer snapshot.");
        }
    }
    for h in tail_headers.iter().filter(|h| h.base_offset >= from) {
        producers.record(h);
    }
    producers.expire_below(log_start);
    Ok(producers)
}
