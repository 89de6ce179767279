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
//! What it emits is numbered with a sequence of its own and delivered under
//! the streams `<id>` / `<id>.<output>` (ordered), so downstream holders skip
//! what they already have. Every `checkpoint_interval` (and at shutdown)
//! the task saves one record in the state database — the transform's
//! snapshot, the log id it reflects, the next output sequence, and the time
//! — and only then acknowledges the log up to that id.
//!
//! After a crash the task restores the last checkpoint and reads the log
//! again from its id: the transform makes the same decisions, emits the
//! same events with the same sequence numbers, and downstream skips those
//! it already holds. Open windows are thus emitted exactly once, with the
//! values they would have had without the crash. This requires transforms
//! to be deterministic given their state, inputs and `now` — the contract
//! of `Transform`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};
use weir_plugins::state::StateStore;
use weir_plugins::{Emitter, Mark, SendError, SourceBatch, Stream, Transform};

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
    /// Sequence number of the next emitted event.
    pub next_seq: u64,
    /// The transform's time (the last tick read).
    pub now: i64,
    pub state: Vec<u8>,
}

impl Checkpoint {
    const VERSION: u8 = 1;

    /// `version u8, consumed u64, next_seq u64, now i64, state...` (little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(25 + self.state.len());
        b.push(Self::VERSION);
        b.extend_from_slice(&self.consumed.to_le_bytes());
        b.extend_from_slice(&self.next_seq.to_le_bytes());
        b.extend_from_slice(&self.now.to_le_bytes());
        b.extend_from_slice(&self.state);
        b
    }

    /// Decodes a checkpoint; `None` if it is not one this agent wrote.
    pub fn decode(b: &[u8]) -> Option<Checkpoint> {
        if b.first() != Some(&Self::VERSION) || b.len() < 25 {
            return None;
        }
        let u = |at: usize| b.get(at..at + 8).and_then(|s| s.try_into().ok());
        Some(Checkpoint {
            consumed: u64::from_le_bytes(u(1)?),
            next_seq: u64::from_le_bytes(u(9)?),
            now: i64::from_le_bytes(u(17)?),
            state: b[25..].to_vec(),
        })
    }
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
                // Not delivered: do not checkpoint past it.
                break;
            }
            if last_save.elapsed() >= self.checkpoint_interval && cp != saved {
                if self.save(&cp).await {
                    saved = cp.clone();
                }
                last_save = tokio::time::Instant::now();
            }
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
        let mut seq = cp.next_seq;
        for e in emitted {
            let n = e.events.len() as u64;
            let name = match &e.output {
                Some(o) => format!("{}.{o}", self.id),
                None => self.id.clone(),
            };
            let batch = SourceBatch {
                stream: Some(Stream::ordered(name)),
                marks: (seq..seq + n).map(|s| Mark::at(s + 1)).collect(),
                events: e.events,
                releases: Vec::new(),
            };
            seq += n;
            self.outputs
                .deliver(e.output.as_deref(), batch, shutdown)
                .await?;
        }
        cp.consumed = consumed;
        cp.next_seq = seq;
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

    #[test]
    fn checkpoints_round_trip_and_reject_foreign_bytes() {
        let cp = Checkpoint {
            consumed: 42,
            next_seq: 7,
            now: -5,
            state: b"window".to_vec(),
        };
        assert_eq!(Checkpoint::decode(&cp.encode()), Some(cp));
        assert_eq!(Checkpoint::decode(b"\x09garbage"), None);
        assert_eq!(Checkpoint::decode(&[1u8; 10]), None);
    }
}
