//! The Kafka wire protocol: a second front-end over the same service as the
//! HTTP API, so Kafka clients and stream processors produce to and consume
//! from the collector's log. The collector is a single broker (node 0),
//! leader of every partition; batches are stored and served byte for byte,
//! so an agent's records read as Kafka records (value = the event's JSON,
//! key = its key, headers `weir.source` and `weir.host`).
//!
//! - `listener.rs`: accept loop, TLS, connection bound, bounded shutdown.
//! - `connection.rs`: one request at a time per connection (as a Kafka
//!   broker does), read and write deadlines, authentication state.
//! - `codec.rs`: framing, with the size checked before anything is allocated.
//! - `protocol/`: the request and response messages, our own codec with
//!   every count bounded by the frame.
//! - `versions.rs`: the APIs and versions advertised, and ApiVersions.
//! - `handlers/`: one module per API group, each decoding, calling the
//!   service and encoding; `sasl.rs`: SASL/PLAIN onto the collector's principals.
//! - `errors.rs`: service refusals as Kafka error codes.
//!
//! Which APIs and versions, and why: `versions.rs` and docs/kafka.md.

mod codec;
pub mod connection;
mod errors;
mod handlers;
pub mod listener;
pub mod protocol;
mod sasl;
mod versions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::units::{duration, ByteSize};

use crate::auth::Authenticator;
use crate::limits::Gates;
use crate::service::Service;

/// The `kafka` section of the collector's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Address of the Kafka listener (e.g. `127.0.0.1:9092`). Unset: no
    /// Kafka listener. Beyond loopback it needs `tls` and `principals` (or
    /// `insecure`), as the HTTP listener does; with `tls` configured it
    /// speaks TLS too.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// `host:port` the collector gives clients in Metadata answers as the
    /// broker to connect to. Default: the bound listen address.
    #[serde(default)]
    pub advertised: Option<String>,
    /// Create a topic (with `default_partitions`) when a client asks for
    /// its metadata and may create it, as Kafka's `auto.create.topics.enable`.
    #[serde(default = "default_true")]
    pub auto_create_topics: bool,
    /// Largest Kafka request accepted (checked from its length prefix,
    /// before anything is allocated).
    #[serde(default = "default_max_request")]
    pub max_request_bytes: ByteSize,
    /// How long the first rebalance of a new consumer group waits for more
    /// members before assigning partitions (Kafka's
    /// `group.initial.rebalance.delay.ms`).
    #[serde(default = "default_initial_delay", with = "duration")]
    pub group_initial_delay: Duration,
}

fn default_true() -> bool {
    true
}
fn default_max_request() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_initial_delay() -> Duration {
    Duration::from_millis(500)
}

impl Default for KafkaConfig {
    fn default() -> Self {
        serde_yaml::from_str("{}").unwrap_or_else(|_| unreachable!("empty kafka config is valid"))
    }
}

/// What every Kafka connection shares.
pub struct Broker {
    pub service: Arc<Service>,
    pub auth: Arc<Authenticator>,
    pub gates: Arc<Gates>,
    /// Host and port given to clients in Metadata.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Stable cluster id (Metadata), kept in the data directory.
    pub cluster_id: String,
    pub auto_create_topics: bool,
    pub max_request_bytes: usize,
    pub metrics: Metrics,
}

/// This broker's node id: the collector is the only one.
pub const NODE_ID: i32 = 0;

/// Counters of the Kafka listener.
pub struct Metrics {
    pub requests: weir_core::metrics::Counter,
    pub errors: weir_core::metrics::Counter,
    pub refused_frames: weir_core::metrics::Counter,
}

impl Metrics {
    /// Registers the counters.
    pub fn new(m: &weir_core::metrics::Registry) -> Metrics {
        Metrics {
            requests: m.counter(
                "weir_collector_kafka_requests_total",
                "Kafka requests answered.",
                &[],
            ),
            errors: m.counter(
                "weir_collector_kafka_request_errors_total",
                "Kafka requests or partitions answered with an error code.",
                &[],
            ),
            refused_frames: m.counter(
                "weir_collector_kafka_refused_frames_total",
                "Kafka connections closed for a malformed, oversized or unsupported request.",
                &[],
            ),
        }
    }
}

/// The cluster id in `data_dir/kafka-cluster-id`, made on first use: 16
/// random bytes, URL-safe base64 as Kafka writes them.
pub fn cluster_id(data_dir: &std::path::Path) -> std::io::Result<String> {
    use base64::Engine;
    let path = data_dir.join("kafka-cluster-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut r = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r)
        .map_err(|_| std::io::Error::other("no randomness available"))?;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r);
    std::fs::create_dir_all(data_dir)?;
    crate::log::durable::write_atomic(&path, id.as_bytes())?;
    Ok(id)
}

/// Splits `host:port` (the host may be a bracketed IPv6 address).
pub fn split_host_port(s: &str) -> Option<(String, i32)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), i32::from(port)))
}

#[cfg(test)]
mod tests;
