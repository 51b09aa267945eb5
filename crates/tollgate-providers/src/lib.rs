//! # tollgate-providers
//!
//! Provider wire formats, read into Tollgate's domain types. Bytes in, domain types out: no
//! file system, no network, no database, no clock. The caller reads the file (or fetches the
//! API pages) and hands the bytes, or a reader, over with a name to use in error messages.
//!
//! - [`bills`]: provider bills and usage exports (`openai-usage`, `openai-costs`,
//!   `anthropic-usage`, `anthropic-cost`, `aws-cur`, `gcp-billing`, `focus`) parsed into
//!   [`bills::BillLine`]s, one per token class or charge, and summarised. [`bills::parse`]
//!   returns the lines; [`bills::parse_each`] streams them, for bills too large to hold, and
//!   [`bills::parse_read`] does so from a reader (a CSV is then read 1 MiB at a time and split
//!   into records by a second thread).
//!
//! Invariants every parser keeps:
//! - **Money is exact.** Amounts are read from the text of the file (JSON number text, JSON
//!   string, CSV cell) straight into `rust_decimal::Decimal`; nothing goes through `f64`.
//!   E-notation (`1.2E-5`) is converted exactly or refused.
//! - **Token classes are disjoint** (uncached input, cache read, cache write 5 min, cache write
//!   1 h, output), so a bill's token total is a plain sum and matches the provider's own totals.
//! - **A file is all or nothing.** The first bad row fails the whole file with
//!   `FILE:LINE: FIELD: ...` (CSV) or `FILE: json.path: ...` (JSON), naming the value at fault
//!   and what to do. Unknown columns and fields are ignored; known ones are type-checked.
//! - **Charges are kept apart by kind.** Credits, tax and refunds are their own lines and their
//!   own sums; they never change the usage cost.

pub mod bills;

pub use bills::{
    BillError, BillLine, BillSummary, BillType, LineKind, Summarizer, TokenClass, TokenTotals,
};
