//! The `file` source: tails files matched by globs, across rotation.
//!
//! - **Identity**: a file is (device, inode) plus a CRC of its first bytes,
//!   so a recycled inode is a new file. Each file instance gets a stream key
//!   (`<source>/<dev>:<ino>:<first seen>`) kept in its checkpoint.
//! - **Rotation by rename**: the renamed file stays open and is read to its
//!   end (older files are drained first) before being closed; the new file is
//!   found by the next glob. After a restart, a checkpointed file that left the
//!   glob is looked up by inode in its directory and finished.
//! - **copytruncate**: a size below the read offset, or a changed first-bytes
//!   fingerprint, restarts the file at 0 under a new stream key.
//! - **Positions**: each line's end offset travels with it to the channels,
//!   which commit the highest one with the data. Checkpoints go to SQLite
//!   every `checkpoint_interval` and at shutdown; after a crash the source
//!   resumes from its checkpoint and the channels skip what they already hold.

pub mod config;
pub mod held;
pub mod identity;
pub mod reader;
pub mod tailer;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use weir_core::lines::{InvalidText, LineBatch};
use weir_core::metrics::{Counter, Gauge};
use weir_core::Metadata;

pub use config::FileSourceConfig;

use crate::component::{
    BuildError, ComponentError, SourceBatch, SourceConfig, SourceContext, Task,
};
use crate::state::FileCheckpoint;
use identity::Fingerprint;
use reader::{Cuts, LineSplitter};
use tailer::{ReadOutcome, Tailer};

/// Chunks read from one file per round before moving to the next file.
const CHUNKS_PER_ROUND: usize = 16;

impl SourceConfig for FileSourceConfig {
    fn problems(&self) -> Vec<String> {
        self.value_problems()
    }

    fn build(&self, ctx: SourceContext) -> Result<Task, BuildError> {
        let problems = self.value_problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        let source = FileSource::new(self.clone(), ctx);
        Ok(Box::pin(source.run()))
    }
}

struct Metrics {
    events: Counter,
    bytes: Counter,
    truncated_lines: Counter,
    truncations: Counter,
    open_files: Gauge,
}

struct FileSource {
    cfg: FileSourceConfig,
    ctx: SourceContext,
    tailers: Vec<Tailer>,
    /// Checkpoints loaded at start, consumed as their files are found.
    pending_checkpoints: Vec<FileCheckpoint>,
    next_order: u64,
    metrics: Metrics,
}

impl FileSource {
    fn new(cfg: FileSourceConfig, ctx: SourceContext) -> Self {
        let l = [("component", ctx.id.as_str())];
        let r = &ctx.metrics;
        let metrics = Metrics {
            events: r.counter(
                "weir_source_events_total",
                "Events produced by a source.",
                &l,
            ),
            bytes: r.counter("weir_source_bytes_total", "Bytes read by a source.", &l),
            truncated_lines: r.counter(
                "weir_file_truncated_lines_total",
                "Lines longer than max_line_bytes whose rest was dropped.",
                &l,
            ),
            truncations: r.counter(
                "weir_file_truncations_total",
                "Files found truncated or rewritten (copytruncate); read again from 0.",
                &l,
            ),
            open_files: r.gauge("weir_file_open_files", "Files currently followed.", &l),
        };
        FileSource {
            cfg,
            ctx,
            tailers: Vec::new(),
            pending_checkpoints: Vec::new(),
            next_order: 0,
            metrics,
        }
    }

    async fn run(mut self) -> Result<(), ComponentError> {
        let state = self.ctx.state.clone();
        let id = self.ctx.id.clone();
        self.pending_checkpoints =
            tokio::task::spawn_blocking(move || state.file_checkpoints(&id)).await??;
        let dirs: Vec<PathBuf> = self.cfg.include.iter().map(|p| glob_base(p)).collect();
        let lost = held::reconcile(
            &self.ctx.id,
            &mut self.pending_checkpoints,
            &self.ctx.held,
            &dirs,
            self.cfg.fingerprint_bytes,
        );
        self.ctx
            .metrics
            .counter(
                "weir_file_lost_streams_total",
                "Files the spools knew whose position could not be rebuilt (gone when the agent started without their checkpoint).",
                &[("component", self.ctx.id.as_str())],
            )
            .add(lost);
        let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
        let _watcher = self.watch_dirs(wake_tx);
        self.discover(true);
        self.resume_rotated_checkpoints();
        // A new file's stream key must be durable before any of its lines
        // reach a channel: after a crash it is what lets the channels
        // recognise lines they already hold.
        self.checkpoint().await;
        let mut last_checkpoint = Instant::now();
        let mut last_glob = Instant::now();
        let mut shutdown = self.ctx.shutdown.clone();
        let mut buf = BytesMut::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let progressed = match self.drain_round(&mut buf).await {
                Ok(p) => p,
                Err(_shutdown) => break,
            };
            if self.close_finished().await.is_err() {
                break;
            }
            if last_checkpoint.elapsed() >= self.cfg.checkpoint_interval {
                self.checkpoint().await;
                last_checkpoint = Instant::now();
            }
            if progressed {
                continue;
            }
            tokio::select! {
                _ = wake_rx.recv() => {}
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            if last_glob.elapsed() >= self.cfg.poll_interval {
                if self.discover(false) > 0 {
                    self.checkpoint().await;
                }
                last_glob = Instant::now();
            }
        }
        self.checkpoint().await;
        info!(source = %self.ctx.id, "File source stopped; positions checkpointed.");
        Ok(())
    }

    /// Watches the directories the globs start from; events only wake the loop early.
    fn watch_dirs(&self, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher;
        let mut w = match notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
            let _ = tx.try_send(());
        }) {
            Ok(w) => w,
            Err(e) => {
                warn!(source = %self.ctx.id, error = %e, "Change notification unavailable; polling only.");
                return None;
            }
        };
        for pat in &self.cfg.include {
            let dir = glob_base(pat);
            if let Err(e) = w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                debug!(dir = %dir.display(), error = %e, "Cannot watch directory; polling it.");
            }
        }
        Some(w)
    }

    fn matched_paths(&self) -> Vec<PathBuf> {
        let excludes: Vec<glob::Pattern> = self
            .cfg
            .exclude
            .iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for pat in &self.cfg.include {
            let Ok(paths) = glob::glob(pat) else { continue };
            for p in paths.flatten() {
                if p.is_file()
                    && !excludes.iter().any(|e| e.matches_path(&p))
                    && seen.insert(p.clone())
                {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// Evaluates the globs: opens new files, marks which known files are still
    /// matched. Returns how many files it opened.
    fn discover(&mut self, startup: bool) -> usize {
        let before = self.tailers.len();
        for t in &mut self.tailers {
            t.in_glob = false;
        }
        for path in self.matched_paths() {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    debug!(path = %path.display(), error = %e, "Cannot open matched file.");
                    continue;
                }
            };
            let Ok((dev, ino)) = identity::dev_ino(&file) else {
                continue;
            };
            if let Some(t) = self
                .tailers
                .iter_mut()
                .find(|t| t.dev == dev && t.ino == ino)
            {
                t.in_glob = true;
                if t.path != path {
                    debug!(from = %t.path.display(), to = %path.display(), "File renamed; following it.");
                    t.path = path;
                }
                continue;
            }
            self.open_tailer(path, file, dev, ino, startup);
        }
        self.metrics.open_files.set(self.tailers.len() as i64);
        self.tailers.len() - before
    }

    fn open_tailer(&mut self, path: PathBuf, file: File, dev: u64, ino: u64, startup: bool) {
        let fp_bytes = self.cfg.fingerprint_bytes;
        let known = self
            .pending_checkpoints
            .iter()
            .position(|c| is_checkpointed_file(&file, (dev, ino), c));
        let (key, offset, fp) = match known {
            Some(i) => {
                let c = self.pending_checkpoints.swap_remove(i);
                (
                    Arc::<str>::from(c.key),
                    c.offset,
                    Fingerprint {
                        len: c.fp_len,
                        crc: c.fp_crc,
                    },
                )
            }
            None => {
                let Ok(fp) = identity::fingerprint(&file, fp_bytes) else {
                    return;
                };
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                let offset = if startup && self.cfg.start_at == config::StartAt::End {
                    size
                } else {
                    0
                };
                (self.new_key(dev, ino), offset, fp)
            }
        };
        info!(source = %self.ctx.id, path = %path.display(), offset, "Following file.");
        let splitter = self.splitter();
        let order = self.next_order;
        self.next_order += 1;
        self.tailers.push(Tailer::new(
            path, file, dev, ino, key, fp, offset, splitter, order,
        ));
    }

    fn splitter(&self) -> LineSplitter {
        LineSplitter::new(self.cfg.max_line_bytes.bytes() as usize)
    }

    fn new_key(&self, dev: u64, ino: u64) -> Arc<str> {
        format!(
            "{}/{dev}:{ino}:{}",
            self.ctx.id,
            weir_core::event::now_nanos()
        )
        .into()
    }

    /// Checkpointed files that left the glob while the agent was down (rotated):
    /// find them by inode in their old directory and finish reading them.
    fn resume_rotated_checkpoints(&mut self) {
        let mut pending = std::mem::take(&mut self.pending_checkpoints);
        // Oldest first: a file's key ends with the time it was first seen.
        pending.sort_by_key(|c| first_seen(&c.key));
        let mut found = Vec::new();
        for c in pending {
            let dir = Path::new(&c.path)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                let Ok(id) = identity::dev_ino(&file) else {
                    continue;
                };
                if is_checkpointed_file(&file, id, &c) {
                    info!(source = %self.ctx.id, path = %path.display(), offset = c.offset, "Finishing a file rotated while the agent was stopped.");
                    let splitter = self.splitter();
                    // Rotated files are older than anything the glob found.
                    let mut t = Tailer::new(
                        path,
                        file,
                        c.dev,
                        c.ino,
                        c.key.clone().into(),
                        Fingerprint {
                            len: c.fp_len,
                            crc: c.fp_crc,
                        },
                        c.offset,
                        splitter,
                        0,
                    );
                    t.in_glob = false;
                    found.push(t);
                    break;
                }
            }
        }
        // Rotated files come before every file still under the glob, in the
        // order they were first seen.
        found.append(&mut self.tailers);
        self.tailers = found;
        self.tailers.sort_by_key(|t| t.in_glob);
        self.metrics.open_files.set(self.tailers.len() as i64);
    }

    /// Reads every file (oldest first) up to a bound, sending each chunk's
    /// lines. A file that left the glob (rotated) is read to its end before
    /// any newer file: its successor's lines must not overtake its own.
    /// Returns whether anything was read; `Err` at shutdown.
    async fn drain_round(&mut self, buf: &mut BytesMut) -> Result<bool, ()> {
        let mut progressed = false;
        let max = self.cfg.read_bytes.bytes() as usize;
        // Sized for a chunk of short lines: grown by doubling, the vectors
        // moved every line's cut several times.
        let room = (max / 64).min(1 << 16);
        let mut lines = Cuts {
            ranges: Vec::with_capacity(room),
            ends: Vec::with_capacity(room),
        };
        for i in 0..self.tailers.len() {
            let mut at_end = false;
            for _ in 0..CHUNKS_PER_ROUND {
                lines.clear();
                let t = &mut self.tailers[i];
                let outcome = match t.read(buf, max, self.cfg.fingerprint_bytes, &mut lines) {
                    Ok(o) => o,
                    Err(e) => {
                        warn!(path = %t.path.display(), error = %e, "Read failed; will retry.");
                        // A file that cannot be read must not hold back the others.
                        at_end = true;
                        break;
                    }
                };
                match outcome {
                    ReadOutcome::Eof => {
                        at_end = true;
                        break;
                    }
                    ReadOutcome::Truncated => {
                        warn!(path = %t.path.display(), "File was truncated or rewritten; reading it again from the start.");
                        self.metrics.truncations.inc();
                        let (dev, ino) = (t.dev, t.ino);
                        let key = self.new_key(dev, ino);
                        self.tailers[i].key = key;
                        // The new key is durable before lines are sent under it.
                        self.checkpoint().await;
                        progressed = true;
                        continue;
                    }
                    ReadOutcome::Data(n) => {
                        progressed = true;
                        self.metrics.bytes.add(n as u64);
                    }
                }
                self.report_truncated_lines(i);
                if lines.is_empty() {
                    continue;
                }
                // The chunk is shared by the batch's lines; its memory is
                // reused by a later read once the channels let go of it.
                let chunk = buf.split().freeze();
                self.send(i, chunk, &mut lines).await?;
            }
            if !at_end && !self.tailers[i].in_glob {
                // Not finished yet: newer files wait for the next round.
                return Ok(progressed);
            }
        }
        Ok(progressed)
    }

    fn report_truncated_lines(&mut self, i: usize) {
        let t = &mut self.tailers[i];
        let n = t.truncated_lines();
        let before = std::mem::replace(&mut t.reported_truncated, n);
        if n > before {
            self.metrics.truncated_lines.add(n - before);
            warn!(path = %t.path.display(), lines = n - before, max_line_bytes = %self.cfg.max_line_bytes, "Lines longer than max_line_bytes were cut; the rest was dropped.");
        }
    }

    /// Sends the lines `cuts` marks in `chunk` as one batch.
    async fn send(&mut self, i: usize, chunk: Bytes, cuts: &mut Cuts) -> Result<(), ()> {
        let t = &self.tailers[i];
        let meta = Metadata {
            source: self.ctx.id.as_str().into(),
            host: self.ctx.host.clone(),
            topic: None,
            key: None,
        };
        let mut lines = LineBatch::new(chunk, meta, weir_core::event::now_nanos());
        // The batch keeps the ranges; the next chunk's start with the same room.
        let room = cuts.ranges.capacity();
        lines.ranges = std::mem::replace(&mut cuts.ranges, Vec::with_capacity(room));
        lines.extra = self
            .cfg
            .path_field
            .as_ref()
            .map(|f| (f.as_str().into(), t.path.display().to_string().into()));
        lines.invalid = match self.cfg.invalid_utf8 {
            config::InvalidUtf8::Replace => InvalidText::Replace,
            config::InvalidUtf8::Preserve => InvalidText::Preserve,
        };
        let last = cuts.ends.last().copied();
        let n = lines.len() as u64;
        let batch = SourceBatch::ordered_lines(t.key.clone(), lines, &cuts.ends);
        self.ctx.output.send(batch).await.map_err(|_| ())?;
        self.metrics.events.add(n);
        if let Some(end) = last {
            self.tailers[i].committed = end;
        }
        Ok(())
    }

    /// Closes files that left the glob (rotated or deleted) and have been
    /// idle at their end for `rotate_wait`. A last line without a newline is
    /// sent first: nobody will finish it now. `Err` at shutdown.
    async fn close_finished(&mut self) -> Result<(), ()> {
        let wait = self.cfg.rotate_wait;
        let finished = |t: &Tailer| !t.in_glob && t.last_data.elapsed() >= wait;
        for i in 0..self.tailers.len() {
            if finished(&self.tailers[i]) {
                if let Some((line, end)) = self.tailers[i].take_partial_line() {
                    let mut cuts = Cuts {
                        ranges: vec![(0, line.len())],
                        ends: vec![end],
                    };
                    self.send(i, line.into(), &mut cuts).await?;
                }
            }
        }
        let before = self.tailers.len();
        self.tailers.retain(|t| {
            let done = finished(t) && t.offset == t.committed;
            if done {
                info!(path = %t.path.display(), "Finished a file that left the glob (rotated or deleted); closing it.");
            }
            !done
        });
        if self.tailers.len() != before {
            self.metrics.open_files.set(self.tailers.len() as i64);
        }
        Ok(())
    }

    /// Writes the positions of followed files; files no longer followed lose their entry.
    async fn checkpoint(&mut self) {
        let current: Vec<FileCheckpoint> = self
            .tailers
            .iter()
            .map(|t| FileCheckpoint {
                key: t.key.to_string(),
                path: t.path.display().to_string(),
                dev: t.dev,
                ino: t.ino,
                fp_len: t.fp.len,
                fp_crc: t.fp.crc,
                offset: t.committed,
            })
            .collect();
        let state = self.ctx.state.clone();
        let id = self.ctx.id.clone();
        match tokio::task::spawn_blocking(move || state.replace_file_checkpoints(&id, &current))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(source = %self.ctx.id, error = %e, "Failed to write checkpoints; will retry.")
            }
            Err(e) => {
                warn!(source = %self.ctx.id, error = %e, "Checkpoint task failed; will retry.")
            }
        }
    }
}

/// Whether an open file (with its device and inode) is the file a checkpoint
/// describes: same inode, and it still starts with the fingerprinted bytes.
fn is_checkpointed_file(file: &File, (dev, ino): (u64, u64), c: &FileCheckpoint) -> bool {
    c.dev == dev
        && c.ino == ino
        && identity::starts_with(
            file,
            Fingerprint {
                len: c.fp_len,
                crc: c.fp_crc,
            },
        )
        .unwrap_or(false)
}

/// The time a file was first seen, from its stream key
/// (`<source>/<dev>:<ino>:<first seen ns>`); 0 if the key has another form.
fn first_seen(key: &str) -> u64 {
    key.rsplit(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The directory a glob pattern starts from (its longest literal prefix).
fn glob_base(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    for comp in Path::new(pattern).components() {
        let s = comp.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[', '{']) {
            break;
        }
        base.push(comp);
    }
    if base.as_os_str().is_empty() || base == Path::new(pattern) {
        base.parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    } else {
        base
    }
}

#[cfg(test)]
mod tests;
