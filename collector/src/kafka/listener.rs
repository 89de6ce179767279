//! The Kafka accept loop: a connection slot (shared with the HTTP listener,
//! so `limits.max_connections` bounds both together), TLS when configured,
//! one task per connection, the group coordinator's clock, and a shutdown
//! bounded like the HTTP listener's: stop accepting, let each connection
//! finish the request in progress (long-polls and group waits end at once
//! through the service's draining signal), then cut what is left after
//! `shutdown_timeout`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::accept::{admit, AcceptErrors};

use super::connection::{self, Timeouts};
use super::Broker;

/// How the listener bounds its connections.
#[derive(Clone)]
pub struct ListenerOptions {
    /// Connection slots, shared with the HTTP listener.
    pub slots: Arc<Semaphore>,
    pub timeouts: Timeouts,
    pub shutdown_timeout: Duration,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// How often group sessions and rebalance deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(200);

/// Serves Kafka clients on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    opts: ListenerOptions,
    draining: watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut conns = JoinSet::new();
    let sweeper = {
        let service = broker.service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                service.sweep_groups();
            }
        })
    };
    tokio::pin!(shutdown);
    let mut accept_errors = AcceptErrors::default();
    while let Some((permit, stream, peer)) = admit(
        &listener,
        &opts.slots,
        &mut shutdown,
        &mut accept_errors,
        "kafka",
    )
    .await
    {
        while conns.try_join_next().is_some() {}
        let broker = broker.clone();
        let opts = opts.clone();
        let drain = draining.clone();
        conns.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match opts.tls.clone() {
                None => connection::serve(stream, peer, None, broker, opts.timeouts, drain).await,
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(opts.timeouts.header, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                debug!(%peer, error = %e, "Kafka TLS handshake failed.");
                                return;
                            }
                            Err(_) => {
                                debug!(%peer, "Kafka TLS handshake timed out.");
                                return;
                            }
                        };
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| broker.auth.principal_for_cert(c));
                    connection::serve(tls, peer, cert, broker, opts.timeouts, drain).await
                }
            }
        });
    }
    drop(listener);
    info!(
        connections = conns.len(),
        "Kafka listener shutting down: no new connections."
    );
    let drained = tokio::time::timeout(opts.shutdown_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = conns.len(),
            "Kafka requests still in progress at the shutdown timeout; closing their connections."
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    sweeper.abort();
}
