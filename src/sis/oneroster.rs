//! A OneRoster 1.2 bulk (or delta) CSV export, as a folder or a zip, read as one grade
//! record per row of `results.csv`. The small files a result refers to are loaded first:
//! `lineItems.csv` (by `lineItemSourcedId`) → `classes.csv` (by `classSourcedId`) →
//! `orgs.csv` (by the class's `schoolSourcedId`), plus `courses.csv` and
//! `academicSessions.csv` when present; `results.csv` itself is streamed.
//!
//! A record's fields:
//! - `record_id`: the result's `sourcedId`; `student_id`: its `studentSourcedId`.
//! - `school_id`: the school org's `identifier` (the state or national school id), else
//!   its `sourcedId`.
//! - `course_code`: the class's `classCode`, else its course's `courseCode`
//!   (`courses.csv`), else the class's `sourcedId`.
//! - `quarter`: `--quarter` when given; else the title of the line item's grading period
//!   (`gradingPeriodSourcedId` in `academicSessions.csv`), which must read `YYYY-Qn`.
//! - `grade`: `textScore`, else `score`.
//! - metadata: `score_status` (`scoreStatus`), `score_date` (`scoreDate`), and `score`
//!   when the grade is the `textScore`. Not `comment` (a teacher's free text, which may say
//!   anything about a student) nor `dateLastModified` (it changes with no change of grade,
//!   and would send every record again).
//!
//! A row marked `tobedeleted`, or whose line item, class or school is, is not imported
//! (counted, not an error). A bad row of a referred-to file is reported once, at its own
//! file and line; each result that needs it is reported too, citing that line.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Read;
use std::path::Path;

use gradesync_govapi::Quarter;
use serde_json::{Map, Value};

use super::export::Export;
use super::table::{Row, Table};
use super::{Emit, Item, SisError, Source};

pub const MANIFEST: &str = "manifest.csv";
pub const RESULTS: &str = "results.csv";
pub const LINE_ITEMS: &str = "lineItems.csv";
pub const CLASSES: &str = "classes.csv";
pub const ORGS: &str = "orgs.csv";
pub const COURSES: &str = "courses.csv";
pub const SESSIONS: &str = "academicSessions.csv";

/// An opened export: manifest checked, lookup files loaded, `results.csv` header checked.
pub struct OneRoster {
    export: Export,
    line_items: HashMap<String, Join>,
    /// Bad rows of the lookup files, reported before the results.
    bad_references: Vec<Item>,
}

/// What a line item gives each of its results, worked out once per line item.
#[derive(Debug, Clone)]
enum Join {
    Ok {
        school_id: String,
        course_code: String,
        quarter: String,
    },
    /// The line item, its class or its school is marked `tobedeleted`.
    Deleted,
    /// Why none of its results can be imported, as a result's reason.
    Bad(String),
}

impl OneRoster {
    /// Opens the export at `path` (a folder or a zip), checks its manifest and loads the
    /// files results refer to. `quarter`, when given, is every result's quarter.
    pub fn open(path: &Path, quarter: Option<Quarter>) -> Result<Self, SisError> {
        let mut export = Export::open(path)?;
        check_manifest(&mut export)?;
        for name in [RESULTS, LINE_ITEMS, CLASSES, ORGS] {
            if !export.has(name) {
                return Err(not_oneroster(&export, format!("the export has no {name}")));
            }
        }
        if quarter.is_none() && !export.has(SESSIONS) {
            return Err(not_oneroster(
                &export,
                format!(
                    "the export has no {SESSIONS} to find each result's quarter in: give --quarter YYYY-Qn"
                ),
            ));
        }
        let mut bad = Vec::new();
        let orgs = load_orgs(&mut export, &mut bad)?;
        let courses = load_courses(&mut export, &mut bad)?;
        let sessions = match quarter {
            Some(_) => HashMap::new(),
            None => load_sessions(&mut export, &mut bad)?,
        };
        let classes = load_classes(&mut export, &orgs, &courses, &mut bad)?;
        let lookups = Lookups {
            classes: &classes,
            sessions: &sessions,
            quarter: quarter.map(|q| q.to_string()),
        };
        let line_items = load_line_items(&mut export, &lookups, &mut bad)?;
        // The results' header, checked now so that a missing column stops the import
        // before anything is stored.
        let results = open_table(&mut export, RESULTS)?;
        ResultColumns::find(&results)?;
        drop(results);
        Ok(Self {
            export,
            line_items,
            bad_references: bad,
        })
    }
}

/// The item one row of `results.csv` makes.
fn result_item(
    line_items: &HashMap<String, Join>,
    columns: &ResultColumns,
    line: u64,
    cells: &csv::StringRecord,
) -> Item {
    let bad = |reason: String| Item::Bad {
        origin: Some(RESULTS),
        line,
        reason,
    };
    let cell = |i: Option<usize>| i.map_or("", |i| &cells[i]);
    if is_deleted(cell(columns.status)) {
        return Item::Deleted;
    }
    for (name, i) in [
        ("sourcedId", columns.sourced_id),
        ("studentSourcedId", columns.student),
        ("lineItemSourcedId", columns.line_item),
    ] {
        if cells[i].is_empty() {
            return bad(format!("empty {name}"));
        }
    }
    let (school_id, course_code, quarter) = match line_items.get(&cells[columns.line_item]) {
        None => {
            return bad(format!(
                "unknown line item: no {LINE_ITEMS} row has its lineItemSourcedId"
            ));
        }
        Some(Join::Deleted) => return Item::Deleted,
        Some(Join::Bad(reason)) => return bad(reason.clone()),
        Some(Join::Ok {
            school_id,
            course_code,
            quarter,
        }) => (school_id, course_code, quarter),
    };
    let text_score = cell(columns.text_score);
    let score = cell(columns.score);
    let grade = match (text_score, score) {
        ("", "") => return bad("no grade: neither score nor textScore is set".to_string()),
        ("", score) => score,
        (text, _) => text,
    };
    let mut record = Map::new();
    let mut put = |field: &str, value: &str| {
        if !value.is_empty() {
            record.insert(field.to_string(), Value::String(value.to_string()));
        }
    };
    put("record_id", &cells[columns.sourced_id]);
    put("school_id", school_id);
    put("student_id", &cells[columns.student]);
    put("course_code", course_code);
    put("quarter", quarter);
    put("grade", grade);
    put("score_status", cell(columns.score_status));
    put("score_date", cell(columns.score_date));
    if !text_score.is_empty() {
        put("score", score);
    }
    Item::Record {
        origin: Some(RESULTS),
        line,
        value: Value::Object(record),
    }
}

impl Source for OneRoster {
    fn read(self, emit: &mut Emit<'_>) -> Result<(), SisError> {
        let Self {
            mut export,
            line_items,
            bad_references,
        } = self;
        for item in bad_references {
            emit(item)?;
        }
        let mut results = open_table(&mut export, RESULTS)?;
        let columns = ResultColumns::find(&results)?;
        while let Some(row) = results.next_row()? {
            let item = match row {
                Row::Malformed { line, reason } => Item::Bad {
                    origin: Some(RESULTS),
                    line,
                    reason,
                },
                Row::Cells { line, cells } => result_item(&line_items, &columns, line, &cells),
            };
            emit(item)?;
        }
        Ok(())
    }
}

/// The columns of `results.csv` a record is made of.
struct ResultColumns {
    sourced_id: usize,
    line_item: usize,
    student: usize,
    status: Option<usize>,
    score: Option<usize>,
    text_score: Option<usize>,
    score_status: Option<usize>,
    score_date: Option<usize>,
}

impl ResultColumns {
    fn find<R: Read>(table: &Table<R>) -> Result<Self, SisError> {
        let columns = Self {
            sourced_id: table.require("sourcedId")?,
            line_item: table.require("lineItemSourcedId")?,
            student: table.require("studentSourcedId")?,
            status: table.column("status"),
            score: table.column("score"),
            text_score: table.column("textScore"),
            score_status: table.column("scoreStatus"),
            score_date: table.column("scoreDate"),
        };
        if columns.score.is_none() && columns.text_score.is_none() {
            return Err(SisError::MissingColumn {
                table: RESULTS.to_string(),
                column: "score` or `textScore".to_string(),
                found: table.columns(),
            });
        }
        Ok(columns)
    }
}

/// Checks that the export is OneRoster 1.2 and that it carries results and the files
/// they are joined through.
fn check_manifest(export: &mut Export) -> Result<(), SisError> {
    let Some(input) = export.open_file(MANIFEST)? else {
        return Err(not_oneroster(
            export,
            format!("no {MANIFEST}: not a OneRoster CSV export"),
        ));
    };
    let mut table = Table::new(input, MANIFEST)?;
    let name = table.require("propertyName")?;
    let value = table.require("value")?;
    let mut properties = HashMap::new();
    while let Some(row) = table.next_row()? {
        if let Row::Cells { cells, .. } = row {
            properties.insert(
                cells[name].trim().to_string(),
                cells[value].trim().to_string(),
            );
        }
    }
    drop(table);
    match properties.get("oneroster.version").map(String::as_str) {
        Some("1.2") => {}
        Some(other) => {
            let shown: String = other.chars().take(16).collect();
            return Err(not_oneroster(
                export,
                format!(
                    "{MANIFEST} says oneroster.version {shown}; this import reads OneRoster 1.2"
                ),
            ));
        }
        None => {
            return Err(not_oneroster(
                export,
                format!("{MANIFEST} has no oneroster.version (this import reads OneRoster 1.2)"),
            ));
        }
    }
    for file in [RESULTS, LINE_ITEMS, CLASSES, ORGS] {
        let property = format!("file.{}", file.trim_end_matches(".csv"));
        let mode = properties.get(&property).map(|m| m.to_lowercase());
        if !matches!(mode.as_deref(), Some("bulk" | "delta")) {
            let said = mode.map_or("does not list it".to_string(), |_| {
                "lists it as absent".to_string()
            });
            let why = if file == RESULTS {
                "the export carries no grades"
            } else {
                "results are joined through lineItems.csv, classes.csv and orgs.csv"
            };
            return Err(not_oneroster(
                export,
                format!("{MANIFEST} {said} ({property}): {why}"),
            ));
        }
    }
    Ok(())
}

struct Org {
    line: u64,
    school_id: String,
    deleted: bool,
}

struct Course {
    code: String,
}

struct Session {
    line: u64,
    quarter: Option<String>,
    deleted: bool,
}

struct Class {
    line: u64,
    state: ClassState,
}

enum ClassState {
    Ok {
        school_id: String,
        course_code: String,
    },
    /// The class or its school is marked `tobedeleted`.
    Deleted,
    /// Reported at the class's line.
    Bad(String),
}

/// What a line item is joined with.
struct Lookups<'a> {
    classes: &'a HashMap<String, Class>,
    sessions: &'a HashMap<String, Session>,
    quarter: Option<String>,
}

fn load_orgs(export: &mut Export, bad: &mut Vec<Item>) -> Result<HashMap<String, Org>, SisError> {
    let mut table = open_table(export, ORGS)?;
    let sourced_id = table.require("sourcedId")?;
    let identifier = table.column("identifier");
    let status = table.column("status");
    let mut orgs = HashMap::new();
    while let Some(row) = table.next_row()? {
        let Some((line, cells)) = usable(row, sourced_id, ORGS, bad) else {
            continue;
        };
        let id = &cells[sourced_id];
        let identifier = identifier.map_or("", |i| &cells[i]);
        let org = Org {
            line,
            school_id: if identifier.is_empty() {
                id
            } else {
                identifier
            }
            .to_string(),
            deleted: status.is_some_and(|i| is_deleted(&cells[i])),
        };
        insert_once(&mut orgs, id, org, |o| o.line, ORGS, bad);
    }
    Ok(orgs)
}

fn load_courses(
    export: &mut Export,
    bad: &mut Vec<Item>,
) -> Result<HashMap<String, Course>, SisError> {
    let mut courses = HashMap::new();
    if !export.has(COURSES) {
        return Ok(courses);
    }
    let mut table = open_table(export, COURSES)?;
    let sourced_id = table.require("sourcedId")?;
    let Some(code) = table.column("courseCode") else {
        return Ok(courses);
    };
    let mut lines = HashMap::new();
    while let Some(row) = table.next_row()? {
        let Some((line, cells)) = usable(row, sourced_id, COURSES, bad) else {
            continue;
        };
        let id = &cells[sourced_id];
        if insert_once(&mut lines, id, line, |l| *l, COURSES, bad) {
            courses.insert(
                id.to_string(),
                Course {
                    code: cells[code].to_string(),
                },
            );
        }
    }
    Ok(courses)
}

fn load_sessions(
    export: &mut Export,
    bad: &mut Vec<Item>,
) -> Result<HashMap<String, Session>, SisError> {
    let mut table = open_table(export, SESSIONS)?;
    let sourced_id = table.require("sourcedId")?;
    let title = table.require("title")?;
    let status = table.column("status");
    let mut sessions = HashMap::new();
    while let Some(row) = table.next_row()? {
        let Some((line, cells)) = usable(row, sourced_id, SESSIONS, bad) else {
            continue;
        };
        let session = Session {
            line,
            quarter: cells[title]
                .trim()
                .parse::<Quarter>()
                .ok()
                .map(|q| q.to_string()),
            deleted: status.is_some_and(|i| is_deleted(&cells[i])),
        };
        insert_once(
            &mut sessions,
            &cells[sourced_id],
            session,
            |s| s.line,
            SESSIONS,
            bad,
        );
    }
    Ok(sessions)
}

fn load_classes(
    export: &mut Export,
    orgs: &HashMap<String, Org>,
    courses: &HashMap<String, Course>,
    bad: &mut Vec<Item>,
) -> Result<HashMap<String, Class>, SisError> {
    let mut table = open_table(export, CLASSES)?;
    let sourced_id = table.require("sourcedId")?;
    let school = table.require("schoolSourcedId")?;
    let class_code = table.column("classCode");
    let course = table.column("courseSourcedId");
    let status = table.column("status");
    let mut classes = HashMap::new();
    while let Some(row) = table.next_row()? {
        let Some((line, cells)) = usable(row, sourced_id, CLASSES, bad) else {
            continue;
        };
        let id = &cells[sourced_id];
        if let Some(first) = classes.get(id).map(|c: &Class| c.line) {
            bad.push(duplicate(CLASSES, line, first));
            continue;
        }
        let school_id = &cells[school];
        let state = if status.is_some_and(|i| is_deleted(&cells[i])) {
            ClassState::Deleted
        } else if school_id.is_empty() {
            ClassState::Bad("empty schoolSourcedId".to_string())
        } else if let Some(org) = orgs.get(school_id) {
            let own_code = class_code.map_or("", |i| &cells[i]);
            let course_code = course
                .and_then(|i| courses.get(&cells[i]))
                .map_or("", |c| c.code.as_str());
            let code = [own_code, course_code, id]
                .into_iter()
                .find(|c| !c.is_empty())
                .unwrap_or(id);
            match org.deleted {
                true => ClassState::Deleted,
                false => ClassState::Ok {
                    school_id: org.school_id.clone(),
                    course_code: code.to_string(),
                },
            }
        } else {
            ClassState::Bad(format!(
                "unknown school: no {ORGS} row has its schoolSourcedId"
            ))
        };
        if let ClassState::Bad(reason) = &state {
            bad.push(Item::BadReference {
                origin: CLASSES,
                line,
                reason: reason.clone(),
            });
        }
        classes.insert(id.to_string(), Class { line, state });
    }
    Ok(classes)
}

fn load_line_items(
    export: &mut Export,
    lookups: &Lookups<'_>,
    bad: &mut Vec<Item>,
) -> Result<HashMap<String, Join>, SisError> {
    let mut table = open_table(export, LINE_ITEMS)?;
    let sourced_id = table.require("sourcedId")?;
    let class = table.require("classSourcedId")?;
    let period = match lookups.quarter {
        Some(_) => table.column("gradingPeriodSourcedId"),
        None => Some(table.require("gradingPeriodSourcedId")?),
    };
    let status = table.column("status");
    let mut lines = HashMap::new();
    let mut line_items = HashMap::new();
    while let Some(row) = table.next_row()? {
        let Some((line, cells)) = usable(row, sourced_id, LINE_ITEMS, bad) else {
            continue;
        };
        let id = &cells[sourced_id];
        if !insert_once(&mut lines, id, line, |l| *l, LINE_ITEMS, bad) {
            continue;
        }
        let join = if status.is_some_and(|i| is_deleted(&cells[i])) {
            Join::Deleted
        } else {
            let period = period.map_or("", |i| &cells[i]);
            match join_line_item(line, &cells[class], period, lookups) {
                Ok(join) => join,
                Err(reason) => {
                    bad.push(Item::BadReference {
                        origin: LINE_ITEMS,
                        line,
                        reason: reason.clone(),
                    });
                    Join::Bad(format!(
                        "its line item ({LINE_ITEMS} line {line}) is bad: {reason}"
                    ))
                }
            }
        };
        line_items.insert(id.to_string(), join);
    }
    Ok(line_items)
}

/// What the line item at `line` gives its results, or why the line item itself is bad.
fn join_line_item(
    line: u64,
    class_id: &str,
    period: &str,
    lookups: &Lookups<'_>,
) -> Result<Join, String> {
    let via = format!("via {LINE_ITEMS} line {line}");
    if class_id.is_empty() {
        return Err("empty classSourcedId".to_string());
    }
    let Some(class) = lookups.classes.get(class_id) else {
        return Err(format!(
            "unknown class: no {CLASSES} row has its classSourcedId"
        ));
    };
    let (school_id, course_code) = match &class.state {
        ClassState::Ok {
            school_id,
            course_code,
        } => (school_id.clone(), course_code.clone()),
        ClassState::Deleted => return Ok(Join::Deleted),
        ClassState::Bad(reason) => {
            return Ok(Join::Bad(format!(
                "its class ({CLASSES} line {}, {via}) is bad: {reason}",
                class.line
            )));
        }
    };
    let quarter = match &lookups.quarter {
        Some(quarter) => quarter.clone(),
        None if period.is_empty() => {
            return Ok(Join::Bad(format!(
                "no quarter: its line item ({LINE_ITEMS} line {line}) names no gradingPeriodSourcedId; give --quarter"
            )));
        }
        None => match lookups.sessions.get(period) {
            None => {
                return Ok(Join::Bad(format!(
                    "no quarter: no {SESSIONS} row has the gradingPeriodSourcedId of its line item ({LINE_ITEMS} line {line})"
                )));
            }
            Some(session) if session.deleted => return Ok(Join::Deleted),
            Some(Session {
                quarter: None,
                line: session_line,
                ..
            }) => {
                return Ok(Join::Bad(format!(
                    "bad quarter: its grading period ({SESSIONS} line {session_line}, {via}) has a title that is not YYYY-Qn; retitle it or give --quarter"
                )));
            }
            Some(Session {
                quarter: Some(quarter),
                ..
            }) => quarter.clone(),
        },
    };
    Ok(Join::Ok {
        school_id,
        course_code,
        quarter,
    })
}

fn open_table<'e>(
    export: &'e mut Export,
    name: &'static str,
) -> Result<Table<Box<dyn Read + 'e>>, SisError> {
    if !export.has(name) {
        return Err(not_oneroster(export, format!("the export has no {name}")));
    }
    let input = export.open_file(name)?.expect("the export has the file");
    Table::new(input, name)
}

/// The cells of a lookup row with a sourcedId, or `None` after reporting why it has none.
fn usable(
    row: Row,
    sourced_id: usize,
    origin: &'static str,
    bad: &mut Vec<Item>,
) -> Option<(u64, csv::StringRecord)> {
    let (line, reason) = match row {
        Row::Malformed { line, reason } => (line, reason),
        Row::Cells { line, cells } if !cells[sourced_id].is_empty() => return Some((line, cells)),
        Row::Cells { line, .. } => (line, "empty sourcedId".to_string()),
    };
    bad.push(Item::BadReference {
        origin,
        line,
        reason,
    });
    None
}

/// Keeps the first row of each sourcedId; a later one is reported. Returns whether `value`
/// was kept.
fn insert_once<T>(
    map: &mut HashMap<String, T>,
    id: &str,
    value: T,
    line_of: impl Fn(&T) -> u64,
    origin: &'static str,
    bad: &mut Vec<Item>,
) -> bool {
    let line = line_of(&value);
    match map.entry(id.to_string()) {
        Entry::Vacant(e) => {
            e.insert(value);
            true
        }
        Entry::Occupied(e) => {
            bad.push(duplicate(origin, line, line_of(e.get())));
            false
        }
    }
}

fn duplicate(origin: &'static str, line: u64, first: u64) -> Item {
    Item::BadReference {
        origin,
        line,
        reason: format!("duplicate sourcedId (first on line {first})"),
    }
}

fn is_deleted(status: &str) -> bool {
    status.trim().eq_ignore_ascii_case("tobedeleted")
}

fn not_oneroster(export: &Export, reason: String) -> SisError {
    SisError::NotOneRoster {
        path: export.path().to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MANIFEST_CSV: &str = "propertyName,value\n\
        manifest.version,1.0\n\
        oneroster.version,1.2\n\
        file.academicSessions,bulk\n\
        file.classes,bulk\n\
        file.courses,bulk\n\
        file.lineItems,bulk\n\
        file.orgs,bulk\n\
        file.results,bulk\n\
        file.users,absent\n";

    /// Two orgs (one without an identifier, one listed twice), courses, three usable
    /// classes and one whose school is unknown, line items of each kind, results of each
    /// kind. Line numbers are in the comments the assertions rely on.
    fn network() -> Vec<(&'static str, String)> {
        vec![
            (MANIFEST, MANIFEST_CSV.to_string()),
            (
                ORGS,
                "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n\
                 org-1,active,,North,school,SCH-001,\n\
                 org-2,active,,South,school,,\n\
                 org-1,active,,North again,school,SCH-009,\n"
                    .to_string(),
            ),
            (
                SESSIONS,
                "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n\
                 gp-q3,active,,2026-Q3,gradingPeriod,2026-07-01,2026-09-30,,2027\n\
                 gp-fall,active,,Fall term,gradingPeriod,2026-09-01,2026-12-20,,2027\n"
                    .to_string(),
            ),
            (
                COURSES,
                "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes\n\
                 course-alg,active,,,Algebra,ALG-1,,org-2,,\n"
                    .to_string(),
            ),
            (
                CLASSES,
                // 2: classCode; 3: the course's code; 4: unknown school; 5: its own id.
                "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods\n\
                 class-m,active,,Math,,,MATH-7,scheduled,,org-1,,,,\n\
                 class-a,active,,Algebra,,course-alg,,scheduled,,org-2,,,,\n\
                 class-x,active,,Orphan,,,X-1,scheduled,,org-9,,,,\n\
                 class-b,active,,Biology,,,,scheduled,,org-1,,,,\n"
                    .to_string(),
            ),
            (
                LINE_ITEMS,
                // 2, 3 good; 4 bad class; 5 unknown class; 6 bad quarter; 7 no quarter;
                // 8 to be deleted.
                "sourcedId,status,dateLastModified,title,description,assignDate,dueDate,classSourcedId,categorySourcedId,gradingPeriodSourcedId,resultValueMin,resultValueMax\n\
                 li-m,active,,Q3,,,,class-m,,gp-q3,0,100\n\
                 li-a,active,,Q3,,,,class-a,,gp-q3,0,100\n\
                 li-x,active,,Q3,,,,class-x,,gp-q3,0,100\n\
                 li-z,active,,Q3,,,,class-zz,,gp-q3,0,100\n\
                 li-f,active,,Fall,,,,class-b,,gp-fall,0,100\n\
                 li-n,active,,None,,,,class-b,,,0,100\n\
                 li-d,tobedeleted,,Old,,,,class-b,,gp-q3,0,100\n"
                    .to_string(),
            ),
            (
                RESULTS,
                "sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,score,textScore,scoreDate,comment\n\
                 r1,active,2026-09-01,li-m,stu-1,fully graded,91,A-,2026-09-01,private words\n\
                 r2,active,,li-a,stu-2,fully graded,78,,,\n\
                 r3,active,,li-x,stu-3,fully graded,50,,,\n\
                 r4,active,,li-z,stu-4,fully graded,60,,,\n\
                 r5,active,,li-q,stu-5,fully graded,70,,,\n\
                 r6,active,,li-m,stu-6,not submitted,,,,\n\
                 r7,active,,li-f,stu-7,fully graded,80,,,\n\
                 r8,active,,li-n,stu-8,fully graded,80,,,\n\
                 r9,tobedeleted,,li-m,stu-9,fully graded,80,,,\n\
                 r10,active,,li-d,stu-10,fully graded,80,,,\n\
                 r11,active,,li-m,stu-11,fully graded,88,B+,,\"two\nlines\"\n\
                 r12,active,,li-m,stu-12\n\
                 r13,active,,li-a,stu-13,fully graded,65,,,\n"
                    .to_string(),
            ),
        ]
    }

    fn write_dir(files: &[(&str, String)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn items(path: &Path, quarter: Option<&str>) -> Vec<Item> {
        let source = OneRoster::open(path, quarter.map(|q| q.parse().unwrap())).unwrap();
        let mut out = Vec::new();
        source
            .read(&mut |item| {
                out.push(item);
                Ok(())
            })
            .unwrap();
        out
    }

    /// `(origin, line, reason)` of each bad item, and the record ids of the others.
    fn outcome(items: &[Item]) -> (Vec<(String, u64, String)>, Vec<String>, usize) {
        let mut bad = Vec::new();
        let mut ids = Vec::new();
        let mut deleted = 0;
        for item in items {
            match item {
                Item::Record { value, .. } => ids.push(value["record_id"].as_str().unwrap().into()),
                Item::Bad {
                    origin,
                    line,
                    reason,
                } => bad.push((origin.unwrap().to_string(), *line, reason.clone())),
                Item::BadReference {
                    origin,
                    line,
                    reason,
                } => bad.push((origin.to_string(), *line, reason.clone())),
                Item::Deleted => deleted += 1,
            }
        }
        (bad, ids, deleted)
    }

    #[test]
    fn results_are_joined_to_school_course_and_quarter() {
        let dir = write_dir(&network());
        let got = items(dir.path(), None);
        let records: HashMap<String, Value> = got
            .iter()
            .filter_map(|i| match i {
                Item::Record { value, line, .. } => Some((
                    format!("{}@{line}", value["record_id"].as_str().unwrap()),
                    value.clone(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            records["r1@2"],
            json!({"record_id": "r1", "school_id": "SCH-001", "student_id": "stu-1",
                "course_code": "MATH-7", "quarter": "2026-Q3", "grade": "A-", "score": "91",
                "score_status": "fully graded", "score_date": "2026-09-01"}),
            "org identifier, classCode, the grading period's title, textScore before score; no comment"
        );
        assert_eq!(
            records["r2@3"],
            json!({"record_id": "r2", "school_id": "org-2", "student_id": "stu-2",
                "course_code": "ALG-1", "quarter": "2026-Q3", "grade": "78",
                "score_status": "fully graded"}),
            "no identifier: the org's sourcedId; no classCode: the course's courseCode"
        );
        assert_eq!(records["r11@12"]["grade"], "B+");
        assert_eq!(records.len(), 4, "{records:?}");
    }

    #[test]
    fn every_bad_row_is_named_by_file_and_line() {
        let dir = write_dir(&network());
        let (bad, ids, deleted) = outcome(&items(dir.path(), None));
        let expected: Vec<(&str, u64, &str)> = vec![
            (ORGS, 4, "duplicate sourcedId (first on line 2)"),
            (
                CLASSES,
                4,
                "unknown school: no orgs.csv row has its schoolSourcedId",
            ),
            (
                LINE_ITEMS,
                5,
                "unknown class: no classes.csv row has its classSourcedId",
            ),
            (
                RESULTS,
                4,
                "its class (classes.csv line 4, via lineItems.csv line 4) is bad: unknown school: no orgs.csv row has its schoolSourcedId",
            ),
            (
                RESULTS,
                5,
                "its line item (lineItems.csv line 5) is bad: unknown class: no classes.csv row has its classSourcedId",
            ),
            (
                RESULTS,
                6,
                "unknown line item: no lineItems.csv row has its lineItemSourcedId",
            ),
            (RESULTS, 7, "no grade: neither score nor textScore is set"),
            (
                RESULTS,
                8,
                "bad quarter: its grading period (academicSessions.csv line 3, via lineItems.csv line 6) has a title that is not YYYY-Qn; retitle it or give --quarter",
            ),
            (
                RESULTS,
                9,
                "no quarter: its line item (lineItems.csv line 7) names no gradingPeriodSourcedId; give --quarter",
            ),
            (RESULTS, 14, "malformed CSV row: 5 cells, the header has 10"),
        ];
        let expected: Vec<(String, u64, String)> = expected
            .into_iter()
            .map(|(o, l, r)| (o.to_string(), l, r.to_string()))
            .collect();
        assert_eq!(bad, expected);
        assert_eq!(
            ids,
            ["r1", "r2", "r11", "r13"],
            "a good row after a malformed one is kept"
        );
        assert_eq!(deleted, 2, "r9 itself, r10 through its line item");
        for (_, _, reason) in &bad {
            for value in ["stu-", "Orphan", "Fall term", "North"] {
                assert!(!reason.contains(value), "a reason quotes a value: {reason}");
            }
        }
    }

    #[test]
    fn the_quarter_flag_replaces_grading_periods() {
        let mut files = network();
        files.retain(|(name, _)| *name != SESSIONS);
        let dir = write_dir(&files);
        let err = OneRoster::open(dir.path(), None).err().unwrap().to_string();
        assert!(
            err.contains("no academicSessions.csv") && err.contains("--quarter"),
            "{err}"
        );
        let got = items(dir.path(), Some("2026-Q4"));
        let (_, ids, _) = outcome(&got);
        assert_eq!(ids, ["r1", "r2", "r7", "r8", "r11", "r13"]);
        let quarters: Vec<&Value> = got
            .iter()
            .filter_map(|i| match i {
                Item::Record { value, .. } => Some(&value["quarter"]),
                _ => None,
            })
            .collect();
        assert!(quarters.iter().all(|q| *q == "2026-Q4"), "{quarters:?}");
    }

    #[test]
    fn a_zip_reads_like_the_folder_even_one_folder_down() {
        let files = network();
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("export.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        for (name, text) in &files {
            zip.start_file(
                format!("export-2026/{name}"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            std::io::Write::write_all(&mut zip, text.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        let folder = write_dir(&files);
        assert_eq!(items(&zip_path, None), items(folder.path(), None));
    }

    #[test]
    fn a_wrong_manifest_or_missing_column_stops_before_any_row() {
        let with = |name: &str, text: &str| {
            let mut files = network();
            for file in files.iter_mut().filter(|(n, _)| *n == name) {
                file.1 = text.to_string();
            }
            let dir = write_dir(&files);
            OneRoster::open(dir.path(), None)
                .err()
                .map(|e| e.to_string())
        };
        let old = with(
            MANIFEST,
            &MANIFEST_CSV.replace("oneroster.version,1.2", "oneroster.version,1.1"),
        );
        assert!(
            old.unwrap()
                .contains("says oneroster.version 1.1; this import reads OneRoster 1.2")
        );
        let absent = with(
            MANIFEST,
            &MANIFEST_CSV.replace("file.results,bulk", "file.results,absent"),
        );
        assert!(
            absent
                .unwrap()
                .contains("lists it as absent (file.results): the export carries no grades")
        );
        let no_column = with(
            LINE_ITEMS,
            "sourcedId,status,title,gradingPeriodSourcedId\nli-m,active,Q3,gp-q3\n",
        );
        assert_eq!(
            no_column.unwrap(),
            "lineItems.csv has no `classSourcedId` column; its columns: `sourcedId`, `status`, `title`, `gradingPeriodSourcedId`"
        );
        let no_score = with(RESULTS, "sourcedId,lineItemSourcedId,studentSourcedId\n");
        assert!(
            no_score
                .unwrap()
                .contains("results.csv has no `score` or `textScore` column")
        );
        let dir = tempfile::tempdir().unwrap();
        let none = OneRoster::open(dir.path(), None).err().unwrap().to_string();
        assert!(none.contains("no manifest.csv"), "{none}");
    }
}
