//! The CFO's monthly report as a four-page A4 PDF (the model is
//! `tollgate_finance::cfo::CfoReport`).
//!
//! The layout is the fixed typst template `cfo.typ`; this module writes a prelude of
//! `#let name = value` lines in front of it, every text an escaped string literal
//! ([`crate::str_lit`]), and draws five charts. Every amount printed is the model's exact
//! decimal rounded half away from zero to the currency's minor unit (`CfoReport::shown`).

use std::fmt::Write as _;

use jiff::civil::Date;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tollgate_core::money::round_half_away;
use tollgate_finance::cfo::{CfoReport, Comparison, Line, SPIKE_THRESHOLD, Usage, percent};

use crate::charts::{self, DailyLine, group_digits};
use crate::{Images, Result, compile, str_lit};

static TEMPLATE: &str = include_str!("cfo.typ");

/// Chart sizes in SVG pixels; the template scales them to the text width (17.4 cm).
const CHART_W: u32 = 1000;

/// Renders the report to PDF bytes.
pub fn render(r: &CfoReport) -> Result<Vec<u8>> {
    let (source, images) = source(r)?;
    compile(&source, images)
}

/// The typst source (prelude + template) and the chart images, for inspection and tests.
pub fn source(r: &CfoReport) -> Result<(String, Images)> {
    let f = Fmt { r };
    let mut p = Prelude::default();
    let month = month_name(r.period.first_day());
    let cur = r.currency.as_str();
    let tz = r.period.tz_name();

    // Header and footer (every page).
    p.str(
        "doc_title",
        &format!("LLM cost report {}", r.period.label()),
    );
    let g = r.generated_at;
    let date = g.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    p.raw(
        "doc_date",
        &format!(
            "datetime(year: {}, month: {}, day: {})",
            date.year(),
            date.month(),
            date.day()
        ),
    );
    p.str("header_left", "Tollgate · Monthly LLM cost report");
    p.str("header_right", &format!("{month} ({})", r.period.label()));
    p.str(
        "period_line",
        &format!(
            "Period {} in {tz} = [{}, {}) UTC · days are civil days in {tz}",
            r.period.label(),
            r.period.start(),
            r.period.end()
        ),
    );
    p.str(
        "currency_line",
        &match &r.fx {
            Some(fx) => format!("Currency {cur}: {}", fx.describe()),
            None => format!("Currency {cur}, as recorded in the ledger (no conversion)"),
        },
    );
    p.str(
        "generated_line",
        &format!("Generated {}", g.strftime("%Y-%m-%d %H:%M UTC")),
    );
    let unpriced = r.unpriced_requests();
    if unpriced > 0 {
        p.str(
            "unpriced_line",
            &format!(
                "{} unpriced request{} in {}: counted, never priced at 0, not in any amount",
                f.int(unpriced),
                if unpriced == 1 { "" } else { "s" },
                r.period.label()
            ),
        );
    } else {
        p.raw("unpriced_line", "none");
    }
    p.str("currency", cur);
    p.str("month_name", &month);

    // Page 1.
    p.str("month_title", &format!("Monthly LLM spend: {month}"));
    p.str("total_label", &format!("Total spend, {month}"));
    p.str("total_text", &format!("{} {cur}", f.money(r.total_shown())));
    p.str(
        "total_sub",
        &format!(
            "{} requests ({} priced, {} unpriced) · {} providers · {} features",
            f.int(r.month.totals.requests),
            f.int(r.month.priced_requests),
            f.int(unpriced),
            r.providers.len(),
            r.top_features.len() + r.other_features.as_ref().map_or(0, |o| o.0)
        ),
    );
    let mut kpis = Vec::new();
    for (label, c) in [
        ("Month over month", &r.previous_month),
        ("Year over year", &r.year_ago),
    ] {
        kpis.push(f.change_kpi(label, c));
    }
    kpis.push(match (r.target, r.of_target()) {
        (Some(t), Some(of)) => {
            // From the shown total, so that total + left = target as printed.
            let left = t - r.total_shown();
            vec![
                "Of monthly target".into(),
                format!("{}%", percent(of, 1)),
                if left >= Decimal::ZERO {
                    format!("target {} {cur}; {} {cur} left", f.money(t), f.money(left))
                } else {
                    format!("target {} {cur}; {} {cur} over", f.money(t), f.money(-left))
                },
                if of > Decimal::ONE { "up" } else { "neutral" }.into(),
            ]
        }
        _ => vec![
            "Of monthly target".into(),
            "n/a".into(),
            "no target set (--target)".into(),
            "neutral".into(),
        ],
    });
    p.rows("kpis", &kpis);
    match (r.target, r.of_target()) {
        (Some(t), Some(of)) => p.raw(
            "target_bar",
            &format!(
                "({}, {})",
                float_lit(of),
                str_lit(&format!(
                    "{}% of the {} {cur} target",
                    percent(of, 1),
                    f.money(t)
                ))
            ),
        ),
        _ => p.raw("target_bar", "none"),
    }
    p.rows("facts", &f.facts());
    let minor = r.currency.minor_units();
    let mut notes = vec![format!(
        "Amounts are kept exact and rounded half away from zero to {minor} decimal places \
         ({cur}) only for display; the total is the sum of the provider amounts shown on page 2. \
         Percentages are computed from exact amounts and rounded half away from zero to one decimal."
    )];
    if r.fx.is_some() {
        notes.push(
            "Earlier months are converted at the same FX rule, so changes compare constant-currency amounts."
                .into(),
        );
    }
    if unpriced > 0 {
        notes.push(format!(
            "{} request{} had no rate: they are counted but not priced (never at 0) and are in no amount; add their rates and re-ingest.",
            f.int(unpriced),
            if unpriced == 1 { "" } else { "s" }
        ));
    }
    p.list("notes", &notes);

    // Page 2.
    let mut provider_rows = Vec::new();
    for l in &r.providers {
        provider_rows.push(vec![
            l.name.clone(),
            f.cost(&l.usage),
            f.share_of(&l.usage),
            f.int(l.usage.totals.requests),
            f.int(l.usage.unpriced_requests),
            f.per_call(l.usage.cost_per_call()),
        ]);
    }
    p.rows("provider_rows", &provider_rows);
    p.list(
        "provider_total",
        &[
            "Total".into(),
            f.money(r.total_shown()),
            if r.total() > Decimal::ZERO {
                "100.0%".into()
            } else {
                "n/a".into()
            },
            f.int(r.month.totals.requests),
            f.int(unpriced),
            f.per_call(r.month.cost_per_call()),
        ],
    );
    p.str(
        "provider_note",
        "Share: provider cost over the month's exact total. Per priced call: cost over the \
         requests that have a price. Unpriced requests are counted in Requests but carry no cost.",
    );

    // Page 3.
    let mut feature_rows = Vec::new();
    for (i, l) in r.top_features.iter().enumerate() {
        feature_rows.push(vec![
            (i + 1).to_string(),
            l.name.clone(),
            f.cost(&l.usage),
            f.share_of(&l.usage),
            f.int(l.usage.totals.requests),
            f.per_call(l.usage.cost_per_call()),
        ]);
    }
    p.rows("feature_rows", &feature_rows);
    match &r.other_features {
        Some((n, u)) => p.list(
            "feature_other",
            &[
                String::new(),
                format!("{n} other feature{}", if *n == 1 { "" } else { "s" }),
                f.cost(u),
                f.share_of(u),
                f.int(u.totals.requests),
                f.per_call(u.cost_per_call()),
            ],
        ),
        None => p.raw("feature_other", "none"),
    }
    p.str(
        "feature_note",
        &format!(
            "Features ranked by cost (ties by name); \"(none)\" collects usage without a feature. \
             Cost per call: cost over priced requests, shown to {} decimal places.",
            minor + 4
        ),
    );

    // Page 4.
    p.str(
        "daily_title",
        &format!(
            "Daily spend ({cur}), {month}, days in {tz}{}",
            if r.spikes.is_empty() {
                ""
            } else {
                " (circled: spikes)"
            }
        ),
    );
    p.str(
        "cache_title",
        &format!(
            "Cache hit ratio per day (cache reads / total input tokens){}",
            match r.month.cache_hit_ratio() {
                Some(c) => format!(": {}% for the month", percent(c, 1)),
                None => String::new(),
            }
        ),
    );
    p.str(
        "spike_title",
        &format!(
            "Days up more than {}% on the day before",
            percent(SPIKE_THRESHOLD, 0)
        ),
    );
    p.str(
        "spike_none",
        "No day's spend rose more than 30% over the day before. A day after a day without spend has no baseline and is not listed.",
    );
    let spike_rows: Vec<Vec<String>> = r
        .spikes
        .iter()
        .map(|s| {
            vec![
                s.date.strftime("%a %Y-%m-%d").to_string(),
                f.money(s.cost),
                f.money(s.previous_cost),
                format!("+{}%", percent(s.increase, 1)),
            ]
        })
        .collect();
    p.rows("spike_rows", &spike_rows);
    let budget_rows: Vec<Vec<String>> = r
        .budget_overruns
        .iter()
        .map(|b| vec![b.budget.clone(), f.money(b.limit), f.money(b.actual)])
        .collect();
    p.rows("budget_rows", &budget_rows);

    let images = f.charts()?;
    let mut src = p.out;
    src.push('\n');
    src.push_str(TEMPLATE);
    Ok((src, images))
}

/// `#let` lines; every value a typst literal.
#[derive(Default)]
struct Prelude {
    out: String,
}

impl Prelude {
    fn raw(&mut self, name: &str, value: &str) {
        let _ = writeln!(self.out, "#let {name} = {value}");
    }
    fn str(&mut self, name: &str, value: &str) {
        self.raw(name, &str_lit(value));
    }
    fn list(&mut self, name: &str, values: &[String]) {
        self.raw(name, &array(values.iter().map(|v| str_lit(v))));
    }
    fn rows(&mut self, name: &str, rows: &[Vec<String>]) {
        self.raw(
            name,
            &array(rows.iter().map(|r| array(r.iter().map(|v| str_lit(v))))),
        );
    }
}

/// A typst array literal (`()` when empty; a trailing comma keeps one element an array).
fn array(items: impl Iterator<Item = String>) -> String {
    let mut s = String::from("(");
    for i in items {
        s.push_str(&i);
        s.push_str(", ");
    }
    if s.len() > 1 {
        s.truncate(s.len() - 1);
    }
    s.push(')');
    s
}

/// A decimal as a typst float literal (layout only: the width of the target bar).
fn float_lit(d: Decimal) -> String {
    let v = round_half_away(d, 4);
    format!("{v}")
}

fn month_name(first_day: Date) -> String {
    first_day.strftime("%B %Y").to_string()
}

fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Formatting of the model's exact numbers.
struct Fmt<'a> {
    r: &'a CfoReport,
}

impl Fmt<'_> {
    /// An amount: rounded half away from zero to the minor unit, thousands grouped.
    fn money(&self, d: Decimal) -> String {
        group_digits(&self.r.shown(d).to_string())
    }

    fn int(&self, n: u64) -> String {
        group_digits(&n.to_string())
    }

    /// Share of the month's total, one decimal.
    fn share(&self, part: Decimal) -> String {
        match self.r.share(part) {
            Some(s) => format!("{}%", percent(s, 1)),
            None => "n/a".into(),
        }
    }

    /// Cost per call: four more decimals than the minor unit, trailing zeros trimmed down to
    /// the minor unit.
    fn per_call(&self, d: Option<Decimal>) -> String {
        let Some(d) = d else {
            return "n/a".into();
        };
        let minor = self.r.currency.minor_units();
        let s = round_half_away(d, minor + 4).to_string();
        let keep = s.find('.').map_or(s.len(), |dot| dot + 1 + minor as usize);
        let trimmed = s.trim_end_matches('0');
        let s = if trimmed.len() < keep {
            &s[..keep]
        } else {
            trimmed.trim_end_matches('.')
        };
        group_digits(s)
    }

    fn change_kpi(&self, label: &str, c: &Comparison) -> Vec<String> {
        let cur = self.r.currency;
        let name = c.period.label();
        match (c.shown, self.r.change(c)) {
            (Some(t), Some(ch)) => vec![
                label.to_string(),
                format!(
                    "{}{}%",
                    if ch > Decimal::ZERO { "+" } else { "" },
                    percent(ch, 1)
                ),
                format!("vs {} {cur} in {name}", self.money(t)),
                if ch > Decimal::ZERO {
                    "up"
                } else if ch < Decimal::ZERO {
                    "down"
                } else {
                    "neutral"
                }
                .into(),
            ],
            (Some(t), None) => vec![
                label.to_string(),
                "n/a".into(),
                format!("{name}: {} {cur}, no base to compare", self.money(t)),
                "neutral".into(),
            ],
            (None, _) => vec![
                label.to_string(),
                "n/a".into(),
                format!("no priced usage in {name}"),
                "neutral".into(),
            ],
        }
    }

    /// A group's cost, or `unpriced` when none of its requests has a price (never 0.00).
    fn cost(&self, u: &Usage) -> String {
        if u.priced_requests == 0 && u.unpriced_requests > 0 {
            "unpriced".into()
        } else {
            self.money(u.cost)
        }
    }

    /// A group's share of the month, `n/a` when it has no priced request.
    fn share_of(&self, u: &Usage) -> String {
        if u.priced_requests == 0 {
            "n/a".into()
        } else {
            self.share(u.cost)
        }
    }

    fn facts(&self) -> Vec<Vec<String>> {
        let r = self.r;
        let cur = r.currency;
        let mut v = vec![vec![
            "Requests".to_string(),
            format!(
                "{} ({} priced, {} unpriced)",
                self.int(r.month.totals.requests),
                self.int(r.month.priced_requests),
                self.int(r.month.unpriced_requests)
            ),
        ]];
        v.push(vec![
            "Average cost per priced request".into(),
            match r.month.cost_per_call() {
                Some(c) => format!("{} {cur}", self.per_call(Some(c))),
                None => "n/a".into(),
            },
        ]);
        v.push(vec![
            "Cache hit ratio (cache reads / total input)".into(),
            match r.month.cache_hit_ratio() {
                Some(c) => format!(
                    "{}% of {} input tokens",
                    percent(c, 1),
                    self.int(r.month.total_input_tokens())
                ),
                None => "n/a (no input tokens)".into(),
            },
        ]);
        if let Some(l) = r.providers.first() {
            v.push(vec![
                "Largest provider".into(),
                format!(
                    "{}: {} {cur} ({})",
                    l.name,
                    self.cost(&l.usage),
                    self.share_of(&l.usage)
                ),
            ]);
        }
        if let Some(l) = r.top_features.first() {
            v.push(vec![
                "Largest feature".into(),
                format!(
                    "{}: {} {cur} ({})",
                    l.name,
                    self.cost(&l.usage),
                    self.share_of(&l.usage)
                ),
            ]);
        }
        let mut best: Option<&tollgate_finance::cfo::Day> = None;
        for d in &r.days {
            if best.is_none_or(|b| d.usage.cost > b.usage.cost) {
                best = Some(d);
            }
        }
        if let Some(d) = best.filter(|d| d.usage.cost > Decimal::ZERO) {
            v.push(vec![
                "Most expensive day".into(),
                format!(
                    "{}: {} {cur}",
                    d.date.strftime("%a %Y-%m-%d"),
                    self.money(d.usage.cost)
                ),
            ]);
        }
        let active = r.days.iter().filter(|d| !d.usage.is_empty()).count();
        v.push(vec![
            "Days with usage".into(),
            format!("{active} of {}", r.days.len()),
        ]);
        v.push(vec![
            "Spend spikes (> 30% day over day)".into(),
            r.spikes.len().to_string(),
        ]);
        v
    }

    fn charts(&self) -> Result<Images> {
        let r = self.r;
        let cur = r.currency.as_str();
        let mut out = Vec::new();

        let months: Vec<(String, Option<f64>, String)> = [
            (&r.year_ago.period, r.year_ago.shown),
            (&r.previous_month.period, r.previous_month.shown),
            (&r.period, Some(r.total_shown())),
        ]
        .into_iter()
        .map(|(p, t)| {
            (
                month_name(p.first_day()),
                t.map(to_f64),
                t.map_or("n/a".into(), |t| format!("{} {cur}", self.money(t))),
            )
        })
        .collect();
        out.push((
            "comparison".to_string(),
            charts::vbar("comparison", &months, CHART_W, 330)?,
        ));

        let bars = |lines: &[Line]| -> Vec<(String, f64, String)> {
            lines
                .iter()
                .map(|l| {
                    let value = if l.usage.priced_requests == 0 {
                        "unpriced".to_string()
                    } else {
                        format!(
                            "{} {cur} ({})",
                            self.money(l.usage.cost),
                            self.share(l.usage.cost)
                        )
                    };
                    (clip(&l.name, 28), to_f64(l.usage.cost), value)
                })
                .collect()
        };
        let providers = bars(&r.providers);
        // Taller bars for a few providers, thinner ones for many, so page 2 keeps its table.
        let n = u32::try_from(providers.len()).unwrap_or(12).clamp(3, 14);
        let h = n * if n <= 6 { 64 } else { 40 } + 70;
        out.push((
            "providers".to_string(),
            charts::hbar("providers", &providers, CHART_W, h)?,
        ));
        let features = bars(&r.top_features);
        let h = u32::try_from(features.len()).unwrap_or(10).clamp(3, 10) * 56 + 70;
        out.push((
            "features".to_string(),
            charts::hbar("features", &features, CHART_W, h)?,
        ));

        let daily: Vec<Option<f64>> = r.days.iter().map(|d| Some(to_f64(d.usage.cost))).collect();
        let marks: Vec<usize> = r
            .spikes
            .iter()
            .filter_map(|s| r.days.iter().position(|d| d.date == s.date).map(|i| i + 1))
            .collect();
        let max = r
            .days
            .iter()
            .map(|d| d.usage.cost)
            .max()
            .unwrap_or_default();
        let ymax_cost = if max > Decimal::ZERO {
            to_f64(max) * 1.15
        } else {
            1.0
        };
        let day_label = |d: usize| d.to_string();
        let money_axis = move |y: f64| charts::axis_number(y, ymax_cost);
        out.push((
            "daily".to_string(),
            charts::daily_line(
                &DailyLine {
                    name: "daily",
                    values: &daily,
                    ymax: Some(ymax_cost),
                    y_format: &money_axis,
                    x_format: &day_label,
                    marks: &marks,
                },
                CHART_W,
                340,
            )?,
        ));
        let cache: Vec<Option<f64>> = r
            .days
            .iter()
            .map(|d| d.usage.cache_hit_ratio().map(|c| to_f64(c) * 100.0))
            .collect();
        let pct_axis = |y: f64| format!("{y:.0}%");
        out.push((
            "cache".to_string(),
            charts::daily_line(
                &DailyLine {
                    name: "cache",
                    values: &cache,
                    ymax: Some(100.0),
                    y_format: &pct_axis,
                    x_format: &day_label,
                    marks: &[],
                },
                CHART_W,
                270,
            )?,
        ));
        Ok(out
            .into_iter()
            .map(|(n, svg)| (n, svg.into_bytes()))
            .collect())
    }
}

/// At most `max` characters, with an ellipsis when cut (chart labels; tables show all).
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::{Currency, Period};
    use tollgate_finance::cfo::{Day, Spike};

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn usage(cost: &str, requests: u64) -> Usage {
        Usage {
            cost: d(cost),
            priced_requests: requests,
            ..Usage::default()
        }
    }

    /// A worst case for the layout: 12 providers, ten features with long names full of
    /// typst markup, a spike every other day.
    fn crowded() -> CfoReport {
        let period = Period::parse("2026-07", "Asia/Kolkata").unwrap();
        let hostile = r#"#panic("x") *b* _i_ $m$ [l] \ "q" // <a> @r `c` = h - + / ~ feature with a very long name indeed"#;
        let mut month = Usage::default();
        let providers: Vec<Line> = (0..12)
            .map(|i| Line {
                name: format!("provider-{i}"),
                usage: usage(&format!("{}.125", 1000 - i * 50), 100),
            })
            .collect();
        for l in &providers {
            month.cost += l.usage.cost;
            month.priced_requests += l.usage.priced_requests;
            month.totals.requests += l.usage.priced_requests;
        }
        let top_features = (0..10)
            .map(|i| Line {
                name: format!("{hostile} {i}"),
                usage: usage(&format!("{}.5", 900 - i * 60), 10),
            })
            .collect();
        let days: Vec<Day> = period
            .days()
            .into_iter()
            .enumerate()
            .map(|(i, date)| Day {
                date,
                usage: usage(if i % 2 == 0 { "100" } else { "50" }, 5),
            })
            .collect();
        let spikes = days
            .iter()
            .filter(|day| day.usage.cost == d("100"))
            .map(|day| Spike {
                date: day.date,
                cost: d("100"),
                previous_cost: d("50"),
                increase: d("1"),
            })
            .collect();
        CfoReport {
            previous_month: Comparison {
                period: period.shifted(-1).unwrap(),
                total: Some(d("9000")),
                shown: Some(d("9000.00")),
            },
            year_ago: Comparison {
                period: period.shifted(-12).unwrap(),
                total: None,
                shown: None,
            },
            period,
            currency: Currency::USD,
            fx: None,
            generated_at: "2026-08-01T06:00:00Z".parse().unwrap(),
            month,
            target: Some(d("10000")),
            providers,
            top_features,
            other_features: Some((25, usage("1.005", 3))),
            day_before: days[0].clone(),
            days,
            spikes,
            budget_overruns: vec![],
        }
    }

    #[test]
    fn a_crowded_month_still_fits_four_pages_and_prints_exact_figures() {
        let r = crowded();
        let (src, images) = source(&r).unwrap();
        assert_eq!(images.len(), 5);
        // 12 providers at 1000.125 - 50 i: each shows x.13 (half away from zero); the total
        // shown is their sum: 12 x 1000.13 - 50 x 66 = 12,001.56 - 3,300 = 8,701.56.
        assert!(src.contains(r#"#let total_text = "8,701.56 USD""#), "{src}");
        // MoM from exact amounts: 8,701.5 / 9,000 - 1 = -3.3 %; target 8,701.5 / 10,000.
        assert!(
            src.contains(r#"("Month over month", "-3.3%", "vs 9,000.00 USD in 2026-06", "down",)"#)
        );
        assert!(src.contains(r#""87.0%", "target 10,000.00 USD; 1,298.44 USD left""#));
        assert!(
            src.contains(r#"("Year over year", "n/a", "no priced usage in 2025-07", "neutral",)"#)
        );
        // Names are string literals: the markup in them is escaped, never evaluated.
        assert!(src.contains(r##""#panic(\"x\") *b* _i_ $m$ [l] \\ \"q\" // <a>"##));
        assert!(
            src.contains(r#"("", "25 other features", "1.01", "0.0%", "0", "0.335",)"#),
            "{src}"
        );
        let pdf = render(&r).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert_eq!(crate::page_count(&pdf), 4);
    }

    #[test]
    fn arrays_keep_single_elements_arrays() {
        assert_eq!(array(std::iter::empty()), "()");
        assert_eq!(array(["\"a\"".to_string()].into_iter()), "(\"a\",)");
        assert_eq!(
            array(["1".to_string(), "2".to_string()].into_iter()),
            "(1, 2,)"
        );
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(float_lit(Decimal::new(4567, 4)), "0.4567");
    }
}
