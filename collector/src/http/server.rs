//! The accept loop and one task per connection: TLS, the connection's
//! timeouts (`conn.rs`), a bound on open connections, and a shutdown that
//! ends within `shutdown_timeout` whatever the clients do.
//!
//! hyper's connection builder is used directly rather than `axum::serve`:
//! it exposes each connection, so the server can wrap its byte stream with
//! read and write deadlines, hand the handlers what the TLS handshake
//! learned (the client certificate's principal), and — at shutdown — ask
//! every connection to finish gracefully and then abort the stragglers.
//!
//! Shutdown: stop accepting; tell connections to close after the request in
//! progress (long-polls end at once through the service's draining signal);
//! wait up to `shutdown_timeout`; abort what is left. The caller then syncs
//! the log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::accept::{admit, AcceptErrors};

use super::conn::{Activity, ConnIo, ConnTimeouts, EndOfResponse};
use super::ConnInfo;
use crate::auth::Authenticator;

/// How the server bounds its connections.
#[derive(Clone)]
pub struct ServerOptions {
    /// Connection slots (`limits.max_connections`), shared with the Kafka listener.
    pub slots: Arc<Semaphore>,
    pub timeouts: ConnTimeouts,
    pub shutdown_timeout: Duration,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains as
/// described above. `draining` is set when shutdown starts.
pub async fn run(
    listener: TcpListener,
    app: Router,
    auth: Arc<Authenticator>,
    opts: ServerOptions,
    draining: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = opts.slots.clone();
    let mut conns = JoinSet::new();
    let drain_rx = draining.subscribe();
    tokio::pin!(shutdown);
    let mut accept_errors = AcceptErrors::default();
    // At the connection bound, further clients wait in the kernel's accept
    // queue rather than each costing a task and buffers.
    while let Some((permit, stream, peer)) =
        admit(&listener, &slots, &mut shutdown, &mut accept_errors, "http").await
    {
        while conns.try_join_next().is_some() {}
        conns.spawn(connection(
            stream,
            peer,
            app.clone(),
            auth.clone(),
            opts.clone(),
            drain_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    let open = conns.len();
    info!(connections = open, timeout = ?opts.shutdown_timeout, "Shutting down: no new connections; finishing requests in progress.");
    let _ = draining.send(true);
    let drained = tokio::time::timeout(opts.shutdown_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = conns.len(),
            "Requests still in progress at the shutdown timeout; closing their connections."
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    auth: Arc<Authenticator>,
    opts: ServerOptions,
    drain: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = opts.tls.clone() else {
        let info = ConnInfo {
            peer,
            cert_principal: None,
        };
        return serve_io(stream, info, app, opts.timeouts, drain).await;
    };
    let tls = match tokio::time::timeout(opts.timeouts.header, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed.");
            return;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out.");
            return;
        }
    };
    let cert_principal = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| auth.principal_for_cert(c));
    let info = ConnInfo {
        peer,
        cert_principal,
    };
    serve_io(tls, info, app, opts.timeouts, drain).await
}

async fn serve_io<T>(
    io: T,
    info: ConnInfo,
    app: Router,
    timeouts: ConnTimeouts,
    mut drain: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = info.peer;
    let activity = Arc::new(Activity::new(timeouts));
    let io = TokioIo::new(ConnIo::new(io, activity.clone()));
    let svc = service_fn(move |mut req: hyper::Request<Incoming>| {
        activity.begin_request();
        req.extensions_mut().insert(info.clone());
        let app = app.clone();
        let activity = activity.clone();
        async move {
            let resp = match app.oneshot(req.map(axum::body::Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(
                resp.map(|inner| axum::body::Body::new(EndOfResponse::new(inner, activity))),
            )
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(64 << 10)
        .max_headers(64);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(%peer, error = %e, "Connection ended with an error.");
            }
        }
        _ = async { let _ = drain.wait_for(|d| *d).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
