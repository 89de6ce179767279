//! Opening a spool after a stop: the acknowledged cursor, and the tail
//! segment's unfinished append, torn tail or damage.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use tracing::{error, warn};

use super::{io_err, SegMeta, SpoolError};
use crate::channel::frame::{self, Parsed};
use crate::channel::streams::StreamStates;
use crate::channel::ChannelMetrics;

/// Scans the tail segment: keeps every valid record up to the last commit,
/// salvaging around damage; returns its metadata and the stream positions its
/// preamble and commits record.
pub(super) fn recover_segment(
    dir: &Path,
    first_id: u64,
    path: &Path,
    metrics: &ChannelMetrics,
) -> Result<(SegMeta, StreamStates), SpoolError> {
    let data = fs::read(path).map_err(io_err(path))?;
    let mut positions = StreamStates::default();
    // (position, length) of valid records, and how many of them end at a commit.
    let mut good: Vec<(usize, usize)> = Vec::new();
    let mut committed = 0usize;
    let mut committed_id = first_id;
    let mut at = 0usize;
    let mut expect = first_id;
    let mut lost = 0u64;
    let mut damaged = false;
    while at < data.len() {
        match frame::parse(&data[at..]) {
            Parsed::Record {
                id,
                len,
                control: false,
                ..
            } if id >= expect => {
                lost += id - expect;
                good.push((at, len));
                expect = id + 1;
                at += len;
            }
            Parsed::Record {
                len,
                control: true,
                payload,
                ..
            } => {
                for (stream, change) in frame::control_changes(payload).unwrap_or_default() {
                    positions.apply(&stream, &change);
                }
                good.push((at, len));
                committed = good.len();
                committed_id = expect;
                at += len;
            }
            _ => match frame::resync(&data, at + 1, expect.checked_sub(1)) {
                Some(p) => {
                    damaged = true;
                    at = p;
                }
                None => break,
            },
        }
    }
    // Records after the last commit are an append that never returned to its
    // source: the source will read them again, so they are dropped here.
    let uncommitted = good.len() - committed;
    good.truncate(committed);
    let valid_end = good.last().map_or(0, |&(a, l)| a + l);
    let meta = |size: usize| SegMeta {
        first_id,
        path: path.to_path_buf(),
        size: size as u64,
        end_id: committed_id,
    };
    if damaged {
        // Records follow the damage: rewrite the good ones, keep the original aside.
        let q = dir.join("quarantine");
        fs::create_dir_all(&q).map_err(io_err(&q))?;
        let mut clean = Vec::with_capacity(data.len());
        for &(a, l) in &good {
            clean.extend_from_slice(&data[a..a + l]);
        }
        let name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
        fs::rename(path, q.join(&name)).map_err(io_err(path))?;
        let mut f = File::create(path).map_err(io_err(path))?;
        f.write_all(&clean)
            .and_then(|_| f.sync_all())
            .map_err(io_err(path))?;
        metrics.corrupt.add(lost.max(1));
        error!(path = %path.display(), salvaged = good.len(), lost, quarantined = %q.join(&name).display(),
            "Spool segment was damaged: salvaged its good records and quarantined the original.");
        return Ok((meta(clean.len()), positions));
    }
    if valid_end < data.len() {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.set_len(valid_end as u64)
            .and_then(|_| f.sync_all())
            .map_err(io_err(path))?;
        warn!(path = %path.display(), bytes = data.len() - valid_end, uncommitted_records = uncommitted,
            "Truncated an unfinished append from the spool tail; its source reads those events again.");
    }
    Ok((meta(valid_end), positions))
}
