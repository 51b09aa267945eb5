//! Month-end close (issue #5 item 5): what is booked in a period, and when a period is closed.
//!
//! - A period is **closed** when the newest entry of its log is a `close`; `reopen` opens it
//!   again. Both are logged with who, when and why; nothing is edited.
//! - The **booked figures** of an open period are its events (by `occurred_at` in the period),
//!   the late events of earlier closed periods that land in it (see below), and the
//!   adjustments, re-pricing corrections and allocations booked in it. A closed period's booked
//!   figures are the snapshot frozen at its close: nothing lands in it any more.
//! - A **late event** is an event of a closed period ingested after that period's close. It is
//!   booked in the next open period, flagged `late` with its own period as `source_period`.
//!   When periods between are closed too, the cut-off is the latest of their closes (earlier
//!   late events are already in one of their snapshots).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tollgate_ledger::{AdjustmentRecord, PeriodActionRecord};

use crate::{FinanceError, Result};

/// One booked amount of a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookedLine {
    pub team: String,
    pub cost_center: String,
    /// `usage`, `late`, `adjustment`, `reprice` or `allocation`.
    pub kind: String,
    /// For `late` (and corrections of a closed period): the period the amount belongs to.
    pub source_period: Option<String>,
    /// Exact decimal, in the ledger's currency (a string in JSON).
    #[serde(with = "dec_text")]
    pub amount: Decimal,
    pub note: String,
}

/// Decimals as exact strings in the snapshot JSON.
mod dec_text {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Decimal, D::Error> {
        let s = String::deserialize(d)?;
        Decimal::from_str_exact(&s).map_err(serde::de::Error::custom)
    }
}

/// The booked figures of a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booked {
    pub period: String,
    pub currency: String,
    /// Frozen at a close (the snapshot), or live.
    pub closed: bool,
    /// The ingestion instant the figures include events up to (a close's cut-off: events of
    /// the period ingested later are late).
    pub cutoff: Option<String>,
    pub lines: Vec<BookedLine>,
}

impl Booked {
    pub fn total(&self) -> Decimal {
        self.lines.iter().map(|l| l.amount).sum()
    }

    /// Totals per (cost center, team), sorted.
    pub fn by_cost_center(&self) -> BTreeMap<(String, String), Decimal> {
        let mut m = BTreeMap::new();
        for l in &self.lines {
            *m.entry((l.cost_center.clone(), l.team.clone()))
                .or_insert(Decimal::ZERO) += l.amount;
        }
        m
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| FinanceError::Invalid(e.to_string()))
    }

    pub fn from_json(s: &str) -> Result<Booked> {
        serde_json::from_str(s)
            .map_err(|e| FinanceError::Invalid(format!("stored close snapshot: {e}")))
    }
}

/// The close in force for `period`: the newest log entry when it is a `close`.
pub fn close_in_force<'a>(
    log: &'a [PeriodActionRecord],
    period: &str,
) -> Option<&'a PeriodActionRecord> {
    log.iter()
        .rev()
        .find(|r| r.action.period == period)
        .filter(|r| r.action.action == "close")
}

/// A close's cut-off: the snapshot's, else the instant the close was logged.
pub fn cutoff_of(close: &PeriodActionRecord) -> String {
    close
        .action
        .snapshot
        .as_deref()
        .and_then(|s| Booked::from_json(s).ok())
        .and_then(|b| b.cutoff)
        .unwrap_or_else(|| close.at.clone())
}

pub fn is_closed(log: &[PeriodActionRecord], period: &str) -> bool {
    close_in_force(log, period).is_some()
}

/// `YYYY-MM` shifted by `n` months.
pub fn shift_month(period: &str, n: i32) -> Result<String> {
    let bad = || FinanceError::Invalid(format!("period {period:?}: expected YYYY-MM"));
    let (y, m) = period.split_once('-').ok_or_else(bad)?;
    let (y, m): (i32, i32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(1..=12).contains(&m) || period.len() != 7 {
        return Err(bad());
    }
    let idx = y * 12 + (m - 1) + n;
    Ok(format!(
        "{:04}-{:02}",
        idx.div_euclid(12),
        idx.rem_euclid(12) + 1
    ))
}

/// The first period after `period` that is open.
pub fn next_open(log: &[PeriodActionRecord], period: &str) -> Result<String> {
    let mut p = shift_month(period, 1)?;
    while is_closed(log, &p) {
        p = shift_month(&p, 1)?;
    }
    Ok(p)
}

/// For an open `period`: the earlier closed periods (up to `lookback` months back) whose late
/// events land in it, each with the cut-off instant (the latest close among it and the closed
/// periods between).
pub fn late_sources(
    log: &[PeriodActionRecord],
    period: &str,
    lookback: i32,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for back in 1..=lookback {
        let p = shift_month(period, -back)?;
        let Some(close) = close_in_force(log, &p) else {
            continue;
        };
        if next_open(log, &p)? != period {
            continue;
        }
        let mut cutoff = cutoff_of(close);
        let mut q = shift_month(&p, 1)?;
        while q != period {
            if let Some(c) = close_in_force(log, &q)
                && cutoff_of(c) > cutoff
            {
                cutoff = cutoff_of(c);
            }
            q = shift_month(&q, 1)?;
        }
        out.push((p, cutoff));
    }
    out.sort();
    Ok(out)
}

/// Booked lines from the adjustments table.
pub fn adjustment_lines(adjs: &[AdjustmentRecord]) -> Result<Vec<BookedLine>> {
    adjs.iter()
        .map(|r| {
            let a = &r.adjustment;
            Ok(BookedLine {
                team: a.team_id.clone(),
                cost_center: a.cost_center.clone().unwrap_or_default(),
                kind: a.kind.clone(),
                source_period: a.source.clone().filter(|s| s.len() == 7 && s != &a.period),
                amount: tollgate_core::money::parse_decimal("amount", &a.amount)?,
                note: match &a.approver {
                    Some(ap) => format!("{} (approved by {ap})", a.reason),
                    None => a.reason.clone(),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tollgate_ledger::PeriodAction;

    fn log(entries: &[(&str, &str, &str)]) -> Vec<PeriodActionRecord> {
        entries
            .iter()
            .enumerate()
            .map(|(i, (p, a, at))| PeriodActionRecord {
                id: i as i64 + 1,
                at: at.to_string(),
                action: PeriodAction {
                    period: p.to_string(),
                    action: a.to_string(),
                    by: "t".into(),
                    ..Default::default()
                },
            })
            .collect()
    }

    #[test]
    fn months_shift_across_years() {
        assert_eq!(shift_month("2026-12", 1).unwrap(), "2027-01");
        assert_eq!(shift_month("2026-01", -1).unwrap(), "2025-12");
        assert!(shift_month("2026-13", 1).is_err());
    }

    #[test]
    fn late_events_land_in_the_next_open_period_with_the_latest_cutoff() {
        let l = log(&[
            ("2026-07", "close", "2026-08-02T00:00:00Z"),
            ("2026-08", "close", "2026-09-03T00:00:00Z"),
            ("2026-06", "close", "2026-07-01T00:00:00Z"),
            ("2026-06", "reopen", "2026-07-05T00:00:00Z"),
        ]);
        assert!(is_closed(&l, "2026-07"));
        assert!(!is_closed(&l, "2026-06"));
        assert_eq!(next_open(&l, "2026-07").unwrap(), "2026-09");
        // July's late events land in September, cut off at August's close (the later one).
        assert_eq!(
            late_sources(&l, "2026-09", 12).unwrap(),
            vec![
                ("2026-07".to_string(), "2026-09-03T00:00:00Z".to_string()),
                ("2026-08".to_string(), "2026-09-03T00:00:00Z".to_string()),
            ]
        );
        // June was reopened: nothing of it is late.
        assert!(late_sources(&l, "2026-07", 12).unwrap().is_empty());
    }
}
