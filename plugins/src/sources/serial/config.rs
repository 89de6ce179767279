//! Configuration of the `serial` source.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::units::{duration, ByteSize};

use super::poll::PollConfig;
use crate::sources::serial_port::{
    DataBits, FlowControl, Parity, PortSettings, StopBits, MAX_BAUD,
};

/// How the byte stream is cut into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Text lines ending in `\n` (a `\r` before it is dropped), read by `parser`.
    #[default]
    Lines,
    /// Weir device frames (`docs/frame-format.md`): COBS-delimited, CRC-checked.
    Frame,
}

/// What a line becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ParserKind {
    /// The line as it is, in `message`.
    #[default]
    Raw,
    /// A JSON object; its keys become fields.
    Json,
    /// Delimited values named by `csv.columns`.
    Csv,
    /// `key=value` pairs.
    Kv,
    /// NMEA 0183 sentences, checksum verified.
    Nmea,
}

/// Options of the `csv` parser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// Field names, one per column; a line with another number of cells is an error.
    pub columns: Vec<String>,
    /// The single character between cells.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Turn cells that look like integers, floats or `true`/`false` into those
    /// types (default); `false` keeps every cell a string.
    #[serde(default = "default_true")]
    pub convert: bool,
}

/// Options of the `kv` parser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvConfig {
    /// Between pairs; unset (default) means any run of spaces or tabs.
    #[serde(default)]
    pub separator: Option<char>,
    /// Between a key and its value.
    #[serde(default = "default_assign")]
    pub assign: char,
    /// Typed conversion of values, as for `csv`.
    #[serde(default = "default_true")]
    pub convert: bool,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            separator: None,
            assign: '=',
            convert: true,
        }
    }
}

/// Bounds on the batches sent to the channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Events per batch at most.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Longest the first event of a batch waits for more before the batch is
    /// sent. Everything read but not yet sent is lost if the agent crashes,
    /// so this bounds the loss window together with `max_events`.
    #[serde(default = "default_linger", with = "duration")]
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            linger: default_linger(),
        }
    }
}

/// Reads a serial port (RS-232, RS-485, USB CDC, a pseudo-terminal): text
/// lines or Weir device frames.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialSourceConfig {
    /// The port, e.g. `/dev/ttyUSB0`, or better a stable
    /// `/dev/serial/by-id/...` name that survives replugging.
    pub path: String,
    /// Line speed in bits per second.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// `5`, `6`, `7` or `8` (default).
    #[serde(default)]
    pub data_bits: DataBits,
    /// `none` (default), `odd` or `even`.
    #[serde(default)]
    pub parity: Parity,
    /// `1` (default) or `2`.
    #[serde(default)]
    pub stop_bits: StopBits,
    /// `none` (default), `software` (XON/XOFF) or `hardware` (RTS/CTS).
    #[serde(default)]
    pub flow_control: FlowControl,
    /// `lines` (default) or `frame`.
    #[serde(default)]
    pub framing: Framing,
    /// For `lines`: `raw` (default), `json`, `csv`, `kv` or `nmea`.
    #[serde(default)]
    pub parser: ParserKind,
    /// Options of the `csv` parser (required with it).
    #[serde(default)]
    pub csv: Option<CsvConfig>,
    /// Options of the `kv` parser.
    #[serde(default)]
    pub kv: KvConfig,
    /// For `frame`: field names of reading channels (`{1: temperature}`);
    /// channels not listed are named `ch<id>`.
    #[serde(default)]
    pub channels: BTreeMap<u16, String>,
    /// Field that receives the port's path; `null` adds none.
    #[serde(default = "default_port_field")]
    pub port_field: Option<String>,
    /// Longest line kept; the rest of a longer line is dropped and counted
    /// in `weir_serial_truncated_lines_total`.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: ByteSize,
    /// Batching towards the channels.
    #[serde(default)]
    pub batch: BatchConfig,
    /// For sensors that answer only when asked: a request written every
    /// interval, whose reply must come within a timeout.
    #[serde(default)]
    pub poll: Option<PollConfig>,
    /// First delay before reopening a port that vanished or cannot be
    /// opened; doubles up to `max_backoff`, with jitter.
    #[serde(default = "default_initial_backoff", with = "duration")]
    pub initial_backoff: Duration,
    /// Longest delay between attempts to reopen the port.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
}

fn default_delimiter() -> char {
    ','
}
fn default_assign() -> char {
    '='
}
fn default_true() -> bool {
    true
}
fn default_max_events() -> usize {
    256
}
fn default_linger() -> Duration {
    Duration::from_millis(50)
}
fn default_baud() -> u32 {
    9600
}
fn default_port_field() -> Option<String> {
    Some("port".to_owned())
}
fn default_max_line_bytes() -> ByteSize {
    ByteSize(16 << 10)
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(5)
}

/// Fields a frame's header fills in; channel names may not take them.
pub const FRAME_FIELDS: [&str; 4] = ["device_id", "sequence", "device_time", "device_uptime_us"];

impl SerialSourceConfig {
    /// The port settings.
    pub fn settings(&self) -> PortSettings {
        PortSettings {
            baud: self.baud,
            data_bits: self.data_bits,
            parity: self.parity,
            stop_bits: self.stop_bits,
            flow_control: self.flow_control,
        }
    }

    /// Value problems serde cannot catch.
    pub fn value_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.path.trim().is_empty() {
            p.push("path: must name a serial port".to_owned());
        }
        if self.baud == 0 || self.baud > MAX_BAUD {
            p.push(format!("baud: must be between 1 and {MAX_BAUD}"));
        }
        match (self.framing, self.parser) {
            (Framing::Lines, ParserKind::Csv) => match &self.csv {
                None => p.push("csv: the csv parser needs `csv: { columns: [...] }`".to_owned()),
                Some(c) => p.extend(csv_problems(c)),
            },
            (Framing::Frame, ParserKind::Raw) => {}
            (Framing::Frame, other) => p.push(format!(
                "parser: `{}` applies to `framing: lines`; frames are decoded as they are",
                parser_name(other)
            )),
            _ => {}
        }
        if let Some(sep) = self.kv.separator {
            if sep == self.kv.assign {
                p.push("kv: `separator` and `assign` must differ".to_owned());
            }
        }
        for (ch, name) in &self.channels {
            if name.is_empty() {
                p.push(format!("channels.{ch}: name must not be empty"));
            }
            let port = self.port_field.as_deref();
            if FRAME_FIELDS.contains(&name.as_str()) || Some(name.as_str()) == port {
                p.push(format!(
                    "channels.{ch}: `{name}` is a field the frame header or port already fills"
                ));
            }
        }
        if self.max_line_bytes.bytes() < 16 || self.max_line_bytes.bytes() > (16 << 20) {
            p.push("max_line_bytes: must be between 16B and 16MiB".to_owned());
        }
        if self.batch.max_events == 0 || self.batch.max_events > 100_000 {
            p.push("batch.max_events: must be between 1 and 100000".to_owned());
        }
        if self.batch.linger.is_zero() {
            p.push("batch.linger: must be greater than zero".to_owned());
        }
        if let Some(poll) = &self.poll {
            p.extend(poll.problems());
        }
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            p.push(
                "initial_backoff/max_backoff: need 0 < initial_backoff <= max_backoff".to_owned(),
            );
        }
        p
    }
}

fn csv_problems(c: &CsvConfig) -> Vec<String> {
    let mut p = Vec::new();
    if c.columns.is_empty() {
        p.push("csv.columns: name at least one column".to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    for col in &c.columns {
        if col.is_empty() {
            p.push("csv.columns: names must not be empty".to_owned());
        } else if !seen.insert(col) {
            p.push(format!("csv.columns: `{col}` appears twice"));
        }
    }
    if c.delimiter == '"' || c.delimiter == '\n' || c.delimiter == '\r' {
        p.push("csv.delimiter: must not be a quote or a line break".to_owned());
    }
    p
}

fn parser_name(p: ParserKind) -> &'static str {
    match p {
        ParserKind::Raw => "raw",
        ParserKind::Json => "json",
        ParserKind::Csv => "csv",
        ParserKind::Kv => "kv",
        ParserKind::Nmea => "nmea",
    }
}
