//! SASL/PLAIN onto the collector's principals: the user name is a
//! principal's `name`, the password its token (checked against
//! `token_sha256` like a bearer token). Both handshake versions are
//! answered: v1 carries the token in SaslAuthenticate requests, v0 in the
//! next raw frame (answered with a raw, empty frame on success). A failed
//! authentication is answered, then the connection is closed, as Kafka
//! brokers do. SCRAM is not offered: it needs a salted key per principal,
//! which the collector's config does not hold.

use bytes::Bytes;
use tracing::{info, warn};

use super::connection::{Sasl, Session};
use super::errors::code;
use super::protocol::sasl_authenticate::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use super::protocol::sasl_handshake::{SaslHandshakeRequest, SaslHandshakeResponse};
use super::Broker;
use crate::auth::{Authenticator, Principal};

/// The one mechanism offered.
pub const PLAIN: &str = "PLAIN";

/// SaslHandshake: picks the mechanism.
pub fn handshake(sess: &mut Session, req: SaslHandshakeRequest, v: i16) -> SaslHandshakeResponse {
    let answer = |error_code: i16| SaslHandshakeResponse {
        error_code,
        mechanisms: vec![PLAIN.to_owned()],
    };
    if sess.sasl != Sasl::None {
        return answer(code::ILLEGAL_SASL_STATE);
    }
    if req.mechanism != PLAIN {
        return answer(code::UNSUPPORTED_SASL_MECHANISM);
    }
    sess.sasl = if v == 0 {
        Sasl::RawNext
    } else {
        Sasl::AuthenticateNext
    };
    answer(code::NONE)
}

/// Why PLAIN credentials were refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("malformed SASL/PLAIN message")]
    Malformed,
    #[error("unknown user or wrong password")]
    BadCredentials,
}

/// Checks a PLAIN message (`authzid NUL user NUL password`).
pub fn check_plain(auth: &Authenticator, msg: &[u8]) -> Result<Principal, PlainError> {
    let mut parts = msg.split(|b| *b == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let user = std::str::from_utf8(user).map_err(|_| PlainError::Malformed)?;
    let pass = std::str::from_utf8(pass).map_err(|_| PlainError::Malformed)?;
    if !authz.is_empty() && authz != user.as_bytes() {
        return Err(PlainError::BadCredentials);
    }
    if auth.is_open() {
        return Ok(Principal::anonymous());
    }
    match auth.principal_for_token(pass) {
        Some(p) if p.name() == user => Ok(p),
        _ => Err(PlainError::BadCredentials),
    }
}

/// SaslAuthenticate. Returns the answer and whether the connection goes on.
pub fn authenticate(
    b: &Broker,
    sess: &mut Session,
    req: SaslAuthenticateRequest,
) -> (SaslAuthenticateResponse, bool) {
    if sess.sasl != Sasl::AuthenticateNext {
        return (
            SaslAuthenticateResponse {
                error_code: code::ILLEGAL_SASL_STATE,
                error_message: Some("SaslHandshake first".into()),
                ..Default::default()
            },
            false,
        );
    }
    match finish(b, sess, &req.auth_bytes) {
        Ok(()) => (SaslAuthenticateResponse::default(), true),
        Err(e) => (
            SaslAuthenticateResponse {
                error_code: code::SASL_AUTHENTICATION_FAILED,
                error_message: Some(format!("authentication failed: {e}")),
                ..Default::default()
            },
            false,
        ),
    }
}

/// A raw v0 token frame: `Some(empty answer)` on success, `None` to close.
pub fn raw(b: &Broker, sess: &mut Session, token: &Bytes) -> Option<Bytes> {
    finish(b, sess, token)
        .ok()
        .map(|()| Bytes::from_static(&[0, 0, 0, 0]))
}

fn finish(b: &Broker, sess: &mut Session, msg: &[u8]) -> Result<(), PlainError> {
    match check_plain(&b.auth, msg) {
        Ok(p) => {
            info!(peer = %sess.peer, principal = p.name(), "Kafka client authenticated (SASL/PLAIN).");
            sess.principal = p;
            sess.sasl = Sasl::Done;
            Ok(())
        }
        Err(e) => {
            warn!(peer = %sess.peer, error = %e, "Kafka SASL/PLAIN authentication failed.");
            sess.sasl = Sasl::Failed;
            Err(e)
        }
    }
}
