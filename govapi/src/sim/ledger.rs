//! What the simulated registry holds and what it saw: the stored records (by record id,
//! with a per-quarter index for the query endpoints), the idempotency table, and the
//! [`Ledger`] a test reads to check exactly-once delivery and rate discipline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::rate::TightSpan;
use crate::contract::{RecordHash, SchoolCount};

/// The simulator's account of everything that reached it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Ledger {
    /// Per record id: how often it was really upserted, and by which batches.
    #[serde(default)]
    pub records: BTreeMap<String, RecordLedger>,
    /// Record ids dropped by `p_silent_loss`, once per loss.
    pub silently_lost: Vec<String>,
    /// Per idempotency key: answers served as replays.
    pub replays: BTreeMap<Uuid, u32>,
    /// Most API requests (admitted or not) that arrived within one sliding rate window.
    pub max_requests_in_window: u32,
    /// The shortest time (ms) in which rate-limit + 1 requests arrived, admitted or not:
    /// above the window, the margin a client kept; below it, one was refused. `None`
    /// without a limit or before that many requests.
    #[serde(default)]
    pub tightest_span_ms: Option<f64>,
    /// The few tightest of those spans, with the kinds of request that opened and closed
    /// them: where a client's margin went.
    #[serde(default)]
    pub tightest_spans: Vec<TightSpan>,
    /// The wall clock (ms since the Unix epoch) that the spans' `at_ms` count from.
    #[serde(default)]
    pub started_unix_ms: u64,
    /// API answers by status; connections closed without an answer are not here.
    pub status_counts: BTreeMap<u16, u64>,
    pub requests_total: u64,
    /// `POST /v1/grade-batches` arrivals, admitted or not: the sends, without token
    /// requests and reads.
    #[serde(default)]
    pub batch_posts: u64,
    pub batches_committed: u64,
    /// Batch POSTs answered 401 (token missing, unknown, expired or revoked): each one a
    /// request of the budget spent on a stale token.
    #[serde(default)]
    pub posts_unauthorized: u64,
    /// Batch POSTs answered with the gateway's 403 HTML page (`p_403_html`).
    #[serde(default)]
    pub posts_forbidden: u64,
    /// Batch POSTs answered 400 naming a record not in the batch (`p_400_unnamed`).
    #[serde(default)]
    pub posts_unnamed_400: u64,
    pub tokens_issued: u64,
    /// API arrivals per whole second since the simulator started.
    pub arrivals_per_second: Vec<u32>,
    /// Committed batches whose connection was closed with no answer (`p_commit_drop`).
    #[serde(default)]
    pub connections_dropped: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordLedger {
    pub applied: u32,
    pub batches: Vec<Uuid>,
}

impl Ledger {
    pub(crate) fn applied(&mut self, record_id: &str, batch: Uuid) {
        let entry = self.records.entry(record_id.to_string()).or_default();
        entry.applied += 1;
        entry.batches.push(batch);
    }
}

#[derive(Debug, Clone)]
struct Stored {
    quarter: String,
    school_id: String,
    sha256: String,
}

/// The registry's current content: one row per record id, upserted.
#[derive(Debug, Default)]
pub(crate) struct RecordStore {
    /// A B-tree, not a hash map: a hash map grows by rehashing all its rows at once, and at
    /// ~917k rows that held the simulator's lock for some 300 ms, so arrivals waited and
    /// were stamped together: a burst the client never sent (8 429s in a 1M run at 20/s).
    rows: BTreeMap<String, Stored>,
    by_quarter: HashMap<String, BTreeSet<String>>,
}

/// A record as it is about to be stored.
#[derive(Debug, Clone)]
pub(crate) struct NewRecord {
    pub record_id: String,
    pub quarter: String,
    pub school_id: String,
    pub sha256: String,
}

impl RecordStore {
    pub fn upsert(&mut self, r: NewRecord) {
        let row = Stored {
            quarter: r.quarter.clone(),
            school_id: r.school_id,
            sha256: r.sha256,
        };
        if let Some(old) = self.rows.insert(r.record_id.clone(), row)
            && old.quarter != r.quarter
            && let Some(ids) = self.by_quarter.get_mut(&old.quarter)
        {
            ids.remove(&r.record_id);
        }
        self.by_quarter
            .entry(r.quarter)
            .or_default()
            .insert(r.record_id);
    }

    /// Records per school in the quarter, sorted by school id.
    pub fn summary(&self, quarter: &str) -> Vec<SchoolCount> {
        let mut counts = BTreeMap::<&str, u64>::new();
        for id in self.by_quarter.get(quarter).into_iter().flatten() {
            *counts.entry(self.rows[id].school_id.as_str()).or_default() += 1;
        }
        let to_count = |(school, records): (&str, u64)| SchoolCount {
            school_id: school.to_string(),
            records,
        };
        counts.into_iter().map(to_count).collect()
    }

    /// Up to `limit` hashes after `after`, sorted by record id, and whether more follow.
    pub fn page(
        &self,
        quarter: &str,
        school: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<RecordHash>, bool) {
        let Some(ids) = self.by_quarter.get(quarter) else {
            return (Vec::new(), false);
        };
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
        let mut matching = ids
            .range((start, Bound::Unbounded))
            .map(|id| (id, &self.rows[id]))
            .filter(|(_, row)| school.is_none_or(|s| row.school_id == s));
        let page = matching
            .by_ref()
            .take(limit)
            .map(|(id, row)| RecordHash {
                record_id: id.clone(),
                sha256: row.sha256.clone(),
            })
            .collect();
        (page, matching.next().is_some())
    }
}

/// A stored answer, replayed for a repeated idempotency key.
#[derive(Debug, Clone)]
pub(crate) struct StoredAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
enum KeyState {
    InProgress {
        body_sha: [u8; 32],
    },
    Done {
        body_sha: [u8; 32],
        answer: StoredAnswer,
    },
}

/// What a new request with an idempotency key should do.
#[derive(Debug)]
pub(crate) enum Claim {
    Fresh,
    Replay(StoredAnswer),
    DifferentBody,
    InProgress,
}

/// Idempotency keys and their outcome.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    keys: HashMap<Uuid, KeyState>,
}

impl KeyTable {
    pub fn claim(&mut self, key: Uuid, body_sha: [u8; 32]) -> Claim {
        match self.keys.get(&key) {
            None => {
                self.keys.insert(key, KeyState::InProgress { body_sha });
                Claim::Fresh
            }
            Some(KeyState::InProgress { .. }) => Claim::InProgress,
            Some(KeyState::Done {
                body_sha: sha,
                answer,
            }) if *sha == body_sha => Claim::Replay(answer.clone()),
            Some(KeyState::Done { .. }) => Claim::DifferentBody,
        }
    }

    pub fn finish(&mut self, key: Uuid, answer: StoredAnswer) {
        if let Some(KeyState::InProgress { body_sha }) = self.keys.get(&key) {
            let body_sha = *body_sha;
            self.keys.insert(key, KeyState::Done { body_sha, answer });
        }
    }

    /// Forgets a claim whose processing died, so that the client can try again.
    pub fn release(&mut self, key: Uuid) {
        if matches!(self.keys.get(&key), Some(KeyState::InProgress { .. })) {
            self.keys.remove(&key);
        }
    }

    /// The stored answer of a batch that was committed (201).
    pub fn committed(&self, key: Uuid) -> Option<&StoredAnswer> {
        match self.keys.get(&key) {
            Some(KeyState::Done { answer, .. }) if answer.status == 201 => Some(answer),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, quarter: &str, school: &str) -> NewRecord {
        NewRecord {
            record_id: id.into(),
            quarter: quarter.into(),
            school_id: school.into(),
            sha256: format!("h-{id}"),
        }
    }

    #[test]
    fn upsert_moves_a_record_between_quarters() {
        let mut store = RecordStore::default();
        store.upsert(rec("r1", "2026-Q3", "s1"));
        store.upsert(rec("r2", "2026-Q3", "s2"));
        store.upsert(rec("r1", "2026-Q4", "s1"));
        assert_eq!(store.summary("2026-Q3").len(), 1);
        assert_eq!(store.summary("2026-Q4")[0].records, 1);
    }

    #[test]
    fn pages_in_record_id_order_with_school_filter() {
        let mut store = RecordStore::default();
        for (id, school) in [("c", "s1"), ("a", "s1"), ("b", "s2"), ("d", "s1")] {
            store.upsert(rec(id, "2026-Q4", school));
        }
        let (page, more) = store.page("2026-Q4", Some("s1"), None, 2);
        let ids: Vec<_> = page.iter().map(|r| r.record_id.as_str()).collect();
        assert_eq!((ids, more), (vec!["a", "c"], true));
        let (page, more) = store.page("2026-Q4", Some("s1"), Some("c"), 2);
        assert_eq!((page.len(), more), (1, false));
    }

    #[test]
    fn keys_replay_only_the_same_body() {
        let mut keys = KeyTable::default();
        let key = Uuid::new_v4();
        assert!(matches!(keys.claim(key, [1; 32]), Claim::Fresh));
        assert!(matches!(keys.claim(key, [1; 32]), Claim::InProgress));
        let answer = StoredAnswer {
            status: 201,
            content_type: "application/json",
            body: vec![],
        };
        keys.finish(key, answer);
        assert!(matches!(keys.claim(key, [1; 32]), Claim::Replay(_)));
        assert!(matches!(keys.claim(key, [2; 32]), Claim::DifferentBody));
        assert!(keys.committed(key).is_some());
    }
}
