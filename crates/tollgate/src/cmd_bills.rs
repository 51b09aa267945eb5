//! `tollgate bills fetch openai|anthropic --period YYYY-MM`: a month's usage and cost reports
//! from a provider's admin API, stored as bills exactly like `ingest bills` would store them.
//!
//! - **Endpoints.** OpenAI: `GET /v1/organization/usage/completions` (`openai-usage`) and
//!   `GET /v1/organization/costs` (`openai-costs`), `Authorization: Bearer`. Anthropic:
//!   `GET /v1/organizations/usage_report/messages` (`anthropic-usage`) and
//!   `GET /v1/organizations/cost_report` (`anthropic-cost`), `x-api-key` and
//!   `anthropic-version: 2023-06-01`. Daily buckets over the UTC month, grouped by every
//!   dimension reconciliation uses.
//! - **Pagination.** Every page is fetched while `has_more` is true, passing `next_page` back
//!   as `page`; a repeated cursor or `has_more` without a cursor is an error.
//! - **All or nothing.** Every page of both reports is fetched and parsed before the ledger is
//!   opened; the two bills are then stored in one transaction, each superseding the earlier
//!   import of the same (bill type, provider, month). A failed page writes nothing.
//! - **Secrets.** The admin key is read from an environment variable (named in the config) and
//!   only ever sent in the auth header: never printed, logged or stored.
//! - **Where.** `[bills]` in the config: `openai_base_url`, `openai_admin_key_env`,
//!   `anthropic_base_url`, `anthropic_admin_key_env`; the base URLs can also be set with
//!   `TOLLGATE_OPENAI_ADMIN_URL` / `TOLLGATE_ANTHROPIC_ADMIN_URL` (they win over the config).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;
use tollgate_core::Period;
use tollgate_core::period::PeriodKind;
use tollgate_providers::bills::{self, BillSummary, BillType};

use crate::Ctx;
use crate::output::{Format, outln};

/// The `[bills]` section of the configuration: where the providers' admin APIs are and which
/// environment variables hold the admin keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillsConfig {
    /// OpenAI API base URL without `/v1` (default `https://api.openai.com`).
    pub openai_base_url: Option<String>,
    /// Environment variable holding the OpenAI admin key (default `OPENAI_ADMIN_KEY`).
    pub openai_admin_key_env: Option<String>,
    /// Anthropic API base URL without `/v1` (default `https://api.anthropic.com`).
    pub anthropic_base_url: Option<String>,
    /// Environment variable holding the Anthropic admin key (default `ANTHROPIC_ADMIN_KEY`).
    pub anthropic_admin_key_env: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum BillsCommand {
    /// Fetch a month's usage and cost reports from a provider's admin API and store them as
    /// bills (replacing an earlier import of the same provider and month).
    Fetch(FetchArgs),
}

/// The providers whose admin APIs `bills fetch` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    Openai,
    Anthropic,
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// openai or anthropic.
    #[arg(value_enum)]
    provider: Provider,
    /// The UTC calendar month, YYYY-MM.
    #[arg(long)]
    period: String,
    /// Summary format: table or json.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// One report endpoint: the bill type its pages parse as, its path and fixed query.
struct Endpoint {
    kind: BillType,
    path: &'static str,
    query: Vec<(&'static str, String)>,
}

/// How to reach one provider.
struct Target {
    base_url: String,
    /// Where the base URL came from, for error messages.
    base_url_from: String,
    key_env: String,
    key: String,
    provider: Provider,
}

/// The most pages one report may take (a month of daily buckets needs one or two).
const MAX_PAGES: usize = 1000;

pub fn run(ctx: &Ctx, cmd: &BillsCommand) -> Result<()> {
    match cmd {
        BillsCommand::Fetch(a) => fetch(ctx, a),
    }
}

fn month(spec: &str) -> Result<Period> {
    let p = Period::parse(spec, "UTC")
        .ok()
        .filter(|p| p.kind() == PeriodKind::Month)
        .ok_or_else(|| {
            anyhow::anyhow!("--period {spec:?}: expected a calendar month as YYYY-MM, e.g. 2026-09")
        })?;
    Ok(p)
}

fn target(ctx: &Ctx, provider: Provider) -> Result<Target> {
    let c = &ctx.config.bills;
    let (cfg_url, default_url, url_env, cfg_key_env, default_key_env, name) = match provider {
        Provider::Openai => (
            &c.openai_base_url,
            "https://api.openai.com",
            "TOLLGATE_OPENAI_ADMIN_URL",
            &c.openai_admin_key_env,
            "OPENAI_ADMIN_KEY",
            "openai",
        ),
        Provider::Anthropic => (
            &c.anthropic_base_url,
            "https://api.anthropic.com",
            "TOLLGATE_ANTHROPIC_ADMIN_URL",
            &c.anthropic_admin_key_env,
            "ANTHROPIC_ADMIN_KEY",
            "anthropic",
        ),
    };
    let (base_url, base_url_from) = match std::env::var(url_env).ok().filter(|v| !v.is_empty()) {
        Some(u) => (u, format!("the environment variable {url_env}")),
        None => match cfg_url {
            Some(u) => (u.clone(), format!("bills.{name}_base_url in the config")),
            None => (
                default_url.to_string(),
                format!("the default (set bills.{name}_base_url or {url_env} to change it)"),
            ),
        },
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        bail!("{base_url:?} (from {base_url_from}) is not an http:// or https:// URL");
    }
    let key_env = cfg_key_env
        .clone()
        .unwrap_or_else(|| default_key_env.to_string());
    let key = std::env::var(&key_env)
        .ok()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "bills fetch {name}: set the organization admin key in the environment variable {key_env} \
                 (or name another variable with bills.{name}_admin_key_env in the config)"
            )
        })?;
    Ok(Target {
        base_url: base_url.trim_end_matches('/').to_string(),
        base_url_from,
        key_env,
        key: key.trim().to_string(),
        provider,
    })
}

/// The two reports of a provider for `period`, with the query each needs.
fn endpoints(provider: Provider, period: &Period) -> Vec<Endpoint> {
    match provider {
        Provider::Openai => {
            let range = || {
                vec![
                    ("start_time", period.start().as_second().to_string()),
                    ("end_time", period.end().as_second().to_string()),
                    ("bucket_width", "1d".to_string()),
                    ("limit", "31".to_string()),
                ]
            };
            let mut usage = range();
            for g in ["project_id", "api_key_id", "model", "batch", "service_tier"] {
                usage.push(("group_by", g.to_string()));
            }
            let mut costs = range();
            for g in ["line_item", "project_id", "api_key_id"] {
                costs.push(("group_by", g.to_string()));
            }
            vec![
                Endpoint {
                    kind: BillType::OpenAiUsage,
                    path: "/v1/organization/usage/completions",
                    query: usage,
                },
                Endpoint {
                    kind: BillType::OpenAiCosts,
                    path: "/v1/organization/costs",
                    query: costs,
                },
            ]
        }
        Provider::Anthropic => {
            // RFC 3339 in UTC, whole seconds: 2026-09-01T00:00:00Z.
            let rfc = |t: jiff::Timestamp| t.to_string();
            let range = || {
                vec![
                    ("starting_at", rfc(period.start())),
                    ("ending_at", rfc(period.end())),
                    ("bucket_width", "1d".to_string()),
                    ("limit", "31".to_string()),
                ]
            };
            let mut usage = range();
            for g in [
                "api_key_id",
                "workspace_id",
                "model",
                "service_tier",
                "context_window",
            ] {
                usage.push(("group_by[]", g.to_string()));
            }
            let mut cost = range();
            for g in ["workspace_id", "description"] {
                cost.push(("group_by[]", g.to_string()));
            }
            vec![
                Endpoint {
                    kind: BillType::AnthropicUsage,
                    path: "/v1/organizations/usage_report/messages",
                    query: usage,
                },
                Endpoint {
                    kind: BillType::AnthropicCost,
                    path: "/v1/organizations/cost_report",
                    query: cost,
                },
            ]
        }
    }
}

/// The pagination fields of a page; the rest is read by the bill parser.
#[derive(Deserialize)]
struct PageMeta {
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    next_page: Option<String>,
}

/// What to tell the user about a refused request.
fn advice(status: u16, t: &Target) -> String {
    match status {
        401 | 403 => format!(
            "check that {} holds an organization admin key (not a project or workspace API key) with access to usage and cost reports",
            t.key_env
        ),
        404 => format!(
            "check the base URL {} (from {}); it is the API's root, without /v1",
            t.base_url, t.base_url_from
        ),
        429 => "the provider is rate limiting; try again in a minute".to_string(),
        500..=599 => "the provider failed; try again later".to_string(),
        _ => "see the provider's message above".to_string(),
    }
}

/// Fetches every page of one report; returns the pages' JSON texts.
fn fetch_pages(agent: &ureq::Agent, t: &Target, ep: &Endpoint) -> Result<Vec<String>> {
    let url = format!("{}{}", t.base_url, ep.path);
    let mut pages: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let n = pages.len() + 1;
        let mut req = agent.get(&url);
        for (k, v) in &ep.query {
            req = req.query(*k, v);
        }
        if let Some(c) = &cursor {
            req = req.query("page", c);
        }
        req = match t.provider {
            Provider::Openai => req.header("Authorization", &format!("Bearer {}", t.key)),
            Provider::Anthropic => req
                .header("x-api-key", &t.key)
                .header("anthropic-version", "2023-06-01"),
        };
        let mut resp = req.call().map_err(|e| {
            anyhow::anyhow!(
                "GET {} (page {n}): cannot reach {url}: {e}; check the base URL (from {}) and the network; nothing was stored",
                ep.path,
                t.base_url_from
            )
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .with_context(|| format!("GET {} (page {n}): cannot read the answer", ep.path))?;
        if !(200..300).contains(&status) {
            // Both providers answer {"error": {"message": ...}}; never echo the key.
            let msg = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(String::from))
                .unwrap_or_else(|| {
                    // Not the provider's JSON error (a proxy, a wrong host): its start, on one line.
                    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    let short: String = flat.chars().take(160).collect();
                    if short.len() < flat.len() {
                        format!("{short}...")
                    } else {
                        short
                    }
                });
            let msg = msg.replace(&t.key, "<admin key>");
            bail!(
                "GET {} (page {n}) answered HTTP {status}: {}; {}; nothing was stored",
                ep.path,
                msg.trim(),
                advice(status, t)
            );
        }
        let meta: PageMeta = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "GET {} (page {n}): the answer is not a report page ({e}); check the base URL (from {}); nothing was stored",
                ep.path,
                t.base_url_from
            )
        })?;
        pages.push(text);
        if !meta.has_more {
            return Ok(pages);
        }
        let next = meta.next_page.ok_or_else(|| {
            anyhow::anyhow!(
                "GET {} (page {n}): has_more is true but next_page is missing; nothing was stored",
                ep.path
            )
        })?;
        if cursor.as_deref() == Some(next.as_str()) {
            bail!(
                "GET {} (page {n}): next_page repeats the cursor just used; the provider's pagination is stuck; nothing was stored",
                ep.path
            );
        }
        if pages.len() >= MAX_PAGES {
            bail!(
                "GET {}: more than {MAX_PAGES} pages for one month; nothing was stored",
                ep.path
            );
        }
        cursor = Some(next);
    }
}

/// One fetched and parsed report.
struct Fetched {
    kind: BillType,
    source: String,
    pages: usize,
    lines: Vec<bills::BillLine>,
    summary: BillSummary,
}

fn fetch(ctx: &Ctx, a: &FetchArgs) -> Result<()> {
    if matches!(a.format, Format::Csv | Format::Xlsx) {
        bail!(
            "--format {}: the fetch summary is offered as table or json",
            a.format.name()
        );
    }
    let period = month(&a.period)?;
    let t = target(ctx, a.provider)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let label = period.label();
    let mut fetched = Vec::new();
    for ep in endpoints(a.provider, &period) {
        let pages = fetch_pages(&agent, &t, &ep)?;
        // The parsers read an array of pages; a page's errors name it as `[N]` (from 0).
        let doc = format!("[{}]", pages.join(","));
        let source = format!("{} {label}", ep.path);
        let lines = bills::parse(ep.kind, &source, doc.as_bytes())
            .with_context(|| "nothing was stored".to_string())?;
        if let Some(l) = lines.iter().find(|l| !period.contains(l.period_start)) {
            bail!(
                "{source}: a bucket starts at {}, outside {label}; nothing was stored",
                tollgate_core::event::format_instant(l.period_start)
            );
        }
        let summary = bills::summarize(&lines).map_err(|e| {
            anyhow::anyhow!(
                "{source}: {e}: the provider reported nothing for {label}; nothing was stored"
            )
        })?;
        fetched.push(Fetched {
            kind: ep.kind,
            source,
            pages: pages.len(),
            lines,
            summary,
        });
    }
    let docs: Vec<serde_json::Value> = fetched
        .iter()
        .map(|f| {
            let mut d = crate::cmd_ingest::bill_summary_json(&f.summary);
            d["type"] = json!(f.kind.name());
            d["source"] = json!(f.source);
            d["pages"] = json!(f.pages);
            d
        })
        .collect();
    let records = fetched
        .into_iter()
        .map(|f| crate::cmd_ingest::bill_records(f.kind, &f.source, f.lines, &f.summary))
        .collect();
    crate::cmd_ingest::record_bills(&ctx.data_dir, records)?;
    match a.format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "provider": match a.provider { Provider::Openai => "openai", Provider::Anthropic => "anthropic" },
                "period": label,
                "bills": docs,
            }))?
        ),
        _ => {
            for d in &docs {
                let tk = &d["tokens"];
                outln!(
                    "{} ({}, {} page(s)): {} lines; cost {} {}; tokens: input {}, cache read {}, cache write {}, cache write 1h {}, output {}",
                    d["type"].as_str().unwrap_or_default(),
                    d["source"].as_str().unwrap_or_default(),
                    d["pages"],
                    d["lines"],
                    d["cost"].as_str().unwrap_or("(usage only, no money)"),
                    d["currency"].as_str().unwrap_or_default(),
                    tk["input"],
                    tk["cache_read"],
                    tk["cache_write"],
                    tk["cache_write_1h"],
                    tk["output"]
                );
            }
        }
    }
    Ok(())
}
