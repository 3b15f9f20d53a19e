//! One CSV table read row by row: a required header whose columns are found by name, each
//! row with the line it starts on (a quoted cell may span lines), and a row that cannot be
//! a record (wrong number of cells, invalid UTF-8) handed back as a reason that quotes
//! none of its cells. Nothing is held but the current row, so a table of any size streams.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::Read;

use csv::{ByteRecord, StringRecord};

use super::SisError;

/// A CSV table with its header read.
pub struct Table<R> {
    reader: csv::Reader<LineBreaks<R>>,
    name: String,
    header: Vec<String>,
    record: ByteRecord,
}

/// One data row of a table.
pub enum Row {
    Cells {
        line: u64,
        cells: StringRecord,
    },
    /// The row holds no usable cells; the reason quotes none of them.
    Malformed {
        line: u64,
        reason: String,
    },
}

impl<R: Read> Table<R> {
    /// Reads the header of `input`; `name` is how messages name the table (a path, or a
    /// OneRoster file name). A UTF-8 byte order mark is skipped.
    pub fn new(input: R, name: impl Into<String>) -> Result<Self, SisError> {
        let name = name.into();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(LineBreaks::new(input));
        let mut record = ByteRecord::new();
        let read = reader
            .read_byte_record(&mut record)
            .map_err(|e| read_error(&name, e))?;
        if !read {
            return Err(SisError::Empty { table: name });
        }
        let header = record
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                String::from_utf8(cell.to_vec()).map_err(|_| SisError::HeaderNotUtf8 {
                    table: name.clone(),
                    column: i + 1,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            reader,
            name,
            header,
            record,
        })
    }

    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The index of the column named `name`, if the header has it.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|c| c == name)
    }

    /// The index of the column named `name`, or a usage error naming the table, the column
    /// and the columns it has.
    pub fn require(&self, name: &str) -> Result<usize, SisError> {
        self.column(name).ok_or_else(|| SisError::MissingColumn {
            table: self.name.clone(),
            column: name.to_string(),
            found: self.columns(),
        })
    }

    /// The header as a message lists it.
    pub fn columns(&self) -> String {
        list_columns(&self.header)
    }

    /// The next data row, or `None` at the end of the table. Blank lines are skipped (their
    /// numbers still count). An error is a read failure, not a bad row.
    pub fn next_row(&mut self) -> Result<Option<Row>, SisError> {
        let read = self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|e| read_error(&self.name, e))?;
        if !read {
            return Ok(None);
        }
        let start = self.record.position().map_or(0, |p| p.byte());
        let line = self.reader.get_ref().line_at(start);
        if self.record.len() != self.header.len() {
            return Ok(Some(Row::Malformed {
                line,
                reason: self.width_reason(line),
            }));
        }
        match StringRecord::from_byte_record(self.record.clone()) {
            Ok(cells) => Ok(Some(Row::Cells { line, cells })),
            Err(e) => {
                let column = self
                    .header
                    .get(e.utf8_error().field())
                    .map_or_else(String::new, |c| format!(" `{c}`"));
                Ok(Some(Row::Malformed {
                    line,
                    reason: format!("column{column} is not valid UTF-8"),
                }))
            }
        }
    }

    /// Why a row with the wrong number of cells was refused. A quote left open takes the
    /// rest of the input into one cell, line ends included (the last one too): say so, and
    /// which lines the row swallowed.
    fn width_reason(&self, line: u64) -> String {
        let newlines = self
            .record
            .iter()
            .map(|cell| cell.iter().filter(|&&b| b == b'\n').count() as u64)
            .sum::<u64>();
        let to_the_end = self
            .record
            .iter()
            .next_back()
            .is_some_and(|c| c.ends_with(b"\n"));
        let cells = match self.record.len() {
            1 => "1 cell".to_string(),
            n => format!("{n} cells"),
        };
        let mut reason = format!(
            "malformed CSV row: {cells}, the header has {}",
            self.header.len()
        );
        if to_the_end {
            let last = line + newlines - 1;
            reason.push_str(&format!(
                " (a quote is left open: the row runs from line {line} to the end, line {last})"
            ));
        } else if newlines > 0 {
            let last = line + newlines;
            reason.push_str(&format!(
                " (the row runs from line {line} to line {last}: is a quote left open?)"
            ));
        }
        reason
    }
}

/// The input, noting where its line breaks are so that a row's first line can be told
/// exactly: the csv crate's own line count starts a row at the blank lines before it, and
/// behind by one after a CRLF. Only the breaks not yet behind the parser are kept (those
/// read ahead into its buffer and of the current row), so memory stays small.
struct LineBreaks<R> {
    inner: R,
    read: u64,
    /// Offsets of `\r` and `\n` bytes (with which) not yet passed.
    breaks: RefCell<VecDeque<(u64, u8)>>,
    /// `\n` bytes already passed.
    passed_newlines: Cell<u64>,
}

impl<R> LineBreaks<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            read: 0,
            breaks: RefCell::new(VecDeque::new()),
            passed_newlines: Cell::new(0),
        }
    }

    /// The line of the first byte at or after `offset` that is not a line break: where a
    /// row the parser started at `offset` begins. Offsets asked for must not decrease.
    fn line_at(&self, offset: u64) -> u64 {
        let mut breaks = self.breaks.borrow_mut();
        let mut passed = self.passed_newlines.get();
        while breaks.front().is_some_and(|&(at, _)| at < offset) {
            if breaks.pop_front().is_some_and(|(_, b)| b == b'\n') {
                passed += 1;
            }
        }
        self.passed_newlines.set(passed);
        // The breaks right at `offset` (the rest of a CRLF, blank lines) come before the row.
        let skipped = (offset..)
            .zip(breaks.iter())
            .take_while(|(next, (at, _))| at == next)
            .filter(|(_, (_, byte))| *byte == b'\n')
            .count() as u64;
        1 + passed + skipped
    }
}

impl<R: Read> Read for LineBreaks<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let breaks = self.breaks.get_mut();
        for (i, &byte) in buf[..n].iter().enumerate() {
            if byte == b'\n' || byte == b'\r' {
                breaks.push_back((self.read + i as u64, byte));
            }
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// Columns as a message lists them: `a`, `b`, `c`. A first row that names no record field
/// nor OneRoster's `sourcedId` and has digits in it is likely data (a file without a header
/// row: ids, grades, quarters): only its width is said, so no student's values reach a
/// terminal or a log.
pub fn list_columns(columns: &[String]) -> String {
    if columns.is_empty() {
        return "none".to_string();
    }
    let names_a_field = columns.iter().any(|c| {
        let c = c.trim().to_ascii_lowercase();
        c == "sourcedid" || gradesync_govapi::contract::REQUIRED_FIELDS.contains(&c.as_str())
    });
    let has_digits = columns
        .iter()
        .any(|c| c.bytes().any(|b| b.is_ascii_digit()));
    let header_like = names_a_field || !has_digits;
    if !header_like {
        return format!(
            "{} columns, none named like a record field (does the file start with a header row?)",
            columns.len()
        );
    }
    columns
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_error(table: &str, e: csv::Error) -> SisError {
    let table = table.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(source) => SisError::Read { table, source },
        // Byte records of any width cannot fail otherwise; say so rather than panic.
        other => SisError::Read {
            table,
            source: std::io::Error::other(format!("{other:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok((line, cells))` or `Err((line, reason))` per row.
    type Rows = Vec<Result<(u64, Vec<String>), (u64, String)>>;

    fn rows(text: &str) -> Rows {
        let mut table = Table::new(text.as_bytes(), "t.csv").unwrap();
        let mut out = Vec::new();
        while let Some(row) = table.next_row().unwrap() {
            out.push(match row {
                Row::Cells { line, cells } => Ok((line, cells.iter().map(String::from).collect())),
                Row::Malformed { line, reason } => Err((line, reason)),
            });
        }
        out
    }

    #[test]
    fn rows_carry_the_line_they_start_on() {
        let got = rows("\u{feff}a,b\n1,\"two\nlines\"\n\n3,4\n");
        assert_eq!(
            got,
            vec![
                Ok((2, vec!["1".into(), "two\nlines".into()])),
                Ok((5, vec!["3".into(), "4".into()])),
            ]
        );
        let crlf = rows("a,b\r\n1,\"x\r\ny\"\r\n\r\n\r\n3,4");
        assert_eq!(
            crlf,
            vec![
                Ok((2, vec!["1".into(), "x\r\ny".into()])),
                Ok((6, vec!["3".into(), "4".into()])),
            ]
        );
        let table = Table::new("\u{feff}a,b\n".as_bytes(), "t.csv").unwrap();
        assert_eq!(
            table.column("a"),
            Some(0),
            "the BOM is not part of the name"
        );
    }

    #[test]
    fn a_row_of_the_wrong_width_is_malformed_and_names_an_open_quote() {
        let got = rows("a,b,c\n1,2,3,4\nx,\"open\n\n4,5,6\n");
        let Err((2, reason)) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(reason, "malformed CSV row: 4 cells, the header has 3");
        let Err((3, reason)) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(
            reason,
            "malformed CSV row: 2 cells, the header has 3 \
             (a quote is left open: the row runs from line 3 to the end, line 5)"
        );
        let got = rows("a,b,c\n\"x\ny\",1\n1,2,3\n");
        let Err((2, reason)) = &got[0] else {
            panic!("{got:?}")
        };
        assert!(reason.ends_with("(the row runs from line 2 to line 3: is a quote left open?)"));
        assert_eq!(got[1], Ok((4, vec!["1".into(), "2".into(), "3".into()])));
        assert!(!reason.contains("open\n"), "quotes no cell: {reason}");
    }

    #[test]
    fn invalid_utf8_names_the_column_not_the_bytes() {
        let mut table = Table::new(&b"a,b\n1,\xff\xfe\n"[..], "t.csv").unwrap();
        let Some(Row::Malformed { line, reason }) = table.next_row().unwrap() else {
            panic!("expected a malformed row")
        };
        assert_eq!(
            (line, reason.as_str()),
            (2, "column `b` is not valid UTF-8")
        );
    }

    #[test]
    fn empty_input_and_missing_columns_are_usage_errors() {
        assert!(matches!(
            Table::new(&b""[..], "t.csv"),
            Err(SisError::Empty { .. })
        ));
        let table = Table::new(&b"sourcedId,b\n"[..], "t.csv").unwrap();
        let err = table.require("c").unwrap_err().to_string();
        assert_eq!(
            err,
            "t.csv has no `c` column; its columns: `sourcedId`, `b`"
        );
    }

    #[test]
    fn a_first_row_of_data_is_not_quoted_back() {
        let table = Table::new(&b"rec-1,stu-7,A\n"[..], "t.csv").unwrap();
        let err = table.require("grade").unwrap_err().to_string();
        assert!(
            err.contains("3 columns, none named like a record field"),
            "{err}"
        );
        assert!(!err.contains("stu-7"), "{err}");
    }
}
