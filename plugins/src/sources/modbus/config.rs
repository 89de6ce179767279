//! Configuration of the `modbus` source.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::units::duration;

use crate::sources::serial_port::{DataBits, Parity, PortSettings, StopBits, MAX_BAUD};

/// What a read addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Holding registers (function 0x03), 16 bits each.
    Holding,
    /// Input registers (0x04), 16 bits each.
    Input,
    /// Coils (0x01), one bit each.
    Coil,
    /// Discrete inputs (0x02), one bit each.
    Discrete,
}

impl Kind {
    /// Registers or bits one request may ask for (the protocol's limits).
    pub fn max_per_request(self) -> u16 {
        match self {
            Kind::Holding | Kind::Input => 125,
            Kind::Coil | Kind::Discrete => 2000,
        }
    }

    /// Whether this kind holds bits rather than 16-bit registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Kind::Coil | Kind::Discrete)
    }
}

/// How the registers of a read are turned into a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// A coil or discrete input (the only type for those kinds).
    Bool,
}

impl DataType {
    /// Registers (or bits) the type spans.
    pub fn width(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 | DataType::Bool => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }
}

/// Order of the 16-bit registers of a multi-register value (each register
/// itself is big-endian, as the protocol defines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// Most significant register first (the Modbus convention, "ABCD").
    #[default]
    Big,
    /// Least significant register first ("CDAB").
    Little,
}

/// One value to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadConfig {
    /// Field name in the poll's event.
    pub name: String,
    /// Unit id (slave address), 0–255 (TCP gateways use it to pick the device).
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// `holding`, `input`, `coil` or `discrete`.
    pub kind: Kind,
    /// Zero-based register or bit address (the protocol address, not the
    /// 40001-style reference number).
    pub address: u16,
    /// `u16`, `i16`, `u32`, `i32`, `u64`, `i64`, `f32`, `f64` for registers
    /// (default `u16`); `bool` for coils and discrete inputs (default).
    #[serde(default, rename = "type")]
    pub data_type: Option<DataType>,
    /// For values over several registers: `big` (default) or `little`.
    #[serde(default)]
    pub word_order: WordOrder,
    /// Multiplies the value (after decoding, before `offset`); makes it a float.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Added to the value after `scale`; makes it a float.
    #[serde(default)]
    pub offset: Option<f64>,
}

impl ReadConfig {
    /// The type, with its default for the kind.
    pub fn data_type(&self) -> DataType {
        self.data_type.unwrap_or(if self.kind.is_bits() {
            DataType::Bool
        } else {
            DataType::U16
        })
    }
}

/// Polls Modbus devices over TCP or RTU on a schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusSourceConfig {
    /// `tcp://host:port` (port 502 if left out) or
    /// `rtu:///dev/ttyS1?baud=19200&parity=N&data_bits=8&stop_bits=1`.
    pub url: String,
    /// Time between polls; every read is made once per poll.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// Longest wait for one response (and for a TCP connection).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// What to read.
    pub reads: Vec<ReadConfig>,
    /// First delay before reconnecting after the connection was lost;
    /// doubles up to `max_backoff`, with jitter.
    #[serde(default = "default_initial_backoff", with = "duration")]
    pub initial_backoff: Duration,
    /// Longest delay between reconnection attempts.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
}

fn default_unit() -> u8 {
    1
}
fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// Field names the source itself may add to an event.
pub const RESERVED_FIELDS: [&str; 1] = ["errors"];

/// Where the device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`.
    Tcp(String),
    /// A serial port and its settings.
    Rtu {
        path: String,
        settings: PortSettings,
    },
}

impl ModbusSourceConfig {
    /// The endpoint `url` names.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        parse_url(&self.url)
    }

    /// Value problems serde cannot catch.
    pub fn value_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = self.endpoint() {
            p.push(format!("url: {e}"));
        }
        if self.interval < Duration::from_millis(10) {
            p.push("interval: must be at least 10ms".to_owned());
        }
        if self.timeout.is_zero() {
            p.push("timeout: must be greater than zero".to_owned());
        }
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            p.push(
                "initial_backoff/max_backoff: need 0 < initial_backoff <= max_backoff".to_owned(),
            );
        }
        if self.reads.is_empty() {
            p.push("reads: list at least one value to read".to_owned());
        }
        let mut names = HashSet::new();
        for (i, r) in self.reads.iter().enumerate() {
            let at = format!("reads[{i}]");
            if r.name.is_empty() {
                p.push(format!("{at}.name: must not be empty"));
            } else if RESERVED_FIELDS.contains(&r.name.as_str()) {
                p.push(format!(
                    "{at}.name: `{}` is reserved for the source",
                    r.name
                ));
            } else if !names.insert(r.name.as_str()) {
                p.push(format!("{at}.name: `{}` is used twice", r.name));
            }
            let t = r.data_type();
            if r.kind.is_bits() != (t == DataType::Bool) {
                p.push(format!(
                    "{at}.type: coils and discrete inputs are `bool`; registers are numbers"
                ));
            }
            if u32::from(r.address) + u32::from(t.width()) > 65536 {
                p.push(format!("{at}.address: the value runs past address 65535"));
            }
            if r.kind.is_bits() && (r.scale.is_some() || r.offset.is_some()) {
                p.push(format!("{at}: scale and offset apply to registers only"));
            }
            if r.scale.is_some_and(|s| !s.is_finite()) || r.offset.is_some_and(|o| !o.is_finite()) {
                p.push(format!("{at}: scale and offset must be finite numbers"));
            }
        }
        p
    }
}

/// Parses `tcp://host[:port]` or `rtu:///path?key=value&...`.
pub fn parse_url(url: &str) -> Result<Endpoint, String> {
    if let Some(rest) = url.strip_prefix("tcp://") {
        return tcp_addr(rest.trim_end_matches('/'))
            .map(Endpoint::Tcp)
            .map_err(|e| format!("`{url}`: {e}"));
    }
    let Some(rest) = url.strip_prefix("rtu://") else {
        return Err(format!(
            "`{url}`: expected tcp://host:port or rtu:///dev/ttyX?baud=..."
        ));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return Err(format!(
            "`{url}`: expected an absolute device path, e.g. rtu:///dev/ttyS1"
        ));
    }
    let mut s = PortSettings::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}`: expected key=value"))?;
        match k {
            "baud" => {
                s.baud = v
                    .parse()
                    .ok()
                    .filter(|b| (1..=MAX_BAUD).contains(b))
                    .ok_or_else(|| format!("baud `{v}`: expected a number up to {MAX_BAUD}"))?
            }
            "parity" => {
                s.parity = match v {
                    "N" | "n" | "none" => Parity::None,
                    "E" | "e" | "even" => Parity::Even,
                    "O" | "o" | "odd" => Parity::Odd,
                    _ => return Err(format!("parity `{v}`: expected N, E or O")),
                }
            }
            "data_bits" => {
                s.data_bits = v
                    .parse::<u8>()
                    .map_err(|e| e.to_string())
                    .and_then(DataBits::try_from)
                    .map_err(|_| format!("data_bits `{v}`: expected 5, 6, 7 or 8"))?
            }
            "stop_bits" => {
                s.stop_bits = v
                    .parse::<u8>()
                    .map_err(|e| e.to_string())
                    .and_then(StopBits::try_from)
                    .map_err(|_| format!("stop_bits `{v}`: expected 1 or 2"))?
            }
            other => {
                return Err(format!(
                    "unknown setting `{other}` (baud, parity, data_bits, stop_bits)"
                ))
            }
        }
    }
    Ok(Endpoint::Rtu {
        path: path.to_owned(),
        settings: s,
    })
}

/// `host[:port]` or `[v6][:port]` with the port defaulting to 502.
fn tcp_addr(host: &str) -> Result<String, String> {
    let port_ok = |p: &str| {
        p.parse::<u16>()
            .map(drop)
            .map_err(|_| format!("bad port `{p}`"))
    };
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed `[` in the address".to_owned())?;
        return match after.strip_prefix(':') {
            None if after.is_empty() => Ok(format!("[{addr}]:502")),
            None => Err(format!("unexpected `{after}` after the address")),
            Some(p) => port_ok(p).map(|()| host.to_owned()),
        };
    }
    if host.is_empty() || host.contains(['/', '?', '@']) {
        return Err("expected tcp://host:port".to_owned());
    }
    match host.split_once(':') {
        None => Ok(format!("{host}:502")),
        Some((h, p)) if !h.is_empty() && !p.contains(':') => port_ok(p).map(|()| host.to_owned()),
        Some(_) => Err("expected tcp://host:port (IPv6 addresses in brackets)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_urls_default_to_port_502() {
        assert_eq!(
            parse_url("tcp://10.0.0.5:1502"),
            Ok(Endpoint::Tcp("10.0.0.5:1502".into()))
        );
        assert_eq!(
            parse_url("tcp://meter.local"),
            Ok(Endpoint::Tcp("meter.local:502".into()))
        );
        assert_eq!(
            parse_url("tcp://[::1]"),
            Ok(Endpoint::Tcp("[::1]:502".into()))
        );
        assert_eq!(
            parse_url("tcp://[::1]:5020/"),
            Ok(Endpoint::Tcp("[::1]:5020".into()))
        );
        assert!(parse_url("tcp://host:99999").is_err());
        assert!(parse_url("tcp://").is_err());
        assert!(parse_url("udp://x").is_err());
    }

    #[test]
    fn rtu_urls_carry_the_port_settings() {
        let e = parse_url("rtu:///dev/ttyS1?baud=19200&parity=E&stop_bits=2&data_bits=7").unwrap();
        assert_eq!(
            e,
            Endpoint::Rtu {
                path: "/dev/ttyS1".into(),
                settings: PortSettings {
                    baud: 19200,
                    data_bits: DataBits::Seven,
                    parity: Parity::Even,
                    stop_bits: StopBits::Two,
                    ..PortSettings::default()
                }
            }
        );
        assert_eq!(
            parse_url("rtu:///dev/ttyUSB0"),
            Ok(Endpoint::Rtu {
                path: "/dev/ttyUSB0".into(),
                settings: PortSettings::default()
            })
        );
        assert!(parse_url("rtu:///dev/x?baud=fast").is_err());
        assert!(parse_url("rtu:///dev/x?speed=1").is_err());
        assert!(parse_url("rtu://dev/x").is_err());
    }

    #[test]
    fn config_round_trips_through_yaml() {
        let c: ModbusSourceConfig = serde_yaml::from_str(
            "url: rtu:///dev/ttyS1?baud=19200\ninterval: 2s\ntimeout: 300ms\nreads:\n  - { name: a, unit: 3, kind: input, address: 7, type: i32, word_order: little, scale: 0.5, offset: 1 }\n  - { name: b, kind: coil, address: 0 }\n",
        )
        .unwrap();
        assert!(c.value_problems().is_empty(), "{:?}", c.value_problems());
        let again: ModbusSourceConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again.reads, c.reads);
        assert_eq!((again.interval, again.timeout), (c.interval, c.timeout));
        assert_eq!(again.reads[1].data_type(), DataType::Bool);
        assert!(
            serde_yaml::from_str::<ModbusSourceConfig>("url: tcp://x\nreads: []\nbogus: 1")
                .is_err()
        );
    }

    #[test]
    fn problems_name_each_bad_read() {
        let c: ModbusSourceConfig = serde_yaml::from_str(
            "url: tcp://127.0.0.1:502\nreads:\n  - { name: a, kind: holding, address: 0, type: f32 }\n  - { name: a, kind: coil, address: 1, type: u16 }\n  - { name: errors, kind: input, address: 65535, type: u32 }\n  - { name: c, kind: discrete, address: 3, scale: 2 }\n",
        )
        .unwrap();
        let p = c.value_problems();
        assert_eq!(p.len(), 5, "{p:#?}");
        assert!(p[0].starts_with("reads[1].name"), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("reads[2].address")), "{p:?}");
    }
}
