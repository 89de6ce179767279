//! Serial port settings shared by the `serial` source and Modbus RTU, and
//! opening a port with them (tokio-serial).
//!
//! On a pseudo-terminal the settings are accepted and stored but change
//! nothing: a pty moves bytes as fast as both ends go, whatever the baud.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

/// Bits per character, written as a number: 5, 6, 7 or 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "u8", into = "u8")]
pub enum DataBits {
    Five,
    Six,
    Seven,
    #[default]
    Eight,
}

impl TryFrom<u8> for DataBits {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        Ok(match n {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            8 => DataBits::Eight,
            n => return Err(format!("data bits must be 5, 6, 7 or 8, not {n}")),
        })
    }
}

impl From<DataBits> for u8 {
    fn from(d: DataBits) -> u8 {
        match d {
            DataBits::Five => 5,
            DataBits::Six => 6,
            DataBits::Seven => 7,
            DataBits::Eight => 8,
        }
    }
}

/// Parity bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    #[default]
    None,
    Odd,
    Even,
}

/// Stop bits, written as a number: 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "u8", into = "u8")]
pub enum StopBits {
    #[default]
    One,
    Two,
}

impl TryFrom<u8> for StopBits {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        match n {
            1 => Ok(StopBits::One),
            2 => Ok(StopBits::Two),
            n => Err(format!("stop bits must be 1 or 2, not {n}")),
        }
    }
}

impl From<StopBits> for u8 {
    fn from(s: StopBits) -> u8 {
        match s {
            StopBits::One => 1,
            StopBits::Two => 2,
        }
    }
}

/// Flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FlowControl {
    /// None: when the agent stops reading, the driver's buffer overflows
    /// and bytes are lost.
    #[default]
    None,
    /// XON/XOFF characters (only for text: a binary stream may contain them).
    Software,
    /// RTS/CTS lines: the device pauses while the agent is not reading.
    Hardware,
}

/// How to talk to a serial port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSettings {
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
    pub flow_control: FlowControl,
}

impl Default for PortSettings {
    fn default() -> Self {
        PortSettings {
            baud: 9600,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
            flow_control: FlowControl::None,
        }
    }
}

/// Opens `path` for exclusive use (TIOCEXCL: a second opener gets EBUSY)
/// with `settings`, in raw mode. Needs a Tokio runtime.
pub fn open(path: &str, s: &PortSettings) -> Result<SerialStream, tokio_serial::Error> {
    let data_bits = match s.data_bits {
        DataBits::Five => tokio_serial::DataBits::Five,
        DataBits::Six => tokio_serial::DataBits::Six,
        DataBits::Seven => tokio_serial::DataBits::Seven,
        DataBits::Eight => tokio_serial::DataBits::Eight,
    };
    let parity = match s.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Odd => tokio_serial::Parity::Odd,
        Parity::Even => tokio_serial::Parity::Even,
    };
    let stop_bits = match s.stop_bits {
        StopBits::One => tokio_serial::StopBits::One,
        StopBits::Two => tokio_serial::StopBits::Two,
    };
    let flow = match s.flow_control {
        FlowControl::None => tokio_serial::FlowControl::None,
        FlowControl::Software => tokio_serial::FlowControl::Software,
        FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
    };
    tokio_serial::new(path, s.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(flow)
        // Only used by blocking reads, which an async stream never makes.
        .timeout(Duration::from_millis(100))
        .open_native_async()
}

/// Highest baud accepted in a config (drivers refuse what they cannot do).
pub const MAX_BAUD: u32 = 12_000_000;
