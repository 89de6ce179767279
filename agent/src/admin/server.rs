//! Serving the admin socket: one task per client, at most `max_clients`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{debug, info, warn};
use weir_core::metrics::Registry;

use super::{AdminConfig, Command, Request};

/// Longest request line.
const MAX_REQUEST: u64 = 4096;
/// Longest wait for a request line, and for each write to a client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a reload may take before its client is told to look at the log.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Why the admin socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin socket {path}: another agent answers on it")]
    InUse { path: PathBuf },
    #[error("admin socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds the admin socket and serves it until `stop`; returns its path.
pub async fn serve(
    cfg: &AdminConfig,
    data_dir: &Path,
    commands: mpsc::Sender<Command>,
    registry: Registry,
    mut stop: watch::Receiver<bool>,
) -> Result<PathBuf, AdminError> {
    let path = cfg.socket_path(data_dir);
    let io = |source| AdminError::Io {
        path: path.clone(),
        source,
    };
    if path.exists() {
        // A socket left by a crashed agent is removed; a live one is not ours.
        if UnixStream::connect(&path).await.is_ok() {
            return Err(AdminError::InUse { path });
        }
        std::fs::remove_file(&path).map_err(io)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let listener = UnixListener::bind(&path).map_err(io)?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = cfg.mode_bits().unwrap_or(0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    let limit = Arc::new(Semaphore::new(cfg.max_clients.max(1)));
    let shared = Arc::new(Shared { commands, registry });
    let served = path.clone();
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                c = listener.accept() => c,
                _ = stop.wait_for(|s| *s) => break,
            };
            let Ok((conn, _)) = conn else { continue };
            match limit.clone().try_acquire_owned() {
                Ok(permit) => {
                    let shared = shared.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        client(conn, &shared, stop).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(async move {
                        let mut conn = conn;
                        let _ = write_line(
                            &mut conn,
                            &error_line("too many admin clients; try again later"),
                        )
                        .await;
                    });
                }
            }
        }
        let _ = std::fs::remove_file(&served);
    });
    info!(socket = %path.display(), "Serving the admin socket.");
    Ok(path)
}

struct Shared {
    commands: mpsc::Sender<Command>,
    registry: Registry,
}

fn error_line(msg: &str) -> String {
    serde_json::json!({ "ok": false, "error": msg }).to_string()
}

async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> Result<(), ()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    match tokio::time::timeout(CLIENT_TIMEOUT, w.write_all(&buf)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn client(conn: UnixStream, shared: &Shared, stop: watch::Receiver<bool>) {
    let (read, mut write) = conn.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    let mut line = String::new();
    let got = tokio::time::timeout(CLIENT_TIMEOUT, reader.read_line(&mut line)).await;
    if !matches!(got, Ok(Ok(n)) if n > 0) {
        let _ = write_line(&mut write, &error_line("expected one request line")).await;
        return;
    }
    let req: Request = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(e) => {
            let _ = write_line(&mut write, &error_line(&format!("bad request: {e}"))).await;
            return;
        }
    };
    debug!(request = ?req, "Admin request.");
    match req {
        Request::Metrics => {
            let text = shared.registry.render();
            let _ = write_line(
                &mut write,
                &serde_json::json!({ "ok": true, "metrics": text }).to_string(),
            )
            .await;
        }
        Request::Reload => {
            let answer = reload(shared).await;
            let line = match answer {
                Ok(changes) => serde_json::json!({ "ok": true, "changes": changes }),
                Err(e) => serde_json::json!({ "ok": false, "error": e }),
            };
            let _ = write_line(&mut write, &line.to_string()).await;
        }
        Request::Tap {
            component,
            output,
            rate,
            limit,
        } => {
            let (reply, answer) = oneshot::channel();
            let cmd = Command::Tap {
                component,
                output,
                rate: rate.clamp(1, 10_000),
                reply,
            };
            if shared.commands.send(cmd).await.is_err() {
                let _ = write_line(&mut write, &error_line("the agent is stopping")).await;
                return;
            }
            match answer.await {
                Ok(Ok((feed, ports))) => {
                    let id = feed.id;
                    stream_tap(feed, limit, reader.into_inner().into_inner(), write, stop).await;
                    if let Some(p) = ports.upgrade() {
                        p.taps.detach(id);
                    }
                }
                Ok(Err(e)) => {
                    let _ = write_line(&mut write, &error_line(&e)).await;
                }
                Err(_) => {
                    let _ = write_line(&mut write, &error_line("the agent is stopping")).await;
                }
            }
        }
    }
}

async fn reload(shared: &Shared) -> Result<String, String> {
    let (reply, answer) = oneshot::channel();
    if shared
        .commands
        .send(Command::Reload { reply })
        .await
        .is_err()
    {
        return Err("the agent is stopping".to_owned());
    }
    match tokio::time::timeout(RELOAD_TIMEOUT, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("the agent stopped during the reload".to_owned()),
        Err(_) => Err("the reload is still running; see the agent's log".to_owned()),
    }
}

/// Streams a tap's lines until its limit, the client leaving, the
/// component stopping or the agent stopping.
async fn stream_tap(
    mut feed: crate::runtime::tap::TapFeed,
    limit: Option<u64>,
    mut read: tokio::net::unix::OwnedReadHalf,
    mut write: tokio::net::unix::OwnedWriteHalf,
    mut stop: watch::Receiver<bool>,
) {
    if write_line(&mut write, r#"{"ok":true}"#).await.is_err() {
        return;
    }
    let mut sent = 0u64;
    let mut reported = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut scratch = [0u8; 64];
    let reason = loop {
        if limit.is_some_and(|l| sent >= l) {
            break "limit reached";
        }
        enum Next {
            Line(Option<String>),
            Tick,
            Read(bool),
            Stop,
        }
        let next = tokio::select! {
            line = feed.lines.recv() => Next::Line(line),
            _ = tick.tick() => Next::Tick,
            n = read.read(&mut scratch) => Next::Read(matches!(n, Ok(0) | Err(_))),
            _ = stop.wait_for(|s| *s) => Next::Stop,
        };
        match next {
            Next::Line(Some(line)) => {
                if write_line(&mut write, &line).await.is_err() {
                    warn!("A tap client does not read; dropping it.");
                    return;
                }
                sent += 1;
            }
            Next::Line(None) => break "the component stopped (reloaded or shut down)",
            Next::Tick => {
                let dropped = feed.dropped.load(Ordering::Relaxed);
                if dropped != reported {
                    reported = dropped;
                    let line =
                        serde_json::json!({ "tap": "dropped", "dropped": dropped }).to_string();
                    if write_line(&mut write, &line).await.is_err() {
                        return;
                    }
                }
            }
            Next::Read(closed) => {
                if closed {
                    return;
                }
            }
            Next::Stop => break "the agent is stopping",
        }
    };
    let dropped = feed.dropped.load(Ordering::Relaxed);
    let line = serde_json::json!({ "tap": "end", "reason": reason, "dropped": dropped });
    let _ = write_line(&mut write, &line.to_string()).await;
}
