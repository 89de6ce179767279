//! File source behaviour against real files on disk.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use weir_core::metrics::Registry;

use super::*;
use crate::component::{BoxFuture, SendError, SourceOutput};
use crate::state::StateStore;

#[derive(Default)]
struct Collect {
    batches: Mutex<Vec<SourceBatch>>,
}

impl SourceOutput for Collect {
    fn send(&self, batch: SourceBatch) -> BoxFuture<'_, Result<(), SendError>> {
        self.batches.lock().unwrap().push(batch);
        Box::pin(async { Ok(()) })
    }

    fn send_to<'a>(
        &'a self,
        _output: &'a str,
        _batch: SourceBatch,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async { Ok(()) })
    }
}

impl Collect {
    fn lines(&self) -> Vec<String> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b.events_from(0)
                    .iter()
                    .map(|e| e.message().unwrap_or("<bytes>").to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    async fn wait_lines(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let l = self.lines();
            if l.len() >= n {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.lines()
    }
}

struct Running {
    out: Arc<Collect>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ComponentError>>,
}

impl Running {
    async fn stop(self) -> Arc<Collect> {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
        self.out
    }
}

fn config(dir: &Path, extra: &str) -> FileSourceConfig {
    let yaml = format!(
        "include: [\"{}/*.log\"]\npoll_interval: 20ms\ncheckpoint_interval: 50ms\n{extra}",
        dir.display()
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn start(cfg: &FileSourceConfig, state: &StateStore) -> Running {
    start_in(cfg, state, Registry::new())
}

fn start_in(cfg: &FileSourceConfig, state: &StateStore, metrics: Registry) -> Running {
    let out = Arc::new(Collect::default());
    let (stop, shutdown) = watch::channel(false);
    let ctx = SourceContext {
        id: "logs".into(),
        host: "h".into(),
        output: out.clone(),
        state: state.clone(),
        shutdown,
        metrics,
        held: Default::default(),
    };
    let task = tokio::spawn(cfg.build(ctx).unwrap());
    Running { out, stop, task }
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Truncates `path` to nothing, keeping its inode (as copytruncate does).
fn truncate_in_place(path: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn numbered(from: usize, to: usize) -> String {
    (from..to).map(|i| format!("line {i}\n")).collect()
}

fn expected(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("line {i}")).collect()
}

#[tokio::test]
async fn reads_existing_lines_then_appends_and_new_files_under_the_glob() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), &numbered(0, 3));
    let r = start(&config(dir.path(), ""), &StateStore::in_memory().unwrap());
    assert_eq!(r.out.wait_lines(3).await, expected(0, 3));
    append(&dir.path().join("a.log"), &numbered(3, 5));
    append(&dir.path().join("b.log"), "from b\n");
    append(&dir.path().join("ignored.txt"), "not matched\n");
    let got = r.out.wait_lines(6).await;
    let out = r.stop().await;
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(got.contains(&"from b".to_owned()));
    assert_eq!(
        out.lines()
            .iter()
            .filter(|l| l.starts_with("line"))
            .cloned()
            .collect::<Vec<_>>(),
        expected(0, 5)
    );
}

#[tokio::test]
async fn resumes_after_rename_rotation_finishing_the_old_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &numbered(0, 100));
    let r = start(&config(dir.path(), ""), &StateStore::in_memory().unwrap());
    r.out.wait_lines(100).await;
    // Rotate: the writer adds to the old file after the rename, before reopening.
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&dir.path().join("app.log.1"), &numbered(100, 110));
    append(&log, &numbered(110, 200));
    let got = r.out.wait_lines(200).await;
    r.stop().await;
    assert_eq!(got, expected(0, 200));
}

#[tokio::test]
async fn copytruncate_is_detected_and_the_new_content_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &numbered(0, 50));
    let r = start(&config(dir.path(), ""), &StateStore::in_memory().unwrap());
    r.out.wait_lines(50).await;
    truncate_in_place(&log);
    append(&log, "after truncate\n");
    let got = r.out.wait_lines(51).await;
    let out = r.stop().await;
    assert_eq!(got.last().map(String::as_str), Some("after truncate"));
    assert_eq!(got.len(), 51);
    let keys: HashSet<_> = out
        .batches
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.stream.clone())
        .collect();
    assert_eq!(
        keys.len(),
        2,
        "the truncated file restarts under a new stream key"
    );
}

/// The value of the series `name` in the rendered registry.
fn metric(r: &Registry, name: &str) -> u64 {
    r.render()
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn cut_lines_are_counted_once_even_after_the_file_is_truncated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let long = "x".repeat(5000);
    append(&log, &format!("{long}\n{long}\nshort\n"));
    let metrics = Registry::new();
    let r = start_in(
        &config(dir.path(), "max_line_bytes: 4KiB\n"),
        &StateStore::in_memory().unwrap(),
        metrics.clone(),
    );
    r.out.wait_lines(3).await;
    assert_eq!(metric(&metrics, "weir_file_truncated_lines_total"), 2);
    for round in 0..2 {
        truncate_in_place(&log);
        append(&log, &format!("after truncate {round}\n"));
        r.out.wait_lines(4 + round).await;
    }
    let out = r.stop().await;
    assert_eq!(out.lines().len(), 5, "{:?}", out.lines());
    assert_eq!(
        metric(&metrics, "weir_file_truncated_lines_total"),
        2,
        "two lines were cut, whatever happened to the file afterwards"
    );
}

#[tokio::test]
async fn restart_resumes_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::in_memory().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &numbered(0, 10));
    let r = start(&config(dir.path(), ""), &state);
    r.out.wait_lines(10).await;
    r.stop().await;
    append(&log, &numbered(10, 15));
    let r = start(&config(dir.path(), ""), &state);
    let got = r.out.wait_lines(5).await;
    r.stop().await;
    assert_eq!(got, expected(10, 15));
}

#[tokio::test]
async fn a_reused_inode_with_new_content_is_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::in_memory().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &numbered(0, 10));
    let f = File::open(&log).unwrap();
    let (dev, ino) = identity::dev_ino(&f).unwrap();
    // A checkpoint of an older file that had this inode, with other content.
    let stale = FileCheckpoint {
        key: "logs/old".into(),
        path: log.display().to_string(),
        dev,
        ino,
        fp_len: 8,
        fp_crc: crc32c::crc32c(b"OLDFILE!"),
        offset: 40,
    };
    state.replace_file_checkpoints("logs", &[stale]).unwrap();
    let r = start(&config(dir.path(), ""), &state);
    let got = r.out.wait_lines(10).await;
    r.stop().await;
    assert_eq!(got, expected(0, 10));
}

#[tokio::test]
async fn start_at_end_skips_existing_content_and_gone_files_lose_their_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::in_memory().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &numbered(0, 10));
    let gone = FileCheckpoint {
        key: "logs/gone".into(),
        path: "/nonexistent/x.log".into(),
        dev: 1,
        ino: 1,
        fp_len: 0,
        fp_crc: 0,
        offset: 5,
    };
    state.replace_file_checkpoints("logs", &[gone]).unwrap();
    let r = start(&config(dir.path(), "start_at: end\n"), &state);
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&log, &numbered(10, 12));
    let got = r.out.wait_lines(2).await;
    r.stop().await;
    assert_eq!(got, expected(10, 12));
    let cps = state.file_checkpoints("logs").unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].offset, std::fs::metadata(&log).unwrap().len());
}

#[tokio::test]
async fn every_event_carries_its_end_offset_for_the_channels() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "ab\ncde\n");
    let r = start(&config(dir.path(), ""), &StateStore::in_memory().unwrap());
    r.out.wait_lines(2).await;
    let out = r.stop().await;
    let ends: Vec<u64> = out
        .batches
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.marks.iter().map(|m| m.pos).collect::<Vec<_>>())
        .collect();
    assert_eq!(ends, vec![3, 7]);
}

#[tokio::test]
async fn a_rotated_file_s_last_line_without_newline_is_sent_when_the_file_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "first\nno newline at the end");
    let r = start(
        &config(dir.path(), "rotate_wait: 200ms\n"),
        &StateStore::in_memory().unwrap(),
    );
    assert_eq!(r.out.wait_lines(1).await, vec!["first"]);
    // While the file is current, the unfinished line waits for its newline.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.out.lines().len(), 1);
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    let got = r.out.wait_lines(2).await;
    let out = r.stop().await;
    assert_eq!(got, vec!["first", "no newline at the end"]);
    let ends: Vec<u64> = out
        .batches
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.marks.iter().map(|m| m.pos).collect::<Vec<_>>())
        .collect();
    assert_eq!(
        ends,
        vec![6, 27],
        "the last line ends at the end of the file"
    );
}

#[tokio::test]
async fn a_file_rotated_while_stopped_is_finished_before_the_new_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateStore::in_memory().unwrap();
    // Small reads: each rotated file takes many rounds to finish.
    let cfg = config(dir.path(), "read_bytes: 4KiB\n");
    let log = dir.path().join("app.log");
    append(&log, &numbered(0, 10));
    let r = start(&cfg, &state);
    r.out.wait_lines(10).await;
    r.stop().await;
    // While the agent is down the file grows far beyond one round of
    // reads, rotates, and the new file gets lines.
    append(&log, &numbered(10, 20_000));
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, &numbered(20_000, 20_100));
    let r = start(&cfg, &state);
    let got = r.out.wait_lines(20_090).await;
    r.stop().await;
    let want = expected(10, 20_100);
    let first_diff = (0..want.len().max(got.len())).find(|&i| got.get(i) != want.get(i));
    assert_eq!(
        first_diff,
        None,
        "the rotated file to its end first: got {} lines, first difference {:?}",
        got.len(),
        first_diff.map(|i| (got.get(i), want.get(i)))
    );
}
