//! Dispatch: from a request frame to its handler and back to a response
//! frame. One module per API group; each handler only translates between
//! the wire and the service.
//!
//! What is answered and what closes the connection:
//!
//! | request | outcome |
//! |---|---|
//! | ApiVersions at a version we do not have | `UNSUPPORTED_VERSION` and our ranges, encoded as v0, so the client retries lower |
//! | a supported API at a supported version | its answer (errors as codes inside it) |
//! | Produce with `acks=0` | no answer, as the protocol says |
//! | an API or version not advertised | the connection is closed: its answer's shape is unknown, and clients only send what ApiVersions listed (Kafka brokers do the same) |
//! | a request that does not decode | closed, for the same reason |
//! | a failed SASL authentication | answered, then closed |

mod fetch;
mod groups;
mod metadata;
mod produce;

use bytes::Bytes;
use kafka_protocol::messages::*;
use tracing::error;

use super::connection::Session;
use super::{codec, sasl, versions, Broker};
use crate::limits::Reservation;

/// What the connection does with a request.
pub enum Outcome {
    /// Write this frame; the reservation holds its memory until written.
    Respond(Bytes, Reservation),
    /// Write this frame, then close (failed authentication).
    RespondAndClose(Bytes),
    /// Answer nothing (Produce with acks=0).
    Silent,
    /// Close without an answer, for this reason.
    Close(String),
}

/// Handles one request frame.
pub async fn handle(b: &Broker, sess: &mut Session, mut frame: Bytes) -> Outcome {
    let p = match codec::prefix(&frame) {
        Ok(p) => p,
        Err(e) => return Outcome::Close(e.to_string()),
    };
    let Ok(key) = ApiKey::try_from(p.api_key) else {
        return Outcome::Close(format!("unknown API key {}", p.api_key));
    };
    let (v, corr) = (p.api_version, p.correlation_id);
    b.metrics.requests.inc();
    if key == ApiKey::ApiVersions {
        let (answer_v, err) = versions::api_versions_answer(v);
        // An unknown version's header and body may not decode: answer from
        // the fixed prefix alone.
        return respond(key, answer_v, corr, &versions::api_versions(err));
    }
    if !versions::supported(key, v) {
        return Outcome::Close(format!("{key:?} v{v} is not supported"));
    }
    let header = match codec::header(&mut frame, key, v) {
        Ok(h) => h,
        Err(e) => return Outcome::Close(e.to_string()),
    };
    if let Some(id) = header.client_id {
        if sess.client_id.as_str() != id.as_str() {
            sess.client_id = id.as_str().chars().take(255).collect();
        }
    }
    macro_rules! decode {
        ($t:ty) => {
            match codec::body::<$t>(&mut frame, v) {
                Ok(r) => r,
                Err(e) => return Outcome::Close(format!("{key:?} v{v} does not decode: {e}")),
            }
        };
    }
    match key {
        ApiKey::Metadata => {
            let r = metadata::metadata(b, sess, decode!(MetadataRequest), v).await;
            respond(key, v, corr, &r)
        }
        ApiKey::FindCoordinator => {
            let r = metadata::find_coordinator(b, decode!(FindCoordinatorRequest), v);
            respond(key, v, corr, &r)
        }
        ApiKey::CreateTopics => {
            let r = metadata::create_topics(b, sess, decode!(CreateTopicsRequest), v).await;
            respond(key, v, corr, &r)
        }
        ApiKey::DescribeConfigs => {
            let r = metadata::describe_configs(b, sess, decode!(DescribeConfigsRequest)).await;
            respond(key, v, corr, &r)
        }
        ApiKey::Produce => match produce::produce(b, sess, decode!(ProduceRequest), v).await {
            produce::Produced::Answer(r) => respond(key, v, corr, &r),
            produce::Produced::Silent => Outcome::Silent,
        },
        ApiKey::InitProducerId => {
            let r = produce::init_producer_id(b, sess, decode!(InitProducerIdRequest)).await;
            respond(key, v, corr, &r)
        }
        ApiKey::Fetch => {
            let f = fetch::fetch(b, sess, decode!(FetchRequest), v).await;
            match respond(key, v, corr, &f.response) {
                Outcome::Respond(bytes, _) => Outcome::Respond(bytes, f.reserved),
                other => other,
            }
        }
        ApiKey::ListOffsets => {
            let r = fetch::list_offsets(b, sess, decode!(ListOffsetsRequest), v).await;
            respond(key, v, corr, &r)
        }
        ApiKey::JoinGroup => {
            let r = groups::join(b, sess, decode!(JoinGroupRequest), v).await;
            respond(key, v, corr, &r)
        }
        ApiKey::SyncGroup => {
            let r = groups::sync(b, sess, decode!(SyncGroupRequest), v).await;
            respond(key, v, corr, &r)
        }
        ApiKey::Heartbeat => {
            let r = groups::heartbeat(b, sess, decode!(HeartbeatRequest));
            respond(key, v, corr, &r)
        }
        ApiKey::LeaveGroup => {
            let r = groups::leave(b, sess, decode!(LeaveGroupRequest), v);
            respond(key, v, corr, &r)
        }
        ApiKey::OffsetCommit => {
            let r = groups::offset_commit(b, sess, decode!(OffsetCommitRequest), v).await;
            respond(key, v, corr, &r)
        }
        ApiKey::OffsetFetch => {
            let r = groups::offset_fetch(b, sess, decode!(OffsetFetchRequest), v).await;
            respond(key, v, corr, &r)
        }
        ApiKey::DescribeGroups => {
            let r = groups::describe(b, sess, decode!(DescribeGroupsRequest));
            respond(key, v, corr, &r)
        }
        ApiKey::ListGroups => {
            let r = groups::list(b, sess, decode!(ListGroupsRequest), v).await;
            respond(key, v, corr, &r)
        }
        ApiKey::SaslHandshake => {
            let r = sasl::handshake(sess, decode!(SaslHandshakeRequest), v);
            respond(key, v, corr, &r)
        }
        ApiKey::SaslAuthenticate => {
            let (r, go_on) = sasl::authenticate(b, sess, decode!(SaslAuthenticateRequest));
            match respond(key, v, corr, &r) {
                Outcome::Respond(bytes, _) if !go_on => Outcome::RespondAndClose(bytes),
                other => other,
            }
        }
        other => Outcome::Close(format!("{other:?} is not supported")),
    }
}

fn respond<R: kafka_protocol::protocol::Encodable>(
    key: ApiKey,
    v: i16,
    corr: i32,
    r: &R,
) -> Outcome {
    match codec::response(key, v, corr, r) {
        Ok(bytes) => Outcome::Respond(bytes, Reservation::default()),
        Err(e) => {
            // A bug here (a field set that the version lacks): say so loudly.
            error!(api = ?key, version = v, error = %e, "Failed to encode a Kafka response; closing the connection.");
            Outcome::Close(e)
        }
    }
}
