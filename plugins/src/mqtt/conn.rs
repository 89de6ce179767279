//! One network connection to the broker: TCP or TLS, the CONNECT/CONNACK
//! handshake, and reading and writing packets with buffers that grow to the
//! largest packet allowed (`max_packet_size`) and no further.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::broker::ConnectOptions;
use super::codec::{self, CodecError, ConnAck, ConnectRequest, In, Out, Protocol};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why a connection could not be opened or broke.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connecting to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr}")]
    Tls {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    #[error("no answer within {0:?} (connect_timeout)")]
    Timeout(Duration),
    #[error("broker refused the connection: {0}")]
    Refused(String),
    #[error("connection lost")]
    Io(#[from] std::io::Error),
    #[error("broker closed the connection")]
    Closed,
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("no PINGRESP within keep_alive ({0:?})")]
    KeepAlive(Duration),
}

/// Read buffer kept between packets; a larger one (after a large packet) is released.
const READ_CHUNK: usize = 64 << 10;

/// An open MQTT connection.
pub struct Connection {
    io: Box<dyn Io>,
    proto: Protocol,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_in: usize,
    /// The broker's CONNACK.
    pub connack: ConnAck,
}

/// What a session asks for at CONNECT besides the shared options.
#[derive(Debug, Clone, Copy)]
pub struct SessionRequest {
    pub clean: bool,
    pub session_expiry: Option<u32>,
    pub receive_maximum: Option<u16>,
}

impl Connection {
    /// Connects, handshakes TLS if configured, and exchanges CONNECT/CONNACK,
    /// all within `connect_timeout`.
    pub async fn open(
        opts: &ConnectOptions,
        session: SessionRequest,
    ) -> Result<Connection, ConnError> {
        tokio::time::timeout(opts.connect_timeout, Self::open_inner(opts, session))
            .await
            .map_err(|_| ConnError::Timeout(opts.connect_timeout))?
    }

    async fn open_inner(
        opts: &ConnectOptions,
        session: SessionRequest,
    ) -> Result<Connection, ConnError> {
        let addr = opts.url.authority();
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|source| ConnError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &opts.tls {
            Some(cfg) => {
                let name = opts
                    .tls_name
                    .clone()
                    .unwrap_or_else(|| opts.url.host.clone());
                let server = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|_| ConnError::ServerName(name))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(server, tcp)
                    .await
                    .map_err(|source| ConnError::Tls { addr, source })?;
                Box::new(tls)
            }
            None => Box::new(tcp),
        };
        let mut conn = Connection {
            io,
            proto: opts.protocol,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            max_in: opts.max_packet_size,
            connack: ConnAck {
                session_present: false,
                refused: None,
                receive_maximum: None,
                max_packet_size: None,
            },
        };
        let max_packet = u32::try_from(opts.max_packet_size).unwrap_or(u32::MAX);
        conn.queue(&Out::Connect(ConnectRequest {
            client_id: opts.client_id.clone(),
            keep_alive_secs: u16::try_from(opts.keep_alive.as_secs()).unwrap_or(u16::MAX),
            clean: session.clean,
            login: opts.login.clone(),
            session_expiry: session.session_expiry,
            receive_maximum: session.receive_maximum,
            max_packet_size: Some(max_packet),
        }))?;
        conn.flush().await?;
        match conn.read().await? {
            In::ConnAck(ack) => {
                if let Some(why) = ack.refused {
                    return Err(ConnError::Refused(why));
                }
                conn.connack = ack;
                Ok(conn)
            }
            other => Err(ConnError::Protocol(format!(
                "expected CONNACK, got {other:?}"
            ))),
        }
    }

    /// The next packet. Cancel safe: bytes already read stay buffered.
    pub async fn read(&mut self) -> Result<In, ConnError> {
        loop {
            if let Some(p) = codec::decode(self.proto, &mut self.rbuf, self.max_in)? {
                if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * READ_CHUNK {
                    self.rbuf = BytesMut::with_capacity(READ_CHUNK);
                }
                return Ok(p);
            }
            self.rbuf.reserve(READ_CHUNK);
            if self.io.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ConnError::Closed);
            }
        }
    }

    /// Encodes `p` into the write buffer (sent by [`Connection::flush`]).
    pub fn queue(&mut self, p: &Out) -> Result<(), ConnError> {
        codec::encode(self.proto, p, &mut self.wbuf)?;
        Ok(())
    }

    /// Bytes queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            if self.wbuf.capacity() > 4 * READ_CHUNK {
                self.wbuf = BytesMut::with_capacity(READ_CHUNK);
            }
        }
        self.io.flush().await?;
        Ok(())
    }

    /// Sends DISCONNECT (best effort, bounded) so the broker does not
    /// publish a will and knows we left on purpose.
    pub async fn close(mut self) {
        let _ = self.queue(&Out::Disconnect);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = self.flush().await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }
}

/// Keep-alive bookkeeping: a PINGREQ when nothing was sent for a while, and
/// the connection declared dead when its PINGRESP does not come back.
#[derive(Debug)]
pub struct KeepAlive {
    interval: Duration,
    last_sent: tokio::time::Instant,
    ping_sent: Option<tokio::time::Instant>,
}

impl KeepAlive {
    /// Keep-alive of `interval` starting now.
    pub fn new(interval: Duration) -> KeepAlive {
        KeepAlive {
            interval,
            last_sent: tokio::time::Instant::now(),
            ping_sent: None,
        }
    }

    /// When [`KeepAlive::tick`] next has something to do.
    pub fn deadline(&self) -> tokio::time::Instant {
        match self.ping_sent {
            Some(at) => at + self.interval,
            // Ping a little before the broker's 1.5 × keep_alive runs out.
            None => self.last_sent + self.interval.mul_f32(0.75),
        }
    }

    /// Something was sent.
    pub fn sent(&mut self) {
        self.last_sent = tokio::time::Instant::now();
    }

    /// Something was received: the connection is alive.
    pub fn received(&mut self) {
        self.ping_sent = None;
    }

    /// At the deadline: `Ok(true)` to send a PINGREQ; an error when the
    /// last one went unanswered. `reading` is false while the caller does
    /// not read the socket (back-pressure), when no answer can be seen.
    pub fn tick(&mut self, reading: bool) -> Result<bool, ConnError> {
        let now = tokio::time::Instant::now();
        match self.ping_sent {
            Some(at) if now >= at + self.interval => {
                if reading {
                    Err(ConnError::KeepAlive(self.interval))
                } else {
                    self.ping_sent = Some(now);
                    Ok(true)
                }
            }
            Some(_) => Ok(false),
            None if now >= self.last_sent + self.interval.mul_f32(0.75) => {
                self.ping_sent = Some(now);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keep_alive_pings_when_idle_and_fails_without_an_answer() {
        let mut k = KeepAlive::new(Duration::from_secs(10));
        assert!(!k.tick(true).unwrap());
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(k.tick(true).unwrap(), "ping after 3/4 of the interval");
        k.sent();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!k.tick(true).unwrap(), "waiting for the answer");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(matches!(k.tick(true), Err(ConnError::KeepAlive(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_ping_keeps_the_connection() {
        let mut k = KeepAlive::new(Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(k.tick(true).unwrap());
        k.sent();
        k.received();
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(k.tick(true).unwrap(), "a new ping, not an error");
    }

    #[tokio::test(start_paused = true)]
    async fn while_not_reading_the_answer_is_not_required() {
        let mut k = KeepAlive::new(Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(k.tick(false).unwrap());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            k.tick(false).unwrap(),
            "keeps pinging so the broker sees us alive"
        );
    }
}
