//! Reading the spool: records after the read cursor, skipping commit
//! records, and salvaging around damage found in sealed segments.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tracing::{error, warn};
use weir_core::codec;
use weir_core::Event;

use super::{io_err, lock, DiskSpool, Reader, SegMeta, SpoolError};
use crate::channel::frame::{self, Parsed};

impl DiskSpool {
    /// Reads up to `max_events` visible records (and about `max_bytes`) after the last one read.
    pub fn read(
        &self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Event)>, SpoolError> {
        let mut r = lock(&self.reader);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // Bytes the next read must cover to hold one record larger than a chunk.
        let mut hint = 0usize;
        while out.len() < max_events && bytes < max_bytes {
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
            let mut buf = std::mem::take(&mut r.buf);
            buf.resize(want, 0);
            if let Some(Err(e)) = r.file.as_ref().map(|f| f.read_exact_at(&mut buf, r.pos)) {
                r.buf = buf;
                return Err(io_err(&seg.path)(e));
            }
            let mut at = 0usize;
            let mut damaged = false;
            let grew = hint > 0;
            hint = 0;
            while at < buf.len() && out.len() < max_events && bytes < max_bytes {
                match frame::parse(&buf[at..]) {
                    Parsed::Record {
                        id,
                        payload,
                        len,
                        control,
                    } => {
                        at += len;
                        if control || id < r.next_id {
                            continue;
                        }
                        // A gap inside a segment was counted where it arose
                        // (salvage on open, or `salvage` below).
                        r.next_id = id + 1;
                        match codec::decode_with(payload, &mut r.interner) {
                            Ok(e) => {
                                bytes += len;
                                out.push((id, e));
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
            r.buf = buf;
            if damaged {
                self.salvage(&mut r, &seg)?;
            }
        }
        Ok(out)
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
