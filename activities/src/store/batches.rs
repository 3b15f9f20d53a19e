//! Cutting pending records into batches, and taking a batch to send it. A batch is fixed
//! when it is cut: its id, its records and therefore its exact bytes, so a resend after a
//! crash or a timeout carries the same body under the same idempotency key. Once it has
//! left, a record of it that changes leaves the batch its old content (see [`held`]).

use gradesync_govapi::Quarter;
use gradesync_govapi::contract::{encode_batch, envelope_bytes};
use sqlx::{Any, Transaction};
use uuid::Uuid;

use super::held;
use super::model::{BatchBody, BatchLimits, PreparedBatch, PreparedChunk, TakeOff};
use super::{Store, StoreError, count, now_ms};

/// Pending rows fetched per query: memory stays flat however big the quarter is.
const PAGE_ROWS: i64 = 1000;

impl Store {
    /// Hands out up to `max_batches` batches of one school: first its already prepared ones
    /// (resume), then new ones cut from pending records in record_id order. A record that
    /// cannot fit even alone is rejected. One transaction.
    pub async fn prepare_batches(
        &self,
        quarter: &Quarter,
        school_id: &str,
        max_batches: usize,
        limits: BatchLimits,
    ) -> Result<PreparedChunk, StoreError> {
        if limits.max_records == 0 {
            return Err(StoreError::InvalidArgument(
                "max_records must be at least 1".into(),
            ));
        }
        let mut tx = self.write_tx().await?;
        let mut chunk = PreparedChunk {
            batches: resumable(&mut tx, quarter, school_id, max_batches).await?,
            ..PreparedChunk::default()
        };
        cut_new_batches(&mut tx, quarter, school_id, max_batches, limits, &mut chunk).await?;
        chunk.remaining_pending = remaining(&mut tx, quarter, school_id, &chunk.batches).await?;
        tx.commit().await?;
        Ok(chunk)
    }

    /// The request body of a prepared batch, rebuilt from what it carries and checked
    /// against the length measured when it was cut. Reads only: SendBatch takes a batch
    /// with [`Store::take_off`].
    pub async fn batch_body(&self, batch_id: Uuid) -> Result<BatchBody, StoreError> {
        // One read transaction: a concurrent import cannot change the batch between the reads.
        let mut tx = self.read_tx().await?;
        let row = batch_row(&mut tx, batch_id).await?;
        if row.status != "prepared" {
            return Err(StoreError::BatchNotPrepared {
                batch_id,
                status: row.status,
            });
        }
        let carried = carried(&mut tx, batch_id).await?;
        tx.commit().await?;
        row.body(batch_id, carried)
    }

    /// SendBatch takes a batch to send it: its bytes, and from now on the batch has left.
    /// One write transaction, so an import either changed a record before (and withdrew
    /// the batch, which had not left) or after (and left the batch its bytes, see
    /// [`held`](super::held)). A batch that is no longer prepared is not sent: it was
    /// withdrawn before it left, or settled by another attempt or a receipt lookup.
    pub async fn take_off(&self, batch_id: Uuid) -> Result<TakeOff, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = batch_row(&mut tx, batch_id).await?;
        if row.status != "prepared" {
            tx.commit().await?;
            return Ok(TakeOff::Settled {
                status: row.status,
                receipt_id: row.receipt_id,
            });
        }
        let now = now_ms();
        sqlx::query(
            "UPDATE batches SET left_at = COALESCE(left_at, $1), in_flight_since = $2 \
             WHERE batch_id = $3",
        )
        .bind(now)
        .bind(now)
        .bind(batch_id.to_string())
        .execute(&mut *tx)
        .await?;
        let carried = carried(&mut tx, batch_id).await?;
        tx.commit().await?;
        Ok(TakeOff::Send(row.body(batch_id, carried)?))
    }
}

/// The batch row `batch_body` and `take_off` start from.
struct BatchRow {
    quarter: String,
    school_id: String,
    records: i64,
    bytes: i64,
    status: String,
    receipt_id: Option<String>,
}

async fn batch_row(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
) -> Result<BatchRow, StoreError> {
    let (quarter, school_id, records, bytes, status, receipt_id) = sqlx::query_as(
        "SELECT quarter, school_id, records, bytes, status, receipt_id FROM batches \
         WHERE batch_id = $1",
    )
    .bind(batch_id.to_string())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::BatchNotFound(batch_id))?;
    Ok(BatchRow {
        quarter,
        school_id,
        records,
        bytes,
        status,
        receipt_id,
    })
}

/// `(record_id, body)` of what a batch carries, in record_id order.
async fn carried(
    tx: &mut Transaction<'static, Any>,
    batch_id: Uuid,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(sqlx::query_as(held::CARRIED)
        .bind(batch_id.to_string())
        .fetch_all(&mut **tx)
        .await?)
}

impl BatchRow {
    /// The request body of the batch, checked against the length measured when it was cut.
    fn body(self, batch_id: Uuid, carried: Vec<(String, String)>) -> Result<BatchBody, StoreError> {
        let quarter = parse_quarter(&self.quarter)?;
        let (record_ids, bodies): (Vec<String>, Vec<String>) = carried.into_iter().unzip();
        let body = encode(batch_id, &quarter, &self.school_id, &bodies)?;
        if bodies.len() as i64 != self.records || body.len() as i64 != self.bytes {
            return Err(StoreError::Corrupt(format!(
                "batch {batch_id} was cut with {} records in {} bytes but now has {} in {}",
                self.records,
                self.bytes,
                bodies.len(),
                body.len()
            )));
        }
        Ok(BatchBody {
            quarter,
            school_id: self.school_id,
            records: count(self.records),
            body,
            record_ids,
        })
    }
}

/// Cuts batches from the school's pending records, in record_id order and one page at a
/// time, until `chunk` holds `max_batches` or nothing is pending.
async fn cut_new_batches(
    tx: &mut Transaction<'static, Any>,
    quarter: &Quarter,
    school_id: &str,
    max_batches: usize,
    limits: BatchLimits,
    chunk: &mut PreparedChunk,
) -> Result<(), StoreError> {
    let mut cutter = Cutter::new(quarter, school_id, limits);
    let mut after = String::new();
    'pages: while chunk.batches.len() < max_batches {
        let page = pending_page(tx, quarter, school_id, &after).await?;
        let Some((last, _)) = page.last() else { break };
        after = last.clone();
        for (record_id, bytes) in page {
            let closed = match cutter.offer(record_id, bytes) {
                Offer::Taken(closed) => closed,
                Offer::Oversize { record_id, framed } => {
                    reject_oversize(tx, &record_id, framed, limits.max_bytes).await?;
                    chunk.oversize_rejected += 1;
                    None
                }
            };
            if let Some(batch) = closed {
                chunk
                    .batches
                    .push(save_batch(tx, quarter, school_id, batch).await?);
                if chunk.batches.len() == max_batches {
                    break 'pages;
                }
            }
        }
    }
    if chunk.batches.len() < max_batches
        && let Some(batch) = cutter.close()
    {
        chunk
            .batches
            .push(save_batch(tx, quarter, school_id, batch).await?);
    }
    Ok(())
}

fn encode(
    batch_id: Uuid,
    quarter: &Quarter,
    school_id: &str,
    bodies: &[String],
) -> Result<Vec<u8>, StoreError> {
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    encode_batch(batch_id, quarter, school_id, &refs).map_err(|_| {
        StoreError::Corrupt(format!(
            "a stored record of batch {batch_id} is not valid JSON"
        ))
    })
}

pub(super) fn parse_quarter(text: &str) -> Result<Quarter, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("a stored quarter `{text}` is not YYYY-Qn")))
}

/// A batch being filled: the record_id range it covers (every pending record in it), how
/// many records and their total length.
pub(super) struct OpenBatch {
    first: String,
    last: String,
    pub(super) records: usize,
    pub(super) record_bytes: usize,
}

/// Cuts one school's pending records, in record_id order, into batches by count and exact
/// encoded length. `sync plan` runs the same cutter to count what PrepBatch would cut.
pub(super) struct Cutter<'a> {
    quarter: &'a Quarter,
    school_id: String,
    limits: BatchLimits,
    open: Option<OpenBatch>,
}

pub(super) enum Offer {
    /// The record is in the open batch; a batch that closed on the way is handed back.
    Taken(Option<OpenBatch>),
    /// Alone it would already make a body longer than `max_bytes`.
    Oversize { record_id: String, framed: usize },
}

impl<'a> Cutter<'a> {
    pub(super) fn new(quarter: &'a Quarter, school_id: &str, limits: BatchLimits) -> Self {
        Self {
            quarter,
            school_id: school_id.to_string(),
            limits,
            open: None,
        }
    }

    pub(super) fn school_id(&self) -> &str {
        &self.school_id
    }

    /// Length of the request body of `records` records totalling `record_bytes`.
    pub(super) fn encoded_len(&self, records: usize, record_bytes: usize) -> usize {
        envelope_bytes(self.quarter, &self.school_id, records) + record_bytes
    }

    pub(super) fn offer(&mut self, record_id: String, bytes: usize) -> Offer {
        let framed = self.encoded_len(1, bytes);
        if framed > self.limits.max_bytes {
            return Offer::Oversize { record_id, framed };
        }
        let full = self.open.as_ref().is_some_and(|open| {
            open.records >= self.limits.max_records
                || self.encoded_len(open.records + 1, open.record_bytes + bytes)
                    > self.limits.max_bytes
        });
        let closed = if full { self.close() } else { None };
        let open = self.open.get_or_insert_with(|| OpenBatch {
            first: record_id.clone(),
            last: String::new(),
            records: 0,
            record_bytes: 0,
        });
        open.last = record_id;
        open.records += 1;
        open.record_bytes += bytes;
        Offer::Taken(closed)
    }

    pub(super) fn close(&mut self) -> Option<OpenBatch> {
        self.open.take()
    }
}

async fn resumable(
    tx: &mut Transaction<'static, Any>,
    quarter: &Quarter,
    school_id: &str,
    max_batches: usize,
) -> Result<Vec<PreparedBatch>, StoreError> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT batch_id, records, bytes FROM batches \
         WHERE quarter = $1 AND school_id = $2 AND status = 'prepared' \
         ORDER BY created_at, batch_id LIMIT $3",
    )
    .bind(quarter.to_string())
    .bind(school_id)
    .bind(i64::try_from(max_batches).unwrap_or(i64::MAX))
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(id, records, bytes)| {
            Ok(PreparedBatch {
                batch_id: parse_uuid(&id)?,
                records: count(records),
                bytes: count(bytes),
            })
        })
        .collect()
}

pub(super) fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text)
        .map_err(|_| StoreError::Corrupt(format!("a stored batch id `{text}` is not a uuid")))
}

async fn pending_page(
    tx: &mut Transaction<'static, Any>,
    quarter: &Quarter,
    school_id: &str,
    after: &str,
) -> Result<Vec<(String, usize)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT record_id, bytes FROM grades \
         WHERE quarter = $1 AND school_id = $2 AND status = 'pending' AND record_id > $3 \
         ORDER BY record_id LIMIT $4",
    )
    .bind(quarter.to_string())
    .bind(school_id)
    .bind(after)
    .bind(PAGE_ROWS)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, bytes)| (id, count(bytes) as usize))
        .collect())
}

async fn reject_oversize(
    tx: &mut Transaction<'static, Any>,
    record_id: &str,
    framed: usize,
    max_bytes: usize,
) -> Result<(), StoreError> {
    let reason =
        format!("record is {framed} bytes encoded; a batch body may carry at most {max_bytes}");
    sqlx::query(
        "UPDATE grades SET status = 'rejected', reason = $1, updated_at = $2 \
         WHERE record_id = $3 AND status = 'pending'",
    )
    .bind(reason)
    .bind(now_ms())
    .bind(record_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores a cut batch and moves its records pending -> batched, counting the cut. Its
/// records are exactly the pending ones in its record_id range: oversize ones in between
/// were rejected already.
async fn save_batch(
    tx: &mut Transaction<'static, Any>,
    quarter: &Quarter,
    school_id: &str,
    batch: OpenBatch,
) -> Result<PreparedBatch, StoreError> {
    let bytes = envelope_bytes(quarter, school_id, batch.records) + batch.record_bytes;
    let batch_id = insert_batch(tx, &quarter.to_string(), school_id, batch.records, bytes).await?;
    let now = now_ms();
    let moved = sqlx::query(
        "UPDATE grades SET status = 'batched', batch_id = $1, cuts = cuts + 1, updated_at = $2 \
         WHERE quarter = $3 AND school_id = $4 AND status = 'pending' \
         AND record_id >= $5 AND record_id <= $6",
    )
    .bind(batch_id.to_string())
    .bind(now)
    .bind(quarter.to_string())
    .bind(school_id)
    .bind(&batch.first)
    .bind(&batch.last)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved != batch.records as u64 {
        return Err(StoreError::Corrupt(format!(
            "cutting batch {batch_id} moved {moved} records instead of {}",
            batch.records
        )));
    }
    Ok(PreparedBatch {
        batch_id,
        records: batch.records as u64,
        bytes: bytes as u64,
    })
}

/// A new `prepared` batch row with a fresh id; its records are attached by the caller.
pub(super) async fn insert_batch(
    tx: &mut Transaction<'static, Any>,
    quarter: &str,
    school_id: &str,
    records: usize,
    bytes: usize,
) -> Result<Uuid, StoreError> {
    let batch_id = Uuid::new_v4();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO batches (batch_id, quarter, school_id, records, bytes, status, attempts, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'prepared', 0, $6, $7)",
    )
    .bind(batch_id.to_string())
    .bind(quarter)
    .bind(school_id)
    .bind(records as i64)
    .bind(bytes as i64)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(batch_id)
}

/// Records a later call would still hand out: pending ones and those in prepared batches
/// this call did not return.
async fn remaining(
    tx: &mut Transaction<'static, Any>,
    quarter: &Quarter,
    school_id: &str,
    returned: &[PreparedBatch],
) -> Result<u64, StoreError> {
    let (pending, batched): (i64, i64) = sqlx::query_as(
        "SELECT \
           (SELECT COUNT(*) FROM grades \
             WHERE quarter = $1 AND school_id = $2 AND status = 'pending'), \
           (SELECT CAST(COALESCE(SUM(records), 0) AS BIGINT) FROM batches \
             WHERE quarter = $3 AND school_id = $4 AND status = 'prepared')",
    )
    .bind(quarter.to_string())
    .bind(school_id)
    .bind(quarter.to_string())
    .bind(school_id)
    .fetch_one(&mut **tx)
    .await?;
    let handed_out: u64 = returned.iter().map(|b| b.records).sum();
    Ok((count(pending) + count(batched)).saturating_sub(handed_out))
}
