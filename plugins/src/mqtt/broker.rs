//! Where the broker is and how to log in: the connection keys the `mqtt`
//! source and sink share, checked and turned into [`ConnectOptions`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::codec::Protocol;

/// TLS settings for `mqtts://`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates that sign the broker's certificate;
    /// the system's CA bundle when unset.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name checked against the broker's certificate; the URL's host by default.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (8883).
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(format!("url {url:?}: must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(format!(
                "url {url:?}: expected mqtt://host[:port] (credentials go in username/password)"
            ));
        }
        let default_port = if tls { 8883 } else { 1883 };
        // [v6]:port, host:port, or a host alone.
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("url {url:?}: unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("url {url:?}: bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("url {url:?}: bad port")),
            };
            (h.to_owned(), port)
        } else if let Some((h, p)) = rest.rsplit_once(':') {
            (
                h.to_owned(),
                p.parse()
                    .map_err(|_| format!("url {url:?}: bad port {p:?}"))?,
            )
        } else {
            (rest.to_owned(), default_port)
        };
        if host.is_empty() || port == 0 {
            return Err(format!("url {url:?}: missing host or port"));
        }
        Ok(BrokerUrl { tls, host, port })
    }

    /// `host:port` for connecting and for names.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Everything needed to open a session with the broker.
#[derive(Clone)]
pub struct ConnectOptions {
    pub url: BrokerUrl,
    pub protocol: Protocol,
    pub client_id: String,
    pub login: Option<(String, String)>,
    pub keep_alive: Duration,
    pub connect_timeout: Duration,
    /// Largest packet accepted from the broker.
    pub max_packet_size: usize,
    /// `None` for plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub tls_name: Option<String>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("ConnectOptions")
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .field("client_id", &self.client_id)
            .field("user", &self.login.as_ref().map(|l| &l.0))
            .finish_non_exhaustive()
    }
}

/// The connection keys as written in a component's config.
pub struct ConnectKeys<'a> {
    pub url: &'a str,
    pub protocol: Protocol,
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub password_file: Option<&'a std::path::Path>,
    pub tls: Option<&'a TlsConfig>,
    pub keep_alive: Duration,
    pub connect_timeout: Duration,
    pub max_packet_size: u64,
}

impl ConnectKeys<'_> {
    /// Problems serde cannot see, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match BrokerUrl::parse(self.url) {
            Ok(u) if !u.tls && self.tls.is_some() => {
                p.push("tls: set, but the url is mqtt:// (use mqtts://)".to_owned())
            }
            Ok(_) => {}
            Err(e) => p.push(e),
        }
        if self.client_id.is_empty() || self.client_id.len() > 65535 {
            p.push("client_id: must be 1 to 65535 bytes".to_owned());
        }
        if self.password.is_some() && self.password_file.is_some() {
            p.push("password and password_file: set only one".to_owned());
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            p.push("password: needs a username".to_owned());
        }
        if let Some(t) = self.tls {
            if t.cert_file.is_some() != t.key_file.is_some() {
                p.push("tls: cert_file and key_file go together".to_owned());
            }
        }
        let ka = self.keep_alive.as_secs();
        if !(1..=65535).contains(&ka) {
            p.push("keep_alive: must be between 1s and 65535s".to_owned());
        }
        if self.connect_timeout.is_zero() {
            p.push("connect_timeout: must be greater than zero".to_owned());
        }
        if !(1024..=268_435_455).contains(&self.max_packet_size) {
            p.push("max_packet_size: must be between 1KiB and 256MiB (MQTT's limit)".to_owned());
        }
        p
    }

    /// Reads the password file and TLS material; errors name the file.
    pub fn resolve(&self) -> Result<ConnectOptions, String> {
        let url = BrokerUrl::parse(self.url)?;
        let password = match (self.password, self.password_file) {
            (Some(p), _) => Some(p.to_owned()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("password_file {}: {e}", f.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let login = self
            .username
            .map(|u| (u.to_owned(), password.unwrap_or_default()));
        let tls = if url.tls {
            Some(Arc::new(super::tls::client_config(
                self.tls.cloned().unwrap_or_default(),
            )?))
        } else {
            None
        };
        Ok(ConnectOptions {
            tls_name: self.tls.and_then(|t| t.server_name.clone()),
            url,
            protocol: self.protocol,
            client_id: self.client_id.to_owned(),
            login,
            keep_alive: self.keep_alive,
            connect_timeout: self.connect_timeout,
            max_packet_size: self.max_packet_size as usize,
            tls,
        })
    }
}

/// Default `keep_alive`.
pub fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
/// Default `connect_timeout`.
pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
/// Default `max_packet_size`: generous, far above typical sensor payloads.
pub fn default_max_packet_size() -> weir_core::units::ByteSize {
    weir_core::units::ByteSize(16 << 20)
}
/// Default `initial_backoff`.
pub fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
/// Default `max_backoff`.
pub fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// The default client id: `weir-<host>-<component>`, with characters
/// outside `[A-Za-z0-9_-]` replaced by `-`, so it is stable per agent.
pub fn default_client_id(host: &str, component: &str) -> String {
    let raw = format!("weir-{host}-{component}");
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_ports_and_reject_paths() {
        assert_eq!(
            BrokerUrl::parse("mqtt://127.0.0.1").unwrap(),
            BrokerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        let u = BrokerUrl::parse("mqtts://broker.local:8884").unwrap();
        assert!(u.tls && u.port == 8884);
        assert_eq!(
            BrokerUrl::parse("mqtt://[::1]:1999").unwrap().authority(),
            "[::1]:1999"
        );
        assert!(BrokerUrl::parse("tcp://x").is_err());
        assert!(BrokerUrl::parse("mqtt://x/topic").is_err());
        assert!(BrokerUrl::parse("mqtt://user:pw@x").is_err());
        assert!(BrokerUrl::parse("mqtt://x:notaport").is_err());
    }

    #[test]
    fn default_client_ids_are_stable_and_safe() {
        assert_eq!(
            default_client_id("gw 17.local", "plant"),
            "weir-gw-17-local-plant"
        );
    }
}
