//! The standing finance reports (seeds 001 and 002): daily spend with annotations, spend by
//! feature, by tenant and by user with the Pareto view, and the team budget report.
//!
//! Money stays exact here; renderers round half away from zero to the minor unit, and a shown
//! total is the sum of the shown rows.

use jiff::civil::Date;
use rust_decimal::Decimal;
use tollgate_core::Period;
use tollgate_core::money::parse_decimal;
use tollgate_ledger::{Dim, Ledger, SummaryQuery, Totals};

use crate::Result;

/// One day of the daily spend report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRow {
    pub day: Date,
    pub totals: Totals,
    /// Change of cost against the previous day of the period; None for the first day or
    /// after a day without spend.
    pub change: Option<Decimal>,
    /// Annotations of the day (`HH:MM note`).
    pub notes: Vec<String>,
}

/// Daily totals for every civil day of the period in its time zone, with annotations.
pub fn daily(ledger: &dyn Ledger, period: &Period) -> Result<Vec<DailyRow>> {
    let mut out: Vec<DailyRow> = Vec::new();
    for day in period.days() {
        let p = Period::parse(&day.to_string(), period.tz_name())?;
        let rows = ledger.summarize(&SummaryQuery::new(p.start(), p.end(), vec![]))?;
        let totals = rows.first().map(|r| r.totals).unwrap_or_default();
        let change = match out.last() {
            Some(prev) if prev.totals.cost_e12 > 0 => Some(
                Decimal::from(totals.cost_e12) / Decimal::from(prev.totals.cost_e12) - Decimal::ONE,
            ),
            _ => None,
        };
        let notes = ledger
            .annotations(p.start(), p.end())?
            .into_iter()
            .map(|a| {
                let t: jiff::Timestamp = a.at.parse().unwrap_or(p.start());
                let local = t.to_zoned_datetime(period.tz().clone());
                format!(
                    "{:02}:{:02} {}{}",
                    local.hour(),
                    local.minute(),
                    a.note,
                    a.service.map(|s| format!(" ({s})")).unwrap_or_default()
                )
            })
            .collect();
        out.push(DailyRow {
            day,
            totals,
            change,
            notes,
        });
    }
    Ok(out)
}

/// One row of a breakdown: the key, its totals and its share of the priced cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRow {
    pub key: String,
    pub totals: Totals,
    pub share: Option<Decimal>,
}

fn shares(mut rows: Vec<(String, Totals)>) -> Vec<ShareRow> {
    let total: i128 = rows.iter().map(|(_, t)| t.cost_e12).sum();
    rows.sort_by(|a, b| b.1.cost_e12.cmp(&a.1.cost_e12).then(a.0.cmp(&b.0)));
    rows.into_iter()
        .map(|(key, totals)| ShareRow {
            share: (total > 0).then(|| Decimal::from(totals.cost_e12) / Decimal::from(total)),
            key,
            totals,
        })
        .collect()
}

/// Spend by one dimension (feature, tenant, team, ...), largest first.
pub fn by_dim(ledger: &dyn Ledger, period: &Period, dim: Dim) -> Result<Vec<ShareRow>> {
    let rows = ledger.summarize(&SummaryQuery::new(period.start(), period.end(), vec![dim]))?;
    Ok(shares(
        rows.into_iter()
            .map(|r| (r.keys[0].clone(), r.totals))
            .collect(),
    ))
}

/// Spend by user with the Pareto view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserReport {
    pub rows: Vec<ShareRow>,
    /// Users with a `user_id` (calls without one are in `rows` under `""`).
    pub users: usize,
    /// Share of the cost spent by the top 1 % of users (at least one user).
    pub top1_share: Option<Decimal>,
    /// Share of the cost spent by the top 10 % of users (at least one user).
    pub top10_share: Option<Decimal>,
}

pub fn by_user(ledger: &dyn Ledger, period: &Period) -> Result<UserReport> {
    let rows = shares(ledger.spend_by_user(period.start(), period.end())?);
    let named: Vec<&ShareRow> = rows.iter().filter(|r| !r.key.is_empty()).collect();
    let total: i128 = named.iter().map(|r| r.totals.cost_e12).sum();
    let top = |pct: usize| -> Option<Decimal> {
        if named.is_empty() || total == 0 {
            return None;
        }
        let n = (named.len() * pct).div_ceil(100).max(1);
        let top: i128 = named.iter().take(n).map(|r| r.totals.cost_e12).sum();
        Some(Decimal::from(top) / Decimal::from(total))
    };
    Ok(UserReport {
        users: named.len(),
        top1_share: top(1),
        top10_share: top(10),
        rows,
    })
}

/// One team of the budget report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRow {
    pub team: String,
    pub limit: Option<Decimal>,
    pub actual: Decimal,
    /// actual - limit (positive = over budget).
    pub variance: Option<Decimal>,
    /// variance / limit.
    pub variance_pct: Option<Decimal>,
    pub owner: Option<String>,
    pub comment: Option<String>,
}

/// Monthly limit, actual, variance in money and percent, and the owner's comment, per team
/// (teams with spend but no budget are listed too, with no limit).
pub fn budgets(ledger: &dyn Ledger, period: &Period) -> Result<Vec<BudgetRow>> {
    let spend = by_dim(ledger, period, Dim::Team)?;
    let mut rows: Vec<BudgetRow> = Vec::new();
    for b in ledger.budgets(&period.label())? {
        let limit = parse_decimal("limit", &b.limit)?;
        let actual = spend
            .iter()
            .find(|s| s.key == b.team_id)
            .map(|s| s.totals.cost())
            .transpose()?
            .unwrap_or_default();
        let variance = actual - limit;
        rows.push(BudgetRow {
            team: b.team_id,
            limit: Some(limit),
            actual,
            variance: Some(variance),
            variance_pct: (limit > Decimal::ZERO).then(|| variance / limit),
            owner: b.owner,
            comment: b.comment,
        });
    }
    for s in &spend {
        if !rows.iter().any(|r| r.team == s.key) {
            rows.push(BudgetRow {
                team: s.key.clone(),
                limit: None,
                actual: s.totals.cost()?,
                variance: None,
                variance_pct: None,
                owner: None,
                comment: None,
            });
        }
    }
    Ok(rows)
}
