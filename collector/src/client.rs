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
        http_client::builder_with_token(&self.tls, self.token.as_deref())?
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Build(http_client::chain(&e)))
    }
}
