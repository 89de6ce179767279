//! Sources: where events enter the agent.

#[cfg(feature = "source-file")]
pub mod file;
