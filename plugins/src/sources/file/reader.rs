//! Splitting a file's bytes into lines, with bounded memory.

use bytes::Bytes;
use weir_core::Value;

use super::config::InvalidUtf8;

/// A complete line and the file offset just past its newline.
#[derive(Debug, PartialEq)]
pub struct Line {
    pub value: Value,
    pub end: u64,
}

/// Accumulates bytes into lines. A line longer than `max` keeps its first
/// `max` bytes; the rest is dropped (counted in `truncated`).
pub struct LineSplitter {
    max: usize,
    utf8: InvalidUtf8,
    partial: Vec<u8>,
    /// Dropping bytes of an over-long line until its newline.
    discarding: bool,
    /// Lines that were cut at `max`.
    pub truncated: u64,
}

impl LineSplitter {
    /// A splitter for lines of at most `max` bytes.
    pub fn new(max: usize, utf8: InvalidUtf8) -> Self {
        LineSplitter {
            max,
            utf8,
            partial: Vec::new(),
            discarding: false,
            truncated: 0,
        }
    }

    /// Bytes of an unfinished line held.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// The unfinished line, if any, as a line ending at `end`.
    pub fn flush(&mut self, end: u64) -> Option<Line> {
        if self.partial.is_empty() {
            return None;
        }
        let line = std::mem::take(&mut self.partial);
        self.discarding = false;
        Some(Line {
            value: self.to_value(line),
            end,
        })
    }

    /// Forgets an unfinished line (after truncation of the file).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.discarding = false;
    }

    /// Splits `chunk`, read at file offset `offset`, appending complete lines to `out`.
    pub fn push(&mut self, chunk: &[u8], offset: u64, out: &mut Vec<Line>) {
        let mut start = 0;
        let mut it = memchr::memchr_iter(b'\n', chunk);
        loop {
            let nl = it.next();
            let end = nl.unwrap_or(chunk.len());
            let piece = &chunk[start..end];
            if !self.discarding {
                let room = self.max - self.partial.len();
                if piece.len() > room {
                    self.partial.extend_from_slice(&piece[..room]);
                    self.discarding = true;
                    self.truncated += 1;
                } else {
                    self.partial.extend_from_slice(piece);
                }
            }
            match nl {
                Some(i) => {
                    let line = std::mem::take(&mut self.partial);
                    self.discarding = false;
                    out.push(Line {
                        value: self.to_value(line),
                        end: offset + i as u64 + 1,
                    });
                    start = i + 1;
                }
                None => break,
            }
        }
    }

    fn to_value(&self, mut line: Vec<u8>) -> Value {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match String::from_utf8(line) {
            Ok(s) => Value::String(s),
            Err(e) => match self.utf8 {
                InvalidUtf8::Replace => {
                    Value::String(String::from_utf8_lossy(e.as_bytes()).into_owned())
                }
                InvalidUtf8::Preserve => Value::Bytes(Bytes::from(e.into_bytes())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line]) -> Vec<(String, u64)> {
        lines
            .iter()
            .map(|l| match &l.value {
                Value::String(s) => (s.clone(), l.end),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn lines_split_across_chunks_carry_their_end_offsets() {
        let mut s = LineSplitter::new(1024, InvalidUtf8::Replace);
        let mut out = Vec::new();
        s.push(b"ab\ncd", 0, &mut out);
        s.push(b"e\r\nf", 5, &mut out);
        assert_eq!(texts(&out), vec![("ab".into(), 3), ("cde".into(), 8)]);
        assert_eq!(s.pending(), 1);
    }

    #[test]
    fn an_over_long_line_is_cut_and_counted_with_bounded_memory() {
        let mut s = LineSplitter::new(4, InvalidUtf8::Replace);
        let mut out = Vec::new();
        s.push(b"abcdefgh", 0, &mut out);
        assert!(s.pending() <= 4);
        s.push(b"ijk\nxy\n", 8, &mut out);
        assert_eq!(texts(&out), vec![("abcd".into(), 12), ("xy".into(), 15)]);
        assert_eq!(s.truncated, 1);
    }

    #[test]
    fn invalid_utf8_is_replaced_or_preserved() {
        let mut out = Vec::new();
        LineSplitter::new(64, InvalidUtf8::Replace).push(b"a\xffb\n", 0, &mut out);
        assert_eq!(out[0].value, Value::String("a\u{fffd}b".into()));
        out.clear();
        LineSplitter::new(64, InvalidUtf8::Preserve).push(b"a\xffb\n", 0, &mut out);
        assert_eq!(out[0].value, Value::Bytes(Bytes::from_static(b"a\xffb")));
    }
}
