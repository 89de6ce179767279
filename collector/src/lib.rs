//! `weir-collector`: a compact central log. Agents replicate their spools to
//! it over HTTP(S); it stores RecordBatch v2 batches byte for byte in a
//! segmented, append-only log per topic-partition, appends each producer's
//! batch exactly once, and serves consumers by offset, time and group.
//!
//! Layers: `http` (a thin front-end: TLS, timeouts, limits, encoding) over
//! `service` (every protocol rule) over `log` (the store); `auth` and
//! `limits` sit beside the service, used by every front-end.

mod accept;
pub mod auth;
pub mod client;
pub mod config;
pub mod consume;
pub mod groups;
pub mod http;
pub mod kafka;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod service;
mod systemd;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info, warn};
use weir_core::metrics::Registry;

pub use config::CollectorConfig;

/// Why the collector could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration cannot be served (exit code 1).
    #[error("{0}")]
    Config(String),
    #[error("opening the log under {dir}: {source}")]
    Store {
        dir: String,
        source: log::store::StoreError,
    },
    #[error("opening producer identities: {0}")]
    Producers(std::io::Error),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// Runs the collector until `shutdown` resolves, then drains connections
/// (bounded by `limits.shutdown_timeout`), syncs and returns.
/// `on_listening` receives the bound address (tests bind port 0).
pub async fn serve(
    cfg: CollectorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    if let Some(why) = cfg.exposure_problem() {
        return Err(ServeError::Config(why));
    }
    let auth = Arc::new(auth::Authenticator::new(&cfg.principals).map_err(ServeError::Config)?);
    let tls = match &cfg.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            tls::server_config(t).map_err(ServeError::Config)?,
        )),
        None => None,
    };
    raise_open_files_limit(cfg.limits.max_connections);
    let systemd = systemd::Service::from_env();
    let slots = Arc::new(tokio::sync::Semaphore::new(
        cfg.limits.max_connections.max(1),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let registry = Registry::new();
    let mut store_cfg = cfg.store();
    store_cfg.metrics = log::store::StoreMetrics::register(&registry);
    let store =
        log::Store::open(store_cfg, stop_rx.clone()).map_err(|source| ServeError::Store {
            dir: cfg.data_dir.display().to_string(),
            source,
        })?;
    let groups = Arc::new(groups::Groups::new(&cfg.data_dir));
    let (drain_tx, drain_rx) = watch::channel(false);
    let service = service::Service::new(
        store.clone(),
        groups,
        cfg.service_limits(),
        &registry,
        drain_rx.clone(),
    )
    .map_err(ServeError::Producers)?;
    let gates = Arc::new(limits::Gates::new(cfg.gate_limits()));
    let kafka = match cfg.kafka.listen {
        None => None,
        Some(addr) => Some(
            start_kafka(
                &cfg,
                addr,
                &service,
                &auth,
                &gates,
                &registry,
                &tls,
                &slots,
                drain_rx.clone(),
            )
            .await?,
        ),
    };
    let state = Arc::new(http::AppState {
        service,
        auth: auth.clone(),
        gates,
        metrics: registry,
        bodies: http::BodyLimits {
            max_bytes: cfg.max_request_bytes.bytes() as usize,
            timeout: cfg.limits.body_timeout,
            min_rate: cfg.limits.body_min_rate.bytes(),
            grace: cfg.limits.header_timeout,
        },
    });
    let app = http::router(state.clone());
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    info!(%addr, data_dir = %cfg.data_dir.display(), tls = tls.is_some(), open = auth.is_open(), "Collector listening.");
    if auth.is_open() && !addr.ip().is_loopback() {
        warn!(%addr, "Listening beyond loopback without authentication (insecure): anyone who reaches this port can write, read and create topics.");
    }
    on_listening(addr);
    spawn_retention(store.clone(), stop_rx.clone());
    systemd.ready(addr, store.clone(), stop_rx.clone());
    state.service.observed().spawn_storage_probe(
        cfg.data_dir.clone(),
        cfg.storage_probe_interval,
        stop_rx.clone(),
    );

    let opts = http::server::ServerOptions {
        slots,
        timeouts: http::conn::ConnTimeouts {
            header: cfg.limits.header_timeout,
            idle: cfg.limits.idle_timeout,
            write: cfg.limits.write_timeout,
        },
        shutdown_timeout: cfg.limits.shutdown_timeout,
        tls,
    };
    let shutdown = systemd.stopping_after(shutdown);
    // One shutdown signal for both listeners.
    let (shut_tx, shut_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = shut_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let kafka_task = kafka.map(|(listener, broker, opts)| {
        tokio::spawn(kafka::listener::run(
            listener,
            broker,
            opts,
            drain_rx,
            stopped(shut_rx.clone()),
        ))
    });
    let server = http::server::run(listener, app, auth, opts, drain_tx, stopped(shut_rx));
    systemd.liveness.watch("http listener", server).await;
    if let Some(k) = kafka_task {
        let _ = k.await;
    }
    let _ = stop_tx.send(true);
    let s = store.clone();
    // Bounded too: a disk that hangs must not keep the process alive forever.
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || s.sync_all()),
    )
    .await
    {
        Ok(_) => info!("Collector stopped."),
        Err(_) => error!("The final fsync did not finish within 10s; exiting without it."),
    }
    Ok(())
}

type KafkaParts = (
    tokio::net::TcpListener,
    Arc<kafka::Broker>,
    kafka::listener::ListenerOptions,
);

/// Binds the Kafka listener and builds what its connections share.
#[allow(clippy::too_many_arguments)]
async fn start_kafka(
    cfg: &CollectorConfig,
    addr: std::net::SocketAddr,
    service: &Arc<service::Service>,
    auth: &Arc<auth::Authenticator>,
    gates: &Arc<limits::Gates>,
    registry: &Registry,
    tls: &Option<tokio_rustls::TlsAcceptor>,
    slots: &Arc<tokio::sync::Semaphore>,
    _drain: watch::Receiver<bool>,
) -> Result<KafkaParts, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(ServeError::Serve)?;
    let (host, port) = match &cfg.kafka.advertised {
        Some(a) => kafka::split_host_port(a).ok_or_else(|| {
            ServeError::Config(format!("kafka.advertised: {a:?} is not host:port"))
        })?,
        None => (bound.ip().to_string(), i32::from(bound.port())),
    };
    let cluster_id = kafka::cluster_id(&cfg.data_dir).map_err(ServeError::Producers)?;
    let broker = Arc::new(kafka::Broker {
        service: service.clone(),
        auth: auth.clone(),
        gates: gates.clone(),
        advertised_host: host.clone(),
        advertised_port: port,
        cluster_id,
        auto_create_topics: cfg.kafka.auto_create_topics,
        max_request_bytes: cfg.kafka.max_request_bytes.bytes() as usize,
        metrics: kafka::Metrics::new(registry),
    });
    info!(addr = %bound, advertised = %format!("{host}:{port}"), tls = tls.is_some(), "Kafka listener listening.");
    let opts = kafka::listener::ListenerOptions {
        slots: slots.clone(),
        timeouts: kafka::connection::Timeouts {
            header: cfg.limits.header_timeout,
            idle: cfg.limits.idle_timeout,
            body: cfg.limits.body_timeout,
            write: cfg.limits.write_timeout,
        },
        shutdown_timeout: cfg.limits.shutdown_timeout,
        tls: tls.clone(),
    };
    Ok((listener, broker, opts))
}

fn spawn_retention(store: Arc<log::Store>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let s = store.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || s.apply_retention()).await {
                error!(error = %e, "Retention task failed.");
            }
        }
    });
}

/// Raises the soft limit on open files to the hard limit: every connection
/// holds a descriptor, and the log one per partition plus a bounded set of
/// sealed segments (`log::store::OPEN_SEALED_SEGMENTS`); a low default soft
/// limit (often 1024) must not stop the collector from starting. Warns when
/// `max_connections` could still exhaust it.
fn raise_open_files_limit(max_connections: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read a plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    let reserve = 256u64;
    if (max_connections as u64).saturating_add(reserve) > lim.rlim_cur {
        warn!(max_connections, open_files_limit = lim.rlim_cur, "limits.max_connections plus room for log files exceeds the open-files limit; lower it or raise the limit (LimitNOFILE).");
    }
}
