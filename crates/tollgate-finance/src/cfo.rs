//! The CFO's monthly report (seed 000): four pages of numbers for one calendar month in the
//! reporting time zone. This module builds the model; `tollgate-pdf` lays it out.
//!
//! - Page 1, summary: the month's total, the change against the previous month and against
//!   the same month a year earlier (`None` = "n/a": that month has no priced data), and the
//!   share of a monthly target when one is given.
//! - Page 2, providers: cost, share and requests per provider.
//! - Page 3, features: the ten most expensive features (cost, share, requests, cost per call)
//!   and one line for all the others.
//! - Page 4, trends and alerts: spend and cache hit ratio per civil day, the days whose spend
//!   rose more than 30 % over the day before, and budget overruns (none until budgets exist).
//!
//! Invariants:
//! - every figure is exact (`Decimal`, never a float); rounding happens only in
//!   [`CfoReport::shown`], half away from zero to the currency's minor unit;
//! - the month's shown total is the sum of the shown provider amounts, so the provider table
//!   adds up to the headline figure;
//! - each day is queried as its own period (`[local midnight, next local midnight)` in UTC), so
//!   daily figures are exact in any time zone, including half-hour offsets and DST days, and
//!   the days add up to the month exactly;
//! - unpriced usage has no cost: it is counted (requests) and never priced at zero;
//! - earlier months are converted at the same FX rule as the reported month (a
//!   constant-currency comparison).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::Date;
use rust_decimal::Decimal;
use tollgate_core::money::round_half_away;
use tollgate_core::period::PeriodKind;
use tollgate_core::{Currency, Period};
use tollgate_ledger::{Dim, Ledger, SummaryQuery, Totals};

use crate::summary::FxRule;
use crate::{FinanceError, Result};

/// A day is listed under "spend spikes" when its spend exceeds the previous day's by more
/// than this fraction (0.30 = +30 %).
pub const SPIKE_THRESHOLD: Decimal = Decimal::from_parts(30, 0, 0, false, 2);

/// How many features page 3 lists by name.
pub const TOP_FEATURES: usize = 10;

/// Inputs of [`build`].
#[derive(Debug, Clone)]
pub struct CfoOptions {
    /// The reported month (a [`PeriodKind::Month`] period in the reporting time zone).
    pub period: Period,
    /// Convert every amount at one fixed rate.
    pub fx: Option<FxRule>,
    /// The monthly spend target, in the report currency.
    pub target: Option<Decimal>,
    /// When the report is generated (an injected clock, so tests are deterministic).
    pub generated_at: Timestamp,
}

/// Usage and exact cost of one group (a provider, a feature, a day, a month).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Requests, tokens and the unconverted cost of every event of the group.
    pub totals: Totals,
    /// Exact cost in the report currency (priced and estimated events only).
    pub cost: Decimal,
    /// Requests that have a cost.
    pub priced_requests: u64,
    /// Requests without a rate: counted, never priced.
    pub unpriced_requests: u64,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        self.totals.add(&o.totals);
        self.cost += o.cost;
        self.priced_requests += o.priced_requests;
        self.unpriced_requests += o.unpriced_requests;
    }

    /// Whether anything was recorded at all.
    pub fn is_empty(&self) -> bool {
        self.totals.requests == 0
    }

    /// Cost per priced request (`None` without priced requests).
    pub fn cost_per_call(&self) -> Option<Decimal> {
        self.cost.checked_div(Decimal::from(self.priced_requests))
    }

    /// Input tokens of every class: fresh, cache reads and cache writes.
    pub fn total_input_tokens(&self) -> u64 {
        let t = &self.totals;
        t.input_tokens + t.cache_read_tokens + t.cache_write_tokens + t.cache_write_1h_tokens
    }

    /// Cache reads over total input (`None` without input tokens).
    pub fn cache_hit_ratio(&self) -> Option<Decimal> {
        Decimal::from(self.totals.cache_read_tokens)
            .checked_div(Decimal::from(self.total_input_tokens()))
    }
}

/// A named line of a breakdown table (a provider or a feature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The provider or feature; `(none)` when the events did not name one.
    pub name: String,
    pub usage: Usage,
}

/// One civil day of the month in the reporting time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: Date,
    pub usage: Usage,
}

/// A day whose spend rose more than [`SPIKE_THRESHOLD`] over the previous day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spike {
    pub date: Date,
    pub cost: Decimal,
    pub previous_cost: Decimal,
    /// `cost / previous_cost - 1` (0.5 = +50 %).
    pub increase: Decimal,
}

/// A budget whose limit the month's spend exceeded. Budgets are not configurable yet, so
/// Filled from the team budgets of the month (`tollgate budgets set`) that the spend exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetOverrun {
    pub budget: String,
    pub limit: Decimal,
    pub actual: Decimal,
}

/// An earlier month the report compares with.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub period: Period,
    /// Exact total in the report currency; `None` when the month has no priced usage.
    pub total: Option<Decimal>,
    /// The total as that month's own report shows it: the sum of its shown provider amounts.
    pub shown: Option<Decimal>,
}

/// The report model.
#[derive(Debug, Clone)]
pub struct CfoReport {
    pub period: Period,
    pub currency: Currency,
    pub fx: Option<FxRule>,
    pub generated_at: Timestamp,
    /// The whole month.
    pub month: Usage,
    pub previous_month: Comparison,
    pub year_ago: Comparison,
    pub target: Option<Decimal>,
    /// Every provider, most expensive first (then by name).
    pub providers: Vec<Line>,
    /// The [`TOP_FEATURES`] most expensive features, most expensive first (then by name).
    pub top_features: Vec<Line>,
    /// All the other features together, and how many they are.
    pub other_features: Option<(usize, Usage)>,
    /// Every civil day of the month, in order.
    pub days: Vec<Day>,
    /// The day before the month's first day (the baseline for its spike test).
    pub day_before: Day,
    pub spikes: Vec<Spike>,
    /// Always empty until budgets exist.
    pub budget_overruns: Vec<BudgetOverrun>,
}

/// Rows of one summary query, by the first group key (or `""` when ungrouped), with each
/// priced row's currency.
struct Grouped {
    rows: BTreeMap<String, Totals>,
    priced: BTreeMap<String, (u64, Totals)>,
    unpriced: BTreeMap<String, u64>,
    currencies: BTreeSet<String>,
}

fn query(ledger: &dyn Ledger, p: &Period, dim: Option<Dim>) -> Result<Grouped> {
    let mut group: Vec<Dim> = dim.into_iter().collect();
    let n = group.len();
    group.extend([Dim::Currency, Dim::PricingStatus]);
    let mut g = Grouped {
        rows: BTreeMap::new(),
        priced: BTreeMap::new(),
        unpriced: BTreeMap::new(),
        currencies: BTreeSet::new(),
    };
    for r in ledger.summarize(&SummaryQuery::new(p.start(), p.end(), group))? {
        let key = if n == 1 {
            r.keys[0].clone()
        } else {
            String::new()
        };
        g.rows.entry(key.clone()).or_default().add(&r.totals);
        if r.keys[n + 1] == "unpriced" {
            *g.unpriced.entry(key).or_default() += r.totals.requests;
        } else {
            g.currencies.insert(r.keys[n].clone());
            let e = g.priced.entry(key).or_default();
            e.0 += r.totals.requests;
            e.1.add(&r.totals);
        }
    }
    Ok(g)
}

/// Conversion of ledger costs into the report currency.
struct Conversion {
    /// The ledger currency every priced event must be in.
    from: String,
    rate: Decimal,
}

impl Conversion {
    /// Checks that a period's priced usage is all in the source currency.
    fn check(&self, g: &Grouped, p: &Period) -> Result<()> {
        match g.currencies.iter().find(|c| **c != self.from) {
            None => Ok(()),
            Some(c) => Err(FinanceError::Invalid(format!(
                "{} has costs in {c}, but the report converts from {}; a report needs one currency",
                p.label(),
                self.from
            ))),
        }
    }

    fn usage(&self, g: &Grouped, key: &str) -> Result<Usage> {
        let (priced_requests, priced) = g.priced.get(key).cloned().unwrap_or_default();
        let cost = priced
            .cost()?
            .checked_mul(self.rate)
            .ok_or_else(|| FinanceError::Invalid("cost overflow in conversion".into()))?;
        Ok(Usage {
            totals: g.rows.get(key).copied().unwrap_or_default(),
            cost,
            priced_requests,
            unpriced_requests: g.unpriced.get(key).copied().unwrap_or_default(),
        })
    }

    fn lines(&self, g: &Grouped) -> Result<Vec<Line>> {
        let mut lines = g
            .rows
            .keys()
            .map(|k| {
                Ok(Line {
                    name: if k.is_empty() {
                        "(none)".into()
                    } else {
                        k.clone()
                    },
                    usage: self.usage(g, k)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        lines.sort_by(|a, b| {
            b.usage
                .cost
                .cmp(&a.usage.cost)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(lines)
    }
}

fn day_period(date: Date, tz: &str) -> Result<Period> {
    Ok(Period::parse(&date.to_string(), tz)?)
}

/// Builds the report for `opts.period` from the ledger's rollups: a handful of grouped
/// queries for the month and its comparisons, plus one query per civil day.
pub fn build(ledger: &dyn Ledger, opts: &CfoOptions) -> Result<CfoReport> {
    let period = &opts.period;
    if period.kind() != PeriodKind::Month {
        return Err(FinanceError::Invalid(format!(
            "--period {}: the CFO report covers a calendar month; give YYYY-MM",
            period.label()
        )));
    }
    if let Some(t) = opts.target
        && t <= Decimal::ZERO
    {
        return Err(FinanceError::Invalid(format!(
            "--target {t}: the monthly target must be above zero"
        )));
    }
    let previous = period.shifted(-1)?;
    let year_ago = period.shifted(-12)?;

    let by_provider = query(ledger, period, Some(Dim::Provider))?;
    let by_feature = query(ledger, period, Some(Dim::Feature))?;
    let prev = query(ledger, &previous, Some(Dim::Provider))?;
    let last_year = query(ledger, &year_ago, Some(Dim::Provider))?;

    // One source currency for everything the report shows.
    let mut currencies = by_provider.currencies.clone();
    currencies.extend(prev.currencies.iter().cloned());
    currencies.extend(last_year.currencies.iter().cloned());
    let (currency, conv) = match &opts.fx {
        Some(fx) => (
            fx.to,
            Conversion {
                from: fx.from.as_str().to_string(),
                rate: fx.rate,
            },
        ),
        None => {
            if currencies.len() > 1 {
                return Err(FinanceError::Invalid(format!(
                    "{}, {} and {} have costs in several currencies ({}); pass --currency and --fx-rate to convert",
                    period.label(),
                    previous.label(),
                    year_ago.label(),
                    currencies.iter().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            let c = match currencies.iter().next() {
                Some(c) => Currency::parse(c)?,
                None => Currency::USD,
            };
            (
                c,
                Conversion {
                    from: c.as_str().to_string(),
                    rate: Decimal::ONE,
                },
            )
        }
    };
    conv.check(&by_provider, period)?;
    conv.check(&prev, &previous)?;
    conv.check(&last_year, &year_ago)?;

    let providers = conv.lines(&by_provider)?;
    let mut month = Usage::default();
    for l in &providers {
        month.add(&l.usage);
    }
    let mut features = conv.lines(&by_feature)?;
    let other_features = if features.len() > TOP_FEATURES {
        let rest = features.split_off(TOP_FEATURES);
        let mut u = Usage::default();
        for l in &rest {
            u.add(&l.usage);
        }
        Some((rest.len(), u))
    } else {
        None
    };

    let minor = currency.minor_units();
    let comparison = |g: &Grouped, p: &Period| -> Result<Comparison> {
        let lines = conv.lines(g)?;
        let priced: u64 = lines.iter().map(|l| l.usage.priced_requests).sum();
        let total: Decimal = lines.iter().map(|l| l.usage.cost).sum();
        let shown: Decimal = lines
            .iter()
            .map(|l| round_half_away(l.usage.cost, minor))
            .sum();
        Ok(Comparison {
            period: p.clone(),
            total: (priced > 0).then_some(total),
            shown: (priced > 0).then_some(shown),
        })
    };
    let previous_month = comparison(&prev, &previous)?;
    let year_ago = comparison(&last_year, &year_ago)?;

    // Days: each its own period, so that the bounds are local midnights whatever the offset.
    let tz = period.tz_name();
    let day_usage = |date: Date| -> Result<Day> {
        let p = day_period(date, tz)?;
        let g = query(ledger, &p, None)?;
        conv.check(&g, &p)?;
        Ok(Day {
            date,
            usage: conv.usage(&g, "")?,
        })
    };
    let first = period.first_day();
    let day_before = day_usage(
        first
            .yesterday()
            .map_err(|e| FinanceError::Invalid(format!("no day before {first}: {e}")))?,
    )?;
    let days = period
        .days()
        .into_iter()
        .map(day_usage)
        .collect::<Result<Vec<_>>>()?;
    let spikes = spikes(&day_before, &days);

    // Budgets (recorded in the ledger's currency, USD) that the month's spend exceeded.
    let rate = opts.fx.as_ref().map_or(Decimal::ONE, |f| f.rate);
    let mut budget_overruns = Vec::new();
    let by_team = ledger.summarize(&SummaryQuery::new(
        period.start(),
        period.end(),
        vec![Dim::Team],
    ))?;
    for b in ledger.budgets(&period.label())? {
        let limit = tollgate_core::money::parse_decimal("limit", &b.limit)?;
        let actual: Decimal = by_team
            .iter()
            .filter(|r| r.keys[0] == b.team_id)
            .map(|r| r.totals.cost())
            .sum::<std::result::Result<Decimal, _>>()?;
        if actual > limit {
            budget_overruns.push(BudgetOverrun {
                budget: b.team_id.clone(),
                limit: limit * rate,
                actual: actual * rate,
            });
        }
    }

    Ok(CfoReport {
        period: period.clone(),
        currency,
        fx: opts.fx.clone(),
        generated_at: opts.generated_at,
        month,
        previous_month,
        year_ago,
        target: opts.target,
        providers,
        top_features: features,
        other_features,
        days,
        day_before,
        spikes,
        budget_overruns,
    })
}

/// Days whose cost rose more than [`SPIKE_THRESHOLD`] over the previous day. A day after a
/// day without spend has no baseline and is not listed.
fn spikes(day_before: &Day, days: &[Day]) -> Vec<Spike> {
    let mut out = Vec::new();
    let mut prev = day_before;
    for d in days {
        if prev.usage.cost > Decimal::ZERO
            && let Some(ratio) = d.usage.cost.checked_div(prev.usage.cost)
        {
            let increase = ratio - Decimal::ONE;
            if increase > SPIKE_THRESHOLD {
                out.push(Spike {
                    date: d.date,
                    cost: d.usage.cost,
                    previous_cost: prev.usage.cost,
                    increase,
                });
            }
        }
        prev = d;
    }
    out
}

impl CfoReport {
    /// An amount as shown: rounded half away from zero to the currency's minor unit.
    pub fn shown(&self, d: Decimal) -> Decimal {
        round_half_away(d, self.currency.minor_units())
    }

    /// The month's total as shown: the sum of the shown provider amounts.
    pub fn total_shown(&self) -> Decimal {
        self.providers
            .iter()
            .map(|l| self.shown(l.usage.cost))
            .sum()
    }

    /// The month's exact total.
    pub fn total(&self) -> Decimal {
        self.month.cost
    }

    /// `part / total` of the month (`None` when the month cost nothing).
    pub fn share(&self, part: Decimal) -> Option<Decimal> {
        part.checked_div(self.month.cost)
    }

    /// Change against a comparison month: `total / earlier - 1` (`None` = n/a: no data, or
    /// the earlier month cost nothing).
    pub fn change(&self, against: &Comparison) -> Option<Decimal> {
        let earlier = against.total?;
        self.month
            .cost
            .checked_div(earlier)
            .map(|r| r - Decimal::ONE)
    }

    /// The month's total as a fraction of the target (1 = exactly on target).
    pub fn of_target(&self) -> Option<Decimal> {
        self.month.cost.checked_div(self.target?)
    }

    /// Requests of the month without a rate (not in any amount).
    pub fn unpriced_requests(&self) -> u64 {
        self.month.unpriced_requests
    }
}

/// A ratio as a percentage rounded half away from zero to `dp` places: `0.1234` -> `12.3`.
pub fn percent(ratio: Decimal, dp: u32) -> Decimal {
    round_half_away(ratio * Decimal::ONE_HUNDRED, dp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_ledger::conformance::event;
    use tollgate_ledger::sqlite::SqliteLedger;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    /// An event at `at` costing `cost` (None: unpriced) on `provider` for `feature`, with
    /// `input` fresh and `cached` cache-read input tokens.
    #[allow(clippy::too_many_arguments)]
    fn ev(
        n: u32,
        at: &str,
        provider: &str,
        feature: &str,
        cost: Option<&str>,
        input: u64,
        cached: u64,
    ) -> tollgate_core::UsageEvent {
        let mut e = event(n, at, Some("t"), input, cost);
        e.provider = provider.into();
        e.attribution.feature = Some(feature.into());
        e.usage.cache_read_tokens = cached;
        e
    }

    fn opts(period: &str, tz: &str) -> CfoOptions {
        CfoOptions {
            period: Period::parse(period, tz).unwrap(),
            fx: None,
            target: Some(d("200.00")),
            generated_at: "2026-08-01T06:00:00Z".parse().unwrap(),
        }
    }

    /// July 2026 (UTC) against June 2026 and July 2025:
    /// - July: openai 60.00 (search 40.00 on Jul 1, chat 20.00 on Jul 2), anthropic 30.00
    ///   (summary 30.00 on Jul 2), one unpriced call on Jul 3. Total 90.00.
    /// - June 2026: 72.00 (Jun 30). July 2025: 120.00.
    ///
    /// MoM: 90 / 72 - 1 = 0.25 -> +25.0 %. YoY: 90 / 120 - 1 = -0.25 -> -25.0 %.
    /// Target 200: 90 / 200 = 45.0 %.
    /// Providers: openai 60 / 90 = 66.7 %, anthropic 30 / 90 = 33.3 %.
    /// Days: Jun 30 72.00 -> Jul 1 40.00 (-44 %) -> Jul 2 50.00 (+25 %: not > 30 %).
    fn ledger() -> (tempfile::TempDir, SqliteLedger) {
        let dir = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(dir.path()).unwrap();
        let evs = vec![
            ev(
                1,
                "2026-07-01T10:00:00Z",
                "openai",
                "search",
                Some("40.00"),
                100,
                300,
            ),
            ev(
                2,
                "2026-07-02T10:00:00Z",
                "openai",
                "chat",
                Some("20.00"),
                100,
                0,
            ),
            ev(
                3,
                "2026-07-02T23:59:59Z",
                "anthropic",
                "summary",
                Some("30.00"),
                300,
                100,
            ),
            ev(4, "2026-07-03T01:00:00Z", "openai", "chat", None, 50, 0),
            ev(
                5,
                "2026-06-30T12:00:00Z",
                "openai",
                "chat",
                Some("72.00"),
                10,
                0,
            ),
            ev(
                6,
                "2025-07-15T12:00:00Z",
                "openai",
                "chat",
                Some("120.00"),
                10,
                0,
            ),
        ];
        l.append(&evs).unwrap();
        (dir, l)
    }

    #[test]
    fn month_over_month_year_over_year_target_and_shares_are_worked_by_hand() {
        let (_dir, l) = ledger();
        let r = build(&l, &opts("2026-07", "UTC")).unwrap();
        assert_eq!(r.total(), d("90"));
        assert_eq!(r.total_shown(), d("90.00"));
        assert_eq!(r.previous_month.total, Some(d("72")));
        assert_eq!(r.year_ago.total, Some(d("120")));
        assert_eq!(percent(r.change(&r.previous_month).unwrap(), 1), d("25.0"));
        assert_eq!(percent(r.change(&r.year_ago).unwrap(), 1), d("-25.0"));
        assert_eq!(percent(r.of_target().unwrap(), 1), d("45.0"));
        assert_eq!(r.unpriced_requests(), 1);
        assert_eq!(r.month.totals.requests, 4);

        let names: Vec<&str> = r.providers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["openai", "anthropic"]);
        assert_eq!(
            percent(r.share(r.providers[0].usage.cost).unwrap(), 1),
            d("66.7")
        );
        assert_eq!(
            percent(r.share(r.providers[1].usage.cost).unwrap(), 1),
            d("33.3")
        );
        // openai: 2 priced calls for 60.00 plus the unpriced one: 30.00 per priced call.
        assert_eq!(r.providers[0].usage.totals.requests, 3);
        assert_eq!(r.providers[0].usage.cost_per_call(), Some(d("30")));

        let features: Vec<&str> = r.top_features.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(features, ["search", "summary", "chat"]);
        assert!(r.other_features.is_none());
        assert!(r.budget_overruns.is_empty());
    }

    #[test]
    fn budgets_the_month_exceeded_are_listed() {
        let (_dir, mut l) = ledger();
        let budget = |team: &str, limit: &str| tollgate_ledger::BudgetEntry {
            team_id: team.into(),
            period: "2026-07".into(),
            limit: limit.into(),
            currency: "USD".into(),
            owner: None,
            comment: None,
        };
        let mut w = l.writer().unwrap();
        // Team t spent 40 + 20 + 30 = 90.00 in July: over 80, under 100 (set later, in force).
        w.record_budget(&budget("t", "80")).unwrap();
        w.record_budget(&budget("other", "5")).unwrap();
        w.commit().unwrap();
        let r = build(&l, &opts("2026-07", "UTC")).unwrap();
        assert_eq!(r.budget_overruns.len(), 1);
        assert_eq!(r.budget_overruns[0].budget, "t");
        assert_eq!(r.budget_overruns[0].limit, d("80"));
        assert_eq!(r.budget_overruns[0].actual, d("90"));
        let mut w = l.writer().unwrap();
        w.record_budget(&budget("t", "100")).unwrap();
        w.commit().unwrap();
        assert!(
            build(&l, &opts("2026-07", "UTC"))
                .unwrap()
                .budget_overruns
                .is_empty()
        );
    }

    #[test]
    fn days_spikes_and_cache_ratio_are_per_local_day() {
        let (_dir, l) = ledger();
        let r = build(&l, &opts("2026-07", "UTC")).unwrap();
        assert_eq!(r.days.len(), 31);
        assert_eq!(r.day_before.usage.cost, d("72"));
        let cost: Vec<Decimal> = r.days[..4].iter().map(|d| d.usage.cost).collect();
        assert_eq!(cost, [d("40"), d("50"), d("0"), d("0")]);
        // Jul 2 is +25 %: not a spike; no other day rose from a non-zero day.
        assert!(r.spikes.is_empty(), "{:?}", r.spikes);
        // Cache: Jul 1 300 / (100 + 300) = 0.75; Jul 2 100 / (100 + 300 + 100) = 0.2;
        // Jul 3 0 / 50 = 0; Jul 4 no input: none.
        let ratios: Vec<Option<Decimal>> = r.days[..4]
            .iter()
            .map(|d| d.usage.cache_hit_ratio())
            .collect();
        assert_eq!(
            ratios,
            [Some(d("0.75")), Some(d("0.2")), Some(d("0")), None]
        );
        assert_eq!(r.days[2].usage.unpriced_requests, 1);
        let sum: Decimal = r.days.iter().map(|d| d.usage.cost).sum();
        assert_eq!(sum, r.total());

        // In Asia/Kolkata (UTC+05:30) the 23:59:59Z call of Jul 2 falls on Jul 3 05:29:59
        // local: Jul 2 = 20.00, Jul 3 = 30.00 (+50 %: a spike). Jun 30 12:00Z is Jun 30
        // 17:30 local (72.00, the day before), Jul 1 10:00Z is Jul 1 15:30 (40.00).
        let r = build(&l, &opts("2026-07", "Asia/Kolkata")).unwrap();
        let cost: Vec<Decimal> = r.days[..3].iter().map(|d| d.usage.cost).collect();
        assert_eq!(cost, [d("40"), d("20"), d("30")]);
        assert_eq!(r.spikes.len(), 1);
        assert_eq!(r.spikes[0].date.to_string(), "2026-07-03");
        assert_eq!(r.spikes[0].increase, d("0.5"));
    }

    #[test]
    fn no_data_is_not_applicable_and_more_than_ten_features_fold_into_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(dir.path()).unwrap();
        // 12 features on Jul 10: feature k costs k.00, so f12..f3 are listed and f1 + f2 =
        // 3.00 fold into "2 other features". Jul 11 spends 0.01, Jul 12 0.02 (+100 %).
        let mut evs: Vec<_> = (1..=12)
            .map(|k| {
                let cost = format!("{k}.00");
                ev(
                    k,
                    "2026-07-10T08:00:00Z",
                    "openai",
                    &format!("f{k:02}"),
                    Some(&cost),
                    1,
                    0,
                )
            })
            .collect();
        evs.push(ev(
            20,
            "2026-07-11T08:00:00Z",
            "openai",
            "f01",
            Some("0.01"),
            1,
            0,
        ));
        evs.push(ev(
            21,
            "2026-07-12T08:00:00Z",
            "openai",
            "f01",
            Some("0.02"),
            1,
            0,
        ));
        l.append(&evs).unwrap();
        let mut o = opts("2026-07", "UTC");
        o.target = None;
        let r = build(&l, &o).unwrap();
        assert_eq!(r.previous_month.total, None);
        assert_eq!(r.change(&r.previous_month), None);
        assert_eq!(r.change(&r.year_ago), None);
        assert_eq!(r.of_target(), None);
        assert_eq!(r.top_features.len(), 10);
        assert_eq!(r.top_features[0].name, "f12");
        assert_eq!(r.top_features[9].name, "f03");
        let (n, rest) = r.other_features.clone().unwrap();
        assert_eq!((n, rest.cost), (2, d("3.03")));
        // Jul 10 78.00 -> Jul 11 0.01 (a drop) -> Jul 12 0.02 (+100 %).
        let spikes: Vec<String> = r.spikes.iter().map(|s| s.date.to_string()).collect();
        assert_eq!(spikes, ["2026-07-12"]);
        assert_eq!(r.spikes[0].increase, d("1"));
        assert!(matches!(
            build(&l, &opts("2026-07-10", "UTC")),
            Err(FinanceError::Invalid(m)) if m.contains("YYYY-MM")
        ));
    }

    #[test]
    fn conversion_applies_one_rate_and_rounding_is_half_away() {
        let (_dir, l) = ledger();
        let mut o = opts("2026-07", "UTC");
        o.fx = Some(FxRule {
            from: Currency::USD,
            to: Currency::parse("EUR").unwrap(),
            rate: d("0.9"),
            source: None,
        });
        let r = build(&l, &o).unwrap();
        // 90 * 0.9 = 81; June 72 * 0.9 = 64.8: MoM is unchanged by a constant rate (+25 %).
        assert_eq!(r.total(), d("81.0"));
        assert_eq!(r.previous_month.total, Some(d("64.80")));
        assert_eq!(percent(r.change(&r.previous_month).unwrap(), 1), d("25.0"));
        assert_eq!(r.previous_month.shown, Some(d("64.80")));
        assert_eq!(r.shown(d("0.125")), d("0.13"));
        assert_eq!(r.shown(d("-0.125")), d("-0.13"));
    }

    #[test]
    fn the_shown_total_is_the_sum_of_the_shown_provider_amounts() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(dir.path()).unwrap();
        // Two providers at 0.005 each: exact total 0.010; each shows 0.01 (half away from
        // zero), so the table and the headline show 0.02. Same in June (the comparison).
        l.append(&[
            ev(
                1,
                "2026-07-05T08:00:00Z",
                "openai",
                "a",
                Some("0.005"),
                1,
                0,
            ),
            ev(
                2,
                "2026-07-05T08:00:00Z",
                "anthropic",
                "a",
                Some("0.005"),
                1,
                0,
            ),
            ev(
                3,
                "2026-06-05T08:00:00Z",
                "openai",
                "a",
                Some("0.005"),
                1,
                0,
            ),
            ev(
                4,
                "2026-06-05T08:00:00Z",
                "anthropic",
                "a",
                Some("0.005"),
                1,
                0,
            ),
        ])
        .unwrap();
        let r = build(&l, &opts("2026-07", "UTC")).unwrap();
        assert_eq!(r.total(), d("0.010"));
        assert_eq!(r.total_shown(), d("0.02"));
        assert_eq!(r.previous_month.total, Some(d("0.010")));
        assert_eq!(r.previous_month.shown, Some(d("0.02")));
        // Changes come from exact amounts: unchanged.
        assert_eq!(r.change(&r.previous_month), Some(d("0")));
    }
}
