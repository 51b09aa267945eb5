//! [`ClickHouseLedger`]: the ledger trait over ClickHouse.
//!
//! Reads:
//! - `events` is a `ReplacingMergeTree` keyed by `event_id`: every read of events that could
//!   see a row twice uses `FINAL` (or counts distinct values), so duplicates not yet merged
//!   never show;
//! - `rollups` is filled by a materialized view on insert and read with `sum()`, so unmerged
//!   parts add up to the same totals; a summary reads whole hours from it and the partial
//!   hours at either edge from `events`, exactly like the SQLite backend;
//! - instants travel as `DateTime64(6, 'UTC')` query parameters; results come back as
//!   `TabSeparated` text and are converted to the ledger's instant format.
//!
//! Writes ([`ClickHouseWriter`]): ClickHouse has no transactions, so the writer keeps
//! everything in memory and sends it on `commit` (a writer dropped without commit sends
//! nothing). Events already stored (or appended earlier in the same writer) are counted as
//! duplicates and not sent, so the rollups never count an event twice. Events go in
//! `Native` blocks of `batch_rows` ([`crate::native`]), each with an `insert_deduplication_token`, so a
//! retried batch that did land is not stored again.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_core::event::{push_json_str, write_instant};
use tollgate_core::money::{from_scaled_e12, to_scaled_e12};
use tollgate_core::{
    Attribution, CostBreakdown, Currency, Pricing, PricingStatus, Usage, UsageEvent,
};
use tollgate_ledger::{
    Annotation, AppendOutcome, AuditRow, BillImport, BillLineRecord, BudgetEntry, ClassTotals, Dim,
    ImportRecord, Ledger, LedgerError, LedgerWriter, PriceVersionRecord, Result, SqlTable,
    SqlValue, StoredInvoice, SummaryQuery, SummaryRow, Totals,
};

use crate::client::{ClickHouseConfig, Client, Request, quote};
use crate::schema::{self, Layout};

#[path = "ledger_books.rs"]
mod books;

/// The ClickHouse ledger.
pub struct ClickHouseLedger {
    client: Client,
    now: fn() -> Timestamp,
    /// Migrations still to apply before the first write ([`ClickHouseLedger::open_when_reachable`]
    /// found the server unreachable).
    migrate_first: bool,
}

type Params = Vec<(&'static str, String)>;

/// An instant as a `DateTime64(6, 'UTC')` parameter value: `2026-07-01 10:00:00.123456`.
pub fn ch_instant(t: Timestamp) -> String {
    let mut s = String::with_capacity(27);
    write_instant(&mut s, t);
    s.pop(); // the trailing Z
    s.replace_range(10..11, " ");
    s
}

/// A `DateTime64(6)` value as ClickHouse prints it, in the ledger's instant format.
fn ledger_instant(s: &str) -> String {
    let mut out = String::with_capacity(27);
    out.push_str(s);
    if out.len() > 10 && out.as_bytes()[10] == b' ' {
        out.replace_range(10..11, "T");
    }
    if out.len() == 19 {
        out.push_str(".000000");
    }
    out.push('Z');
    out
}

fn corrupt(what: &str, v: &str) -> LedgerError {
    LedgerError::Corrupt(format!("bad stored {what} {v:?}"))
}

fn parse_ts(s: &str) -> Result<Timestamp> {
    ledger_instant(s).parse().map_err(|_| corrupt("instant", s))
}

/// Ids for rows of the side tables (imports, bills, annotations, budgets): microseconds since
/// the epoch times 1000, kept increasing within the process, so "latest" is "largest id".
fn next_id() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Timestamp::now().as_microsecond().saturating_mul(1000);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// One TSV row: fields by index.
struct Row(Vec<Option<String>>);

impl Row {
    fn opt(&self, i: usize) -> Option<String> {
        self.0.get(i).cloned().flatten()
    }
    fn s(&self, i: usize) -> Result<String> {
        self.opt(i)
            .ok_or_else(|| LedgerError::Corrupt(format!("column {i} is unexpectedly empty")))
    }
    fn str(&self, i: usize) -> &str {
        self.0.get(i).and_then(|v| v.as_deref()).unwrap_or("")
    }
    fn u64(&self, i: usize) -> Result<u64> {
        let v = self.str(i);
        v.parse().map_err(|_| corrupt("count", v))
    }
    fn opt_u64(&self, i: usize) -> Result<Option<u64>> {
        match self.0.get(i).and_then(|v| v.as_deref()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| corrupt("count", v)),
        }
    }
    fn i128(&self, i: usize) -> Result<i128> {
        let v = self.str(i);
        v.parse().map_err(|_| corrupt("total", v))
    }
}

fn json_map(s: &str, what: &str) -> Result<Vec<(String, String)>> {
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(s).map_err(|_| corrupt(what, s))?;
    Ok(v.into_iter()
        .map(|(k, v)| {
            let t = match v {
                serde_json::Value::String(t) => t,
                other => other.to_string(),
            };
            (k, t)
        })
        .collect())
}

fn json_decimals(s: &str, what: &str) -> Result<Vec<(String, Decimal)>> {
    json_map(s, what)?
        .into_iter()
        .map(|(k, v)| {
            Decimal::from_str_exact(&v)
                .map(|d| (k, d))
                .map_err(|_| corrupt(what, s))
        })
        .collect()
}

/// The columns read back into a [`UsageEvent`], in [`row_to_event`] order.
const SELECT_EVENT: &str = "SELECT event_id, request_id, attempt, parent_request_id,
    toString(occurred_at), toString(completed_at), trace_id, span_id, session_id, team_id,
    cost_center, service, feature, environment, tenant_id, user_id, api_key_id, region,
    toJSONString(tags), attribution_status, provider, model_requested, model, operation,
    service_tier, status, http_status, streamed, latency_ms, ttft_ms, input_tokens,
    cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
    reasoning_tokens, toJSONString(units), currency, cost, cost_input_e12, cost_cache_read_e12,
    cost_cache_write_e12, cost_cache_write_1h_e12, cost_output_e12, toJSONString(cost_units),
    price_version, pricing_status FROM events FINAL";

fn row_to_event(r: &Row) -> Result<UsageEvent> {
    let g = |i: usize| r.opt(i);
    let parse_vocab =
        |i: usize, what: &str| -> Result<String> { r.opt(i).ok_or_else(|| corrupt(what, "NULL")) };
    let tags = json_map(r.str(18), "tags")?.into_iter().collect();
    let units = json_decimals(r.str(36), "units")?.into_iter().collect();
    let class = |i: usize| -> Result<Decimal> {
        let v: i128 = match r.0.get(i).and_then(|v| v.as_deref()) {
            None => 0,
            Some(v) => v.parse().map_err(|_| corrupt("cost", v))?,
        };
        Ok(from_scaled_e12(v)?.normalize())
    };
    let cb = CostBreakdown {
        input: class(39)?,
        cache_read: class(40)?,
        cache_write: class(41)?,
        cache_write_1h: class(42)?,
        output: class(43)?,
        units: json_decimals(r.str(44), "cost_units")?
            .into_iter()
            .collect(),
    };
    let env = match g(13) {
        Some(s) => Some(s.parse().map_err(|_| corrupt("environment", &s))?),
        None => None,
    };
    let cost = match g(38) {
        Some(c) => Some(Decimal::from_str_exact(&c).map_err(|_| corrupt("cost", &c))?),
        None => None,
    };
    let cur = r.s(37)?;
    let attempt = r.str(2);
    let http = match g(26) {
        Some(h) => Some(h.parse::<u16>().map_err(|_| corrupt("http_status", &h))?),
        None => None,
    };
    Ok(UsageEvent {
        event_id: r.s(0)?,
        request_id: g(1),
        attempt: attempt.parse().map_err(|_| corrupt("attempt", attempt))?,
        parent_request_id: g(3),
        occurred_at: parse_ts(r.str(4))?,
        completed_at: g(5).map(|s| parse_ts(&s)).transpose()?,
        trace_id: g(6),
        span_id: g(7),
        session_id: g(8),
        attribution: Attribution {
            team_id: g(9),
            cost_center: g(10),
            service: g(11),
            feature: g(12),
            environment: env,
            tenant_id: g(14),
            user_id: g(15),
            api_key_id: g(16),
            region: g(17),
            tags,
        },
        attribution_status: {
            let s = parse_vocab(19, "attribution_status")?;
            s.parse().map_err(|_| corrupt("attribution_status", &s))?
        },
        provider: r.s(20)?,
        model_requested: g(21),
        model: r.s(22)?,
        operation: {
            let s = parse_vocab(23, "operation")?;
            s.parse().map_err(|_| corrupt("operation", &s))?
        },
        service_tier: g(24),
        status: {
            let s = parse_vocab(25, "status")?;
            s.parse().map_err(|_| corrupt("status", &s))?
        },
        http_status: http,
        streamed: r.str(27) == "true",
        latency_ms: r.opt_u64(28)?,
        ttft_ms: r.opt_u64(29)?,
        usage: Usage {
            input_tokens: r.u64(30)?,
            cache_read_tokens: r.u64(31)?,
            cache_write_tokens: r.u64(32)?,
            cache_write_1h_tokens: r.u64(33)?,
            output_tokens: r.u64(34)?,
            reasoning_tokens: r.u64(35)?,
            units,
        },
        pricing: Pricing {
            currency: Currency::parse(&cur).map_err(|_| corrupt("currency", &cur))?,
            cost,
            cost_breakdown: cb,
            price_version: g(45),
            pricing_status: {
                let s = parse_vocab(46, "pricing_status")?;
                s.parse::<PricingStatus>()
                    .map_err(|_| corrupt("pricing_status", &s))?
            },
        },
    })
}

/// `ifNull(col, ''), ` for each grouping dimension.
fn group_select(dims: &[Dim]) -> String {
    dims.iter()
        .map(|d| format!("ifNull({}, ''), ", d.column()))
        .collect()
}

/// ` AND ...` for each filter on `events`, binding `{f0:String}`, ... into `params`.
fn event_filters(filters: &[(Dim, String)], params: &mut Params) -> String {
    const NAMES: [&str; 12] = [
        "f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10", "f11",
    ];
    let mut sql = String::new();
    for (i, (d, v)) in filters.iter().enumerate() {
        let name = NAMES.get(i).copied().unwrap_or("f11");
        if v.is_empty() {
            let _ = write!(sql, " AND ifNull({}, '') = {{{name}:String}}", d.column());
        } else {
            let _ = write!(sql, " AND {} = {{{name}:String}}", d.column());
        }
        params.push((name, v.clone()));
    }
    sql
}

fn group_by(nd: usize) -> String {
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
}

const TOTALS_EVENTS: &str = "count(), sum(input_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cache_write_1h_tokens), sum(output_tokens), sum(reasoning_tokens), sum(toInt128(ifNull(cost_e12, 0)))";

fn read_totals(r: &Row, at: usize) -> Result<Totals> {
    Ok(Totals {
        requests: r.u64(at)?,
        input_tokens: r.u64(at + 1)?,
        cache_read_tokens: r.u64(at + 2)?,
        cache_write_tokens: r.u64(at + 3)?,
        cache_write_1h_tokens: r.u64(at + 4)?,
        output_tokens: r.u64(at + 5)?,
        reasoning_tokens: r.u64(at + 6)?,
        cost_e12: r.i128(at + 7)?,
    })
}

fn read_keys(r: &Row, nd: usize) -> Vec<String> {
    (0..nd).map(|i| r.str(i).to_string()).collect()
}

impl ClickHouseLedger {
    /// Connects and applies pending migrations (creating the database if needed), as the
    /// SQLite backend does when opened for writing.
    pub fn open(cfg: ClickHouseConfig) -> Result<ClickHouseLedger> {
        let l = ClickHouseLedger::connect(cfg);
        l.migrate()?;
        Ok(l)
    }

    /// Opens the ledger for a writer that must not wait for the server (the gateway's spool):
    /// when the server answers `/ping`, as [`ClickHouseLedger::open`]; when it cannot be
    /// reached (or answers a transient error), returns at once, and the pending migrations
    /// are applied by the first [`Ledger::writer`] call that reaches it (each call until
    /// then fails after one probe of `/ping`, within 5 s). Errors that will not
    /// fix themselves (authentication, a newer schema) still fail here once it is reachable.
    pub fn open_when_reachable(cfg: ClickHouseConfig) -> Result<ClickHouseLedger> {
        let mut l = ClickHouseLedger::connect(cfg);
        match l.client.ping() {
            Err(f) if f.retryable() => {
                l.migrate_first = true;
                Ok(l)
            }
            _ => {
                l.migrate()?;
                Ok(l)
            }
        }
    }

    /// Connects to an existing ledger for reading: refuses a missing or newer schema.
    pub fn open_read_only(cfg: ClickHouseConfig) -> Result<ClickHouseLedger> {
        let l = ClickHouseLedger::connect(cfg);
        let found = l.applied_version()?;
        if found == 0 {
            return Err(LedgerError::Open {
                path: format!(
                    "{} database {}",
                    l.client.config().url,
                    l.client.config().database
                ),
                message: "no ledger here; run `tollgate ledger migrate` or ingest events first"
                    .into(),
            });
        }
        if found > schema::schema_version() {
            return Err(LedgerError::SchemaTooNew {
                found,
                known: schema::schema_version(),
            });
        }
        Ok(l)
    }

    /// A client without any schema check (for `migrate` and `schema`).
    pub fn connect(cfg: ClickHouseConfig) -> ClickHouseLedger {
        ClickHouseLedger {
            client: Client::new(cfg),
            now: Timestamp::now,
            migrate_first: false,
        }
    }

    /// Replaces the clock used for `ingested_at` / `recorded_at` (tests).
    pub fn with_clock(mut self, now: fn() -> Timestamp) -> Self {
        self.now = now;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The highest applied migration (0: none, or no database yet).
    pub fn applied_version(&self) -> Result<i64> {
        let db = &self.client.config().database;
        let rows = self.client.rows(
            &Request::new(
                "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'schema_migrations'",
            )
            .params(&[("db", db.clone())])
            .no_database(),
        )?;
        if rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .flatten()
            .as_deref()
            != Some("1")
        {
            return Ok(0);
        }
        let rows = self
            .client
            .rows(&Request::new("SELECT max(version) FROM schema_migrations"))?;
        let v = rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .flatten()
            .unwrap_or_default();
        v.parse().map_err(|_| corrupt("schema version", &v))
    }

    /// Applies the pending migrations; returns the versions applied.
    pub fn migrate(&self) -> Result<Vec<i64>> {
        let cfg = self.client.config();
        let db = cfg.database.clone();
        if !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || db.is_empty() {
            return Err(LedgerError::Open {
                path: cfg.url.clone(),
                message: format!(
                    "database name {db:?}: use letters, digits and underscores ([ledger] database)"
                ),
            });
        }
        let layout = Layout::Single;
        let current = self.applied_version()?;
        if current > schema::schema_version() {
            return Err(LedgerError::SchemaTooNew {
                found: current,
                known: schema::schema_version(),
            });
        }
        if current == 0 {
            self.client
                .run(&Request::new(&schema::create_database(&db, &layout)).no_database())?;
            for s in schema::migrations_table(&db, &layout) {
                self.client.run(&Request::new(&s))?;
            }
        }
        let mut applied = Vec::new();
        for (version, description, stmts) in schema::MIGRATIONS {
            if *version <= current {
                continue;
            }
            for st in *stmts {
                for sql in schema::render(&db, &layout, st) {
                    self.client.run(&Request::new(&sql))?;
                }
            }
            let row = format!(
                "{{\"version\":{version},\"description\":{},\"applied_at\":\"{}\"}}\n",
                json_string(description),
                ch_instant((self.now)())
            );
            self.client.run(
                &Request::new("INSERT INTO schema_migrations FORMAT JSONEachRow")
                    .data(row.as_bytes()),
            )?;
            applied.push(*version);
        }
        Ok(applied)
    }

    fn rows(&self, sql: &str, params: &[(&str, String)]) -> Result<Vec<Row>> {
        Ok(self
            .client
            .rows(&Request::new(sql).params(params))?
            .into_iter()
            .map(Row)
            .collect())
    }

    fn grouped(
        &self,
        sql: &str,
        params: &[(&str, String)],
        nd: usize,
        acc: &mut HashMap<Vec<String>, Totals>,
    ) -> Result<()> {
        for r in self.rows(sql, params)? {
            let t = read_totals(&r, nd)?;
            acc.entry(read_keys(&r, nd)).or_default().add(&t);
        }
        Ok(())
    }

    /// Event ids among `ids` that are stored already.
    fn stored_ids(&self, ids: &[&str]) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        if ids.is_empty() {
            return Ok(out);
        }
        // The ids are inlined (query parameters ride in the URL, too short for a batch), so
        // the request raises the parser's max_query_size for this one query.
        let settings: Params = vec![("max_query_size", "67108864".into())];
        for chunk in ids.chunks(100_000) {
            let lo = chunk.iter().min().copied().unwrap_or("");
            let hi = chunk.iter().max().copied().unwrap_or("");
            let range: Params = vec![("lo", lo.to_string()), ("hi", hi.to_string())];
            // First, how many stored ids fall in the chunk's range: a read of that range of
            // the primary key (`ORDER BY event_id`). Usually none does: gateway ids are UUIDv7
            // (time-ordered), so new traffic sorts after everything stored, and batches of
            // concurrent writers cover ranges of their own.
            let counted = self.client.rows(
                &Request::new(
                    "SELECT count() FROM events WHERE event_id >= {lo:String} AND event_id <= {hi:String}",
                )
                .params(&range),
            )?;
            let in_range: u64 = counted
                .first()
                .and_then(|r| r.first())
                .cloned()
                .flatten()
                .unwrap_or_default()
                .parse()
                .map_err(|_| corrupt("count", "of stored ids"))?;
            if in_range == 0 {
                continue;
            }
            // A range that holds about as many stored ids as the chunk (a replayed spool,
            // writers whose batches overlap in time): read those ids and intersect here, which
            // costs the server a range read instead of parsing the chunk's ids.
            if in_range <= 2 * chunk.len() as u64 {
                let wanted: HashSet<&str> = chunk.iter().copied().collect();
                let body = self.client.run(
                    &Request::new(
                        "SELECT event_id FROM events WHERE event_id >= {lo:String} AND event_id <= {hi:String}",
                    )
                    .params(&range),
                )?;
                for_each_tsv_row(&body, &mut |r| {
                    if let Some(Some(id)) = r.into_iter().next()
                        && wanted.contains(id.as_str())
                    {
                        out.insert(id);
                    }
                    Ok(())
                })?;
                continue;
            }
            // One string literal holding the ids as TabSeparated rows, read by the format()
            // table function: far cheaper to parse than a literal per id.
            let mut sql = String::with_capacity(chunk.len() * 40 + 160);
            sql.push_str(
                "SELECT event_id FROM events WHERE event_id IN (SELECT id FROM format(TabSeparated, 'id String', ",
            );
            let mut rows = String::with_capacity(chunk.len() * 38);
            for id in chunk {
                push_tsv_str(&mut rows, id);
                rows.push('\n');
            }
            sql.push_str(&quote(&rows));
            // The batch's id range too, which the primary key (`ORDER BY event_id`) prunes by
            // directly: gateway ids are UUIDv7, so a batch spans few granules.
            sql.push_str(&format!(
                ")) AND event_id >= {} AND event_id <= {} GROUP BY event_id",
                quote(lo),
                quote(hi)
            ));
            for r in self.client.rows(&Request::new(&sql).settings(&settings))? {
                if let Some(Some(id)) = r.into_iter().next() {
                    out.insert(id);
                }
            }
        }
        Ok(out)
    }
}

fn json_string(s: &str) -> String {
    let mut o = String::new();
    push_json_str(&mut o, s);
    o
}

fn range_params(a: Timestamp, b: Timestamp) -> Params {
    vec![("a", ch_instant(a)), ("b", ch_instant(b))]
}

const RANGE: &str =
    "occurred_at >= {a:DateTime64(6, 'UTC')} AND occurred_at < {b:DateTime64(6, 'UTC')}";

impl Ledger for ClickHouseLedger {
    fn writer(&mut self) -> Result<Box<dyn LedgerWriter + '_>> {
        if self.migrate_first {
            // Still unreachable: say so after one probe (at most 5 s), not after the full
            // retries of every migration statement.
            if let Err(f) = self.client.ping() {
                return Err(self.client.error(f, 1));
            }
            self.migrate()?;
            self.migrate_first = false;
        }
        Ok(Box::new(ClickHouseWriter::new(self)))
    }

    fn refdata(&self, as_of: Option<i64>) -> Result<Vec<tollgate_ledger::RefDataRecord>> {
        self.books_refdata(as_of)
    }

    fn refdata_history(
        &self,
        kind: Option<&str>,
        key: Option<&str>,
    ) -> Result<Vec<tollgate_ledger::RefDataRecord>> {
        self.books_refdata_history(kind, key)
    }

    fn bill_lines_in_force(
        &self,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<tollgate_ledger::StoredBillLine>> {
        self.books_bill_lines_in_force(start, end)
    }

    fn bill_lines_in_force_merged(
        &self,
        start: Timestamp,
        end: Timestamp,
        day_tz: &jiff::tz::TimeZone,
    ) -> Result<Vec<tollgate_ledger::StoredBillLine>> {
        self.books_bill_lines_in_force_merged(start, end, day_tz)
    }

    fn usage_by_key(
        &self,
        start: Timestamp,
        end: Timestamp,
        minute: bool,
    ) -> Result<Vec<tollgate_ledger::KeyUsage>> {
        self.books_usage_by_key(start, end, minute)
    }

    fn period_actions(
        &self,
        period: Option<&str>,
    ) -> Result<Vec<tollgate_ledger::PeriodActionRecord>> {
        self.books_period_actions(period)
    }

    fn adjustments(&self, period: Option<&str>) -> Result<Vec<tollgate_ledger::AdjustmentRecord>> {
        self.books_adjustments(period)
    }

    fn usage_ingested_after(
        &self,
        start: Timestamp,
        end: Timestamp,
        after: &str,
    ) -> Result<Vec<tollgate_ledger::TeamUsage>> {
        self.books_usage_ingested_after(start, end, after)
    }

    fn summarize(&self, q: &SummaryQuery) -> Result<Vec<SummaryRow>> {
        let mut acc: HashMap<Vec<String>, Totals> = HashMap::new();
        let nd = q.group_by.len();
        if q.end > q.start {
            let sel = group_select(&q.group_by);
            let mut fparams = Params::new();
            let where_events = event_filters(&q.filters, &mut fparams);
            let where_rollups: String = q
                .filters
                .iter()
                .zip(&fparams)
                .map(|((d, _), (name, _))| format!(" AND {} = {{{name}:String}}", d.column()))
                .collect();
            let events_sql = format!(
                "SELECT {sel}{TOTALS_EVENTS} FROM events FINAL WHERE {RANGE}{where_events}{}",
                if nd == 0 {
                    " HAVING count() > 0".to_string()
                } else {
                    group_by(nd)
                }
            );
            let read_events = |a: Timestamp,
                               b: Timestamp,
                               acc: &mut HashMap<Vec<String>, Totals>|
             -> Result<()> {
                let mut p = range_params(a, b);
                p.extend(fparams.iter().cloned());
                self.grouped(&events_sql, &p, nd, acc)
            };
            let s0 = q.start.as_second();
            let on_hour = s0.rem_euclid(3600) == 0 && q.start.subsec_nanosecond() == 0;
            let h0 = s0.div_euclid(3600) * 3600 + if on_hour { 0 } else { 3600 };
            let h1 = q.end.as_second().div_euclid(3600) * 3600;
            if h0 < h1 {
                let sql = format!(
                    "SELECT {sel}sum(requests), sum(input_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cache_write_1h_tokens), sum(output_tokens), sum(reasoning_tokens), sum(cost_e12) FROM rollups WHERE hour >= toDateTime({{h0:Int64}}, 'UTC') AND hour < toDateTime({{h1:Int64}}, 'UTC'){where_rollups}{}",
                    if nd == 0 {
                        " HAVING sum(requests) > 0".to_string()
                    } else {
                        group_by(nd)
                    }
                );
                let mut p: Params = vec![("h0", h0.to_string()), ("h1", h1.to_string())];
                p.extend(fparams.iter().cloned());
                self.grouped(&sql, &p, nd, &mut acc)?;
                let t = |secs: i64| {
                    Timestamp::from_second(secs).map_err(|e| LedgerError::Corrupt(e.to_string()))
                };
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

    fn event_count(&self) -> Result<u64> {
        let r = self.rows("SELECT count() FROM events FINAL", &[])?;
        r.first().map_or(Ok(0), |r| r.u64(0))
    }

    fn get_event(&self, event_id: &str) -> Result<Option<UsageEvent>> {
        let rows = self.rows(
            &format!("{SELECT_EVENT} WHERE event_id = {{id:String}}"),
            &[("id", event_id.to_ascii_lowercase())],
        )?;
        rows.first().map(row_to_event).transpose()
    }

    fn scan_events(
        &self,
        start: Timestamp,
        end: Timestamp,
        f: &mut dyn FnMut(UsageEvent) -> Result<()>,
    ) -> Result<()> {
        if end <= start {
            return Ok(());
        }
        let body = self.client.run(
            &Request::new(&format!(
                "{SELECT_EVENT} WHERE {RANGE} ORDER BY occurred_at, seq, event_id"
            ))
            .params(&range_params(start, end)),
        )?;
        for_each_tsv_row(&body, &mut |r| f(row_to_event(&Row(r))?))
    }

    fn scan_events_ingested(
        &self,
        start: Timestamp,
        end: Timestamp,
        f: &mut dyn FnMut(UsageEvent, &str) -> Result<()>,
    ) -> Result<()> {
        if end <= start {
            return Ok(());
        }
        // SELECT_EVENT's columns, then ingested_at (row_to_event reads by index).
        let select = SELECT_EVENT.replacen(
            " FROM events FINAL",
            ", toString(ingested_at) FROM events FINAL",
            1,
        );
        let body = self.client.run(
            &Request::new(&format!(
                "{select} WHERE {RANGE} ORDER BY occurred_at, seq, event_id"
            ))
            .params(&range_params(start, end)),
        )?;
        for_each_tsv_row(&body, &mut |r| {
            let r = Row(r);
            let at = ledger_instant(r.str(47));
            f(row_to_event(&r)?, &at)
        })
    }

    fn price_versions(&self, ids: &[String]) -> Result<Vec<PriceVersionRecord>> {
        let mut out = Vec::new();
        for id in ids {
            let rows = self.rows(
                "SELECT version, provider, model, effective_from, effective_to, rate_json
                 FROM price_versions FINAL WHERE version = {v:String}",
                &[("v", id.clone())],
            )?;
            for r in rows {
                out.push(PriceVersionRecord {
                    version: r.s(0)?,
                    provider: r.s(1)?,
                    model: r.s(2)?,
                    effective_from: r.opt(3),
                    effective_to: r.opt(4),
                    rate_json: r.s(5)?,
                });
            }
        }
        Ok(out)
    }

    fn query_sql(&self, sql: &str) -> Result<SqlTable> {
        // readonly = 2: only reads, while the output settings below may still be set.
        let settings = [
            ("readonly", "2".to_string()),
            ("default_format", "JSONCompact".to_string()),
            ("output_format_json_quote_64bit_integers", "1".to_string()),
            ("output_format_json_quote_decimals", "1".to_string()),
        ];
        let body = self.client.run(&Request::new(sql).settings(&settings))?;
        json_compact_table(&body)
    }

    fn distinct_sessions(&self, q: &SummaryQuery) -> Result<Vec<(Vec<String>, u64)>> {
        let nd = q.group_by.len();
        let sel = group_select(&q.group_by);
        let mut p = range_params(q.start, q.end);
        let filters = event_filters(&q.filters, &mut p);
        // Distinct values: an unmerged duplicate cannot count twice, no FINAL needed.
        let sql = format!(
            "SELECT {sel}uniqExact(session_id) FROM events WHERE {RANGE} AND session_id IS NOT NULL AND session_id != ''{filters}{}",
            group_by(nd)
        );
        let mut out = Vec::new();
        for r in self.rows(&sql, &p)? {
            let n = r.u64(nd)?;
            if n > 0 {
                out.push((read_keys(&r, nd), n));
            }
        }
        out.sort();
        Ok(out)
    }

    fn invoices_for(&self, tenant_id: &str, period: &str) -> Result<Vec<StoredInvoice>> {
        let rows = self.rows(
            "SELECT number, kind, tenant_id, period, pattern, seq, revision, currency, total,
                    document, corrects, reason
             FROM invoices FINAL WHERE tenant_id = {t:String} AND period = {p:String} ORDER BY id",
            &[("t", tenant_id.to_string()), ("p", period.to_string())],
        )?;
        rows.iter()
            .map(|r| {
                Ok(StoredInvoice {
                    number: r.s(0)?,
                    kind: r.s(1)?,
                    tenant_id: r.s(2)?,
                    period: r.s(3)?,
                    pattern: r.s(4)?,
                    seq: r.u64(5)?,
                    revision: r.u64(6)?,
                    currency: r.s(7)?,
                    total: r.s(8)?,
                    document: r.s(9)?,
                    corrects: r.opt(10),
                    reason: r.opt(11),
                })
            })
            .collect()
    }

    fn last_invoice_seq(&self, pattern: &str) -> Result<u64> {
        let r = self.rows(
            "SELECT max(seq) FROM invoices FINAL WHERE pattern = {p:String}",
            &[("p", pattern.to_string())],
        )?;
        r.first().map_or(Ok(0), |r| r.u64(0))
    }

    fn annotations(&self, start: Timestamp, end: Timestamp) -> Result<Vec<Annotation>> {
        let rows = self.rows(
            "SELECT toString(at), note, service FROM annotations FINAL
             WHERE at >= {a:DateTime64(6, 'UTC')} AND at < {b:DateTime64(6, 'UTC')} ORDER BY at, id",
            &range_params(start, end),
        )?;
        rows.iter()
            .map(|r| {
                Ok(Annotation {
                    at: ledger_instant(r.str(0)),
                    note: r.s(1)?,
                    service: r.opt(2),
                })
            })
            .collect()
    }

    fn budgets(&self, period: &str) -> Result<Vec<BudgetEntry>> {
        let rows = self.rows(
            "SELECT team_id, period, argMax(limit_amount, id), argMax(currency, id),
                    argMax(owner, id), argMax(comment, id)
             FROM budgets FINAL WHERE period = {p:String} GROUP BY team_id, period ORDER BY team_id",
            &[("p", period.to_string())],
        )?;
        rows.iter()
            .map(|r| {
                Ok(BudgetEntry {
                    team_id: r.s(0)?,
                    period: r.s(1)?,
                    limit: r.s(2)?,
                    currency: r.s(3)?,
                    owner: r.opt(4),
                    comment: r.opt(5),
                })
            })
            .collect()
    }

    fn spend_by_user(&self, start: Timestamp, end: Timestamp) -> Result<Vec<(String, Totals)>> {
        let mut acc: HashMap<Vec<String>, Totals> = HashMap::new();
        self.grouped(
            &format!(
                "SELECT ifNull(user_id, ''), {TOTALS_EVENTS} FROM events FINAL WHERE {RANGE} GROUP BY 1"
            ),
            &range_params(start, end),
            1,
            &mut acc,
        )?;
        let mut out: Vec<(String, Totals)> =
            acc.into_iter().map(|(mut k, t)| (k.remove(0), t)).collect();
        out.sort_by(|a, b| b.1.cost_e12.cmp(&a.1.cost_e12).then(a.0.cmp(&b.0)));
        Ok(out)
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
        let mut p = range_params(start, end);
        let tf = match tenant {
            Some(t) => {
                p.push(("t", t.to_string()));
                " AND tenant_id = {t:String}"
            }
            None => "",
        };
        let sql = format!(
            "SELECT toString(occurred_at), event_id, request_id, tenant_id, user_id, team_id,
                service, feature, environment, provider, model, status, http_status, latency_ms,
                input_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                output_tokens, reasoning_tokens, currency, cost, price_version, pricing_status,
                attribution_status
             FROM events FINAL WHERE {RANGE}{tf} ORDER BY occurred_at, seq, event_id"
        );
        let body = self.client.run(&Request::new(&sql).params(&p))?;
        for_each_tsv_row(&body, &mut |r| {
            let t = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("").as_bytes();
            let row = Row(r.clone());
            let at = ledger_instant(row.str(0));
            let http = match row.opt_u64(12)? {
                Some(h) => {
                    Some(i64::try_from(h).map_err(|_| corrupt("http_status", &h.to_string()))?)
                }
                None => None,
            };
            f(&AuditRow {
                occurred_at: at.as_bytes(),
                event_id: t(1),
                request_id: t(2),
                tenant_id: t(3),
                user_id: t(4),
                team_id: t(5),
                service: t(6),
                feature: t(7),
                environment: t(8),
                provider: t(9),
                model: t(10),
                status: t(11),
                http_status: http,
                latency_ms: row.opt_u64(13)?,
                input_tokens: row.u64(14)?,
                cache_read_tokens: row.u64(15)?,
                cache_write_tokens: row.u64(16)?,
                cache_write_1h_tokens: row.u64(17)?,
                output_tokens: row.u64(18)?,
                reasoning_tokens: row.u64(19)?,
                currency: t(20),
                cost: t(21),
                price_version: t(22),
                pricing_status: t(23),
                attribution_status: t(24),
            })
        })
    }

    fn class_costs(&self, q: &SummaryQuery) -> Result<Vec<ClassTotals>> {
        if q.end <= q.start {
            return Ok(Vec::new());
        }
        let nd = q.group_by.len();
        let sel = group_select(&q.group_by);
        let mut p = range_params(q.start, q.end);
        let filters = event_filters(&q.filters, &mut p);
        let sql = format!(
            "SELECT {sel}{TOTALS_EVENTS},
                sum(toInt128(ifNull(cost_input_e12, 0))), sum(toInt128(ifNull(cost_cache_read_e12, 0))),
                sum(toInt128(ifNull(cost_cache_write_e12, 0))), sum(toInt128(ifNull(cost_cache_write_1h_e12, 0))),
                sum(toInt128(ifNull(cost_output_e12, 0))),
                countIf(length(units) > 0 OR length(cost_units) > 0)
             FROM events FINAL WHERE {RANGE}{filters}{}",
            if nd == 0 {
                " HAVING count() > 0".to_string()
            } else {
                group_by(nd)
            }
        );
        let mut acc: HashMap<Vec<String>, ClassTotals> = HashMap::new();
        let mut with_units = false;
        for r in self.rows(&sql, &p)? {
            let keys = read_keys(&r, nd);
            let t = read_totals(&r, nd)?;
            with_units |= r.u64(nd + 13)? > 0;
            let e = acc.entry(keys.clone()).or_insert_with(|| ClassTotals {
                keys,
                totals: Totals::default(),
                token_cost_e12: [0; 5],
                units: Default::default(),
            });
            e.totals.add(&t);
            for (c, slot) in e.token_cost_e12.iter_mut().enumerate() {
                *slot += r.i128(nd + 8 + c)?;
            }
        }
        if with_units {
            let sql = format!(
                "SELECT {sel}toJSONString(units), toJSONString(cost_units) FROM events FINAL
                 WHERE {RANGE}{filters} AND (length(units) > 0 OR length(cost_units) > 0)"
            );
            let overflow = || LedgerError::Corrupt("unit totals overflow".into());
            for r in self.rows(&sql, &p)? {
                let keys = read_keys(&r, nd);
                let Some(e) = acc.get_mut(&keys) else {
                    return Err(LedgerError::Corrupt(
                        "events changed during a class-cost query".into(),
                    ));
                };
                for (k, v) in json_decimals(r.str(nd), "units")? {
                    let u = e.units.entry(k).or_default();
                    let q = u.quantity.unwrap_or_default();
                    u.quantity = Some(q.checked_add(v).ok_or_else(overflow)?);
                }
                for (k, v) in json_decimals(r.str(nd + 1), "cost_units")? {
                    let u = e.units.entry(k).or_default();
                    let c = u.cost.unwrap_or_default();
                    u.cost = Some(c.checked_add(v).ok_or_else(overflow)?);
                }
            }
        }
        let mut out: Vec<ClassTotals> = acc.into_values().collect();
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
}

/// Calls `f` with each row of a `TabSeparated` body.
fn for_each_tsv_row(
    body: &[u8],
    f: &mut dyn FnMut(Vec<Option<String>>) -> Result<()>,
) -> Result<()> {
    let text = std::str::from_utf8(body)
        .map_err(|_| LedgerError::Corrupt("ClickHouse answered with invalid UTF-8".into()))?;
    for line in text.split_terminator('\n') {
        f(line.split('\t').map(crate::client::unescape_tsv).collect())?;
    }
    Ok(())
}

/// A `JSONCompact` answer as a [`SqlTable`]: integer types become integers (64-bit ones come
/// quoted and are parsed exactly), floats stay text as printed, `Decimal` stays exact text.
fn json_compact_table(body: &[u8]) -> Result<SqlTable> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        LedgerError::Refused(
            "the query's answer is not JSONCompact; leave out the FORMAT clause".into(),
        )
    })?;
    let meta = v["meta"].as_array().cloned().unwrap_or_default();
    let columns: Vec<String> = meta
        .iter()
        .map(|m| m["name"].as_str().unwrap_or("").to_string())
        .collect();
    let kinds: Vec<String> = meta
        .iter()
        .map(|m| {
            let mut t = m["type"].as_str().unwrap_or("").to_string();
            for w in ["Nullable(", "LowCardinality("] {
                while let Some(rest) = t.strip_prefix(w) {
                    t = rest.strip_suffix(')').unwrap_or(rest).to_string();
                }
            }
            t
        })
        .collect();
    let mut rows = Vec::new();
    for row in v["data"].as_array().cloned().unwrap_or_default() {
        let cells = row.as_array().cloned().unwrap_or_default();
        let mut out = Vec::with_capacity(cells.len());
        for (i, c) in cells.into_iter().enumerate() {
            let kind = kinds.get(i).map_or("", String::as_str);
            let int = kind.starts_with("Int") || kind.starts_with("UInt") || kind == "Bool";
            out.push(match c {
                serde_json::Value::Null => SqlValue::Null,
                serde_json::Value::Bool(b) => SqlValue::Integer(i64::from(b)),
                serde_json::Value::Number(n) if int && n.as_i64().is_some() => {
                    SqlValue::Integer(n.as_i64().unwrap_or_default())
                }
                serde_json::Value::Number(n) if kind.starts_with("Float") => {
                    SqlValue::Real(n.to_string())
                }
                serde_json::Value::Number(n) => SqlValue::Text(n.to_string()),
                serde_json::Value::String(s) if int => match s.parse::<i64>() {
                    Ok(i) => SqlValue::Integer(i),
                    Err(_) => SqlValue::Text(s),
                },
                serde_json::Value::String(s) => SqlValue::Text(s),
                other => SqlValue::Text(other.to_string()),
            });
        }
        rows.push(out);
    }
    Ok(SqlTable { columns, rows })
}

fn push_opt(out: &mut String, key: &str, v: Option<&str>) {
    push_json_str(out, key);
    out.push(':');
    match v {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
    out.push(',');
}

fn push_num(out: &mut String, key: &str, v: Option<i128>) {
    push_json_str(out, key);
    out.push(':');
    match v {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push_str("null"),
    }
    out.push(',');
}

/// A string as a `TabSeparated` field.
fn push_tsv_str(out: &mut String, s: &str) {
    if !s.contains(['\\', '\t', '\n', '\r']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The writer: buffers everything, sends on commit.
pub struct ClickHouseWriter<'l> {
    ledger: &'l ClickHouseLedger,
    now: String,
    /// Seconds of the writer's start in the high 32 bits, a running counter below: insertion
    /// order for ties on `occurred_at` (as `seq` in the SQLite backend).
    seq: u64,
    /// A token unique to this writer, the stem of each batch's deduplication token.
    token: String,
    now_ts: Timestamp,
    /// Events in `Native` blocks of at most `batch_rows`.
    batches: Vec<crate::native::EventBlock>,
    ids: HashSet<String>,
    price_versions: String,
    side: Vec<(&'static str, String)>,
    invoices: Vec<StoredInvoice>,
}

impl<'l> ClickHouseWriter<'l> {
    fn new(ledger: &'l ClickHouseLedger) -> ClickHouseWriter<'l> {
        let now = (ledger.now)();
        let secs = u64::try_from(Timestamp::now().as_second()).unwrap_or(0);
        ClickHouseWriter {
            ledger,
            now: ch_instant(now),
            seq: secs << 32,
            token: format!("tollgate-{}-{}", std::process::id(), next_id()),
            now_ts: now,
            batches: Vec::new(),
            ids: HashSet::new(),
            price_versions: String::new(),
            side: Vec::new(),
            invoices: Vec::new(),
        }
    }

    fn push_side(&mut self, table: &'static str, row: String) {
        match self.side.iter_mut().find(|(t, _)| *t == table) {
            Some((_, buf)) => buf.push_str(&row),
            None => self.side.push((table, row)),
        }
    }

    fn insert(&self, table: &str, rows: &str, token: Option<String>) -> Result<()> {
        self.insert_as(table, "JSONEachRow", rows.as_bytes(), token, &[])
    }

    fn insert_as(
        &self,
        table: &str,
        format: &str,
        rows: &[u8],
        token: Option<String>,
        extra: &[(&'static str, String)],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = format!("INSERT INTO {table} FORMAT {format}");
        let mut settings: Params = vec![("input_format_skip_unknown_fields", "0".into())];
        settings.extend(extra.iter().cloned());
        if let Some(t) = token {
            settings.push(("insert_deduplication_token", t));
            settings.push((
                "deduplicate_blocks_in_dependent_materialized_views",
                "1".into(),
            ));
        }
        self.ledger
            .client
            .run(&Request::new(&sql).settings(&settings).data(rows))?;
        Ok(())
    }
}

impl LedgerWriter for ClickHouseWriter<'_> {
    fn append(&mut self, events: &[UsageEvent]) -> Result<AppendOutcome> {
        let mut out = AppendOutcome::default();
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let stored = self.ledger.stored_ids(&ids)?;
        let batch_rows = self.ledger.client.config().batch_rows.max(1);
        for e in events {
            if stored.contains(&e.event_id) || self.ids.contains(&e.event_id) {
                out.duplicates += 1;
                continue;
            }
            if self
                .batches
                .last()
                .is_none_or(|b| b.rows() >= batch_rows as u64)
            {
                self.batches.push(crate::native::EventBlock::new());
            }
            let seq = self.seq;
            self.seq += 1;
            let now = self.now_ts;
            if let Some(b) = self.batches.last_mut() {
                b.push(e, now, seq)?;
            }
            self.ids.insert(e.event_id.clone());
            out.inserted += 1;
            if e.attribution_status == tollgate_core::AttributionStatus::Quarantined {
                out.quarantined += 1;
            }
            if e.pricing.cost.is_none() {
                out.unpriced += 1;
            }
        }
        Ok(out)
    }

    fn record_price_versions(&mut self, versions: &[PriceVersionRecord]) -> Result<()> {
        for v in versions {
            let mut r = String::from("{");
            push_opt(&mut r, "version", Some(&v.version));
            push_opt(&mut r, "provider", Some(&v.provider));
            push_opt(&mut r, "model", Some(&v.model));
            push_opt(&mut r, "effective_from", v.effective_from.as_deref());
            push_opt(&mut r, "effective_to", v.effective_to.as_deref());
            push_opt(&mut r, "rate_json", Some(&v.rate_json));
            push_json_str(&mut r, "recorded_at");
            r.push(':');
            push_json_str(&mut r, &self.now);
            r.push_str("}\n");
            self.price_versions.push_str(&r);
        }
        Ok(())
    }

    fn record_import(&mut self, rec: &ImportRecord) -> Result<()> {
        let mut r = String::from("{");
        push_num(&mut r, "id", Some(i128::from(next_id())));
        push_opt(&mut r, "source", Some(&rec.source));
        push_opt(&mut r, "imported_at", Some(&self.now));
        push_num(&mut r, "read", Some(i128::from(rec.read)));
        push_num(&mut r, "ingested", Some(i128::from(rec.ingested)));
        push_num(&mut r, "duplicates", Some(i128::from(rec.duplicates)));
        push_num(&mut r, "quarantined", Some(i128::from(rec.quarantined)));
        let _ = writeln!(r, "\"unpriced\":{}}}", rec.unpriced);
        self.push_side("imports", r);
        Ok(())
    }

    fn record_invoice(&mut self, inv: &StoredInvoice) -> Result<()> {
        // No unique constraints in ClickHouse: check the stored and the pending invoices.
        let clash = |o: &StoredInvoice| {
            o.number == inv.number
                || (o.tenant_id == inv.tenant_id
                    && o.period == inv.period
                    && o.kind == inv.kind
                    && o.revision == inv.revision)
        };
        let stored = self.ledger.rows(
            "SELECT count() FROM invoices FINAL WHERE number = {n:String}
             OR (tenant_id = {t:String} AND period = {p:String} AND kind = {k:String} AND revision = {r:UInt64})",
            &[
                ("n", inv.number.clone()),
                ("t", inv.tenant_id.clone()),
                ("p", inv.period.clone()),
                ("k", inv.kind.clone()),
                ("r", inv.revision.to_string()),
            ],
        )?;
        let n = stored.first().map_or(Ok(0), |r| r.u64(0))?;
        if n > 0 || self.invoices.iter().any(clash) {
            return Err(LedgerError::Refused(format!(
                "invoice {} (tenant {}, period {}, {} revision {}) is already finalized; finalized invoices are immutable: issue a credit note instead",
                inv.number, inv.tenant_id, inv.period, inv.kind, inv.revision
            )));
        }
        if inv.kind != "invoice" && inv.kind != "credit_note" {
            return Err(LedgerError::Refused(format!(
                "invoice kind {:?}: expected invoice or credit_note",
                inv.kind
            )));
        }
        self.invoices.push(inv.clone());
        Ok(())
    }

    fn record_bill(&mut self, imp: &BillImport, lines: &[BillLineRecord]) -> Result<i64> {
        let id = next_id();
        let mut r = String::from("{");
        push_num(&mut r, "id", Some(i128::from(id)));
        push_opt(&mut r, "bill_type", Some(&imp.bill_type));
        push_opt(&mut r, "provider", Some(&imp.provider));
        push_opt(&mut r, "source", Some(&imp.source));
        push_opt(&mut r, "month", Some(&imp.month));
        push_opt(&mut r, "period_start", Some(&imp.period_start));
        push_opt(&mut r, "period_end", Some(&imp.period_end));
        push_opt(&mut r, "currency", Some(&imp.currency));
        push_num(&mut r, "lines", Some(i128::from(imp.lines)));
        push_opt(&mut r, "cost", imp.cost.as_deref());
        push_json_str(&mut r, "imported_at");
        r.push(':');
        push_json_str(&mut r, &self.now);
        r.push_str("}\n");
        self.push_side("bill_imports", r);
        let mut buf = String::new();
        for l in lines {
            buf.push('{');
            push_num(&mut buf, "id", Some(i128::from(next_id())));
            push_num(&mut buf, "import_id", Some(i128::from(id)));
            push_opt(&mut buf, "provider", Some(&l.provider));
            push_opt(&mut buf, "line_kind", Some(&l.line_kind));
            push_opt(&mut buf, "period_start", Some(&l.period_start));
            push_opt(&mut buf, "period_end", Some(&l.period_end));
            push_opt(&mut buf, "model", l.model.as_deref());
            push_opt(&mut buf, "token_class", l.token_class.as_deref());
            push_num(&mut buf, "tokens", l.tokens.map(i128::from));
            push_opt(&mut buf, "quantity", l.quantity.as_deref());
            push_opt(&mut buf, "unit", l.unit.as_deref());
            push_opt(&mut buf, "cost", l.cost.as_deref());
            push_opt(&mut buf, "currency", Some(&l.currency));
            push_opt(&mut buf, "account", l.account.as_deref());
            push_opt(&mut buf, "project", l.project.as_deref());
            push_opt(&mut buf, "workspace", l.workspace.as_deref());
            push_opt(&mut buf, "api_key", l.api_key.as_deref());
            push_opt(&mut buf, "principal", l.principal.as_deref());
            push_opt(&mut buf, "sku", l.sku.as_deref());
            push_opt(&mut buf, "service_tier", l.service_tier.as_deref());
            push_opt(&mut buf, "region", l.region.as_deref());
            push_opt(&mut buf, "tags", l.tags.as_deref());
            let _ = writeln!(buf, "\"source_line\":{}}}", l.source_line);
        }
        if !buf.is_empty() {
            self.push_side("bill_lines", buf);
        }
        Ok(id)
    }

    fn record_annotation(&mut self, a: &Annotation) -> Result<()> {
        let at: Timestamp =
            a.at.parse()
                .map_err(|_| LedgerError::Refused(format!("annotation instant {:?}", a.at)))?;
        let mut r = String::from("{");
        push_num(&mut r, "id", Some(i128::from(next_id())));
        push_opt(&mut r, "at", Some(&ch_instant(at)));
        push_opt(&mut r, "note", Some(&a.note));
        push_opt(&mut r, "service", a.service.as_deref());
        push_json_str(&mut r, "recorded_at");
        r.push(':');
        push_json_str(&mut r, &self.now);
        r.push_str("}\n");
        self.push_side("annotations", r);
        Ok(())
    }

    fn record_budget(&mut self, b: &BudgetEntry) -> Result<()> {
        let mut r = String::from("{");
        push_num(&mut r, "id", Some(i128::from(next_id())));
        push_opt(&mut r, "team_id", Some(&b.team_id));
        push_opt(&mut r, "period", Some(&b.period));
        push_opt(&mut r, "limit_amount", Some(&b.limit));
        push_opt(&mut r, "currency", Some(&b.currency));
        push_opt(&mut r, "owner", b.owner.as_deref());
        push_opt(&mut r, "comment", b.comment.as_deref());
        push_json_str(&mut r, "recorded_at");
        r.push(':');
        push_json_str(&mut r, &self.now);
        r.push_str("}\n");
        self.push_side("budgets", r);
        Ok(())
    }

    fn record_refdata(&mut self, e: &tollgate_ledger::RefDataEntry) -> Result<i64> {
        self.books_record_refdata(e)
    }

    fn record_period_action(&mut self, a: &tollgate_ledger::PeriodAction) -> Result<i64> {
        self.books_record_period_action(a)
    }

    fn record_adjustment(&mut self, a: &tollgate_ledger::Adjustment) -> Result<i64> {
        self.books_record_adjustment(a)
    }

    fn set_ingested_at(&mut self, at: &str) -> Result<()> {
        let t: Timestamp = at
            .parse()
            .map_err(|_| LedgerError::Refused(format!("ingested_at {at:?} is not an instant")))?;
        self.now_ts = t;
        self.now = ch_instant(t);
        Ok(())
    }

    fn copy_refdata(&mut self, r: &tollgate_ledger::RefDataRecord) -> Result<()> {
        self.books_copy_refdata(r)
    }

    fn copy_period_action(&mut self, r: &tollgate_ledger::PeriodActionRecord) -> Result<()> {
        self.books_copy_period_action(r)
    }

    fn copy_adjustment(&mut self, r: &tollgate_ledger::AdjustmentRecord) -> Result<()> {
        self.books_copy_adjustment(r)
    }

    fn commit(self: Box<Self>) -> Result<()> {
        // Price versions first: an event never points at a version that is not stored.
        self.insert(
            "price_versions",
            &self.price_versions,
            Some(format!("{}-pv", self.token)),
        )?;
        let columns = crate::native::column_list();
        for (i, b) in self.batches.iter().enumerate() {
            self.insert_as(
                &format!("events ({columns})"),
                "Native",
                &b.encode(),
                Some(format!("{}-ev{i}", self.token)),
                &[
                    ("low_cardinality_allow_in_native_format", "0".into()),
                    // No merge of the block on insert: the writer never sends an id twice in
                    // a block (nothing for ReplacingMergeTree to collapse), and the views'
                    // output is already grouped by the rollups' whole key (nothing for
                    // SummingMergeTree to sum). About half of the server's insert work.
                    ("optimize_on_insert", "0".into()),
                ],
            )?;
        }
        let mut inv = String::new();
        for i in &self.invoices {
            inv.push('{');
            push_num(&mut inv, "id", Some(i128::from(next_id())));
            push_opt(&mut inv, "number", Some(&i.number));
            push_opt(&mut inv, "kind", Some(&i.kind));
            push_opt(&mut inv, "tenant_id", Some(&i.tenant_id));
            push_opt(&mut inv, "period", Some(&i.period));
            push_opt(&mut inv, "pattern", Some(&i.pattern));
            push_num(&mut inv, "seq", Some(i128::from(i.seq)));
            push_num(&mut inv, "revision", Some(i128::from(i.revision)));
            push_opt(&mut inv, "currency", Some(&i.currency));
            push_opt(&mut inv, "total", Some(&i.total));
            push_opt(&mut inv, "document", Some(&i.document));
            push_opt(&mut inv, "corrects", i.corrects.as_deref());
            push_opt(&mut inv, "reason", i.reason.as_deref());
            push_json_str(&mut inv, "finalized_at");
            inv.push(':');
            push_json_str(&mut inv, &self.now);
            inv.push_str("}\n");
        }
        self.insert("invoices", &inv, Some(format!("{}-inv", self.token)))?;
        for (table, rows) in &self.side {
            self.insert(table, rows, Some(format!("{}-{table}", self.token)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn instants_convert_both_ways() {
        let t: Timestamp = "2026-07-01T10:00:00.5Z".parse().unwrap();
        assert_eq!(ch_instant(t), "2026-07-01 10:00:00.500000");
        assert_eq!(
            ledger_instant("2026-07-01 10:00:00.500000"),
            "2026-07-01T10:00:00.500000Z"
        );
    }
}
