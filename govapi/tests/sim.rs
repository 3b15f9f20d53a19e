//! The simulator against the contract in `docs/gov-api.md`: real HTTP on loopback, one
//! simulator per test on a free port, one behaviour per test.

use std::time::Duration;

use gradesync_govapi::Quarter;
use gradesync_govapi::contract::{
    BatchReceipt, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, PROBLEM_JSON, Problem, QuarterSummary,
    RecordsPage, TokenResponse, canonical_json, encode_batch, record_sha256,
};
use gradesync_govapi::sim::{self, Faults, Ledger, RejectRule, SimConfig, SimHandle};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const QUARTER: &str = "2026-Q4";

/// reqwest is built without a TLS crypto provider in this workspace; install ring as the
/// product does (see `gradesync_activities::http`).
fn builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
}

fn client() -> Client {
    builder().build().unwrap()
}

async fn start(faults: Faults) -> SimHandle {
    sim::spawn(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

async fn token(client: &Client, sim: &SimHandle) -> String {
    let resp = client
        .post(format!("{}/oauth/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "gradesync"),
            ("client_secret", "sim-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json::<TokenResponse>().await.unwrap().access_token
}

fn record(id: &str, school: &str) -> Value {
    json!({"record_id": id, "school_id": school, "student_id": format!("st-{id}"),
           "course_code": "MATH", "quarter": QUARTER, "grade": "A", "teacher": {"name": "x"}})
}

fn body(id: Uuid, school: &str, records: &[Value]) -> Vec<u8> {
    let texts: Vec<String> = records.iter().map(canonical_json).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let quarter: Quarter = QUARTER.parse().unwrap();
    encode_batch(id, &quarter, school, &refs).unwrap()
}

async fn post(
    client: &Client,
    sim: &SimHandle,
    token: &str,
    key: Uuid,
    body: Vec<u8>,
) -> reqwest::Response {
    client
        .post(format!("{}/v1/grade-batches", sim.base_url()))
        .bearer_auth(token)
        .header(IDEMPOTENCY_KEY, key.to_string())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn get(client: &Client, sim: &SimHandle, token: &str, path: &str) -> reqwest::Response {
    client
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn problem(resp: reqwest::Response) -> Problem {
    let media = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(media, PROBLEM_JSON);
    resp.json().await.unwrap()
}

/// A fresh simulator without faults, a client and a token.
async fn ready(faults: Faults) -> (SimHandle, Client, String) {
    let sim = start(faults).await;
    let client = client();
    let token = token(&client, &sim).await;
    (sim, client, token)
}

fn applied(ledger: &Ledger, id: &str) -> u32 {
    ledger.records.get(id).map_or(0, |r| r.applied)
}

#[tokio::test]
async fn token_is_issued_for_good_credentials_only() {
    let sim = start(Faults::none()).await;
    let client = client();
    let url = format!("{}/oauth/token", sim.base_url());
    let form = |secret: &'static str, grant: &'static str| {
        [
            ("grant_type", grant),
            ("client_id", "gradesync"),
            ("client_secret", secret),
        ]
    };
    let ok = client
        .post(&url)
        .form(&form("sim-secret", "client_credentials"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let token: TokenResponse = ok.json().await.unwrap();
    assert_eq!(
        (token.token_type.as_str(), token.expires_in),
        ("Bearer", 1800)
    );
    let bad = client
        .post(&url)
        .form(&form("wrong", "client_credentials"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(problem(bad).await.extensions["error"], "invalid_client");
    let grant = client
        .post(&url)
        .form(&form("sim-secret", "password"))
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), StatusCode::BAD_REQUEST);
    let basic = client
        .post(&url)
        .basic_auth("gradesync", Some("sim-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
    assert_eq!(sim.ledger().await.tokens_issued, 2);
}

#[tokio::test]
async fn batch_is_committed_and_applied_once() {
    let (sim, client, token) = ready(Faults::none()).await;
    let id = Uuid::new_v4();
    let resp = post(
        &client,
        &sim,
        &token,
        id,
        body(id, "s1", &[record("r1", "s1"), record("r2", "s1")]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()["location"],
        format!("/v1/grade-batches/{id}").as_str()
    );
    let receipt: BatchReceipt = resp.json().await.unwrap();
    assert_eq!((receipt.batch_id, receipt.accepted), (id, 2));
    let ledger = sim.ledger().await;
    assert_eq!((applied(&ledger, "r1"), applied(&ledger, "r2")), (1, 1));
    assert_eq!(ledger.records["r1"].batches, vec![id]);
    assert_eq!(ledger.batches_committed, 1);
    let fetched: BatchReceipt = get(&client, &sim, &token, &format!("/v1/grade-batches/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, receipt);
    // The token request and the GET count as requests, not as batch sends.
    let ledger = sim.ledger().await;
    assert_eq!((ledger.batch_posts, ledger.requests_total), (1, 3));
}

#[tokio::test]
async fn same_key_and_body_replays_the_stored_answer() {
    let (sim, client, token) = ready(Faults::none()).await;
    let id = Uuid::new_v4();
    let batch = body(id, "s1", &[record("r1", "s1")]);
    let first = post(&client, &sim, &token, id, batch.clone()).await;
    assert!(first.headers().get(IDEMPOTENT_REPLAYED).is_none());
    let first = first.bytes().await.unwrap();
    let again = post(&client, &sim, &token, id, batch).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()[IDEMPOTENT_REPLAYED], "true");
    assert_eq!(again.bytes().await.unwrap(), first);
    let ledger = sim.ledger().await;
    assert_eq!(
        (
            ledger.replays[&id],
            applied(&ledger, "r1"),
            ledger.batches_committed
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn same_key_with_another_body_is_422() {
    let (sim, client, token) = ready(Faults::none()).await;
    let id = Uuid::new_v4();
    post(
        &client,
        &sim,
        &token,
        id,
        body(id, "s1", &[record("r1", "s1")]),
    )
    .await;
    let other = post(
        &client,
        &sim,
        &token,
        id,
        body(id, "s1", &[record("r2", "s1")]),
    )
    .await;
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(applied(&sim.ledger().await, "r2"), 0);
}

#[tokio::test]
async fn same_key_while_in_progress_is_409() {
    let (sim, client, token) = ready(Faults {
        latency_ms: 300,
        ..Faults::none()
    })
    .await;
    let id = Uuid::new_v4();
    let batch = body(id, "s1", &[record("r1", "s1")]);
    let (a, b) = tokio::join!(
        post(&client, &sim, &token, id, batch.clone()),
        post(&client, &sim, &token, id, batch.clone())
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 409]);
    assert_eq!(applied(&sim.ledger().await, "r1"), 1);
}

#[tokio::test]
async fn missing_key_is_400_and_wrong_media_type_is_415() {
    let (sim, client, token) = ready(Faults::none()).await;
    let id = Uuid::new_v4();
    let url = format!("{}/v1/grade-batches", sim.base_url());
    let batch = body(id, "s1", &[record("r1", "s1")]);
    let no_key = client
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(batch.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), StatusCode::BAD_REQUEST);
    assert!(
        problem(no_key)
            .await
            .detail
            .unwrap()
            .contains("Idempotency-Key")
    );
    let text = client
        .post(&url)
        .bearer_auth(&token)
        .header(IDEMPOTENCY_KEY, id.to_string())
        .header("content-type", "text/plain")
        .body(batch.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let other = Uuid::new_v4();
    let mismatch = post(&client, &sim, &token, other, batch).await;
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
    assert_eq!(sim.ledger().await.batches_committed, 0);
}

#[tokio::test]
async fn too_many_records_or_bytes_is_413() {
    let (sim, client, token) = ready(Faults::none()).await;
    let id = Uuid::new_v4();
    let many: Vec<Value> = (0..101).map(|i| record(&format!("r{i}"), "s1")).collect();
    let resp = post(&client, &sim, &token, id, body(id, "s1", &many)).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut big = record("big", "s1");
    big["essay"] = json!("x".repeat(1_100_000));
    let id = Uuid::new_v4();
    let resp = post(&client, &sim, &token, id, body(id, "s1", &[big])).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let ledger = sim.ledger().await;
    assert_eq!(
        (ledger.batches_committed, ledger.status_counts[&413]),
        (0, 2)
    );
}

#[tokio::test]
async fn invalid_records_reject_the_whole_batch() {
    let rule = RejectRule {
        field: "grade".into(),
        equals: "F".into(),
        message: "F needs a review".into(),
    };
    let (sim, client, token) = ready(Faults {
        reject_rules: vec![rule],
        ..Faults::none()
    })
    .await;
    let mut no_grade = record("r2", "s1");
    no_grade.as_object_mut().unwrap().remove("grade");
    let mut failed = record("r4", "s1");
    failed["grade"] = json!("F");
    let records = [record("r1", "s1"), no_grade, record("r3", "s2"), failed];
    let id = Uuid::new_v4();
    let batch = body(id, "s1", &records);
    let resp = post(&client, &sim, &token, id, batch.clone()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let errors = problem(resp).await.errors;
    let named: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.record_id.as_str(), e.field.as_str()))
        .collect();
    assert_eq!(
        named,
        [("r2", "grade"), ("r3", "school_id"), ("r4", "grade")]
    );
    assert_eq!(errors[2].message, "F needs a review");
    let ledger = sim.ledger().await;
    assert!(ledger.records.is_empty());
    assert_eq!(ledger.batches_committed, 0);
    // The rejection is remembered for the key, like any final answer.
    let again = post(&client, &sim, &token, id, batch).await;
    assert_eq!(
        (again.status(), &again.headers()[IDEMPOTENT_REPLAYED]),
        (StatusCode::BAD_REQUEST, &"true".parse().unwrap())
    );
}

#[tokio::test]
async fn revoked_token_is_401() {
    let (sim, client, token) = ready(Faults::none()).await;
    let path = format!("/v1/quarters/{QUARTER}/summary");
    assert_eq!(
        get(&client, &sim, &token, &path).await.status(),
        StatusCode::OK
    );
    sim.revoke_tokens().await;
    let resp = get(&client, &sim, &token, &path).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    let none = client
        .get(format!("{}{path}", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn expired_token_is_401() {
    let config = SimConfig {
        token_ttl: Duration::from_millis(200),
        faults: Faults::none(),
        ..SimConfig::default()
    };
    let sim = sim::spawn(config).await.unwrap();
    let client = client();
    let token = token(&client, &sim).await;
    let path = format!("/v1/quarters/{QUARTER}/summary");
    assert_eq!(
        get(&client, &sim, &token, &path).await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = get(&client, &sim, &token, &path).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after() {
    let sim = start(Faults::default()).await;
    let client = client();
    let token = token(&client, &sim).await;
    let path = format!("/v1/quarters/{QUARTER}/summary");
    let second = get(&client, &sim, &token, &path).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(second.headers()["ratelimit-policy"], r#""default";q=2;w=1"#);
    let third = get(&client, &sim, &token, &path).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = third.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(third.headers()["ratelimit"], r#""default";r=0;t=1"#);
    let ledger = sim.ledger().await;
    assert_eq!(
        (ledger.max_requests_in_window, ledger.requests_total),
        (3, 3)
    );
    assert_eq!(ledger.status_counts[&429], 1);
    assert_eq!(ledger.arrivals_per_second.iter().sum::<u32>(), 3);
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        get(&client, &sim, &token, &path).await.status(),
        StatusCode::OK
    );
}

/// One HTTP/1.1 request written on `stream`, then its answer read whole: the status, or
/// `None` when the server closed the connection instead of answering.
async fn exchange_on(
    stream: &mut tokio::net::TcpStream,
    request_line: &str,
    body: &[u8],
) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "{request_line} HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\n\
         idempotency-key: {}\r\ncontent-length: {}\r\n\r\n",
        Uuid::new_v4(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length: usize = text[..end]
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        if answer.len() >= end + 4 + length {
            return text[9..12].parse().ok();
        }
    }
}

/// A POST refused on arrival (429 here) leaves its keep-alive connection usable, as the
/// API's does: the next request on it is answered, never met by a closed socket, which
/// a client would have to count as a request lost in flight.
#[tokio::test]
async fn a_post_refused_on_arrival_keeps_its_connection_alive() {
    let sim = start(Faults {
        rate_limit: 1,
        ..Faults::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let summary = format!("GET /v1/quarters/{QUARTER}/summary");
    // The window's one request (401: no token), then a 300 KB batch over the limit.
    assert_eq!(exchange_on(&mut stream, &summary, b"").await, Some(401));
    let big = vec![b' '; 300 * 1024];
    assert_eq!(
        exchange_on(&mut stream, "POST /v1/grade-batches", &big).await,
        Some(429)
    );
    assert!(
        exchange_on(&mut stream, &summary, b"").await.is_some(),
        "the connection was closed after the 429"
    );
}

#[tokio::test]
async fn outage_answers_503_until_it_ends() {
    let faults = Faults {
        outage_ms: 300,
        retry_after_secs: Some(1),
        ..Faults::none()
    };
    let (sim, client, token) = ready(faults).await;
    let path = format!("/v1/quarters/{QUARTER}/summary");
    let down = get(&client, &sim, &token, &path).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.headers()["retry-after"], "1");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        get(&client, &sim, &token, &path).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn commit_then_drop_leaves_a_receipt_to_find() {
    let (sim, client, token) = ready(Faults {
        p_commit_drop: 1.0,
        ..Faults::none()
    })
    .await;
    let id = Uuid::new_v4();
    let batch = body(id, "s1", &[record("r1", "s1")]);
    let sent = client
        .post(format!("{}/v1/grade-batches", sim.base_url()))
        .bearer_auth(&token)
        .header(IDEMPOTENCY_KEY, id.to_string())
        .header("content-type", "application/json")
        .body(batch.clone())
        .send()
        .await;
    let err = sent.expect_err("the connection must close without an answer");
    assert!(!err.is_timeout() && !err.is_status(), "{err:?}");
    sim.set_faults(Faults::none()).await;
    let resp = get(&client, &sim, &token, &format!("/v1/grade-batches/{id}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<BatchReceipt>().await.unwrap().accepted, 1);
    assert_eq!(
        post(&client, &sim, &token, id, batch).await.headers()[IDEMPOTENT_REPLAYED],
        "true"
    );
    let ledger = sim.ledger().await;
    assert_eq!((applied(&ledger, "r1"), ledger.connections_dropped), (1, 1));
}

#[tokio::test]
async fn hang_outlasts_the_client_but_the_batch_is_committed() {
    let (sim, _, token) = ready(Faults {
        p_hang: 1.0,
        hang_ms: 3000,
        ..Faults::none()
    })
    .await;
    let impatient = builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let id = Uuid::new_v4();
    let sent = impatient
        .post(format!("{}/v1/grade-batches", sim.base_url()))
        .bearer_auth(&token)
        .header(IDEMPOTENCY_KEY, id.to_string())
        .header("content-type", "application/json")
        .body(body(id, "s1", &[record("r1", "s1")]))
        .send()
        .await;
    assert!(sent.expect_err("the answer hangs").is_timeout());
    let resp = get(&client(), &sim, &token, &format!("/v1/grade-batches/{id}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(applied(&sim.ledger().await, "r1"), 1);
}

#[tokio::test]
async fn a_gateway_403_is_html_and_commits_nothing() {
    let (sim, client, token) = ready(Faults {
        p_403_html: 1.0,
        ..Faults::none()
    })
    .await;
    let id = Uuid::new_v4();
    let batch = body(id, "s1", &[record("r1", "s1")]);
    let resp = post(&client, &sim, &token, id, batch.clone()).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.headers()["content-type"], "text/html");
    let page = resp.text().await.unwrap();
    assert!(page.contains("<title>403 Forbidden</title>"), "{page}");
    let ledger = sim.ledger().await;
    assert!(ledger.records.is_empty());
    assert_eq!(ledger.batches_committed, 0);
    assert_eq!((ledger.posts_forbidden, ledger.status_counts[&403]), (1, 1));
    // Not remembered for the key: once the gateway lets it through, the batch commits.
    sim.set_faults(Faults::none()).await;
    let resp = post(&client, &sim, &token, id, batch).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.headers().get(IDEMPOTENT_REPLAYED).is_none());
    assert_eq!(applied(&sim.ledger().await, "r1"), 1);
}

#[tokio::test]
async fn an_unnamed_400_names_a_record_outside_the_batch() {
    let (sim, client, token) = ready(Faults {
        p_400_unnamed: 1.0,
        ..Faults::none()
    })
    .await;
    let id = Uuid::new_v4();
    let batch = body(id, "s1", &[record("r1", "s1"), record("r2", "s1")]);
    let resp = post(&client, &sim, &token, id, batch.clone()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let p = problem(resp).await;
    assert_eq!(p.status, 400);
    let named: Vec<&str> = p.errors.iter().map(|e| e.record_id.as_str()).collect();
    assert_eq!(named, [sim::UNNAMED_RECORD_ID]);
    assert!(!named.contains(&"r1") && !named.contains(&"r2"));
    let ledger = sim.ledger().await;
    assert!(ledger.records.is_empty());
    assert_eq!(ledger.batches_committed, 0);
    assert_eq!(ledger.posts_unnamed_400, 1);
    sim.set_faults(Faults::none()).await;
    let resp = post(&client, &sim, &token, id, batch).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(applied(&sim.ledger().await, "r2"), 1);
}

#[tokio::test]
async fn a_lookup_503_hides_whether_a_batch_was_committed() {
    let (sim, client, token) = ready(Faults {
        p_lookup_503: 1.0,
        ..Faults::none()
    })
    .await;
    let id = Uuid::new_v4();
    let resp = post(
        &client,
        &sim,
        &token,
        id,
        body(id, "s1", &[record("r1", "s1")]),
    )
    .await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "batch POSTs are not touched"
    );
    let receipt = format!("/v1/grade-batches/{id}");
    assert_eq!(
        get(&client, &sim, &token, &receipt).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let listing = format!("/v1/quarters/{QUARTER}/records");
    assert_eq!(
        get(&client, &sim, &token, &listing).await.status(),
        StatusCode::OK
    );
    let holds = sim.holds(QUARTER).await;
    assert_eq!(holds.keys().collect::<Vec<_>>(), ["r1"]);
    assert_eq!(holds["r1"], record_sha256(&record("r1", "s1")));
    sim.set_faults(Faults::none()).await;
    assert_eq!(
        get(&client, &sim, &token, &receipt).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn posts_with_a_stale_token_are_counted() {
    let (sim, client, token) = ready(Faults::none()).await;
    sim.revoke_tokens().await;
    let id = Uuid::new_v4();
    let resp = post(
        &client,
        &sim,
        &token,
        id,
        body(id, "s1", &[record("r1", "s1")]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let path = format!("/v1/quarters/{QUARTER}/summary");
    assert_eq!(
        get(&client, &sim, &token, &path).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Only the batch POST counts, not the read.
    let ledger = sim.ledger().await;
    assert_eq!(
        (ledger.posts_unauthorized, ledger.status_counts[&401]),
        (1, 2)
    );
}

#[tokio::test]
async fn silent_loss_shows_only_in_the_summary() {
    let (sim, client, token) = ready(Faults {
        p_silent_loss: 0.3,
        seed: 5,
        ..Faults::none()
    })
    .await;
    let records: Vec<Value> = (0..100)
        .map(|i| record(&format!("r{i:03}"), "s1"))
        .collect();
    let id = Uuid::new_v4();
    let receipt: BatchReceipt = post(&client, &sim, &token, id, body(id, "s1", &records))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(receipt.accepted, 100);
    let summary: QuarterSummary = get(
        &client,
        &sim,
        &token,
        &format!("/v1/quarters/{QUARTER}/summary"),
    )
    .await
    .json()
    .await
    .unwrap();
    let stored = summary.schools[0].records;
    let ledger = sim.ledger().await;
    assert!(stored < 100 && !ledger.silently_lost.is_empty());
    assert_eq!(stored + ledger.silently_lost.len() as u64, 100);
    assert_eq!(ledger.records.len() as u64, stored);
}

#[tokio::test]
async fn records_pages_carry_the_record_hashes() {
    let (sim, client, token) = ready(Faults::none()).await;
    let mut sent = Vec::new();
    for (school, n) in [("s1", 100), ("s1", 60), ("s2", 40)] {
        let records: Vec<Value> = (0..n)
            .map(|i| record(&format!("{school}-{}-{i:03}", sent.len()), school))
            .collect();
        let id = Uuid::new_v4();
        assert_eq!(
            post(&client, &sim, &token, id, body(id, school, &records))
                .await
                .status(),
            StatusCode::CREATED
        );
        sent.extend(records);
    }
    let base = format!("/v1/quarters/{QUARTER}/records?page_size=70");
    let mut listed = Vec::new();
    let mut token_param = String::new();
    loop {
        let page: RecordsPage = get(&client, &sim, &token, &format!("{base}{token_param}"))
            .await
            .json()
            .await
            .unwrap();
        listed.extend(page.records);
        match page.next_page_token {
            Some(next) => token_param = format!("&page_token={next}"),
            None => break,
        }
    }
    let mut expected: Vec<(String, String)> = sent
        .iter()
        .map(|r| {
            (
                r["record_id"].as_str().unwrap().to_string(),
                record_sha256(r),
            )
        })
        .collect();
    expected.sort();
    let listed: Vec<(String, String)> = listed
        .into_iter()
        .map(|r| (r.record_id, r.sha256))
        .collect();
    assert_eq!(listed, expected);
    let s2: RecordsPage = get(&client, &sim, &token, &format!("{base}&school_id=s2"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((s2.records.len(), s2.next_page_token), (40, None));
    let bad = get(
        &client,
        &sim,
        &token,
        &format!("{base}&page_token=nonsense"),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

/// Runs a fixed sequence of batch POSTs and returns the statuses it met.
async fn fault_sequence(faults: Faults) -> Vec<u16> {
    let (sim, client, token) = ready(faults).await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let id = Uuid::new_v4();
        let resp = post(
            &client,
            &sim,
            &token,
            id,
            body(id, "s1", &[record(&format!("r{i}"), "s1")]),
        )
        .await;
        statuses.push(resp.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn the_same_seed_meets_the_same_faults() {
    let faults = Faults {
        seed: 99,
        p_503: 0.3,
        p_5xx: 0.2,
        p_403_html: 0.2,
        p_400_unnamed: 0.2,
        ..Faults::none()
    };
    let first = fault_sequence(faults.clone()).await;
    assert_eq!(fault_sequence(faults.clone()).await, first);
    assert!(first.contains(&201) && first.contains(&503));
    assert!(first.contains(&403) && first.contains(&400));
    assert!(first.iter().any(|s| [500, 502, 504].contains(s)));
    let other = fault_sequence(Faults {
        seed: 100,
        ..faults
    })
    .await;
    assert_ne!(other, first);
}

#[tokio::test]
async fn control_endpoints_read_the_ledger_and_set_faults() {
    let (sim, client, token) = ready(Faults::none()).await;
    let id = Uuid::new_v4();
    post(
        &client,
        &sim,
        &token,
        id,
        body(id, "s1", &[record("r1", "s1")]),
    )
    .await;
    let base = sim.base_url();
    let full: Value = client
        .get(format!("{base}/_sim/ledger"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(full["records"]["r1"]["applied"], 1);
    let summary: Value = client
        .get(format!("{base}/_sim/ledger?summary=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(summary.get("records").is_none());
    assert_eq!(summary["batches_committed"], 1);
    let set = client
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"p_503": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let current: Faults = client
        .get(format!("{base}/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((current.p_503, current.rate_limit), (1.0, 2));
    let bad = client
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"p_hang": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        client
            .post(format!("{base}/_sim/revoke-tokens"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    // Control requests are neither rate-limited nor counted.
    assert_eq!(sim.ledger().await.requests_total, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_batch_is_404() {
    let (sim, client, token) = ready(Faults::none()).await;
    let resp = get(
        &client,
        &sim,
        &token,
        &format!("/v1/grade-batches/{}", Uuid::new_v4()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(problem(resp).await.status, 404);
}
