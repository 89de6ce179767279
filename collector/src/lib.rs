//! `weir-collector`: a compact central log. Agents replicate their spools to
//! it over HTTP(S); it stores RecordBatch v2 batches byte for byte in a
//! segmented, append-only log per topic-partition, appends each producer's
//! batch exactly once, and serves consumers by offset, time and group.
//!
//! Layers: `http` (a thin front-end: TLS, timeouts, limits, encoding) over
//! `service` (every protocol rule) over `log` (the store); `auth` and
//! `limits` sit beside the service, used by every front-end.

pub mod auth;
pub mod client;
pub mod config;
pub mod consume;
pub mod groups;
pub mod http;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod service;
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let store =
        log::Store::open(cfg.store(), stop_rx.clone()).map_err(|source| ServeError::Store {
            dir: cfg.data_dir.display().to_string(),
            source,
        })?;
    let groups = Arc::new(groups::Groups::new(&cfg.data_dir));
    let registry = Registry::new();
    let (drain_tx, drain_rx) = watch::channel(false);
    let service = service::Service::new(
        store.clone(),
        groups,
        cfg.service_limits(),
        &registry,
        drain_rx,
    )
    .map_err(ServeError::Producers)?;
    let state = Arc::new(http::AppState {
        service,
        auth: auth.clone(),
        gates: Arc::new(limits::Gates::new(cfg.gate_limits())),
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
    state.service.observed().spawn_storage_probe(
        cfg.data_dir.clone(),
        cfg.storage_probe_interval,
        stop_rx.clone(),
    );

    let opts = http::server::ServerOptions {
        max_connections: cfg.limits.max_connections,
        timeouts: http::conn::ConnTimeouts {
            header: cfg.limits.header_timeout,
            idle: cfg.limits.idle_timeout,
            write: cfg.limits.write_timeout,
        },
        shutdown_timeout: cfg.limits.shutdown_timeout,
        tls,
    };
    http::server::run(listener, app, auth, opts, drain_tx, shutdown).await;
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
/// and every open segment holds a descriptor. Warns when `max_connections`
/// could still exhaust it.
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
