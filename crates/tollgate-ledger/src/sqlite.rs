//! The embedded ledger: one SQLite file (`ledger.sqlite` in the data directory) in WAL mode,
//! so reports and `tollgate sql` read while the gateway or an import writes.
//!
//! Money is stored twice per event: `cost` as the exact decimal text and `cost_e12` as an
//! integer in units of 1e-12 (what rollups sum). Unpriced events have both NULL, never 0.
//! Events are guarded by triggers that refuse UPDATE and DELETE.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rust_decimal::Decimal;
use tollgate_core::event::{format_instant, push_json_str, write_instant};
use tollgate_core::money::{from_scaled_e12, to_scaled_e12};
use tollgate_core::{
    Attribution, AttributionStatus, CostBreakdown, Currency, Pricing, PricingStatus, Usage,
    UsageEvent,
};

use crate::{
    AppendOutcome, Dim, ImportRecord, Ledger, LedgerError, LedgerWriter, PriceVersionRecord,
    Result, SqlTable, SqlValue, StoredInvoice, SummaryQuery, SummaryRow, Totals,
};

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
];

/// The current schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The embedded SQLite ledger.
pub struct SqliteLedger {
    conn: Connection,
    path: PathBuf,
    /// The clock for `ingested_at` / `recorded_at` (injected in tests).
    now: fn() -> Timestamp,
}

const INSERT_EVENT: &str = "INSERT OR IGNORE INTO events (
    event_id, request_id, attempt, parent_request_id, occurred_at, completed_at, trace_id,
    span_id, session_id, team_id, cost_center, service, feature, environment, tenant_id,
    user_id, api_key_id, region, tags, attribution_status, provider, model_requested, model,
    operation, service_tier, status, http_status, streamed, latency_ms, ttft_ms, input_tokens,
    cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
    reasoning_tokens, units, currency, cost, cost_e12, cost_input_e12, cost_cache_read_e12,
    cost_cache_write_e12, cost_cache_write_1h_e12, cost_output_e12, cost_units, price_version,
    pricing_status, ingested_at)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
  ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38,
  ?39, ?40, ?41, ?42, ?43, ?44, ?45, ?46, ?47, ?48, ?49)";

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

/// `Some(s)` unless empty (an absent optional column).
fn some(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

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
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let mut l = SqliteLedger {
            conn,
            path,
            now: Timestamp::now,
        };
        l.migrate()?;
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
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "query_only", "ON")?;
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
        Ok(SqliteLedger {
            conn,
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
        tx.commit()?;
        Ok(())
    }
}

fn hour_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(3600) * 3600
}

/// The write transaction of the SQLite ledger.
pub struct SqliteWriter<'c> {
    tx: rusqlite::Transaction<'c>,
    now: String,
}

impl LedgerWriter for SqliteWriter<'_> {
    fn append(&mut self, events: &[UsageEvent]) -> Result<AppendOutcome> {
        let mut out = AppendOutcome::default();
        let mut rollups: FxMap<(i64, [&str; 12]), Totals> = FxMap::default();
        // Scratch buffers reused across rows: no allocation per event on this path.
        let mut occurred = String::with_capacity(32);
        let mut completed = String::with_capacity(32);
        let mut cost_text = String::with_capacity(32);
        let mut tags = String::new();
        let mut units = String::new();
        let mut cost_units = String::new();
        {
            let mut stmt = self.tx.prepare_cached(INSERT_EVENT)?;
            for e in events {
                let a = &e.attribution;
                let p = &e.pricing;
                let too_big = |c: &Decimal| {
                    LedgerError::Refused(format!("cost {c} of event {} is too large", e.event_id))
                };
                let e12 = |c: Decimal| -> Result<i64> {
                    i64::try_from(to_scaled_e12(c)?).map_err(|_| too_big(&c))
                };
                let (cost_e12, classes) = match p.cost {
                    Some(c) => {
                        let b = &p.cost_breakdown;
                        (
                            Some(e12(c)?),
                            [
                                Some(e12(b.input)?),
                                Some(e12(b.cache_read)?),
                                Some(e12(b.cache_write)?),
                                Some(e12(b.cache_write_1h)?),
                                Some(e12(b.output)?),
                            ],
                        )
                    }
                    None => (None, [None; 5]),
                };
                occurred.clear();
                write_instant(&mut occurred, e.occurred_at);
                completed.clear();
                if let Some(c) = e.completed_at {
                    write_instant(&mut completed, c);
                }
                cost_text.clear();
                if let Some(c) = p.cost {
                    use std::fmt::Write as _;
                    let _ = write!(cost_text, "{}", c.normalize());
                }
                tags.clear();
                if !a.tags.is_empty() {
                    json_map_into(
                        &mut tags,
                        a.tags.iter().map(|(k, v)| (k.as_str(), JsonVal::Str(v))),
                    );
                }
                units.clear();
                if !e.usage.units.is_empty() {
                    json_map_into(
                        &mut units,
                        e.usage
                            .units
                            .iter()
                            .map(|(k, v)| (k.as_str(), JsonVal::Num(*v))),
                    );
                }
                cost_units.clear();
                if p.cost.is_some() && !p.cost_breakdown.units.is_empty() {
                    json_map_into(
                        &mut cost_units,
                        p.cost_breakdown
                            .units
                            .iter()
                            .map(|(k, v)| (k.as_str(), JsonVal::Dec(*v))),
                    );
                }
                let u = &e.usage;
                let n = stmt.execute(params![
                    e.event_id,
                    e.request_id,
                    e.attempt,
                    e.parent_request_id,
                    occurred,
                    some(&completed),
                    e.trace_id,
                    e.span_id,
                    e.session_id,
                    a.team_id,
                    a.cost_center,
                    a.service,
                    a.feature,
                    a.environment.map(|x| x.as_str()),
                    a.tenant_id,
                    a.user_id,
                    a.api_key_id,
                    a.region,
                    some(&tags),
                    e.attribution_status.as_str(),
                    e.provider,
                    e.model_requested,
                    e.model,
                    e.operation.as_str(),
                    e.service_tier,
                    e.status.as_str(),
                    e.http_status,
                    e.streamed,
                    e.latency_ms.map(i64_of),
                    e.ttft_ms.map(i64_of),
                    i64_of(u.input_tokens),
                    i64_of(u.cache_read_tokens),
                    i64_of(u.cache_write_tokens),
                    i64_of(u.cache_write_1h_tokens),
                    i64_of(u.output_tokens),
                    i64_of(u.reasoning_tokens),
                    some(&units),
                    p.currency.as_str(),
                    some(&cost_text),
                    cost_e12,
                    classes[0],
                    classes[1],
                    classes[2],
                    classes[3],
                    classes[4],
                    some(&cost_units),
                    p.price_version,
                    p.pricing_status.as_str(),
                    self.now,
                ])?;
                if n == 0 {
                    out.duplicates += 1;
                    continue;
                }
                out.inserted += 1;
                if e.attribution_status == tollgate_core::AttributionStatus::Quarantined {
                    out.quarantined += 1;
                }
                if p.cost.is_none() {
                    out.unpriced += 1;
                }
                let key = (
                    hour_of(e.occurred_at),
                    [
                        a.team_id.as_deref().unwrap_or(""),
                        a.service.as_deref().unwrap_or(""),
                        a.feature.as_deref().unwrap_or(""),
                        e.model.as_str(),
                        e.provider.as_str(),
                        a.tenant_id.as_deref().unwrap_or(""),
                        a.environment.map_or("", |x| x.as_str()),
                        a.cost_center.as_deref().unwrap_or(""),
                        p.currency.as_str(),
                        e.attribution_status.as_str(),
                        p.pricing_status.as_str(),
                        p.price_version.as_deref().unwrap_or(""),
                    ],
                );
                let t = rollups.entry(key).or_default();
                t.requests += 1;
                t.input_tokens += u.input_tokens;
                t.cache_read_tokens += u.cache_read_tokens;
                t.cache_write_tokens += u.cache_write_tokens;
                t.cache_write_1h_tokens += u.cache_write_1h_tokens;
                t.output_tokens += u.output_tokens;
                t.reasoning_tokens += u.reasoning_tokens;
                t.cost_e12 += i128::from(cost_e12.unwrap_or(0));
            }
        }
        let mut up = self.tx.prepare_cached(UPSERT_ROLLUP)?;
        for ((hour, k), t) in rollups {
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
        Ok(out)
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

    fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit()?;
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
        let n = |i: usize| -> Result<u64> {
            let v: i64 = r.get(ndims + i)?;
            u64::try_from(v).map_err(|_| corrupt("total", &v.to_string()))
        };
        let t = Totals {
            requests: n(0)?,
            input_tokens: n(1)?,
            cache_read_tokens: n(2)?,
            cache_write_tokens: n(3)?,
            cache_write_1h_tokens: n(4)?,
            output_tokens: n(5)?,
            reasoning_tokens: n(6)?,
            cost_e12: i128::from(r.get::<_, i64>(ndims + 7)?),
        };
        acc.entry(keys).or_default().add(&t);
    }
    Ok(())
}

impl Ledger for SqliteLedger {
    fn writer(&mut self) -> Result<Box<dyn LedgerWriter + '_>> {
        let now = format_instant((self.now)());
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        Ok(Box::new(SqliteWriter { tx, now }))
    }

    fn summarize(&self, q: &SummaryQuery) -> Result<Vec<SummaryRow>> {
        let mut acc: HashMap<Vec<String>, Totals> = HashMap::new();
        let nd = q.group_by.len();
        if q.end > q.start {
            let sel: String = q
                .group_by
                .iter()
                .map(|d| format!("COALESCE({}, ''), ", d.column()))
                .collect();
            let group_cols: Vec<String> = (1..=nd).map(|i| i.to_string()).collect();
            // Filters bind as ?3, ?4, ... after the range.
            let where_rollups: String = q
                .filters
                .iter()
                .enumerate()
                .map(|(i, (d, _))| format!(" AND {} = ?{}", d.column(), i + 3))
                .collect();
            let where_events: String = q
                .filters
                .iter()
                .enumerate()
                .map(|(i, (d, _))| format!(" AND COALESCE({}, '') = ?{}", d.column(), i + 3))
                .collect();
            let filter_vals: Vec<&str> = q.filters.iter().map(|(_, v)| v.as_str()).collect();
            let events_sql = format!(
                "SELECT {sel}COUNT(*), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens), COALESCE(SUM(cost_e12), 0) FROM events WHERE occurred_at >= ?1 AND occurred_at < ?2{where_events}{}",
                if nd == 0 {
                    String::new()
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
                // Whole hours from rollups, grouped per day too so that no SQL sum overflows.
                let sql = format!(
                    "SELECT {sel}SUM(requests), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens), SUM(cost_e12) FROM rollups WHERE hour >= ?1 AND hour < ?2{where_rollups} GROUP BY hour / 86400{}",
                    group_cols
                        .iter()
                        .map(|c| format!(", {c}"))
                        .collect::<String>()
                );
                let mut args: Vec<&dyn rusqlite::ToSql> = vec![&h0, &h1];
                args.extend(filter_vals.iter().map(|v| v as &dyn rusqlite::ToSql));
                read_grouped(&self.conn, &sql, &args, nd, &mut acc)?;
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
        let nd = q.group_by.len();
        let sel: String = q
            .group_by
            .iter()
            .map(|d| format!("COALESCE({}, ''), ", d.column()))
            .collect();
        let filters: String = q
            .filters
            .iter()
            .enumerate()
            .map(|(i, (d, _))| format!(" AND COALESCE({}, '') = ?{}", d.column(), i + 3))
            .collect();
        let sql = format!(
            "SELECT {sel}COUNT(DISTINCT session_id) FROM events WHERE occurred_at >= ?1 AND occurred_at < ?2 AND session_id IS NOT NULL AND session_id <> ''{filters}{}",
            if nd == 0 {
                String::new()
            } else {
                format!(
                    " GROUP BY {}",
                    (1..=nd)
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let (fa, fb) = (format_instant(q.start), format_instant(q.end));
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&fa, &fb];
        args.extend(q.filters.iter().map(|(_, v)| v as &dyn rusqlite::ToSql));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(args.as_slice())?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut keys = Vec::with_capacity(nd);
            for i in 0..nd {
                keys.push(r.get::<_, String>(i)?);
            }
            let n: i64 = r.get(nd)?;
            if n > 0 {
                out.push((keys, u64::try_from(n).unwrap_or(0)));
            }
        }
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

    fn last_invoice_seq(&self, pattern: &str) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM invoices WHERE pattern = ?1",
            [pattern],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn event_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
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
        let stmt_result = self.conn.prepare(sql);
        let mut stmt = stmt_result?;
        if !stmt.readonly() {
            return Err(LedgerError::Refused(
                "only read-only statements (SELECT, WITH ... SELECT, read-only PRAGMA) are allowed; the ledger is append-only".into(),
            ));
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
