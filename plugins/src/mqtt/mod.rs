//! The MQTT client shared by the `mqtt` source and sink.
//!
//! rumqttc provides the packet codec (MQTT 3.1.1 and 5); the session — which
//! packet to acknowledge when — is driven here, because the delivery
//! guarantees depend on it and rumqttc's own event loop (0.25) gets two
//! things wrong for a receiver that acknowledges manually over a persistent
//! session:
//!
//! - Its state answers an incoming PUBREL only for packet ids it saw as a
//!   QoS 2 PUBLISH *in this process* (`MqttState::incoming_pub`, cleared on
//!   every reconnect by `clean()`); any other PUBREL is
//!   `StateError::Unsolicited`, which ends the connection. After a restart
//!   (or any reconnect) the broker resends PUBREL for every message whose
//!   PUBREC it had — and keeps resending it on each new connection, so the
//!   client would reconnect forever without ever receiving another message.
//!   The MQTT specification requires a PUBCOMP for every PUBREL; we send it.
//! - It sends PUBCOMP as soon as PUBREL arrives. Exactly-once across a crash
//!   needs PUBCOMP to wait until the spool has forgotten the packet id (the
//!   broker reuses the id once it has the PUBCOMP; see
//!   `sources/mqtt/ledger.rs`).
//!
//! Acknowledgements left in rumqttc's request queue at a disconnect are also
//! replayed on the next connection (PUBREC) or dropped (PUBACK), while an
//! acknowledgement must never outlive the connection its message came on.

pub mod backoff;
pub mod broker;
pub mod codec;
pub mod conn;
mod tls;
