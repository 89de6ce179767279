//! A stateful transform's task: exactly once through `kill -9` by
//! event sourcing.
//!
//! Upstream components append to the transform's **input log** (a disk
//! spool, with the same marks and duplicate skipping as a sink's channel);
//! that append is what a source waits for, so an MQTT message is
//! acknowledged to its broker once the log holds it. The task reads the log
//! in order and runs the transform. Everything the transform decides
//! depends only on the log: its inputs, in log order (fan-in is ordered by
//! the log), and time, read from tick records in the log (`route::LogInput`).
//!
//! What it emits is numbered with a sequence per output and delivered under
//! the streams `<id>` / `<id>.<output>` (ordered), so downstream holders skip
//! what they already have. The sequence is per output because the log is
//! read in batches of whatever size is available, and a replay reads it in
//! different batches: an output's own count of events is the same whatever
//! the batching, a count shared by all outputs is not. Every
//! `checkpoint_interval` (and at shutdown) the task saves one record in the
//! state database — the transform's snapshot, the log id it reflects, each
//! output's next sequence, and the time — and only then acknowledges the
//! log up to that id. It never saves after a batch it could not deliver:
//! the transform's state then reflects inputs past the checkpoint's id.
//!
//! After a crash the task restores the last checkpoint and reads the log
//! again from its id: the transform makes the same decisions, emits the
//! same events with the same sequence numbers, and downstream skips those
//! it already holds. Open windows are thus emitted exactly once, with the
//! values they would have had without the crash. This requires transforms
//! to be deterministic given their state, inputs and `now` — the contract
//! of `Transform`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};
use weir_plugins::state::StateStore;
use weir_plugins::{Emitted, Emitter, Mark, SendError, SourceBatch, Stream, Transform};

use super::inline::TransformMetrics;
use super::ports::Ports;
use super::route::{is_tick, LogInput};

/// Key of the checkpoint record in the state database.
const CHECKPOINT_KEY: &str = "transform_checkpoint";

/// Most records read from the log per step.
const READ_EVENTS: usize = 1024;
const READ_BYTES: usize = 4 << 20;

/// What a checkpoint restores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Log ids below this are reflected in `state`.
    pub consumed: u64,
    /// Sequence number of the next event on each output (`""`: the default
    /// output); an output not listed starts at `seq_floor`.
    pub next_seq: BTreeMap<String, u64>,
    /// Where outputs not in `next_seq` start (a version 1 checkpoint's one
    /// shared sequence; 0 otherwise).
    pub seq_floor: u64,
    /// The transform's time (the last tick read).
    pub now: i64,
    pub state: Vec<u8>,
}

impl Checkpoint {
    const VERSION: u8 = 2;

    /// Version 2, little-endian: `u8 2, u64 consumed, i64 now, u64
    /// seq_floor, u32 n, n × (u16 len, output name, u64 next seq), state...`.
    /// Version 1 was `u8 1, u64 consumed, u64 next_seq, i64 now, state...`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(33 + 32 * self.next_seq.len() + self.state.len());
        b.push(Self::VERSION);
        b.extend_from_slice(&self.consumed.to_le_bytes());
        b.extend_from_slice(&self.now.to_le_bytes());
        b.extend_from_slice(&self.seq_floor.to_le_bytes());
        b.extend_from_slice(&(self.next_seq.len() as u32).to_le_bytes());
        for (name, seq) in &self.next_seq {
            // Output names are component-style identifiers, far below 64 KiB.
            let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
            b.extend_from_slice(&(name.len() as u16).to_le_bytes());
            b.extend_from_slice(name);
            b.extend_from_slice(&seq.to_le_bytes());
        }
        b.extend_from_slice(&self.state);
        b
    }

    /// Decodes a checkpoint; `None` if it is not one this agent wrote.
    pub fn decode(b: &[u8]) -> Option<Checkpoint> {
        let u64_at = |at: usize| b.get(at..at + 8).and_then(|s| s.try_into().ok());
        match b.first()? {
            1 => Some(Checkpoint {
                consumed: u64::from_le_bytes(u64_at(1)?),
                next_seq: BTreeMap::new(),
                seq_floor: u64::from_le_bytes(u64_at(9)?),
                now: i64::from_le_bytes(u64_at(17)?),
                state: b.get(25..)?.to_vec(),
            }),
            2 => {
                let n = u32::from_le_bytes(b.get(25..29)?.try_into().ok()?);
                let mut at = 29;
                let mut next_seq = BTreeMap::new();
                for _ in 0..n {
                    let len = u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize;
                    let name = std::str::from_utf8(b.get(at + 2..at + 2 + len)?).ok()?;
                    let seq = u64::from_le_bytes(u64_at(at + 2 + len)?);
                    next_seq.insert(name.to_owned(), seq);
                    at += 2 + len + 8;
                }
                Some(Checkpoint {
                    consumed: u64::from_le_bytes(u64_at(1)?),
                    now: i64::from_le_bytes(u64_at(9)?),
                    seq_floor: u64::from_le_bytes(u64_at(17)?),
                    next_seq,
                    state: b.get(at..)?.to_vec(),
                })
            }
            _ => None,
        }
    }
}

/// Numbers what one step emitted, per output, continuing from `next_seq`
/// (updated): the batches to deliver, each with the output it goes to.
pub fn number(
    id: &str,
    emitted: Vec<Emitted>,
    next_seq: &mut BTreeMap<String, u64>,
    floor: u64,
) -> Vec<(Option<String>, SourceBatch)> {
    emitted
        .into_iter()
        .map(|e| {
            let n = e.events.len() as u64;
            let (name, key) = match &e.output {
                Some(o) => (format!("{id}.{o}"), o.clone()),
                None => (id.to_owned(), String::new()),
            };
            let seq = next_seq.entry(key).or_insert(floor);
            let batch = SourceBatch {
                stream: Some(Stream::ordered(name)),
                marks: (*seq..*seq + n).map(|s| Mark::at(s + 1)).collect(),
                events: e.events,
                lines: None,
                releases: Vec::new(),
            };
            *seq += n;
            (e.output, batch)
        })
        .collect()
}

/// A stateful transform, its input log and where its outputs go.
pub struct Logged {
    pub id: String,
    pub transform: Box<dyn Transform>,
    pub declared: Vec<String>,
    pub input: Arc<LogInput>,
    pub outputs: Arc<Ports>,
    pub state: StateStore,
    pub checkpoint_interval: Duration,
    pub metrics: TransformMetrics,
}

impl Logged {
    /// Runs until `stop`: restores, replays, then follows the log.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>, shutdown: watch::Receiver<bool>) {
        let mut cp = match self.restore().await {
            Some(cp) => cp,
            None => return,
        };
        let mut saved = cp.clone();
        let mut shutdown = shutdown;
        let channel = self.input.channel.clone();
        channel.rewind();
        // A tick at start: time moves on for timers due while we were down.
        if self.input.tick(&mut shutdown).await.is_err() {
            return;
        }
        let mut last_save = tokio::time::Instant::now();
        let mut undelivered = false;
        loop {
            let wait = self.timer_wait();
            let batch = channel
                .next_batch(READ_EVENTS, READ_BYTES, Some(wait), &mut stop)
                .await;
            let Some(batch) = batch else { break };
            if batch.is_empty() {
                // The wait ran out: a timer is due by the wall clock.
                if self.timer_due(&cp) && self.input.tick(&mut shutdown).await.is_err() {
                    break;
                }
            } else if self.step(batch, &mut cp, &mut shutdown).await.is_err() {
                // Not delivered. The transform's state already reflects
                // this batch while `cp` does not: saving now would count
                // the batch twice after a restart. The last checkpoint
                // stands and the log is replayed from it.
                undelivered = true;
                break;
            }
            if last_save.elapsed() >= self.checkpoint_interval && cp != saved {
                if self.save(&cp).await {
                    saved = cp.clone();
                }
                last_save = tokio::time::Instant::now();
            }
        }
        if undelivered {
            info!(transform = %self.id, consumed = saved.consumed, "Stateful transform stopped before its output was delivered; it resumes from its last checkpoint.");
            return;
        }
        if cp != saved {
            self.save(&cp).await;
        }
        info!(transform = %self.id, consumed = cp.consumed, "Stateful transform stopped; state checkpointed.");
    }

    /// How long to wait for input before checking timers by the wall clock.
    fn timer_wait(&self) -> Duration {
        let max = Duration::from_secs(1);
        match self.transform.next_timer() {
            Some(t) => {
                let ns = t.saturating_sub(self.input.clock.now()).max(0) as u64;
                Duration::from_nanos(ns).clamp(Duration::from_millis(5), max)
            }
            None => max,
        }
    }

    fn timer_due(&self, cp: &Checkpoint) -> bool {
        self.transform
            .next_timer()
            .is_some_and(|t| t <= self.input.clock.now() && t > cp.now)
    }

    /// Processes one batch read from the log and delivers what it emitted.
    async fn step(
        &mut self,
        batch: Vec<(u64, weir_core::Event)>,
        cp: &mut Checkpoint,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), SendError> {
        let mut out = Emitter::new(&self.id, &self.declared, cp.now);
        let mut consumed = cp.consumed;
        let mut now = cp.now;
        for (id, e) in batch {
            if id < cp.consumed {
                // Reflected in the restored state already (the log's
                // acknowledgement did not persist before a crash).
                continue;
            }
            consumed = id + 1;
            out.set_input(None);
            if is_tick(&e) {
                now = now.max(e.timestamp);
                out.set_now(now);
                for _ in 0..1024 {
                    match self.transform.next_timer() {
                        Some(t) if t <= now => self.transform.on_timer(&mut out),
                        _ => break,
                    }
                }
            } else {
                self.metrics.events_in.inc();
                self.transform.process(e, &mut out);
            }
        }
        let (emitted, failures) = out.take();
        self.metrics.count(&emitted, &failures);
        let mut next_seq = cp.next_seq.clone();
        for (output, batch) in number(&self.id, emitted, &mut next_seq, cp.seq_floor) {
            self.outputs
                .deliver(output.as_deref(), batch, shutdown)
                .await?;
        }
        cp.consumed = consumed;
        cp.next_seq = next_seq;
        cp.now = now;
        Ok(())
    }

    async fn restore(&mut self) -> Option<Checkpoint> {
        let state = self.state.clone();
        let id = self.id.clone();
        let got = tokio::task::spawn_blocking(move || state.get(&id, CHECKPOINT_KEY)).await;
        let raw = match got {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => {
                error!(transform = %self.id, error = %e, "Cannot read the transform's checkpoint; not starting it (its input log keeps filling).");
                return None;
            }
            Err(e) => {
                error!(transform = %self.id, error = %e, "Checkpoint read task failed.");
                return None;
            }
        };
        let Some(raw) = raw else {
            return Some(Checkpoint::default());
        };
        let cp = match Checkpoint::decode(&raw) {
            Some(cp) => cp,
            None => {
                error!(transform = %self.id, "The transform's checkpoint is unreadable; starting from an empty state at the log's acknowledged position.");
                return Some(Checkpoint::default());
            }
        };
        if let Err(e) = self.transform.restore(&cp.state) {
            error!(transform = %self.id, error = %e, "The transform's state does not restore (was its configuration changed?); starting from an empty state.");
            return Some(Checkpoint {
                state: Vec::new(),
                ..cp
            });
        }
        info!(transform = %self.id, consumed = cp.consumed, "Restored the transform's state.");
        Some(cp)
    }

    /// Saves the checkpoint, then acknowledges the log up to it. Returns
    /// whether the checkpoint is durable.
    async fn save(&mut self, cp: &Checkpoint) -> bool {
        let snapshot = match self.transform.snapshot() {
            Ok(s) => s,
            Err(e) => {
                warn!(transform = %self.id, error = %e, "Cannot snapshot the transform's state; will retry.");
                return false;
            }
        };
        let record = Checkpoint {
            state: snapshot,
            ..cp.clone()
        }
        .encode();
        let state = self.state.clone();
        let id = self.id.clone();
        match tokio::task::spawn_blocking(move || state.put(&id, CHECKPOINT_KEY, &record)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(transform = %self.id, error = %e, "Cannot save the transform's checkpoint; will retry.");
                return false;
            }
            Err(e) => {
                warn!(transform = %self.id, error = %e, "Checkpoint task failed; will retry.");
                return false;
            }
        }
        if let Err(e) = self.input.channel.ack(cp.consumed).await {
            warn!(transform = %self.id, error = %e, "Cannot acknowledge the input log; it is replayed from the checkpoint after a restart.");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use weir_core::{Event, Metadata};

    #[test]
    fn checkpoints_round_trip_and_reject_foreign_bytes() {
        let cp = Checkpoint {
            consumed: 42,
            next_seq: BTreeMap::from([(String::new(), 7), ("late".to_owned(), 3)]),
            seq_floor: 0,
            now: -5,
            state: b"window".to_vec(),
        };
        assert_eq!(Checkpoint::decode(&cp.encode()), Some(cp));
        assert_eq!(Checkpoint::decode(b"\x09garbage"), None);
        assert_eq!(Checkpoint::decode(&[1u8; 10]), None);
        assert_eq!(Checkpoint::decode(&[2u8; 30]), None, "names past the end");
    }

    #[test]
    fn a_version_1_checkpoint_starts_every_output_at_its_shared_sequence() {
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&42u64.to_le_bytes());
        v1.extend_from_slice(&7u64.to_le_bytes());
        v1.extend_from_slice(&(-5i64).to_le_bytes());
        v1.extend_from_slice(b"state");
        let cp = Checkpoint::decode(&v1).unwrap();
        assert_eq!((cp.consumed, cp.seq_floor, cp.now), (42, 7, -5));
        assert_eq!(cp.state, b"state");
        let mut seqs = cp.next_seq.clone();
        let out = number("agg", vec![emitted(None, 1)], &mut seqs, cp.seq_floor);
        assert_eq!(out[0].1.marks, vec![Mark::at(8)]);
    }

    fn emitted(output: Option<&str>, n: usize) -> Emitted {
        Emitted {
            output: output.map(str::to_owned),
            events: (0..n)
                .map(|i| Event::from_message_at(format!("{i}"), Metadata::default(), 0))
                .collect(),
            marks: Vec::new(),
        }
    }

    /// The marks each stream gets when `steps` are numbered in turn.
    fn marks(steps: Vec<Vec<Emitted>>) -> BTreeMap<String, Vec<u64>> {
        let mut seqs = BTreeMap::new();
        let mut by_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for step in steps {
            for (_, b) in number("agg", step, &mut seqs, 0) {
                let name = b.stream.unwrap().name.to_string();
                by_stream
                    .entry(name)
                    .or_default()
                    .extend(b.marks.iter().map(|m| m.pos));
            }
        }
        by_stream
    }

    #[test]
    fn output_marks_do_not_depend_on_how_the_log_was_batched() {
        // Live, the log was read as three batches: a late event, then one
        // window, then another. A replay reads it as one batch, where the
        // emitter lists the default output before `late`.
        let live = marks(vec![
            vec![emitted(Some("late"), 1)],
            vec![emitted(None, 1)],
            vec![emitted(None, 1)],
        ]);
        let replay = marks(vec![vec![emitted(None, 2), emitted(Some("late"), 1)]]);
        assert_eq!(live, replay);
        assert_eq!(live["agg"], vec![1, 2]);
        assert_eq!(live["agg.late"], vec![1]);
    }

    /// Counts its inputs and emits the running count (padded to ~1 KiB).
    struct Count(u64);

    impl Transform for Count {
        fn process(&mut self, _e: Event, out: &mut Emitter) {
            self.0 += 1;
            let msg = format!("{:04}{}", self.0, "x".repeat(1000));
            out.emit(Event::from_message_at(msg, Metadata::default(), 0));
        }
        fn snapshot(&self) -> Result<Vec<u8>, weir_plugins::TransformError> {
            Ok(self.0.to_le_bytes().to_vec())
        }
        fn restore(&mut self, b: &[u8]) -> Result<(), weir_plugins::TransformError> {
            self.0 = b.try_into().map(u64::from_le_bytes).unwrap_or(0);
            Ok(())
        }
    }

    fn logged(
        dir: &std::path::Path,
        input: &Channel,
        out: &Channel,
        registry: &weir_core::metrics::Registry,
    ) -> Logged {
        use super::super::route::Target;
        let clock: Arc<dyn weir_plugins::Clock> = Arc::new(weir_plugins::ManualClock::new(1));
        let mut outputs = super::super::route::Outputs::default();
        outputs.0.insert(None, vec![Target::Channel(out.clone())]);
        Logged {
            id: "count".into(),
            transform: Box::new(Count(0)),
            declared: Vec::new(),
            input: Arc::new(LogInput::new(input.clone(), clock, i64::MAX)),
            outputs: super::super::ports::Ports::new("count", outputs),
            state: StateStore::open(&dir.join("state.db")).unwrap(),
            checkpoint_interval: Duration::from_secs(3600),
            metrics: TransformMetrics::new(registry, "count"),
        }
    }

    async fn push(ch: &Channel, n: usize) {
        let (_tx, mut rx) = watch::channel(false);
        let events = (0..n)
            .map(|i| Event::from_message_at(format!("in {i}"), Metadata::default(), 0))
            .collect();
        ch.push(Arc::new(SourceBatch::unmarked(events)), &mut rx)
            .await
            .unwrap();
    }

    /// Reads what `ch` holds now, bounded in time.
    async fn read_all(ch: &Channel) -> Vec<String> {
        let (_tx, mut rx) = watch::channel(false);
        let mut got = Vec::new();
        for _ in 0..50 {
            let batch = ch
                .next_batch(100, 1 << 20, Some(Duration::from_millis(20)), &mut rx)
                .await
                .unwrap_or_default();
            got.extend(
                batch
                    .iter()
                    .map(|(_, e)| e.message().unwrap_or("")[..4].to_owned()),
            );
        }
        got
    }

    #[tokio::test]
    async fn a_batch_not_delivered_at_shutdown_is_not_checkpointed_and_counts_once_after_restart() {
        use crate::channel::{ChannelConfig, ChannelType};
        let dir = tempfile::tempdir().unwrap();
        let registry = weir_core::metrics::Registry::new();
        let input = Channel::open(
            "count",
            &ChannelConfig::default(),
            &dir.path().join("in"),
            &registry,
        )
        .unwrap();
        // Room for one output event: the second delivery blocks.
        let small = ChannelConfig {
            kind: ChannelType::Memory,
            max_bytes: Some(weir_core::units::ByteSize(1500)),
            ..ChannelConfig::default()
        };
        let out = Channel::open("out", &small, dir.path(), &registry).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let task =
            tokio::spawn(logged(dir.path(), &input, &out, &registry).run(stop.clone(), stop));
        push(&input, 1).await;
        let first = read_all(&out).await;
        assert_eq!(first, vec!["0001"]);
        push(&input, 2).await; // counted (3), but stuck on delivery
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();

        // Restart with room downstream: the log is replayed from the last
        // checkpoint and every input is counted once.
        let big = ChannelConfig {
            kind: ChannelType::Memory,
            ..ChannelConfig::default()
        };
        let out2 = Channel::open("out2", &big, dir.path(), &registry).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let task =
            tokio::spawn(logged(dir.path(), &input, &out2, &registry).run(stop.clone(), stop));
        let again = read_all(&out2).await;
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.last().map(String::as_str), Some("0003"), "{again:?}");
        assert_eq!(again, vec!["0001", "0002", "0003"]);
    }
}
