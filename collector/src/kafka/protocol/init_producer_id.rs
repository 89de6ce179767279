//! InitProducerId (API 22), versions 0–4 (flexible from 2).

use super::wire::{Codec, Message, WireError};

/// A request for a producer id (or, v3+, the next epoch of one).
#[derive(Debug, Clone, PartialEq)]
pub struct InitProducerIdRequest {
    pub transactional_id: Option<String>,
    pub transaction_timeout_ms: i32,
    /// -1: a new id (always, before v3).
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl Default for InitProducerIdRequest {
    fn default() -> Self {
        InitProducerIdRequest {
            transactional_id: None,
            transaction_timeout_ms: 0,
            producer_id: -1,
            producer_epoch: -1,
        }
    }
}

impl Message for InitProducerIdRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.nullable_string(&mut self.transactional_id)?;
        c.i32(&mut self.transaction_timeout_ms)?;
        if v >= 3 {
            c.i64(&mut self.producer_id)?;
            c.i16(&mut self.producer_epoch)?;
        }
        c.tags()
    }
}

/// The id and epoch issued.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InitProducerIdResponse {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl Message for InitProducerIdResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.i32(&mut self.throttle_time_ms)?;
        c.i16(&mut self.error_code)?;
        c.i64(&mut self.producer_id)?;
        c.i16(&mut self.producer_epoch)?;
        c.tags()
    }
}
