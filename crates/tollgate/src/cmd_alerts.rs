//! `tollgate alerts check`: the anomaly alerts at an instant ([`tollgate_finance::alerts`]),
//! printed, or posted to Slack once each.
//!
//! The keys of the alerts already posted are kept in `<data dir>/alerts/sent.json` (written
//! atomically after a successful post), so a check run every five minutes (cron) posts each
//! alert once: all new alerts of a run go in one message, at most 20 listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde_json::json;
use tollgate_finance::alerts::{self, Alert, AlertThresholds};

use crate::Ctx;
use crate::output::outln;

#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// Find the anomalies at an instant (default: now); list them, or post the new ones.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The instant to check at (RFC 3339); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// IANA time zone of days and months (default: config reporting.timezone, else UTC).
    #[arg(long)]
    pub tz: Option<String>,
    /// Post the alerts not posted before to the Slack incoming webhook (config
    /// slack.webhook_url_env, default TOLLGATE_SLACK_WEBHOOK_URL), then remember them.
    #[arg(long)]
    pub post: bool,
    /// table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// Posted alert keys and when they were posted.
fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("alerts").join("sent.json")
}

fn load_sent(p: &Path) -> Result<BTreeMap<String, String>> {
    match std::fs::read(p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| {
            format!(
                "{}: not the alert state tollgate writes (a JSON object of alert keys); remove it to post every current alert again",
                p.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

fn thresholds(ctx: &Ctx) -> AlertThresholds {
    ctx.config.alerts.clone().unwrap_or_default()
}

pub fn run(ctx: &Ctx, c: &AlertsCommand) -> Result<()> {
    let AlertsCommand::Check(a) = c;
    let at: Timestamp = match &a.at {
        Some(s) => s
            .parse()
            .map_err(|e| anyhow::anyhow!("--at {s:?} is not an RFC 3339 instant: {e}"))?,
        None => Timestamp::now(),
    };
    let tz = a.tz.clone().unwrap_or_else(|| ctx.config.timezone.clone());
    if a.format != "table" && a.format != "json" {
        anyhow::bail!("--format {:?}: use table or json", a.format);
    }
    let ledger = crate::cmd_ledger::open_read_only(ctx)?;
    let found = alerts::check(&*ledger, at, &tz, &thresholds(ctx))?;
    let state = state_path(&ctx.data_dir);
    let mut sent = load_sent(&state)?;
    let new: Vec<&Alert> = found
        .iter()
        .filter(|x| !sent.contains_key(&x.key))
        .collect();
    if a.post && !new.is_empty() {
        let var = ctx
            .config
            .slack
            .webhook_url_env
            .clone()
            .unwrap_or_else(|| "TOLLGATE_SLACK_WEBHOOK_URL".into());
        let url = std::env::var(&var)
            .ok()
            .filter(|u| !u.is_empty())
            .with_context(|| {
                format!(
                    "--post: set the Slack incoming-webhook URL in the environment variable {var}"
                )
            })?;
        let batch: Vec<Alert> = new.iter().map(|x| (*x).clone()).collect();
        crate::cmd_digest::post(&url, &alerts::to_slack(&batch, at, 20))?;
        let now = tollgate_core::event::format_instant(Timestamp::now());
        for x in &batch {
            sent.insert(x.key.clone(), now.clone());
        }
        if let Some(dir) = state.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::output::write_atomic(&state, &serde_json::to_vec_pretty(&sent)?)?;
        eprintln!("posted {} new alert(s) to Slack", batch.len());
    }
    if a.format == "json" {
        let rows: Vec<_> = found
            .iter()
            .map(|x| {
                json!({"key": x.key, "kind": x.kind, "subject": x.subject, "message": x.message,
                       "new": new.iter().any(|n| n.key == x.key)})
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"at": tollgate_core::event::format_instant(at), "timezone": tz, "alerts": rows})
            )?
        );
    } else if found.is_empty() {
        outln!(
            "no alerts at {} ({tz})",
            tollgate_core::event::format_instant(at)
        );
    } else {
        for x in &found {
            let mark = if new.iter().any(|n| n.key == x.key) {
                "new "
            } else {
                "sent"
            };
            outln!("{mark}  {:<18}  {}", x.kind, x.message);
        }
    }
    Ok(())
}
