//! `tollgate audit-trace FILE` (is one event or trace defensible for chargeback?) and
//! `tollgate report attribution --period P` (missing-field rates per service and per key).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tollgate_ledger::SqlValue;
use tollgate_render::{Cell, Table};

use crate::Ctx;
use crate::output::{Format, emit, outln};

#[derive(Debug, clap::Args)]
pub struct AuditTraceArgs {
    /// One event (JSON), events as JSONL, or an OTLP/JSON trace; `-` reads stdin.
    file: String,
    /// table or json.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn audit_trace(a: &AuditTraceArgs) -> Result<()> {
    let text = if a.file == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file))?
    };
    let verdicts = tollgate_gateway::audit::audit_text(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file))?;
    let failed = verdicts.iter().filter(|v| !v.ok()).count();
    match a.format {
        Format::Json => {
            let v: Vec<serde_json::Value> = verdicts
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "record": v.label,
                        "defensible": v.ok(),
                        "missing": v.problems().iter().map(|c| serde_json::json!({
                            "group": c.group, "field": c.field, "value": c.value,
                            "problem": c.problem})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        _ => {
            for v in &verdicts {
                if v.ok() {
                    outln!(
                        "{}: defensible (who, what, where, how much, price version)",
                        v.label
                    );
                } else {
                    outln!("{}: NOT defensible", v.label);
                    for c in v.problems() {
                        outln!(
                            "  {:<14} {:<19} {}",
                            c.group,
                            c.field,
                            c.problem.as_deref().unwrap_or("")
                        );
                    }
                }
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} record(s) lack what a defensible chargeback needs",
            verdicts.len()
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct AttributionArgs {
    /// Reporting period: a month YYYY-MM (also YYYY-Www or YYYY-MM-DD).
    #[arg(long)]
    period: String,
    /// IANA time zone of the period (default: config reporting.timezone, else UTC).
    #[arg(long)]
    tz: Option<String>,
    /// table, csv or json.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Write here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Missing-field rates per service and per key over a period.
pub fn report(ctx: &Ctx, a: &AttributionArgs) -> Result<()> {
    let tz = a.tz.clone().unwrap_or_else(|| ctx.config.timezone.clone());
    let period = tollgate_core::Period::parse(&a.period, &tz)
        .map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    let ledger = crate::cmd_ledger::open_read_only(ctx)?;
    // The same query on either backend; only how an instant is written differs (SQLite
    // stores one fixed text format, so text comparison orders them; ClickHouse compares
    // DateTime64 values and reads events FINAL, so unmerged duplicates never count).
    let (events, start, end) = if ctx.config.clickhouse.is_some() {
        let lit = |t| {
            format!(
                "toDateTime64('{}', 6, 'UTC')",
                tollgate_clickhouse::ledger::ch_instant(t)
            )
        };
        ("events FINAL", lit(period.start()), lit(period.end()))
    } else {
        let lit = |t| format!("'{}'", tollgate_core::event::format_instant(t));
        ("events", lit(period.start()), lit(period.end()))
    };
    let sql = format!(
        "SELECT * FROM (\
         SELECT 'service' AS by, COALESCE(service, '(none)') AS name, COUNT(*) AS calls, \
           SUM(team_id IS NULL) AS no_team, SUM(feature IS NULL) AS no_feature, \
           SUM(environment IS NULL) AS no_environment, SUM(api_key_id IS NULL) AS no_key, \
           SUM(attribution_status <> 'ok') AS not_ok \
         FROM {events} WHERE occurred_at >= {start} AND occurred_at < {end} GROUP BY 2 \
         UNION ALL \
         SELECT 'key', COALESCE(api_key_id, '(none)'), COUNT(*), SUM(team_id IS NULL), \
           SUM(feature IS NULL), SUM(environment IS NULL), SUM(api_key_id IS NULL), \
           SUM(attribution_status <> 'ok') \
         FROM {events} WHERE occurred_at >= {start} AND occurred_at < {end} GROUP BY 2) \
         ORDER BY 1 DESC, 2"
    );
    let t = ledger.query_sql(&sql)?;
    let int = |v: &SqlValue| match v {
        SqlValue::Integer(i) => *i,
        _ => 0,
    };
    let pct = |n: i64, d: i64| {
        if d == 0 {
            "0.0%".to_string()
        } else {
            // One decimal, half away from zero: (1000 n / d) rounded, in tenths of a percent.
            let tenths = (2000 * n + d) / (2 * d);
            format!("{}.{}%", tenths / 10, tenths % 10)
        }
    };
    let mut table = Table {
        header: vec![format!(
            "Attribution gaps, {} ({tz}): share of calls missing each field",
            period.label()
        )],
        columns: [
            "by",
            "name",
            "calls",
            "team",
            "feature",
            "environment",
            "api key",
            "not ok",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows: Vec::new(),
        total: None,
    };
    let mut json = Vec::new();
    for r in &t.rows {
        let calls = int(&r[2]);
        let by = r[0].to_string();
        let name = r[1].to_string();
        let mut row = vec![
            Cell::Text(by.clone()),
            Cell::Text(name.clone()),
            Cell::Int(calls.into()),
        ];
        let mut rates = serde_json::Map::new();
        for (i, f) in [
            "team_id",
            "feature",
            "environment",
            "api_key_id",
            "attribution_not_ok",
        ]
        .iter()
        .enumerate()
        {
            let n = int(&r[3 + i]);
            row.push(Cell::Text(pct(n, calls)));
            rates.insert(
                (*f).to_string(),
                serde_json::json!({"missing": n, "rate": pct(n, calls)}),
            );
        }
        table.rows.push(row);
        json.push(serde_json::json!({"by": by, "name": name, "calls": calls, "fields": rates}));
    }
    match a.format {
        Format::Json => emit(
            a.out.as_deref(),
            format!("{}\n", serde_json::to_string_pretty(&json)?).as_bytes(),
            false,
        ),
        Format::Csv => emit(
            a.out.as_deref(),
            &tollgate_render::csv(&table, true)?,
            false,
        ),
        Format::Table => emit(
            a.out.as_deref(),
            tollgate_render::text(&table).as_bytes(),
            false,
        ),
        Format::Xlsx => {
            bail!("--format xlsx: the attribution report is offered as table, csv or json")
        }
    }
}
