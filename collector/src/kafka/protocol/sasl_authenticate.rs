//! SaslAuthenticate (API 36), versions 0–2 (flexible from 2).

use bytes::Bytes;

use super::wire::{Codec, Message, WireError};

/// The mechanism's message (for PLAIN: `authzid NUL user NUL password`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaslAuthenticateRequest {
    pub auth_bytes: Bytes,
}

impl Message for SaslAuthenticateRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.bytes(&mut self.auth_bytes)?;
        c.tags()
    }
}

/// The outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaslAuthenticateResponse {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub auth_bytes: Bytes,
    pub session_lifetime_ms: i64,
}

impl Message for SaslAuthenticateResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i16(&mut self.error_code)?;
        c.nullable_string(&mut self.error_message)?;
        c.bytes(&mut self.auth_bytes)?;
        if v >= 1 {
            c.i64(&mut self.session_lifetime_ms)?;
        }
        c.tags()
    }
}
