//! SaslHandshake (API 17), versions 0–1 (never flexible).

use super::wire::{Codec, Message, WireError};

/// The mechanism the client wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaslHandshakeRequest {
    pub mechanism: String,
}

impl Message for SaslHandshakeRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.mechanism)
    }
}

/// The answer and the mechanisms offered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaslHandshakeResponse {
    pub error_code: i16,
    pub mechanisms: Vec<String>,
}

impl Message for SaslHandshakeResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.i16(&mut self.error_code)?;
        c.string_array(&mut self.mechanisms)
    }
}
