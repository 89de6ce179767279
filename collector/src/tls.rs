//! TLS on the listener (rustls with the ring provider): the server
//! certificate and key from PEM files, and optionally a client CA against
//! which client certificates are verified (mTLS). Client certificates are
//! optional unless `require_client_cert`: an agent may also authenticate
//! with a bearer token over server-only TLS.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// The crypto provider both sides use: ring (a smaller, faster build than aws-lc).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("reading certificates from {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate in {}", path.display()));
    }
    Ok(certs)
}

/// The rustls server config for `cfg`; an error says which file and why.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let chain = certs(&cfg.cert)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .map_err(|e| format!("reading the private key from {}: {e}", cfg.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let v = if cfg.require_client_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| format!("client CA {}: {e}", ca.display()))?,
            )
        }
    };
    let mut sc = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "certificate {} and key {}: {e}",
            cfg.cert.display(),
            cfg.key.display()
        )
    })?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}
