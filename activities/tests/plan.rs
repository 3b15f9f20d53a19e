//! `Store::plan_batches`, the dry run behind `gradesync sync plan`: it must cut exactly the
//! batches PrepBatch will cut, and write nothing.

use gradesync_activities::store::{BatchLimits, Store, scratch};
use gradesync_govapi::Quarter;
use serde_json::{Value, json};

fn q() -> Quarter {
    "2026-Q3".parse().unwrap()
}

/// Records of varied sizes (so both the count and the byte limit cut batches), with one
/// record too large for any batch in school s2.
fn records() -> Vec<Value> {
    let mut out = Vec::new();
    for school in ["s1", "s2", "s3"] {
        for i in 0..37 {
            let comment = "c".repeat((i * 53) % 400);
            out.push(
                json!({"record_id": format!("{school}-r{i:03}"), "school_id": school,
                "student_id": format!("st-{i}"), "course_code": "MATH", "quarter": "2026-Q3",
                "grade": "A", "teacher": "Ms X", "comment": comment}),
            );
        }
    }
    out.push(
        json!({"record_id": "s2-r500", "school_id": "s2", "student_id": "st-big",
        "course_code": "MATH", "quarter": "2026-Q3", "grade": "A", "teacher": "Ms X",
        "comment": "c".repeat(5_000)}),
    );
    out
}

async fn batches_table(url: &str) -> Vec<(String, String, i64, i64, String)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let rows = sqlx::query_as(
        "SELECT batch_id, school_id, records, bytes, status FROM batches ORDER BY batch_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

#[tokio::test]
async fn plan_matches_what_prep_batch_cuts_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = scratch::url_for(dir.path()).await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    let text: String = records().iter().map(|r| format!("{r}\n")).collect();
    let imported = store.import_jsonl(text.as_bytes(), |_| {}).await.unwrap();
    let limits = BatchLimits {
        max_records: 6,
        max_bytes: 1_600,
    };
    // s1 already has two batches cut (a run that stopped before sending them).
    store.prepare_batches(&q(), "s1", 2, limits).await.unwrap();

    let before = (
        store.status_counts(&q()).await.unwrap(),
        batches_table(&url).await,
    );
    let plan = store.plan_batches(&q(), limits).await.unwrap();
    let after = (
        store.status_counts(&q()).await.unwrap(),
        batches_table(&url).await,
    );
    assert_eq!(before, after, "planning wrote to the store");
    assert!(plan.has_grades);
    let totals = plan.totals();
    assert_eq!(totals.pending_records(), imported.inserted);
    assert_eq!(totals.oversize_records, 1);
    assert_eq!(plan.schools.len(), 3);
    assert_eq!(plan.schools[0].prepared_batches, 2);

    // What PrepBatch actually cuts, school by school, against the plan.
    for school in &plan.schools {
        let chunk = store
            .prepare_batches(&q(), &school.school_id, 10_000, limits)
            .await
            .unwrap();
        let records: u64 = chunk.batches.iter().map(|b| b.records).sum();
        let bytes: u64 = chunk.batches.iter().map(|b| b.bytes).sum();
        assert_eq!(chunk.batches.len() as u64, school.batches(), "{school:?}");
        assert_eq!(records, school.records(), "{school:?}");
        assert_eq!(bytes, school.bytes(), "{school:?}");
        assert_eq!(
            chunk.oversize_rejected, school.oversize_records,
            "{school:?}"
        );
        assert!(
            school.new_batches > 1,
            "the byte or count limit cut: {school:?}"
        );
    }
    // Everything is cut now: nothing new would be planned.
    let replanned = store.plan_batches(&q(), limits).await.unwrap().totals();
    assert_eq!(replanned.new_batches, 0);
    assert_eq!(replanned.batches(), totals.batches());
}

#[tokio::test]
async fn plan_of_an_unknown_quarter_says_so() {
    let store = Store::connect(&scratch::fresh_url().await.unwrap())
        .await
        .unwrap();
    let plan = store
        .plan_batches(&q(), BatchLimits::default())
        .await
        .unwrap();
    assert!(!plan.has_grades);
    assert!(plan.schools.is_empty());
    let refused = store
        .plan_batches(
            &q(),
            BatchLimits {
                max_records: 0,
                max_bytes: 1,
            },
        )
        .await;
    assert!(refused.is_err());
}
