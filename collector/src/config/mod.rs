//! `weir-collector serve` configuration, from a YAML file (`-c`) and flags.
//! Validation (`weir-collector validate`) is in `validate.rs`.

mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::units::{duration, opt_duration, ByteSize};

pub use validate::{load, problems_in};

use crate::auth::PrincipalConfig;
use crate::limits::GateLimits;
use crate::log::{FsyncPolicy, StoreConfig};
use crate::service::ServiceLimits;

/// The collector's settings. Every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Address the HTTP API listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where topics, producer identities and consumer group offsets are stored.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Allow listening beyond loopback without TLS and principals. Anyone who
    /// reaches the port can then write, read and create topics.
    #[serde(default)]
    pub insecure: bool,
    /// TLS on the listener; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Who may connect and what each may do. Empty: the collector is open
    /// (everyone may do everything), allowed only on loopback or with `insecure`.
    #[serde(default)]
    pub principals: Vec<PrincipalConfig>,
    /// Partitions of a topic created without a count (e.g. on first write).
    #[serde(default = "default_partitions")]
    pub default_partitions: u32,
    /// A partition rolls to a new segment file past this size.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: ByteSize,
    /// Retention limits; whole segments past either limit are deleted.
    #[serde(default)]
    pub retention: Retention,
    /// When to fsync before acknowledging: `batch` (group commit), `interval` or `none`.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Period of the `interval` fsync policy.
    #[serde(default = "default_fsync_interval", with = "duration")]
    pub fsync_interval: Duration,
    /// Largest request body accepted (one batch).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: ByteSize,
    /// Largest records section of one batch once decompressed; a batch that
    /// expands past it is refused, checked while decompressing (a few KiB of
    /// zstd, lz4, gzip or snappy can claim gigabytes).
    #[serde(default = "default_max_batch_decompressed_bytes")]
    pub max_batch_decompressed_bytes: ByteSize,
    /// Record timestamps accepted at ingest; a batch with a record outside is refused.
    #[serde(default)]
    pub record_timestamps: TimestampRange,
    /// Bounds on connections, time, memory and the log's size.
    #[serde(default)]
    pub limits: Limits,
    /// The Kafka wire-protocol listener (off unless `kafka.listen` is set).
    #[serde(default)]
    pub kafka: crate::kafka::KafkaConfig,
    /// How often the collector checks that `data_dir` takes a write and an
    /// fsync; `/ready` answers 503 from a failed check until one succeeds.
    #[serde(default = "default_storage_probe_interval", with = "duration")]
    pub storage_probe_interval: Duration,
}

/// An accepted range of record timestamps, as RFC 3339 times.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampRange {
    /// Earliest accepted (default 1970-01-01T00:00:00Z: devices without a
    /// clock report 1970, and their data is kept).
    #[serde(default = "default_min_ts")]
    pub min: Rfc3339,
    /// Latest accepted (default 9999-12-31T23:59:59.999Z).
    #[serde(default = "default_max_ts")]
    pub max: Rfc3339,
}

impl Default for TimestampRange {
    fn default() -> Self {
        TimestampRange {
            min: default_min_ts(),
            max: default_max_ts(),
        }
    }
}

/// A time given as RFC 3339 text, held as milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub i64);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&weir_core::event::format_rfc3339_millis(self.0))
    }
}

impl<'de> Deserialize<'de> for Rfc3339 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        weir_core::event::parse_rfc3339_millis(&s)
            .map(Rfc3339)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{s:?} is not an RFC 3339 time such as 2000-01-01T00:00:00Z"
                ))
            })
    }
}

/// TLS on the listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file with the CA certificates that sign agents' client
    /// certificates. Set: clients may authenticate with a certificate.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Refuse TLS connections without a valid client certificate (needs `client_ca`).
    #[serde(default)]
    pub require_client_cert: bool,
}

/// Bounds that keep the collector serving whatever its clients do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Open connections; further ones wait in the kernel's accept queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Fetches in progress at once (each may long-poll).
    #[serde(default = "default_max_fetches")]
    pub max_fetches: usize,
    /// Produces in progress at once.
    #[serde(default = "default_max_produces")]
    pub max_produces: usize,
    /// Other API requests in progress at once (topics, offsets, groups, producer init).
    #[serde(default = "default_max_other")]
    pub max_other_requests: usize,
    /// Bytes of request and response bodies held at once across all connections.
    #[serde(default = "default_memory_budget")]
    pub memory_budget: ByteSize,
    /// How long a request waits for a free slot or budget before `503` with `Retry-After`.
    #[serde(default = "default_busy_wait", with = "duration")]
    pub busy_wait: Duration,
    /// Time for a new connection's TLS handshake and request headers, and
    /// for a request's headers once its first byte arrived.
    #[serde(default = "default_header_timeout", with = "duration")]
    pub header_timeout: Duration,
    /// Longest time to receive one request body.
    #[serde(default = "default_body_timeout", with = "duration")]
    pub body_timeout: Duration,
    /// Slowest average body rate accepted after `header_timeout` of grace, bytes per second.
    #[serde(default = "default_body_min_rate")]
    pub body_min_rate: ByteSize,
    /// A keep-alive connection without a request for this long is closed.
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// A connection whose answer cannot be written for this long (the client
    /// does not read) is dropped.
    #[serde(default = "default_write_timeout", with = "duration")]
    pub write_timeout: Duration,
    /// On SIGTERM, longest wait for requests in progress before they are cut.
    #[serde(default = "default_shutdown_timeout", with = "duration")]
    pub shutdown_timeout: Duration,
    /// Longest a fetch long-polls.
    #[serde(default = "default_max_wait", with = "duration")]
    pub max_wait: Duration,
    /// Largest fetch answer.
    #[serde(default = "default_max_fetch_bytes")]
    pub max_fetch_bytes: ByteSize,
    /// Most topics; creating one more is refused before any file is written.
    #[serde(default = "default_max_topics")]
    pub max_topics: usize,
    /// Most partitions of one topic.
    #[serde(default = "default_max_partitions")]
    pub max_partitions_per_topic: u32,
    /// Most agents the fleet page remembers (from their heartbeats); past
    /// it, the agent seen least recently is forgotten.
    #[serde(default = "default_max_agents")]
    pub max_agents: usize,
}

impl Default for Limits {
    fn default() -> Self {
        serde_yaml::from_str("{}").unwrap_or_else(|_| unreachable!("empty limits are valid"))
    }
}

/// Retention by age and size, per partition.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Delete segments whose newest record is older than this (e.g. `7d`). Unset: keep forever.
    #[serde(default, with = "opt_duration")]
    pub max_age: Option<Duration>,
    /// Delete oldest segments while a partition is larger than this. Unset: no limit.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7400))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/weir-collector")
}
fn default_partitions() -> u32 {
    1
}
fn default_segment_bytes() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_fsync_interval() -> Duration {
    Duration::from_millis(50)
}
fn default_storage_probe_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_max_request_bytes() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_min_ts() -> Rfc3339 {
    Rfc3339(0)
}
fn default_max_ts() -> Rfc3339 {
    Rfc3339(weir_core::decode::YEAR_9999_MS)
}
fn default_max_batch_decompressed_bytes() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_fetches() -> usize {
    256
}
fn default_max_produces() -> usize {
    128
}
fn default_max_other() -> usize {
    64
}
fn default_memory_budget() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_busy_wait() -> Duration {
    Duration::from_secs(2)
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_body_min_rate() -> ByteSize {
    ByteSize(16 << 10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_max_fetch_bytes() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_max_topics() -> usize {
    1000
}
fn default_max_agents() -> usize {
    crate::fleet::agents::DEFAULT_MAX_AGENTS
}
fn default_max_partitions() -> u32 {
    64
}

impl Default for CollectorConfig {
    fn default() -> Self {
        // An empty document yields every default.
        serde_yaml::from_str("{}").unwrap_or_else(|_| unreachable!("empty config is valid"))
    }
}

impl CollectorConfig {
    /// The store settings this config implies.
    pub fn store(&self) -> StoreConfig {
        StoreConfig {
            data_dir: self.data_dir.clone(),
            default_partitions: self.default_partitions,
            segment_bytes: self.segment_bytes.bytes().max(4096),
            retention_bytes: self.retention.max_bytes.map(|b| b.bytes()),
            retention: self.retention.max_age,
            fsync: self.fsync,
            fsync_interval: self.fsync_interval,
            batch_limits: self.batch_limits(),
            metrics: Default::default(),
        }
    }

    /// The bounds every batch is validated against at ingest.
    pub fn batch_limits(&self) -> weir_core::decode::Limits {
        weir_core::decode::Limits {
            max_decompressed_bytes: usize::try_from(self.max_batch_decompressed_bytes.bytes())
                .unwrap_or(usize::MAX),
            min_timestamp: self.record_timestamps.min.0,
            max_timestamp: self.record_timestamps.max.0,
        }
    }

    /// The service's limits.
    pub fn service_limits(&self) -> ServiceLimits {
        ServiceLimits {
            max_topics: self.limits.max_topics,
            max_agents: self.limits.max_agents,
            max_partitions: self.limits.max_partitions_per_topic,
            default_partitions: self.default_partitions,
            durable_timeout: Duration::from_secs(30),
            sequence_wait: crate::service::DEFAULT_SEQUENCE_WAIT,
            max_wait: self.limits.max_wait,
            max_fetch_bytes: self.limits.max_fetch_bytes.bytes() as usize,
            membership: crate::service::MembershipLimits {
                initial_delay: self.kafka.group_initial_delay,
                ..Default::default()
            },
        }
    }

    /// The front-ends' concurrency and memory bounds.
    pub fn gate_limits(&self) -> GateLimits {
        GateLimits {
            fetches: self.limits.max_fetches,
            produces: self.limits.max_produces,
            others: self.limits.max_other_requests,
            memory_budget: self.limits.memory_budget.bytes() as usize,
            wait: self.limits.busy_wait,
        }
    }

    /// Why this config may not listen where it says, if it may not: beyond
    /// loopback a collector needs TLS and principals, or `insecure: true`.
    pub fn exposure_problem(&self) -> Option<String> {
        let beyond = [Some(self.listen), self.kafka.listen]
            .into_iter()
            .flatten()
            .find(|a| !a.ip().is_loopback());
        let addr = beyond?;
        if self.insecure {
            return None;
        }
        let mut missing = Vec::new();
        if self.principals.is_empty() {
            missing.push("no principals are configured, so anyone who reaches the port could write, read, create topics and commit offsets");
        }
        if self.tls.is_none() {
            missing.push("there is no `tls` section, so tokens and data would cross the network in clear text");
        }
        if missing.is_empty() {
            return None;
        }
        Some(format!(
            "refusing to listen on {} beyond loopback: {}. Configure `tls` and `principals` (docs/operations.md), or pass --insecure (`insecure: true`) to accept the risk",
            addr,
            missing.join("; and ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_round_trips() {
        let yaml = "listen: 127.0.0.1:9000\ndata_dir: /tmp/x\ndefault_partitions: 4\nsegment_bytes: 64MiB\nretention: { max_age: 7days, max_bytes: 10GiB }\nfsync: interval\nfsync_interval: 20ms\nlimits: { max_topics: 5, idle_timeout: 5s }\n";
        let c: CollectorConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(c.default_partitions, 4);
        assert_eq!(c.retention.max_bytes, Some(ByteSize(10 << 30)));
        assert_eq!(c.retention.max_age, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(c.limits.max_topics, 5);
        assert_eq!(c.limits.max_fetches, 256);
        let back: CollectorConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.segment_bytes, c.segment_bytes);
        assert_eq!(back.fsync, FsyncPolicy::Interval);
        assert_eq!(back.limits.idle_timeout, Duration::from_secs(5));
    }

    #[test]
    fn batch_bounds_are_configurable_and_bad_times_are_explained() {
        let c: CollectorConfig = serde_yaml::from_str(
            "max_batch_decompressed_bytes: 8MiB\nrecord_timestamps: { min: 2000-01-01T00:00:00Z }\n",
        )
        .unwrap();
        let l = c.store().batch_limits;
        assert_eq!(l.max_decompressed_bytes, 8 << 20);
        assert_eq!(l.min_timestamp, 946_684_800_000);
        assert_eq!(l.max_timestamp, weir_core::decode::YEAR_9999_MS);
        let back: CollectorConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.record_timestamps.min, c.record_timestamps.min);
        let err = serde_yaml::from_str::<CollectorConfig>("record_timestamps: { max: soon }")
            .unwrap_err();
        assert!(err.to_string().contains("not an RFC 3339 time"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_yaml::from_str::<CollectorConfig>("listen_on: 1").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `listen_on`"),
            "{err}"
        );
    }

    #[test]
    fn listening_beyond_loopback_needs_tls_and_principals_or_insecure() {
        let mut c = CollectorConfig {
            listen: "0.0.0.0:7400".parse().unwrap(),
            ..Default::default()
        };
        let why = c.exposure_problem().unwrap();
        assert!(
            why.contains("no principals") && why.contains("--insecure"),
            "{why}"
        );
        c.insecure = true;
        assert_eq!(c.exposure_problem(), None);
        c.insecure = false;
        c.listen = "127.0.0.1:7400".parse().unwrap();
        assert_eq!(
            c.exposure_problem(),
            None,
            "loopback stays open for the demo"
        );
        c.kafka.listen = Some("0.0.0.0:9092".parse().unwrap());
        let why = c.exposure_problem().unwrap();
        assert!(
            why.contains("0.0.0.0:9092"),
            "the Kafka listener counts too: {why}"
        );
        c.kafka.listen = None;
        c.listen = "[::]:7400".parse().unwrap();
        c.principals.push(PrincipalConfig::default());
        let why = c.exposure_problem().unwrap();
        assert!(
            why.contains("tls") && !why.contains("no principals"),
            "{why}"
        );
    }
}
