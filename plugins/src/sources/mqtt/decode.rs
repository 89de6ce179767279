//! From an MQTT message to an event: the payload decoded (`json`, `text`,
//! `bytes`), the topic and the named filter levels as fields, and the
//! fingerprint that identifies the message in the spool's keyed stream.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weir_core::event::Fields;
use weir_core::{Event, Metadata, Value};

use super::filter::TopicFilter;
use crate::mqtt::codec::Message;

/// How a payload becomes fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decode {
    /// A JSON object's keys become fields; any other JSON value goes to `value`.
    #[default]
    Json,
    /// UTF-8 text in `message`.
    Text,
    /// The raw bytes in `message`.
    Bytes,
}

/// Why a payload could not be decoded (the dead letter's `error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not valid JSON: {0}")]
    Json(String),
    #[error("payload is not valid UTF-8 (at byte {0})")]
    Utf8(usize),
    #[error("topic is not valid UTF-8")]
    Topic,
}

/// What the source adds to every event.
#[derive(Debug, Clone)]
pub struct Shape {
    pub decode: Decode,
    pub filters: Vec<TopicFilter>,
    /// Field for the topic; empty for none.
    pub topic_field: String,
}

/// The fingerprint of a message in the keyed stream: CRC-32C of the session
/// epoch, topic, QoS and payload length in the high half, CRC-32C of the
/// payload in the low half. Stable across processes and versions (it is
/// compared with fingerprints written by an earlier run). The epoch changes
/// when the broker loses our session, so keys held from an older session
/// never match a new message.
pub fn fingerprint(epoch: u64, topic: &[u8], payload: &[u8], qos: u8) -> u64 {
    let mut head = crc32c::crc32c(&epoch.to_le_bytes());
    head = crc32c::crc32c_append(head, topic);
    head = crc32c::crc32c_append(head, &[qos]);
    head = crc32c::crc32c_append(head, &(payload.len() as u64).to_le_bytes());
    (u64::from(head) << 32) | u64::from(crc32c::crc32c(payload))
}

fn decode_payload(mode: Decode, payload: &Bytes) -> Result<Fields, DecodeError> {
    match mode {
        Decode::Json => {
            let v: serde_json::Value =
                serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))?;
            Ok(match Value::from(v) {
                Value::Map(m) => m,
                other => std::iter::once(("value".to_owned(), other)).collect(),
            })
        }
        Decode::Text => {
            let s = std::str::from_utf8(payload).map_err(|e| DecodeError::Utf8(e.valid_up_to()))?;
            Ok(std::iter::once(("message".to_owned(), Value::String(s.to_owned()))).collect())
        }
        Decode::Bytes => {
            Ok(std::iter::once(("message".to_owned(), Value::Bytes(payload.clone()))).collect())
        }
    }
}

impl Shape {
    /// The event for `m`, received at `now` (ns); named levels of the first
    /// matching filter and the topic are set over payload fields of the same name.
    pub fn event(&self, m: &Message, meta: Metadata, now: i64) -> Result<Event, DecodeError> {
        let topic = std::str::from_utf8(&m.topic).map_err(|_| DecodeError::Topic)?;
        let mut fields = decode_payload(self.decode, &m.payload)?;
        if let Some(caps) = self
            .filters
            .iter()
            .find_map(|f| f.capture(topic).filter(|c| !c.is_empty()))
        {
            for (name, value) in caps {
                fields.insert(name, Value::String(value));
            }
        }
        if !self.topic_field.is_empty() {
            fields.insert(self.topic_field.as_str(), Value::String(topic.to_owned()));
        }
        if m.retain {
            fields.insert("retained", Value::Bool(true));
        }
        Ok(Event {
            timestamp: now,
            fields,
            meta,
        })
    }

    /// What a dead letter says about `m`: its topic, QoS and payload.
    pub fn original(m: &Message) -> Fields {
        let mut f = Fields::with_capacity(3);
        f.insert(
            "topic",
            Value::String(String::from_utf8_lossy(&m.topic).into_owned()),
        );
        f.insert("qos", Value::Int(i64::from(m.qos)));
        f.insert("payload", Value::Bytes(m.payload.clone()));
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &[u8]) -> Message {
        Message {
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            payload: Bytes::copy_from_slice(payload),
            qos: 1,
            pkid: 1,
            dup: false,
            retain: false,
        }
    }

    fn shape(decode: Decode) -> Shape {
        Shape {
            decode,
            filters: vec![TopicFilter::parse("sensors/+device/+metric").unwrap()],
            topic_field: "topic".into(),
        }
    }

    #[test]
    fn a_json_object_becomes_fields_with_the_topic_and_its_levels() {
        let e = shape(Decode::Json)
            .event(
                &msg("sensors/d1/temp", br#"{"v":21.5,"device":"spoofed"}"#),
                Metadata::default(),
                5,
            )
            .unwrap();
        assert_eq!(e.fields.get("v"), Some(&Value::Float(21.5)));
        assert_eq!(
            e.fields.get("device"),
            Some(&Value::String("d1".into())),
            "the topic level wins"
        );
        assert_eq!(e.fields.get("metric"), Some(&Value::String("temp".into())));
        assert_eq!(
            e.fields.get("topic"),
            Some(&Value::String("sensors/d1/temp".into()))
        );
        assert_eq!(e.fields.get("retained"), None);
        assert_eq!(e.timestamp, 5);
    }

    #[test]
    fn other_json_goes_to_value_and_bad_json_is_an_error() {
        let e = shape(Decode::Json)
            .event(&msg("x", b"42"), Metadata::default(), 0)
            .unwrap();
        assert_eq!(e.fields.get("value"), Some(&Value::Int(42)));
        let err = shape(Decode::Json)
            .event(&msg("x", b"{nope"), Metadata::default(), 0)
            .unwrap_err();
        assert!(matches!(err, DecodeError::Json(_)), "{err}");
    }

    #[test]
    fn text_needs_utf8_and_bytes_takes_anything() {
        let e = shape(Decode::Text)
            .event(&msg("x", b"hello"), Metadata::default(), 0)
            .unwrap();
        assert_eq!(e.message(), Some("hello"));
        assert_eq!(
            shape(Decode::Text).event(&msg("x", b"ok\xff"), Metadata::default(), 0),
            Err(DecodeError::Utf8(2))
        );
        let e = shape(Decode::Bytes)
            .event(&msg("x", b"\x00\xff"), Metadata::default(), 0)
            .unwrap();
        assert_eq!(
            e.fields.get("message"),
            Some(&Value::Bytes(Bytes::from_static(b"\x00\xff")))
        );
    }

    #[test]
    fn retained_messages_say_so_and_the_topic_field_can_be_left_out() {
        let mut m = msg("a", b"{}");
        m.retain = true;
        let mut s = shape(Decode::Json);
        s.topic_field = String::new();
        let e = s.event(&m, Metadata::default(), 0).unwrap();
        assert_eq!(e.fields.get("retained"), Some(&Value::Bool(true)));
        assert_eq!(e.fields.get("topic"), None);
    }

    #[test]
    fn fingerprints_tell_topic_payload_and_qos_apart() {
        let base = fingerprint(0, b"a/b", b"payload", 2);
        assert_eq!(base, fingerprint(0, b"a/b", b"payload", 2), "stable");
        assert_ne!(base, fingerprint(0, b"a/c", b"payload", 2));
        assert_ne!(base, fingerprint(0, b"a/b", b"payloae", 2));
        assert_ne!(base, fingerprint(0, b"a/b", b"payload", 1));
        assert_ne!(
            base,
            fingerprint(1, b"a/b", b"payload", 2),
            "another session epoch"
        );
        // Moving bytes between topic and payload changes it too.
        assert_ne!(
            fingerprint(0, b"ab", b"c", 1),
            fingerprint(0, b"a", b"bc", 1)
        );
        // Pinned value: a change here would make every spool's held keys unrecognisable.
        assert_eq!(fingerprint(0, b"t", b"p", 1), 0xf977_aa8b_23e5_075c);
    }
}
