//! The encoding of a script's `state` map in checkpoints.
//!
//! Stable and deterministic: the same map always encodes to the same bytes
//! (rhai maps iterate in key order), so a replay after a crash reaches the
//! same checkpoint bytes as the run it repeats. All integers little-endian.
//!
//! ```text
//! state   = version:u8 (1) value
//! value   = tag:u8 payload
//!   0 ()          no payload
//!   1 false, 2 true
//!   3 integer     i64
//!   4 float       f64 bits (u64)
//!   5 string      len:u32 UTF-8 bytes (a char is stored as a string)
//!   6 blob        len:u32 bytes
//!   7 array       count:u32 value*
//!   8 map         count:u32 (len:u32 key-bytes value)*  keys ascending
//!   9 timestamp   i64 ns since the epoch
//! ```
//!
//! Values that are not data (function pointers) are stored as `()`: the
//! checkpoint must always succeed, or the input log could never be trimmed.

use rhai::{Dynamic, ImmutableString, Map};

use crate::transforms::script::convert::Timestamp;

const VERSION: u8 = 1;
/// Nesting deeper than this is refused when decoding (bounds recursion).
const MAX_DEPTH: usize = 256;

/// Encodes `state`; the count of values stored as `()` because they were not data.
pub fn encode(state: &Map) -> (Vec<u8>, usize) {
    let mut out = vec![VERSION];
    let mut lost = 0;
    put_map(&mut out, state, &mut lost);
    (out, lost)
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Sizes are bounded by the sandbox limits, far below 4 GiB.
    out.extend_from_slice(&(n.min(u32::MAX as usize) as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

fn put_map(out: &mut Vec<u8>, m: &Map, lost: &mut usize) {
    out.push(8);
    put_len(out, m.len());
    for (k, v) in m {
        put_bytes(out, k.as_bytes());
        put(out, v, lost);
    }
}

fn put(out: &mut Vec<u8>, v: &Dynamic, lost: &mut usize) {
    if v.is_unit() {
        out.push(0);
    } else if let Ok(b) = v.as_bool() {
        out.push(if b { 2 } else { 1 });
    } else if let Ok(i) = v.as_int() {
        out.push(3);
        out.extend_from_slice(&i.to_le_bytes());
    } else if let Ok(f) = v.as_float() {
        out.push(4);
        out.extend_from_slice(&f.to_bits().to_le_bytes());
    } else if let Ok(c) = v.as_char() {
        out.push(5);
        put_bytes(out, c.to_string().as_bytes());
    } else if let Some(s) = v.read_lock::<ImmutableString>() {
        out.push(5);
        put_bytes(out, s.as_bytes());
    } else if let Some(b) = v.read_lock::<rhai::Blob>() {
        out.push(6);
        put_bytes(out, &b);
    } else if let Some(a) = v.read_lock::<rhai::Array>() {
        out.push(7);
        put_len(out, a.len());
        for x in a.iter() {
            put(out, x, lost);
        }
    } else if let Some(m) = v.read_lock::<Map>() {
        put_map(out, &m, lost);
    } else if let Some(t) = v.read_lock::<Timestamp>() {
        out.push(9);
        out.extend_from_slice(&t.0.to_le_bytes());
    } else {
        *lost += 1;
        out.push(0);
    }
}

/// Decodes a state made by [`encode`].
pub fn decode(b: &[u8]) -> Result<Map, String> {
    if b.is_empty() {
        return Ok(Map::new());
    }
    if b[0] != VERSION {
        return Err(format!("unknown script state version {}", b[0]));
    }
    let mut r = Reader { b, at: 1 };
    let v = r.value(0)?;
    if r.at != b.len() {
        return Err("trailing bytes after the script state".to_owned());
    }
    v.try_cast::<Map>()
        .ok_or_else(|| "the script state is not a map".to_owned())
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let s = self
            .b
            .get(self.at..self.at.saturating_add(n))
            .ok_or("the script state is truncated")?;
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn len(&mut self) -> Result<usize, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        let n = u32::from_le_bytes(a) as usize;
        // Every element takes at least one byte: a count past the end is corrupt.
        if n > self.b.len() - self.at {
            return Err("the script state is truncated".to_owned());
        }
        Ok(n)
    }

    fn text(&mut self) -> Result<String, String> {
        let n = self.len()?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| "the script state holds invalid UTF-8".to_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Dynamic, String> {
        if depth > MAX_DEPTH {
            return Err("the script state is nested too deeply".to_owned());
        }
        Ok(match self.u8()? {
            0 => Dynamic::UNIT,
            1 => Dynamic::FALSE,
            2 => Dynamic::TRUE,
            3 => Dynamic::from_int(self.u64()? as i64),
            4 => Dynamic::from_float(f64::from_bits(self.u64()?)),
            5 => Dynamic::from(ImmutableString::from(self.text()?)),
            6 => {
                let n = self.len()?;
                Dynamic::from_blob(self.take(n)?.to_vec())
            }
            7 => {
                let n = self.len()?;
                let mut a = Vec::with_capacity(n);
                for _ in 0..n {
                    a.push(self.value(depth + 1)?);
                }
                Dynamic::from_array(a)
            }
            8 => {
                let n = self.len()?;
                let mut m = Map::new();
                for _ in 0..n {
                    let k = self.text()?;
                    m.insert(k.into(), self.value(depth + 1)?);
                }
                Dynamic::from_map(m)
            }
            9 => Dynamic::from(Timestamp(self.u64()? as i64)),
            t => return Err(format!("unknown value tag {t} in the script state")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Map {
        let mut inner = Map::new();
        inner.insert("n".into(), Dynamic::from_int(-3));
        let mut m = Map::new();
        m.insert("z".into(), Dynamic::from_float(0.1));
        m.insert("a".into(), Dynamic::from("text"));
        m.insert("c".into(), Dynamic::from_char('é'));
        m.insert("b".into(), Dynamic::from_blob(vec![0, 255]));
        m.insert(
            "arr".into(),
            Dynamic::from_array(vec![Dynamic::UNIT, Dynamic::TRUE, Dynamic::from_map(inner)]),
        );
        m.insert(
            "t".into(),
            Dynamic::from(Timestamp(1_700_000_000_000_000_000)),
        );
        m
    }

    #[test]
    fn state_round_trips_and_encodes_identically_every_time() {
        let m = sample();
        let (bytes, lost) = encode(&m);
        assert_eq!(lost, 0);
        let back = decode(&bytes).unwrap();
        let (again, _) = encode(&back);
        assert_eq!(
            again, bytes,
            "re-encoding the decoded state gives the same bytes"
        );
        assert_eq!(back["a"].to_string(), "text");
        assert_eq!(back["c"].to_string(), "é", "a char comes back as a string");
        assert_eq!(
            back["t"].clone().cast::<Timestamp>().0,
            1_700_000_000_000_000_000
        );
        assert_eq!(back["z"].as_float().unwrap(), 0.1);
    }

    #[test]
    fn function_pointers_are_stored_as_unit_and_counted() {
        let mut m = Map::new();
        m.insert("f".into(), Dynamic::from(rhai::FnPtr::new("f").unwrap()));
        let (bytes, lost) = encode(&m);
        assert_eq!(lost, 1);
        assert!(decode(&bytes).unwrap()["f"].is_unit());
    }

    #[test]
    fn damaged_states_are_refused_not_panicked_on() {
        let (bytes, _) = encode(&sample());
        for cut in 1..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[9, 0]).is_err());
        assert!(decode(&[1, 8, 255, 255, 255, 255]).is_err());
        let mut deep = vec![1u8];
        for _ in 0..1000 {
            deep.extend_from_slice(&[7, 1, 0, 0, 0]);
        }
        assert!(decode(&deep).is_err());
        assert!(decode(&[]).unwrap().is_empty());
    }
}
