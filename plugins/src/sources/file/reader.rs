//! Splitting a file's bytes into lines, with bounded memory and without a
//! copy per line.
//!
//! Each read is one buffer: the unfinished line carried from the previous
//! read (at most `max` bytes), then the bytes just read. The splitter cuts
//! the buffer into line ranges with memchr; the buffer is then frozen and
//! shared by every line of the batch (`weir_core::lines::LineBatch`). Only
//! the unfinished tail is copied, into the carry for the next read.

/// Where a chunk's complete lines are: each line's range in the chunk
/// (newline and a carriage return before it excluded) and the file offset
/// just past its newline.
#[derive(Debug, Default, PartialEq)]
pub struct Cuts {
    pub ranges: Vec<(usize, usize)>,
    pub ends: Vec<u64>,
}

impl Cuts {
    /// Forgets the lines, keeping the room.
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.ends.clear();
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are no lines.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Accumulates bytes into lines. A line longer than `max` keeps its first
/// `max` bytes; the rest is dropped (counted in `truncated`).
pub struct LineSplitter {
    max: usize,
    /// The first bytes (at most `max`) of the line not finished yet.
    carry: Vec<u8>,
    /// The carried line was cut at `max`: its bytes until the newline are dropped.
    discarding: bool,
    /// Lines that were cut at `max`.
    pub truncated: u64,
}

impl LineSplitter {
    /// A splitter for lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        LineSplitter {
            max: max.max(1),
            carry: Vec::new(),
            discarding: false,
            truncated: 0,
        }
    }

    /// Bytes of an unfinished line held.
    pub fn pending(&self) -> usize {
        self.carry.len()
    }

    /// The unfinished line, if any, without a trailing carriage return.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.carry.is_empty() {
            return None;
        }
        let mut line = std::mem::take(&mut self.carry);
        self.discarding = false;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(line)
    }

    /// Forgets an unfinished line (after truncation of the file).
    pub fn reset(&mut self) {
        self.carry.clear();
        self.discarding = false;
    }

    /// The bytes a chunk starts with: the unfinished line carried over. The
    /// caller appends what it reads after them and passes the whole to `split`.
    pub fn carried(&self) -> &[u8] {
        &self.carry
    }

    /// Splits `chunk` (the carried bytes, then bytes read at file offset
    /// `offset`), appending its complete lines to `out`; the unfinished
    /// tail is carried to the next chunk.
    pub fn split(&mut self, chunk: &[u8], offset: u64, out: &mut Cuts) {
        let data_at = self.carry.len().min(chunk.len());
        let mut start = 0;
        // The carried line was already counted when it was cut.
        let mut counted = self.discarding;
        for nl in memchr::memchr_iter(b'\n', &chunk[data_at..]) {
            let nl = data_at + nl;
            let mut end = nl;
            if end - start > self.max {
                end = start + self.max;
                if !counted {
                    self.truncated += 1;
                }
            }
            if end > start && chunk[end - 1] == b'\r' {
                end -= 1;
            }
            out.ranges.push((start, end));
            out.ends.push(offset + (nl - data_at) as u64 + 1);
            start = nl + 1;
            counted = false;
        }
        let rest = &chunk[start..];
        let keep = rest.len().min(self.max);
        if rest.len() > self.max && !counted {
            self.truncated += 1;
            counted = true;
        }
        self.discarding = counted;
        if start > 0 || keep != self.carry.len() {
            self.carry.clear();
            self.carry.extend_from_slice(&rest[..keep]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` (each read at the offset where the previous ended)
    /// through a splitter, as the tailer does; returns the lines and ends.
    fn run(s: &mut LineSplitter, pieces: &[&[u8]]) -> Vec<(String, u64)> {
        let mut offset = 0;
        let mut got = Vec::new();
        for p in pieces {
            let mut chunk = s.carried().to_vec();
            chunk.extend_from_slice(p);
            let mut cuts = Cuts::default();
            s.split(&chunk, offset, &mut cuts);
            offset += p.len() as u64;
            for (i, &(a, b)) in cuts.ranges.iter().enumerate() {
                got.push((
                    String::from_utf8_lossy(&chunk[a..b]).into_owned(),
                    cuts.ends[i],
                ));
            }
        }
        got
    }

    #[test]
    fn lines_split_across_chunks_carry_their_end_offsets() {
        let mut s = LineSplitter::new(1024);
        let got = run(&mut s, &[b"ab\ncd", b"e\r\nf"]);
        assert_eq!(got, vec![("ab".into(), 3), ("cde".into(), 8)]);
        assert_eq!(s.pending(), 1);
        assert_eq!(s.flush(), Some(b"f".to_vec()));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn an_over_long_line_is_cut_and_counted_with_bounded_memory() {
        let mut s = LineSplitter::new(4);
        let got = run(&mut s, &[b"abcdefgh", b"ij", b"k\nxy\n"]);
        assert!(s.pending() <= 4);
        assert_eq!(got, vec![("abcd".into(), 12), ("xy".into(), 15)]);
        assert_eq!(s.truncated, 1);
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_not_cut_until_it_grows() {
        let mut s = LineSplitter::new(4);
        let got = run(&mut s, &[b"abcd", b"\n", b"efgh", b"i\r\n", b"jk\r\n"]);
        assert_eq!(
            got,
            vec![("abcd".into(), 5), ("efgh".into(), 12), ("jk".into(), 16)]
        );
        assert_eq!(s.truncated, 1);
    }

    #[test]
    fn a_carriage_return_is_dropped_even_when_the_cut_ends_on_it() {
        let mut s = LineSplitter::new(4);
        let got = run(&mut s, &[b"abc\rdef\n", b"x\r\r\n"]);
        assert_eq!(got, vec![("abc".into(), 8), ("x\r".into(), 12)]);
    }
}
