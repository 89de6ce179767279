//! The agent's admin endpoint: a local Unix socket for `weir reload`,
//! `weir tap` and `weir top`.
//!
//! The protocol is one JSON request line from the client, then JSON lines
//! from the agent: a header `{"ok":true,...}` or `{"ok":false,"error":...}`,
//! and for a tap the tapped events (objects with `component`) and status
//! lines (`{"tap":"dropped","dropped":N}`, `{"tap":"end","reason":...}`).
//!
//! ```text
//! {"cmd":"reload"}                                     -> {"ok":true,"changes":"sinks +b"}
//! {"cmd":"metrics"}                                    -> {"ok":true,"metrics":"<Prometheus text>"}
//! {"cmd":"tap","component":"parse","output":null,"rate":10,"limit":null}
//!                                                      -> {"ok":true} then events
//! ```
//!
//! Bounded: at most `max_clients` connections are served at once (others
//! get an error line and are closed), a request line is at most 4 KiB and
//! must arrive within 5 s, and every write to a client has a 5 s timeout —
//! a client that never reads is dropped, and the pipeline never waits for
//! one (taps hand over events with `try_send`).

pub mod client;
mod server;
pub mod top;

use std::path::{Path, PathBuf};
use std::sync::Weak;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::runtime::ports::Ports;
use crate::runtime::tap::TapFeed;

pub use server::{serve, AdminError};

/// The admin socket (`admin:` in the pipeline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin socket (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Path of the socket (default `<data_dir>/admin.sock`).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Permissions of the socket: `"0600"` (default; the agent's user only)
    /// or `"0660"` (its group too).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Most clients served at once (default 4, at most 64).
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
}

fn yes() -> bool {
    true
}

fn default_mode() -> String {
    "0600".to_owned()
}

fn default_max_clients() -> usize {
    4
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            socket: None,
            mode: default_mode(),
            max_clients: default_max_clients(),
        }
    }
}

impl AdminConfig {
    /// Value problems, each starting with its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.mode_bits().is_none() {
            out.push(format!(
                "mode: `{}` is not allowed; use \"0600\" or \"0660\"",
                self.mode
            ));
        }
        if !(1..=64).contains(&self.max_clients) {
            out.push("max_clients: must be between 1 and 64".to_owned());
        }
        if let Some(s) = &self.socket {
            // sun_path holds 108 bytes with the NUL.
            if s.as_os_str().len() > 107 {
                out.push(
                    "socket: the path is longer than a Unix socket allows (107 bytes)".to_owned(),
                );
            }
        }
        out
    }

    /// The socket's permission bits.
    pub fn mode_bits(&self) -> Option<u32> {
        match self.mode.as_str() {
            "0600" | "600" => Some(0o600),
            "0660" | "660" => Some(0o660),
            _ => None,
        }
    }

    /// Where the socket is for an agent with data directory `data_dir`.
    pub fn socket_path(&self, data_dir: &Path) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| data_dir.join("admin.sock"))
    }
}

/// A request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Re-read and apply the pipeline file.
    Reload,
    /// The metrics registry in the Prometheus text format.
    Metrics,
    /// Stream sampled events of one component output.
    Tap {
        component: String,
        /// `None`: the default output.
        #[serde(default)]
        output: Option<String>,
        /// Most events per second.
        rate: u32,
        /// Stop after this many events.
        #[serde(default)]
        limit: Option<u64>,
    },
}

/// What the admin server asks of the runtime.
pub enum Command {
    /// Reload; answers the changes, or every problem of the new pipeline.
    Reload {
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Attach a tap.
    Tap {
        component: String,
        output: Option<String>,
        rate: u32,
        reply: oneshot::Sender<Result<(TapFeed, Weak<Ports>), String>>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json_lines() {
        for r in [
            Request::Reload,
            Request::Metrics,
            Request::Tap {
                component: "parse".into(),
                output: Some("errors".into()),
                rate: 10,
                limit: Some(5),
            },
        ] {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        let tap: Request =
            serde_json::from_str(r#"{"cmd":"tap","component":"a","rate":3}"#).unwrap();
        assert!(matches!(
            tap,
            Request::Tap {
                output: None,
                limit: None,
                ..
            }
        ));
    }

    #[test]
    fn admin_config_refuses_other_modes_and_defaults_beside_the_data() {
        let c: AdminConfig = serde_yaml::from_str("mode: \"0666\"").unwrap();
        assert_eq!(c.problems().len(), 1);
        let c = AdminConfig::default();
        assert!(c.problems().is_empty());
        assert_eq!(c.mode_bits(), Some(0o600));
        assert_eq!(
            c.socket_path(Path::new("/var/lib/weir")),
            PathBuf::from("/var/lib/weir/admin.sock")
        );
    }
}
