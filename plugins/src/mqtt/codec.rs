//! The MQTT packets Weir sends and receives, over rumqttc's v3.1.1 and v5
//! packet codecs. One protocol-neutral shape ([`In`], [`Out`]) lets the
//! session logic above ignore which version is spoken.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes as m4;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes as m5;
use rumqttc::v5::mqttbytes::v5;

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[default]
    V311,
    /// MQTT 5.
    V5,
}

/// Quality of service as a number (0, 1, 2).
pub type Qos = u8;

/// A message as received or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: Qos,
    pub pkid: u16,
    pub dup: bool,
    pub retain: bool,
}

/// What the CONNECT packet asks for.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub client_id: String,
    pub keep_alive_secs: u16,
    pub clean: bool,
    pub login: Option<(String, String)>,
    /// v5: seconds the broker keeps the session after a disconnect.
    pub session_expiry: Option<u32>,
    /// v5: QoS 1/2 messages the broker may have in flight to us.
    pub receive_maximum: Option<u16>,
    /// v5: largest packet we accept.
    pub max_packet_size: Option<u32>,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub filter: String,
    pub qos: Qos,
}

/// Packets Weir sends.
#[derive(Debug, Clone)]
pub enum Out {
    Connect(ConnectRequest),
    Subscribe {
        pkid: u16,
        filters: Vec<Subscription>,
    },
    Publish(Message),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    PingReq,
    Disconnect,
}

/// The broker's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// `None` when accepted; else the broker's reason.
    pub refused: Option<String>,
    /// v5: how many QoS 1/2 messages we may have in flight to the broker.
    pub receive_maximum: Option<u16>,
    /// v5: largest packet the broker accepts.
    pub max_packet_size: Option<u32>,
}

/// Packets Weir receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum In {
    ConnAck(ConnAck),
    Publish(Message),
    /// Packet id and, when the broker refused the message (v5), its reason.
    PubAck(u16, Option<String>),
    PubRec(u16, Option<String>),
    PubRel(u16),
    PubComp(u16),
    /// Packet id and the granted QoS per filter (`None`: refused).
    SubAck(u16, Vec<Option<Qos>>),
    PingResp,
    /// The broker closes the connection (v5 says why).
    Disconnect(String),
    /// A packet a client does not expect (CONNECT, SUBSCRIBE…); ignored.
    Unexpected(&'static str),
}

/// Why bytes could not be read or written as MQTT.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed MQTT 3.1.1 packet: {0}")]
    V4(m4::Error),
    #[error("malformed MQTT 5 packet: {0}")]
    V5(m5::Error),
    #[error("packet of {size} bytes exceeds max_packet_size ({max} bytes)")]
    TooLarge { size: usize, max: usize },
}

fn qos4(q: Qos) -> m4::QoS {
    match q {
        0 => m4::QoS::AtMostOnce,
        1 => m4::QoS::AtLeastOnce,
        _ => m4::QoS::ExactlyOnce,
    }
}

fn qos5(q: Qos) -> m5::QoS {
    match q {
        0 => m5::QoS::AtMostOnce,
        1 => m5::QoS::AtLeastOnce,
        _ => m5::QoS::ExactlyOnce,
    }
}

/// Appends `p` to `buf`.
pub fn encode(proto: Protocol, p: &Out, buf: &mut BytesMut) -> Result<(), CodecError> {
    match proto {
        Protocol::V311 => {
            let packet = to_v4(p);
            packet
                .write(buf, usize::MAX)
                .map(drop)
                .map_err(CodecError::V4)
        }
        Protocol::V5 => {
            let packet = to_v5(p);
            packet.write(buf, None).map(drop).map_err(CodecError::V5)
        }
    }
}

fn to_v4(p: &Out) -> v4::Packet {
    match p {
        Out::Connect(c) => {
            let mut connect = v4::Connect::new(c.client_id.clone());
            connect.keep_alive = c.keep_alive_secs;
            connect.clean_session = c.clean;
            if let Some((u, pw)) = &c.login {
                connect.set_login(u.clone(), pw.clone());
            }
            v4::Packet::Connect(connect)
        }
        Out::Subscribe { pkid, filters } => v4::Packet::Subscribe(v4::Subscribe {
            pkid: *pkid,
            filters: filters
                .iter()
                .map(|f| v4::SubscribeFilter::new(f.filter.clone(), qos4(f.qos)))
                .collect(),
        }),
        Out::Publish(m) => v4::Packet::Publish(v4::Publish {
            dup: m.dup,
            qos: qos4(m.qos),
            retain: m.retain,
            topic: String::from_utf8_lossy(&m.topic).into_owned(),
            pkid: if m.qos == 0 { 0 } else { m.pkid },
            payload: m.payload.clone(),
        }),
        Out::PubAck(id) => v4::Packet::PubAck(v4::PubAck::new(*id)),
        Out::PubRec(id) => v4::Packet::PubRec(v4::PubRec::new(*id)),
        Out::PubRel(id) => v4::Packet::PubRel(v4::PubRel::new(*id)),
        Out::PubComp(id) => v4::Packet::PubComp(v4::PubComp::new(*id)),
        Out::PingReq => v4::Packet::PingReq,
        Out::Disconnect => v4::Packet::Disconnect,
    }
}

fn to_v5(p: &Out) -> v5::Packet {
    match p {
        Out::Connect(c) => {
            let mut props = v5::ConnectProperties::new();
            props.session_expiry_interval = c.session_expiry;
            props.receive_maximum = c.receive_maximum;
            props.max_packet_size = c.max_packet_size;
            let connect = v5::Connect {
                keep_alive: c.keep_alive_secs,
                client_id: c.client_id.clone(),
                clean_start: c.clean,
                properties: Some(props),
            };
            let login = c.login.as_ref().map(|(u, pw)| v5::Login::new(u, pw));
            v5::Packet::Connect(connect, None, login)
        }
        Out::Subscribe { pkid, filters } => {
            let mut s = v5::Subscribe::new_many(
                filters.iter().map(|f| {
                    let mut filter = v5::Filter::new(f.filter.clone(), qos5(f.qos));
                    // A persistent session already has the subscription:
                    // do not resend retained messages on every reconnect.
                    filter.retain_forward_rule = v5::RetainForwardRule::OnNewSubscribe;
                    filter
                }),
                None,
            );
            s.pkid = *pkid;
            v5::Packet::Subscribe(s)
        }
        Out::Publish(m) => {
            let mut p = v5::Publish {
                dup: m.dup,
                qos: qos5(m.qos),
                retain: m.retain,
                topic: m.topic.clone(),
                pkid: 0,
                payload: m.payload.clone(),
                properties: None,
            };
            if m.qos > 0 {
                p.pkid = m.pkid;
            }
            v5::Packet::Publish(p)
        }
        Out::PubAck(id) => v5::Packet::PubAck(v5::PubAck::new(*id, None)),
        Out::PubRec(id) => v5::Packet::PubRec(v5::PubRec::new(*id, None)),
        Out::PubRel(id) => v5::Packet::PubRel(v5::PubRel::new(*id, None)),
        Out::PubComp(id) => v5::Packet::PubComp(v5::PubComp::new(*id, None)),
        Out::PingReq => v5::Packet::PingReq(v5::PingReq),
        Out::Disconnect => v5::Packet::Disconnect(v5::Disconnect::new(
            v5::DisconnectReasonCode::NormalDisconnection,
        )),
    }
}

/// Takes one packet off the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn decode(proto: Protocol, buf: &mut BytesMut, max: usize) -> Result<Option<In>, CodecError> {
    match proto {
        Protocol::V311 => match v4::Packet::read(buf, max) {
            Ok(p) => Ok(Some(from_v4(p))),
            Err(m4::Error::InsufficientBytes(_)) => Ok(None),
            Err(m4::Error::PayloadSizeLimitExceeded(size)) => {
                Err(CodecError::TooLarge { size, max })
            }
            Err(e) => Err(CodecError::V4(e)),
        },
        Protocol::V5 => {
            let limit = u32::try_from(max).unwrap_or(u32::MAX);
            match v5::Packet::read(buf, Some(limit)) {
                Ok(p) => Ok(Some(from_v5(p))),
                Err(m5::Error::InsufficientBytes(_)) => Ok(None),
                Err(m5::Error::PayloadSizeLimitExceeded { pkt_size, .. }) => {
                    Err(CodecError::TooLarge {
                        size: pkt_size,
                        max,
                    })
                }
                Err(e) => Err(CodecError::V5(e)),
            }
        }
    }
}

fn from_v4(p: v4::Packet) -> In {
    match p {
        v4::Packet::ConnAck(c) => In::ConnAck(ConnAck {
            session_present: c.session_present,
            refused: (c.code != v4::ConnectReturnCode::Success).then(|| format!("{:?}", c.code)),
            receive_maximum: None,
            max_packet_size: None,
        }),
        v4::Packet::Publish(p) => In::Publish(Message {
            topic: Bytes::from(p.topic.into_bytes()),
            payload: p.payload,
            qos: p.qos as u8,
            pkid: p.pkid,
            dup: p.dup,
            retain: p.retain,
        }),
        v4::Packet::PubAck(a) => In::PubAck(a.pkid, None),
        v4::Packet::PubRec(a) => In::PubRec(a.pkid, None),
        v4::Packet::PubRel(a) => In::PubRel(a.pkid),
        v4::Packet::PubComp(a) => In::PubComp(a.pkid),
        v4::Packet::SubAck(s) => In::SubAck(
            s.pkid,
            s.return_codes
                .iter()
                .map(|c| match c {
                    v4::SubscribeReasonCode::Success(q) => Some(*q as u8),
                    v4::SubscribeReasonCode::Failure => None,
                })
                .collect(),
        ),
        v4::Packet::PingResp => In::PingResp,
        v4::Packet::Disconnect => In::Disconnect("broker sent DISCONNECT".to_owned()),
        v4::Packet::Connect(_) => In::Unexpected("CONNECT"),
        v4::Packet::Subscribe(_) => In::Unexpected("SUBSCRIBE"),
        v4::Packet::Unsubscribe(_) => In::Unexpected("UNSUBSCRIBE"),
        v4::Packet::UnsubAck(_) => In::Unexpected("UNSUBACK"),
        v4::Packet::PingReq => In::Unexpected("PINGREQ"),
    }
}

fn from_v5(p: v5::Packet) -> In {
    match p {
        v5::Packet::ConnAck(c) => {
            let props = c.properties.as_ref();
            let reason = props
                .and_then(|p| p.reason_string.clone())
                .unwrap_or_default();
            In::ConnAck(ConnAck {
                session_present: c.session_present,
                refused: (c.code != v5::ConnectReturnCode::Success)
                    .then(|| format!("{:?} {reason}", c.code).trim_end().to_owned()),
                receive_maximum: props.and_then(|p| p.receive_max),
                max_packet_size: props.and_then(|p| p.max_packet_size),
            })
        }
        v5::Packet::Publish(p) => In::Publish(Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos as u8,
            pkid: p.pkid,
            dup: p.dup,
            retain: p.retain,
        }),
        v5::Packet::PubAck(a) => In::PubAck(
            a.pkid,
            // "No matching subscribers" is still an accepted message.
            (!matches!(
                a.reason,
                v5::PubAckReason::Success | v5::PubAckReason::NoMatchingSubscribers
            ))
            .then(|| format!("{:?}", a.reason)),
        ),
        v5::Packet::PubRec(a) => In::PubRec(
            a.pkid,
            (!matches!(
                a.reason,
                v5::PubRecReason::Success | v5::PubRecReason::NoMatchingSubscribers
            ))
            .then(|| format!("{:?}", a.reason)),
        ),
        v5::Packet::PubRel(a) => In::PubRel(a.pkid),
        v5::Packet::PubComp(a) => In::PubComp(a.pkid),
        v5::Packet::SubAck(s) => In::SubAck(
            s.pkid,
            s.return_codes
                .iter()
                .map(|c| match c {
                    v5::SubscribeReasonCode::Success(q) => Some(*q as u8),
                    _ => None,
                })
                .collect(),
        ),
        v5::Packet::PingResp(_) => In::PingResp,
        v5::Packet::Disconnect(d) => {
            In::Disconnect(format!("broker sent DISCONNECT ({:?})", d.reason_code))
        }
        v5::Packet::Connect(..) => In::Unexpected("CONNECT"),
        v5::Packet::Subscribe(_) => In::Unexpected("SUBSCRIBE"),
        v5::Packet::Unsubscribe(_) => In::Unexpected("UNSUBSCRIBE"),
        v5::Packet::UnsubAck(_) => In::Unexpected("UNSUBACK"),
        v5::Packet::PingReq(_) => In::Unexpected("PINGREQ"),
        v5::Packet::Auth(_) => In::Unexpected("AUTH"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(proto: Protocol, p: Out) -> In {
        let mut buf = BytesMut::new();
        encode(proto, &p, &mut buf).unwrap();
        // Fed byte by byte, the decoder asks for more until the packet is whole.
        let mut partial = BytesMut::new();
        let bytes = buf.to_vec();
        for (i, b) in bytes.iter().enumerate() {
            partial.extend_from_slice(&[*b]);
            let got = decode(proto, &mut partial, 1 << 20).unwrap();
            if i + 1 < bytes.len() {
                assert!(got.is_none(), "decoded before the last byte");
            } else {
                return got.unwrap();
            }
        }
        unreachable!()
    }

    #[test]
    fn publishes_and_acknowledgements_round_trip_in_both_versions() {
        for proto in [Protocol::V311, Protocol::V5] {
            let m = Message {
                topic: Bytes::from_static(b"a/b"),
                payload: Bytes::from_static(b"{\"x\":1}"),
                qos: 2,
                pkid: 7,
                dup: true,
                retain: true,
            };
            assert_eq!(round_trip(proto, Out::Publish(m.clone())), In::Publish(m));
            assert_eq!(round_trip(proto, Out::PubRel(9)), In::PubRel(9));
            assert_eq!(round_trip(proto, Out::PubComp(9)), In::PubComp(9));
            assert_eq!(round_trip(proto, Out::PubAck(3)), In::PubAck(3, None));
            assert_eq!(round_trip(proto, Out::PubRec(4)), In::PubRec(4, None));
        }
    }

    #[test]
    fn a_packet_over_the_limit_is_an_error_before_it_is_read_whole() {
        let mut buf = BytesMut::new();
        let m = Message {
            topic: Bytes::from_static(b"t"),
            payload: Bytes::from(vec![0u8; 5000]),
            qos: 1,
            pkid: 1,
            dup: false,
            retain: false,
        };
        encode(Protocol::V311, &Out::Publish(m), &mut buf).unwrap();
        buf.truncate(10);
        assert!(matches!(
            decode(Protocol::V311, &mut buf, 4096),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
