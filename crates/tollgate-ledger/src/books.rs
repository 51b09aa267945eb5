//! Types of the finance back office kept in the ledger (issue #5): versioned reference data
//! (who owns a key, what a bill's model name means), the provider bills as stored for
//! reconciliation, and usage per API key for comparing with them.
//!
//! Reference data is history, never edited: every change is a new row with who and when, the
//! newest row per `(kind, key)` is the one in force, and a removal is a row too. The row id is
//! the version: "reference data as of version N" is every row up to N.

use crate::{BillLineRecord, Totals};

/// The kinds of reference data.
pub const REFDATA_KINDS: [&str; 7] = [
    "api_key",
    "project",
    "workspace",
    "principal",
    "tag",
    "model",
    "approver",
];

/// One change of reference data, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefDataEntry {
    /// One of [`REFDATA_KINDS`].
    pub kind: String,
    /// The identifier as the provider or the gateway writes it (an API key id, a project id,
    /// a workspace id, an IAM principal ARN, a tag as `name=value`, a model name as billed,
    /// an approver's key id).
    pub key: String,
    /// Owners (`api_key` .. `tag`): the team and cost center the identifier belongs to.
    pub team_id: Option<String>,
    pub cost_center: Option<String>,
    /// `model`: the canonical model name and its provider.
    pub canonical_model: Option<String>,
    pub provider: Option<String>,
    /// `approver`: the role (`approver`).
    pub role: Option<String>,
    /// A removal: the key has no mapping from this version on.
    pub removed: bool,
    /// Who made the change.
    pub changed_by: String,
    pub note: Option<String>,
}

/// A stored change: the entry, its version (row id) and when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefDataRecord {
    pub version: i64,
    /// Ledger instant text (UTC).
    pub changed_at: String,
    pub entry: RefDataEntry,
}

/// A bill line in force, with the type of the import it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBillLine {
    pub bill_type: String,
    pub import_id: i64,
    pub line: BillLineRecord,
}

/// Usage of one (provider, model, API key, team, cost center) in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    pub provider: String,
    pub model: String,
    /// Start of the bucket: a ledger instant text (UTC), on the hour or on the minute.
    pub bucket: String,
    pub api_key_id: String,
    pub team_id: String,
    pub cost_center: String,
    /// Tokens per class, requests, and the cost of the priced events.
    pub totals: Totals,
    /// Events without a cost.
    pub unpriced: u64,
}

/// A close or reopen of a period (`tollgate close` / `tollgate reopen`), as logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodAction {
    /// `YYYY-MM`.
    pub period: String,
    /// `close` or `reopen`.
    pub action: String,
    pub reason: Option<String>,
    pub by: String,
    /// At a close: the booked figures frozen (JSON), for the record.
    pub snapshot: Option<String>,
}

/// A logged period action with its id and instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodActionRecord {
    pub id: i64,
    /// Ledger instant text (UTC).
    pub at: String,
    pub action: PeriodAction,
}

/// A booked amount that is not an event: an approved adjustment, a re-pricing correction, a
/// shared-cost allocation. Never edited; a reversal is another row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adjustment {
    /// The period it is booked in (`YYYY-MM`).
    pub period: String,
    /// `adjustment`, `reprice` or `allocation`.
    pub kind: String,
    pub team_id: String,
    pub cost_center: Option<String>,
    /// Exact decimal text; negative for a credit.
    pub amount: String,
    pub currency: String,
    pub reason: String,
    /// The approver's key (adjustments).
    pub approver: Option<String>,
    pub requested_by: String,
    /// What it refers to: the period it corrects when booked later (a late correction), the
    /// rate file of a re-pricing, ...
    pub source: Option<String>,
    /// Details (JSON), e.g. the re-priced rows.
    pub detail: Option<String>,
}

/// A stored adjustment with its id and instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRecord {
    pub id: i64,
    pub recorded_at: String,
    pub adjustment: Adjustment,
}

/// Usage per team and cost center (for booking late events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamUsage {
    pub team_id: String,
    pub cost_center: String,
    pub totals: Totals,
}
