//! The embedded ledger: one SQLite file (`ledger.sqlite` in the data directory) in WAL mode,
//! so reports and `tollgate sql` read while the gateway or an import writes.
//!
//! Events are stored in blocks (`event_blocks`, see `crate::blocks`), many events per row; the
//! SQL table `events` is a read-only virtual table over them (`crate::vtab`). Triggers refuse
//! UPDATE and DELETE on the blocks. Money: `cost_e12` is the exact cost as an integer in units
//! of 1e-12 (what rollups sum), `cost` the same as decimal text. Unpriced events have both
//! NULL, never 0.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rust_decimal::Decimal;
use tollgate_core::event::{format_instant, push_json_str};
use tollgate_core::money::{from_scaled_e12, to_scaled_e12};
use tollgate_core::{
    Attribution, AttributionStatus, CostBreakdown, Currency, Pricing, PricingStatus, Usage,
    UsageEvent,
};

use crate::block_scan::{BlockScan, InstantBuf, InstantText};
use crate::blocks;
use crate::{Annotation, AuditRow, BudgetEntry, ClassTotals};
use crate::{
    AppendOutcome, BillImport, BillLineRecord, BillLineSource, Dim, ImportRecord, Ledger,
    LedgerError, LedgerWriter, PriceVersionRecord, Result, SqlTable, SqlValue, StoredInvoice,
    SummaryQuery, SummaryRow, Totals,
};

#[path = "sqlite_books.rs"]
mod books_impl;
#[path = "sqlite_events.rs"]
mod events_impl;
use events_impl::move_events_to_blocks;
pub(crate) use events_impl::{Prepared as PreparedBlock, prepare_blocks};

/// File name of the ledger inside the data directory.
pub const LEDGER_FILE: &str = "ledger.sqlite";

/// Schema migrations, applied in order; each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "events, rollups, price versions, imports",
        r#"
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    request_id TEXT,
    attempt INTEGER NOT NULL,
    parent_request_id TEXT,
    occurred_at TEXT NOT NULL,
    completed_at TEXT,
    trace_id TEXT,
    span_id TEXT,
    session_id TEXT,
    team_id TEXT,
    cost_center TEXT,
    service TEXT,
    feature TEXT,
    environment TEXT,
    tenant_id TEXT,
    user_id TEXT,
    api_key_id TEXT,
    region TEXT,
    tags TEXT,
    attribution_status TEXT NOT NULL,
    provider TEXT NOT NULL,
    model_requested TEXT,
    model TEXT NOT NULL,
    operation TEXT NOT NULL,
    service_tier TEXT,
    status TEXT NOT NULL,
    http_status INTEGER,
    streamed INTEGER NOT NULL,
    latency_ms INTEGER,
    ttft_ms INTEGER,
    input_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cache_write_1h_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    units TEXT,
    currency TEXT NOT NULL,
    cost TEXT,
    cost_e12 INTEGER,
    cost_input_e12 INTEGER,
    cost_cache_read_e12 INTEGER,
    cost_cache_write_e12 INTEGER,
    cost_cache_write_1h_e12 INTEGER,
    cost_output_e12 INTEGER,
    cost_units TEXT,
    price_version TEXT,
    pricing_status TEXT NOT NULL,
    ingested_at TEXT NOT NULL
);
CREATE INDEX events_occurred_at ON events(occurred_at);
CREATE TRIGGER events_immutable_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable: record a correction instead'); END;
CREATE TRIGGER events_immutable_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable: record a correction instead'); END;

CREATE TABLE rollups (
    hour INTEGER NOT NULL,
    team_id TEXT NOT NULL,
    service TEXT NOT NULL,
    feature TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    cost_center TEXT NOT NULL,
    currency TEXT NOT NULL,
    attribution_status TEXT NOT NULL,
    pricing_status TEXT NOT NULL,
    price_version TEXT NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cache_write_1h_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_e12 INTEGER NOT NULL,
    PRIMARY KEY (hour, team_id, service, feature, model, provider, tenant_id, environment,
                 cost_center, currency, attribution_status, pricing_status, price_version)
) WITHOUT ROWID;

CREATE TABLE price_versions (
    version TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    effective_from TEXT,
    effective_to TEXT,
    rate_json TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);

CREATE TABLE imports (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    read INTEGER NOT NULL,
    ingested INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    quarantined INTEGER NOT NULL,
    unpriced INTEGER NOT NULL
);
"#,
    ),
    (
        2,
        "finalized invoices and credit notes",
        r#"
CREATE TABLE invoices (
    id INTEGER PRIMARY KEY,
    number TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    tenant_id TEXT NOT NULL,
    period TEXT NOT NULL,
    pattern TEXT NOT NULL,
    seq INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    currency TEXT NOT NULL,
    total TEXT NOT NULL,
    document TEXT NOT NULL,
    corrects TEXT,
    reason TEXT,
    finalized_at TEXT NOT NULL,
    UNIQUE (tenant_id, period, kind, revision)
);
CREATE TRIGGER invoices_immutable_update BEFORE UPDATE ON invoices
BEGIN SELECT RAISE(ABORT, 'finalized invoices are immutable: issue a credit note instead'); END;
CREATE TRIGGER invoices_immutable_delete BEFORE DELETE ON invoices
BEGIN SELECT RAISE(ABORT, 'finalized invoices are immutable: issue a credit note instead'); END;
"#,
    ),
    (
        3,
        "provider bills",
        r#"
CREATE TABLE bill_imports (
    id INTEGER PRIMARY KEY,
    bill_type TEXT NOT NULL,
    provider TEXT NOT NULL,
    source TEXT NOT NULL,
    month TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    currency TEXT NOT NULL,
    lines INTEGER NOT NULL,
    cost TEXT,
    imported_at TEXT NOT NULL
);
CREATE TABLE bill_lines (
    id INTEGER PRIMARY KEY,
    import_id INTEGER NOT NULL REFERENCES bill_imports(id),
    provider TEXT NOT NULL,
    line_kind TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    model TEXT,
    token_class TEXT,
    tokens INTEGER,
    quantity TEXT,
    unit TEXT,
    cost TEXT,
    currency TEXT NOT NULL,
    account TEXT,
    project TEXT,
    workspace TEXT,
    api_key TEXT,
    principal TEXT,
    sku TEXT,
    service_tier TEXT,
    region TEXT,
    tags TEXT,
    source_line INTEGER NOT NULL
);
CREATE INDEX bill_lines_import ON bill_lines(import_id);
CREATE TRIGGER bill_imports_immutable_update BEFORE UPDATE ON bill_imports
BEGIN SELECT RAISE(ABORT, 'imported bills are immutable: import the bill again to supersede it'); END;
CREATE TRIGGER bill_imports_immutable_delete BEFORE DELETE ON bill_imports
BEGIN SELECT RAISE(ABORT, 'imported bills are immutable: import the bill again to supersede it'); END;
CREATE TRIGGER bill_lines_immutable_update BEFORE UPDATE ON bill_lines
BEGIN SELECT RAISE(ABORT, 'imported bills are immutable: import the bill again to supersede it'); END;
CREATE TRIGGER bill_lines_immutable_delete BEFORE DELETE ON bill_lines
BEGIN SELECT RAISE(ABORT, 'imported bills are immutable: import the bill again to supersede it'); END;
-- The latest import of each (bill type, provider, month) is the one in force.
CREATE VIEW current_bill_imports AS
SELECT * FROM bill_imports b WHERE id = (
    SELECT MAX(id) FROM bill_imports c
    WHERE c.bill_type = b.bill_type AND c.provider = b.provider AND c.month = b.month);
CREATE VIEW current_bill_lines AS
SELECT l.* FROM bill_lines l JOIN current_bill_imports i ON i.id = l.import_id;
"#,
    ),
    (
        4,
        "annotations and budgets",
        r#"
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    note TEXT NOT NULL,
    service TEXT,
    recorded_at TEXT NOT NULL
);
CREATE INDEX annotations_at ON annotations(at);
CREATE TABLE budgets (
    id INTEGER PRIMARY KEY,
    team_id TEXT NOT NULL,
    period TEXT NOT NULL,
    limit_amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    owner TEXT,
    comment TEXT,
    recorded_at TEXT NOT NULL
);
CREATE TRIGGER budgets_history_update BEFORE UPDATE ON budgets
BEGIN SELECT RAISE(ABORT, 'budget rows are history: record a new row instead'); END;
CREATE TRIGGER budgets_history_delete BEFORE DELETE ON budgets
BEGIN SELECT RAISE(ABORT, 'budget rows are history: record a new row instead'); END;
"#,
    ),
    (
        5,
        "index for distinct sessions per tenant and feature (invoices priced per session)",
        r#"
CREATE INDEX events_sessions ON events(tenant_id, feature, environment, occurred_at, session_id)
WHERE session_id IS NOT NULL;
"#,
    ),
    (
        6,
        "reference data: owners of keys, projects, workspaces, principals and tags; the model dictionary; approvers",
        r#"
CREATE TABLE refdata (
    id INTEGER PRIMARY KEY,
    changed_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    team_id TEXT,
    cost_center TEXT,
    canonical_model TEXT,
    provider TEXT,
    role TEXT,
    removed INTEGER NOT NULL,
    changed_by TEXT NOT NULL,
    note TEXT
);
CREATE INDEX refdata_kind_key ON refdata(kind, key, id);
CREATE TRIGGER refdata_history_update BEFORE UPDATE ON refdata
BEGIN SELECT RAISE(ABORT, 'reference data is history: record a new change instead'); END;
CREATE TRIGGER refdata_history_delete BEFORE DELETE ON refdata
BEGIN SELECT RAISE(ABORT, 'reference data is history: record a new change instead'); END;
"#,
    ),
    (
        7,
        "month-end close: period log, adjustments and corrections",
        r#"
CREATE TABLE period_log (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT,
    by TEXT NOT NULL,
    at TEXT NOT NULL,
    snapshot TEXT
);
CREATE INDEX period_log_period ON period_log(period, id);
CREATE TABLE adjustments (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    kind TEXT NOT NULL,
    team_id TEXT NOT NULL,
    cost_center TEXT,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT NOT NULL,
    approver TEXT,
    requested_by TEXT NOT NULL,
    source TEXT,
    detail TEXT,
    recorded_at TEXT NOT NULL
);
CREATE INDEX adjustments_period ON adjustments(period, id);
CREATE TRIGGER period_log_immutable_update BEFORE UPDATE ON period_log
BEGIN SELECT RAISE(ABORT, 'the period log is history: close or reopen again instead'); END;
CREATE TRIGGER period_log_immutable_delete BEFORE DELETE ON period_log
BEGIN SELECT RAISE(ABORT, 'the period log is history: close or reopen again instead'); END;
CREATE TRIGGER adjustments_immutable_update BEFORE UPDATE ON adjustments
BEGIN SELECT RAISE(ABORT, 'adjustments are never edited: record a reversing adjustment'); END;
CREATE TRIGGER adjustments_immutable_delete BEFORE DELETE ON adjustments
BEGIN SELECT RAISE(ABORT, 'adjustments are never edited: record a reversing adjustment'); END;
"#,
    ),
    (
        8,
        "hourly usage per provider, model, API key, team and cost center (reconciliation)",
        r#"
CREATE TABLE key_rollups (
    hour INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    api_key_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    cost_center TEXT NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cache_write_1h_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_e12 INTEGER NOT NULL,
    unpriced INTEGER NOT NULL,
    PRIMARY KEY (hour, provider, model, api_key_id, team_id, cost_center)
) WITHOUT ROWID;
INSERT INTO key_rollups SELECT CAST(strftime('%s', substr(occurred_at, 1, 13) || ':00:00Z') AS INTEGER),
    provider, model, COALESCE(api_key_id, ''), COALESCE(team_id, ''), COALESCE(cost_center, ''),
    COUNT(*), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),
    SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens),
    COALESCE(SUM(cost_e12), 0), SUM(cost_e12 IS NULL)
FROM events GROUP BY 1, 2, 3, 4, 5, 6;
"#,
    ),
    (
        9,
        "covering index of the rollups per tenant and environment (invoices, tenant reports)",
        r#"
CREATE INDEX rollups_tenant ON rollups(tenant_id, environment, hour, feature, model,
    attribution_status, pricing_status, requests, input_tokens, cache_read_tokens,
    cache_write_tokens, cache_write_1h_tokens, output_tokens, reasoning_tokens, cost_e12);
"#,
    ),
    (
        10,
        "events stored in blocks (event_blocks); `events` becomes a read-only virtual table over them",
        r#"
CREATE TABLE event_blocks (
    block_id INTEGER PRIMARY KEY,
    min_seq INTEGER NOT NULL,
    max_seq INTEGER NOT NULL,
    n INTEGER NOT NULL,
    min_occurred_at TEXT NOT NULL,
    max_occurred_at TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    ids BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX event_blocks_occurred ON event_blocks(max_occurred_at);
CREATE TRIGGER event_blocks_immutable_update BEFORE UPDATE ON event_blocks
BEGIN SELECT RAISE(ABORT, 'events are immutable: record a correction instead'); END;
CREATE TRIGGER event_blocks_immutable_delete BEFORE DELETE ON event_blocks
BEGIN SELECT RAISE(ABORT, 'events are immutable: record a correction instead'); END;
"#,
    ),
];

/// The migration that moves events into blocks: after its SQL, the rows of the old `events`
/// table are copied into blocks and the table is dropped (see [`move_events_to_blocks`]).
const BLOCKS_MIGRATION: i64 = 10;

/// The current schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The embedded SQLite ledger.
pub struct SqliteLedger {
    conn: Connection,
    /// The ids of the stored events, by hash (for duplicate detection), built on first use.
    ids: events_impl::IdIndex,
    path: PathBuf,
    /// The clock for `ingested_at` / `recorded_at` (injected in tests).
    now: fn() -> Timestamp,
}

const UPSERT_ROLLUP: &str = "INSERT INTO rollups (hour, team_id, service, feature, model,
    provider, tenant_id, environment, cost_center, currency, attribution_status, pricing_status,
    price_version, requests, input_tokens, cache_read_tokens, cache_write_tokens,
    cache_write_1h_tokens, output_tokens, reasoning_tokens, cost_e12)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
  ?20, ?21)
 ON CONFLICT DO UPDATE SET requests = requests + excluded.requests,
    input_tokens = input_tokens + excluded.input_tokens,
    cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
    cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
    cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
    cost_e12 = cost_e12 + excluded.cost_e12";

const SELECT_EVENT: &str = "SELECT event_id, request_id, attempt, parent_request_id,
    occurred_at, completed_at, trace_id, span_id, session_id, team_id, cost_center, service,
    feature, environment, tenant_id, user_id, api_key_id, region, tags, attribution_status,
    provider, model_requested, model, operation, service_tier, status, http_status, streamed,
    latency_ms, ttft_ms, input_tokens, cache_read_tokens, cache_write_tokens,
    cache_write_1h_tokens, output_tokens, reasoning_tokens, units, currency, cost,
    cost_input_e12, cost_cache_read_e12, cost_cache_write_e12, cost_cache_write_1h_e12,
    cost_output_e12, cost_units, price_version, pricing_status FROM events";

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A JSON value written by the ledger: a string, an exact number, or money as a string.
enum JsonVal<'a> {
    Str(&'a str),
    Num(Decimal),
    Dec(Decimal),
}

fn json_map_into<'a>(out: &mut String, it: impl Iterator<Item = (&'a str, JsonVal<'a>)>) {
    use std::fmt::Write as _;
    out.push('{');
    for (i, (k, v)) in it.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, k);
        out.push(':');
        match v {
            JsonVal::Str(s) => push_json_str(out, s),
            JsonVal::Num(d) => {
                let _ = write!(out, "{}", d.normalize());
            }
            JsonVal::Dec(d) => {
                let _ = write!(out, "\"{}\"", d.normalize());
            }
        }
    }
    out.push('}');
}

/// How long a connection waits for another one's lock before it gives up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<tollgate_core::rates::FxHasher>>;

impl SqliteLedger {
    /// Opens (creating if needed) the ledger in `data_dir`, applying pending migrations.
    pub fn open(data_dir: &Path) -> Result<SqliteLedger> {
        std::fs::create_dir_all(data_dir).map_err(|e| LedgerError::Open {
            path: data_dir.display().to_string(),
            message: format!("cannot create the data directory: {e}"),
        })?;
        let path = data_dir.join(LEDGER_FILE);
        let conn = Connection::open(&path).map_err(|e| LedgerError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let mut l = SqliteLedger {
            conn,
            ids: Default::default(),
            path,
            now: Timestamp::now,
        };
        l.migrate()?;
        crate::vtab::register(&l.conn)?;
        Ok(l)
    }

    /// Opens an existing ledger read-only (for `tollgate sql` and reports).
    pub fn open_read_only(data_dir: &Path) -> Result<SqliteLedger> {
        let path = data_dir.join(LEDGER_FILE);
        if !path.exists() {
            return Err(LedgerError::Open {
                path: path.display().to_string(),
                message: "no ledger here; ingest events first, or pass --data-dir".into(),
            });
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", "ON")?;
        crate::vtab::register(&conn)?;
        let found: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        if found > schema_version() {
            return Err(LedgerError::SchemaTooNew {
                found,
                known: schema_version(),
            });
        }
        if found < schema_version() {
            // A ledger written by an older Tollgate: bring it up to date first (once), so
            // readers see the tables they expect (e.g. events in blocks since version 10).
            drop(conn);
            drop(SqliteLedger::open(data_dir)?);
            return SqliteLedger::open_read_only(data_dir);
        }
        Ok(SqliteLedger {
            conn,
            ids: Default::default(),
            path,
            now: Timestamp::now,
        })
    }

    /// Replaces the clock used for `ingested_at` (tests).
    pub fn with_clock(mut self, now: fn() -> Timestamp) -> Self {
        self.now = now;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets this connection's page cache to `kib` KiB (default 64 MiB). The gateway's
    /// append-only writer needs little: its inserts touch the right edge of each index.
    pub fn set_cache_kib(&mut self, kib: u32) -> Result<()> {
        self.conn
            .pragma_update(None, "cache_size", -i64::from(kib.max(64)))?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )?;
        let current: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        if current > schema_version() {
            return Err(LedgerError::SchemaTooNew {
                found: current,
                known: schema_version(),
            });
        }
        for (version, description, sql) in MIGRATIONS {
            if *version <= current {
                continue;
            }
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            if *version == BLOCKS_MIGRATION {
                move_events_to_blocks(&tx)?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
                params![version, description, format_instant((self.now)())],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Rebuilds the rollups from the events (they are derived data).
    pub fn rebuild_rollups(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM rollups", [])?;
        tx.execute(
            &format!(
                "INSERT INTO rollups SELECT CAST(strftime('%s', substr(occurred_at, 1, 13) || ':00:00Z') AS INTEGER), {}, COUNT(*),
                 SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),
                 SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens),
                 COALESCE(SUM(cost_e12), 0) FROM events GROUP BY 1, {}",
                Dim::ALL.iter().map(|d| format!("COALESCE({}, '')", d.column())).collect::<Vec<_>>().join(", "),
                (2..2 + Dim::ALL.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
            ),
            [],
        )?;
        books_impl::rebuild_key_rollups(&tx)?;
        tx.commit()?;
        Ok(())
    }
}

fn hour_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(3600) * 3600
}

/// Adds hourly totals to the `rollups` table (keyed by hour and its 12 attribution columns),
/// in the order given (sorted by key, the inserts go to neighbouring B-tree pages).
fn upsert_rollups<'k>(
    tx: &Connection,
    m: impl IntoIterator<Item = (&'k (i64, [&'k str; 12]), &'k Totals)>,
) -> Result<()> {
    let mut up = tx.prepare_cached(UPSERT_ROLLUP)?;
    for ((hour, k), t) in m {
        let cost = i64::try_from(t.cost_e12)
            .map_err(|_| LedgerError::Refused("rollup cost out of range".into()))?;
        up.execute(params![
            hour,
            k[0],
            k[1],
            k[2],
            k[3],
            k[4],
            k[5],
            k[6],
            k[7],
            k[8],
            k[9],
            k[10],
            k[11],
            i64_of(t.requests),
            i64_of(t.input_tokens),
            i64_of(t.cache_read_tokens),
            i64_of(t.cache_write_tokens),
            i64_of(t.cache_write_1h_tokens),
            i64_of(t.output_tokens),
            i64_of(t.reasoning_tokens),
            cost,
        ])?;
    }
    Ok(())
}

const INSERT_BILL_LINE: &str = "INSERT INTO bill_lines (import_id, provider, line_kind,
    period_start, period_end, model, token_class, tokens, quantity, unit, cost, currency, account,
    project, workspace, api_key, principal, sku, service_tier, region, tags, source_line)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
    ?20, ?21, ?22)";

/// Inserts one bill line with [`INSERT_BILL_LINE`]: the values bound one by one, no parameter
/// slice built per row.
fn insert_bill_line(
    stmt: &mut rusqlite::CachedStatement<'_>,
    import_id: i64,
    l: &BillLineRecord,
) -> Result<()> {
    stmt.raw_bind_parameter(1, import_id)?;
    stmt.raw_bind_parameter(2, l.provider.as_str())?;
    stmt.raw_bind_parameter(3, l.line_kind.as_str())?;
    stmt.raw_bind_parameter(4, l.period_start.as_str())?;
    stmt.raw_bind_parameter(5, l.period_end.as_str())?;
    stmt.raw_bind_parameter(6, l.model.as_deref())?;
    stmt.raw_bind_parameter(7, l.token_class.as_deref())?;
    stmt.raw_bind_parameter(8, l.tokens.map(i64_of))?;
    stmt.raw_bind_parameter(9, l.quantity.as_deref())?;
    stmt.raw_bind_parameter(10, l.unit.as_deref())?;
    stmt.raw_bind_parameter(11, l.cost.as_deref())?;
    stmt.raw_bind_parameter(12, l.currency.as_str())?;
    stmt.raw_bind_parameter(13, l.account.as_deref())?;
    stmt.raw_bind_parameter(14, l.project.as_deref())?;
    stmt.raw_bind_parameter(15, l.workspace.as_deref())?;
    stmt.raw_bind_parameter(16, l.api_key.as_deref())?;
    stmt.raw_bind_parameter(17, l.principal.as_deref())?;
    stmt.raw_bind_parameter(18, l.sku.as_deref())?;
    stmt.raw_bind_parameter(19, l.service_tier.as_deref())?;
    stmt.raw_bind_parameter(20, l.region.as_deref())?;
    stmt.raw_bind_parameter(21, l.tags.as_deref())?;
    stmt.raw_bind_parameter(22, i64_of(l.source_line))?;
    stmt.raw_execute()?;
    Ok(())
}

impl SqliteWriter<'_> {
    /// Inserts a bill's import row, with the given id or the next one; returns its id.
    fn insert_bill_import(&mut self, id: Option<i64>, imp: &BillImport) -> Result<i64> {
        self.tx.execute(
            "INSERT INTO bill_imports (id, bill_type, provider, source, month, period_start,
             period_end, currency, lines, cost, imported_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                id,
                imp.bill_type,
                imp.provider,
                imp.source,
                imp.month,
                imp.period_start,
                imp.period_end,
                imp.currency,
                i64_of(imp.lines),
                imp.cost,
                self.now
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }
}

/// The write transaction of the SQLite ledger.
pub struct SqliteWriter<'c> {
    tx: rusqlite::Transaction<'c>,
    now: String,
    ids: &'c mut events_impl::IdIndex,
    /// Made on the first append of the transaction.
    events: Option<events_impl::EventWriter>,
    /// Set for a bulk write in rollback-journal mode; dropped after `tx` (fields drop in
    /// order), which puts the ledger back in WAL mode.
    _bulk: Option<RollbackMode<'c>>,
}

/// A ledger switched from WAL to rollback-journal mode for a bulk write
/// ([`Ledger::bulk_writer`]). In WAL mode every page a transaction writes goes to the WAL
/// first and is copied into the ledger file by the checkpoint after the commit: twice the
/// writes, the second time on one thread after the import. In rollback-journal mode the pages
/// a transaction adds go straight to the file, and only pages that existed before are
/// journaled. The switch needs the ledger to be open nowhere else (SQLite refuses it
/// otherwise). Dropped after the transaction ends (committed or rolled back), it switches
/// back to WAL mode; if that fails, the next open of the ledger does it.
struct RollbackMode<'c>(&'c Connection);

impl<'c> RollbackMode<'c> {
    /// Switches `conn`'s ledger to rollback-journal mode, or `None` (left in WAL mode) when
    /// another connection has it open. Does not wait for other connections.
    fn enter(conn: &'c Connection) -> Result<Option<RollbackMode<'c>>> {
        conn.busy_timeout(std::time::Duration::ZERO)?;
        let mode = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| {
            r.get::<_, String>(0)
        });
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(match mode {
            Ok(m) if m.eq_ignore_ascii_case("delete") => Some(RollbackMode(conn)),
            _ => None,
        })
    }
}

impl Drop for RollbackMode<'_> {
    fn drop(&mut self) {
        let _ = self.0.pragma_update(None, "journal_mode", "WAL");
    }
}

impl LedgerWriter for SqliteWriter<'_> {
    fn append(&mut self, events: &[UsageEvent]) -> Result<AppendOutcome> {
        let mut out = AppendOutcome::default();
        if self.events.is_none() {
            self.events = Some(events_impl::EventWriter::start(&self.tx, self.ids)?);
        }
        let Some(w) = self.events.as_mut() else {
            return Err(LedgerError::Refused(
                "the event writer did not start".into(),
            ));
        };
        let mut block = events_impl::BlockBuild::new();
        for (idx, e) in events.iter().enumerate() {
            let costs = events_impl::costs_of(e)?;
            if !w.accept(&self.tx, self.ids, events, idx)? {
                out.duplicates += 1;
                continue;
            }
            w.add(&mut block, e, &costs);
            out.inserted += 1;
            if e.attribution_status == tollgate_core::AttributionStatus::Quarantined {
                out.quarantined += 1;
            }
            if costs.total.is_none() {
                out.unpriced += 1;
            }
            if block.len() >= crate::blocks::BLOCK_EVENTS {
                w.flush(&self.tx, block, &self.now)?;
                block = events_impl::BlockBuild::new();
            }
        }
        w.flush(&self.tx, block, &self.now)?;
        Ok(out)
    }

    fn append_prepared(&mut self, p: &crate::Prepared) -> Result<Option<AppendOutcome>> {
        if !p.is_prepared() {
            return Ok(None);
        }
        if self.events.is_none() {
            self.events = Some(events_impl::EventWriter::start(&self.tx, self.ids)?);
        }
        match self.events.as_mut() {
            Some(w) => w.append_prepared(&self.tx, self.ids, p.blocks(), &self.now),
            None => Ok(None),
        }
    }

    fn record_price_versions(&mut self, versions: &[PriceVersionRecord]) -> Result<()> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO price_versions (version, provider, model, effective_from,
             effective_to, rate_json, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for v in versions {
            stmt.execute(params![
                v.version,
                v.provider,
                v.model,
                v.effective_from,
                v.effective_to,
                v.rate_json,
                self.now
            ])?;
        }
        Ok(())
    }

    fn record_import(&mut self, r: &ImportRecord) -> Result<()> {
        self.tx.execute(
            "INSERT INTO imports (source, imported_at, read, ingested, duplicates, quarantined, unpriced)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                r.source,
                self.now,
                i64_of(r.read),
                i64_of(r.ingested),
                i64_of(r.duplicates),
                i64_of(r.quarantined),
                i64_of(r.unpriced)
            ],
        )?;
        Ok(())
    }

    fn record_bill(&mut self, imp: &BillImport, lines: &[BillLineRecord]) -> Result<i64> {
        let id = self.insert_bill_import(None, imp)?;
        let mut stmt = self.tx.prepare_cached(INSERT_BILL_LINE)?;
        for l in lines {
            insert_bill_line(&mut stmt, id, l)?;
        }
        Ok(id)
    }

    /// The lines go in as they arrive, each batch while the source parses the next. The import
    /// row comes last (its line count and sums are known only then): its id is taken now
    /// (this transaction holds the write lock, so no other import can take it) and the
    /// lines' foreign key is checked at the commit.
    fn record_bill_streamed(&mut self, src: &mut dyn BillLineSource) -> Result<Option<i64>> {
        let id: i64 = self.tx.query_row(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM bill_imports",
            [],
            |r| r.get(0),
        )?;
        self.tx.pragma_update(None, "defer_foreign_keys", "ON")?;
        {
            let mut stmt = self.tx.prepare_cached(INSERT_BILL_LINE)?;
            let mut batch = Vec::new();
            while src.next_lines(&mut batch) {
                for l in &batch {
                    insert_bill_line(&mut stmt, id, l)?;
                }
            }
        }
        let Some(imp) = src.finish() else {
            return Ok(None);
        };
        self.insert_bill_import(Some(id), &imp)?;
        Ok(Some(id))
    }

    fn record_annotation(&mut self, a: &Annotation) -> Result<()> {
        self.tx.execute(
            "INSERT INTO annotations (at, note, service, recorded_at) VALUES (?1, ?2, ?3, ?4)",
            params![a.at, a.note, a.service, self.now],
        )?;
        Ok(())
    }

    fn record_budget(&mut self, b: &BudgetEntry) -> Result<()> {
        self.tx.execute(
            "INSERT INTO budgets (team_id, period, limit_amount, currency, owner, comment, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![b.team_id, b.period, b.limit, b.currency, b.owner, b.comment, self.now],
        )?;
        Ok(())
    }

    fn record_invoice(&mut self, inv: &StoredInvoice) -> Result<()> {
        self.tx.execute(
            "INSERT INTO invoices (number, kind, tenant_id, period, pattern, seq, revision,
             currency, total, document, corrects, reason, finalized_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                inv.number,
                inv.kind,
                inv.tenant_id,
                inv.period,
                inv.pattern,
                i64_of(inv.seq),
                i64_of(inv.revision),
                inv.currency,
                inv.total,
                inv.document,
                inv.corrects,
                inv.reason,
                self.now
            ],
        )?;
        Ok(())
    }

    fn record_refdata(&mut self, e: &crate::RefDataEntry) -> Result<i64> {
        books_impl::record_refdata(&self.tx, &self.now, e)
    }

    fn record_period_action(&mut self, a: &crate::PeriodAction) -> Result<i64> {
        books_impl::record_period_action(&self.tx, &self.now, a)
    }

    fn record_adjustment(&mut self, a: &crate::Adjustment) -> Result<i64> {
        books_impl::record_adjustment(&self.tx, &self.now, a)
    }

    fn set_ingested_at(&mut self, at: &str) -> Result<()> {
        let t: Timestamp = at
            .parse()
            .map_err(|_| LedgerError::Refused(format!("ingested_at {at:?} is not an instant")))?;
        self.now = format_instant(t);
        Ok(())
    }

    fn copy_refdata(&mut self, r: &crate::RefDataRecord) -> Result<()> {
        books_impl::copy_refdata(&self.tx, r)
    }

    fn copy_period_action(&mut self, r: &crate::PeriodActionRecord) -> Result<()> {
        books_impl::copy_period_action(&self.tx, r)
    }

    fn copy_adjustment(&mut self, r: &crate::AdjustmentRecord) -> Result<()> {
        books_impl::copy_adjustment(&self.tx, r)
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let SqliteWriter {
            tx,
            ids,
            mut events,
            ..
        } = *self;
        if let Some(w) = events.as_mut() {
            w.write_sums(&tx)?;
        }
        tx.commit()?;
        if let Some(w) = events {
            w.committed(ids);
        }
        Ok(())
    }
}

fn opt_str(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    r.get::<_, Option<String>>(i)
}

fn parse_ts(s: &str) -> Result<Timestamp> {
    s.parse()
        .map_err(|_| LedgerError::Corrupt(format!("bad stored instant {s:?}")))
}

/// `COALESCE(col, ''), ` for each grouping dimension: the start of a SELECT list.
fn group_select(dims: &[Dim]) -> String {
    dims.iter()
        .map(|d| format!("COALESCE({}, ''), ", d.column()))
        .collect()
}

/// ` AND col = ?n` for each filter on the events table, binding from `?3` on. A filter on a
/// present value compares the column itself; an empty value matches an absent column.
fn event_filters(filters: &[(Dim, String)]) -> String {
    filters
        .iter()
        .enumerate()
        .map(|(i, (d, v))| {
            if v.is_empty() {
                format!(" AND COALESCE({}, '') = ?{}", d.column(), i + 3)
            } else {
                format!(" AND {} = ?{}", d.column(), i + 3)
            }
        })
        .collect()
}

fn corrupt(what: &str, v: &str) -> LedgerError {
    LedgerError::Corrupt(format!("bad stored {what} {v:?}"))
}

fn parse_json_decimals(s: &str, what: &str) -> Result<Vec<(String, Decimal)>> {
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(s).map_err(|_| corrupt(what, s))?;
    v.into_iter()
        .map(|(k, val)| {
            let text = match &val {
                serde_json::Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            Decimal::from_str_exact(&text)
                .map(|d| (k, d))
                .map_err(|_| corrupt(what, s))
        })
        .collect()
}

fn row_to_event(r: &rusqlite::Row<'_>) -> Result<UsageEvent> {
    let g = |i: usize| opt_str(r, i);
    let occurred: String = r.get(4)?;
    let tags = match g(18)? {
        Some(t) => serde_json::from_str(&t).map_err(|_| corrupt("tags", &t))?,
        None => Default::default(),
    };
    let units = match g(36)? {
        Some(t) => parse_json_decimals(&t, "units")?.into_iter().collect(),
        None => Default::default(),
    };
    let class = |i: usize| -> Result<Decimal> {
        Ok(from_scaled_e12(i128::from(r.get::<_, Option<i64>>(i)?.unwrap_or(0)))?.normalize())
    };
    let mut cb = CostBreakdown {
        input: class(39)?,
        cache_read: class(40)?,
        cache_write: class(41)?,
        cache_write_1h: class(42)?,
        output: class(43)?,
        units: Default::default(),
    };
    if let Some(t) = g(44)? {
        cb.units = parse_json_decimals(&t, "cost_units")?.into_iter().collect();
    }
    let vocab = |i: usize| -> Result<String> { Ok(r.get::<_, String>(i)?) };
    let env = match g(13)? {
        Some(s) => Some(s.parse().map_err(|_| corrupt("environment", &s))?),
        None => None,
    };
    let as_u64 = |i: usize| -> Result<u64> {
        let v: i64 = r.get(i)?;
        u64::try_from(v).map_err(|_| corrupt("count", &v.to_string()))
    };
    let opt_u64 = |i: usize| -> Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?
            .and_then(|v| u64::try_from(v).ok()))
    };
    let cost = match g(38)? {
        Some(c) => Some(Decimal::from_str_exact(&c).map_err(|_| corrupt("cost", &c))?),
        None => None,
    };
    let cur: String = r.get(37)?;
    Ok(UsageEvent {
        event_id: r.get(0)?,
        request_id: g(1)?,
        attempt: r.get(2)?,
        parent_request_id: g(3)?,
        occurred_at: parse_ts(&occurred)?,
        completed_at: g(5)?.map(|s| parse_ts(&s)).transpose()?,
        trace_id: g(6)?,
        span_id: g(7)?,
        session_id: g(8)?,
        attribution: Attribution {
            team_id: g(9)?,
            cost_center: g(10)?,
            service: g(11)?,
            feature: g(12)?,
            environment: env,
            tenant_id: g(14)?,
            user_id: g(15)?,
            api_key_id: g(16)?,
            region: g(17)?,
            tags,
        },
        attribution_status: {
            let s = vocab(19)?;
            s.parse::<AttributionStatus>()
                .map_err(|_| corrupt("attribution_status", &s))?
        },
        provider: r.get(20)?,
        model_requested: g(21)?,
        model: r.get(22)?,
        operation: {
            let s = vocab(23)?;
            s.parse().map_err(|_| corrupt("operation", &s))?
        },
        service_tier: g(24)?,
        status: {
            let s = vocab(25)?;
            s.parse().map_err(|_| corrupt("status", &s))?
        },
        http_status: r.get(26)?,
        streamed: r.get(27)?,
        latency_ms: opt_u64(28)?,
        ttft_ms: opt_u64(29)?,
        usage: Usage {
            input_tokens: as_u64(30)?,
            cache_read_tokens: as_u64(31)?,
            cache_write_tokens: as_u64(32)?,
            cache_write_1h_tokens: as_u64(33)?,
            output_tokens: as_u64(34)?,
            reasoning_tokens: as_u64(35)?,
            units,
        },
        pricing: Pricing {
            currency: Currency::parse(&cur).map_err(|_| corrupt("currency", &cur))?,
            cost,
            cost_breakdown: cb,
            price_version: g(45)?,
            pricing_status: {
                let s = vocab(46)?;
                s.parse::<PricingStatus>()
                    .map_err(|_| corrupt("pricing_status", &s))?
            },
        },
    })
}

/// Reads grouped totals; the SQL must select the group columns, then the 8 totals.
fn read_grouped(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
    ndims: usize,
    acc: &mut HashMap<Vec<String>, Totals>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    while let Some(r) = rows.next()? {
        let mut keys = Vec::with_capacity(ndims);
        for i in 0..ndims {
            keys.push(r.get::<_, String>(i)?);
        }
        let t = row_totals(r, ndims)?;
        acc.entry(keys).or_default().add(&t);
    }
    Ok(())
}

/// The eight totals (requests, the six token counts, cost in 10^-12) that follow `ndims` key
/// columns in a summary row.
fn row_totals(r: &rusqlite::Row<'_>, ndims: usize) -> Result<Totals> {
    let n = |i: usize| -> Result<u64> {
        let v: i64 = r.get(ndims + i)?;
        u64::try_from(v).map_err(|_| corrupt("total", &v.to_string()))
    };
    Ok(Totals {
        requests: n(0)?,
        input_tokens: n(1)?,
        cache_read_tokens: n(2)?,
        cache_write_tokens: n(3)?,
        cache_write_1h_tokens: n(4)?,
        output_tokens: n(5)?,
        reasoning_tokens: n(6)?,
        cost_e12: i128::from(r.get::<_, i64>(ndims + 7)?),
    })
}

/// Reads ungrouped rollup rows (`ndims` key columns, then the eight totals) and sums them per
/// key in Rust: no SQL sort, and i128 money sums that cannot overflow. Keys are looked up by a
/// length-prefixed byte encoding in a reused buffer, so a row of a known group allocates nothing.
fn read_summed(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
    ndims: usize,
    acc: &mut HashMap<Vec<String>, Totals>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut groups: HashMap<Vec<u8>, (Vec<String>, Totals)> = HashMap::new();
    let mut key: Vec<u8> = Vec::with_capacity(64);
    while let Some(r) = rows.next()? {
        key.clear();
        for i in 0..ndims {
            let v = r.get_ref(i)?.as_bytes().map_err(rusqlite::Error::from)?;
            key.extend_from_slice(&(v.len() as u64).to_le_bytes());
            key.extend_from_slice(v);
        }
        let t = row_totals(r, ndims)?;
        match groups.get_mut(key.as_slice()) {
            Some((_, sum)) => sum.add(&t),
            None => {
                let mut keys = Vec::with_capacity(ndims);
                for i in 0..ndims {
                    keys.push(r.get::<_, String>(i)?);
                }
                groups.insert(key.clone(), (keys, t));
            }
        }
    }
    for (keys, t) in groups.into_values() {
        acc.entry(keys).or_default().add(&t);
    }
    Ok(())
}

impl SqliteLedger {
    /// Starts a write transaction; for a `bulk` one, in rollback-journal mode when it can
    /// ([`RollbackMode`]).
    fn start_writer(&mut self, bulk: bool) -> Result<Box<dyn LedgerWriter + '_>> {
        let now = format_instant((self.now)());
        let SqliteLedger { conn, ids, .. } = self;
        let conn: &Connection = conn;
        let bulk = if bulk {
            RollbackMode::enter(conn)?
        } else {
            None
        };
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        Ok(Box::new(SqliteWriter {
            tx,
            now,
            ids,
            events: None,
            _bulk: bulk,
        }))
    }
}

impl Ledger for SqliteLedger {
    fn preparer(&self) -> Option<crate::Preparer> {
        Some(crate::Prepared::for_sqlite_ref)
    }

    fn writer(&mut self) -> Result<Box<dyn LedgerWriter + '_>> {
        self.start_writer(false)
    }

    fn bulk_writer(&mut self) -> Result<Box<dyn LedgerWriter + '_>> {
        self.start_writer(true)
    }

    fn summarize(&self, q: &SummaryQuery) -> Result<Vec<SummaryRow>> {
        let mut acc: HashMap<Vec<String>, Totals> = HashMap::new();
        let nd = q.group_by.len();
        if q.end > q.start {
            let sel = group_select(&q.group_by);
            let group_cols: Vec<String> = (1..=nd).map(|i| i.to_string()).collect();
            // Filters bind as ?3, ?4, ... after the range.
            let where_rollups: String = q
                .filters
                .iter()
                .enumerate()
                .map(|(i, (d, _))| format!(" AND {} = ?{}", d.column(), i + 3))
                .collect();
            let where_events = event_filters(&q.filters);
            let filter_vals: Vec<&str> = q.filters.iter().map(|(_, v)| v.as_str()).collect();
            let events_sql = format!(
                "SELECT {sel}COUNT(*), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens), COALESCE(SUM(cost_e12), 0) FROM events WHERE occurred_at >= ?1 AND occurred_at < ?2{where_events}{}",
                // Without GROUP BY an aggregate returns one all-NULL row for an empty range:
                // HAVING drops it (an empty edge hour is no group at all).
                if nd == 0 {
                    " HAVING COUNT(*) > 0".to_string()
                } else {
                    format!(" GROUP BY {}", group_cols.join(", "))
                }
            );
            let read_events = |a: Timestamp,
                               b: Timestamp,
                               acc: &mut HashMap<Vec<String>, Totals>|
             -> Result<()> {
                let (fa, fb) = (format_instant(a), format_instant(b));
                let mut args: Vec<&dyn rusqlite::ToSql> = vec![&fa, &fb];
                args.extend(filter_vals.iter().map(|v| v as &dyn rusqlite::ToSql));
                read_grouped(&self.conn, &events_sql, &args, nd, acc)
            };
            // First whole hour at or after `start`; last whole hour boundary at or before `end`.
            let s0 = q.start.as_second();
            let on_hour = s0.rem_euclid(3600) == 0 && q.start.subsec_nanosecond() == 0;
            let h0 = s0.div_euclid(3600) * 3600 + if on_hour { 0 } else { 3600 };
            let h1 = q.end.as_second().div_euclid(3600) * 3600;
            if h0 < h1 {
                // Whole hours from the rollup rows themselves, summed in Rust (see
                // `read_summed`); a tenant filter is served by the covering `rollups_tenant`.
                let sql = format!(
                    "SELECT {sel}requests, input_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens, reasoning_tokens, cost_e12 FROM rollups WHERE hour >= ?1 AND hour < ?2{where_rollups}"
                );
                let mut args: Vec<&dyn rusqlite::ToSql> = vec![&h0, &h1];
                args.extend(filter_vals.iter().map(|v| v as &dyn rusqlite::ToSql));
                read_summed(&self.conn, &sql, &args, nd, &mut acc)?;
                let t = |secs: i64| {
                    Timestamp::from_second(secs).map_err(|e| LedgerError::Corrupt(e.to_string()))
                };
                // Partial hours at the edges from the events themselves.
                if q.start < t(h0)? {
                    read_events(q.start, t(h0)?, &mut acc)?;
                }
                if t(h1)? < q.end {
                    read_events(t(h1)?, q.end, &mut acc)?;
                }
            } else {
                read_events(q.start, q.end, &mut acc)?;
            }
        }
        let mut rows: Vec<SummaryRow> = acc
            .into_iter()
            .filter(|(_, t)| t.requests > 0)
            .map(|(keys, totals)| SummaryRow { keys, totals })
            .collect();
        rows.sort_by(|a, b| a.keys.cmp(&b.keys));
        Ok(rows)
    }

    fn distinct_sessions(&self, q: &SummaryQuery) -> Result<Vec<(Vec<String>, u64)>> {
        // Distinct values are counted here with hash sets, not by SQLite's COUNT(DISTINCT),
        // whose temporary B-tree costs about six times the index scan (measured on the demo:
        // 60 ms against 10 ms for 44k calls of one invoice line).
        let nd = q.group_by.len();
        let sel = group_select(&q.group_by);
        let filters = event_filters(&q.filters);
        let sql = format!(
            "SELECT {sel}session_id FROM events WHERE occurred_at >= ?1 AND occurred_at < ?2 AND session_id IS NOT NULL AND session_id <> ''{filters}"
        );
        let (fa, fb) = (format_instant(q.start), format_instant(q.end));
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&fa, &fb];
        args.extend(q.filters.iter().map(|(_, v)| v as &dyn rusqlite::ToSql));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(args.as_slice())?;
        // Session ids come from requests, so the sets keep std's keyed (DoS-resistant) hasher.
        let mut groups: HashMap<Vec<String>, HashSet<Box<[u8]>>> = HashMap::new();
        let mut keys: Vec<String> = Vec::with_capacity(nd);
        while let Some(r) = rows.next()? {
            keys.clear();
            for i in 0..nd {
                keys.push(r.get::<_, String>(i)?);
            }
            let session = r.get_ref(nd)?.as_bytes().map_err(rusqlite::Error::from)?;
            let set = match groups.get_mut(&keys) {
                Some(set) => set,
                None => groups.entry(keys.clone()).or_default(),
            };
            if !set.contains(session) {
                set.insert(session.into());
            }
        }
        let mut out: Vec<(Vec<String>, u64)> = groups
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| (k, s.len() as u64))
            .collect();
        out.sort();
        Ok(out)
    }

    fn invoices_for(&self, tenant_id: &str, period: &str) -> Result<Vec<StoredInvoice>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT number, kind, tenant_id, period, pattern, seq, revision, currency, total,
                    document, corrects, reason
             FROM invoices WHERE tenant_id = ?1 AND period = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![tenant_id, period], |r| {
            Ok(StoredInvoice {
                number: r.get(0)?,
                kind: r.get(1)?,
                tenant_id: r.get(2)?,
                period: r.get(3)?,
                pattern: r.get(4)?,
                seq: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                revision: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                currency: r.get(7)?,
                total: r.get(8)?,
                document: r.get(9)?,
                corrects: r.get(10)?,
                reason: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn annotations(&self, start: Timestamp, end: Timestamp) -> Result<Vec<Annotation>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, note, service FROM annotations WHERE at >= ?1 AND at < ?2 ORDER BY at, id",
        )?;
        let rows = stmt.query_map(params![format_instant(start), format_instant(end)], |r| {
            Ok(Annotation {
                at: r.get(0)?,
                note: r.get(1)?,
                service: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn budgets(&self, period: &str) -> Result<Vec<BudgetEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT team_id, period, limit_amount, currency, owner, comment FROM budgets b
             WHERE period = ?1 AND id = (SELECT MAX(id) FROM budgets c
                 WHERE c.team_id = b.team_id AND c.period = b.period)
             ORDER BY team_id",
        )?;
        let rows = stmt.query_map([period], |r| {
            Ok(BudgetEntry {
                team_id: r.get(0)?,
                period: r.get(1)?,
                limit: r.get(2)?,
                currency: r.get(3)?,
                owner: r.get(4)?,
                comment: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn spend_by_user(&self, start: Timestamp, end: Timestamp) -> Result<Vec<(String, Totals)>> {
        let mut acc: HashMap<Vec<String>, Totals> = HashMap::new();
        let (fa, fb) = (format_instant(start), format_instant(end));
        read_grouped(
            &self.conn,
            "SELECT COALESCE(user_id, ''), COUNT(*), SUM(input_tokens), SUM(cache_read_tokens),
             SUM(cache_write_tokens), SUM(cache_write_1h_tokens), SUM(output_tokens),
             SUM(reasoning_tokens), COALESCE(SUM(cost_e12), 0)
             FROM events WHERE occurred_at >= ?1 AND occurred_at < ?2
             GROUP BY 1, substr(occurred_at, 1, 10)",
            &[&fa, &fb],
            1,
            &mut acc,
        )?;
        let mut out: Vec<(String, Totals)> =
            acc.into_iter().map(|(mut k, t)| (k.remove(0), t)).collect();
        out.sort_by(|a, b| b.1.cost_e12.cmp(&a.1.cost_e12).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    fn last_invoice_seq(&self, pattern: &str) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM invoices WHERE pattern = ?1",
            [pattern],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn event_count(&self) -> Result<u64> {
        let n: i64 =
            self.conn
                .query_row("SELECT COALESCE(SUM(n), 0) FROM event_blocks", [], |r| {
                    r.get(0)
                })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn get_event(&self, event_id: &str) -> Result<Option<UsageEvent>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT_EVENT} WHERE event_id = ?1"))?;
        let id = event_id.to_ascii_lowercase();
        let row = stmt.query_row([&id], |r| Ok(row_to_event(r))).optional()?;
        row.transpose()
    }

    fn scan_events(
        &self,
        start: Timestamp,
        end: Timestamp,
        f: &mut dyn FnMut(UsageEvent) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "{SELECT_EVENT} WHERE occurred_at >= ?1 AND occurred_at < ?2 ORDER BY occurred_at, seq"
        ))?;
        let mut rows = stmt.query([format_instant(start), format_instant(end)])?;
        while let Some(r) = rows.next()? {
            f(row_to_event(r)?)?;
        }
        Ok(())
    }

    fn scan_events_ingested(
        &self,
        start: Timestamp,
        end: Timestamp,
        f: &mut dyn FnMut(UsageEvent, &str) -> Result<()>,
    ) -> Result<()> {
        // SELECT_EVENT's columns, then ingested_at (row_to_event reads by index).
        let select = SELECT_EVENT.replacen(" FROM events", ", ingested_at FROM events", 1);
        let mut stmt = self.conn.prepare_cached(&format!(
            "{select} WHERE occurred_at >= ?1 AND occurred_at < ?2 ORDER BY occurred_at, seq"
        ))?;
        let mut rows = stmt.query([format_instant(start), format_instant(end)])?;
        while let Some(r) = rows.next()? {
            let at: String = r.get(47)?;
            f(row_to_event(r)?, &at)?;
        }
        Ok(())
    }

    fn scan_audit(
        &self,
        start: Timestamp,
        end: Timestamp,
        tenant: Option<&str>,
        f: &mut dyn FnMut(&AuditRow<'_>) -> Result<()>,
    ) -> Result<()> {
        if end <= start {
            return Ok(());
        }
        let (a, b) = (format_instant(start), format_instant(end));
        let mut cur = AuditCursor::new();
        cur.start(&self.conn, (&a, &b), tenant)?;
        while let Some(r) = cur.row()? {
            f(&r)?;
            cur.advance(&self.conn)?;
        }
        Ok(())
    }

    fn export_audit(
        &self,
        start: Timestamp,
        end: Timestamp,
        tenant: Option<&str>,
        encode: &(dyn Fn(&AuditRow<'_>, &mut Vec<u8>) + Sync),
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        self.export_audit_with(start, end, tenant, AuditScanPlan::default(), encode, sink)
    }

    fn class_costs(&self, q: &SummaryQuery) -> Result<Vec<ClassTotals>> {
        if q.end <= q.start {
            return Ok(Vec::new());
        }
        let nd = q.group_by.len();
        let sel = group_select(&q.group_by);
        let filters = event_filters(&q.filters);
        let (fa, fb) = (format_instant(q.start), format_instant(q.end));
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&fa, &fb];
        args.extend(q.filters.iter().map(|(_, v)| v as &dyn rusqlite::ToSql));
        // Grouped per UTC day as well, so that no SQL sum can overflow; merged below in i128.
        let group: String = (1..=nd).map(|i| format!("{i}, ")).collect();
        let sql = format!(
            "SELECT {sel}COUNT(*), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),
                SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens),
                COALESCE(SUM(cost_e12), 0), COALESCE(SUM(cost_input_e12), 0),
                COALESCE(SUM(cost_cache_read_e12), 0), COALESCE(SUM(cost_cache_write_e12), 0),
                COALESCE(SUM(cost_cache_write_1h_e12), 0), COALESCE(SUM(cost_output_e12), 0),
                SUM(units IS NOT NULL OR cost_units IS NOT NULL)
             FROM events WHERE occurred_at >= ?1 AND occurred_at < ?2{filters}
             GROUP BY {group}substr(occurred_at, 1, 10)"
        );
        // Both passes read one snapshot, so a concurrent append cannot split them.
        let snapshot = self.conn.unchecked_transaction()?;
        let mut acc: HashMap<Vec<String>, ClassTotals> = HashMap::new();
        let mut with_units = false;
        {
            let mut stmt = snapshot.prepare_cached(&sql)?;
            let mut rows = stmt.query(args.as_slice())?;
            while let Some(r) = rows.next()? {
                let mut keys = Vec::with_capacity(nd);
                for i in 0..nd {
                    keys.push(r.get::<_, String>(i)?);
                }
                let m = |i: usize| -> Result<i128> { Ok(i128::from(r.get::<_, i64>(nd + i)?)) };
                let t = row_totals(r, nd)?;
                with_units |= r.get::<_, i64>(nd + 13)? > 0;
                let e = acc.entry(keys.clone()).or_insert_with(|| ClassTotals {
                    keys,
                    totals: Totals::default(),
                    token_cost_e12: [0; 5],
                    units: Default::default(),
                });
                e.totals.add(&t);
                for (c, slot) in e.token_cost_e12.iter_mut().enumerate() {
                    *slot += m(8 + c)?;
                }
            }
        }
        if with_units {
            // Unit classes live in JSON text: read only the events that have some, sum exactly.
            let sql = format!(
                "SELECT {sel}units, cost_units FROM events
                 WHERE occurred_at >= ?1 AND occurred_at < ?2{filters}
                   AND (units IS NOT NULL OR cost_units IS NOT NULL)"
            );
            let mut stmt = snapshot.prepare_cached(&sql)?;
            let mut rows = stmt.query(args.as_slice())?;
            let overflow = || LedgerError::Corrupt("unit totals overflow".into());
            let mut keys = Vec::with_capacity(nd);
            while let Some(r) = rows.next()? {
                keys.clear();
                for i in 0..nd {
                    keys.push(r.get::<_, String>(i)?);
                }
                let Some(e) = acc.get_mut(&keys) else {
                    return Err(LedgerError::Corrupt(
                        "events changed during a class-cost query".into(),
                    ));
                };
                if let Some(t) = opt_str(r, nd)? {
                    for (k, v) in parse_json_decimals(&t, "units")? {
                        let u = e.units.entry(k).or_default();
                        let q = u.quantity.unwrap_or_default();
                        u.quantity = Some(q.checked_add(v).ok_or_else(overflow)?);
                    }
                }
                if let Some(t) = opt_str(r, nd + 1)? {
                    for (k, v) in parse_json_decimals(&t, "cost_units")? {
                        let u = e.units.entry(k).or_default();
                        let c = u.cost.unwrap_or_default();
                        u.cost = Some(c.checked_add(v).ok_or_else(overflow)?);
                    }
                }
            }
        }
        drop(snapshot);
        let mut out: Vec<ClassTotals> = acc.into_values().collect();
        // Invariant: token class costs plus unit class costs equal the stored cost.
        for g in &out {
            let mut sum: i128 = g.token_cost_e12.iter().sum();
            for u in g.units.values() {
                if let Some(c) = u.cost {
                    sum += to_scaled_e12(c)?;
                }
            }
            if sum != g.totals.cost_e12 {
                return Err(LedgerError::Corrupt(format!(
                    "class costs of group {:?} add up to {sum}e-12, not the stored {}e-12",
                    g.keys, g.totals.cost_e12
                )));
            }
        }
        out.sort_by(|a, b| a.keys.cmp(&b.keys));
        Ok(out)
    }

    fn refdata(&self, as_of: Option<i64>) -> Result<Vec<crate::RefDataRecord>> {
        books_impl::refdata(&self.conn, as_of)
    }

    fn refdata_history(
        &self,
        kind: Option<&str>,
        key: Option<&str>,
    ) -> Result<Vec<crate::RefDataRecord>> {
        books_impl::refdata_history(&self.conn, kind, key)
    }

    fn bill_lines_in_force(
        &self,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<crate::StoredBillLine>> {
        books_impl::bill_lines_in_force(&self.conn, start, end)
    }

    fn bill_lines_in_force_merged(
        &self,
        start: Timestamp,
        end: Timestamp,
        day_tz: &jiff::tz::TimeZone,
    ) -> Result<Vec<crate::StoredBillLine>> {
        books_impl::bill_lines_in_force_merged(&self.conn, start, end, day_tz)
    }

    fn usage_by_key(
        &self,
        start: Timestamp,
        end: Timestamp,
        minute: bool,
    ) -> Result<Vec<crate::KeyUsage>> {
        books_impl::usage_by_key_ledger(self, start, end, minute)
    }

    fn period_actions(&self, period: Option<&str>) -> Result<Vec<crate::PeriodActionRecord>> {
        books_impl::period_actions(&self.conn, period)
    }

    fn adjustments(&self, period: Option<&str>) -> Result<Vec<crate::AdjustmentRecord>> {
        books_impl::adjustments(&self.conn, period)
    }

    fn usage_ingested_after(
        &self,
        start: Timestamp,
        end: Timestamp,
        after: &str,
    ) -> Result<Vec<crate::TeamUsage>> {
        books_impl::usage_ingested_after(&self.conn, start, end, after)
    }

    fn price_versions(&self, ids: &[String]) -> Result<Vec<PriceVersionRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT version, provider, model, effective_from, effective_to, rate_json
             FROM price_versions WHERE version = ?1",
        )?;
        let mut out = Vec::new();
        for id in ids {
            let rec = stmt
                .query_row([id], |r| {
                    Ok(PriceVersionRecord {
                        version: r.get(0)?,
                        provider: r.get(1)?,
                        model: r.get(2)?,
                        effective_from: r.get(3)?,
                        effective_to: r.get(4)?,
                        rate_json: r.get(5)?,
                    })
                })
                .optional()?;
            out.extend(rec);
        }
        Ok(out)
    }

    fn query_sql(&self, sql: &str) -> Result<SqlTable> {
        let refused = || {
            LedgerError::Refused(
                "only read-only statements (SELECT, WITH ... SELECT, read-only PRAGMA) are allowed; the ledger is append-only".into(),
            )
        };
        let mut stmt = match self.conn.prepare(sql) {
            Ok(s) => s,
            // SQLite refuses a write to the `events` virtual table when preparing it.
            Err(e) if e.to_string().contains("may not be") => return Err(refused()),
            Err(e) => return Err(e.into()),
        };
        if !stmt.readonly() {
            return Err(refused());
        }
        let columns: Vec<String> = stmt.column_names().map(String::from).collect();
        let n = columns.len();
        let mut rows_out = Vec::new();
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(v) => SqlValue::Integer(v),
                    ValueRef::Real(v) => SqlValue::Real(v.to_string()),
                    ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                });
            }
            rows_out.push(row);
        }
        Ok(SqlTable {
            columns,
            rows: rows_out,
        })
    }
}

// The columns of `events` an [`AuditRow`] is made of.
const C_EVENT_ID: usize = blocks::COL_EVENT_ID;
const C_REQUEST_ID: usize = blocks::column("request_id");
const C_OCCURRED_AT: usize = blocks::COL_OCCURRED_AT;
const C_TEAM_ID: usize = blocks::column("team_id");
const C_SERVICE: usize = blocks::column("service");
const C_FEATURE: usize = blocks::column("feature");
const C_ENVIRONMENT: usize = blocks::column("environment");
const C_TENANT_ID: usize = blocks::column("tenant_id");
const C_USER_ID: usize = blocks::column("user_id");
const C_ATTRIBUTION_STATUS: usize = blocks::column("attribution_status");
const C_PROVIDER: usize = blocks::column("provider");
const C_MODEL: usize = blocks::column("model");
const C_STATUS: usize = blocks::column("status");
const C_HTTP_STATUS: usize = blocks::column("http_status");
const C_LATENCY_MS: usize = blocks::column("latency_ms");
const C_INPUT_TOKENS: usize = blocks::column("input_tokens");
const C_CACHE_READ_TOKENS: usize = blocks::column("cache_read_tokens");
const C_CACHE_WRITE_TOKENS: usize = blocks::column("cache_write_tokens");
const C_CACHE_WRITE_1H_TOKENS: usize = blocks::column("cache_write_1h_tokens");
const C_OUTPUT_TOKENS: usize = blocks::column("output_tokens");
const C_REASONING_TOKENS: usize = blocks::column("reasoning_tokens");
const C_CURRENCY: usize = blocks::column("currency");
const C_COST_E12: usize = blocks::COL_COST_E12;
const C_PRICE_VERSION: usize = blocks::column("price_version");
const C_PRICING_STATUS: usize = blocks::column("pricing_status");

const AUDIT_COLUMNS: [(usize, blocks::Kind); 25] = {
    use blocks::Kind::{Instant, Int, Text};
    [
        (C_EVENT_ID, Text),
        (C_REQUEST_ID, Text),
        (C_OCCURRED_AT, Instant),
        (C_TEAM_ID, Text),
        (C_SERVICE, Text),
        (C_FEATURE, Text),
        (C_ENVIRONMENT, Text),
        (C_TENANT_ID, Text),
        (C_USER_ID, Text),
        (C_ATTRIBUTION_STATUS, Text),
        (C_PROVIDER, Text),
        (C_MODEL, Text),
        (C_STATUS, Text),
        (C_HTTP_STATUS, Int),
        (C_LATENCY_MS, Int),
        (C_INPUT_TOKENS, Int),
        (C_CACHE_READ_TOKENS, Int),
        (C_CACHE_WRITE_TOKENS, Int),
        (C_CACHE_WRITE_1H_TOKENS, Int),
        (C_OUTPUT_TOKENS, Int),
        (C_REASONING_TOKENS, Int),
        (C_CURRENCY, Text),
        (C_COST_E12, Int),
        (C_PRICE_VERSION, Text),
        (C_PRICING_STATUS, Text),
    ]
};

/// The columns an [`AuditRow`] decodes (bit `c` for column `c`).
const AUDIT_MASK: u64 = {
    let mut m = 0u64;
    let mut i = 0;
    while i < AUDIT_COLUMNS.len() {
        let (c, kind) = AUDIT_COLUMNS[i];
        // Every name exists, with the kind the row reads it as.
        assert!(c < blocks::COLUMNS.len());
        assert!(blocks::COLUMNS[c].1 as u8 == kind as u8);
        m |= 1 << c;
        i += 1;
    }
    m
};

/// The [`AuditRow`]s of a time range, built straight from the event blocks ([`BlockScan`]):
/// text borrowed from the block, `occurred_at` and `cost` formatted into the cursor's buffers,
/// the tenant compared in Rust. No SQL call per row or value. The values are those of the
/// `events` table: an absent text is empty, an absent count 0, an absent cost empty.
struct AuditCursor {
    scan: BlockScan,
    instants: InstantText,
    at: InstantBuf,
    cost: [u8; 48],
}

impl AuditCursor {
    fn new() -> Self {
        AuditCursor {
            scan: BlockScan::default(),
            instants: InstantText::default(),
            at: InstantBuf::default(),
            cost: [0; 48],
        }
    }

    /// Moves to the first event with `a <= occurred_at < b` (instants in the stored format)
    /// and `tenant_id = tenant` when given.
    fn start(
        &mut self,
        conn: &Connection,
        (a, b): (&str, &str),
        tenant: Option<&str>,
    ) -> Result<()> {
        let text_eq = tenant.map(|t| (C_TENANT_ID, t.to_string()));
        self.scan.time_range(conn, (a, b), AUDIT_MASK, text_eq)
    }

    fn advance(&mut self, conn: &Connection) -> Result<()> {
        self.scan.advance(conn)
    }

    /// The current event, or `None` at the end.
    fn row(&mut self) -> Result<Option<AuditRow<'_>>> {
        let Some((slot, row)) = self.scan.current() else {
            return Ok(None);
        };
        let b = &slot.block;
        let text = |c: usize| b.text(row, c).map_or(&b""[..], str::as_bytes);
        let count = |c: usize| {
            let v = b.int(row, c).unwrap_or(0);
            u64::try_from(v).map_err(|_| corrupt("count", &v.to_string()))
        };
        let occurred_at = self.instants.column(b, row, C_OCCURRED_AT, &mut self.at)?;
        let cost = b.cost(row, &mut self.cost);
        Ok(Some(AuditRow {
            occurred_at: occurred_at.map_or(&b""[..], str::as_bytes),
            event_id: text(C_EVENT_ID),
            request_id: text(C_REQUEST_ID),
            tenant_id: text(C_TENANT_ID),
            user_id: text(C_USER_ID),
            team_id: text(C_TEAM_ID),
            service: text(C_SERVICE),
            feature: text(C_FEATURE),
            environment: text(C_ENVIRONMENT),
            provider: text(C_PROVIDER),
            model: text(C_MODEL),
            status: text(C_STATUS),
            http_status: b.int(row, C_HTTP_STATUS),
            latency_ms: b.int(row, C_LATENCY_MS).and_then(|v| u64::try_from(v).ok()),
            input_tokens: count(C_INPUT_TOKENS)?,
            cache_read_tokens: count(C_CACHE_READ_TOKENS)?,
            cache_write_tokens: count(C_CACHE_WRITE_TOKENS)?,
            cache_write_1h_tokens: count(C_CACHE_WRITE_1H_TOKENS)?,
            output_tokens: count(C_OUTPUT_TOKENS)?,
            reasoning_tokens: count(C_REASONING_TOKENS)?,
            currency: text(C_CURRENCY),
            cost: cost.map_or(&b""[..], str::as_bytes),
            price_version: text(C_PRICE_VERSION),
            pricing_status: text(C_PRICING_STATUS),
            attribution_status: text(C_ATTRIBUTION_STATUS),
        }))
    }
}

/// How [`Ledger::export_audit`] reads a large range: in time slices of about `slice_rows` rows,
/// alternated between `readers` cursors on their own connections and threads (one core each),
/// which also encode their rows; the encoded chunks go back to the caller in slice order
/// through bounded channels. Below `parallel_min_rows` rows, or on one core, one cursor on the
/// caller's thread reads the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditScanPlan {
    /// Cursors (threads) reading at once; 1 reads on the caller's thread.
    pub readers: usize,
    /// Rows per time slice, about (estimated from the hourly rollups).
    pub slice_rows: u64,
    /// Fewer estimated rows than this: one cursor.
    pub parallel_min_rows: u64,
}

impl Default for AuditScanPlan {
    fn default() -> Self {
        AuditScanPlan {
            readers: std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
            // Two blocks' worth: a slice decodes every block it touches in full, so the
            // block it starts in is decoded twice (once per neighbouring slice); with slices
            // of half a block (4,096) each block was decoded about three times.
            slice_rows: 2 * blocks::BLOCK_EVENTS as u64,
            parallel_min_rows: 32_768,
        }
    }
}

/// Bytes a reader thread encodes before handing them to the caller.
const AUDIT_CHUNK_BYTES: usize = 256 * 1024;
/// Chunks a reader may run ahead of the caller: bounds memory at
/// `readers x (AUDIT_QUEUE + 1) x AUDIT_CHUNK_BYTES` (plus one row) whatever the range.
const AUDIT_QUEUE: usize = 4;

impl SqliteLedger {
    /// [`Ledger::export_audit`] with an explicit plan (tests use small slices to exercise the
    /// parallel path on little data).
    pub fn export_audit_with(
        &self,
        start: Timestamp,
        end: Timestamp,
        tenant: Option<&str>,
        plan: AuditScanPlan,
        encode: &(dyn Fn(&AuditRow<'_>, &mut Vec<u8>) + Sync),
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        if end <= start {
            return Ok(0);
        }
        let (a, b) = (format_instant(start), format_instant(end));
        if plan.readers >= 2
            && let Some(slices) = audit_slices(&self.conn, (start, end), &a, &b, plan)?
            && let Some(readers) = snapshot_readers(&self.path, plan.readers)?
        {
            return export_audit_parallel(readers, &slices, tenant, encode, sink);
        }
        // One cursor: the trait's default, on this connection.
        let mut buf: Vec<u8> = Vec::with_capacity(AUDIT_CHUNK_BYTES + 4096);
        let mut n: u64 = 0;
        self.scan_audit(start, end, tenant, &mut |r| {
            encode(r, &mut buf);
            n += 1;
            if buf.len() >= AUDIT_CHUNK_BYTES {
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
}

/// Splits `[a, b)` into time slices of about `plan.slice_rows` rows each (the count estimated
/// from the hourly rollups, spread evenly between the first and last event of the range), or
/// `None` when the range is too small to be worth more than one cursor. Slice bounds are
/// instants in the stored format, so every event falls in exactly one slice and slices in
/// order give `occurred_at` order.
fn audit_slices(
    conn: &Connection,
    (start, end): (Timestamp, Timestamp),
    a: &str,
    b: &str,
    plan: AuditScanPlan,
) -> Result<Option<Vec<(String, String)>>> {
    let h0 = hour_of(start);
    let h1 = hour_of(end) + 3600;
    let (n, lo, hi): (i64, Option<String>, Option<String>) = conn.query_row(
        "SELECT (SELECT COALESCE(SUM(requests), 0) FROM rollups WHERE hour >= ?3 AND hour < ?4),
                (SELECT MAX(MIN(min_occurred_at), ?1) FROM event_blocks
                 WHERE max_occurred_at >= ?1 AND min_occurred_at < ?2),
                (SELECT MIN(MAX(max_occurred_at), ?2) FROM event_blocks
                 WHERE max_occurred_at >= ?1 AND min_occurred_at < ?2)",
        params![a, b, h0, h1],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let n = u64::try_from(n).unwrap_or(0);
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(None);
    };
    if n < plan.parallel_min_rows.max(2) {
        return Ok(None);
    }
    let (lo, hi) = (
        parse_ts(&lo)?.as_microsecond(),
        parse_ts(&hi)?.as_microsecond(),
    );
    let k = i64::try_from(n.div_ceil(plan.slice_rows.max(1)).clamp(2, 1 << 20)).unwrap_or(2);
    let step = ((hi - lo) / k).max(1);
    let mut slices = Vec::new();
    let mut from = a.to_string();
    for i in 1..k {
        let t = lo + i * step;
        if t > hi {
            break;
        }
        let bound = format_instant(
            Timestamp::from_microsecond(t).map_err(|e| LedgerError::Corrupt(e.to_string()))?,
        );
        if bound.as_str() <= from.as_str() {
            continue;
        }
        slices.push((std::mem::replace(&mut from, bound.clone()), bound));
    }
    slices.push((from, b.to_string()));
    Ok((slices.len() >= 2).then_some(slices))
}

/// `n` read-only connections, each inside a read transaction on the same snapshot (events are
/// append-only, so an equal `MAX(seq)` means an equal set of events), or `None` if writers kept
/// moving the ledger between the openings.
fn snapshot_readers(path: &Path, n: usize) -> Result<Option<Vec<Connection>>> {
    for _attempt in 0..5 {
        let mut conns = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(n);
        for _ in 0..n {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.pragma_update(None, "query_only", "ON")?;
            crate::vtab::register(&c)?;
            c.execute_batch("BEGIN")?;
            let s: i64 = c.query_row(
                "SELECT COALESCE(MAX(max_seq), 0) FROM event_blocks",
                [],
                |r| r.get(0),
            )?;
            seqs.push(s);
            conns.push(c);
        }
        if seqs.windows(2).all(|w| w[0] == w[1]) {
            return Ok(Some(conns));
        }
    }
    Ok(None)
}

/// Encoded rows of one slice, crossing from a reader thread to the caller.
struct AuditChunk {
    bytes: Vec<u8>,
    /// Rows encoded in `bytes`.
    rows: u64,
    /// The last chunk of its slice.
    end_of_slice: bool,
}

/// Reads and encodes every `stride`-th slice from `first` on its own connection, until done or
/// until the caller hangs up (its receiver is gone).
fn audit_reader(
    conn: &Connection,
    slices: &[(String, String)],
    (first, stride): (usize, usize),
    tenant: Option<&str>,
    encode: &(dyn Fn(&AuditRow<'_>, &mut Vec<u8>) + Sync),
    tx: &std::sync::mpsc::SyncSender<Result<AuditChunk>>,
) -> Result<()> {
    let mut cur = AuditCursor::new();
    let fresh = || Vec::with_capacity(AUDIT_CHUNK_BYTES + 4096);
    for (a, b) in slices.iter().skip(first).step_by(stride) {
        cur.start(conn, (a, b), tenant)?;
        let mut bytes = fresh();
        let mut n: u64 = 0;
        while let Some(r) = cur.row()? {
            encode(&r, &mut bytes);
            cur.advance(conn)?;
            n += 1;
            if bytes.len() >= AUDIT_CHUNK_BYTES {
                let chunk = AuditChunk {
                    bytes: std::mem::replace(&mut bytes, fresh()),
                    rows: std::mem::take(&mut n),
                    end_of_slice: false,
                };
                if tx.send(Ok(chunk)).is_err() {
                    return Ok(());
                }
            }
        }
        let chunk = AuditChunk {
            bytes,
            rows: n,
            end_of_slice: true,
        };
        if tx.send(Ok(chunk)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Reads and encodes the slices on `readers` threads (slice `i` on reader `i % readers`) and
/// hands the bytes to `sink` in slice order on this thread. Memory stays bounded by the
/// channels.
fn export_audit_parallel(
    readers: Vec<Connection>,
    slices: &[(String, String)],
    tenant: Option<&str>,
    encode: &(dyn Fn(&AuditRow<'_>, &mut Vec<u8>) + Sync),
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let stride = readers.len();
    std::thread::scope(|scope| {
        let mut rxs = Vec::with_capacity(stride);
        for (first, conn) in readers.into_iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::sync_channel(AUDIT_QUEUE);
            rxs.push(rx);
            scope.spawn(move || {
                let plan = (first, stride);
                if let Err(e) = audit_reader(&conn, slices, plan, tenant, encode, &tx) {
                    let _ = tx.send(Err(e));
                }
            });
        }
        // `rxs` moves in and is dropped on return (also on an error from `sink`), so readers
        // blocked on a full channel wake up, see the hang-up and finish.
        merge_audit_chunks(rxs, slices.len(), sink)
    })
}

fn merge_audit_chunks(
    rxs: Vec<std::sync::mpsc::Receiver<Result<AuditChunk>>>,
    nslices: usize,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let mut n: u64 = 0;
    for i in 0..nslices {
        let Some(rx) = rxs.get(i % rxs.len().max(1)) else {
            break;
        };
        loop {
            let chunk = rx
                .recv()
                .map_err(|_| LedgerError::Corrupt("an audit reader stopped early".into()))??;
            if !chunk.bytes.is_empty() {
                sink(&chunk.bytes)?;
            }
            n += chunk.rows;
            if chunk.end_of_slice {
                break;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod audit_scan_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::conformance::event;

    // The audit rows as the SQL query over the `events` table gives them (what the export
    // read before it read the blocks itself): the independent path the block reader is pinned
    // against.

    /// The columns of an [`AuditRow`], in its order.
    const SELECT_AUDIT: &str = "SELECT occurred_at, event_id, request_id, tenant_id, user_id,
    team_id, service, feature, environment, provider, model, status, http_status, latency_ms,
    input_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
    reasoning_tokens, currency, cost, price_version, pricing_status, attribution_status
    FROM events";

    /// Column `i` of the current row as borrowed text bytes (empty when NULL).
    fn text_at<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r [u8]> {
        match r.get_ref(i)? {
            ValueRef::Null => Ok(b""),
            ValueRef::Text(t) => Ok(t),
            _ => Err(LedgerError::Corrupt(format!("column {i}: not text"))),
        }
    }

    /// Column `i` of the current row as an optional integer.
    fn int_at(r: &rusqlite::Row<'_>, i: usize) -> Result<Option<i64>> {
        match r.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v)),
            _ => Err(LedgerError::Corrupt(format!("column {i}: not an integer"))),
        }
    }

    /// Column `i` of the current row as a token count.
    fn count_at(r: &rusqlite::Row<'_>, i: usize) -> Result<u64> {
        let v = int_at(r, i)?.unwrap_or(0);
        u64::try_from(v).map_err(|_| corrupt("count", &v.to_string()))
    }

    fn audit_sql(tenant: bool) -> String {
        format!(
            "{SELECT_AUDIT} WHERE occurred_at >= ?1 AND occurred_at < ?2{} ORDER BY occurred_at, seq",
            if tenant { " AND tenant_id = ?3" } else { "" }
        )
    }

    /// The current row of a [`SELECT_AUDIT`] query.
    fn audit_row<'r>(r: &'r rusqlite::Row<'_>) -> Result<AuditRow<'r>> {
        Ok(AuditRow {
            occurred_at: text_at(r, 0)?,
            event_id: text_at(r, 1)?,
            request_id: text_at(r, 2)?,
            tenant_id: text_at(r, 3)?,
            user_id: text_at(r, 4)?,
            team_id: text_at(r, 5)?,
            service: text_at(r, 6)?,
            feature: text_at(r, 7)?,
            environment: text_at(r, 8)?,
            provider: text_at(r, 9)?,
            model: text_at(r, 10)?,
            status: text_at(r, 11)?,
            http_status: int_at(r, 12)?,
            latency_ms: int_at(r, 13)?.and_then(|v| u64::try_from(v).ok()),
            input_tokens: count_at(r, 14)?,
            cache_read_tokens: count_at(r, 15)?,
            cache_write_tokens: count_at(r, 16)?,
            cache_write_1h_tokens: count_at(r, 17)?,
            output_tokens: count_at(r, 18)?,
            reasoning_tokens: count_at(r, 19)?,
            currency: text_at(r, 20)?,
            cost: text_at(r, 21)?,
            price_version: text_at(r, 22)?,
            pricing_status: text_at(r, 23)?,
            attribution_status: text_at(r, 24)?,
        })
    }

    /// One line per row: event id and input tokens.
    fn encode(r: &AuditRow<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(r.event_id);
        out.extend_from_slice(format!(" {}\n", r.input_tokens).as_bytes());
    }

    /// The parallel path (forced with tiny slices) yields exactly the rows of one cursor, in
    /// the same order, with and without a tenant filter, including ties on `occurred_at`.
    #[test]
    fn parallel_and_sequential_exports_agree() {
        let d = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(d.path()).unwrap();
        let base: Timestamp = "2026-07-01T00:00:00Z".parse().unwrap();
        let evs: Vec<UsageEvent> = (0..3000u32)
            .map(|i| {
                // Uneven spread: bursts of 7 events on one instant, gaps between bursts.
                let at = base
                    .checked_add(jiff::SignedDuration::from_secs(i64::from((i / 7) * 13)))
                    .unwrap();
                let mut e = event(i, &at.to_string(), Some("t"), u64::from(i), Some("0.001"));
                e.attribution.tenant_id = Some(["acme", "beta", "gamma"][(i % 3) as usize].into());
                e
            })
            .collect();
        // Appended out of time order, so seq order is not occurred_at order.
        let (x, y) = evs.split_at(1500);
        l.append(y).unwrap();
        l.append(x).unwrap();
        let start: Timestamp = "2026-07-01T00:10:00Z".parse().unwrap();
        let end: Timestamp = "2026-07-01T01:20:00.5Z".parse().unwrap();
        let export = |plan: AuditScanPlan, tenant: Option<&str>| {
            let mut out: Vec<u8> = Vec::new();
            let n = l
                .export_audit_with(start, end, tenant, plan, &encode, &mut |b| {
                    out.extend_from_slice(b);
                    Ok(())
                })
                .unwrap();
            let text = String::from_utf8(out).unwrap();
            assert_eq!(usize::try_from(n).unwrap(), text.lines().count());
            text
        };
        let one = AuditScanPlan {
            readers: 1,
            ..AuditScanPlan::default()
        };
        let par = AuditScanPlan {
            readers: 2,
            slice_rows: 50,
            parallel_min_rows: 10,
        };
        // The parallel path is really taken: many slices, and two readers on one snapshot.
        let (a, b) = (format_instant(start), format_instant(end));
        let slices = audit_slices(&l.conn, (start, end), &a, &b, par)
            .unwrap()
            .unwrap();
        assert!(slices.len() > 20, "{}", slices.len());
        assert_eq!(slices[0].0, format_instant(start));
        assert_eq!(slices.last().unwrap().1, format_instant(end));
        assert!(
            slices
                .windows(2)
                .all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1)
        );
        assert_eq!(snapshot_readers(&l.path, 2).unwrap().unwrap().len(), 2);
        for tenant in [None, Some("beta")] {
            let a = export(one, tenant);
            // The single cursor agrees with scan_audit itself.
            let mut scanned = Vec::new();
            l.scan_audit(start, end, tenant, &mut |r| {
                encode(r, &mut scanned);
                Ok(())
            })
            .unwrap();
            assert_eq!(a.as_bytes(), &scanned[..]);
            assert!(a.lines().count() > 100, "{}", a.lines().count());
            assert_eq!(a, export(par, tenant), "tenant {tenant:?}");
            // In occurred_at order, ties in append order: event n's instant grows with n / 7.
            let ns: Vec<u64> = a
                .lines()
                .map(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap() / 7)
                .collect();
            assert!(ns.windows(2).all(|w| w[0] <= w[1]));
        }
        // Three readers, and an error from the sink stops everything cleanly.
        let three = AuditScanPlan { readers: 3, ..par };
        assert_eq!(export(three, None), export(one, None));
        let mut calls = 0;
        let err = l
            .export_audit_with(start, end, None, par, &encode, &mut |_| {
                calls += 1;
                if calls == 5 {
                    return Err(LedgerError::Refused("stop".into()));
                }
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(err, LedgerError::Refused(_)));
        assert_eq!(calls, 5);
    }

    /// Every field of an audit row, readable.
    fn show(r: &AuditRow<'_>) -> String {
        let t = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{:?}|{:?}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            t(r.occurred_at),
            t(r.event_id),
            t(r.request_id),
            t(r.tenant_id),
            t(r.user_id),
            t(r.team_id),
            t(r.service),
            t(r.feature),
            t(r.environment),
            t(r.provider),
            t(r.model),
            t(r.status),
            r.http_status,
            r.latency_ms,
            r.input_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.cache_write_1h_tokens,
            r.output_tokens,
            r.reasoning_tokens,
            t(r.currency),
            t(r.cost),
            t(r.price_version),
            t(r.pricing_status),
            t(r.attribution_status),
        )
    }

    /// The rows of `[a, b)` by the SQL query over `events`.
    fn sql_rows(l: &SqliteLedger, (a, b): (&str, &str), tenant: Option<&str>) -> Vec<String> {
        let mut stmt = l.conn.prepare(&audit_sql(tenant.is_some())).unwrap();
        let mut rows = match tenant {
            Some(t) => stmt.query(params![a, b, t]).unwrap(),
            None => stmt.query(params![a, b]).unwrap(),
        };
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            out.push(show(&audit_row(r).unwrap()));
        }
        out
    }

    /// The rows of `[start, end)` by `scan_audit` (the block reader).
    fn scanned(
        l: &SqliteLedger,
        start: Timestamp,
        end: Timestamp,
        tenant: Option<&str>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        l.scan_audit(start, end, tenant, &mut |r| {
            out.push(show(r));
            Ok(())
        })
        .unwrap();
        out
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Thirteen events in four blocks, the first three overlapping in time and appended out of
    /// time order, ties on `occurred_at` within and across blocks; some without cost (unpriced),
    /// tenant, request id, team, HTTP status or latency. Event `n` is `req-n`; seq follows `n`.
    fn ledger_of_four_blocks(d: &std::path::Path) -> SqliteLedger {
        let mut l = SqliteLedger::open(d).unwrap();
        // (n, time of day, tenant, cost) per event, one list per block.
        type Spec<'a> = (u32, &'a str, Option<&'a str>, Option<&'a str>);
        let spec: [&[Spec<'_>]; 4] = [
            &[
                (1, "10:00:03", Some("acme"), Some("0.5")),
                (2, "10:00:05", Some("beta"), None),
                (3, "10:00:01", None, Some("0.25")),
                (4, "10:00:05", Some("acme"), Some("1")),
            ],
            &[
                (5, "10:00:00", Some("acme"), Some("0.125")),
                (6, "10:00:02", None, None),
                (7, "10:00:05", Some("beta"), Some("2")),
                (8, "10:00:09", Some("acme"), Some("0.000000000001")),
            ],
            &[
                (9, "10:00:04.5", Some(""), Some("3")),
                (10, "10:00:05", Some("acme"), Some("0.1")),
                (11, "10:00:01", Some("beta"), Some("0.2")),
            ],
            &[
                (12, "10:00:20", Some("acme"), Some("1.5")),
                (13, "10:00:10", Some("beta"), None),
            ],
        ];
        for block in spec {
            let evs: Vec<UsageEvent> = block
                .iter()
                .map(|&(n, time, tenant, cost)| {
                    let when = format!("2026-07-01T{time}Z");
                    let team = (n != 6).then_some("t");
                    let mut e = event(n, &when, team, u64::from(n) * 100, cost);
                    e.attribution.tenant_id = tenant.map(String::from);
                    if n == 6 {
                        e.request_id = None;
                        e.http_status = None;
                        e.latency_ms = None;
                    }
                    e
                })
                .collect();
            l.append(&evs).unwrap();
        }
        let blocks: i64 = l
            .conn
            .query_row("SELECT COUNT(*) FROM event_blocks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(blocks, 4);
        l
    }

    /// The block reader yields exactly what the SQL query gave, field by field, in the same
    /// order: written out for a few ranges, and compared with the query for every range
    /// between event instants (bounds on an event: start included, end excluded) and every
    /// tenant filter, on one cursor and on the parallel path.
    #[test]
    fn the_block_reader_gives_the_rows_of_the_sql_query() {
        let d = tempfile::tempdir().unwrap();
        let l = ledger_of_four_blocks(d.path());
        // Time order, ties in seq order, [10:00:01, 10:00:05): the four events at 10:00:05
        // are left out, the two at 10:00:01 are in.
        let rows = scanned(
            &l,
            at("2026-07-01T10:00:01Z"),
            at("2026-07-01T10:00:05Z"),
            None,
        );
        let id = |n: u32| format!("0190a000-0000-7000-8000-{n:012x}");
        let priced = "USD|{cost}|aaaaaaaaaaaa@-inf|priced|ok";
        let line = |time: &str, n: u32, tenant: &str, cost: Option<&str>| {
            let tail = match cost {
                Some(c) => priced.replace("{cost}", c),
                None => "USD|||unpriced|ok".to_string(),
            };
            format!(
                "2026-07-01T{time}Z|{}|req-{n}|{tenant}||t|svc|feat|prod|openai|gpt-4o|ok|Some(200)|Some(1200)|{}|10|0|0|7|2|{tail}",
                id(n),
                n * 100
            )
        };
        assert_eq!(
            rows,
            vec![
                line("10:00:01.000000", 3, "", Some("0.25")),
                line("10:00:01.000000", 11, "beta", Some("0.2")),
                // No team (quarantined), request id, HTTP status, latency, tenant or cost.
                format!(
                    "2026-07-01T10:00:02.000000Z|{}||||||||openai|gpt-4o|ok|None|None|600|10|0|0|7|2|USD|||unpriced|quarantined",
                    id(6)
                ),
                line("10:00:03.000000", 1, "acme", Some("0.5")),
                line("10:00:04.500000", 9, "", Some("3")),
            ]
        );
        // From 10:00:05 on: the four ties in seq order (across three blocks), then 10:00:09;
        // 10:00:10 is the excluded end.
        let rows = scanned(
            &l,
            at("2026-07-01T10:00:05Z"),
            at("2026-07-01T10:00:10Z"),
            None,
        );
        assert_eq!(
            rows,
            vec![
                line("10:00:05.000000", 2, "beta", None),
                line("10:00:05.000000", 4, "acme", Some("1")),
                line("10:00:05.000000", 7, "beta", Some("2")),
                line("10:00:05.000000", 10, "acme", Some("0.1")),
                line("10:00:09.000000", 8, "acme", Some("0.000000000001")),
            ]
        );
        // A tenant: its events only, in time order; NULL and empty tenants match nothing
        // but an empty filter matches the empty tenant.
        let day = (at("2026-07-01T00:00:00Z"), at("2026-07-02T00:00:00Z"));
        let reqs = |tenant: Option<&str>| -> Vec<String> {
            scanned(&l, day.0, day.1, tenant)
                .iter()
                .map(|r| r.split('|').nth(2).unwrap().to_string())
                .collect()
        };
        assert_eq!(
            reqs(Some("acme")),
            ["req-5", "req-1", "req-4", "req-10", "req-8", "req-12"]
        );
        assert_eq!(reqs(Some("beta")), ["req-11", "req-2", "req-7", "req-13"]);
        assert_eq!(reqs(Some("")), ["req-9"]);
        assert!(reqs(Some("nobody")).is_empty());
        assert_eq!(reqs(None).len(), 13);

        // Every range between these bounds (the event instants and a few in between, one
        // with a fraction below a microsecond), every tenant filter: the same rows as SQL.
        let bounds: Vec<Timestamp> = [
            "09:59:59",
            "10:00:00",
            "10:00:01",
            "10:00:01.5",
            "10:00:02",
            "10:00:03",
            "10:00:04.5",
            "10:00:04.5000005",
            "10:00:05",
            "10:00:05.000001",
            "10:00:09",
            "10:00:10",
            "10:00:20",
            "10:00:20.000001",
            "11:00:00",
        ]
        .iter()
        .map(|t| at(&format!("2026-07-01T{t}Z")))
        .collect();
        let mut compared = 0;
        for &start in &bounds {
            for &end in &bounds {
                for tenant in [None, Some("acme"), Some("beta"), Some(""), Some("nobody")] {
                    let want = if end <= start {
                        Vec::new()
                    } else {
                        sql_rows(&l, (&format_instant(start), &format_instant(end)), tenant)
                    };
                    assert_eq!(
                        scanned(&l, start, end, tenant),
                        want,
                        "[{start}, {end}) tenant {tenant:?}"
                    );
                    compared += want.len();
                }
            }
        }
        assert!(compared > 500, "{compared}");

        // The parallel path (slices of about two rows, two readers): the same rows again.
        let par = AuditScanPlan {
            readers: 2,
            slice_rows: 2,
            parallel_min_rows: 2,
        };
        let (start, end) = (at("2026-07-01T10:00:01Z"), at("2026-07-01T10:00:20Z"));
        let (a, b) = (format_instant(start), format_instant(end));
        let slices = audit_slices(&l.conn, (start, end), &a, &b, par)
            .unwrap()
            .unwrap();
        assert!(slices.len() >= 4, "{}", slices.len());
        let encode = |r: &AuditRow<'_>, out: &mut Vec<u8>| {
            out.extend_from_slice(show(r).as_bytes());
            out.push(b'\n');
        };
        for tenant in [None, Some("acme"), Some("")] {
            let mut out = Vec::new();
            let n = l
                .export_audit_with(start, end, tenant, par, &encode, &mut |bytes| {
                    out.extend_from_slice(bytes);
                    Ok(())
                })
                .unwrap();
            let text = String::from_utf8(out).unwrap();
            let want = sql_rows(&l, (&a, &b), tenant);
            assert_eq!(text.lines().collect::<Vec<_>>(), want, "tenant {tenant:?}");
            assert_eq!(usize::try_from(n).unwrap(), want.len());
        }
    }

    /// The reader itself: only the blocks that meet the range are loaded, rows outside it are
    /// skipped, the rest come in (occurred_at, seq) order.
    #[test]
    fn the_block_scan_merges_overlapping_blocks_in_time_order() {
        let d = tempfile::tempdir().unwrap();
        let l = ledger_of_four_blocks(d.path());
        let mut scan = BlockScan::default();
        let mut reqs = |a: &str, b: &str, text_eq: Option<(usize, String)>| {
            let mask = 1 << C_REQUEST_ID;
            scan.time_range(&l.conn, (a, b), mask, text_eq).unwrap();
            let mut out = Vec::new();
            let mut last = (i64::MIN, i64::MIN);
            while let Some((slot, row)) = scan.current() {
                let key = (slot.block.int(row, C_OCCURRED_AT).unwrap(), slot.seq(row));
                assert!(key > last, "{key:?} after {last:?}");
                last = key;
                out.push(
                    slot.block
                        .text(row, C_REQUEST_ID)
                        .unwrap_or("-")
                        .to_string(),
                );
                scan.advance(&l.conn).unwrap();
            }
            out
        };
        assert_eq!(
            reqs(
                "2026-07-01T10:00:00.000000Z",
                "2026-07-01T10:00:05.000001Z",
                None
            ),
            [
                "req-5", "req-3", "req-11", "-", "req-1", "req-9", "req-2", "req-4", "req-7",
                "req-10"
            ]
        );
        // The last block alone (10:00:10 and 10:00:20), in time order against its seq order.
        assert_eq!(
            reqs(
                "2026-07-01T10:00:09.000001Z",
                "2026-07-01T11:00:00.000000Z",
                None
            ),
            ["req-13", "req-12"]
        );
        // No block meets the range.
        assert!(
            reqs(
                "2026-07-01T11:00:00.000000Z",
                "2026-07-01T12:00:00.000000Z",
                None
            )
            .is_empty()
        );
        // A text filter.
        assert_eq!(
            reqs(
                "2026-07-01T10:00:00.000000Z",
                "2026-07-01T11:00:00.000000Z",
                Some((C_TENANT_ID, "beta".into()))
            ),
            ["req-11", "req-2", "req-7", "req-13"]
        );
    }
}

#[cfg(test)]
mod bulk_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::conformance::event;

    /// The journal mode stored in the ledger file, as a new connection sees it.
    fn stored_mode(dir: &Path) -> String {
        let c = Connection::open(dir.join(LEDGER_FILE)).unwrap();
        c.query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap()
    }

    fn events(ns: std::ops::RangeInclusive<u32>) -> Vec<UsageEvent> {
        ns.map(|n| event(n, "2026-07-01T10:00:00Z", Some("t"), 10, Some("0.5")))
            .collect()
    }

    #[test]
    fn a_bulk_write_alone_uses_a_rollback_journal_and_leaves_the_ledger_in_wal_mode() {
        let d = tempfile::tempdir().unwrap();
        let journal = d.path().join(format!("{LEDGER_FILE}-journal"));
        let wal = d.path().join(format!("{LEDGER_FILE}-wal"));
        let mut l = SqliteLedger::open(d.path()).unwrap();
        // Committed: the events are there, the journal is gone, the mode is WAL again.
        let mut w = l.bulk_writer().unwrap();
        assert_eq!(w.append(&events(1..=3)).unwrap().inserted, 3);
        assert!(
            journal.exists() && !wal.exists(),
            "not in rollback-journal mode"
        );
        w.commit().unwrap();
        assert!(!journal.exists());
        assert_eq!(l.event_count().unwrap(), 3);
        // Rolled back: nothing stored, WAL mode again.
        let mut w = l.bulk_writer().unwrap();
        let more = events(4..=5);
        w.append(&more).unwrap();
        drop(w);
        assert!(!journal.exists());
        assert_eq!(l.event_count().unwrap(), 3);
        // A plain writer after it writes through the WAL.
        let mut w = l.writer().unwrap();
        w.append(&more).unwrap();
        assert!(wal.exists() && !journal.exists());
        w.commit().unwrap();
        drop(l);
        assert_eq!(stored_mode(d.path()), "wal");
    }

    #[test]
    fn a_bulk_write_while_another_connection_reads_stays_in_wal_mode() {
        let d = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(d.path()).unwrap();
        let reader = SqliteLedger::open_read_only(d.path()).unwrap();
        assert_eq!(reader.event_count().unwrap(), 0);
        let mut w = l.bulk_writer().unwrap();
        w.append(&events(1..=3)).unwrap();
        assert!(d.path().join(format!("{LEDGER_FILE}-wal")).exists());
        // The reader is not kept waiting: it sees the ledger as it was.
        assert_eq!(reader.event_count().unwrap(), 0);
        w.commit().unwrap();
        assert_eq!(reader.event_count().unwrap(), 3);
        drop((l, reader));
        assert_eq!(stored_mode(d.path()), "wal");
    }
}
