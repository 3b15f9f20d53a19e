//! `gradesync import` from a school information system: a CSV file with `--map`, and a
//! OneRoster 1.2 export as a folder and as a zip, both written here. Bad rows of every kind
//! are named by file and line without quoting a value, good rows land in the store, an
//! unchanged import changes nothing, a changed score sends one record back to pending, and
//! what was imported syncs `complete` with every record applied once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use gradesync_activities::model::Verdict;
use gradesync_govapi::sim::Faults;
use serde_json::Value;

use crate::helpers::{QUARTER, TestApp, assert_applied_once, fast_policy};

const STUDENTS: usize = 12;
/// The good results of [`network`]: three line items for each student, and one more
/// whose comment runs over two lines.
const GOOD_RESULTS: u64 = 3 * STUDENTS as u64 + 1;

/// A OneRoster export of two schools and three classes (one per way of finding a course
/// code), one line item per class for the quarter, and a result per student and line
/// item. With `bad_rows`, one bad row of each kind is added; their lines are in
/// [`BAD_ROWS`]. `changed` gives that result the score 99.
fn network(bad_rows: bool, changed: Option<&str>) -> Vec<(&'static str, String)> {
    let manifest = "propertyName,value\nmanifest.version,1.0\noneroster.version,1.2\n\
        file.academicSessions,bulk\nfile.categories,absent\nfile.classes,bulk\n\
        file.courses,bulk\nfile.enrollments,absent\nfile.lineItems,bulk\nfile.orgs,bulk\n\
        file.results,bulk\nfile.users,absent\nsource.systemName,Test SIS\n";
    let mut orgs = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n\
        org-n,active,2026-01-05,North,school,SCH-N,\n\
        org-s,active,2026-01-05,South,school,SCH-S,\n"
        .to_string();
    let sessions = format!(
        "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n\
         gp-q3,active,,{QUARTER},gradingPeriod,2026-07-01,2026-09-30,,2027\n\
         gp-fall,active,,Fall term,gradingPeriod,2026-09-01,2026-12-20,,2027\n"
    );
    let courses = "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes\n\
        course-bio,active,,,Biology,BIO-1,,org-n,,\n";
    let mut classes = "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods\n\
        class-math,active,,Math 7,,,MATH-7,scheduled,,org-n,,,,\n\
        class-alg,active,,Algebra,,,ALG-1,scheduled,,org-s,,,,\n\
        class-bio,active,,Biology,,course-bio,,scheduled,,org-n,,,,\n"
        .to_string();
    let mut line_items = "sourcedId,status,dateLastModified,title,description,assignDate,dueDate,classSourcedId,categorySourcedId,gradingPeriodSourcedId,resultValueMin,resultValueMax\n\
        li-math,active,,Quarter grade,,,,class-math,,gp-q3,0,100\n\
        li-alg,active,,Quarter grade,,,,class-alg,,gp-q3,0,100\n\
        li-bio,active,,Quarter grade,,,,class-bio,,gp-q3,0,100\n"
        .to_string();
    let mut results = "sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,score,textScore,scoreDate,comment\n".to_string();
    for s in 1..=STUDENTS {
        for li in ["math", "alg", "bio"] {
            let id = format!("res-{li}-{s:03}");
            let score = if changed == Some(id.as_str()) {
                99
            } else {
                60 + (s * 7) % 40
            };
            let text = if li == "math" { "B" } else { "" };
            results.push_str(&format!(
                "{id},active,2026-09-20,li-{li},stu-{s:03},fully graded,{score},{text},2026-09-20,\n"
            ));
        }
    }
    results.push_str(
        "res-note-013,active,,li-alg,stu-013,fully graded,71,,,\"private words\nover two lines\"\n",
    );
    if bad_rows {
        orgs.push_str("org-n,active,2026-01-05,North again,school,SCH-X,\n");
        classes.push_str("class-orphan,active,,Orphan,,,ORP-1,scheduled,,org-gone,,,,\n");
        line_items.push_str(
            "li-lost,active,,Lost,,,,class-gone,,gp-q3,0,100\n\
             li-orphan,active,,Orphan,,,,class-orphan,,gp-q3,0,100\n\
             li-fall,active,,Fall,,,,class-math,,gp-fall,0,100\n\
             li-none,active,,No period,,,,class-math,,,0,100\n",
        );
        results.push_str(
            "res-x-1,active,,li-missing,stu-101,fully graded,70,,,\n\
             res-x-2,active,,li-lost,stu-102,fully graded,70,,,\n\
             res-x-3,active,,li-orphan,stu-103,fully graded,70,,,\n\
             res-x-4,active,,li-math,stu-104,not submitted,,,,\n\
             res-x-5,active,,li-fall,stu-105,fully graded,70,,,\n\
             res-x-6,active,,li-none,stu-106,fully graded,70,,,\n\
             res-math-001,active,,li-math,stu-001,fully graded,70,,,\n\
             res-x-7,active\n\
             res-x-8,tobedeleted,,li-math,stu-108,fully graded,70,,,\n",
        );
    }
    vec![
        ("manifest.csv", manifest.to_string()),
        ("orgs.csv", orgs),
        ("academicSessions.csv", sessions),
        ("courses.csv", courses.to_string()),
        ("classes.csv", classes),
        ("lineItems.csv", line_items),
        ("results.csv", results),
    ]
}

/// Each bad row of `network(true, _)` as stderr names it: its place and the start of its
/// reason.
const BAD_ROWS: [&str; 11] = [
    "orgs.csv line 4: duplicate sourcedId (first on line 2)",
    "classes.csv line 5: unknown school: no orgs.csv row has its schoolSourcedId",
    "lineItems.csv line 5: unknown class: no classes.csv row has its classSourcedId",
    "results.csv line 40: unknown line item",
    "results.csv line 41: its line item (lineItems.csv line 5) is bad: unknown class",
    "results.csv line 42: its class (classes.csv line 5, via lineItems.csv line 6) is bad: unknown school",
    "results.csv line 43: no grade: neither score nor textScore is set",
    "results.csv line 44: bad quarter: its grading period (academicSessions.csv line 3, via lineItems.csv line 7)",
    "results.csv line 45: no quarter: its line item (lineItems.csv line 8) names no gradingPeriodSourcedId",
    "results.csv line 46: duplicate record_id in this file (first seen on line 2)",
    "results.csv line 47: malformed CSV row: 2 cells, the header has 10",
];

fn write_folder(dir: &Path, files: &[(&str, String)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir.to_path_buf()
}

/// The export zipped as SIS exports often are: inside a folder of its own, deflated.
fn write_zip(path: &Path, files: &[(&str, String)]) -> PathBuf {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, text) in files {
        zip.start_file(format!("oneroster-export/{name}"), options)
            .unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    path.to_path_buf()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `record_id -> (status, stored body)` of every grade in the test's store.
async fn grades(app: &TestApp) -> BTreeMap<String, (String, Value)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.worker_args.store.database_url)
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT g.record_id, g.status, b.body FROM grades g \
         JOIN grade_bodies b ON b.record_id = g.record_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(id, status, body)| (id, (status, serde_json::from_str(&body).unwrap())))
        .collect()
}

fn assert_no_values_quoted(err: &str) {
    for value in ["stu-", "private words", "North", "Orphan", "Fall term"] {
        assert!(!err.contains(value), "a message quotes `{value}`: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sis_oneroster_folder_and_zip_name_each_bad_row_and_keep_the_good_ones() {
    let app = TestApp::spawn_without_worker("sis-oneroster", Faults::default()).await;
    let files = network(true, None);
    let folder = write_folder(&app.dir.path().join("export"), &files);

    let out = app.gradesync(&["import", "--format", "oneroster", folder.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    for bad in BAD_ROWS {
        assert!(
            err.contains(&format!("  {bad}")),
            "missing `{bad}` in:\n{err}"
        );
    }
    assert_eq!(
        err.lines().filter(|l| l.contains(" line ")).count(),
        BAD_ROWS.len(),
        "no other row is bad:\n{err}"
    );
    assert!(err.contains("11 bad rows were skipped"), "{err}");
    assert_no_values_quoted(&err);
    assert!(
        stdout(&out).ends_with(&format!(
            ": 46 results, {GOOD_RESULTS} new, 0 changed (back to pending), 0 unchanged, 11 bad \
             (3 of them in the files results refer to), 1 marked tobedeleted (not imported)\n"
        )),
        "{}",
        stdout(&out)
    );

    let stored = grades(&app).await;
    assert_eq!(stored.len() as u64, GOOD_RESULTS, "{:?}", stored.keys());
    assert!(stored.values().all(|(status, _)| status == "pending"));
    let body = |id: &str| stored[id].1.clone();
    assert_eq!(
        body("res-math-001"),
        serde_json::json!({"record_id": "res-math-001", "school_id": "SCH-N",
            "student_id": "stu-001", "course_code": "MATH-7", "quarter": QUARTER,
            "grade": "B", "score": "67", "score_status": "fully graded",
            "score_date": "2026-09-20"}),
        "the first of the duplicate sourcedIds is kept"
    );
    assert_eq!(body("res-alg-002")["school_id"], "SCH-S");
    assert_eq!(body("res-alg-002")["grade"], "74");
    assert_eq!(
        body("res-bio-003")["course_code"],
        "BIO-1",
        "the course's code"
    );
    assert!(
        body("res-note-013").get("comment").is_none(),
        "comments stay home"
    );

    // The same export as a zip: nothing new, nothing changed.
    let zip = write_zip(&app.dir.path().join("export.zip"), &files);
    let again = app.gradesync(&["import", zip.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    assert!(
        stdout(&again).contains(&format!(
            "0 new, 0 changed (back to pending), {GOOD_RESULTS} unchanged, 11 bad"
        )),
        "{}",
        stdout(&again)
    );
    for bad in BAD_ROWS {
        assert!(stderr(&again).contains(bad), "{}", stderr(&again));
    }

    // Usage errors stop before anything is read: exit 2 and one line.
    let mut no_column = files.clone();
    no_column[5].1 = no_column[5].1.replace("classSourcedId", "klass");
    let folder = write_folder(&app.dir.path().join("no-column"), &no_column);
    let out = app.gradesync(&["import", folder.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("lineItems.csv has no `classSourcedId` column; its columns: `sourcedId`"),
        "{err}"
    );
    let mut old = files.clone();
    old[0].1 = old[0]
        .1
        .replace("oneroster.version,1.2", "oneroster.version,1.1");
    let zip = write_zip(&app.dir.path().join("old.zip"), &old);
    let out = app.gradesync(&["import", zip.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("oneroster.version 1.1; this import reads OneRoster 1.2"));
    let not_zip = app.dir.path().join("grades.zip");
    std::fs::write(&not_zip, "not a zip").unwrap();
    let out = app.gradesync(&["import", not_zip.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a readable zip archive"));
    assert_eq!(grades(&app).await.len() as u64, GOOD_RESULTS);
    app.stop().await;
}

/// A CSV export in another language, with a BOM and CRLF line ends, as spreadsheets write.
fn notas_csv(bad_rows: bool) -> String {
    let mut text = "\u{feff}id,escuela,alumno,materia,trimestre,nota,docente\r\n".to_string();
    for s in 1..=10 {
        for course in ["MAT", "LEN"] {
            text.push_str(&format!(
                "n-{course}-{s:02},ESC-{},al-{s:02},{course},{QUARTER},{},Prof. {course}\r\n",
                s % 2 + 1,
                ["A", "B", "C"][s % 3]
            ));
        }
    }
    text.push_str(&format!(
        "n-obs-01,ESC-1,al-01,OBS,{QUARTER},A,\"private words\r\nover two lines\"\r\n"
    ));
    if bad_rows {
        text.push_str(&format!(
            "n-bad-1,ESC-1,al-91,MAT,{QUARTER},,Prof\r\n\
             n-bad-2,ESC-1,al-92,MAT,2026-Q5,A,Prof\r\n\
             \r\n\
             n-bad-3,ESC-1,al-93,MAT,{QUARTER},A,Prof,extra\r\n\
             n-MAT-01,ESC-2,al-01,MAT,{QUARTER},A,Prof\r\n"
        ));
    }
    text
}

const MAPS: [&str; 12] = [
    "--map",
    "id=record_id",
    "--map",
    "escuela=school_id",
    "--map",
    "alumno=student_id",
    "--map",
    "materia=course_code",
    "--map",
    "trimestre=quarter",
    "--map",
    "nota=grade",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sis_csv_with_maps_names_each_bad_row_by_line() {
    let app = TestApp::spawn_without_worker("sis-csv", Faults::default()).await;
    let file = app.dir.path().join("notas.csv");
    std::fs::write(&file, notas_csv(true)).unwrap();
    let path = file.to_str().unwrap();

    let args: Vec<&str> = ["import", path].into_iter().chain(MAPS).collect();
    let out = app.gradesync(&args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    for bad in [
        "  line 24: empty required cell: `grade` (column `nota`)",
        "  line 25: field `quarter` is not a quarter",
        "  line 27: malformed CSV row: 8 cells, the header has 7",
        "  line 28: duplicate record_id in this file (first seen on line 2)",
    ] {
        assert!(err.contains(bad), "missing `{bad}` in:\n{err}");
    }
    assert_eq!(
        err.lines().filter(|l| l.contains(" line ")).count(),
        4,
        "{err}"
    );
    assert_no_values_quoted(&err);
    assert!(
        stdout(&out).contains(": 25 rows, 21 new, 0 changed (back to pending), 0 unchanged, 4 bad"),
        "{}",
        stdout(&out)
    );
    let stored = grades(&app).await;
    assert_eq!(stored.len(), 21);
    assert_eq!(
        stored["n-LEN-03"].1,
        serde_json::json!({"record_id": "n-LEN-03", "school_id": "ESC-2", "student_id": "al-03",
            "course_code": "LEN", "quarter": QUARTER, "grade": "A", "docente": "Prof. LEN"}),
        "mapped columns renamed, the other kept as metadata"
    );
    assert_eq!(
        stored["n-obs-01"].1["docente"],
        "private words\r\nover two lines"
    );

    // The same rows on standard input: all unchanged.
    let args: Vec<&str> = ["import", "-", "--format", "csv"]
        .into_iter()
        .chain(MAPS)
        .collect();
    let mut child = app
        .gradesync_command()
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(notas_csv(false).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("-: 21 rows, 0 new, 0 changed (back to pending), 21 unchanged, 0 bad"),
        "{}",
        stdout(&out)
    );

    // A map naming a missing column, or a required field with no column: exit 2, the
    // header's columns listed.
    let out = app.gradesync(&["import", path, "--map", "grado=grade"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--map grado=grade: ") && err.contains("has no column `grado`; its columns: `id`, `escuela`, `alumno`, `materia`, `trimestre`, `nota`, `docente`"),
        "{err}"
    );
    let out = app.gradesync(&["import", path, "--map", "id=record_id"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("has no column for field `school_id` (name one with --map COLUMN=school_id)"),
        "{err}"
    );
    assert_eq!(grades(&app).await.len(), 21);
    app.stop().await;
}

/// Acceptance: a OneRoster zip imports and syncs `complete`, every record applied once;
/// a changed score then sends that record, and only it, back to pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sis_acceptance_a_oneroster_zip_imports_and_syncs() {
    let app = TestApp::spawn("sis-zip-sync", Faults::default()).await;
    let zip = write_zip(&app.dir.path().join("export.zip"), &network(false, None));
    let out = app.gradesync(&["import", zip.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{GOOD_RESULTS} new")),
        "{}",
        stdout(&out)
    );

    let summary = app.sync_and_wait(fast_policy()).await;
    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, GOOD_RESULTS);
    assert_applied_once(&app.ledger().await, GOOD_RESULTS);

    let zip = write_zip(
        &app.dir.path().join("export-2.zip"),
        &network(false, Some("res-alg-005")),
    );
    let out = app.gradesync(&["import", zip.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "0 new, 1 changed (back to pending), {} unchanged, 0 bad",
            GOOD_RESULTS - 1
        )),
        "{}",
        stdout(&out)
    );
    let stored = grades(&app).await;
    let pending: Vec<&String> = stored
        .iter()
        .filter(|(_, (status, _))| status != "synced")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(pending, ["res-alg-005"]);
    assert_eq!(stored["res-alg-005"].0, "pending");
    assert_eq!(stored["res-alg-005"].1["grade"], "99");
    app.stop().await;
}

/// Acceptance: a CSV file with `--map` imports and syncs `complete`, every record applied
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sis_acceptance_a_csv_file_with_maps_imports_and_syncs() {
    let app = TestApp::spawn("sis-csv-sync", Faults::default()).await;
    let file = app.dir.path().join("notas.csv");
    std::fs::write(&file, notas_csv(false)).unwrap();
    let args: Vec<&str> = ["import", file.to_str().unwrap()]
        .into_iter()
        .chain(MAPS)
        .collect();
    let out = app.gradesync(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("21 new"), "{}", stdout(&out));

    let summary = app.sync_and_wait(fast_policy()).await;
    assert_eq!(summary.verdict, Verdict::Complete, "{summary:?}");
    assert_eq!(summary.totals.records_synced, 21);
    assert_applied_once(&app.ledger().await, 21);
    let stored = grades(&app).await;
    assert!(stored.values().all(|(status, _)| status == "synced"));
    app.stop().await;
}
