//! `tollgate reprice --period YYYY-MM --prices FILE`: the difference the rates in force now
//! (the `--prices` files first, then the config's overrides and the shipped catalog) make to a
//! period's events, recorded as correction rows (`adjustments`, kind `reprice`) per team and
//! printed as a diff report. Events are never edited. Re-running records only what is not yet
//! corrected, so a second run records nothing. A closed period's corrections are booked in the
//! next open period. See docs/close.md.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use rust_decimal::Decimal;
use serde_json::json;
use tollgate_core::money::round_half_away;
use tollgate_core::{Period, Pricing};
use tollgate_finance::close::{close_in_force, next_open};
use tollgate_ledger::Adjustment;
use tollgate_render::{Cell, Table};

use crate::Ctx;
use crate::cmd_refdata::who;
use crate::output::{Format, emit};

#[derive(Debug, clap::Args)]
pub struct RepriceArgs {
    #[arg(long)]
    period: String,
    /// Show the differences without recording them.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[arg(long)]
    by: Option<String>,
}

/// One diff row: (team, cost center, provider, model, old version, new version).
type DiffKey = (String, String, String, String, String, String);

#[derive(Default, Clone, Copy)]
struct Diff {
    calls: u64,
    old: Decimal,
    new: Decimal,
    /// Events the new rates cannot price (left as they are).
    unpriceable: u64,
}

pub fn run(ctx: &Ctx, a: &RepriceArgs) -> Result<()> {
    if ctx.price_files.is_empty() {
        bail!("--prices FILE: give the new rate version to re-price with");
    }
    if a.format == Format::Xlsx {
        bail!("--format xlsx: the diff report is offered as table, csv or json");
    }
    let period = Period::parse(&a.period, &ctx.config.timezone)
        .map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    let label = period.label();
    let pricer = ctx.pricer()?;
    let mut l = crate::cmd_ledger::open(ctx)?;
    let mut diffs: BTreeMap<DiffKey, Diff> = BTreeMap::new();
    l.scan_events(period.start(), period.end(), &mut |mut ev| {
        let Some(old) = ev.pricing.cost else {
            return Ok(());
        };
        let old_version = ev.pricing.price_version.clone().unwrap_or_default();
        ev.pricing = Pricing::unpriced();
        let priced = pricer.price_event(&mut ev).ok().and(ev.pricing.cost);
        let at = &ev.attribution;
        let key = (
            at.team_id.clone().unwrap_or_default(),
            at.cost_center.clone().unwrap_or_default(),
            ev.provider.clone(),
            ev.model.clone(),
            old_version,
            ev.pricing.price_version.clone().unwrap_or_default(),
        );
        let d = diffs.entry(key).or_default();
        d.calls += 1;
        match priced {
            Some(new) => {
                d.old += old;
                d.new += new;
            }
            None => d.unpriceable += 1,
        }
        Ok(())
    })?;
    // Per team and cost center: the difference, less the corrections already recorded for
    // this period (in it, or in a later period when it was closed).
    let mut per_team: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for (k, d) in &diffs {
        *per_team.entry((k.0.clone(), k.1.clone())).or_default() += d.new - d.old;
    }
    let done = l.adjustments(None)?;
    for r in done.iter().filter(|r| {
        r.adjustment.kind == "reprice" && r.adjustment.source.as_deref() == Some(label.as_str())
    }) {
        let amt = tollgate_core::money::parse_decimal("amount", &r.adjustment.amount)?;
        *per_team
            .entry((
                r.adjustment.team_id.clone(),
                r.adjustment.cost_center.clone().unwrap_or_default(),
            ))
            .or_default() -= amt;
    }
    let log = l.period_actions(None)?;
    let book_in = if close_in_force(&log, &label).is_some() {
        next_open(&log, &label)?
    } else {
        label.clone()
    };
    let files: Vec<String> = ctx
        .price_files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut recorded = 0usize;
    if !a.dry_run {
        let by = who(a.by.as_deref());
        let mut w = l.writer()?;
        for ((team, cc), amount) in per_team.iter().filter(|(_, v)| !v.is_zero()) {
            let rows: Vec<serde_json::Value> = diffs
                .iter()
                .filter(|(k, _)| &k.0 == team && &k.1 == cc)
                .map(|(k, d)| {
                    json!({"provider": k.2, "model": k.3, "old_version": k.4, "new_version": k.5,
                           "calls": d.calls, "old": d.old.normalize().to_string(),
                           "new": d.new.normalize().to_string()})
                })
                .collect();
            w.record_adjustment(&Adjustment {
                period: book_in.clone(),
                kind: "reprice".into(),
                team_id: team.clone(),
                cost_center: (!cc.is_empty()).then(|| cc.clone()),
                amount: amount.normalize().to_string(),
                currency: "USD".into(),
                reason: format!("re-priced {label} with {}", files.join(", ")),
                approver: None,
                requested_by: by.clone(),
                source: Some(label.clone()),
                detail: Some(serde_json::Value::Array(rows).to_string()),
            })?;
            recorded += 1;
        }
        w.commit()?;
    }
    let total_old: Decimal = diffs.values().map(|d| d.old).sum();
    let total_new: Decimal = diffs.values().map(|d| d.new).sum();
    let changed: Vec<(&DiffKey, &Diff)> = diffs
        .iter()
        .filter(|(k, d)| d.new != d.old || k.4 != k.5 || d.unpriceable > 0)
        .collect();
    let bytes = match a.format {
        Format::Json => {
            let doc = json!({
                "period": label, "booked_in": book_in, "prices": files, "dry_run": a.dry_run,
                "corrections_recorded": recorded,
                "total": {"old": total_old.normalize().to_string(), "new": total_new.normalize().to_string(),
                          "difference": (total_new - total_old).normalize().to_string()},
                "rows": changed.iter().map(|(k, d)| json!({
                    "team": k.0, "cost_center": k.1, "provider": k.2, "model": k.3,
                    "old_version": k.4, "new_version": k.5, "calls": d.calls,
                    "old": d.old.normalize().to_string(), "new": d.new.normalize().to_string(),
                    "difference": (d.new - d.old).normalize().to_string(),
                    "unpriceable": d.unpriceable,
                })).collect::<Vec<_>>(),
            });
            format!("{}\n", serde_json::to_string_pretty(&doc)?).into_bytes()
        }
        _ => {
            let t = Table {
                header: vec![
                    format!(
                        "Re-pricing {label} with {} ({})",
                        files.join(", "),
                        if a.dry_run {
                            "dry run: nothing recorded".to_string()
                        } else {
                            format!("{recorded} correction rows recorded in {book_in}")
                        }
                    ),
                    "Rows whose price changed (events are not edited):".into(),
                ],
                columns: [
                    "team",
                    "cost center",
                    "provider",
                    "model",
                    "old version",
                    "new version",
                    "calls",
                    "old",
                    "new",
                    "difference",
                ]
                .map(String::from)
                .to_vec(),
                rows: changed
                    .iter()
                    .map(|(k, d)| {
                        vec![
                            Cell::Text(k.0.clone()),
                            Cell::Text(k.1.clone()),
                            Cell::Text(k.2.clone()),
                            Cell::Text(k.3.clone()),
                            Cell::Text(k.4.clone()),
                            Cell::Text(k.5.clone()),
                            Cell::Int(i128::from(d.calls)),
                            Cell::Money(round_half_away(d.old, 2).to_string()),
                            Cell::Money(round_half_away(d.new, 2).to_string()),
                            Cell::Money(round_half_away(d.new - d.old, 2).to_string()),
                        ]
                    })
                    .collect(),
                total: Some(vec![
                    Cell::Text("total".into()),
                    Cell::Empty,
                    Cell::Empty,
                    Cell::Empty,
                    Cell::Empty,
                    Cell::Empty,
                    Cell::Int(i128::from(diffs.values().map(|d| d.calls).sum::<u64>())),
                    Cell::Money(round_half_away(total_old, 2).to_string()),
                    Cell::Money(round_half_away(total_new, 2).to_string()),
                    Cell::Money(round_half_away(total_new - total_old, 2).to_string()),
                ]),
            };
            if a.format == Format::Csv {
                tollgate_render::csv(&t, false)?
            } else {
                tollgate_render::text(&t).into_bytes()
            }
        }
    };
    emit(a.out.as_deref(), &bytes, false)
}
