//! Connecting to Temporal, with an error that says how to get a server when none answers.

use temporalio_client::{Client, ClientOptions, ConnectionOptions, Url};

use crate::errors::CliError;
use crate::settings::TemporalArgs;

/// `localhost:7233` and `http://localhost:7233` both work, as with the `temporal` CLI.
pub fn address_url(address: &str) -> Result<Url, CliError> {
    let text = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Url::parse(&text).map_err(|e| {
        CliError::Usage(format!(
            "TEMPORAL_ADDRESS `{address}` is not host:port or a URL ({e})"
        ))
    })
}

pub async fn connect(args: &TemporalArgs) -> Result<Client, CliError> {
    let url = address_url(&args.temporal_address)?;
    Client::connect(
        ConnectionOptions::new(url).build(),
        ClientOptions::new(args.namespace.clone()).build(),
    )
    .await
    .map_err(|e| {
        CliError::Unreachable(format!(
            "cannot reach Temporal at {} ({e}); start one with `temporal server start-dev` or set \
             TEMPORAL_ADDRESS",
            args.temporal_address
        ))
    })
}
