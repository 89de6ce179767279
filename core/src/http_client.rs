//! The HTTP(S) client of the agent's collector sink and of the collector's
//! consume CLI: rustls with the ring provider and only the CA the operator
//! names (no system or bundled roots: a collector's certificate comes from
//! the operator's own CA), an optional client certificate (mTLS), an
//! optional server name to verify instead of the URL's host, answers read
//! with a size limit, and errors printed with their whole cause chain
//! ("connection refused", "invalid peer certificate: UnknownIssuer").

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// TLS settings of a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM file with the CA certificate(s) the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for collectors that authenticate by certificate.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name to verify the server's certificate for, instead of the URL's host
    /// (e.g. when the URL holds an IP address).
    pub server_name: Option<String>,
}

/// Why a client could not be built or an answer read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Tls(String),
    #[error("building the HTTP client: {0}")]
    Build(String),
    #[error("{}", chain(.0))]
    Request(#[from] reqwest::Error),
    #[error("answer larger than {limit} bytes; refusing to read more")]
    TooLarge { limit: usize },
}

impl ClientError {
    /// A short reason for metrics labels (see [`crate::errors::reason`]).
    pub fn reason(&self) -> &'static str {
        match self {
            ClientError::Tls(_) => "tls",
            ClientError::Build(_) => "other",
            ClientError::Request(e) if e.is_timeout() => "timeout",
            ClientError::Request(e) => crate::errors::reason(e),
            ClientError::TooLarge { .. } => "invalid_answer",
        }
    }
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ClientError::Tls(format!("reading {what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ClientError::Tls(format!(
            "no PEM certificate in {what} {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// The rustls config for `tls`.
pub fn rustls_config(tls: &ClientTls) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    if let Some(ca) = &tls.ca_file {
        for c in certs(ca, "CA file")? {
            roots
                .add(c)
                .map_err(|e| ClientError::Tls(format!("CA file {}: {e}", ca.display())))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let builder = match &tls.server_name {
        None => builder.with_root_certificates(roots),
        Some(name) => {
            let name = ServerName::try_from(name.clone()).map_err(|_| {
                ClientError::Tls(format!(
                    "server name {name:?} is not a DNS name or IP address"
                ))
            })?;
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ClientError::Tls(format!("CA file: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(FixedName { inner, name }))
        }
    };
    let cfg = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "client certificate")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                ClientError::Tls(format!("reading the client key {}: {e}", key.display()))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Tls(format!("client certificate and key: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ClientError::Tls(
                "a client certificate needs both cert_file and key_file".into(),
            ))
        }
    };
    Ok(cfg)
}

/// A reqwest client builder with `tls` configured.
pub fn builder(tls: &ClientTls) -> Result<reqwest::ClientBuilder, ClientError> {
    Ok(reqwest::Client::builder().use_preconfigured_tls(rustls_config(tls)?))
}

/// [`builder`], sending `token` (when there is one) as a bearer token with
/// every request, marked sensitive so it never appears in debug output.
pub fn builder_with_token(
    tls: &ClientTls,
    token: Option<&str>,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
            .map_err(|_| {
                ClientError::Build("the token has characters a header cannot carry".into())
            })?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    Ok(builder(tls)?.default_headers(headers))
}

/// Reads an answer's body, refusing past `limit` bytes (a server that
/// answers without end cannot grow the reader's memory).
pub async fn read_limited(mut r: reqwest::Response, limit: usize) -> Result<Vec<u8>, ClientError> {
    if r.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ClientError::TooLarge { limit });
    }
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await? {
        if out.len() + chunk.len() > limit {
            return Err(ClientError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An error and its causes, `a: b: c`, each said once.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::errors::chain(e)
}

/// Verifies the server's certificate for a fixed name instead of the URL's host.
#[derive(Debug)]
struct FixedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_host: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_a_header_cannot_carry_is_refused_and_a_plain_one_builds() {
        let bad = builder_with_token(&ClientTls::default(), Some("abc\ndef"));
        assert!(
            matches!(&bad, Err(ClientError::Build(m)) if m.contains("cannot carry")),
            "{:?}",
            bad.err()
        );
        assert!(builder_with_token(&ClientTls::default(), Some(" tok-123 \n")).is_ok());
        assert!(builder_with_token(&ClientTls::default(), None).is_ok());
    }

    #[test]
    fn the_cause_chain_is_printed_once_each() {
        #[derive(Debug, thiserror::Error)]
        #[error("sending: {0}")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("connection refused"));
        // The outer message already includes the inner one: said once.
        assert_eq!(chain(&e), "sending: connection refused");
    }

    #[test]
    fn missing_files_and_half_a_client_identity_are_explained() {
        let e = rustls_config(&ClientTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let e = rustls_config(&ClientTls {
            cert_file: Some("/x".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
    }
}
