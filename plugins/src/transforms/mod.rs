//! Transforms: between sources and channels. Each is a config (serde) with
//! a `build()` returning a [`crate::Transform`]; see `component/transform.rs`
//! for the contract.

pub mod add_fields;
pub mod dedupe;
mod lru;
#[cfg(feature = "transform-script")]
pub mod route;
pub mod sample;
#[cfg(feature = "transform-script")]
pub mod script;
pub mod throttle;

use weir_core::event::{Event, Fields, Value};
use weir_core::metrics::Counter;

use crate::component::TransformContext;

/// The counter of events transform `ctx.id` drops on purpose for `reason`.
pub(crate) fn dropped_counter(ctx: &TransformContext, reason: &str) -> Counter {
    ctx.metrics.counter(
        "weir_transform_dropped_events_total",
        "Events a transform dropped on purpose (script, sampled, throttled, duplicate), by reason.",
        &[("component", ctx.id.as_str()), ("reason", reason)],
    )
}

/// The value at `path` in `fields`: a field name, or names joined by `.`
/// to reach into maps (`device.id`).
pub fn field_at<'a>(fields: &'a Fields, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = fields.get(parts.next()?)?;
    for p in parts {
        match v {
            Value::Map(m) => v = m.get(p)?,
            _ => return None,
        }
    }
    Some(v)
}

/// A stable 64-bit hash (XXH3) of the values at `paths` in `event` (a
/// missing field hashes as null), the same on every machine and run, so
/// that decisions made from it replay identically.
pub fn hash_fields(event: &Event, paths: &[String], buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    for p in paths {
        let v = field_at(&event.fields, p).unwrap_or(&Value::Null);
        // Our own values always serialize.
        let _ = serde_json::to_writer(&mut *buf, v);
        buf.push(0);
    }
    xxhash_rust::xxh3::xxh3_64(buf)
}

/// A stable hash of all of `event`'s fields.
pub fn hash_all_fields(event: &Event, buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    for (k, v) in &event.fields {
        buf.extend_from_slice(k.as_bytes());
        buf.push(0);
        let _ = serde_json::to_writer(&mut *buf, v);
        buf.push(0);
    }
    xxhash_rust::xxh3::xxh3_64(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Metadata;

    #[test]
    fn field_paths_reach_into_maps_and_hashes_are_stable() {
        let mut inner = Fields::new();
        inner.insert("id", Value::from("d1"));
        let mut e = Event::from_message_at("m", Metadata::default(), 0);
        e.fields.insert("device", Value::Map(inner));
        assert_eq!(field_at(&e.fields, "device.id"), Some(&Value::from("d1")));
        assert_eq!(field_at(&e.fields, "device.nope"), None);
        assert_eq!(field_at(&e.fields, "message.x"), None);
        let mut buf = Vec::new();
        let h = hash_fields(&e, &["device.id".to_owned()], &mut buf);
        // Fixed value: the hash must not change between versions or machines.
        assert_eq!(h, xxhash_rust::xxh3::xxh3_64(b"\"d1\"\0"));
        let missing = hash_fields(&e, &["nope".to_owned()], &mut buf);
        assert_eq!(missing, xxhash_rust::xxh3::xxh3_64(b"null\0"));
    }
}
#[cfg(feature = "transform-aggregate")]
pub mod aggregate;
