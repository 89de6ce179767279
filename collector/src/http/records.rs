//! Fetch answered as JSON, for curl and browsers: one object per record,
//! values as UTF-8 text when they are, base64 otherwise.
//!
//! ```json
//! {"topic": "t", "partition": 0, "next_offset": 12,
//!  "records": [{"offset": 10, "timestamp": "2024-05-01T12:00:00.000Z", "key": null,
//!               "headers": {"weir.source": "app"}, "value": "{\"message\":\"hi\"}"}],
//!  "undecodable": [{"base_offset": 11, "last_offset": 11, "error": "..."}],
//!  "lost": [{"first_offset": 7, "last_offset": 9}]}
//! ```
//! A field that is not UTF-8 is given as `<name>_base64` instead (`value_base64`,
//! `key_base64`; a header as `{"base64": "..."}`). A batch that cannot be
//! decoded is listed under `undecodable` with its offsets; the records around
//! it are still answered. Records the collector lost to on-disk damage are
//! listed under `lost` as inclusive offset ranges (the `x-weir-lost-offsets`
//! header of a binary fetch).

use base64::Engine;
use serde_json::{json, Map, Value};
use weir_core::batch::{self, BatchHeader};
use weir_core::event::format_rfc3339_millis;
use weir_core::record::decode_batches;

fn text_or_base64(obj: &mut Map<String, Value>, name: &str, b: Option<&[u8]>) {
    match b {
        None => {
            obj.insert(name.into(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                obj.insert(name.into(), Value::String(s.into()));
            }
            Err(_) => {
                let enc = base64::engine::general_purpose::STANDARD.encode(b);
                obj.insert(format!("{name}_base64"), Value::String(enc));
            }
        },
    }
}

/// What a fetch read, to be rendered.
pub struct Fetched<'a> {
    /// The first offset asked for.
    pub from: i64,
    /// Whole batches.
    pub batches: &'a [u8],
    /// The offset after everything read (past trailing lost ranges too).
    pub next: i64,
    /// Inclusive offset ranges lost to damage, in order.
    pub lost: &'a [(i64, i64)],
}

/// Renders the records of `f.batches` at or after `f.from`, stopping after
/// the batch that takes the text past `max_bytes`. Returns the JSON text and
/// the offset to fetch next; lost ranges below it are listed.
pub fn render(topic: &str, partition: u32, f: &Fetched, max_bytes: usize) -> (Vec<u8>, i64) {
    let from = f.from;
    let mut records = Vec::new();
    let mut undecodable = Vec::new();
    let mut next = from;
    let mut size = 0usize;
    let mut whole = true;
    for b in batch::split(f.batches) {
        if size > max_bytes {
            whole = false;
            break;
        }
        let Ok(h) = BatchHeader::parse(b) else {
            whole = false;
            break;
        };
        next = h.last_offset() + 1;
        match decode_batches(b) {
            Err(e) => {
                size += 100;
                undecodable.push(json!({"base_offset": h.base_offset, "last_offset": h.last_offset(), "error": e.to_string()}));
            }
            Ok(rs) => {
                for r in rs.into_iter().filter(|r| r.offset >= from) {
                    let mut o = Map::new();
                    o.insert("offset".into(), r.offset.into());
                    o.insert(
                        "timestamp".into(),
                        format_rfc3339_millis(r.timestamp).into(),
                    );
                    text_or_base64(&mut o, "key", r.key.as_deref());
                    let mut headers = Map::new();
                    for (k, v) in &r.headers {
                        let v = match v.as_deref().map(std::str::from_utf8) {
                            None => Value::Null,
                            Some(Ok(s)) => s.into(),
                            Some(Err(_)) => {
                                json!({"base64": base64::engine::general_purpose::STANDARD.encode(v.as_deref().unwrap_or_default())})
                            }
                        };
                        headers.insert(k.clone(), v);
                    }
                    o.insert("headers".into(), Value::Object(headers));
                    text_or_base64(&mut o, "value", r.value.as_deref());
                    size += 64 + r.value.as_ref().map_or(0, |v| v.len() * 4 / 3);
                    records.push(Value::Object(o));
                }
            }
        }
    }
    if whole {
        next = next.max(f.next);
    }
    let lost: Vec<Value> = f
        .lost
        .iter()
        .filter(|(first, _)| *first < next)
        .map(|(first, last)| json!({"first_offset": first, "last_offset": last}))
        .collect();
    let doc = json!({
        "topic": topic,
        "partition": partition,
        "next_offset": next,
        "records": records,
        "undecodable": undecodable,
        "lost": lost,
    });
    (serde_json::to_vec(&doc).unwrap_or_default(), next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::record::{encode_batch, Compression, ProducerStamp};
    use weir_core::{Event, Metadata, Value as V};

    #[test]
    fn text_stays_text_bytes_become_base64_and_a_broken_batch_is_listed_between_good_ones() {
        let stamp = ProducerStamp {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        };
        let mut e = Event::from_message("hello".to_owned(), Metadata::default());
        e.meta.key = Some(bytes::Bytes::from_static(&[0xff, 0xfe]));
        let mut a = encode_batch([&e], stamp, Compression::None)
            .unwrap()
            .to_vec();
        batch::set_base_offset(&mut a, 0);
        let mut broken = a.clone();
        batch::set_base_offset(&mut broken, 1);
        let n = broken.len();
        broken[n - 2] ^= 0xff; // damage the records, not the header
        let mut c = Event::from_message("after".to_owned(), Metadata::default());
        c.fields.insert("n".to_owned(), V::Int(3));
        let mut c = encode_batch([&c], stamp, Compression::None)
            .unwrap()
            .to_vec();
        batch::set_base_offset(&mut c, 2);
        let all = [a, broken, c].concat();
        let f = Fetched {
            from: 0,
            batches: &all,
            next: 3,
            lost: &[],
        };
        let (text, next) = render("t", 0, &f, 1 << 20);
        assert_eq!(next, 3);
        let v: Value = serde_json::from_slice(&text).unwrap();
        let recs = v["records"].as_array().unwrap();
        assert_eq!(recs.len(), 2, "{v}");
        assert!(recs[0]["value"].as_str().unwrap().contains("hello"));
        assert_eq!(recs[0]["key_base64"], "//4=");
        assert_eq!(recs[1]["offset"], 2);
        assert_eq!(v["undecodable"][0]["base_offset"], 1);
    }

    #[test]
    fn lost_ranges_are_listed_and_a_trailing_one_moves_the_next_offset_past_it() {
        let stamp = ProducerStamp {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        };
        let e = Event::from_message("kept".to_owned(), Metadata::default());
        let mut a = encode_batch([&e], stamp, Compression::None)
            .unwrap()
            .to_vec();
        batch::set_base_offset(&mut a, 3);
        // Offsets 0..=2 and 4..=9 were lost; the read ended at 10.
        let lost = [(0, 2), (4, 9)];
        let f = Fetched {
            from: 0,
            batches: &a,
            next: 10,
            lost: &lost,
        };
        let (text, next) = render("t", 0, &f, 1 << 20);
        assert_eq!(next, 10);
        let v: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["next_offset"], 10);
        assert_eq!(v["records"][0]["offset"], 3);
        assert_eq!(v["lost"][0], json!({"first_offset": 0, "last_offset": 2}));
        assert_eq!(v["lost"][1], json!({"first_offset": 4, "last_offset": 9}));
        // Only lost ranges: nothing to render, and the consumer moves past them.
        let f = Fetched {
            from: 4,
            batches: &[],
            next: 10,
            lost: &lost[1..],
        };
        let (text, next) = render("t", 0, &f, 1 << 20);
        assert_eq!(next, 10);
        let v: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["lost"].as_array().unwrap().len(), 1);
    }
}
