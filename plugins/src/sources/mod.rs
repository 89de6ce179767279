//! Sources: where events enter the agent.

#[cfg(feature = "source-file")]
pub mod file;
#[cfg(feature = "source-mqtt")]
pub mod mqtt;
