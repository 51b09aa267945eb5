//! `tollgate report summary`: the monthly summary table (seed 002).

use std::path::PathBuf;

use anyhow::{Result, bail};
use jiff::Timestamp;
use tollgate_core::Period;
use tollgate_finance::summary::{self, RowKind, SummaryReport};
use tollgate_render::{Cell, Table};

use crate::Ctx;
use crate::output::{Format, emit};

#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// Monthly summary: usage and cost per team, service, model, ... with a total row.
    Summary(SummaryArgs),
    /// Standing finance reports: daily, features, tenants, users (Pareto), budgets.
    Finance(crate::cmd_finance::FinanceArgs),
    /// Weekly digest for engineering, as Slack Block Kit JSON (or posted with --post).
    Digest(crate::cmd_digest::DigestArgs),
    /// Audit CSV: one line per call in [--from, --to), no prompt content, exact costs.
    Audit(crate::cmd_audit::AuditArgs),
    /// FinOps FOCUS 1.3 Cost and Usage CSV for a month: tokens as ConsumedQuantity, per day,
    /// model, token class and attribution.
    Focus(crate::cmd_focus::FocusArgs),
    /// The CFO's monthly PDF: total and changes, providers, top 10 features, trends and alerts.
    Cfo(crate::cmd_cfo::CfoArgs),
    /// Attribution gaps: share of calls missing each required field, per service and per key.
    Attribution(crate::cmd_attribution::AttributionArgs),
}

#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// Reporting period: a month YYYY-MM (also YYYY-Www or YYYY-MM-DD).
    #[arg(long)]
    pub period: String,
    /// IANA time zone of the period (default: config reporting.timezone, else UTC).
    #[arg(long)]
    pub tz: Option<String>,
    /// Dimensions, comma-separated: team, service, feature, model, provider, tenant,
    /// environment, cost_center (and price_version).
    #[arg(long, default_value = "team,service,model,provider")]
    pub by: String,
    /// Report currency (converted from USD at one fixed rate; see --fx-rate).
    #[arg(long)]
    pub currency: Option<String>,
    /// Units of --currency per USD, for the whole period (default: config reporting.fx).
    #[arg(long)]
    pub fx_rate: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write here instead of stdout (atomically).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Builds the summary report described by `a`.
pub fn build_summary(ctx: &Ctx, a: &SummaryArgs, now: Timestamp) -> Result<SummaryReport> {
    let tz = a.tz.clone().unwrap_or_else(|| ctx.config.timezone.clone());
    let period = Period::parse(&a.period, &tz).map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    let dims = summary::parse_dims(&a.by)?;
    let (currency, fx) =
        crate::fx::resolve(ctx, a.currency.as_deref(), a.fx_rate.as_deref(), &period)?;
    let ledger = crate::cmd_ledger::open_read_only(ctx)?;
    let report = summary::build(
        &*ledger,
        &summary::SummaryOptions {
            period,
            dims,
            fx,
            exported_at: now,
        },
    )?;
    if let Some(c) = currency
        && report.currency != c
    {
        bail!(
            "the ledger's costs for {} are in {}, not {c}; pass --fx-rate to convert",
            report.period.label(),
            report.currency
        );
    }
    Ok(report)
}

/// The report as a renderable table.
pub fn summary_table(r: &SummaryReport) -> Table {
    let mut t = Table {
        header: r.header_lines(),
        columns: r.columns(),
        ..Table::default()
    };
    let measures = |tot: &tollgate_ledger::Totals| {
        [
            tot.requests,
            tot.input_tokens,
            tot.cache_read_tokens,
            tot.cache_write_tokens,
            tot.cache_write_1h_tokens,
            tot.output_tokens,
        ]
        .into_iter()
        .map(|v| Cell::Int(i128::from(v)))
        .collect::<Vec<_>>()
    };
    for row in &r.rows {
        let mut cells: Vec<Cell> = row
            .keys
            .iter()
            .map(|k| {
                if k.is_empty() {
                    Cell::Text("(none)".into())
                } else {
                    Cell::Text(k.clone())
                }
            })
            .collect();
        cells.push(Cell::Text(
            if row.estimated && row.kind != RowKind::Unpriced {
                format!("{} (estimated)", row.kind.label())
            } else {
                row.kind.label().to_string()
            },
        ));
        cells.extend(measures(&row.totals));
        cells.push(match row.cost {
            Some(c) => Cell::Money(c.to_string()),
            None => Cell::Text("unpriced".into()),
        });
        t.rows.push(cells);
    }
    let mut total: Vec<Cell> = vec![Cell::Text("TOTAL".into())];
    total.extend((1..r.dims.len()).map(|_| Cell::Empty));
    if r.dims.is_empty() {
        total.clear();
        total.push(Cell::Text("TOTAL".into()));
    } else {
        total.push(Cell::Empty);
    }
    total.extend(measures(&r.total));
    total.push(Cell::Money(r.total_cost.to_string()));
    t.total = Some(total);
    t
}

pub fn run(ctx: &Ctx, cmd: &ReportCommand) -> Result<()> {
    match cmd {
        ReportCommand::Summary(a) => {
            let r = build_summary(ctx, a, Timestamp::now())?;
            write_summary(&r, a.format, a.out.as_deref())
        }
        ReportCommand::Digest(a) => crate::cmd_digest::run(ctx, a),
        ReportCommand::Finance(a) => crate::cmd_finance::run(ctx, a),
        ReportCommand::Audit(a) => crate::cmd_audit::run(ctx, a).map(|_| ()),
        ReportCommand::Focus(a) => crate::cmd_focus::run(ctx, a),
        ReportCommand::Cfo(a) => crate::cmd_cfo::run(ctx, a),
        ReportCommand::Attribution(a) => crate::cmd_attribution::report(ctx, a),
    }
}

/// Renders and writes a summary in one format.
pub fn write_summary(
    r: &SummaryReport,
    format: Format,
    out: Option<&std::path::Path>,
) -> Result<()> {
    match format {
        Format::Table => emit(
            out,
            tollgate_render::text(&summary_table(r)).as_bytes(),
            false,
        ),
        Format::Csv => emit(out, &tollgate_render::csv(&summary_table(r), true)?, false),
        Format::Json => emit(
            out,
            format!("{}\n", serde_json::to_string_pretty(&r.to_json())?).as_bytes(),
            false,
        ),
        Format::Xlsx => emit(
            out,
            &tollgate_render::xlsx(&summary_table(r), "Summary", r.currency.minor_units())?,
            true,
        ),
    }
}
