//! One Kafka connection: read a request, answer it, read the next — one
//! request at a time, in order, as a Kafka broker does (it mutes a
//! connection until its answer is sent). Pipelined requests wait in the
//! socket buffer, so a connection holds at most one request in memory.
//!
//! | phase | deadline |
//! |---|---|
//! | new connection (after TLS) | first request's length within `header_timeout` |
//! | between requests | next request's length within `idle_timeout`, else closed |
//! | a request's bytes after its length | within `body_timeout` |
//! | writing an answer | within `write_timeout`, else the connection is dropped |
//!
//! The request's bytes are reserved from the memory budget before the
//! frame is allocated; a request that does not fit in the budget within
//! `busy_wait` closes the connection (the client reconnects and retries),
//! since nothing can be answered without reading it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::handlers::{self, Outcome};
use super::protocol::ApiKey;
use super::{codec, sasl, Broker};
use crate::auth::{Acl, Principal};
use crate::limits::Reservation;

/// The deadlines of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    pub body: Duration,
    pub write: Duration,
}

/// Where a connection is in SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sasl {
    None,
    /// Handshake v0: the next frame is the raw PLAIN message.
    RawNext,
    /// Handshake v1: a SaslAuthenticate request comes next.
    AuthenticateNext,
    Done,
    Failed,
}

/// What a connection knows about its client.
pub struct Session {
    /// Who the requests run as: anonymous on an open collector; the
    /// certificate's principal; after SASL, the authenticated one; else a
    /// principal without rights, whose every request is refused as
    /// unauthorised (answered, not dropped).
    pub principal: Principal,
    pub sasl: Sasl,
    pub peer: SocketAddr,
    pub client_id: String,
}

impl Session {
    fn new(b: &Broker, cert: Option<Principal>, peer: SocketAddr) -> Session {
        let principal = if b.auth.is_open() {
            Principal::anonymous()
        } else {
            cert.unwrap_or_else(|| Principal::new("unauthenticated", Acl::default()))
        };
        Session {
            principal,
            sasl: Sasl::None,
            peer,
            client_id: String::new(),
        }
    }
}

/// Serves one connection until the client leaves, a deadline passes, a
/// request cannot be answered, or the collector shuts down.
pub async fn serve<S>(
    io: S,
    peer: SocketAddr,
    cert: Option<Principal>,
    broker: Arc<Broker>,
    t: Timeouts,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut sess = Session::new(&broker, cert, peer);
    let mut wait = t.header;
    loop {
        let mut len = [0u8; 4];
        let r = tokio::select! {
            r = tokio::time::timeout(wait, rd.read_exact(&mut len)) => r,
            _ = drain.wait_for(|d| *d) => return,
        };
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                debug!(%peer, "Kafka connection idle past its deadline; closing.");
                return;
            }
        }
        wait = t.idle;
        let len = match codec::check_len(i32::from_be_bytes(len), broker.max_request_bytes) {
            Ok(n) => n,
            Err(e) => {
                broker.metrics.refused_frames.inc();
                warn!(%peer, error = %e, "Refused a Kafka request; closing the connection.");
                return;
            }
        };
        let mut reserved = Reservation::default();
        if let Err(e) = broker.gates.reserve(&mut reserved, len).await {
            warn!(%peer, error = %e, "No memory budget for a Kafka request; closing the connection.");
            return;
        }
        let mut frame = vec![0u8; len];
        match tokio::time::timeout(t.body, rd.read_exact(&mut frame)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                debug!(%peer, "Kafka request body too slow; closing.");
                return;
            }
        }
        let frame = Bytes::from(frame);
        let started = std::time::Instant::now();
        let api = frame
            .get(..2)
            .and_then(|k| ApiKey::from_i16(i16::from_be_bytes([k[0], k[1]])));
        let outcome = if sess.sasl == Sasl::RawNext {
            match sasl::raw(&broker, &mut sess, &frame) {
                Some(answer) => Outcome::Respond(answer, Reservation::default()),
                None => Outcome::Close("SASL/PLAIN authentication failed".into()),
            }
        } else {
            handlers::handle(&broker, &mut sess, frame).await
        };
        if let Some(api) = api {
            // Long-poll fetches include their wait, as on HTTP.
            let observed = broker.service.observed();
            observed.request_latency(api.route()).observe_since(started);
        }
        match outcome {
            Outcome::Silent => {}
            Outcome::Respond(bytes, _answer_memory) => {
                if !write(&mut wr, &bytes, t.write).await {
                    return;
                }
            }
            Outcome::RespondAndClose(bytes) => {
                let _ = write(&mut wr, &bytes, t.write).await;
                return;
            }
            Outcome::Close(why) => {
                broker.metrics.refused_frames.inc();
                debug!(%peer, reason = %why, "Closing a Kafka connection.");
                return;
            }
        }
        drop(reserved);
        if *drain.borrow() {
            return;
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8], limit: Duration) -> bool {
    let done = tokio::time::timeout(limit, async {
        wr.write_all(bytes).await?;
        wr.flush().await
    })
    .await;
    matches!(done, Ok(Ok(())))
}
