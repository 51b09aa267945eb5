//! The monthly summary: who spent what, per chosen dimensions, for one reporting period.

use std::collections::BTreeSet;

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_core::event::format_instant;
use tollgate_core::money::{fmt_decimal, round_half_away};
use tollgate_core::{Currency, Period};
use tollgate_ledger::{Dim, Ledger, PriceVersionRecord, SummaryQuery, Totals};

use crate::{FinanceError, Result};

/// A fixed conversion for the whole period, printed in the report header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FxRule {
    pub from: Currency,
    pub to: Currency,
    /// Units of `to` per unit of `from`.
    pub rate: Decimal,
    /// Where the rate comes from (e.g. "National Bank of Kazakhstan, 2026-07-01"), if known.
    pub source: Option<String>,
}

impl FxRule {
    /// The sentence the report prints.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "converted from {} at {} {}/{} for the whole period",
            self.from,
            fmt_decimal(self.rate),
            self.to,
            self.from
        );
        if let Some(src) = &self.source {
            s.push_str(&format!(" (source: {src})"));
        }
        s
    }
}

/// What a row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowKind {
    /// Attributed and priced.
    Ok,
    /// Attributed, but accepted in report-only mode with a problem (`flagged`) or overridden.
    Flagged,
    /// Missing required attribution: parked for remediation.
    Quarantined,
    /// No rate: tokens are counted, cost is unknown (never zero).
    Unpriced,
}

impl RowKind {
    pub fn label(self) -> &'static str {
        match self {
            RowKind::Ok => "ok",
            RowKind::Flagged => "flagged",
            RowKind::Quarantined => "quarantined",
            RowKind::Unpriced => "unpriced",
        }
    }
}

/// One row of the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Values of the chosen dimensions, in order (`""` = absent).
    pub keys: Vec<String>,
    pub kind: RowKind,
    /// `priced` or `estimated` rows carry money; an unpriced row has none.
    pub estimated: bool,
    pub totals: Totals,
    /// Exact cost in the report currency (after conversion); `None` when unpriced.
    pub cost_exact: Option<Decimal>,
    /// The cost as shown: rounded half away from zero to the currency's minor unit.
    pub cost: Option<Decimal>,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct SummaryReport {
    pub period: Period,
    pub dims: Vec<Dim>,
    pub currency: Currency,
    pub fx: Option<FxRule>,
    pub exported_at: Timestamp,
    pub price_versions: Vec<PriceVersionRecord>,
    /// Price-version ids seen in the period but not stored in the ledger (priced elsewhere).
    pub unknown_price_versions: Vec<String>,
    pub rows: Vec<Row>,
    pub total: Totals,
    /// Sum of the shown row amounts.
    pub total_cost: Decimal,
    /// Sum of the exact row amounts (before display rounding).
    pub total_cost_exact: Decimal,
    /// Requests whose cost is unknown.
    pub unpriced_requests: u64,
}

/// Options for [`build`].
#[derive(Debug, Clone)]
pub struct SummaryOptions {
    pub period: Period,
    pub dims: Vec<Dim>,
    /// Convert into another currency at a fixed rate.
    pub fx: Option<FxRule>,
    pub exported_at: Timestamp,
}

/// The dimensions users may choose in `--by`.
pub const CHOOSABLE: [Dim; 8] = [
    Dim::Team,
    Dim::Service,
    Dim::Feature,
    Dim::Model,
    Dim::Provider,
    Dim::Tenant,
    Dim::Environment,
    Dim::CostCenter,
];

/// Parses `team,model` into dimensions.
pub fn parse_dims(s: &str) -> Result<Vec<Dim>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d = Dim::parse(part)
            .filter(|d| CHOOSABLE.contains(d) || *d == Dim::PriceVersion)
            .ok_or_else(|| {
                FinanceError::Invalid(format!(
                    "--by: unknown dimension {part:?}; choose from team, service, feature, model, provider, tenant, environment, cost_center, price_version"
                ))
            })?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Builds the summary for a period from the ledger's rollups.
pub fn build(ledger: &dyn Ledger, opts: &SummaryOptions) -> Result<SummaryReport> {
    let mut dims = opts.dims.clone();
    // A price change inside the period splits a model's usage into one row per rate version.
    if dims.contains(&Dim::Model) && !dims.contains(&Dim::PriceVersion) {
        dims.push(Dim::PriceVersion);
    }
    let mut group = dims.clone();
    group.extend([Dim::Currency, Dim::AttributionStatus, Dim::PricingStatus]);
    let n = dims.len();
    let raw = ledger.summarize(&SummaryQuery {
        start: opts.period.start(),
        end: opts.period.end(),
        group_by: group,
        filters: vec![],
    })?;

    // Currency: everything must be in one currency, or in the FX rule's source currency.
    let currencies: BTreeSet<String> = raw.iter().map(|r| r.keys[n].clone()).collect();
    let (report_currency, rate) = match &opts.fx {
        Some(fx) => {
            if let Some(c) = currencies.iter().find(|c| c.as_str() != fx.from.as_str()) {
                return Err(FinanceError::Invalid(format!(
                    "the period has costs in {c}, but the FX rule converts from {}; report those separately",
                    fx.from
                )));
            }
            (fx.to, fx.rate)
        }
        None => {
            if currencies.len() > 1 {
                return Err(FinanceError::Invalid(format!(
                    "the period has costs in several currencies ({}); pass --currency and --fx-rate to convert",
                    currencies.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
            let c = match currencies.iter().next() {
                Some(c) => Currency::parse(c)?,
                None => Currency::USD,
            };
            (c, Decimal::ONE)
        }
    };
    let minor = report_currency.minor_units();

    let mut rows: Vec<Row> = Vec::with_capacity(raw.len());
    let mut versions: BTreeSet<String> = BTreeSet::new();
    let mut index: std::collections::HashMap<(Vec<String>, RowKind, bool), usize> =
        std::collections::HashMap::new();
    for r in raw {
        let attribution = r.keys[n + 1].clone();
        let pricing = r.keys[n + 2].clone();
        let (attribution, pricing) = (attribution.as_str(), pricing.as_str());
        let kind = if pricing == "unpriced" {
            RowKind::Unpriced
        } else if attribution == "quarantined" {
            RowKind::Quarantined
        } else if attribution == "ok" {
            RowKind::Ok
        } else {
            RowKind::Flagged
        };
        let (cost_exact, cost) = if kind == RowKind::Unpriced {
            (None, None)
        } else {
            let exact = r
                .totals
                .cost()?
                .checked_mul(rate)
                .ok_or_else(|| FinanceError::Invalid("cost overflow in conversion".into()))?;
            (Some(exact), Some(round_half_away(exact, minor)))
        };
        if let Some(pos) = dims.iter().position(|d| *d == Dim::PriceVersion)
            && !r.keys[pos].is_empty()
        {
            versions.insert(r.keys[pos].clone());
        }
        let mut keys = r.keys;
        keys.truncate(n);
        // Rows that differ only by statuses that map to one kind (or by currency, once
        // converted) merge.
        let slot = (keys.clone(), kind, pricing == "estimated");
        if let Some(prev) = index.get(&slot).map(|&i| &mut rows[i]) {
            prev.totals.add(&r.totals);
            prev.cost_exact = match (prev.cost_exact, cost_exact) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            prev.cost = prev.cost_exact.map(|c| round_half_away(c, minor));
            continue;
        }
        index.insert(slot, rows.len());
        rows.push(Row {
            keys,
            kind,
            estimated: pricing == "estimated",
            totals: r.totals,
            cost_exact,
            cost,
        });
    }
    rows.sort_by(|a, b| (a.kind, &a.keys).cmp(&(b.kind, &b.keys)));

    // Price versions used, even when the chosen dims do not show them.
    if !dims.contains(&Dim::PriceVersion) {
        let pv = ledger.summarize(&SummaryQuery {
            start: opts.period.start(),
            end: opts.period.end(),
            group_by: vec![Dim::PriceVersion],
            filters: vec![],
        })?;
        versions.extend(
            pv.into_iter()
                .map(|r| r.keys[0].clone())
                .filter(|v| !v.is_empty()),
        );
    }
    let ids: Vec<String> = versions.into_iter().collect();
    let price_versions = ledger.price_versions(&ids)?;
    let unknown_price_versions = ids
        .iter()
        .filter(|id| !price_versions.iter().any(|p| &p.version == *id))
        .cloned()
        .collect();

    let mut total = Totals::default();
    let mut total_cost = Decimal::ZERO;
    let mut total_cost_exact = Decimal::ZERO;
    let mut unpriced_requests = 0;
    for r in &rows {
        total.add(&r.totals);
        if let (Some(c), Some(e)) = (r.cost, r.cost_exact) {
            total_cost += c;
            total_cost_exact += e;
        } else {
            unpriced_requests += r.totals.requests;
        }
    }
    Ok(SummaryReport {
        period: opts.period.clone(),
        dims,
        currency: report_currency,
        fx: opts.fx.clone(),
        exported_at: opts.exported_at,
        price_versions,
        unknown_price_versions,
        rows,
        total,
        total_cost: round_half_away(total_cost, minor),
        total_cost_exact,
        unpriced_requests,
    })
}

impl SummaryReport {
    /// Header lines shared by every format.
    pub fn header_lines(&self) -> Vec<String> {
        let mut h = vec![
            format!("Tollgate usage summary: {}", self.period.label()),
            format!(
                "Period: {} in {} = [{}, {}) UTC",
                self.period.label(),
                self.period.tz_name(),
                format_instant(self.period.start()),
                format_instant(self.period.end())
            ),
            format!(
                "Currency: {}{}",
                self.currency,
                self.fx
                    .as_ref()
                    .map(|f| format!(", {}", f.describe()))
                    .unwrap_or_default()
            ),
            format!(
                "Exported: {} (amounts rounded half away from zero to {} decimal places for display; the total is the sum of the rows shown)",
                format_instant(self.exported_at),
                self.currency.minor_units()
            ),
        ];
        if self.price_versions.is_empty() && self.unknown_price_versions.is_empty() {
            h.push(if self.total_cost_exact.is_zero() {
                "Price versions: none (no priced usage)".into()
            } else {
                "Price versions: none recorded (costs carried by the imported events)".into()
            });
        } else {
            h.push("Price versions used:".into());
            for p in &self.price_versions {
                h.push(format!(
                    "  {} {}/{} effective [{}, {})",
                    p.version,
                    p.provider,
                    p.model,
                    p.effective_from.as_deref().unwrap_or("-inf"),
                    p.effective_to.as_deref().unwrap_or("+inf")
                ));
            }
            for v in &self.unknown_price_versions {
                h.push(format!("  {v} (carried by imported events)"));
            }
        }
        if self.unpriced_requests > 0 {
            h.push(format!(
                "Unpriced: {} requests have no rate and are not in the total; add a rate override and re-ingest",
                self.unpriced_requests
            ));
        }
        h
    }

    /// Column names: the dimensions, the row status, then the measures.
    pub fn columns(&self) -> Vec<String> {
        let mut c: Vec<String> = self.dims.iter().map(|d| d.name().to_string()).collect();
        c.push("status".into());
        for m in [
            "requests",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "output_tokens",
            "cost",
        ] {
            c.push(m.into());
        }
        c
    }

    /// The report as the documented JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{Map, Value, json};
        let money = |d: Option<Decimal>| match d {
            Some(d) => Value::String(d.to_string()),
            None => Value::Null,
        };
        let measures = |m: &mut Map<String, Value>, t: &Totals| {
            m.insert("requests".into(), t.requests.into());
            m.insert("input_tokens".into(), t.input_tokens.into());
            m.insert("cache_read_tokens".into(), t.cache_read_tokens.into());
            m.insert("cache_write_tokens".into(), t.cache_write_tokens.into());
            m.insert(
                "cache_write_1h_tokens".into(),
                t.cache_write_1h_tokens.into(),
            );
            m.insert("output_tokens".into(), t.output_tokens.into());
            m.insert("reasoning_tokens".into(), t.reasoning_tokens.into());
        };
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut m = Map::new();
                for (d, k) in self.dims.iter().zip(&r.keys) {
                    m.insert(
                        d.name().into(),
                        if k.is_empty() {
                            Value::Null
                        } else {
                            Value::String(k.clone())
                        },
                    );
                }
                m.insert("status".into(), r.kind.label().into());
                if r.estimated {
                    m.insert("estimated".into(), true.into());
                }
                measures(&mut m, &r.totals);
                m.insert("cost".into(), money(r.cost));
                m.insert(
                    "cost_exact".into(),
                    money(r.cost_exact.map(|d| d.normalize())),
                );
                Value::Object(m)
            })
            .collect();
        let mut total = Map::new();
        measures(&mut total, &self.total);
        total.insert("cost".into(), Value::String(self.total_cost.to_string()));
        total.insert(
            "cost_exact".into(),
            Value::String(fmt_decimal(self.total_cost_exact)),
        );
        total.insert("unpriced_requests".into(), self.unpriced_requests.into());
        json!({
            "period": {
                "label": self.period.label(),
                "start": format_instant(self.period.start()),
                "end": format_instant(self.period.end()),
                "timezone": self.period.tz_name(),
            },
            "currency": self.currency.as_str(),
            "fx": self.fx.as_ref().map(|f| json!({
                "from": f.from.as_str(), "to": f.to.as_str(), "rate": fmt_decimal(f.rate),
                "source": f.source, "rule": f.describe(),
            })),
            "exported_at": format_instant(self.exported_at),
            "dimensions": self.dims.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "price_versions": self.price_versions.iter().map(|p| json!({
                "version": p.version, "provider": p.provider, "model": p.model,
                "effective_from": p.effective_from, "effective_to": p.effective_to,
            })).chain(self.unknown_price_versions.iter().map(|v| json!({"version": v}))).collect::<Vec<_>>(),
            "rows": rows,
            "total": Value::Object(total),
        })
    }
}
