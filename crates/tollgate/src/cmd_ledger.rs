//! `tollgate ledger ...`: the ledger itself: migrations, export, copy between backends, and
//! the ClickHouse DDL. Also the one factory every command opens the ledger through
//! ([`open`], [`open_read_only`]), so every command runs on either backend (`[ledger] backend`).

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use tollgate_clickhouse::schema::{Layout, full_ddl};
use tollgate_clickhouse::{ClickHouseConfig, ClickHouseLedger};
use tollgate_core::UsageEvent;
use tollgate_ledger::sqlite::SqliteLedger;
use tollgate_ledger::{Ledger, SqlTable, SqlValue};

use crate::Ctx;
use crate::config::{ClickHouseLedgerConfig, Config};
use crate::output::outln;

#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Apply pending schema migrations (creates the ClickHouse database and tables).
    Migrate,
    /// Export the events in the canonical event format (JSONL or CSV), in occurred_at order.
    Export(ExportArgs),
    /// Copy everything (events, price versions, invoices, bills, annotations, budgets,
    /// reference data, the close log, adjustments) into the ledger of another config;
    /// idempotent: run it again and nothing is copied twice.
    Copy(CopyArgs),
    /// Print the ClickHouse DDL (single node, or a cluster with --cluster).
    Schema(SchemaArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// jsonl (one event per line) or csv (canonical field names as the header).
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Only this period (2026-07, 2026-Q3, 2026-07-01..2026-07-15; reporting time zone).
    #[arg(long)]
    pub period: Option<String>,
    /// Write here instead of stdout (atomically: the whole file or nothing).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The config file of the target ledger (its [ledger] section says which backend).
    #[arg(long = "to", value_name = "CONFIG")]
    pub to: PathBuf,
    /// Only events of this period (reporting time zone); other tables are copied whole.
    #[arg(long)]
    pub period: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Generate the cluster layout: ON CLUSTER, Replicated* tables, Distributed tables.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Database name (default: [ledger] database, or tollgate).
    #[arg(long)]
    pub database: Option<String>,
}

/// The ClickHouse client settings of a config, the password read from its environment
/// variable.
fn clickhouse_config(c: &ClickHouseLedgerConfig) -> ClickHouseConfig {
    let mut cfg = ClickHouseConfig::new(&c.url, &c.database);
    cfg.user = c.user.clone();
    cfg.password = std::env::var(&c.password_env)
        .ok()
        .filter(|p| !p.is_empty());
    cfg
}

fn open_with(config: &Config, data_dir: &Path, write: bool) -> Result<Box<dyn Ledger>> {
    Ok(match &config.clickhouse {
        Some(c) => {
            let cfg = clickhouse_config(c);
            let l = if write {
                ClickHouseLedger::open(cfg)
            } else {
                ClickHouseLedger::open_read_only(cfg)
            };
            Box::new(l.with_context(|| format!("opening the ClickHouse ledger at {}", c.url))?)
        }
        None if write => Box::new(SqliteLedger::open(data_dir)?),
        None => Box::new(SqliteLedger::open_read_only(data_dir)?),
    })
}

/// The gateway's ledger opener (`tollgate serve`): the configured backend, a new handle per
/// call for the spool's ledger thread.
pub fn gateway_opener(ctx: &Ctx) -> tollgate_gateway::spool::OpenLedger {
    let config = ctx.config.clone();
    let dir = ctx.data_dir.clone();
    std::sync::Arc::new(move || -> Result<Box<dyn Ledger + Send>> {
        Ok(match &config.clickhouse {
            Some(c) => Box::new(
                // The gateway serves (and spools) while ClickHouse is unreachable.
                ClickHouseLedger::open_when_reachable(clickhouse_config(c))
                    .with_context(|| format!("opening the ClickHouse ledger at {}", c.url))?,
            ),
            None => (tollgate_gateway::spool::sqlite_ledger(&dir))()?,
        })
    })
}

/// Opens the configured ledger for writing (applying pending migrations).
pub fn open(ctx: &Ctx) -> Result<Box<dyn Ledger>> {
    open_with(&ctx.config, &ctx.data_dir, true)
}

/// Opens the configured ledger for reading.
pub fn open_read_only(ctx: &Ctx) -> Result<Box<dyn Ledger>> {
    open_with(&ctx.config, &ctx.data_dir, false)
}

pub fn run(ctx: &Ctx, cmd: &LedgerCommand) -> Result<()> {
    match cmd {
        LedgerCommand::Migrate => migrate(ctx),
        LedgerCommand::Export(a) => export(ctx, a),
        LedgerCommand::Copy(a) => copy(ctx, a),
        LedgerCommand::Schema(a) => {
            let db = a
                .database
                .clone()
                .or_else(|| ctx.config.clickhouse.as_ref().map(|c| c.database.clone()))
                .unwrap_or_else(|| "tollgate".into());
            if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("--database {db:?}: use letters, digits and underscores");
            }
            let layout = match &a.cluster {
                Some(c) => {
                    if c.is_empty()
                        || !c
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
                    {
                        bail!(
                            "--cluster {c:?}: use the cluster name of remote_servers (letters, digits, _ and -)"
                        );
                    }
                    Layout::Cluster(c.clone())
                }
                None => Layout::Single,
            };
            crate::output::emit(None, full_ddl(&db, &layout).as_bytes(), false)
        }
    }
}

fn migrate(ctx: &Ctx) -> Result<()> {
    match &ctx.config.clickhouse {
        Some(c) => {
            let l = ClickHouseLedger::connect(clickhouse_config(c));
            let before = l.applied_version()?;
            let applied = l
                .migrate()
                .with_context(|| format!("migrating the ClickHouse ledger at {}", c.url))?;
            report_migrations(
                &format!("ClickHouse {} database {}", c.url, c.database),
                before,
                &applied,
                tollgate_clickhouse::schema::schema_version(),
            )
        }
        None => {
            let path = ctx.data_dir.join(tollgate_ledger::sqlite::LEDGER_FILE);
            let before = if path.exists() {
                let l = SqliteLedger::open_read_only(&ctx.data_dir)?;
                sql_int(&l.query_sql("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")?)
            } else {
                0
            };
            drop(SqliteLedger::open(&ctx.data_dir)?);
            let now = tollgate_ledger::sqlite::schema_version();
            let applied: Vec<i64> = (before + 1..=now).collect();
            report_migrations(&format!("SQLite {}", path.display()), before, &applied, now)
        }
    }
}

fn sql_int(t: &SqlTable) -> i64 {
    match t.rows.first().and_then(|r| r.first()) {
        Some(SqlValue::Integer(i)) => *i,
        _ => 0,
    }
}

fn report_migrations(where_: &str, before: i64, applied: &[i64], now: i64) -> Result<()> {
    if applied.is_empty() {
        outln!("ledger {where_}: schema at version {now}, up to date");
    } else {
        outln!(
            "ledger {where_}: migrated from version {before} to {now} (applied {})",
            applied
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The instants a period covers, or everything a ledger can hold.
fn range(ctx: &Ctx, period: Option<&str>) -> Result<(Timestamp, Timestamp)> {
    match period {
        Some(p) => {
            let p = tollgate_core::Period::parse(p, &ctx.config.timezone)
                .map_err(|e| anyhow::anyhow!("--period: {e}"))?;
            Ok((p.start(), p.end()))
        }
        // DateTime64's range: all any ledger can store.
        None => Ok((
            "1900-01-01T00:00:00Z".parse()?,
            "2299-12-31T00:00:00Z".parse()?,
        )),
    }
}

/// One event as a CSV record with the canonical field names ([`tollgate_core::event::FIELDS`]):
/// maps (tags, units, cost_breakdown) as JSON objects, absent values empty.
fn csv_record(e: &UsageEvent) -> Result<Vec<String>> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&e.to_json())?;
    Ok(tollgate_core::event::FIELDS
        .iter()
        .map(|f| match v.get(*f) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
        .collect())
}

fn export(ctx: &Ctx, a: &ExportArgs) -> Result<()> {
    let (start, end) = range(ctx, a.period.as_deref())?;
    let ledger = open_read_only(ctx)?;
    let write_all = |w: &mut dyn Write| -> Result<u64> {
        let mut n = 0u64;
        match a.format {
            ExportFormat::Jsonl => {
                let mut line = String::with_capacity(1024);
                ledger.scan_events(start, end, &mut |e| {
                    line.clear();
                    e.write_json(&mut line);
                    line.push('\n');
                    n += 1;
                    w.write_all(line.as_bytes())
                        .map_err(|e| tollgate_ledger::LedgerError::Refused(format!("output: {e}")))
                })?;
            }
            ExportFormat::Csv => {
                let mut c = csv::Writer::from_writer(w);
                c.write_record(tollgate_core::event::FIELDS)?;
                ledger.scan_events(start, end, &mut |e| {
                    let rec = csv_record(&e)
                        .map_err(|e| tollgate_ledger::LedgerError::Corrupt(e.to_string()))?;
                    n += 1;
                    c.write_record(&rec)
                        .map_err(|e| tollgate_ledger::LedgerError::Refused(format!("output: {e}")))
                })?;
                c.flush()?;
            }
        }
        Ok(n)
    };
    let n = match &a.out {
        Some(path) => {
            // Streamed into a temporary file beside the target, renamed when complete.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "export".into());
            let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
            let res = (|| -> Result<u64> {
                let f = std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                let mut w = std::io::BufWriter::new(f);
                let n = write_all(&mut w)?;
                let f = w.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("cannot move the export into {}", path.display()))?;
                Ok(n)
            })();
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res?
        }
        None => {
            let so = std::io::stdout();
            let mut w = std::io::BufWriter::new(so.lock());
            let n = write_all(&mut w)?;
            w.flush()?;
            n
        }
    };
    if a.out.is_some() {
        outln!("exported {n} events");
    }
    Ok(())
}

/// Events copied per target transaction.
const COPY_BATCH: usize = 50_000;

fn text(v: &SqlValue) -> Option<String> {
    match v {
        SqlValue::Null => None,
        other => Some(other.to_string()),
    }
}

fn int(v: &SqlValue) -> u64 {
    match v {
        SqlValue::Integer(i) => u64::try_from(*i).unwrap_or(0),
        SqlValue::Text(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn copy(ctx: &Ctx, a: &CopyArgs) -> Result<()> {
    let target_cfg = Config::load(&a.to)?;
    let target_dir = target_cfg
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("tollgate-data"));
    let same = match (&ctx.config.clickhouse, &target_cfg.clickhouse) {
        (None, None) => {
            std::fs::canonicalize(&ctx.data_dir).ok() == std::fs::canonicalize(&target_dir).ok()
                && ctx.data_dir.exists()
        }
        (Some(x), Some(y)) => x.url == y.url && x.database == y.database,
        _ => false,
    };
    if same {
        bail!(
            "--to {}: that is the ledger being copied; name a config of another ledger",
            a.to.display()
        );
    }
    let (start, end) = range(ctx, a.period.as_deref())?;
    let source = open_read_only(ctx)?;
    let mut target = open_with(&target_cfg, &target_dir, true)?;
    // Price versions first, so that no copied event points at a missing version.
    let mut versions: BTreeSet<String> = BTreeSet::new();
    source.scan_events(start, end, &mut |e| {
        if let Some(v) = e.pricing.price_version {
            versions.insert(v);
        }
        Ok(())
    })?;
    let recs = source.price_versions(&versions.into_iter().collect::<Vec<_>>())?;
    let mut w = target.writer()?;
    w.record_price_versions(&recs)?;
    w.commit()?;
    // Events in batches, each written with the instant it was first ingested (one target
    // transaction per batch and ingestion instant), so the month-end close sees the same late
    // events in the copy. Appends are idempotent: a copy that stops half-way is finished by
    // running it again.
    let mut out = tollgate_ledger::AppendOutcome::default();
    let mut flush = |batch: &mut Vec<(UsageEvent, String)>,
                     target: &mut Box<dyn Ledger>|
     -> tollgate_ledger::Result<()> {
        let mut groups: Vec<(String, Vec<UsageEvent>)> = Vec::new();
        for (e, at) in batch.drain(..) {
            match groups.iter_mut().find(|(g, _)| *g == at) {
                Some((_, v)) => v.push(e),
                None => groups.push((at, vec![e])),
            }
        }
        for (at, events) in groups {
            let mut w = target.writer()?;
            w.set_ingested_at(&at)?;
            out += w.append(&events)?;
            w.commit()?;
        }
        Ok(())
    };
    // Scan into batches; the target is written between batches.
    let mut batch: Vec<(UsageEvent, String)> = Vec::with_capacity(COPY_BATCH);
    let mut all: Vec<Vec<(UsageEvent, String)>> = Vec::new();
    source.scan_events_ingested(start, end, &mut |e, at| {
        batch.push((e, at.to_string()));
        if batch.len() >= COPY_BATCH {
            all.push(std::mem::take(&mut batch));
        }
        if all.len() >= 4 {
            for mut b in all.drain(..) {
                flush(&mut b, &mut target)?;
            }
        }
        Ok(())
    })?;
    for mut b in all.drain(..) {
        flush(&mut b, &mut target)?;
    }
    flush(&mut batch, &mut target)?;
    let side = copy_side_tables(&*source, &mut *target)?;
    outln!(
        "copied {} events ({} already there), {} price versions, {side}",
        out.inserted,
        out.duplicates,
        recs.len()
    );
    Ok(())
}

/// Invoices (by number), bills (by type, provider, month, period, lines and cost),
/// annotations and budgets (exact rows) not yet in the target, in their original order.
fn copy_side_tables(source: &dyn Ledger, target: &mut dyn Ledger) -> Result<String> {
    let q =
        |l: &dyn Ledger, sql: &str| -> Result<Vec<Vec<SqlValue>>> { Ok(l.query_sql(sql)?.rows) };
    const INVOICES: &str = "SELECT number, kind, tenant_id, period, pattern, seq, revision, currency, total, document, corrects, reason FROM invoices ORDER BY id";
    const BILLS: &str = "SELECT id, bill_type, provider, source, month, period_start, period_end, currency, lines, cost FROM bill_imports ORDER BY id";
    const LINES: &str = "SELECT import_id, provider, line_kind, period_start, period_end, model, token_class, tokens, quantity, unit, cost, currency, account, project, workspace, api_key, principal, sku, service_tier, region, tags, source_line FROM bill_lines ORDER BY id";
    const NOTES: &str = "SELECT at, note, service FROM annotations ORDER BY id";
    const BUDGETS: &str =
        "SELECT team_id, period, limit_amount, currency, owner, comment FROM budgets ORDER BY id";
    // A ClickHouse table may show a row twice before a merge: keep the first of equal keys.
    fn dedup(rows: Vec<Vec<SqlValue>>, key: impl Fn(&[SqlValue]) -> String) -> Vec<Vec<SqlValue>> {
        let mut seen = HashSet::new();
        rows.into_iter().filter(|r| seen.insert(key(r))).collect()
    }
    let all_key = |r: &[SqlValue]| format!("{r:?}");
    let have_inv: HashSet<String> = q(target, INVOICES)?
        .iter()
        .filter_map(|r| r.first().and_then(text))
        .collect();
    // Bills: the identity of an import without its id and time.
    let bill_key = |r: &[SqlValue]| format!("{:?}", &r[1.min(r.len())..]);
    let have_bills: HashSet<String> = dedup(q(target, BILLS)?, all_key)
        .iter()
        .map(|r| bill_key(r))
        .collect();
    // Annotations: instants as the ledger writes them (SQLite text; ClickHouse prints
    // DateTime64 with a space), compared in one form.
    let norm_at = |s: &str| {
        let mut s = s.replacen(' ', "T", 1);
        if !s.ends_with('Z') {
            s.push('Z');
        }
        s
    };
    let note_key = |r: &[SqlValue]| {
        let at = r.first().and_then(text).map(|s| norm_at(&s));
        format!("{at:?}{:?}", &r[1.min(r.len())..])
    };
    let have_notes: HashSet<String> = q(target, NOTES)?.iter().map(|r| note_key(r)).collect();
    let have_budgets: HashSet<String> = q(target, BUDGETS)?.iter().map(|r| all_key(r)).collect();
    let have_refdata: HashSet<i64> = target
        .refdata_history(None, None)?
        .iter()
        .map(|r| r.version)
        .collect();
    let have_log: HashSet<i64> = target.period_actions(None)?.iter().map(|r| r.id).collect();
    let have_adj: HashSet<i64> = target.adjustments(None)?.iter().map(|r| r.id).collect();
    let mut w = target.writer()?;
    let mut n_inv = 0;
    for r in dedup(q(source, INVOICES)?, |r| format!("{:?}", r.first())) {
        let g = |i: usize| r.get(i).and_then(text);
        let number = g(0).unwrap_or_default();
        if have_inv.contains(&number) {
            continue;
        }
        w.record_invoice(&tollgate_ledger::StoredInvoice {
            number,
            kind: g(1).unwrap_or_default(),
            tenant_id: g(2).unwrap_or_default(),
            period: g(3).unwrap_or_default(),
            pattern: g(4).unwrap_or_default(),
            seq: r.get(5).map_or(0, int),
            revision: r.get(6).map_or(0, int),
            currency: g(7).unwrap_or_default(),
            total: g(8).unwrap_or_default(),
            document: g(9).unwrap_or_default(),
            corrects: g(10),
            reason: g(11),
        })?;
        n_inv += 1;
    }
    let lines = dedup(q(source, LINES)?, all_key);
    let mut n_bills = 0;
    for r in dedup(q(source, BILLS)?, all_key) {
        if have_bills.contains(&bill_key(&r)) {
            continue;
        }
        let g = |i: usize| r.get(i).and_then(text);
        let id = g(0).unwrap_or_default();
        let imp = tollgate_ledger::BillImport {
            bill_type: g(1).unwrap_or_default(),
            provider: g(2).unwrap_or_default(),
            source: g(3).unwrap_or_default(),
            month: g(4).unwrap_or_default(),
            period_start: g(5).unwrap_or_default(),
            period_end: g(6).unwrap_or_default(),
            currency: g(7).unwrap_or_default(),
            lines: r.get(8).map_or(0, int),
            cost: g(9),
        };
        let recs: Vec<tollgate_ledger::BillLineRecord> = lines
            .iter()
            .filter(|l| l.first().and_then(text).as_deref() == Some(id.as_str()))
            .map(|l| {
                let g = |i: usize| l.get(i).and_then(text);
                tollgate_ledger::BillLineRecord {
                    provider: g(1).unwrap_or_default(),
                    line_kind: g(2).unwrap_or_default(),
                    period_start: g(3).unwrap_or_default(),
                    period_end: g(4).unwrap_or_default(),
                    model: g(5),
                    token_class: g(6),
                    tokens: l.get(7).and_then(|v| text(v).map(|_| int(v))),
                    quantity: g(8),
                    unit: g(9),
                    cost: g(10),
                    currency: g(11).unwrap_or_default(),
                    account: g(12),
                    project: g(13),
                    workspace: g(14),
                    api_key: g(15),
                    principal: g(16),
                    sku: g(17),
                    service_tier: g(18),
                    region: g(19),
                    tags: g(20),
                    source_line: l.get(21).map_or(0, int),
                }
            })
            .collect();
        w.record_bill(&imp, &recs)?;
        n_bills += 1;
    }
    let mut n_notes = 0;
    for r in dedup(q(source, NOTES)?, all_key) {
        if have_notes.contains(&note_key(&r)) {
            continue;
        }
        w.record_annotation(&tollgate_ledger::Annotation {
            at: norm_at(&r.first().and_then(text).unwrap_or_default()),
            note: r.get(1).and_then(text).unwrap_or_default(),
            service: r.get(2).and_then(text),
        })?;
        n_notes += 1;
    }
    let mut n_budgets = 0;
    for r in dedup(q(source, BUDGETS)?, all_key) {
        if have_budgets.contains(&all_key(&r)) {
            continue;
        }
        let g = |i: usize| r.get(i).and_then(text);
        w.record_budget(&tollgate_ledger::BudgetEntry {
            team_id: g(0).unwrap_or_default(),
            period: g(1).unwrap_or_default(),
            limit: g(2).unwrap_or_default(),
            currency: g(3).unwrap_or_default(),
            owner: g(4),
            comment: g(5),
        })?;
        n_budgets += 1;
    }
    // The back office's history (reference data, the close log, adjustments) keeps its ids
    // and instants: versions, "as of", who and when read the same in the target.
    let (mut n_refdata, mut n_log, mut n_adj) = (0, 0, 0);
    for r in source.refdata_history(None, None)? {
        if !have_refdata.contains(&r.version) {
            n_refdata += 1;
        }
        // Also when present: a different row under the same version is refused.
        w.copy_refdata(&r)?;
    }
    for r in source.period_actions(None)? {
        if !have_log.contains(&r.id) {
            n_log += 1;
        }
        w.copy_period_action(&r)?;
    }
    for r in source.adjustments(None)? {
        if !have_adj.contains(&r.id) {
            n_adj += 1;
        }
        w.copy_adjustment(&r)?;
    }
    w.commit()?;
    Ok(format!(
        "{n_inv} invoices, {n_bills} bills, {n_notes} annotations, {n_budgets} budget rows, {n_refdata} reference data changes, {n_log} period log entries, {n_adj} adjustments"
    ))
}
