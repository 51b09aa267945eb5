//! The one error type of bill parsing. Every variant that comes from a file names the file and
//! where in it (`FILE:LINE` for CSV, `FILE: json.path` for JSON), the field, the value at fault
//! and what to do.

use tollgate_core::Currency;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    /// A CSV cell with a value of the wrong type or an impossible value.
    #[error("{file}:{line}: {field}: invalid value {value:?}: {expected}")]
    Cell {
        file: String,
        line: u64,
        field: String,
        value: String,
        expected: String,
    },
    /// A required CSV cell that is empty.
    #[error("{file}:{line}: {field}: missing: {expected}")]
    MissingCell {
        file: String,
        line: u64,
        field: String,
        expected: String,
    },
    /// A required column absent from the header line.
    #[error("{file}:1: {column}: required column missing: {hint}")]
    MissingColumn {
        file: String,
        column: String,
        hint: String,
    },
    /// A JSON value of the wrong type or an impossible value; `value` is the JSON text.
    #[error("{file}: {path}: invalid value {value}: {expected}")]
    Json {
        file: String,
        path: String,
        value: String,
        expected: String,
    },
    /// A required JSON field that is absent or null.
    #[error("{file}: {path}: missing: {expected}")]
    MissingJson {
        file: String,
        path: String,
        expected: String,
    },
    #[error(
        "{file}:{line}:{column}: not valid JSON ({message}); check the file is a complete API response"
    )]
    JsonSyntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}:{line}: not valid CSV ({message}); check the file is a complete export")]
    CsvSyntax {
        file: String,
        line: u64,
        message: String,
    },
    #[error("{file}: not valid UTF-8 text at byte {offset}; re-export the file as UTF-8")]
    NotUtf8 { file: String, offset: usize },
    /// The file could not be read (an I/O error, not a problem of its content).
    #[error("{file}: cannot read the file: {message}")]
    Read { file: String, message: String },
    #[error("{file}: cannot decompress gzip ({message}); check the download is complete")]
    Gzip { file: String, message: String },
    #[error(
        "the bill has no lines: nothing to summarise (the export may cover a period without usage)"
    )]
    NoLines,
    #[error(
        "line {line}: currency {found} differs from {first} on earlier lines; split the bill by currency"
    )]
    MixedCurrency {
        line: u64,
        found: Currency,
        first: Currency,
    },
    #[error("arithmetic overflow while adding up the bill")]
    Overflow,
}
