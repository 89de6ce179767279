//! The frame's contents: header fields and typed readings, and how one
//! reading is laid out: `channel (varint u16) ‖ tag (u8) ‖ payload`.

// Reading runs on untrusted input: no indexing that could panic.
#![deny(clippy::indexing_slicing)]

use crate::varint::{unzigzag, zigzag, Reader, Writer};
use crate::DecodeError;

/// Value tags. 0x00 is never a tag, so a stray zero (which COBS removed from
/// the wire anyway) cannot be taken for a value.
pub(crate) mod tag {
    pub const FALSE: u8 = 0x01;
    pub const TRUE: u8 = 0x02;
    pub const U32: u8 = 0x03;
    pub const U64: u8 = 0x04;
    pub const I32: u8 = 0x05;
    pub const I64: u8 = 0x06;
    pub const F32: u8 = 0x07;
    pub const F64: u8 = 0x08;
    pub const BYTES: u8 = 0x09;
    pub const STR: u8 = 0x0A;
}

/// When a frame's readings were taken, by the device's own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timestamp {
    /// The device has no clock; the receiver stamps the frame on arrival.
    None,
    /// Microseconds since the Unix epoch (UTC): a device with a real-time
    /// clock. Microseconds rather than milliseconds because sensors sample
    /// at kHz rates; the varint is 8 bytes either way for current dates.
    UnixMicros(u64),
    /// Microseconds since the device booted: a device without a real-time
    /// clock that still orders and spaces its readings. The receiver anchors
    /// it to its own clock (and must expect it to restart from zero).
    UptimeMicros(u64),
}

/// The fields before the readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Who sent the frame. 64 bits so that a hardware identity (an EUI-64,
    /// a MAC-48, a hash of an MCU's unique id) can be used as it is, without
    /// a registry of assigned numbers; as a varint a small hand-assigned id
    /// still costs one or two bytes.
    pub device_id: u64,
    /// Per device, +1 for each frame, wrapping from `u32::MAX` to 0. A gap
    /// tells the receiver how many frames were lost; a jump back (other than
    /// the wrap) tells it the device restarted.
    pub sequence: u32,
    /// When the readings were taken.
    pub timestamp: Timestamp,
}

/// One typed value. Strings and bytes borrow from the frame buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A boolean (tag 0x01 false, 0x02 true: no payload).
    Bool(bool),
    /// An unsigned 32-bit integer (varint).
    U32(u32),
    /// An unsigned 64-bit integer (varint).
    U64(u64),
    /// A signed 32-bit integer (zigzag varint).
    I32(i32),
    /// A signed 64-bit integer (zigzag varint).
    I64(i64),
    /// An IEEE 754 binary32 (4 bytes, little-endian).
    F32(f32),
    /// An IEEE 754 binary64 (8 bytes, little-endian).
    F64(f64),
    /// Raw bytes (varint length, then the bytes).
    Bytes(&'a [u8]),
    /// UTF-8 text (varint length, then the bytes).
    Str(&'a str),
}

/// One reading: a channel (what was measured) and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading<'a> {
    /// The channel: the device's own numbering of its sensors and quantities.
    /// 16 bits because register-mapped devices (Modbus and the like) number
    /// past 255; channels below 128 still cost one byte.
    pub channel: u16,
    /// The value read.
    pub value: Value<'a>,
}

impl<'a> Reading<'a> {
    /// A reading of `value` on `channel`.
    pub const fn new(channel: u16, value: Value<'a>) -> Self {
        Self { channel, value }
    }
}

/// Writes one reading; the writer records how much room it needed.
pub(crate) fn write_reading(w: &mut Writer<'_>, channel: u16, value: &Value<'_>) {
    w.varint(u64::from(channel));
    match *value {
        Value::Bool(false) => w.byte(tag::FALSE),
        Value::Bool(true) => w.byte(tag::TRUE),
        Value::U32(v) => {
            w.byte(tag::U32);
            w.varint(u64::from(v));
        }
        Value::U64(v) => {
            w.byte(tag::U64);
            w.varint(v);
        }
        Value::I32(v) => {
            w.byte(tag::I32);
            w.varint(zigzag(i64::from(v)));
        }
        Value::I64(v) => {
            w.byte(tag::I64);
            w.varint(zigzag(v));
        }
        Value::F32(v) => {
            w.byte(tag::F32);
            w.bytes(&v.to_bits().to_le_bytes());
        }
        Value::F64(v) => {
            w.byte(tag::F64);
            w.bytes(&v.to_bits().to_le_bytes());
        }
        Value::Bytes(b) => {
            w.byte(tag::BYTES);
            w.varint(b.len() as u64);
            w.bytes(b);
        }
        Value::Str(s) => {
            w.byte(tag::STR);
            w.varint(s.len() as u64);
            w.bytes(s.as_bytes());
        }
    }
}

/// Reads one reading, checking every field against its type.
pub(crate) fn read_reading<'a>(r: &mut Reader<'a>) -> Result<Reading<'a>, DecodeError> {
    let channel = r.varint_max(u64::from(u16::MAX), "channel")? as u16;
    let value = match r.byte()? {
        tag::FALSE => Value::Bool(false),
        tag::TRUE => Value::Bool(true),
        tag::U32 => Value::U32(r.varint_max(u64::from(u32::MAX), "u32 value")? as u32),
        tag::U64 => Value::U64(r.varint()?),
        tag::I32 => {
            let v = unzigzag(r.varint()?);
            Value::I32(
                i32::try_from(v).map_err(|_| DecodeError::OutOfRange { field: "i32 value" })?,
            )
        }
        tag::I64 => Value::I64(unzigzag(r.varint()?)),
        tag::F32 => Value::F32(f32::from_bits(u32::from_le_bytes(r.array()?))),
        tag::F64 => Value::F64(f64::from_bits(u64::from_le_bytes(r.array()?))),
        tag::BYTES => Value::Bytes(read_len_prefixed(r)?),
        tag::STR => {
            let bytes = read_len_prefixed(r)?;
            Value::Str(core::str::from_utf8(bytes).map_err(|_| DecodeError::BadUtf8)?)
        }
        other => return Err(DecodeError::BadValueTag(other)),
    };
    Ok(Reading { channel, value })
}

fn read_len_prefixed<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let len = r.varint()?;
    // A length past the end is truncation, whatever its size: no cast can wrap.
    let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
    r.take(len)
}
