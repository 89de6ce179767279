//! Damage at many positions of a partition's files, and the invariant
//! checked after every start: every acknowledged record that was not itself
//! damaged is readable, in order, at its original offset; the end never goes
//! back and no offset is re-issued; the damage is reported (lost ranges,
//! quarantine copy, metrics).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use weir_core::batch::{self, BatchHeader};
use weir_core::record::{decode_batches, encode_batch, Compression, ProducerStamp};
use weir_core::{Event, Metadata};

use super::index;
use super::partition::{Fetched, Partition, PartitionLimits, Shared};
use super::segment::file_name;

fn limits() -> PartitionLimits {
    PartitionLimits {
        segment_bytes: 3000,
        retention_bytes: None,
        retention_ms: None,
        sync_before_ack: true,
        batch_limits: Default::default(),
    }
}

/// A batch of `n` records whose values name their future offsets.
fn batch(first: i64, n: usize, pid: i64, seq: i32) -> Vec<u8> {
    let events: Vec<Event> = (0..n)
        .map(|i| Event::from_message(format!("v{}", first + i as i64), Metadata::default()))
        .collect();
    let stamp = ProducerStamp {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: seq,
    };
    encode_batch(&events, stamp, Compression::None)
        .unwrap()
        .to_vec()
}

fn open(dir: &Path) -> (Partition, Shared) {
    let shared = Shared::default();
    let p = Partition::open_shared(dir, 0, limits(), shared.clone()).unwrap();
    (p, shared)
}

/// Writes `batches` batches of 4 records, acknowledged (synced); returns the
/// end. Odd counts stop cleanly (active index and snapshot written), even
/// counts as a crash would.
fn fill(dir: &Path, batches: usize) -> i64 {
    let (p, _) = open(dir);
    let mut end = p.bounds().1;
    for k in 0..batches {
        let a = p.append(batch(end, 4, 9, k as i32 * 4)).unwrap();
        assert_eq!(a.base_offset, end);
        end = a.last_offset + 1;
    }
    if batches % 2 == 1 {
        p.close().unwrap();
    } else {
        p.sync().unwrap();
    }
    end
}

/// Everything readable: value by offset, and the lost ranges reported.
fn read_all(p: &Partition) -> (BTreeMap<i64, String>, Vec<(i64, i64)>) {
    let (start, end) = p.bounds();
    let mut got = BTreeMap::new();
    let mut lost = Vec::new();
    let mut offset = start;
    while offset < end {
        let Fetched {
            bytes,
            next,
            lost: l,
        } = p.read(offset, 1000).unwrap();
        assert!(next > offset, "read at {offset} made no progress");
        for r in decode_batches(&bytes).unwrap() {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            let prev = got.insert(r.offset, v["message"].as_str().unwrap().to_owned());
            assert!(prev.is_none(), "offset {} served twice", r.offset);
        }
        lost.extend(l);
        offset = next;
    }
    (got, lost)
}

/// Segment files, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// (position, header) of every batch in a segment file.
fn batches_in(path: &Path) -> Vec<(usize, BatchHeader)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    for b in batch::split(&bytes) {
        out.push((pos, BatchHeader::parse(b).unwrap()));
        pos += b.len();
    }
    out
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

/// Checks the invariant: every offset below `end` is either readable with its
/// value or inside a reported lost range, and only offsets in `may_lose` are lost.
fn check(p: &Partition, end: i64, may_lose: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let (got, lost) = read_all(p);
    assert!(
        p.bounds().1 >= end,
        "end went back: {} < {end}",
        p.bounds().1
    );
    for o in 0..end {
        let in_lost = lost.iter().any(|&(a, b)| a <= o && o <= b);
        match got.get(&o) {
            Some(v) => {
                assert_eq!(v, &format!("v{o}"), "offset {o} holds another record");
                assert!(!in_lost, "offset {o} both served and reported lost");
            }
            None => {
                assert!(in_lost, "offset {o} neither served nor reported lost");
                assert!(
                    may_lose.iter().any(|&(a, b)| a <= o && o <= b),
                    "offset {o} lost though its batch was intact"
                );
            }
        }
    }
    // New data goes after everything ever acknowledged.
    let a = p.append(batch(p.bounds().1, 1, -1, -1)).unwrap();
    assert!(a.base_offset >= end, "offset {} re-issued", a.base_offset);
    lost
}

#[test]
fn a_flipped_header_byte_in_a_sealed_segment_loses_only_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 60);
    let first = &segments(dir.path())[0];
    let (pos, h) = batches_in(first)[3];
    flip(first, pos + 16); // the magic byte
    let (p, shared) = open(dir.path());
    let lost = check(&p, end, &[(h.base_offset, h.last_offset())]);
    assert_eq!(lost, vec![(h.base_offset, h.last_offset())]);
    assert_eq!(shared.metrics.damaged_batches.get(), 1);
    assert!(dir.path().join("quarantine").join(file_name(0)).exists());
}

#[test]
fn a_flipped_record_byte_in_a_sealed_segment_is_found_at_read_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 60);
    let second = &segments(dir.path())[1];
    let (pos, h) = batches_in(second)[1];
    flip(second, pos + 70);
    let (p, shared) = open(dir.path());
    assert_eq!(
        shared.metrics.damaged_batches.get(),
        0,
        "start-up does not read sealed data"
    );
    let lost = check(&p, end, &[(h.base_offset, h.last_offset())]);
    assert_eq!(lost, vec![(h.base_offset, h.last_offset())]);
    assert_eq!(shared.metrics.damaged_batches.get(), 1);
}

#[test]
fn a_flipped_byte_in_the_active_segment_keeps_the_end_and_reissues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 60);
    let last = segments(dir.path()).pop().unwrap();
    let all = batches_in(&last);
    // The last acknowledged batch: exactly what main used to cut as a "torn tail".
    let (pos, h) = *all.last().unwrap();
    flip(&last, pos + 65);
    let (p, _) = open(dir.path());
    assert_eq!(p.bounds().1, end);
    let lost = check(&p, end, &[(h.base_offset, h.last_offset())]);
    assert_eq!(lost, vec![(h.base_offset, h.last_offset())]);
    assert!(dir
        .path()
        .join("quarantine")
        .join(last.file_name().unwrap())
        .exists());
}

#[test]
fn a_torn_tail_past_the_checkpoint_is_cut_and_its_offsets_reused() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 10);
    let last = segments(dir.path()).pop().unwrap();
    let torn = batch(end, 4, -1, -1);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, &torn[..torn.len() / 2]).unwrap();
    let (p, _) = open(dir.path());
    assert_eq!(p.bounds().1, end, "never acknowledged: cut");
    assert!(check(&p, end, &[]).is_empty());
}

#[test]
fn a_deleted_or_truncated_tail_segment_never_moves_the_end_back() {
    for truncate in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let end = fill(dir.path(), 60);
        let segs = segments(dir.path());
        let last = segs.last().unwrap();
        let base: i64 = batches_in(last)[0].1.base_offset;
        if truncate {
            std::fs::OpenOptions::new()
                .write(true)
                .open(last)
                .unwrap()
                .set_len(10)
                .unwrap();
        } else {
            std::fs::remove_file(last).unwrap();
        }
        let (p, _) = open(dir.path());
        assert_eq!(p.bounds().1, end);
        let lost = check(&p, end, &[(base, end - 1)]);
        assert_eq!(lost, vec![(base, end - 1)]);
    }
}

#[test]
fn a_truncated_sealed_segment_loses_only_its_cut_batches() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 60);
    let first = segments(dir.path())[0].clone();
    let all = batches_in(&first);
    let (pos, h) = all[2];
    let next_base = batches_in(&segments(dir.path())[1])[0].1.base_offset;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(pos as u64 + 30)
        .unwrap();
    let (p, _) = open(dir.path());
    let lost = check(&p, end, &[(h.base_offset, next_base - 1)]);
    assert_eq!(lost, vec![(h.base_offset, next_base - 1)]);
}

#[test]
fn a_flipped_base_offset_field_is_served_at_its_position_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 60);
    let first = &segments(dir.path())[0];
    let (pos, _) = batches_in(first)[2];
    flip(first, pos + 7);
    let (p, _) = open(dir.path());
    assert!(check(&p, end, &[]).is_empty());
}

#[test]
fn damaged_index_snapshot_and_checkpoint_files_cost_time_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 60);
    let first = &segments(dir.path())[0];
    let ipath = index::path(dir.path(), 0);
    flip(&ipath, 80); // an entry: found when the segment is first read
    flip(
        &index::path(
            dir.path(),
            batches_in(&segments(dir.path())[1])[0].1.base_offset,
        ),
        20,
    );
    for (_, s) in super::snapshot::list(dir.path()) {
        flip(&s, 30);
    }
    let ck = dir.path().join("checkpoint");
    let mut b = std::fs::read(&ck).unwrap();
    b[20] ^= 1;
    b[512 + 20] ^= 1;
    std::fs::write(&ck, b).unwrap();
    let (p, _) = open(dir.path());
    assert!(check(&p, end, &[]).is_empty());
    // Producer state was rebuilt from the log: a resend is still a duplicate.
    let again = p.append(batch(236, 4, 9, 236)).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.base_offset, 236);
    assert!(index::read(&ipath).is_some(), "index rewritten");
    assert!(first.exists());
}

#[test]
fn a_gap_between_segments_is_reported_as_lost() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 60);
    let segs = segments(dir.path());
    let gone = &segs[1];
    let from = batches_in(gone)[0].1.base_offset;
    let to = batches_in(&segs[2])[0].1.base_offset - 1;
    std::fs::remove_file(gone).unwrap();
    let (p, _) = open(dir.path());
    let lost = check(&p, end, &[(from, to)]);
    assert_eq!(lost, vec![(from, to)]);
}

/// The file to damage and how.
#[derive(Debug, Clone)]
enum Harm {
    Flip { file: usize, at: usize, xor: u8 },
    Truncate { file: usize, at: usize },
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_single_damage_loses_at_most_the_batches_it_touched(
        harm in prop_oneof![
            (any::<usize>(), any::<usize>(), 1u8..=255).prop_map(|(file, at, xor)| Harm::Flip { file, at, xor }),
            (any::<usize>(), any::<usize>()).prop_map(|(file, at)| Harm::Truncate { file, at }),
        ],
        clean in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let end = fill(dir.path(), 40 + clean as usize);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "lock"))
            .collect();
        files.sort();
        let (file, at) = match harm {
            Harm::Flip { file, at, .. } | Harm::Truncate { file, at } => (file % files.len(), at),
        };
        let path = files[file].clone();
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        prop_assume!(len > 0);
        let at = at % len;
        // Which acknowledged offsets the damage may take: the batch it hits,
        // or for a truncation every batch from there to the segment's end.
        let mut may_lose = Vec::new();
        if path.extension().is_some_and(|e| e == "log") {
            let segs = segments(dir.path());
            let i = segs.iter().position(|s| *s == path).unwrap();
            let seg_end = segs.get(i + 1).map_or(end, |n| batches_in(n)[0].1.base_offset);
            for (pos, h) in batches_in(&path) {
                let hit = match harm {
                    Harm::Flip { .. } => pos <= at && at < pos + h.total_len(),
                    Harm::Truncate { .. } => at < pos + h.total_len(),
                };
                if hit {
                    let last = if matches!(harm, Harm::Truncate { .. }) { seg_end - 1 } else { h.last_offset() };
                    may_lose.push((h.base_offset, last));
                }
            }
        }
        match harm {
            Harm::Flip { xor, .. } => {
                let mut b = std::fs::read(&path).unwrap();
                b[at] ^= xor;
                std::fs::write(&path, b).unwrap();
            }
            Harm::Truncate { .. } => {
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(at as u64).unwrap();
            }
        }
        let (p, _) = open(dir.path());
        check(&p, end, &may_lose);
        drop(p);
        // And once more: a second start after the first recovery holds too.
        let (p, _) = open(dir.path());
        let (got, _) = read_all(&p);
        let ok = got.iter().all(|(o, v)| *o >= end || *v == format!("v{}", o));
        prop_assert!(ok);
    }
}

#[test]
fn a_start_without_snapshots_replays_the_log_once_and_leaves_a_snapshot_behind() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 60);
    for (_, s) in super::snapshot::list(dir.path()) {
        std::fs::remove_file(s).unwrap();
    }
    let (p, _) = open(dir.path());
    let active_base = batches_in(segments(dir.path()).last().unwrap())[0]
        .1
        .base_offset;
    assert_eq!(
        super::snapshot::list(dir.path()).first().map(|s| s.0),
        Some(active_base)
    );
    assert!(check(&p, end, &[]).is_empty());
    assert!(p.append(batch(236, 4, 9, 236)).unwrap().duplicate);
}

#[test]
fn after_a_clean_stop_the_active_segment_is_not_scanned_and_appends_after_it_are() {
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 61);
    let last = segments(dir.path()).pop().unwrap();
    let base = batches_in(&last)[0].1.base_offset;
    assert!(index::read(&index::path(dir.path(), base)).is_some());
    // Damage inside the prefix the index covers is not seen at start (as in a
    // sealed segment) but on read; appends after the clean stop are scanned.
    let (pos, h) = batches_in(&last)[0];
    flip(&last, pos + 70);
    let (p, shared) = open(dir.path());
    assert_eq!(shared.metrics.damaged_batches.get(), 0);
    let more = p.append(batch(end, 4, 9, 244)).unwrap();
    assert_eq!(more.base_offset, end);
    p.sync().unwrap();
    drop(p);
    let (p, _) = open(dir.path());
    assert_eq!(p.bounds().1, end + 4);
    let lost = check(&p, end, &[(h.base_offset, h.last_offset())]);
    assert_eq!(lost, vec![(h.base_offset, h.last_offset())]);
    // Producer state across the clean stop and the crash after it.
    assert!(p.append(batch(end, 4, 9, 244)).unwrap().duplicate);
}

#[test]
fn damage_to_the_first_batch_of_a_segment_is_reported_lost_not_skipped() {
    // The index of a segment whose first batch is damaged starts at the
    // second batch: a read from the segment's base must still scan from its
    // start and report the first batch's offsets as lost.
    let dir = tempfile::tempdir().unwrap();
    let end = fill(dir.path(), 40);
    let last = segments(dir.path()).pop().unwrap();
    let (pos, h) = batches_in(&last)[0];
    flip(&last, pos + 16);
    let (p, _) = open(dir.path());
    let lost = check(&p, end, &[(h.base_offset, h.last_offset())]);
    assert_eq!(lost, vec![(h.base_offset, h.last_offset())]);
}
