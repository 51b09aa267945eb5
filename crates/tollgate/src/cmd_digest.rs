//! `tollgate report digest`: the weekly Slack digest, printed as Block Kit JSON or posted to
//! the configured incoming webhook.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tollgate_core::money::parse_decimal;
use tollgate_core::{Currency, Period};
use tollgate_finance::digest::{self, DigestOptions, Thresholds};
use tollgate_finance::summary::FxRule;

use crate::Ctx;
use crate::output::emit;

#[derive(Debug, clap::Args)]
pub struct DigestArgs {
    /// The ISO week, e.g. 2026-W18 (in --tz).
    #[arg(long)]
    pub week: String,
    /// IANA time zone of the week (default: config reporting.timezone, else UTC).
    #[arg(long)]
    pub tz: Option<String>,
    /// Report currency, converted from USD at --fx-rate.
    #[arg(long, requires = "fx_rate")]
    pub currency: Option<String>,
    /// Units of --currency per USD for the whole week.
    #[arg(long, requires = "currency")]
    pub fx_rate: Option<String>,
    /// Post to the Slack incoming webhook whose URL is in the environment variable named by
    /// config slack.webhook_url_env (default TOLLGATE_SLACK_WEBHOOK_URL).
    #[arg(long)]
    pub post: bool,
    /// Write the Block Kit JSON here (atomically) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Builds the digest described by `a`.
pub fn build(ctx: &Ctx, a: &DigestArgs) -> Result<digest::Digest> {
    let tz = a.tz.clone().unwrap_or_else(|| ctx.config.timezone.clone());
    let week = Period::parse(&a.week, &tz).map_err(|e| anyhow::anyhow!("--week: {e}"))?;
    if week.kind() != tollgate_core::period::PeriodKind::IsoWeek {
        bail!("--week {}: give an ISO week such as 2026-W18", a.week);
    }
    let fx = match (&a.currency, &a.fx_rate) {
        (Some(c), Some(r)) => Some(FxRule {
            from: Currency::USD,
            to: Currency::parse(c).map_err(|e| anyhow::anyhow!("--currency: {e}"))?,
            rate: parse_decimal("--fx-rate", r)?,
            source: Some("--fx-rate".into()),
        }),
        _ => None,
    };
    let ledger = crate::cmd_ledger::open_read_only(ctx)?;
    Ok(digest::build(
        &*ledger,
        &DigestOptions {
            week,
            fx,
            dashboard_url: ctx.config.slack.dashboard_url.clone(),
            thresholds: Thresholds::default(),
        },
    )?)
}

/// The Slack incoming-webhook URL, from the environment variable named by
/// `slack.webhook_url_env` (default `TOLLGATE_SLACK_WEBHOOK_URL`; the URL is a secret, never in
/// the file). `asker` (`--post`, `post = true`) names what needs it in the error.
pub fn webhook_url(ctx: &Ctx, asker: &str) -> Result<String> {
    let var = ctx
        .config
        .slack
        .webhook_url_env
        .clone()
        .unwrap_or_else(|| "TOLLGATE_SLACK_WEBHOOK_URL".into());
    std::env::var(&var)
        .ok()
        .filter(|u| !u.is_empty())
        .with_context(|| {
            format!("{asker}: set the Slack incoming-webhook URL in the environment variable {var}")
        })
}

/// Posts a Block Kit message to an incoming webhook; Slack answers 200 `ok` or an error text.
pub fn post(url: &str, message: &serde_json::Value) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent
        .post(url)
        .content_type("application/json")
        .send(serde_json::to_vec(message)?)
        // The URL is a secret: name only the host in errors.
        .map_err(|e| anyhow::anyhow!("posting to the Slack webhook failed: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    if status != 200 {
        bail!("the Slack webhook answered {status}: {}", body.trim());
    }
    Ok(())
}

pub fn run(ctx: &Ctx, a: &DigestArgs) -> Result<()> {
    let d = build(ctx, a)?;
    let message = d.to_slack();
    if a.post {
        post(&webhook_url(ctx, "--post")?, &message)?;
        eprintln!("posted the {} digest to Slack", d.week.label());
        return Ok(());
    }
    emit(
        a.out.as_deref(),
        format!("{}\n", serde_json::to_string_pretty(&message)?).as_bytes(),
        false,
    )
}
