//! Time in scripts: the `Timestamp` type, `parse_timestamp`,
//! `format_timestamp` and `now`.
//!
//! Formats are strftime-style (`%Y-%m-%d %H:%M:%S%.f %z`, jiff's
//! `strtime`), or one of the names `rfc3339`, `unix` (seconds, fractions
//! allowed), `unix_ms`, `unix_us`, `unix_ns`. Time zones are IANA names
//! (`Europe/Paris`) looked up in the system's time zone database
//! (`/usr/share/zoneinfo`, or `TZDIR`), `UTC`, or fixed offsets (`+05:30`).
//! A text without an offset is read in the given zone (UTC by default); a
//! civil time that a DST change makes ambiguous takes the earlier instant,
//! one that falls in a gap the later. A format without a year (syslog's
//! `%b %e %H:%M:%S`) takes the year of `now()`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::fmt::strtime;
use jiff::tz::{Offset, TimeZone};
use rhai::{Engine, EvalAltResult};
use weir_core::event::format_rfc3339_nanos;

use super::Host;
use crate::transforms::script::convert::Timestamp;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Zones looked up so far (bounded: a script naming zones from event data
/// cannot grow it without limit).
#[derive(Default)]
pub struct Zones(HashMap<String, TimeZone>);

const MAX_ZONES: usize = 64;

impl Zones {
    fn get(&mut self, name: &str) -> Result<TimeZone, String> {
        if let Some(tz) = self.0.get(name) {
            return Ok(tz.clone());
        }
        let tz = zone(name)?;
        if self.0.len() >= MAX_ZONES {
            self.0.clear();
        }
        self.0.insert(name.to_owned(), tz.clone());
        Ok(tz)
    }
}

/// A time zone by IANA name, `UTC`/`Z`, or fixed offset `±HH:MM` / `±HHMM`.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Ok(TimeZone::UTC);
    }
    if let Some(offset) = fixed_offset(name) {
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(name).map_err(|e| format!("unknown time zone `{name}`: {e}"))
}

fn fixed_offset(s: &str) -> Option<Offset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !(digits.len() == 2 || digits.len() == 4) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits
        .get(2..)
        .filter(|d| !d.is_empty())
        .map_or(Some(0), |d| d.parse().ok())?;
    Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()
}

fn jiff_ts(t: Timestamp) -> Res<jiff::Timestamp> {
    jiff::Timestamp::from_nanosecond(i128::from(t.0)).map_err(|e| e.to_string().into())
}

fn from_jiff(t: jiff::Timestamp) -> Res<Timestamp> {
    i64::try_from(t.as_nanosecond())
        .map(Timestamp)
        .map_err(|_| format!("timestamp {t} is outside 1677-2262, which events can hold").into())
}

/// A decimal unix time in units of 10^-`digits` s as ns, exactly (no
/// float rounding): `1700000000.25` with 9 digits is 1700000000250000000.
fn unix_time(input: &str, digits: u32) -> Option<Timestamp> {
    let (neg, body) = match input.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, input),
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = 10i64.pow(digits);
    let mut ns = whole.parse::<i64>().ok()?.checked_mul(scale)?;
    // Digits past nanoseconds are cut off.
    let mut unit = scale;
    for b in frac.bytes().take(digits as usize) {
        unit /= 10;
        ns = ns.checked_add(i64::from(b - b'0') * unit)?;
    }
    Some(Timestamp(if neg { -ns } else { ns }))
}

/// Parses `input` by `format`, reading times without an offset in `tz`.
pub fn parse(input: &str, format: &str, tz: &TimeZone, now: i64) -> Res<Timestamp> {
    let input = input.trim();
    let unix = |digits: u32| -> Res<Timestamp> {
        unix_time(input, digits).ok_or_else(|| format!("`{input}` is not a unix time").into())
    };
    match format {
        "unix" | "unix_s" => return unix(9),
        "unix_ms" => return unix(6),
        "unix_us" => return unix(3),
        "unix_ns" => return unix(0),
        "rfc3339" => {
            if let Ok(t) = input.parse::<jiff::Timestamp>() {
                return from_jiff(t);
            }
            let dt: jiff::civil::DateTime = input
                .parse()
                .map_err(|e| format!("`{input}` is not an RFC 3339 time: {e}"))?;
            let z = dt.to_zoned(tz.clone()).map_err(|e| e.to_string())?;
            return from_jiff(z.timestamp());
        }
        _ => {}
    }
    let mut tm = strtime::parse(format, input)
        .map_err(|e| format!("`{input}` does not match `{format}`: {e}"))?;
    if let Some(t) = tm.timestamp() {
        return from_jiff(t);
    }
    if tm.offset().is_some() {
        return from_jiff(tm.to_timestamp().map_err(|e| e.to_string())?);
    }
    if tm.iana_time_zone().is_some() {
        return from_jiff(tm.to_zoned().map_err(|e| e.to_string())?.timestamp());
    }
    if tm.year().is_none() {
        let year = jiff_ts(Timestamp(now))?.to_zoned(tz.clone()).year();
        tm.set_year(Some(year)).map_err(|e| e.to_string())?;
    }
    let dt = tm
        .to_datetime()
        .map_err(|e| format!("`{input}` read by `{format}` is not a full date and time: {e}"))?;
    let z = dt.to_zoned(tz.clone()).map_err(|e| e.to_string())?;
    from_jiff(z.timestamp())
}

/// Formats `t` by `format` in `tz`.
pub fn format(t: Timestamp, format: &str, tz: &TimeZone) -> Res<String> {
    let scaled = |div: i64| (t.0.div_euclid(div)).to_string();
    match format {
        "unix" | "unix_s" => return Ok(scaled(1_000_000_000)),
        "unix_ms" => return Ok(scaled(1_000_000)),
        "unix_us" => return Ok(scaled(1_000)),
        "unix_ns" => return Ok(t.0.to_string()),
        "rfc3339" if *tz == TimeZone::UTC => return Ok(format_rfc3339_nanos(t.0)),
        _ => {}
    }
    let fmt = if format == "rfc3339" {
        "%Y-%m-%dT%H:%M:%S%.f%:z"
    } else {
        format
    };
    let z = jiff_ts(t)?.to_zoned(tz.clone());
    strtime::format(fmt, &z).map_err(|e| format!("cannot format with `{format}`: {e}").into())
}

pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    engine.register_type_with_name::<Timestamp>("Timestamp");
    engine.register_fn("to_string", |t: &mut Timestamp| format_rfc3339_nanos(t.0));
    engine.register_fn("to_debug", |t: &mut Timestamp| format_rfc3339_nanos(t.0));
    engine.register_get("unix_seconds", |t: &mut Timestamp| {
        t.0.div_euclid(1_000_000_000)
    });
    engine.register_get("unix_millis", |t: &mut Timestamp| t.0.div_euclid(1_000_000));
    engine.register_get("unix_nanos", |t: &mut Timestamp| t.0);
    engine.register_fn("==", |a: Timestamp, b: Timestamp| a == b);
    engine.register_fn("!=", |a: Timestamp, b: Timestamp| a != b);
    engine.register_fn("<", |a: Timestamp, b: Timestamp| a < b);
    engine.register_fn("<=", |a: Timestamp, b: Timestamp| a <= b);
    engine.register_fn(">", |a: Timestamp, b: Timestamp| a > b);
    engine.register_fn(">=", |a: Timestamp, b: Timestamp| a >= b);
    engine.register_fn("-", |a: Timestamp, b: Timestamp| -> Res<i64> {
        a.0.checked_sub(b.0)
            .ok_or_else(|| "timestamp difference overflows".into())
    });
    engine.register_fn("+", |a: Timestamp, ns: i64| -> Res<Timestamp> {
        a.0.checked_add(ns)
            .map(Timestamp)
            .ok_or_else(|| "timestamp overflows".into())
    });
    engine.register_fn("-", |a: Timestamp, ns: i64| -> Res<Timestamp> {
        a.0.checked_sub(ns)
            .map(Timestamp)
            .ok_or_else(|| "timestamp overflows".into())
    });

    let zones = Arc::new(Mutex::new(Zones::default()));
    let zone_of = {
        let zones = zones.clone();
        move |name: &str| -> Res<TimeZone> {
            let mut z = zones.lock().unwrap_or_else(|e| e.into_inner());
            z.get(name).map_err(Into::into)
        }
    };

    let h = host.clone();
    engine.register_fn("now", move || Timestamp(h.run().now));

    let h = host.clone();
    engine.register_fn("parse_timestamp", move |s: &str, f: &str| {
        parse(s, f, &TimeZone::UTC, h.run().now)
    });
    let h = host.clone();
    let z = zone_of.clone();
    engine.register_fn("parse_timestamp", move |s: &str, f: &str, tz: &str| {
        parse(s, f, &z(tz)?, h.run().now)
    });
    let h = host.clone();
    engine.register_fn("parse_timestamp", move |n: i64, f: &str| {
        parse(&n.to_string(), f, &TimeZone::UTC, h.run().now)
    });
    let h = host.clone();
    engine.register_fn("parse_timestamp", move |n: f64, f: &str| {
        parse(&n.to_string(), f, &TimeZone::UTC, h.run().now)
    });
    engine.register_fn("format_timestamp", |t: Timestamp, f: &str| {
        format(t, f, &TimeZone::UTC)
    });
    let z = zone_of;
    engine.register_fn(
        "format_timestamp",
        move |t: Timestamp, f: &str, tz: &str| format(t, f, &z(tz)?),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_000_000_000; // 2023-11-14T22:13:20Z

    #[test]
    fn parses_named_formats_and_strftime_patterns() {
        let utc = TimeZone::UTC;
        assert_eq!(
            parse("2023-11-14T22:13:20Z", "rfc3339", &utc, 0).unwrap(),
            Timestamp(T)
        );
        assert_eq!(
            parse("2023-11-14T23:13:20.5+01:00", "rfc3339", &utc, 0).unwrap(),
            Timestamp(T + 500_000_000)
        );
        assert_eq!(parse("1700000000", "unix", &utc, 0).unwrap(), Timestamp(T));
        assert_eq!(
            parse("1700000000.25", "unix", &utc, 0).unwrap(),
            Timestamp(T + 250_000_000)
        );
        assert_eq!(
            parse("1700000000000", "unix_ms", &utc, 0).unwrap(),
            Timestamp(T)
        );
        assert_eq!(
            parse("14/11/2023 22:13:20", "%d/%m/%Y %H:%M:%S", &utc, 0).unwrap(),
            Timestamp(T)
        );
        assert_eq!(
            parse("2023-11-14 17:13:20 -0500", "%Y-%m-%d %H:%M:%S %z", &utc, 0).unwrap(),
            Timestamp(T)
        );
        assert!(parse("yesterday", "%Y-%m-%d", &utc, 0).is_err());
        assert!(parse("x", "unix", &utc, 0).is_err());
    }

    #[test]
    fn times_without_an_offset_are_read_in_the_given_zone() {
        let plus2 = zone("+02:00").unwrap();
        assert_eq!(
            parse("2023-11-15 00:13:20", "%Y-%m-%d %H:%M:%S", &plus2, 0).unwrap(),
            Timestamp(T)
        );
        // The system database (tzdata): Paris is UTC+1 in November.
        let paris = zone("Europe/Paris").expect("tzdata installed (/usr/share/zoneinfo)");
        assert_eq!(
            parse("2023-11-14T23:13:20", "rfc3339", &paris, 0).unwrap(),
            Timestamp(T)
        );
        assert!(zone("Mars/Olympus_Mons").is_err());
    }

    #[test]
    fn a_format_without_a_year_takes_the_year_of_now() {
        let t = parse("Nov 14 22:13:20", "%b %d %H:%M:%S", &TimeZone::UTC, T).unwrap();
        assert_eq!(t, Timestamp(T));
    }

    #[test]
    fn formats_in_zones_and_named_formats() {
        let t = Timestamp(T + 5_000_000);
        assert_eq!(
            format(t, "rfc3339", &TimeZone::UTC).unwrap(),
            "2023-11-14T22:13:20.005000000Z"
        );
        assert_eq!(
            format(t, "rfc3339", &zone("+01:00").unwrap()).unwrap(),
            "2023-11-14T23:13:20.005+01:00"
        );
        assert_eq!(format(t, "unix", &TimeZone::UTC).unwrap(), "1700000000");
        assert_eq!(
            format(t, "unix_ms", &TimeZone::UTC).unwrap(),
            "1700000000005"
        );
        assert_eq!(
            format(t, "%Y-%m-%d %H:%M %Z", &zone("America/New_York").unwrap()).unwrap(),
            "2023-11-14 17:13 EST"
        );
    }
}
