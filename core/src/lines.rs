//! Lines of text carried as ranges of one shared buffer, without an
//! [`Event`] per line.
//!
//! A line-oriented source (the file source) reads a large chunk, splits it
//! into lines and hands the chunk on as a [`LineBatch`]: the chunk as one
//! [`Bytes`], each line's range in it, and what every line's event shares
//! (metadata, timestamp, a constant extra field such as the file's path). A
//! sink's disk spool writes each line's record form straight from the buffer
//! ([`LineRecords::encode`]): no `String`, `Fields` or metadata clone per
//! line. Everything that needs events (transforms, memory channels, taps,
//! input logs in the typed form) gets them from [`LineBatch::event`], which
//! builds exactly the event the source would have built, so the two paths
//! are interchangeable: the record written from a line is byte for byte
//! [`crate::codec::encode_record`] of that event (tested below).

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{put_head_of, RECORD_VERSION};
use crate::event::{Event, Fields, Metadata, Value, MESSAGE};
use crate::json::{write_str, write_text};

/// What a line that is not valid UTF-8 becomes in its event's `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidText {
    /// A string, invalid sequences replaced with U+FFFD.
    #[default]
    Replace,
    /// A bytes value with the exact bytes (its JSON is the replaced string).
    Preserve,
}

/// Lines cut from one buffer; each becomes an event with the line in
/// `message`, the shared metadata and timestamp, and the `extra` field.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineBatch {
    /// The bytes the lines are cut from.
    pub buf: Bytes,
    /// Each line as `(start, end)` in `buf`: no newline, no carriage return.
    pub ranges: Vec<(usize, usize)>,
    /// Metadata of every line's event.
    pub meta: Metadata,
    /// Timestamp of every line's event (ns since the epoch).
    pub timestamp: i64,
    /// A field with the same string value on every line (name, value).
    pub extra: Option<(Arc<str>, Arc<str>)>,
    /// What a line that is not UTF-8 becomes.
    pub invalid: InvalidText,
}

impl LineBatch {
    /// No lines yet, cut from `buf`.
    pub fn new(buf: Bytes, meta: Metadata, timestamp: i64) -> LineBatch {
        LineBatch {
            buf,
            meta,
            timestamp,
            ..LineBatch::default()
        }
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are no lines.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The bytes of line `i`. A range outside the buffer reads as empty
    /// rather than panicking.
    pub fn line(&self, i: usize) -> &[u8] {
        self.ranges
            .get(i)
            .and_then(|&(s, e)| self.buf.get(s..e))
            .unwrap_or(&[])
    }

    /// The event of line `i`: what a source building events would have built.
    pub fn event(&self, i: usize) -> Event {
        let line = self.line(i);
        let message = match std::str::from_utf8(line) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => match self.invalid {
                InvalidText::Replace => Value::String(String::from_utf8_lossy(line).into_owned()),
                InvalidText::Preserve => Value::Bytes(Bytes::copy_from_slice(line)),
            },
        };
        let mut fields = Fields::with_capacity(1 + usize::from(self.extra.is_some()));
        fields.insert_static(MESSAGE, message);
        if let Some((k, v)) = &self.extra {
            fields.insert(&**k, Value::String(v.to_string()));
        }
        Event {
            timestamp: self.timestamp,
            fields,
            meta: self.meta.clone(),
        }
    }

    /// The events of lines `from..`.
    pub fn events_from(&self, from: usize) -> Vec<Event> {
        (from..self.len()).map(|i| self.event(i)).collect()
    }

    /// The record-form encoder of these lines.
    pub fn records(&self) -> LineRecords<'_> {
        LineRecords::new(self)
    }
}

/// Writes the record form of a batch's lines. What every line's record
/// shares (the head, the JSON around `message`) is rendered once.
pub struct LineRecords<'a> {
    lines: &'a LineBatch,
    /// Version, head, and the JSON object up to the message's value.
    prefix: Vec<u8>,
    /// The JSON object after the message's value.
    suffix: Vec<u8>,
    /// False when the extra field is named `message`: it replaces the line.
    with_line: bool,
    /// The whole buffer is ASCII, so every line is UTF-8: one check per
    /// batch instead of one per line.
    ascii: bool,
}

impl<'a> LineRecords<'a> {
    fn new(lines: &'a LineBatch) -> Self {
        let mut prefix = vec![RECORD_VERSION];
        put_head_of(lines.timestamp, &lines.meta, &mut prefix);
        prefix.push(b'{');
        let mut suffix = Vec::new();
        let mut with_line = true;
        let pair = |out: &mut Vec<u8>, k: &str, v: &str| {
            write_str(out, k);
            out.push(b':');
            write_str(out, v);
        };
        match &lines.extra {
            // Fields are ordered by name, as `json::write_fields` writes them.
            Some((k, v)) if &**k < MESSAGE => {
                pair(&mut prefix, k, v);
                prefix.push(b',');
            }
            Some((k, v)) if &**k > MESSAGE => {
                suffix.push(b',');
                pair(&mut suffix, k, v);
            }
            Some((k, v)) => {
                pair(&mut prefix, k, v);
                with_line = false;
            }
            None => {}
        }
        if with_line {
            write_str(&mut prefix, MESSAGE);
            prefix.push(b':');
        }
        suffix.push(b'}');
        LineRecords {
            lines,
            prefix,
            suffix,
            with_line,
            ascii: lines.buf.is_ascii(),
        }
    }

    /// Appends the record form of line `i` to `out`: byte for byte
    /// `codec::encode_record(&lines.event(i))`.
    pub fn encode(&self, i: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        if self.with_line {
            let line = self.lines.line(i);
            if self.ascii {
                write_text(out, line);
            } else {
                self.write_checked(line, out);
            }
        }
        out.extend_from_slice(&self.suffix);
    }

    fn write_checked(&self, line: &[u8], out: &mut Vec<u8>) {
        match std::str::from_utf8(line) {
            Ok(s) => write_str(out, s),
            // Either form's JSON is the replaced text (a bytes value is
            // written as its lossy string).
            Err(_) => write_str(out, &String::from_utf8_lossy(line)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_record;
    use proptest::prelude::*;

    const TRICKY: &[&[u8]] = &[
        b"plain line",
        b"",
        b"say \"hi\" and \\ back",
        b"tab\there\x01\x1f\x7f bell\x07",
        b"caf\xc3\xa9 \xe6\xbc\xa2 \xf0\x9f\x99\x82",
        b"bad \xff\xfe bytes",
        b"cut in the middle \xe6\xbc",
        b"\xc3",
    ];

    fn batch(extra: Option<(&str, &str)>, invalid: InvalidText) -> LineBatch {
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        for l in TRICKY {
            let s = buf.len();
            buf.extend_from_slice(l);
            ranges.push((s, buf.len()));
            buf.extend_from_slice(b"\r\n");
        }
        LineBatch {
            buf: buf.into(),
            ranges,
            meta: Metadata {
                source: "logs".into(),
                host: "gw-1".into(),
                topic: Some("t".into()),
                key: Some(Bytes::from_static(b"k")),
            },
            timestamp: 1_700_000_000_123_456_789,
            extra: extra.map(|(k, v)| (k.into(), v.into())),
            invalid,
        }
    }

    /// The event the file source built per line before line batches.
    fn built_by_hand(b: &LineBatch, i: usize) -> Event {
        let line = TRICKY[i].to_vec();
        let value = match String::from_utf8(line) {
            Ok(s) => Value::String(s),
            Err(e) => match b.invalid {
                InvalidText::Replace => {
                    Value::String(String::from_utf8_lossy(e.as_bytes()).into_owned())
                }
                InvalidText::Preserve => Value::Bytes(Bytes::from(e.into_bytes())),
            },
        };
        let mut e = Event::from_message_at(value, b.meta.clone(), b.timestamp);
        if let Some((k, v)) = &b.extra {
            e.fields.insert(&**k, Value::String(v.to_string()));
        }
        e
    }

    #[test]
    fn a_line_record_is_byte_identical_to_the_record_of_its_event() {
        let extras = [
            None,
            Some(("path", "/var/log/a \"quoted\".log")),
            Some(("file", "/tmp/x\n")),
            Some(("message", "/replaces/the/line")),
        ];
        for extra in extras {
            for invalid in [InvalidText::Replace, InvalidText::Preserve] {
                let b = batch(extra, invalid);
                let enc = b.records();
                for i in 0..b.len() {
                    let event = b.event(i);
                    assert_eq!(event, built_by_hand(&b, i), "line {i}, {extra:?}");
                    let (mut want, mut got) = (Vec::new(), Vec::new());
                    encode_record(&event, &mut want);
                    enc.encode(i, &mut got);
                    assert_eq!(got, want, "line {i}, {extra:?}, {invalid:?}");
                }
            }
        }
    }

    #[test]
    fn invalid_text_is_replaced_or_kept_as_bytes_in_the_event() {
        let b = batch(None, InvalidText::Preserve);
        assert_eq!(
            b.event(5).fields.get(MESSAGE),
            Some(&Value::Bytes(Bytes::from_static(b"bad \xff\xfe bytes")))
        );
        let b = batch(None, InvalidText::Replace);
        assert_eq!(b.event(5).message(), Some("bad \u{fffd}\u{fffd} bytes"));
        assert_eq!(b.events_from(6).len(), 2);
    }

    #[test]
    fn a_range_outside_the_buffer_reads_as_an_empty_line() {
        let mut b = batch(None, InvalidText::Replace);
        b.ranges.push((5, 1 << 20));
        assert_eq!(b.line(b.len() - 1), b"");
        assert_eq!(b.line(usize::MAX), b"");
    }

    #[test]
    fn an_ascii_buffer_encodes_as_its_events_do() {
        let text = b"a \"quoted\"\tline\x01\nplain\n\\back\n";
        let mut b = LineBatch::new(Bytes::from_static(text), Metadata::default(), 1);
        b.ranges = vec![(0, 16), (17, 22), (23, 28)];
        let enc = b.records();
        assert!(enc.ascii);
        for i in 0..b.len() {
            let (mut want, mut got) = (Vec::new(), Vec::new());
            encode_record(&b.event(i), &mut want);
            enc.encode(i, &mut got);
            assert_eq!(got, want, "line {i}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_encode_as_their_event_does(
            line in proptest::collection::vec(any::<u8>(), 0..64),
            name in "[a-z]{1,8}",
        ) {
            let b = LineBatch {
                ranges: vec![(0, line.len())],
                buf: line.into(),
                extra: Some((name.as_str().into(), "v".into())),
                ..LineBatch::default()
            };
            let (mut want, mut got) = (Vec::new(), Vec::new());
            encode_record(&b.event(0), &mut want);
            b.records().encode(0, &mut got);
            prop_assert_eq!(got, want);
        }
    }
}
