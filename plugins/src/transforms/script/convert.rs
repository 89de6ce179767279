//! Between event values and rhai values.
//!
//! | event `Value` | rhai |
//! |---|---|
//! | `Null` | `()` |
//! | `String` | string |
//! | `Int` / `Float` / `Bool` | `i64` / `f64` / `bool` |
//! | `Timestamp` | `Timestamp` (ns since the epoch; see `functions/time.rs`) |
//! | `Bytes` | blob |
//! | `Array` / `Map` | array / object map (keys sorted, as in events) |
//!
//! A char becomes a one-character string; any other rhai value (a function
//! pointer, …) cannot be stored in an event and is an error.

use bytes::Bytes;
use rhai::{Array, Dynamic, ImmutableString, Map};
use weir_core::event::{Fields, Value};

/// A point in time inside scripts: nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// An event value as a rhai value (moved, not copied).
pub fn to_dynamic(v: Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::String(s) => Dynamic::from(ImmutableString::from(s)),
        Value::Int(i) => Dynamic::from_int(i),
        Value::Float(f) => Dynamic::from_float(f),
        Value::Bool(b) => Dynamic::from_bool(b),
        Value::Timestamp(ns) => Dynamic::from(Timestamp(ns)),
        Value::Bytes(b) => Dynamic::from_blob(b.to_vec()),
        Value::Array(a) => Dynamic::from_array(a.into_iter().map(to_dynamic).collect()),
        Value::Map(m) => Dynamic::from_map(fields_to_map(m)),
    }
}

/// An event value as a rhai value, copied (strings straight into rhai's
/// shared strings, one allocation fewer than cloning then converting).
pub fn to_dynamic_ref(v: &Value) -> Dynamic {
    match v {
        Value::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        Value::Array(a) => Dynamic::from_array(a.iter().map(to_dynamic_ref).collect()),
        Value::Map(m) => Dynamic::from_map(fields_to_map_ref(m)),
        other => to_dynamic(other.clone()),
    }
}

/// An event's fields as a rhai object map.
pub fn fields_to_map(f: Fields) -> Map {
    let mut m = Map::new();
    for (k, v) in f {
        m.insert(k.into(), to_dynamic(v));
    }
    m
}

/// An event's fields as a rhai object map, copied. Inserted one by one:
/// collecting into a `BTreeMap` buffers and sorts first, an allocation
/// and a sort per event for fields that are already in order.
pub fn fields_to_map_ref(f: &Fields) -> Map {
    let mut m = Map::new();
    for (k, v) in f.iter() {
        m.insert(k.into(), to_dynamic_ref(v));
    }
    m
}

/// A rhai value as an event value; `Err` names the type that cannot be stored.
pub fn from_dynamic(d: Dynamic) -> Result<Value, String> {
    // Strings first: they are most of what events carry.
    if d.is_string() {
        let s = d.into_immutable_string().map_err(str::to_owned)?;
        return Ok(Value::String(s.into_owned()));
    }
    if d.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(i) = d.as_int() {
        return Ok(Value::Int(i));
    }
    if let Ok(f) = d.as_float() {
        return Ok(Value::Float(f));
    }
    if let Ok(b) = d.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(c) = d.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if d.is::<Timestamp>() {
        let t = d.cast::<Timestamp>();
        return Ok(Value::Timestamp(t.0));
    }
    if d.is_blob() {
        let b = d.into_blob().map_err(str::to_owned)?;
        return Ok(Value::Bytes(Bytes::from(b)));
    }
    if d.is_array() {
        let a: Array = d.into_array().map_err(str::to_owned)?;
        return a
            .into_iter()
            .map(from_dynamic)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if d.is_map() {
        return d
            .try_cast::<Map>()
            .map_or(Err("map".to_owned()), map_to_fields)
            .map(Value::Map);
    }
    Err(format!(
        "a value of type `{}` cannot be stored in an event",
        d.type_name()
    ))
}

/// A rhai object map as event fields.
pub fn map_to_fields(m: Map) -> Result<Fields, String> {
    let mut f = Fields::with_capacity(m.len());
    for (k, v) in m {
        let v = from_dynamic(v).map_err(|e| format!("field `{k}`: {e}"))?;
        // The name as `&str`: `SmartString::to_string` goes through the
        // formatter, which cost more than the rest of a field's conversion.
        f.insert(k.as_str(), v);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_value_survives_the_round_trip() {
        let mut inner = Fields::new();
        inner.insert("x", Value::Int(1));
        let mut f = Fields::new();
        f.insert("null", Value::Null);
        f.insert("s", Value::String("text".into()));
        f.insert("i", Value::Int(-7));
        f.insert("f", Value::Float(2.5));
        f.insert("b", Value::Bool(true));
        f.insert("t", Value::Timestamp(1_700_000_000_123_456_789));
        f.insert("bytes", Value::Bytes(Bytes::from_static(b"\xff\x00")));
        f.insert("a", Value::Array(vec![Value::Int(1), Value::from("two")]));
        f.insert("m", Value::Map(inner));
        let back = map_to_fields(fields_to_map(f.clone())).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn a_function_pointer_cannot_be_stored() {
        let fp = Dynamic::from(rhai::FnPtr::new("f").unwrap());
        let e = from_dynamic(fp).unwrap_err();
        assert!(e.contains("cannot be stored"), "{e}");
    }
}
