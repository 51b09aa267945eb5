//! `tollgate reconcile --period YYYY-MM`: the ledger against the imported provider bills
//! (model: `tollgate_finance::reconcile`; reference: docs/reconcile.md). Reads only; the same
//! ledger, bills, reference data and rate files give the same output, byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde_json::json;
use tollgate_core::money::round_half_away;
use tollgate_core::period::time_zone;
use tollgate_core::{Period, Pricing, Usage};
use tollgate_finance::reconcile::{
    CLASSES, Class, Draft, Inputs, Reconciliation, Row, RowKey, Thresholds, draft,
};
use tollgate_ledger::Ledger;
use tollgate_ledger::sqlite::SqliteLedger;
use tollgate_render::{Cell, Table};

use crate::Ctx;
use crate::output::{Format, emit, write_atomic};

#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// The month, `YYYY-MM`, in the bills' time zone.
    #[arg(long)]
    pub period: String,
    /// table (flagged rows, teams, totals), csv or json (every row).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Table: show every row, not only the flagged ones.
    #[arg(long)]
    pub all: bool,
    /// The company's time zone for the `timezone_cutoff` test (default: reporting.timezone).
    #[arg(long)]
    pub company_tz: Option<String>,
    /// The bills' time zone (default: reconcile.bill_timezone, else UTC).
    #[arg(long)]
    pub bill_tz: Option<String>,
    /// Flag above this percent (default: reconcile.threshold_pct, else 3).
    #[arg(long)]
    pub threshold_pct: Option<String>,
    /// ... and above this amount (default: reconcile.threshold_amount, else 500).
    #[arg(long)]
    pub threshold_amount: Option<String>,
    /// Also write the one-page variance report to this file: PDF when it ends in .pdf, else
    /// text.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn decimal_arg(flag: &str, v: &str) -> Result<Decimal> {
    let d = tollgate_core::money::parse_decimal(flag, v)
        .map_err(|_| anyhow::anyhow!("--{flag}: {v:?} is not a decimal number"))?;
    if d < Decimal::ZERO {
        bail!("--{flag}: {v:?} must not be negative");
    }
    Ok(d)
}

/// Whether a zone keeps whole-hour offsets over `[start, end)` (then hourly buckets are exact).
fn whole_hours(tz: &jiff::tz::TimeZone, start: Timestamp, end: Timestamp) -> bool {
    let mut t = start;
    while t < end {
        if tz.to_offset(t).seconds() % 3600 != 0 {
            return false;
        }
        t = match t.checked_add(SignedDuration::from_hours(6)) {
            Ok(n) => n,
            Err(_) => return false,
        };
    }
    true
}

/// Builds the reconciliation.
pub fn build(ctx: &Ctx, a: &ReconcileArgs) -> Result<Reconciliation> {
    let bill_tz_name = a
        .bill_tz
        .clone()
        .or_else(|| ctx.config.reconcile.bill_timezone.clone())
        .unwrap_or_else(|| "UTC".into());
    let company_tz_name = a
        .company_tz
        .clone()
        .unwrap_or_else(|| ctx.config.timezone.clone());
    let bill_tz = time_zone(&bill_tz_name).map_err(|e| anyhow::anyhow!("--bill-tz: {e}"))?;
    let company_tz =
        time_zone(&company_tz_name).map_err(|e| anyhow::anyhow!("--company-tz: {e}"))?;
    let period =
        Period::parse(&a.period, &bill_tz_name).map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    if period.label().len() != 7 {
        bail!(
            "--period {:?}: reconciliation is monthly; give YYYY-MM",
            a.period
        );
    }
    let thresholds = Thresholds {
        pct: match &a.threshold_pct {
            Some(v) => decimal_arg("threshold-pct", v)?,
            None => ctx
                .config
                .reconcile
                .threshold_pct
                .unwrap_or(Thresholds::default().pct),
        },
        amount: match &a.threshold_amount {
            Some(v) => decimal_arg("threshold-amount", v)?,
            None => ctx
                .config
                .reconcile
                .threshold_amount
                .unwrap_or(Thresholds::default().amount),
        },
    };
    let (start, end) = (period.start(), period.end());
    let day = SignedDuration::from_hours(24);
    let (wide_start, wide_end) = (start.checked_sub(day)?, end.checked_add(day)?);
    let minute = !(whole_hours(&bill_tz, wide_start, wide_end)
        && whole_hours(&company_tz, wide_start, wide_end));
    let pricer = ctx.pricer()?;
    let ledger = SqliteLedger::open_read_only(&ctx.data_dir)?;
    let usage = ledger.usage_by_key(wide_start, wide_end, minute)?;
    let bills = ledger.bill_lines_in_force_merged(start, end, &bill_tz)?;
    if bills.is_empty() {
        bail!(
            "no bill in the ledger for {}: import the providers' bills first (tollgate ingest bills --type TYPE FILE)",
            period.label()
        );
    }
    let refdata = ledger.refdata(None)?;
    let value_tokens = |provider: &str, model: &str, at: Timestamp, t: &[u64; 5]| {
        let u = Usage {
            input_tokens: t[0],
            cache_read_tokens: t[1],
            cache_write_tokens: t[2],
            cache_write_1h_tokens: t[3],
            output_tokens: t[4],
            ..Usage::default()
        };
        pricer
            .quote(provider, model, at, &u, false)
            .ok()
            .map(|q| q.cost)
    };
    let d = draft(&Inputs {
        period: period.label(),
        start,
        end,
        bill_tz: bill_tz.clone(),
        bill_tz_name,
        company_tz,
        company_tz_name,
        usage: &usage,
        bills: &bills,
        refdata: &refdata,
        thresholds,
        value_tokens: &value_tokens,
    })?;
    let repriced = reprice(&ledger, &pricer, &d, &bill_tz)?;
    Ok(d.finish(&repriced))
}

/// The ledger cost of each row needing it, every event re-priced under the rates in force now
/// (rows with an event no rate covers are left out: they cannot be `stale_rate`).
fn reprice(
    ledger: &SqliteLedger,
    pricer: &tollgate_core::Pricer,
    d: &Draft,
    tz: &jiff::tz::TimeZone,
) -> Result<HashMap<RowKey, Decimal>> {
    let mut by_day: BTreeMap<jiff::civil::Date, Vec<RowKey>> = BTreeMap::new();
    for k in d.needs_reprice() {
        by_day.entry(k.day).or_default().push(k);
    }
    let mut out: HashMap<RowKey, Decimal> = HashMap::new();
    for (day, keys) in by_day {
        let s = day.to_zoned_datetime(tz.clone())?.timestamp();
        let e = day.tomorrow()?.to_zoned_datetime(tz.clone())?.timestamp();
        let mut sums: HashMap<RowKey, Option<Decimal>> =
            keys.into_iter().map(|k| (k, Some(Decimal::ZERO))).collect();
        ledger.scan_events(s, e, &mut |mut ev| {
            let k = RowKey {
                provider: ev.provider.clone(),
                model: ev.model.clone(),
                day,
                key: d.event_key(
                    &ev.provider,
                    ev.attribution.api_key_id.as_deref().unwrap_or(""),
                    ev.attribution.team_id.as_deref().unwrap_or(""),
                ),
            };
            if let Some(sum) = sums.get_mut(&k) {
                ev.pricing = Pricing::unpriced();
                let priced = pricer.price_event(&mut ev).ok().and(ev.pricing.cost);
                *sum = match (*sum, priced) {
                    (Some(a), Some(c)) => Some(a + c),
                    _ => None,
                };
            }
            Ok(())
        })?;
        out.extend(sums.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    }
    Ok(out)
}

fn cents(d: Decimal) -> String {
    round_half_away(d, 2).to_string()
}

fn pct(r: &Row) -> String {
    r.variance_pct()
        .map(|p| format!("{}%", round_half_away(p, 1)))
        .unwrap_or_default()
}

fn class_name(r: &Row) -> &'static str {
    r.class.map_or("", Class::as_str)
}

fn header(rec: &Reconciliation) -> Vec<String> {
    let mut h = vec![
        format!(
            "Reconciliation {}: ledger vs provider bills, days in {} (company time zone {})",
            rec.period, rec.bill_tz, rec.company_tz
        ),
        format!(
            "Flagged when |variance| > max({} % of the larger side, {} {}); variance = bill - ledger",
            rec.thresholds.pct.normalize(),
            rec.thresholds.amount.normalize(),
            rec.currency
        ),
        format!(
            "Compared: {}",
            rec.providers
                .iter()
                .map(|(p, g)| format!("{p} (per {g})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ];
    if !rec.not_billed.is_empty() {
        h.push(format!(
            "Not compared (no bill imported): {}",
            rec.not_billed.join(", ")
        ));
    }
    h
}

/// The table: flagged rows (or all), then the per-team variance and the class counts.
pub fn table_text(rec: &Reconciliation, all: bool) -> Result<String> {
    let rows: Vec<Vec<Cell>> = rec
        .rows
        .iter()
        .filter(|r| all || r.flagged)
        .map(|r| {
            let tv: i128 = r.token_variance().iter().sum();
            vec![
                Cell::Text(r.key.provider.clone()),
                Cell::Text(r.key.model.clone()),
                Cell::Text(r.key.day.to_string()),
                Cell::Text(r.key.key.clone()),
                Cell::Text(r.team.clone()),
                Cell::Int(i128::from(r.ledger.total_tokens())),
                if r.bill_tokens_known {
                    Cell::Int(i128::from(r.bill.total_tokens()))
                } else {
                    Cell::Text("-".into())
                },
                if r.bill_tokens_known {
                    Cell::Int(tv)
                } else {
                    Cell::Text("-".into())
                },
                Cell::Money(cents(r.ledger.cost)),
                Cell::Money(format!(
                    "{}{}",
                    cents(r.bill.cost),
                    if r.bill_valued { "*" } else { "" }
                )),
                Cell::Money(cents(r.variance())),
                Cell::Text(pct(r)),
                Cell::Text(class_name(r).into()),
            ]
        })
        .collect();
    let mut h = header(rec);
    h.push(if all {
        "All rows:".into()
    } else {
        format!(
            "Flagged rows ({} of {}):",
            rec.flagged().count(),
            rec.rows.len()
        )
    });
    let t = Table {
        header: h,
        columns: [
            "provider",
            "model",
            "day",
            "key",
            "team",
            "ledger tokens",
            "bill tokens",
            "token var",
            "ledger",
            "bill",
            "variance",
            "var %",
            "class",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        total: None,
    };
    let mut s = tollgate_render::text(&t);
    let teams = Table {
        header: vec![String::new(), "Per team:".into()],
        columns: ["team", "ledger", "bill", "variance", "flagged rows"]
            .map(String::from)
            .to_vec(),
        rows: rec
            .teams
            .iter()
            .map(|t| {
                vec![
                    Cell::Text(if t.team.is_empty() {
                        "(no owner)".into()
                    } else {
                        t.team.clone()
                    }),
                    Cell::Money(cents(t.ledger)),
                    Cell::Money(cents(t.bill)),
                    Cell::Money(cents(t.variance())),
                    Cell::Int(i128::from(t.flagged_rows)),
                ]
            })
            .collect(),
        total: Some(vec![
            Cell::Text("total".into()),
            Cell::Money(cents(rec.ledger_total)),
            Cell::Money(cents(rec.bill_total)),
            Cell::Money(cents(rec.variance())),
            Cell::Int(rec.flagged().count() as i128),
        ]),
    };
    s.push_str(&tollgate_render::text(&teams));
    s.push_str("\nFlagged differences by class:\n");
    for c in Class::ALL {
        s.push_str(&format!("  {:<20} {}\n", c.as_str(), rec.count(c)));
    }
    if !rec.bill_other.is_empty() {
        s.push_str("Not compared (bill lines other than usage): ");
        let parts: Vec<String> = rec
            .bill_other
            .iter()
            .map(|(k, v)| format!("{k} {}", v.normalize()))
            .collect();
        s.push_str(&parts.join(", "));
        s.push('\n');
    }
    if rec.rows.iter().any(|r| r.bill_valued) {
        s.push_str(
            "* usage-only export: the bill's tokens valued at the rate in force on the day\n",
        );
    }
    Ok(s)
}

/// Every row as CSV, exact decimals.
pub fn csv_bytes(rec: &Reconciliation) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head: Vec<String> = ["provider", "model", "day", "key", "team"]
        .map(String::from)
        .to_vec();
    for c in CLASSES {
        head.push(format!("ledger_{c}"));
        head.push(format!("bill_{c}"));
    }
    head.extend(
        [
            "ledger_cost",
            "bill_cost",
            "bill_valued",
            "variance",
            "variance_pct",
            "flagged",
            "class",
            "note",
        ]
        .map(String::from),
    );
    w.write_record(&head)?;
    for r in &rec.rows {
        let mut rec_row = vec![
            r.key.provider.clone(),
            r.key.model.clone(),
            r.key.day.to_string(),
            r.key.key.clone(),
            r.team.clone(),
        ];
        for i in 0..5 {
            rec_row.push(r.ledger.tokens[i].to_string());
            rec_row.push(if r.bill_tokens_known {
                r.bill.tokens[i].to_string()
            } else {
                String::new()
            });
        }
        rec_row.extend([
            r.ledger.cost.normalize().to_string(),
            r.bill.cost.normalize().to_string(),
            r.bill_valued.to_string(),
            r.variance().normalize().to_string(),
            r.variance_pct()
                .map(|p| round_half_away(p, 4).normalize().to_string())
                .unwrap_or_default(),
            r.flagged.to_string(),
            class_name(r).to_string(),
            r.note.clone(),
        ]);
        w.write_record(&rec_row)?;
    }
    w.into_inner().context("CSV buffer")
}

pub fn json_value(rec: &Reconciliation) -> serde_json::Value {
    let n = |d: Decimal| d.normalize().to_string();
    let classes: serde_json::Map<String, serde_json::Value> = Class::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), json!(rec.count(*c))))
        .collect();
    json!({
        "period": rec.period,
        "bill_timezone": rec.bill_tz,
        "company_timezone": rec.company_tz,
        "currency": rec.currency,
        "thresholds": {"pct": n(rec.thresholds.pct), "amount": n(rec.thresholds.amount)},
        "providers": rec.providers.iter().map(|(p, g)| json!({"provider": p, "grain": g})).collect::<Vec<_>>(),
        "not_billed": rec.not_billed,
        "totals": {"ledger": n(rec.ledger_total), "bill": n(rec.bill_total), "variance": n(rec.variance())},
        "not_compared": rec.bill_other.iter().map(|(k, v)| (k.clone(), json!(n(*v)))).collect::<serde_json::Map<_, _>>(),
        "flagged": rec.flagged().count(),
        "classes": classes,
        "teams": rec.teams.iter().map(|t| json!({
            "team": t.team, "ledger": n(t.ledger), "bill": n(t.bill),
            "variance": n(t.variance()), "flagged_rows": t.flagged_rows,
        })).collect::<Vec<_>>(),
        "rows": rec.rows.iter().map(|r| {
            let tok = |s: &tollgate_finance::reconcile::Side, known: bool| -> serde_json::Value {
                if !known { return serde_json::Value::Null; }
                CLASSES.iter().enumerate().map(|(i, c)| (c.to_string(), json!(s.tokens[i]))).collect::<serde_json::Map<_, _>>().into()
            };
            json!({
                "provider": r.key.provider, "model": r.key.model, "day": r.key.day.to_string(),
                "key": r.key.key, "team": r.team,
                "ledger": {"tokens": tok(&r.ledger, true), "cost": n(r.ledger.cost), "unpriced_events": r.ledger_unpriced},
                "bill": {"tokens": tok(&r.bill, r.bill_tokens_known), "cost": n(r.bill.cost), "valued": r.bill_valued},
                "variance": n(r.variance()),
                "flagged": r.flagged, "class": r.class.map(Class::as_str), "note": r.note,
            })
        }).collect::<Vec<_>>(),
    })
}

/// The one-page variance report for the weekly review: totals, the teams, the classes with
/// their largest rows.
pub fn variance_report(rec: &Reconciliation) -> String {
    let mut s = String::new();
    s.push_str(&format!("VARIANCE REPORT {}\n", rec.period));
    s.push_str(&"=".repeat(72));
    s.push('\n');
    for h in header(rec) {
        s.push_str(&h);
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&format!(
        "Ledger {:>14}   Bills {:>14}   Variance {:>14} {}\n",
        cents(rec.ledger_total),
        cents(rec.bill_total),
        cents(rec.variance()),
        rec.currency
    ));
    s.push_str(&format!(
        "{} of {} rows flagged\n\n",
        rec.flagged().count(),
        rec.rows.len()
    ));
    s.push_str("Teams with a variance\n");
    for t in rec.teams.iter().filter(|t| !t.variance().is_zero()) {
        s.push_str(&format!(
            "  {:<22} ledger {:>12}  bill {:>12}  variance {:>12}\n",
            if t.team.is_empty() {
                "(no owner)"
            } else {
                &t.team
            },
            cents(t.ledger),
            cents(t.bill),
            cents(t.variance())
        ));
    }
    s.push_str("\nExplained differences (the three largest rows of each)\n");
    for c in Class::ALL {
        let mut rows: Vec<&Row> = rec.flagged().filter(|r| r.class == Some(c)).collect();
        if rows.is_empty() {
            continue;
        }
        let sum: Decimal = rows.iter().map(|r| r.variance()).sum();
        s.push_str(&format!(
            "  {} — {} rows, {} {}\n",
            c.as_str(),
            rows.len(),
            cents(sum),
            rec.currency
        ));
        rows.sort_by(|a, b| {
            b.variance()
                .abs()
                .cmp(&a.variance().abs())
                .then(a.key.cmp(&b.key))
        });
        for r in rows.iter().take(3) {
            s.push_str(&format!(
                "      {} {} {} {}: {} ({})\n",
                r.key.day,
                r.key.provider,
                r.key.model,
                r.key.key,
                cents(r.variance()),
                r.note
            ));
        }
    }
    s
}

/// The variance report for `path`: a one-page PDF for `.pdf`, else text.
pub fn report_bytes(rec: &Reconciliation, path: &std::path::Path) -> Result<Vec<u8>> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pdf"))
    {
        Ok(tollgate_pdf::variance::render(rec)?)
    } else {
        Ok(variance_report(rec).into_bytes())
    }
}

pub fn run(ctx: &Ctx, a: &ReconcileArgs) -> Result<()> {
    if a.format == Format::Xlsx {
        bail!("--format xlsx: reconciliation is offered as table, csv or json");
    }
    let rec = build(ctx, a)?;
    if let Some(p) = &a.report {
        write_atomic(p, &report_bytes(&rec, p)?)?;
    }
    let bytes = match a.format {
        Format::Csv => csv_bytes(&rec)?,
        Format::Json => {
            format!("{}\n", serde_json::to_string_pretty(&json_value(&rec))?).into_bytes()
        }
        _ => table_text(&rec, a.all)?.into_bytes(),
    };
    emit(a.out.as_deref(), &bytes, false)
}
