//! A batch of lines (ranges of one buffer) in the disk spool: the same
//! records, the same full policies and the same skipping as the events it
//! stands for.

use bytes::Bytes;
use weir_core::lines::{InvalidText, LineBatch};
use weir_core::Metadata;

use super::*;

fn opts(max_bytes: u64, when_full: WhenFull, form: PayloadForm) -> DiskOptions {
    DiskOptions {
        form,
        max_bytes,
        segment_bytes: 1024,
        when_full,
        fsync: FsyncPolicy::Batch,
        min_free_bytes: 0,
    }
}

fn open(dir: &Path, o: DiskOptions) -> DiskSpool {
    DiskSpool::open(dir, o, ChannelMetrics::default()).unwrap()
}

/// `n` lines `line number <i>` (with a quote, a tab and a bad byte on some),
/// cut from one buffer, as the file source cuts them.
fn lines(n: usize) -> LineBatch {
    let mut buf = Vec::new();
    let mut ranges = Vec::new();
    for i in 0..n {
        let s = buf.len();
        buf.extend_from_slice(format!("line number {i}").as_bytes());
        match i % 4 {
            1 => buf.extend_from_slice(b" \"q\"\t"),
            2 => buf.extend_from_slice(b" \xff"),
            _ => {}
        }
        ranges.push((s, buf.len()));
        buf.extend_from_slice(b"\r\n");
    }
    LineBatch {
        buf: Bytes::from(buf),
        ranges,
        meta: Metadata {
            source: "logs".into(),
            host: "gw".into(),
            ..Metadata::default()
        },
        timestamp: 1_700_000_000_000_000_000,
        extra: Some(("path".into(), "/var/log/app.log".into())),
        invalid: InvalidText::Preserve,
    }
}

fn ends(n: usize) -> Vec<Mark> {
    (1..=n as u64).map(|e| Mark::at(e * 20)).collect()
}

fn texts(s: &DiskSpool) -> Vec<String> {
    s.read_records(100_000, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
        .collect()
}

fn segment_bytes(dir: &Path) -> Vec<u8> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "spool"))
        .collect();
    names.sort();
    names.iter().flat_map(|p| fs::read(p).unwrap()).collect()
}

#[test]
fn a_line_batch_spools_the_very_bytes_its_events_would() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let o = || opts(1 << 20, WhenFull::Block, PayloadForm::Records);
    let (sa, sb) = (open(a.path(), o()), open(b.path(), o()));
    let l = lines(200);
    let stream = Stream::ordered("f/1");
    let m = ends(200);
    let marks = || {
        Some(StreamMarks {
            stream: &stream,
            marks: &m,
            releases: &[],
        })
    };
    assert_eq!(sa.append_lines(&l, 0, marks()).unwrap().consumed, 200);
    assert_eq!(sb.append(&l.events_from(0), marks()).unwrap().consumed, 200);
    assert_eq!(segment_bytes(a.path()), segment_bytes(b.path()));
    assert!(texts(&sa)[2].contains("\"message\":\"line number 2 \u{fffd}\""));
}

#[test]
fn a_line_batch_in_the_typed_form_reads_back_as_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(
        dir.path(),
        opts(1 << 20, WhenFull::Block, PayloadForm::Events),
    );
    let l = lines(10);
    s.append_lines(&l, 3, None).unwrap();
    let got: Vec<Event> = s
        .read(100, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(got, l.events_from(3));
}

#[test]
fn a_line_batch_under_block_takes_what_fits_and_the_rest_after_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(
        dir.path(),
        opts(4096, WhenFull::Block, PayloadForm::Records),
    );
    let l = lines(100);
    let (stream, m) = (Stream::ordered("f/1"), ends(100));
    let mut done = 0;
    let mut got = Vec::new();
    for _ in 0..100 {
        if done == 100 {
            break;
        }
        let a = s
            .append_lines(
                &l,
                done,
                Some(StreamMarks {
                    stream: &stream,
                    marks: &m[done..],
                    releases: &[],
                }),
            )
            .unwrap();
        assert_eq!((a.dropped_newest, a.skipped), (0, 0));
        if done == 0 {
            assert!(a.consumed > 0 && a.consumed < 100, "{}", a.consumed);
            assert!(s.total_bytes() <= 4096);
        }
        done += a.consumed;
        let read = s.read_records(10_000, usize::MAX).unwrap();
        if let Some(last) = read.last() {
            s.ack(last.id + 1).unwrap();
        }
        got.extend(read.iter().map(|r| r.value.clone()));
    }
    assert_eq!(done, 100);
    let want: Vec<Bytes> = l
        .events_from(0)
        .iter()
        .map(|e| Bytes::from(e.fields_json()))
        .collect();
    assert_eq!(got, want, "every line once, in order");
}

#[test]
fn drop_newest_on_a_line_batch_counts_exactly_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let m = ChannelMetrics::default();
    let s = DiskSpool::open(
        dir.path(),
        opts(4096, WhenFull::DropNewest, PayloadForm::Records),
        m.clone(),
    )
    .unwrap();
    let a = s.append_lines(&lines(1000), 0, None).unwrap();
    assert_eq!(a.consumed, 1000);
    assert!(a.dropped_newest > 0);
    let kept = texts(&s);
    assert_eq!(kept.len() + a.dropped_newest, 1000);
    assert!(kept[0].contains("line number 0\""));
    assert_eq!(m.dropped_newest.get(), a.dropped_newest as u64);
}

#[test]
fn lines_reread_after_a_crash_are_not_spooled_twice() {
    let dir = tempfile::tempdir().unwrap();
    let o = || opts(1 << 20, WhenFull::Block, PayloadForm::Records);
    let s = open(dir.path(), o());
    let (l, stream, m) = (lines(30), Stream::ordered("f/1"), ends(30));
    let first = LineBatch {
        ranges: l.ranges[..20].to_vec(),
        ..l.clone()
    };
    let marks = |from: usize, to: usize| StreamMarks {
        stream: &stream,
        marks: &m[from..to],
        releases: &[],
    };
    s.append_lines(&first, 0, Some(marks(0, 20))).unwrap();
    drop(s);
    let s = open(dir.path(), o());
    // The source's checkpoint was older: it reads from line 10 again.
    let again = LineBatch {
        ranges: l.ranges[10..].to_vec(),
        ..l.clone()
    };
    let a = s.append_lines(&again, 0, Some(marks(10, 30))).unwrap();
    assert_eq!((a.consumed, a.skipped), (20, 10));
    let got = texts(&s);
    assert_eq!(got.len(), 30);
    for (i, t) in got.iter().enumerate() {
        assert!(t.contains(&format!("\"line number {i}")), "{i}: {t}");
    }
}
