//! NMEA 0183 output of the simulator: GGA and RMC sentences as a GPS
//! receiver writes them.

/// XOR of the bytes between `$` and `*`, as NMEA 0183 defines it.
pub fn nmea_checksum(body: &str) -> u8 {
    body.bytes().fold(0, |acc, b| acc ^ b)
}

/// `$body*HH\r\n`; `bad` writes a checksum that cannot match.
pub fn nmea_line(body: &str, bad: bool) -> String {
    let sum = nmea_checksum(body) ^ if bad { 0x5A } else { 0 };
    format!("${body}*{sum:02X}\r\n")
}

/// A GPS fix of a device driving slowly north-east from Zürich.
pub struct Fix {
    lat: f64,
    lon: f64,
    now_us: u64,
    speed_knots: f64,
}

impl Fix {
    pub fn at(device: u32, sequence: u32, now_us: u64) -> Self {
        let step = f64::from(sequence / 2);
        Self {
            lat: 47.3769 + 0.01 * f64::from(device) + 0.00005 * step,
            lon: 8.5417 + 0.01 * f64::from(device) + 0.00007 * step,
            now_us,
            speed_knots: 12.0 + f64::from(device),
        }
    }

    fn time(&self) -> String {
        let secs = self.now_us / 1_000_000;
        let day = secs % 86_400;
        let centis = self.now_us % 1_000_000 / 10_000;
        format!(
            "{:02}{:02}{:02}.{centis:02}",
            day / 3600,
            day % 3600 / 60,
            day % 60
        )
    }

    fn date(&self) -> String {
        let (y, m, d) = civil_from_days((self.now_us / 86_400_000_000) as i64);
        format!("{d:02}{m:02}{:02}", y % 100)
    }

    fn position(&self) -> String {
        let (lat, lon) = (self.lat.abs(), self.lon.abs());
        let ns = if self.lat >= 0.0 { 'N' } else { 'S' };
        let ew = if self.lon >= 0.0 { 'E' } else { 'W' };
        let lat_text = format!("{:02}{:07.4}", lat.trunc() as u32, lat.fract() * 60.0);
        let lon_text = format!("{:03}{:07.4}", lon.trunc() as u32, lon.fract() * 60.0);
        format!("{lat_text},{ns},{lon_text},{ew}")
    }

    /// Fix data: time, position, quality 1 (GPS), 8 satellites, HDOP,
    /// altitude and geoid separation in metres.
    pub fn gga(&self) -> String {
        format!(
            "GPGGA,{},{},1,08,0.9,408.0,M,47.0,M,,",
            self.time(),
            self.position()
        )
    }

    /// Recommended minimum: time, status A (valid), position, speed over
    /// ground in knots, course, date, no magnetic variation, mode A.
    pub fn rmc(&self) -> String {
        format!(
            "GPRMC,{},A,{},{:.1},54.0,{},,,A",
            self.time(),
            self.position(),
            self.speed_knots,
            self.date()
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nmea_checksums_match_the_textbook_sentences() {
        let gga = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,";
        let rmc = "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W";
        assert_eq!(nmea_line(gga, false), format!("${gga}*47\r\n"));
        assert_eq!(nmea_line(rmc, false), format!("${rmc}*6A\r\n"));
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
