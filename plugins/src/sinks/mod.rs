//! Sinks: where events leave the agent.

#[cfg(feature = "sink-collector")]
pub mod collector;
pub mod delivery;
#[cfg(feature = "sink-file")]
pub mod file;
#[cfg(any(feature = "sink-file", feature = "sink-stdout"))]
mod lines;
#[cfg(feature = "sink-mqtt")]
pub mod mqtt;
#[cfg(feature = "sink-stdout")]
pub mod stdout;
