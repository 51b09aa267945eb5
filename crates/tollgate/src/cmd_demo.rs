//! `tollgate demo`: a realistic, deterministic month of traffic written into a fresh ledger
//! under `./tollgate-demo/`, then everything Tollgate can make of it so far.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use jiff::Timestamp;

use crate::Ctx;
use crate::cmd_ingest::{InputFormat, ingest, print_summary};
use crate::cmd_report::{SummaryArgs, build_summary, summary_table, write_summary};
use crate::demo_data::{DemoGenerator, demo_price_overrides};
use crate::output::{Format, out, outln, write_atomic};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo writes its ledger, events and reports (recreated on every run).
    #[arg(long, default_value = "tollgate-demo")]
    dir: PathBuf,
    /// The demo month.
    #[arg(long, default_value = "2026-10")]
    month: String,
    /// How many events to generate.
    #[arg(long, default_value_t = 60_000)]
    events: u64,
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Only write DIR/events.jsonl and DIR/demo-prices.toml (for benchmarks); no ledger.
    #[arg(long)]
    generate_only: bool,
}

/// Files of an earlier demo run that a new run replaces.
const OWNED: &[&str] = &[
    "ledger.sqlite",
    "ledger.sqlite-wal",
    "ledger.sqlite-shm",
    "events.jsonl",
    "demo-prices.toml",
    "tollgate.toml",
];

fn fresh_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for f in OWNED {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let reports = dir.join("reports");
    if reports.exists() {
        std::fs::remove_dir_all(&reports)
            .with_context(|| format!("cannot remove {}", reports.display()))?;
    }
    Ok(())
}

pub fn run(ctx: &Ctx, a: &DemoArgs) -> Result<()> {
    let period = tollgate_core::Period::parse(&a.month, "UTC")
        .map_err(|e| anyhow::anyhow!("--month: {e}"))?;
    fresh_dir(&a.dir)?;
    let dir = &a.dir;

    // 1. The negotiated rates (a price change on the 16th) as a local override file.
    let prices_path = dir.join("demo-prices.toml");
    write_atomic(&prices_path, demo_price_overrides(&period).as_bytes())?;

    // 2. A month of traffic in the import format.
    let events_path = dir.join("events.jsonl");
    {
        let f = std::fs::File::create(&events_path)
            .with_context(|| format!("cannot create {}", events_path.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut line = String::with_capacity(1024);
        for ev in DemoGenerator::new(a.seed, &period, a.events) {
            line.clear();
            ev.write_json(&mut line);
            line.push('\n');
            w.write_all(line.as_bytes())?;
        }
        w.flush()?;
    }

    if a.generate_only {
        outln!("wrote {} events to {}", a.events, events_path.display());
        outln!("rate overrides: {}", prices_path.display());
        return Ok(());
    }

    // 3. Ingest it, priced against the overrides and the shipped catalog.
    let mut files = vec![prices_path.clone()];
    files.extend(ctx.price_files.iter().cloned());
    let pricer = crate::cmd_prices::load_pricer(&files)?;
    // The demo reports in USD in UTC whatever the config says (its KZT report names its rate).
    let mut config = ctx.config.clone();
    config.currency = None;
    let demo_ctx = Ctx {
        config,
        data_dir: dir.clone(),
        price_files: files,
    };
    // The month goes through the real gateway (demo_live.rs); a benchmark-sized month is
    // ingested directly.
    if a.events <= crate::demo_live::DIRECT_ABOVE {
        let t = crate::demo_live::run(dir, &demo_ctx.price_files, &period, a.seed, a.events)?;
        crate::demo_live::print(&t)?;
    } else {
        let mut ledger = tollgate_ledger::sqlite::SqliteLedger::open(dir)?;
        let input = Box::new(BufReader::new(std::fs::File::open(&events_path)?));
        outln!(
            "== Ingest {} (above {} events the demo skips the gateway) ==",
            events_path.display(),
            crate::demo_live::DIRECT_ABOVE
        );
        let s = ingest(
            &mut ledger,
            &pricer,
            &events_path.display().to_string(),
            input,
            InputFormat::Jsonl,
            crate::cmd_ingest::IngestOptions {
                total_bytes: std::fs::metadata(&events_path).ok().map(|m| m.len()),
                ..Default::default()
            },
        )?;
        drop(ledger);
        print_summary(&s, Format::Table)?;
    }

    // 4. Reports.
    let reports = dir.join("reports");
    let now = Timestamp::now();
    let args = |by: &str| SummaryArgs {
        period: a.month.clone(),
        tz: Some("UTC".into()),
        by: by.into(),
        currency: None,
        fx_rate: None,
        format: Format::Table,
        out: None,
    };
    let main = build_summary(&demo_ctx, &args("team,service,model,provider"), now)?;
    let mut written = Vec::new();
    for (fmt, ext) in [
        (Format::Table, "txt"),
        (Format::Csv, "csv"),
        (Format::Json, "json"),
        (Format::Xlsx, "xlsx"),
    ] {
        let p = reports.join(format!("summary.{ext}"));
        write_summary(&main, fmt, Some(&p))?;
        written.push(p);
    }
    let by_tenant = build_summary(&demo_ctx, &args("tenant,feature"), now)?;
    let p = reports.join("summary-by-tenant.txt");
    write_summary(&by_tenant, Format::Table, Some(&p))?;
    written.push(p);
    let kzt = SummaryArgs {
        currency: Some("KZT".into()),
        fx_rate: Some("510.25".into()),
        tz: Some("Asia/Almaty".into()),
        ..args("team")
    };
    let in_kzt = build_summary(&demo_ctx, &kzt, now)?;
    let p = reports.join("summary-by-team-kzt-almaty.txt");
    write_summary(&in_kzt, Format::Table, Some(&p))?;
    written.push(p);

    // 5. Customer invoices (drafts) for the five B2B tenants, from the demo's own config.
    let config_path = dir.join("tollgate.toml");
    write_atomic(&config_path, demo_config(&period).as_bytes())?;
    let demo_config = crate::config::Config::load(&config_path)?;
    let inv_ctx = Ctx {
        config: demo_config,
        data_dir: dir.clone(),
        price_files: demo_ctx.price_files.clone(),
    };
    let mut ledger = tollgate_ledger::sqlite::SqliteLedger::open_read_only(dir)?;
    let mut invoices = Vec::new();
    for t in inv_ctx.config.tenants.values() {
        let inv = crate::cmd_invoice::draft_invoice(&inv_ctx, t, &a.month, &mut ledger)?;
        for (fmt, ext) in [
            (crate::cmd_invoice::InvoiceFormat::Text, "txt"),
            (crate::cmd_invoice::InvoiceFormat::Json, "json"),
            (crate::cmd_invoice::InvoiceFormat::Pdf, "pdf"),
        ] {
            let p = reports
                .join("invoices")
                .join(format!("{}.{ext}", inv.number));
            write_atomic(&p, &crate::cmd_invoice::render_invoice(&inv, fmt)?)?;
            written.push(p);
        }
        invoices.push(inv);
    }
    drop(ledger);

    // 6. Budgets and a deploy annotation (for the budget and daily reports, and the CFO page 4),
    // then the CFO's monthly PDF and the weekly digest of the month's third week.
    {
        let mut ledger = tollgate_ledger::sqlite::SqliteLedger::open(dir)?;
        let mut w = tollgate_ledger::Ledger::writer(&mut ledger)?;
        for (team, limit, owner, comment) in [
            (
                "team-search",
                "120.00",
                "Ana (search)",
                Some("rerank-v2 experiment ran all month"),
            ),
            ("team-support", "90.00", "Ben (support)", None),
            ("team-analytics", "40.00", "Chen (analytics)", None),
            (
                "team-growth",
                "20.00",
                "Dee (growth)",
                Some("runaway email-drafts session on the 16th+"),
            ),
            ("team-platform", "10.00", "Eli (platform)", None),
        ] {
            w.record_budget(&tollgate_ledger::BudgetEntry {
                team_id: team.into(),
                period: period.label(),
                limit: limit.into(),
                currency: "USD".into(),
                owner: Some(owner.into()),
                comment: comment.map(String::from),
            })?;
        }
        let twentieth = period
            .first_day()
            .checked_add(jiff::ToSpan::days(19))
            .map_err(|e| anyhow::anyhow!("demo annotation: {e}"))?;
        w.record_annotation(&tollgate_ledger::Annotation {
            at: format!("{twentieth}T00:00:00.000000Z"),
            note: "query-rewrite moves from gpt-4o to gpt-4.1-mini".into(),
            service: Some("search-api".into()),
        })?;
        w.commit()?;
    }
    for kind in ["daily", "features", "tenants", "users", "budgets"] {
        let p = reports.join(format!("finance-{kind}.txt"));
        crate::cmd_finance::run(
            &demo_ctx,
            &crate::cmd_finance::FinanceArgs {
                kind: <crate::cmd_finance::Kind as clap::ValueEnum>::from_str(kind, false)
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                period: a.month.clone(),
                tz: Some("UTC".into()),
                currency: None,
                fx_rate: None,
                format: Format::Table,
                out: Some(p.clone()),
            },
        )?;
        written.push(p);
    }
    let cfo_path = reports.join(format!("cfo-{}.pdf", period.label()));
    let cfo = crate::cmd_cfo::build(
        &demo_ctx,
        &crate::cmd_cfo::CfoArgs {
            period: a.month.clone(),
            out: cfo_path.clone(),
            tz: Some("UTC".into()),
            currency: None,
            fx_rate: None,
            target: Some("400.00".into()),
        },
        now,
    )?;
    write_atomic(&cfo_path, &tollgate_pdf::cfo::render(&cfo)?)?;
    written.push(cfo_path);
    let third_week = period
        .first_day()
        .checked_add(jiff::ToSpan::days(14))
        .map_err(|e| anyhow::anyhow!("demo week: {e}"))?
        .iso_week_date();
    let week = format!("{:04}-W{:02}", third_week.year(), third_week.week());
    let digest = crate::cmd_digest::build(
        &demo_ctx,
        &crate::cmd_digest::DigestArgs {
            week: week.clone(),
            tz: Some("UTC".into()),
            currency: None,
            fx_rate: None,
            post: false,
            out: None,
        },
    )?;
    let digest_path = reports.join(format!("digest-{week}.json"));
    write_atomic(
        &digest_path,
        format!("{}\n", serde_json::to_string_pretty(&digest.to_slack())?).as_bytes(),
    )?;
    written.push(digest_path);

    // Anomaly alerts as a check every five minutes would have seen them on the 17th at 10:00
    // (the growth team's runaway session starts on the 16th), also as JSON.
    let alerts_at = period
        .first_day()
        .checked_add(jiff::ToSpan::days(16))
        .map_err(|e| anyhow::anyhow!("demo alerts: {e}"))?
        .at(10, 0, 0, 0)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .map_err(|e| anyhow::anyhow!("demo alerts: {e}"))?
        .timestamp();
    let found = {
        let ledger = tollgate_ledger::sqlite::SqliteLedger::open_read_only(dir)?;
        tollgate_finance::alerts::check(
            &ledger,
            alerts_at,
            "UTC",
            &tollgate_finance::alerts::AlertThresholds::default(),
        )?
    };
    let alerts_path = reports.join(format!("alerts-{}.json", alerts_at.strftime("%Y-%m-%d")));
    let doc = crate::cmd_alerts::to_json(&found, alerts_at, "UTC", None);
    write_atomic(
        &alerts_path,
        format!("{}\n", serde_json::to_string_pretty(&doc)?).as_bytes(),
    )?;
    written.push(alerts_path);

    // 7. The auditor's per-call CSV for one tenant, and the FinOps FOCUS export of the month.
    let audit_path = reports.join(format!("audit-acme-{}.csv", period.label()));
    crate::cmd_audit::run(
        &demo_ctx,
        &crate::cmd_audit::AuditArgs {
            tenant: Some("acme".into()),
            from: period.first_day().to_string(),
            to: period.shifted(1)?.first_day().to_string(),
            tz: Some("UTC".into()),
            out: Some(audit_path.clone()),
            no_comment: false,
        },
    )?;
    written.push(audit_path);
    let focus_path = reports.join(format!("focus-{}.csv", period.label()));
    let focus = crate::cmd_focus::build_focus(
        &demo_ctx,
        &crate::cmd_focus::FocusArgs {
            period: a.month.clone(),
            tz: Some("UTC".into()),
            out: Some(focus_path.clone()),
        },
    )?;
    crate::cmd_focus::write_focus(&focus, Some(&focus_path))?;
    written.push(focus_path);

    // 8. Provider bills for the demo's own traffic, with planted discrepancies, and the
    // reconciliation that finds and names each one (demo_bills.rs).
    let reconciliation = crate::demo_bills::run_step(&demo_ctx, &period, &mut written)?;

    outln!();
    outln!("== Monthly summary ({}) ==", period.label());
    out!("{}", tollgate_render::text(&summary_table(&main)));
    outln!();
    outln!("== Customer invoices ({}, drafts) ==", period.label());
    for inv in &invoices {
        outln!(
            "  {:<22} {:<10} {:<13} {:>12} {}{}",
            inv.number,
            inv.tenant.id,
            inv.tenant.plan.name(),
            inv.total.to_string(),
            inv.tenant.currency,
            if inv.problems.is_empty() {
                String::new()
            } else {
                format!("  ({} problem(s) block finalisation)", inv.problems.len())
            }
        );
    }
    out!("{reconciliation}");
    outln!();
    outln!("== Anomaly alerts at {alerts_at} (tollgate alerts check) ==");
    if found.is_empty() {
        outln!("  none");
    }
    for x in &found {
        outln!("  {:<18} {}", x.kind, x.message);
    }
    outln!();
    outln!("== Where the outputs are ==");
    outln!(
        "  ledger (SQLite, WAL):   {}",
        dir.join("ledger.sqlite").display()
    );
    outln!("  generated events:       {}", events_path.display());
    outln!("  negotiated rates:       {}", prices_path.display());
    for p in &written {
        outln!("  report:                 {}", p.display());
    }
    outln!();
    outln!("== Try ==");
    let d = dir.display();
    outln!(
        "  tollgate --data-dir {d} report summary --period {} --by feature",
        period.label()
    );
    outln!(
        "  tollgate --data-dir {d} sql \"SELECT model, COUNT(*), SUM(cost_e12)/1e12 AS usd FROM events GROUP BY model\""
    );
    outln!(
        "  tollgate price --provider openai --model gpt-4o --input-tokens 2200 --cache-read-tokens 1200 --output-tokens 620"
    );
    outln!(
        "  tollgate prices show claude-sonnet-4-5 --prices {}",
        prices_path.display()
    );
    Ok(())
}

/// The demo's configuration: five B2B tenants, one per plan, and an FX rate for the EUR one.
fn demo_config(period: &tollgate_core::Period) -> String {
    let label = period.label();
    format!(
        r#"# Written by `tollgate demo`: the tenants its invoices are made for.

[reporting]
timezone = "UTC"

[[reporting.fx]]
period = "{label}"
to = "EUR"
rate = "0.92"
source = "demo fixed rate"

[tenants.acme]
name = "ACME CORP"
currency = "USD"
number = "AI-{{YYYY}}-{{MM}}-ACME"
tax = {{ name = "KDV", rate = "0.20" }}
plan = "rate_card"
[[tenants.acme.lines]]
feature = "smart-search"
label = "Smart Search Feature"
unit = "1k_tokens"
price = "0.008"
[[tenants.acme.lines]]
feature = "query-rewrite"
label = "Query Rewrite"
unit = "request"
price = "0.002"
[[tenants.acme.lines]]
feature = "ticket-reply"
label = "Support Ticket Replies"
unit = "session"
price = "0.15"
[[tenants.acme.lines]]
feature = "summarize-thread"
label = "Thread Summaries"
unit = "1k_tokens"
price = "0.012"
[[tenants.acme.lines]]
feature = "report-summary"
label = "Report Summaries"
unit = "1k_tokens"
price = "0.020"
[[tenants.acme.lines]]
feature = "nightly-digest"
label = "Nightly Digest"
unit = "1k_tokens"
price = "0.004"
[[tenants.acme.lines]]
feature = "embeddings-index"
label = "Document Indexing"
unit = "1k_tokens"
price = "0.0004"
[[tenants.acme.lines]]
feature = "onboarding-assistant"
label = "Onboarding Assistant"
unit = "session"
price = "0.10"

[tenants.globex]
name = "Globex GmbH"
currency = "EUR"
number = "GX-{{YYYY}}{{MM}}-{{SEQ:3}}"
tax = {{ name = "USt", rate = "0.19" }}
plan = "pass_through"
margin = "0.25"

[tenants.initech]
name = "Initech LLC"
number = "INI-{{YYYY}}-{{MM}}"
plan = "flat"
fee = "250.00"
included_tokens = 20000000
overage_price = "0.006"

[tenants.umbrella]
name = "Umbrella Corp"
number = "UMB-{{YYYY}}-{{MM}}"
plan = "tiered"
[[tenants.umbrella.tiers]]
up_to_tokens = 5000000
price_per_1k = "0.010"
[[tenants.umbrella.tiers]]
up_to_tokens = 20000000
price_per_1k = "0.007"
[[tenants.umbrella.tiers]]
price_per_1k = "0.005"

[tenants.hooli]
name = "Hooli"
number = "HOO-{{YYYY}}-{{MM}}"
plan = "pass_through"
margin = "0.30"
minimum = "150.00"
"#
    )
}
