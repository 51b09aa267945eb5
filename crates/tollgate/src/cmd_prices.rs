//! `tollgate price` and `tollgate prices list|show`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use serde_json::{Value, json};
use tollgate_core::event::format_instant;
use tollgate_core::money::{fmt_decimal, parse_decimal};
use tollgate_core::rates::CLASSES;
use tollgate_core::{Pricer, PricingError, RateBook, Usage};
use tollgate_render::{Cell, Table};

use crate::Ctx;
use crate::output::{Format, emit, out, outln};

/// Loads override files (highest priority first) and the shipped catalog.
pub fn load_pricer(files: &[PathBuf]) -> Result<Pricer> {
    let mut books = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read rate file {}", f.display()))?;
        books.push(RateBook::parse(&f.display().to_string(), &text)?);
    }
    books.push(Pricer::catalog().context("the shipped catalog does not load (a build problem)")?);
    Ok(Pricer::new(books))
}

#[derive(Debug, clap::Args)]
pub struct PriceArgs {
    /// Provider id (e.g. openai, anthropic, aws.bedrock).
    #[arg(long)]
    provider: String,
    /// Model name, alias or dated snapshot.
    #[arg(long)]
    model: String,
    /// Input tokens that were neither read from nor written to a cache.
    #[arg(long, default_value_t = 0)]
    input_tokens: u64,
    /// Input tokens read from a prompt cache.
    #[arg(long, default_value_t = 0)]
    cache_read_tokens: u64,
    /// Input tokens written to a 5-minute cache.
    #[arg(long, default_value_t = 0)]
    cache_write_tokens: u64,
    /// Input tokens written to a 1-hour cache.
    #[arg(long = "cache-write-1h-tokens", default_value_t = 0)]
    cache_write_1h_tokens: u64,
    /// All output tokens, reasoning included.
    #[arg(long, default_value_t = 0)]
    output_tokens: u64,
    /// The part of output spent on reasoning (informational, never priced on top).
    #[arg(long, default_value_t = 0)]
    reasoning_tokens: u64,
    /// Other billable units, NAME=QUANTITY (e.g. web_search_requests=3); repeatable.
    #[arg(long = "unit", value_name = "NAME=QTY")]
    units: Vec<String>,
    /// The instant to price at (RFC 3339); default now.
    #[arg(long)]
    at: Option<String>,
    /// Batch prices.
    #[arg(long)]
    batch: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

fn parse_at(at: Option<&str>) -> Result<Timestamp> {
    match at {
        None => Ok(Timestamp::now()),
        Some(s) => s.parse::<Timestamp>().map_err(|_| {
            anyhow::anyhow!("--at: {s:?} is not an RFC 3339 instant such as 2026-07-01T12:00:00Z")
        }),
    }
}

pub fn price(ctx: &Ctx, a: &PriceArgs) -> Result<()> {
    if a.reasoning_tokens > a.output_tokens {
        bail!(
            "--reasoning-tokens {} is more than --output-tokens {}: reasoning is part of output",
            a.reasoning_tokens,
            a.output_tokens
        );
    }
    let mut units = BTreeMap::new();
    for u in &a.units {
        let (k, v) = u
            .split_once('=')
            .with_context(|| format!("--unit {u:?}: expected NAME=QUANTITY"))?;
        units.insert(k.to_string(), parse_decimal(&format!("--unit {k}"), v)?);
    }
    let usage = Usage {
        input_tokens: a.input_tokens,
        cache_read_tokens: a.cache_read_tokens,
        cache_write_tokens: a.cache_write_tokens,
        cache_write_1h_tokens: a.cache_write_1h_tokens,
        output_tokens: a.output_tokens,
        reasoning_tokens: a.reasoning_tokens,
        units,
    };
    let at = parse_at(a.at.as_deref())?;
    let pricer = ctx.pricer()?;
    let q = match pricer.quote(&a.provider, &a.model, at, &usage, a.batch) {
        Ok(q) => q,
        Err(e @ PricingError::UnknownModel { .. }) => {
            let others = pricer.providers_of(&a.model);
            let hint = if others.is_empty() {
                String::new()
            } else {
                format!("; the model is known under provider {}", others.join(", "))
            };
            bail!("{e}{hint} (this usage would be recorded as unpriced, never $0)");
        }
        Err(e) => bail!("{e} (this usage would be recorded as unpriced, never $0)"),
    };
    match a.format {
        Format::Json => {
            let mut breakdown = serde_json::Map::new();
            for (k, v) in q.breakdown.entries() {
                breakdown.insert(k.to_string(), Value::String(fmt_decimal(v)));
            }
            let doc = json!({
                "provider": q.provider,
                "model": q.model,
                "currency": q.currency.as_str(),
                "cost": fmt_decimal(q.cost),
                "breakdown": breakdown,
                "price_version": q.price_version,
                "pricing_status": "priced",
            });
            outln!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Table => {
            let rate = pricer.find(&a.provider, &a.model, at)?;
            let mut t = Table {
                header: vec![
                    format!("{}/{} at {}", q.provider, q.model, format_instant(at)),
                    format!(
                        "price version {} (in force [{}, {})){}{}",
                        q.price_version,
                        rate.effective_from
                            .map(format_instant)
                            .unwrap_or_else(|| "-inf".into()),
                        rate.effective_to
                            .map(format_instant)
                            .unwrap_or_else(|| "+inf".into()),
                        q.tier
                            .map(|t| format!(", tier above {t} input tokens"))
                            .unwrap_or_default(),
                        if q.batch { ", batch prices" } else { "" },
                    ),
                ],
                columns: vec!["class".into(), "quantity".into(), "cost".into()],
                ..Table::default()
            };
            let qty = [
                usage.input_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                usage.cache_write_1h_tokens,
                usage.output_tokens,
            ];
            for (i, (k, v)) in q.breakdown.entries().into_iter().enumerate() {
                let quantity = if i < 5 {
                    Cell::Int(i128::from(qty[i]))
                } else {
                    Cell::Money(fmt_decimal(usage.units.get(k).copied().unwrap_or_default()))
                };
                t.rows.push(vec![
                    Cell::Text(k.into()),
                    quantity,
                    Cell::Money(fmt_decimal(v)),
                ]);
            }
            t.total = Some(vec![
                Cell::Text(format!("total {}", q.currency)),
                Cell::Empty,
                Cell::Money(fmt_decimal(q.cost)),
            ]);
            out!("{}", tollgate_render::text(&t));
        }
        other => bail!(
            "--format {} is not offered by `price`; use table or json",
            other.name()
        ),
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum PricesCommand {
    /// Rates in force at an instant (default now), one line per model.
    List {
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// The instant (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Write here instead of stdout (atomically: the whole file or nothing).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every rate period of one model: prices, tiers, aliases, since when, and from which file.
    Show {
        /// Model name or alias.
        model: String,
        /// Provider (needed when several providers have the model).
        #[arg(long)]
        provider: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn price_cells(p: &tollgate_core::rates::ClassPrices) -> Vec<Cell> {
    p.0.iter()
        .map(|d| d.map_or(Cell::Empty, |d| Cell::Money(fmt_decimal(d))))
        .collect()
}

fn bound(t: Option<Timestamp>, open: &str) -> String {
    t.map(format_instant).unwrap_or_else(|| open.to_string())
}

pub fn prices(ctx: &Ctx, cmd: &PricesCommand) -> Result<()> {
    let pricer = ctx.pricer()?;
    match cmd {
        PricesCommand::List {
            provider,
            at,
            format,
            out,
        } => {
            let at = parse_at(at.as_deref())?;
            // (provider, model) -> the highest-priority rate in force.
            let mut seen: BTreeMap<(String, String), (&tollgate_core::Rate, &str)> =
                BTreeMap::new();
            for book in pricer.books() {
                for r in book.rates() {
                    if provider.as_deref().is_some_and(|p| p != r.provider) || !r.covers(at) {
                        continue;
                    }
                    seen.entry((r.provider.clone(), r.model.clone()))
                        .or_insert((r, book.name()));
                }
            }
            let mut t = Table {
                header: vec![format!(
                    "Rates in force at {} (USD per million tokens unless noted; {} models)",
                    format_instant(at),
                    seen.len()
                )],
                columns: [
                    "provider",
                    "model",
                    "currency",
                    "input",
                    "cache_read",
                    "cache_write",
                    "cache_write_1h",
                    "output",
                    "batch",
                    "tiers",
                    "since",
                    "until",
                    "source",
                    "version",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                ..Table::default()
            };
            let mut json_rows = Vec::new();
            for ((p, m), (r, book)) in &seen {
                let mut row = vec![
                    Cell::Text(p.clone()),
                    Cell::Text(m.clone()),
                    Cell::Text(r.currency.to_string()),
                ];
                row.extend(price_cells(&r.base));
                row.push(
                    r.batch_multiplier
                        .map_or(Cell::Empty, |b| Cell::Text(format!("x{}", fmt_decimal(b)))),
                );
                row.push(Cell::Text(
                    r.tiers
                        .iter()
                        .map(|(t, _)| format!(">{t}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                ));
                row.push(Cell::Text(bound(r.effective_from, "-")));
                row.push(Cell::Text(bound(r.effective_to, "-")));
                row.push(Cell::Text(if *book == "shipped catalog" {
                    r.source.clone().unwrap_or_else(|| "catalog".into())
                } else {
                    (*book).to_string()
                }));
                row.push(Cell::Text(r.version.clone()));
                t.rows.push(row);
                let mut j = r.to_json();
                if let Some(o) = j.as_object_mut() {
                    o.insert("book".into(), (*book).into());
                }
                json_rows.push(j);
            }
            match format {
                Format::Table => emit(out.as_deref(), tollgate_render::text(&t).as_bytes(), false),
                Format::Csv => emit(out.as_deref(), &tollgate_render::csv(&t, false)?, false),
                Format::Json => emit(
                    out.as_deref(),
                    format!(
                        "{}\n",
                        serde_json::to_string_pretty(
                            &json!({"at": format_instant(at), "rates": json_rows})
                        )?
                    )
                    .as_bytes(),
                    false,
                ),
                Format::Xlsx => emit(
                    out.as_deref(),
                    &tollgate_render::xlsx(&t, "Rates", 6)?,
                    true,
                ),
            }
        }
        PricesCommand::Show {
            model,
            provider,
            format,
        } => {
            let providers = match provider {
                Some(p) => vec![p.clone()],
                None => pricer.providers_of(model),
            };
            if providers.is_empty() {
                let s = pricer.suggestions("", model);
                bail!(
                    "no rate for model {model:?} in any rate table{}",
                    if s.is_empty() {
                        String::new()
                    } else {
                        format!("; did you mean {}?", s.join(", "))
                    }
                );
            }
            let mut docs = Vec::new();
            let mut text = String::new();
            for p in &providers {
                let hist = pricer.history(p, model);
                if hist.is_empty() {
                    let s = pricer.suggestions(p, model);
                    bail!(
                        "no rate for model {model:?} of provider {p:?}{}",
                        if s.is_empty() {
                            String::new()
                        } else {
                            format!("; did you mean {}?", s.join(", "))
                        }
                    );
                }
                for (book, rates) in hist {
                    for r in rates {
                        docs.push({
                            let mut j = r.to_json();
                            if let Some(o) = j.as_object_mut() {
                                o.insert("book".into(), book.name().into());
                            }
                            j
                        });
                        text.push_str(&format!(
                            "{}/{}  [{} .. {})  version {}  ({})\n",
                            r.provider,
                            r.model,
                            bound(r.effective_from, "-inf"),
                            bound(r.effective_to, "+inf"),
                            r.version,
                            book.name()
                        ));
                        if !r.aliases.is_empty() || !r.patterns.is_empty() {
                            text.push_str(&format!(
                                "  answers to: {}\n",
                                r.aliases
                                    .iter()
                                    .chain(r.patterns.iter())
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ));
                        }
                        let line = |label: &str, c: &tollgate_core::rates::ClassPrices| {
                            let parts: Vec<String> = CLASSES
                                .iter()
                                .zip(c.0.iter())
                                .filter_map(|(n, p)| p.map(|p| format!("{n} {}", fmt_decimal(p))))
                                .collect();
                            format!(
                                "  {label}: {} {} per million tokens\n",
                                parts.join(", "),
                                r.currency
                            )
                        };
                        text.push_str(&line("prices", &r.base));
                        for (t, c) in &r.tiers {
                            text.push_str(&line(&format!("above {t} input tokens"), c));
                        }
                        if let Some(b) = r.batch_multiplier {
                            text.push_str(&format!("  batch: x{}\n", fmt_decimal(b)));
                        }
                        for (u, p) in &r.per_unit {
                            text.push_str(&format!(
                                "  per unit {u}: {} {}\n",
                                fmt_decimal(*p),
                                r.currency
                            ));
                        }
                        if let Some(s) = &r.source {
                            text.push_str(&format!("  source: {s}\n"));
                        }
                    }
                }
            }
            match format {
                Format::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"model": model, "rates": docs}))?
                ),
                Format::Table => out!("{text}"),
                other => {
                    bail!(
                        "--format {} is not offered by `prices show`; use table or json",
                        other.name()
                    )
                }
            }
            Ok(())
        }
    }
}
