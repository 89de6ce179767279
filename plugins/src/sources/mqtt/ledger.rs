//! What the MQTT source owes the broker and the spool: messages received but
//! not yet held downstream, the acknowledgement each one earns once held,
//! and the keys to release in the spool's keyed stream.
//!
//! The rules, and the loss or duplicate each one prevents:
//!
//! | event | what happens |
//! |---|---|
//! | PUBLISH QoS 0/1/2 | buffered with the connection generation it arrived on; becomes an event marked `Mark::keyed(packet id, fingerprint, dup)` — QoS 0 uses key 0 and QoS 0/1 never claim to be redeliveries, so the spool never skips them (a new message reusing a packet id must not be taken for a repeat) |
//! | a batch is held downstream | QoS 1: PUBACK; QoS 2: PUBREC — **only** for messages that arrived on the current connection: after a reconnect the broker redelivers them, and an acknowledgement sent for an older delivery could reach the broker after it reused the packet id for a newer message that is not yet held. Keys of QoS 0/1 messages are released in the next batch (they never cause a skip, releasing keeps the spool's key set small) |
//! | PUBREL for packet id `p` | the broker got our PUBREC and will not send `p` again: release `p` in the next batch, and send PUBCOMP only once that batch is held — so the broker cannot reuse `p` for a new message while the spool still holds the old one's key (a redelivery of an identical new message would be skipped). A PUBREL for an id this process never saw (sent before a restart) is handled the same way |
//! | reconnect, session present | messages of the old connection still buffered are dropped (QoS 1/2: the broker redelivers them; QoS 0 is kept); pending PUBCOMPs are dropped (the broker resends PUBREL) |
//! | reconnect, session lost | nothing will be redelivered: buffered messages are kept and their keys released after they are held. Keys the spool still holds from the lost session cannot make a new message look like a repeat: the source starts a new *session epoch*, which is part of every fingerprint (see `mod.rs`) |

use std::collections::BTreeSet;

use weir_core::Event;

use crate::component::{Mark, SourceBatch, Stream};
use crate::mqtt::codec::{Out, Qos};

/// One received message, decoded.
#[derive(Debug, Clone)]
pub struct Item {
    /// The event, or a dead letter for a payload that did not decode.
    pub event: Event,
    pub dead: bool,
    pub qos: Qos,
    pub pkid: u16,
    pub mark: Mark,
    pub bytes: usize,
    gen: u64,
    /// Arrived on a session the broker has since lost: never acknowledged.
    orphan: bool,
}

impl Item {
    /// A received message (generation set by [`Ledger::received`]).
    pub fn new(event: Event, dead: bool, qos: Qos, pkid: u16, mark: Mark, bytes: usize) -> Item {
        Item {
            event,
            dead,
            qos,
            pkid,
            mark,
            bytes,
            gen: 0,
            orphan: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    qos: Qos,
    pkid: u16,
    gen: u64,
    orphan: bool,
    /// Its event is in the default output's batch (so its key was taken).
    keyed: bool,
}

/// A batch taken for delivery, and what to do once it is held.
#[derive(Debug)]
pub struct Taken {
    /// For the default output: events, marks and releases.
    pub batch: SourceBatch,
    /// Dead letters, for the `errors` output.
    pub dead: Vec<Event>,
    acks: Vec<Ack>,
    comps: Vec<u16>,
    gen: u64,
}

/// The source's bookkeeping between the broker and the channels.
#[derive(Debug, Default)]
pub struct Ledger {
    gen: u64,
    connected: bool,
    buffer: Vec<Item>,
    bytes: usize,
    /// QoS 1/2 messages buffered (the broker's in-flight window bounds them).
    acked: usize,
    releases: BTreeSet<u64>,
    comps: Vec<u16>,
}

impl Ledger {
    /// A connection was lost: acknowledgements owed on it are void.
    pub fn disconnected(&mut self) {
        self.gen += 1;
        self.connected = false;
        self.comps.clear();
    }

    /// A connection is up; `session_present` from its CONNACK.
    pub fn connected(&mut self, session_present: bool) {
        self.gen += 1;
        self.connected = true;
        self.comps.clear();
        let gen = self.gen;
        if session_present {
            // The broker redelivers unacknowledged QoS 1/2 messages.
            self.buffer.retain(|i| i.qos == 0 || i.gen == gen);
        } else {
            for i in &mut self.buffer {
                i.orphan = true;
            }
        }
        self.recount();
    }

    fn recount(&mut self) {
        self.bytes = self.buffer.iter().map(|i| i.bytes).sum();
        self.acked = self.buffer.iter().filter(|i| i.qos > 0).count();
    }

    /// Buffers a received message.
    pub fn received(&mut self, mut item: Item) {
        item.gen = self.gen;
        self.bytes += item.bytes;
        if item.qos > 0 {
            self.acked += 1;
        }
        self.buffer.push(item);
    }

    /// The broker released QoS 2 packet id `pkid`.
    pub fn pubrel(&mut self, pkid: u16) {
        self.releases.insert(u64::from(pkid));
        self.comps.push(pkid);
    }

    /// Messages buffered, bytes buffered, and of them QoS 1/2 messages.
    pub fn buffered(&self) -> (usize, usize, usize) {
        (self.buffer.len(), self.bytes, self.acked)
    }

    /// Whether there are messages to deliver.
    pub fn has_messages(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Whether there are only releases to deliver.
    pub fn has_releases(&self) -> bool {
        !self.releases.is_empty()
    }

    /// Takes everything buffered and every pending release as one batch.
    pub fn take(&mut self, stream: &Stream) -> Option<Taken> {
        if self.buffer.is_empty() && self.releases.is_empty() {
            return None;
        }
        let items = std::mem::take(&mut self.buffer);
        self.bytes = 0;
        self.acked = 0;
        let mut batch = SourceBatch {
            stream: Some(stream.clone()),
            releases: std::mem::take(&mut self.releases).into_iter().collect(),
            ..SourceBatch::default()
        };
        let mut dead = Vec::new();
        let mut acks = Vec::with_capacity(items.len());
        for i in items {
            acks.push(Ack {
                qos: i.qos,
                pkid: i.pkid,
                gen: i.gen,
                orphan: i.orphan,
                keyed: !i.dead,
            });
            if i.dead {
                dead.push(i.event);
            } else {
                batch.push(i.event, Some(i.mark));
            }
        }
        Some(Taken {
            batch,
            dead,
            acks,
            comps: std::mem::take(&mut self.comps),
            gen: self.gen,
        })
    }

    /// `t` is held downstream: the acknowledgements to send now on the
    /// current connection, in order. Releases it earns go to the next batch.
    pub fn held(&mut self, t: Taken) -> Vec<Out> {
        let mut out = Vec::new();
        let live = |gen: u64| self.connected && gen == self.gen;
        for a in &t.acks {
            match a.qos {
                0 => {
                    if a.keyed {
                        self.releases.insert(0);
                    }
                }
                1 => {
                    if a.keyed {
                        self.releases.insert(u64::from(a.pkid));
                    }
                    if live(a.gen) && !a.orphan {
                        out.push(Out::PubAck(a.pkid));
                    }
                }
                _ => {
                    if a.orphan {
                        if a.keyed {
                            self.releases.insert(u64::from(a.pkid));
                        }
                    } else if live(a.gen) {
                        out.push(Out::PubRec(a.pkid));
                    }
                }
            }
        }
        if live(t.gen) {
            out.extend(t.comps.iter().map(|&p| Out::PubComp(p)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Metadata;

    fn item(qos: Qos, pkid: u16, dup: bool) -> Item {
        let redelivery = qos == 2 && dup;
        Item::new(
            Event::from_message("m", Metadata::default()),
            false,
            qos,
            pkid,
            Mark::keyed(if qos == 0 { 0 } else { u64::from(pkid) }, 99, redelivery),
            10,
        )
    }

    fn stream() -> Stream {
        Stream::keyed("s")
    }

    #[test]
    fn messages_are_acknowledged_only_after_their_batch_is_held() {
        let mut l = Ledger::default();
        l.connected(true);
        l.received(item(1, 5, false));
        l.received(item(2, 6, false));
        l.received(item(0, 0, false));
        let t = l.take(&stream()).unwrap();
        assert_eq!(t.batch.events.len(), 3);
        assert!(l.take(&stream()).is_none(), "nothing left to send yet");
        let acks = l.held(t);
        assert!(
            matches!(acks[..], [Out::PubAck(5), Out::PubRec(6)]),
            "{acks:?}"
        );
        // QoS 0/1 keys are released in the next batch; the QoS 2 key stays held.
        let next = l.take(&stream()).unwrap();
        assert_eq!(next.batch.releases, vec![0, 5]);
        assert!(next.batch.events.is_empty());
    }

    #[test]
    fn pubcomp_waits_until_the_release_is_held() {
        let mut l = Ledger::default();
        l.connected(true);
        l.pubrel(6);
        l.received(item(1, 7, false));
        let t = l.take(&stream()).unwrap();
        assert_eq!(
            t.batch.releases,
            vec![6],
            "the release rides with the next messages"
        );
        let acks = l.held(t);
        assert!(
            matches!(acks[..], [Out::PubAck(7), Out::PubComp(6)]),
            "{acks:?}"
        );
    }

    #[test]
    fn a_pubrel_for_an_unknown_id_is_released_and_completed() {
        // After a restart the broker resends PUBREL for ids this process never saw.
        let mut l = Ledger::default();
        l.connected(true);
        l.pubrel(4242);
        let t = l.take(&stream()).unwrap();
        assert_eq!(t.batch.releases, vec![4242]);
        assert!(t.batch.events.is_empty());
        assert!(matches!(l.held(t)[..], [Out::PubComp(4242)]));
    }

    #[test]
    fn acknowledgements_of_an_older_connection_are_never_sent() {
        let mut l = Ledger::default();
        l.connected(true);
        l.received(item(1, 1, false));
        l.received(item(2, 2, false));
        l.pubrel(3);
        let t = l.take(&stream()).unwrap();
        assert_eq!(t.batch.releases, vec![3]);
        l.disconnected();
        l.connected(true);
        let acks = l.held(t);
        assert!(acks.is_empty(), "no PUBACK, PUBREC or PUBCOMP: {acks:?}");
        // The QoS 1 key is still released; the QoS 2 key stays held for the redelivery.
        let next = l.take(&stream()).unwrap();
        assert_eq!(next.batch.releases, vec![1]);
    }

    #[test]
    fn a_resumed_session_drops_buffered_qos1_and_2_of_the_old_connection() {
        let mut l = Ledger::default();
        l.connected(true);
        l.received(item(1, 1, false));
        l.received(item(2, 2, false));
        l.received(item(0, 0, false));
        l.disconnected();
        l.connected(true);
        assert_eq!(l.buffered(), (1, 10, 0), "only the QoS 0 message is kept");
    }

    #[test]
    fn a_lost_session_keeps_buffered_messages_and_releases_their_keys_once_held() {
        let mut l = Ledger::default();
        l.connected(true);
        l.received(item(2, 9, false));
        l.disconnected();
        l.connected(false);
        let t = l.take(&stream()).unwrap();
        assert_eq!(
            t.batch.events.len(),
            1,
            "kept: the broker will not redeliver it"
        );
        assert!(t.batch.releases.is_empty());
        assert!(
            l.held(t).is_empty(),
            "never acknowledged on the new session"
        );
        assert_eq!(l.take(&stream()).unwrap().batch.releases, vec![9]);
    }

    #[test]
    fn dead_letters_are_acknowledged_but_take_no_key() {
        let mut l = Ledger::default();
        l.connected(true);
        let mut d = item(1, 8, false);
        d.dead = true;
        l.received(d);
        let t = l.take(&stream()).unwrap();
        assert_eq!(t.dead.len(), 1);
        assert!(t.batch.events.is_empty());
        assert!(matches!(l.held(t)[..], [Out::PubAck(8)]));
        assert!(l.take(&stream()).is_none(), "no key to release");
    }
}
