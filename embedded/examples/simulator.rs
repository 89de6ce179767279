//! Sensor simulator: writes what a serial sensor would send, for trying and
//! testing a serial source without hardware.
//!
//! Formats: Weir frames (this crate), NMEA 0183 GGA/RMC sentences (a GPS
//! receiver), CSV or JSON lines. The output is a file, a FIFO, a tty (e.g.
//! one end of a pseudo-terminal pair made with
//! `socat -d -d pty,raw,echo=0 pty,raw,echo=0`) or `-` for stdout. A tty is
//! put into raw mode first so that the line discipline does not rewrite
//! bytes (a 0x0A turned into 0x0D 0x0A would break every frame it is in).
//!
//! ```sh
//! cargo run -p weir-embedded --example simulator -- \
//!     --output /dev/pts/5 --format weir --rate 20 --devices 3 --readings 6 \
//!     --garbage-every 50 --count 1000
//! ```
//!
//! It always stops after `--count` frames (or lines). A FIFO blocks at open
//! until a reader opens the other end.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use clap::{Parser, ValueEnum};
use weir_embedded::{FrameBuilder, Header, Timestamp, Value, MAX_ENCODED_LEN};

#[path = "simulator/nmea.rs"]
mod nmea;

use nmea::{nmea_line, Fix};

#[derive(Debug, Clone, Parser)]
#[command(about = "Writes simulated sensor output (Weir frames, NMEA 0183, CSV or JSON lines).")]
struct Args {
    /// Where to write: a file, a FIFO, a tty such as /dev/pts/5, or "-" for stdout.
    #[arg(long, short, default_value = "-")]
    output: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value_t = Format::Weir)]
    format: Format,
    /// Frames (or lines) per second; 0 writes as fast as possible.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Frames (or lines) to write before exiting.
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// Devices taking turns, each with its own id and sequence numbers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    devices: u32,
    /// Readings per frame (Weir, CSV, JSON).
    #[arg(long, default_value_t = 4)]
    readings: u8,
    /// After every N frames (or lines), write a burst of random bytes; 0 never.
    #[arg(long, default_value_t = 0)]
    garbage_every: u64,
    /// NMEA: give every Nth sentence a wrong checksum; 0 never.
    #[arg(long, default_value_t = 0)]
    bad_checksum_every: u64,
    /// Seed for values and garbage, so a run can be repeated (timestamps aside).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Weir frames: COBS-framed, CRC-checked binary.
    Weir,
    /// NMEA 0183 sentences, GGA and RMC alternating.
    Nmea,
    /// One CSV line per frame, after a header line.
    Csv,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        eprintln!(
            "error: --rate must be a finite number >= 0, got {}",
            args.rate
        );
        return ExitCode::from(1);
    }
    if let Err(e) = check_frame_size(&args) {
        eprintln!("error: {e:#}");
        return ExitCode::from(1);
    }
    let out = match open_output(&args.output) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    match Simulator::new(&args).run(out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Weir frames are limited in size: refuses `--readings` that could exceed
/// it, by encoding the largest frame the simulator can produce.
fn check_frame_size(args: &Args) -> anyhow::Result<()> {
    if args.format != Format::Weir {
        return Ok(());
    }
    let worst: Vec<Value<'static>> = (0..args.readings)
        .map(|c| match c % 6 {
            0 => Value::F32(0.0),
            1 => Value::U32(u32::MAX),
            2 => Value::I32(i32::MIN),
            3 => Value::Bool(true),
            4 => Value::F64(0.0),
            _ => Value::Str("warn"),
        })
        .collect();
    let header = Header {
        device_id: u64::MAX,
        sequence: u32::MAX,
        timestamp: Timestamp::UnixMicros(u64::MAX),
    };
    weir_frame(&header, &worst)
        .map(drop)
        .context("--readings is too many for one Weir frame")
}

/// Opens the output; a tty is switched to raw mode, a regular file truncated.
fn open_output(path: &Path) -> anyhow::Result<Box<dyn Write>> {
    if path == Path::new("-") {
        return Ok(Box::new(io::stdout()));
    }
    let special = path.metadata().map(|m| !m.is_file()).unwrap_or(false);
    let file = if special {
        OpenOptions::new().write(true).open(path)
    } else {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }
    .with_context(|| format!("cannot open {}", path.display()))?;
    make_raw_if_tty(&file).with_context(|| format!("cannot set {} to raw mode", path.display()))?;
    Ok(Box::new(file))
}

fn make_raw_if_tty(file: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `file` for this call;
    // isatty only inspects it.
    if unsafe { libc::isatty(fd) } != 1 {
        return Ok(());
    }
    // SAFETY: termios is plain data that tcgetattr fills in completely
    // before we read it; the calls get a valid fd and a valid pointer.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// xorshift64*: enough randomness for sensor noise, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Simulator<'a> {
    args: &'a Args,
    rng: Rng,
    /// Next sequence number per device.
    sequences: Vec<u32>,
}

impl<'a> Simulator<'a> {
    fn new(args: &'a Args) -> Self {
        let seed = args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Self {
            args,
            rng: Rng(seed),
            sequences: vec![0; args.devices as usize],
        }
    }

    /// Writes `--count` frames at `--rate`, then flushes.
    fn run(&mut self, out: Box<dyn Write>) -> anyhow::Result<()> {
        let mut out = BufWriter::new(out);
        if self.args.format == Format::Csv {
            let columns: String = (0..self.args.readings).map(|c| format!(",ch{c}")).collect();
            writeln!(out, "device_id,sequence,timestamp_us{columns}").context("write failed")?;
        }
        let start = Instant::now();
        for i in 0..self.args.count {
            if self.args.rate > 0.0 {
                let due = start + Duration::from_secs_f64(i as f64 / self.args.rate);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            let now_us = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            let bytes = self.next_output(i, now_us)?;
            out.write_all(&bytes).context("write failed")?;
            if self.args.garbage_every > 0 && (i + 1) % self.args.garbage_every == 0 {
                let garbage = self.garbage();
                out.write_all(&garbage).context("write failed")?;
            }
            if self.args.rate > 0.0 {
                out.flush().context("write failed")?;
            }
        }
        out.flush().context("write failed")
    }

    /// The `i`th frame or line.
    fn next_output(&mut self, i: u64, now_us: u64) -> anyhow::Result<Vec<u8>> {
        let device = (i % u64::from(self.args.devices)) as u32;
        let sequence = self.sequences[device as usize];
        self.sequences[device as usize] = sequence.wrapping_add(1);
        let header = Header {
            device_id: 1000 + u64::from(device),
            sequence,
            timestamp: Timestamp::UnixMicros(now_us),
        };
        let values: Vec<Value<'static>> = (0..self.args.readings)
            .map(|c| self.value(device, c, sequence))
            .collect();
        Ok(match self.args.format {
            Format::Weir => weir_frame(&header, &values)?,
            Format::Csv => csv_line(&header, &values).into_bytes(),
            Format::Json => json_line(&header, &values).into_bytes(),
            Format::Nmea => {
                let bad =
                    self.args.bad_checksum_every > 0 && (i + 1) % self.args.bad_checksum_every == 0;
                let fix = Fix::at(device, sequence, now_us);
                let body = if sequence % 2 == 0 {
                    fix.gga()
                } else {
                    fix.rmc()
                };
                nmea_line(&body, bad).into_bytes()
            }
        })
    }

    /// A plausible value for channel `c`: the type cycles through the ones
    /// the frame format carries.
    fn value(&mut self, device: u32, c: u8, sequence: u32) -> Value<'static> {
        let t = f64::from(sequence);
        let noise = self.rng.unit() - 0.5;
        match c % 6 {
            0 => Value::F32((20.0 + 5.0 * (t / 60.0 + f64::from(device)).sin() + noise) as f32),
            1 => Value::U32(sequence.wrapping_mul(u32::from(c) + 1)),
            2 => Value::I32(-70 + (noise * 10.0) as i32),
            3 => Value::Bool(self.rng.unit() < 0.1),
            4 => Value::F64(1013.25 + noise),
            _ => Value::Str(if self.rng.unit() < 0.05 { "warn" } else { "ok" }),
        }
    }

    /// 1 to 32 random bytes; text formats end the burst with a newline so
    /// that only the garbage line is lost.
    fn garbage(&mut self) -> Vec<u8> {
        let len = 1 + self.rng.next() % 32;
        let mut bytes: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
        if self.args.format != Format::Weir {
            bytes.push(b'\n');
        }
        bytes
    }
}

fn weir_frame(header: &Header, values: &[Value<'_>]) -> anyhow::Result<Vec<u8>> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let mut frame = FrameBuilder::new(&mut buf, header).map_err(|e| anyhow!("{e}"))?;
    for (c, v) in values.iter().enumerate() {
        frame
            .push(c as u16, *v)
            .map_err(|e| anyhow!("reading {c}: {e}"))?;
    }
    let len = frame.finish();
    Ok(buf[..len].to_vec())
}

fn plain(v: &Value<'_>) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Value::Str(s) => (*s).to_owned(),
    }
}

/// The timestamp in µs (the simulator always stamps with the Unix clock).
fn micros(ts: Timestamp) -> u64 {
    match ts {
        Timestamp::UnixMicros(t) | Timestamp::UptimeMicros(t) => t,
        Timestamp::None => 0,
    }
}

fn csv_line(h: &Header, values: &[Value<'_>]) -> String {
    let ts = micros(h.timestamp);
    let cells: String = values.iter().map(|v| format!(",{}", plain(v))).collect();
    format!("{},{},{ts}{cells}\n", h.device_id, h.sequence)
}

fn json_line(h: &Header, values: &[Value<'_>]) -> String {
    let ts = micros(h.timestamp);
    let fields: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(c, v)| match v {
            // Only "ok" and "warn" are generated: nothing to escape.
            Value::Str(_) | Value::Bytes(_) => format!("\"ch{c}\":\"{}\"", plain(v)),
            _ => format!("\"ch{c}\":{}", plain(v)),
        })
        .collect();
    format!(
        "{{\"device_id\":{},\"sequence\":{},\"timestamp_us\":{ts},\"readings\":{{{}}}}}\n",
        h.device_id,
        h.sequence,
        fields.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmea::nmea_checksum;
    use weir_embedded::{decode, DefaultDeframer};

    fn output(extra: &[&str]) -> Vec<u8> {
        let mut argv = vec!["simulator", "--rate", "0"];
        argv.extend_from_slice(extra);
        let args = Args::parse_from(argv);
        let mut sim = Simulator::new(&args);
        let mut bytes = Vec::new();
        for i in 0..args.count {
            bytes.extend(sim.next_output(i, 1_700_000_000_000_000 + i).unwrap());
            if args.garbage_every > 0 && (i + 1) % args.garbage_every == 0 {
                bytes.extend(sim.garbage());
            }
        }
        bytes
    }

    #[test]
    fn every_nth_nmea_sentence_has_a_bad_checksum() {
        let text = String::from_utf8(output(&[
            "--format",
            "nmea",
            "--count",
            "9",
            "--bad-checksum-every",
            "3",
        ]))
        .unwrap();
        let good: Vec<bool> = text
            .lines()
            .map(|l| {
                let (body, sum) = l.trim_start_matches('$').split_once('*').unwrap();
                u8::from_str_radix(sum, 16).unwrap() == nmea_checksum(body)
            })
            .collect();
        assert_eq!(
            good,
            [true, true, false, true, true, false, true, true, false]
        );
        assert!(text.lines().next().unwrap().starts_with("$GPGGA,"));
        assert!(
            text.lines().nth(1).unwrap().contains(",141123,,,A*"),
            "{text}"
        );
    }

    #[test]
    fn weir_output_decodes_despite_the_injected_garbage() {
        let bytes = output(&[
            "--count",
            "20",
            "--devices",
            "3",
            "--readings",
            "6",
            "--garbage-every",
            "4",
        ]);
        let mut deframer = DefaultDeframer::default();
        let mut seen = Vec::new();
        let mut input = &bytes[..];
        while let Some(chunk) = deframer.feed(&mut input) {
            if let Ok(frame) = chunk.and_then(decode) {
                assert_eq!(frame.reading_count(), 6);
                seen.push((frame.header.device_id, frame.header.sequence));
            }
        }
        let expected: Vec<(u64, u32)> = (0..20u32)
            .map(|i| (1000 + u64::from(i % 3), i / 3))
            .collect();
        assert_eq!(seen, expected);
        assert!(deframer.garbage_bytes() > 0);
    }

    #[test]
    fn csv_and_json_write_one_line_per_frame() {
        let csv = String::from_utf8(output(&[
            "--format",
            "csv",
            "--count",
            "3",
            "--readings",
            "2",
        ]))
        .unwrap();
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.starts_with("1000,0,1700000000000000,"));
        let json = String::from_utf8(output(&[
            "--format",
            "json",
            "--count",
            "2",
            "--readings",
            "6",
        ]))
        .unwrap();
        assert_eq!(json.lines().count(), 2);
        assert!(json.contains("\"ch5\":\""), "{json}");
    }

    #[test]
    fn refuses_more_readings_than_a_frame_holds() {
        let args = |n: &str| Args::parse_from(["simulator", "--readings", n]);
        assert!(check_frame_size(&args("100")).is_ok());
        let err = check_frame_size(&args("255")).unwrap_err();
        assert!(format!("{err:#}").contains("frame too long"), "{err:#}");
    }
}
