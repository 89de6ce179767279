//! The sink's publishing window: records read from the channel, in channel
//! order, each waiting to be published or for the broker's PUBACK/PUBCOMP.
//! The channel is acknowledged only up to the first record not yet done, so
//! a range is released only once the broker has every message in it.

use std::collections::{HashMap, VecDeque};

use crate::mqtt::codec::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not published on the current connection.
    Queued,
    /// Published; QoS 0 waits for the flush, QoS 1 for PUBACK, QoS 2 for PUBREC.
    Sent(u16),
    /// QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP.
    Released(u16),
    Done,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    msg: Option<Message>,
    state: State,
}

/// Records between the channel and the broker's acknowledgement.
#[derive(Debug, Default)]
pub struct Window {
    entries: VecDeque<Entry>,
    /// Index of the first entry that may still be `Queued`.
    cursor: usize,
    by_pkid: HashMap<u16, u64>,
    last_pkid: u16,
    in_flight: usize,
    unsent: usize,
}

impl Window {
    /// Adds record `id` to publish as `msg`.
    pub fn push(&mut self, id: u64, msg: Message) {
        self.entries.push_back(Entry {
            id,
            msg: Some(msg),
            state: State::Queued,
        });
        self.unsent += 1;
    }

    /// Adds record `id` that needs no publishing (dropped as unroutable).
    pub fn push_done(&mut self, id: u64) {
        self.entries.push_back(Entry {
            id,
            msg: None,
            state: State::Done,
        });
    }

    /// Records waiting to be published.
    pub fn unsent(&self) -> usize {
        self.unsent
    }

    /// Records in the window.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn next_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            if !self.by_pkid.contains_key(&self.last_pkid) {
                return self.last_pkid;
            }
        }
    }

    /// The next message to publish while fewer than `limit` QoS 1/2
    /// messages are unacknowledged; its packet id assigned.
    pub fn next_to_send(&mut self, limit: usize) -> Option<Message> {
        while let Some(e) = self.entries.get(self.cursor) {
            if e.state != State::Queued {
                self.cursor += 1;
                continue;
            }
            let qos = e.msg.as_ref().map_or(0, |m| m.qos);
            if qos > 0 && self.in_flight >= limit {
                return None;
            }
            let pkid = if qos > 0 { self.next_pkid() } else { 0 };
            let e = &mut self.entries[self.cursor];
            let mut m = e.msg.clone()?;
            m.pkid = pkid;
            e.state = State::Sent(pkid);
            if qos > 0 {
                self.by_pkid.insert(pkid, e.id);
                self.in_flight += 1;
            }
            self.unsent -= 1;
            self.cursor += 1;
            return Some(m);
        }
        None
    }

    /// Everything written so far reached the socket: QoS 0 messages are done.
    pub fn flushed(&mut self) {
        for e in self.entries.iter_mut().take(self.cursor) {
            if e.state == State::Sent(0) {
                e.state = State::Done;
            }
        }
    }

    fn entry(&mut self, pkid: u16) -> Option<&mut Entry> {
        let id = *self.by_pkid.get(&pkid)?;
        let i = self.entries.binary_search_by_key(&id, |e| e.id).ok()?;
        self.entries.get_mut(i)
    }

    fn finish(&mut self, pkid: u16) -> bool {
        let Some(e) = self.entry(pkid) else {
            return false;
        };
        e.state = State::Done;
        e.msg = None;
        self.by_pkid.remove(&pkid);
        self.in_flight -= 1;
        true
    }

    /// PUBACK (QoS 1) or a refusal ending the exchange; false for an unknown id.
    pub fn acked(&mut self, pkid: u16) -> bool {
        self.finish(pkid)
    }

    /// PUBREC: true when PUBREL should be sent.
    pub fn received(&mut self, pkid: u16) -> bool {
        match self.entry(pkid) {
            Some(e) if e.state == State::Sent(pkid) => {
                e.state = State::Released(pkid);
                true
            }
            // A repeated PUBREC for a message already released: release again.
            Some(e) => e.state == State::Released(pkid),
            None => false,
        }
    }

    /// PUBCOMP.
    pub fn completed(&mut self, pkid: u16) -> bool {
        self.finish(pkid)
    }

    /// Removes the leading done records: the channel id to acknowledge up to.
    pub fn take_done(&mut self) -> Option<u64> {
        let mut end = None;
        while self.entries.front().is_some_and(|e| e.state == State::Done) {
            if let Some(e) = self.entries.pop_front() {
                end = Some(e.id + 1);
                self.cursor = self.cursor.saturating_sub(1);
            }
        }
        end
    }

    /// The connection broke: everything not done is published again on the
    /// next one (with new packet ids, since the session starts clean).
    pub fn reset(&mut self) {
        for e in &mut self.entries {
            if matches!(e.state, State::Sent(_) | State::Released(_)) {
                e.state = State::Queued;
                self.unsent += 1;
            }
        }
        self.by_pkid.clear();
        self.in_flight = 0;
        self.cursor = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(qos: u8) -> Message {
        Message {
            topic: Bytes::from_static(b"t"),
            payload: Bytes::from_static(b"{}"),
            qos,
            pkid: 0,
            dup: false,
            retain: false,
        }
    }

    #[test]
    fn the_channel_is_acknowledged_only_up_to_the_first_unconfirmed_record() {
        let mut w = Window::default();
        w.push(10, msg(1));
        w.push(11, msg(2));
        w.push(12, msg(1));
        let a = w.next_to_send(10).unwrap().pkid;
        let b = w.next_to_send(10).unwrap().pkid;
        let c = w.next_to_send(10).unwrap().pkid;
        assert!(w.acked(c));
        assert_eq!(w.take_done(), None, "record 10 is not confirmed yet");
        assert!(w.acked(a));
        assert_eq!(w.take_done(), Some(11));
        assert!(w.received(b), "PUBREC asks for a PUBREL");
        assert_eq!(w.take_done(), None, "QoS 2 waits for PUBCOMP");
        assert!(w.completed(b));
        assert_eq!(w.take_done(), Some(13));
        assert!(w.is_empty());
    }

    #[test]
    fn the_in_flight_limit_holds_back_publishing() {
        let mut w = Window::default();
        for id in 0..3 {
            w.push(id, msg(1));
        }
        let first = w.next_to_send(2).unwrap().pkid;
        assert!(w.next_to_send(2).is_some());
        assert!(w.next_to_send(2).is_none(), "two in flight");
        w.acked(first);
        assert!(w.next_to_send(2).is_some());
    }

    #[test]
    fn qos0_is_done_once_flushed_and_unroutable_records_at_once() {
        let mut w = Window::default();
        w.push(0, msg(0));
        w.push_done(1);
        assert_eq!(w.next_to_send(1).unwrap().pkid, 0);
        assert_eq!(w.take_done(), None);
        w.flushed();
        assert_eq!(w.take_done(), Some(2));
    }

    #[test]
    fn a_broken_connection_publishes_everything_unconfirmed_again() {
        let mut w = Window::default();
        w.push(0, msg(1));
        w.push(1, msg(2));
        let a = w.next_to_send(5).unwrap().pkid;
        let b = w.next_to_send(5).unwrap().pkid;
        w.received(b);
        w.reset();
        assert_eq!(w.unsent(), 2);
        assert!(!w.acked(a), "ids of the old connection are forgotten");
        assert!(w.next_to_send(5).is_some() && w.next_to_send(5).is_some());
        assert!(w.next_to_send(5).is_none());
    }

    #[test]
    fn packet_ids_wrap_and_skip_ids_in_use() {
        let mut w = Window {
            last_pkid: u16::MAX - 1,
            ..Window::default()
        };
        for id in 0..3 {
            w.push(id, msg(1));
        }
        let ids: Vec<u16> = (0..3).map(|_| w.next_to_send(10).unwrap().pkid).collect();
        assert_eq!(ids, [u16::MAX, 1, 2]);
    }
}
