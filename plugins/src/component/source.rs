//! What a source hands the runtime, and the marks that let a channel
//! recognise an event it already holds.
//!
//! A source that can deliver an event twice (a file re-read from an older
//! checkpoint after a crash, an MQTT broker redelivering a message whose
//! acknowledgement was lost) names the *stream* its events come from and
//! gives each event a [`Mark`]. Every durable holder downstream (a sink's
//! disk spool, a stateful transform's input log) commits the marks of what it
//! appended in the same write as the events, and skips an event whose mark
//! says it is already held. Two kinds of stream cover the sources we have:
//!
//! | kind | mark | held state per stream | skipped when |
//! |---|---|---|---|
//! | [`StreamKind::Ordered`] | position just past the event, and `sub` | the highest `(pos, sub)` committed | `(pos, sub) <= held` |
//! | [`StreamKind::Keyed`] | a reusable key (MQTT packet id), a fingerprint of the message, `sub`, `redelivery` | the keys in flight, each with its fingerprint and highest `sub` | `redelivery` and the key is held with the same fingerprint and `sub <= held sub` |
//!
//! `sub` numbers the events derived from one input event (a transform may
//! emit several), so a batch cut short by a full channel resumes exactly.
//! A keyed stream's source releases a key once its peer will never deliver
//! that message again (`releases`), and the holder forgets it.

use std::borrow::Cow;
use std::sync::Arc;

use weir_core::lines::LineBatch;
use weir_core::Event;

use super::BoxFuture;

/// How a stream identifies its events; decides how redeliveries are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Positions only grow along the stream (a file's byte offsets, a
    /// stateful transform's output sequence).
    Ordered,
    /// Messages carry a key that is reused once released (MQTT packet ids).
    Keyed,
}

/// A replayable stream: a stable name (kept across restarts, starting with
/// `<source id>/` so the runtime can tell whose stream it is) and its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Stream {
    pub name: Arc<str>,
    pub kind: StreamKind,
}

impl Stream {
    /// An ordered stream.
    pub fn ordered(name: impl Into<Arc<str>>) -> Stream {
        Stream {
            name: name.into(),
            kind: StreamKind::Ordered,
        }
    }

    /// A keyed stream.
    pub fn keyed(name: impl Into<Arc<str>>) -> Stream {
        Stream {
            name: name.into(),
            kind: StreamKind::Keyed,
        }
    }
}

/// Where an event stands in its stream (see the module docs for each kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mark {
    /// Ordered: the position just past the event. Keyed: the message key.
    pub pos: u64,
    /// Index among the events derived from one input event.
    pub sub: u32,
    /// Keyed: fingerprint of the message (a hash of its topic and payload).
    pub fp: u64,
    /// Keyed: the peer says this may be a repeat (MQTT's DUP flag). A first
    /// delivery is never skipped, whatever key it reuses.
    pub redelivery: bool,
}

impl Mark {
    /// The mark of an event in an ordered stream.
    pub fn at(pos: u64) -> Mark {
        Mark {
            pos,
            ..Mark::default()
        }
    }

    /// The mark of a message in a keyed stream.
    pub fn keyed(key: u64, fp: u64, redelivery: bool) -> Mark {
        Mark {
            pos: key,
            sub: 0,
            fp,
            redelivery,
        }
    }

    /// Whether `self` and `other` mark events derived from the same input.
    pub fn same_input(&self, other: &Mark) -> bool {
        self.pos == other.pos && self.fp == other.fp
    }
}

/// Events a source hands to the runtime in one piece, all from one stream.
///
/// The events come either as `events` or, from a line-oriented source, as
/// `lines` (ranges of one read buffer, no `Event` per line): a disk channel
/// writes lines straight into its record form, and everything that needs
/// events materialises them with [`SourceBatch::events_from`] or
/// [`SourceBatch::into_events`]. A batch with `lines` has no `events`.
/// Code that reads a batch counts with [`SourceBatch::len`], never
/// `events.len()`.
#[derive(Debug, Clone, Default)]
pub struct SourceBatch {
    /// The replayable stream the events come from; `None` for a source that
    /// cannot deliver anything twice (a serial line), whose events carry no marks.
    pub stream: Option<Stream>,
    pub events: Vec<Event>,
    /// The events as lines of one buffer, instead of `events`.
    /// (Boxed: most batches carry events, and a batch moves through channels.)
    pub lines: Option<Box<LineBatch>>,
    /// One per event when `stream` is set, else empty.
    pub marks: Vec<Mark>,
    /// Keyed streams: keys the peer will not deliver again; holders forget
    /// them before taking this batch's events.
    pub releases: Vec<u64>,
}

impl SourceBatch {
    /// Events without marks, from a source that cannot replay.
    pub fn unmarked(events: Vec<Event>) -> SourceBatch {
        SourceBatch {
            events,
            ..SourceBatch::default()
        }
    }

    /// Events of an ordered stream with the position just past each.
    pub fn ordered(stream: impl Into<Arc<str>>, events: Vec<Event>, ends: &[u64]) -> SourceBatch {
        debug_assert_eq!(events.len(), ends.len());
        SourceBatch {
            stream: Some(Stream::ordered(stream)),
            events,
            marks: ends.iter().map(|&p| Mark::at(p)).collect(),
            ..SourceBatch::default()
        }
    }

    /// Lines of an ordered stream with the position just past each.
    pub fn ordered_lines(
        stream: impl Into<Arc<str>>,
        lines: LineBatch,
        ends: &[u64],
    ) -> SourceBatch {
        debug_assert_eq!(lines.len(), ends.len());
        SourceBatch {
            stream: Some(Stream::ordered(stream)),
            lines: Some(Box::new(lines)),
            marks: ends.iter().map(|&p| Mark::at(p)).collect(),
            ..SourceBatch::default()
        }
    }

    /// Number of events (or lines).
    pub fn len(&self) -> usize {
        self.events.len() + self.lines.as_ref().map_or(0, |l| l.len())
    }

    /// The events from index `from` on, built from the lines when the batch
    /// carries lines: the one place lines become events.
    pub fn events_from(&self, from: usize) -> Cow<'_, [Event]> {
        match &self.lines {
            Some(l) => Cow::Owned(l.events_from(from)),
            None => Cow::Borrowed(self.events.get(from..).unwrap_or(&[])),
        }
    }

    /// The same batch with its lines turned into events.
    pub fn into_events(mut self) -> SourceBatch {
        if let Some(l) = self.lines.take() {
            self.events = l.events_from(0);
        }
        self
    }

    /// An empty batch of the same stream (for a transform's outputs).
    pub fn empty_like(&self) -> SourceBatch {
        SourceBatch {
            stream: self.stream.clone(),
            ..SourceBatch::default()
        }
    }

    /// Adds an event with its mark (ignored when the batch has no stream).
    /// A batch of lines becomes a batch of events first.
    pub fn push(&mut self, event: Event, mark: Option<Mark>) {
        if let Some(l) = self.lines.take() {
            self.events = l.events_from(0);
        }
        self.events.push(event);
        if self.stream.is_some() {
            self.marks.push(mark.unwrap_or_default());
        }
    }

    /// Whether the marks line up with the events (or there are none).
    pub fn is_consistent(&self) -> bool {
        match self.stream {
            Some(_) => self.marks.len() == self.len(),
            None => self.marks.is_empty() && self.releases.is_empty(),
        }
    }

    /// Nothing to deliver: no events and no releases.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.releases.is_empty()
    }

    /// The mark of event `i`, if the batch has a stream.
    pub fn mark(&self, i: usize) -> Option<Mark> {
        self.marks.get(i).copied()
    }
}

/// Why a send did not complete.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The agent is shutting down; the batch may be only partly taken. The
    /// source must not checkpoint or acknowledge past what it sent before.
    #[error("agent shutting down")]
    Shutdown,
    /// No component reads this named output.
    #[error("no component reads output `{0}`")]
    UnknownOutput(String),
}

/// Where a source sends its events; implemented by the runtime.
pub trait SourceOutput: Send + Sync {
    /// Sends to the default output; resolves once every durable holder
    /// downstream has the batch.
    fn send(&self, batch: SourceBatch) -> BoxFuture<'_, Result<(), SendError>>;
    /// Sends to a named output (e.g. [`super::ERRORS_OUTPUT`]). An output
    /// nobody reads takes the batch and drops it (`Ok`), so a source need not
    /// know the wiring.
    fn send_to<'a>(
        &'a self,
        output: &'a str,
        batch: SourceBatch,
    ) -> BoxFuture<'a, Result<(), SendError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Metadata;

    #[test]
    fn ordered_batches_mark_every_event() {
        let ev = |m: &str| Event::from_message(m, Metadata::default());
        let b = SourceBatch::ordered("s", vec![ev("a"), ev("b")], &[2, 4]);
        assert!(b.is_consistent());
        assert_eq!(b.mark(1), Some(Mark::at(4)));
        let mut out = b.empty_like();
        out.push(ev("c"), b.mark(0));
        assert!(out.is_consistent());
        let mut un = SourceBatch::unmarked(vec![]);
        un.push(ev("d"), Some(Mark::at(1)));
        assert!(un.is_consistent() && un.marks.is_empty());
    }

    #[test]
    fn a_batch_of_lines_counts_and_materialises_its_lines() {
        let mut l = LineBatch::new("ab\ncd\n".into(), Metadata::default(), 5);
        l.ranges = vec![(0, 2), (3, 5)];
        let b = SourceBatch::ordered_lines("s", l, &[3, 6]);
        assert!(b.is_consistent() && !b.is_empty());
        assert_eq!(b.len(), 2);
        assert_eq!(b.events_from(1)[0].message(), Some("cd"));
        let e = b.clone().into_events();
        assert!(e.lines.is_none() && e.is_consistent());
        let msgs: Vec<_> = e.events.iter().map(|e| e.message().unwrap()).collect();
        assert_eq!(msgs, ["ab", "cd"]);
        let mut p = b;
        p.push(ev_at("ef"), Some(Mark::at(9)));
        assert_eq!((p.len(), p.events.len()), (3, 3));
        assert!(p.is_consistent());
    }

    fn ev_at(m: &str) -> Event {
        Event::from_message_at(m, Metadata::default(), 5)
    }
}
