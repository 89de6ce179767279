//! DescribeConfigs (API 32), versions 1–4 (flexible from 4).

use super::wire::{Codec, Message, WireError};

/// The resources whose settings are asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeConfigsRequest {
    pub resources: Vec<DescribeConfigsResource>,
    pub include_synonyms: bool,
    pub include_documentation: bool,
}

/// One resource (2: topic, 4: broker) and the keys wanted (null: all).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeConfigsResource {
    pub resource_type: i8,
    pub resource_name: String,
    pub configuration_keys: Option<Vec<String>>,
}

impl Message for DescribeConfigsRequest {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.array(&mut self.resources, v)?;
        if v >= 1 {
            c.bool(&mut self.include_synonyms)?;
        }
        if v >= 3 {
            c.bool(&mut self.include_documentation)?;
        }
        c.tags()
    }
}

impl Message for DescribeConfigsResource {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.i8(&mut self.resource_type)?;
        c.string(&mut self.resource_name)?;
        c.nullable_string_array(&mut self.configuration_keys)?;
        c.tags()
    }
}

/// Each resource's settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeConfigsResponse {
    pub throttle_time_ms: i32,
    pub results: Vec<DescribeConfigsResult>,
}

/// One resource's settings, or why not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeConfigsResult {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub resource_type: i8,
    pub resource_name: String,
    pub configs: Vec<DescribeConfigsResourceResult>,
}

/// One setting.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeConfigsResourceResult {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    /// Where the value comes from (4: static broker config).
    pub config_source: i8,
    pub is_sensitive: bool,
    pub synonyms: Vec<DescribeConfigsSynonym>,
    pub config_type: i8,
    pub documentation: Option<String>,
}

impl Default for DescribeConfigsResourceResult {
    fn default() -> Self {
        DescribeConfigsResourceResult {
            name: String::new(),
            value: None,
            read_only: false,
            config_source: -1,
            is_sensitive: false,
            synonyms: Vec::new(),
            config_type: 0,
            documentation: None,
        }
    }
}

/// A synonym of a setting (none listed here).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeConfigsSynonym {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
}

impl Message for DescribeConfigsResponse {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i32(&mut self.throttle_time_ms)?;
        c.array(&mut self.results, v)?;
        c.tags()
    }
}

impl Message for DescribeConfigsResult {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.i16(&mut self.error_code)?;
        c.nullable_string(&mut self.error_message)?;
        c.i8(&mut self.resource_type)?;
        c.string(&mut self.resource_name)?;
        c.array(&mut self.configs, v)?;
        c.tags()
    }
}

impl Message for DescribeConfigsResourceResult {
    fn visit<C: Codec>(&mut self, c: &mut C, v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.nullable_string(&mut self.value)?;
        c.bool(&mut self.read_only)?;
        if v >= 1 {
            c.i8(&mut self.config_source)?;
        }
        c.bool(&mut self.is_sensitive)?;
        if v >= 1 {
            c.array(&mut self.synonyms, v)?;
        }
        if v >= 3 {
            c.i8(&mut self.config_type)?;
            c.nullable_string(&mut self.documentation)?;
        }
        c.tags()
    }
}

impl Message for DescribeConfigsSynonym {
    fn visit<C: Codec>(&mut self, c: &mut C, _v: i16) -> Result<(), WireError> {
        c.string(&mut self.name)?;
        c.nullable_string(&mut self.value)?;
        c.i8(&mut self.source)?;
        c.tags()
    }
}
