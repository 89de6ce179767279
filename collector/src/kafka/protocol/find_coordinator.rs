//! FindCoordinator (API 10), versions 0–4 (flexible from 3; v4 batches keys).

use super::wire::{Codec, Message, WireError};

/// The group (or transaction) whose coordinator is asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindCoordinatorRequest {
    pub key: String,
    pub key_type: i8,
    pub coordinator_keys: Vec<String>,
}

impl Message for FindCoordinatorRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v <= 3 {
            c.string(&mut self.key)?;
        }
        if v >= 1 {
            c.i8(&mut self.key_type)?;
        }
        if v >= 4 {
            c.string_array(&mut self.coordinator_keys)?;
        }
        c.tags()
    }
}

/// The coordinator (v0–3) or one per key (v4).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindCoordinatorResponse {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub error_message: Option<String>,
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub coordinators: Vec<Coordinator>,
}

/// One key's coordinator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coordinator {
    pub key: String,
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub error_code: i16,
    pub error_message: Option<String>,
}

impl Message for FindCoordinatorResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 1 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        if v <= 3 {
            c.i16(&mut self.error_code)?;
            if v >= 1 {
                c.nullable_string(&mut self.error_message)?;
            }
            c.i32(&mut self.node_id)?;
            c.string(&mut self.host)?;
            c.i32(&mut self.port)?;
        } else {
            c.array(&mut self.coordinators, v)?;
        }
        c.tags()
    }
}

impl Message for Coordinator {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.key)?;
        c.i32(&mut self.node_id)?;
        c.string(&mut self.host)?;
        c.i32(&mut self.port)?;
        c.i16(&mut self.error_code)?;
        c.nullable_string(&mut self.error_message)?;
        c.tags()
    }
}
