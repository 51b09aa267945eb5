//! Anomaly alerts (product capability 9): what changed in the spend that someone should look
//! at now, found from the ledger at an instant `at`, each with a key that names the rule, the
//! subject and the time bucket it belongs to, so that a check run every five minutes sends
//! each alert once (the caller keeps the keys it sent: no alert storms).
//!
//! Windows are days in the reporting time zone: `day` is the last complete day before `at`,
//! `baseline` the seven days before it (compared as a daily average).
//!
//! | kind | fires when | key bucket |
//! |---|---|---|
//! | `daily_jump` | the day's spend is more than `daily_jump` above the day before's, both at least `min_daily_spend` | day |
//! | `cache_hit_drop` | a feature's cache hit ratio (cache reads / all input) fell by more than `cache_hit_drop` points against the baseline | feature, day |
//! | `reasoning_surge` | a model's reasoning tokens per call grew more than `reasoning_surge` against the baseline | model, day |
//! | `cost_per_call_jump` | a feature's cost per call grew more than `cost_per_call_jump` against the baseline (a model upgrade) | feature, day |
//! | `runaway_user` | one user made more than `runaway_calls_per_hour` calls in the hour before `at` | user, hour |
//! | `off_hours` | a service made at least `off_hours_min_calls` calls on the day, `off_hours_share` or more of them between 00:00 and 06:00 | service, day |
//! | `budget_overrun` | a team's month-to-date spend is over its budget (`tollgate budgets set`) | team, month |
//! | `budget_forecast` | not over yet, but the month-to-date spend, extrapolated to the whole month at its pace so far, is | team, month |
//!
//! Comparisons need `min_calls` calls on both sides. Amounts are exact decimals; ratios are
//! decimals, never floats; money is shown rounded half away from zero to the cent.

use std::collections::BTreeMap;

use jiff::{Timestamp, ToSpan};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tollgate_core::money::round_half_away;
use tollgate_core::period::{civil_day, time_zone};
use tollgate_ledger::{Dim, Ledger, SummaryQuery, Totals};

use crate::Result;

/// When a change is worth an alert.
#[derive(Debug, Clone)]
pub struct AlertThresholds {
    /// Day-over-day growth of total spend (0.30 = +30 %).
    pub daily_jump: Decimal,
    /// Days below this spend are not compared (noise).
    pub min_daily_spend: Decimal,
    /// Drop of a feature's cache hit ratio, in ratio points (0.10 = 10 points).
    pub cache_hit_drop: Decimal,
    /// Growth of a model's reasoning tokens per call (0.50 = +50 %).
    pub reasoning_surge: Decimal,
    /// Growth of a feature's cost per call (0.30 = +30 %).
    pub cost_per_call_jump: Decimal,
    /// Calls a subject needs on both sides of a comparison.
    pub min_calls: u64,
    /// Calls by one user within an hour.
    pub runaway_calls_per_hour: u64,
    /// Share of a service's calls of the day made between 00:00 and 06:00.
    pub off_hours_share: Decimal,
    pub off_hours_min_calls: u64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            daily_jump: Decimal::new(30, 2),
            min_daily_spend: Decimal::new(10, 0),
            cache_hit_drop: Decimal::new(10, 2),
            reasoning_surge: Decimal::new(50, 2),
            cost_per_call_jump: Decimal::new(30, 2),
            min_calls: 50,
            runaway_calls_per_hour: 500,
            off_hours_share: Decimal::new(50, 2),
            off_hours_min_calls: 100,
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Rule, subject and time bucket: `daily_jump:2026-07-14`, `runaway_user:u-7:2026-07-15T09`.
    pub key: String,
    pub kind: &'static str,
    pub subject: String,
    pub message: String,
}

fn pct(d: Decimal) -> String {
    format!("{}%", round_half_away(d * Decimal::new(100, 0), 0))
}

fn usd(d: Decimal) -> String {
    format!("${}", round_half_away(d, 2))
}

fn cost(t: &Totals) -> Result<Decimal> {
    Ok(t.cost()?)
}

fn total_input(t: &Totals) -> u64 {
    t.input_tokens + t.cache_read_tokens + t.cache_write_tokens + t.cache_write_1h_tokens
}

/// Totals per value of `dim` over `[a, b)`.
fn by(
    ledger: &dyn Ledger,
    a: Timestamp,
    b: Timestamp,
    dim: Dim,
) -> Result<BTreeMap<String, Totals>> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for r in ledger.summarize(&SummaryQuery::new(a, b, vec![dim]))? {
        out.entry(r.keys[0].clone()).or_default().add(&r.totals);
    }
    Ok(out)
}

fn total(ledger: &dyn Ledger, a: Timestamp, b: Timestamp) -> Result<Totals> {
    let mut t = Totals::default();
    for r in ledger.summarize(&SummaryQuery::new(a, b, Vec::new()))? {
        t.add(&r.totals);
    }
    Ok(t)
}

fn err(e: impl std::fmt::Display) -> crate::FinanceError {
    crate::FinanceError::Invalid(e.to_string())
}

/// Finds the alerts at `at`, days and months in `tz`. Sorted by key.
pub fn check(
    ledger: &dyn Ledger,
    at: Timestamp,
    tz: &str,
    th: &AlertThresholds,
) -> Result<Vec<Alert>> {
    let zone = time_zone(tz).map_err(err)?;
    let today = civil_day(at, &zone);
    let midnight = |d: jiff::civil::Date| -> Result<Timestamp> {
        Ok(d.to_zoned_datetime(zone.clone()).map_err(err)?.timestamp())
    };
    let day = today.yesterday().map_err(err)?;
    let (d0, d1) = (midnight(day)?, midnight(today)?);
    let prev = day.yesterday().map_err(err)?;
    let p0 = midnight(prev)?;
    let b0 = midnight(day.checked_sub(7.days()).map_err(err)?)?;
    let mut out = Vec::new();

    // Day over day.
    let (t_day, t_prev) = (total(ledger, d0, d1)?, total(ledger, p0, d0)?);
    let (c_day, c_prev) = (cost(&t_day)?, cost(&t_prev)?);
    if c_prev >= th.min_daily_spend
        && c_day >= th.min_daily_spend
        && c_day > c_prev * (Decimal::ONE + th.daily_jump)
    {
        out.push(Alert {
            key: format!("daily_jump:{day}"),
            kind: "daily_jump",
            subject: day.to_string(),
            message: format!(
                "Spend on {day} was {} against {} on {prev}: {} up (threshold {})",
                usd(c_day),
                usd(c_prev),
                pct((c_day - c_prev) / c_prev),
                pct(th.daily_jump)
            ),
        });
    }

    // Per feature against the baseline week (daily averages: ratios per call cancel the 7).
    let f_day = by(ledger, d0, d1, Dim::Feature)?;
    let f_base = by(ledger, b0, d0, Dim::Feature)?;
    for (feature, t) in &f_day {
        let Some(b) = f_base.get(feature) else {
            continue;
        };
        if t.requests < th.min_calls || b.requests < th.min_calls || feature.is_empty() {
            continue;
        }
        let (in_d, in_b) = (total_input(t), total_input(b));
        if in_d > 0 && in_b > 0 {
            let r_d = Decimal::from(t.cache_read_tokens) / Decimal::from(in_d);
            let r_b = Decimal::from(b.cache_read_tokens) / Decimal::from(in_b);
            if r_b - r_d > th.cache_hit_drop {
                out.push(Alert {
                    key: format!("cache_hit_drop:{feature}:{day}"),
                    kind: "cache_hit_drop",
                    subject: feature.clone(),
                    message: format!(
                        "Cache hit ratio of feature {feature} fell to {} on {day} from {} over the week before",
                        pct(r_d),
                        pct(r_b)
                    ),
                });
            }
        }
        let (cd, cb) = (cost(t)?, cost(b)?);
        let per_d = cd / Decimal::from(t.requests);
        let per_b = cb / Decimal::from(b.requests);
        if per_b > Decimal::ZERO && per_d > per_b * (Decimal::ONE + th.cost_per_call_jump) {
            out.push(Alert {
                key: format!("cost_per_call_jump:{feature}:{day}"),
                kind: "cost_per_call_jump",
                subject: feature.clone(),
                message: format!(
                    "Cost per call of feature {feature} was ${} on {day} against ${} over the week before: {} up (a model change?)",
                    round_half_away(per_d, 4),
                    round_half_away(per_b, 4),
                    pct((per_d - per_b) / per_b)
                ),
            });
        }
    }

    // Reasoning tokens per call, per model.
    let m_day = by(ledger, d0, d1, Dim::Model)?;
    let m_base = by(ledger, b0, d0, Dim::Model)?;
    for (model, t) in &m_day {
        let Some(b) = m_base.get(model) else { continue };
        if t.requests < th.min_calls || b.requests < th.min_calls || b.reasoning_tokens == 0 {
            continue;
        }
        let r_d = Decimal::from(t.reasoning_tokens) / Decimal::from(t.requests);
        let r_b = Decimal::from(b.reasoning_tokens) / Decimal::from(b.requests);
        if r_d > r_b * (Decimal::ONE + th.reasoning_surge) {
            out.push(Alert {
                key: format!("reasoning_surge:{model}:{day}"),
                kind: "reasoning_surge",
                subject: model.clone(),
                message: format!(
                    "Reasoning tokens per call of {model} were {} on {day} against {} over the week before: {} up",
                    round_half_away(r_d, 0),
                    round_half_away(r_b, 0),
                    pct((r_d - r_b) / r_b)
                ),
            });
        }
    }

    // One user hammering in the last hour.
    let hour_ago = at.checked_sub(1.hour()).map_err(err)?;
    for (user, t) in ledger.spend_by_user(hour_ago, at)? {
        if !user.is_empty() && t.requests > th.runaway_calls_per_hour {
            let bucket = &tollgate_core::event::format_instant(at)[..13];
            out.push(Alert {
                key: format!("runaway_user:{user}:{bucket}"),
                kind: "runaway_user",
                subject: user.clone(),
                message: format!(
                    "User {user} made {} calls ({}) in the hour before {} (threshold {} calls/hour): a loop?",
                    t.requests,
                    usd(cost(&t)?),
                    tollgate_core::event::format_instant(at),
                    th.runaway_calls_per_hour
                ),
            });
        }
    }

    // Services busy at night.
    let six = midnight(day)?.checked_add(6.hours()).map_err(err)?;
    let night = by(ledger, d0, six.min(d1), Dim::Service)?;
    let s_day = by(ledger, d0, d1, Dim::Service)?;
    for (service, t) in &s_day {
        let n = night.get(service).map_or(0, |x| x.requests);
        if service.is_empty() || t.requests < th.off_hours_min_calls {
            continue;
        }
        let share = Decimal::from(n) / Decimal::from(t.requests);
        if share >= th.off_hours_share {
            out.push(Alert {
                key: format!("off_hours:{service}:{day}"),
                kind: "off_hours",
                subject: service.clone(),
                message: format!(
                    "Service {service} made {n} of its {} calls on {day} between 00:00 and 06:00 ({}, {}): an internal script?",
                    t.requests,
                    pct(share),
                    tz
                ),
            });
        }
    }

    // Team budgets of the month: overrun, or on course to.
    let month = tollgate_core::Period::month(today.year(), today.month(), tz).map_err(err)?;
    let label = month.label();
    let spend = by(ledger, month.start(), at.min(month.end()), Dim::Team)?;
    let elapsed = at.as_second() - month.start().as_second();
    let length = month.end().as_second() - month.start().as_second();
    for b in ledger.budgets(&label)? {
        let limit: Decimal = b
            .limit
            .parse()
            .map_err(|_| err(format!("budget of {} has limit {:?}", b.team_id, b.limit)))?;
        let spent = spend.get(&b.team_id).map_or(Ok(Decimal::ZERO), cost)?;
        if spent > limit {
            out.push(Alert {
                key: format!("budget_overrun:{}:{label}", b.team_id),
                kind: "budget_overrun",
                subject: b.team_id.clone(),
                message: format!(
                    "Team {} has spent {} of its {} budget for {label} ({} over)",
                    b.team_id,
                    usd(spent),
                    usd(limit),
                    usd(spent - limit)
                ),
            });
        } else if elapsed >= 86_400 && elapsed < length {
            let forecast = spent * Decimal::from(length) / Decimal::from(elapsed);
            if forecast > limit {
                out.push(Alert {
                    key: format!("budget_forecast:{}:{label}", b.team_id),
                    kind: "budget_forecast",
                    subject: b.team_id.clone(),
                    message: format!(
                        "Team {} is on course for {} in {label} against a {} budget ({} spent so far)",
                        b.team_id,
                        usd(forecast),
                        usd(limit),
                        usd(spent)
                    ),
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// One Slack Block Kit message for a batch of new alerts: at most `max_lines` listed, the rest
/// counted, so a burst never becomes a storm of messages.
pub fn to_slack(alerts: &[Alert], at: Timestamp, max_lines: usize) -> Value {
    let mut lines: Vec<String> = alerts
        .iter()
        .take(max_lines)
        .map(|a| format!("• *{}*: {}", a.kind, crate::digest::escape(&a.message)))
        .collect();
    if alerts.len() > max_lines {
        lines.push(format!(
            "…and {} more (`tollgate alerts check` lists them all)",
            alerts.len() - max_lines
        ));
    }
    let mut text = lines.join("\n");
    if text.chars().count() > 2900 {
        text = text.chars().take(2899).collect::<String>() + "…";
    }
    json!({
        "text": format!("Tollgate: {} new cost alert(s)", alerts.len()),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": format!("Tollgate cost alerts ({})", alerts.len())}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Checked at {}", tollgate_core::event::format_instant(at))}]}
        ]
    })
}
