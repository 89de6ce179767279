//! Running a pipeline: opening the state database, starting the topology
//! (see `topology`), serving metrics and the admin socket, reloading on
//! SIGHUP or `weir reload`, and stopping in order on SIGTERM/SIGINT —
//! sources first (they checkpoint), then transforms upstream first
//! (stateful ones checkpoint), then sinks (they finish in-flight batches) —
//! each within a bound.

pub mod diff;
pub mod health;
mod host;
pub mod inline;
pub mod input;
pub mod logged;
pub mod ports;
pub mod route;
mod systemd;
pub mod tap;
#[cfg(test)]
mod tests;
pub mod topology;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use weir_core::metrics::Registry;
use weir_core::systemd::Liveness;
use weir_plugins::state::StateStore;
use weir_plugins::{Clock, SystemClock};

use crate::admin::{self, Command};
use crate::config::Pipeline;
use topology::{Env, Topology};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overrides the pipeline's `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on `/metrics` here.
    pub metrics_listen: Option<SocketAddr>,
    /// Longest each stage (sources, each transform, sinks) gets to stop.
    pub shutdown_timeout: Duration,
    /// The pipeline file, read again on a reload (none: reloads are refused).
    pub config: Option<PathBuf>,
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
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/weir";

/// Commands from the admin socket waiting for the runtime.
const COMMAND_QUEUE: usize = 4;

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
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let health = health::Health::default();
    let liveness = Liveness::new();
    let mut topology = Topology::new(Env {
        data_dir: data_dir.clone(),
        state,
        registry: registry.clone(),
        clock,
        ended: ended_tx,
        stop_timeout: opts.shutdown_timeout,
        health: health.clone(),
        liveness: liveness.clone(),
    });
    let admin_cfg = pipeline.admin.clone();
    let sink_failing_after = pipeline.health.sink_failing_after;
    let counts = (
        pipeline.sources.len(),
        pipeline.transforms.len(),
        pipeline.sinks.len(),
    );
    let pipeline = with_data_dir(pipeline, &opts);
    if let Err(e) = topology.apply(pipeline).await {
        topology.stop().await;
        return Err(e);
    }

    let (stop_tx, stop) = watch::channel(false);
    let metrics_addr = match opts.metrics_listen {
        Some(addr) => {
            let ready = (health.clone(), sink_failing_after);
            Some(host::serve_metrics(addr, registry.clone(), ready, stop.clone()).await?)
        }
        None => None,
    };
    let (command_tx, mut commands) = mpsc::channel(COMMAND_QUEUE);
    if admin_cfg.enabled {
        admin::serve(
            &admin_cfg,
            &data_dir,
            command_tx,
            registry.clone(),
            stop.clone(),
        )
        .await?;
    }
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(RunError::Signal)?;
    info!(data_dir = %data_dir.display(), sources = counts.0, transforms = counts.1, sinks = counts.2, "Agent running.");
    on_ready(metrics_addr);
    let service = systemd::Service::start(topology.status(), liveness, stop.clone());

    // Run until asked to stop; a component that ends early is reported
    // (by its task), the others go on.
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hangup.recv() => {
                info!("SIGHUP: reloading the pipeline.");
                service.reloading();
                let _ = reload(&mut topology, &opts).await;
                service.reloaded();
            }
            Some(cmd) = commands.recv() => match cmd {
                Command::Reload { reply } => {
                    info!("Reload asked on the admin socket.");
                    service.reloading();
                    let _ = reply.send(reload(&mut topology, &opts).await);
                    service.reloaded();
                }
                Command::Tap { component, output, rate, reply } => {
                    let _ = reply.send(tap(&topology, &component, output, rate));
                }
            },
            Some(()) = ended.recv() => {
                if topology.all_ended() {
                    info!("Every component has ended.");
                    break;
                }
            }
        }
    }
    info!("Stopping: sources, then transforms, then sinks.");
    service.stopping();
    topology.stop().await;
    let _ = stop_tx.send(true);
    info!("Agent stopped.");
    Ok(())
}

/// `--data-dir` wins over the file's `data_dir`, at start and on reloads.
fn with_data_dir(mut p: Pipeline, opts: &RunOptions) -> Pipeline {
    if opts.data_dir.is_some() {
        p.data_dir = opts.data_dir.clone();
    }
    p
}

/// Reads, validates and applies the pipeline file. Returns the changes,
/// or why nothing changed (every problem of an invalid file).
async fn reload(topology: &mut Topology, opts: &RunOptions) -> Result<String, String> {
    let Some(file) = &opts.config else {
        warn!("Reload refused: the agent was not started from a pipeline file.");
        return Err("the agent was not started from a pipeline file".to_owned());
    };
    let new = match crate::config::load(file) {
        Ok(p) => with_data_dir(p, opts),
        Err(problems) => {
            for p in &problems.0 {
                error!(problem = %p, "Reload refused: the pipeline is invalid; the running one goes on.");
            }
            return Err(problems.to_string());
        }
    };
    if new.data_dir != topology.pipeline().data_dir {
        let msg = "data_dir cannot change while the agent runs; restart the agent to move it";
        error!("Reload refused: {msg}; the running pipeline goes on.");
        return Err(msg.to_owned());
    }
    if new.admin != topology.pipeline().admin {
        warn!("The admin socket settings changed; they apply at the next restart.");
    }
    if new.health != topology.pipeline().health {
        warn!("The health settings changed; they apply at the next restart.");
    }
    match topology.apply(new).await {
        Ok(diff) => {
            info!(changes = %diff.summary(), "Reloaded the pipeline.");
            Ok(diff.summary())
        }
        Err(e) => {
            error!(error = %e, "Reload failed part way; the components started so far run.");
            Err(e.to_string())
        }
    }
}

/// Attaches a tap to `component`'s `output`.
fn tap(
    topology: &Topology,
    component: &str,
    output: Option<String>,
    rate: u32,
) -> Result<(tap::TapFeed, std::sync::Weak<ports::Ports>), String> {
    let p = topology.pipeline();
    let declared = if let Some(s) = p.sources.iter().find(|s| s.id == component) {
        s.config.outputs()
    } else if let Some(t) = p.transforms.iter().find(|t| t.id == component) {
        t.config.outputs()
    } else if p.sinks.iter().any(|s| s.id == component) {
        return Err(format!(
            "`{component}` is a sink; sinks have no outputs: tap the component that feeds it"
        ));
    } else {
        return Err(format!(
            "no source or transform named `{component}` is running"
        ));
    };
    if let Some(o) = &output {
        if o != weir_plugins::ERRORS_OUTPUT && !declared.contains(o) {
            return Err(format!("`{component}` has no output `{o}`"));
        }
    }
    let Some(ports) = topology.ports(component) else {
        return Err(format!("`{component}` is not running"));
    };
    let feed = ports.taps.attach(output, rate).map_err(|e| e.to_string())?;
    Ok((feed, Arc::downgrade(&ports)))
}
