//! Time for the aggregate: reading an event's time from a field, and the
//! watermark that says which windows are complete.
//!
//! **Event time**: the watermark is the largest event time seen minus the
//! configured `watermark` delay; it never goes back. With `idle_timeout`,
//! once no timed event has arrived for that long (by the transform's clock,
//! `Emitter::now`), the watermark moves on with the clock from where it
//! stood at the last arrival: `W = W_at_last_arrival + (now − last_arrival)`,
//! so windows close even when the input has stopped.
//!
//! **Processing time**: the watermark is the transform's clock.

use weir_core::Value;

use super::codec::{DecodeError, Reader, Writer};

/// The unit of a numeric event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Seconds since the Unix epoch (fractions allowed).
    #[default]
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

impl TimeUnit {
    fn nanos(self) -> i64 {
        match self {
            TimeUnit::S => 1_000_000_000,
            TimeUnit::Ms => 1_000_000,
            TimeUnit::Us => 1_000,
            TimeUnit::Ns => 1,
        }
    }
}

/// Why an event has no usable time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("missing (no event time)")]
    Missing,
    #[error("a {0} is not a time (expected a timestamp, an RFC 3339 string or a number)")]
    WrongType(&'static str),
    #[error("{0:?} is not an RFC 3339 time or a number")]
    Unparsable(String),
    #[error("time out of range (years 1824 to 2116)")]
    OutOfRange,
}

impl TimeError {
    /// The `reason` label of the dead-letter counter.
    pub fn reason(&self) -> &'static str {
        match self {
            TimeError::Missing => "no_time",
            _ => "bad_time",
        }
    }
}

/// Event times accepted: ±2^62 ns around the epoch (years 1824 to 2116),
/// so that window arithmetic (times plus spans of at most a year) never
/// overflows.
pub const MAX_TIME: i64 = 1 << 62;

/// The event time (ns since the epoch) a field value stands for.
pub fn event_time(v: Option<&Value>, unit: TimeUnit) -> Result<i64, TimeError> {
    let t = raw_time(v, unit)?;
    if t.abs() > MAX_TIME {
        return Err(TimeError::OutOfRange);
    }
    Ok(t)
}

fn raw_time(v: Option<&Value>, unit: TimeUnit) -> Result<i64, TimeError> {
    match v {
        None | Some(Value::Null) => Err(TimeError::Missing),
        Some(Value::Timestamp(ns)) => Ok(*ns),
        Some(Value::Int(i)) => i.checked_mul(unit.nanos()).ok_or(TimeError::OutOfRange),
        Some(Value::Float(f)) => float_time(*f, unit),
        Some(Value::String(s)) => match parse_rfc3339(s) {
            Some(Ok(ns)) => Ok(ns),
            Some(Err(e)) => Err(e),
            None => match s.trim().parse::<f64>() {
                Ok(f) => float_time(f, unit),
                Err(_) => Err(TimeError::Unparsable(truncate(s))),
            },
        },
        Some(Value::Bool(_)) => Err(TimeError::WrongType("boolean")),
        Some(Value::Bytes(_)) => Err(TimeError::WrongType("byte string")),
        Some(Value::Array(_)) => Err(TimeError::WrongType("array")),
        Some(Value::Map(_)) => Err(TimeError::WrongType("map")),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn float_time(f: f64, unit: TimeUnit) -> Result<i64, TimeError> {
    let ns = (f * unit.nanos() as f64).round();
    // i64 holds ±9.22e18 ns; stay clear of the edge where f64 rounds up.
    if ns.is_finite() && ns.abs() < 9.2e18 {
        Ok(ns as i64)
    } else {
        Err(TimeError::OutOfRange)
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`t`, `z` and a space
/// for `T` are accepted too). `None` when the text does not look like a
/// date at all (it may be a number), `Some(Err)` when it does but is not
/// valid RFC 3339 (no offset, day 31 in April…).
pub fn parse_rfc3339(s: &str) -> Option<Result<i64, TimeError>> {
    let b = s.trim().as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let bad = || Some(Err(TimeError::Unparsable(truncate(s))));
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        if d.iter().all(u8::is_ascii_digit) {
            Some(d.iter().fold(0i64, |a, &c| a * 10 + (c - b'0') as i64))
        } else {
            None
        }
    };
    let (Some(y), Some(mo), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return bad();
    };
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return bad();
    }
    let (Some(h), Some(mi), Some(sec)) = (num(11..13), num(14..16), num(17..19)) else {
        return bad();
    };
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                frac = frac * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        if i == start {
            return bad();
        }
        for _ in (i - start)..9 {
            frac *= 10;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (Some(oh), Some(om)) = (num(i + 1..i + 3), num(i + 4..i + 6)) else {
                return bad();
            };
            if oh > 23 || om > 59 {
                return bad();
            }
            let o = oh * 3600 + om * 60;
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return bad(),
    };
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60
    {
        return bad();
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(
        secs.checked_mul(1_000_000_000)
            .and_then(|ns| ns.checked_add(frac))
            .ok_or(TimeError::OutOfRange),
    )
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How far time has progressed for the aggregate (part of its state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Windows whose close time is at or below this are emitted.
    pub watermark: i64,
    /// Largest event time accepted (event time only).
    pub max_event_time: i64,
    /// The clock when the last timed event arrived (event time only).
    pub last_arrival: Option<i64>,
    /// The watermark right after that arrival.
    pub watermark_at_arrival: i64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            watermark: i64::MIN,
            max_event_time: i64::MIN,
            last_arrival: None,
            watermark_at_arrival: i64::MIN,
        }
    }
}

impl Progress {
    /// Processing time: the watermark follows the clock.
    pub fn clock(&mut self, now: i64) {
        self.watermark = self.watermark.max(now);
    }

    /// Event time: an event of time `t` arrived at `now`.
    pub fn arrival(&mut self, t: i64, delay: i64, now: i64) {
        self.max_event_time = self.max_event_time.max(t);
        self.watermark = self
            .watermark
            .max(self.max_event_time.saturating_sub(delay));
        self.last_arrival = Some(now);
        self.watermark_at_arrival = self.watermark;
    }

    /// Event time with `idle_timeout`: moves the watermark on with the clock
    /// once the input has been idle that long.
    pub fn idle(&mut self, now: i64, idle_timeout: i64) {
        if let Some(last) = self.last_arrival {
            let idle_for = now.saturating_sub(last);
            if idle_for >= idle_timeout {
                let w = self.watermark_at_arrival.saturating_add(idle_for);
                self.watermark = self.watermark.max(w);
            }
        }
    }

    /// When (by the clock) an idle input's watermark reaches `close`.
    pub fn idle_due(&self, close: i64, idle_timeout: i64) -> Option<i64> {
        let last = self.last_arrival?;
        let needed = close
            .saturating_sub(self.watermark_at_arrival)
            .max(idle_timeout);
        Some(last.saturating_add(needed))
    }

    pub fn encode(&self, w: &mut Writer) {
        w.zigzag(self.watermark);
        w.zigzag(self.max_event_time);
        match self.last_arrival {
            Some(t) => {
                w.u8(1);
                w.zigzag(t);
                w.zigzag(self.watermark_at_arrival);
            }
            None => w.u8(0),
        }
    }

    pub fn decode(r: &mut Reader) -> Result<Progress, DecodeError> {
        let watermark = r.zigzag("watermark")?;
        let max_event_time = r.zigzag("max event time")?;
        let (last_arrival, watermark_at_arrival) = match r.u8("arrival flag")? {
            0 => (None, i64::MIN),
            1 => (
                Some(r.zigzag("last arrival")?),
                r.zigzag("watermark at arrival")?,
            ),
            _ => return Err(DecodeError::Invalid("arrival flag")),
        };
        Ok(Progress {
            watermark,
            max_event_time,
            last_arrival,
            watermark_at_arrival,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn rfc3339_with_zones_and_fractions_parses_to_utc_nanoseconds() {
        let t = |s: &str| parse_rfc3339(s).unwrap();
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t("2023-11-14T22:13:20Z"), Ok(1_700_000_000 * S));
        assert_eq!(t("2023-11-14T23:13:20+01:00"), Ok(1_700_000_000 * S));
        assert_eq!(
            t("2023-11-14 21:13:20.5-01:00"),
            Ok(1_700_000_000 * S + S / 2)
        );
        assert_eq!(
            t("2023-11-14t22:13:20.123456789123z"),
            Ok(1_700_000_000 * S + 123_456_789)
        );
        assert_eq!(t("2024-02-29T00:00:00Z"), Ok(1_709_164_800 * S));
        assert_eq!(t("1969-12-31T23:59:59Z"), Ok(-S));
        for bad in [
            "2023-11-14T22:13:20",
            "2023-04-31T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "2023-1x-14T22:13:20Z",
        ] {
            assert!(matches!(t(bad), Err(TimeError::Unparsable(_))), "{bad}");
        }
        assert_eq!(parse_rfc3339("1700000000"), None, "numbers are not dates");
    }

    #[test]
    fn numbers_are_read_in_the_configured_unit() {
        let v = |v: Value, u| event_time(Some(&v), u);
        assert_eq!(
            v(Value::Int(1_700_000_000), TimeUnit::S),
            Ok(1_700_000_000 * S)
        );
        assert_eq!(
            v(Value::Int(1_700_000_000_250), TimeUnit::Ms),
            Ok(1_700_000_000 * S + 250_000_000)
        );
        assert_eq!(v(Value::Float(1.5), TimeUnit::S), Ok(S + S / 2));
        assert_eq!(v(Value::Int(7), TimeUnit::Us), Ok(7_000));
        assert_eq!(v(Value::Int(7), TimeUnit::Ns), Ok(7));
        assert_eq!(v(Value::String(" 12 ".into()), TimeUnit::S), Ok(12 * S));
        assert_eq!(v(Value::Timestamp(5), TimeUnit::S), Ok(5));
        assert_eq!(
            v(Value::Int(i64::MAX), TimeUnit::S),
            Err(TimeError::OutOfRange)
        );
        assert_eq!(
            v(Value::Float(f64::NAN), TimeUnit::S),
            Err(TimeError::OutOfRange)
        );
    }

    #[test]
    fn unusable_times_say_why() {
        assert_eq!(event_time(None, TimeUnit::S), Err(TimeError::Missing));
        assert_eq!(
            event_time(Some(&Value::Null), TimeUnit::S)
                .unwrap_err()
                .reason(),
            "no_time"
        );
        let e = event_time(Some(&Value::Bool(true)), TimeUnit::S).unwrap_err();
        assert_eq!(e.reason(), "bad_time");
        assert!(matches!(
            event_time(Some(&Value::String("yesterday".into())), TimeUnit::S),
            Err(TimeError::Unparsable(_))
        ));
    }

    #[test]
    fn the_watermark_trails_the_largest_event_time_and_never_goes_back() {
        let mut p = Progress::default();
        p.arrival(100 * S, 2 * S, 0);
        assert_eq!(p.watermark, 98 * S);
        p.arrival(50 * S, 2 * S, 1);
        assert_eq!(p.watermark, 98 * S, "an old event does not move it back");
        p.arrival(105 * S, 2 * S, 2);
        assert_eq!(p.watermark, 103 * S);
    }

    #[test]
    fn an_idle_input_moves_the_watermark_with_the_clock_after_the_timeout() {
        let mut p = Progress::default();
        p.arrival(100 * S, 0, 1_000 * S);
        assert_eq!(
            p.idle_due(110 * S, 30 * S),
            Some(1_030 * S),
            "not before the timeout"
        );
        assert_eq!(p.idle_due(200 * S, 30 * S), Some(1_100 * S));
        p.idle(1_029 * S, 30 * S);
        assert_eq!(p.watermark, 100 * S, "still within the timeout");
        p.idle(1_045 * S, 30 * S);
        assert_eq!(p.watermark, 145 * S);
    }

    #[test]
    fn progress_round_trips() {
        let mut p = Progress::default();
        let mut w = Writer::new();
        p.encode(&mut w);
        p.arrival(-5, 1, 9);
        p.encode(&mut w);
        let mut r = Reader::new(&w.buf);
        assert_eq!(Progress::decode(&mut r).unwrap(), Progress::default());
        assert_eq!(Progress::decode(&mut r).unwrap(), p);
        r.finish().unwrap();
    }
}
