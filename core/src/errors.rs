//! Saying what went wrong: an error with its whole cause chain (`error
//! sending request: client error (Connect): tcp connect error: Connection
//! refused (os error 111)`), and a short, bounded `reason` for metrics
//! labels (`connection_refused`, `dns`, `tls`, `timeout`, ...).

use std::error::Error;

/// An error and its causes, `a: b: c`, each said once (a cause whose text
/// an outer error already repeats is not said again).
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// The reasons [`reason`] gives; a metric labelled by reason has at most these.
pub const REASONS: &[&str] = &[
    "connection_refused",
    "connection_reset",
    "dns",
    "tls",
    "timeout",
    "unreachable",
    "io",
    "other",
    // Given by sinks, not by `reason`:
    "http_status",
    "invalid_answer",
    "conflict",
];

/// A short reason for a transport failure, from the I/O errors in its
/// chain and, for libraries that do not expose them, the chain's text.
pub fn reason(e: &(dyn Error + 'static)) -> &'static str {
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = io_reason(io) {
                return r;
            }
        }
        cur = err.source();
    }
    reason_of_text(&chain(e))
}

fn io_reason(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind as K;
    Some(match e.kind() {
        K::ConnectionRefused => "connection_refused",
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            "connection_reset"
        }
        K::TimedOut => "timeout",
        K::AddrNotAvailable | K::NetworkUnreachable | K::HostUnreachable | K::NetworkDown => {
            "unreachable"
        }
        _ => return None,
    })
}

/// [`reason`] for an error known only by its text (an error chain already
/// flattened to a string).
pub fn reason_of_text(text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&["connection refused"]) {
        "connection_refused"
    } else if has(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
    ]) {
        "dns"
    } else if has(&[
        "certificate",
        "tls",
        "handshake",
        "unknownissuer",
        "unknown issuer",
    ]) {
        "tls"
    } else if has(&["timed out", "timeout", "deadline has elapsed"]) {
        "timeout"
    } else if has(&[
        "connection reset",
        "broken pipe",
        "connection closed",
        "connection aborted",
    ]) {
        "connection_reset"
    } else if has(&["unreachable"]) {
        "unreachable"
    } else if has(&["os error", "i/o error", "io error"]) {
        "io"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_once() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ));
        assert_eq!(
            chain(&e),
            "error sending request: Connection refused (os error 111)"
        );
        assert_eq!(reason(&e), "connection_refused");
    }

    #[test]
    fn reasons_come_from_the_text_when_no_io_error_is_in_the_chain() {
        assert_eq!(
            reason_of_text(
                "client error (Connect): dns error: failed to lookup address information"
            ),
            "dns"
        );
        assert_eq!(
            reason_of_text("invalid peer certificate: UnknownIssuer"),
            "tls"
        );
        assert_eq!(reason_of_text("operation timed out"), "timeout");
        assert_eq!(reason_of_text("something else"), "other");
        for r in ["connection_refused", "dns", "tls", "timeout", "other"] {
            assert!(REASONS.contains(&r));
        }
    }
}
