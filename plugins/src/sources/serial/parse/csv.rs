//! The `csv` parser: delimited cells named by the configured columns.
//!
//! Cells may be quoted (`"a, b"`, with `""` for a quote inside); empty cells
//! are left out of the event. A line whose cells are exactly the column
//! names is a header the device repeats (many do at power-up) and is skipped.

use weir_core::event::{Fields, Value};

use super::{typed, ParseError};
use crate::sources::serial::config::CsvConfig;

/// Parses lines into the configured columns.
#[derive(Debug, Clone)]
pub struct CsvParser {
    columns: Vec<String>,
    delimiter: char,
    convert: bool,
}

impl CsvParser {
    /// A parser for `cfg`.
    pub fn new(cfg: &CsvConfig) -> CsvParser {
        CsvParser {
            columns: cfg.columns.clone(),
            delimiter: cfg.delimiter,
            convert: cfg.convert,
        }
    }

    /// The fields of `line`, `None` for a header line.
    pub fn parse(&self, line: &str) -> Result<Option<Fields>, ParseError> {
        let cells = split(line, self.delimiter)?;
        if cells.len() != self.columns.len() {
            return Err(ParseError::ColumnCount {
                got: cells.len(),
                expected: self.columns.len(),
                columns: self.columns.join(&self.delimiter.to_string()),
            });
        }
        if cells.iter().zip(&self.columns).all(|(c, n)| c.text == *n) {
            return Ok(None);
        }
        let mut f = Fields::with_capacity(cells.len());
        for (cell, name) in cells.into_iter().zip(&self.columns) {
            if cell.text.is_empty() {
                continue;
            }
            let v = if self.convert && !cell.quoted {
                typed(&cell.text)
            } else {
                Value::String(cell.text)
            };
            f.insert(name.as_str(), v);
        }
        Ok(Some(f))
    }
}

struct Cell {
    text: String,
    /// Quoted cells stay strings: the quotes say the writer meant text.
    quoted: bool,
}

/// Splits `line` at `delim` outside quotes; spaces around unquoted cells are trimmed.
fn split(line: &str, delim: char) -> Result<Vec<Cell>, ParseError> {
    let mut cells = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut text = String::new();
        let mut quoted = false;
        while chars.peek() == Some(&' ') && delim != ' ' {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        text.push('"');
                    }
                    Some('"') => break,
                    Some(c) => text.push(c),
                    None => return Err(ParseError::UnterminatedQuote),
                }
            }
            // Anything between the closing quote and the delimiter is dropped.
            while chars.peek().is_some_and(|&c| c != delim) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == delim {
                    break;
                }
                text.push(c);
                chars.next();
            }
            let trimmed = text.trim_end();
            text.truncate(trimmed.len());
        }
        cells.push(Cell { text, quoted });
        match chars.next() {
            Some(_delimiter) => continue,
            None => return Ok(cells),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(columns: &[&str], delimiter: char) -> CsvParser {
        CsvParser::new(&CsvConfig {
            columns: columns.iter().map(|s| s.to_string()).collect(),
            delimiter,
            convert: true,
        })
    }

    #[test]
    fn names_cells_by_column_with_obvious_types() {
        let p = parser(&["id", "temp", "ok", "note"], ',');
        let f = p.parse("007,21.5,true,\"a, \"\"b\"\"\"").unwrap().unwrap();
        assert_eq!(f.get("id"), Some(&Value::String("007".into())));
        assert_eq!(f.get("temp"), Some(&Value::Float(21.5)));
        assert_eq!(f.get("ok"), Some(&Value::Bool(true)));
        assert_eq!(f.get("note"), Some(&Value::String("a, \"b\"".into())));
    }

    #[test]
    fn a_configurable_delimiter_and_empty_cells_left_out() {
        let p = parser(&["a", "b", "c"], ';');
        let f = p.parse("1; ;3").unwrap().unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f.get("c"), Some(&Value::Int(3)));
        assert_eq!(f.get("b"), None);
    }

    #[test]
    fn a_wrong_cell_count_or_open_quote_is_an_error_and_a_header_is_skipped() {
        let p = parser(&["a", "b"], ',');
        assert_eq!(p.parse("1,2,3").unwrap_err().reason(), "column_count");
        assert_eq!(p.parse("1").unwrap_err().reason(), "column_count");
        assert_eq!(p.parse("\"1,2").unwrap_err().reason(), "unterminated_quote");
        assert_eq!(p.parse("a,b").unwrap(), None);
    }

    #[test]
    fn conversion_can_be_turned_off() {
        let p = CsvParser::new(&CsvConfig {
            columns: vec!["n".into()],
            delimiter: ',',
            convert: false,
        });
        let f = p.parse("42").unwrap().unwrap();
        assert_eq!(f.get("n"), Some(&Value::String("42".into())));
    }
}
