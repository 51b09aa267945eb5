//! `tollgate ingest events FILE`: validate, price and append usage events, all or nothing.
//!
//! The parse stage ([`crate::ingest_pipeline`]: a reader thread and one parser thread per
//! core for JSONL, one thread for CSV) validates and prices records; the calling thread
//! appends the batches, in file order, inside one ledger transaction, committed only when the
//! whole file is good. The first bad record in file order aborts the import with
//! `FILE:LINE: FIELD: problem` and nothing is written. `--check` runs the same parse stage
//! and writes nothing.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tollgate_core::event::{FieldError, RawDecimal, RawEvent};
use tollgate_core::{Pricer, UsageEvent};
use tollgate_ledger::{ImportRecord, Ledger, PriceVersionRecord};
use tollgate_render::{Cell, Table};

use crate::Ctx;
use crate::output::{Format, out, outln};

#[derive(Debug, clap::Subcommand)]
pub enum IngestCommand {
    /// Import usage events from JSONL or CSV (canonical field names); `-` reads stdin.
    Events(EventsArgs),
    /// Import a provider bill or usage export (replaces an earlier import of the same month).
    Bills(BillsArgs),
}

#[derive(Debug, clap::Args)]
pub struct BillsArgs {
    /// openai-usage, openai-costs, anthropic-usage, anthropic-cost, aws-cur, gcp-billing, focus.
    #[arg(long = "type", value_name = "TYPE")]
    bill_type: String,
    /// The file (CSV plain or gzip, or JSON as the provider's API returns it); `-` reads stdin.
    file: String,
    /// Summary format: table or json.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// Parses a bill file and stores it in the ledger in `data_dir` (as `ingest bills` does);
/// returns the number of lines and the bill's usage cost (`-` without money).
pub fn store_bill(
    data_dir: &std::path::Path,
    bill_type: &str,
    file: &std::path::Path,
) -> Result<(usize, String)> {
    use tollgate_providers::bills::BillType;
    let kind = BillType::parse(bill_type)
        .ok_or_else(|| anyhow::anyhow!("unknown bill type {bill_type:?}"))?;
    let source = file.display().to_string();
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let summary = stream_bill(kind, &source, input, data_dir, || {
        Ok(Box::new(tollgate_ledger::sqlite::SqliteLedger::open(
            data_dir,
        )?))
    })?;
    Ok((
        summary.lines,
        summary
            .cost
            .map_or_else(|| "-".to_string(), |c| c.normalize().to_string()),
    ))
}

/// One parsed bill as the ledger's import row and line rows.
pub(crate) fn bill_records(
    kind: tollgate_providers::bills::BillType,
    source: &str,
    lines: Vec<tollgate_providers::bills::BillLine>,
    summary: &tollgate_providers::bills::BillSummary,
) -> (
    tollgate_ledger::BillImport,
    Vec<tollgate_ledger::BillLineRecord>,
) {
    // The lines are moved into the records (no copy of their text).
    let records: Vec<tollgate_ledger::BillLineRecord> = {
        let mut texts = RecordTexts::default();
        lines.into_iter().map(|l| texts.record(l)).collect()
    };
    (import_row(kind, source, summary, records.len()), records)
}

/// Lines per batch handed from the parsing thread to the writing one.
const BILL_BATCH: usize = 2048;
/// Batches in flight between the two threads (bounds memory: at most 8 x 2,048 lines queued).
const BILL_BATCHES_IN_FLIGHT: usize = 8;

/// What the parsing thread sends: lines, then the end (the summary or the file's error).
enum BillMsg {
    Lines(Vec<tollgate_ledger::BillLineRecord>),
    End(Result<tollgate_providers::bills::BillSummary>),
}

/// The writing side of the pipeline: batches from the parsing thread; at the end the import
/// row, or the parser's error kept for the caller.
struct BillPipe<'a> {
    kind: tollgate_providers::bills::BillType,
    source: &'a str,
    rx: std::sync::mpsc::Receiver<BillMsg>,
    /// Stored batches go back to the parsing thread, which frees them (or reuses them): memory
    /// is freed by the thread that allocated it, without contending for its allocator.
    back: std::sync::mpsc::Sender<Vec<tollgate_ledger::BillLineRecord>>,
    lines: usize,
    end: Option<Result<tollgate_providers::bills::BillSummary>>,
}

impl tollgate_ledger::BillLineSource for BillPipe<'_> {
    fn next_lines(&mut self, out: &mut Vec<tollgate_ledger::BillLineRecord>) -> bool {
        let stored = std::mem::take(out);
        if !stored.is_empty() {
            let _ = self.back.send(stored);
        }
        if self.end.is_some() {
            return false;
        }
        match self.rx.recv() {
            Ok(BillMsg::Lines(v)) => {
                self.lines += v.len();
                *out = v;
                true
            }
            Ok(BillMsg::End(r)) => {
                self.end = Some(r);
                false
            }
            Err(_) => {
                self.end = Some(Err(anyhow::anyhow!(
                    "{}: the bill parser stopped without an answer",
                    self.source
                )));
                false
            }
        }
    }

    fn finish(&mut self) -> Option<tollgate_ledger::BillImport> {
        while self.next_lines(&mut Vec::new()) {}
        match &self.end {
            Some(Ok(summary)) => Some(import_row(self.kind, self.source, summary, self.lines)),
            _ => None,
        }
    }
}

/// Parses a bill and stores it, in one ledger transaction: one thread reads and parses the
/// file (never held whole) into ledger rows, summarising as it goes, while this one inserts
/// them. A bad row anywhere fails the whole file with its `FILE:LINE: FIELD: problem` and
/// rolls back: nothing is written, and a ledger (and data directory) this import created is
/// removed again.
fn stream_bill(
    kind: tollgate_providers::bills::BillType,
    source: &str,
    input: impl std::io::Read + Send,
    ledger_file_dir: &std::path::Path,
    open: impl FnOnce() -> Result<Box<dyn Ledger>>,
) -> Result<tollgate_providers::bills::BillSummary> {
    use std::sync::mpsc;
    use tollgate_providers::bills;
    let ledger_file = ledger_file_dir.join(tollgate_ledger::sqlite::LEDGER_FILE);
    let existed = ledger_file.exists();
    let dir_existed = ledger_file_dir.exists();
    let (tx, rx) = mpsc::sync_channel::<BillMsg>(BILL_BATCHES_IN_FLIGHT);
    let (back, back_rx) = mpsc::channel::<Vec<tollgate_ledger::BillLineRecord>>();
    let outcome = std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut sum = bills::Summarizer::new();
            let mut texts = RecordTexts::default();
            let mut failed: Option<bills::BillError> = None;
            let mut batch = Vec::with_capacity(BILL_BATCH);
            let mut gone = false;
            let parsed = bills::parse_read(kind, source, input, |line| {
                if failed.is_some() || gone {
                    return;
                }
                if let Err(e) = sum.add(&line) {
                    failed = Some(e);
                    return;
                }
                batch.push(texts.record(line));
                if batch.len() == BILL_BATCH {
                    // A stored batch, emptied here, holds the next lines.
                    let next = match back_rx.try_recv() {
                        Ok(mut v) => {
                            v.clear();
                            v
                        }
                        Err(_) => Vec::with_capacity(BILL_BATCH),
                    };
                    let full = std::mem::replace(&mut batch, next);
                    gone = tx.send(BillMsg::Lines(full)).is_err();
                }
            });
            let end = match (parsed, failed) {
                (Err(e), _) | (Ok(()), Some(e)) => Err(e.into()),
                (Ok(()), None) => {
                    if !batch.is_empty() {
                        let _ = tx.send(BillMsg::Lines(batch));
                    }
                    sum.finish().map_err(anyhow::Error::from)
                }
            };
            let _ = tx.send(BillMsg::End(end));
        });
        let mut pipe = BillPipe {
            kind,
            source,
            rx,
            back,
            lines: 0,
            end: None,
        };
        let stored = (|| -> Result<bool> {
            let mut ledger = open()?;
            let mut w = ledger.writer()?;
            match w.record_bill_streamed(&mut pipe)? {
                Some(_) => {
                    w.commit()?;
                    Ok(true)
                }
                // The parser failed: dropping the writer rolls the lines back.
                None => Ok(false),
            }
        })();
        let BillPipe { rx, back, end, .. } = pipe;
        drop(back);
        // On a ledger error the parser finds the channel closed and stops sending.
        drop(rx);
        match (stored, end) {
            (Ok(true), Some(Ok(summary))) => Ok(summary),
            (Ok(_), Some(Err(e))) | (Err(e), _) => Err(e),
            (Ok(_), _) => Err(anyhow::anyhow!(
                "{source}: the bill parser stopped without an answer; nothing was stored"
            )),
        }
    });
    if outcome.is_err() && !existed {
        // Nothing was written: not even the empty ledger this import created is left.
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = ledger_file.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(std::path::PathBuf::from(p));
        }
        if !dir_existed {
            // Nor the data directory it made (removed only if empty).
            let _ = std::fs::remove_dir(ledger_file_dir);
        }
    }
    outcome
}

/// Turns bill lines into ledger rows (their text moved, not copied), remembering the last instants and tags it wrote: the
/// lines of a bill come in runs of the same hour and tags, which are then copied rather than
/// formatted again.
#[derive(Default)]
struct RecordTexts {
    start: Option<(jiff::Timestamp, String)>,
    end: Option<(jiff::Timestamp, String)>,
    tags: Option<(std::collections::BTreeMap<String, String>, String)>,
}

impl RecordTexts {
    fn record(
        &mut self,
        l: tollgate_providers::bills::BillLine,
    ) -> tollgate_ledger::BillLineRecord {
        fn instant(last: &mut Option<(jiff::Timestamp, String)>, t: jiff::Timestamp) -> String {
            match last {
                Some((at, text)) if *at == t => text.clone(),
                _ => {
                    let text = tollgate_core::event::format_instant(t);
                    *last = Some((t, text.clone()));
                    text
                }
            }
        }
        let tags = if l.tags.is_empty() {
            None
        } else {
            match &self.tags {
                Some((m, text)) if *m == l.tags => Some(text.clone()),
                _ => {
                    let text = serde_json::to_string(&l.tags).unwrap_or_default();
                    let out = text.clone();
                    self.tags = Some((l.tags, text));
                    Some(out)
                }
            }
        };
        tollgate_ledger::BillLineRecord {
            tags,
            provider: l.provider,
            line_kind: l.line_kind.as_str().to_string(),
            period_start: instant(&mut self.start, l.period_start),
            period_end: instant(&mut self.end, l.period_end),
            model: l.model,
            token_class: l.token_class.map(|c| c.as_str().to_string()),
            tokens: l.tokens,
            quantity: l.quantity.map(|q| q.normalize().to_string()),
            unit: l.unit,
            cost: l.cost.map(|c| c.normalize().to_string()),
            currency: l.currency.to_string(),
            account: l.account,
            project: l.project,
            workspace: l.workspace,
            api_key: l.api_key,
            principal: l.principal,
            sku: l.sku,
            service_tier: l.service_tier,
            region: l.region,
            source_line: l.source_line,
        }
    }
}

/// The import row of a bill: keyed by (bill type, provider, UTC month of its earliest line).
fn import_row(
    kind: tollgate_providers::bills::BillType,
    source: &str,
    summary: &tollgate_providers::bills::BillSummary,
    lines: usize,
) -> tollgate_ledger::BillImport {
    let fmt_ts = tollgate_core::event::format_instant;
    let month = {
        let d = summary
            .period_start
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date();
        format!("{:04}-{:02}", d.year(), d.month())
    };
    tollgate_ledger::BillImport {
        bill_type: kind.name().to_string(),
        provider: summary.provider.clone(),
        source: source.to_string(),
        month,
        period_start: fmt_ts(summary.period_start),
        period_end: fmt_ts(summary.period_end),
        currency: summary.currency.to_string(),
        lines: lines as u64,
        cost: summary.cost.map(|c| c.normalize().to_string()),
    }
}

/// Stores bills in one ledger transaction: all of them or none. Each supersedes the earlier
/// import of the same (bill type, provider, month).
pub(crate) fn record_bills(
    ledger: &mut dyn Ledger,
    bills: Vec<(
        tollgate_ledger::BillImport,
        Vec<tollgate_ledger::BillLineRecord>,
    )>,
) -> Result<()> {
    let mut w = ledger.writer()?;
    for (import, records) in &bills {
        w.record_bill(import, records)?;
    }
    w.commit()?;
    Ok(())
}

/// The bill summary document printed by `--format json` (issue #5's shape).
pub(crate) fn bill_summary_json(
    summary: &tollgate_providers::bills::BillSummary,
) -> serde_json::Value {
    let fmt_ts = tollgate_core::event::format_instant;
    let dec = |d: rust_decimal::Decimal| d.normalize().to_string();
    let t = &summary.tokens;
    json!({
        "provider": summary.provider,
        "lines": summary.lines,
        "period": {"start": fmt_ts(summary.period_start), "end": fmt_ts(summary.period_end)},
        "currency": summary.currency.as_str(),
        "cost": summary.cost.map(dec),
        "credits": dec(summary.credits),
        "tax": dec(summary.tax),
        "refunds": dec(summary.refunds),
        "other": dec(summary.other),
        "tokens": {
            "input": t.input, "cache_read": t.cache_read, "cache_write": t.cache_write,
            "cache_write_1h": t.cache_write_1h, "output": t.output,
        },
    })
}

/// `tollgate ingest bills`: parse the file while storing its lines in one transaction (a bad
/// row fails it with nothing written).
fn ingest_bills(ctx: &Ctx, a: &BillsArgs) -> Result<()> {
    use tollgate_providers::bills::BillType;
    if matches!(a.format, Format::Csv | Format::Xlsx) {
        bail!(
            "--format {}: the bill summary is offered as table or json",
            a.format.name()
        );
    }
    let kind = BillType::parse(&a.bill_type).ok_or_else(|| {
        anyhow::anyhow!(
            "--type {:?}: unknown bill type; use one of {}",
            a.bill_type,
            BillType::ALL
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let source = if a.file == "-" {
        "<stdin>"
    } else {
        a.file.as_str()
    };
    let input: Box<dyn std::io::Read + Send> = if a.file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&a.file).with_context(|| format!("cannot read {}", a.file))?)
    };
    let summary = stream_bill(kind, source, input, &ctx.data_dir, || {
        crate::cmd_ledger::open(ctx)
    })?;
    let fmt_ts = tollgate_core::event::format_instant;
    let dec = |d: rust_decimal::Decimal| d.normalize().to_string();
    let t = &summary.tokens;
    let doc = bill_summary_json(&summary);
    match a.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&doc)?),
        _ => {
            outln!(
                "{} bill from {}: {} lines, {} .. {} ({})",
                kind.name(),
                source,
                summary.lines,
                fmt_ts(summary.period_start),
                fmt_ts(summary.period_end),
                summary.provider
            );
            outln!(
                "  cost {} {}; credits {}; tax {}; refunds {}",
                summary
                    .cost
                    .map_or_else(|| "(usage only, no money)".to_string(), dec),
                summary.currency,
                dec(summary.credits),
                dec(summary.tax),
                dec(summary.refunds)
            );
            outln!(
                "  tokens: input {}, cache read {}, cache write {}, cache write 1h {}, output {}",
                t.input,
                t.cache_read,
                t.cache_write,
                t.cache_write_1h,
                t.output
            );
        }
    }
    Ok(())
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The file to import, or `-` for stdin.
    file: String,
    /// Input format; default from the file extension (.csv is CSV, anything else JSONL).
    #[arg(long, value_enum)]
    input_format: Option<InputFormat>,
    /// Summary format: table or json.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Validate and price the whole file, write nothing (no ledger is opened), and print the
    /// summary an import into an empty ledger would print.
    #[arg(long)]
    check: bool,
    /// Keep the ledger readable by other commands during the import. By default a file of
    /// 64 MiB or more, when no other process has the ledger open, is written in
    /// rollback-journal mode (faster: written once instead of twice) and commands that open
    /// the ledger meanwhile wait for the import to end.
    #[arg(long)]
    shared: bool,
}

/// What an import did. Quarantined and unpriced count the events stored by this import (a
/// duplicate is not counted again); the reasons are those seen in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub read: u64,
    pub ingested: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub unpriced: u64,
    /// Why events are unpriced, with counts.
    pub unpriced_reasons: BTreeMap<String, u64>,
}

fn kv_map(field: &str, s: &str) -> Result<Vec<(String, String)>, FieldError> {
    if s.trim_start().starts_with('{') {
        let m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(s)
            .map_err(|e| FieldError::new(field, format!("not a JSON object: {e}")))?;
        return Ok(m
            .into_iter()
            .map(|(k, v)| {
                let t = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, t)
            })
            .collect());
    }
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    FieldError::new(field, format!("{p:?} is not key=value (write k=v,k=v)"))
                })
        })
        .collect()
}

fn csv_num<T: std::str::FromStr>(field: &str, v: &str) -> Result<Option<T>, FieldError> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<T>().map(Some).map_err(|_| {
        let msg = if v.starts_with('-') {
            "must not be negative".to_string()
        } else {
            format!("{v:?} is not a whole number")
        };
        FieldError::new(field, msg)
    })
}

/// Builds and validates an event from one CSV record (header = canonical field names).
pub(crate) fn csv_event(
    headers: &csv::StringRecord,
    rec: &csv::StringRecord,
) -> Result<UsageEvent, FieldError> {
    let mut r = RawEvent::default();
    for (h, v) in headers.iter().zip(rec.iter()) {
        let s = || (!v.is_empty()).then(|| Cow::Owned(v.to_string()));
        match h {
            "event_id" => r.event_id = s(),
            "request_id" => r.request_id = s(),
            "attempt" => r.attempt = csv_num(h, v)?,
            "parent_request_id" => r.parent_request_id = s(),
            "occurred_at" => r.occurred_at = s(),
            "completed_at" => r.completed_at = s(),
            "trace_id" => r.trace_id = s(),
            "span_id" => r.span_id = s(),
            "session_id" => r.session_id = s(),
            "team_id" => r.team_id = s(),
            "cost_center" => r.cost_center = s(),
            "service" => r.service = s(),
            "feature" => r.feature = s(),
            "environment" => r.environment = s(),
            "tenant_id" => r.tenant_id = s(),
            "user_id" => r.user_id = s(),
            "api_key_id" => r.api_key_id = s(),
            "region" => r.region = s(),
            "tags" => {
                if !v.is_empty() {
                    r.tags = Some(
                        kv_map(h, v)?
                            .into_iter()
                            .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
                            .collect(),
                    );
                }
            }
            "attribution_status" => r.attribution_status = s(),
            "provider" => r.provider = s(),
            "model_requested" => r.model_requested = s(),
            "model" => r.model = s(),
            "operation" => r.operation = s(),
            "service_tier" => r.service_tier = s(),
            "status" => r.status = s(),
            "http_status" => r.http_status = csv_num(h, v)?,
            "streamed" => {
                r.streamed = match v {
                    "" => None,
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    other => {
                        return Err(FieldError::new(
                            h,
                            format!("{other:?} is not true or false"),
                        ));
                    }
                }
            }
            "latency_ms" => r.latency_ms = csv_num(h, v)?,
            "ttft_ms" => r.ttft_ms = csv_num(h, v)?,
            "input_tokens" => r.input_tokens = csv_num(h, v)?,
            "cache_read_tokens" => r.cache_read_tokens = csv_num(h, v)?,
            "cache_write_tokens" => r.cache_write_tokens = csv_num(h, v)?,
            "cache_write_1h_tokens" => r.cache_write_1h_tokens = csv_num(h, v)?,
            "output_tokens" => r.output_tokens = csv_num(h, v)?,
            "reasoning_tokens" => r.reasoning_tokens = csv_num(h, v)?,
            "units" | "cost_breakdown" => {
                if !v.is_empty() {
                    let m = kv_map(h, v)?
                        .into_iter()
                        .map(|(k, v)| (Cow::Owned(k), RawDecimal::Text(Cow::Owned(v))))
                        .collect();
                    if h == "units" {
                        r.units = Some(m);
                    } else {
                        r.cost_breakdown = Some(m);
                    }
                }
            }
            "currency" => r.currency = s(),
            "cost" => r.cost = s().map(RawDecimal::Text),
            "price_version" => r.price_version = s(),
            "pricing_status" => r.pricing_status = s(),
            other => return Err(FieldError::new(other, "unknown column")),
        }
    }
    r.validate()
}

/// Sources of at least this many bytes are imported with [`Ledger::bulk_writer`].
const BULK_BYTES: u64 = 64 << 20;

/// Test hook, undocumented: the size from which an import is a bulk one.
const BULK_BYTES_ENV: &str = "TOLLGATE_INGEST_BULK_BYTES";

/// How an import runs besides its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestOptions {
    /// The source's size, when known (for the progress bar; a large file is a bulk import).
    pub total_bytes: Option<u64>,
    pub show_progress: bool,
    /// Keep the ledger readable by other connections (no bulk import however large the
    /// source).
    pub shared: bool,
}

impl IngestOptions {
    /// Whether the import takes the ledger for itself ([`Ledger::bulk_writer`]): a file of
    /// at least [`BULK_BYTES`], unless `shared`.
    fn bulk(&self) -> bool {
        let from = std::env::var(BULK_BYTES_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(BULK_BYTES);
        !self.shared && self.total_bytes.is_some_and(|b| b >= from)
    }
}

/// Imports one source into the ledger, all or nothing.
pub fn ingest(
    ledger: &mut dyn Ledger,
    pricer: &Pricer,
    source: &str,
    input: Box<dyn BufRead + Send + '_>,
    fmt: InputFormat,
    o: IngestOptions,
) -> Result<IngestSummary> {
    let IngestOptions {
        total_bytes,
        show_progress,
        ..
    } = o;
    let opts = crate::ingest_pipeline::Options {
        want_ids: false,
        prepare: ledger.preparer(),
    };
    let mut writer = if o.bulk() {
        ledger.bulk_writer()?
    } else {
        ledger.writer()?
    };
    let progress = Progress::new(show_progress, total_bytes);
    let run = parse_all(pricer, source, input, fmt, &progress, opts, &mut |b| {
        // The prepared blocks, unless an event is stored already: then the events one by one.
        match writer.append_prepared(&b.prepared)? {
            Some(o) => Ok(o),
            None => Ok(writer.append(b.events(pricer)?)?),
        }
    })?;
    let recs: Vec<PriceVersionRecord> = run
        .versions
        .iter()
        .filter_map(|v| pricer.rate_by_version(v))
        .map(PriceVersionRecord::of_rate)
        .collect();
    let sum = run.sum;
    writer.record_price_versions(&recs)?;
    writer.record_import(&ImportRecord {
        source: source.to_string(),
        read: sum.read,
        ingested: sum.ingested,
        duplicates: sum.duplicates,
        quarantined: sum.quarantined,
        unpriced: sum.unpriced,
    })?;
    writer.commit()?;
    progress.done(sum.read);
    Ok(sum)
}

/// `ingest events --check`: reads, validates and prices the whole source as an import would,
/// and stores nothing (no ledger is opened). `ingested` counts the events an import into an
/// empty ledger would store: an `event_id` repeated within the source is counted as a
/// duplicate; events already in a ledger are not looked for.
pub fn check(
    pricer: &Pricer,
    source: &str,
    input: Box<dyn BufRead + Send + '_>,
    fmt: InputFormat,
    total_bytes: Option<u64>,
    show_progress: bool,
) -> Result<IngestSummary> {
    let mut first = FirstSeen::new();
    let progress = Progress::new(show_progress, total_bytes);
    let opts = crate::ingest_pipeline::Options {
        want_ids: true,
        prepare: None,
    };
    let run = parse_all(pricer, source, input, fmt, &progress, opts, &mut |b| {
        first.add(&b.flags, &b.ids);
        // Counted at the end.
        Ok(tollgate_ledger::AppendOutcome::default())
    })?;
    let mut sum = run.sum;
    sum_outcome(&mut sum, first.finish());
    progress.done(sum.read);
    Ok(sum)
}

/// Partitions of [`FirstSeen`]; each holds about 1/1024 of the ids.
const ID_PARTS: usize = 1024;

/// What an import into an empty ledger would store: the first event of each id (a later one
/// with the same id is a duplicate). Ids are spread over partitions as they come, in file
/// order, and counted at the end a partition at a time: each partition's set stays in cache,
/// where one set of all the ids would miss it on nearly every lookup.
struct FirstSeen {
    keys: Vec<Vec<u128>>,
    /// Per key: bit 0 quarantined, bit 1 unpriced.
    flags: Vec<Vec<u8>>,
}

impl FirstSeen {
    fn new() -> FirstSeen {
        FirstSeen {
            keys: vec![Vec::new(); ID_PARTS],
            flags: vec![Vec::new(); ID_PARTS],
        }
    }

    /// Adds events by their ids and flags (bit 0 quarantined, bit 1 unpriced).
    fn add(&mut self, event_flags: &[u8], ids: &[u128]) {
        for (&f, &k) in event_flags.iter().zip(ids) {
            // Bits of the hash that neither the partition's set (low bits: the bucket; top
            // seven: the tag) uses.
            let p = usize::try_from((id_hash(k) >> 40) % ID_PARTS as u64).unwrap_or(0);
            if let (Some(keys), Some(flags)) = (self.keys.get_mut(p), self.flags.get_mut(p)) {
                keys.push(k);
                flags.push(f);
            }
        }
    }

    fn finish(self) -> tollgate_ledger::AppendOutcome {
        let mut o = tollgate_ledger::AppendOutcome::default();
        let mut seen = IdSet::default();
        for (keys, flags) in self.keys.into_iter().zip(self.flags) {
            seen.clear();
            seen.reserve(keys.len());
            for (k, f) in keys.into_iter().zip(flags) {
                if !seen.insert(k) {
                    o.duplicates += 1;
                    continue;
                }
                o.inserted += 1;
                o.quarantined += u64::from(f & 1);
                o.unpriced += u64::from(f >> 1);
            }
        }
        o
    }
}

/// Hashes an id key (its halves folded, then one multiplication) instead of SipHash: the
/// keys are ids, not chosen to collide.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u128(&mut self, k: u128) {
        self.0 = id_hash(k);
    }
}

/// Mixes an id key into 64 bits (its halves folded, multiplied by an odd constant).
fn id_hash(k: u128) -> u64 {
    // Truncation intended: the two halves are folded together.
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (k as u64, (k >> 64) as u64);
    let h = (lo ^ hi.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 31)
}

type IdSet = std::collections::HashSet<u128, std::hash::BuildHasherDefault<IdHasher>>;

/// What reading a whole source gave.
struct Parsed {
    sum: IngestSummary,
    /// Price versions stamped on the events.
    versions: BTreeSet<String>,
}

/// The progress line on stderr (drawn only when asked: stderr is a terminal).
struct Progress {
    show: bool,
    total_bytes: Option<u64>,
    /// Advanced by the thread that reads the input.
    bytes_read: AtomicU64,
    started: Instant,
    last: std::cell::Cell<Instant>,
}

impl Progress {
    fn new(show: bool, total_bytes: Option<u64>) -> Progress {
        Progress {
            show,
            total_bytes,
            bytes_read: AtomicU64::new(0),
            started: Instant::now(),
            last: std::cell::Cell::new(Instant::now()),
        }
    }

    /// Redraws the line at most four times a second.
    fn tick(&self, events: u64) {
        if self.show && self.last.get().elapsed() > Duration::from_millis(250) {
            self.last.set(Instant::now());
            self.draw(events);
        }
    }

    /// The last drawing, and the end of the line.
    fn done(&self, events: u64) {
        if self.show {
            self.draw(events);
            eprintln!();
        }
    }

    fn draw(&self, events: u64) {
        progress_line(
            events,
            self.started.elapsed(),
            self.bytes_read.load(Ordering::Relaxed),
            self.total_bytes,
        );
    }
}

/// Runs the parse stage over the whole source, handing each batch to `store` in file order
/// and summing what it reports; draws the progress line while it runs.
fn parse_all(
    pricer: &Pricer,
    source: &str,
    input: Box<dyn BufRead + Send + '_>,
    fmt: InputFormat,
    progress: &Progress,
    opts: crate::ingest_pipeline::Options,
    store: &mut dyn FnMut(
        &mut crate::ingest_pipeline::Batch,
    ) -> Result<tollgate_ledger::AppendOutcome>,
) -> Result<Parsed> {
    let mut sum = IngestSummary::default();
    let mut versions: BTreeSet<String> = BTreeSet::new();
    let pipe = crate::ingest_pipeline::run;
    pipe(
        source,
        input,
        fmt,
        pricer,
        &progress.bytes_read,
        opts,
        &mut |b| {
            sum.read += b.n as u64;
            for (k, v) in std::mem::take(&mut b.reasons) {
                *sum.unpriced_reasons.entry(k).or_default() += v;
            }
            versions.append(&mut b.versions);
            // A chunk of blank lines has no events; the store is not called for it.
            if b.n > 0 {
                sum_outcome(&mut sum, store(b)?);
            }
            progress.tick(sum.read);
            Ok(())
        },
    )?;
    Ok(Parsed { sum, versions })
}

fn sum_outcome(sum: &mut IngestSummary, o: tollgate_ledger::AppendOutcome) {
    sum.ingested += o.inserted;
    sum.duplicates += o.duplicates;
    sum.quarantined += o.quarantined;
    sum.unpriced += o.unpriced;
}

fn progress_line(n: u64, elapsed: Duration, bytes: u64, total: Option<u64>) {
    let secs = elapsed.as_millis().max(1);
    let rate = u128::from(n) * 1000 / secs;
    let bar = match total.filter(|t| *t > 0) {
        Some(t) => {
            let pct = (u128::from(bytes) * 100 / u128::from(t)).min(100);
            let filled = usize::try_from(pct * 30 / 100).unwrap_or(30);
            format!(
                "[{}{}] {pct:>3}%  ",
                "#".repeat(filled),
                "-".repeat(30 - filled)
            )
        }
        None => String::new(),
    };
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "\r  {bar}{n} events  {rate} events/s   ");
    let _ = e.flush();
}

pub fn run(ctx: &Ctx, cmd: &IngestCommand) -> Result<()> {
    let a = match cmd {
        IngestCommand::Events(a) => a,
        IngestCommand::Bills(b) => return ingest_bills(ctx, b),
    };
    // Refuse an unsupported summary format before importing anything.
    if matches!(a.format, Format::Csv | Format::Xlsx) {
        bail!(
            "--format {}: the import summary is offered as table or json",
            a.format.name()
        );
    }
    let pricer = ctx.pricer()?;
    let fmt = a.input_format.unwrap_or_else(|| {
        if a.file.to_ascii_lowercase().ends_with(".csv") {
            InputFormat::Csv
        } else {
            InputFormat::Jsonl
        }
    });
    let (input, total, source): (Box<dyn BufRead + Send>, Option<u64>, String) = if a.file == "-" {
        (
            Box::new(BufReader::with_capacity(1 << 20, std::io::stdin())),
            None,
            "<stdin>".into(),
        )
    } else {
        let path = PathBuf::from(&a.file);
        let f = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (
            Box::new(BufReader::with_capacity(1 << 20, f)),
            len,
            a.file.clone(),
        )
    };
    let progress = std::io::stderr().is_terminal();
    if a.check {
        let s = check(&pricer, &source, input, fmt, total, progress)?;
        print_summary(&s, a.format)?;
        if matches!(a.format, Format::Table) {
            outln!(
                "checked: nothing was written (--check); duplicates are event_ids repeated within the file"
            );
        }
        return Ok(());
    }
    let mut ledger = crate::cmd_ledger::open(ctx)?;
    let o = IngestOptions {
        total_bytes: total,
        show_progress: progress,
        shared: a.shared,
    };
    let s = ingest(&mut *ledger, &pricer, &source, input, fmt, o)?;
    print_summary(&s, a.format)
}

/// Prints an import summary as a table or JSON.
pub fn print_summary(s: &IngestSummary, format: Format) -> Result<()> {
    match format {
        Format::Csv | Format::Xlsx => bail!(
            "--format {}: the import summary is offered as table or json",
            format.name()
        ),
        Format::Json => {
            let doc = json!({
                "read": s.read, "ingested": s.ingested, "duplicates": s.duplicates,
                "quarantined": s.quarantined, "unpriced": s.unpriced,
                "unpriced_reasons": s.unpriced_reasons,
            });
            outln!("{}", serde_json::to_string_pretty(&doc)?);
        }
        _ => {
            let t = Table {
                header: vec![],
                columns: vec![
                    "read".into(),
                    "ingested".into(),
                    "duplicates".into(),
                    "quarantined".into(),
                    "unpriced".into(),
                ],
                rows: vec![
                    [s.read, s.ingested, s.duplicates, s.quarantined, s.unpriced]
                        .iter()
                        .map(|v| Cell::Int(i128::from(*v)))
                        .collect(),
                ],
                total: None,
            };
            out!("{}", tollgate_render::text(&t));
            for (reason, n) in &s.unpriced_reasons {
                outln!("unpriced: {n} events: {reason}");
            }
            if s.quarantined > 0 {
                outln!(
                    "quarantined: {} events lack required attribution (team_id, service, feature, environment); they are stored and shown as their own rows",
                    s.quarantined
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::IngestOptions;

    #[test]
    fn a_file_of_64_mib_or_more_is_a_bulk_import_unless_shared() {
        let o = |total_bytes: Option<u64>, shared: bool| IngestOptions {
            total_bytes,
            show_progress: false,
            shared,
        };
        // 64 MiB = 67,108,864 bytes.
        assert!(o(Some(67_108_864), false).bulk());
        assert!(!o(Some(67_108_863), false).bulk());
        assert!(!o(Some(67_108_864), true).bulk());
        // Stdin: the size is unknown.
        assert!(!o(None, false).bulk());
    }
}
