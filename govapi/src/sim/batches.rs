//! `POST /v1/grade-batches` and `GET /v1/grade-batches/{batch_id}`: idempotent, atomic
//! batch upserts, followed by the faults that strike after a commit (a hang, or a dropped
//! connection), and the receipt lookup that resolves a send whose answer was lost.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::header::{CONNECTION, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::faults::{RejectRule, Roll};
use super::ledger::{Claim, NewRecord, StoredAnswer};
use super::problem::{self, DropConnection, Refusal, problem};
use super::state::SimState;
use crate::contract::{
    BatchReceipt, BatchRequest, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, MAX_BODY_BYTES,
    MAX_RECORDS_PER_BATCH, PROBLEM_JSON, Problem, RecordFieldError, record_sha256, validate_record,
};
use crate::quarter::Quarter;

/// Oversized bodies are still read up to this much, so that the client, still writing,
/// gets its 413 instead of a reset connection.
pub(crate) const DRAIN_LIMIT: usize = 8 * MAX_BODY_BYTES;

type Answer = Result<Response, Refusal>;

pub(crate) async fn post_batch(
    State(sim): State<Arc<SimState>>,
    Extension(roll): Extension<Roll>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    accept(sim, roll, headers, body)
        .await
        .unwrap_or_else(Refusal::into_response)
}

async fn accept(sim: Arc<SimState>, roll: Roll, headers: HeaderMap, body: Body) -> Answer {
    sim.authorize(&headers)?;
    require_json(&headers)?;
    let key = idempotency_key(&headers)?;
    let bytes = read_body(body).await?;
    let batch = parse(&bytes, &key)?;
    let body_sha: [u8; 32] = Sha256::digest(&bytes).into();
    let claim = sim.lock().keys.claim(batch.batch_id, body_sha);
    match claim {
        Claim::Fresh => {}
        Claim::Replay(answer) => return Ok(replay(&sim, batch.batch_id, &answer)),
        Claim::DifferentBody => {
            return Err(problem(422, "Unprocessable Content", REUSED_KEY).into());
        }
        Claim::InProgress => return Err(problem(409, "Conflict", IN_PROGRESS).into()),
    }
    let id = batch.batch_id;
    let (answer, committed) = settle(Arc::clone(&sim), roll, batch).await?;
    if committed {
        return Ok(after_commit(&sim, roll, id, answer).await);
    }
    Ok(stored_response(id, &answer))
}

const REUSED_KEY: &str =
    "this Idempotency-Key was already used with a different body: use a new batch_id";
const IN_PROGRESS: &str =
    "a request with this Idempotency-Key is still being processed: retry later";

fn require_json(headers: &HeaderMap) -> Result<(), Refusal> {
    let media = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = media.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(problem(
        415,
        "Unsupported Media Type",
        "send the batch as Content-Type: application/json",
    )
    .into())
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, Refusal> {
    match headers.get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()) {
        Some(key) if !key.trim().is_empty() => Ok(key.trim().to_string()),
        _ => Err(problem(400, "Bad Request", "send Idempotency-Key: <batch_id>").into()),
    }
}

async fn read_body(body: Body) -> Result<Vec<u8>, Refusal> {
    let too_large = || {
        let detail =
            format!("a request body may have at most {MAX_BODY_BYTES} bytes: split the batch");
        problem(413, "Content Too Large", detail)
    };
    match axum::body::to_bytes(body, DRAIN_LIMIT).await {
        Ok(bytes) if bytes.len() <= MAX_BODY_BYTES => Ok(bytes.to_vec()),
        Ok(_) => Err(too_large().into()),
        Err(_) => {
            let mut resp = too_large();
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            Err(resp.into())
        }
    }
}

fn parse(bytes: &[u8], key: &str) -> Result<BatchRequest, Refusal> {
    let batch: BatchRequest = serde_json::from_slice(bytes)
        .map_err(|e| problem(400, "Bad Request", format!("the body is not a batch: {e}")))?;
    if key.parse::<Uuid>().ok() != Some(batch.batch_id) {
        let detail = "the Idempotency-Key header must equal the body's batch_id";
        return Err(problem(400, "Bad Request", detail).into());
    }
    if batch.quarter.parse::<Quarter>().is_err() || batch.school_id.is_empty() {
        let detail = "the batch needs a quarter YYYY-Qn and a non-empty school_id";
        return Err(problem(400, "Bad Request", detail).into());
    }
    if batch.records.len() > MAX_RECORDS_PER_BATCH {
        let detail = format!("a batch may hold at most {MAX_RECORDS_PER_BATCH} records: split it");
        return Err(problem(413, "Content Too Large", detail).into());
    }
    Ok(batch)
}

fn replay(sim: &SimState, id: Uuid, answer: &StoredAnswer) -> Response {
    *sim.lock().ledger.replays.entry(id).or_default() += 1;
    let mut resp = stored_response(id, answer);
    resp.headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    resp
}

fn stored_response(id: Uuid, answer: &StoredAnswer) -> Response {
    let mut resp = problem::bytes(answer.status, answer.content_type, answer.body.clone());
    if answer.status == 201
        && let Ok(location) = HeaderValue::from_str(&format!("/v1/grade-batches/{id}"))
    {
        resp.headers_mut().insert(LOCATION, location);
    }
    resp
}

/// Waits the latency, then validates and applies the batch, in a task of its own: like a
/// real server, it finishes even when the client gives up, and its key never stays claimed.
async fn settle(
    sim: Arc<SimState>,
    roll: Roll,
    batch: BatchRequest,
) -> Result<(StoredAnswer, bool), Refusal> {
    let id = batch.batch_id;
    let worker = Arc::clone(&sim);
    let task = tokio::spawn(async move {
        tokio::time::sleep(worker.faults().latency(&roll)).await;
        let rules = worker.faults().reject_rules;
        // Parsing and hashing 100 records is CPU work: keep it off the threads that
        // timestamp arrivals, or the rate window would be measured late.
        let verdict = tokio::task::spawn_blocking(move || judge(&batch, &rules))
            .await
            .unwrap_or_else(|e| Err(vec![internal_error(&e)]));
        let mut inner = worker.lock();
        let (answer, committed) = match verdict {
            Ok(records) => (commit_answer(&mut inner, id, records, &roll), true),
            Err(errors) => (rejection(id, errors), false),
        };
        inner.keys.finish(id, answer.clone());
        (answer, committed)
    });
    task.await.map_err(|e| {
        sim.lock().keys.release(id);
        problem(
            500,
            "Internal Server Error",
            format!("the batch was not processed: {e}"),
        )
        .into()
    })
}

fn internal_error(e: &tokio::task::JoinError) -> RecordFieldError {
    RecordFieldError {
        record_id: String::new(),
        field: String::new(),
        message: format!("the batch could not be checked: {e}"),
    }
}

fn commit_answer(
    inner: &mut super::state::Inner,
    id: Uuid,
    records: Vec<NewRecord>,
    roll: &Roll,
) -> StoredAnswer {
    let lost = roll.lost(records.len(), inner.faults.p_silent_loss);
    let accepted = records.len() as u64;
    for (record, lost) in records.into_iter().zip(lost) {
        if lost {
            inner.ledger.silently_lost.push(record.record_id);
        } else {
            inner.ledger.applied(&record.record_id, id);
            inner.store.upsert(record);
        }
    }
    inner.ledger.batches_committed += 1;
    let receipt = BatchReceipt {
        batch_id: id,
        receipt_id: format!("rcpt-{:08}", inner.ledger.batches_committed),
        accepted,
    };
    tracing::info!(batch_id = %id, accepted, "gov-sim batch committed");
    StoredAnswer {
        status: 201,
        content_type: "application/json",
        body: serde_json::to_vec(&receipt).unwrap_or_default(),
    }
}

fn rejection(id: Uuid, errors: Vec<RecordFieldError>) -> StoredAnswer {
    tracing::info!(batch_id = %id, errors = errors.len(), "gov-sim batch rejected");
    let detail = "some records are invalid; nothing of the batch was applied";
    let problem = Problem {
        errors,
        ..Problem::new(400, "Invalid Records", detail)
    };
    StoredAnswer {
        status: 400,
        content_type: PROBLEM_JSON,
        body: problem::problem_body(&problem),
    }
}

/// All records ready to store, or every error found: the batch is applied whole or not at all.
fn judge(
    batch: &BatchRequest,
    rules: &[RejectRule],
) -> Result<Vec<NewRecord>, Vec<RecordFieldError>> {
    let mut records = Vec::with_capacity(batch.records.len());
    let mut errors = Vec::new();
    for (index, raw) in batch.records.iter().enumerate() {
        let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
        match check_record(index, &value, batch, rules) {
            Ok(record) => records.push(record),
            Err(mut found) => errors.append(&mut found),
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(errors)
    }
}

fn check_record(
    index: usize,
    value: &Value,
    batch: &BatchRequest,
    rules: &[RejectRule],
) -> Result<NewRecord, Vec<RecordFieldError>> {
    let record_id = value
        .get("record_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let error = |field: &str, message: String| RecordFieldError {
        record_id: record_id.clone(),
        field: field.to_string(),
        message: if record_id.is_empty() {
            format!("records[{index}]: {message}")
        } else {
            message
        },
    };
    let key = validate_record(value).map_err(|e| vec![error(e.field(), e.to_string())])?;
    let mut errors = Vec::new();
    if key.quarter.to_string() != batch.quarter {
        errors.push(error(
            "quarter",
            format!(
                "the record is for {}, the batch for {}",
                key.quarter, batch.quarter
            ),
        ));
    }
    if key.school_id != batch.school_id {
        errors.push(error(
            "school_id",
            format!(
                "the record is for school {}, the batch for {}",
                key.school_id, batch.school_id
            ),
        ));
    }
    for rule in rules.iter().filter(|r| r.matches(value)) {
        errors.push(error(&rule.field, rule.message()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NewRecord {
        record_id: key.record_id,
        quarter: key.quarter.to_string(),
        school_id: key.school_id,
        sha256: record_sha256(value),
    })
}

/// The faults that strike once the batch is committed: no answer at all, or a late one.
async fn after_commit(sim: &SimState, roll: Roll, id: Uuid, answer: StoredAnswer) -> Response {
    let faults = sim.faults();
    if roll.drop < faults.p_commit_drop {
        tracing::info!(batch_id = %id, "gov-sim dropping the connection after commit");
        let mut resp = Response::new(Body::empty());
        resp.extensions_mut().insert(DropConnection);
        return resp;
    }
    if roll.hang < faults.p_hang {
        tracing::info!(batch_id = %id, hang_ms = faults.hang_ms, "gov-sim hanging after commit");
        tokio::time::sleep(std::time::Duration::from_millis(faults.hang_ms)).await;
    }
    stored_response(id, &answer)
}

pub(crate) async fn get_receipt(
    State(sim): State<Arc<SimState>>,
    Extension(roll): Extension<Roll>,
    headers: HeaderMap,
    Path(batch_id): Path<String>,
) -> Response {
    if let Err(refusal) = sim.authorize(&headers) {
        return refusal.into_response();
    }
    tokio::time::sleep(sim.faults().latency(&roll)).await;
    let Ok(id) = batch_id.parse::<Uuid>() else {
        return problem(400, "Bad Request", "the batch id must be a UUID");
    };
    let answer = sim.lock().keys.committed(id).cloned();
    match answer {
        Some(answer) => problem::bytes(200, answer.content_type, answer.body),
        None => problem(
            404,
            "Not Found",
            "no committed batch has this id: it is safe to send it",
        ),
    }
}
