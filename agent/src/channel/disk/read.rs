//! Reading the spool: records after the read cursor, skipping commit
//! records, and salvaging around damage found in sealed segments.

use std::fs::{self, File};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use weir_plugins::Record;

use tracing::{error, warn};
use weir_core::codec;
use weir_core::Event;

use super::{io_err, lock, DiskSpool, Reader, SegMeta, SpoolError};
use crate::channel::frame::{self, Parsed};

impl DiskSpool {
    /// Reads up to `max_events` visible records (and about `max_bytes`)
    /// after the last one read, as events (either payload form).
    pub fn read(
        &self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Event)>, SpoolError> {
        let mut out = Vec::new();
        self.read_with(max_events, max_bytes, |r, id, chunk, range| {
            let e = codec::decode_with(&chunk[range], &mut r.interner)?;
            out.push((id, e));
            Ok(())
        })?;
        Ok(out)
    }

    /// Like `read`, as records in the form a sink sends: a record-form
    /// payload's value is a slice of the chunk read from disk (no copy);
    /// an event-form payload (a spool written by an older agent) is
    /// converted.
    pub fn read_records(
        &self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, SpoolError> {
        // Sized for the batch up front: grown by doubling, the vector moved
        // every record several times.
        let mut out = Vec::with_capacity(max_events.min(max_bytes / 32 + 1).min(1 << 16));
        self.read_with(max_events, max_bytes, |r, id, chunk, range| {
            let payload = &chunk[range.clone()];
            if codec::version_of(payload) == Some(codec::RECORD_VERSION) {
                let (timestamp, meta, value_at) =
                    codec::decode_record_meta(payload, &mut r.interner)?;
                out.push(Record {
                    id,
                    timestamp,
                    meta,
                    value: chunk.slice(range.start + value_at..range.end),
                });
            } else {
                let e = codec::decode_with(payload, &mut r.interner)?;
                out.push(Record::from_event(id, &e));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The read loop: hands each visible record's payload (a range of the
    /// chunk it was read in) to `take`.
    fn read_with(
        &self,
        max_events: usize,
        max_bytes: usize,
        mut take: impl FnMut(&mut Reader, u64, &Bytes, Range<usize>) -> Result<(), codec::DecodeError>,
    ) -> Result<usize, SpoolError> {
        let mut r = lock(&self.reader);
        let mut taken = 0usize;
        let mut bytes = 0usize;
        // Bytes the next read must cover to hold one record larger than a chunk.
        let mut hint = 0usize;
        while taken < max_events && bytes < max_bytes {
            let (seg, sealed) = {
                let s = lock(&self.shared);
                if r.next_id < s.acked {
                    // drop_oldest removed records the reader had not reached.
                    r.next_id = s.acked;
                }
                match s.segments.iter().position(|m| m.end_id > r.next_id) {
                    Some(i) => (s.segments[i].clone(), i + 1 < s.segments.len()),
                    None => break,
                }
            };
            r.next_id = r.next_id.max(seg.first_id);
            if r.seg_first != Some(seg.first_id) {
                match File::open(&seg.path) {
                    Ok(f) => {
                        r.file = Some(f);
                        r.seg_first = Some(seg.first_id);
                        r.pos = 0;
                    }
                    // Deleted by drop_oldest between the snapshot and here: look again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&seg.path)(e)),
                }
            }
            if r.pos >= seg.size {
                if !sealed {
                    break;
                }
                // Whatever was not read of this sealed segment is gone.
                if r.next_id < seg.end_id {
                    self.count_lost(&seg, seg.end_id - r.next_id);
                    r.next_id = seg.end_id;
                }
                r.seg_first = None;
                continue;
            }
            let avail = (seg.size - r.pos) as usize;
            let want = avail.min(hint.max((max_bytes - bytes).clamp(1 << 16, 8 << 20)));
            // Records handed out share the chunk (Bytes slices). The last
            // chunk is reused once they are all dropped, which is the rule:
            // a fresh one per read costs an mmap, zeroing and page faults.
            let mut fill = reclaim(&mut r.spares, want);
            if let Some(Err(e)) = r
                .file
                .as_ref()
                .map(|f| f.read_exact_at(&mut fill[..want], r.pos))
            {
                return Err(io_err(&seg.path)(e));
            }
            let whole = fill.freeze();
            if r.spares.len() >= SPARE_CHUNKS {
                r.spares.remove(0);
            }
            r.spares.push(whole.clone());
            let buf = whole.slice(..want);
            let mut at = 0usize;
            let mut damaged = false;
            let grew = hint > 0;
            hint = 0;
            while at < buf.len() && taken < max_events && bytes < max_bytes {
                match frame::parse(&buf[at..]) {
                    Parsed::Record {
                        id,
                        payload,
                        len,
                        control,
                    } => {
                        let start = at + frame::HEADER;
                        let range = start..start + payload.len();
                        at += len;
                        if control || id < r.next_id {
                            continue;
                        }
                        // A gap inside a segment was counted where it arose
                        // (salvage on open, or `salvage` below).
                        r.next_id = id + 1;
                        match take(&mut r, id, &buf, range) {
                            Ok(()) => {
                                bytes += len;
                                taken += 1;
                            }
                            Err(err) => {
                                self.metrics.corrupt.inc();
                                warn!(dir = %self.dir.display(), id, error = %err, "Spool record passed its CRC but does not decode; skipped.");
                            }
                        }
                    }
                    // Visible bytes always end on a record boundary, so a
                    // record cut by the chunk continues past it on disk.
                    Parsed::Incomplete if buf.len() < avail && !(at == 0 && grew) => {
                        if at == 0 {
                            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                            hint = frame::HEADER + len;
                        }
                        break;
                    }
                    _ => {
                        damaged = true;
                        break;
                    }
                }
            }
            r.pos += at as u64;
            if damaged {
                self.salvage(&mut r, &seg)?;
            }
        }
        Ok(taken)
    }

    /// Moves the reader past damage at its position to the next valid record of the segment.
    fn salvage(&self, r: &mut Reader, seg: &SegMeta) -> Result<(), SpoolError> {
        let data = fs::read(&seg.path).map_err(io_err(&seg.path))?;
        let end = (seg.size as usize).min(data.len());
        let from = r.pos as usize;
        match frame::resync(&data[..end], from + 1, r.next_id.checked_sub(1)) {
            Some(p) => {
                error!(path = %seg.path.display(), at = from, resume = p, "Damaged spool record; skipping to the next valid one.");
                if let Parsed::Record {
                    id, control: false, ..
                } = frame::parse(&data[p..end])
                {
                    if id > r.next_id {
                        self.count_lost(seg, id - r.next_id);
                        r.next_id = id;
                    }
                }
                r.pos = p as u64;
            }
            None => {
                error!(path = %seg.path.display(), at = from, "Damaged spool segment; no valid record follows.");
                r.pos = seg.size;
            }
        }
        self.quarantine_copy(&seg.path);
        Ok(())
    }

    fn count_lost(&self, seg: &SegMeta, n: u64) {
        self.metrics.corrupt.add(n);
        self.metrics.records.add(-(n as i64));
        error!(path = %seg.path.display(), records = n, "Spool records lost to damage.");
    }

    fn quarantine_copy(&self, path: &Path) {
        let q = self.dir.join("quarantine");
        let _ = fs::create_dir_all(&q);
        if let Some(name) = path.file_name() {
            let _ = fs::copy(path, q.join(name));
        }
    }
}

/// Chunks kept for reuse: a sink holds the records of a few reads (a batch
/// being filled, batches being encoded) before it drops them.
const SPARE_CHUNKS: usize = 4;

/// A buffer of at least `want` bytes: a previous chunk nothing holds any
/// more, else a new one. Its length is its full size, so a reused buffer is
/// not zeroed again.
fn reclaim(spares: &mut Vec<Bytes>, want: usize) -> BytesMut {
    let mut i = 0;
    while i < spares.len() {
        if !spares[i].is_unique() {
            i += 1;
            continue;
        }
        let Ok(mut b) = spares.swap_remove(i).try_into_mut() else {
            continue;
        };
        if b.len() >= want {
            return b;
        }
        if b.capacity() >= want {
            b.resize(want, 0);
            return b;
        }
    }
    BytesMut::zeroed(want)
}
