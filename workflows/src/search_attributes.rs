//! gradesync's custom search attributes: what the Web UI's workflow list can show and filter
//! on (`GradesyncQuarter = "2026-Q4" AND GradesyncVerdict != "complete"`). Counts and
//! names only: no student, record or grade ever goes into one.
//!
//! `gradesync setup` registers them; a run upserts them only when its starter found them
//! registered (`SyncInput::search_attributes`), because the server fails every workflow
//! task that upserts an attribute it does not know.

use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
use temporalio_common::search_attributes::SearchAttributeKey;

/// The quarter a run syncs, e.g. `2026-Q4`.
pub const QUARTER: SearchAttributeKey<String> = SearchAttributeKey::keyword("GradesyncQuarter");
/// Where the run is: `QueryPending`, `Sending`, `WaitingToRedrive`, `Reconcile`, then its
/// verdict's name.
pub const PHASE: SearchAttributeKey<String> = SearchAttributeKey::keyword("GradesyncPhase");
/// `complete`, `needs_correction` or `incomplete`, once Reconcile has judged the quarter.
pub const VERDICT: SearchAttributeKey<String> = SearchAttributeKey::keyword("GradesyncVerdict");
/// Records the API confirmed so far (the whole quarter, over continued runs).
pub const RECORDS_SYNCED: SearchAttributeKey<i64> =
    SearchAttributeKey::int("GradesyncRecordsSynced");
/// Records the quarter still owes the API: counted at the start, less those synced.
pub const RECORDS_OWED: SearchAttributeKey<i64> = SearchAttributeKey::int("GradesyncRecordsOwed");

/// Every attribute with its type, as `gradesync setup` registers them and
/// `temporal server start-dev --search-attribute NAME=TYPE` names them.
pub const ALL: [(&str, IndexedValueType); 5] = [
    ("GradesyncQuarter", IndexedValueType::Keyword),
    ("GradesyncPhase", IndexedValueType::Keyword),
    ("GradesyncVerdict", IndexedValueType::Keyword),
    ("GradesyncRecordsSynced", IndexedValueType::Int),
    ("GradesyncRecordsOwed", IndexedValueType::Int),
];

/// `NAME=Type` for each attribute, the form of `temporal server start-dev --search-attribute`.
pub fn dev_server_flags() -> Vec<String> {
    ALL.iter()
        .map(|(name, kind)| format!("{name}={}", type_name(*kind)))
        .collect()
}

/// The type as the `temporal` CLI and `tcld` spell it.
pub fn type_name(kind: IndexedValueType) -> &'static str {
    match kind {
        IndexedValueType::Int => "Int",
        _ => "Keyword",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_the_keys_the_workflows_upsert() {
        let keys = [
            QUARTER.name(),
            PHASE.name(),
            VERDICT.name(),
            RECORDS_SYNCED.name(),
            RECORDS_OWED.name(),
        ];
        assert_eq!(keys, ALL.map(|(name, _)| name));
        assert_eq!(RECORDS_OWED.indexed_value_type(), ALL[4].1);
        assert_eq!(QUARTER.indexed_value_type(), ALL[0].1);
    }

    #[test]
    fn dev_server_flags_name_each_attribute_with_its_type() {
        assert_eq!(
            dev_server_flags(),
            [
                "GradesyncQuarter=Keyword",
                "GradesyncPhase=Keyword",
                "GradesyncVerdict=Keyword",
                "GradesyncRecordsSynced=Int",
                "GradesyncRecordsOwed=Int",
            ]
        );
    }
}
