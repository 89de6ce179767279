//! Problems found in a config file, each with its file, position and key
//! path, reported all at once (`weir validate`, `weir-collector validate`).

use std::fmt;
use std::path::PathBuf;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub pos: Option<(usize, usize)>,
    /// Key path, e.g. `sinks.central.batch.max_events`; empty for the document.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((l, c)) = self.pos {
            write!(f, ":{l}:{c}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems of a config, in file order.
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        write!(
            f,
            "{} problem{} found",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Problems {}

/// Rewrites a deserializer's message in the user's words: no Rust type
/// names (`u32`, `usize`, `untagged enum Raw`), which mean nothing to
/// someone editing YAML.
pub fn plain_words(message: &str) -> String {
    let mut m = message.to_owned();
    for (from, to) in [
        ("expected u8", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected i16", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a string", "expected text"),
        ("expected struct ", "expected a mapping of keys, "),
        ("expected a sequence", "expected a list"),
        ("invalid type: ", ""),
    ] {
        m = m.replace(from, to);
    }
    if let Some(i) = m.find(" at line ") {
        // serde_yaml appends its own position; ours is in front already.
        m.truncate(i);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_lose_rust_type_names() {
        assert_eq!(
            plain_words("invalid type: string \"x\", expected u32 at line 3 column 5"),
            "string \"x\", expected a whole number"
        );
    }
}
