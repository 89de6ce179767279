//! What a sink reads: records from its channel, in the encoded form the
//! destination wants, with the channel ids it acknowledges by.

use bytes::Bytes;
use weir_core::event::{Event, Fields, Metadata};

use super::BoxFuture;

/// One event as its sink reads it: metadata, timestamp and the fields
/// already encoded as a JSON object — the Kafka record value every sink
/// sends or writes — so sinks move bytes instead of rebuilding events.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The channel id; acknowledge `id + 1` to release this record.
    pub id: u64,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
    pub meta: Metadata,
    /// The event's fields as a JSON object.
    pub value: Bytes,
}

impl Record {
    /// The record of `event` with channel id `id`.
    pub fn from_event(id: u64, event: &Event) -> Record {
        Record {
            id,
            timestamp: event.timestamp,
            meta: event.meta.clone(),
            value: Bytes::from(event.fields_json()),
        }
    }

    /// The fields decoded from the JSON value (for sinks that need to look
    /// inside, such as an MQTT topic template). Types JSON cannot tell apart
    /// come back as their JSON form: timestamps as RFC 3339 strings, bytes
    /// as text.
    pub fn fields(&self) -> Result<Fields, serde_json::Error> {
        let v: serde_json::Value = serde_json::from_slice(&self.value)?;
        Ok(match weir_core::Value::from(v) {
            weir_core::Value::Map(m) => m,
            other => std::iter::once(("value".to_owned(), other)).collect(),
        })
    }

    /// The event this record holds, fields decoded as by [`Record::fields`].
    pub fn to_event(&self) -> Result<Event, serde_json::Error> {
        Ok(Event {
            timestamp: self.timestamp,
            fields: self.fields()?,
            meta: self.meta.clone(),
        })
    }
}

/// Why an acknowledgement was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The channel could not persist its cursor; the records stay and may be
    /// delivered again after a crash. Retrying the ack later is safe.
    #[error("could not persist the acknowledgement: {0}")]
    Persist(String),
}

/// Why a read on the blocking side of a channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The channel could not be read; nothing was consumed, read again later.
    #[error("could not read the channel: {0}")]
    Io(String),
}

/// The blocking side of a durable channel: what a sink does per batch on
/// its own blocking thread (`spawn_blocking`), so that reading, encoding,
/// and committing a batch cost one hand-over to a blocking thread instead
/// of one each. Every method blocks on disk I/O.
pub trait BlockingInput: Send + Sync {
    /// Like [`SinkInput::next_batch`] without waiting: the records visible
    /// now after those already read (empty when none).
    fn read(&self, max_events: usize, max_bytes: usize) -> Result<Vec<Record>, ReadError>;
    /// Releases every record with an id below `end_id` and stores the
    /// sink's `note` (its journal) in the same durable write: after a crash
    /// the channel's acknowledgement and [`BlockingInput::note`] are those of
    /// one commit. Returns once both are durable.
    fn commit(&self, end_id: u64, note: &[u8]) -> Result<(), AckError>;
    /// The note of the last commit; `None` when none was ever stored (or
    /// it was lost to damage).
    fn note(&self) -> Option<Vec<u8>>;
}

/// Where a sink reads its events from; implemented by the runtime over the sink's channel.
pub trait SinkInput: Send + Sync {
    /// The next records after those already read. Waits up to `wait` for the
    /// first one (forever when `None`); an empty batch means the wait ran
    /// out, `None` means shutdown. Await it to completion: records read by a
    /// dropped call are re-read only after a `rewind` or a restart.
    fn next_batch(
        &self,
        max_events: usize,
        max_bytes: usize,
        wait: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Option<Vec<Record>>>;
    /// Releases every record with an id below `end_id`.
    fn ack(&self, end_id: u64) -> BoxFuture<'_, Result<(), AckError>>;
    /// Reads again from the first unacknowledged record.
    fn rewind(&self);
    /// The blocking side of the channel when it is durable (a disk spool);
    /// `None` for a memory channel, whose sink keeps its state elsewhere.
    fn blocking(&self) -> Option<std::sync::Arc<dyn BlockingInput>> {
        None
    }
    /// What the channel holds that the sink has not acknowledged:
    /// (events, bytes). For logs and status; (0, 0) when unknown.
    fn backlog(&self) -> (u64, u64) {
        (0, 0)
    }
    /// Tells the runtime that deliveries are failing (`Some(cause)`, from
    /// the first failure of an outage and when the cause changes) or work
    /// again (`None`). The agent's `/ready` turns false when a sink has been
    /// failing longer than `health.sink_failing_after`. Sinks call it
    /// through `sinks::delivery::Delivery`.
    fn delivery_failing(&self, _cause: Option<&str>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Value;

    #[test]
    fn a_record_carries_the_fields_as_json_and_decodes_back() {
        let mut e = Event::from_message("hi \"there\"", Metadata::default());
        e.fields.insert("n", Value::Int(3));
        e.fields.insert("t", Value::Float(1.5));
        let r = Record::from_event(7, &e);
        assert_eq!(&r.value[..], br#"{"message":"hi \"there\"","n":3,"t":1.5}"#);
        let back = r.to_event().unwrap();
        assert_eq!(back.fields, e.fields);
        assert_eq!(back.timestamp, e.timestamp);
    }
}
