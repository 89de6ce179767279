//! Writing an event's fields as JSON, the record value every sink sends.
//!
//! This is the one place the hot path turns text into JSON, once per event,
//! so it is written for speed: strings are scanned eight bytes at a time for
//! the few bytes JSON must escape (`"`, `\` and control characters) and
//! copied in runs. The output is byte for byte what `serde_json` writes for
//! the same values (a test checks it), so every encoder of an event agrees.

use crate::event::{format_rfc3339_nanos, Fields, Value};

/// Appends `fields` as a JSON object.
pub fn write_fields(out: &mut Vec<u8>, fields: &Fields) {
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// Appends one value as JSON.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::String(s) => write_str(out, s),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        // JSON has no NaN or infinity; null is the honest rendering.
        Value::Float(f) if !f.is_finite() => out.extend_from_slice(b"null"),
        Value::Float(f) => {
            // serde_json's rendering (ryu, with `.0` for integral values).
            let _ = serde_json::to_writer(&mut *out, f);
        }
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Timestamp(ns) => write_str(out, &format_rfc3339_nanos(*ns)),
        Value::Bytes(b) => write_str(out, &String::from_utf8_lossy(b)),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Map(m) => write_fields(out, m),
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `w` is a control character, `"` or `\`.
fn needs_escape(w: u64) -> bool {
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    control | zero(w ^ (LO * b'"' as u64)) | zero(w ^ (LO * b'\\' as u64)) != 0
}

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        // Skip eight clean bytes at a time; look closer only at a word
        // holding a byte that may need escaping.
        if i + 8 <= b.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&b[i..i + 8]);
            if !needs_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let c = b[i];
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[],
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(esc);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde(fields: &Fields) -> Vec<u8> {
        let mut e = crate::Event::from_message("", Default::default());
        e.fields = fields.clone();
        e.fields_json_serde()
    }

    #[test]
    fn every_escape_matches_serde_json() {
        let all: String = (0u8..0x80).map(char::from).collect::<String>() + "é漢🙂";
        let mut f = Fields::new();
        f.insert("s", Value::String(all.repeat(3)));
        f.insert("n", Value::Int(i64::MIN));
        f.insert("x", Value::Float(1.0));
        f.insert("y", Value::Float(-2.5e-300));
        f.insert("z", Value::Float(f64::NAN));
        f.insert("t", Value::Timestamp(1_700_000_000_123_456_789));
        f.insert("b", Value::Bytes(bytes::Bytes::from_static(b"a\xffb\"")));
        f.insert(
            "a",
            Value::Array(vec![Value::Null, Value::Bool(true), Value::Bool(false)]),
        );
        let mut inner = Fields::new();
        inner.insert("k\n", Value::Int(1));
        f.insert("m", Value::Map(inner));
        let mut out = Vec::new();
        write_fields(&mut out, &f);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(serde(&f)).unwrap()
        );
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(s in any::<String>(), n in any::<i64>(), x in any::<f64>()) {
            let mut f = Fields::new();
            f.insert("message", Value::String(s.clone()));
            f.insert(s, Value::Int(n));
            f.insert("f", Value::Float(x));
            let mut out = Vec::new();
            write_fields(&mut out, &f);
            prop_assert_eq!(out, serde(&f));
        }
    }
}
