//! Chargeback: `tollgate allocate` (shared costs to teams, issue #5 item 6) and
//! `tollgate journal` (the ERP journal per cost center, item 8). Both read the booked figures
//! of `tollgate books` (cmd_close.rs). See docs/close.md.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use rust_decimal::Decimal;
use tollgate_core::Currency;
use tollgate_core::money::round_half_away;
use tollgate_finance::allocation::{Method, allocate};
use tollgate_finance::close::close_in_force;
use tollgate_ledger::Adjustment;

use crate::Ctx;
use crate::cmd_close::{booked, team_cost_center};
use crate::cmd_refdata::who;
use crate::output::{emit, outln};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AllocMethod {
    /// By each team's own usage cost in the period.
    Usage,
    /// Evenly among the teams (`--teams`, else every team with usage).
    Even,
    /// By fixed percentages (`--shares team=60,team=40`).
    Fixed,
}

#[derive(Debug, clap::Args)]
pub struct AllocateArgs {
    #[arg(long)]
    period: String,
    #[arg(long, value_enum)]
    method: AllocMethod,
    /// The team whose cost is shared (default: usage without a team).
    #[arg(long, default_value = "")]
    pool: String,
    /// Teams to share among (even; default every team with usage).
    #[arg(long, value_delimiter = ',')]
    teams: Vec<String>,
    /// Fixed shares: team=percent,... adding up to 100.
    #[arg(long, value_delimiter = ',')]
    shares: Vec<String>,
    #[arg(long)]
    by: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct JournalArgs {
    #[arg(long)]
    period: String,
    /// The reporting currency (default the ledger's, USD).
    #[arg(long)]
    currency: Option<String>,
    /// Units of --currency per USD (default: [[reporting.fx]] of the period).
    #[arg(long)]
    fx_rate: Option<String>,
    /// Account debited at each cost center.
    #[arg(long, default_value = "LLM-USAGE")]
    expense_account: String,
    /// Account credited for the total (what the providers are paid from).
    #[arg(long, default_value = "LLM-CLEARING")]
    clearing_account: String,
    /// Cost center of the clearing line.
    #[arg(long, default_value = "CLEARING")]
    clearing_cost_center: String,
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn pool_label(pool: &str) -> &str {
    if pool.is_empty() {
        "usage without a team"
    } else {
        pool
    }
}

pub fn allocate_cmd(ctx: &Ctx, a: &AllocateArgs) -> Result<()> {
    let mut l = crate::cmd_ledger::open(ctx)?;
    let log = l.period_actions(None)?;
    if close_in_force(&log, &a.period).is_some() {
        bail!(
            "{} is closed: nothing lands in it any more; reopen it with a reason first",
            a.period
        );
    }
    let b = booked(ctx, &*l, &a.period, None)?;
    let remaining: Decimal = b
        .lines
        .iter()
        .filter(|x| x.team == a.pool)
        .map(|x| x.amount)
        .sum();
    if remaining.is_zero() {
        outln!(
            "{}: nothing left to allocate for {} (already allocated, or no cost)",
            a.period,
            pool_label(&a.pool)
        );
        return Ok(());
    }
    let mut usage: BTreeMap<String, Decimal> = BTreeMap::new();
    for x in b
        .lines
        .iter()
        .filter(|x| x.team != a.pool && x.kind == "usage")
    {
        *usage.entry(x.team.clone()).or_default() += x.amount;
    }
    let method = match a.method {
        AllocMethod::Usage => {
            Method::UsageShare(usage.into_iter().filter(|(t, _)| !t.is_empty()).collect())
        }
        AllocMethod::Even => Method::Even(if a.teams.is_empty() {
            usage.into_keys().filter(|t| !t.is_empty()).collect()
        } else {
            a.teams.clone()
        }),
        AllocMethod::Fixed => {
            let mut v = Vec::new();
            for s in &a.shares {
                let (t, p) = s.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!("--shares {s:?}: write team=percent, e.g. team-search=60")
                })?;
                let p = tollgate_core::money::parse_decimal("share", p)
                    .map_err(|_| anyhow::anyhow!("--shares {s:?}: {p:?} is not a number"))?;
                v.push((t.to_string(), p));
            }
            Method::Fixed(v)
        }
    };
    let parts = allocate(remaining, &method, 2).map_err(|e| anyhow::anyhow!("allocate: {e}"))?;
    let exact_total: Decimal = parts.iter().map(|p| p.1).sum();
    let by = who(a.by.as_deref());
    let method_name = format!("{:?}", a.method).to_lowercase();
    let reason = format!(
        "shared cost of {} allocated by {method_name}",
        pool_label(&a.pool)
    );
    let mut rows = Vec::new();
    for (team, part) in &parts {
        rows.push((
            team.clone(),
            team_cost_center(ctx, &*l, &a.period, team)?,
            *part,
        ));
    }
    let pool_cc = team_cost_center(ctx, &*l, &a.period, &a.pool)?;
    let mut w = l.writer()?;
    let adj = |team: &str, cc: Option<String>, amount: Decimal| Adjustment {
        period: a.period.clone(),
        kind: "allocation".into(),
        team_id: team.to_string(),
        cost_center: cc,
        amount: amount.normalize().to_string(),
        currency: "USD".into(),
        reason: reason.clone(),
        approver: None,
        requested_by: by.clone(),
        source: Some(format!("pool:{}", a.pool)),
        detail: None,
    };
    // The pool gives away exactly what the teams receive (the total rounded to the cent).
    w.record_adjustment(&adj(&a.pool, pool_cc, -exact_total))?;
    for (team, cc, part) in &rows {
        w.record_adjustment(&adj(team, cc.clone(), *part))?;
    }
    w.commit()?;
    outln!(
        "{}: {} of {} allocated by {method_name}:",
        a.period,
        exact_total,
        pool_label(&a.pool)
    );
    for (team, _, part) in &rows {
        outln!("  {team:<24} {part:>12}");
    }
    Ok(())
}

/// One journal line: (cost center, account, debit, credit, memo).
pub type JournalLine = (String, String, Decimal, Decimal, String);

/// The journal lines, in the reporting currency.
pub fn journal_lines(
    per_cc: &BTreeMap<String, Decimal>,
    rate: Decimal,
    dp: u32,
    a: &JournalArgs,
) -> Result<Vec<JournalLine>> {
    let converted: Vec<(String, Decimal)> = per_cc
        .iter()
        .map(|(cc, v)| (cc.clone(), *v * rate))
        .collect();
    let total: Decimal = converted.iter().map(|c| c.1).sum();
    // Largest remainder when no cost center is negative: the lines add up to the total rounded
    // once. Otherwise each line is rounded and the clearing line balances them.
    let rounded: Vec<(String, Decimal)> =
        if converted.iter().all(|c| c.1 >= Decimal::ZERO) && !total.is_zero() {
            allocate(total, &Method::UsageShare(converted.clone()), dp)
                .map_err(|e| anyhow::anyhow!("{e}"))?
        } else {
            converted
                .iter()
                .map(|(cc, v)| (cc.clone(), round_half_away(*v, dp)))
                .collect()
        };
    let mut out = Vec::new();
    let mut net = Decimal::ZERO;
    for (cc, v) in rounded {
        net += v;
        let (d, c) = if v >= Decimal::ZERO {
            (v, Decimal::ZERO)
        } else {
            (Decimal::ZERO, -v)
        };
        out.push((
            if cc.is_empty() {
                "UNASSIGNED".into()
            } else {
                cc
            },
            a.expense_account.clone(),
            d,
            c,
            format!("LLM usage chargeback {}", a.period),
        ));
    }
    let (d, c) = if net >= Decimal::ZERO {
        (Decimal::ZERO, net)
    } else {
        (-net, Decimal::ZERO)
    };
    out.push((
        a.clearing_cost_center.clone(),
        a.clearing_account.clone(),
        d,
        c,
        format!("LLM providers {}", a.period),
    ));
    Ok(out)
}

pub fn journal(ctx: &Ctx, a: &JournalArgs) -> Result<()> {
    let l = crate::cmd_ledger::open_read_only(ctx)?;
    let b = booked(ctx, &*l, &a.period, None)?;
    let currency = match &a.currency {
        Some(c) => Currency::parse(c).map_err(|e| anyhow::anyhow!("--currency: {e}"))?,
        None => Currency::USD,
    };
    let rate = match (&a.fx_rate, currency == Currency::USD) {
        (Some(r), _) => tollgate_core::money::parse_decimal("fx-rate", r)
            .map_err(|_| anyhow::anyhow!("--fx-rate {r:?}: not a number"))?,
        (None, true) => Decimal::ONE,
        (None, false) => {
            ctx.config
                .fx_for(&a.period, currency)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no FX rate for {currency} in {}: pass --fx-rate or add [[reporting.fx]]",
                        a.period
                    )
                })?
                .rate
        }
    };
    if rate <= Decimal::ZERO {
        bail!("--fx-rate: must be above zero");
    }
    let mut per_cc: BTreeMap<String, Decimal> = BTreeMap::new();
    for x in &b.lines {
        *per_cc.entry(x.cost_center.clone()).or_default() += x.amount;
    }
    per_cc.retain(|_, v| !v.is_zero());
    let lines = journal_lines(&per_cc, rate, currency.minor_units(), a)?;
    // Dated the period's last day.
    let last = tollgate_core::Period::parse(&a.period, &ctx.config.timezone)
        .map_err(|e| anyhow::anyhow!("--period: {e}"))?
        .shifted(1)?
        .first_day()
        .yesterday()?
        .to_string();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "journal_id",
        "date",
        "period",
        "line",
        "cost_center",
        "account",
        "debit",
        "credit",
        "currency",
        "memo",
    ])?;
    let id = format!("LLM-{}", a.period);
    for (i, (cc, acct, d, c, memo)) in lines.iter().enumerate() {
        let f = |v: &Decimal| {
            let mut v = *v;
            v.rescale(currency.minor_units());
            v.to_string()
        };
        w.write_record([
            id.as_str(),
            last.as_str(),
            a.period.as_str(),
            &(i + 1).to_string(),
            cc,
            acct,
            &f(d),
            &f(c),
            currency.as_str(),
            memo,
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    emit(a.out.as_deref(), &bytes, false)?;
    if let Some(p) = &a.out {
        let debits: Decimal = lines.iter().map(|l| l.2).sum();
        outln!(
            "{}: {} lines; debits = credits = {} {} (booked total {} USD{}); {}",
            a.period,
            lines.len(),
            debits,
            currency,
            b.total().normalize(),
            if b.closed { ", closed" } else { ", open" },
            p.display()
        );
    }
    Ok(())
}
