//! A header-driven CSV reader that knows where it is: every value comes with its file, line and
//! column name, so every error reads `FILE:LINE: COLUMN: ...`.
//!
//! Columns are found by a normalised name (ASCII lower case; `.`, `/`, `:`, `-` and spaces
//! read as `_`), so `service.description` and `service_description` are the same column.
//! Unknown columns are ignored. Gzip input is decompressed as it streams.
//!
//! Line numbers are the file's own (header = line 1). The `csv` crate reports a record's line
//! one too low in CRLF files (it counts the `\n` of `\r\n` only after the next record has
//! started), so the reader looks at the first line ending and corrects for it.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};

use flate2::read::MultiGzDecoder;
use jiff::Timestamp;
use rust_decimal::Decimal;

use super::BillError;
use super::common::{
    DECIMAL_EXPECTED, INSTANT_EXPECTED, is_gzip, non_blank, parse_exact_decimal, parse_instant,
};

/// A column of the file (its index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Col(usize);

/// The header line: column names as written, and the normalised index.
pub(crate) struct Header {
    file: String,
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Header {
    /// The column with this (normalised) name, if the file has it.
    pub(crate) fn col(&self, name: &str) -> Option<Col> {
        self.index.get(&normalise(name)).copied().map(Col)
    }

    /// The first of these columns the file has.
    pub(crate) fn col_any(&self, names: &[&str]) -> Option<Col> {
        names.iter().find_map(|n| self.col(n))
    }

    /// A column the format cannot do without.
    pub(crate) fn require(&self, name: &str, hint: &str) -> Result<Col, BillError> {
        self.col(name).ok_or_else(|| BillError::MissingColumn {
            file: self.file.clone(),
            column: name.to_string(),
            hint: hint.to_string(),
        })
    }

    /// Columns whose normalised name starts with `prefix`, with the rest of the name as written.
    pub(crate) fn with_prefix(&self, prefix: &str) -> Vec<(String, Col)> {
        let p = normalise(prefix);
        let mut v: Vec<(String, Col)> = self
            .names
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                let norm = normalise(n);
                norm.len() > p.len() && norm.starts_with(&p)
            })
            .map(|(i, n)| (n.get(p.len()..).unwrap_or_default().to_string(), Col(i)))
            .collect();
        v.sort();
        v
    }

    pub(crate) fn file(&self) -> &str {
        &self.file
    }
}

fn normalise(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| match c {
            '.' | '/' | ':' | '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Records per batch handed from the reading thread to the parsing one.
const CHUNK: usize = 1024;
/// Batches in flight between the two threads.
const CHUNKS_IN_FLIGHT: usize = 4;

/// A batch of records read by the reading thread: the first `len` of `records` are filled
/// (the rest are buffers kept for reuse); `end` is set on the last batch, with the error that
/// stopped the reading if any.
struct Chunk {
    records: Vec<csv::ByteRecord>,
    len: usize,
    end: Option<Option<BillError>>,
}

/// The data records, read (and for gzip decompressed) by a second thread while the caller
/// parses the rows before: handed over in batches whose buffers are reused.
pub(crate) struct Records {
    /// Added to the `csv` crate's line numbers: 1 for CRLF files, else 0.
    line_offset: u64,
    rx: std::sync::mpsc::Receiver<Chunk>,
    back: std::sync::mpsc::Sender<Vec<csv::ByteRecord>>,
    current: Vec<csv::ByteRecord>,
    len: usize,
    next: usize,
    end: Option<Option<BillError>>,
    finished: bool,
    file: String,
}

/// Opens a CSV file (plain or gzip), reads its header line and calls `f` with the header and
/// the data records. The input is read by a second thread as `f` parses, 1 MiB at a time: a
/// file of any size is never held whole. The reading stops when `f` returns.
pub(crate) fn read<'a, T>(
    file: &str,
    input: Box<dyn Read + Send + 'a>,
    f: impl FnOnce(&Header, &mut Records) -> Result<T, BillError>,
) -> Result<T, BillError> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let io_error = |e: std::io::Error| BillError::Read {
        file: file.to_string(),
        message: e.to_string(),
    };
    let gzip = is_gzip(input.fill_buf().map_err(io_error)?);
    // Gzip is decompressed as it streams, through a buffer whose first fill shows the line
    // ending.
    let (source, line_offset): (Box<dyn Read + Send + 'a>, u64) = if gzip {
        let mut source = BufReader::with_capacity(1 << 16, MultiGzDecoder::new(input));
        let crlf = match source.fill_buf() {
            Ok(head) => crlf_before_first_newline(head),
            Err(e) => return Err(csv_error(file, gzip, 0, &csv::Error::from(e))),
        };
        (Box::new(source), u64::from(crlf))
    } else {
        let crlf = crlf_before_first_newline(input.fill_buf().map_err(io_error)?);
        (Box::new(input), u64::from(crlf))
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(1 << 16)
        .from_reader(source);
    let headers = reader
        .byte_headers()
        .map_err(|e| csv_error(file, gzip, 0, &e))?
        .clone();
    let mut names = Vec::with_capacity(headers.len());
    let mut index = HashMap::with_capacity(headers.len());
    for (i, raw) in headers.iter().enumerate() {
        let name = std::str::from_utf8(raw)
            .map_err(|_| BillError::CsvSyntax {
                file: file.to_string(),
                line: 1,
                message: format!("column {} has a name that is not UTF-8", i + 1),
            })?
            .trim_start_matches('\u{feff}')
            .to_string();
        // The first of two same-named columns wins.
        index.entry(normalise(&name)).or_insert(i);
        names.push(name);
    }
    let header = Header {
        file: file.to_string(),
        names,
        index,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let (back, back_rx) = std::sync::mpsc::channel::<Vec<csv::ByteRecord>>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            loop {
                let mut records = back_rx.try_recv().unwrap_or_default();
                let mut len = 0;
                let mut end = None;
                while len < CHUNK {
                    if records.len() == len {
                        records.push(csv::ByteRecord::new());
                    }
                    match reader.read_byte_record(&mut records[len]) {
                        Ok(true) => len += 1,
                        Ok(false) => {
                            end = Some(None);
                            break;
                        }
                        Err(e) => {
                            end = Some(Some(csv_error(file, gzip, line_offset, &e)));
                            break;
                        }
                    }
                }
                let last = end.is_some();
                // A closed channel: the parser stopped (a bad row); so does the reading.
                if tx.send(Chunk { records, len, end }).is_err() || last {
                    return;
                }
            }
        });
        let mut records = Records {
            line_offset,
            rx,
            back,
            current: Vec::new(),
            len: 0,
            next: 0,
            end: None,
            finished: false,
            file: file.to_string(),
        };
        f(&header, &mut records)
        // `records` is dropped here, closing the channel before the scope waits for the reader.
    })
}

impl Records {
    /// The next data row, or `None` at the end of the file.
    pub(crate) fn next<'r>(&'r mut self, header: &'r Header) -> Result<Option<Row<'r>>, BillError> {
        loop {
            if self.next < self.len {
                let i = self.next;
                self.next += 1;
                let record = &self.current[i];
                let line = record.position().map_or(0, csv::Position::line) + self.line_offset;
                return Ok(Some(Row {
                    header,
                    line,
                    record,
                }));
            }
            if self.finished {
                return Ok(None);
            }
            if let Some(end) = self.end.take() {
                self.finished = true;
                return match end {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            }
            let spent = std::mem::take(&mut self.current);
            if !spent.is_empty() {
                let _ = self.back.send(spent);
            }
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = chunk.records;
                    self.len = chunk.len;
                    self.next = 0;
                    self.end = chunk.end;
                }
                Err(_) => {
                    self.finished = true;
                    return Err(BillError::Read {
                        file: self.file.clone(),
                        message: "the reading thread stopped".into(),
                    });
                }
            }
        }
    }
}

/// Whether the first line of `head` ends with `\r\n`.
fn crlf_before_first_newline(head: &[u8]) -> bool {
    head.iter()
        .position(|b| *b == b'\n')
        .is_some_and(|i| i > 0 && head[i - 1] == b'\r')
}

fn csv_error(file: &str, gzip: bool, line_offset: u64, e: &csv::Error) -> BillError {
    if let csv::ErrorKind::Io(io) = e.kind() {
        return if gzip {
            BillError::Gzip {
                file: file.to_string(),
                message: io.to_string(),
            }
        } else {
            BillError::Read {
                file: file.to_string(),
                message: io.to_string(),
            }
        };
    }
    let line = e
        .position()
        .map_or(1, |p| p.line() + if p.byte() > 0 { line_offset } else { 0 });
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("the row has {len} fields but the header has {expected_len}"),
        _ => e.to_string(),
    };
    BillError::CsvSyntax {
        file: file.to_string(),
        line,
        message,
    }
}

/// One data row, with the context for its errors.
pub(crate) struct Row<'r> {
    header: &'r Header,
    line: u64,
    record: &'r csv::ByteRecord,
}

impl<'r> Row<'r> {
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    fn name(&self, col: Col) -> &str {
        self.header.names.get(col.0).map_or("?", String::as_str)
    }

    /// The cell's text; `None` when the column is absent or the cell blank.
    pub(crate) fn str(&self, col: Option<Col>) -> Result<Option<&'r str>, BillError> {
        let Some(col) = col else { return Ok(None) };
        let raw = self.record.get(col.0).unwrap_or_default();
        let text = std::str::from_utf8(raw).map_err(|_| {
            self.invalid(
                col,
                &String::from_utf8_lossy(raw),
                "the cell is not UTF-8 text; re-export the file as UTF-8",
            )
        })?;
        Ok(non_blank(text))
    }

    /// The cell's text as an owned string.
    pub(crate) fn string(&self, col: Option<Col>) -> Result<Option<String>, BillError> {
        Ok(self.str(col)?.map(str::to_string))
    }

    /// A cell that must not be blank.
    pub(crate) fn required(&self, col: Col, expected: &str) -> Result<&'r str, BillError> {
        self.str(Some(col))?
            .ok_or_else(|| self.missing(col, expected))
    }

    /// An exact decimal (plain or E-notation); `None` when blank.
    pub(crate) fn decimal(&self, col: Option<Col>) -> Result<Option<Decimal>, BillError> {
        let Some(col) = col else { return Ok(None) };
        let Some(text) = self.str(Some(col))? else {
            return Ok(None);
        };
        match parse_exact_decimal(text) {
            Some(d) => Ok(Some(d)),
            None => Err(self.invalid(col, text, DECIMAL_EXPECTED)),
        }
    }

    /// An exact decimal that must be present.
    pub(crate) fn required_decimal(&self, col: Col, what: &str) -> Result<Decimal, BillError> {
        self.decimal(Some(col))?
            .ok_or_else(|| self.missing(col, what))
    }

    /// An instant that must be present.
    pub(crate) fn required_instant(&self, col: Col) -> Result<Timestamp, BillError> {
        let text = self.required(col, INSTANT_EXPECTED)?;
        parse_instant(text).ok_or_else(|| self.invalid(col, text, INSTANT_EXPECTED))
    }

    /// A JSON key-value cell read with `read` (see `common`); empty when absent or blank.
    pub(crate) fn json_map(
        &self,
        col: Option<Col>,
        read: fn(&str) -> Result<BTreeMap<String, String>, &'static str>,
    ) -> Result<BTreeMap<String, String>, BillError> {
        let Some(col) = col else {
            return Ok(BTreeMap::new());
        };
        let Some(text) = self.str(Some(col))? else {
            return Ok(BTreeMap::new());
        };
        read(text).map_err(|expected| {
            self.invalid(
                col,
                text,
                &format!("{expected}; correct the cell or re-export the file"),
            )
        })
    }

    /// An error about this row's value in `col`.
    pub(crate) fn invalid(&self, col: Col, value: &str, expected: &str) -> BillError {
        BillError::Cell {
            file: self.header.file.clone(),
            line: self.line,
            field: self.name(col).to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }

    /// An error about a blank cell in `col`.
    pub(crate) fn missing(&self, col: Col, expected: &str) -> BillError {
        BillError::MissingCell {
            file: self.header.file.clone(),
            line: self.line,
            field: self.name(col).to_string(),
            expected: expected.to_string(),
        }
    }
}
