//! JSONL import: one grade record per line, validated with the API contract, stored as
//! canonical JSON so the bytes measured when a batch is cut are the bytes sent. Lines are
//! read as bytes with a length cap (a broken file cannot exhaust memory), bad lines are
//! reported by number without quoting them, and valid rows are upserted in transactions of
//! a few thousand so a million-line file takes well under a minute.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use gradesync_govapi::contract::{
    MAX_BODY_BYTES, RecordError, canonical_json, envelope_bytes, record_sha256, validate_record,
};
use serde_json::Value;
use serde_json::error::Category;
use sqlx::{Any, Transaction};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::held;
use super::model::{BadLine, ImportReport, MAX_REPORTED_BAD_LINES};
use super::{Store, StoreError, now_ms, placeholders, value_rows};

/// Longer lines are not even parsed: no record this long can fit a request, whatever
/// whitespace its JSON carries.
const MAX_LINE_BYTES: usize = 4 * MAX_BODY_BYTES;
/// Rows per upsert transaction (5000 measured ~25% faster than 1000 on a million lines:
/// fewer commits rewriting the same index pages), and a byte bound so huge records do not
/// pile up in memory.
const CHUNK_ROWS: usize = 5000;
const CHUNK_BYTES: usize = 16 * 1024 * 1024;
/// Rows per multi-row INSERT: far below every backend's bind-parameter limit.
const INSERT_ROWS: usize = 100;
/// Progress is reported after every stored chunk, and at least this often in lines.
const PROGRESS_LINES: u64 = 10_000;

/// A valid record, ready to store.
struct Row {
    record_id: String,
    quarter: String,
    school_id: String,
    body: String,
    sha256: String,
}

enum Line {
    Blank,
    Bad(String),
    Record(Value),
}

/// What the database holds for a record about to be upserted.
struct Existing {
    quarter: String,
    sha256: String,
    status: String,
    batch_id: Option<String>,
    /// When its batch first left, if it has.
    left_at: Option<i64>,
}

impl Existing {
    /// The batch the record is in while that batch's outcome is unknown, and whether the
    /// batch has left.
    fn unsettled_batch(&self) -> Option<(&str, bool)> {
        match (self.status.as_str(), &self.batch_id) {
            ("batched", Some(batch_id)) => Some((batch_id, self.left_at.is_some())),
            // A dead batch was sent, whatever an older schema recorded.
            ("dead", Some(batch_id)) => Some((batch_id, true)),
            _ => None,
        }
    }
}

/// What [`Importer::offer`] did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// Valid, waiting in the chunk.
    Held,
    /// Valid, and its chunk was stored by this call.
    Stored,
    /// Not a valid record (or a duplicate): reported with this reason.
    Refused(String),
}

/// Feeds records into the store a chunk at a time, whatever they were read from (JSON
/// Lines, CSV, OneRoster, a DynamoDB table). Every record is validated with the API
/// contract; a bad one is reported by origin and line and costs no valid neighbour; a
/// record id seen twice in one import is reported at its second line.
pub struct Importer<'s> {
    store: &'s Store,
    report: ImportReport,
    seen: SeenIds,
    chunk: Chunk,
}

impl Store {
    /// An [`Importer`] into this store; call [`Importer::finish`] to store the last chunk.
    pub fn importer(&self) -> Importer<'_> {
        Importer {
            store: self,
            report: ImportReport::default(),
            seen: SeenIds::default(),
            chunk: Chunk::default(),
        }
    }

    /// Reads JSONL from `reader` and upserts every valid record; see [`ImportReport`].
    /// `on_progress` gets the number of lines read so far, now and then and at the end.
    pub async fn import_jsonl<R: AsyncBufRead + Unpin>(
        &self,
        mut reader: R,
        mut on_progress: impl FnMut(u64),
    ) -> Result<ImportReport, StoreError> {
        let mut importer = self.importer();
        let mut buf = Vec::new();
        let mut last_progress = 0;
        while let Some(len) = read_line(&mut reader, &mut buf, importer.report.lines).await? {
            let n = importer.line_read();
            let line = if n == 1 { strip_bom(&buf) } else { &buf };
            let stored = match parse_line(line, len) {
                Line::Blank => false,
                Line::Bad(reason) => {
                    importer.bad(None, n, reason);
                    false
                }
                Line::Record(value) => importer.record(None, n, &value).await?,
            };
            if stored || n - last_progress >= PROGRESS_LINES {
                on_progress(n);
                last_progress = n;
            }
        }
        let report = importer.finish().await?;
        on_progress(report.lines);
        Ok(report)
    }
}

impl Importer<'_> {
    /// Counts one line (or row, or item) read, blank ones included; returns its number.
    pub fn line_read(&mut self) -> u64 {
        self.report.lines += 1;
        self.report.lines
    }

    /// The counts so far (records of the chunk not yet stored are not counted).
    pub fn report(&self) -> &ImportReport {
        &self.report
    }

    /// Takes one record read at `origin`/`line`: validated, then stored with its chunk.
    /// Returns whether a chunk was stored by this call (a moment to show progress).
    pub async fn record(
        &mut self,
        origin: Option<&str>,
        line: u64,
        value: &Value,
    ) -> Result<bool, StoreError> {
        Ok(matches!(
            self.offer(origin, line, value).await?,
            Offered::Stored
        ))
    }

    /// [`Importer::record`], telling also why a record was refused (it is reported as a
    /// bad line all the same).
    pub async fn offer(
        &mut self,
        origin: Option<&str>,
        line: u64,
        value: &Value,
    ) -> Result<Offered, StoreError> {
        let row = match to_row(value) {
            Ok(row) => row,
            Err(reason) => return Ok(self.refuse(origin, line, reason)),
        };
        if let Some(first) = self.seen.first_line(&row.record_id, line) {
            let reason = format!("duplicate record_id in this file (first seen on line {first})");
            return Ok(self.refuse(origin, line, reason));
        }
        self.chunk.push(row);
        if !self.chunk.is_full() {
            return Ok(Offered::Held);
        }
        let rows = self.chunk.take();
        self.store.store_chunk(&rows, &mut self.report).await?;
        Ok(Offered::Stored)
    }

    fn refuse(&mut self, origin: Option<&str>, line: u64, reason: String) -> Offered {
        self.bad(origin, line, reason.clone());
        Offered::Refused(reason)
    }

    /// A line that holds no record: reported (the first [`MAX_REPORTED_BAD_LINES`] in
    /// full, all counted), never stored. `reason` must not quote the line.
    pub fn bad(&mut self, origin: Option<&str>, line: u64, reason: String) {
        self.report.bad_line_count += 1;
        if self.report.bad_lines.len() < MAX_REPORTED_BAD_LINES {
            self.report.bad_lines.push(BadLine {
                origin: origin.map(str::to_string),
                line,
                reason,
            });
        }
    }

    /// Stores what is left and returns the whole import's report.
    pub async fn finish(mut self) -> Result<ImportReport, StoreError> {
        if !self.chunk.rows.is_empty() {
            let rows = self.chunk.take();
            self.store.store_chunk(&rows, &mut self.report).await?;
        }
        Ok(self.report)
    }
}

impl Store {
    /// Upserts one chunk of rows with distinct record ids in one transaction. A changed
    /// record whose batch has left keeps its old content with that batch and follows it
    /// (see [`held`]); one whose batch has not left withdraws the batch, whose records are
    /// cut anew.
    async fn store_chunk(&self, rows: &[Row], report: &mut ImportReport) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let existing = existing_rows(&mut tx, rows).await?;
        let now = now_ms();
        let mut new = Vec::new();
        let mut stale_batches = HashSet::new();
        for row in rows {
            let Some(old) = existing.get(&row.record_id) else {
                new.push(row);
                continue;
            };
            if old.sha256 == row.sha256 {
                report.unchanged += 1;
                continue;
            }
            report.updated += 1;
            match old.unsettled_batch() {
                Some((batch_id, true)) => {
                    held::hold(&mut tx, batch_id, &row.record_id).await?;
                    update_content(&mut tx, row, &old.quarter, now).await?;
                    held::unhold_if_same(&mut tx, batch_id, &row.record_id, &row.sha256).await?;
                    report.held += 1;
                }
                unsettled => {
                    update_changed(&mut tx, row, now).await?;
                    stale_batches.extend(unsettled.map(|(batch_id, _)| batch_id.to_string()));
                }
            }
        }
        for part in new.chunks(INSERT_ROWS) {
            insert_new(&mut tx, part, now).await?;
        }
        report.inserted += new.len() as u64;
        for batch_id in stale_batches {
            report.superseded_batches += withdraw_batch(&mut tx, &batch_id, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Rows waiting to be stored.
#[derive(Default)]
struct Chunk {
    rows: Vec<Row>,
    bytes: usize,
}

impl Chunk {
    fn push(&mut self, row: Row) {
        self.bytes += row.body.len();
        self.rows.push(row);
    }

    fn is_full(&self) -> bool {
        self.rows.len() >= CHUNK_ROWS || self.bytes >= CHUNK_BYTES
    }

    fn take(&mut self) -> Vec<Row> {
        self.bytes = 0;
        std::mem::take(&mut self.rows)
    }
}

/// Record ids already seen in this file, kept as 128-bit keyed hashes with their line so a
/// million-line file costs tens of megabytes, not the ids themselves. Two independent
/// random keys make a false "duplicate" as likely as guessing a 128-bit secret.
struct SeenIds {
    keys: (RandomState, RandomState),
    lines: HashMap<u128, u64>,
}

impl Default for SeenIds {
    fn default() -> Self {
        Self {
            keys: (RandomState::new(), RandomState::new()),
            lines: HashMap::new(),
        }
    }
}

impl SeenIds {
    /// The line `record_id` was first seen on, or `None` after remembering `line` for it.
    fn first_line(&mut self, record_id: &str, line: u64) -> Option<u64> {
        let hi = u128::from(self.keys.0.hash_one(record_id));
        let lo = u128::from(self.keys.1.hash_one(record_id));
        match self.lines.entry(hi << 64 | lo) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(line);
                None
            }
        }
    }
}

/// Reads the next line into `buf` (without its `\n` or `\r\n`), keeping at most
/// `MAX_LINE_BYTES + 1` bytes of it and skipping the rest. Returns the full line length, or
/// `None` at the end of input.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    lines_so_far: u64,
) -> Result<Option<usize>, StoreError> {
    let io_err = |source| StoreError::Read {
        line: lines_so_far,
        source,
    };
    buf.clear();
    let mut len = 0;
    let mut read_any = false;
    loop {
        let available = reader.fill_buf().await.map_err(io_err)?;
        if available.is_empty() {
            break;
        }
        read_any = true;
        let (part, consumed, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        len += part.len();
        reader.consume(consumed);
        if done {
            break;
        }
    }
    if !read_any {
        return Ok(None);
    }
    if buf.last() == Some(&b'\r') && len <= MAX_LINE_BYTES {
        buf.pop();
        len -= 1;
    }
    Ok(Some(len))
}

/// Spreadsheet exports often start with a UTF-8 byte order mark, which is not JSON.
fn strip_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

fn parse_line(bytes: &[u8], len: usize) -> Line {
    if len > MAX_LINE_BYTES {
        return Line::Bad(format!(
            "record is {len} bytes; the API accepts at most {MAX_BODY_BYTES} per request"
        ));
    }
    if bytes.trim_ascii().is_empty() {
        return Line::Blank;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Line::Bad(format!("invalid UTF-8 at byte {}", e.valid_up_to() + 1)),
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return Line::Bad(json_reason(&e)),
    };
    Line::Record(value)
}

/// serde_json's messages do not quote input, but its position is all a reader needs.
fn json_reason(e: &serde_json::Error) -> String {
    match e.classify() {
        Category::Eof => format!(
            "invalid JSON: the line ends inside a value (column {})",
            e.column()
        ),
        _ => format!("invalid JSON at column {}", e.column()),
    }
}

/// Validates a record with the API contract and measures it as a batch would carry it.
fn to_row(value: &Value) -> Result<Row, String> {
    let key = validate_record(value).map_err(|e| record_reason(&e))?;
    let body = canonical_json(value);
    let framed = envelope_bytes(&key.quarter, &key.school_id, 1) + body.len();
    if framed > MAX_BODY_BYTES {
        return Err(format!(
            "record is {} bytes encoded ({framed} in a batch of one); the API accepts at most {MAX_BODY_BYTES} per request",
            body.len()
        ));
    }
    Ok(Row {
        record_id: key.record_id,
        quarter: key.quarter.to_string(),
        school_id: key.school_id,
        sha256: record_sha256(value),
        body,
    })
}

/// The contract's own messages, except that a bad quarter is not quoted back.
fn record_reason(e: &RecordError) -> String {
    match e {
        RecordError::BadQuarter(_) => {
            "field `quarter` is not a quarter: use YYYY-Qn with n from 1 to 4".to_string()
        }
        other => other.to_string(),
    }
}

async fn existing_rows(
    tx: &mut Transaction<'static, Any>,
    rows: &[Row],
) -> Result<HashMap<String, Existing>, StoreError> {
    let sql = format!(
        "SELECT g.record_id, g.quarter, g.sha256, g.status, g.batch_id, b.left_at FROM grades g \
         LEFT JOIN batches b ON b.batch_id = g.batch_id WHERE g.record_id IN ({})",
        placeholders(1, rows.len())
    );
    let mut query = sqlx::query_as(&sql);
    for row in rows {
        query = query.bind(row.record_id.as_str());
    }
    type Found = (String, String, String, String, Option<String>, Option<i64>);
    let found: Vec<Found> = query.fetch_all(&mut **tx).await?;
    Ok(found
        .into_iter()
        .map(|(id, quarter, sha256, status, batch_id, left_at)| {
            (
                id,
                Existing {
                    quarter,
                    sha256,
                    status,
                    batch_id,
                    left_at,
                },
            )
        })
        .collect())
}

async fn insert_new(
    tx: &mut Transaction<'static, Any>,
    rows: &[&Row],
    now: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO grades (record_id, quarter, school_id, sha256, bytes, status, updated_at) \
         VALUES {}",
        value_rows(rows.len(), 7)
    );
    let mut query = sqlx::query(&sql);
    for row in rows {
        query = query
            .bind(row.record_id.as_str())
            .bind(row.quarter.as_str())
            .bind(row.school_id.as_str())
            .bind(row.sha256.as_str())
            .bind(row.body.len() as i64)
            .bind("pending")
            .bind(now);
    }
    query.execute(&mut **tx).await?;
    let sql = format!(
        "INSERT INTO grade_bodies (record_id, body) VALUES {}",
        value_rows(rows.len(), 2)
    );
    let mut bodies = sqlx::query(&sql);
    for row in rows {
        bodies = bodies.bind(row.record_id.as_str()).bind(row.body.as_str());
    }
    bodies.execute(&mut **tx).await?;
    Ok(())
}

/// A changed record starts over: pending, in no batch, no old rejection reason.
async fn update_changed(
    tx: &mut Transaction<'static, Any>,
    row: &Row,
    now: i64,
) -> Result<(), StoreError> {
    // One statement, so the checked pages' trigger sees the record leave its old state.
    sqlx::query(
        "UPDATE grades SET quarter = $1, school_id = $2, sha256 = $3, bytes = $4, \
         status = 'pending', batch_id = NULL, reason = NULL, updated_at = $5 WHERE record_id = $6",
    )
    .bind(&row.quarter)
    .bind(&row.school_id)
    .bind(&row.sha256)
    .bind(row.body.len() as i64)
    .bind(now)
    .bind(&row.record_id)
    .execute(&mut **tx)
    .await?;
    update_body(tx, row).await
}

/// A record's new content, leaving its status and batch as they are.
async fn update_content(
    tx: &mut Transaction<'static, Any>,
    row: &Row,
    old_quarter: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE grades SET quarter = $1, school_id = $2, sha256 = $3, bytes = $4, \
         updated_at = $5 WHERE record_id = $6",
    )
    .bind(&row.quarter)
    .bind(&row.school_id)
    .bind(&row.sha256)
    .bind(row.body.len() as i64)
    .bind(now)
    .bind(&row.record_id)
    .execute(&mut **tx)
    .await?;
    if row.quarter != old_quarter {
        // The trigger skips records in flight; one moving into another quarter must still
        // make the pages of its new range be read again.
        sqlx::query(
            "UPDATE reconcile_pages SET state = 'stale' WHERE quarter = $1 AND state <> 'stale' \
             AND $2 > after_id AND $3 <= upto_id",
        )
        .bind(&row.quarter)
        .bind(&row.record_id)
        .bind(&row.record_id)
        .execute(&mut **tx)
        .await?;
    }
    update_body(tx, row).await
}

async fn update_body(tx: &mut Transaction<'static, Any>, row: &Row) -> Result<(), StoreError> {
    sqlx::query("UPDATE grade_bodies SET body = $1 WHERE record_id = $2")
        .bind(&row.body)
        .bind(&row.record_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A prepared batch that has not left and one of whose records changed can never be sent
/// byte for byte, and its idempotency key must not carry a different body: it is withdrawn
/// and its other records are cut anew. Nothing of it reached the API, so nothing can be
/// applied twice. Returns 1 if the batch was withdrawn by this call.
async fn withdraw_batch(
    tx: &mut Transaction<'static, Any>,
    batch_id: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let retired = sqlx::query(
        "UPDATE batches SET status = 'superseded', updated_at = $1 \
         WHERE batch_id = $2 AND status = 'prepared' AND left_at IS NULL",
    )
    .bind(now)
    .bind(batch_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if retired == 0 {
        return Ok(0);
    }
    sqlx::query(
        "UPDATE grades SET status = 'pending', batch_id = NULL, updated_at = $1 \
         WHERE batch_id = $2 AND status = 'batched'",
    )
    .bind(now)
    .bind(batch_id)
    .execute(&mut **tx)
    .await?;
    Ok(retired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_with_cap_and_crlf() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let mut input = b"a\r\n\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        let mut reader = tokio::io::BufReader::with_capacity(64, input.as_slice());
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut reader, &mut buf, 0).await.unwrap(), Some(1));
        assert_eq!(buf, b"a");
        assert_eq!(read_line(&mut reader, &mut buf, 1).await.unwrap(), Some(0));
        assert_eq!(
            read_line(&mut reader, &mut buf, 2).await.unwrap(),
            Some(MAX_LINE_BYTES + 10)
        );
        assert_eq!(buf.len(), MAX_LINE_BYTES + 1);
        assert_eq!(read_line(&mut reader, &mut buf, 3).await.unwrap(), Some(4));
        assert_eq!(buf, b"last");
        assert_eq!(read_line(&mut reader, &mut buf, 4).await.unwrap(), None);
    }

    #[test]
    fn duplicate_ids_report_the_first_line() {
        let mut seen = SeenIds::default();
        assert_eq!(seen.first_line("r1", 1), None);
        assert_eq!(seen.first_line("r2", 2), None);
        assert_eq!(seen.first_line("r1", 3), Some(1));
    }
}
