//! What the agent needs from its host: an exclusive data directory, a
//! host name, and the metrics endpoint.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;
use weir_core::metrics::Registry;

use super::health::Health;
use super::RunError;

/// Serves `/metrics`, `/health` (liveness) and `/ready` (503 with the
/// reasons while a sink has failed longer than `failing_after`) until `stop`.
pub(super) async fn serve_metrics(
    addr: SocketAddr,
    registry: Registry,
    health: (Health, Duration),
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
        .route("/health", get(|| async { "ok" }))
        .route(
            "/ready",
            get(move || {
                let (h, after) = health.clone();
                async move {
                    let why = h.not_ready(after);
                    if why.is_empty() {
                        (axum::http::StatusCode::OK, "ready\n".to_owned())
                    } else {
                        let mut body = String::from("not ready\n");
                        for w in why {
                            body.push_str(&w);
                            body.push('\n');
                        }
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, body)
                    }
                }
            }),
        );
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
pub(super) fn lock_data_dir(dir: &Path) -> Result<std::fs::File, RunError> {
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

pub(super) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
