//! What a 400 naming records leaves behind for `ClientError`. The API's problem is parsed
//! whole when it arrives, whatever its size, and only what the batch needs is kept in the
//! store: each error that names one of the batch's records (a few per record, with field
//! and message cut short) and a short title and detail. So the note is always readable
//! JSON however long the answer was, and a 400 naming 3 of 100 records rejects those 3.

use std::collections::HashMap;

use gradesync_govapi::contract::Problem;

/// Errors kept per record: enough for a person to see what to fix.
const ERRORS_PER_RECORD: usize = 3;
/// Longest field name and message kept of one error, and longest title and detail.
const FIELD_CHARS: usize = 200;
const MESSAGE_CHARS: usize = 500;
const DETAIL_CHARS: usize = 1_000;

/// The problem as kept for the batch: its errors limited to the records `in_batch` carries,
/// a few each, every text cut short; extension members dropped.
pub fn keep(mut problem: Problem, in_batch: &[String]) -> Problem {
    let mut per_record: HashMap<&str, usize> = in_batch.iter().map(|id| (id.as_str(), 0)).collect();
    let named = problem.errors.len();
    problem.errors.retain_mut(|e| {
        let Some(kept) = per_record.get_mut(e.record_id.as_str()) else {
            return false;
        };
        *kept += 1;
        e.field = cut(&e.field, FIELD_CHARS);
        e.message = cut(&e.message, MESSAGE_CHARS);
        *kept <= ERRORS_PER_RECORD
    });
    if problem.errors.len() < named {
        tracing::debug!(
            named,
            kept = problem.errors.len(),
            "problem errors outside the batch or past the per-record limit dropped"
        );
    }
    problem.title = cut(&problem.title, FIELD_CHARS);
    problem.detail = problem.detail.map(|d| cut(&d, DETAIL_CHARS));
    problem.type_uri = cut(&problem.type_uri, FIELD_CHARS);
    problem.extensions.clear();
    problem
}

/// The records a kept problem names, each with its reason (`field: message`, several
/// joined), in the order the API gave them.
pub fn named(problem: &Problem) -> Vec<(String, String)> {
    let mut named: Vec<(String, String)> = Vec::new();
    for e in &problem.errors {
        let reason = format!("{}: {}", e.field, e.message);
        match named.iter_mut().find(|(id, _)| *id == e.record_id) {
            Some((_, reasons)) => {
                reasons.push_str("; ");
                reasons.push_str(&reason);
            }
            None => named.push((e.record_id.clone(), reason)),
        }
    }
    named
}

/// `text` cut to at most `max` chars, marked when cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use gradesync_govapi::contract::RecordFieldError;

    use super::*;

    fn error(record_id: &str, message: &str) -> RecordFieldError {
        RecordFieldError {
            record_id: record_id.to_string(),
            field: "grade".to_string(),
            message: message.to_string(),
        }
    }

    #[test]
    fn a_huge_problem_keeps_the_batch_s_records_a_few_errors_each_and_short() {
        let long = "x".repeat(200_000);
        let mut problem = Problem::new(400, "Invalid Records", long.clone());
        problem.errors = vec![
            error("r1", &long),
            error("elsewhere", "not ours"),
            error("r2", "bad"),
            error("r2", "worse"),
            error("r2", "third"),
            error("r2", "fourth is dropped"),
        ];
        problem
            .extensions
            .insert("trace".to_string(), serde_json::json!(long));
        let batch = vec!["r1".to_string(), "r2".to_string(), "r3".to_string()];
        let kept = keep(problem, &batch);
        let text = serde_json::to_string(&kept).unwrap();
        assert!(text.len() < 4_000, "{} bytes kept", text.len());
        let back: Problem = serde_json::from_str(&text).unwrap();
        let ids: Vec<&str> = back.errors.iter().map(|e| e.record_id.as_str()).collect();
        assert_eq!(ids, ["r1", "r2", "r2", "r2"]);
        assert_eq!(back.errors[0].message.chars().count(), MESSAGE_CHARS + 1);
        assert!(back.extensions.is_empty());
        let named = named(&back);
        assert_eq!(named.len(), 2);
        assert_eq!(
            named[1],
            (
                "r2".to_string(),
                "grade: bad; grade: worse; grade: third".to_string()
            )
        );
    }

    #[test]
    fn cutting_counts_chars_not_bytes() {
        assert_eq!(cut("ééé", 2), "éé…");
        assert_eq!(cut("ab", 2), "ab");
    }
}
