//! Validation of the collector's YAML: every problem at once, each with its
//! file:line:column and key path, in plain words; zero or absurd durations,
//! sizes and counts are refused here rather than misbehaving later.
//!
//! serde stops at the first error of a struct, so each top-level key (and
//! each key of `limits` and `retention`, and each principal) is deserialized
//! on its own: every field has a default, so a one-key document is valid
//! exactly when that key is.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};
use weir_core::locate;
use weir_core::problems::{plain_words, Problem, Problems};

use super::{CollectorConfig, Limits, Retention};
use crate::auth::{parse_sha256, PrincipalConfig};

struct Checker<'a> {
    file: &'a Path,
    index: HashMap<String, locate::Pos>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            pos: locate::find(&self.index, path),
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Deserializes `T` from a one-key mapping, reporting a failure at its
    /// path; true when the key is valid.
    fn key<T: DeserializeOwned>(&mut self, prefix: &str, k: &Value, v: &Value) -> bool {
        let mut one = Mapping::new();
        one.insert(k.clone(), v.clone());
        if let Err(e) = serde_path_to_error::deserialize::<_, T>(Value::Mapping(one)) {
            let sub = e.path().to_string();
            let name = k.as_str().unwrap_or("?");
            let path = if sub == "." || sub.is_empty() {
                join(prefix, name)
            } else {
                join(prefix, &sub)
            };
            self.add(&path, plain_words(&e.into_inner().to_string()));
            return false;
        }
        true
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Reads and validates the collector config in `file`.
pub fn load(file: &Path) -> Result<CollectorConfig, Problems> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Problems(vec![Problem {
            file: file.to_path_buf(),
            pos: None,
            path: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    problems_in(file, &text)
}

/// Validates config text (`file` names it in problems).
pub fn problems_in(file: &Path, text: &str) -> Result<CollectorConfig, Problems> {
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Err(Problems(vec![Problem {
                file: file.to_path_buf(),
                pos: e.location().map(|l| (l.line(), l.column())),
                path: String::new(),
                message: format!("invalid YAML: {}", plain_words(&e.to_string())),
            }]))
        }
    };
    let mut c = Checker {
        file,
        index: locate::index(text),
        problems: Vec::new(),
    };
    let top = match doc {
        Value::Null => Mapping::new(),
        Value::Mapping(m) => m,
        _ => {
            c.add("", "the collector config must be a mapping of keys");
            return Err(Problems(c.problems));
        }
    };
    // Keys that failed are left out of `clean`, so the values of the rest
    // are still checked: every problem is reported in one run.
    let mut clean = Mapping::new();
    for (k, v) in &top {
        match (k.as_str(), v) {
            (Some(section @ ("limits" | "retention")), Value::Mapping(m)) => {
                let mut kept = Mapping::new();
                for (k2, v2) in m {
                    let ok = if section == "limits" {
                        c.key::<Limits>(section, k2, v2)
                    } else {
                        c.key::<Retention>(section, k2, v2)
                    };
                    if ok {
                        kept.insert(k2.clone(), v2.clone());
                    }
                }
                clean.insert(k.clone(), Value::Mapping(kept));
            }
            (Some("principals"), Value::Sequence(items)) => {
                let mut kept = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let at = format!("principals[{i}]");
                    match serde_path_to_error::deserialize::<_, PrincipalConfig>(item.clone()) {
                        Ok(_) => kept.push(item.clone()),
                        Err(e) => {
                            let sub = e.path().to_string();
                            let path = if sub == "." {
                                at
                            } else {
                                format!("{at}.{sub}")
                            };
                            c.add(&path, plain_words(&e.into_inner().to_string()));
                        }
                    }
                }
                clean.insert(k.clone(), Value::Sequence(kept));
            }
            _ => {
                if c.key::<CollectorConfig>("", k, v) {
                    clean.insert(k.clone(), v.clone());
                }
            }
        }
    }
    match serde_yaml::from_value::<CollectorConfig>(Value::Mapping(clean)) {
        Ok(cfg) => check_values(&mut c, &cfg),
        Err(e) => c.add("", plain_words(&e.to_string())),
    }
    if c.problems.is_empty() {
        serde_yaml::from_value(Value::Mapping(top)).map_err(|e| {
            c.add("", plain_words(&e.to_string()));
            Problems(c.problems)
        })
    } else {
        Err(sorted(c.problems))
    }
}

fn sorted(mut p: Vec<Problem>) -> Problems {
    p.sort_by_key(|p| p.pos.unwrap_or((usize::MAX, 0)));
    Problems(p)
}

fn duration_in(c: &mut Checker, path: &str, d: Duration, min: Duration, max: Duration) {
    if d < min || d > max {
        c.add(
            path,
            format!(
                "{} is out of range: must be between {} and {}",
                humantime::format_duration(d),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        );
    }
}

fn count_in(c: &mut Checker, path: &str, n: u64, min: u64, max: u64) {
    if n < min || n > max {
        c.add(
            path,
            format!("{n} is out of range: must be between {min} and {max}"),
        );
    }
}

fn bytes_in(c: &mut Checker, path: &str, n: u64, min: u64, max: u64) {
    use weir_core::units::ByteSize;
    if n < min || n > max {
        c.add(
            path,
            format!(
                "{} is out of range: must be between {} and {}",
                ByteSize(n),
                ByteSize(min),
                ByteSize(max)
            ),
        );
    }
}

fn check_values(c: &mut Checker, cfg: &CollectorConfig) {
    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);
    const H: Duration = Duration::from_secs(3600);
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let l = &cfg.limits;
    duration_in(c, "fsync_interval", cfg.fsync_interval, MS, 10 * S);
    duration_in(
        c,
        "storage_probe_interval",
        cfg.storage_probe_interval,
        10 * MS,
        3600 * S,
    );
    duration_in(c, "limits.busy_wait", l.busy_wait, MS, 60 * S);
    duration_in(
        c,
        "limits.header_timeout",
        l.header_timeout,
        100 * MS,
        10 * 60 * S,
    );
    duration_in(c, "limits.body_timeout", l.body_timeout, 100 * MS, H);
    duration_in(c, "limits.idle_timeout", l.idle_timeout, 100 * MS, H);
    duration_in(c, "limits.write_timeout", l.write_timeout, 100 * MS, H);
    duration_in(
        c,
        "limits.shutdown_timeout",
        l.shutdown_timeout,
        100 * MS,
        10 * 60 * S,
    );
    duration_in(
        c,
        "limits.max_wait",
        l.max_wait,
        Duration::ZERO,
        10 * 60 * S,
    );
    if let Some(age) = cfg.retention.max_age {
        if age < S {
            c.add(
                "retention.max_age",
                format!(
                    "{} is too short: at least 1s",
                    humantime::format_duration(age)
                ),
            );
        }
    }
    if let Some(b) = cfg.retention.max_bytes {
        bytes_in(c, "retention.max_bytes", b.bytes(), MIB, 1 << 50);
    }
    bytes_in(
        c,
        "segment_bytes",
        cfg.segment_bytes.bytes(),
        4 * KIB,
        16 * GIB,
    );
    bytes_in(
        c,
        "max_request_bytes",
        cfg.max_request_bytes.bytes(),
        KIB,
        256 * MIB,
    );
    bytes_in(
        c,
        "limits.max_fetch_bytes",
        l.max_fetch_bytes.bytes(),
        KIB,
        256 * MIB,
    );
    bytes_in(c, "limits.body_min_rate", l.body_min_rate.bytes(), 1, GIB);
    bytes_in(
        c,
        "limits.memory_budget",
        l.memory_budget.bytes(),
        MIB,
        64 * GIB,
    );
    bytes_in(
        c,
        "max_batch_decompressed_bytes",
        cfg.max_batch_decompressed_bytes.bytes(),
        cfg.max_request_bytes.bytes().max(KIB),
        4 * GIB,
    );
    let ts = &cfg.record_timestamps;
    if ts.min.0 >= ts.max.0 {
        c.add("record_timestamps", "`min` must be earlier than `max`");
    }
    let largest = cfg.max_request_bytes.bytes().max(l.max_fetch_bytes.bytes());
    if l.memory_budget.bytes() < 2 * largest {
        c.add(
            "limits.memory_budget",
            format!("must be at least twice the largest body (max_request_bytes or limits.max_fetch_bytes, {largest} bytes)"),
        );
    }
    count_in(
        c,
        "limits.max_connections",
        l.max_connections as u64,
        1,
        1_000_000,
    );
    count_in(c, "limits.max_fetches", l.max_fetches as u64, 1, 100_000);
    count_in(c, "limits.max_produces", l.max_produces as u64, 1, 100_000);
    count_in(
        c,
        "limits.max_other_requests",
        l.max_other_requests as u64,
        1,
        100_000,
    );
    count_in(c, "limits.max_topics", l.max_topics as u64, 1, 100_000);
    count_in(
        c,
        "limits.max_partitions_per_topic",
        u64::from(l.max_partitions_per_topic),
        1,
        1024,
    );
    count_in(
        c,
        "default_partitions",
        u64::from(cfg.default_partitions),
        1,
        u64::from(l.max_partitions_per_topic.max(1)),
    );
    if let Some(tls) = &cfg.tls {
        if tls.require_client_cert && tls.client_ca.is_none() {
            c.add(
                "tls.require_client_cert",
                "needs `client_ca`, the CA that signs client certificates",
            );
        }
        if let Err(e) = crate::tls::server_config(tls) {
            c.add("tls", e);
        }
    }
    check_principals(c, cfg);
}

fn check_principals(c: &mut Checker, cfg: &CollectorConfig) {
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    let has_client_ca = cfg.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    for (i, p) in cfg.principals.iter().enumerate() {
        let at = format!("principals[{i}]");
        let name_ok = !p.name.is_empty()
            && p.name.len() <= 128
            && p.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
        if !name_ok {
            c.add(
                &format!("{at}.name"),
                "must be 1-128 letters, digits, '.', '_', '-' or '@'",
            );
        }
        if p.name == crate::auth::ANONYMOUS {
            c.add(
                &format!("{at}.name"),
                "`anonymous` is the name of an open collector's callers",
            );
        }
        if !names.insert(p.name.clone()) {
            c.add(
                &format!("{at}.name"),
                format!("principal {} is listed twice", p.name),
            );
        }
        if p.token_sha256.is_none() && p.cert_name.is_none() {
            c.add(
                &at,
                "needs `token_sha256` or `cert_name`: how it authenticates",
            );
        }
        if let Some(h) = &p.token_sha256 {
            match parse_sha256(h) {
                Ok(h) if !hashes.insert(h) => c.add(
                    &format!("{at}.token_sha256"),
                    "another principal has the same token",
                ),
                Ok(_) => {}
                Err(e) => c.add(&format!("{at}.token_sha256"), e),
            }
        }
        if let Some(n) = &p.cert_name {
            if rustls_pki_types::DnsName::try_from(n.as_str()).is_err() {
                c.add(
                    &format!("{at}.cert_name"),
                    format!("{n:?} is not a DNS name"),
                );
            }
            if !has_client_ca {
                c.add(
                    &format!("{at}.cert_name"),
                    "client certificates need `tls.client_ca`",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<CollectorConfig, String> {
        problems_in(Path::new("c.yaml"), text).map_err(|p| p.to_string())
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_position() {
        let err = check("listen: nowhere\nlimits:\n  idle_timeout: 0s\n  max_topics: lots\n  bogus: 1\nretention: { max_age: 0s }\nprincipals:\n  - name: gw\n    token_sha256: abc\n  - name: x\n    colour: red\n").unwrap_err();
        assert!(
            err.contains("c.yaml:1:1: listen: invalid socket address"),
            "{err}"
        );
        assert!(
            err.contains("c.yaml:3:3: limits.idle_timeout: 0s is out of range"),
            "{err}"
        );
        assert!(
            err.contains("c.yaml:6:14: retention.max_age: 0s is too short"),
            "{err}"
        );
        assert!(
            err.contains("c.yaml:9:5: principals[0].token_sha256: must be 64 hex digits"),
            "{err}"
        );
        assert!(
            err.contains("c.yaml:4:3: limits.max_topics: string \"lots\", expected a whole number"),
            "{err}"
        );
        assert!(
            err.contains("c.yaml:5:3: limits.bogus: unknown field `bogus`"),
            "{err}"
        );
        assert!(
            err.contains("c.yaml:11:5: principals[1].colour: unknown field `colour`"),
            "{err}"
        );
        assert!(err.contains("7 problems found"), "{err}");
        assert!(!err.contains("u32") && !err.contains("usize"), "{err}");
    }

    #[test]
    fn zero_and_absurd_values_are_refused_in_plain_words() {
        let err = check("fsync_interval: 0s\nlimits:\n  idle_timeout: 0s\n  shutdown_timeout: 3days\n  memory_budget: 1MiB\n  max_partitions_per_topic: 0\nsegment_bytes: 10\nprincipals:\n  - name: gw\n    token_sha256: abc\n").unwrap_err();
        for want in [
            "c.yaml:1:1: fsync_interval: 0s is out of range",
            "c.yaml:3:3: limits.idle_timeout: 0s is out of range",
            "c.yaml:4:3: limits.shutdown_timeout: 3days is out of range",
            "c.yaml:5:3: limits.memory_budget: must be at least twice",
            "c.yaml:6:3: limits.max_partitions_per_topic: 0 is out of range",
            "c.yaml:7:1: segment_bytes: 10B is out of range",
            "c.yaml:10:5: principals[0].token_sha256: must be 64 hex digits",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }

    #[test]
    fn batch_bounds_are_checked_with_the_rest() {
        let err = check("max_batch_decompressed_bytes: 1KiB\nrecord_timestamps:\n  min: 2030-01-01T00:00:00Z\n  max: 2020-01-01T00:00:00Z\nlimits: { idle_timeout: 0s }\n").unwrap_err();
        for want in [
            "c.yaml:1:1: max_batch_decompressed_bytes: 1KiB is out of range: must be between 16MiB and 4GiB",
            "c.yaml:2:1: record_timestamps: `min` must be earlier than `max`",
            "limits.idle_timeout: 0s is out of range",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
        let err = check("record_timestamps: { max: soon }\n").unwrap_err();
        assert!(
            err.contains("record_timestamps.max: \"soon\" is not an RFC 3339 time"),
            "{err}"
        );
        assert!(check("max_batch_decompressed_bytes: 128MiB\nrecord_timestamps: { min: 2000-01-01T00:00:00Z }\n").is_ok());
    }

    #[test]
    fn the_defaults_and_an_empty_file_are_valid() {
        assert!(check("").is_ok());
        assert!(check("listen: 127.0.0.1:7400\n").is_ok());
    }
}
