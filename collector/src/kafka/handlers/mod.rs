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
use tracing::error;

use super::connection::Session;
use super::protocol::{self as p, ApiKey, Message};
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
pub async fn handle(b: &Broker, sess: &mut Session, frame: Bytes) -> Outcome {
    let pre = match codec::prefix(&frame) {
        Ok(pre) => pre,
        Err(e) => return Outcome::Close(e.to_string()),
    };
    let Some(key) = ApiKey::from_i16(pre.api_key) else {
        return Outcome::Close(format!("unknown API key {}", pre.api_key));
    };
    let (v, corr) = (pre.api_version, pre.correlation_id);
    b.metrics.requests.inc();
    if key == ApiKey::ApiVersions {
        let (answer_v, err) = versions::api_versions_answer(v);
        // An unknown version's header and body may not decode: answer from
        // the fixed prefix alone.
        return respond(key, answer_v, corr, &mut versions::api_versions(err));
    }
    if !versions::supported(key, v) {
        return Outcome::Close(format!("{key:?} v{v} is not supported"));
    }
    let (header, mut body) = match codec::header(frame, key, v) {
        Ok(h) => h,
        Err(e) => return Outcome::Close(e.to_string()),
    };
    if let Some(id) = header.client_id {
        if sess.client_id != id {
            sess.client_id = id.chars().take(255).collect();
        }
    }
    macro_rules! decode {
        ($t:ty) => {
            match codec::body::<$t>(&mut body, v) {
                Ok(r) => r,
                Err(e) => return Outcome::Close(format!("{key:?} v{v} does not decode: {e}")),
            }
        };
    }
    match key {
        ApiKey::Metadata => {
            let mut r = metadata::metadata(b, sess, decode!(p::metadata::MetadataRequest), v).await;
            respond(key, v, corr, &mut r)
        }
        ApiKey::FindCoordinator => {
            let mut r = metadata::find_coordinator(
                b,
                decode!(p::find_coordinator::FindCoordinatorRequest),
                v,
            );
            respond(key, v, corr, &mut r)
        }
        ApiKey::CreateTopics => {
            let mut r =
                metadata::create_topics(b, sess, decode!(p::create_topics::CreateTopicsRequest))
                    .await;
            respond(key, v, corr, &mut r)
        }
        ApiKey::DescribeConfigs => {
            let mut r = metadata::describe_configs(
                b,
                sess,
                decode!(p::describe_configs::DescribeConfigsRequest),
            )
            .await;
            respond(key, v, corr, &mut r)
        }
        ApiKey::Produce => {
            match produce::produce(b, sess, decode!(p::produce::ProduceRequest), v).await {
                produce::Produced::Answer(mut r) => respond(key, v, corr, &mut r),
                produce::Produced::Silent => Outcome::Silent,
            }
        }
        ApiKey::InitProducerId => {
            let mut r = produce::init_producer_id(
                b,
                sess,
                decode!(p::init_producer_id::InitProducerIdRequest),
            )
            .await;
            respond(key, v, corr, &mut r)
        }
        ApiKey::Fetch => {
            let mut f = fetch::fetch(b, sess, decode!(p::fetch::FetchRequest), v).await;
            match respond(key, v, corr, &mut f.response) {
                Outcome::Respond(bytes, _) => Outcome::Respond(bytes, f.reserved),
                other => other,
            }
        }
        ApiKey::ListOffsets => {
            let mut r =
                fetch::list_offsets(b, sess, decode!(p::list_offsets::ListOffsetsRequest)).await;
            respond(key, v, corr, &mut r)
        }
        ApiKey::JoinGroup => {
            let mut r = groups::join(b, sess, decode!(p::join_group::JoinGroupRequest), v).await;
            respond(key, v, corr, &mut r)
        }
        ApiKey::SyncGroup => {
            let mut r = groups::sync(b, sess, decode!(p::sync_group::SyncGroupRequest)).await;
            respond(key, v, corr, &mut r)
        }
        ApiKey::Heartbeat => {
            let mut r = groups::heartbeat(b, sess, decode!(p::heartbeat::HeartbeatRequest));
            respond(key, v, corr, &mut r)
        }
        ApiKey::LeaveGroup => {
            let mut r = groups::leave(b, sess, decode!(p::leave_group::LeaveGroupRequest), v);
            respond(key, v, corr, &mut r)
        }
        ApiKey::OffsetCommit => {
            let mut r =
                groups::offset_commit(b, sess, decode!(p::offset_commit::OffsetCommitRequest), v)
                    .await;
            respond(key, v, corr, &mut r)
        }
        ApiKey::OffsetFetch => {
            let mut r =
                groups::offset_fetch(b, sess, decode!(p::offset_fetch::OffsetFetchRequest)).await;
            respond(key, v, corr, &mut r)
        }
        ApiKey::DescribeGroups => {
            let mut r =
                groups::describe(b, sess, decode!(p::describe_groups::DescribeGroupsRequest));
            respond(key, v, corr, &mut r)
        }
        ApiKey::ListGroups => {
            let mut r = groups::list(b, sess, decode!(p::list_groups::ListGroupsRequest)).await;
            respond(key, v, corr, &mut r)
        }
        ApiKey::SaslHandshake => {
            let mut r = sasl::handshake(sess, decode!(p::sasl_handshake::SaslHandshakeRequest), v);
            respond(key, v, corr, &mut r)
        }
        ApiKey::SaslAuthenticate => {
            let (mut r, go_on) = sasl::authenticate(
                b,
                sess,
                decode!(p::sasl_authenticate::SaslAuthenticateRequest),
            );
            match respond(key, v, corr, &mut r) {
                Outcome::Respond(bytes, _) if !go_on => Outcome::RespondAndClose(bytes),
                other => other,
            }
        }
        // Answered above, before the header is decoded.
        ApiKey::ApiVersions => Outcome::Close("ApiVersions reached dispatch".into()),
    }
}

fn respond<R: Message>(key: ApiKey, v: i16, corr: i32, r: &mut R) -> Outcome {
    match codec::response(key, v, corr, r) {
        Ok(bytes) => Outcome::Respond(bytes, Reservation::default()),
        Err(e) => {
            // A bug here (a field set that the version lacks): say so loudly.
            error!(api = ?key, version = v, error = %e, "Failed to encode a Kafka response; closing the connection.");
            Outcome::Close(e)
        }
    }
}
