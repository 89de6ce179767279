//! Events on their way out: what the decoders produce for one batch, and
//! the helper through which they produce it.

use tokio::time::Instant;
use weir_core::event::{Fields, Value};
use weir_core::{Event, Metadata};

use super::metrics::SerialMetrics;
use crate::component::DeadLetter;

/// What has been read but not yet sent: lost if the agent crashes now.
#[derive(Debug, Default)]
pub struct Pending {
    pub events: Vec<Event>,
    pub dead: Vec<Event>,
    /// When the oldest event or dead letter in here was read.
    pub first_at: Option<Instant>,
}

impl Pending {
    /// Events and dead letters held.
    pub fn len(&self) -> usize {
        self.events.len() + self.dead.len()
    }

    fn touch(&mut self) {
        if self.first_at.is_none() {
            self.first_at = Some(Instant::now());
        }
    }
}

/// Everything a decoder needs to turn records into events.
pub struct Emit<'a> {
    /// The source id (dead letters name it).
    pub id: &'a str,
    pub meta: &'a Metadata,
    /// The port field and its value, if configured.
    pub port: Option<&'a (String, Value)>,
    /// Receive time of the bytes being decoded (ns since the epoch).
    pub now: i64,
    pub out: &'a mut Pending,
    pub metrics: &'a mut SerialMetrics,
    /// Complete records seen (good or bad): a poll's reply has arrived.
    pub records: u64,
}

impl Emit<'_> {
    /// An event with `fields` (plus the port), stamped with the receive time.
    pub fn event(&mut self, mut fields: Fields) {
        if let Some((k, v)) = self.port {
            fields.insert(k.as_str(), v.clone());
        }
        self.out.touch();
        self.out.events.push(Event {
            timestamp: self.now,
            fields,
            meta: self.meta.clone(),
        });
    }

    /// A dead letter for input that could not be decoded; `original`
    /// describes it (the line, the frame's bytes), the port is added.
    pub fn dead(&mut self, reason: &str, error: &str, mut original: Fields) {
        if let Some((k, v)) = self.port {
            original.insert(k.as_str(), v.clone());
        }
        self.out.touch();
        self.out.dead.push(DeadLetter::for_input(
            self.id,
            reason,
            error,
            original,
            self.meta.clone(),
            self.now,
        ));
    }
}
