//! Line and column of every key in a YAML document, by key path, so that a
//! problem found after deserializing (where positions are gone) can still say
//! where in the file it is.
//!
//! Paths use serde_path_to_error's notation: `sinks.central.batch.max_events`,
//! `sources.app.include[0]`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based line and column.
pub type Pos = (usize, usize);

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Index {
    stack: Vec<Frame>,
    at: HashMap<String, Pos>,
    /// Scalar values: where each starts and how it is written.
    values: HashMap<String, Scalar>,
}

/// Where a scalar value starts in the file, and its style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scalar {
    pub pos: Pos,
    pub style: TScalarStyle,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Index {
    /// Path of the node that starts now, recording its position; `None` for a map key.
    fn enter(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        let pos = (mark.line(), mark.col() + 1);
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // This node is a key.
                    let k = scalar.unwrap_or("?").to_owned();
                    let p = join(path, &k);
                    self.at.entry(p).or_insert(pos);
                    *key = Some(k);
                    None
                }
                Some(k) => Some(join(path, &k)),
            },
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                self.at.entry(p.clone()).or_insert(pos);
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Index {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(s, style, ..) => {
                if let Some(path) = self.enter(mark, Some(&s)) {
                    let pos = (mark.line(), mark.col() + 1);
                    self.values.entry(path).or_insert(Scalar { pos, style });
                }
            }
            Event::Alias(_) => {
                self.enter(mark, None);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.enter(mark, None) {
                    self.stack.push(Frame::Map { path, key: None });
                } else {
                    // A complex key: track it so the stack stays balanced.
                    self.stack.push(Frame::Map {
                        path: String::from("?"),
                        key: None,
                    });
                }
            }
            Event::SequenceStart(..) => {
                let path = self.enter(mark, None).unwrap_or_else(|| "?".to_owned());
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// Positions of the keys and sequence items of `text`; empty if it does not parse.
pub fn index(text: &str) -> HashMap<String, Pos> {
    let mut idx = Index::default();
    let mut parser = Parser::new_from_str(text);
    if parser.load(&mut idx, false).is_err() {
        return HashMap::new();
    }
    idx.at
}

/// The scalar values of `text` by key path; empty if it does not parse.
pub fn scalars(text: &str) -> HashMap<String, Scalar> {
    let mut idx = Index::default();
    let mut parser = Parser::new_from_str(text);
    if parser.load(&mut idx, false).is_err() {
        return HashMap::new();
    }
    idx.values
}

/// The file position of `line`:`column` (1-based) inside the text of the
/// scalar `value` of `text`, where the two correspond one to one: in a
/// literal block (`|`), and on the single line of a plain or quoted scalar.
pub fn inside(text: &str, value: &Scalar, line: usize, column: usize) -> Option<Pos> {
    let (vline, vcol) = value.pos;
    match value.style {
        TScalarStyle::Literal => {
            // The scalar's mark is the start of its content (the line after
            // the `|` indicator), indented as its first non-blank line.
            let indent = text
                .lines()
                .skip(vline.saturating_sub(1))
                .find(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start_matches(' ').len())?;
            Some((vline + line - 1, indent + column))
        }
        TScalarStyle::Plain if line == 1 => Some((vline, vcol + column - 1)),
        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted if line == 1 => {
            Some((vline, vcol + column))
        }
        _ => None,
    }
}

/// The position of `path`, or of its nearest ancestor that has one.
pub fn find(index: &HashMap<String, Pos>, path: &str) -> Option<Pos> {
    let mut p = path.to_owned();
    loop {
        if let Some(pos) = index.get(&p) {
            return Some(*pos);
        }
        let cut = p.rfind(['.', '['])?;
        p.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_sequence_items() {
        let text = "sources:\n  app:\n    type: file\n    include:\n      - /a\n      - /b\nsinks:\n  out: { type: stdout, inputs: [app] }\n";
        let idx = index(text);
        assert_eq!(idx.get("sources.app.type"), Some(&(3, 5)));
        assert_eq!(idx.get("sources.app.include[1]"), Some(&(6, 9)));
        assert_eq!(idx.get("sinks.out.inputs"), Some(&(8, 24)));
        assert_eq!(find(&idx, "sources.app.include[1].x"), Some((6, 9)));
        assert_eq!(find(&idx, "nothing.here"), None);
    }

    #[test]
    fn positions_inside_scalar_values_map_to_file_positions() {
        let text = "t:
  p:
    source: |
      let a = 1;

      let b = +;
    flow: \"x == \"
    plain: a >> b
";
        let v = scalars(text);
        let src = v["t.p.source"];
        assert_eq!(src.style, TScalarStyle::Literal);
        // Script line 3 (`let b = +;`), column 9 (`+`) is file line 6, column 15.
        assert_eq!(inside(text, &src, 3, 9), Some((6, 15)));
        assert_eq!(&text.lines().nth(5).unwrap()[14..15], "+");
        let flow = v["t.p.flow"];
        assert_eq!(inside(text, &flow, 1, 3), Some((7, 14)));
        assert_eq!(&text.lines().nth(6).unwrap()[13..14], "=");
        let plain = v["t.p.plain"];
        assert_eq!(inside(text, &plain, 1, 3), Some((8, 14)));
        assert_eq!(inside(text, &plain, 2, 3), None);
    }
}
