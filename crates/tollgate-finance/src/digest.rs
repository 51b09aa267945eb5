//! The weekly digest for engineering (seed 000): the week's total and its change against the
//! previous week, the top five features, what needs attention, and the dashboard link, as a
//! Slack Block Kit message within Slack's limits.
//!
//! Invariants: amounts are exact until shown (rounded half away from zero to the minor unit);
//! ratios are decimals, never floats; the message respects Block Kit's limits (≤ 50 blocks,
//! section text ≤ 3,000 characters, header ≤ 150).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tollgate_core::event::format_instant;
use tollgate_core::money::group_thousands as group;
use tollgate_core::money::round_half_away;
use tollgate_core::{Currency, Period};
use tollgate_ledger::{Dim, Ledger, SummaryQuery, Totals};

use crate::Result;
use crate::summary::FxRule;

/// When a change is worth a line under "needs attention".
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// Drop of a feature's cache hit ratio, in ratio points (0.10 = 10 points).
    pub cache_hit_drop: Decimal,
    /// Growth of a model's reasoning tokens week over week (0.30 = +30 %).
    pub reasoning_growth: Decimal,
    /// Growth of a feature's cost per call (0.30 = +30 %).
    pub cost_per_call_jump: Decimal,
    /// Calls a feature needs in both weeks before its ratios are compared.
    pub min_calls: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cache_hit_drop: Decimal::new(10, 2),
            reasoning_growth: Decimal::new(30, 2),
            cost_per_call_jump: Decimal::new(30, 2),
            min_calls: 50,
        }
    }
}

/// Inputs of [`build`].
#[derive(Debug, Clone)]
pub struct DigestOptions {
    pub week: Period,
    pub fx: Option<FxRule>,
    pub dashboard_url: Option<String>,
    pub thresholds: Thresholds,
}

/// One line of the top five.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopFeature {
    pub feature: String,
    pub cost: Decimal,
    pub requests: u64,
}

/// The digest.
#[derive(Debug, Clone)]
pub struct Digest {
    pub week: Period,
    pub previous: Period,
    pub currency: Currency,
    pub fx: Option<FxRule>,
    /// Exact totals in the report currency.
    pub total: Decimal,
    pub previous_total: Decimal,
    pub requests: u64,
    pub top: Vec<TopFeature>,
    pub attention: Vec<String>,
    pub dashboard_url: Option<String>,
    pub unpriced_requests: u64,
}

fn total_input(t: &Totals) -> u64 {
    t.input_tokens + t.cache_read_tokens + t.cache_write_tokens + t.cache_write_1h_tokens
}

fn ratio(a: u64, b: u64) -> Option<Decimal> {
    (b > 0).then(|| Decimal::from(a) / Decimal::from(b))
}

fn pct(d: Decimal) -> String {
    format!("{}%", round_half_away(d * Decimal::new(100, 0), 0))
}

fn by(ledger: &dyn Ledger, p: &Period, dim: Dim) -> Result<(BTreeMap<String, Totals>, u64)> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    let mut unpriced = 0;
    for r in ledger.summarize(&SummaryQuery::new(
        p.start(),
        p.end(),
        vec![dim, Dim::PricingStatus],
    ))? {
        if r.keys[1] == "unpriced" {
            unpriced += r.totals.requests;
        }
        out.entry(r.keys[0].clone()).or_default().add(&r.totals);
    }
    Ok((out, unpriced))
}

/// Builds the digest of `opts.week` from the ledger's rollups.
pub fn build(ledger: &dyn Ledger, opts: &DigestOptions) -> Result<Digest> {
    let week = &opts.week;
    let previous = week.shifted(-1)?;
    let rate = opts.fx.as_ref().map_or(Decimal::ONE, |f| f.rate);
    let currency = opts.fx.as_ref().map_or(Currency::USD, |f| f.to);
    let (features, unpriced_requests) = by(ledger, week, Dim::Feature)?;
    let (prev_features, _) = by(ledger, &previous, Dim::Feature)?;
    let (models, _) = by(ledger, week, Dim::Model)?;
    let (prev_models, _) = by(ledger, &previous, Dim::Model)?;
    let cost = |t: &Totals| -> Result<Decimal> { Ok(t.cost()? * rate) };

    let mut total = Decimal::ZERO;
    let mut requests = 0;
    for t in features.values() {
        total += cost(t)?;
        requests += t.requests;
    }
    let mut previous_total = Decimal::ZERO;
    for t in prev_features.values() {
        previous_total += cost(t)?;
    }
    let mut top: Vec<TopFeature> = features
        .iter()
        .map(|(f, t)| {
            Ok(TopFeature {
                feature: if f.is_empty() {
                    "(no feature)".into()
                } else {
                    f.clone()
                },
                cost: cost(t)?,
                requests: t.requests,
            })
        })
        .collect::<Result<_>>()?;
    top.sort_by(|a, b| b.cost.cmp(&a.cost).then(a.feature.cmp(&b.feature)));
    top.truncate(5);

    let minor = currency.minor_units();
    let th = &opts.thresholds;
    let mut attention = Vec::new();
    for (f, t) in &features {
        let Some(p) = prev_features.get(f) else {
            continue;
        };
        if f.is_empty() || t.requests < th.min_calls || p.requests < th.min_calls {
            continue;
        }
        if let (Some(now), Some(before)) = (
            ratio(t.cache_read_tokens, total_input(t)),
            ratio(p.cache_read_tokens, total_input(p)),
        ) && before - now >= th.cache_hit_drop
        {
            attention.push(format!(
                "*{f}*: cache hit ratio fell {} → {}",
                pct(before),
                pct(now)
            ));
        }
        let cpc_now = cost(t)? / Decimal::from(t.requests);
        let cpc_before = cost(p)? / Decimal::from(p.requests);
        if cpc_before > Decimal::ZERO
            && (cpc_now / cpc_before - Decimal::ONE) >= th.cost_per_call_jump
        {
            attention.push(format!(
                "*{f}*: cost per call {} → {} {currency} (+{}); a model change?",
                round_half_away(cpc_before, minor + 3).normalize(),
                round_half_away(cpc_now, minor + 3).normalize(),
                pct(cpc_now / cpc_before - Decimal::ONE)
            ));
        }
    }
    for (m, t) in &models {
        if let Some(p) = prev_models.get(m) {
            if p.reasoning_tokens > 0
                && Decimal::from(t.reasoning_tokens) / Decimal::from(p.reasoning_tokens)
                    - Decimal::ONE
                    >= th.reasoning_growth
            {
                attention.push(format!(
                    "*{m}*: reasoning tokens up {} ({} → {})",
                    pct(
                        Decimal::from(t.reasoning_tokens) / Decimal::from(p.reasoning_tokens)
                            - Decimal::ONE
                    ),
                    p.reasoning_tokens,
                    t.reasoning_tokens
                ));
            }
        } else if requests > 0 && t.requests > 0 && !prev_models.is_empty() {
            // "New" only means something against a week that had traffic.
            let avg = total / Decimal::from(requests);
            let cpc = cost(t)? / Decimal::from(t.requests);
            if cpc >= avg && cpc > Decimal::ZERO {
                attention.push(format!(
                    "*{m}*: new this week, {} {currency} per call ({}× the average); planned?",
                    round_half_away(cpc, minor + 3).normalize(),
                    round_half_away(
                        if avg > Decimal::ZERO {
                            cpc / avg
                        } else {
                            Decimal::ZERO
                        },
                        1
                    )
                ));
            }
        }
    }
    if unpriced_requests > 0 {
        attention.push(format!(
            "{unpriced_requests} requests have no price (not in the total): add their rates"
        ));
    }
    Ok(Digest {
        week: week.clone(),
        previous,
        currency,
        fx: opts.fx.clone(),
        total,
        previous_total,
        requests,
        top,
        attention,
        dashboard_url: opts.dashboard_url.clone(),
        unpriced_requests,
    })
}

/// Escapes text for Slack mrkdwn.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        s
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

impl Digest {
    fn money(&self, d: Decimal) -> String {
        group(&round_half_away(d, self.currency.minor_units()).to_string())
    }

    /// The change against the previous week, e.g. `-8%`; None when last week had nothing.
    pub fn change(&self) -> Option<Decimal> {
        (self.previous_total > Decimal::ZERO)
            .then(|| self.total / self.previous_total - Decimal::ONE)
    }

    /// One-line fallback text (Slack notifications).
    pub fn summary_line(&self) -> String {
        let change = match self.change() {
            Some(c) if c >= Decimal::ZERO => format!(" (+{} vs {})", pct(c), self.previous.label()),
            Some(c) => format!(" ({} vs {})", pct(c), self.previous.label()),
            None => String::new(),
        };
        format!(
            "LLM spend {}: {} {}{change}",
            self.week.label(),
            self.money(self.total),
            self.currency
        )
    }

    /// The Block Kit message (`text` + `blocks`), within Slack's limits.
    pub fn to_slack(&self) -> Value {
        let mut blocks = Vec::new();
        blocks.push(json!({"type": "header", "text": {"type": "plain_text",
            "text": clip(format!("Weekly LLM cost digest — {}", self.week.label()), 150), "emoji": true}}));
        let trend = match self.change() {
            Some(c) if c > Decimal::ZERO => format!("+{} vs previous week :arrow_up:", pct(c)),
            Some(c) if c < Decimal::ZERO => {
                format!("{} vs previous week :white_check_mark:", pct(c))
            }
            Some(_) => "unchanged vs previous week".into(),
            None => "no spend the previous week".into(),
        };
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(format!(
            "*Total spend:* {} {}  ({trend})\n*Requests:* {}",
            self.money(self.total), self.currency, group(&self.requests.to_string())), 3000)}}),
        );
        let mut top = String::from("*Top 5 features*\n");
        for (i, t) in self.top.iter().enumerate() {
            top.push_str(&format!(
                "{}. {}  {} {}  ({} calls)\n",
                i + 1,
                escape(&t.feature),
                self.money(t.cost),
                self.currency,
                group(&t.requests.to_string())
            ));
        }
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(top, 3000)}}));
        let attention = if self.attention.is_empty() {
            "*Needs attention*\nNothing unusual this week.".to_string()
        } else {
            let mut s = String::from("*Needs attention*\n");
            for a in &self.attention {
                s.push_str(&format!("• {}\n", escape(a).replace("&amp;", "&")));
            }
            s
        };
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(attention, 3000)}}),
        );
        if let Some(url) = &self.dashboard_url {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
                "text": clip(format!("<{}|Open the dashboard>", escape(url)), 3000)}}));
        }
        blocks.push(json!({"type": "divider"}));
        let mut ctx = format!(
            "{}: [{}, {}) UTC, {} • previous week {}",
            self.week.label(),
            format_instant(self.week.start()),
            format_instant(self.week.end()),
            self.week.tz_name(),
            self.previous.label()
        );
        if let Some(f) = &self.fx {
            ctx.push_str(&format!(" • {}", f.describe()));
        }
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(escape(&ctx), 3000)}]}));
        json!({"text": self.summary_line(), "blocks": blocks})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_slack_limits() {
        let long = "x".repeat(5000);
        assert_eq!(clip(long, 3000).chars().count(), 3000);
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(pct(Decimal::new(-76, 3)), "-8%");
    }
}
