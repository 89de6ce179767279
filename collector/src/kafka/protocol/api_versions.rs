//! ApiVersions (API 18), versions 0–3 (flexible from 3; its response
//! header is always v0).

use super::wire::{Codec, Message, WireError};

/// The request: empty before v3, then the client's name and version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiVersionsRequest {
    pub client_software_name: String,
    pub client_software_version: String,
}

impl Message for ApiVersionsRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        if v >= 3 {
            c.string(&mut self.client_software_name)?;
            c.string(&mut self.client_software_version)?;
        }
        c.tags()
    }
}

/// The APIs and version ranges answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiVersionsResponse {
    pub error_code: i16,
    pub api_keys: Vec<ApiVersion>,
    pub throttle_time_ms: i32,
}

/// One API's range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiVersion {
    pub api_key: i16,
    pub min_version: i16,
    pub max_version: i16,
}

impl Message for ApiVersionsResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i16(&mut self.error_code)?;
        c.array(&mut self.api_keys, v)?;
        if v >= 1 {
            c.i32(&mut self.throttle_time_ms)?;
        }
        c.tags()
    }
}

impl Message for ApiVersion {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.i16(&mut self.api_key)?;
        c.i16(&mut self.min_version)?;
        c.i16(&mut self.max_version)?;
        c.tags()
    }
}
