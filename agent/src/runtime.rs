//! Running a pipeline: opening the state database and channels, wiring
//! sources to the channels of the sinks that read them, starting every
//! component, and stopping in order on SIGTERM/SIGINT: sources first (they
//! checkpoint), then sinks (they finish in-flight batches), within a bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use weir_core::metrics::{Counter, Registry};
use weir_core::Event;
use weir_plugins::state::StateStore;
use weir_plugins::{
    BoxFuture, SendError, SinkContext, SinkInput, SourceBatch, SourceContext, SourceOutput,
    Transform, TransformContext,
};

use crate::channel::{Channel, ChannelType, FsyncPolicy};
use crate::config::Pipeline;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overrides the pipeline's `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on `/metrics` here.
    pub metrics_listen: Option<SocketAddr>,
    /// Longest the sources, then the sinks, get to stop.
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
    #[error("opening the channel of sink {sink}: {source}")]
    Channel {
        sink: String,
        source: crate::channel::disk::SpoolError,
    },
    #[error("building {component}: {message}")]
    Build { component: String, message: String },
    #[error("metrics listener on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/weir";

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
    let _lock = lock_data_dir(&data_dir)?;
    let state = StateStore::open(&data_dir.join("state.db"))?;
    let registry = Registry::new();
    let host: Arc<str> = pipeline.host.clone().unwrap_or_else(hostname).into();

    let (src_stop_tx, src_stop) = watch::channel(false);
    let (sink_stop_tx, sink_stop) = watch::channel(false);

    // One channel per sink: a stalled sink fills only its own.
    let mut channels: HashMap<String, Channel> = HashMap::new();
    for s in &pipeline.sinks {
        let ch = Channel::open(
            &s.id,
            &s.channel,
            &data_dir.join("spool").join(&s.id),
            &registry,
        )
        .map_err(|source| RunError::Channel {
            sink: s.id.clone(),
            source,
        })?;
        channels.insert(s.id.clone(), ch);
    }

    let mut sinks = JoinSet::new();
    for s in &pipeline.sinks {
        let ch = channels[&s.id].clone();
        if s.channel.kind == ChannelType::Disk && s.channel.fsync() == FsyncPolicy::Interval {
            spawn_interval_sync(ch.clone(), s.channel.fsync_interval(), sink_stop.clone());
        }
        let ctx = SinkContext {
            id: s.id.clone(),
            input: Arc::new(ChannelInput {
                channel: ch,
                shutdown: sink_stop.clone(),
            }),
            state: state.clone(),
            shutdown: sink_stop.clone(),
            metrics: registry.clone(),
        };
        let task = s.config.build(ctx).map_err(|e| RunError::Build {
            component: format!("sink {}", s.id),
            message: e.0,
        })?;
        let id = s.id.clone();
        sinks.spawn(async move { (id, task.await) });
    }

    // Transforms are built once; a transform fed by several sources is shared.
    let mut transforms: HashMap<String, SharedTransform> = HashMap::new();
    for t in &pipeline.transforms {
        let ctx = TransformContext {
            id: t.id.clone(),
            metrics: registry.clone(),
        };
        let built = t.config.build(ctx).map_err(|e| RunError::Build {
            component: format!("transform {}", t.id),
            message: e.0,
        })?;
        transforms.insert(t.id.clone(), Arc::new(std::sync::Mutex::new(built)));
    }

    let mut sources = JoinSet::new();
    for src in &pipeline.sources {
        let routes = routes_from(&src.id, &pipeline, &channels, &transforms);
        if routes.is_empty() {
            warn!(source = %src.id, "No sink reads this source; it is not started.");
            continue;
        }
        let output = Arc::new(Fanout {
            routes,
            shutdown: src_stop.clone(),
            events: registry.counter(
                "weir_component_sent_events_total",
                "Events a source handed to its channels.",
                &[("component", src.id.as_str())],
            ),
        });
        let ctx = SourceContext {
            id: src.id.clone(),
            host: host.clone(),
            output,
            state: state.clone(),
            shutdown: src_stop.clone(),
            metrics: registry.clone(),
        };
        let task = src.config.build(ctx).map_err(|e| RunError::Build {
            component: format!("source {}", src.id),
            message: e.0,
        })?;
        let id = src.id.clone();
        sources.spawn(async move { (id, task.await) });
    }

    let metrics_addr = match opts.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, registry.clone(), sink_stop.clone()).await?),
        None => None,
    };
    info!(data_dir = %data_dir.display(), sources = pipeline.sources.len(), sinks = pipeline.sinks.len(), "Agent running.");
    on_ready(metrics_addr);

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
    info!("Stopping: sources first, then sinks.");
    let _ = src_stop_tx.send(true);
    drain("source", &mut sources, opts.shutdown_timeout).await;
    let _ = sink_stop_tx.send(true);
    drain("sink", &mut sinks, opts.shutdown_timeout).await;
    info!("Agent stopped.");
    Ok(())
}

fn report(
    kind: &str,
    done: Result<(String, Result<(), weir_plugins::ComponentError>), tokio::task::JoinError>,
) {
    match done {
        Ok((id, Ok(()))) => info!(kind, component = %id, "Component finished."),
        Ok((id, Err(e))) => {
            error!(kind, component = %id, error = %e, "Component failed; the rest of the pipeline keeps running.")
        }
        Err(e) => error!(kind, error = %e, "Component task panicked."),
    }
}

async fn drain(
    kind: &str,
    set: &mut JoinSet<(String, Result<(), weir_plugins::ComponentError>)>,
    timeout: Duration,
) {
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

/// A source's output: every channel downstream, in turn.
type SharedTransform = Arc<std::sync::Mutex<Box<dyn Transform>>>;

/// Where a batch goes next: a sink's channel, or a transform and what follows it.
enum Route {
    Channel(Channel),
    Transform {
        t: SharedTransform,
        next: Vec<Route>,
    },
}

/// The routes out of a source or transform. The graph is acyclic (validated),
/// so the recursion ends.
fn routes_from(
    node: &str,
    p: &Pipeline,
    channels: &HashMap<String, Channel>,
    transforms: &HashMap<String, SharedTransform>,
) -> Vec<Route> {
    let mut out = Vec::new();
    for s in p
        .sinks
        .iter()
        .filter(|s| s.inputs.iter().any(|i| i == node))
    {
        out.push(Route::Channel(channels[&s.id].clone()));
    }
    for t in p
        .transforms
        .iter()
        .filter(|t| t.inputs.iter().any(|i| i == node))
    {
        let next = routes_from(&t.id, p, channels, transforms);
        if let Some(shared) = transforms.get(&t.id) {
            out.push(Route::Transform {
                t: shared.clone(),
                next,
            });
        }
    }
    out
}

/// Delivers a batch along `routes`: channels share it, each transform
/// branch gets its own copy (the last one takes the original).
fn deliver<'a>(
    routes: &'a [Route],
    batch: SourceBatch,
    shutdown: &'a mut watch::Receiver<bool>,
) -> BoxFuture<'a, Result<(), SendError>> {
    Box::pin(async move {
        let shared = Arc::new(batch);
        for r in routes {
            if let Route::Channel(ch) = r {
                ch.push(shared.clone(), shutdown)
                    .await
                    .map_err(|_| SendError::Shutdown)?;
            }
        }
        let branches: Vec<(&SharedTransform, &Vec<Route>)> = routes
            .iter()
            .filter_map(|r| match r {
                Route::Transform { t, next } => Some((t, next)),
                Route::Channel(_) => None,
            })
            .collect();
        let mut shared = Some(shared);
        let count = branches.len();
        for (k, (t, next)) in branches.into_iter().enumerate() {
            let mut b = if k + 1 == count {
                let last = shared.take().unwrap_or_default();
                Arc::try_unwrap(last).unwrap_or_else(|a| (*a).clone())
            } else {
                shared.as_deref().cloned().unwrap_or_default()
            };
            t.lock().unwrap_or_else(|e| e.into_inner()).apply(&mut b);
            deliver(next, b, shutdown).await?;
        }
        Ok(())
    })
}

/// A source's output: every route downstream, in turn.
struct Fanout {
    routes: Vec<Route>,
    shutdown: watch::Receiver<bool>,
    events: Counter,
}

impl SourceOutput for Fanout {
    fn send(&self, batch: SourceBatch) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move {
            let n = batch.events.len() as u64;
            let mut shutdown = self.shutdown.clone();
            deliver(&self.routes, batch, &mut shutdown).await?;
            self.events.add(n);
            Ok(())
        })
    }
}

/// A sink's view of its channel.
struct ChannelInput {
    channel: Channel,
    shutdown: watch::Receiver<bool>,
}

impl SinkInput for ChannelInput {
    fn next_batch(
        &self,
        max_events: usize,
        max_bytes: usize,
        wait: Option<Duration>,
    ) -> BoxFuture<'_, Option<Vec<(u64, Event)>>> {
        Box::pin(async move {
            let mut shutdown = self.shutdown.clone();
            self.channel
                .next_batch(max_events, max_bytes, wait, &mut shutdown)
                .await
        })
    }

    fn ack(&self, end_id: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            // A failed cursor write is retried by the next ack; the records
            // stay in the spool and may be delivered again after a crash.
            if let Err(e) = self.channel.ack(end_id).await {
                warn!(sink = %self.channel.name(), error = %e, "Could not persist the acknowledgement; will retry.");
            }
            Ok(())
        })
    }

    fn rewind(&self) {
        self.channel.rewind();
    }
}

fn spawn_interval_sync(ch: Channel, every: Duration, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            ch.sync().await;
            if stopping {
                break;
            }
        }
    });
}

async fn serve_metrics(
    addr: SocketAddr,
    registry: Registry,
    mut stop: watch::Receiver<bool>,
) -> Result<SocketAddr, RunError> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Metrics { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| RunError::Metrics { addr, source })?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let r = registry.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        r.render(),
                    )
                }
            }),
        )
        .route("/health", get(|| async { "ok" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    info!(addr = %bound, "Serving metrics on /metrics.");
    Ok(bound)
}

/// Holds an exclusive lock on the data directory for the agent's lifetime:
/// two agents on one spool would corrupt it.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, RunError> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| RunError::DataDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(RunError::Locked(dir.to_path_buf()));
    }
    Ok(f)
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
