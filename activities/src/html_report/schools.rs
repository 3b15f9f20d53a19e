//! The per-school table: what the report lists per school (rejected with the API's
//! reasons, dead-lettered, not sent, missing or different at the API), beside the store's
//! count of each school's records and of those confirmed.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::store::SchoolStatus;

/// One record the report lists as not confirmed (a row of its JSON `records`).
#[derive(Debug, Clone, Deserialize)]
pub struct ListedRecord {
    pub school_id: String,
    pub record_id: String,
    pub state: String,
    #[serde(default)]
    pub batch_id: Option<String>,
    #[serde(default)]
    pub reason: String,
}

/// One school's line of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchoolRow {
    pub school_id: String,
    /// Every record of the school in the store.
    pub records: u64,
    /// Synced in the store and not listed missing or different at the API; `None` when
    /// the API's listing could not be read (nothing is confirmed).
    pub confirmed: Option<u64>,
    pub rejected: u64,
    pub dead: u64,
    pub unsent: u64,
    pub missing: u64,
    pub mismatch: u64,
    pub unexpected: u64,
    /// `(state, reason, records)`: the distinct reasons of rejected and dead records,
    /// most frequent first.
    pub reasons: Vec<(String, String, u64)>,
}

impl SchoolRow {
    /// Whether anything of the school is not confirmed at the API.
    pub fn needs_attention(&self) -> bool {
        self.rejected + self.dead + self.unsent + self.missing + self.mismatch > 0
            || self.confirmed.is_none()
    }
}

/// The rows of every school the store or the report knows, by school id.
pub fn rows(
    store: &[SchoolStatus],
    records: &[ListedRecord],
    listing_read: bool,
) -> Vec<SchoolRow> {
    let mut by_school: BTreeMap<&str, SchoolRow> = BTreeMap::new();
    let mut synced: BTreeMap<&str, u64> = BTreeMap::new();
    for s in store {
        let row = by_school.entry(&s.school_id).or_default();
        row.records = s.pending + s.batched + s.synced + s.rejected + s.dead;
        synced.insert(&s.school_id, s.synced);
    }
    let mut reasons: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for r in records {
        let row = by_school.entry(&r.school_id).or_default();
        match r.state.as_str() {
            "rejected" => row.rejected += 1,
            "dead" => row.dead += 1,
            "unsent" => row.unsent += 1,
            "missing" => row.missing += 1,
            "mismatch" => row.mismatch += 1,
            _ => row.unexpected += 1,
        }
        if matches!(r.state.as_str(), "rejected" | "dead") {
            *reasons
                .entry((r.school_id.as_str(), r.state.as_str(), r.reason.as_str()))
                .or_default() += 1;
        }
    }
    for ((school, state, reason), n) in reasons {
        if let Some(row) = by_school.get_mut(school) {
            row.reasons.push((state.to_string(), reason.to_string(), n));
        }
    }
    by_school
        .into_iter()
        .map(|(school, mut row)| {
            row.school_id = school.to_string();
            let synced = synced.get(school).copied().unwrap_or(0);
            row.confirmed = listing_read.then(|| synced.saturating_sub(row.missing + row.mismatch));
            row.reasons
                .sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(school: &str, id: &str, state: &str, reason: &str) -> ListedRecord {
        ListedRecord {
            school_id: school.into(),
            record_id: id.into(),
            state: state.into(),
            batch_id: None,
            reason: reason.into(),
        }
    }

    fn status(school: &str, synced: u64, rejected: u64, dead: u64) -> SchoolStatus {
        SchoolStatus {
            school_id: school.into(),
            pending: 0,
            batched: 0,
            synced,
            rejected,
            dead,
        }
    }

    #[test]
    fn each_school_counts_its_own_records_and_reasons() {
        let store = [status("s1", 10, 2, 0), status("s2", 5, 0, 3)];
        let records = [
            listed("s1", "r1", "rejected", "grade: out of scale"),
            listed("s1", "r2", "rejected", "grade: out of scale"),
            listed("s2", "r3", "dead", "the API is unavailable (503)"),
            listed("s2", "r4", "dead", "the API is unavailable (503)"),
            listed("s2", "r5", "dead", "the API is unavailable (503)"),
            listed("s2", "r6", "missing", "absent"),
        ];
        let rows = rows(&store, &records, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            SchoolRow {
                school_id: "s1".into(),
                records: 12,
                confirmed: Some(10),
                rejected: 2,
                reasons: vec![("rejected".into(), "grade: out of scale".into(), 2)],
                ..SchoolRow::default()
            }
        );
        assert_eq!(rows[1].records, 8);
        assert_eq!(rows[1].dead, 3);
        assert_eq!(rows[1].missing, 1);
        // A record synced in the store but missing at the API is not confirmed.
        assert_eq!(rows[1].confirmed, Some(4));
        assert!(rows[1].needs_attention());
        assert!(rows[0].needs_attention());
    }

    #[test]
    fn nothing_is_confirmed_without_the_listing() {
        let rows = rows(&[status("s1", 10, 0, 0)], &[], false);
        assert_eq!(rows[0].confirmed, None);
        assert!(rows[0].needs_attention());
        let rows = super::rows(&[status("s1", 10, 0, 0)], &[], true);
        assert!(!rows[0].needs_attention());
    }

    #[test]
    fn a_school_only_the_report_names_still_gets_a_row() {
        let rows = rows(&[], &[listed("(unknown)", "x", "unexpected", "")], true);
        assert_eq!(rows[0].school_id, "(unknown)");
        assert_eq!(rows[0].unexpected, 1);
    }
}
