//! The `weir` agent: pipeline config, topology, durable channels and runtime.

pub mod admin;
pub mod channel;
pub mod config;
pub mod runtime;
pub mod testing;
