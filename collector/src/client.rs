//! How the collector's own clients (`consume`, `topics`) reach a collector:
//! a bearer token and TLS settings, shared with the agent's sink through
//! `weir_core::http_client`.

use weir_core::http_client::{self, ClientError, ClientTls};

/// Credentials and TLS settings of a client.
#[derive(Debug, Clone, Default)]
pub struct ClientAuth {
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub tls: ClientTls,
}

impl ClientAuth {
    /// An HTTP client that sends the token with every request.
    pub fn client(&self) -> Result<reqwest::Client, ClientError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                .map_err(|_| {
                    ClientError::Build("the token has characters a header cannot carry".into())
                })?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        http_client::builder(&self.tls)?
            .default_headers(headers)
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Build(http_client::chain(&e)))
    }
}
