//! `framing: frame`: Weir device frames into events.
//!
//! The deframer (weir-embedded) cuts the stream at 0x00 delimiters and
//! checks each chunk's COBS and CRC-32C; a damaged chunk is dropped whole,
//! counted by reason, its bytes added to `weir_serial_garbage_bytes_total`,
//! and reading resumes at the next delimiter. A chunk that passes the link
//! checks but that the decoder refuses (another format version, a reserved
//! flag) arrived intact from a device that speaks something else: it goes to
//! `<id>.errors` with its bytes in hex.
//!
//! An event per frame: `device_id`, `sequence`, `device_time` (a device with
//! a real-time clock) or `device_uptime_us` (one without), and one field per
//! reading named by `channels` or `ch<id>`. Sequence numbers go through the
//! [`SequenceTracker`]: gaps count lost frames, replays are dropped.

use std::collections::BTreeMap;

use weir_core::event::{Fields, Value};
use weir_embedded::{decode, DecodeError, DefaultDeframer, Frame, Timestamp};

use super::batch::Emit;
use super::sequence::{SequenceTracker, Verdict};

/// Decodes frames and tracks each device's sequence numbers.
pub struct FrameDecoder {
    deframer: Box<DefaultDeframer>,
    /// Garbage already counted in metrics.
    garbage_reported: u64,
    tracker: SequenceTracker,
    names: BTreeMap<u16, String>,
}

impl FrameDecoder {
    /// A decoder naming channels by `names` (others `ch<id>`).
    pub fn new(names: BTreeMap<u16, String>) -> FrameDecoder {
        FrameDecoder {
            deframer: Box::default(),
            garbage_reported: 0,
            tracker: SequenceTracker::default(),
            names,
        }
    }

    /// Decodes `bytes`; a partial frame waits for the next call.
    pub fn feed(&mut self, mut bytes: &[u8], emit: &mut Emit<'_>) {
        let FrameDecoder {
            deframer,
            tracker,
            names,
            ..
        } = self;
        while let Some(chunk) = deframer.feed(&mut bytes) {
            emit.records += 1;
            let body = match chunk {
                Ok(body) => body,
                Err(e) => {
                    emit.metrics.frame_error(e.reason());
                    continue;
                }
            };
            match decode(body) {
                Ok(frame) => {
                    let crc = crc32c::crc32c(body);
                    accept(&frame, crc, tracker, names, emit);
                }
                Err(e) => refuse(body, e, emit),
            }
        }
        self.report_garbage(emit);
    }

    /// Drops a partial frame (the port was reopened); its bytes count as garbage.
    pub fn reset(&mut self, emit: &mut Emit<'_>) {
        self.deframer.reset();
        self.report_garbage(emit);
    }

    fn report_garbage(&mut self, emit: &mut Emit<'_>) {
        let total = self.deframer.garbage_bytes();
        emit.metrics
            .garbage_bytes
            .add(total - self.garbage_reported);
        self.garbage_reported = total;
    }
}

fn accept(
    frame: &Frame<'_>,
    crc: u32,
    tracker: &mut SequenceTracker,
    names: &BTreeMap<u16, String>,
    emit: &mut Emit<'_>,
) {
    let h = frame.header;
    match tracker.observe(h.device_id, h.sequence, crc) {
        Verdict::Accept { lost } => emit.metrics.lost_frames.add(lost),
        Verdict::Duplicate => {
            emit.metrics.duplicate_frames.inc();
            return;
        }
        Verdict::Restart => emit.metrics.device_restarts.inc(),
        Verdict::Untracked => emit.metrics.untracked_frames.inc(),
    }
    let mut f = Fields::with_capacity(4 + frame.reading_count());
    f.insert("device_id", unsigned(h.device_id));
    f.insert("sequence", Value::Int(i64::from(h.sequence)));
    match h.timestamp {
        Timestamp::UnixMicros(us) => {
            let ns = i64::try_from(us.saturating_mul(1000)).unwrap_or(i64::MAX);
            f.insert("device_time", Value::Timestamp(ns));
        }
        Timestamp::UptimeMicros(us) => {
            f.insert("device_uptime_us", unsigned(us));
        }
        Timestamp::None => {}
    }
    for r in frame.readings() {
        let name = match names.get(&r.channel) {
            Some(n) => n.clone(),
            None => format!("ch{}", r.channel),
        };
        f.insert(name, value(r.value));
    }
    emit.event(f);
}

fn refuse(body: &[u8], e: DecodeError, emit: &mut Emit<'_>) {
    let reason = e.reason();
    emit.metrics.frame_error(reason);
    let mut original = Fields::with_capacity(2);
    original.insert("frame_hex", Value::String(hex(body)));
    original.insert("frame_len", Value::Int(body.len() as i64));
    emit.dead(reason, &e.to_string(), original);
}

/// A u64 as an integer when it fits, else its decimal text (JSON consumers
/// and the event model have signed 64-bit integers).
fn unsigned(v: u64) -> Value {
    match i64::try_from(v) {
        Ok(i) => Value::Int(i),
        Err(_) => Value::String(v.to_string()),
    }
}

fn value(v: weir_embedded::Value<'_>) -> Value {
    use weir_embedded::Value as V;
    match v {
        V::Bool(b) => Value::Bool(b),
        V::U32(n) => Value::Int(i64::from(n)),
        V::U64(n) => unsigned(n),
        V::I32(n) => Value::Int(i64::from(n)),
        V::I64(n) => Value::Int(n),
        // Through its shortest decimal form, so that 0.1f32 is 0.1 and not
        // 0.10000000149011612: what the device meant, not the widening.
        V::F32(x) => Value::Float(x.to_string().parse().unwrap_or(f64::from(x))),
        V::F64(x) => Value::Float(x),
        V::Bytes(b) => Value::String(hex(b)),
        V::Str(s) => Value::String(s.to_owned()),
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}
