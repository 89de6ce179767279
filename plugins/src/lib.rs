//! Weir's components: sources, transforms and sinks, each a `Config` (serde,
//! `deny_unknown_fields`) with a `build()` that returns the running task.
//! They are compiled in and selected by the YAML `type:` name through
//! [`registry`]; cargo features leave out what a device build does not need.

pub mod backoff;
pub mod component;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod rate_limit;
pub mod registry;
pub mod sinks;
pub mod sources;
pub mod state;
pub mod transforms;

pub use component::*;
