//! Running a pipeline: opening the state database and channels, wiring
//! every component output to its targets, starting every component, and
//! stopping in order on SIGTERM/SIGINT — sources first (they checkpoint),
//! then transforms upstream first (stateful ones checkpoint), then sinks
//! (they finish in-flight batches) — each within a bound.

pub mod health;
mod host;
pub mod inline;
pub mod input;
pub mod logged;
pub mod route;
mod systemd;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use weir_core::metrics::Registry;
use weir_core::systemd::Liveness;
use weir_plugins::state::StateStore;
use weir_plugins::{
    AgentInfo, Clock, ComponentError, SinkContext, SourceContext, SystemClock, TransformContext,
};

use crate::channel::disk::PayloadForm;
use crate::channel::{Channel, ChannelConfig, ChannelType, FsyncPolicy};
use crate::config::{split_input, Pipeline};
use inline::{Inline, TransformMetrics};
use input::{spawn_interval_sync, ChannelInput};
use logged::Logged;
use route::{InlineRequest, LogInput, Outputs, SourceFanout, Target};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overrides the pipeline's `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on `/metrics` here.
    pub metrics_listen: Option<SocketAddr>,
    /// Longest each stage (sources, each transform, sinks) gets to stop.
    pub shutdown_timeout: Duration,
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("data directory {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("another agent is using data directory {0} (it holds the lock)")]
    Locked(PathBuf),
    #[error(transparent)]
    State(#[from] weir_plugins::state::StateError),
    #[error("opening the channel of {component}: {source}")]
    Channel {
        component: String,
        source: crate::channel::disk::SpoolError,
    },
    #[error("building {component}: {source}")]
    Build {
        component: String,
        source: weir_plugins::BuildError,
    },
    #[error("metrics listener on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/weir";

/// Ns between the tick records of a stateful transform's input log while
/// events arrive: its processing-time resolution.
const TICK_RESOLUTION: i64 = 1_000_000_000;
/// How often a stateful transform checkpoints its state.
const TRANSFORM_CHECKPOINT: Duration = Duration::from_secs(1);
/// Batches waiting at an inline transform, per transform.
const INLINE_QUEUE: usize = 4;

type Done = (String, Result<(), ComponentError>);

/// Runs `pipeline` until `shutdown` resolves; `on_ready` gets the metrics address.
pub async fn run(
    pipeline: Pipeline,
    opts: RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce(Option<SocketAddr>),
) -> Result<(), RunError> {
    let data_dir = opts
        .data_dir
        .clone()
        .or(pipeline.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    std::fs::create_dir_all(&data_dir).map_err(|source| RunError::DataDir {
        dir: data_dir.clone(),
        source,
    })?;
    let _lock = host::lock_data_dir(&data_dir)?;
    let (state, damaged) = StateStore::open_or_quarantine(&data_dir.join("state.db"))?;
    let registry = Registry::new();
    weir_core::process_metrics::register(&registry, "weir_build_info", env!("CARGO_PKG_VERSION"));
    registry
        .counter(
            "weir_state_db_quarantined_total",
            "Damaged state databases moved aside at start (positions rebuilt from the spools; in-flight batches may be sent again).",
            &[],
        )
        .add(u64::from(damaged.is_some()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (src_stop_tx, src_stop) = watch::channel(false);
    let (sink_stop_tx, sink_stop) = watch::channel(false);

    let mut graph = Graph::open(&pipeline, &data_dir, &registry, clock.clone())?;
    let health = health::Health::default();
    let host = pipeline.host.clone().unwrap_or_else(host::hostname);
    let own_dir = (data_dir != Path::new(DEFAULT_DATA_DIR)).then_some(data_dir.as_path());
    let sink_ids = pipeline
        .sinks
        .iter()
        .map(|s| (s.id.clone(), s.type_name.clone()));
    let agent = AgentInfo::new(
        AgentInfo::id_for(&host, own_dir),
        env!("CARGO_PKG_VERSION"),
        registry.clone(),
        sink_ids.collect(),
    );
    let mut sinks = start_sinks(
        &pipeline, &graph, &state, &registry, &health, &sink_stop, &agent,
    )?;
    let mut transforms = start_transforms(&pipeline, &mut graph, &state, &registry, &clock)?;
    let mut sources = start_sources(&pipeline, &graph, &state, &registry, &src_stop)?;
    let channels = graph.channels.values().cloned().collect();
    let liveness = graph.liveness.clone();
    drop(graph);

    let metrics_addr = match opts.metrics_listen {
        Some(addr) => {
            let ready = (health.clone(), pipeline.health.sink_failing_after);
            Some(host::serve_metrics(addr, registry.clone(), ready, sink_stop.clone()).await?)
        }
        None => None,
    };
    info!(data_dir = %data_dir.display(), sources = pipeline.sources.len(),
        transforms = pipeline.transforms.len(), sinks = pipeline.sinks.len(), "Agent running.");
    on_ready(metrics_addr);
    let service = systemd::Service::start(&pipeline, channels, liveness, sink_stop.clone());

    // Run until asked to stop; a component that ends early is reported, the others go on.
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = sources.join_next() => report("source", done),
            Some(done) = sinks.join_next() => report("sink", done),
            else => break,
        }
    }
    info!("Stopping: sources, then transforms, then sinks.");
    service.stopping();
    let _ = src_stop_tx.send(true);
    drain("source", &mut sources, opts.shutdown_timeout).await;
    for t in &mut transforms {
        t.stop(opts.shutdown_timeout).await;
    }
    let _ = sink_stop_tx.send(true);
    drain("sink", &mut sinks, opts.shutdown_timeout).await;
    info!("Agent stopped.");
    Ok(())
}

/// The durable and in-process endpoints every component output can target.
struct Graph {
    channels: HashMap<String, Channel>,
    logs: HashMap<String, Arc<LogInput>>,
    inline_tx: HashMap<String, mpsc::Sender<InlineRequest>>,
    inline_rx: HashMap<String, mpsc::Receiver<InlineRequest>>,
    /// Times every component task's polls, for the systemd watchdog.
    liveness: Liveness,
}

impl Graph {
    /// Opens every sink's channel and every transform's input.
    fn open(
        p: &Pipeline,
        data_dir: &Path,
        registry: &Registry,
        clock: Arc<dyn Clock>,
    ) -> Result<Graph, RunError> {
        let mut g = Graph {
            channels: HashMap::new(),
            logs: HashMap::new(),
            inline_tx: HashMap::new(),
            inline_rx: HashMap::new(),
            liveness: Liveness::new(),
        };
        // One channel per sink: a stalled sink fills only its own.
        for s in &p.sinks {
            let dir = data_dir.join("spool").join(&s.id);
            let scoped = registry.component(&s.id, &s.type_name);
            let ch = Channel::open(&s.id, &s.channel, &dir, &scoped).map_err(|source| {
                RunError::Channel {
                    component: format!("sink {}", s.id),
                    source,
                }
            })?;
            g.channels.insert(s.id.clone(), ch);
        }
        for t in &p.transforms {
            if t.config.stateful() {
                let dir = data_dir.join("transforms").join(&t.id);
                let cfg = ChannelConfig::default();
                let scoped = registry.component(&t.id, &t.type_name);
                let ch = Channel::open_with(&t.id, &cfg, &dir, &scoped, PayloadForm::Events)
                    .map_err(|source| RunError::Channel {
                        component: format!("transform {}", t.id),
                        source,
                    })?;
                let log = LogInput::new(ch, clock.clone(), TICK_RESOLUTION);
                g.logs.insert(t.id.clone(), Arc::new(log));
            } else {
                let (tx, rx) = mpsc::channel(INLINE_QUEUE);
                g.inline_tx.insert(t.id.clone(), tx);
                g.inline_rx.insert(t.id.clone(), rx);
            }
        }
        Ok(g)
    }

    /// The durable holders (sink channels, stateful transforms' input logs)
    /// `node`'s events reach, directly or through stateless transforms, with
    /// whether they get the events directly (same stream names) or derived.
    fn holders_of(&self, node: &str, p: &Pipeline, direct: bool, out: &mut Vec<(Channel, bool)>) {
        let outputs = self.outputs_of(node, p);
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
        for t in &p.transforms {
            let feeds = t.inputs.iter().any(|i| split_input(i).0 == node);
            if feeds && self.inline_tx.contains_key(&t.id) && out.len() < 10_000 {
                self.holders_of(&t.id, p, false, out);
            }
        }
    }

    /// What every durable holder downstream of source `id` holds of its
    /// ordered streams: the minimum across holders, a holder that lacks a
    /// stream (or holds only events derived from it by transforms, whose
    /// positions may cover part of a line's outputs) counting as 0.
    fn held_by(&self, id: &str, p: &Pipeline) -> HashMap<String, u64> {
        let mut holders = Vec::new();
        self.holders_of(id, p, true, &mut holders);
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

    /// Where each output of component `node` goes.
    fn outputs_of(&self, node: &str, p: &Pipeline) -> Outputs {
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
                let target = match (self.logs.get(&t.id), self.inline_tx.get(&t.id)) {
                    (Some(log), _) => Target::Log(log.clone()),
                    (None, Some(tx)) => Target::Inline(tx.clone()),
                    (None, None) => continue,
                };
                out.0.entry(port).or_default().push(target);
            }
        }
        out
    }
}

fn start_sinks(
    p: &Pipeline,
    g: &Graph,
    state: &StateStore,
    registry: &Registry,
    health: &health::Health,
    stop: &watch::Receiver<bool>,
    agent: &AgentInfo,
) -> Result<JoinSet<Done>, RunError> {
    let mut set = JoinSet::new();
    let host: Arc<str> = p.host.clone().unwrap_or_else(host::hostname).into();
    for s in &p.sinks {
        let Some(ch) = g.channels.get(&s.id).cloned() else {
            continue;
        };
        if s.channel.kind == ChannelType::Disk && s.channel.fsync() == FsyncPolicy::Interval {
            spawn_interval_sync(ch.clone(), s.channel.fsync_interval(), stop.clone());
        }
        let ctx = SinkContext {
            id: s.id.clone(),
            host: host.clone(),
            input: Arc::new(ChannelInput {
                channel: ch,
                shutdown: stop.clone(),
                health: health.clone(),
            }),
            state: state.clone(),
            shutdown: stop.clone(),
            metrics: registry.component(&s.id, &s.type_name),
            agent: agent.clone(),
        };
        let task = s.config.build(ctx).map_err(|source| RunError::Build {
            component: format!("sink {}", s.id),
            source,
        })?;
        let id = s.id.clone();
        let task = g.liveness.watch(format!("sink {id}"), task);
        set.spawn(async move { (id, task.await) });
    }
    Ok(set)
}

/// A running transform and how to stop it.
struct RunningTransform {
    id: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningTransform {
    async fn stop(&mut self, timeout: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(timeout, &mut self.task).await.is_err() {
            warn!(transform = %self.id, "Transform did not stop in time; aborting it (stateful ones resume from their last checkpoint).");
            self.task.abort();
        }
    }
}

/// Starts every transform; returns them upstream first (the order to stop them in).
fn start_transforms(
    p: &Pipeline,
    g: &mut Graph,
    state: &StateStore,
    registry: &Registry,
    clock: &Arc<dyn Clock>,
) -> Result<Vec<RunningTransform>, RunError> {
    // The receivers move into the tasks; the graph keeps only senders.
    let mut inline_rx = std::mem::take(&mut g.inline_rx);
    let mut running = Vec::new();
    for id in p.transform_order() {
        let Some(t) = p.transforms.iter().find(|t| t.id == id) else {
            continue;
        };
        let scoped = registry.component(&t.id, &t.type_name);
        let ctx = TransformContext {
            id: t.id.clone(),
            metrics: scoped.clone(),
        };
        let transform = t.config.build(ctx).map_err(|source| RunError::Build {
            component: format!("transform {}", t.id),
            source,
        })?;
        let outputs = g.outputs_of(&t.id, p);
        let metrics = TransformMetrics::new(&scoped, &t.id);
        let declared = t.config.outputs();
        let (stop_tx, stop) = watch::channel(false);
        let task = if let Some(input) = g.logs.get(&t.id) {
            let logged = Logged {
                id: t.id.clone(),
                transform,
                declared,
                input: input.clone(),
                outputs,
                state: state.clone(),
                checkpoint_interval: TRANSFORM_CHECKPOINT,
                metrics,
            };
            let name = format!("transform {}", t.id);
            tokio::spawn(g.liveness.watch(name, logged.run(stop.clone(), stop)))
        } else {
            let Some(rx) = inline_rx.remove(&t.id) else {
                continue;
            };
            let inline = Inline::new(
                t.id.clone(),
                transform,
                declared,
                outputs,
                clock.clone(),
                metrics,
            );
            let name = format!("transform {}", t.id);
            tokio::spawn(g.liveness.watch(name, inline.run(rx, stop.clone(), stop)))
        };
        running.push(RunningTransform {
            id: t.id.clone(),
            stop: stop_tx,
            task,
        });
    }
    Ok(running)
}

fn start_sources(
    p: &Pipeline,
    g: &Graph,
    state: &StateStore,
    registry: &Registry,
    stop: &watch::Receiver<bool>,
) -> Result<JoinSet<Done>, RunError> {
    let host: Arc<str> = p.host.clone().unwrap_or_else(host::hostname).into();
    let mut set = JoinSet::new();
    for src in &p.sources {
        let outputs = g.outputs_of(&src.id, p);
        if outputs.is_empty() {
            warn!(source = %src.id, "Nothing reads this source; it is not started.");
            continue;
        }
        let scoped = registry.component(&src.id, &src.type_name);
        let output = Arc::new(SourceFanout {
            id: src.id.clone(),
            outputs,
            shutdown: stop.clone(),
            events: SourceFanout::sent_counter(&scoped, "default"),
            metrics: scoped.clone(),
        });
        let ctx = SourceContext {
            id: src.id.clone(),
            host: host.clone(),
            output,
            state: state.clone(),
            shutdown: stop.clone(),
            metrics: scoped,
            held: g.held_by(&src.id, p),
        };
        let task = src.config.build(ctx).map_err(|source| RunError::Build {
            component: format!("source {}", src.id),
            source,
        })?;
        let id = src.id.clone();
        let task = g.liveness.watch(format!("source {id}"), task);
        set.spawn(async move { (id, task.await) });
    }
    Ok(set)
}

fn report(kind: &str, done: Result<Done, tokio::task::JoinError>) {
    match done {
        Ok((id, Ok(()))) => info!(kind, component = %id, "Component finished."),
        Ok((id, Err(e))) => {
            error!(kind, component = %id, error = %e, "Component failed; the rest of the pipeline keeps running.")
        }
        Err(e) => error!(kind, error = %e, "Component task panicked."),
    }
}

async fn drain(kind: &str, set: &mut JoinSet<Done>, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !set.is_empty() {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(done)) => report(kind, done),
            Ok(None) => break,
            Err(_) => {
                warn!(kind, remaining = set.len(), "Components did not stop in time; aborting them (their data stays in the channels).");
                set.abort_all();
                break;
            }
        }
    }
}
