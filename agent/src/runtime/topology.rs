//! The running pipeline as a graph that can be patched.
//!
//! Every component is fed through an **endpoint** that belongs to its id
//! and outlives its task: a sink's channel (its spool), a stateful
//! transform's input log, an inline transform's queue. Every source and
//! transform delivers through its [`Ports`], which a reload rewires in
//! place. Starting the agent is a reload from the empty pipeline; stopping
//! it stops everything in order.
//!
//! A reload ([`Topology::apply`]) runs these steps, each one safe for what
//! is in flight:
//!
//! 1. Sources that go (changed or removed) stop: they checkpoint exactly
//!    what their downstream holds.
//! 2. Stateful transforms that go stop: they checkpoint their state with
//!    their log position; their log stays.
//! 3. Changed sinks stop (they finish what they can deliver; the rest
//!    stays in their channel), so that two sinks never read one channel.
//! 4. Endpoints of new components open; those of removed ones leave the
//!    graph (their files stay on disk).
//! 5. New and changed sinks start on their channels, new and changed
//!    transforms start (upstream first).
//! 6. Every component that keeps running is rewired to the new graph.
//! 7. Inline transforms that go finish the batches already queued and end
//!    once nothing can send to them.
//! 8. Removed sinks stop; their spools are kept on disk and reported.
//! 9. New and changed sources start, resuming from what their downstream holds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use weir_core::metrics::Registry;
use weir_core::systemd::Liveness;
use weir_plugins::state::StateStore;
use weir_plugins::{Clock, ComponentError, SinkContext, SourceContext, TransformContext};

use super::diff::{Changes, Diff};
use super::health::Health;
use super::inline::{Inline, TransformMetrics};
use super::input::{spawn_interval_sync, ChannelInput};
use super::logged::Logged;
use super::ports::Ports;
use super::route::{InlineRequest, LogInput, Outputs, SourceFanout, Target};
use super::systemd::Status;
use super::RunError;
use crate::channel::disk::PayloadForm;
use crate::channel::{Channel, ChannelConfig, ChannelType, FsyncPolicy};
use crate::config::{split_input, Pipeline};

/// Ns between the tick records of a stateful transform's input log while
/// events arrive: its processing-time resolution.
const TICK_RESOLUTION: i64 = 1_000_000_000;
/// How often a stateful transform checkpoints its state.
const TRANSFORM_CHECKPOINT: Duration = Duration::from_secs(1);
/// Batches waiting at an inline transform, per transform.
const INLINE_QUEUE: usize = 4;

/// What every component shares.
pub struct Env {
    pub data_dir: PathBuf,
    pub state: StateStore,
    pub registry: Registry,
    pub clock: Arc<dyn Clock>,
    /// Told (with a unit) whenever a component task ends.
    pub ended: mpsc::UnboundedSender<()>,
    /// Longest a component gets to stop.
    pub stop_timeout: Duration,
    /// Sinks report outages here (`/ready`).
    pub health: Health,
    /// Times every component task's polls, for the systemd watchdog.
    pub liveness: Liveness,
}

/// A running component's task and its own stop signal.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Asks the task to stop and waits at most `timeout`, then aborts it.
    async fn stop(mut self, kind: &str, id: &str, timeout: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(timeout, &mut self.task).await.is_err() {
            warn!(kind, component = %id, "Component did not stop in time; aborting it (its data stays in the channels; stateful transforms resume from their last checkpoint).");
            self.task.abort();
        }
    }
}

/// The running pipeline.
pub struct Topology {
    env: Env,
    pipeline: Pipeline,
    channels: HashMap<String, Channel>,
    logs: HashMap<String, Arc<LogInput>>,
    queues: HashMap<String, mpsc::Sender<InlineRequest>>,
    ports: HashMap<String, Arc<Ports>>,
    sources: HashMap<String, Running>,
    transforms: HashMap<String, Running>,
    sinks: HashMap<String, Running>,
    /// What `STATUS=` reports, updated by every apply.
    status: Status,
}

impl Topology {
    /// An empty topology; [`Topology::apply`] starts a pipeline in it.
    pub fn new(env: Env) -> Topology {
        Topology {
            env,
            pipeline: Pipeline::empty(),
            channels: HashMap::new(),
            logs: HashMap::new(),
            queues: HashMap::new(),
            ports: HashMap::new(),
            sources: HashMap::new(),
            transforms: HashMap::new(),
            sinks: HashMap::new(),
            status: Status::default(),
        }
    }

    /// The pipeline's shape and backlog for the service manager, kept current.
    pub(super) fn status(&self) -> Status {
        self.status.clone()
    }

    /// The pipeline running now.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The ports of source or transform `id`, to tap.
    pub fn ports(&self, id: &str) -> Option<Arc<Ports>> {
        self.ports.get(id).cloned()
    }

    /// Whether every component task has ended.
    pub fn all_ended(&self) -> bool {
        self.sources
            .values()
            .chain(self.sinks.values())
            .chain(self.transforms.values())
            .all(|r| r.task.is_finished())
    }

    /// Changes the running pipeline into `new` (see the module docs).
    /// Returns what changed. On an error (a channel that does not open, a
    /// component that does not build) the components started so far run
    /// and the error says which one failed.
    pub async fn apply(&mut self, new: Pipeline) -> Result<Diff, RunError> {
        let mut diff = Diff::between(&self.pipeline, &new);
        self.restart_ended(&mut diff);
        let timeout = self.env.stop_timeout;

        // 1-3: stop what goes, upstream first.
        for id in diff.sources.changed.iter().chain(&diff.sources.removed) {
            self.ports.remove(id);
            if let Some(r) = self.sources.remove(id) {
                r.stop("source", id, timeout).await;
            }
        }
        let mut retiring = Vec::new();
        for id in self.pipeline.transform_order() {
            if !diff.transforms.goes(&id) {
                continue;
            }
            self.ports.remove(&id);
            self.queues.remove(&id);
            let Some(r) = self.transforms.remove(&id) else {
                continue;
            };
            if self.logs.contains_key(&id) {
                r.stop("transform", &id, timeout).await;
            } else {
                // Ends once every upstream is rewired (step 7).
                retiring.push((id, r));
            }
        }
        for id in &diff.sinks.changed {
            if let Some(r) = self.sinks.remove(id) {
                r.stop("sink", id, timeout).await;
            }
        }

        // 4: the new graph's endpoints.
        let old = std::mem::replace(&mut self.pipeline, new);
        let removed_sinks = self.close_removed(&old, &diff);
        self.open_endpoints(&old, &diff)?;

        // 5: start downstream first, so that everything a source sends has a place.
        self.start_sinks(&diff.sinks)?;
        self.start_transforms(&diff.transforms)?;

        // 6: rewire what keeps running.
        for id in diff.sources.kept.iter().chain(&diff.transforms.kept) {
            if let Some(ports) = self.ports.get(id) {
                ports.replace(self.outputs_of(id));
            }
        }

        // 7-8: let go of what the new graph no longer feeds.
        for (id, mut r) in retiring {
            if tokio::time::timeout(timeout, &mut r.task).await.is_err() {
                r.stop("transform", &id, Duration::from_millis(100)).await;
            }
        }
        for (id, r) in removed_sinks {
            r.stop("sink", &id, timeout).await;
            // A removed sink's outage no longer keeps the agent unready.
            self.env.health.forget(&id);
            let dir = self.env.data_dir.join("spool").join(&id);
            if dir.exists() {
                warn!(sink = %id, spool = %dir.display(), "Sink removed; its spool is kept on disk with what it had not delivered (delete it, or add the sink back to deliver it).");
            }
        }

        // 9: sources last.
        self.start_sources(&diff.sources)?;
        let channels = self.channels.values().cloned().collect();
        self.status.set(&self.pipeline, channels);
        Ok(diff)
    }

    /// Components whose task ended on its own start again on a reload.
    fn restart_ended(&self, diff: &mut Diff) {
        let ended = |m: &HashMap<String, Running>| -> Vec<String> {
            m.iter()
                .filter(|(_, r)| r.task.is_finished())
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in ended(&self.sources) {
            diff.sources.restart(&id);
        }
        for id in ended(&self.transforms) {
            diff.transforms.restart(&id);
        }
        for id in ended(&self.sinks) {
            diff.sinks.restart(&id);
        }
    }

    /// Takes removed sinks' channels and removed stateful transforms' logs
    /// out of the graph; returns the removed sinks' tasks, stopped later.
    fn close_removed(&mut self, old: &Pipeline, diff: &Diff) -> Vec<(String, Running)> {
        let mut out = Vec::new();
        for id in &diff.sinks.removed {
            if let Some(ch) = self.channels.remove(id) {
                ch.retire();
            }
            if let Some(r) = self.sinks.remove(id) {
                out.push((id.clone(), r));
            }
        }
        for t in &old.transforms {
            let stays_stateful = self
                .pipeline
                .transforms
                .iter()
                .any(|n| n.id == t.id && n.config.stateful());
            if stays_stateful {
                continue;
            }
            if let Some(log) = self.logs.remove(&t.id) {
                log.channel.retire();
                let dir = self.env.data_dir.join("transforms").join(&t.id);
                warn!(transform = %t.id, log = %dir.display(), "Stateful transform removed; its input log and checkpoint are kept (it resumes from them if added back).");
            }
        }
        out
    }

    /// Opens the channel of every new sink and the input of every new or
    /// changed transform.
    fn open_endpoints(&mut self, old: &Pipeline, diff: &Diff) -> Result<(), RunError> {
        let p = &self.pipeline;
        for s in &p.sinks {
            if self.channels.contains_key(&s.id) {
                let was = old.sinks.iter().find(|o| o.id == s.id);
                if was.is_some_and(|o| o.channel != s.channel) {
                    warn!(sink = %s.id, "The sink's channel settings changed; they apply at the next restart (the sink keeps its spool).");
                }
                continue;
            }
            let dir = self.env.data_dir.join("spool").join(&s.id);
            let scoped = self.env.registry.component(&s.id, &s.type_name);
            let ch = Channel::open(&s.id, &s.channel, &dir, &scoped).map_err(|source| {
                RunError::Channel {
                    component: format!("sink {}", s.id),
                    source,
                }
            })?;
            self.channels.insert(s.id.clone(), ch);
        }
        for t in &p.transforms {
            if !diff.transforms.starts(&t.id) {
                continue;
            }
            if !t.config.stateful() {
                continue;
            }
            if self.logs.contains_key(&t.id) {
                continue;
            }
            let log = open_log(&t.id, &t.type_name, &self.env)?;
            self.logs.insert(t.id.clone(), log);
        }
        Ok(())
    }

    fn start_sinks(&mut self, changes: &Changes) -> Result<(), RunError> {
        let host = self.host();
        for s in &self.pipeline.sinks {
            if !changes.starts(&s.id) {
                continue;
            }
            let Some(ch) = self.channels.get(&s.id).cloned() else {
                continue;
            };
            // A changed sink reads again what its predecessor read but did not acknowledge.
            ch.rewind();
            let (stop_tx, stop) = watch::channel(false);
            if s.channel.kind == ChannelType::Disk && s.channel.fsync() == FsyncPolicy::Interval {
                spawn_interval_sync(ch.clone(), s.channel.fsync_interval(), stop.clone());
            }
            let ctx = SinkContext {
                id: s.id.clone(),
                host: host.clone(),
                input: Arc::new(ChannelInput {
                    channel: ch,
                    shutdown: stop.clone(),
                    health: self.env.health.clone(),
                }),
                state: self.env.state.clone(),
                shutdown: stop,
                metrics: self.env.registry.component(&s.id, &s.type_name),
            };
            let task = s.config.build(ctx).map_err(|source| RunError::Build {
                component: format!("sink {}", s.id),
                source,
            })?;
            let running = self.spawn("sink", &s.id, stop_tx, task);
            self.sinks.insert(s.id.clone(), running);
        }
        Ok(())
    }

    /// Starts new and changed transforms, upstream first.
    fn start_transforms(&mut self, changes: &Changes) -> Result<(), RunError> {
        // Queues first: an upstream transform's ports name its downstream's queue.
        let mut queues = HashMap::new();
        for t in &self.pipeline.transforms {
            if changes.starts(&t.id) && !t.config.stateful() {
                let (tx, rx) = mpsc::channel(INLINE_QUEUE);
                self.queues.insert(t.id.clone(), tx);
                queues.insert(t.id.clone(), rx);
            }
        }
        for id in self.pipeline.transform_order() {
            let Some(t) = self.pipeline.transforms.iter().find(|t| t.id == id) else {
                continue;
            };
            if !changes.starts(&id) {
                continue;
            }
            let env = &self.env;
            let scoped = env.registry.component(&t.id, &t.type_name);
            let ctx = TransformContext {
                id: t.id.clone(),
                metrics: scoped.clone(),
            };
            let transform = t.config.build(ctx).map_err(|source| RunError::Build {
                component: format!("transform {}", t.id),
                source,
            })?;
            let ports = Ports::new(&t.id, self.outputs_of(&t.id));
            let metrics = TransformMetrics::new(&scoped, &t.id);
            let declared = t.config.outputs();
            let (stop_tx, stop) = watch::channel(false);
            let body: weir_plugins::Task = if let Some(input) = self.logs.get(&t.id) {
                let logged = Logged {
                    id: t.id.clone(),
                    transform,
                    declared,
                    input: input.clone(),
                    outputs: ports.clone(),
                    state: env.state.clone(),
                    checkpoint_interval: TRANSFORM_CHECKPOINT,
                    metrics,
                };
                Box::pin(async move {
                    logged.run(stop.clone(), stop).await;
                    Ok(())
                })
            } else {
                let Some(rx) = queues.remove(&t.id) else {
                    continue;
                };
                let inline = Inline::new(
                    t.id.clone(),
                    transform,
                    declared,
                    ports.clone(),
                    env.clock.clone(),
                    metrics,
                );
                Box::pin(async move {
                    inline.run(rx, stop.clone(), stop).await;
                    Ok(())
                })
            };
            self.ports.insert(id.clone(), ports);
            let running = self.spawn("transform", &id, stop_tx, body);
            self.transforms.insert(id, running);
        }
        Ok(())
    }

    /// The host name components stamp and report.
    fn host(&self) -> Arc<str> {
        self.pipeline
            .host
            .clone()
            .unwrap_or_else(super::host::hostname)
            .into()
    }

    fn start_sources(&mut self, changes: &Changes) -> Result<(), RunError> {
        let host = self.host();
        for src in &self.pipeline.sources {
            if !changes.starts(&src.id) {
                continue;
            }
            let outputs = self.outputs_of(&src.id);
            if outputs.is_empty() {
                warn!(source = %src.id, "Nothing reads this source; it is not started.");
                continue;
            }
            let (stop_tx, stop) = watch::channel(false);
            let ports = Ports::new(&src.id, outputs);
            let scoped = self.env.registry.component(&src.id, &src.type_name);
            let output = Arc::new(SourceFanout {
                id: src.id.clone(),
                outputs: ports.clone(),
                shutdown: stop.clone(),
                events: SourceFanout::sent_counter(&scoped, "default"),
                metrics: scoped.clone(),
            });
            let ctx = SourceContext {
                id: src.id.clone(),
                host: host.clone(),
                output,
                state: self.env.state.clone(),
                shutdown: stop,
                metrics: scoped,
                held: self.held_by(&src.id),
            };
            let task = src.config.build(ctx).map_err(|source| RunError::Build {
                component: format!("source {}", src.id),
                source,
            })?;
            self.ports.insert(src.id.clone(), ports);
            let running = self.spawn("source", &src.id, stop_tx, task);
            self.sources.insert(src.id.clone(), running);
        }
        Ok(())
    }

    fn spawn(
        &self,
        kind: &'static str,
        id: &str,
        stop: watch::Sender<bool>,
        body: weir_plugins::Task,
    ) -> Running {
        let ended = self.env.ended.clone();
        let body = self.env.liveness.watch(format!("{kind} {id}"), body);
        let id = id.to_owned();
        let task = tokio::spawn(async move {
            let result = body.await;
            report(kind, &id, result);
            let _ = ended.send(());
        });
        Running { stop, task }
    }

    /// Stops everything: sources (they checkpoint), then transforms
    /// upstream first (stateful ones checkpoint), then sinks (they finish
    /// in-flight batches), each within the stop timeout.
    pub async fn stop(&mut self) {
        let timeout = self.env.stop_timeout;
        stop_all("source", std::mem::take(&mut self.sources), timeout).await;
        for id in self.pipeline.transform_order() {
            if let Some(r) = self.transforms.remove(&id) {
                r.stop("transform", &id, timeout).await;
            }
        }
        stop_all("sink", std::mem::take(&mut self.sinks), timeout).await;
    }

    /// Where each output of component `node` goes in the current graph.
    fn outputs_of(&self, node: &str) -> Outputs {
        let p = &self.pipeline;
        let mut out = Outputs::default();
        let wanted = |inputs: &[String]| -> Vec<Option<String>> {
            inputs
                .iter()
                .filter_map(|i| match split_input(i) {
                    (n, port) if n == node => Some(port.map(str::to_owned)),
                    _ => None,
                })
                .collect()
        };
        for s in &p.sinks {
            for port in wanted(&s.inputs) {
                if let Some(ch) = self.channels.get(&s.id) {
                    out.0
                        .entry(port)
                        .or_default()
                        .push(Target::Channel(ch.clone()));
                }
            }
        }
        for t in &p.transforms {
            for port in wanted(&t.inputs) {
                let target = match (self.logs.get(&t.id), self.queues.get(&t.id)) {
                    (Some(log), _) => Target::Log(log.clone()),
                    (None, Some(tx)) => Target::Inline(tx.clone()),
                    (None, None) => continue,
                };
                out.0.entry(port).or_default().push(target);
            }
        }
        out
    }

    /// The durable holders (sink channels, stateful transforms' input logs)
    /// `node`'s events reach, directly or through stateless transforms, with
    /// whether they get the events directly (same stream names) or derived.
    fn holders_of(&self, node: &str, direct: bool, out: &mut Vec<(Channel, bool)>) {
        let outputs = self.outputs_of(node);
        for (port, targets) in &outputs.0 {
            let direct = direct && port.is_none();
            for t in targets {
                match t {
                    Target::Channel(ch) => out.push((ch.clone(), direct)),
                    Target::Log(log) => out.push((log.channel.clone(), direct)),
                    Target::Inline(_) => {}
                }
            }
        }
        for t in &self.pipeline.transforms {
            let feeds = t.inputs.iter().any(|i| split_input(i).0 == node);
            if feeds && self.queues.contains_key(&t.id) && out.len() < 10_000 {
                self.holders_of(&t.id, false, out);
            }
        }
    }

    /// What every durable holder downstream of source `id` holds of its
    /// ordered streams: the minimum across holders, a holder that lacks a
    /// stream (or holds only events derived from it by transforms, whose
    /// positions may cover part of a line's outputs) counting as 0.
    fn held_by(&self, id: &str) -> HashMap<String, u64> {
        let mut holders = Vec::new();
        self.holders_of(id, true, &mut holders);
        if holders.is_empty() || holders.iter().any(|(ch, _)| !ch.is_durable()) {
            return HashMap::new();
        }
        let prefix = format!("{id}/");
        let per_holder: Vec<HashMap<String, u64>> = holders
            .iter()
            .map(|(ch, direct)| {
                if *direct {
                    ch.held_positions(&prefix)
                        .into_iter()
                        .filter(|(name, _)| !name.contains('>'))
                        .collect()
                } else {
                    HashMap::new()
                }
            })
            .collect();
        let mut held = HashMap::new();
        for (name, _) in per_holder.iter().flatten() {
            let min = per_holder
                .iter()
                .map(|h| h.get(name).copied().unwrap_or(0))
                .min()
                .unwrap_or(0);
            if min > 0 {
                held.insert(name.clone(), min);
            }
        }
        held
    }
}

/// Opens the input log of stateful transform `id`.
fn open_log(id: &str, type_name: &str, env: &Env) -> Result<Arc<LogInput>, RunError> {
    let dir = env.data_dir.join("transforms").join(id);
    let cfg = ChannelConfig::default();
    let scoped = env.registry.component(id, type_name);
    let ch =
        Channel::open_with(id, &cfg, &dir, &scoped, PayloadForm::Events).map_err(|source| {
            RunError::Channel {
                component: format!("transform {id}"),
                source,
            }
        })?;
    Ok(Arc::new(LogInput::new(
        ch,
        env.clock.clone(),
        TICK_RESOLUTION,
    )))
}

async fn stop_all(kind: &'static str, set: HashMap<String, Running>, timeout: Duration) {
    for r in set.values() {
        let _ = r.stop.send(true);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    for (id, mut r) in set {
        if tokio::time::timeout_at(deadline, &mut r.task)
            .await
            .is_err()
        {
            warn!(kind, component = %id, "Component did not stop in time; aborting it (its data stays in the channels).");
            r.task.abort();
        }
    }
}

fn report(kind: &str, id: &str, result: Result<(), ComponentError>) {
    match result {
        Ok(()) => info!(kind, component = %id, "Component finished."),
        Err(e) => {
            error!(kind, component = %id, error = %e, "Component failed; the rest of the pipeline keeps running.")
        }
    }
}
