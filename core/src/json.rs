//! Writing an event's fields as JSON, the record value every sink sends.
//!
//! This is the one place the hot path turns text into JSON, once per event,
//! so it is written for speed: strings are scanned sixteen bytes at a time
//! (SSE2; eight with SWAR elsewhere) for the few bytes JSON must escape
//! (`"`, `\` and control characters) and
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

/// Whether byte `c` must be escaped in a JSON string.
fn special(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// The index of the first byte at or after `i` that must be escaped, or
/// `b.len()`. Sixteen bytes at a time with SSE2 (every x86_64 has it).
#[cfg(target_arch = "x86_64")]
fn next_special(b: &[u8], mut i: usize) -> usize {
    use std::arch::x86_64::*;
    while i + 16 <= b.len() {
        // SAFETY: SSE2 is part of x86_64; the load reads b[i..i + 16], in bounds.
        let m = unsafe {
            let v = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let slash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // Unsigned v <= 0x1f: min(v, 0x1f) == v.
            let ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, slash), ctl)) as u32
        };
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    while i < b.len() && !special(b[i]) {
        i += 1;
    }
    i
}

/// The index of the first byte at or after `i` that must be escaped, or
/// `b.len()`: eight bytes at a time, looking closer only at a word holding
/// such a byte.
#[cfg(not(target_arch = "x86_64"))]
fn next_special(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    while i + 8 <= b.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[i..i + 8]);
        let w = u64::from_le_bytes(word);
        let control = w.wrapping_sub(LO * 0x20) & !w & HI;
        if control | zero(w ^ (LO * b'"' as u64)) | zero(w ^ (LO * b'\\' as u64)) != 0 {
            break;
        }
        i += 8;
    }
    while i < b.len() && !special(b[i]) {
        i += 1;
    }
    i
}

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_text(out, s.as_bytes());
}

/// Appends text known to be UTF-8 (or ASCII) as a JSON string: the escaping
/// looks at ASCII bytes only and copies every other byte as it is.
pub(crate) fn write_text(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    loop {
        i = next_special(b, i);
        if i >= b.len() {
            break;
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
