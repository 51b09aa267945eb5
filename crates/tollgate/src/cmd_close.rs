//! Month-end close: `tollgate close`, `tollgate reopen`, `tollgate adjust`, `tollgate books`
//! (model: `tollgate_finance::close`; reference: docs/close.md). Every action is a new row with
//! who, when and why; nothing is edited in place.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::json;
use tollgate_core::Period;
use tollgate_core::event::format_instant;
use tollgate_finance::close::{
    Booked, BookedLine, adjustment_lines, close_in_force, late_sources, next_open,
};
use tollgate_ledger::{Adjustment, Dim, Ledger, PeriodAction, SummaryQuery, TeamUsage};
use tollgate_render::{Cell, Table};

use crate::Ctx;
use crate::cmd_refdata::who;
use crate::output::{Format, outln};

/// How far back late events of closed periods are looked for.
const LOOKBACK_MONTHS: i32 = 12;

#[derive(Debug, clap::Args)]
pub struct CloseArgs {
    #[arg(long)]
    period: String,
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    by: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ReopenArgs {
    #[arg(long)]
    period: String,
    /// Why (required; logged).
    #[arg(long)]
    reason: String,
    #[arg(long)]
    by: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct AdjustArgs {
    #[arg(long)]
    period: String,
    #[arg(long)]
    team: String,
    /// The amount (negative for a credit), exact decimal.
    #[arg(long, allow_hyphen_values = true)]
    amount: String,
    #[arg(long)]
    reason: String,
    /// The approving key: an `approver` in the reference data.
    #[arg(long)]
    approver: String,
    /// Default: the team's cost center in the period's usage, else the reference data.
    #[arg(long)]
    cost_center: Option<String>,
    #[arg(long, default_value = "USD")]
    currency: String,
    #[arg(long)]
    by: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct BooksArgs {
    #[arg(long)]
    period: String,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

fn check_period(p: &str) -> Result<()> {
    tollgate_finance::close::shift_month(p, 0).map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    Ok(())
}

/// Usage of `[start, end)` per team and cost center, from the summary (priced cost).
fn usage_lines(l: &dyn Ledger, p: &Period) -> Result<Vec<TeamUsage>> {
    let rows = l.summarize(&SummaryQuery::new(
        p.start(),
        p.end(),
        vec![Dim::Team, Dim::CostCenter],
    ))?;
    Ok(rows
        .into_iter()
        .map(|r| TeamUsage {
            team_id: r.keys[0].clone(),
            cost_center: r.keys[1].clone(),
            totals: r.totals,
        })
        .collect())
}

/// `a - b` per (team, cost center).
fn minus(a: Vec<TeamUsage>, b: &[TeamUsage]) -> Vec<TeamUsage> {
    a.into_iter()
        .map(|mut u| {
            if let Some(x) = b
                .iter()
                .find(|x| x.team_id == u.team_id && x.cost_center == u.cost_center)
            {
                u.totals.cost_e12 -= x.totals.cost_e12;
                u.totals.requests -= x.totals.requests.min(u.totals.requests);
            }
            u
        })
        .filter(|u| u.totals.requests > 0 || u.totals.cost_e12 != 0)
        .collect()
}

/// The booked figures of `period`: the snapshot when closed, else live figures including the
/// events ingested up to `as_of` (all when None).
pub fn booked(ctx: &Ctx, l: &dyn Ledger, period: &str, as_of: Option<&str>) -> Result<Booked> {
    let log = l.period_actions(None)?;
    if let Some(c) = close_in_force(&log, period) {
        let snap = c.action.snapshot.as_deref().ok_or_else(|| {
            anyhow::anyhow!("the close of {period} (log id {}) has no snapshot", c.id)
        })?;
        return Ok(Booked::from_json(snap)?);
    }
    let tz = &ctx.config.timezone;
    let p = Period::parse(period, tz).map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    let mut lines = Vec::new();
    let mut usage = usage_lines(l, &p)?;
    if let Some(c) = as_of {
        usage = minus(usage, &l.usage_ingested_after(p.start(), p.end(), c)?);
    }
    for u in usage {
        lines.push(BookedLine {
            team: u.team_id,
            cost_center: u.cost_center,
            kind: "usage".into(),
            source_period: None,
            amount: tollgate_core::money::from_scaled_e12(u.totals.cost_e12)?,
            note: format!("{} calls", u.totals.requests),
        });
    }
    for (src, cutoff) in late_sources(&log, period, LOOKBACK_MONTHS)? {
        let sp = Period::parse(&src, tz).map_err(|e| anyhow::anyhow!("{src}: {e}"))?;
        let mut late = l.usage_ingested_after(sp.start(), sp.end(), &cutoff)?;
        if let Some(c) = as_of {
            late = minus(late, &l.usage_ingested_after(sp.start(), sp.end(), c)?);
        }
        for u in late {
            lines.push(BookedLine {
                team: u.team_id,
                cost_center: u.cost_center,
                kind: "late".into(),
                source_period: Some(src.clone()),
                amount: tollgate_core::money::from_scaled_e12(u.totals.cost_e12)?,
                note: format!(
                    "{} late calls of {src} (closed; ingested after {cutoff})",
                    u.totals.requests
                ),
            });
        }
    }
    lines.extend(adjustment_lines(&l.adjustments(Some(period))?)?);
    Ok(Booked {
        period: period.to_string(),
        currency: "USD".into(),
        closed: false,
        cutoff: as_of.map(String::from),
        lines,
    })
}

pub fn close(ctx: &Ctx, a: &CloseArgs) -> Result<()> {
    check_period(&a.period)?;
    let mut l = crate::cmd_ledger::open(ctx)?;
    let log = l.period_actions(Some(&a.period))?;
    if let Some(c) = close_in_force(&log, &a.period) {
        bail!(
            "{} is already closed (by {} at {}); `tollgate reopen --period {} --reason ...` first",
            a.period,
            c.action.by,
            c.at,
            a.period
        );
    }
    // The cut-off: events ingested up to now are in the snapshot, later ones are late.
    let cutoff = format_instant(Timestamp::now());
    let mut b = booked(ctx, &*l, &a.period, Some(&cutoff))?;
    b.closed = true;
    let by = who(a.by.as_deref());
    let mut w = l.writer()?;
    w.record_period_action(&PeriodAction {
        period: a.period.clone(),
        action: "close".into(),
        reason: a.reason.clone(),
        by: by.clone(),
        snapshot: Some(b.to_json()?),
    })?;
    w.commit()?;
    outln!(
        "{} closed by {by}: {} booked lines, total {} {} (events ingested up to {cutoff}; later ones go to the next open period as late)",
        a.period,
        b.lines.len(),
        b.total().normalize(),
        b.currency
    );
    Ok(())
}

pub fn reopen(ctx: &Ctx, a: &ReopenArgs) -> Result<()> {
    check_period(&a.period)?;
    if a.reason.trim().is_empty() {
        bail!("--reason: say why the period is reopened (it is logged)");
    }
    let mut l = crate::cmd_ledger::open(ctx)?;
    let log = l.period_actions(Some(&a.period))?;
    if close_in_force(&log, &a.period).is_none() {
        bail!("{} is not closed; nothing to reopen", a.period);
    }
    let by = who(a.by.as_deref());
    let mut w = l.writer()?;
    w.record_period_action(&PeriodAction {
        period: a.period.clone(),
        action: "reopen".into(),
        reason: Some(a.reason.clone()),
        by: by.clone(),
        snapshot: None,
    })?;
    w.commit()?;
    outln!("{} reopened by {by}: {}", a.period, a.reason);
    Ok(())
}

pub fn adjust(ctx: &Ctx, a: &AdjustArgs) -> Result<()> {
    check_period(&a.period)?;
    let amount = tollgate_core::money::parse_decimal("amount", &a.amount)
        .map_err(|_| anyhow::anyhow!("--amount {:?}: not a decimal number", a.amount))?;
    if amount.is_zero() {
        bail!("--amount: zero changes nothing");
    }
    let currency = tollgate_core::Currency::parse(&a.currency)
        .map_err(|e| anyhow::anyhow!("--currency: {e}"))?;
    if a.reason.trim().is_empty() {
        bail!("--reason: say why (it is logged)");
    }
    let mut l = crate::cmd_ledger::open(ctx)?;
    let refdata = l.refdata(None)?;
    let approver = refdata
        .iter()
        .find(|r| r.entry.kind == "approver" && r.entry.key == a.approver);
    match approver {
        Some(r) if r.entry.role.as_deref() == Some("approver") => {}
        _ => bail!(
            "--approver {:?}: not a key with the approver role in the reference data; add it with `tollgate refdata set approver {} --by WHO`",
            a.approver,
            a.approver
        ),
    }
    let log = l.period_actions(None)?;
    if let Some(c) = close_in_force(&log, &a.period) {
        bail!(
            "{} is closed (by {} at {}): nothing lands in it any more; book the adjustment in {} (the next open period) or reopen {} with a reason",
            a.period,
            c.action.by,
            c.at,
            next_open(&log, &a.period)?,
            a.period
        );
    }
    let cost_center = match &a.cost_center {
        Some(c) => Some(c.clone()),
        None => team_cost_center(ctx, &*l, &a.period, &a.team)?,
    };
    // The same adjustment again (period, team, amount, currency, reason, approver) is not
    // recorded twice: re-running the command changes nothing.
    if let Some(r) = l.adjustments(Some(&a.period))?.iter().find(|r| {
        let x = &r.adjustment;
        x.kind == "adjustment"
            && x.team_id == a.team
            && x.amount == amount.normalize().to_string()
            && x.currency == currency.as_str()
            && x.reason == a.reason
            && x.approver.as_deref() == Some(a.approver.as_str())
    }) {
        outln!(
            "adjustment #{}: already recorded (at {}); nothing changed (use another --reason for a second one)",
            r.id,
            r.recorded_at
        );
        return Ok(());
    }
    let by = who(a.by.as_deref());
    let mut w = l.writer()?;
    let id = w.record_adjustment(&Adjustment {
        period: a.period.clone(),
        kind: "adjustment".into(),
        team_id: a.team.clone(),
        cost_center,
        amount: amount.normalize().to_string(),
        currency: currency.as_str().to_string(),
        reason: a.reason.clone(),
        approver: Some(a.approver.clone()),
        requested_by: by.clone(),
        source: None,
        detail: None,
    })?;
    w.commit()?;
    outln!(
        "adjustment #{id}: {} {} {} for {} in {}, approved by {}, recorded by {by}",
        if amount < Decimal::ZERO {
            "credit"
        } else {
            "charge"
        },
        amount.normalize(),
        currency,
        a.team,
        a.period,
        a.approver
    );
    Ok(())
}

/// The cost center of a team: from its usage in the period, else from the reference data.
pub fn team_cost_center(
    ctx: &Ctx,
    l: &dyn Ledger,
    period: &str,
    team: &str,
) -> Result<Option<String>> {
    let p = Period::parse(period, &ctx.config.timezone)?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for u in usage_lines(l, &p)? {
        if u.team_id == team && !u.cost_center.is_empty() {
            *counts.entry(u.cost_center).or_default() += u.totals.requests;
        }
    }
    if let Some((cc, _)) = counts.iter().max_by_key(|(_, n)| **n) {
        return Ok(Some(cc.clone()));
    }
    Ok(l.refdata(None)?
        .into_iter()
        .find(|r| r.entry.team_id.as_deref() == Some(team) && r.entry.cost_center.is_some())
        .and_then(|r| r.entry.cost_center))
}

pub fn books(ctx: &Ctx, a: &BooksArgs) -> Result<()> {
    check_period(&a.period)?;
    let l = crate::cmd_ledger::open_read_only(ctx)?;
    let b = booked(ctx, &*l, &a.period, None)?;
    let log = l.period_actions(Some(&a.period))?;
    match a.format {
        Format::Json => {
            let doc = json!({
                "period": b.period, "closed": b.closed, "cutoff": b.cutoff,
                "currency": b.currency, "total": b.total().normalize().to_string(),
                "lines": b.lines.iter().map(|x| json!({
                    "team": x.team, "cost_center": x.cost_center, "kind": x.kind,
                    "source_period": x.source_period, "amount": x.amount.normalize().to_string(),
                    "note": x.note,
                })).collect::<Vec<_>>(),
                "log": log.iter().map(|r| json!({
                    "action": r.action.action, "by": r.action.by, "at": r.at,
                    "reason": r.action.reason,
                })).collect::<Vec<_>>(),
            });
            outln!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Table => {
            let mut header = vec![format!(
                "Books {}: {} ({})",
                b.period,
                if b.closed { "closed" } else { "open" },
                b.currency
            )];
            for r in &log {
                header.push(format!(
                    "  {} by {} at {}{}",
                    r.action.action,
                    r.action.by,
                    r.at,
                    r.action
                        .reason
                        .as_deref()
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                ));
            }
            let t = Table {
                header,
                columns: ["team", "cost center", "kind", "from", "amount", "note"]
                    .map(String::from)
                    .to_vec(),
                rows: b
                    .lines
                    .iter()
                    .map(|x| {
                        vec![
                            Cell::Text(x.team.clone()),
                            Cell::Text(x.cost_center.clone()),
                            Cell::Text(x.kind.clone()),
                            Cell::Text(x.source_period.clone().unwrap_or_default()),
                            Cell::Money(
                                tollgate_core::money::round_half_away(x.amount, 2).to_string(),
                            ),
                            Cell::Text(x.note.clone()),
                        ]
                    })
                    .collect(),
                total: Some(vec![
                    Cell::Text("total".into()),
                    Cell::Empty,
                    Cell::Empty,
                    Cell::Empty,
                    Cell::Money(tollgate_core::money::round_half_away(b.total(), 2).to_string()),
                    Cell::Empty,
                ]),
            };
            crate::output::out!("{}", tollgate_render::text(&t));
        }
        other => bail!(
            "--format {}: books are shown as table or json",
            other.name()
        ),
    }
    Ok(())
}
