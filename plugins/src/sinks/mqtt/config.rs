//! Configuration of the `mqtt` sink.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::units::{duration, ByteSize};

use super::template::Template;
use crate::mqtt::broker as b;
use crate::mqtt::broker::{ConnectKeys, TlsConfig};
use crate::mqtt::codec::Protocol;

/// Publishes each record's JSON value to an MQTT broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (8883).
    pub url: String,
    /// `v311` (default) or `v5`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Client id; by default `weir-<host>-<sink id>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Topic template: `{{ field }}` (or `{{ a.b }}` into objects) is
    /// replaced by the record's field.
    pub topic: String,
    /// Topic for records the template cannot render (field missing, or
    /// holding `+`/`#`); unset: such records are dropped and counted in
    /// `weir_mqtt_unroutable_total`.
    #[serde(default)]
    pub default_topic: Option<String>,
    /// 0, 1 (default) or 2.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Publish with the retain flag, so new subscribers get the last value.
    #[serde(default)]
    pub retain: bool,
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
    #[serde(default = "b::default_keep_alive", with = "duration")]
    pub keep_alive: Duration,
    /// Longest a connection attempt (TCP, TLS, CONNACK) may take.
    #[serde(default = "b::default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Largest packet accepted from the broker (the broker's own limit,
    /// announced by MQTT 5, applies to what is published).
    #[serde(default = "b::default_max_packet_size")]
    pub max_packet_size: ByteSize,
    /// QoS 1/2 messages published and not yet acknowledged by the broker.
    /// An MQTT 5 broker announces its own limit (receive maximum), which
    /// also applies; an MQTT 3.1.1 broker does not, and may drop a client
    /// that exceeds it: the default is mosquitto's `max_inflight_messages` (20).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u16,
    /// Records read from the channel at a time.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// First reconnect delay; doubles per failure with ±50% jitter.
    #[serde(default = "b::default_initial_backoff", with = "duration")]
    pub initial_backoff: Duration,
    /// Longest reconnect delay.
    #[serde(default = "b::default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
}

fn default_qos() -> u8 {
    1
}
fn default_max_in_flight() -> u16 {
    20
}
fn default_batch_events() -> usize {
    1000
}

impl MqttSinkConfig {
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

    /// Value problems serde cannot catch.
    pub fn value_problems(&self) -> Vec<String> {
        let mut p = self
            .keys(self.client_id.as_deref().unwrap_or("x"))
            .problems();
        if let Err(e) = Template::parse(&self.topic) {
            p.push(format!("topic: {e}"));
        }
        if let Some(d) = &self.default_topic {
            match Template::parse(d) {
                Ok(t) if t.has_fields() => {
                    p.push("default_topic: must be a plain topic (no {{ }})".to_owned())
                }
                Ok(_) => {}
                Err(e) => p.push(format!("default_topic: {e}")),
            }
        }
        if self.qos > 2 {
            p.push("qos: must be 0, 1 or 2".to_owned());
        }
        if self.max_in_flight == 0 {
            p.push("max_in_flight: must be at least 1".to_owned());
        }
        if self.batch_events == 0 {
            p.push("batch_events: must be at least 1".to_owned());
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

    #[test]
    fn the_documented_example_parses_and_round_trips() {
        let c: MqttSinkConfig = serde_yaml::from_str(
            "url: mqtt://127.0.0.1:1883\ntopic: \"site/{{ device }}/alerts\"\nqos: 1\n",
        )
        .unwrap();
        assert!(c.value_problems().is_empty(), "{:?}", c.value_problems());
        let back: MqttSinkConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.topic, c.topic);
        assert_eq!(back.qos, 1);
    }

    #[test]
    fn bad_templates_and_values_are_reported_together() {
        let c: MqttSinkConfig = serde_yaml::from_str(
            "url: mqtt://x\ntopic: \"a/{{ x\"\ndefault_topic: \"b/{{ y }}\"\nqos: 5\nmax_in_flight: 0\n",
        )
        .unwrap();
        let p = c.value_problems().join("\n");
        for want in ["topic:", "default_topic:", "qos:", "max_in_flight:"] {
            assert!(p.contains(want), "missing {want:?} in:\n{p}");
        }
    }
}
