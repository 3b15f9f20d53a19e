//! A dry run of batching: what the next run would send for a quarter, read from the store
//! without writing anything. Prepared (cut, unconfirmed) batches go as they are; pending
//! records are cut by the same rules as `PrepBatch` (per school, in record_id order, by
//! record count and exact encoded bytes, a record too large even alone rejected).

use futures::TryStreamExt;
use gradesync_govapi::Quarter;
use gradesync_govapi::contract::envelope_bytes;
use serde::{Deserialize, Serialize};

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
        let mut tx = self.pool.begin().await?;
        let has_grades: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM grades WHERE quarter = ?)")
                .bind(&q)
                .fetch_one(&mut *tx)
                .await?;
        let prepared: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT school_id, COUNT(*), COALESCE(SUM(records), 0), COALESCE(SUM(bytes), 0) \
             FROM batches WHERE quarter = ? AND status = 'prepared' \
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
            let mut rows = sqlx::query_as::<_, (String, i64)>(
                "SELECT school_id, bytes FROM grades WHERE quarter = ? AND status = 'pending' \
                 ORDER BY school_id, record_id",
            )
            .bind(&q)
            .fetch(&mut *tx);
            let mut cutter: Option<Cutter> = None;
            while let Some((school_id, bytes)) = rows.try_next().await? {
                if cutter.as_ref().is_none_or(|c| c.school_id != school_id) {
                    if let Some(done) = cutter.take() {
                        merge(&mut schools, done.finish());
                    }
                    cutter = Some(Cutter::new(quarter, school_id, limits));
                }
                if let Some(c) = cutter.as_mut() {
                    c.offer(count(bytes) as usize);
                }
            }
            if let Some(done) = cutter.take() {
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

/// The counting twin of the store's batch cutter (batches.rs): same limits, same
/// measurements through `envelope_bytes`, nothing saved. `tests/plan.rs` checks that both
/// cut the same batches.
struct Cutter<'a> {
    quarter: &'a Quarter,
    school_id: String,
    limits: BatchLimits,
    /// Records and summed record bytes of the batch being filled.
    open: Option<(usize, usize)>,
    plan: SchoolPlan,
}

impl<'a> Cutter<'a> {
    fn new(quarter: &'a Quarter, school_id: String, limits: BatchLimits) -> Self {
        Self {
            quarter,
            plan: SchoolPlan {
                school_id: school_id.clone(),
                ..SchoolPlan::default()
            },
            school_id,
            limits,
            open: None,
        }
    }

    fn encoded_len(&self, records: usize, record_bytes: usize) -> usize {
        envelope_bytes(self.quarter, &self.school_id, records) + record_bytes
    }

    fn offer(&mut self, bytes: usize) {
        if self.encoded_len(1, bytes) > self.limits.max_bytes {
            self.plan.oversize_records += 1;
            return;
        }
        let full = self.open.is_some_and(|(records, record_bytes)| {
            records >= self.limits.max_records
                || self.encoded_len(records + 1, record_bytes + bytes) > self.limits.max_bytes
        });
        if full {
            self.close();
        }
        let (records, record_bytes) = self.open.get_or_insert((0, 0));
        *records += 1;
        *record_bytes += bytes;
    }

    fn close(&mut self) {
        if let Some((records, record_bytes)) = self.open.take() {
            self.plan.new_batches += 1;
            self.plan.new_records += records as u64;
            self.plan.new_bytes += self.encoded_len(records, record_bytes) as u64;
        }
    }

    fn finish(mut self) -> SchoolPlan {
        self.close();
        self.plan
    }
}
