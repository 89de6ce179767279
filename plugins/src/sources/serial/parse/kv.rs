//! The `kv` parser: `key=value` pairs, such as `T=21.5 H=40 status="door open"`.
//!
//! Pairs are separated by runs of spaces or tabs (or a configured
//! character); a value may be quoted to hold separators (`\"` and `\\`
//! inside). A token without the assign character is an error: a line that
//! is not what the device is meant to send should not pass half-read.

use weir_core::event::{Fields, Value};

use super::{typed, ParseError};
use crate::sources::serial::config::KvConfig;

/// Parses `key=value` lines.
#[derive(Debug, Clone)]
pub struct KvParser {
    separator: Option<char>,
    assign: char,
    convert: bool,
}

impl KvParser {
    /// A parser for `cfg`.
    pub fn new(cfg: &KvConfig) -> KvParser {
        KvParser {
            separator: cfg.separator,
            assign: cfg.assign,
            convert: cfg.convert,
        }
    }

    fn is_sep(&self, c: char) -> bool {
        match self.separator {
            Some(s) => c == s,
            None => c == ' ' || c == '\t',
        }
    }

    /// The pairs of `line` as fields; a later duplicate key wins.
    pub fn parse(&self, line: &str) -> Result<Fields, ParseError> {
        let mut f = Fields::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars.peek().is_some_and(|&c| self.is_sep(c) || c == ' ') {
                chars.next();
            }
            if chars.peek().is_none() {
                return Ok(f);
            }
            let mut key = String::new();
            while let Some(&c) = chars.peek() {
                if c == self.assign || self.is_sep(c) {
                    break;
                }
                key.push(c);
                chars.next();
            }
            let key = key.trim().to_owned();
            if chars.next() != Some(self.assign) || key.is_empty() {
                return Err(ParseError::NotKeyValue(key, self.assign));
            }
            let (value, quoted) = self.value(&mut chars)?;
            let v = if self.convert && !quoted {
                typed(&value)
            } else {
                Value::String(value)
            };
            f.insert(key, v);
        }
    }

    fn value(
        &self,
        chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    ) -> Result<(String, bool), ParseError> {
        let mut value = String::new();
        if self.separator.is_some_and(|s| s != ' ') {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(ParseError::UnterminatedQuote),
                    },
                    Some('"') => return Ok((value, true)),
                    Some(c) => value.push(c),
                    None => return Err(ParseError::UnterminatedQuote),
                }
            }
        }
        while let Some(&c) = chars.peek() {
            if self.is_sep(c) {
                break;
            }
            value.push(c);
            chars.next();
        }
        let trimmed = value.trim_end().len();
        value.truncate(trimmed);
        Ok((value, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(sep: Option<char>, assign: char) -> KvParser {
        KvParser::new(&KvConfig {
            separator: sep,
            assign,
            convert: true,
        })
    }

    #[test]
    fn pairs_become_typed_fields_and_quotes_keep_separators() {
        let f = kv(None, '=')
            .parse("T=21.5  H=40\tok=true status=\"door \\\"A\\\" open\" id=007")
            .unwrap();
        assert_eq!(f.get("T"), Some(&Value::Float(21.5)));
        assert_eq!(f.get("H"), Some(&Value::Int(40)));
        assert_eq!(f.get("ok"), Some(&Value::Bool(true)));
        assert_eq!(
            f.get("status"),
            Some(&Value::String("door \"A\" open".into()))
        );
        assert_eq!(f.get("id"), Some(&Value::String("007".into())));
    }

    #[test]
    fn configured_separator_and_assign_characters() {
        let f = kv(Some(','), ':').parse("a:1, b: x y,c:").unwrap();
        assert_eq!(f.get("a"), Some(&Value::Int(1)));
        assert_eq!(f.get("b"), Some(&Value::String("x y".into())));
        assert_eq!(f.get("c"), Some(&Value::String(String::new())));
    }

    #[test]
    fn a_token_without_assign_or_an_open_quote_is_an_error() {
        let p = kv(None, '=');
        assert_eq!(
            p.parse("T=1 OK").unwrap_err(),
            ParseError::NotKeyValue("OK".into(), '=')
        );
        assert_eq!(p.parse("=3").unwrap_err().reason(), "not_key_value");
        assert_eq!(p.parse("a=\"x").unwrap_err().reason(), "unterminated_quote");
        assert!(p.parse("   ").unwrap().is_empty());
    }
}
