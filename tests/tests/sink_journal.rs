//! The collector sink's journal lives in the spool's cursor file (issue 9);
//! agents before kept it in the state database. An agent that finds the old
//! form (a version 1 cursor and the journal in SQLite) with batches in flight
//! continues from it without losing or duplicating a line, and moves it.

use std::path::Path;
use std::time::Duration;

use weir_tests::*;

const TOTAL: usize = 30_000;

fn pipeline(dir: &Path, logs: &Path, url: &str) -> std::path::PathBuf {
    write_pipeline(
        dir,
        "pipeline.yaml",
        &format!(
            r#"
sources:
  app:
    type: file
    include: ["{}/*.log"]
    poll_interval: 50ms
sinks:
  central:
    type: collector
    inputs: [app]
    url: {url}
    topic: upgrade
    initial_backoff: 50ms
    max_backoff: 300ms
    batch: {{ max_events: 500, timeout: 20ms }}
"#,
            logs.display()
        ),
    )
}

/// The acked id and note of a version 2 cursor file (the valid slot with
/// the higher generation).
fn read_cursor_v2(path: &Path) -> (u64, Vec<u8>) {
    let data = std::fs::read(path).unwrap();
    assert!(data.len() >= 8192, "cursor file is in version 2 form");
    let slot = data.len() / 2;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let mut best: Option<(u64, u64, Vec<u8>)> = None;
    for k in 0..2 {
        let s = &data[k * slot..(k + 1) * slot];
        let len = u32_at(s, 12) as usize;
        if u32_at(s, 0) != 0x324b_4341 || 32 + len > slot {
            continue;
        }
        if crc32c(&s[8..32 + len]) != u32_at(s, 4) {
            continue;
        }
        let (gen, acked) = (u64_at(s, 16), u64_at(s, 24));
        if best.as_ref().is_none_or(|b| gen > b.0) {
            best = Some((gen, acked, s[32..32 + len].to_vec()));
        }
    }
    let (_, acked, note) = best.expect("a valid slot");
    (acked, note)
}

/// CRC-32C (Castagnoli), bitwise: the test does not trust the code it checks.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn an_older_agents_sqlite_journal_with_batches_in_flight_is_taken_over_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let data = dir.path().join("agent");
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = pipeline(dir.path(), &logs, &collector.url());
    let mut agent = Agent::start(&cfg, &data);
    let log = logs.join("app.log");

    let cursor = data.join("spool").join("central").join("ack");
    let end_offset = |c: &Collector| {
        http_get(c.addr, "/v1/topics").and_then(|t| {
            let v: serde_json::Value = serde_json::from_str(&t).ok()?;
            v[0]["partitions"][0]["end_offset"].as_u64()
        })
    };
    // Kill the agent while batches are in flight until the collector holds
    // records past the agent's acknowledged cursor: only the journal can
    // then say which, so a sink that ignored the old journal would
    // duplicate them. Bounded: a few attempts.
    let mut written = 0;
    let mut found = None;
    for _ in 0..8 {
        append_lines(&log, (written..written + 2_500).map(line));
        written += 2_500;
        std::thread::sleep(Duration::from_millis(60));
        agent.proc.kill9();
        let (acked, note) = read_cursor_v2(&cursor);
        let j: serde_json::Value = serde_json::from_slice(&note).unwrap();
        let inflight = j["inflight"].as_array().map_or(0, |a| a.len());
        let held = end_offset(&collector).unwrap_or(0);
        if inflight > 0 && held > acked {
            found = Some((acked, note));
            break;
        }
        agent = Agent::start(&cfg, &data);
    }
    let Some((acked, note)) = found else {
        panic!("never caught the collector holding batches the agent had not acknowledged");
    };

    // Rewrite the state as an agent before issue 9 kept it: a 12-byte
    // cursor, and the journal in the state database.
    let mut v1 = acked.to_le_bytes().to_vec();
    v1.extend_from_slice(&crc32c(&acked.to_le_bytes()).to_le_bytes());
    std::fs::write(&cursor, v1).unwrap();
    {
        let db = rusqlite::Connection::open(data.join("state.db")).unwrap();
        db.execute(
            "INSERT OR REPLACE INTO component_state (component, key, value) VALUES ('central', 'collector_journal', ?1)",
            [&note],
        )
        .unwrap();
    }

    let agent = Agent::start(&cfg, &data);
    append_lines(&log, (written..TOTAL).map(line));
    let done = wait_for(Duration::from_secs(60), || {
        let end = http_get(collector.addr, "/v1/topics").and_then(|t| {
            let v: serde_json::Value = serde_json::from_str(&t).ok()?;
            v[0]["partitions"][0]["end_offset"].as_u64()
        })? as usize;
        (end >= TOTAL).then_some(end)
    });
    assert!(done.is_some(), "{}", agent.proc.log_text());
    // A moment for any (wrong) duplicate still in flight to land.
    std::thread::sleep(Duration::from_millis(500));
    let got = messages(&consume_all(&collector.url(), "upgrade"));
    assert_exactly_once_in_order(&got, TOTAL);

    // Moved: the cursor is in version 2 form with the journal, and the
    // database keeps only the marker.
    let (_, note) = read_cursor_v2(&cursor);
    let j: serde_json::Value = serde_json::from_slice(&note).unwrap();
    assert!(j["producer"]["issued"].as_bool().unwrap());
    let db = rusqlite::Connection::open(data.join("state.db")).unwrap();
    let marker: Vec<u8> = db
        .query_row(
            "SELECT value FROM component_state WHERE component = 'central' AND key = 'collector_journal'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let marker: serde_json::Value = serde_json::from_slice(&marker).unwrap();
    assert_eq!(marker["in_spool"], serde_json::Value::Bool(true));
    assert!(marker["producer"].is_null());
}

/// A record damaged on the agent's disk inside a batch that was in flight at
/// a crash is lost alone (its CRC fails; counted by the spool). The batches
/// journaled before it are resent as they were, under the same epoch, and
/// the collector recognises them: none of them arrives twice. (The damaged
/// batch's other records and the batches journaled after it may: the sink
/// must start a new epoch for them, and the collector cannot tell whether
/// they arrived before the crash.)
#[test]
fn a_damaged_record_in_flight_is_lost_alone_and_the_batches_before_it_are_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let data = dir.path().join("agent");
    let collector = Collector::start(&dir.path().join("collector"));
    let cfg = pipeline(dir.path(), &logs, &collector.url());
    let mut agent = Agent::start(&cfg, &data);
    let log = logs.join("app.log");
    let cursor = data.join("spool").join("central").join("ack");
    let end_offset = |c: &Collector| {
        http_get(c.addr, "/v1/topics").and_then(|t| {
            let v: serde_json::Value = serde_json::from_str(&t).ok()?;
            v[0]["partitions"][0]["end_offset"].as_u64()
        })
    };
    // Kill the agent until its journal lists at least two batches in flight
    // and the collector holds the first of them. Bounded: a few attempts.
    let mut written = 0;
    let mut found = None;
    for _ in 0..12 {
        append_lines(&log, (written..written + 2_500).map(line));
        written += 2_500;
        std::thread::sleep(Duration::from_millis(40));
        agent.proc.kill9();
        let (_, note) = read_cursor_v2(&cursor);
        let j: serde_json::Value = serde_json::from_slice(&note).unwrap();
        let spans: Vec<(u64, u64)> = j["inflight"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| (e["start"].as_u64().unwrap(), e["end"].as_u64().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        let held = end_offset(&collector).unwrap_or(0);
        if spans.len() >= 2 && held >= spans[0].1 {
            found = Some((spans[0], spans[1]));
            break;
        }
        agent = Agent::start(&cfg, &data);
    }
    let Some((first, second)) = found else {
        panic!("never caught two batches in flight with the collector holding the first");
    };

    // Damage one record of the second batch in the spool: one line is the
    // only one in this file, so spool id k holds line(k).
    let k = ((second.0 + second.1) / 2) as usize;
    let needle = line(k);
    let mut damaged = false;
    for seg in std::fs::read_dir(data.join("spool").join("central")).unwrap() {
        let p = seg.unwrap().path();
        if p.extension().is_some_and(|e| e == "spool") {
            let mut bytes = std::fs::read(&p).unwrap();
            if let Some(at) = bytes
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
            {
                bytes[at + 20] ^= 0x10;
                std::fs::write(&p, bytes).unwrap();
                damaged = true;
            }
        }
    }
    assert!(damaged, "line {k} found in a spool segment");

    let agent = Agent::start(&cfg, &data);
    let done = wait_for(Duration::from_secs(60), || {
        let end = end_offset(&collector)? as usize;
        (end + 1 >= written).then_some(end)
    });
    assert!(done.is_some(), "{}", agent.proc.log_text());
    std::thread::sleep(Duration::from_millis(500));
    let got = messages(&consume_all(&collector.url(), "upgrade"));
    let mut count = vec![0usize; written];
    for m in &got {
        let i: usize = m.get(5..14).and_then(|n| n.parse().ok()).unwrap();
        assert_eq!(*m, line(i), "only written lines arrive");
        count[i] += 1;
    }
    // The damaged record is lost unless the collector held it before the crash.
    let missing: Vec<usize> = (0..written).filter(|&i| count[i] == 0).collect();
    assert!(
        missing.is_empty() || missing == [k],
        "only the damaged record {k} may be lost; missing {missing:?}"
    );
    let twice: Vec<usize> = (0..second.0 as usize).filter(|&i| count[i] > 1).collect();
    assert!(
        twice.is_empty(),
        "no line of the batches before the damaged one ({first:?}, then {second:?}) arrives twice; {} did, the first {:?}",
        twice.len(),
        twice.first()
    );
}
