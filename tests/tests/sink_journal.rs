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
    committed_cursor(path).expect("the cursor file is in version 2 form with a valid slot")
}

/// The cursor's last commit, or `None` before the first one (an agent
/// killed before it committed anything leaves no version 2 file yet).
fn committed_cursor(path: &Path) -> Option<(u64, Vec<u8>)> {
    let data = std::fs::read(path).ok()?;
    if data.len() < 8192 {
        return None;
    }
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
    best.map(|(_, acked, note)| (acked, note))
}

/// A collector and an agent tailing `logs/app.log` into it, with the paths
/// the tests read and damage.
struct Rig {
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
    data: std::path::PathBuf,
    cursor: std::path::PathBuf,
    cfg: std::path::PathBuf,
    collector: Collector,
    agent: Agent,
    /// Lines appended so far (`line(0..written)`).
    written: usize,
}

impl Rig {
    fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let data = dir.path().join("agent");
        let collector = Collector::start(&dir.path().join("collector"));
        let cfg = pipeline(dir.path(), &logs, &collector.url());
        let agent = Agent::start(&cfg, &data);
        Rig {
            log: logs.join("app.log"),
            cursor: data.join("spool").join("central").join("ack"),
            data,
            cfg,
            collector,
            agent,
            written: 0,
            _dir: dir,
        }
    }

    /// Appends 2,500 lines, kills the agent -9 `pause` later, and asks
    /// `caught` about the state it left (its cursor's acknowledged id and
    /// journal note, and the collector's end offset); restarts it and tries
    /// again until `caught` answers, at most `attempts` times. The agent is
    /// left dead when caught.
    fn kill_until<T>(
        &mut self,
        attempts: usize,
        pause: Duration,
        mut caught: impl FnMut(u64, &serde_json::Value, u64) -> Option<T>,
    ) -> Option<T> {
        for _ in 0..attempts {
            append_lines(&self.log, (self.written..self.written + 2_500).map(line));
            self.written += 2_500;
            std::thread::sleep(pause);
            self.agent.proc.kill9();
            // Killed before its first commit (a slow start under load):
            // nothing to look at yet, so go round again.
            let Some((acked, note)) = committed_cursor(&self.cursor) else {
                self.agent = Agent::start(&self.cfg, &self.data);
                continue;
            };
            let j: serde_json::Value = serde_json::from_slice(&note).unwrap();
            let held = self.collector.end_offset("upgrade").unwrap_or(0);
            if let Some(t) = caught(acked, &j, held) {
                return Some(t);
            }
            self.agent = Agent::start(&self.cfg, &self.data);
        }
        None
    }

    /// Restarts the agent and waits until the collector holds `n` records.
    fn restart_until_held(&mut self, n: usize) {
        self.agent = Agent::start(&self.cfg, &self.data);
        let done = wait_for(Duration::from_secs(60), || {
            let end = self.collector.end_offset("upgrade")? as usize;
            (end >= n).then_some(end)
        });
        assert!(done.is_some(), "{}", self.agent.proc.log_text());
        // A moment for any (wrong) duplicate still in flight to land.
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn an_older_agents_sqlite_journal_with_batches_in_flight_is_taken_over_exactly_once() {
    let mut rig = Rig::start();
    // Kill the agent while batches are in flight until the collector holds
    // records past the agent's acknowledged cursor: only the journal can
    // then say which, so a sink that ignored the old journal would
    // duplicate them. Bounded: a few attempts.
    let found = rig.kill_until(8, Duration::from_millis(60), |acked, j, held| {
        let inflight = j["inflight"].as_array().map_or(0, |a| a.len());
        (inflight > 0 && held > acked).then(|| (acked, serde_json::to_vec(j).unwrap()))
    });
    let Some((acked, note)) = found else {
        panic!("never caught the collector holding batches the agent had not acknowledged");
    };

    // Rewrite the state as an agent before issue 9 kept it: a 12-byte
    // cursor, and the journal in the state database.
    let mut v1 = acked.to_le_bytes().to_vec();
    v1.extend_from_slice(&crc32c(&acked.to_le_bytes()).to_le_bytes());
    std::fs::write(&rig.cursor, v1).unwrap();
    {
        let db = rusqlite::Connection::open(rig.data.join("state.db")).unwrap();
        db.execute(
            "INSERT OR REPLACE INTO component_state (component, key, value) VALUES ('central', 'collector_journal', ?1)",
            [&note],
        )
        .unwrap();
    }

    append_lines(&rig.log, (rig.written..TOTAL).map(line));
    rig.restart_until_held(TOTAL);
    let got = messages(&consume_all(&rig.collector.url(), "upgrade"));
    assert_exactly_once_in_order(&got, TOTAL);

    // Moved: the cursor is in version 2 form with the journal, and the
    // database keeps only the marker.
    let (_, note) = read_cursor_v2(&rig.cursor);
    let j: serde_json::Value = serde_json::from_slice(&note).unwrap();
    assert!(j["producer"]["issued"].as_bool().unwrap());
    let db = rusqlite::Connection::open(rig.data.join("state.db")).unwrap();
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
    let mut rig = Rig::start();
    // Kill the agent until its journal lists at least two batches in flight
    // and the collector holds the first of them. Bounded: a few attempts.
    let found = rig.kill_until(12, Duration::from_millis(40), |_, j, held| {
        let spans: Vec<(u64, u64)> = j["inflight"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| (e["start"].as_u64().unwrap(), e["end"].as_u64().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        (spans.len() >= 2 && held >= spans[0].1).then(|| (spans[0], spans[1]))
    });
    let Some((first, second)) = found else {
        panic!("never caught two batches in flight with the collector holding the first");
    };

    // Damage one record of the second batch in the spool: one line is the
    // only one in this file, so spool id k holds line(k).
    let k = ((second.0 + second.1) / 2) as usize;
    let needle = line(k);
    let mut damaged = false;
    for seg in std::fs::read_dir(rig.data.join("spool").join("central")).unwrap() {
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

    let written = rig.written;
    // Everything but the damaged record, which may be lost.
    rig.restart_until_held(written - 1);
    let got = messages(&consume_all(&rig.collector.url(), "upgrade"));
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
