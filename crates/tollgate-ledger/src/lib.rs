//! # tollgate-ledger
//!
//! The ledger: an append-only, idempotent store of usage events with rollups, behind the
//! [`Ledger`] trait, so the embedded SQLite backend ([`sqlite::SqliteLedger`], the default) and a
//! ClickHouse backend (later) answer the same queries with the same numbers.
//!
//! Invariants every backend keeps (checked by [`conformance`], the test suite written against
//! the trait):
//! - appending an event whose `event_id` is already stored stores nothing and counts a
//!   duplicate: replays are harmless;
//! - events are never updated or deleted; corrections are new rows;
//! - rollups (per UTC hour and attribution dimensions) change in the same transaction as the
//!   events they summarise, and a summary over `[start, end)` equals the sum over the raw events
//!   in it, also when `start`/`end` are not on the hour (edges are read from raw events);
//! - money is kept exactly (scaled integers of 1e-12 plus the exact decimal text);
//! - a writer that is dropped without `commit` leaves nothing behind.

mod block_scan;
pub mod blocks;
pub mod books;
pub mod conformance;
pub mod sqlite;
mod vtab;

pub use books::{
    Adjustment, AdjustmentRecord, KeyUsage, PeriodAction, PeriodActionRecord, REFDATA_KINDS,
    RefDataEntry, RefDataRecord, StoredBillLine, TeamUsage,
};

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_core::UsageEvent;

/// Errors from a ledger backend.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("ledger at {path}: {message}")]
    Open { path: String, message: String },
    #[error(
        "ledger schema is at version {found}, newer than this tollgate knows ({known}); upgrade tollgate"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("query refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Core(#[from] tollgate_core::CoreError),
}

pub type Result<T> = std::result::Result<T, LedgerError>;

/// A batch of events made ready for a ledger on the caller's thread, so that the ledger's
/// single writer has less to do. For the SQLite ledger ([`Prepared::for_sqlite`]) the events
/// are encoded as blocks, their ids hashed and their rollups summed; the writer then only
/// checks that no id is stored already and stores the blocks. The ingest pipeline prepares
/// each batch on its parser threads from events that borrow their texts from the input
/// ([`tollgate_core::event::EventRef`]), which it then drops: a prepared batch holds no event.
/// [`LedgerWriter::append_prepared`] stores it, or says that the events themselves must be
/// appended.
#[derive(Default)]
pub struct Prepared {
    /// One block per [`blocks::BLOCK_EVENTS`] events; empty when not prepared.
    blocks: Vec<sqlite::PreparedBlock>,
}

impl Prepared {
    /// No preparation: [`LedgerWriter::append_prepared`] refuses it.
    pub fn none() -> Prepared {
        Prepared::default()
    }

    /// Prepared for the SQLite ledger: a block per [`blocks::BLOCK_EVENTS`] events. A batch
    /// with an id twice or a cost the ledger refuses is left unprepared (its events are then
    /// appended one by one).
    pub fn for_sqlite<S: std::ops::Deref<Target = str>>(events: &[UsageEvent<S>]) -> Prepared {
        Prepared {
            blocks: sqlite::prepare_blocks(events).unwrap_or_default(),
        }
    }

    /// [`Prepared::for_sqlite`] for events borrowing their texts, as a function pointer for
    /// [`Ledger::preparer`].
    fn for_sqlite_ref(events: &[tollgate_core::event::EventRef<'_>]) -> Prepared {
        Prepared::for_sqlite(events)
    }

    /// Whether it holds prepared blocks.
    pub fn is_prepared(&self) -> bool {
        !self.blocks.is_empty()
    }

    pub(crate) fn blocks(&self) -> &[sqlite::PreparedBlock] {
        &self.blocks
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub inserted: u64,
    pub duplicates: u64,
    /// Of the inserted events: those missing required attribution.
    pub quarantined: u64,
    /// Of the inserted events: those without a cost.
    pub unpriced: u64,
}

impl std::ops::AddAssign for AppendOutcome {
    fn add_assign(&mut self, o: AppendOutcome) {
        self.inserted += o.inserted;
        self.duplicates += o.duplicates;
        self.quarantined += o.quarantined;
        self.unpriced += o.unpriced;
    }
}

/// A dimension a summary can group by. Every one is a rollup column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Team,
    Service,
    Feature,
    Model,
    Provider,
    Tenant,
    Environment,
    CostCenter,
    Currency,
    AttributionStatus,
    PricingStatus,
    PriceVersion,
}

impl Dim {
    pub const ALL: [Dim; 12] = [
        Dim::Team,
        Dim::Service,
        Dim::Feature,
        Dim::Model,
        Dim::Provider,
        Dim::Tenant,
        Dim::Environment,
        Dim::CostCenter,
        Dim::Currency,
        Dim::AttributionStatus,
        Dim::PricingStatus,
        Dim::PriceVersion,
    ];

    /// The column name (in rollups and events alike).
    pub fn column(self) -> &'static str {
        match self {
            Dim::Team => "team_id",
            Dim::Service => "service",
            Dim::Feature => "feature",
            Dim::Model => "model",
            Dim::Provider => "provider",
            Dim::Tenant => "tenant_id",
            Dim::Environment => "environment",
            Dim::CostCenter => "cost_center",
            Dim::Currency => "currency",
            Dim::AttributionStatus => "attribution_status",
            Dim::PricingStatus => "pricing_status",
            Dim::PriceVersion => "price_version",
        }
    }

    /// The name users type in `--by`.
    pub fn name(self) -> &'static str {
        match self {
            Dim::Team => "team",
            Dim::Tenant => "tenant",
            other => other.column(),
        }
    }

    pub fn parse(s: &str) -> Option<Dim> {
        Dim::ALL
            .iter()
            .copied()
            .find(|d| d.name() == s || d.column() == s)
    }

    /// This dimension's value on an event (`""` when absent).
    pub fn value_of(self, e: &UsageEvent) -> String {
        let a = &e.attribution;
        let s: Option<&str> = match self {
            Dim::Team => a.team_id.as_deref(),
            Dim::Service => a.service.as_deref(),
            Dim::Feature => a.feature.as_deref(),
            Dim::Model => Some(&e.model),
            Dim::Provider => Some(&e.provider),
            Dim::Tenant => a.tenant_id.as_deref(),
            Dim::Environment => a.environment.map(|x| x.as_str()),
            Dim::CostCenter => a.cost_center.as_deref(),
            Dim::Currency => Some(e.pricing.currency.as_str()),
            Dim::AttributionStatus => Some(e.attribution_status.as_str()),
            Dim::PricingStatus => Some(e.pricing.pricing_status.as_str()),
            Dim::PriceVersion => e.pricing.price_version.as_deref(),
        };
        s.unwrap_or("").to_string()
    }
}

/// A summary over `[start, end)` grouped by `group_by`, restricted to events whose dimensions
/// equal the `filters` values (`""` matches an absent value).
#[derive(Debug, Clone)]
pub struct SummaryQuery {
    pub start: Timestamp,
    pub end: Timestamp,
    pub group_by: Vec<Dim>,
    pub filters: Vec<(Dim, String)>,
}

impl SummaryQuery {
    pub fn new(start: Timestamp, end: Timestamp, group_by: Vec<Dim>) -> SummaryQuery {
        SummaryQuery {
            start,
            end,
            group_by,
            filters: Vec::new(),
        }
    }

    /// Adds a filter `dim = value`.
    pub fn filter(mut self, dim: Dim, value: &str) -> SummaryQuery {
        self.filters.push((dim, value.to_string()));
        self
    }
}

/// A note pinned to an instant (a deploy, a model switch, an incident).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Ledger instant text (UTC, microseconds).
    pub at: String,
    pub note: String,
    pub service: Option<String>,
}

/// A team's monthly budget as recorded (latest row wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetEntry {
    pub team_id: String,
    /// `YYYY-MM`.
    pub period: String,
    /// Decimal string in `currency`.
    pub limit: String,
    pub currency: String,
    pub owner: Option<String>,
    pub comment: Option<String>,
}

/// One imported provider bill (`tollgate ingest bills`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillImport {
    pub bill_type: String,
    pub provider: String,
    pub source: String,
    /// The billing month (`YYYY-MM`, UTC) of the earliest line: the replacement key.
    pub month: String,
    pub period_start: String,
    pub period_end: String,
    pub currency: String,
    pub lines: u64,
    /// Exact sum of the usage lines' costs, when the file has money.
    pub cost: Option<String>,
}

/// One provider-bill line as stored: text for exact decimals and instants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillLineRecord {
    pub provider: String,
    pub line_kind: String,
    pub period_start: String,
    pub period_end: String,
    pub model: Option<String>,
    pub token_class: Option<String>,
    pub tokens: Option<u64>,
    pub quantity: Option<String>,
    pub unit: Option<String>,
    pub cost: Option<String>,
    pub currency: String,
    pub account: Option<String>,
    pub project: Option<String>,
    pub workspace: Option<String>,
    pub api_key: Option<String>,
    pub principal: Option<String>,
    pub sku: Option<String>,
    pub service_tier: Option<String>,
    pub region: Option<String>,
    /// JSON object of tags, or None.
    pub tags: Option<String>,
    pub source_line: u64,
}

/// Where [`LedgerWriter::record_bill_streamed`] takes a bill from: its lines in batches as
/// they are parsed, then its import row.
pub trait BillLineSource {
    /// Replaces what `out` holds (the previous batch, already stored, or nothing) with the
    /// next lines. `false` when there are no more lines, or when the source failed (it keeps its own error, and [`BillLineSource::finish`] returns
    /// `None`).
    fn next_lines(&mut self, out: &mut Vec<BillLineRecord>) -> bool;
    /// After the last batch: the import row (its line count, period and cost are known only
    /// now), or `None` when the source failed.
    fn finish(&mut self) -> Option<BillImport>;
}

/// A finalized invoice or credit note, stored so that it never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInvoice {
    pub number: String,
    /// `invoice` or `credit_note`.
    pub kind: String,
    pub tenant_id: String,
    /// The period label, e.g. `2026-07`.
    pub period: String,
    /// The numbering pattern the number came from.
    pub pattern: String,
    /// Sequence number within the pattern.
    pub seq: u64,
    /// 1 for the first invoice of a period; +1 after each credit note.
    pub revision: u64,
    pub currency: String,
    /// Total as shown, a decimal string.
    pub total: String,
    /// The document as finalized (JSON).
    pub document: String,
    /// For a credit note: the invoice number it reverses.
    pub corrects: Option<String>,
    pub reason: Option<String>,
}

/// Token and money totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cache_write_1h_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    /// Sum of the costs of priced (and estimated) events, in units of 1e-12.
    pub cost_e12: i128,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.input_tokens += o.input_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.cache_write_1h_tokens += o.cache_write_1h_tokens;
        self.output_tokens += o.output_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cost_e12 += o.cost_e12;
    }

    /// The exact cost as a decimal.
    pub fn cost(&self) -> Result<Decimal> {
        Ok(tollgate_core::money::from_scaled_e12(self.cost_e12)?)
    }

    /// Adds one event (its cost only if it has one).
    pub fn add_event(&mut self, e: &UsageEvent) -> Result<()> {
        let cost = e
            .pricing
            .cost
            .map(tollgate_core::money::to_scaled_e12)
            .transpose()?;
        self.add_usage(&e.usage, cost);
        Ok(())
    }

    /// Adds one event's tokens, and its cost in units of 1e-12 when it has one.
    pub fn add_usage(&mut self, u: &tollgate_core::Usage, cost_e12: Option<i128>) {
        self.requests += 1;
        self.input_tokens += u.input_tokens;
        self.cache_read_tokens += u.cache_read_tokens;
        self.cache_write_tokens += u.cache_write_tokens;
        self.cache_write_1h_tokens += u.cache_write_1h_tokens;
        self.output_tokens += u.output_tokens;
        self.reasoning_tokens += u.reasoning_tokens;
        self.cost_e12 += cost_e12.unwrap_or(0);
    }
}

/// One group of a summary: the dimension values (in `group_by` order, `""` = absent) and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    pub keys: Vec<String>,
    pub totals: Totals,
}

/// A stored rate version (what priced events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceVersionRecord {
    pub version: String,
    pub provider: String,
    pub model: String,
    pub effective_from: Option<String>,
    pub effective_to: Option<String>,
    /// The rate entry as canonical JSON.
    pub rate_json: String,
}

impl PriceVersionRecord {
    /// The record of a rate from the rate tables.
    pub fn of_rate(r: &tollgate_core::Rate) -> PriceVersionRecord {
        PriceVersionRecord {
            version: r.version.clone(),
            provider: r.provider.clone(),
            model: r.model.clone(),
            effective_from: r.effective_from.map(tollgate_core::event::format_instant),
            effective_to: r.effective_to.map(tollgate_core::event::format_instant),
            rate_json: r.to_json().to_string(),
        }
    }
}

/// A record of one import (`tollgate ingest ...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportRecord {
    pub source: String,
    pub read: u64,
    pub ingested: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub unpriced: u64,
}

/// Result of a read-only SQL query: column names and rows of values.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
}

/// One cell of a SQL result.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    /// A REAL column, shown as SQLite prints it. Never used for Tollgate's own money.
    Real(String),
    Text(String),
    Blob(Vec<u8>),
}

impl std::fmt::Display for SqlValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlValue::Null => Ok(()),
            SqlValue::Integer(i) => write!(f, "{i}"),
            SqlValue::Real(s) | SqlValue::Text(s) => f.write_str(s),
            SqlValue::Blob(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

/// One stored event as the audit export reads it: only the columns the export needs, borrowed
/// from the backend's current row, so scanning allocates nothing per row. Valid only during
/// the callback of [`Ledger::scan_audit`]. Text is the stored UTF-8 as bytes, not validated
/// again (this is the hot path of a million-row export); an absent optional value is empty
/// (or `None`). The ledger holds no prompt or completion text, so none can appear here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRow<'a> {
    /// `occurred_at` in the ledger's instant format: UTC, six fraction digits, `Z`
    /// (`2026-07-01T12:00:00.000000Z`).
    pub occurred_at: &'a [u8],
    pub event_id: &'a [u8],
    pub request_id: &'a [u8],
    pub tenant_id: &'a [u8],
    pub user_id: &'a [u8],
    pub team_id: &'a [u8],
    pub service: &'a [u8],
    pub feature: &'a [u8],
    pub environment: &'a [u8],
    pub provider: &'a [u8],
    pub model: &'a [u8],
    /// `ok`, `client_error`, `upstream_error`, `cancelled`.
    pub status: &'a [u8],
    pub http_status: Option<i64>,
    pub latency_ms: Option<u64>,
    /// The disjoint token classes, as stored.
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cache_write_1h_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub currency: &'a [u8],
    /// The exact cost as stored (decimal text); empty when unpriced.
    pub cost: &'a [u8],
    pub price_version: &'a [u8],
    pub pricing_status: &'a [u8],
    pub attribution_status: &'a [u8],
}

/// Quantity and exact cost of one non-token billing class (`images`, `web_search_requests`,
/// or `other` for a cost imported without a breakdown) within a [`ClassTotals`] group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitTotals {
    /// Sum of the quantities recorded in the events' `units` (`None`: no event recorded one,
    /// as for `other`).
    pub quantity: Option<Decimal>,
    /// Sum of the class's costs (`None`: no event priced this class).
    pub cost: Option<Decimal>,
}

/// Usage and exact cost per billing class for one group of [`Ledger::class_costs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassTotals {
    /// The dimension values, in `group_by` order (`""` = absent).
    pub keys: Vec<String>,
    /// Requests, tokens per class, and the total cost (`cost_e12` includes unit classes).
    pub totals: Totals,
    /// Cost per token class in units of 1e-12, in [`ClassTotals::TOKEN_CLASSES`] order
    /// (0 for unpriced events, which have no cost at all).
    pub token_cost_e12: [i128; 5],
    /// Non-token classes by name.
    pub units: std::collections::BTreeMap<String, UnitTotals>,
}

impl ClassTotals {
    /// The token classes, as named in `cost_breakdown`.
    pub const TOKEN_CLASSES: [&'static str; 5] = [
        "input",
        "cache_read",
        "cache_write",
        "cache_write_1h",
        "output",
    ];

    /// Tokens of each class, in [`ClassTotals::TOKEN_CLASSES`] order.
    pub fn token_counts(&self) -> [u64; 5] {
        let t = &self.totals;
        [
            t.input_tokens,
            t.cache_read_tokens,
            t.cache_write_tokens,
            t.cache_write_1h_tokens,
            t.output_tokens,
        ]
    }
}

/// An open write transaction. Dropping it without [`LedgerWriter::commit`] rolls back.
pub trait LedgerWriter {
    /// Appends events idempotently (by `event_id`) and updates rollups in this transaction.
    fn append(&mut self, events: &[UsageEvent]) -> Result<AppendOutcome>;
    /// Stores a [`Prepared`] batch with the outcome [`LedgerWriter::append`] would give for
    /// the events it was made from, when it can: when none of them is stored already. `None`
    /// when it cannot (or the batch is not prepared, or the backend does not use
    /// preparations): nothing was stored, and the caller appends the events instead.
    fn append_prepared(&mut self, p: &Prepared) -> Result<Option<AppendOutcome>> {
        let _ = p;
        Ok(None)
    }
    /// Records rate versions (idempotent by version id).
    fn record_price_versions(&mut self, versions: &[PriceVersionRecord]) -> Result<()>;
    /// Records an import summary.
    fn record_import(&mut self, rec: &ImportRecord) -> Result<()>;
    /// Stores a finalized invoice or credit note. Numbers are unique; a stored one never changes.
    fn record_invoice(&mut self, inv: &StoredInvoice) -> Result<()>;
    /// Stores one imported provider bill with its lines; returns the import id. A later import
    /// of the same bill type, provider and billing month supersedes it (the
    /// `current_bill_lines` view shows only the latest); nothing is deleted.
    fn record_bill(&mut self, imp: &BillImport, lines: &[BillLineRecord]) -> Result<i64>;
    /// [`LedgerWriter::record_bill`] with the lines taken from `src` batch by batch while it
    /// parses them (a million-line CUR is never held whole), and the import row asked for
    /// after the last batch. Returns `None` when the source failed: the caller then drops the
    /// writer, which rolls back the lines already stored. The default collects the lines and
    /// calls `record_bill`.
    fn record_bill_streamed(&mut self, src: &mut dyn BillLineSource) -> Result<Option<i64>> {
        let mut lines = Vec::new();
        let mut batch = Vec::new();
        while src.next_lines(&mut batch) {
            lines.append(&mut batch);
        }
        match src.finish() {
            Some(imp) => self.record_bill(&imp, &lines).map(Some),
            None => Ok(None),
        }
    }
    /// Records a deploy (or any) annotation shown on the daily spend report.
    fn record_annotation(&mut self, a: &Annotation) -> Result<()>;
    /// Records a budget row; the latest row per (team, period) is the one in force.
    fn record_budget(&mut self, b: &BudgetEntry) -> Result<()>;
    /// Records one change of reference data (a new row; the newest per kind and key is in
    /// force); returns its version.
    fn record_refdata(&mut self, e: &RefDataEntry) -> Result<i64>;
    /// Logs a close or reopen of a period; returns its id.
    fn record_period_action(&mut self, a: &PeriodAction) -> Result<i64>;
    /// Records an adjustment, correction or allocation (a new row); returns its id.
    fn record_adjustment(&mut self, a: &Adjustment) -> Result<i64>;
    /// `tollgate ledger copy`: the instant (ledger instant text) this writer records as the
    /// `ingested_at` of the events it appends (and the time of the other rows it records) from
    /// now on, instead of the clock: a copy keeps when each event was first ingested, which
    /// the month-end close compares with its cut-off (late events).
    fn set_ingested_at(&mut self, at: &str) -> Result<()> {
        Err(LedgerError::Refused(format!(
            "this backend cannot record events as ingested at {at}"
        )))
    }
    /// `tollgate ledger copy`: stores a change of reference data recorded in another ledger
    /// with its version and instant, so history (who, when, "as of version N") survives a
    /// move between backends. Refused when that version holds a different change.
    fn copy_refdata(&mut self, r: &RefDataRecord) -> Result<()> {
        Err(LedgerError::Refused(format!(
            "this backend cannot copy reference data version {}",
            r.version
        )))
    }
    /// `tollgate ledger copy`: stores a logged close or reopen with its id and instant.
    fn copy_period_action(&mut self, r: &PeriodActionRecord) -> Result<()> {
        Err(LedgerError::Refused(format!(
            "this backend cannot copy period log entry {}",
            r.id
        )))
    }
    /// `tollgate ledger copy`: stores an adjustment with its id and instant.
    fn copy_adjustment(&mut self, r: &AdjustmentRecord) -> Result<()> {
        Err(LedgerError::Refused(format!(
            "this backend cannot copy adjustment {}",
            r.id
        )))
    }
    /// Makes everything written so far durable and visible.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// Prepares a batch for a ledger ([`Ledger::preparer`]).
pub type Preparer = fn(&[tollgate_core::event::EventRef<'_>]) -> Prepared;

/// The ledger interface every backend implements.
pub trait Ledger {
    /// Starts a write transaction.
    fn writer(&mut self) -> Result<Box<dyn LedgerWriter + '_>>;
    /// Starts a write transaction for a large import, which a backend may make faster by
    /// taking the ledger for itself while it lasts: the SQLite ledger, when no other
    /// connection has it open, writes it in rollback-journal mode instead of WAL mode (new
    /// pages are written once instead of twice), and other connections that open it
    /// meanwhile wait for the commit. The default is [`Ledger::writer`].
    fn bulk_writer(&mut self) -> Result<Box<dyn LedgerWriter + '_>> {
        self.writer()
    }
    /// How to prepare batches for this ledger on other threads ([`Prepared`]), if it gains
    /// from it.
    fn preparer(&self) -> Option<Preparer> {
        None
    }
    /// Totals over `[start, end)` grouped by the query's dimensions; exact for any bounds.
    fn summarize(&self, q: &SummaryQuery) -> Result<Vec<SummaryRow>>;
    /// Number of stored events.
    fn event_count(&self) -> Result<u64>;
    /// One event by id.
    fn get_event(&self, event_id: &str) -> Result<Option<UsageEvent>>;
    /// Every event with `start <= occurred_at < end`, in `occurred_at` order.
    fn scan_events(
        &self,
        start: Timestamp,
        end: Timestamp,
        f: &mut dyn FnMut(UsageEvent) -> Result<()>,
    ) -> Result<()>;
    /// The stored rate versions with these ids.
    fn price_versions(&self, ids: &[String]) -> Result<Vec<PriceVersionRecord>>;
    /// A read-only SQL query over the ledger's tables.
    fn query_sql(&self, sql: &str) -> Result<SqlTable>;
    /// Distinct non-empty `session_id`s per group, over the query's range and filters.
    fn distinct_sessions(&self, q: &SummaryQuery) -> Result<Vec<(Vec<String>, u64)>>;
    /// Finalized invoices and credit notes of a tenant for a period, oldest first.
    fn invoices_for(&self, tenant_id: &str, period: &str) -> Result<Vec<StoredInvoice>>;
    /// The highest sequence number used by `pattern`, or 0.
    fn last_invoice_seq(&self, pattern: &str) -> Result<u64>;
    /// Annotations with `start <= at < end`, in time order.
    fn annotations(&self, start: Timestamp, end: Timestamp) -> Result<Vec<Annotation>>;
    /// The budgets in force for a period label, one per team.
    fn budgets(&self, period: &str) -> Result<Vec<BudgetEntry>>;
    /// Totals per `user_id` over `[start, end)` (raw events; user ids are not a rollup
    /// dimension), largest cost first.
    fn spend_by_user(&self, start: Timestamp, end: Timestamp) -> Result<Vec<(String, Totals)>>;

    /// Every event with `start <= occurred_at < end` (and `tenant_id = tenant` when given), in
    /// `occurred_at` order, as borrowed [`AuditRow`]s: one cursor, constant memory, no
    /// [`UsageEvent`] built per row. The callback's error stops the scan and is returned.
    fn scan_audit(
        &self,
        start: Timestamp,
        end: Timestamp,
        tenant: Option<&str>,
        f: &mut dyn FnMut(&AuditRow<'_>) -> Result<()>,
    ) -> Result<()>;
    /// The rows of [`Ledger::scan_audit`], turned into bytes by `encode` and handed to `sink`
    /// in the same order, on the calling thread; returns the number of rows. A backend may run
    /// `encode` on several threads at once (each on a run of consecutive rows) to export faster
    /// than one core reads; memory stays bounded either way. The default reads one cursor on
    /// this thread.
    fn export_audit(
        &self,
        start: Timestamp,
        end: Timestamp,
        tenant: Option<&str>,
        encode: &(dyn Fn(&AuditRow<'_>, &mut Vec<u8>) + Sync),
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        let mut n: u64 = 0;
        self.scan_audit(start, end, tenant, &mut |r| {
            encode(r, &mut buf);
            n += 1;
            if buf.len() >= 1 << 16 {
                sink(&buf)?;
                buf.clear();
            }
            Ok(())
        })?;
        if !buf.is_empty() {
            sink(&buf)?;
        }
        Ok(n)
    }
    /// Usage and exact cost per billing class over `[start, end)`, grouped by the query's
    /// dimensions, read from the raw events (exact for any bounds). Per group, the token class
    /// costs plus the unit class costs equal `totals.cost_e12`. Sorted by keys.
    fn class_costs(&self, q: &SummaryQuery) -> Result<Vec<ClassTotals>>;

    /// Reference data in force as of `version` (all changes when None): the newest row per
    /// (kind, key), removals left out; sorted by kind and key.
    fn refdata(&self, as_of: Option<i64>) -> Result<Vec<RefDataRecord>>;
    /// Every change of reference data (optionally of one kind, and one key), oldest first.
    fn refdata_history(&self, kind: Option<&str>, key: Option<&str>) -> Result<Vec<RefDataRecord>>;
    /// The bill lines in force (newest import of each bill type, provider and month) whose
    /// charge period starts in `[start, end)`, in import and line order.
    fn bill_lines_in_force(&self, start: Timestamp, end: Timestamp) -> Result<Vec<StoredBillLine>>;
    /// [`Ledger::bill_lines_in_force`] merged per day: lines equal in everything but their
    /// amounts and charge period (bill type, provider, kind, the day of `period_start` in
    /// `day_tz`, model, token class, currency, account, project, workspace, API key, principal,
    /// tags, and whether tokens and cost are given) become one line whose tokens and cost are
    /// the exact sums, whose period runs from the earliest start to the latest end, and whose
    /// `source_line` is the first line's. What reconciliation reads: the same daily totals per
    /// key, far fewer rows.
    fn bill_lines_in_force_merged(
        &self,
        start: Timestamp,
        end: Timestamp,
        day_tz: &jiff::tz::TimeZone,
    ) -> Result<Vec<StoredBillLine>>;
    /// Usage over `[start, end)` per provider, model, API key, team, cost center and hour
    /// (`minute`: per minute), read from the raw events; sorted by its keys.
    fn usage_by_key(&self, start: Timestamp, end: Timestamp, minute: bool)
    -> Result<Vec<KeyUsage>>;

    /// The close/reopen log (of one period, or all), oldest first.
    fn period_actions(&self, period: Option<&str>) -> Result<Vec<PeriodActionRecord>>;
    /// Adjustments booked in a period (all when None), oldest first.
    fn adjustments(&self, period: Option<&str>) -> Result<Vec<AdjustmentRecord>>;
    /// Usage per team and cost center of the events with `start <= occurred_at < end` that
    /// were ingested after the instant `after` (ledger instant text): the late events of a
    /// period closed at `after`. Sorted by team and cost center.
    fn usage_ingested_after(
        &self,
        start: Timestamp,
        end: Timestamp,
        after: &str,
    ) -> Result<Vec<TeamUsage>>;

    /// As [`Ledger::scan_events`], with each event's `ingested_at` (ledger instant text), for
    /// `tollgate ledger copy`.
    fn scan_events_ingested(
        &self,
        start: Timestamp,
        end: Timestamp,
        f: &mut dyn FnMut(UsageEvent, &str) -> Result<()>,
    ) -> Result<()> {
        let _ = (start, end, f);
        Err(LedgerError::Refused(
            "this backend cannot read when events were ingested".into(),
        ))
    }

    /// Appends and commits in one go.
    fn append(&mut self, events: &[UsageEvent]) -> Result<AppendOutcome> {
        let mut w = self.writer()?;
        let out = w.append(events)?;
        w.commit()?;
        Ok(out)
    }
}
