//! Line and column of every key in a YAML document, by key path, so that a
//! problem found after deserializing (where positions are gone) can still say
//! where in the file it is.
//!
//! Paths use serde_path_to_error's notation: `sinks.central.batch.max_events`,
//! `sources.app.include[0]`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

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
            Event::Scalar(s, ..) => {
                self.enter(mark, Some(&s));
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
}
