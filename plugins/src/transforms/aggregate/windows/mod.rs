//! Which windows an event falls in, when a window closes, and the open
//! windows' state.
//!
//! Every window has a *close time*; it is emitted, once, when the watermark
//! reaches it (see `time.rs` for the watermark), and an event is *late*
//! when a window it belongs in has already been emitted. Times are ns since
//! the epoch; `L` is `allowed_lateness` (0 in processing time).
//!
//! | kind | windows of an event at `t` | window | close time | late when |
//! |---|---|---|---|---|
//! | tumbling | the one with `start ≤ t < start + size`, starts at multiples of `size` | `[start, start + size)` | `end + L` | its window closed |
//! | hopping | every one with `start ≤ t < start + size`, starts at multiples of `hop` | `[start, start + size)` | `end + L` | its earliest window closed (it then joins none) |
//! | session | its group's open session within `gap` of it, merging sessions it bridges, else a new one | `[first event, last event + gap)` | `end + L` | no open session takes it and a new one would close at once |
//! | sliding | one window per event, ending at it | `(t − size, t]` or its group's last `count` events up to it | `t + L` | `t + L < watermark` |
//!
//! Windows are aligned to the Unix epoch. When several windows close at
//! once they are emitted in order of close time, then group key bytes, so
//! a replay emits the same events in the same order.

mod fixed;
mod session;
mod sliding;

use super::codec::{DecodeError, Reader, Writer};
use super::functions::{Acc, Input, Layout};

pub use fixed::Fixed;
pub use session::Sessions;
pub use sliding::Sliding;

/// A group key (see `codec::group_key`).
pub type Key = Box<[u8]>;

/// Window kind and sizes, in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    Tumbling {
        size: i64,
    },
    Hopping {
        size: i64,
        hop: i64,
    },
    Sliding {
        size: Option<i64>,
        count: Option<usize>,
        max_events: usize,
    },
    Session {
        gap: i64,
    },
}

impl WindowSpec {
    /// A text that changes whenever the meaning of saved windows does.
    pub fn shape(&self) -> String {
        match self {
            WindowSpec::Tumbling { size } => format!("tumbling({size})"),
            WindowSpec::Hopping { size, hop } => format!("hopping({size},{hop})"),
            WindowSpec::Sliding { size, count, .. } => format!("sliding({size:?},{count:?})"),
            WindowSpec::Session { gap } => format!("session({gap})"),
        }
    }
}

/// Why an event was not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// A window it belongs in was already emitted.
    Late,
    /// Counting it needs more open groups than `max_groups`.
    MaxGroups,
    /// Its group already holds `max_events` events (sliding windows).
    MaxEvents,
}

/// One event, as the windows see it.
pub struct Arrival<'a> {
    /// Event time (processing time: the clock).
    pub t: i64,
    /// Arrival number: orders events of equal time.
    pub seq: u64,
    pub key: &'a [u8],
    pub input: &'a Input<'a>,
}

/// Receives each closed window: start, end, group key, values.
pub type Sink<'s> = &'s mut dyn FnMut(i64, i64, &[u8], &Acc);

/// The open windows of one aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Windows {
    Fixed(Fixed),
    Session(Sessions),
    Sliding(Sliding),
}

impl Windows {
    /// No open windows, for `spec`, keeping windows `lateness` ns past their end.
    pub fn new(spec: WindowSpec, lateness: i64) -> Windows {
        match spec {
            WindowSpec::Tumbling { size } => Windows::Fixed(Fixed::new(size, size, lateness)),
            WindowSpec::Hopping { size, hop } => Windows::Fixed(Fixed::new(size, hop, lateness)),
            WindowSpec::Session { gap } => Windows::Session(Sessions::new(gap, lateness)),
            WindowSpec::Sliding {
                size,
                count,
                max_events,
            } => Windows::Sliding(Sliding::new(size, count, max_events, lateness)),
        }
    }

    /// Counts an event in its windows, or says why not (and changes nothing).
    pub fn accept(
        &mut self,
        a: &Arrival,
        layout: &Layout,
        watermark: i64,
        max_groups: usize,
    ) -> Result<(), Reject> {
        match self {
            Windows::Fixed(w) => w.accept(a, layout, watermark, max_groups),
            Windows::Session(w) => w.accept(a, layout, watermark, max_groups),
            Windows::Sliding(w) => w.accept(a, watermark, max_groups),
        }
    }

    /// Emits, in order, every window whose close time is at or below `watermark`.
    pub fn close(&mut self, watermark: i64, layout: &Layout, sink: Sink) {
        match self {
            Windows::Fixed(w) => w.close(watermark, sink),
            Windows::Session(w) => w.close(watermark, sink),
            Windows::Sliding(w) => w.close(watermark, layout, sink),
        }
    }

    /// The earliest close time of an open window.
    pub fn next_close(&self) -> Option<i64> {
        match self {
            Windows::Fixed(w) => w.next_close(),
            Windows::Session(w) => w.next_close(),
            Windows::Sliding(w) => w.next_close(),
        }
    }

    /// Open groups: (window, group) pairs, open sessions, or groups holding
    /// sliding-window events; what `max_groups` bounds.
    pub fn open(&self) -> usize {
        match self {
            Windows::Fixed(w) => w.open(),
            Windows::Session(w) => w.open(),
            Windows::Sliding(w) => w.open(),
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        match self {
            Windows::Fixed(x) => x.encode(w),
            Windows::Session(x) => x.encode(w),
            Windows::Sliding(x) => x.encode(w),
        }
    }

    /// Decodes windows saved by `encode` from the same `spec`; `valid_key`
    /// checks each group key.
    pub fn decode(
        r: &mut Reader,
        spec: WindowSpec,
        lateness: i64,
        layout: &Layout,
        valid_key: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Windows, DecodeError> {
        let mut w = Windows::new(spec, lateness);
        match &mut w {
            Windows::Fixed(x) => x.decode(r, layout, valid_key)?,
            Windows::Session(x) => x.decode(r, layout, valid_key)?,
            Windows::Sliding(x) => x.decode(r, layout, valid_key)?,
        }
        Ok(w)
    }
}

/// Reads a group key and checks it.
fn read_key(r: &mut Reader, valid_key: &dyn Fn(&[u8]) -> bool) -> Result<Key, DecodeError> {
    let k = r.bytes("group key")?;
    if !valid_key(k) {
        return Err(DecodeError::Invalid("group key"));
    }
    Ok(k.into())
}
