//! Realistic synthetic grade records for the demo, the tests and the benchmarks: the
//! contract's required fields plus the metadata real records carry (teacher, evaluations,
//! comments, attendance), about 8 KB on average with a long tail, reproducible from a seed.
//! Nothing here is real personal data.

use std::io::Write;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// What to generate.
#[derive(Debug, Clone)]
pub struct DataSpec {
    pub quarter: String,
    pub schools: usize,
    pub records_per_school: usize,
    /// Average encoded size of one record, in bytes (the seed says ~8 KB).
    pub mean_bytes: usize,
    pub seed: u64,
}

impl Default for DataSpec {
    fn default() -> Self {
        Self {
            quarter: "2026-Q3".into(),
            schools: 5,
            records_per_school: 400,
            mean_bytes: 8_000,
            seed: 7,
        }
    }
}

pub fn school_id(i: usize) -> String {
    format!("school-{:03}", i + 1)
}

const WORDS: &[&str] = &[
    "progress",
    "participation",
    "homework",
    "project",
    "reading",
    "lab",
    "essay",
    "review",
    "improved",
    "consistent",
    "needs",
    "support",
    "excellent",
    "attendance",
    "oral",
    "quiz",
    "portfolio",
    "teamwork",
    "practice",
    "assessment",
    "criteria",
    "rubric",
    "effort",
    "goal",
];
const GRADES: &[&str] = &["A", "A-", "B+", "B", "B-", "C+", "C", "D", "F"];
const COURSES: &[&str] = &[
    "MATH", "LANG", "SCI", "HIST", "GEO", "ART", "MUS", "PE", "ENG", "TECH",
];

fn words(rng: &mut SmallRng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        out.push(' ');
    }
    out
}

/// One record. Sizes follow a long tail: most near the mean, a few several times larger.
pub fn record(rng: &mut SmallRng, spec: &DataSpec, school: usize, n: usize) -> Value {
    let tail: f64 = rng.random::<f64>();
    let factor = if tail > 0.99 {
        6.0
    } else if tail > 0.95 {
        2.5
    } else {
        0.6 + rng.random::<f64>() * 0.6
    };
    let target = (spec.mean_bytes as f64 * factor * 0.92) as usize;
    let evaluations = 4 + rng.random_range(0..6);
    let per_eval = target.saturating_sub(600) / evaluations;
    let evals: Vec<Value> = (0..evaluations)
        .map(|e| {
            json!({
                "name": format!("evaluation-{}", e + 1),
                "weight": rng.random_range(5..40),
                "score": (rng.random_range(0..1000) as f64) / 100.0,
                "date": format!("2026-{:02}-{:02}", rng.random_range(1..13), rng.random_range(1..29)),
                "comments": words(rng, per_eval.saturating_sub(90)),
            })
        })
        .collect();
    json!({
        "record_id": format!("rec-{}-{:07}", school_id(school), n),
        "school_id": school_id(school),
        "student_id": format!("stu-{:03}-{:06}", school + 1, n / COURSES.len()),
        "course_code": COURSES[n % COURSES.len()],
        "quarter": spec.quarter,
        "grade": GRADES[rng.random_range(0..GRADES.len())],
        "teacher": { "id": format!("t-{:04}", rng.random_range(0..500)), "name": format!("Teacher {}", rng.random_range(0..500)) },
        "attendance": { "present": rng.random_range(30..60), "absent": rng.random_range(0..8), "late": rng.random_range(0..5) },
        "evaluations": evals,
    })
}

/// `record` as a teacher corrected it in round `round`: another grade, and the round noted
/// (so every round's content differs from every other's).
pub fn correct(record: &Value, round: u32) -> Value {
    let mut fixed = record.clone();
    let now = record["grade"].as_str().unwrap_or_default();
    let at = GRADES.iter().position(|g| *g == now).unwrap_or(0);
    fixed["grade"] = json!(GRADES[(at + 1 + round as usize % (GRADES.len() - 1)) % GRADES.len()]);
    fixed["correction"] = json!({ "round": round, "reason": "grade corrected by the teacher" });
    fixed
}

/// Writes `schools x records_per_school` records as JSON Lines; returns the bytes written.
pub fn write_jsonl(spec: &DataSpec, mut out: impl Write) -> std::io::Result<u64> {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let mut bytes = 0u64;
    for school in 0..spec.schools {
        for n in 0..spec.records_per_school {
            let line = serde_json::to_string(&record(&mut rng, spec, school, n))?;
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            bytes += line.len() as u64 + 1;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradesync_govapi::contract::validate_record;

    #[test]
    fn a_correction_changes_the_grade_and_differs_every_round() {
        let spec = DataSpec::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let original = record(&mut rng, &spec, 0, 0);
        let first = correct(&original, 1);
        let second = correct(&first, 2);
        assert!(validate_record(&first).is_ok() && validate_record(&second).is_ok());
        assert_ne!(first["grade"], original["grade"]);
        assert_ne!(second["grade"], first["grade"]);
        assert_eq!(first["record_id"], original["record_id"]);
        assert_ne!(first, second);
    }

    #[test]
    fn records_are_valid_reproducible_and_about_8kb() {
        let spec = DataSpec {
            records_per_school: 200,
            schools: 2,
            ..DataSpec::default()
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_jsonl(&spec, &mut a).unwrap();
        write_jsonl(&spec, &mut b).unwrap();
        assert_eq!(a, b, "same seed, same data");
        let lines: Vec<&[u8]> = a.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 400);
        for line in &lines {
            let v: Value = serde_json::from_slice(line).unwrap();
            validate_record(&v).unwrap();
        }
        let mean = a.len() / lines.len();
        assert!((6_000..11_000).contains(&mean), "mean record size {mean}");
        let max = lines.iter().map(|l| l.len()).max().unwrap();
        assert!(
            max > 2 * mean,
            "a long tail exists (max {max}, mean {mean})"
        );
    }
}
