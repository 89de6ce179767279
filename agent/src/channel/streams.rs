//! What a durable holder (a sink's spool, a stateful transform's input log)
//! has committed of each source stream, and how that is written into the
//! spool's control records.
//!
//! The rules (see `weir_plugins::component` for the marks):
//!
//! | stream kind | state | an event is already held when |
//! |---|---|---|
//! | ordered | highest `(pos, sub)` committed | `(pos, sub) <= held` |
//! | keyed | key -> (fingerprint, highest sub) for keys in flight | it is a redelivery and its key is held with the same fingerprint at `sub <= held sub` |
//!
//! A keyed stream's releases are applied before the events of the same
//! append: they refer to messages delivered earlier.
//!
//! # Encoding (payload of a control record, after its kind byte)
//! ```text
//! varint n                    streams in this record
//! n × stream:
//!   varint len, name bytes
//!   u8 kind                   0 ordered, 1 keyed
//!   ordered: u64 LE pos, u32 LE sub
//!   keyed:   varint r, r × varint key             keys released
//!            varint u, u × (varint key, u64 LE fp, u32 LE sub)   keys taken
//! ```
//! A commit record carries the changes of its append; a segment's preamble
//! carries every stream's full state (keyed: nothing released, every key
//! held). Version 1 control records (kinds 1 and 2: `n × (name, u64 pos)`)
//! are read as ordered streams holding every `sub` of `pos`.

use std::collections::{BTreeMap, HashMap};

use weir_plugins::{Mark, Stream, StreamKind};

/// The state of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    Ordered {
        pos: u64,
        sub: u32,
    },
    /// key -> (fingerprint, highest sub)
    Keyed(BTreeMap<u64, (u64, u32)>),
}

/// The changes one append makes to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Ordered {
        pos: u64,
        sub: u32,
    },
    Keyed {
        released: Vec<u64>,
        taken: Vec<(u64, u64, u32)>,
    },
}

/// Every stream's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStates(HashMap<String, StreamState>);

impl StreamStates {
    /// Number of streams.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no stream is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ordered position held for `stream` (tests and diagnostics).
    pub fn position(&self, stream: &str) -> Option<(u64, u32)> {
        match self.0.get(stream)? {
            StreamState::Ordered { pos, sub } => Some((*pos, *sub)),
            StreamState::Keyed(_) => None,
        }
    }

    /// Every ordered stream's position whose name starts with `prefix`.
    pub fn ordered_with_prefix(&self, prefix: &str) -> Vec<(String, u64)> {
        self.0
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .filter_map(|(name, st)| match st {
                StreamState::Ordered { pos, .. } => Some((name.clone(), *pos)),
                StreamState::Keyed(_) => None,
            })
            .collect()
    }

    /// The keys held for a keyed stream (tests and diagnostics).
    pub fn keys(&self, stream: &str) -> Vec<u64> {
        match self.0.get(stream) {
            Some(StreamState::Keyed(m)) => m.keys().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Applies a committed change.
    pub fn apply(&mut self, name: &str, change: &Change) {
        match change {
            Change::Ordered { pos, sub } => {
                let e = self
                    .0
                    .entry(name.to_owned())
                    .or_insert(StreamState::Ordered { pos: 0, sub: 0 });
                match e {
                    StreamState::Ordered { pos: p, sub: s } => {
                        if (*pos, *sub) > (*p, *s) {
                            (*p, *s) = (*pos, *sub);
                        }
                    }
                    StreamState::Keyed(_) => {
                        *e = StreamState::Ordered {
                            pos: *pos,
                            sub: *sub,
                        }
                    }
                }
            }
            Change::Keyed { released, taken } => {
                let e = self
                    .0
                    .entry(name.to_owned())
                    .or_insert_with(|| StreamState::Keyed(BTreeMap::new()));
                if !matches!(e, StreamState::Keyed(_)) {
                    *e = StreamState::Keyed(BTreeMap::new());
                }
                if let StreamState::Keyed(m) = e {
                    for k in released {
                        m.remove(k);
                    }
                    for &(k, fp, sub) in taken {
                        m.insert(k, (fp, sub));
                    }
                }
            }
        }
    }

    /// Starts tracking one append to `stream`.
    pub fn begin<'a>(&self, stream: &'a Stream, releases: &[u64]) -> Pending<'a> {
        let state = self.0.get(&*stream.name);
        let overlay = match (stream.kind, state) {
            (StreamKind::Ordered, Some(StreamState::Ordered { pos, sub })) => {
                Overlay::Ordered(Some((*pos, *sub)))
            }
            (StreamKind::Ordered, _) => Overlay::Ordered(None),
            (StreamKind::Keyed, Some(StreamState::Keyed(m))) => {
                let mut m = m.clone();
                for k in releases {
                    m.remove(k);
                }
                Overlay::Keyed(m)
            }
            (StreamKind::Keyed, _) => Overlay::Keyed(BTreeMap::new()),
        };
        Pending {
            stream,
            overlay,
            released: releases.to_vec(),
            taken: Vec::new(),
            last: None,
        }
    }

    /// Encodes every stream's full state (a segment preamble).
    pub fn encode_full(&self, out: &mut Vec<u8>) {
        put_varint(out, self.0.len() as u64);
        for (name, st) in &self.0 {
            put_name(out, name);
            match st {
                StreamState::Ordered { pos, sub } => {
                    out.push(0);
                    out.extend_from_slice(&pos.to_le_bytes());
                    out.extend_from_slice(&sub.to_le_bytes());
                }
                StreamState::Keyed(m) => {
                    out.push(1);
                    put_varint(out, 0);
                    put_varint(out, m.len() as u64);
                    for (&k, &(fp, sub)) in m {
                        put_taken(out, k, fp, sub);
                    }
                }
            }
        }
    }

    /// Bytes `encode_full` writes.
    pub fn encoded_full_len(&self) -> usize {
        let mut n = varint_len(self.0.len() as u64);
        for (name, st) in &self.0 {
            n += varint_len(name.len() as u64) + name.len() + 1;
            n += match st {
                StreamState::Ordered { .. } => 12,
                StreamState::Keyed(m) => {
                    1 + varint_len(m.len() as u64)
                        + m.keys().map(|&k| varint_len(k) + 12).sum::<usize>()
                }
            };
        }
        n
    }
}

/// Whether `(pos, sub)` orders after `held`.
fn after(pos: u64, sub: u32, held: Option<(u64, u32)>) -> bool {
    held.is_none_or(|h| (pos, sub) > h)
}

enum Overlay {
    Ordered(Option<(u64, u32)>),
    Keyed(BTreeMap<u64, (u64, u32)>),
}

/// One append to one stream in progress: what is held including this
/// append's events so far, and the change to commit.
pub struct Pending<'a> {
    stream: &'a Stream,
    overlay: Overlay,
    released: Vec<u64>,
    taken: Vec<(u64, u64, u32)>,
    last: Option<(u64, u32)>,
}

impl Pending<'_> {
    /// Whether the event with `mark` is already held.
    pub fn holds(&self, mark: &Mark) -> bool {
        match &self.overlay {
            Overlay::Ordered(held) => !after(mark.pos, mark.sub, *held),
            Overlay::Keyed(m) => {
                mark.redelivery
                    && m.get(&mark.pos)
                        .is_some_and(|&(fp, sub)| fp == mark.fp && mark.sub <= sub)
            }
        }
    }

    /// Records that the event with `mark` is taken (written, or dropped by policy).
    pub fn take(&mut self, mark: &Mark) {
        match &mut self.overlay {
            Overlay::Ordered(held) => {
                if after(mark.pos, mark.sub, *held) {
                    *held = Some((mark.pos, mark.sub));
                    self.last = Some((mark.pos, mark.sub));
                }
            }
            Overlay::Keyed(m) => {
                m.insert(mark.pos, (mark.fp, mark.sub));
                self.taken.push((mark.pos, mark.fp, mark.sub));
            }
        }
    }

    /// The change to commit, if any.
    pub fn change(&self) -> Option<(&str, Change)> {
        let change = match self.stream.kind {
            StreamKind::Ordered => {
                let (pos, sub) = self.last?;
                Change::Ordered { pos, sub }
            }
            StreamKind::Keyed => {
                if self.released.is_empty() && self.taken.is_empty() {
                    return None;
                }
                Change::Keyed {
                    released: self.released.clone(),
                    taken: self.taken.clone(),
                }
            }
        };
        Some((&self.stream.name, change))
    }
}

/// Encodes the changes of one commit.
pub fn encode_changes(out: &mut Vec<u8>, changes: &[(&str, Change)]) {
    put_varint(out, changes.len() as u64);
    for (name, c) in changes {
        put_name(out, name);
        match c {
            Change::Ordered { pos, sub } => {
                out.push(0);
                out.extend_from_slice(&pos.to_le_bytes());
                out.extend_from_slice(&sub.to_le_bytes());
            }
            Change::Keyed { released, taken } => {
                out.push(1);
                put_varint(out, released.len() as u64);
                for &k in released {
                    put_varint(out, k);
                }
                put_varint(out, taken.len() as u64);
                for &(k, fp, sub) in taken {
                    put_taken(out, k, fp, sub);
                }
            }
        }
    }
}

/// Bytes `encode_changes` writes for one stream's change.
pub fn change_len(name: &str, c: &Change) -> usize {
    varint_len(name.len() as u64)
        + name.len()
        + 1
        + match c {
            Change::Ordered { .. } => 12,
            Change::Keyed { released, taken } => {
                varint_len(released.len() as u64)
                    + released.iter().map(|&k| varint_len(k)).sum::<usize>()
                    + varint_len(taken.len() as u64)
                    + taken
                        .iter()
                        .map(|&(k, ..)| varint_len(k) + 12)
                        .sum::<usize>()
            }
        }
}

/// Decodes a version 2 control payload (without its kind byte); `None` if malformed.
pub fn decode_changes(b: &[u8]) -> Option<Vec<(String, Change)>> {
    let mut at = 0usize;
    let n = get_varint(b, &mut at)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let len = usize::try_from(get_varint(b, &mut at)?).ok()?;
        let name = std::str::from_utf8(b.get(at..at.checked_add(len)?)?)
            .ok()?
            .to_owned();
        at += len;
        let kind = *b.get(at)?;
        at += 1;
        let change = match kind {
            0 => {
                let pos = get_u64(b, &mut at)?;
                let sub = get_u32(b, &mut at)?;
                Change::Ordered { pos, sub }
            }
            1 => {
                let r = get_varint(b, &mut at)?;
                let mut released = Vec::new();
                for _ in 0..r {
                    released.push(get_varint(b, &mut at)?);
                }
                let t = get_varint(b, &mut at)?;
                let mut taken = Vec::new();
                for _ in 0..t {
                    let k = get_varint(b, &mut at)?;
                    let fp = get_u64(b, &mut at)?;
                    let sub = get_u32(b, &mut at)?;
                    taken.push((k, fp, sub));
                }
                Change::Keyed { released, taken }
            }
            _ => return None,
        };
        out.push((name, change));
    }
    (at == b.len()).then_some(out)
}

/// Decodes a version 1 control payload (without its kind byte).
pub fn decode_v1(b: &[u8]) -> Option<Vec<(String, Change)>> {
    let mut at = 0usize;
    let n = get_varint(b, &mut at)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let len = usize::try_from(get_varint(b, &mut at)?).ok()?;
        let name = std::str::from_utf8(b.get(at..at.checked_add(len)?)?)
            .ok()?
            .to_owned();
        at += len;
        let pos = get_u64(b, &mut at)?;
        out.push((name, Change::Ordered { pos, sub: u32::MAX }));
    }
    Some(out)
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

fn put_taken(out: &mut Vec<u8>, k: u64, fp: u64, sub: u32) {
    put_varint(out, k);
    out.extend_from_slice(&fp.to_le_bytes());
    out.extend_from_slice(&sub.to_le_bytes());
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Reads an unsigned LEB128 varint at `*at`.
pub fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn get_u64(b: &[u8], at: &mut usize) -> Option<u64> {
    let bytes: [u8; 8] = b.get(*at..*at + 8)?.try_into().ok()?;
    *at += 8;
    Some(u64::from_le_bytes(bytes))
}

fn get_u32(b: &[u8], at: &mut usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(*at..*at + 4)?.try_into().ok()?;
    *at += 4;
    Some(u32::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: u64, fp: u64, redelivery: bool) -> Mark {
        Mark::keyed(key, fp, redelivery)
    }

    #[test]
    fn ordered_streams_hold_everything_up_to_the_committed_sub() {
        let s = Stream::ordered("f");
        let mut st = StreamStates::default();
        st.apply("f", &Change::Ordered { pos: 10, sub: 1 });
        let p = st.begin(&s, &[]);
        let m = |pos, sub| Mark {
            pos,
            sub,
            ..Mark::default()
        };
        assert!(p.holds(&m(5, 9)));
        assert!(p.holds(&m(10, 0)) && p.holds(&m(10, 1)));
        assert!(!p.holds(&m(10, 2)));
        assert!(!p.holds(&m(11, 0)));
    }

    #[test]
    fn a_keyed_redelivery_is_held_only_with_the_same_fingerprint() {
        let s = Stream::keyed("mqtt");
        let mut st = StreamStates::default();
        st.apply(
            "mqtt",
            &Change::Keyed {
                released: vec![],
                taken: vec![(7, 0xabc, 0)],
            },
        );
        let p = st.begin(&s, &[]);
        assert!(p.holds(&keyed(7, 0xabc, true)), "same message again");
        assert!(
            !p.holds(&keyed(7, 0xabc, false)),
            "a first delivery reusing the key"
        );
        assert!(
            !p.holds(&keyed(7, 0xdef, true)),
            "another message under the key"
        );
        assert!(!p.holds(&keyed(8, 0xabc, true)));
        let released = st.begin(&s, &[7]);
        assert!(
            !released.holds(&keyed(7, 0xabc, true)),
            "released keys are forgotten"
        );
    }

    #[test]
    fn changes_and_full_states_round_trip_through_their_encoding() {
        let mut st = StreamStates::default();
        let changes = vec![
            ("f".to_owned(), Change::Ordered { pos: 99, sub: 3 }),
            (
                "m".to_owned(),
                Change::Keyed {
                    released: vec![1, 300],
                    taken: vec![(2, u64::MAX, 0), (70000, 5, 1)],
                },
            ),
        ];
        let refs: Vec<(&str, Change)> = changes
            .iter()
            .map(|(n, c)| (n.as_str(), c.clone()))
            .collect();
        let mut buf = Vec::new();
        encode_changes(&mut buf, &refs);
        assert_eq!(
            buf.len(),
            1 + refs.iter().map(|(n, c)| change_len(n, c)).sum::<usize>()
        );
        assert_eq!(decode_changes(&buf).unwrap(), changes);
        for (n, c) in &changes {
            st.apply(n, c);
        }
        let mut full = Vec::new();
        st.encode_full(&mut full);
        assert_eq!(full.len(), st.encoded_full_len());
        let mut back = StreamStates::default();
        for (n, c) in decode_changes(&full).unwrap() {
            back.apply(&n, &c);
        }
        assert_eq!(back, st);
        assert!(decode_changes(&full[..full.len() - 1]).is_none());
    }

    #[test]
    fn version_1_positions_hold_every_sub() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 1);
        put_name(&mut buf, "src/a");
        buf.extend_from_slice(&10u64.to_le_bytes());
        let mut st = StreamStates::default();
        for (n, c) in decode_v1(&buf).unwrap() {
            st.apply(&n, &c);
        }
        let s = Stream::ordered("src/a");
        let p = st.begin(&s, &[]);
        assert!(p.holds(&Mark {
            pos: 10,
            sub: 5,
            ..Mark::default()
        }));
    }
}
