//! Keeping a copy of damaged segments before anything else touches them.
//!
//! ```text
//! topics/<topic>/<partition>/quarantine/<base>.log   copy of the segment as found damaged
//! topics/<topic>/<partition>/quarantine/<base>.txt   one line per damaged region:
//!     offsets <first>..<last> bytes <pos>..<end> <reason>
//! ```
//! The segment itself stays in place and is still served: reads skip the
//! damaged regions and report them to consumers as lost offset ranges. The
//! copy preserves the evidence through retention and any later repair; an
//! operator deletes it once examined (docs/operations.md).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::durable;
use super::scan::Damage;

/// Copies `segment` into `dir/quarantine/` (once: an existing copy at least as
/// long is kept) and appends the damage to its report. Returns the copy's path.
pub fn keep(dir: &Path, segment: &Path, damage: &[Damage]) -> io::Result<PathBuf> {
    let qdir = dir.join("quarantine");
    durable::create_dir_durable(&qdir)?;
    let name = segment
        .file_name()
        .ok_or_else(|| io::Error::other("segment path has no file name"))?;
    let copy = qdir.join(name);
    let have = std::fs::metadata(&copy).map(|m| m.len()).ok();
    let len = std::fs::metadata(segment)?.len();
    if have.is_none_or(|h| h < len) {
        std::fs::copy(segment, &copy)?;
        std::fs::File::open(&copy)?.sync_all()?;
    }
    let mut report = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(copy.with_extension("txt"))?;
    for d in damage {
        let last = d.last_offset.map_or("?".to_owned(), |l| l.to_string());
        writeln!(
            report,
            "offsets {}..{} bytes {}..{} {}",
            d.first_offset, last, d.pos, d.end_pos, d.reason
        )?;
    }
    report.sync_all()?;
    durable::sync_dir(&qdir)?;
    Ok(copy)
}
