//! The `collector` sink: replicates its channel to a `weir-collector`.
//!
//! Records are grouped into RecordBatch v2 batches stamped with this sink's
//! producer id, epoch and per-partition sequence numbers. Each batch is
//! journaled before it is sent (`journal.rs`), up to `max_in_flight` are sent
//! at once, and the channel is acknowledged strictly in order as the collector
//! confirms each batch durable. Retries resend the identical batch, so the
//! collector appends every record exactly once.
//!
//! Per batch on a disk channel, one blocking call does the disk work:
//! encode the batch, commit the journal *and* the acknowledgement of the
//! batches confirmed since the last commit (one write, one fsync), and read
//! ahead the next batch's records. A confirmed batch is therefore
//! acknowledged durably with the next batch's commit, or after
//! [`ACK_DELAY`] when no next batch comes; until then a crash resends it and
//! the collector answers "duplicate".

pub mod config;
mod heartbeat;
pub mod journal;
mod send;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};
use weir_core::partition;
use weir_core::protocol::{
    CreateTopic, InitProducer, ProducerIdentity, ProducerPosition, TopicInfo,
};

pub use config::CollectorSinkConfig;
use journal::{Entry, Found, Journal, Producer};
use send::{Outcome, Sender};

use crate::component::{
    BlockingInput, BuildError, ComponentError, Record, SinkConfig, SinkContext, Task,
};
use crate::sinks::delivery::Delivery;

impl SinkConfig for CollectorSinkConfig {
    fn problems(&self) -> Vec<String> {
        self.value_problems()
    }

    fn build(&self, ctx: SinkContext) -> Result<Task, BuildError> {
        let problems = self.value_problems();
        if !problems.is_empty() {
            return Err(BuildError::Config(problems));
        }
        let delivery = Delivery::new(&ctx);
        let sender = Sender::new(self, &ctx, delivery.clone())
            .map_err(|e| BuildError::Setup(e.to_string()))?;
        let sink = CollectorSink {
            cfg: self.clone(),
            ctx,
            delivery,
            sender: Arc::new(sender),
            journal: Journal::default(),
            store: Store::Database,
            moved: false,
            acked_to: 0,
            committed_to: 0,
            buffer: VecDeque::new(),
            ahead: None,
            rr: 0,
        };
        Ok(Box::pin(sink.run()))
    }
}

struct CollectorSink {
    cfg: CollectorSinkConfig,
    ctx: SinkContext,
    delivery: Arc<Delivery>,
    sender: Arc<Sender>,
    journal: Journal,
    store: Store,
    /// The state database's copy is the marker saying the journal moved.
    moved: bool,
    /// End of the batches the collector confirmed (in order): what the
    /// next commit acknowledges (disk channels).
    acked_to: u64,
    /// `acked_to` as of the last commit.
    committed_to: u64,
    /// Records read from the channel and not yet put in a batch.
    buffer: VecDeque<Record>,
    /// Records read ahead by the last batch's blocking call: the next
    /// batch's first read (kept as the read's vector, not moved record by
    /// record into `buffer`).
    ahead: Option<Vec<Record>>,
    rr: u32,
}

/// Where the journal is committed.
enum Store {
    /// With the acknowledgement, in the disk channel's cursor.
    Spool(Arc<dyn BlockingInput>),
    /// In the state database (a memory channel).
    Database,
}

/// Longest a confirmed batch's acknowledgement waits for the next batch's
/// commit to carry it. The spool frees space only once it is durable, so
/// the wait is short; under load the next commit comes first.
pub const ACK_DELAY: Duration = Duration::from_millis(50);

/// What one batch's blocking call produced.
struct Prepared {
    batches: Vec<(u32, i32, i32, bytes::Bytes)>,
    /// Whether the journal (and acknowledgement) commit succeeded; `None`
    /// when the journal is kept in the state database.
    committed: Option<bool>,
    /// The next records, read ahead.
    ahead: Option<Vec<Record>>,
}

/// What the channel holds of a journaled range.
enum Range {
    Events(Vec<Record>),
    Acked,
    Gone,
    Shutdown,
}

struct InFlight {
    entry: Entry,
    task: tokio::task::JoinHandle<Outcome>,
}

impl CollectorSink {
    async fn run(mut self) -> Result<(), ComponentError> {
        // Stopped when the sink stops (dropped with this frame).
        let _heartbeats = heartbeat::start(&self.cfg, &self.ctx);
        let state = self.ctx.state.clone();
        let id = self.ctx.id.clone();
        let spool = self.ctx.input.blocking();
        if let Some(b) = &spool {
            self.store = Store::Spool(b.clone());
        }
        let (journal, found) =
            blocking(move || Journal::load_from(&state, &id, spool.as_deref())).await?;
        self.journal = journal;
        self.moved = found != Found::Database;
        let Some(partitions) = self.ensure_topic().await else {
            return Ok(());
        };
        if !self.journal.producer.is_some_and(|p| p.issued) {
            let legacy = self.journal.producer;
            if let Some(old) = legacy {
                if self.migrate(old).await.is_none() {
                    return Ok(());
                }
            }
            if self.new_epoch(true).await.is_none() {
                return Ok(());
            }
        }
        if self.journal.partitions != partitions {
            if !self.journal.inflight.is_empty() {
                warn!(sink = %self.ctx.id, was = self.journal.partitions, now = partitions, "Partition count changed; starting a new producer epoch.");
                if self.new_epoch(false).await.is_none() {
                    return Ok(());
                }
            }
            self.journal.partitions = partitions;
            self.save().await?;
        }
        let acked = Arc::new(AtomicU64::new(0));
        let mut pending: VecDeque<InFlight> = VecDeque::new();
        // Resend what was in flight at the last stop, exactly as it was. The
        // entries stay in the journal meanwhile: a commit during the replay
        // must not forget those not yet resent.
        let replay = self.journal.inflight.clone();
        for entry in replay {
            let events = match self.take_range(entry.start, entry.end).await {
                Range::Events(events) => events,
                // Acknowledged before the stop; only the journal did not know yet.
                Range::Acked => {
                    self.journal.inflight.retain(|e| e != &entry);
                    continue;
                }
                Range::Shutdown => return Ok(()),
                Range::Gone => {
                    warn!(sink = %self.ctx.id, start = entry.start, end = entry.end, "A journaled batch can no longer be re-formed from the channel (records dropped or damaged); starting a new producer epoch.");
                    // The batches journaled before it were re-formed exactly
                    // and are being resent under this epoch, where the
                    // collector recognises those it already holds: let them
                    // finish first, so that only what follows the lost batch
                    // is sent again under the new epoch (which the collector
                    // cannot tell from new data).
                    let mut new_id = false;
                    while let Some(InFlight { entry, task }) = pending.pop_front() {
                        match task.await.unwrap_or(Outcome::Shutdown) {
                            Outcome::Acked => self.settled(entry.end, &acked).await,
                            Outcome::Shutdown => return self.stop(pending).await,
                            Outcome::Rejected { new_id: n, .. } => {
                                new_id = n;
                                for f in pending.drain(..) {
                                    f.task.abort();
                                }
                            }
                        }
                    }
                    if self.new_epoch(new_id).await.is_none() {
                        return Ok(());
                    }
                    self.reread();
                    break;
                }
            };
            if pending.is_empty() {
                acked.store(entry.start, Ordering::SeqCst);
            }
            pending.push_back(self.launch(entry, events, &acked).await?);
        }
        loop {
            // Acknowledge finished batches in order; wait when the window is full.
            while let Some(head) = pending.front() {
                if !(head.task.is_finished() || pending.len() >= self.cfg.max_in_flight) {
                    break;
                }
                let Some(InFlight { entry, task }) = pending.pop_front() else {
                    break;
                };
                match task.await.unwrap_or(Outcome::Shutdown) {
                    Outcome::Acked => self.settled(entry.end, &acked).await,
                    Outcome::Shutdown => return self.stop(pending).await,
                    Outcome::Rejected { why, new_id } => {
                        // The collector lost our sequence (restored or wiped) or
                        // fenced this epoch: resend everything in flight under a
                        // new epoch, re-read from the channel.
                        warn!(sink = %self.ctx.id, reason = %why, "Collector refused our sequence; resending in-flight batches under a new producer epoch.");
                        let mut entries = vec![entry];
                        for f in pending.drain(..) {
                            f.task.abort();
                            entries.push(f.entry);
                        }
                        if self.new_epoch(new_id).await.is_none() {
                            return self.stop(pending).await;
                        }
                        self.reread();
                        acked.store(entries[0].start, Ordering::SeqCst);
                        for old in entries {
                            match self.take_range(old.start, old.end).await {
                                Range::Events(events) => {
                                    let entry = self.plan(old.start, old.end, &events);
                                    pending.push_back(self.launch(entry, events, &acked).await?);
                                }
                                Range::Shutdown => return self.stop(pending).await,
                                Range::Acked | Range::Gone => {
                                    warn!(sink = %self.ctx.id, start = old.start, end = old.end, "An in-flight batch is no longer in the channel; skipping it.");
                                }
                            }
                        }
                    }
                }
            }
            let Some(batch) = self.fill().await else {
                return self.stop(pending).await;
            };
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                continue;
            };
            let (start, end) = (first.id, last.id + 1);
            let events = batch;
            if pending.is_empty() {
                acked.store(start, Ordering::SeqCst);
            }
            let entry = self.plan(start, end, &events);
            pending.push_back(self.launch(entry, events, &acked).await?);
        }
    }

    fn producer(&self) -> Producer {
        self.journal.producer.unwrap_or(Producer {
            id: -1,
            epoch: -1,
            issued: false,
        })
    }

    /// Chooses partitions and sequences for a batch.
    fn plan(&mut self, start: u64, end: u64, events: &[Record]) -> Entry {
        let n = self.journal.partitions.max(1);
        let keyless_partition = self.rr % n;
        self.rr = self.rr.wrapping_add(1);
        let mut counts: BTreeMap<u32, i32> = BTreeMap::new();
        if events.iter().all(|e| e.meta.key.is_none()) {
            // One partition: counted without a map lookup per record.
            if !events.is_empty() {
                counts.insert(keyless_partition, events.len() as i32);
            }
        } else {
            for e in events {
                *counts
                    .entry(partition_of(&e.meta, n, keyless_partition))
                    .or_default() += 1;
            }
        }
        let mut base_seqs = BTreeMap::new();
        for (p, c) in counts {
            let next = self.journal.next_seq.entry(p).or_insert(0);
            base_seqs.insert(p, *next);
            *next = weir_core::batch::wrapping_seq_add(*next, c);
        }
        Entry {
            start,
            end,
            keyless_partition,
            base_seqs,
        }
    }

    /// Encodes a planned batch, journals it, then starts sending it. Only
    /// the encoded bytes stay in memory while it is in flight. On a disk
    /// channel the encoding, the commit (journal and acknowledgement) and a
    /// read ahead of the next records are one blocking call.
    async fn launch(
        &mut self,
        entry: Entry,
        events: Vec<Record>,
        acked: &Arc<AtomicU64>,
    ) -> Result<InFlight, ComponentError> {
        if !self.journal.inflight.contains(&entry) {
            self.journal.inflight.push(entry.clone());
        }
        let (e, partitions, producer, compression) = (
            entry.clone(),
            self.journal.partitions,
            self.producer(),
            self.cfg.compression,
        );
        let commit = match &self.store {
            Store::Spool(b) => Some((b.clone(), self.acked_to, self.journal.to_note())),
            Store::Database => None,
        };
        let read_ahead = (self.buffer.is_empty() && self.ahead.is_none()).then_some((
            self.cfg.batch.max_events,
            self.cfg.batch.max_bytes.bytes() as usize,
        ));
        let prepared = blocking(move || {
            let batches = send::encode_entry(&e, partitions, producer, &events, compression)?;
            drop(events);
            let mut ahead = None;
            let committed = commit.map(|(input, end, note)| {
                let ok = input.commit(end, &note).is_ok();
                if let Some((n, bytes)) = read_ahead.filter(|_| ok) {
                    // A failed read is retried by the next `fill`.
                    ahead = input.read(n, bytes).ok().filter(|r| !r.is_empty());
                }
                ok
            });
            Ok::<_, weir_core::record::RecordError>(Prepared {
                batches,
                committed,
                ahead,
            })
        })
        .await?;
        match prepared.committed {
            Some(true) => {
                self.committed_to = self.committed_to.max(self.acked_to);
                self.after_first_commit().await;
            }
            // Not durable: nothing is sent until it is.
            Some(false) | None => self.save().await?,
        }
        if prepared.ahead.is_some() {
            self.ahead = prepared.ahead;
        }
        let task = self.sender.spawn(
            entry.clone(),
            prepared.batches,
            acked.clone(),
            self.ctx.shutdown.clone(),
        );
        Ok(InFlight { entry, task })
    }

    /// A sent batch ending at `end` is confirmed by the collector: it is
    /// acknowledged and leaves the journal.
    async fn settled(&mut self, end: u64, acked: &AtomicU64) {
        self.confirmed(end).await;
        acked.store(end, Ordering::SeqCst);
        self.journal.inflight.retain(|e| e.start >= end);
    }

    /// Reads the channel again from its acknowledged cursor, dropping what
    /// was read ahead.
    fn reread(&mut self) {
        self.ctx.input.rewind();
        self.buffer.clear();
        self.ahead = None;
    }

    /// Records that the collector confirmed every batch up to `end`: on a
    /// disk channel the acknowledgement goes with the next commit; in the
    /// state database case it is persisted now.
    async fn confirmed(&mut self, end: u64) {
        match self.store {
            Store::Spool(_) => self.acked_to = self.acked_to.max(end),
            Store::Database => {
                if let Err(e) = self.ctx.input.ack(end).await {
                    // The collector holds it; a crash before the next
                    // ack resends it and the collector answers "duplicate".
                    warn!(sink = %self.ctx.id, error = %e, "Acknowledgement not persisted; will retry.");
                }
            }
        }
    }

    /// Once a note is committed, the database's journal is replaced by the
    /// marker saying it moved (once per run; an upgrade's first commit).
    async fn after_first_commit(&mut self) {
        if self.moved {
            return;
        }
        let state = self.ctx.state.clone();
        let id = self.ctx.id.clone();
        match blocking(move || Journal::mark_moved(&state, &id)).await {
            Ok(()) => self.moved = true,
            // Harmless: the note is found first; retried at the next commit.
            Err(e) => {
                warn!(sink = %self.ctx.id, error = %e, "Could not mark the database journal as moved; will retry.")
            }
        }
    }

    /// Commits the journal (on a disk channel with the acknowledgement of
    /// the confirmed batches), retrying while it cannot be written (a full
    /// disk is a normal state: nothing is sent until the journal is
    /// durable). Fails only at shutdown.
    async fn save(&mut self) -> Result<(), ComponentError> {
        let mut backoff = self.cfg.initial_backoff;
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            let res = match &self.store {
                Store::Spool(input) => {
                    let (input, end, note) = (input.clone(), self.acked_to, self.journal.to_note());
                    blocking(move || input.commit(end, &note)).await
                }
                Store::Database => {
                    let state = self.ctx.state.clone();
                    let id = self.ctx.id.clone();
                    let j = self.journal.clone();
                    blocking(move || j.save(&state, &id)).await
                }
            };
            match res {
                Ok(()) => {
                    if let Store::Spool(_) = self.store {
                        self.committed_to = self.committed_to.max(self.acked_to);
                        self.after_first_commit().await;
                    }
                    return Ok(());
                }
                Err(e) => {
                    warn!(sink = %self.ctx.id, error = %e, retry_in = ?backoff, "Cannot write the sink journal; retrying before sending more.")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(send::jitter(backoff)) => {}
                _ = shutdown.wait_for(|s| *s) => return Err(ComponentError::Fatal("shutting down with the journal unsaved".into())),
            }
            backoff = (backoff * 2).min(self.cfg.max_backoff);
        }
    }

    /// Reads the next batch: waits for a first record, then up to `batch.timeout` to fill it.
    async fn fill(&mut self) -> Option<Vec<Record>> {
        let max_events = self.cfg.batch.max_events;
        let max_bytes = self.cfg.batch.max_bytes.bytes() as usize;
        let mut out: Vec<Record> = Vec::new();
        let mut bytes = 0usize;
        let mut deadline: Option<Instant> = None;
        if !self.buffer.is_empty() {
            // In place (at most one move of the ring's two halves).
            let held = Vec::from(std::mem::take(&mut self.buffer));
            self.buffer = admit(&mut out, &mut bytes, held, max_events, max_bytes);
        }
        loop {
            if out.len() >= max_events || bytes >= max_bytes {
                return Some(out);
            }
            let got = match self.ahead.take() {
                Some(ahead) => ahead,
                None => {
                    let wait = match deadline {
                        None if out.is_empty() => Some(Duration::from_secs(1)),
                        None => {
                            deadline = Some(Instant::now() + self.cfg.batch.timeout);
                            Some(self.cfg.batch.timeout)
                        }
                        Some(d) => match d.checked_duration_since(Instant::now()) {
                            Some(left) if !left.is_zero() => Some(left),
                            _ => return Some(out),
                        },
                    };
                    // A confirmed batch's acknowledgement rides on the next
                    // commit, but waits for it only briefly.
                    let unacked = self.acked_to > self.committed_to && out.is_empty();
                    let wait = match wait {
                        Some(w) if unacked => Some(w.min(ACK_DELAY)),
                        w => w,
                    };
                    let got = self
                        .ctx
                        .input
                        .next_batch(
                            max_events - out.len(),
                            max_bytes.saturating_sub(bytes).max(1),
                            wait,
                        )
                        .await?;
                    if got.is_empty() && unacked {
                        self.save().await.ok()?;
                        continue;
                    }
                    got
                }
            };
            if got.is_empty() && !out.is_empty() && deadline.is_some_and(|d| Instant::now() >= d) {
                return Some(out);
            }
            if got.is_empty() && out.is_empty() {
                return Some(out);
            }
            // Reads are sized by spool bytes, batches by `approx_bytes`, so a
            // read rarely fits exactly: what is past the limits waits in the
            // buffer for the next batch.
            let rest = admit(&mut out, &mut bytes, got, max_events, max_bytes);
            self.buffer.extend(rest);
        }
    }

    /// The events with ids `[start, end)`, read from the channel.
    async fn take_range(&mut self, start: u64, end: u64) -> Range {
        let mut out = Vec::new();
        let mut expect = start;
        if let Some(ahead) = self.ahead.take() {
            self.buffer.extend(ahead);
        }
        while expect < end {
            if self.buffer.is_empty() {
                // At start-up every unacknowledged record is readable at once,
                // so an empty channel means the range was acknowledged.
                match self
                    .ctx
                    .input
                    .next_batch(
                        (end - expect) as usize,
                        usize::MAX,
                        Some(Duration::from_secs(2)),
                    )
                    .await
                {
                    None => return Range::Shutdown,
                    Some(got) if got.is_empty() => {
                        return if out.is_empty() {
                            Range::Acked
                        } else {
                            Range::Gone
                        }
                    }
                    Some(got) => self.buffer.extend(got),
                }
            }
            let Some(id) = self.buffer.front().map(|r| r.id) else {
                continue;
            };
            if id < expect {
                self.buffer.pop_front();
                continue;
            }
            if id > expect {
                // The channel starts past the range: it was acknowledged. A
                // hole inside the range means records were lost.
                return if out.is_empty() && id >= end {
                    Range::Acked
                } else {
                    Range::Gone
                };
            }
            if let Some(r) = self.buffer.pop_front() {
                out.push(r);
            }
            expect += 1;
        }
        Range::Events(out)
    }

    /// Creates the topic if needed and learns its partition count; `None` at shutdown.
    async fn ensure_topic(&self) -> Option<u32> {
        let body = CreateTopic {
            partitions: self.cfg.partitions,
        };
        let mut backoff = self.cfg.initial_backoff;
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            match self
                .sender
                .post_json::<TopicInfo>(&format!("/v1/topics/{}", self.cfg.topic), &body)
                .await
            {
                Ok(info) if !info.partitions.is_empty() => {
                    info!(sink = %self.ctx.id, topic = %self.cfg.topic, partitions = info.partitions.len(), "Collector reachable.");
                    self.delivery.delivered();
                    return Some(info.partitions.len() as u32);
                }
                Ok(_) => self.delivery.failed(
                    "invalid_answer",
                    "the collector reported a topic without partitions",
                    backoff,
                ),
                Err(e) => self.delivery.failed(
                    e.reason(),
                    &format!("collector unreachable: {e}"),
                    backoff,
                ),
            }
            tokio::select! {
                _ = tokio::time::sleep(send::jitter(backoff)) => {}
                _ = shutdown.wait_for(|s| *s) => return None,
            }
            backoff = (backoff * 2).min(self.cfg.max_backoff);
        }
    }

    /// Asks the collector for a new epoch of our producer id, or for a new
    /// id (`new_id`, or when the collector will not bump ours), retrying
    /// until it answers; then restarts sequences. `None` at shutdown.
    async fn new_epoch(&mut self, new_id: bool) -> Option<()> {
        let mut existing = if new_id {
            None
        } else {
            self.journal.producer.filter(|p| p.issued).map(|p| p.id)
        };
        let mut backoff = self.cfg.initial_backoff;
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            let req = InitProducer {
                producer_id: existing,
            };
            match self
                .sender
                .post_json::<ProducerIdentity>("/v1/producers", &req)
                .await
            {
                Ok(id) => {
                    info!(sink = %self.ctx.id, producer_id = id.producer_id, epoch = id.producer_epoch, "The collector issued our producer identity.");
                    self.journal.start_epoch(Producer {
                        id: id.producer_id,
                        epoch: id.producer_epoch,
                        issued: true,
                    });
                    return self.save().await.ok();
                }
                Err(send::HttpError::Status { status, body })
                    if existing.is_some() && (status == 403 || status == 409) =>
                {
                    // Our id is not ours any more (the collector's registry
                    // was replaced) or its epochs are used up: take a new id.
                    warn!(sink = %self.ctx.id, status, answer = %body, "The collector will not bump our producer id; asking for a new one.");
                    existing = None;
                    continue;
                }
                Err(send::HttpError::Status { status, body }) if status == 401 || status == 403 => {
                    error!(sink = %self.ctx.id, status, answer = %body, retry_in = ?backoff, "The collector refuses our credentials; check `token` or the client certificate and the collector's principals.");
                }
                Err(e) => self.delivery.failed(
                    e.reason(),
                    &format!("could not get a producer identity: {e}"),
                    backoff,
                ),
            }
            tokio::select! {
                _ = tokio::time::sleep(send::jitter(backoff)) => {}
                _ = shutdown.wait_for(|s| *s) => return None,
            }
            backoff = (backoff * 2).min(self.cfg.max_backoff);
        }
    }

    /// Moves from an id this agent made itself (before the collector issued
    /// ids) to an issued one without duplicating: the batches that were in
    /// flight under the old id and that the collector holds (its position
    /// for the old id is past them) are acknowledged; the rest are re-read
    /// from the channel and sent under the new id. `None` at shutdown.
    async fn migrate(&mut self, old: Producer) -> Option<()> {
        if self.journal.inflight.is_empty() {
            return Some(());
        }
        let path = format!("/v1/producers/{}/{}", old.id, self.cfg.topic);
        let mut backoff = self.cfg.initial_backoff;
        let mut shutdown = self.ctx.shutdown.clone();
        let positions = loop {
            match self.sender.get_json::<Vec<ProducerPosition>>(&path).await {
                Ok(p) => break p,
                Err(e) => self.delivery.failed(
                    e.reason(),
                    &format!("could not read the old producer id's position: {e}"),
                    backoff,
                ),
            }
            tokio::select! {
                _ = tokio::time::sleep(send::jitter(backoff)) => {}
                _ = shutdown.wait_for(|s| *s) => return None,
            }
            backoff = (backoff * 2).min(self.cfg.max_backoff);
        };
        let held = held_prefix(&self.journal, old.epoch, &positions);
        if let Some(end) = held {
            info!(sink = %self.ctx.id, old_producer_id = old.id, acknowledged_to = end, "Migrating to a collector-issued producer id: in-flight batches the collector holds are acknowledged.");
            if let Err(e) = self.ctx.input.ack(end).await {
                warn!(sink = %self.ctx.id, error = %e, "Acknowledgement not persisted; those batches may be sent again.");
            }
        }
        self.reread();
        Some(())
    }

    /// Waits briefly for in-flight batches, acknowledges those confirmed, and saves the journal.
    async fn stop(mut self, pending: VecDeque<InFlight>) -> Result<(), ComponentError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for f in pending {
            match tokio::time::timeout_at(deadline, f.task).await {
                Ok(Ok(Outcome::Acked)) => match self.store {
                    // Committed with the journal below, in one write.
                    Store::Spool(_) => {
                        self.acked_to = self.acked_to.max(f.entry.end);
                        self.journal.inflight.retain(|e| e.start >= f.entry.end);
                    }
                    Store::Database => {
                        if self.ctx.input.ack(f.entry.end).await.is_ok() {
                            self.journal.inflight.retain(|e| e.start >= f.entry.end);
                        }
                    }
                },
                _ => break,
            }
        }
        self.save().await?;
        info!(sink = %self.ctx.id, in_flight = self.journal.inflight.len(), "Collector sink stopped; unconfirmed batches will be resent identically.");
        Ok(())
    }
}

/// The spool id up to which the journal's in-flight entries (oldest first)
/// are all held by the collector, judging by its positions for the old
/// producer at `epoch`; `None` when not even the first is. An entry is held
/// when, in each partition it wrote to, the collector's next sequence is past
/// the entry's last one (sequences of one epoch are contiguous per partition).
fn held_prefix(j: &Journal, epoch: i16, positions: &[ProducerPosition]) -> Option<u64> {
    let mut held = None;
    for (i, e) in j.inflight.iter().enumerate() {
        let all = e.base_seqs.iter().all(|(p, base)| {
            // The entry ends where the next entry writing to `p` starts.
            let end = j.inflight[i + 1..]
                .iter()
                .find_map(|later| later.base_seqs.get(p).copied())
                .or_else(|| j.next_seq.get(p).copied())
                .unwrap_or(*base);
            end != *base
                && positions.iter().any(|pos| {
                    pos.partition == *p
                        && pos.producer_epoch == epoch
                        && send::seq_at_or_after(pos.next_sequence, end)
                })
        });
        if !all {
            break;
        }
        held = Some(e.end);
    }
    held
}

/// The partition of a record: its key's hash, or the batch's keyless partition.
pub fn partition_of(meta: &weir_core::Metadata, partitions: u32, keyless: u32) -> u32 {
    match &meta.key {
        Some(k) => partition::for_key(k, partitions),
        None => keyless,
    }
}

/// Moves the records of `got` that fit the batch limits into `out` (all at
/// once: a record moved one at a time through a queue and a growing vector
/// cost a few percent of the agent's CPU) and returns the rest, in order.
fn admit(
    out: &mut Vec<Record>,
    bytes: &mut usize,
    mut got: Vec<Record>,
    max_events: usize,
    max_bytes: usize,
) -> VecDeque<Record> {
    let mut cut = 0;
    while cut < got.len() && out.len() + cut < max_events && *bytes < max_bytes {
        *bytes += approx_bytes(&got[cut]);
        cut += 1;
    }
    let rest = VecDeque::from(got.split_off(cut));
    if out.is_empty() {
        *out = got;
    } else {
        out.append(&mut got);
    }
    rest
}

fn approx_bytes(r: &Record) -> usize {
    64 + r.value.len() + r.meta.key.as_ref().map_or(0, |k| k.len())
}

async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ComponentError> {
    tokio::task::spawn_blocking(f)
        .await?
        .map_err(|e| ComponentError::Fatal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(ids: std::ops::Range<u64>, value_len: usize) -> Vec<Record> {
        ids.map(|id| Record {
            id,
            timestamp: 0,
            meta: weir_core::Metadata::default(),
            value: bytes::Bytes::from(vec![b'x'; value_len]),
        })
        .collect()
    }

    fn ids(rs: impl IntoIterator<Item = Record>) -> Vec<u64> {
        rs.into_iter().map(|r| r.id).collect()
    }

    #[test]
    fn admit_fills_a_batch_to_its_limits_and_keeps_the_rest_in_order() {
        // 100-byte values count as 164 bytes each: 1,000 bytes hold 7 (the
        // limit is reached by the record that crosses it, as before).
        let (mut out, mut bytes) = (Vec::new(), 0);
        let rest = admit(&mut out, &mut bytes, records(0..10, 100), 100, 1_000);
        assert_eq!(ids(out), (0..7).collect::<Vec<_>>());
        assert_eq!(ids(rest), (7..10).collect::<Vec<_>>());
        // By count, onto records already in the batch.
        let (mut out, mut bytes) = (records(0..2, 1), 0);
        let rest = admit(&mut out, &mut bytes, records(2..10, 1), 5, 1 << 20);
        assert_eq!(ids(out), (0..5).collect::<Vec<_>>());
        assert_eq!(ids(rest), (5..10).collect::<Vec<_>>());
        // Everything fits.
        let (mut out, mut bytes) = (records(0..1, 1), 0);
        let rest = admit(&mut out, &mut bytes, records(1..4, 1), 5, 1 << 20);
        assert_eq!(ids(out), (0..4).collect::<Vec<_>>());
        assert!(rest.is_empty());
        assert_eq!(bytes, 3 * 65);
    }

    fn entry(start: u64, end: u64, seqs: &[(u32, i32)]) -> Entry {
        Entry {
            start,
            end,
            keyless_partition: 0,
            base_seqs: seqs.iter().copied().collect(),
        }
    }

    #[test]
    fn migration_acknowledges_exactly_the_in_flight_batches_the_collector_holds() {
        let j = Journal {
            inflight: vec![
                entry(0, 10, &[(0, 0)]),
                entry(10, 20, &[(0, 10), (1, 0)]),
                entry(20, 30, &[(1, 5)]),
            ],
            next_seq: [(0, 15), (1, 9)].into(),
            ..Default::default()
        };
        let at = |p0: i32, p1: i32| {
            vec![
                ProducerPosition {
                    partition: 0,
                    producer_epoch: 2,
                    next_sequence: p0,
                },
                ProducerPosition {
                    partition: 1,
                    producer_epoch: 2,
                    next_sequence: p1,
                },
            ]
        };
        assert_eq!(held_prefix(&j, 2, &at(0, 0)), None);
        assert_eq!(held_prefix(&j, 2, &at(10, 0)), Some(10));
        // Entry 2 wrote to both partitions: held only when both are past it.
        assert_eq!(held_prefix(&j, 2, &at(15, 4)), Some(10));
        assert_eq!(held_prefix(&j, 2, &at(15, 5)), Some(20));
        assert_eq!(held_prefix(&j, 2, &at(15, 9)), Some(30));
        // Another epoch's positions say nothing about ours.
        assert_eq!(held_prefix(&j, 3, &at(15, 9)), None);
    }
}
