//! `to_int` and `to_float`: numbers from strings, numbers and booleans.
//! A value that is not a number is an error (the event goes to the
//! dead-letter output); the two-argument forms return the default instead.

use rhai::{Dynamic, Engine, EvalAltResult};

use crate::transforms::script::convert::Timestamp;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// `v` as an integer: integers as they are, floats truncated toward zero
/// (in range), strings holding an integer (surrounding spaces allowed),
/// booleans as 0/1, timestamps as ns since the epoch.
pub fn to_int(v: &Dynamic) -> Result<i64, String> {
    if let Ok(i) = v.as_int() {
        return Ok(i);
    }
    if let Ok(f) = v.as_float() {
        if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
            return Ok(f.trunc() as i64);
        }
        return Err(format!("to_int: {f} is out of the integer range"));
    }
    if let Ok(b) = v.as_bool() {
        return Ok(i64::from(b));
    }
    if let Some(t) = v.read_lock::<Timestamp>() {
        return Ok(t.0);
    }
    if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        return s
            .trim()
            .parse()
            .map_err(|_| format!("to_int: {:?} is not an integer", short(&s)));
    }
    Err(format!("to_int: cannot convert a {}", v.type_name()))
}

/// `v` as a float: numbers, strings holding a number, booleans as 0.0/1.0.
pub fn to_float(v: &Dynamic) -> Result<f64, String> {
    if let Ok(f) = v.as_float() {
        return Ok(f);
    }
    if let Ok(i) = v.as_int() {
        return Ok(i as f64);
    }
    if let Ok(b) = v.as_bool() {
        return Ok(if b { 1.0 } else { 0.0 });
    }
    if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        let t = s.trim();
        // Rust's parser accepts "inf" and "NaN"; they are not readings.
        if t.bytes().any(|b| b.is_ascii_digit()) {
            if let Ok(f) = t.parse::<f64>() {
                if f.is_finite() {
                    return Ok(f);
                }
            }
        }
        return Err(format!("to_float: {:?} is not a number", short(&s)));
    }
    Err(format!("to_float: cannot convert a {}", v.type_name()))
}

/// At most 64 characters of `s`, for error messages.
fn short(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub fn register(engine: &mut Engine) {
    engine.register_fn("to_int", |v: Dynamic| -> Res<i64> {
        to_int(&v).map_err(Into::into)
    });
    engine.register_fn("to_int", |v: Dynamic, default: Dynamic| -> Dynamic {
        to_int(&v).map_or(default, Dynamic::from_int)
    });
    engine.register_fn("to_float", |v: Dynamic| -> Res<f64> {
        to_float(&v).map_err(Into::into)
    });
    engine.register_fn("to_float", |v: Dynamic, default: Dynamic| -> Dynamic {
        to_float(&v).map_or(default, Dynamic::from_float)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_what_is_a_number_and_refuses_the_rest() {
        assert_eq!(to_int(&Dynamic::from(" 42 ")), Ok(42));
        assert_eq!(to_int(&Dynamic::from_float(-3.9)), Ok(-3));
        assert_eq!(to_int(&Dynamic::from_bool(true)), Ok(1));
        assert!(to_int(&Dynamic::from("4.5")).is_err());
        assert!(to_int(&Dynamic::from_float(1e300)).is_err());
        assert!(to_int(&Dynamic::UNIT).is_err());
        assert_eq!(to_float(&Dynamic::from("81.5")), Ok(81.5));
        assert_eq!(to_float(&Dynamic::from_int(3)), Ok(3.0));
        assert!(to_float(&Dynamic::from("NaN")).is_err());
        assert!(to_float(&Dynamic::from("inf")).is_err());
        assert!(to_float(&Dynamic::from("hot")).is_err());
    }
}
