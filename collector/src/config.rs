//! `weir-collector serve` configuration, from a YAML file (`-c`) and flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::units::{duration, opt_duration, ByteSize};

use crate::log::{FsyncPolicy, StoreConfig};

/// The collector's settings. Every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Address the HTTP API listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where topics and consumer group offsets are stored.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Partitions of a topic created on first write.
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
    /// Requests handled at once; more wait (bounded memory under a burst of agents).
    #[serde(default = "default_max_connections")]
    pub max_concurrent_requests: usize,
    /// Largest records section of one batch once decompressed; a batch that
    /// expands past it is refused (a few KiB of zstd can claim gigabytes).
    #[serde(default = "default_max_batch_decompressed_bytes")]
    pub max_batch_decompressed_bytes: ByteSize,
    /// Record timestamps accepted at ingest; a batch with a record outside is refused.
    #[serde(default)]
    pub record_timestamps: TimestampRange,
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

fn default_min_ts() -> Rfc3339 {
    Rfc3339(0)
}
fn default_max_ts() -> Rfc3339 {
    Rfc3339(weir_core::decode::YEAR_9999_MS)
}
fn default_max_batch_decompressed_bytes() -> ByteSize {
    ByteSize(64 << 20)
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
fn default_max_request_bytes() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_max_connections() -> usize {
    256
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
            batch_limits: weir_core::decode::Limits {
                max_decompressed_bytes: self.max_batch_decompressed_bytes.bytes() as usize,
                min_timestamp: self.record_timestamps.min.0,
                max_timestamp: self.record_timestamps.max.0,
            },
            metrics: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_round_trips() {
        let yaml = "listen: 127.0.0.1:9000\ndata_dir: /tmp/x\ndefault_partitions: 4\nsegment_bytes: 64MiB\nretention: { max_age: 7days, max_bytes: 10GiB }\nfsync: interval\nfsync_interval: 20ms\n";
        let c: CollectorConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(c.default_partitions, 4);
        assert_eq!(c.retention.max_bytes, Some(ByteSize(10 << 30)));
        assert_eq!(c.retention.max_age, Some(Duration::from_secs(7 * 86400)));
        let back: CollectorConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.segment_bytes, c.segment_bytes);
        assert_eq!(back.fsync, FsyncPolicy::Interval);
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
}
