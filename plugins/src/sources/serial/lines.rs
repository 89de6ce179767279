//! `framing: lines`: bytes into lines, lines into events through the parser.
//!
//! A line ends at `\n`; a `\r` before it is dropped, and empty lines are
//! skipped (devices that send `\r\n\r\n` are common). Bytes that are not
//! UTF-8 are replaced with U+FFFD. A line longer than `max_line_bytes`
//! keeps its first bytes and the rest is dropped and counted.

use weir_core::event::{Fields, Value, MESSAGE};

use super::batch::Emit;
use super::parse::LineParser;

/// Cuts a byte stream into lines and parses each.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    max: usize,
    /// The current line outgrew `max`: skipping to its end.
    dropping: bool,
    parser: LineParser,
}

impl LineDecoder {
    /// A decoder keeping lines up to `max` bytes.
    pub fn new(parser: LineParser, max: usize) -> LineDecoder {
        LineDecoder {
            buf: Vec::with_capacity(max.min(4096)),
            max,
            dropping: false,
            parser,
        }
    }

    /// Decodes `bytes`; a partial last line waits for the next call.
    pub fn feed(&mut self, mut bytes: &[u8], emit: &mut Emit<'_>) {
        while !bytes.is_empty() {
            let (chunk, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            bytes = &bytes[chunk.len() + usize::from(ended)..];
            if !self.dropping {
                let room = self.max - self.buf.len();
                self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    self.dropping = true;
                    emit.metrics.truncated_lines.inc();
                }
            }
            if ended {
                self.dropping = false;
                let line = std::mem::take(&mut self.buf);
                self.line(&line, emit);
                self.buf = line;
                self.buf.clear();
            }
        }
    }

    /// Forgets a partial line (the port was reopened); returns its length.
    pub fn reset(&mut self) -> usize {
        let n = self.buf.len();
        self.buf.clear();
        self.dropping = false;
        n
    }

    fn line(&self, raw: &[u8], emit: &mut Emit<'_>) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            return;
        }
        emit.records += 1;
        let text = String::from_utf8_lossy(raw);
        match self.parser.parse(&text) {
            Ok(Some(fields)) => emit.event(fields),
            Ok(None) => {}
            Err(e) => {
                let reason = e.reason();
                emit.metrics.parse_error(reason);
                let mut original = Fields::with_capacity(2);
                original.insert(MESSAGE, Value::String(text.into_owned()));
                emit.dead(reason, &e.to_string(), original);
            }
        }
    }
}
