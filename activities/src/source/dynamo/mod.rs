//! The seed's DynamoDB table through the AWS SDK for Rust: the standard credential and
//! region chain, `AWS_ENDPOINT_URL` for a local endpoint, rustls on ring. The table is
//! described once at start-up, so a wrong table or index name fails there, not mid-run.

mod item;
mod mark;
mod pull;
mod read;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{IndexStatus, KeyType, ProjectionType, TableDescription};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

pub use item::KeySchema;

use super::SourceError;
use super::outcome::TableStatus;
use super::url::DynamoTarget;

/// Attempts per call on throttling and transient errors: the first and the seed's three
/// retries, with the SDK's exponential backoff (jittered, from 1 s). `AWS_MAX_ATTEMPTS`
/// and `AWS_RETRY_MODE` still override it, as in every AWS tool.
const ATTEMPTS: u32 = 4;
/// One attempt may not hang a heartbeating activity: a page or a write is small.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Error codes that say the configuration is wrong (no retry fixes them).
const CONFIGURATION_CODES: [&str; 6] = [
    "ResourceNotFoundException",
    "AccessDeniedException",
    "ValidationException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
];

/// A connected table.
#[derive(Debug, Clone)]
pub struct DynamoSource {
    client: Client,
    target: DynamoTarget,
    key: KeySchema,
    /// The index holds whole items (projection ALL); otherwise each page's items are read
    /// from the table by key.
    whole_items: bool,
}

impl DynamoSource {
    /// Loads the AWS configuration and checks that the table and its index are usable.
    pub async fn connect(target: DynamoTarget) -> Result<Self, SourceError> {
        let config = sdk_config().await?;
        let client = Client::new(&config);
        let table = describe(&client, &target).await?;
        let (key, whole_items) = shape(&target, &table)?;
        Ok(DynamoSource {
            client,
            target,
            key,
            whole_items,
        })
    }

    pub fn target(&self) -> &DynamoTarget {
        &self.target
    }

    /// The table and index as DynamoDB reports them now.
    pub async fn status(&self) -> Result<TableStatus, SourceError> {
        let table = describe(&self.client, &self.target).await?;
        let index = table
            .global_secondary_indexes()
            .iter()
            .find(|i| i.index_name() == Some(self.target.index.as_str()));
        Ok(TableStatus {
            table_status: table
                .table_status()
                .map_or("unknown".into(), |s| s.as_str().to_string()),
            index_status: index
                .and_then(|i| i.index_status())
                .map_or("missing".into(), |s| s.as_str().to_string()),
            items: table.item_count(),
        })
    }

    fn call_error<E>(&self, operation: &'static str, e: SdkError<E>) -> SourceError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        call_error(&self.target, operation, e)
    }
}

/// The AWS configuration from the standard chain, with gradesync's retry and timeouts.
async fn sdk_config() -> Result<aws_config::SdkConfig, SourceError> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    let env_sets_retries = ["AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !env_sets_retries {
        loader = loader.retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(SourceError::Configuration(
            "no AWS region is configured for the DynamoDB source; set AWS_REGION (or the \
             region of your AWS profile)"
                .into(),
        ));
    }
    Ok(config)
}

async fn describe(client: &Client, target: &DynamoTarget) -> Result<TableDescription, SourceError> {
    let out = client
        .describe_table()
        .table_name(&target.table)
        .send()
        .await
        .map_err(|e| call_error(target, "DescribeTable", e))?;
    out.table.ok_or_else(|| SourceError::Call {
        operation: "DescribeTable",
        table: target.table.clone(),
        message: "the answer described no table".into(),
    })
}

/// The table's key and whether its index carries whole items; refuses an index that is
/// missing, not keyed on the status attribute, or not active yet.
fn shape(
    target: &DynamoTarget,
    table: &TableDescription,
) -> Result<(KeySchema, bool), SourceError> {
    let type_of = |name: &str| {
        table
            .attribute_definitions()
            .iter()
            .find(|d| d.attribute_name() == name)
            .map(|d| d.attribute_type().clone())
    };
    let mut key = Vec::new();
    for kind in [KeyType::Hash, KeyType::Range] {
        for element in table.key_schema().iter().filter(|e| *e.key_type() == kind) {
            let name = element.attribute_name();
            let ty = type_of(name).ok_or_else(|| {
                SourceError::Configuration(format!(
                    "table {} describes no type for its key attribute `{name}`",
                    target.table
                ))
            })?;
            key.push((name.to_string(), ty));
        }
    }
    let names: Vec<&str> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    let index = table
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some(target.index.as_str()))
        .ok_or_else(|| {
            SourceError::Configuration(format!(
                "table {} has no global secondary index `{}` (it has: {}); name the index on \
                 {} with ?index=NAME",
                target.table,
                target.index,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                },
                target.status_attribute
            ))
        })?;
    let partition = index
        .key_schema()
        .iter()
        .find(|e| *e.key_type() == KeyType::Hash)
        .map(|e| e.attribute_name());
    if partition != Some(target.status_attribute.as_str()) {
        return Err(SourceError::Configuration(format!(
            "index `{}` of table {} is keyed on `{}`, not on the status attribute `{}`; \
             name the index whose partition key is {} (or set &status=ATTRIBUTE)",
            target.index,
            target.table,
            partition.unwrap_or("nothing"),
            target.status_attribute,
            target.status_attribute
        )));
    }
    if let Some(status) = index.index_status()
        && *status != IndexStatus::Active
    {
        return Err(SourceError::Call {
            operation: "DescribeTable",
            table: target.table.clone(),
            message: format!(
                "index `{}` is {}, not ACTIVE yet",
                target.index,
                status.as_str()
            ),
        });
    }
    let whole_items = index
        .projection()
        .and_then(|p| p.projection_type())
        .is_some_and(|p| *p == ProjectionType::All);
    Ok((KeySchema(key), whole_items))
}

/// An SDK failure as a source error: a configuration problem (the table or index does not
/// exist, access denied, a request DynamoDB refuses) or a call to try again later.
fn call_error<E>(target: &DynamoTarget, operation: &'static str, e: SdkError<E>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e.code().map(str::to_string);
    // A service's answer by its code and message; the rest (no connection, a timeout) with
    // its causes, which never hold the request.
    let message = match (&code, e.message()) {
        (Some(code), Some(text)) => format!("{code}: {text}"),
        (Some(code), None) => code.clone(),
        _ => causes(&e),
    };
    match code.as_deref() {
        Some(code) if CONFIGURATION_CODES.contains(&code) => SourceError::Configuration(format!(
            "DynamoDB {operation} on table {} was refused ({message}); check the table name, \
             the index, the region and the credentials' permissions",
            target.table
        )),
        _ => SourceError::Call {
            operation,
            table: target.table.clone(),
            message,
        },
    }
}

/// `dispatch failure: io error: tcp connect error: Connection refused`: each cause's own
/// words, without the debug dump of the request and response.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}
