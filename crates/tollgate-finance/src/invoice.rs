//! Customer usage invoices: a tenant's `prod` usage in a period, priced by the tenant's plan.
//!
//! Invariants:
//! - only the tenant's `prod` traffic inside the period (computed in the tenant's time zone)
//!   counts;
//! - every line amount is rounded half away from zero to the currency's minor unit; the
//!   subtotal is the sum of the lines as shown; tax is computed on that subtotal and rounded the
//!   same way; total = subtotal + tax;
//! - the document has no generation timestamp, so the same ledger gives the same invoice;
//! - wholesale cost appears only as the basis of a pass-through line, never otherwise.

use std::collections::BTreeMap;

use jiff::civil::Date;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tollgate_core::event::format_instant;
use tollgate_core::money::group_thousands as group;
use tollgate_core::money::{fmt_decimal, round_half_away};
use tollgate_core::{Currency, Period};
use tollgate_ledger::{Dim, Ledger, SummaryQuery, Totals};

use crate::{FinanceError, Result};

/// What a rate-card line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Per 1,000 tokens (all classes: input, cache reads and writes, output).
    KTokens,
    Request,
    Session,
}

impl Unit {
    pub fn parse(s: &str) -> Option<Unit> {
        match s {
            "1k_tokens" => Some(Unit::KTokens),
            "request" => Some(Unit::Request),
            "session" => Some(Unit::Session),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Unit::KTokens => "1k_tokens",
            Unit::Request => "request",
            Unit::Session => "session",
        }
    }
}

/// One rate-card entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCardLine {
    pub feature: String,
    pub label: String,
    pub unit: Unit,
    pub price: Decimal,
    /// Show the session count on the line even when it is not priced per session.
    pub show_sessions: bool,
}

/// One graduated tier: tokens up to `up_to_tokens` (cumulative; `None` = no limit) cost
/// `price_per_1k` per 1,000 tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub up_to_tokens: Option<u64>,
    pub price_per_1k: Decimal,
}

/// How a tenant is billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    RateCard(Vec<RateCardLine>),
    /// Wholesale cost x (1 + margin). `fx` converts the ledger's currency into the tenant's.
    PassThrough {
        margin: Decimal,
        fx: Option<Decimal>,
    },
    /// A monthly fee with an included token allowance and an overage price per 1,000 tokens.
    Flat {
        fee: Decimal,
        included_tokens: u64,
        overage_per_1k: Decimal,
    },
    /// Graduated volume tiers over the month's total tokens.
    Tiered(Vec<Tier>),
}

impl Plan {
    pub fn name(&self) -> &'static str {
        match self {
            Plan::RateCard(_) => "rate_card",
            Plan::PassThrough { .. } => "pass_through",
            Plan::Flat { .. } => "flat",
            Plan::Tiered(_) => "tiered",
        }
    }
}

/// Tax on the subtotal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tax {
    pub name: String,
    /// Between 0 and 1 (0.20 = 20 %).
    pub rate: Decimal,
}

/// A billable tenant, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub currency: Currency,
    pub timezone: String,
    /// Numbering pattern: `{YYYY}`, `{MM}`, `{TENANT}`, `{SEQ}` / `{SEQ:N}` (zero-padded).
    pub number: String,
    pub tax: Option<Tax>,
    pub plan: Plan,
    /// Minimum commitment per period: a top-up line brings a smaller subtotal up to it.
    pub minimum: Option<Decimal>,
}

/// Usage of one feature of the tenant in the period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureUsage {
    pub totals: Totals,
    pub sessions: u64,
}

impl FeatureUsage {
    pub fn tokens(&self) -> u64 {
        let t = &self.totals;
        t.input_tokens
            + t.cache_read_tokens
            + t.cache_write_tokens
            + t.cache_write_1h_tokens
            + t.output_tokens
    }
}

/// One invoice line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub feature: Option<String>,
    pub label: String,
    pub requests: u64,
    pub sessions: Option<u64>,
    pub tokens: u64,
    pub quantity: Decimal,
    pub unit: String,
    pub unit_price: Decimal,
    /// Rounded to the minor unit.
    pub amount: Decimal,
}

/// Something that stops finalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

/// An invoice (or credit note) document.
#[derive(Debug, Clone, PartialEq)]
pub struct Invoice {
    /// `invoice` or `credit_note`.
    pub kind: String,
    pub number: String,
    pub tenant: Tenant,
    pub period: Period,
    pub issue_date: Date,
    pub lines: Vec<Line>,
    pub subtotal: Decimal,
    pub tax_amount: Decimal,
    pub total: Decimal,
    pub note: String,
    /// Usage by model: (model, requests, tokens).
    pub by_model: Vec<(String, u64, u64)>,
    /// Usage by day in the tenant's time zone: (day, requests, tokens).
    pub by_day: Vec<(Date, u64, u64)>,
    pub problems: Vec<Problem>,
    /// For a credit note: the invoice it reverses, and why.
    pub corrects: Option<String>,
    pub reason: Option<String>,
    /// Finalized (stored, immutable) or a draft.
    pub finalized: bool,
}

fn money(d: Decimal, c: Currency) -> Decimal {
    round_half_away(d, c.minor_units())
}

fn thousand() -> Decimal {
    Decimal::new(1000, 0)
}

/// Prices the usage by the plan: the invoice lines (before minimum and tax).
pub fn price_lines(
    tenant: &Tenant,
    usage: &BTreeMap<String, FeatureUsage>,
    problems: &mut Vec<Problem>,
) -> Result<Vec<Line>> {
    let cur = tenant.currency;
    let mut lines = Vec::new();
    let usage_line = |feature: &str, u: &FeatureUsage| Line {
        feature: Some(feature.to_string()),
        label: feature.to_string(),
        requests: u.totals.requests,
        sessions: (u.sessions > 0).then_some(u.sessions),
        tokens: u.tokens(),
        quantity: Decimal::ZERO,
        unit: "included".into(),
        unit_price: Decimal::ZERO,
        amount: money(Decimal::ZERO, cur),
    };
    match &tenant.plan {
        Plan::RateCard(card) => {
            for c in card {
                let u = usage.get(&c.feature).cloned().unwrap_or_default();
                let quantity = match c.unit {
                    Unit::KTokens => Decimal::from(u.tokens()) / thousand(),
                    Unit::Request => Decimal::from(u.totals.requests),
                    Unit::Session => Decimal::from(u.sessions),
                };
                lines.push(Line {
                    feature: Some(c.feature.clone()),
                    label: c.label.clone(),
                    requests: u.totals.requests,
                    sessions: (u.sessions > 0).then_some(u.sessions),
                    tokens: u.tokens(),
                    quantity,
                    unit: c.unit.name().into(),
                    unit_price: c.price,
                    amount: money(quantity * c.price, cur),
                });
            }
            for (f, u) in usage {
                if !card.iter().any(|c| &c.feature == f) {
                    problems.push(Problem {
                        what: format!(
                            "feature {f:?} has {} prod requests ({} tokens) but no line in the rate card",
                            u.totals.requests,
                            u.tokens()
                        ),
                        fix: format!("add [[tenants.{}.lines]] feature = {f:?} to the config", tenant.id),
                    });
                }
            }
        }
        Plan::PassThrough { margin, fx } => {
            let factor = Decimal::ONE + margin;
            for (f, u) in usage {
                let wholesale = u.totals.cost()? * fx.unwrap_or(Decimal::ONE);
                lines.push(Line {
                    feature: Some(f.clone()),
                    label: f.clone(),
                    requests: u.totals.requests,
                    sessions: (u.sessions > 0).then_some(u.sessions),
                    tokens: u.tokens(),
                    quantity: wholesale.normalize(),
                    unit: format!("{cur} wholesale cost"),
                    unit_price: factor,
                    amount: money(wholesale * factor, cur),
                });
            }
        }
        Plan::Flat {
            fee,
            included_tokens,
            overage_per_1k,
        } => {
            let mut total_tokens = 0u64;
            for (f, u) in usage {
                total_tokens += u.tokens();
                lines.push(usage_line(f, u));
            }
            lines.push(Line {
                feature: None,
                label: "Monthly platform fee".into(),
                requests: 0,
                sessions: None,
                tokens: total_tokens.min(*included_tokens),
                quantity: Decimal::ONE,
                unit: "month".into(),
                unit_price: *fee,
                amount: money(*fee, cur),
            });
            if total_tokens > *included_tokens {
                let over = total_tokens - included_tokens;
                let q = Decimal::from(over) / thousand();
                lines.push(Line {
                    feature: None,
                    label: format!("Overage above {included_tokens} included tokens"),
                    requests: 0,
                    sessions: None,
                    tokens: over,
                    quantity: q,
                    unit: "1k_tokens".into(),
                    unit_price: *overage_per_1k,
                    amount: money(q * overage_per_1k, cur),
                });
            }
        }
        Plan::Tiered(tiers) => {
            let mut total_tokens = 0u64;
            for (f, u) in usage {
                total_tokens += u.tokens();
                lines.push(usage_line(f, u));
            }
            let mut from = 0u64;
            for (i, t) in tiers.iter().enumerate() {
                let to = t.up_to_tokens.unwrap_or(u64::MAX);
                if total_tokens <= from {
                    break;
                }
                let in_tier = total_tokens.min(to) - from;
                let q = Decimal::from(in_tier) / thousand();
                lines.push(Line {
                    feature: None,
                    label: match t.up_to_tokens {
                        Some(up) => format!("Tier {}: tokens {from} to {up}", i + 1),
                        None => format!("Tier {}: tokens above {from}", i + 1),
                    },
                    requests: 0,
                    sessions: None,
                    tokens: in_tier,
                    quantity: q,
                    unit: "1k_tokens".into(),
                    unit_price: t.price_per_1k,
                    amount: money(q * t.price_per_1k, cur),
                });
                from = to;
            }
        }
    }
    Ok(lines)
}

/// Replaces `{YYYY}`, `{MM}`, `{TENANT}` in a numbering pattern: the sequence space.
pub fn number_scope(pattern: &str, period: &Period, tenant_id: &str) -> String {
    let d = period.first_day();
    pattern
        .replace("{YYYY}", &format!("{:04}", d.year()))
        .replace("{MM}", &format!("{:02}", d.month()))
        .replace("{TENANT}", &tenant_id.to_uppercase())
}

/// Fills `{SEQ}` / `{SEQ:N}` in a scoped pattern.
pub fn fill_seq(scope: &str, seq: u64) -> String {
    let mut out = String::new();
    let mut rest = scope;
    while let Some(i) = rest.find("{SEQ") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after.find('}').map_or(after.len(), |e| e + 1);
        let spec = &after[..end];
        let width: usize = spec
            .strip_prefix("{SEQ:")
            .and_then(|w| w.strip_suffix('}'))
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        out.push_str(&format!("{seq:0width$}"));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Reads the tenant's usage for the period from the ledger and builds the invoice.
pub fn build(
    ledger: &dyn Ledger,
    tenant: &Tenant,
    period: &Period,
    number: String,
) -> Result<Invoice> {
    let q = |group_by: Vec<Dim>| {
        SummaryQuery::new(period.start(), period.end(), group_by)
            .filter(Dim::Tenant, &tenant.id)
            .filter(Dim::Environment, "prod")
    };
    let mut problems = Vec::new();
    // Usage per feature; quarantined and unpriced usage is listed as a problem.
    let rows = ledger.summarize(&q(vec![
        Dim::Feature,
        Dim::AttributionStatus,
        Dim::PricingStatus,
    ]))?;
    let mut usage: BTreeMap<String, FeatureUsage> = BTreeMap::new();
    let mut quarantined = Totals::default();
    let mut unpriced = Totals::default();
    for r in &rows {
        if r.keys[1] == "quarantined" {
            quarantined.add(&r.totals);
        }
        if r.keys[2] == "unpriced" {
            unpriced.add(&r.totals);
        }
        if !r.keys[0].is_empty() {
            usage
                .entry(r.keys[0].clone())
                .or_default()
                .totals
                .add(&r.totals);
        }
    }
    // Quarantined events without an environment may be prod traffic too.
    let no_env = ledger.summarize(
        &SummaryQuery::new(period.start(), period.end(), vec![Dim::AttributionStatus])
            .filter(Dim::Tenant, &tenant.id)
            .filter(Dim::Environment, ""),
    )?;
    for r in &no_env {
        quarantined.add(&r.totals);
    }
    if quarantined.requests > 0 {
        problems.push(Problem {
            what: format!(
                "{} quarantined requests of tenant {} in {} lack required attribution",
                quarantined.requests,
                tenant.id,
                period.label()
            ),
            fix: format!(
                "find them with: tollgate sql \"SELECT event_id, team_id, service, feature, environment FROM events WHERE tenant_id = '{}' AND attribution_status = 'quarantined' AND occurred_at >= '{}' AND occurred_at < '{}'\"",
                tenant.id,
                format_instant(period.start()),
                format_instant(period.end())
            ),
        });
    }
    if unpriced.requests > 0 {
        problems.push(Problem {
            what: format!("{} prod requests of tenant {} have no price", unpriced.requests, tenant.id),
            fix: "add a rate for their models (--prices FILE) and re-ingest them, or price them with a correction".into(),
        });
    }
    // Sessions are counted from the raw events (distinct ids cannot be summed from rollups),
    // so only where a line uses them: session-priced or `show_sessions` rate-card lines.
    let session_features: Vec<&str> = match &tenant.plan {
        Plan::RateCard(card) => card
            .iter()
            .filter(|c| c.unit == Unit::Session || c.show_sessions)
            .map(|c| c.feature.as_str())
            .collect(),
        _ => Vec::new(),
    };
    for f in session_features {
        for (_, n) in ledger.distinct_sessions(&q(vec![]).filter(Dim::Feature, f))? {
            if let Some(u) = usage.get_mut(f) {
                u.sessions = n;
            }
        }
    }
    let mut lines = price_lines(tenant, &usage, &mut problems)?;
    let cur = tenant.currency;
    let mut subtotal: Decimal = lines.iter().map(|l| l.amount).sum();
    if let Some(min) = tenant.minimum
        && subtotal < min
    {
        let top_up = money(min - subtotal, cur);
        lines.push(Line {
            feature: None,
            label: format!("Minimum commitment ({} {cur})", fmt_decimal(min)),
            requests: 0,
            sessions: None,
            tokens: 0,
            quantity: Decimal::ONE,
            unit: "commitment".into(),
            unit_price: top_up,
            amount: top_up,
        });
        subtotal += top_up;
    }
    let subtotal = money(subtotal, cur);
    let tax_amount = match &tenant.tax {
        Some(t) => money(subtotal * t.rate, cur),
        None => money(Decimal::ZERO, cur),
    };
    let total = money(subtotal + tax_amount, cur);
    let by_model = ledger
        .summarize(&q(vec![Dim::Model]))?
        .into_iter()
        .map(|r| {
            let t = r.totals;
            let tokens = t.input_tokens
                + t.cache_read_tokens
                + t.cache_write_tokens
                + t.cache_write_1h_tokens
                + t.output_tokens;
            (r.keys[0].clone(), t.requests, tokens)
        })
        .collect();
    let mut by_day = Vec::new();
    for day in period.days() {
        let p = Period::parse(&day.to_string(), period.tz_name())?;
        let rows = ledger.summarize(
            &SummaryQuery::new(p.start(), p.end(), vec![])
                .filter(Dim::Tenant, &tenant.id)
                .filter(Dim::Environment, "prod"),
        )?;
        if let Some(r) = rows.first() {
            let t = r.totals;
            by_day.push((
                day,
                t.requests,
                t.input_tokens
                    + t.cache_read_tokens
                    + t.cache_write_tokens
                    + t.cache_write_1h_tokens
                    + t.output_tokens,
            ));
        }
    }
    let note = match &tenant.plan {
        Plan::RateCard(_) => "Pricing: per-feature rate card applied to this period's production usage (tokens count input, cached input and output).".to_string(),
        Plan::PassThrough { margin, .. } => format!(
            "Pricing based on actual token usage with {}% margin over our wholesale LLM cost.",
            fmt_decimal(*margin * Decimal::new(100, 0))
        ),
        Plan::Flat { .. } => "Pricing: monthly platform fee with an included token allowance; tokens above it are billed as overage.".into(),
        Plan::Tiered(_) => "Pricing: graduated volume tiers over the period's total production tokens.".into(),
    };
    let issue_date = period.shifted(1)?.first_day();
    Ok(Invoice {
        kind: "invoice".into(),
        number,
        tenant: tenant.clone(),
        period: period.clone(),
        issue_date,
        lines,
        subtotal,
        tax_amount,
        total,
        note,
        by_model,
        by_day,
        problems,
        corrects: None,
        reason: None,
        finalized: false,
    })
}

impl Invoice {
    /// The credit note that reverses this invoice in full.
    pub fn credit_note(&self, number: String, reason: &str) -> Invoice {
        let neg = |d: Decimal| -d;
        Invoice {
            kind: "credit_note".into(),
            number,
            lines: self
                .lines
                .iter()
                .map(|l| Line {
                    amount: neg(l.amount),
                    quantity: neg(l.quantity),
                    ..l.clone()
                })
                .collect(),
            subtotal: neg(self.subtotal),
            tax_amount: neg(self.tax_amount),
            total: neg(self.total),
            note: format!("Credit note reversing invoice {} in full.", self.number),
            problems: Vec::new(),
            corrects: Some(self.number.clone()),
            reason: Some(reason.to_string()),
            ..self.clone()
        }
    }

    /// The documented JSON shape (money as decimal strings).
    pub fn to_json(&self) -> Value {
        let c = self.tenant.currency;
        let m = |d: Decimal| Value::String(round_half_away(d, c.minor_units()).to_string());
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                json!({
                    "feature": l.feature,
                    "label": l.label,
                    "requests": l.requests,
                    "sessions": l.sessions,
                    "tokens": l.tokens,
                    "quantity": fmt_decimal(l.quantity),
                    "unit": l.unit,
                    "unit_price": l.unit_price.to_string(),
                    "amount": m(l.amount),
                })
            })
            .collect();
        json!({
            "kind": self.kind,
            "status": if self.finalized { "final" } else { "draft" },
            "number": self.number,
            "tenant": self.tenant.id,
            "tenant_name": self.tenant.name,
            "period": {
                "label": self.period.label(),
                "start": format_instant(self.period.start()),
                "end": format_instant(self.period.end()),
                "timezone": self.period.tz_name(),
            },
            "issue_date": self.issue_date.to_string(),
            "currency": c.as_str(),
            "plan": self.tenant.plan.name(),
            "lines": lines,
            "subtotal": m(self.subtotal),
            "tax": self.tenant.tax.as_ref().map(|t| json!({
                "name": t.name, "rate": t.rate.to_string(), "amount": m(self.tax_amount),
            })),
            "total": m(self.total),
            "note": self.note,
            "usage_by_model": self.by_model.iter().map(|(model, r, t)| json!({"model": model, "requests": r, "tokens": t})).collect::<Vec<_>>(),
            "usage_by_day": self.by_day.iter().map(|(d, r, t)| json!({"day": d.to_string(), "requests": r, "tokens": t})).collect::<Vec<_>>(),
            "problems": self.problems.iter().map(|p| json!({"problem": p.what, "fix": p.fix})).collect::<Vec<_>>(),
            "corrects": self.corrects,
            "reason": self.reason,
        })
    }

    /// The invoice as text, laid out like seed 000's example.
    pub fn to_text(&self) -> String {
        let c = self.tenant.currency;
        let m = |d: Decimal| group(&round_half_away(d, c.minor_units()).to_string());
        let rule = "─".repeat(60);
        let last = self
            .period
            .shifted(1)
            .map(|p| p.first_day())
            .ok()
            .and_then(|d| d.yesterday().ok());
        let mut s = String::new();
        let title = if self.kind == "credit_note" {
            "AI Usage Credit Note"
        } else {
            "AI Usage Invoice"
        };
        s.push_str(&format!("{} — {title}\n", self.tenant.name));
        s.push_str(&format!(
            "Period: {} to {} ({})\n",
            self.period.first_day(),
            last.map_or_else(String::new, |d| d.to_string()),
            self.period.tz_name()
        ));
        s.push_str(&format!(
            "{} #: {}\n",
            if self.kind == "credit_note" {
                "Credit note"
            } else {
                "Invoice"
            },
            self.number
        ));
        s.push_str(&format!("Issued: {}\n", self.issue_date));
        if let Some(cn) = &self.corrects {
            s.push_str(&format!("Reverses invoice: {cn}\n"));
        }
        if let Some(r) = &self.reason {
            s.push_str(&format!("Reason: {r}\n"));
        }
        s.push_str(&format!("{rule}\nLINE ITEMS ({c}):\n{rule}\n"));
        for l in &self.lines {
            s.push_str(&format!("{}\n", l.label));
            if l.requests > 0 {
                s.push_str(&format!("  Requests: {}\n", group(&l.requests.to_string())));
            }
            if let Some(n) = l.sessions {
                s.push_str(&format!("  Sessions: {}\n", group(&n.to_string())));
            }
            if l.tokens > 0 {
                s.push_str(&format!(
                    "  Total tokens: {}\n",
                    group(&l.tokens.to_string())
                ));
            }
            let per = match l.unit.as_str() {
                "1k_tokens" => "per 1K tokens".to_string(),
                "request" => "per request".to_string(),
                "session" => "per session".to_string(),
                other => format!("per {other}"),
            };
            if l.unit != "included" {
                s.push_str(&format!(
                    "  Quantity: {} ({})\n",
                    fmt_decimal(l.quantity),
                    l.unit
                ));
                s.push_str(&format!("  Unit price ({per}): {}\n", l.unit_price));
            }
            s.push_str(&format!("  Amount: {}\n", m(l.amount)));
        }
        s.push_str(&format!("{rule}\nSUBTOTAL: {} {c}\n", m(self.subtotal)));
        if let Some(t) = &self.tenant.tax {
            s.push_str(&format!(
                "{} ({}%): {} {c}\n",
                t.name,
                fmt_decimal(t.rate * Decimal::new(100, 0)),
                m(self.tax_amount)
            ));
        }
        s.push_str(&format!("TOTAL: {} {c}\n{rule}\n", m(self.total)));
        s.push_str(&format!("Note: {}\n", self.note));
        if !self.problems.is_empty() {
            s.push_str("\nDRAFT: cannot be finalized until these are fixed:\n");
            for p in &self.problems {
                s.push_str(&format!("  - {}\n    fix: {}\n", p.what, p.fix));
            }
        }
        s.push_str("\nAppendix A: usage by model\n");
        for (model, r, t) in &self.by_model {
            s.push_str(&format!(
                "  {model:<40} {:>12} requests {:>16} tokens\n",
                group(&r.to_string()),
                group(&t.to_string())
            ));
        }
        s.push_str("\nAppendix B: usage by day\n");
        for (d, r, t) in &self.by_day {
            s.push_str(&format!(
                "  {d}  {:>12} requests {:>16} tokens\n",
                group(&r.to_string()),
                group(&t.to_string())
            ));
        }
        s
    }

    /// The lines as CSV rows (header + lines + subtotal/tax/total rows).
    pub fn csv_rows(&self) -> Vec<Vec<String>> {
        let c = self.tenant.currency;
        let m = |d: Decimal| round_half_away(d, c.minor_units()).to_string();
        let mut rows = vec![
            [
                "number",
                "tenant",
                "period",
                "currency",
                "feature",
                "label",
                "requests",
                "sessions",
                "tokens",
                "quantity",
                "unit",
                "unit_price",
                "amount",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        ];
        let head = |v: &mut Vec<String>| {
            v.extend([
                self.number.clone(),
                self.tenant.id.clone(),
                self.period.label(),
                c.to_string(),
            ]);
        };
        for l in &self.lines {
            let mut v = Vec::new();
            head(&mut v);
            v.extend([
                l.feature.clone().unwrap_or_default(),
                l.label.clone(),
                l.requests.to_string(),
                l.sessions.map(|n| n.to_string()).unwrap_or_default(),
                l.tokens.to_string(),
                fmt_decimal(l.quantity),
                l.unit.clone(),
                fmt_decimal(l.unit_price),
                m(l.amount),
            ]);
            rows.push(v);
        }
        let mut summary = |label: String, amount: Decimal| {
            let mut v = Vec::new();
            head(&mut v);
            v.extend([
                String::new(),
                label,
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                m(amount),
            ]);
            rows.push(v);
        };
        summary("SUBTOTAL".into(), self.subtotal);
        if let Some(t) = &self.tenant.tax {
            summary(
                format!("{} {}%", t.name, fmt_decimal(t.rate * Decimal::new(100, 0))),
                self.tax_amount,
            );
        }
        summary("TOTAL".into(), self.total);
        rows
    }
}

/// Rebuilds a finalized invoice from its stored JSON; `fresh` supplies the tenant and period.
/// The stored document, not the ledger, is the truth for a finalized invoice.
pub fn from_json(doc: &Value, fresh: Invoice) -> Result<Invoice> {
    let bad = |what: &str| FinanceError::Invalid(format!("stored invoice: bad {what}"));
    let dec = |v: &Value, what: &str| -> Result<Decimal> {
        v.as_str()
            .and_then(|s| Decimal::from_str_exact(s).ok())
            .ok_or_else(|| bad(what))
    };
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let s = |v: &Value| v.as_str().map(String::from);
    let mut lines = Vec::new();
    for l in doc["lines"].as_array().ok_or_else(|| bad("lines"))? {
        lines.push(Line {
            feature: s(&l["feature"]),
            label: s(&l["label"]).unwrap_or_default(),
            requests: u(&l["requests"]),
            sessions: l["sessions"].as_u64(),
            tokens: u(&l["tokens"]),
            quantity: dec(&l["quantity"], "quantity")?,
            unit: s(&l["unit"]).unwrap_or_default(),
            unit_price: dec(&l["unit_price"], "unit_price")?,
            amount: dec(&l["amount"], "amount")?,
        });
    }
    let by_model = doc["usage_by_model"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        s(&m["model"]).unwrap_or_default(),
                        u(&m["requests"]),
                        u(&m["tokens"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let by_day = doc["usage_by_day"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    let day: Date = m["day"].as_str()?.parse().ok()?;
                    Some((day, u(&m["requests"]), u(&m["tokens"])))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Invoice {
        kind: s(&doc["kind"]).unwrap_or_else(|| "invoice".into()),
        number: s(&doc["number"]).ok_or_else(|| bad("number"))?,
        lines,
        subtotal: dec(&doc["subtotal"], "subtotal")?,
        tax_amount: if doc["tax"].is_null() {
            Decimal::ZERO
        } else {
            dec(&doc["tax"]["amount"], "tax")?
        },
        total: dec(&doc["total"], "total")?,
        note: s(&doc["note"]).unwrap_or_default(),
        by_model,
        by_day,
        problems: Vec::new(),
        corrects: s(&doc["corrects"]),
        reason: s(&doc["reason"]),
        finalized: true,
        ..fresh
    })
}

/// Rejects a tenant id that the ledger has never seen in the period, to catch typos.
pub fn check_has_data(ledger: &dyn Ledger, tenant: &Tenant, period: &Period) -> Result<()> {
    let rows = ledger.summarize(
        &SummaryQuery::new(period.start(), period.end(), vec![]).filter(Dim::Tenant, &tenant.id),
    )?;
    if rows.is_empty() {
        return Err(FinanceError::Invalid(format!(
            "tenant {:?} has no usage in {} ({}); check the tenant id and the period",
            tenant.id,
            period.label(),
            period.tz_name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn tenant(plan: Plan) -> Tenant {
        Tenant {
            id: "acme".into(),
            name: "ACME CORP".into(),
            currency: Currency::USD,
            timezone: "UTC".into(),
            number: "AI-{YYYY}-{MM}-ACME".into(),
            tax: Some(Tax {
                name: "KDV".into(),
                rate: d("0.20"),
            }),
            plan,
            minimum: None,
        }
    }

    fn usage(features: &[(&str, u64, u64)]) -> BTreeMap<String, FeatureUsage> {
        features
            .iter()
            .map(|(f, requests, tokens)| {
                (
                    f.to_string(),
                    FeatureUsage {
                        totals: Totals {
                            requests: *requests,
                            input_tokens: *tokens,
                            ..Totals::default()
                        },
                        sessions: 0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn tiered_plans_are_graduated() {
        // 25,000,000 tokens: first 10M at 0.010/1K = 100.00; next 10M at 0.008 = 80.00;
        // last 5M at 0.005 = 25.00.
        let t = tenant(Plan::Tiered(vec![
            Tier {
                up_to_tokens: Some(10_000_000),
                price_per_1k: d("0.010"),
            },
            Tier {
                up_to_tokens: Some(20_000_000),
                price_per_1k: d("0.008"),
            },
            Tier {
                up_to_tokens: None,
                price_per_1k: d("0.005"),
            },
        ]));
        let mut p = Vec::new();
        let lines = price_lines(
            &t,
            &usage(&[("a", 10, 15_000_000), ("b", 5, 10_000_000)]),
            &mut p,
        )
        .unwrap();
        let amounts: Vec<String> = lines.iter().map(|l| l.amount.to_string()).collect();
        // Two informational feature lines, then three tiers.
        assert_eq!(amounts, vec!["0.00", "0.00", "100.00", "80.00", "25.00"]);
    }

    #[test]
    fn flat_plans_charge_overage_above_the_allowance() {
        // Fee 1,000.00 with 50M included; 62.5M used -> 12.5M over at 0.01/1K = 125.00.
        let t = tenant(Plan::Flat {
            fee: d("1000"),
            included_tokens: 50_000_000,
            overage_per_1k: d("0.01"),
        });
        let mut p = Vec::new();
        let lines = price_lines(&t, &usage(&[("a", 10, 62_500_000)]), &mut p).unwrap();
        let tail: Vec<String> = lines[1..].iter().map(|l| l.amount.to_string()).collect();
        assert_eq!(tail, vec!["1000.00", "125.00"]);
    }

    #[test]
    fn rate_card_flags_features_without_a_line() {
        let t = tenant(Plan::RateCard(vec![RateCardLine {
            feature: "a".into(),
            label: "A".into(),
            unit: Unit::Request,
            price: d("0.05"),
            show_sessions: false,
        }]));
        let mut p = Vec::new();
        // 3 requests x 0.05 = 0.15; feature b has no line: a problem, not a silent drop.
        let lines = price_lines(&t, &usage(&[("a", 3, 10), ("b", 1, 10)]), &mut p).unwrap();
        assert_eq!(lines[0].amount.to_string(), "0.15");
        assert_eq!(p.len(), 1);
        assert!(p[0].what.contains("\"b\""), "{}", p[0].what);
    }

    #[test]
    fn numbers_fill_placeholders() {
        let p = Period::parse("2026-04", "UTC").unwrap();
        assert_eq!(
            number_scope("AI-{YYYY}-{MM}-{TENANT}", &p, "acme"),
            "AI-2026-04-ACME"
        );
        assert_eq!(fill_seq("INV-2026-{SEQ:5}", 42), "INV-2026-00042");
        assert_eq!(fill_seq("INV-{SEQ}", 7), "INV-7");
    }
}
