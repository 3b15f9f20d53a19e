//! The grades store against real SQLite files: import, batching, resume, the conditional
//! outcome transitions, dead letters, rate slots, counts and reports.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gradesync_activities::read_ahead::digest;
use gradesync_activities::store::{
    BatchLimits, CheckedPage, ImportReport, LaneStart, Now, RateSlot, SlotReach, Split, Store,
    StoreError, StoredReport, TakeOff, Unreadable, scratch,
};
use gradesync_govapi::Quarter;
use gradesync_govapi::contract::{MAX_BODY_BYTES, encode_batch, record_sha256};
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

const SCHOOL: &str = "s1";
/// High enough that no test reaches it unless it means to.
const MAX_CUTS: u32 = 10;

fn q() -> Quarter {
    "2026-Q3".parse().unwrap()
}

/// A temp directory (kept alive by the caller) and a store in a file inside it.
async fn temp_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&url(&dir).await).await.unwrap();
    (dir, store)
}

/// See [`scratch::url_for`]: SQLite, or PostgreSQL when the tests run against it.
async fn url(dir: &TempDir) -> String {
    scratch::url_for(dir.path()).await.unwrap()
}

/// For what only SQLite has (its file, its migrations history, its query plans).
fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("grades.db").display())
}

/// A store that lives as long as the test: in memory, or a fresh PostgreSQL database.
async fn scratch_store() -> Store {
    Store::connect(&scratch::fresh_url().await.unwrap())
        .await
        .unwrap()
}

fn record(id: &str, school: &str, grade: &str) -> Value {
    json!({"record_id": id, "school_id": school, "student_id": format!("st-{id}"),
           "course_code": "MATH", "quarter": "2026-Q3", "grade": grade, "teacher": "Ms X"})
}

fn lines(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

async fn import(store: &Store, text: &str) -> ImportReport {
    store.import_jsonl(text.as_bytes(), |_| {}).await.unwrap()
}

/// `n` records of `SCHOOL` with ids r0000.., imported.
async fn seed(store: &Store, n: usize) -> Vec<Value> {
    let records: Vec<Value> = (0..n)
        .map(|i| record(&format!("r{i:04}"), SCHOOL, "A"))
        .collect();
    let report = import(store, &lines(&records)).await;
    assert_eq!(report.inserted, n as u64);
    records
}

async fn counts(store: &Store, school: &str) -> [u64; 5] {
    let all = store.status_counts(&q()).await.unwrap();
    let s = all
        .iter()
        .find(|s| s.school_id == school)
        .expect("school counted");
    [s.pending, s.batched, s.synced, s.rejected, s.dead]
}

#[tokio::test]
async fn import_reports_bad_lines_by_number_and_keeps_every_valid_one() {
    let (_dir, store) = temp_store().await;
    let mut missing = record("r3", SCHOOL, "A");
    missing.as_object_mut().unwrap().remove("grade");
    let mut bad_quarter = record("r4", SCHOOL, "SECRET");
    bad_quarter["quarter"] = json!("2026-Q5");
    let mut text = Vec::new();
    for line in [
        record("r1", SCHOOL, "A").to_string(),                  // 1
        r#"{"record_id": "r2", "grade": "SECRET""#.to_string(), // 2 malformed
        missing.to_string(),                                    // 3
        bad_quarter.to_string(),                                // 4
        record("r1", SCHOOL, "B").to_string(),                  // 5 duplicate
        String::new(),                                          // 6 blank
        "   \t".to_string(),                                    // 7 blank
        record("r5", SCHOOL, "C").to_string(),                  // 8
    ] {
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    text.extend_from_slice(b"{\"record_id\": \"r6\", \"grade\": \"\xff\"}\n"); // 9 not UTF-8
    text.extend_from_slice(&vec![b'x'; 5_242_880]); // 10 far too long
    text.push(b'\n');
    let huge = record("r7", SCHOOL, &"A".repeat(MAX_BODY_BYTES)); // 11 valid but oversize
    text.extend_from_slice(format!("{huge}\r\n").as_bytes());
    text.extend_from_slice(format!("{}\r\n", record("r8", SCHOOL, "D")).as_bytes()); // 12 CRLF
    text.extend_from_slice(record("r9", SCHOOL, "E").to_string().as_bytes()); // 13 no newline

    let mut progress = Vec::new();
    let report = store
        .import_jsonl(text.as_slice(), |n| progress.push(n))
        .await
        .unwrap();

    assert_eq!(report.lines, 13);
    assert_eq!(
        (report.inserted, report.updated, report.unchanged),
        (4, 0, 0)
    );
    assert_eq!(progress.last(), Some(&13));
    let got: Vec<(u64, &str)> = report
        .bad_lines
        .iter()
        .map(|b| (b.line, b.reason.as_str()))
        .collect();
    assert_eq!(
        got[0],
        (2, "invalid JSON: the line ends inside a value (column 37)")
    );
    assert_eq!(got[1], (3, "missing required field `grade`"));
    assert_eq!(got[2].0, 4);
    assert!(
        got[2].1.contains("`quarter`") && !got[2].1.contains("2026-Q5"),
        "{}",
        got[2].1
    );
    assert_eq!(
        got[3],
        (5, "duplicate record_id in this file (first seen on line 1)")
    );
    assert_eq!(got[4], (9, "invalid UTF-8 at byte 31"));
    assert_eq!(
        got[5],
        (
            10,
            "record is 5242880 bytes; the API accepts at most 1048576 per request"
        )
    );
    assert_eq!(got[6].0, 11);
    assert!(got[6].1.starts_with("record is 1048") && got[6].1.ends_with("per request"));
    assert_eq!(got.len(), 7);
    assert_eq!(report.bad_line_count, 7);
    for bad in &report.bad_lines {
        assert!(
            !bad.reason.contains("SECRET") && !bad.reason.contains("st-"),
            "{}",
            bad.reason
        );
    }
    assert_eq!(counts(&store, SCHOOL).await, [4, 0, 0, 0, 0]);
}

#[tokio::test]
async fn import_skips_a_byte_order_mark_and_reports_progress() {
    let (_dir, store) = temp_store().await;
    let records: Vec<Value> = (0..12_345)
        .map(|i| record(&format!("r{i:05}"), SCHOOL, "A"))
        .collect();
    let text = format!("\u{feff}{}", lines(&records));
    let mut progress = Vec::new();
    let report = store
        .import_jsonl(text.as_bytes(), |n| progress.push(n))
        .await
        .unwrap();
    assert_eq!(
        (report.lines, report.inserted, report.bad_line_count),
        (12_345, 12_345, 0)
    );
    assert!(progress.len() >= 2, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(progress.last(), Some(&12_345));
}

#[tokio::test]
async fn import_stores_canonical_json_and_its_hash() {
    let (_dir, store) = temp_store().await;
    let raw = r#"{"teacher":"Ms X","grade":"A","quarter":"2026-Q3","course_code":"MATH","student_id":"st","school_id":"s1","record_id":"r1","score":1.0}"#;
    import(&store, raw).await;
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    let body = store.batch_body(chunk.batches[0].batch_id).await.unwrap();
    let sent: Value = serde_json::from_slice(&body.body).unwrap();
    let value: Value = serde_json::from_str(raw).unwrap();
    assert_eq!(sent["records"].as_array().map(Vec::len), Some(1));
    let text = String::from_utf8(body.body).unwrap();
    assert!(text.contains(r#"{"course_code":"MATH","grade":"A","quarter":"2026-Q3","record_id":"r1","school_id":"s1","score":1,"student_id":"st","teacher":"Ms X"}"#));
    store
        .mark_synced(chunk.batches[0].batch_id, "rcpt")
        .await
        .unwrap();
    let hashes = store.synced_hashes_between(&q(), None, None).await.unwrap();
    assert_eq!(
        hashes,
        vec![(SCHOOL.to_string(), "r1".to_string(), record_sha256(&value))]
    );
}

#[tokio::test]
async fn reimport_keeps_unchanged_records_and_requeues_changed_ones() {
    let (_dir, store) = temp_store().await;
    seed(&store, 3).await;
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .mark_synced(chunk.batches[0].batch_id, "rcpt-1")
            .await
            .unwrap(),
        3
    );

    // Same content in another key order and spacing is unchanged; r0001 changes; r0009 is new.
    let reordered = r#"{ "grade":"A", "teacher":"Ms X", "record_id":"r0000", "school_id":"s1", "student_id":"st-r0000", "course_code":"MATH", "quarter":"2026-Q3" }"#;
    let text = format!(
        "{reordered}\n{}\n{}\n{}\n",
        record("r0001", SCHOOL, "B"),
        record("r0002", SCHOOL, "A"),
        record("r0009", SCHOOL, "A")
    );
    let report = import(&store, &text).await;
    assert_eq!(
        (report.inserted, report.updated, report.unchanged),
        (1, 1, 2)
    );
    assert_eq!(report.superseded_batches, 0);
    // Unchanged synced records stay synced; the changed one is pending again.
    assert_eq!(counts(&store, SCHOOL).await, [2, 0, 2, 0, 0]);
    let synced: Vec<String> = store
        .synced_hashes_between(&q(), None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(synced, ["r0000", "r0002"]);

    let again = import(&store, &text).await;
    assert_eq!((again.inserted, again.updated, again.unchanged), (0, 0, 4));
}

#[tokio::test]
async fn changed_record_supersedes_its_prepared_batch() {
    let (_dir, store) = temp_store().await;
    seed(&store, 5).await;
    let first = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    let old = first.batches[0].batch_id;
    let report = import(&store, &lines(&[record("r0003", SCHOOL, "F")])).await;
    assert_eq!((report.updated, report.superseded_batches), (1, 1));
    assert_eq!(counts(&store, SCHOOL).await, [5, 0, 0, 0, 0]);
    match store.batch_body(old).await {
        Err(StoreError::BatchNotPrepared { status, .. }) => assert_eq!(status, "superseded"),
        other => panic!("expected BatchNotPrepared, got {other:?}"),
    }
    assert_eq!(store.mark_synced(old, "late").await.unwrap(), 0);
    let next = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    assert_ne!(next.batches[0].batch_id, old);
    assert_eq!(next.batches[0].records, 5);
}

#[tokio::test]
async fn prepare_cuts_by_record_count_and_measures_exact_bytes() {
    let (_dir, store) = temp_store().await;
    seed(&store, 250).await;
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 10, BatchLimits::default())
        .await
        .unwrap();
    let sizes: Vec<u64> = chunk.batches.iter().map(|b| b.records).collect();
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!((chunk.oversize_rejected, chunk.remaining_pending), (0, 0));
    let mut ids = Vec::new();
    for batch in &chunk.batches {
        let body = store.batch_body(batch.batch_id).await.unwrap();
        assert_eq!(body.body.len() as u64, batch.bytes);
        assert_eq!(
            (body.records, body.school_id.as_str(), body.quarter),
            (batch.records, SCHOOL, q())
        );
        let parsed: Value = serde_json::from_slice(&body.body).unwrap();
        assert_eq!(parsed["batch_id"], json!(batch.batch_id));
        ids.extend(
            parsed["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["record_id"].as_str().unwrap().to_string()),
        );
    }
    let expected: Vec<String> = (0..250).map(|i| format!("r{i:04}")).collect();
    assert_eq!(ids, expected, "every record once, in record_id order");
    assert_eq!(counts(&store, SCHOOL).await, [0, 250, 0, 0, 0]);
}

#[tokio::test]
async fn prepare_honours_max_batches_and_hands_out_prepared_ones_first() {
    let (_dir, store) = temp_store().await;
    seed(&store, 250).await;
    let first = store
        .prepare_batches(&q(), SCHOOL, 2, BatchLimits::default())
        .await
        .unwrap();
    assert_eq!(first.batches.len(), 2);
    assert_eq!(first.remaining_pending, 50);
    let again = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    assert_eq!(again.batches.len(), 1);
    assert!(first.batches.contains(&again.batches[0]));
    assert_eq!(
        again.remaining_pending, 150,
        "one prepared batch not handed out, plus 50 pending"
    );
    let all = store
        .prepare_batches(&q(), SCHOOL, 10, BatchLimits::default())
        .await
        .unwrap();
    assert_eq!(all.batches.len(), 3);
    for b in &first.batches {
        assert!(all.batches[..2].contains(b));
    }
    assert_eq!(all.batches[2].records, 50);
    assert_eq!(all.remaining_pending, 0);
}

#[tokio::test]
async fn prepare_cuts_by_bytes() {
    let (_dir, store) = temp_store().await;
    let records: Vec<Value> = (0..7)
        .map(|i| {
            let mut r = record(&format!("big{i}"), SCHOOL, "A");
            r["comment"] = json!("c".repeat(300_000));
            r
        })
        .collect();
    import(&store, &lines(&records)).await;
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 10, BatchLimits::default())
        .await
        .unwrap();
    let sizes: Vec<u64> = chunk.batches.iter().map(|b| b.records).collect();
    assert_eq!(sizes, [3, 3, 1]);
    for batch in &chunk.batches {
        let body = store.batch_body(batch.batch_id).await.unwrap();
        assert_eq!(body.body.len() as u64, batch.bytes);
        assert!(batch.bytes <= MAX_BODY_BYTES as u64);
    }
}

#[tokio::test]
async fn prepare_closes_a_batch_exactly_at_the_byte_limit() {
    let (_dir, store) = temp_store().await;
    seed(&store, 10).await;
    let one = store
        .prepare_batches(
            &q(),
            SCHOOL,
            1,
            BatchLimits {
                max_records: 1,
                max_bytes: 10_000,
            },
        )
        .await
        .unwrap();
    let body = store.batch_body(one.batches[0].batch_id).await.unwrap();
    let three_bytes = {
        let recs: Vec<String> = (1..4)
            .map(|i| record(&format!("r{i:04}"), SCHOOL, "A"))
            .map(|r| gradesync_govapi::contract::canonical_json(&r))
            .collect();
        let refs: Vec<&str> = recs.iter().map(String::as_str).collect();
        encode_batch(Uuid::nil(), &q(), SCHOOL, &refs)
            .unwrap()
            .len()
    };
    assert_eq!(one.batches[0].bytes, body.body.len() as u64);
    // A limit of exactly three records' body fits three, not four.
    let limits = BatchLimits {
        max_records: 100,
        max_bytes: three_bytes,
    };
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 10, limits)
        .await
        .unwrap();
    let sizes: Vec<u64> = chunk.batches.iter().map(|b| b.records).collect();
    assert_eq!(sizes, [1, 3, 3, 3]);
    assert!(chunk.batches.iter().all(|b| b.bytes <= three_bytes as u64));
    assert_eq!(chunk.batches[1].bytes, three_bytes as u64);
}

#[tokio::test]
async fn prepare_rejects_a_record_that_cannot_fit_any_batch() {
    let (_dir, store) = temp_store().await;
    let mut big = record("r2", SCHOOL, "A");
    big["comment"] = json!("c".repeat(20_000));
    let recs = [record("r1", SCHOOL, "A"), big, record("r3", SCHOOL, "A")];
    import(&store, &lines(&recs)).await;
    let limits = BatchLimits {
        max_records: 100,
        max_bytes: 10_000,
    };
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 10, limits)
        .await
        .unwrap();
    assert_eq!(chunk.oversize_rejected, 1);
    assert_eq!(chunk.batches.len(), 1);
    assert_eq!(chunk.batches[0].records, 2);
    let body = store.batch_body(chunk.batches[0].batch_id).await.unwrap();
    assert_eq!(body.body.len() as u64, chunk.batches[0].bytes);
    assert_eq!(counts(&store, SCHOOL).await, [0, 2, 0, 1, 0]);
    // Unchanged on re-import: still rejected, not silently pending again.
    let report = import(&store, &lines(&recs[1..2])).await;
    assert_eq!(report.unchanged, 1);
    assert_eq!(counts(&store, SCHOOL).await, [0, 2, 0, 1, 0]);
}

#[tokio::test]
async fn resume_after_restart_returns_the_same_batches_and_bytes() {
    let (dir, store) = temp_store().await;
    seed(&store, 250).await;
    let before = store
        .prepare_batches(&q(), SCHOOL, 10, BatchLimits::default())
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for b in &before.batches {
        store
            .record_attempt(b.batch_id, "503 Service Unavailable")
            .await
            .unwrap();
        bodies.push(store.batch_body(b.batch_id).await.unwrap().body);
    }
    drop(store);
    let store = Store::connect(&url(&dir).await).await.unwrap();
    let after = store
        .prepare_batches(&q(), SCHOOL, 10, BatchLimits::default())
        .await
        .unwrap();
    let mut sorted_before = before.batches.clone();
    let mut sorted_after = after.batches.clone();
    sorted_before.sort_by_key(|b| b.batch_id);
    sorted_after.sort_by_key(|b| b.batch_id);
    assert_eq!(sorted_before, sorted_after);
    for (b, body) in before.batches.iter().zip(&bodies) {
        assert_eq!(&store.batch_body(b.batch_id).await.unwrap().body, body);
        assert_eq!(
            store.last_outcome(b.batch_id).await.unwrap().as_deref(),
            Some("503 Service Unavailable")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mark_synced_is_conditional_and_race_safe() {
    let (_dir, store) = temp_store().await;
    seed(&store, 6).await;
    let limits = BatchLimits {
        max_records: 3,
        ..BatchLimits::default()
    };
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 10, limits)
        .await
        .unwrap();
    let (a, b) = (chunk.batches[0].batch_id, chunk.batches[1].batch_id);

    let (x, y) = tokio::join!(
        store.mark_synced(a, "rcpt-a"),
        store.mark_synced(a, "rcpt-a")
    );
    let mut changed = [x.unwrap(), y.unwrap()];
    changed.sort();
    assert_eq!(
        changed,
        [0, 3],
        "the racing second execution changes nothing"
    );
    assert_eq!(store.mark_synced(a, "rcpt-a").await.unwrap(), 0);

    // r0004 of batch b is re-imported with a new grade before b is confirmed.
    import(&store, &lines(&[record("r0004", SCHOOL, "B")])).await;
    assert_eq!(store.mark_synced(b, "rcpt-b").await.unwrap(), 0);
    assert_eq!(counts(&store, SCHOOL).await, [3, 0, 3, 0, 0]);
    let synced: Vec<String> = store
        .synced_hashes_between(&q(), None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(synced, ["r0000", "r0001", "r0002"]);

    let unknown = store.mark_synced(Uuid::new_v4(), "x").await.unwrap_err();
    assert!(matches!(unknown, StoreError::BatchNotFound(_)));
    assert!(!unknown.is_retryable());
}

#[tokio::test]
async fn reject_batch_rejects_named_records_only() {
    let (_dir, store) = temp_store().await;
    seed(&store, 4).await;
    let first = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    let named = vec![("r0001".to_string(), "grade: not a grade".to_string())];
    let r = store
        .reject_batch(
            first.batches[0].batch_id,
            400,
            "Bad Request",
            &named,
            MAX_CUTS,
        )
        .await
        .unwrap();
    assert_eq!((r.rejected, r.requeued), (1, 3));
    assert_eq!(counts(&store, SCHOOL).await, [3, 0, 0, 1, 0]);
    // A retried call changes nothing.
    let r = store
        .reject_batch(
            first.batches[0].batch_id,
            400,
            "Bad Request",
            &named,
            MAX_CUTS,
        )
        .await
        .unwrap();
    assert_eq!((r.rejected, r.requeued), (0, 0));

    let second = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    assert_eq!(second.batches[0].records, 3);
    // A refusal that names nothing rejects nothing: the batch is dead-lettered whole.
    let r = store
        .reject_batch(
            second.batches[0].batch_id,
            400,
            "Bad Request",
            &[],
            MAX_CUTS,
        )
        .await
        .unwrap();
    assert_eq!((r.rejected, r.requeued, r.dead), (0, 0, 3));
    assert_eq!(counts(&store, SCHOOL).await, [0, 0, 0, 1, 3]);
    assert!(store.pending_counts(&q()).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreadable_source_item_never_changes_another_quarters_row_or_a_batched_one() {
    let (_dir, store) = temp_store().await;
    // r-old: synced in 2026-Q2; r0000 in a batch of 2026-Q3; r0001 pending in 2026-Q3.
    let q2: Quarter = "2026-Q2".parse().unwrap();
    let mut old = record("r-old", SCHOOL, "A");
    old["quarter"] = "2026-Q2".into();
    import(&store, &lines(&[old])).await;
    let earlier = store
        .prepare_batches(&q2, SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    store
        .mark_synced(earlier.batches[0].batch_id, "rcpt")
        .await
        .unwrap();
    seed(&store, 2).await;
    let one = BatchLimits {
        max_records: 1,
        ..BatchLimits::default()
    };
    store.prepare_batches(&q(), SCHOOL, 1, one).await.unwrap();

    let unreadable = |id: &str| Unreadable {
        record_id: id.to_string(),
        school_id: SCHOOL.to_string(),
        reason: "attribute `grade` is missing".to_string(),
    };
    let items: Vec<Unreadable> = ["r-old", "r0000", "r0001", "r-new"]
        .into_iter()
        .map(unreadable)
        .collect();
    let done = store.reject_unreadable(&q(), &items).await.unwrap();
    assert_eq!(done.rejected, 2, "{done:?}");
    assert_eq!(done.left, ["r-old", "r0000"]);
    // [pending, batched, synced, rejected, dead]
    assert_eq!(counts(&store, SCHOOL).await, [0, 1, 0, 2, 0]);
    let earlier = store.status_counts(&q2).await.unwrap();
    assert_eq!(
        (earlier.len(), earlier[0].synced, earlier[0].rejected),
        (1, 1, 0),
        "another quarter's row stays where and as it was"
    );
    // Read again, nothing more changes.
    let again = store.reject_unreadable(&q(), &items).await.unwrap();
    assert_eq!((again.rejected, again.left.len()), (2, 2));
    assert_eq!(counts(&store, SCHOOL).await, [0, 1, 0, 2, 0]);
}

#[tokio::test]
async fn dead_letter_then_requeue_resends_the_same_batch_and_bytes() {
    let (_dir, store) = temp_store().await;
    seed(&store, 5).await;
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    let id = chunk.batches[0].batch_id;
    let body = store.batch_body(id).await.unwrap().body;

    assert!(
        store
            .dead_letter(id, "503 after 12 attempts")
            .await
            .unwrap()
    );
    assert!(
        !store
            .dead_letter(id, "503 after 12 attempts")
            .await
            .unwrap(),
        "idempotent"
    );
    assert_eq!(counts(&store, SCHOOL).await, [0, 0, 0, 0, 5]);
    assert!(matches!(
        store.batch_body(id).await,
        Err(StoreError::BatchNotPrepared { .. })
    ));
    let letters = store.dead_letters(&q()).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].batch_id, letters[0].records, letters[0].alerted),
        (id, 5, false)
    );
    assert_eq!(
        (letters[0].school_id.as_str(), letters[0].error.as_str()),
        (SCHOOL, "503 after 12 attempts")
    );
    store.mark_alerted(id).await.unwrap();
    assert!(store.dead_letters(&q()).await.unwrap()[0].alerted);
    // Nothing pending, but the dead batch is not forgotten by prepare either.
    let none = store
        .prepare_batches(&q(), SCHOOL, 10, BatchLimits::default())
        .await
        .unwrap();
    assert!(none.batches.is_empty());

    assert_eq!(store.requeue_dead_letters(&q()).await.unwrap(), 1);
    assert_eq!(store.requeue_dead_letters(&q()).await.unwrap(), 0);
    assert!(store.dead_letters(&q()).await.unwrap().is_empty());
    assert_eq!(counts(&store, SCHOOL).await, [0, 5, 0, 0, 0]);
    let again = store
        .prepare_batches(&q(), SCHOOL, 10, BatchLimits::default())
        .await
        .unwrap();
    assert_eq!(again.batches, chunk.batches);
    assert_eq!(store.batch_body(id).await.unwrap().body, body);

    // Dying again after a replay is a new dead letter, alerted afresh.
    assert!(store.dead_letter(id, "503 again").await.unwrap());
    assert!(!store.dead_letters(&q()).await.unwrap()[0].alerted);
}

#[tokio::test]
async fn a_changed_record_of_a_dead_batch_stays_with_it_until_it_settles() {
    let (_dir, store) = temp_store().await;
    seed(&store, 3).await;
    let id = cut(&store, 1, 3).await[0];
    let sent = sent_body(&store, id).await;
    store.dead_letter(id, "gave up").await.unwrap();
    let report = import(&store, &lines(&[record("r0000", SCHOOL, "C")])).await;
    assert_eq!(
        (report.updated, report.held, report.superseded_batches),
        (1, 1, 0)
    );
    assert_eq!(counts(&store, SCHOOL).await, [0, 0, 0, 0, 3]);
    let letters = store.dead_letters_to_look_up(&q()).await.unwrap();
    assert_eq!(letters.iter().map(|d| d.batch_id).collect::<Vec<_>>(), [id]);
    // Where no lookup can tell, it goes again under its key with the bytes it left with.
    assert_eq!(store.requeue_dead_letters(&q()).await.unwrap(), 1);
    assert_eq!(store.batch_body(id).await.unwrap().body, sent);
    assert_eq!(counts(&store, SCHOOL).await, [0, 3, 0, 0, 0]);
}

#[tokio::test]
async fn requeue_records_sends_lost_synced_records_again() {
    let (_dir, store) = temp_store().await;
    seed(&store, 4).await;
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    store
        .mark_synced(chunk.batches[0].batch_id, "rcpt")
        .await
        .unwrap();
    let lost = vec!["r0001".to_string(), "r0003".to_string(), "nope".to_string()];
    assert_eq!(store.requeue_records(&q(), &lost).await.unwrap(), 2);
    assert_eq!(store.requeue_records(&q(), &lost).await.unwrap(), 0);
    assert_eq!(counts(&store, SCHOOL).await, [2, 0, 2, 0, 0]);
    let next = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    assert_ne!(next.batches[0].batch_id, chunk.batches[0].batch_id);
    assert_eq!(next.batches[0].records, 2);
}

/// A claim takes whatever slot comes next, however far ahead.
const AHEAD: SlotReach = SlotReach {
    ahead_ms: i64::MAX,
    behind_ms: 0,
};

/// How long after its start a claimed request may leave, in these tests.
const LEAVE_WITHIN: i64 = 10_000;

/// A claim that takes whatever slot comes next, however far ahead (the store's own
/// arithmetic, without a clock), and whose request leaves on time: its departure is
/// reported at its start. A claim that finds every due lane still waiting to hear from
/// another task's request asks again.
async fn claim(
    store: &Store,
    name: &str,
    capacity: u32,
    window: i64,
    now: i64,
) -> Result<i64, StoreError> {
    loop {
        match store
            .claim_rate_slot(name, capacity, window, Now::At(now), AHEAD, LEAVE_WITHIN)
            .await?
        {
            RateSlot::Granted(slot) => {
                assert!(
                    store
                        .settle_rate_slot(name, window, slot, Some(slot.start_ms))
                        .await?
                );
                return Ok(slot.start_ms);
            }
            RateSlot::Unsettled(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
            RateSlot::NotYet(at) => panic!("an unbounded claim was refused until {at}"),
        }
    }
}

/// No window of `window` ms holds more than `capacity` of the sorted slots.
fn max_in_window(slots: &[i64], window: i64) -> usize {
    (0..slots.len())
        .map(|i| {
            slots[i..]
                .iter()
                .take_while(|&&t| t < slots[i] + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_lanes_fill_each_window_across_tasks_and_stores() {
    let (dir, store) = temp_store().await;
    let other = Store::connect(&url(&dir).await).await.unwrap();
    let now = 1_000_000;
    let window = 100;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            claim(&s, "gov", 2, window, now).await
        }));
    }
    let mut slots = Vec::new();
    for t in tasks {
        slots.push(t.await.unwrap().unwrap());
    }
    slots.sort();
    // Two starts per window at most, half a window apart at least. A lane whose request
    // has not reported yet is not granted again, so a task may take the other lane's next
    // slot first, and the slot it passed over is not handed out: at worst one lane's
    // worth of budget, never more than the window.
    assert_eq!(max_in_window(&slots, window), 2, "{slots:?}");
    assert!(
        slots.windows(2).all(|w| w[1] - w[0] >= window / 2),
        "{slots:?}"
    );
    assert_eq!(slots[0], now);
    assert!(slots[39] <= now + 39 * window, "{slots:?}");
    // A caller arriving after the queue drained starts at its own now; the next one half
    // a window later.
    let later = now + 100 * window;
    let mut after_idle = Vec::new();
    for _ in 0..2 {
        after_idle.push(claim(&store, "gov", 2, window, later).await.unwrap());
    }
    assert_eq!(after_idle, vec![later, later + window / 2]);
    // Both lanes are taken until one window after their start, whatever the caller's
    // clock says.
    assert_eq!(
        claim(&store, "gov", 2, window, now).await.unwrap(),
        later + window
    );
    assert_eq!(claim(&store, "other", 2, window, now).await.unwrap(), now);
}

#[tokio::test]
async fn rate_lanes_follow_a_grown_capacity_and_refuse_none() {
    let store = scratch_store().await;
    assert_eq!(claim(&store, "gov", 1, 100, 0).await.unwrap(), 0);
    assert_eq!(claim(&store, "gov", 1, 100, 0).await.unwrap(), 100);
    let mut slots = Vec::new();
    for _ in 0..4 {
        slots.push(claim(&store, "gov", 3, 100, 0).await.unwrap());
    }
    // Lanes 1 and 2 are new and free, but starts stay a third of a window apart from the
    // last one (100); lane 0 is busy until 200.
    assert_eq!(slots, vec![133, 166, 200, 233]);
    assert_eq!(max_in_window(&[0, 100, 133, 166, 200, 233], 100), 3);
    assert!(claim(&store, "gov", 0, 100, 0).await.is_err());
}

/// A claim at `now` on the "gov" limit (2 per 100 ms) taking slots up to `ahead_ms` ahead,
/// and keeping one that passed at most `behind_ms` ago.
async fn claim_at(store: &Store, now: i64, ahead_ms: i64, behind_ms: i64) -> RateSlot {
    let reach = SlotReach {
        ahead_ms,
        behind_ms,
    };
    store
        .claim_rate_slot("gov", 2, 100, Now::At(now), reach, LEAVE_WITHIN)
        .await
        .unwrap()
}

/// The start of a granted claim, its request reported as leaving at `left`.
async fn granted_left_at(store: &Store, answer: RateSlot, left: Option<i64>) -> i64 {
    let RateSlot::Granted(slot) = answer else {
        panic!("not granted: {answer:?}");
    };
    assert!(
        store
            .settle_rate_slot("gov", 100, slot, left)
            .await
            .unwrap()
    );
    slot.start_ms
}

#[tokio::test]
async fn a_rate_slot_is_taken_only_when_due() {
    let store = scratch_store().await;
    let due = |now: i64, behind_ms: i64| {
        let store = store.clone();
        async move {
            let answer = claim_at(&store, now, 0, behind_ms).await;
            match answer {
                RateSlot::Granted(slot) => {
                    // Each request leaves at its start.
                    granted_left_at(&store, answer, Some(slot.start_ms)).await;
                    Ok(slot.start_ms)
                }
                other => Err(other),
            }
        }
    };
    assert_eq!(due(0, 0).await, Ok(0));
    // The second start of the window is half a window later; asking early takes nothing.
    assert_eq!(due(10, 0).await, Err(RateSlot::NotYet(50)));
    assert_eq!(due(49, 0).await, Err(RateSlot::NotYet(50)));
    assert_eq!(due(50, 0).await, Ok(50));
    // Lane 0 is free again at 100; a caller that arrives late starts when it arrives and
    // the next start is spaced from there, not from the slot it missed.
    assert_eq!(due(130, 0).await, Ok(130));
    assert_eq!(due(150, 0).await, Err(RateSlot::NotYet(180)));
    // A few ms late, within what the caller allows, keeps the slot as it was cut...
    assert_eq!(due(183, 5).await, Ok(180));
    assert_eq!(due(229, 5).await, Err(RateSlot::NotYet(230)));
    // ...and later than that it starts now.
    assert_eq!(due(236, 5).await, Ok(236));
    // A claim allowed to look ahead takes the future slot at once.
    let ahead = claim_at(&store, 240, 60, 0).await;
    assert!(
        matches!(ahead, RateSlot::Granted(LaneStart { start_ms: 286, departs_by_ms, .. }) if departs_by_ms == 286 + LEAVE_WITHIN),
        "{ahead:?}"
    );
}

#[tokio::test]
async fn a_lane_waits_to_hear_when_its_request_left_and_counts_from_then() {
    let store = scratch_store().await;
    let first = claim_at(&store, 0, 0, 0).await;
    let second = claim_at(&store, 50, 0, 0).await;
    assert!(matches!(second, RateSlot::Granted(s) if s.start_ms == 50 && s.lane != 0));
    // Lane 0 is due at 100, but its request has not said when it left, and lane 1 is
    // not due: wait, at the latest until that request's deadline.
    assert_eq!(
        claim_at(&store, 100, 0, 0).await,
        RateSlot::Unsettled(LEAVE_WITHIN)
    );
    // It left at 130 (a slow connection): lane 0 is free at 230, lane 1 (still waiting
    // to hear) at 150, and the spacing after 130 holds it until 180.
    assert_eq!(granted_left_at(&store, first, Some(130)).await, 0);
    assert_eq!(claim_at(&store, 100, 0, 0).await, RateSlot::NotYet(180));
    assert_eq!(
        claim_at(&store, 180, 0, 0).await,
        RateSlot::Unsettled(50 + LEAVE_WITHIN)
    );
    // Lane 1's request never says: at its deadline it counts as leaving then, and the
    // next start is spaced from there.
    let deadline = 50 + LEAVE_WITHIN;
    assert_eq!(
        claim_at(&store, deadline, 0, 0).await,
        RateSlot::NotYet(deadline + 50)
    );
    let next = claim_at(&store, deadline + 50, 0, 0).await;
    assert_eq!(
        granted_left_at(&store, next, Some(deadline + 50)).await,
        deadline + 50
    );
    let RateSlot::Granted(after) = claim_at(&store, deadline + 100, 0, 0).await else {
        panic!("lane 1 is free a window after its deadline");
    };
    assert_eq!(after.start_ms, deadline + 100);
    // A report of its old start, coming now, finds the lane moved on.
    let RateSlot::Granted(late) = second else {
        unreachable!()
    };
    assert_eq!(late.lane, after.lane);
    assert!(
        !store
            .settle_rate_slot("gov", 100, late, Some(deadline))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_request_that_never_left_frees_its_lane_as_cut() {
    let store = scratch_store().await;
    let first = claim_at(&store, 0, 0, 0).await;
    assert_eq!(granted_left_at(&store, first, None).await, 0);
    let second = claim_at(&store, 50, 0, 0).await;
    assert_eq!(granted_left_at(&store, second, Some(50)).await, 50);
    assert!(matches!(
        claim_at(&store, 100, 0, 0).await,
        RateSlot::Granted(s) if s.start_ms == 100
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_lanes_in_memory_under_twenty_tasks() {
    let store = scratch_store().await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { claim(&s, "gov", 1, 10, 0).await.unwrap() })
        })
        .collect();
    let mut slots = Vec::new();
    for t in tasks {
        slots.push(t.await.unwrap());
    }
    slots.sort();
    assert_eq!(slots, (0..20).map(|i| i * 10).collect::<Vec<i64>>());
}

#[tokio::test]
async fn status_and_pending_counts_per_school() {
    let (_dir, store) = temp_store().await;
    let recs = [
        record("a1", "s2", "A"),
        record("a2", "s2", "A"),
        record("b1", "s1", "A"),
        record("c1", "s3", "A"),
    ];
    let mut other_quarter = record("d1", "s1", "A");
    other_quarter["quarter"] = json!("2026-Q4");
    let mut all = recs.to_vec();
    all.push(other_quarter);
    import(&store, &lines(&all)).await;
    let c = store
        .prepare_batches(
            &q(),
            "s2",
            1,
            BatchLimits {
                max_records: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s3 = store
        .prepare_batches(&q(), "s3", 1, BatchLimits::default())
        .await
        .unwrap();
    store
        .mark_synced(s3.batches[0].batch_id, "r")
        .await
        .unwrap();
    assert_eq!(c.remaining_pending, 1);

    let status = store.status_counts(&q()).await.unwrap();
    let got: Vec<(&str, [u64; 5])> = status
        .iter()
        .map(|s| {
            (
                s.school_id.as_str(),
                [s.pending, s.batched, s.synced, s.rejected, s.dead],
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("s1", [1, 0, 0, 0, 0]),
            ("s2", [1, 1, 0, 0, 0]),
            ("s3", [0, 0, 1, 0, 0])
        ]
    );
    let pending = store.pending_counts(&q()).await.unwrap();
    let got: Vec<(&str, u64, u64)> = pending
        .iter()
        .map(|s| (s.school_id.as_str(), s.pending, s.batched))
        .collect();
    assert_eq!(got, [("s1", 1, 0), ("s2", 1, 1)]);
    assert!(
        store
            .status_counts(&"2025-Q1".parse().unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn quarter_runs_start_and_finish() {
    let store = scratch_store().await;
    assert_eq!(store.run(&q()).await.unwrap(), None);
    assert!(matches!(
        store.finish_run(&q(), "complete", None, "{}").await,
        Err(StoreError::RunNotStarted(_))
    ));
    store.start_run(&q(), "wf-1").await.unwrap();
    let started = store.run(&q()).await.unwrap().unwrap();
    assert_eq!(
        (started.workflow_id.as_str(), started.status.as_str()),
        ("wf-1", "running")
    );
    store.start_run(&q(), "wf-1").await.unwrap();
    assert_eq!(
        store.run(&q()).await.unwrap().unwrap().started_at,
        started.started_at
    );
    assert!(matches!(
        store.finish_run(&q(), "done", None, "{}").await,
        Err(StoreError::InvalidArgument(_))
    ));
    store
        .finish_run(
            &q(),
            "discrepancies",
            Some("reports/2026-Q3.json"),
            r#"{"synced":3}"#,
        )
        .await
        .unwrap();
    let run = store.run(&q()).await.unwrap().unwrap();
    assert_eq!(run.status, "discrepancies");
    assert_eq!(run.report_path.as_deref(), Some("reports/2026-Q3.json"));
    assert_eq!(run.summary.as_deref(), Some(r#"{"synced":3}"#));
    assert!(run.finished_at.is_some());
    store.start_run(&q(), "wf-2").await.unwrap();
    let rerun = store.run(&q()).await.unwrap().unwrap();
    assert_eq!(
        (
            rerun.workflow_id.as_str(),
            rerun.status.as_str(),
            rerun.finished_at
        ),
        ("wf-2", "running", None)
    );
}

#[tokio::test]
async fn connect_accepts_every_url_spelling_and_hides_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/a.db");
    for url in [
        format!("sqlite://{}", path.display()),
        format!("sqlite:{}", path.display()),
        path.display().to_string(),
        "sqlite::memory:".to_string(),
    ] {
        let store = Store::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        store.start_run(&q(), "wf").await.unwrap();
        assert!(format!("{store:?}").contains("Store"));
    }
    let err = Store::connect("postgres://user:hunter2@127.0.0.1:1/grades")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().contains("GRADESYNC_DATABASE_URL"));
    let err = Store::connect(&format!(
        "sqlite://{}/missing/\0/x.db",
        dir.path().display()
    ))
    .await;
    assert!(err.is_err());
}

/// Run with `--ignored --release` to see the import speed on a million lines.
#[tokio::test]
#[ignore]
async fn import_a_million_lines() {
    let (_dir, store) = temp_store().await;
    let n = 1_000_000;
    let text: String = (0..n)
        .map(|i| {
            format!(
                "{}\n",
                record(&format!("r{i:07}"), &format!("s{}", i % 300), "A")
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let report = import(&store, &text).await;
    eprintln!("imported {n} lines in {:?}", started.elapsed());
    assert_eq!(report.inserted, n);
    let started = std::time::Instant::now();
    let chunk = store
        .prepare_batches(&q(), "s7", usize::MAX, BatchLimits::default())
        .await
        .unwrap();
    eprintln!(
        "cut {} batches in {:?}",
        chunk.batches.len(),
        started.elapsed()
    );
    let started = std::time::Instant::now();
    let again = import(&store, &text).await;
    eprintln!("re-imported unchanged in {:?}", started.elapsed());
    assert_eq!(again.unchanged, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_can_open_a_fresh_database_at_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = url(&dir).await;
        let (a, b) = tokio::join!(Store::connect(&url), Store::connect(&url));
        let (a, b) = (a.unwrap(), b.unwrap());
        a.start_run(&q(), "wf").await.unwrap();
        assert!(b.run(&q()).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn split_batch_halves_in_flight_records_or_rejects_a_lone_one() {
    let store = scratch_store().await;
    let q: Quarter = "2026-Q4".parse().unwrap();
    let lines: String = (0..5)
        .map(|i| format!("{{\"record_id\":\"r{i}\",\"school_id\":\"s1\",\"student_id\":\"x\",\"course_code\":\"M\",\"quarter\":\"2026-Q4\",\"grade\":\"A\"}}\n"))
        .collect();
    store
        .import_jsonl(tokio::io::BufReader::new(lines.as_bytes()), |_| {})
        .await
        .unwrap();
    let chunk = store
        .prepare_batches(&q, "s1", 10, BatchLimits::default())
        .await
        .unwrap();
    let whole = chunk.batches[0].batch_id;

    let split = store.split_batch(whole, "too large").await.unwrap();
    assert_eq!(
        split.halves.iter().map(|b| b.records).collect::<Vec<_>>(),
        [2, 3]
    );
    for half in &split.halves {
        let body = store.batch_body(half.batch_id).await.unwrap();
        assert_eq!(
            body.body.len() as u64,
            half.bytes,
            "measured bytes match the real body"
        );
    }
    assert!(
        store.batch_body(whole).await.is_err(),
        "the old batch is retired"
    );
    assert_eq!(
        store.split_batch(whole, "again").await.unwrap(),
        Split::default()
    );

    let lone = store
        .split_batch(split.halves[0].batch_id, "too large")
        .await
        .unwrap();
    let lone = store
        .split_batch(lone.halves[0].batch_id, "too large alone")
        .await
        .unwrap();
    assert_eq!(lone.rejected, 1);
    assert!(lone.halves.is_empty());
    let counts = store.status_counts(&q).await.unwrap();
    assert_eq!((counts[0].rejected, counts[0].batched), (1, 4));
}

#[tokio::test]
async fn records_in_batch_still_counts_what_a_retried_outcome_changed_first() {
    let (_dir, store) = temp_store().await;
    seed(&store, 4).await;
    let limits = BatchLimits {
        max_records: 2,
        ..BatchLimits::default()
    };
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 2, limits)
        .await
        .unwrap();
    let (a, b) = (chunk.batches[0].batch_id, chunk.batches[1].batch_id);
    assert_eq!(store.mark_synced(a, "rcpt-a").await.unwrap(), 2);
    assert_eq!(store.mark_synced(a, "rcpt-a").await.unwrap(), 0);
    assert_eq!(store.records_in_batch(a, "synced").await.unwrap(), 2);

    let named = vec![("r0002".to_string(), "grade: not a grade".to_string())];
    store
        .reject_batch(b, 400, "Bad Request", &named, MAX_CUTS)
        .await
        .unwrap();
    // r0003 went back to pending: it left the batch.
    assert_eq!(store.records_in_batch(b, "rejected").await.unwrap(), 1);
    assert_eq!(store.records_in_batch(b, "batched").await.unwrap(), 0);
    assert_eq!(
        store
            .records_in_batch(Uuid::new_v4(), "synced")
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn synced_hashes_between_covers_each_range_once() {
    let (_dir, store) = temp_store().await;
    seed(&store, 7).await;
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 10, BatchLimits::default())
        .await
        .unwrap();
    for b in &chunk.batches {
        store.mark_synced(b.batch_id, "rcpt").await.unwrap();
    }
    let ids = |rows: Vec<(String, String, String)>| -> Vec<String> {
        rows.into_iter().map(|(_, id, _)| id).collect()
    };
    let all = ids(store.synced_hashes_between(&q(), None, None).await.unwrap());
    assert_eq!(all.len(), 7);
    // Pages split at r0002 and r0004 cover every record once, in order.
    let mut pages = Vec::new();
    pages.extend(ids(store
        .synced_hashes_between(&q(), None, Some("r0002"))
        .await
        .unwrap()));
    pages.extend(ids(store
        .synced_hashes_between(&q(), Some("r0002"), Some("r0004"))
        .await
        .unwrap()));
    pages.extend(ids(store
        .synced_hashes_between(&q(), Some("r0004"), None)
        .await
        .unwrap()));
    assert_eq!(pages, all);
    assert_eq!(
        store.school_of("r0003").await.unwrap().as_deref(),
        Some(SCHOOL)
    );
    assert_eq!(store.school_of("nope").await.unwrap(), None);
}

/// A store written before the bodies moved to their own table (migration 0004) keeps every
/// body: a batch cut after the upgrade carries the record as it was imported.
#[tokio::test]
async fn upgrading_a_store_keeps_every_record_body() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", sqlite_url(&dir)))
        .await
        .unwrap();
    let mut before_bodies = sqlx::migrate!("./migrations/sqlite");
    before_bodies.migrations = before_bodies.migrations[..3].to_vec().into();
    before_bodies.run(&pool).await.unwrap();
    let value = record("r1", SCHOOL, "A");
    let body = gradesync_govapi::contract::canonical_json(&value);
    sqlx::query(
        "INSERT INTO grades (record_id, quarter, school_id, body, sha256, bytes, status, \
         updated_at) VALUES ('r1', '2026-Q3', ?, ?, ?, ?, 'pending', 0)",
    )
    .bind(SCHOOL)
    .bind(&body)
    .bind(record_sha256(&value))
    .bind(body.len() as i64)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    let sent = store.batch_body(chunk.batches[0].batch_id).await.unwrap();
    assert_eq!(sent.records, 1);
    let text = String::from_utf8(sent.body).unwrap();
    assert!(
        text.contains(&body),
        "the upgraded batch lost the record body"
    );
}

/// Batches of `size` records cut from what `SCHOOL` has pending, at most `max` of them.
async fn cut(store: &Store, max: usize, size: usize) -> Vec<Uuid> {
    let limits = BatchLimits {
        max_records: size,
        ..BatchLimits::default()
    };
    let chunk = store
        .prepare_batches(&q(), SCHOOL, max, limits)
        .await
        .unwrap();
    chunk.batches.iter().map(|b| b.batch_id).collect()
}

#[tokio::test]
async fn the_settled_line_follows_the_lowest_record_not_yet_answered() {
    let (_dir, store) = temp_store().await;
    seed(&store, 7).await;
    assert_eq!(
        store.first_unsettled(&q()).await.unwrap().as_deref(),
        Some("r0000")
    );
    let batches = cut(&store, 2, 3).await; // r0000-r0002, r0003-r0005; r0006 stays pending
    // The second batch answered first: the first still holds the line.
    store.mark_synced(batches[1], "rcpt-2").await.unwrap();
    assert_eq!(
        store.first_unsettled(&q()).await.unwrap().as_deref(),
        Some("r0000")
    );
    store.mark_synced(batches[0], "rcpt-1").await.unwrap();
    assert_eq!(
        store.first_unsettled(&q()).await.unwrap().as_deref(),
        Some("r0006")
    );
    let nth = |after: Option<&'static str>, n: u64| {
        let store = store.clone();
        async move { store.nth_synced_after(&q(), after, n).await.unwrap() }
    };
    assert_eq!(nth(None, 3).await.as_deref(), Some("r0002"));
    assert_eq!(nth(Some("r0002"), 3).await.as_deref(), Some("r0005"));
    assert_eq!(nth(Some("r0002"), 4).await, None, "r0006 is not synced");
    let last = cut(&store, 1, 3).await;
    store.mark_synced(last[0], "rcpt-3").await.unwrap();
    assert_eq!(store.first_unsettled(&q()).await.unwrap(), None);
}

/// Watches the range `(after, upto]` as page `no` of `pass` and marks it clean with the
/// store's side, as ReconcileAhead does once the API's page matched; `false` when the range
/// changed in between.
async fn check_page(
    store: &Store,
    pass: &str,
    no: u64,
    after: Option<&str>,
    upto: &str,
    between: impl AsyncFnOnce(),
) -> bool {
    let mut page = CheckedPage {
        page_no: no,
        after_id: after.unwrap_or("").to_string(),
        upto_id: upto.to_string(),
        next_token: format!("token-after-{upto}"),
        records: 0,
        digest: String::new(),
    };
    store.watch_page(&q(), pass, &page).await.unwrap();
    between().await;
    let ours = store
        .synced_hashes_between(&q(), after, Some(upto))
        .await
        .unwrap();
    page.records = ours.len() as u64;
    page.digest = digest(&ours);
    store.mark_page_clean(&q(), pass, &page).await.unwrap()
}

#[tokio::test]
async fn a_checked_page_holds_until_the_store_side_of_its_range_changes() {
    use gradesync_activities::read_ahead::{Cursor, resume};

    let (_dir, store) = temp_store().await;
    seed(&store, 6).await;
    for b in cut(&store, 10, 100).await {
        store.mark_synced(b, "rcpt").await.unwrap();
    }
    assert!(check_page(&store, "pass-a", 0, None, "r0002", async || {}).await);
    assert!(check_page(&store, "pass-a", 1, Some("r0002"), "r0004", async || {}).await);
    let held = resume(&store, &q(), "pass-a").await.unwrap();
    assert_eq!(
        held,
        Cursor {
            after: Some("r0004".into()),
            token: Some("token-after-r0004".into()),
            page_no: 2,
            records: 5,
        }
    );
    assert_eq!(
        resume(&store, &q(), "pass-b").await.unwrap(),
        Cursor::default(),
        "another sync's pages are not this one's"
    );
    assert_eq!(
        resume(&store, &q(), "").await.unwrap(),
        Cursor::default(),
        "no pass, no pages"
    );

    // A record of the second page sent again: that page and the ones after it are read anew.
    store
        .requeue_records(&q(), &["r0003".to_string()])
        .await
        .unwrap();
    let after_requeue = resume(&store, &q(), "pass-a").await.unwrap();
    assert_eq!(after_requeue.page_no, 1);
    assert_eq!(after_requeue.after.as_deref(), Some("r0002"));

    // A later sync of the quarter forgets the pages of the earlier one.
    assert_eq!(
        store
            .forget_checked_pages(&q(), Some("pass-b"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        resume(&store, &q(), "pass-a").await.unwrap(),
        Cursor::default()
    );
}

#[tokio::test]
async fn the_store_marks_a_checked_page_stale_when_a_record_of_its_range_changes() {
    use gradesync_activities::read_ahead::resume;

    let (_dir, store) = temp_store().await;
    let mut records = seed(&store, 8).await;
    for b in cut(&store, 10, 3).await {
        store.mark_synced(b, "rcpt").await.unwrap();
    }
    let pages = async |store: &Store| resume(store, &q(), "p").await.unwrap().page_no;
    assert!(check_page(&store, "p", 0, None, "r0002", async || {}).await);
    assert!(check_page(&store, "p", 1, Some("r0002"), "r0005", async || {}).await);
    assert_eq!(pages(&store).await, 2);

    // The same content imported again changes nothing; a record past the pages neither.
    import(&store, &lines(&records)).await;
    import(&store, &lines(&[record("r0009", SCHOOL, "A")])).await;
    assert_eq!(
        pages(&store).await,
        2,
        "nothing in the pages' ranges changed"
    );

    // A new record inside the second page's range: that page no longer holds.
    import(&store, &lines(&[record("r0003b", SCHOOL, "A")])).await;
    assert_eq!(pages(&store).await, 1);

    // New content for a synced record of the first page.
    records[1] = record("r0001", SCHOOL, "B");
    import(&store, &lines(&records[..2])).await;
    assert_eq!(pages(&store).await, 0);

    // A change while the range is being compared: the page is not kept clean.
    assert!(
        !check_page(&store, "p2", 0, Some("r0005"), "r0007", async || {
            store
                .requeue_records(&q(), &["r0006".to_string()])
                .await
                .unwrap();
        })
        .await
    );
    assert_eq!(resume(&store, &q(), "p2").await.unwrap().page_no, 0);

    // The quarter done, its pages go.
    assert!(check_page(&store, "p3", 0, None, "r0002", async || {}).await);
    assert_eq!(
        store.forget_checked_pages(&q(), None).await.unwrap(),
        4,
        "p: 2, p2: 1, p3: 1"
    );
    assert_eq!(resume(&store, &q(), "p3").await.unwrap().page_no, 0);
}

#[tokio::test]
async fn unsent_counts_are_the_rejected_and_dead_records_of_the_quarter() {
    let (_dir, store) = temp_store().await;
    seed(&store, 7).await;
    let mut other_quarter = record("z1", SCHOOL, "A");
    other_quarter["quarter"] = json!("2026-Q4");
    import(&store, &lines(&[other_quarter])).await;
    let batches = cut(&store, 3, 2).await; // r0000-1, r0002-3, r0004-5; r0006 pending
    store.mark_synced(batches[0], "rcpt").await.unwrap();
    store
        .reject_batch(
            batches[1],
            422,
            "invalid",
            &[("r0002".to_string(), "bad grade".to_string())],
            MAX_CUTS,
        )
        .await
        .unwrap();
    assert!(store.dead_letter(batches[2], "gave up").await.unwrap());
    assert_eq!(store.unsent_counts(&q()).await.unwrap(), (1, 2));
    let [_, _, _, rejected, dead] = counts(&store, SCHOOL).await;
    assert_eq!((rejected, dead), (1, 2), "the per-school counts agree");
}

#[tokio::test]
async fn nothing_is_left_to_send_once_every_unanswered_batch_is_in_flight() {
    let (_dir, store) = temp_store().await;
    seed(&store, 5).await;
    let mut other_quarter = record("z1", SCHOOL, "A");
    other_quarter["quarter"] = json!("2026-Q4");
    import(&store, &lines(&[other_quarter])).await;
    let left = async |store: &Store| !store.all_in_flight(&q()).await.unwrap();

    let first = cut(&store, 2, 2).await; // r0000-1, r0002-3; r0004 pending
    for b in &first {
        store.take_off(*b).await.unwrap();
    }
    assert!(left(&store).await, "a record is still pending");
    // The prepared batches come back first, then r0004's is cut.
    let all = cut(&store, 3, 2).await;
    let last = all.iter().find(|b| !first.contains(b)).unwrap();
    assert!(left(&store).await, "a batch is cut but not sent");
    store.take_off(*last).await.unwrap();
    assert!(!left(&store).await, "every batch is on its way");

    // An answer that sends the batch back to wait (503, 429) takes it out of flight.
    store.record_attempt(first[1], "503").await.unwrap();
    assert!(left(&store).await, "a batch waits for its retry");
    store.take_off(first[1]).await.unwrap();
    store.mark_synced(first[0], "rcpt").await.unwrap();
    store.record_attempt(first[0], "sent rcpt").await.unwrap();
    assert!(!left(&store).await, "answered batches are not waited for");

    // What the API should list past a record id once everything in flight lands.
    assert_eq!(store.listed_after(&q(), None, 10).await.unwrap(), 5);
    assert_eq!(
        store.listed_after(&q(), Some("r0002"), 10).await.unwrap(),
        2
    );
    assert_eq!(
        store.listed_after(&q(), None, 3).await.unwrap(),
        3,
        "counts no further"
    );
}

#[tokio::test]
async fn the_listings_last_page_is_kept_open_above() {
    use gradesync_activities::read_ahead::resume;
    use gradesync_activities::store::OPEN_END;

    let (_dir, store) = temp_store().await;
    seed(&store, 4).await;
    for b in cut(&store, 10, 100).await {
        store.mark_synced(b, "rcpt").await.unwrap();
    }
    assert!(check_page(&store, "p", 0, None, "r0001", async || {}).await);
    let ours = store
        .synced_hashes_between(&q(), Some("r0001"), None)
        .await
        .unwrap();
    let last = CheckedPage {
        page_no: 1,
        after_id: "r0001".into(),
        upto_id: OPEN_END.into(),
        next_token: String::new(),
        records: ours.len() as u64,
        digest: digest(&ours),
    };
    store.watch_page(&q(), "p", &last).await.unwrap();
    assert!(store.mark_page_clean(&q(), "p", &last).await.unwrap());
    let cursor = resume(&store, &q(), "p").await.unwrap();
    assert!(cursor.at_end(), "{cursor:?}");
    assert_eq!((cursor.page_no, cursor.records), (2, 4));

    // A record past every id the listing had: the last page no longer holds.
    import(&store, &lines(&[record("r9999", SCHOOL, "A")])).await;
    let cursor = resume(&store, &q(), "p").await.unwrap();
    assert!(!cursor.at_end());
    assert_eq!(cursor.page_no, 1);
}

/// One try of ReconcileAhead at page 0 of `pass`, the range `(after, upto]`, on the store's
/// side (the API's page taken to match), in `ReadAhead::run`'s order: watched, left while a
/// record up to its end is unsettled, compared, marked clean. The page, if marked clean.
async fn read_ahead_once(
    store: &Store,
    pass: &str,
    after: &str,
    upto: &str,
) -> Option<CheckedPage> {
    let mut page = CheckedPage {
        page_no: 0,
        after_id: after.to_string(),
        upto_id: upto.to_string(),
        next_token: format!("token-after-{upto}"),
        records: 0,
        digest: String::new(),
    };
    store.watch_page(&q(), pass, &page).await.unwrap();
    let unsettled = store.first_unsettled(&q()).await.unwrap();
    if unsettled.is_some_and(|s| upto >= s.as_str()) {
        return None;
    }
    let ours = store
        .synced_hashes_between(&q(), Some(after), Some(upto))
        .await
        .unwrap();
    page.records = ours.len() as u64;
    page.digest = digest(&ours);
    let clean = store.mark_page_clean(&q(), pass, &page).await.unwrap();
    clean.then_some(page)
}

/// Sends every pending record of `SCHOOL` and has the API confirm it. Sending marks no page
/// stale (see migration 0006).
async fn send_all(store: &Store) {
    loop {
        let batches = cut(store, 100, 1000).await;
        if batches.is_empty() {
            return;
        }
        for b in batches {
            store.mark_synced(b, "rcpt").await.unwrap();
        }
    }
}

/// ReconcileAhead checks a page again and again, on its own connections, while an import
/// (a source pull goes through the same `Importer`) writes a record into the page's range
/// and then goes on writing elsewhere a while before it commits. A page left clean must
/// hold exactly the synced records it was compared with once everything is sent, or the
/// final Reconcile, which takes it as read, would skip a record the API may lack.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_kept_clean_while_an_import_writes_into_its_range_misses_no_record() {
    const ROUNDS: usize = 200;
    /// Records the import writes after the one near the page, in another quarter: they hold
    /// its transaction open after the page's range changed.
    const TAIL: usize = 300;

    let (_dir, store) = temp_store().await;
    let (mut tries, mut kept, mut missed) = (0, 0, Vec::new());
    for round in 0..ROUNDS {
        let ids: Vec<String> = (0..10).map(|k| format!("p{round:03}-{k}")).collect();
        let page: Vec<Value> = ids.iter().map(|id| record(id, SCHOOL, "A")).collect();
        import(&store, &lines(&page)).await;
        send_all(&store).await;
        let (after, upto) = (ids[1].clone(), ids[7].clone());
        // New content for the range's first or last record, a new record inside it, or
        // one just past its end (which leaves the page clean).
        let near = match round % 4 {
            0 => record(&ids[2], SCHOOL, "B"),
            1 => record(&format!("{}a", ids[5]), SCHOOL, "A"),
            2 => record(&ids[7], SCHOOL, "B"),
            _ => record(&format!("{}a", ids[7]), SCHOOL, "A"),
        };
        let mut write = vec![near];
        write.extend((0..TAIL).map(|k| {
            let mut r = record(&format!("t{round:03}-{k}"), SCHOOL, "A");
            r["quarter"] = json!("2026-Q4");
            r
        }));
        let text = lines(&write);

        let done = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn({
            let (store, done) = (store.clone(), done.clone());
            let (after, upto) = (after.clone(), upto.clone());
            async move {
                let mut marked = Vec::new();
                let mut n = 0;
                while !done.load(Ordering::Acquire) {
                    let pass = format!("r{round:03}-try{n}");
                    n += 1;
                    if let Some(page) = read_ahead_once(&store, &pass, &after, &upto).await {
                        marked.push((pass, page));
                    }
                }
                (n, marked)
            }
        });
        let writer = tokio::spawn({
            let store = store.clone();
            async move {
                import(&store, &text).await;
                done.store(true, Ordering::Release);
            }
        });
        writer.await.unwrap();
        let (n, marked) = reader.await.unwrap();
        tries += n;

        send_all(&store).await;
        let now = digest(
            &store
                .synced_hashes_between(&q(), Some(&after), Some(&upto))
                .await
                .unwrap(),
        );
        for (pass, page) in marked {
            if store.checked_pages(&q(), &pass).await.unwrap() != [page.clone()] {
                continue;
            }
            kept += 1;
            if page.digest != now {
                missed.push((round, pass));
            }
        }
        store.forget_checked_pages(&q(), None).await.unwrap();
    }
    let rounds_missed = missed.iter().map(|(r, _)| r).collect::<HashSet<_>>().len();
    eprintln!(
        "{ROUNDS} rounds, {tries} tries, {kept} pages kept clean, {} of them in {rounds_missed} \
         rounds missed a write",
        missed.len()
    );
    assert!(
        missed.is_empty(),
        "{} of {kept} pages kept clean missed a write into their range (in {rounds_missed} of \
         {ROUNDS} rounds), first: {:?}",
        missed.len(),
        &missed[..missed.len().min(3)]
    );
    assert!(kept > 0, "the pages a write went past stay clean");
}

/// A second connection to a file store, for what the store does not expose (the `cuts`
/// column, page layout).
async fn raw(dir: &TempDir) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&url(dir).await).await.unwrap()
}

async fn cuts_of(pool: &sqlx::AnyPool, record_id: &str) -> i64 {
    sqlx::query_scalar("SELECT cuts FROM grades WHERE record_id = $1")
        .bind(record_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn named(record_id: &str) -> Vec<(String, String)> {
    vec![(record_id.to_string(), "grade: not a grade".to_string())]
}

#[tokio::test]
async fn every_cut_into_a_batch_counts() {
    let (dir, store) = temp_store().await;
    let pool = raw(&dir).await;
    seed(&store, 4).await;
    assert_eq!(cuts_of(&pool, "r0000").await, 0);
    let whole = cut(&store, 1, 10).await[0];
    for id in ["r0000", "r0001", "r0002", "r0003"] {
        assert_eq!(cuts_of(&pool, id).await, 1, "{id} prepared");
    }
    let halves = store.split_batch(whole, "too large").await.unwrap().halves;
    for id in ["r0000", "r0001", "r0002", "r0003"] {
        assert_eq!(cuts_of(&pool, id).await, 2, "{id} split");
    }
    // Resuming hands out the prepared halves again without cutting them.
    assert_eq!(cut(&store, 10, 10).await.len(), 2);
    assert_eq!(cuts_of(&pool, "r0000").await, 2);
    let r = store
        .reject_batch(
            halves[0].batch_id,
            400,
            "Bad Request",
            &named("r0000"),
            MAX_CUTS,
        )
        .await
        .unwrap();
    assert_eq!((r.rejected, r.requeued, r.dead), (1, 1, 0));
    assert_eq!(cut(&store, 10, 10).await.len(), 2);
    assert_eq!(cuts_of(&pool, "r0001").await, 3, "re-batched");
    assert_eq!(cuts_of(&pool, "r0002").await, 2, "untouched");
}

#[tokio::test]
async fn a_refusal_naming_no_record_of_the_batch_dead_letters_it_whole() {
    let (_dir, store) = temp_store().await;
    seed(&store, 4).await;
    let b = cut(&store, 2, 2).await; // r0000-1, r0002-3
    // r0002 exists, but in the other batch; "nope" nowhere.
    let others = vec![
        ("r0002".to_string(), "grade: bad".to_string()),
        ("nope".to_string(), "grade: bad".to_string()),
    ];
    let r = store
        .reject_batch(b[0], 400, "Bad Request: records invalid", &others, MAX_CUTS)
        .await
        .unwrap();
    assert_eq!(
        (r.rejected, r.requeued, r.dead, r.dead_lettered),
        (0, 0, 2, true)
    );
    assert_eq!(
        counts(&store, SCHOOL).await,
        [0, 2, 0, 0, 2],
        "r0002 untouched"
    );
    let letters = store.dead_letters(&q()).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].batch_id, letters[0].records, letters[0].alerted),
        (b[0], 2, false)
    );
    assert_eq!(
        letters[0].error,
        "the API refused the batch (400) naming no record of it; Bad Request: records invalid"
    );
    let again = store
        .reject_batch(b[0], 400, "Bad Request: records invalid", &others, MAX_CUTS)
        .await
        .unwrap();
    assert_eq!(again, Default::default(), "a retried call changes nothing");
    assert!(
        !store.dead_letter(b[0], "again").await.unwrap(),
        "alerted once"
    );

    // Resent under its key, the batch would meet the same 400, and an earlier attempt may
    // have committed it (that 400 comes before the API's idempotency check): it stays dead
    // until a receipt lookup settles it; one that finds it never committed retires it, and
    // its records go back to pending for a new batch.
    assert_eq!(store.requeue_dead_letters(&q()).await.unwrap(), 0);
    assert_eq!(counts(&store, SCHOOL).await, [0, 2, 0, 0, 2]);
    let to_look_up = store.dead_letters_to_look_up(&q()).await.unwrap();
    assert_eq!(to_look_up.len(), 1);
    assert_eq!(to_look_up[0].batch_id, b[0]);
    assert_eq!(store.retire_dead_batch(b[0]).await.unwrap(), 2);
    assert_eq!(store.retire_dead_batch(b[0]).await.unwrap(), 0, "once");
    assert!(
        store.batch_body(b[0]).await.is_err(),
        "the old batch is not sent again"
    );
    assert_eq!(
        counts(&store, SCHOOL).await,
        [2, 2, 0, 0, 0],
        "r0002-3 still batched"
    );
    assert!(store.dead_letters(&q()).await.unwrap().is_empty());
    let again = store
        .prepare_batches(&q(), SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    assert_eq!(
        again.batches[0].batch_id, b[1],
        "the prepared batch resumes first"
    );
    let again = store
        .prepare_batches(&q(), SCHOOL, 2, BatchLimits::default())
        .await
        .unwrap();
    assert!(again.batches.iter().all(|x| x.batch_id != b[0]));
    assert_eq!(again.batches.iter().map(|x| x.records).sum::<u64>(), 4);
}

#[tokio::test]
async fn records_cut_too_often_are_dead_lettered_in_their_batch_not_requeued() {
    let (dir, store) = temp_store().await;
    let pool = raw(&dir).await;
    seed(&store, 4).await;
    let first = cut(&store, 1, 2).await[0]; // r0000-1
    let r = store
        .reject_batch(first, 400, "Bad Request", &named("r0000"), 2)
        .await
        .unwrap();
    assert_eq!(
        (r.rejected, r.requeued, r.dead, r.dead_lettered),
        (1, 1, 0, false)
    );
    let second = cut(&store, 1, 3).await[0]; // r0001 (second cut), r0002, r0003
    assert_eq!(cuts_of(&pool, "r0001").await, 2);
    let r = store
        .reject_batch(second, 400, "Bad Request", &named("r0003"), 2)
        .await
        .unwrap();
    assert_eq!(
        (r.rejected, r.requeued, r.dead, r.dead_lettered),
        (1, 1, 1, true)
    );
    assert_eq!(counts(&store, SCHOOL).await, [1, 0, 0, 2, 1]);
    let letters = store.dead_letters(&q()).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].batch_id, letters[0].records), (second, 1));
    assert_eq!(
        letters[0].error,
        "records cut into 2 batches without being accepted: Bad Request"
    );
    let unsent = store.unsent_records(&q(), None, 10).await.unwrap();
    let dead: Vec<_> = unsent.iter().filter(|u| u.record_id == "r0001").collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].batch_id, Some(second));
    assert_eq!(dead[0].reason, letters[0].error);

    // A replay cannot resend that batch under its key (the API saw other bytes under it):
    // once a lookup says it was never committed, the record that died in it goes back to
    // pending, for a new batch.
    assert_eq!(store.requeue_dead_letters(&q()).await.unwrap(), 0);
    assert_eq!(counts(&store, SCHOOL).await, [1, 0, 0, 2, 1]);
    assert_eq!(store.retire_dead_batch(second).await.unwrap(), 1);
    assert_eq!(counts(&store, SCHOOL).await, [2, 0, 0, 2, 0]);
    assert_eq!(
        store.records_in_batch(second, "rejected").await.unwrap(),
        1,
        "the rejected record stays rejected"
    );
}

#[tokio::test]
async fn unsent_records_page_through_rejected_and_dead_records_with_their_reasons() {
    use gradesync_activities::store::{UnsentRecord, UnsentState};

    let (_dir, store) = temp_store().await;
    seed(&store, 7).await;
    let mut other_quarter = record("r0003x", SCHOOL, "A");
    other_quarter["quarter"] = json!("2026-Q4");
    import(&store, &lines(&[other_quarter])).await;
    let q4: Quarter = "2026-Q4".parse().unwrap();
    let elsewhere = store
        .prepare_batches(&q4, SCHOOL, 1, BatchLimits::default())
        .await
        .unwrap();
    store
        .reject_batch(
            elsewhere.batches[0].batch_id,
            400,
            "Bad Request",
            &[("r0003x".to_string(), "q4".to_string())],
            MAX_CUTS,
        )
        .await
        .unwrap();

    let b = cut(&store, 3, 2).await; // r0000-1, r0002-3, r0004-5; r0006 pending
    store
        .reject_batch(
            b[0],
            400,
            "Bad Request",
            &[
                ("r0000".to_string(), "whole batch refused".to_string()),
                ("r0001".to_string(), "whole batch refused".to_string()),
            ],
            MAX_CUTS,
        )
        .await
        .unwrap();
    store
        .reject_batch(b[1], 400, "Bad Request", &named("r0002"), MAX_CUTS)
        .await
        .unwrap();
    assert!(
        store
            .dead_letter(b[2], "503 after 12 attempts")
            .await
            .unwrap()
    );

    let row = |id: &str, state, batch: Uuid, reason: &str| UnsentRecord {
        school_id: SCHOOL.into(),
        record_id: id.into(),
        state,
        batch_id: Some(batch),
        reason: reason.into(),
    };
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .unsent_records(&q(), after.as_deref(), 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.record_id.clone());
        pages.push(page);
    }
    assert_eq!(
        pages,
        vec![
            vec![
                row("r0000", UnsentState::Rejected, b[0], "whole batch refused"),
                row("r0001", UnsentState::Rejected, b[0], "whole batch refused"),
            ],
            vec![
                row("r0002", UnsentState::Rejected, b[1], "grade: not a grade"),
                row("r0004", UnsentState::Dead, b[2], "503 after 12 attempts"),
            ],
            vec![row(
                "r0005",
                UnsentState::Dead,
                b[2],
                "503 after 12 attempts"
            )],
        ]
    );
    assert!(
        store
            .unsent_records(&q(), None, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let q4_rows = store.unsent_records(&q4, None, 10).await.unwrap();
    assert_eq!(
        q4_rows
            .iter()
            .map(|r| r.record_id.as_str())
            .collect::<Vec<_>>(),
        ["r0003x"]
    );
    // An oversize record is rejected without ever being in a batch.
    let mut big = record("r0009", SCHOOL, "A");
    big["comment"] = json!("c".repeat(20_000));
    import(&store, &lines(&[big])).await;
    let limits = BatchLimits {
        max_records: 100,
        max_bytes: 10_000,
    };
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 10, limits)
        .await
        .unwrap();
    assert_eq!(chunk.oversize_rejected, 1);
    let last = store.unsent_records(&q(), Some("r0005"), 10).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(
        (last[0].record_id.as_str(), last[0].batch_id),
        ("r0009", None)
    );
    assert!(
        last[0].reason.starts_with("record is "),
        "{}",
        last[0].reason
    );
}

#[tokio::test]
async fn webhook_failures_are_kept_per_quarter_and_cut_short() {
    let store = scratch_store().await;
    let q4: Quarter = "2026-Q4".parse().unwrap();
    assert!(store.webhook_failures(&q()).await.unwrap().is_empty());
    store
        .record_webhook_failure(
            &q(),
            "alerts",
            "the webhook at https://hooks.example/… answered 500 (3 attempts)",
        )
        .await
        .unwrap();
    store
        .record_webhook_failure(&q4, "alerts", "other quarter")
        .await
        .unwrap();
    store
        .record_webhook_failure(&q(), "compliance", &"é".repeat(10_000))
        .await
        .unwrap();
    let failures = store.webhook_failures(&q()).await.unwrap();
    assert_eq!(
        failures.iter().map(|f| f.hook.as_str()).collect::<Vec<_>>(),
        ["alerts", "compliance"]
    );
    assert_eq!(
        failures[0].error,
        "the webhook at https://hooks.example/… answered 500 (3 attempts)"
    );
    assert!(failures[0].created_at > 0 && failures[0].created_at <= failures[1].created_at);
    assert!(
        failures[1].error.len() < 4100,
        "{}",
        failures[1].error.len()
    );
    assert!(failures[1].error.ends_with('…'));
    assert_eq!(store.webhook_failures(&q4).await.unwrap().len(), 1);
}

fn stored_report(quarter: &Quarter, stamp: &str, verdict: &str, at: i64) -> StoredReport {
    StoredReport {
        quarter: *quarter,
        stamp: stamp.to_string(),
        workflow_id: format!("wf-{stamp}"),
        verdict: verdict.to_string(),
        generated_at: at,
        json: format!("{{\n  \"stamp\": \"{stamp}\"\n}}"),
        csv: format!("school_id,record_id,state,batch_id,reason\ns1,r-{stamp},dead,,503\n"),
    }
}

#[tokio::test]
async fn a_report_saved_again_under_its_stamp_replaces_the_first_copy() {
    let store = scratch_store().await;
    assert!(store.latest_report(&q()).await.unwrap().is_none());
    assert!(store.reports(&q()).await.unwrap().is_empty());
    let first = stored_report(&q(), "1000", "incomplete", 1_000);
    store.save_report(&first).await.unwrap();
    // Reconcile retried by Temporal: the same round's report again, built a bit later.
    let retried = StoredReport {
        generated_at: 1_005,
        verdict: "complete".into(),
        json: "{\"retried\": true}".into(),
        ..first.clone()
    };
    store.save_report(&retried).await.unwrap();
    let listed = store.reports(&q()).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].stamp.as_str(), listed[0].verdict.as_str()),
        ("1000", "complete")
    );
    assert_eq!(store.latest_report(&q()).await.unwrap(), Some(retried));
    assert!(matches!(
        store
            .save_report(&stored_report(&q(), "1001", "discrepancies", 1))
            .await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        store
            .save_report(&stored_report(&q(), "", "complete", 1))
            .await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert_eq!(store.reports(&q()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_latest_report_is_the_newest_built_then_the_highest_stamp() {
    let store = scratch_store().await;
    let q4: Quarter = "2026-Q4".parse().unwrap();
    // A repair round's report, then the final one; another quarter's newer one beside.
    for r in [
        stored_report(&q(), "2000", "complete", 2_000),
        stored_report(&q(), "1000", "incomplete", 1_000),
        stored_report(&q(), "1999", "needs_correction", 2_000),
        stored_report(&q4, "9000", "incomplete", 9_000),
    ] {
        store.save_report(&r).await.unwrap();
    }
    let latest = store.latest_report(&q()).await.unwrap().unwrap();
    assert_eq!(
        (latest.stamp.as_str(), latest.verdict.as_str()),
        ("2000", "complete")
    );
    let stamps: Vec<_> = store
        .reports(&q())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.stamp, r.generated_at, r.workflow_id))
        .collect();
    assert_eq!(
        stamps,
        [
            ("1000".to_string(), 1_000, "wf-1000".to_string()),
            ("1999".to_string(), 2_000, "wf-1999".to_string()),
            ("2000".to_string(), 2_000, "wf-2000".to_string()),
        ]
    );
    let older = store.report(&q(), "1000").await.unwrap().unwrap();
    assert_eq!(older.verdict, "incomplete");
    assert!(store.report(&q(), "9000").await.unwrap().is_none());
    assert_eq!(store.reports(&q4).await.unwrap().len(), 1);
}

/// Another host opening the same database reads the report byte for byte, whatever its
/// text holds (quotes, commas, CRLF, non-ASCII, a large body).
#[tokio::test]
async fn a_report_reads_back_byte_for_byte_from_another_connection() {
    let (dir, store) = temp_store().await;
    let mut report = stored_report(&q(), "1700000000123", "needs_correction", 1_700_000_000_123);
    report.csv = "school_id,record_id,state,batch_id,reason\r\n\
                  s1,\"r,1\",rejected,,\"grade: \"\"A+\"\" expected\"\r\n\
                  école-7,r2,dead,,l'API répond 503 — réessayer\n"
        .to_string();
    report.json = format!(
        "{{\n  \"records\": [{}]\n}}",
        vec!["\"r\""; 50_000].join(", ")
    );
    store.save_report(&report).await.unwrap();
    let elsewhere = Store::connect(&url(&dir).await).await.unwrap();
    let read = elsewhere.latest_report(&q()).await.unwrap().unwrap();
    assert_eq!(read.csv.as_bytes(), report.csv.as_bytes());
    assert_eq!(read.json.as_bytes(), report.json.as_bytes());
    assert_eq!(read, report);
}

#[tokio::test]
async fn a_run_finishes_with_each_verdict_and_older_rows_survive_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", sqlite_url(&dir)))
        .await
        .unwrap();
    let mut before_verdicts = sqlx::migrate!("./migrations/sqlite");
    before_verdicts.migrations = before_verdicts.migrations[..11].to_vec().into();
    before_verdicts.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO quarter_runs (quarter, workflow_id, status, report_path, summary, \
         started_at, finished_at) VALUES ('2025-Q4', 'wf-old', 'discrepancies', 'r.json', '{}', 1, 2)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    let old = store
        .run(&"2025-Q4".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            old.workflow_id.as_str(),
            old.status.as_str(),
            old.finished_at
        ),
        ("wf-old", "discrepancies", Some(2))
    );
    for verdict in [
        "complete",
        "incomplete",
        "needs_correction",
        "empty",
        "failed",
        "discrepancies",
    ] {
        store.start_run(&q(), "wf").await.unwrap();
        store
            .finish_run(&q(), verdict, None, r#"{"synced":1}"#)
            .await
            .unwrap_or_else(|e| panic!("{verdict}: {e}"));
        assert_eq!(store.run(&q()).await.unwrap().unwrap().status, verdict);
    }
    for bad in ["running", "done", "Complete"] {
        assert!(
            matches!(
                store.finish_run(&q(), bad, None, "{}").await,
                Err(StoreError::InvalidArgument(_))
            ),
            "{bad}"
        );
    }
}

/// The root page of `table` and of each of its indexes overwritten with garbage, after
/// the store was closed and its WAL folded into the file.
async fn wreck_root_pages(dir: &TempDir, table: &str) {
    use std::io::{Seek, SeekFrom, Write};

    let pool = sqlx::SqlitePool::connect(&sqlite_url(dir)).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .unwrap();
    let roots: Vec<i64> = sqlx::query_scalar(
        "SELECT rootpage FROM sqlite_master WHERE tbl_name = ? AND rootpage > 0",
    )
    .bind(table)
    .fetch_all(&pool)
    .await
    .unwrap();
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(roots.len() > 1, "{roots:?}");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("grades.db"))
        .unwrap();
    for root in roots {
        file.seek(SeekFrom::Start(((root - 1) * page_size) as u64))
            .unwrap();
        file.write_all(&vec![0xa5; page_size as usize]).unwrap();
    }
    file.sync_all().unwrap();
}

#[tokio::test]
async fn a_damaged_table_fails_fast_and_says_to_restore() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    seed(&store, 2000).await;
    drop(store);
    wreck_root_pages(&dir, "grades").await;

    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    let err = store.status_counts(&q()).await.unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(err.is_fatal(), "{err}");
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("restore it from a backup"),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_fails_fast_and_says_to_restore() {
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    seed(&store, 10).await;
    drop(store);
    let pool = sqlx::SqlitePool::connect(&sqlite_url(&dir)).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("grades.db"))
        .unwrap();
    file.write_all(&[0x5a; 100]).unwrap(); // the header
    file.sync_all().unwrap();

    let err = Store::connect(&sqlite_url(&dir)).await.unwrap_err();
    assert!(err.is_fatal(), "{err:?}");
    assert!(
        err.to_string().contains("restore it from a backup"),
        "{err}"
    );
}

#[tokio::test]
async fn api_answers_add_up_per_minute_and_class_and_confirmations_per_second() {
    let (_dir, store) = temp_store().await;
    let other: Quarter = "2026-Q4".parse().unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for class in ["2xx", "2xx", "5xx", "2xx", "429"] {
        store.count_api_answer(&q(), class).await.unwrap();
    }
    store.count_api_answer(&other, "2xx").await.unwrap();
    let rows = store.api_answers(&q()).await.unwrap();
    // One row per minute and class (two minutes at most, if the test crossed one).
    assert!(rows.len() <= 6, "{rows:?}");
    let mut total = std::collections::BTreeMap::new();
    for r in &rows {
        assert_eq!(r.minute_ms % 60_000, 0, "{r:?}");
        assert!(r.minute_ms >= before - 60_000, "{r:?}");
        *total.entry(r.class.as_str()).or_insert(0) += r.answers;
    }
    assert_eq!(
        total.into_iter().collect::<Vec<_>>(),
        [("2xx", 3), ("429", 1), ("5xx", 1)]
    );
    assert_eq!(store.api_answers(&other).await.unwrap()[0].answers, 1);

    seed(&store, 250).await;
    assert!(store.confirmed_per_second(&q()).await.unwrap().is_empty());
    let chunk = store
        .prepare_batches(&q(), SCHOOL, 10, BatchLimits::default())
        .await
        .unwrap();
    for b in &chunk.batches[..2] {
        store.mark_synced(b.batch_id, "rcpt").await.unwrap();
    }
    let confirmed = store.confirmed_per_second(&q()).await.unwrap();
    assert_eq!(
        confirmed.iter().map(|(_, n)| n).sum::<u64>(),
        200,
        "{confirmed:?}"
    );
    assert!(
        confirmed.iter().all(|(s, _)| *s >= before / 1000),
        "{confirmed:?}"
    );
    assert!(
        confirmed.windows(2).all(|w| w[0].0 < w[1].0),
        "{confirmed:?}"
    );
}

// Corrections while a batch is out: a batch that has left keeps its key and bytes until its
// outcome is known, and a record changed meanwhile follows it with its new content.

/// SendBatch's take of a batch: its bytes, and from now on the batch has left.
async fn sent_body(store: &Store, batch_id: Uuid) -> Vec<u8> {
    match store.take_off(batch_id).await.unwrap() {
        TakeOff::Send(batch) => batch.body,
        other => panic!("batch {batch_id} not sendable: {other:?}"),
    }
}

/// The body a batch of `records` (as imported) would carry, for comparison.
fn body_of(batch_id: Uuid, records: &[Value]) -> Vec<u8> {
    let canonical: Vec<String> = records
        .iter()
        .map(gradesync_govapi::contract::canonical_json)
        .collect();
    let refs: Vec<&str> = canonical.iter().map(String::as_str).collect();
    encode_batch(batch_id, &q(), SCHOOL, &refs).unwrap()
}

#[tokio::test]
async fn a_record_changed_after_its_batch_left_follows_it_with_its_new_content() {
    let (_dir, store) = temp_store().await;
    let mut records = seed(&store, 5).await;
    let id = cut(&store, 1, 5).await[0];
    let sent = sent_body(&store, id).await;
    assert_eq!(sent, body_of(id, &records));

    let report = import(&store, &lines(&[record("r0002", SCHOOL, "B")])).await;
    assert_eq!(
        (report.updated, report.held, report.superseded_batches),
        (1, 1, 0)
    );
    assert_eq!(
        sent_body(&store, id).await,
        sent,
        "a resend carries the bytes it left with"
    );
    let report = import(&store, &lines(&[record("r0002", SCHOOL, "C")])).await;
    assert_eq!((report.updated, report.held), (1, 1));
    assert_eq!(
        sent_body(&store, id).await,
        sent,
        "and keeps them through a second change"
    );
    assert_eq!(counts(&store, SCHOOL).await, [0, 5, 0, 0, 0]);
    assert!(
        store
            .prepare_batches(&q(), SCHOOL, 5, BatchLimits::default())
            .await
            .unwrap()
            .batches
            .iter()
            .all(|b| b.batch_id == id),
        "nothing of the batch is cut again before it settles"
    );

    assert_eq!(store.mark_synced(id, "rcpt-1").await.unwrap(), 4);
    assert_eq!(counts(&store, SCHOOL).await, [1, 0, 4, 0, 0]);
    let next = cut(&store, 1, 5).await;
    assert_eq!(next.len(), 1);
    assert_ne!(next[0], id);
    records[2] = record("r0002", SCHOOL, "C");
    assert_eq!(
        sent_body(&store, next[0]).await,
        body_of(next[0], &records[2..3]),
        "the follow-up carries the newest content"
    );
    assert_eq!(store.mark_synced(next[0], "rcpt-2").await.unwrap(), 1);
    assert_eq!(counts(&store, SCHOOL).await, [0, 0, 5, 0, 0]);
}

#[tokio::test]
async fn a_record_changed_back_before_its_batch_settles_needs_no_follow_up() {
    let (_dir, store) = temp_store().await;
    seed(&store, 2).await;
    let id = cut(&store, 1, 2).await[0];
    let sent = sent_body(&store, id).await;
    import(&store, &lines(&[record("r0000", SCHOOL, "B")])).await;
    let back = import(&store, &lines(&[record("r0000", SCHOOL, "A")])).await;
    assert_eq!((back.updated, back.held), (1, 1));
    assert_eq!(sent_body(&store, id).await, sent);
    assert_eq!(store.mark_synced(id, "rcpt").await.unwrap(), 2);
    assert_eq!(counts(&store, SCHOOL).await, [0, 0, 2, 0, 0]);
}

#[tokio::test]
async fn a_batch_that_has_not_left_is_withdrawn_and_sends_nothing() {
    let (_dir, store) = temp_store().await;
    seed(&store, 3).await;
    let id = cut(&store, 1, 3).await[0];
    let report = import(&store, &lines(&[record("r0001", SCHOOL, "B")])).await;
    assert_eq!((report.held, report.superseded_batches), (0, 1));
    assert_eq!(
        store.take_off(id).await.unwrap(),
        TakeOff::Settled {
            status: "superseded".to_string(),
            receipt_id: None
        }
    );
    assert_eq!(counts(&store, SCHOOL).await, [3, 0, 0, 0, 0]);
    assert_eq!(store.mark_synced(id, "never").await.unwrap(), 0);
}

#[tokio::test]
async fn a_settled_batch_is_not_taken_again() {
    let (_dir, store) = temp_store().await;
    seed(&store, 2).await;
    let id = cut(&store, 1, 2).await[0];
    sent_body(&store, id).await;
    assert_eq!(store.mark_synced(id, "rcpt-9").await.unwrap(), 2);
    assert_eq!(
        store.take_off(id).await.unwrap(),
        TakeOff::Settled {
            status: "synced".to_string(),
            receipt_id: Some("rcpt-9".to_string())
        }
    );
}

#[tokio::test]
async fn a_400_naming_a_changed_record_sends_its_new_content_not_a_rejection() {
    let (_dir, store) = temp_store().await;
    seed(&store, 3).await;
    let id = cut(&store, 1, 3).await[0];
    sent_body(&store, id).await;
    import(&store, &lines(&[record("r0001", SCHOOL, "B")])).await;
    let mut named = named("r0000");
    named.extend(self::named("r0001"));
    let r = store
        .reject_batch(id, 400, "Bad Request", &named, MAX_CUTS)
        .await
        .unwrap();
    assert_eq!((r.rejected, r.requeued, r.dead), (1, 2, 0));
    assert_eq!(counts(&store, SCHOOL).await, [2, 0, 0, 1, 0]);
    let next = cut(&store, 1, 3).await[0];
    let body: Value = serde_json::from_slice(&sent_body(&store, next).await).unwrap();
    let grades: Vec<&str> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["grade"].as_str().unwrap())
        .collect();
    assert_eq!(grades, ["B", "A"], "r0001 with its new grade, then r0002");
}

#[tokio::test]
async fn a_split_leaves_a_changed_record_to_a_later_batch() {
    let (_dir, store) = temp_store().await;
    seed(&store, 5).await;
    let id = cut(&store, 1, 5).await[0];
    sent_body(&store, id).await;
    import(&store, &lines(&[record("r0004", SCHOOL, "B")])).await;
    let split: Split = store.split_batch(id, "too large").await.unwrap();
    assert_eq!(
        (split.halves.len(), split.requeued, split.rejected),
        (2, 1, 0)
    );
    assert_eq!(
        split.halves.iter().map(|h| h.records).sum::<u64>(),
        4,
        "the halves carry the records that did not change"
    );
    for half in &split.halves {
        let body = store.batch_body(half.batch_id).await.unwrap();
        assert_eq!(body.body.len() as u64, half.bytes);
    }
    assert_eq!(counts(&store, SCHOOL).await, [1, 4, 0, 0, 0]);
}

#[tokio::test]
async fn a_dead_batch_a_lookup_finds_committed_is_synced_and_its_change_follows() {
    let (_dir, store) = temp_store().await;
    seed(&store, 3).await;
    let id = cut(&store, 1, 3).await[0];
    sent_body(&store, id).await;
    assert!(store.dead_letter(id, "no answer in time").await.unwrap());
    import(&store, &lines(&[record("r0000", SCHOOL, "B")])).await;
    assert_eq!(store.dead_letters_to_look_up(&q()).await.unwrap().len(), 1);
    assert_eq!(store.mark_synced(id, "rcpt-late").await.unwrap(), 2);
    assert_eq!(counts(&store, SCHOOL).await, [1, 0, 2, 0, 0]);
    assert!(store.dead_letters(&q()).await.unwrap().is_empty());
    assert_eq!(store.open_dead_letters(&q()).await.unwrap(), 0);
    assert_eq!(store.requeue_dead_letters(&q()).await.unwrap(), 0);
}
