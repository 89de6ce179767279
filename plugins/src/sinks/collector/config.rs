//! Configuration of the `collector` sink.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::record::Compression;
use weir_core::units::{duration, ByteSize};

/// Replicates a sink's channel to a `weir-collector`, exactly once per record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSinkConfig {
    /// Base URL of the collector, e.g. `http://collector:7400`.
    pub url: String,
    /// Topic to write to; created on first use.
    pub topic: String,
    /// Partitions to create the topic with if it does not exist; the collector's default otherwise.
    #[serde(default)]
    pub partitions: Option<u32>,
    /// How records are grouped into batches.
    #[serde(default)]
    pub batch: BatchConfig,
    /// `zstd` (default), `lz4` or `none`. zstd costs the agent little more CPU
    /// than lz4 and sends about a third of its bytes: on a gateway's link,
    /// which is slower than the agent, it delivers the most lines per second.
    #[serde(default)]
    pub compression: Compression,
    /// Batches sent before the oldest is acknowledged; sequence numbers keep them in order.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Timeout of one request.
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// First retry delay; doubles up to `max_backoff`, with jitter.
    #[serde(default = "default_initial_backoff", with = "duration")]
    pub initial_backoff: Duration,
    /// Longest retry delay.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
    /// This agent's bearer token, when the collector authenticates by token
    /// (use `${WEIR_COLLECTOR_TOKEN}` to keep it out of the file).
    #[serde(default)]
    pub token: Option<String>,
    /// TLS settings for an `https://` URL.
    #[serde(default)]
    pub tls: Option<SinkTls>,
    /// How often the agent reports a heartbeat to this collector (its
    /// version, uptime and every sink's backlog, lag and rate), shown on the
    /// collector's fleet page; `0s` turns heartbeats off. Sent with the same
    /// URL, TLS and token as the data; a failed heartbeat never delays
    /// delivery.
    #[serde(default = "default_heartbeat_interval", with = "duration")]
    pub heartbeat_interval: Duration,
}

/// TLS towards the collector.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SinkTls {
    /// PEM file with the CA certificate(s) that signed the collector's certificate.
    pub ca_file: std::path::PathBuf,
    /// PEM client certificate, when the collector authenticates by certificate.
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
    /// Verify the collector's certificate for this name instead of the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl SinkTls {
    /// As the shared client's settings.
    pub fn client(&self) -> weir_core::http_client::ClientTls {
        weir_core::http_client::ClientTls {
            ca_file: Some(self.ca_file.clone()),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            server_name: self.server_name.clone(),
        }
    }
}

/// Batch limits: a batch is sent when any is reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one batch.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes (of spool records) in one batch.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Longest a partial batch waits for more events.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout: default_timeout(),
        }
    }
}

fn default_in_flight() -> usize {
    4
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_max_events() -> usize {
    10_000
}
fn default_max_bytes() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_timeout() -> Duration {
    Duration::from_millis(200)
}

impl CollectorSinkConfig {
    /// Value problems serde cannot catch.
    pub fn value_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            p.push(format!(
                "url: {:?} must start with http:// or https://",
                self.url
            ));
        }
        let https = self.url.starts_with("https://");
        match &self.tls {
            None if https => p.push(
                "tls.ca_file: an https:// URL needs the CA that signed the collector's certificate"
                    .to_owned(),
            ),
            Some(_) if !https => p.push("tls: set, but the url is not https://".to_owned()),
            Some(t) if t.cert_file.is_some() != t.key_file.is_some() => {
                p.push("tls: a client certificate needs both cert_file and key_file".to_owned())
            }
            _ => {}
        }
        if self
            .token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty() || t.chars().any(|c| c.is_control()))
        {
            p.push("token: must be non-empty text without control characters".to_owned());
        }
        if !weir_core::protocol::valid_name(&self.topic) {
            p.push(format!(
                "topic: {:?} must be 1-200 letters, digits, '.', '_' or '-'",
                self.topic
            ));
        }
        use weir_core::units::duration_problem;
        let ms = Duration::from_millis;
        let h = Duration::from_secs(3600);
        p.extend(duration_problem(
            "request_timeout",
            self.request_timeout,
            ms(100),
            Duration::from_secs(600),
        ));
        p.extend(duration_problem(
            "initial_backoff",
            self.initial_backoff,
            ms(1),
            h,
        ));
        p.extend(duration_problem(
            "max_backoff",
            self.max_backoff,
            self.initial_backoff.max(ms(1)),
            h,
        ));
        p.extend(duration_problem(
            "batch.timeout",
            self.batch.timeout,
            ms(1),
            h,
        ));
        if !self.heartbeat_interval.is_zero() {
            p.extend(duration_problem(
                "heartbeat_interval",
                self.heartbeat_interval,
                ms(100),
                h,
            ));
        }
        if self.partitions == Some(0) {
            p.push("partitions: must be at least 1".to_owned());
        }
        if self.batch.max_events == 0 || self.batch.max_events > 1_000_000 {
            p.push("batch.max_events: must be between 1 and 1000000".to_owned());
        }
        if self.batch.max_bytes.bytes() < 1024 || self.batch.max_bytes.bytes() > (15 << 20) {
            p.push("batch.max_bytes: must be between 1KiB and 15MiB (the collector's request limit is 16MiB)".to_owned());
        }
        if !(1..=16).contains(&self.max_in_flight) {
            p.push("max_in_flight: must be between 1 and 16".to_owned());
        }
        p
    }
}
