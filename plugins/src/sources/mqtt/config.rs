//! Configuration of the `mqtt` source.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::units::{duration, ByteSize};

use super::decode::Decode;
use super::filter::TopicFilter;
use crate::mqtt::broker::{
    default_connect_timeout, default_initial_backoff, default_keep_alive, default_max_backoff,
    default_max_packet_size, ConnectKeys, TlsConfig,
};
use crate::mqtt::codec::Protocol;

/// One subscription.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Topic filter; `+name` and `#name` levels are subscribed as `+` and `#`
    /// and the matched levels become fields named `name`.
    pub filter: String,
    /// 0 (at most once), 1 (at least once, default) or 2 (exactly once).
    #[serde(default = "default_qos")]
    pub qos: u8,
}

/// Subscribes to an MQTT broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (8883).
    pub url: String,
    /// `v311` (default) or `v5`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Client id, stable per agent so the broker keeps our session; by
    /// default `weir-<host>-<source id>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// What to subscribe to.
    pub topics: Vec<TopicConfig>,
    /// `json` (default), `text` or `bytes`.
    #[serde(default)]
    pub decode: Decode,
    /// Field that receives the message's topic (default `topic`; empty for none).
    #[serde(default = "default_topic_field")]
    pub topic_field: String,
    /// User name for the broker.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (use `${ENV}` interpolation rather than writing it here).
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password (a trailing newline is ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS for `mqtts://`: `ca_file`, `cert_file`, `key_file`, `server_name`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Keep-alive: a PINGREQ when idle this long; no answer within it ends the connection.
    #[serde(default = "default_keep_alive", with = "duration")]
    pub keep_alive: Duration,
    /// Longest a connection attempt (TCP, TLS, CONNACK) may take.
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// MQTT 5: how long the broker keeps our session (and queues messages)
    /// while the agent is away. MQTT 3.1.1 sessions (clean session off) last
    /// until the broker's own limit.
    #[serde(default = "default_session_expiry", with = "duration")]
    pub session_expiry: Duration,
    /// Largest packet accepted; larger ones end the connection (and are
    /// refused by an MQTT 5 broker up front). Up to MQTT's 256MiB.
    #[serde(default = "default_max_packet_size")]
    pub max_packet_size: ByteSize,
    /// MQTT 5: QoS 1/2 messages the broker may have unacknowledged with us.
    #[serde(default = "default_receive_maximum")]
    pub receive_maximum: u16,
    /// Messages held in memory while the channels are busy. Past it, QoS 1/2
    /// messages wait at the broker (the socket is not read) and QoS 0 ones
    /// are dropped, counted in `weir_mqtt_dropped_total`.
    #[serde(default = "default_buffer_events")]
    pub buffer_events: usize,
    /// Bytes held in memory while the channels are busy (as `buffer_events`).
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: ByteSize,
    /// How long released QoS 2 packet ids wait for messages to travel with
    /// before they are written alone (PUBCOMP waits for them).
    #[serde(default = "default_release_delay", with = "duration")]
    pub release_delay: Duration,
    /// First reconnect delay; doubles per failure with ±50% jitter.
    #[serde(default = "default_initial_backoff", with = "duration")]
    pub initial_backoff: Duration,
    /// Longest reconnect delay.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
}

fn default_qos() -> u8 {
    1
}
fn default_topic_field() -> String {
    "topic".to_owned()
}
fn default_session_expiry() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_receive_maximum() -> u16 {
    1000
}
fn default_buffer_events() -> usize {
    10_000
}
fn default_buffer_bytes() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_release_delay() -> Duration {
    Duration::from_millis(5)
}

impl MqttSourceConfig {
    /// The connection keys (with `client_id` resolved).
    pub fn keys<'a>(&'a self, client_id: &'a str) -> ConnectKeys<'a> {
        ConnectKeys {
            url: &self.url,
            protocol: self.protocol,
            client_id,
            username: self.username.as_deref(),
            password: self.password.as_deref(),
            password_file: self.password_file.as_deref(),
            tls: self.tls.as_ref(),
            keep_alive: self.keep_alive,
            connect_timeout: self.connect_timeout,
            max_packet_size: self.max_packet_size.bytes(),
        }
    }

    /// The parsed filters, or every problem with them.
    pub fn filters(&self) -> Result<Vec<TopicFilter>, Vec<String>> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for (i, t) in self.topics.iter().enumerate() {
            match TopicFilter::parse(&t.filter) {
                Ok(f) => ok.push(f),
                Err(e) => bad.push(format!("topics[{i}].filter: {e}")),
            }
        }
        if bad.is_empty() {
            Ok(ok)
        } else {
            Err(bad)
        }
    }

    /// Value problems serde cannot catch.
    pub fn value_problems(&self) -> Vec<String> {
        let mut p = self
            .keys(self.client_id.as_deref().unwrap_or("x"))
            .problems();
        if self.topics.is_empty() {
            p.push("topics: at least one topic filter is required".to_owned());
        }
        if let Err(e) = self.filters() {
            p.extend(e);
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.qos > 2 {
                p.push(format!("topics[{i}].qos: must be 0, 1 or 2"));
            }
        }
        if self.receive_maximum == 0 {
            p.push("receive_maximum: must be at least 1".to_owned());
        }
        if self.buffer_events == 0 {
            p.push("buffer_events: must be at least 1".to_owned());
        }
        if self.buffer_bytes.bytes() < 1024 {
            p.push("buffer_bytes: must be at least 1KiB".to_owned());
        }
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            p.push(
                "initial_backoff/max_backoff: need 0 < initial_backoff <= max_backoff".to_owned(),
            );
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> MqttSourceConfig {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn the_documented_example_parses_with_its_defaults() {
        let c = parse(
            "url: mqtt://127.0.0.1:1883\nclient_id: gw-17\ntopics:\n  - { filter: \"sensors/+device/+metric\", qos: 2 }\ndecode: json\n",
        );
        assert!(c.value_problems().is_empty(), "{:?}", c.value_problems());
        assert_eq!(c.topics[0].qos, 2);
        assert_eq!(c.protocol, Protocol::V311);
        assert_eq!(c.max_packet_size, ByteSize(16 << 20));
        let back: MqttSourceConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.topics, c.topics);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let c = parse(
            "url: http://x\ntopics: [{ filter: \"a/#/b\", qos: 3 }]\npassword: p\nkeep_alive: 0s\n",
        );
        let p = c.value_problems().join("\n");
        for want in [
            "mqtt://",
            "topics[0].filter",
            "topics[0].qos",
            "needs a username",
            "keep_alive",
        ] {
            assert!(p.contains(want), "missing {want:?} in:\n{p}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(
            serde_yaml::from_str::<MqttSourceConfig>("url: mqtt://x\ntopics: []\nqos: 1\n")
                .is_err()
        );
    }
}
