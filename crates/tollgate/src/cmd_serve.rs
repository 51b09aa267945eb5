//! `tollgate serve` (the gateway), `tollgate keys ...` (gateway keys) and
//! `tollgate fake-provider` (a local stand-in for OpenAI and Anthropic). The work is done by
//! the `tollgate-gateway` crate; this module is the command line. See `docs/gateway.md`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use tollgate_gateway::keys;

use crate::Ctx;
use crate::output::{Format, outln};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides gateway.listen; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Write the bound address to this file once listening.
    #[arg(long, value_name = "FILE")]
    addr_file: Option<PathBuf>,
    /// Worker threads (default: one per CPU).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct FakeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: String,
    /// Write the bound address to this file once listening.
    #[arg(long, value_name = "FILE")]
    addr_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a gateway key; it is printed once and only its hash is stored.
    Add(KeyAddArgs),
    /// List the keys (ids and attribution; never the keys).
    List {
        /// table or json.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Revoke a key: requests with it get 401 from then on.
    Revoke {
        /// The key id (`key_...`).
        key_id: String,
    },
    /// Set a key's attribution mode, or a temporary override with --until.
    Mode {
        /// The key id (`key_...`).
        key_id: String,
        /// report, enforce or quarantine.
        mode: String,
        /// Override only until this RFC 3339 instant.
        #[arg(long, value_name = "INSTANT")]
        until: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct KeyAddArgs {
    #[arg(long)]
    team: String,
    #[arg(long)]
    service: String,
    /// prod, staging, dev or test.
    #[arg(long)]
    environment: String,
    #[arg(long)]
    cost_center: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    /// Per-key mode: report, enforce or quarantine (default: the config's).
    #[arg(long)]
    mode: Option<String>,
    /// table or json.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn serve(ctx: &Ctx, a: &ServeArgs) -> Result<()> {
    let mut cfg = ctx.config.gateway.clone();
    cfg.apply_env(|k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(l) = &a.listen {
        if l.parse::<std::net::SocketAddr>().is_err() {
            bail!("--listen {l:?}: not an address with a port (e.g. 127.0.0.1:8787)");
        }
        cfg.listen = l.clone();
    }
    let pricer = ctx.pricer()?;
    tollgate_gateway::serve(tollgate_gateway::ServeOptions {
        config: cfg,
        data_dir: ctx.data_dir.clone(),
        pricer,
        addr_file: a.addr_file.clone(),
        threads: a.threads,
        ledger: Some(crate::cmd_ledger::gateway_opener(ctx)),
        demo_stamps: false,
        timezone: ctx.config.timezone.clone(),
    })
}

pub fn fake_provider(a: &FakeArgs) -> Result<()> {
    tollgate_gateway::fake::run(&a.listen, a.addr_file.clone())
}

pub fn keys_cmd(ctx: &Ctx, c: &KeysCommand) -> Result<()> {
    let dir = &ctx.data_dir;
    match c {
        KeysCommand::Add(a) => {
            let (key, rec) = keys::add(
                dir,
                &keys::NewKey {
                    team: a.team.clone(),
                    service: a.service.clone(),
                    environment: a.environment.clone(),
                    cost_center: a.cost_center.clone(),
                    tenant: a.tenant.clone(),
                    mode: a.mode.clone(),
                },
            )?;
            match a.format {
                Format::Json => outln!("{}", serde_json::json!({"key": key, "key_id": rec.key_id})),
                _ => {
                    outln!("key_id: {}", rec.key_id);
                    outln!("key:    {key}");
                    outln!("(shown once: only its hash is stored)");
                }
            }
            Ok(())
        }
        KeysCommand::List { format } => {
            let all = keys::load(dir)?;
            match format {
                Format::Json => {
                    let v: Vec<serde_json::Value> = all
                        .iter()
                        .map(|k| {
                            serde_json::json!({"key_id": k.key_id, "team": k.team, "service": k.service,
                                "environment": k.environment, "cost_center": k.cost_center,
                                "tenant": k.tenant, "created_at": k.created_at,
                                "revoked_at": k.revoked_at, "mode": k.mode,
                                "override_mode": k.override_mode, "override_until": k.override_until})
                        })
                        .collect();
                    outln!("{}", serde_json::Value::Array(v));
                }
                _ => {
                    outln!("key_id            team  service  environment  tenant  mode  status");
                    for k in &all {
                        outln!(
                            "{}  {}  {}  {}  {}  {}  {}",
                            k.key_id,
                            k.team,
                            k.service,
                            k.environment,
                            k.tenant.as_deref().unwrap_or("-"),
                            k.mode.as_deref().unwrap_or("(config)"),
                            if k.revoked_at.is_some() {
                                "revoked"
                            } else {
                                "active"
                            }
                        );
                    }
                }
            }
            Ok(())
        }
        KeysCommand::Revoke { key_id } => {
            let k = keys::revoke(dir, key_id)?;
            outln!(
                "revoked {} at {}",
                k.key_id,
                k.revoked_at.as_deref().unwrap_or("")
            );
            Ok(())
        }
        KeysCommand::Mode {
            key_id,
            mode,
            until,
        } => {
            let k = keys::set_mode(dir, key_id, mode, until.as_deref())?;
            match &k.override_until {
                Some(u) if until.is_some() => outln!("{}: mode {mode} until {u}", k.key_id),
                _ => outln!("{}: mode {mode}", k.key_id),
            }
            Ok(())
        }
    }
}

/// One line for `config check`: where the gateway listens and what it forwards to.
pub fn describe(g: &tollgate_gateway::GatewayConfig) -> String {
    let ups: Vec<String> = g
        .upstreams
        .values()
        .map(|u| format!("{}={}", u.name, u.base_url))
        .collect();
    format!(
        "listen {}, durability {}, attribution mode {}, upstreams {}{}",
        g.listen,
        match g.durability {
            tollgate_gateway::config::Durability::Group => "group",
            tollgate_gateway::config::Durability::Sync => "sync",
        },
        g.attribution.mode.as_str(),
        ups.join(" "),
        g.otel
            .as_ref()
            .map(|o| format!(", OTLP export to {}", o.endpoint))
            .unwrap_or_default()
    )
}
