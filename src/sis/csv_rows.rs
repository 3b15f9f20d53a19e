//! A CSV file of grade records: a header row, then one record per row. Columns are found
//! by name: the six required fields by theirs (or the column a `--map COLUMN=FIELD` names),
//! every other column kept as a string metadata field. Cells are taken as they are (no
//! trimming); an empty required cell makes the row bad, an empty metadata cell is left
//! out of the record, and a column with an empty name is ignored.

use std::collections::HashMap;
use std::io::Read;
use std::str::FromStr;

use gradesync_govapi::Quarter;
use gradesync_govapi::contract::REQUIRED_FIELDS;
use serde_json::{Map, Value};

use super::table::{Row, Table, list_columns};
use super::{Emit, Item, SisError, Source};

/// `--map COLUMN=FIELD`: the column `COLUMN` gives the record's field `FIELD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    pub column: String,
    pub field: String,
}

impl FromStr for ColumnMap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((column, field)) if !column.is_empty() && !field.is_empty() => Ok(Self {
                column: column.to_string(),
                field: field.to_string(),
            }),
            _ => Err(format!("`{s}` is not COLUMN=FIELD")),
        }
    }
}

/// Where one column goes in a record.
struct Column {
    index: usize,
    /// The header's name, when a `--map` gave the column another field name.
    renamed_from: Option<String>,
    field: String,
    required: bool,
}

/// An opened CSV file: header read, columns planned.
pub struct CsvRows {
    table: Table<Box<dyn Read + Send>>,
    columns: Vec<Column>,
    quarter: Option<String>,
}

impl CsvRows {
    /// Reads the header of `input` (named `name` in messages) and plans each column, or
    /// says which column or map is wrong. `quarter`, when given, is every row's quarter
    /// (for a file without a quarter column).
    pub fn open(
        input: Box<dyn Read + Send>,
        name: &str,
        maps: &[ColumnMap],
        quarter: Option<Quarter>,
    ) -> Result<Self, SisError> {
        let table = Table::new(input, name)?;
        let columns = plan_columns(table.header(), name, maps, quarter.is_some())?;
        Ok(Self {
            table,
            columns,
            quarter: quarter.map(|q| q.to_string()),
        })
    }

    fn record(&self, cells: &csv::StringRecord) -> Result<Value, String> {
        let mut record = Map::new();
        let mut empty = Vec::new();
        for column in &self.columns {
            let cell = &cells[column.index];
            if cell.is_empty() {
                if column.required {
                    empty.push(match &column.renamed_from {
                        Some(name) => format!("`{}` (column `{name}`)", column.field),
                        None => format!("`{}`", column.field),
                    });
                }
                continue;
            }
            record.insert(column.field.clone(), Value::String(cell.to_string()));
        }
        if !empty.is_empty() {
            return Err(format!("empty required cell: {}", empty.join(", ")));
        }
        if let Some(quarter) = &self.quarter {
            record.insert("quarter".to_string(), Value::String(quarter.clone()));
        }
        Ok(Value::Object(record))
    }
}

impl Source for CsvRows {
    fn read(mut self, emit: &mut Emit<'_>) -> Result<(), SisError> {
        while let Some(row) = self.table.next_row()? {
            let item = match row {
                Row::Malformed { line, reason } => Item::Bad {
                    origin: None,
                    line,
                    reason,
                },
                Row::Cells { line, cells } => match self.record(&cells) {
                    Ok(value) => Item::Record {
                        origin: None,
                        line,
                        value,
                    },
                    Err(reason) => Item::Bad {
                        origin: None,
                        line,
                        reason,
                    },
                },
            };
            emit(item)?;
        }
        Ok(())
    }
}

/// Gives each column its field (renamed by a map, or its own name) and checks that every
/// required field has exactly one column.
fn plan_columns(
    header: &[String],
    table: &str,
    maps: &[ColumnMap],
    quarter_given: bool,
) -> Result<Vec<Column>, SisError> {
    let mut renames: HashMap<&str, &str> = HashMap::new();
    for map in maps {
        if !header.contains(&map.column) {
            return Err(SisError::UnknownMapColumn {
                table: table.to_string(),
                column: map.column.clone(),
                field: map.field.clone(),
                found: list_columns(header),
            });
        }
        if let Some(other) = renames.insert(&map.column, &map.field) {
            return Err(SisError::MapTwice {
                column: map.column.clone(),
                fields: format!("`{other}` and `{}`", map.field),
            });
        }
    }
    let mut columns: Vec<Column> = Vec::new();
    for (index, name) in header.iter().enumerate() {
        let renamed = renames.get(name.as_str()).copied();
        let field = renamed.unwrap_or(name);
        if field.is_empty() {
            continue;
        }
        if let Some(first) = columns.iter().find(|c| c.field == field) {
            return Err(SisError::FieldTwice {
                table: table.to_string(),
                field: field.to_string(),
                first: header[first.index].clone(),
                second: name.clone(),
            });
        }
        columns.push(Column {
            index,
            renamed_from: renamed.map(|_| name.clone()),
            field: field.to_string(),
            required: REQUIRED_FIELDS.contains(&field),
        });
    }
    for field in REQUIRED_FIELDS {
        let found = columns.iter().any(|c| c.field == field);
        match (field, found, quarter_given) {
            ("quarter", true, true) => {
                return Err(SisError::QuarterTwice {
                    table: table.to_string(),
                });
            }
            ("quarter", false, true) | (_, true, _) => {}
            (_, false, _) => {
                return Err(SisError::MissingField {
                    table: table.to_string(),
                    field: field.to_string(),
                    found: list_columns(header),
                });
            }
        }
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(text: &str, maps: &[&str], quarter: Option<&str>) -> Result<CsvRows, SisError> {
        let maps: Vec<ColumnMap> = maps.iter().map(|m| m.parse().unwrap()).collect();
        let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(text.to_string()));
        CsvRows::open(input, "g.csv", &maps, quarter.map(|q| q.parse().unwrap()))
    }

    fn items(rows: CsvRows) -> Vec<Item> {
        let mut out = Vec::new();
        rows.read(&mut |item| {
            out.push(item);
            Ok(())
        })
        .unwrap();
        out
    }

    const HEADER: &str = "record_id,school_id,student_id,course_code,quarter,grade";

    #[test]
    fn maps_rename_columns_and_other_columns_are_metadata() {
        let text = "id,school_id,alumno,course_code,quarter,nota,teacher,room\n\
                    r1,s1,st1,M,2026-Q3,A,T. One,\n";
        let rows = open(
            text,
            &["nota=grade", "alumno=student_id", "id=record_id"],
            None,
        );
        let got = items(rows.unwrap());
        assert_eq!(
            got,
            vec![Item::Record {
                origin: None,
                line: 2,
                value: json!({"record_id": "r1", "school_id": "s1", "student_id": "st1",
                    "course_code": "M", "quarter": "2026-Q3", "grade": "A",
                    "teacher": "T. One"}),
            }],
            "the empty `room` cell is left out"
        );
    }

    #[test]
    fn an_empty_required_cell_makes_a_bad_row_named_by_field_and_column() {
        let text = "record_id,school_id,alumno,course_code,quarter,grade\n\
                    r1,s1,,M,2026-Q3,\n";
        let got = items(open(text, &["alumno=student_id"], None).unwrap());
        assert_eq!(
            got,
            vec![Item::Bad {
                origin: None,
                line: 2,
                reason: "empty required cell: `student_id` (column `alumno`), `grade`".into(),
            }]
        );
    }

    #[test]
    fn rows_are_numbered_by_the_line_they_start_on() {
        let text = format!(
            "{HEADER},note\nr1,s1,x,M,2026-Q3,A,\"two\nlines\"\nr2,s1,x,M\nr3,s1,x,M,2026-Q3,B,\n"
        );
        let got = items(open(&text, &[], None).unwrap());
        let lines: Vec<(u64, bool)> = got
            .iter()
            .map(|i| match i {
                Item::Record { line, .. } => (*line, true),
                Item::Bad { line, .. } => (*line, false),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lines, vec![(2, true), (4, false), (5, true)]);
    }

    #[test]
    fn quarter_flag_fills_a_file_without_a_quarter_column() {
        let text = "record_id,school_id,student_id,course_code,grade\nr1,s1,x,M,A\n";
        let got = items(open(text, &[], Some("2026-Q2")).unwrap());
        let Item::Record { value, .. } = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(value["quarter"], "2026-Q2");
        let both = open(&format!("{HEADER}\n"), &[], Some("2026-Q2"));
        assert!(matches!(both, Err(SisError::QuarterTwice { .. })));
    }

    #[test]
    fn header_problems_are_usage_errors_that_list_the_columns() {
        let missing = open(
            "record_id,school_id,student,course_code,quarter,grade\n",
            &[],
            None,
        );
        assert_eq!(
            missing.err().unwrap().to_string(),
            "g.csv has no column for field `student_id` (name one with --map COLUMN=student_id); \
             its columns: `record_id`, `school_id`, `student`, `course_code`, `quarter`, `grade`"
        );
        let unknown = open(&format!("{HEADER}\n"), &["nota=grade"], None);
        let err = unknown.err().unwrap().to_string();
        assert!(
            err.starts_with(
                "--map nota=grade: g.csv has no column `nota`; its columns: `record_id`"
            ),
            "{err}"
        );
        let twice = open(&format!("{HEADER},nota\n"), &["nota=grade"], None);
        assert!(matches!(twice, Err(SisError::FieldTwice { .. })));
        let map_twice = open(&format!("{HEADER},n\n"), &["n=a", "n=b"], None);
        assert!(matches!(map_twice, Err(SisError::MapTwice { .. })));
        assert!("nota".parse::<ColumnMap>().is_err());
        assert!("=grade".parse::<ColumnMap>().is_err());
    }
}
