//! A DynamoDB endpoint on this machine for the DynamoDB source's tests and benchmark row
//! (`benches/sync` includes this file): moto's server (PyPI
//! `moto[server]`, installed by scripts/ensure-tools.sh) on a free port, one per test, with
//! the seed's table (`record_id` key, a `sync_status` GSI). Also a proxy in front of it that
//! answers a share of the calls with DynamoDB's throttling error, as a table at its
//! provisioned capacity does.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, PutRequest, ScalarAttributeType, WriteRequest,
};
use serde_json::Value;

pub const TABLE: &str = "grades";
pub const INDEX: &str = "sync_status-index";

pub type Item = HashMap<String, AttributeValue>;

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    pub client: Client,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts (scripts/ensure-tools.sh installs moto[server])");
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = client(&endpoint);
        let mut moto = Moto {
            child,
            endpoint,
            client,
        };
        for _ in 0..300 {
            if moto.client.list_tables().send().await.is_ok() {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start: {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not answer on {}", moto.endpoint);
    }

    /// The seed's table: key `record_id`, GSI `sync_status-index` keyed on `sync_status`
    /// with every attribute projected.
    pub async fn create_seed_table(&self) {
        self.create_table(TABLE, ProjectionType::All).await;
    }

    /// A table shaped like the seed's, named `table`, whose index projects `projection`.
    pub async fn create_table(&self, table: &str, projection: ProjectionType) {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let hash = |name: &str| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::Hash)
                .build()
                .unwrap()
        };
        self.client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("record_id"))
            .attribute_definitions(attribute("sync_status"))
            .key_schema(hash("record_id"))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(INDEX)
                    .key_schema(hash("sync_status"))
                    .projection(Projection::builder().projection_type(projection).build())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Puts each record as a pending item of the seed's table, 25 per BatchWriteItem.
    pub async fn put_pending(&self, records: &[Value]) {
        self.put_pending_in(TABLE, records).await;
    }

    /// Puts each record as a pending item of `table`.
    pub async fn put_pending_in(&self, table: &str, records: &[Value]) {
        for chunk in records.chunks(25) {
            let mut todo: Vec<WriteRequest> = chunk
                .iter()
                .map(|r| {
                    let mut item = to_item(r);
                    item.insert("sync_status".into(), AttributeValue::S("pending".into()));
                    WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                        .build()
                })
                .collect();
            while !todo.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(table, todo)
                    .send()
                    .await
                    .unwrap();
                todo = out
                    .unprocessed_items()
                    .and_then(|u| u.get(table))
                    .cloned()
                    .unwrap_or_default();
            }
        }
    }

    /// Every item of the table.
    pub async fn items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(TABLE)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return items,
            }
        }
    }

    /// Sets one attribute of an item, as a school's system updating a grade does (the
    /// status is set back to pending with it).
    pub async fn update_grade(&self, record_id: &str, grade: &str) {
        self.client
            .update_item()
            .table_name(TABLE)
            .key("record_id", AttributeValue::S(record_id.into()))
            .update_expression("SET grade = :g, sync_status = :p")
            .expression_attribute_values(":g", AttributeValue::S(grade.into()))
            .expression_attribute_values(":p", AttributeValue::S("pending".into()))
            .send()
            .await
            .unwrap();
    }

    /// The environment a `gradesync` process needs to reach this table through `endpoint`
    /// (this server, or a proxy in front of it).
    pub fn env(endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            (
                "GRADESYNC_SOURCE",
                format!("dynamodb://{TABLE}?index={INDEX}"),
            ),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}

/// A client of the endpoint with test credentials (no environment read).
pub fn client(endpoint: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .http_client(http)
        .build();
    Client::from_conf(config)
}

/// A JSON record as a DynamoDB item: strings S, numbers N, objects M, arrays L.
pub fn to_item(record: &Value) -> Item {
    record
        .as_object()
        .expect("a record is an object")
        .iter()
        .map(|(k, v)| (k.clone(), to_attribute(v)))
        .collect()
}

fn to_attribute(v: &Value) -> AttributeValue {
    match v {
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Null => AttributeValue::Null(true),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attribute).collect()),
        Value::Object(o) => AttributeValue::M(
            o.iter()
                .map(|(k, v)| (k.clone(), to_attribute(v)))
                .collect(),
        ),
    }
}

/// A string attribute of an item.
pub fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

/// A proxy to a DynamoDB endpoint that answers every `every`-th call of each operation with
/// `ProvisionedThroughputExceededException` (400), as a throttled table does.
pub struct Throttler {
    pub url: String,
    pub throttled: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Throttler {
    pub async fn start(upstream: &str, every: u64) -> Throttler {
        let throttled = Arc::new(AtomicU64::new(0));
        let calls: Arc<std::sync::Mutex<HashMap<String, u64>>> = Arc::default();
        let upstream = upstream.to_string();
        let http = gradesync_activities::http::client_builder()
            .build()
            .unwrap();
        let counter = throttled.clone();
        let app = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (http, upstream, calls, counter) = (
                    http.clone(),
                    upstream.clone(),
                    calls.clone(),
                    counter.clone(),
                );
                async move {
                    let target = headers
                        .get("x-amz-target")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let n = {
                        let mut calls = calls.lock().unwrap();
                        let n = calls.entry(target).or_default();
                        *n += 1;
                        *n
                    };
                    if n % every == 0 {
                        counter.fetch_add(1, Ordering::Relaxed);
                        return throttled_answer();
                    }
                    forward(&http, &upstream, &headers, body).await
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Throttler {
            url,
            throttled,
            task,
        }
    }
}

impl Drop for Throttler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn throttled_answer() -> axum::response::Response {
    axum::response::Response::builder()
        .status(400)
        .header("content-type", "application/x-amz-json-1.0")
        .body(axum::body::Body::from(
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#,
        ))
        .unwrap()
}

async fn forward(
    http: &reqwest::Client,
    upstream: &str,
    headers: &axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let mut request = http.post(format!("{upstream}/")).body(body);
    for (name, value) in headers {
        if name != "host" && name != "content-length" {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get("content-type")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let bytes = answer.bytes().await.unwrap();
    axum::response::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(axum::body::Body::from(bytes))
        .unwrap()
}
