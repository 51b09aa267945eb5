//! The demo's provider bills (issue #5 item 9): what OpenAI and Anthropic would bill for the
//! demo's own traffic, read back from the ledger, with four planted discrepancies that the
//! reconciliation must find and name:
//!
//! 1. **a day-boundary shift**: the OpenAI costs export labels its days as UTC midnights but
//!    cuts them at midnight in [`COMPANY_TZ`] (the organisation's time zone) →
//!    `timezone_cutoff`;
//! 2. **an unmapped key**: `key_legacy_etl` spends on gpt-4o on the 7th-9th; no reference data
//!    owns it and the gateway never saw it → `unmapped_key`;
//! 3. **traffic that bypassed the gateway**: `key_analytics_notebook` (owned by team-analytics
//!    in the reference data) calls gpt-5 directly on the 21st-22nd → `missing_in_ledger`;
//! 4. **a stale rate**: Anthropic cut the Sonnet price by 40 % from the 25th and bills it; the
//!    ledger priced those calls with the old rate. The cut is in `demo-prices-late.toml`, given
//!    to the reconciliation as the rates in force now → `stale_rate`.
//!
//! Everything is derived from the ledger and fixed constants: the same demo gives the same
//! bills, byte for byte. Amounts are written exactly (no floats).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use jiff::Timestamp;
use jiff::civil::Date;
use rust_decimal::Decimal;
use tollgate_core::period::{civil_day, time_zone};
use tollgate_core::{Period, Pricer, Pricing, Usage};
use tollgate_ledger::Ledger;

use crate::output::write_atomic;

/// The company's (and the OpenAI organisation's) time zone in the demo's reconciliation.
pub const COMPANY_TZ: &str = "Asia/Tokyo";
/// The demo's flag threshold: its month costs hundreds of dollars, not millions.
pub const THRESHOLD_AMOUNT: &str = "0.50";

/// Reference data of the demo: who owns each key and workspace, the model names the bills use.
pub fn refdata_toml() -> String {
    let mut s = String::from(
        "# Written by `tollgate demo`: owners of keys and workspaces, the model dictionary.\n",
    );
    let teams = [
        ("search", "team-search", "CC-1001"),
        ("support", "team-support", "CC-1002"),
        ("analytics", "team-analytics", "CC-1003"),
        ("growth", "team-growth", "CC-1004"),
        ("platform", "team-platform", "CC-1005"),
    ];
    for (stem, team, cc) in teams {
        for env in ["prod", "staging", "dev"] {
            let _ = write!(
                s,
                "\n[[api_key]]\nkey = \"key_{stem}_{env}\"\nteam = \"{team}\"\ncost_center = \"{cc}\"\n"
            );
        }
        let _ = write!(
            s,
            "\n[[workspace]]\nkey = \"wrkspc_{stem}\"\nteam = \"{team}\"\ncost_center = \"{cc}\"\n"
        );
    }
    s.push_str(
        "\n[[api_key]]\nkey = \"key_analytics_notebook\"\nteam = \"team-analytics\"\ncost_center = \"CC-1003\"\nnote = \"data scientists' notebooks\"\n",
    );
    for (billed, model, provider) in BILLED_NAMES {
        let _ = write!(
            s,
            "\n[[model]]\nkey = \"{billed}\"\nmodel = \"{model}\"\nprovider = \"{provider}\"\n"
        );
    }
    s.push_str("\n[[approver]]\nkey = \"key_cfo\"\nnote = \"the CFO's approval key\"\n");
    s
}

/// (name on the bill, canonical model, provider).
const BILLED_NAMES: [(&str, &str, &str); 6] = [
    ("gpt-4o-2024-08-06", "gpt-4o", "openai"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", "openai"),
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini", "openai"),
    ("gpt-5-2025-08-07", "gpt-5", "openai"),
    (
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
        "anthropic",
    ),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5", "anthropic"),
];

fn billed_name(model: &str) -> &str {
    BILLED_NAMES
        .iter()
        .find(|b| b.1 == model)
        .map_or(model, |b| b.0)
}

/// The late rate: Anthropic's Sonnet 40 % cheaper from the 25th (the ledger's 2.4 / 0.24 / 3 /
/// 4.8 / 12 per million becomes 1.44 / 0.144 / 1.8 / 2.88 / 7.2).
pub fn late_prices(period: &Period) -> Result<String> {
    let from = day_start_utc(period.first_day().checked_add(jiff::ToSpan::days(24))?)?;
    Ok(format!(
        r#"# Tollgate demo: Anthropic's price cut from the 25th, learned after the month was ingested.
[[rate]]
provider = "anthropic"
model = "claude-sonnet-4-5"
effective_from = "{}"
currency = "USD"
input_per_mtok = "1.44"
cache_read_per_mtok = "0.144"
cache_write_per_mtok = "1.8"
cache_write_1h_per_mtok = "2.88"
output_per_mtok = "7.2"
batch_multiplier = "0.5"
source = "demo: Anthropic price cut, 25th"
"#,
        from
    ))
}

fn day_start_utc(d: Date) -> Result<Timestamp> {
    Ok(d.to_zoned_datetime(jiff::tz::TimeZone::UTC)?.timestamp())
}

/// Per (day, key or workspace, billed model, class index): tokens and exact cost.
type Lines = BTreeMap<(Date, String, String, usize), (u64, Decimal)>;

fn add(lines: &mut Lines, day: Date, who: &str, model: &str, usage: &Usage, p: &Pricing) {
    let b = &p.cost_breakdown;
    let classes = [
        (usage.input_tokens, b.input),
        (usage.cache_read_tokens, b.cache_read),
        (usage.cache_write_tokens, b.cache_write),
        (usage.cache_write_1h_tokens, b.cache_write_1h),
        (usage.output_tokens, b.output),
    ];
    for (i, (n, c)) in classes.into_iter().enumerate() {
        if n > 0 {
            let e = lines
                .entry((day, who.to_string(), model.to_string(), i))
                .or_default();
            e.0 += n;
            e.1 += c;
        }
    }
}

fn plant(
    lines: &mut Lines,
    pricer: &Pricer,
    period: &Period,
    days: &[i64],
    key: &str,
    model: &str,
    usage: &Usage,
) -> Result<()> {
    for d in days {
        let day = period.first_day().checked_add(jiff::ToSpan::days(d - 1))?;
        let q = pricer.quote("openai", model, day_start_utc(day)?, usage, false)?;
        let p = Pricing {
            cost: Some(q.cost),
            cost_breakdown: q.breakdown,
            ..Pricing::unpriced()
        };
        add(lines, day, key, billed_name(model), usage, &p);
    }
    Ok(())
}

/// Writes `bills/openai-costs-MONTH.json` and `bills/anthropic-cost-MONTH.json` from the
/// ledger in `dir`; returns (bill type, path) to ingest.
pub fn write(
    dir: &Path,
    period: &Period,
    pricer: &Pricer,
    late: &Pricer,
) -> Result<Vec<(&'static str, PathBuf)>> {
    let ledger = tollgate_ledger::sqlite::SqliteLedger::open_read_only(dir)?;
    let company = time_zone(COMPANY_TZ)?;
    let cut = day_start_utc(period.first_day().checked_add(jiff::ToSpan::days(24))?)?;
    let mut openai: Lines = BTreeMap::new();
    let mut anthropic: Lines = BTreeMap::new();
    let (start, end) = (period.start(), period.end());
    ledger.scan_events(start, end, &mut |mut ev| {
        if ev.pricing.cost.is_none() {
            return Ok(());
        }
        let key = ev.attribution.api_key_id.clone().unwrap_or_default();
        match ev.provider.as_str() {
            "openai" => {
                // Planted 1: the day as cut in the company's time zone; a day past the month
                // belongs to next month's bill.
                let day = civil_day(ev.occurred_at, &company);
                if day.month() == period.first_day().month() {
                    add(
                        &mut openai,
                        day,
                        &key,
                        billed_name(&ev.model),
                        &ev.usage,
                        &ev.pricing,
                    );
                }
            }
            "anthropic" => {
                // Team grain: the workspace of the key's team (`key_<stem>_<env>`).
                let stem = key.split('_').nth(1).unwrap_or("default");
                let ws = format!("wrkspc_{stem}");
                // Planted 4: Sonnet billed at the cut price from the 25th.
                if ev.model == "claude-sonnet-4-5" && ev.occurred_at >= cut {
                    ev.pricing = Pricing::unpriced();
                    late.price_event(&mut ev).map_err(|e| {
                        tollgate_ledger::LedgerError::Corrupt(format!("late price: {e}"))
                    })?;
                }
                let day = civil_day(ev.occurred_at, &jiff::tz::TimeZone::UTC);
                add(
                    &mut anthropic,
                    day,
                    &ws,
                    billed_name(&ev.model),
                    &ev.usage,
                    &ev.pricing,
                );
            }
            _ => {}
        }
        Ok(())
    })?;
    // Planted 2 and 3.
    let legacy = Usage {
        input_tokens: 2_000_000,
        ..Usage::default()
    };
    plant(
        &mut openai,
        pricer,
        period,
        &[7, 8, 9],
        "key_legacy_etl",
        "gpt-4o",
        &legacy,
    )?;
    let notebook = Usage {
        input_tokens: 1_500_000,
        output_tokens: 300_000,
        ..Usage::default()
    };
    plant(
        &mut openai,
        pricer,
        period,
        &[21, 22],
        "key_analytics_notebook",
        "gpt-5",
        &notebook,
    )?;

    let bills = dir.join("bills");
    let label = period.label();
    let oa = bills.join(format!("openai-costs-{label}.json"));
    write_atomic(&oa, openai_costs_json(&openai)?.as_bytes())?;
    let an = bills.join(format!("anthropic-cost-{label}.json"));
    write_atomic(&an, anthropic_cost_json(&anthropic)?.as_bytes())?;
    Ok(vec![("openai-costs", oa), ("anthropic-cost", an)])
}

/// (key or workspace, billed model, class index, tokens, cost).
type DayLine<'a> = (&'a String, &'a String, usize, u64, Decimal);

fn by_day(lines: &Lines) -> BTreeMap<Date, Vec<DayLine<'_>>> {
    let mut m: BTreeMap<Date, Vec<_>> = BTreeMap::new();
    for ((d, who, model, c), (n, cost)) in lines {
        m.entry(*d).or_default().push((who, model, *c, *n, *cost));
    }
    m
}

/// The OpenAI Costs API page (`group_by=line_item,api_key_id`), daily buckets labelled by UTC
/// midnight.
fn openai_costs_json(lines: &Lines) -> Result<String> {
    const ITEM: [&str; 5] = [
        "input",
        "cached input",
        "cache write",
        "cache write",
        "output",
    ];
    let mut s = String::from(
        "{\"object\": \"page\", \"has_more\": false, \"next_page\": null, \"data\": [\n",
    );
    for (i, (day, rows)) in by_day(lines).into_iter().enumerate() {
        let t0 = day_start_utc(day)?.as_second();
        let _ = write!(
            s,
            "{}{{\"object\": \"bucket\", \"start_time\": {t0}, \"end_time\": {}, \"results\": [",
            if i > 0 { ",\n" } else { "" },
            t0 + 86_400
        );
        for (j, (key, model, c, n, cost)) in rows.into_iter().enumerate() {
            let _ = write!(
                s,
                "{}\n  {{\"object\": \"organization.costs.result\", \"amount\": {{\"value\": {}, \"currency\": \"usd\"}}, \"line_item\": \"{model}, {}\", \"project_id\": null, \"api_key_id\": \"{key}\", \"quantity\": {n}, \"quantity_unit\": \"tokens\"}}",
                if j > 0 { "," } else { "" },
                cost.normalize(),
                ITEM[c]
            );
        }
        s.push_str("]}");
    }
    s.push_str("\n]}\n");
    Ok(s)
}

/// The Anthropic cost report (`group_by[]=workspace_id&group_by[]=description`), amounts in
/// cents as decimal strings, UTC days.
fn anthropic_cost_json(lines: &Lines) -> Result<String> {
    const TOKEN_TYPE: [&str; 5] = [
        "uncached_input_tokens",
        "cache_read_input_tokens",
        "cache_creation.ephemeral_5m_input_tokens",
        "cache_creation.ephemeral_1h_input_tokens",
        "output_tokens",
    ];
    let mut s = String::from("{\"has_more\": false, \"next_page\": null, \"data\": [\n");
    for (i, (day, rows)) in by_day(lines).into_iter().enumerate() {
        let next = day.tomorrow()?;
        let _ = write!(
            s,
            "{}{{\"starting_at\": \"{day}T00:00:00Z\", \"ending_at\": \"{next}T00:00:00Z\", \"results\": [",
            if i > 0 { ",\n" } else { "" }
        );
        for (j, (ws, model, c, _n, cost)) in rows.into_iter().enumerate() {
            let _ = write!(
                s,
                "{}\n  {{\"currency\": \"USD\", \"amount\": \"{}\", \"workspace_id\": \"{ws}\", \"description\": \"{model} {}\", \"cost_type\": \"tokens\", \"context_window\": \"0-200k\", \"model\": \"{model}\", \"service_tier\": \"standard\", \"token_type\": \"{}\"}}",
                if j > 0 { "," } else { "" },
                (cost * Decimal::ONE_HUNDRED).normalize(),
                TOKEN_TYPE[c],
                TOKEN_TYPE[c]
            );
        }
        s.push_str("]}");
    }
    s.push_str("\n]}\n");
    Ok(s)
}

/// The demo step: reference data, the late rate file, the bills (ingested), and the
/// reconciliation written under `reports/`. Returns what to print.
pub fn run_step(
    demo_ctx: &crate::Ctx,
    period: &Period,
    written: &mut Vec<PathBuf>,
) -> Result<String> {
    use tollgate_finance::reconcile::Class;
    let dir = &demo_ctx.data_dir;
    let ref_path = dir.join("refdata.toml");
    write_atomic(&ref_path, refdata_toml().as_bytes())?;
    let entries = crate::cmd_refdata::parse_file(&ref_path, &refdata_toml(), "demo")?;
    let mut ledger = tollgate_ledger::sqlite::SqliteLedger::open(dir)?;
    crate::cmd_refdata::apply(&mut ledger, &entries)?;
    drop(ledger);
    let late_path = dir.join("demo-prices-late.toml");
    write_atomic(&late_path, late_prices(period)?.as_bytes())?;
    let pricer = crate::cmd_prices::load_pricer(&demo_ctx.price_files)?;
    let mut now_files = vec![late_path.clone()];
    now_files.extend(demo_ctx.price_files.iter().cloned());
    let late = crate::cmd_prices::load_pricer(&now_files)?;
    let mut out = String::from("\n== Provider bills (with planted discrepancies) ==\n");
    for (kind, path) in write(dir, period, &pricer, &late)? {
        let (lines, cost) = crate::cmd_ingest::store_bill(dir, kind, &path)?;
        let _ = writeln!(
            out,
            "  {kind:<15} {:<45} {lines:>5} lines  {} USD",
            path.display().to_string(),
            cost
        );
        written.push(path);
    }
    let rec_ctx = crate::Ctx {
        config: demo_ctx.config.clone(),
        data_dir: dir.clone(),
        price_files: now_files,
    };
    let reports = dir.join("reports");
    let label = period.label();
    let args = crate::cmd_reconcile::ReconcileArgs {
        period: label.clone(),
        format: crate::output::Format::Table,
        out: None,
        all: false,
        company_tz: Some(COMPANY_TZ.into()),
        bill_tz: None,
        threshold_pct: None,
        threshold_amount: Some(THRESHOLD_AMOUNT.into()),
        report: None,
    };
    let rec = crate::cmd_reconcile::build(&rec_ctx, &args)?;
    let files = [
        (
            reports.join(format!("reconcile-{label}.txt")),
            crate::cmd_reconcile::table_text(&rec, false)?.into_bytes(),
        ),
        (
            reports.join(format!("reconcile-{label}.csv")),
            crate::cmd_reconcile::csv_bytes(&rec)?,
        ),
        (
            reports.join(format!("reconcile-{label}.json")),
            format!(
                "{}\n",
                serde_json::to_string_pretty(&crate::cmd_reconcile::json_value(&rec))?
            )
            .into_bytes(),
        ),
        (
            reports.join(format!("variance-{label}.txt")),
            crate::cmd_reconcile::variance_report(&rec).into_bytes(),
        ),
    ];
    for (p, bytes) in files {
        write_atomic(&p, &bytes)?;
        written.push(p);
    }
    let pdf = reports.join(format!("variance-{label}.pdf"));
    write_atomic(&pdf, &crate::cmd_reconcile::report_bytes(&rec, &pdf)?)?;
    written.push(pdf);
    let _ = writeln!(
        out,
        "\n== Reconciliation {label}: ledger {} vs bills {} USD, {} of {} rows flagged (max(3 %, {THRESHOLD_AMOUNT} USD); days cut in {COMPANY_TZ} tested) ==",
        tollgate_core::money::round_half_away(rec.ledger_total, 2),
        tollgate_core::money::round_half_away(rec.bill_total, 2),
        rec.flagged().count(),
        rec.rows.len()
    );
    let planted = [
        (
            Class::TimezoneCutoff,
            "OpenAI's export cuts days at midnight Asia/Tokyo",
        ),
        (
            Class::UnmappedKey,
            "key_legacy_etl: no owner, never through the gateway (7th-9th)",
        ),
        (
            Class::MissingInLedger,
            "key_analytics_notebook called gpt-5 around the gateway (21st-22nd)",
        ),
        (
            Class::StaleRate,
            "Anthropic's Sonnet price cut from the 25th; the ledger used the old rate",
        ),
    ];
    for (c, what) in planted {
        let _ = writeln!(
            out,
            "  planted: {what:<72} -> {} ({} rows)",
            c.as_str(),
            rec.count(c)
        );
    }
    for c in Class::ALL {
        if !planted.iter().any(|p| p.0 == c) && rec.count(c) > 0 {
            let _ = writeln!(
                out,
                "  also:    {:<72} -> {} rows",
                c.as_str(),
                rec.count(c)
            );
        }
    }
    let _ = writeln!(
        out,
        "  not compared (no bill): {}",
        rec.not_billed.join(", ")
    );
    Ok(out)
}
