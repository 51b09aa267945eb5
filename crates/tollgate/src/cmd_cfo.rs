//! `tollgate report cfo`: the CFO's monthly PDF (four A4 pages; see `docs/cfo-report.md`).
//!
//! The model comes from `tollgate_finance::cfo` (exact, over the ledger's rollups), the PDF
//! from `tollgate_pdf::cfo`; the file is written atomically, so a failed run leaves none.

use std::path::PathBuf;

use anyhow::{Result, bail};
use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_core::money::parse_decimal;
use tollgate_core::period::PeriodKind;
use tollgate_core::{Currency, Period};
use tollgate_finance::cfo::{self, CfoOptions, CfoReport};
use tollgate_finance::summary::FxRule;

use crate::Ctx;
use crate::output::{outln, write_atomic};

#[derive(Debug, clap::Args)]
pub struct CfoArgs {
    /// The month, YYYY-MM (in --tz).
    #[arg(long)]
    pub period: String,
    /// Write the PDF here (atomically).
    #[arg(long, value_name = "FILE.pdf")]
    pub out: PathBuf,
    /// IANA time zone of the month and its days (default: config reporting.timezone, else UTC).
    #[arg(long)]
    pub tz: Option<String>,
    /// Report currency (converted from the ledger's USD at one fixed rate; see --fx-rate).
    #[arg(long)]
    pub currency: Option<String>,
    /// Units of --currency per USD for the whole month (default: config reporting.fx).
    #[arg(long)]
    pub fx_rate: Option<String>,
    /// Monthly spend target in the report currency, e.g. 50000.00; page 1 shows the percent
    /// of it.
    #[arg(long, value_name = "AMOUNT")]
    pub target: Option<String>,
}

/// The FX rule for `period`, from the flags or the config (the rule every report uses).
fn fx_rule(ctx: &Ctx, a: &CfoArgs, period: &Period) -> Result<(Option<Currency>, Option<FxRule>)> {
    crate::fx::resolve(ctx, a.currency.as_deref(), a.fx_rate.as_deref(), period)
}

/// Builds the report model described by `a`.
pub fn build(ctx: &Ctx, a: &CfoArgs, now: Timestamp) -> Result<CfoReport> {
    let tz = a.tz.clone().unwrap_or_else(|| ctx.config.timezone.clone());
    let period = Period::parse(&a.period, &tz).map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    if period.kind() != PeriodKind::Month {
        bail!(
            "--period {:?}: the CFO report covers a calendar month; give YYYY-MM",
            a.period
        );
    }
    let target = match &a.target {
        Some(t) => {
            let v = parse_decimal("--target", t)?;
            if v <= Decimal::ZERO {
                bail!("--target {t:?}: the monthly target must be above zero");
            }
            Some(v)
        }
        None => ctx.config.cfo_monthly_target,
    };
    let (currency, fx) = fx_rule(ctx, a, &period)?;
    let ledger = crate::cmd_ledger::open_read_only(ctx)?;
    let report = cfo::build(
        &*ledger,
        &CfoOptions {
            period,
            fx,
            target,
            generated_at: now,
        },
    )?;
    if report.month.is_empty() {
        bail!(
            "--period {}: no usage recorded in {} ({}, [{}, {}) UTC); nothing to report",
            a.period,
            report.period.label(),
            report.period.tz_name(),
            report.period.start(),
            report.period.end()
        );
    }
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

pub fn run(ctx: &Ctx, a: &CfoArgs) -> Result<()> {
    let report = build(ctx, a, Timestamp::now())?;
    let pdf = tollgate_pdf::cfo::render(&report)?;
    write_atomic(&a.out, &pdf)?;
    outln!(
        "wrote {}: CFO report {} ({}), total {} {}, {} pages",
        a.out.display(),
        report.period.label(),
        report.period.tz_name(),
        report.total_shown(),
        report.currency,
        tollgate_pdf::page_count(&pdf)
    );
    Ok(())
}
