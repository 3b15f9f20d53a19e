//! A dry run of batching: what the next run would send for a quarter, read from the store
//! without writing anything. Prepared (cut, unconfirmed) batches go as they are; pending
//! records are cut by the same rules as `PrepBatch` (per school, in record_id order, by
//! record count and exact encoded bytes, a record too large even alone rejected).

use futures::TryStreamExt;
use gradesync_govapi::Quarter;
use serde::{Deserialize, Serialize};

use super::batches::{Cutter, Offer, OpenBatch};
use super::model::BatchLimits;
use super::{Store, StoreError, count};

/// What one school would send.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SchoolPlan {
    pub school_id: String,
    /// Batches already cut but not confirmed by the API: resent as they are.
    pub prepared_batches: u64,
    pub prepared_records: u64,
    pub prepared_bytes: u64,
    /// Batches the pending (not yet batched) records would be cut into.
    pub new_batches: u64,
    pub new_records: u64,
    pub new_bytes: u64,
    /// Pending records too large for any batch: PrepBatch would reject them.
    pub oversize_records: u64,
}

impl SchoolPlan {
    pub fn batches(&self) -> u64 {
        self.prepared_batches + self.new_batches
    }

    pub fn records(&self) -> u64 {
        self.prepared_records + self.new_records
    }

    pub fn bytes(&self) -> u64 {
        self.prepared_bytes + self.new_bytes
    }

    /// Records still to go: those that would be sent plus those that would be rejected.
    pub fn pending_records(&self) -> u64 {
        self.records() + self.oversize_records
    }

    fn add(&mut self, other: &SchoolPlan) {
        self.prepared_batches += other.prepared_batches;
        self.prepared_records += other.prepared_records;
        self.prepared_bytes += other.prepared_bytes;
        self.new_batches += other.new_batches;
        self.new_records += other.new_records;
        self.new_bytes += other.new_bytes;
        self.oversize_records += other.oversize_records;
    }
}

/// What a quarter would send, school by school (sorted by school_id).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct QuarterPlan {
    /// Whether the quarter has any grade at all (sent or not).
    pub has_grades: bool,
    pub schools: Vec<SchoolPlan>,
}

impl QuarterPlan {
    /// The sum over every school (`school_id` empty).
    pub fn totals(&self) -> SchoolPlan {
        let mut totals = SchoolPlan::default();
        for school in &self.schools {
            totals.add(school);
        }
        totals
    }
}

impl Store {
    /// Plans the quarter's batches without cutting them: one read transaction, no write.
    pub async fn plan_batches(
        &self,
        quarter: &Quarter,
        limits: BatchLimits,
    ) -> Result<QuarterPlan, StoreError> {
        if limits.max_records == 0 {
            return Err(StoreError::InvalidArgument(
                "max_records must be at least 1".into(),
            ));
        }
        let q = quarter.to_string();
        // A deferred transaction that only reads: one consistent snapshot, no write lock.
        let mut tx = self.read_tx().await?;
        let has_grades: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM grades WHERE quarter = $1) THEN 1 ELSE 0 END",
        )
        .bind(&q)
        .fetch_one(&mut *tx)
        .await?;
        let has_grades = has_grades != 0;
        let prepared: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT school_id, COUNT(*), CAST(COALESCE(SUM(records), 0) AS BIGINT), \
             CAST(COALESCE(SUM(bytes), 0) AS BIGINT) \
             FROM batches WHERE quarter = $1 AND status = 'prepared' \
             GROUP BY school_id ORDER BY school_id",
        )
        .bind(&q)
        .fetch_all(&mut *tx)
        .await?;
        let mut schools: Vec<SchoolPlan> = prepared
            .into_iter()
            .map(|(school_id, batches, records, bytes)| SchoolPlan {
                school_id,
                prepared_batches: count(batches),
                prepared_records: count(records),
                prepared_bytes: count(bytes),
                ..SchoolPlan::default()
            })
            .collect();
        {
            // Streamed, served by the partial index on pending rows: memory stays flat.
            let mut rows = sqlx::query_as::<_, (String, String, i64)>(
                "SELECT school_id, record_id, bytes FROM grades \
                 WHERE quarter = $1 AND status = 'pending' ORDER BY school_id, record_id",
            )
            .bind(&q)
            .fetch(&mut *tx);
            let mut counter: Option<Counter> = None;
            while let Some((school_id, record_id, bytes)) = rows.try_next().await? {
                if counter
                    .as_ref()
                    .is_none_or(|c| c.cutter.school_id() != school_id)
                {
                    if let Some(done) = counter.take() {
                        merge(&mut schools, done.finish());
                    }
                    counter = Some(Counter::new(quarter, school_id, limits));
                }
                if let Some(c) = counter.as_mut() {
                    c.offer(record_id, count(bytes) as usize);
                }
            }
            if let Some(done) = counter.take() {
                merge(&mut schools, done.finish());
            }
        }
        tx.rollback().await?;
        schools.sort_by(|a, b| a.school_id.cmp(&b.school_id));
        Ok(QuarterPlan {
            has_grades,
            schools,
        })
    }
}

fn merge(schools: &mut Vec<SchoolPlan>, plan: SchoolPlan) {
    match schools.iter_mut().find(|s| s.school_id == plan.school_id) {
        Some(existing) => existing.add(&plan),
        None => schools.push(plan),
    }
}

/// Counts what the store's batch cutter (batches.rs) cuts, saving nothing.
struct Counter<'a> {
    cutter: Cutter<'a>,
    plan: SchoolPlan,
}

impl<'a> Counter<'a> {
    fn new(quarter: &'a Quarter, school_id: String, limits: BatchLimits) -> Self {
        Self {
            cutter: Cutter::new(quarter, &school_id, limits),
            plan: SchoolPlan {
                school_id,
                ..SchoolPlan::default()
            },
        }
    }

    fn offer(&mut self, record_id: String, bytes: usize) {
        match self.cutter.offer(record_id, bytes) {
            Offer::Oversize { .. } => self.plan.oversize_records += 1,
            Offer::Taken(Some(closed)) => self.count(&closed),
            Offer::Taken(None) => {}
        }
    }

    fn count(&mut self, batch: &OpenBatch) {
        self.plan.new_batches += 1;
        self.plan.new_records += batch.records as u64;
        self.plan.new_bytes += self.cutter.encoded_len(batch.records, batch.record_bytes) as u64;
    }

    fn finish(mut self) -> SchoolPlan {
        if let Some(last) = self.cutter.close() {
            self.count(&last);
        }
        self.plan
    }
}
