//! The `nmea` parser: NMEA 0183 sentences (GPS and other marine receivers).
//!
//! `$TTSSS,f1,f2,...*HH`: the checksum (XOR of the bytes between `$` and
//! `*`) is verified and a sentence without one is refused. Every sentence
//! gets `talker` (`GP`, `GN`, …; `P` for proprietary) and `sentence`
//! (`GGA`, …). GGA, RMC, GLL, VTG, GSA, GSV and ZDA get typed fields
//! (positions in signed decimal degrees, speeds, fix quality, UTC time);
//! any other sentence keeps its raw fields in `fields`. Empty fields are
//! left out.

use weir_core::event::{Fields, Value};

/// Why a sentence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NmeaError {
    /// Does not start with `$` or `!`.
    #[error("not an NMEA sentence (no leading `$` or `!`)")]
    NotNmea,
    /// No `*HH` checksum.
    #[error("no checksum")]
    MissingChecksum,
    /// The checksum does not match the sentence.
    #[error("bad checksum: sentence says {expected:02X}, content gives {actual:02X}")]
    BadChecksum { expected: u8, actual: u8 },
    /// A field that should hold a number, time or position does not.
    #[error("{sentence} field {index} ({name}): cannot read `{value}`")]
    BadField {
        sentence: String,
        index: usize,
        name: &'static str,
        value: String,
    },
}

impl NmeaError {
    /// Metric label and dead-letter reason.
    pub fn reason(&self) -> &'static str {
        match self {
            NmeaError::NotNmea => "not_nmea",
            NmeaError::MissingChecksum => "missing_checksum",
            NmeaError::BadChecksum { .. } => "bad_checksum",
            NmeaError::BadField { .. } => "bad_field",
        }
    }
}

/// XOR of the bytes of `body` (between `$` and `*`).
pub fn checksum(body: &str) -> u8 {
    body.bytes().fold(0, |a, b| a ^ b)
}

/// Parses one sentence (without its line ending).
pub fn parse(line: &str) -> Result<Fields, NmeaError> {
    let line = line.trim();
    let rest = line
        .strip_prefix('$')
        .or_else(|| line.strip_prefix('!'))
        .ok_or(NmeaError::NotNmea)?;
    let (body, sum) = rest.rsplit_once('*').ok_or(NmeaError::MissingChecksum)?;
    let expected = (sum.len() == 2)
        .then(|| u8::from_str_radix(sum, 16).ok())
        .flatten()
        .ok_or(NmeaError::MissingChecksum)?;
    let actual = checksum(body);
    if expected != actual {
        return Err(NmeaError::BadChecksum { expected, actual });
    }
    let mut parts = body.split(',');
    let address = parts.next().unwrap_or_default();
    let raw: Vec<&str> = parts.collect();
    let (talker, sentence) = split_address(address);
    let mut s = Sentence {
        name: sentence.to_owned(),
        raw,
        out: Fields::with_capacity(12),
    };
    s.out.insert("talker", Value::String(talker.to_owned()));
    s.out.insert("sentence", Value::String(sentence.to_owned()));
    match (talker, sentence) {
        ("P", _) => s.generic(),
        (_, "GGA") => s.gga()?,
        (_, "RMC") => s.rmc()?,
        (_, "GLL") => s.gll()?,
        (_, "VTG") => s.vtg()?,
        (_, "GSA") => s.gsa()?,
        (_, "GSV") => s.gsv()?,
        (_, "ZDA") => s.zda()?,
        _ => s.generic(),
    }
    Ok(s.out)
}

/// `GPGGA` → (`GP`, `GGA`); proprietary `PGRME` → (`P`, `GRME`).
fn split_address(a: &str) -> (&str, &str) {
    // No standard talker starts with P: it marks a proprietary sentence.
    if a.starts_with('P') {
        return a.split_at(1);
    }
    if a.len() >= 5 && a.is_char_boundary(2) {
        a.split_at(2)
    } else {
        ("", a)
    }
}

struct Sentence<'a> {
    name: String,
    raw: Vec<&'a str>,
    out: Fields,
}

type R = Result<(), NmeaError>;

impl<'a> Sentence<'a> {
    fn get(&self, i: usize) -> &'a str {
        self.raw.get(i).copied().unwrap_or("")
    }

    fn bad(&self, i: usize, name: &'static str) -> NmeaError {
        NmeaError::BadField {
            sentence: self.name.clone(),
            index: i + 1,
            name,
            value: self.get(i).to_owned(),
        }
    }

    fn float(&mut self, i: usize, name: &'static str) -> Result<Option<f64>, NmeaError> {
        let v = self.get(i);
        if v.is_empty() {
            return Ok(None);
        }
        match v.parse::<f64>() {
            Ok(f) if f.is_finite() => {
                self.out.insert(name, Value::Float(f));
                Ok(Some(f))
            }
            _ => Err(self.bad(i, name)),
        }
    }

    fn int(&mut self, i: usize, name: &'static str) -> R {
        let v = self.get(i);
        if v.is_empty() {
            return Ok(());
        }
        let n = v.parse::<i64>().map_err(|_| self.bad(i, name))?;
        self.out.insert(name, Value::Int(n));
        Ok(())
    }

    fn text(&mut self, i: usize, name: &'static str) {
        let v = self.get(i);
        if !v.is_empty() {
            self.out.insert(name, Value::String(v.to_owned()));
        }
    }

    /// A `ddmm.mmmm`/`dddmm.mmmm` value at `i` with its hemisphere at `i + 1`.
    fn coordinate(&mut self, i: usize, name: &'static str, negative: char) -> R {
        let (v, hemi) = (self.get(i), self.get(i + 1));
        if v.is_empty() {
            return Ok(());
        }
        let deg = degrees(v).ok_or_else(|| self.bad(i, name))?;
        let sign = match hemi {
            h if h.len() == 1 && h.starts_with(negative) => -1.0,
            "N" | "E" | "" => 1.0,
            _ => return Err(self.bad(i + 1, name)),
        };
        self.out.insert(name, Value::Float(sign * deg));
        Ok(())
    }

    /// `hhmmss[.ss]` at `i` as `utc_time` `hh:mm:ss[.ss]`; its seconds of the day.
    fn time(&mut self, i: usize) -> Result<Option<f64>, NmeaError> {
        let v = self.get(i);
        if v.is_empty() {
            return Ok(None);
        }
        let (text, secs) = utc_time(v).ok_or_else(|| self.bad(i, "utc_time"))?;
        self.out.insert("utc_time", Value::String(text));
        Ok(Some(secs))
    }

    /// `valid` from an `A`/`V` status field.
    fn status(&mut self, i: usize) {
        match self.get(i) {
            "A" => self.out.insert("valid", Value::Bool(true)),
            "V" => self.out.insert("valid", Value::Bool(false)),
            _ => None,
        };
    }

    fn gga(&mut self) -> R {
        self.time(0)?;
        self.coordinate(1, "lat", 'S')?;
        self.coordinate(3, "lon", 'W')?;
        self.int(5, "fix_quality")?;
        self.int(6, "satellites")?;
        self.float(7, "hdop")?;
        self.float(8, "altitude_m")?;
        self.float(10, "geoid_separation_m")?;
        self.float(12, "dgps_age_s")?;
        self.text(13, "dgps_station");
        Ok(())
    }

    fn rmc(&mut self) -> R {
        let secs = self.time(0)?;
        self.status(1);
        self.coordinate(2, "lat", 'S')?;
        self.coordinate(4, "lon", 'W')?;
        if let Some(knots) = self.float(6, "speed_knots")? {
            self.out.insert("speed_kmh", Value::Float(knots * 1.852));
        }
        self.float(7, "course_deg")?;
        self.date_time(8, secs)?;
        if let Some(var) = self.float(9, "magnetic_variation_deg")? {
            if self.get(10) == "W" {
                self.out
                    .insert("magnetic_variation_deg", Value::Float(-var));
            }
        }
        self.text(11, "mode");
        Ok(())
    }

    /// `ddmmyy` at `i` with the time of day: `utc_datetime`.
    fn date_time(&mut self, i: usize, secs: Option<f64>) -> R {
        let v = self.get(i);
        let Some(secs) = secs else { return Ok(()) };
        if v.is_empty() {
            return Ok(());
        }
        let ok = v.len() == 6 && v.bytes().all(|b| b.is_ascii_digit());
        let num = |r: std::ops::Range<usize>| v.get(r).and_then(|s| s.parse::<u32>().ok());
        let (d, m, y) = match (ok, num(0..2), num(2..4), num(4..6)) {
            (true, Some(d), Some(m), Some(y)) => (d, m, y),
            _ => return Err(self.bad(i, "date")),
        };
        // Two-digit years: the 1980–2079 window GPS receivers use.
        let year = if y < 80 { 2000 + y } else { 1900 + y };
        let ns = datetime_nanos(year as i32, m, d, secs).ok_or_else(|| self.bad(i, "date"))?;
        self.out.insert("utc_datetime", Value::Timestamp(ns));
        Ok(())
    }

    fn gll(&mut self) -> R {
        self.coordinate(0, "lat", 'S')?;
        self.coordinate(2, "lon", 'W')?;
        self.time(4)?;
        self.status(5);
        self.text(6, "mode");
        Ok(())
    }

    fn vtg(&mut self) -> R {
        // NMEA 2.3+: course, T, course, M, knots, N, km/h, K, mode. Older
        // receivers leave out the unit letters.
        if self.get(1) == "T" || self.raw.len() >= 8 {
            self.float(0, "course_deg")?;
            self.float(2, "course_magnetic_deg")?;
            self.float(4, "speed_knots")?;
            self.float(6, "speed_kmh")?;
            self.text(8, "mode");
        } else {
            self.float(0, "course_deg")?;
            self.float(1, "course_magnetic_deg")?;
            self.float(2, "speed_knots")?;
            self.float(3, "speed_kmh")?;
        }
        Ok(())
    }

    fn gsa(&mut self) -> R {
        self.text(0, "selection_mode");
        self.int(1, "fix_type")?;
        let mut used = Vec::new();
        for i in 2..14 {
            let v = self.get(i);
            if !v.is_empty() {
                used.push(Value::Int(v.parse().map_err(|_| self.bad(i, "prn"))?));
            }
        }
        self.out.insert("satellites_used", Value::Array(used));
        self.float(14, "pdop")?;
        self.float(15, "hdop")?;
        self.float(16, "vdop")?;
        self.int(17, "system_id")?;
        Ok(())
    }

    fn gsv(&mut self) -> R {
        self.int(0, "messages")?;
        self.int(1, "message")?;
        self.int(2, "satellites_in_view")?;
        let mut sats = Vec::new();
        let mut i = 3;
        while i + 4 <= self.raw.len() {
            let mut sat = Fields::with_capacity(4);
            for (j, name) in ["prn", "elevation_deg", "azimuth_deg", "snr_db"]
                .into_iter()
                .enumerate()
            {
                let v = self.get(i + j);
                if !v.is_empty() {
                    let n = v.parse::<i64>().map_err(|_| self.bad(i + j, name))?;
                    sat.insert(name, Value::Int(n));
                }
            }
            if !sat.is_empty() {
                sats.push(Value::Map(sat));
            }
            i += 4;
        }
        self.out.insert("satellites", Value::Array(sats));
        // NMEA 4.1 appends a signal id after the last satellite.
        if self.raw.len() > 3 && (self.raw.len() - 3) % 4 == 1 {
            self.int(self.raw.len() - 1, "signal_id")?;
        }
        Ok(())
    }

    fn zda(&mut self) -> R {
        let secs = self.time(0)?;
        let (d, m, y) = (self.get(1), self.get(2), self.get(3));
        if let (Some(secs), Ok(d), Ok(m), Ok(y)) = (secs, d.parse(), m.parse(), y.parse()) {
            let ns = datetime_nanos(y, m, d, secs).ok_or_else(|| self.bad(1, "date"))?;
            self.out.insert("utc_datetime", Value::Timestamp(ns));
        }
        self.int(4, "local_zone_hours")?;
        self.int(5, "local_zone_minutes")?;
        Ok(())
    }

    fn generic(&mut self) {
        let fields = self
            .raw
            .iter()
            .map(|f| Value::String((*f).to_owned()))
            .collect();
        self.out.insert("fields", Value::Array(fields));
    }
}

/// `ddmm.mmmm` or `dddmm.mmmm` → decimal degrees.
fn degrees(v: &str) -> Option<f64> {
    let dot = v.find('.').unwrap_or(v.len());
    if dot < 3 || !v.is_char_boundary(dot - 2) {
        return None;
    }
    let (d, m) = v.split_at(dot - 2);
    let d: f64 = d.parse().ok()?;
    let m: f64 = m.parse().ok()?;
    (d.is_finite() && (0.0..60.0).contains(&m) && d <= 180.0).then(|| d + m / 60.0)
}

/// `hhmmss[.ss]` → (`hh:mm:ss[.ss]`, seconds of the day).
fn utc_time(v: &str) -> Option<(String, f64)> {
    let b = v.as_bytes();
    if v.len() < 6 || !b[..6].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let frac = &v[6..];
    if !(frac.is_empty()
        || (frac.starts_with('.') && frac[1..].bytes().all(|c| c.is_ascii_digit())))
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| v[r].parse::<u32>().ok();
    let (h, m, s) = (num(0..2)?, num(2..4)?, num(4..6)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let secs = f64::from(h * 3600 + m * 60 + s) + format!("0{frac}").parse::<f64>().ok()?;
    Some((
        format!("{}:{}:{}{frac}", &v[0..2], &v[2..4], &v[4..6]),
        secs,
    ))
}

/// Nanoseconds since the epoch of a UTC date and a time of day in seconds.
fn datetime_nanos(year: i32, month: u32, day: u32, secs: f64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400_000_000_000 + (secs * 1e9).round() as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` with its correct checksum.
    fn sentence(body: &str) -> String {
        format!("${body}*{:02X}", checksum(body))
    }

    fn float(f: &Fields, k: &str) -> f64 {
        match f.get(k) {
            Some(Value::Float(v)) => *v,
            other => panic!("{k}: {other:?}"),
        }
    }

    #[test]
    fn gga_gives_position_in_decimal_degrees_fix_quality_and_time() {
        let f = parse("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47").unwrap();
        assert_eq!(f.get("talker"), Some(&Value::String("GP".into())));
        assert_eq!(f.get("sentence"), Some(&Value::String("GGA".into())));
        assert!((float(&f, "lat") - 48.1173).abs() < 1e-9);
        assert!((float(&f, "lon") - 11.516_666_666).abs() < 1e-6);
        assert_eq!(f.get("fix_quality"), Some(&Value::Int(1)));
        assert_eq!(f.get("satellites"), Some(&Value::Int(8)));
        assert_eq!(float(&f, "altitude_m"), 545.4);
        assert_eq!(f.get("utc_time"), Some(&Value::String("12:35:19".into())));
        assert_eq!(f.get("dgps_station"), None);
    }

    #[test]
    fn southern_and_western_hemispheres_are_negative() {
        let f = parse(&sentence("GNGLL,3351.5000,S,15112.2500,W,225444.50,A,A")).unwrap();
        assert!((float(&f, "lat") + 33.858_333_333).abs() < 1e-6);
        assert!((float(&f, "lon") + 151.204_166_666).abs() < 1e-6);
        assert_eq!(
            f.get("utc_time"),
            Some(&Value::String("22:54:44.50".into()))
        );
        assert_eq!(f.get("valid"), Some(&Value::Bool(true)));
    }

    #[test]
    fn rmc_gives_speed_course_and_a_full_utc_timestamp() {
        let f =
            parse("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A").unwrap();
        assert_eq!(f.get("valid"), Some(&Value::Bool(true)));
        assert_eq!(float(&f, "speed_knots"), 22.4);
        assert!((float(&f, "speed_kmh") - 41.4848).abs() < 1e-9);
        assert_eq!(float(&f, "course_deg"), 84.4);
        assert_eq!(float(&f, "magnetic_variation_deg"), -3.1);
        // 1994-03-23T12:35:19Z
        assert_eq!(
            f.get("utc_datetime"),
            Some(&Value::Timestamp(764_426_119_000_000_000))
        );
    }

    #[test]
    fn vtg_in_both_layouts() {
        let f = parse(&sentence("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A")).unwrap();
        assert_eq!(float(&f, "course_deg"), 54.7);
        assert_eq!(float(&f, "speed_kmh"), 10.2);
        assert_eq!(f.get("mode"), Some(&Value::String("A".into())));
        let f = parse(&sentence("GPVTG,054.7,034.4,005.5,010.2")).unwrap();
        assert_eq!(float(&f, "course_magnetic_deg"), 34.4);
        assert_eq!(float(&f, "speed_knots"), 5.5);
    }

    #[test]
    fn gsa_lists_satellites_used_and_dilution() {
        let f = parse("$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39").unwrap();
        assert_eq!(f.get("fix_type"), Some(&Value::Int(3)));
        assert_eq!(
            f.get("satellites_used"),
            Some(&Value::Array(
                [4, 5, 9, 12, 24].into_iter().map(Value::Int).collect()
            ))
        );
        assert_eq!(float(&f, "pdop"), 2.5);
        assert_eq!(float(&f, "vdop"), 2.1);
    }

    #[test]
    fn gsv_lists_satellites_in_view() {
        let f =
            parse("$GPGSV,2,1,08,01,40,083,46,02,17,308,41,12,07,344,39,14,22,228,45*75").unwrap();
        assert_eq!(f.get("satellites_in_view"), Some(&Value::Int(8)));
        let Some(Value::Array(sats)) = f.get("satellites") else {
            panic!("{f:?}")
        };
        assert_eq!(sats.len(), 4);
        let Value::Map(last) = &sats[3] else { panic!() };
        assert_eq!(last.get("prn"), Some(&Value::Int(14)));
        assert_eq!(last.get("snr_db"), Some(&Value::Int(45)));
    }

    #[test]
    fn zda_gives_a_timestamp() {
        let f = parse(&sentence("GPZDA,201530.00,04,07,2002,00,00")).unwrap();
        // 2002-07-04T20:15:30Z
        assert_eq!(
            f.get("utc_datetime"),
            Some(&Value::Timestamp(1_025_813_730_000_000_000))
        );
    }

    #[test]
    fn other_sentences_keep_their_raw_fields() {
        let f = parse(&sentence("PGRME,15.0,M,45.0,M,25.0,M")).unwrap();
        assert_eq!(f.get("talker"), Some(&Value::String("P".into())));
        assert_eq!(f.get("sentence"), Some(&Value::String("GRME".into())));
        let f = parse(&sentence("AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0")).unwrap();
        let Some(Value::Array(raw)) = f.get("fields") else {
            panic!()
        };
        assert_eq!(raw.len(), 6);
        assert!(parse(&sentence("GPHDT,274.07,T")).is_ok());
    }

    #[test]
    fn a_bad_or_missing_checksum_and_malformed_fields_are_refused() {
        let good = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47";
        let bad = good.replace("*47", "*48");
        assert_eq!(parse(&bad).unwrap_err().reason(), "bad_checksum");
        assert_eq!(
            parse("$GPGGA,123519").unwrap_err(),
            NmeaError::MissingChecksum
        );
        assert_eq!(parse("GPGGA,1*00").unwrap_err(), NmeaError::NotNmea);
        let e = parse(&sentence(
            "GPGGA,123519,48x7.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        ))
        .unwrap_err();
        assert_eq!(e.reason(), "bad_field");
        assert!(e.to_string().contains("lat"), "{e}");
        let e = parse(&sentence("GPRMC,256199,A,,,,,,,230394,,")).unwrap_err();
        assert_eq!(e.reason(), "bad_field");
    }

    #[test]
    fn no_input_makes_the_parser_panic() {
        for s in [
            "$",
            "$*",
            "$*0",
            "$,*2C",
            "$\u{e9}\u{e9}*00",
            "$GP\u{e9}GA,1*00",
            "!*00",
        ] {
            let _ = parse(s);
        }
        for body in [
            "GPGGA,9",
            "GPRMC,1",
            "GPGSV,x",
            "GPGLL,1.2,N",
            "GPGGA,1,12345.6,Q",
            "GPZDA,120000,99,99,2002",
        ] {
            let _ = parse(&sentence(body));
        }
    }
}
