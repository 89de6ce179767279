//! Parsing text into values: `parse_json`, `encode_json`,
//! `parse_key_value`, `parse_regex`.

use std::collections::HashMap;
use std::sync::Arc;

use regex::{Regex, RegexBuilder};
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map};
use weir_core::event::{Fields, Value};

use super::Host;
use crate::transforms::script::convert::{from_dynamic, to_dynamic};

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Most patterns kept compiled; scripts name their patterns as literals, so
/// this is only reached by a script building patterns from event data.
const MAX_PATTERNS: usize = 128;
/// Bound on one compiled pattern's memory (regex's NFA size limit).
const PATTERN_BYTES: usize = 1 << 20;

/// A compiled pattern and its named groups.
pub struct Pattern {
    regex: Regex,
    names: Vec<(usize, ImmutableString)>,
}

/// Patterns compiled once and reused, bounded: when full, it starts over.
#[derive(Default)]
pub struct RegexCache {
    patterns: HashMap<String, Arc<Pattern>>,
    /// The pattern used last: scripts call one pattern per call site, so
    /// this spares hashing the pattern text on every call. The text is kept
    /// (shared) so that a literal pattern, which rhai passes as the same
    /// shared string on every run, is recognised by its address alone.
    last: Option<(ImmutableString, Arc<Pattern>)>,
    /// How many times a pattern was compiled (for tests).
    pub compiled: u64,
}

impl RegexCache {
    /// The compiled `pattern`.
    pub fn get(&mut self, pattern: &ImmutableString) -> Result<Arc<Pattern>, String> {
        if let Some((text, p)) = &self.last {
            if text.ptr_eq(pattern) || text == pattern {
                return Ok(p.clone());
            }
        }
        if let Some(p) = self.patterns.get(pattern.as_str()) {
            self.last = Some((pattern.clone(), p.clone()));
            return Ok(p.clone());
        }
        let regex = RegexBuilder::new(pattern)
            .size_limit(PATTERN_BYTES)
            .dfa_size_limit(2 * PATTERN_BYTES)
            .build()
            .map_err(|e| format!("parse_regex: invalid pattern: {e}"))?;
        let names = regex
            .capture_names()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (i, ImmutableString::from(n))))
            .collect();
        let p = Arc::new(Pattern { regex, names });
        if self.patterns.len() >= MAX_PATTERNS {
            self.patterns.clear();
        }
        self.patterns.insert(pattern.to_string(), p.clone());
        self.last = Some((pattern.clone(), p.clone()));
        self.compiled += 1;
        Ok(p)
    }
}

/// The named captures of `pattern` in `s` as a map (a group that took no
/// part in the match is `()`), or `()` when it does not match.
pub fn captures(p: &Pattern, s: &str) -> Dynamic {
    let Some(c) = p.regex.captures(s) else {
        return Dynamic::UNIT;
    };
    let mut m = Map::new();
    for (i, name) in &p.names {
        let v = c.get(*i).map_or(Dynamic::UNIT, |g| {
            Dynamic::from(ImmutableString::from(g.as_str()))
        });
        m.insert(name.as_str().into(), v);
    }
    Dynamic::from_map(m)
}

/// What [`captures`] gives, as an event value (for the scripts' native
/// fast path): the named groups (`Null` for one that took no part), or
/// `Null` when the pattern does not match.
pub fn captures_value(p: &Pattern, s: &str) -> Value {
    let Some(c) = p.regex.captures(s) else {
        return Value::Null;
    };
    let mut m = Fields::with_capacity(p.names.len());
    for (i, name) in &p.names {
        let v = c
            .get(*i)
            .map_or(Value::Null, |g| Value::String(g.as_str().to_owned()));
        m.insert(name.as_str(), v);
    }
    Value::Map(m)
}

/// Key-value pairs as a rhai map (see [`each_key_value`]).
pub fn key_values(s: &str, pair_sep: &str, kv_sep: &str) -> Map {
    let mut out = Map::new();
    each_key_value(s, pair_sep, kv_sep, |k, v| {
        out.insert(k.into(), v.map_or(Dynamic::TRUE, Dynamic::from));
    });
    out
}

/// What `parse_key_value(s)` gives, as an event value (for the scripts'
/// native fast path): the same pairs as [`key_values`] with `" "` and `"="`.
pub fn key_values_value(s: &str) -> Value {
    let mut out = Fields::new();
    each_key_value(s, " ", "=", |k, v| {
        out.insert(k, v.map_or(Value::Bool(true), Value::String));
    });
    Value::Map(out)
}

/// Key-value pairs: pairs separated by `pair_sep` (`" "`: any run of
/// whitespace), key from value by `kv_sep`. Values may be double-quoted
/// (`msg="a b"`, with `\"` inside); keys and values are trimmed; a key
/// without a separator is `true` (`None` to `put`); a repeated key is put
/// again (the last one wins in a map).
fn each_key_value(
    s: &str,
    pair_sep: &str,
    kv_sep: &str,
    mut put: impl FnMut(&str, Option<String>),
) {
    let whitespace = pair_sep.trim().is_empty();
    let mut rest = s;
    loop {
        rest = if whitespace {
            rest.trim_start()
        } else {
            rest.trim_start_matches(|c: char| c.is_whitespace())
        };
        if rest.is_empty() {
            break;
        }
        // The key runs to the first kv_sep or pair separator.
        let end_pair = find_sep(rest, pair_sep, whitespace).unwrap_or(rest.len());
        let kv = rest[..end_pair].find(kv_sep).filter(|_| !kv_sep.is_empty());
        let (key, value, next) = match kv {
            None => (rest[..end_pair].trim(), None, end_pair),
            Some(k) => {
                let after = &rest[k + kv_sep.len()..];
                let start = k + kv_sep.len() + (after.len() - after.trim_start().len());
                let v = &rest[start..];
                if let Some(q) = v.strip_prefix('"') {
                    let (text, used) = quoted(q);
                    (rest[..k].trim(), Some(text), start + 1 + used)
                } else {
                    let e = find_sep(v, pair_sep, whitespace).unwrap_or(v.len());
                    (rest[..k].trim(), Some(v[..e].trim().to_owned()), start + e)
                }
            }
        };
        if !key.is_empty() {
            put(key, value);
        }
        rest = &rest[next.min(rest.len())..];
        // Step over the separator itself.
        if !whitespace && rest.starts_with(pair_sep) {
            rest = &rest[pair_sep.len()..];
        }
    }
}

fn find_sep(s: &str, sep: &str, whitespace: bool) -> Option<usize> {
    if whitespace {
        s.find(char::is_whitespace)
    } else {
        s.find(sep)
    }
}

/// The text of a quoted value (after the opening quote) and the bytes used,
/// closing quote included; an unterminated quote takes the rest.
fn quoted(s: &str) -> (String, usize) {
    let mut text = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, n)) => text.push(n),
                None => text.push('\\'),
            },
            '"' => return (text, i + 1),
            c => text.push(c),
        }
    }
    (text, s.len())
}

/// `parse_json(s)` as an event value (shared with the native fast path).
pub fn json_value(s: &str) -> Result<Value, String> {
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| format!("parse_json: {e}"))?;
    Ok(Value::from(v))
}

pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    engine.register_fn("parse_json", |s: &str| -> Res<Dynamic> {
        Ok(to_dynamic(json_value(s)?))
    });
    engine.register_fn("encode_json", |v: Dynamic| -> Res<String> {
        let v = from_dynamic(v).map_err(|e| format!("encode_json: {e}"))?;
        serde_json::to_string(&v).map_err(|e| format!("encode_json: {e}").into())
    });
    engine.register_fn("parse_key_value", |s: &str| {
        Dynamic::from_map(key_values(s, " ", "="))
    });
    engine.register_fn(
        "parse_key_value",
        |s: &str, pair: &str, kv: &str| -> Res<Dynamic> {
            if kv.is_empty() {
                return Err("parse_key_value: the key-value separator must not be empty".into());
            }
            Ok(Dynamic::from_map(key_values(s, pair, kv)))
        },
    );
    let h = host.clone();
    engine.register_fn(
        "parse_regex",
        move |s: &str, pattern: ImmutableString| -> Res<Dynamic> {
            let p = h
                .regexes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&pattern)?;
            Ok(captures(&p, s))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &str, pair: &str, sep: &str) -> Vec<(String, String)> {
        key_values(s, pair, sep)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn key_values_split_on_whitespace_with_quotes_and_bare_keys() {
        assert_eq!(
            kv(
                r#"level=info  msg="disk \"sda\" full" temp=81.5 verbose"#,
                " ",
                "="
            ),
            pairs(&[
                ("level", "info"),
                ("msg", "disk \"sda\" full"),
                ("temp", "81.5"),
                ("verbose", "true")
            ])
        );
        assert_eq!(kv("", " ", "="), pairs(&[]));
        assert_eq!(kv("a=1 a=2", " ", "="), pairs(&[("a", "2")]));
    }

    #[test]
    fn key_values_take_custom_separators() {
        assert_eq!(
            kv("device: d1, temp: 20.5 ,empty:", ",", ":"),
            pairs(&[("device", "d1"), ("empty", ""), ("temp", "20.5")])
        );
        assert_eq!(
            kv("a=1&b=two%20words&c", "&", "="),
            pairs(&[("a", "1"), ("b", "two%20words"), ("c", "true")])
        );
    }

    #[test]
    fn regex_captures_are_named_and_patterns_compile_once() {
        let mut cache = RegexCache::default();
        let pat = r"^(?P<level>\w+) (?P<device>d\d+)(?: (?P<extra>.*))?$";
        for _ in 0..3 {
            let p = cache.get(&pat.into()).unwrap();
            let m = captures(&p, "warn d7").cast::<Map>();
            assert_eq!(m["level"].to_string(), "warn");
            assert_eq!(m["device"].to_string(), "d7");
            assert!(m["extra"].is_unit());
        }
        assert_eq!(cache.compiled, 1);
        let p = cache.get(&pat.into()).unwrap();
        assert!(captures(&p, "no match here!").is_unit());
        assert!(cache.get(&"(unclosed".into()).is_err());
    }

    #[test]
    fn the_pattern_cache_stays_bounded() {
        let mut cache = RegexCache::default();
        for i in 0..(MAX_PATTERNS * 3) {
            cache.get(&format!("x{i}").into()).unwrap();
        }
        assert!(cache.patterns.len() <= MAX_PATTERNS);
    }
}
