//! Sources: where events enter the agent.

#[cfg(feature = "source-file")]
pub mod file;
#[cfg(feature = "source-modbus")]
pub mod modbus;
#[cfg(feature = "source-mqtt")]
pub mod mqtt;
#[cfg(feature = "source-serial")]
pub mod serial;
#[cfg(any(feature = "source-serial", feature = "source-modbus"))]
pub mod serial_port;
