//! `weir-collector`: a compact central log. Agents replicate their spools to
//! it over HTTP; it stores RecordBatch v2 batches byte for byte in a
//! segmented, append-only log per topic-partition, appends each producer's
//! batch exactly once, and serves consumers by offset, time and group.

pub mod config;
pub mod consume;
pub mod groups;
pub mod log;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info};
use weir_core::metrics::Registry;

pub use config::CollectorConfig;

/// Why the collector could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("opening the log under {dir}: {source}")]
    Store {
        dir: String,
        source: log::store::StoreError,
    },
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// Runs the collector until `shutdown` resolves, then syncs and returns.
/// `on_listening` receives the bound address (tests bind port 0).
pub async fn serve(
    cfg: CollectorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
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
    let state = server::AppState::new(
        store.clone(),
        groups,
        registry,
        stop_rx.clone(),
        cfg.max_concurrent_requests,
    );
    let app = server::router(state, cfg.max_request_bytes.bytes() as usize);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    info!(%addr, data_dir = %cfg.data_dir.display(), "Collector listening.");
    on_listening(addr);

    let retention_store = store.clone();
    let mut retention_stop = stop_rx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = retention_stop.wait_for(|s| *s) => break,
            }
            let s = retention_store.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || s.apply_retention()).await {
                error!(error = %e, "Retention task failed.");
            }
        }
    });

    let stop = stop_tx.clone();
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            info!("Shutting down: finishing requests in progress.");
            let _ = stop.send(true);
        })
        .await;
    let _ = stop_tx.send(true);
    let s = store.clone();
    let _ = tokio::task::spawn_blocking(move || s.sync_all()).await;
    info!("Collector stopped.");
    res.map_err(ServeError::Serve)
}
