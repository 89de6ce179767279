//! What a line becomes: the `raw`, `json`, `csv`, `kv` and `nmea` parsers.
//!
//! A parser turns one line (without its line ending) into fields, or says
//! why it could not; the source sends such lines to `<id>.errors` and counts
//! them by [`ParseError::reason`].

mod csv;
mod kv;
pub mod nmea;

use weir_core::event::{Fields, Value, MESSAGE};

use super::config::{ParserKind, SerialSourceConfig};
pub use csv::CsvParser;
pub use kv::KvParser;
pub use nmea::NmeaError;

/// Why a line was not parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// `json`: not JSON at all.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// `json`: valid JSON, but not an object.
    #[error("JSON is not an object")]
    NotAnObject,
    /// `csv`: the number of cells differs from the columns.
    #[error("{got} cells, expected {expected} ({columns})")]
    ColumnCount {
        got: usize,
        expected: usize,
        columns: String,
    },
    /// `csv`, `kv`: a quoted value is not closed.
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// `kv`: a token without the `assign` character, or with an empty key.
    #[error("`{0}` is not a key{1}value pair")]
    NotKeyValue(String, char),
    /// `nmea`: see [`NmeaError`].
    #[error(transparent)]
    Nmea(#[from] NmeaError),
}

impl ParseError {
    /// A short, stable name: metric label and dead-letter `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::InvalidJson(_) => "invalid_json",
            ParseError::NotAnObject => "not_an_object",
            ParseError::ColumnCount { .. } => "column_count",
            ParseError::UnterminatedQuote => "unterminated_quote",
            ParseError::NotKeyValue(..) => "not_key_value",
            ParseError::Nmea(e) => e.reason(),
        }
    }
}

/// A line parser, built from the config.
#[derive(Debug, Clone)]
pub enum LineParser {
    Raw,
    Json,
    Csv(CsvParser),
    Kv(KvParser),
    Nmea,
}

impl LineParser {
    /// The parser `cfg` asks for (its values already validated).
    pub fn from_config(cfg: &SerialSourceConfig) -> LineParser {
        match cfg.parser {
            ParserKind::Raw => LineParser::Raw,
            ParserKind::Json => LineParser::Json,
            ParserKind::Csv => match &cfg.csv {
                Some(c) => LineParser::Csv(CsvParser::new(c)),
                // `problems()` refuses csv without columns; one column named
                // `message` is the harmless reading of that.
                None => LineParser::Raw,
            },
            ParserKind::Kv => LineParser::Kv(KvParser::new(&cfg.kv)),
            ParserKind::Nmea => LineParser::Nmea,
        }
    }

    /// The fields of `line`; `Ok(None)` for a line to skip silently (a
    /// CSV header the device repeats).
    pub fn parse(&self, line: &str) -> Result<Option<Fields>, ParseError> {
        match self {
            LineParser::Raw => {
                let mut f = Fields::with_capacity(2);
                f.insert(MESSAGE, Value::String(line.to_owned()));
                Ok(Some(f))
            }
            LineParser::Json => parse_json(line).map(Some),
            LineParser::Csv(p) => p.parse(line),
            LineParser::Kv(p) => p.parse(line).map(Some),
            LineParser::Nmea => Ok(Some(nmea::parse(line)?)),
        }
    }
}

fn parse_json(line: &str) -> Result<Fields, ParseError> {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(o)) => {
            Ok(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
        }
        Ok(_) => Err(ParseError::NotAnObject),
        Err(e) => Err(ParseError::InvalidJson(e.to_string())),
    }
}

/// The obvious type of a text value: `true`/`false`, an integer (no
/// leading zeros, which would make an identifier such as `007` a number),
/// a finite float written with digits, or else the text itself.
pub fn typed(s: &str) -> Value {
    match s {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let leading_zero = digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.");
    let numeric_start = digits.starts_with(|c: char| c.is_ascii_digit())
        || (digits.starts_with('.') && digits[1..].starts_with(|c: char| c.is_ascii_digit()));
    if !numeric_start || leading_zero {
        return Value::String(s.to_owned());
    }
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Int(i);
        }
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => Value::Float(f),
        _ => Value::String(s.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_conversion_takes_only_the_obvious_types() {
        assert_eq!(typed("42"), Value::Int(42));
        assert_eq!(typed("-7"), Value::Int(-7));
        assert_eq!(typed("21.5"), Value::Float(21.5));
        assert_eq!(typed("0.5"), Value::Float(0.5));
        assert_eq!(typed("-.5"), Value::Float(-0.5));
        assert_eq!(typed("1e3"), Value::Float(1000.0));
        assert_eq!(typed("true"), Value::Bool(true));
        assert_eq!(typed("007"), Value::String("007".into()));
        assert_eq!(typed("inf"), Value::String("inf".into()));
        assert_eq!(typed("NaN"), Value::String("NaN".into()));
        assert_eq!(typed("12ab"), Value::String("12ab".into()));
        assert_eq!(typed(""), Value::String(String::new()));
        assert_eq!(
            typed("99999999999999999999"),
            Value::Float(99999999999999999999.0)
        );
    }

    #[test]
    fn json_lines_become_fields_and_other_json_is_refused() {
        let f = LineParser::Json
            .parse(r#"{"t": 21.5, "id": "a", "n": 3, "ok": true}"#)
            .unwrap()
            .unwrap();
        assert_eq!(f.get("t"), Some(&Value::Float(21.5)));
        assert_eq!(f.get("n"), Some(&Value::Int(3)));
        assert_eq!(
            LineParser::Json.parse("[1,2]").unwrap_err(),
            ParseError::NotAnObject
        );
        let e = LineParser::Json.parse("{\"t\": ").unwrap_err();
        assert_eq!(e.reason(), "invalid_json");
    }

    #[test]
    fn raw_lines_keep_their_text() {
        let f = LineParser::Raw.parse("hello, world").unwrap().unwrap();
        assert_eq!(f.get(MESSAGE), Some(&Value::String("hello, world".into())));
    }
}
