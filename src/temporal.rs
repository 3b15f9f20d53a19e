//! Connecting to Temporal: plaintext to a dev server, TLS, mTLS or an API key to a
//! production cluster or Temporal Cloud, configured the Temporal way ([`config`]), with
//! one-line errors that say what to change ([`TemporalError`]).

pub mod config;
mod errors;

use temporalio_client::{Client, ClientOptions, ClientTlsOptions, ConnectionOptions, TlsOptions};

pub use config::ConnectionConfig;
pub use errors::{TemporalError, classify_status};

use crate::errors::CliError;
use crate::settings::TemporalArgs;

impl From<TemporalError> for CliError {
    fn from(e: TemporalError) -> Self {
        if e.is_usage() {
            CliError::Usage(e.to_string())
        } else {
            CliError::Unreachable(e.to_string())
        }
    }
}

/// Resolves the flags against the environment and the profile, then connects.
pub async fn connect(args: &TemporalArgs) -> Result<Client, CliError> {
    let config = config::resolve(args)?;
    Ok(connect_to(&config).await?)
}

pub async fn connect_to(config: &ConnectionConfig) -> Result<Client, TemporalError> {
    Client::connect(
        connection_options(config),
        ClientOptions::new(config.namespace.clone()).build(),
    )
    .await
    .map_err(|e| errors::classify(config, &e))
}

fn connection_options(config: &ConnectionConfig) -> ConnectionOptions {
    let tls = config.tls.as_ref().map(|t| {
        TlsOptions::builder()
            .maybe_server_root_ca_cert(t.ca_cert.as_ref().map(|c| c.bytes.clone()))
            .maybe_domain(t.server_name.clone())
            .maybe_client_tls_options(t.client.as_ref().map(|(cert, key)| {
                ClientTlsOptions::builder()
                    .client_cert(cert.bytes.clone())
                    .client_private_key(key.bytes.clone())
                    .build()
            }))
            .build()
    });
    let headers = (!config.headers.is_empty()).then(|| config.headers.clone());
    ConnectionOptions::new(config.url.clone())
        .maybe_api_key(config.api_key.as_ref().map(|k| k.expose().to_string()))
        .maybe_tls_options(tls)
        .maybe_headers(headers)
        .build()
}
