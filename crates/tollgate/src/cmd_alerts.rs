//! `tollgate alerts check`: the anomaly alerts at an instant ([`tollgate_finance::alerts`]),
//! printed, or posted to Slack once each.
//!
//! The keys of the alerts already posted are kept in `<data dir>/alerts/sent.json` (written
//! atomically after a successful post), so a check run every five minutes (cron) posts each
//! alert once: all new alerts of a run go in one message, at most 20 listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use jiff::Timestamp;
use serde_json::{Value, json};
use tollgate_core::event::format_instant;
use tollgate_finance::alerts::{self, Alert};

use crate::Ctx;
use crate::output::{outln, read_state, write_atomic};

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

/// The alert keys already posted, and when (`<data dir>/alerts/sent.json`).
pub struct Sent {
    path: PathBuf,
    keys: BTreeMap<String, String>,
}

impl Sent {
    pub fn load(data_dir: &Path) -> Result<Sent> {
        let path = data_dir.join("alerts").join("sent.json");
        let keys = read_state(
            &path,
            "alert state tollgate writes (a JSON object of alert keys); remove it to post every current alert again",
        )?;
        Ok(Sent { path, keys })
    }

    /// The alerts of `found` not posted before.
    pub fn unsent<'a>(&self, found: &'a [Alert]) -> Vec<&'a Alert> {
        found
            .iter()
            .filter(|x| !self.keys.contains_key(&x.key))
            .collect()
    }

    /// Posts `new` to Slack in one message, then records them (nothing to do when empty);
    /// `asker` names what wants the webhook URL in its error.
    pub fn post(&mut self, ctx: &Ctx, new: &[&Alert], at: Timestamp, asker: &str) -> Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let batch: Vec<Alert> = new.iter().map(|x| (*x).clone()).collect();
        crate::cmd_digest::post(
            &crate::cmd_digest::webhook_url(ctx, asker)?,
            &alerts::to_slack(&batch, at, 20),
        )?;
        let now = format_instant(Timestamp::now());
        for x in &batch {
            self.keys.insert(x.key.clone(), now.clone());
        }
        write_atomic(&self.path, &serde_json::to_vec_pretty(&self.keys)?)
    }
}

/// The alerts as JSON: `{"at", "timezone", "alerts": [{"key", "kind", "subject", "message"}]}`,
/// each with `"new"` when `new` is given.
pub fn to_json(found: &[Alert], at: Timestamp, tz: &str, new: Option<&[&Alert]>) -> Value {
    let rows: Vec<Value> = found
        .iter()
        .map(|x| {
            let mut r =
                json!({"key": x.key, "kind": x.kind, "subject": x.subject, "message": x.message});
            if let Some(new) = new {
                r["new"] = Value::Bool(new.iter().any(|n| n.key == x.key));
            }
            r
        })
        .collect();
    json!({"at": format_instant(at), "timezone": tz, "alerts": rows})
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
    let found = alerts::check(
        &*ledger,
        at,
        &tz,
        &ctx.config.alerts.clone().unwrap_or_default(),
    )?;
    let mut sent = Sent::load(&ctx.data_dir)?;
    let new = sent.unsent(&found);
    if a.post && !new.is_empty() {
        sent.post(ctx, &new, at, "--post")?;
        eprintln!("posted {} new alert(s) to Slack", new.len());
    }
    if a.format == "json" {
        outln!(
            "{}",
            serde_json::to_string_pretty(&to_json(&found, at, &tz, Some(&new)))?
        );
    } else if found.is_empty() {
        outln!("no alerts at {} ({tz})", format_instant(at));
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
