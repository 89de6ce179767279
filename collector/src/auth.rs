//! Who is calling, and what it may do.
//!
//! Every front-end (the HTTP API today, a Kafka listener later) turns a
//! request's credentials into a [`Principal`] here, and the service checks the
//! principal's [`Acl`] before it touches the log. Credentials are:
//!
//! - a bearer token (`Authorization: Bearer <token>`): the collector's config
//!   holds only its SHA-256 (`token_sha256`), compared in constant time, so a
//!   leaked config does not leak tokens;
//! - a client certificate, verified by TLS against `tls.client_ca`: the
//!   principal whose `cert_name` the certificate is valid for (a DNS name in
//!   its subject alternative names, checked by webpki exactly as a server
//!   name would be).
//!
//! With no principals configured the collector is *open*: every caller is the
//! anonymous principal with every right. `config.rs` allows that only on
//! loopback, or with an explicit `insecure: true`.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, DnsName, ServerName};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// A principal as configured: its credentials and its rights.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// Name shown in logs and bound to the producer ids this principal is issued.
    pub name: String,
    /// SHA-256 of the principal's bearer token, 64 hex digits
    /// (`printf %s "$TOKEN" | sha256sum`, or `weir-collector hash-token`).
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// A DNS name the principal's client certificate is valid for (a subject
    /// alternative name), when it authenticates with a certificate.
    #[serde(default)]
    pub cert_name: Option<String>,
    /// Topic patterns it may produce to (`*` matches any run of characters).
    #[serde(default)]
    pub produce: Vec<String>,
    /// Topic patterns it may fetch from, look up offsets in and list.
    #[serde(default)]
    pub consume: Vec<String>,
    /// Topic patterns it may create (explicitly or by a first write).
    #[serde(default)]
    pub create: Vec<String>,
    /// Consumer-group patterns whose offsets it may commit and read.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A name pattern: `*` matches any run of characters, everything else itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// The pattern `p`.
    pub fn new(p: &str) -> Pattern {
        Pattern(p.to_owned())
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.0.split('*');
        let Some(first) = parts.next() else {
            return name.is_empty();
        };
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            // No `*`: the whole name must have been the prefix.
            return rest.is_empty();
        };
        for m in middle {
            match rest.find(m) {
                Some(i) => rest = &rest[i + m.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// What a request does to a topic or group, for the ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Append batches to a topic; init and look up producer ids for it.
    Produce,
    /// Fetch, look up offsets, list and describe a topic.
    Consume,
    /// Create a topic.
    Create,
    /// Commit or read a consumer group's offsets.
    Group,
    /// Report an agent heartbeat: allowed to a principal that may produce
    /// to some topic (every agent's principal does).
    Heartbeat,
    /// See the fleet's agents: allowed to a principal that may consume from
    /// some topic (topics and groups are filtered by their own rights).
    SeeAgents,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Produce => "produce to topic",
            Operation::Consume => "consume from topic",
            Operation::Create => "create topic",
            Operation::Group => "use consumer group",
            Operation::Heartbeat => "report heartbeats (needs produce on some topic) for",
            Operation::SeeAgents => "see agents (needs consume on some topic) of",
        })
    }
}

/// The rights of a principal.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    produce: Vec<Pattern>,
    consume: Vec<Pattern>,
    create: Vec<Pattern>,
    groups: Vec<Pattern>,
}

impl Acl {
    /// Every right on everything (the anonymous principal of an open collector).
    pub fn all() -> Acl {
        let all = vec![Pattern::new("*")];
        Acl {
            produce: all.clone(),
            consume: all.clone(),
            create: all.clone(),
            groups: all,
        }
    }

    /// The rights a config entry lists.
    pub fn from_config(c: &PrincipalConfig) -> Acl {
        let p = |v: &[String]| v.iter().map(|s| Pattern::new(s)).collect();
        Acl {
            produce: p(&c.produce),
            consume: p(&c.consume),
            create: p(&c.create),
            groups: p(&c.groups),
        }
    }

    /// Whether `op` is allowed on the topic or group `name`.
    pub fn allows(&self, op: Operation, name: &str) -> bool {
        let list = match op {
            Operation::Produce => &self.produce,
            Operation::Consume => &self.consume,
            Operation::Create => &self.create,
            Operation::Group => &self.groups,
            Operation::Heartbeat => return !self.produce.is_empty(),
            Operation::SeeAgents => return !self.consume.is_empty(),
        };
        list.iter().any(|p| p.matches(name))
    }

    /// Whether any right at all names this topic (it may see it listed).
    pub fn sees_topic(&self, topic: &str) -> bool {
        [Operation::Produce, Operation::Consume, Operation::Create]
            .iter()
            .any(|op| self.allows(*op, topic))
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    name: Arc<str>,
    acl: Arc<Acl>,
}

impl Principal {
    /// A principal named `name` with rights `acl`.
    pub fn new(name: &str, acl: Acl) -> Principal {
        Principal {
            name: name.into(),
            acl: Arc::new(acl),
        }
    }

    /// The caller of an open collector: every right.
    pub fn anonymous() -> Principal {
        Principal::new(ANONYMOUS, Acl::all())
    }

    /// The principal's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `op` is allowed on `name`.
    pub fn may(&self, op: Operation, name: &str) -> bool {
        self.acl.allows(op, name)
    }

    /// Whether the principal may see `topic` in a listing.
    pub fn sees_topic(&self, topic: &str) -> bool {
        self.acl.sees_topic(topic)
    }
}

/// Name of the principal of an open collector.
pub const ANONYMOUS: &str = "anonymous";

/// Why a caller could not be authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token and no known client certificate.
    #[error("authentication required: send `Authorization: Bearer <token>` or a client certificate the collector knows")]
    Missing,
    /// A token was sent that no principal has.
    #[error("unknown bearer token")]
    BadToken,
    /// The Authorization header is not a bearer token.
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
}

struct Entry {
    principal: Principal,
    token_sha256: Option<[u8; 32]>,
    cert_name: Option<DnsName<'static>>,
}

/// Turns credentials into principals.
pub struct Authenticator {
    entries: Vec<Entry>,
}

impl Authenticator {
    /// From the configured principals; an error names the first bad entry
    /// (the config validation reports them all beforehand).
    pub fn new(principals: &[PrincipalConfig]) -> Result<Authenticator, String> {
        let mut entries = Vec::with_capacity(principals.len());
        for (i, c) in principals.iter().enumerate() {
            let token_sha256 = match &c.token_sha256 {
                Some(h) => Some(
                    parse_sha256(h).map_err(|e| format!("principals[{i}].token_sha256: {e}"))?,
                ),
                None => None,
            };
            let cert_name =
                match &c.cert_name {
                    Some(n) => Some(DnsName::try_from(n.clone()).map_err(|_| {
                        format!("principals[{i}].cert_name: {n:?} is not a DNS name")
                    })?),
                    None => None,
                };
            entries.push(Entry {
                principal: Principal::new(&c.name, Acl::from_config(c)),
                token_sha256,
                cert_name,
            });
        }
        Ok(Authenticator { entries })
    }

    /// True when no principal is configured: every caller is anonymous.
    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal a verified client certificate stands for, if any.
    pub fn principal_for_cert(&self, cert: &CertificateDer<'_>) -> Option<Principal> {
        let ee = webpki::EndEntityCert::try_from(cert).ok()?;
        self.entries.iter().find_map(|e| {
            let name = ServerName::DnsName(e.cert_name.clone()?);
            ee.verify_is_valid_for_subject_name(&name)
                .ok()
                .map(|_| e.principal.clone())
        })
    }

    /// The caller, from an `Authorization` header value and the principal of
    /// its connection's client certificate. A token, when sent, must be valid.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        cert_principal: Option<&Principal>,
    ) -> Result<Principal, AuthError> {
        if self.is_open() {
            return Ok(Principal::anonymous());
        }
        if let Some(value) = authorization {
            let token = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or(AuthError::Malformed)?;
            return self.by_token(token).ok_or(AuthError::BadToken);
        }
        cert_principal.cloned().ok_or(AuthError::Missing)
    }

    /// The principal whose token this is (SASL/PLAIN passwords on the Kafka listener).
    pub fn principal_for_token(&self, token: &str) -> Option<Principal> {
        self.by_token(token)
    }

    fn by_token(&self, token: &str) -> Option<Principal> {
        let sent = sha256(token.as_bytes());
        // Compare against every entry, in constant time each, so the time
        // taken says nothing about which hash (or how much of it) matched.
        let mut found = None;
        for e in &self.entries {
            if let Some(h) = &e.token_sha256 {
                if bool::from(h.ct_eq(&sent)) && found.is_none() {
                    found = Some(e.principal.clone());
                }
            }
        }
        found
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits.
pub fn parse_sha256(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be 64 hex digits (the SHA-256 of the token)".into());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_with_stars_anywhere() {
        let m = |p: &str, n: &str| Pattern::new(p).matches(n);
        assert!(m("*", "anything"));
        assert!(m("*", ""));
        assert!(m("app-*", "app-logs"));
        assert!(!m("app-*", "xapp-logs"));
        assert!(m("*-logs", "app-logs"));
        assert!(m("a*b*c", "a-x-b-y-c"));
        assert!(!m("a*b*c", "a-x-c"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exact2"));
        assert!(!m("ab*ba", "aba"), "prefix and suffix must not overlap");
    }

    fn two() -> Authenticator {
        Authenticator::new(&[
            PrincipalConfig {
                name: "gw".into(),
                token_sha256: Some(hex(&sha256(b"gw-secret"))),
                produce: vec!["app-*".into()],
                ..Default::default()
            },
            PrincipalConfig {
                name: "ops".into(),
                token_sha256: Some(hex(&sha256(b"ops-secret"))),
                consume: vec!["*".into()],
                groups: vec!["ops-*".into()],
                ..Default::default()
            },
        ])
        .unwrap()
    }

    #[test]
    fn tokens_name_their_principal_and_its_rights() {
        let a = two();
        let gw = a.authenticate(Some(b"Bearer gw-secret"), None).unwrap();
        assert_eq!(gw.name(), "gw");
        assert!(gw.may(Operation::Produce, "app-logs"));
        assert!(!gw.may(Operation::Produce, "other"));
        assert!(!gw.may(Operation::Consume, "app-logs"));
        let ops = a.authenticate(Some(b"Bearer ops-secret"), None).unwrap();
        assert!(ops.may(Operation::Group, "ops-1") && !ops.may(Operation::Group, "x"));
    }

    #[test]
    fn missing_unknown_and_malformed_credentials_are_refused() {
        let a = two();
        assert_eq!(a.authenticate(None, None).unwrap_err(), AuthError::Missing);
        assert_eq!(
            a.authenticate(Some(b"Bearer nope"), None).unwrap_err(),
            AuthError::BadToken
        );
        assert_eq!(
            a.authenticate(Some(b"Basic Z3c6eA=="), None).unwrap_err(),
            AuthError::Malformed
        );
        // A bad token is refused even when the connection has a certificate principal.
        let p = Principal::new("cert", Acl::default());
        assert!(a.authenticate(Some(b"Bearer nope"), Some(&p)).is_err());
        assert_eq!(a.authenticate(None, Some(&p)).unwrap().name(), "cert");
    }

    #[test]
    fn an_open_collector_makes_everyone_anonymous_with_every_right() {
        let a = Authenticator::new(&[]).unwrap();
        let p = a.authenticate(None, None).unwrap();
        assert_eq!(p.name(), ANONYMOUS);
        assert!(p.may(Operation::Create, "x") && p.may(Operation::Group, "g"));
    }

    #[test]
    fn hashes_must_be_64_hex_digits() {
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
        let h = sha256(b"x");
        assert_eq!(parse_sha256(&hex(&h)).unwrap(), h);
        assert!(Authenticator::new(&[PrincipalConfig {
            name: "x".into(),
            token_sha256: Some("12".into()),
            ..Default::default()
        }])
        .is_err());
    }
}
