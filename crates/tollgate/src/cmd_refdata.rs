//! `tollgate refdata`: reference data kept in the ledger as history (migration 6). Who owns an
//! API key, project, workspace, IAM principal or cost-allocation tag (team and cost center);
//! what a bill's or a log's model name means (canonical model and provider); who may approve
//! adjustments. Every change is a new row with who (`--by`, default `$USER`) and when; the
//! newest row per kind and key is in force; nothing is edited or deleted. See docs/reconcile.md.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;
use tollgate_ledger::{Ledger, REFDATA_KINDS, RefDataEntry, RefDataRecord};
use tollgate_render::{Cell, Table};

use crate::Ctx;
use crate::output::{Format, out, outln};

#[derive(Debug, clap::Subcommand)]
pub enum RefdataCommand {
    /// Map an identifier: KIND is api_key, project, workspace, principal, tag (KEY as
    /// name=value), model (KEY is the name as billed or logged) or approver.
    Set(SetArgs),
    /// Remove the mapping of an identifier (recorded as a change; history is kept).
    Remove(RemoveArgs),
    /// The reference data in force (or as of a version).
    List(ListArgs),
    /// Every change, with who and when.
    History(HistoryArgs),
    /// Apply a TOML file of mappings; only entries that differ from what is in force are
    /// recorded, so applying the same file twice changes nothing.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    kind: String,
    key: String,
    /// Owner kinds: the team.
    #[arg(long)]
    team: Option<String>,
    /// Owner kinds: the cost center.
    #[arg(long)]
    cost_center: Option<String>,
    /// model: the canonical model name.
    #[arg(long)]
    model: Option<String>,
    /// model: the canonical provider (openai, anthropic, aws.bedrock, gcp.gemini, ...).
    #[arg(long)]
    provider: Option<String>,
    /// approver: the role (default approver).
    #[arg(long)]
    role: Option<String>,
    #[arg(long)]
    note: Option<String>,
    /// Who makes the change (default $USER).
    #[arg(long)]
    by: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    kind: String,
    key: String,
    #[arg(long)]
    note: Option<String>,
    #[arg(long)]
    by: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this kind.
    #[arg(long)]
    kind: Option<String>,
    /// As of this version (the number `history` shows).
    #[arg(long)]
    as_of: Option<i64>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    key: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    file: std::path::PathBuf,
    #[arg(long)]
    by: Option<String>,
}

/// Who made a change: `--by`, else `$USER`, else `unknown`.
pub fn who(by: Option<&str>) -> String {
    by.map(String::from)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

fn check_kind(kind: &str) -> Result<()> {
    if !REFDATA_KINDS.contains(&kind) {
        bail!(
            "unknown reference data kind {kind:?}; use one of {}",
            REFDATA_KINDS.join(", ")
        );
    }
    Ok(())
}

/// Checks that an entry has what its kind needs; the error names the field.
pub fn validate(e: &RefDataEntry) -> std::result::Result<(), String> {
    if !REFDATA_KINDS.contains(&e.kind.as_str()) {
        return Err(format!(
            "kind: unknown kind {:?}; use one of {}",
            e.kind,
            REFDATA_KINDS.join(", ")
        ));
    }
    if e.key.trim().is_empty() {
        return Err("key: empty; give the identifier as the provider writes it".into());
    }
    if e.removed {
        return Ok(());
    }
    match e.kind.as_str() {
        "model" => {
            if e.canonical_model.as_deref().is_none_or(str::is_empty) {
                return Err(format!(
                    "model: missing for {:?}; give the canonical model name",
                    e.key
                ));
            }
            if e.provider.as_deref().is_none_or(str::is_empty) {
                return Err(format!(
                    "provider: missing for {:?}; give the canonical provider",
                    e.key
                ));
            }
        }
        "approver" => {}
        kind => {
            if e.team_id.as_deref().is_none_or(str::is_empty) {
                return Err(format!(
                    "team: missing for {kind} {:?}; give the owning team",
                    e.key
                ));
            }
            if kind == "tag" && !e.key.contains('=') {
                return Err(format!(
                    "key: tag {:?} must be written name=value (e.g. user_team=search)",
                    e.key
                ));
            }
        }
    }
    Ok(())
}

/// Whether `e` says the same as the record in force (so recording it would change nothing).
fn same(e: &RefDataEntry, cur: Option<&RefDataRecord>) -> bool {
    match cur {
        None => e.removed,
        Some(r) => {
            let c = &r.entry;
            !e.removed
                && c.team_id == e.team_id
                && c.cost_center == e.cost_center
                && c.canonical_model == e.canonical_model
                && c.provider == e.provider
                && c.role == e.role
        }
    }
}

/// Records the entries that change something, in one transaction; returns (recorded, unchanged).
pub fn apply(ledger: &mut dyn Ledger, entries: &[RefDataEntry]) -> Result<(usize, usize)> {
    let current = ledger.refdata(None)?;
    let find = |e: &RefDataEntry| {
        current
            .iter()
            .find(|r| r.entry.kind == e.kind && r.entry.key == e.key)
    };
    let changes: Vec<&RefDataEntry> = entries.iter().filter(|e| !same(e, find(e))).collect();
    let mut w = ledger.writer()?;
    for e in &changes {
        w.record_refdata(e)?;
    }
    w.commit()?;
    Ok((changes.len(), entries.len() - changes.len()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    key: String,
    team: Option<String>,
    cost_center: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    role: Option<String>,
    note: Option<String>,
    #[serde(default)]
    remove: bool,
}

/// Parses a reference data file: `[[api_key]]`, `[[project]]`, `[[workspace]]`,
/// `[[principal]]`, `[[tag]]`, `[[model]]`, `[[approver]]` tables. Errors name the file, the
/// table and entry, and the field.
pub fn parse_file(path: &Path, text: &str, by: &str) -> Result<Vec<RefDataEntry>> {
    let raw: std::collections::BTreeMap<String, Vec<RawEntry>> = toml::from_str(text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let mut out = Vec::new();
    for (kind, list) in raw {
        if !REFDATA_KINDS.contains(&kind.as_str()) {
            bail!(
                "{}: [[{kind}]]: unknown reference data kind; use one of {}",
                path.display(),
                REFDATA_KINDS.join(", ")
            );
        }
        for (i, r) in list.into_iter().enumerate() {
            let e = RefDataEntry {
                kind: kind.clone(),
                key: r.key,
                team_id: r.team,
                cost_center: r.cost_center,
                canonical_model: r.model,
                provider: r.provider,
                role: match (kind.as_str(), r.role) {
                    ("approver", None) => Some("approver".into()),
                    (_, role) => role,
                },
                removed: r.remove,
                changed_by: by.to_string(),
                note: r.note,
            };
            validate(&e).map_err(|m| anyhow::anyhow!("{}: {kind}[{i}].{m}", path.display()))?;
            if out
                .iter()
                .any(|o: &RefDataEntry| o.kind == e.kind && o.key == e.key)
            {
                bail!(
                    "{}: {kind}[{i}].key: {:?} appears twice; keep one entry",
                    path.display(),
                    e.key
                );
            }
            out.push(e);
        }
    }
    Ok(out)
}

pub fn run(ctx: &Ctx, cmd: &RefdataCommand) -> Result<()> {
    match cmd {
        RefdataCommand::Set(a) => {
            check_kind(&a.kind)?;
            let e = RefDataEntry {
                kind: a.kind.clone(),
                key: a.key.clone(),
                team_id: a.team.clone(),
                cost_center: a.cost_center.clone(),
                canonical_model: a.model.clone(),
                provider: a.provider.clone(),
                role: match (a.kind.as_str(), &a.role) {
                    ("approver", None) => Some("approver".into()),
                    (_, r) => r.clone(),
                },
                removed: false,
                changed_by: who(a.by.as_deref()),
                note: a.note.clone(),
            };
            validate(&e).map_err(|m| anyhow::anyhow!("refdata set: --{m}"))?;
            let mut l = crate::cmd_ledger::open(ctx)?;
            let (n, _) = apply(l.as_mut(), std::slice::from_ref(&e))?;
            if n == 0 {
                outln!("{} {}: unchanged (already in force)", e.kind, e.key);
            } else {
                outln!("{} {}: recorded by {}", e.kind, e.key, e.changed_by);
            }
        }
        RefdataCommand::Remove(a) => {
            check_kind(&a.kind)?;
            let e = RefDataEntry {
                kind: a.kind.clone(),
                key: a.key.clone(),
                removed: true,
                changed_by: who(a.by.as_deref()),
                note: a.note.clone(),
                ..Default::default()
            };
            let mut l = crate::cmd_ledger::open(ctx)?;
            let (n, _) = apply(l.as_mut(), std::slice::from_ref(&e))?;
            if n == 0 {
                outln!(
                    "{} {}: no mapping in force; nothing to remove",
                    e.kind,
                    e.key
                );
            } else {
                outln!("{} {}: removed by {}", e.kind, e.key, e.changed_by);
            }
        }
        RefdataCommand::Import(a) => {
            let text = std::fs::read_to_string(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            let entries = parse_file(&a.file, &text, &who(a.by.as_deref()))?;
            let mut l = crate::cmd_ledger::open(ctx)?;
            let (n, same) = apply(l.as_mut(), &entries)?;
            outln!(
                "{}: {} entries, {n} changes recorded, {same} unchanged",
                a.file.display(),
                entries.len()
            );
        }
        RefdataCommand::List(a) => {
            if let Some(k) = &a.kind {
                check_kind(k)?;
            }
            let l = crate::cmd_ledger::open(ctx)?;
            let rows: Vec<RefDataRecord> = l
                .refdata(a.as_of)?
                .into_iter()
                .filter(|r| a.kind.as_deref().is_none_or(|k| r.entry.kind == k))
                .collect();
            print_records(&rows, a.format, false)?;
        }
        RefdataCommand::History(a) => {
            if let Some(k) = &a.kind {
                check_kind(k)?;
            }
            let l = crate::cmd_ledger::open(ctx)?;
            let rows = l.refdata_history(a.kind.as_deref(), a.key.as_deref())?;
            print_records(&rows, a.format, true)?;
        }
    }
    Ok(())
}

fn print_records(rows: &[RefDataRecord], format: Format, history: bool) -> Result<()> {
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let e = &r.entry;
                    json!({
                        "version": r.version, "changed_at": r.changed_at, "changed_by": e.changed_by,
                        "kind": e.kind, "key": e.key, "team": e.team_id,
                        "cost_center": e.cost_center, "model": e.canonical_model,
                        "provider": e.provider, "role": e.role, "removed": e.removed,
                        "note": e.note,
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            let mut columns: Vec<String> = [
                "version",
                "kind",
                "key",
                "team",
                "cost center",
                "model",
                "provider",
                "role",
            ]
            .iter()
            .map(|c| c.to_string())
            .collect();
            if history {
                columns.extend(["change", "by", "at", "note"].map(String::from));
            }
            let t = Table {
                header: vec![],
                columns,
                rows: rows
                    .iter()
                    .map(|r| {
                        let e = &r.entry;
                        let mut row = vec![
                            Cell::Int(i128::from(r.version)),
                            Cell::Text(e.kind.clone()),
                            Cell::Text(e.key.clone()),
                            Cell::Text(s(&e.team_id)),
                            Cell::Text(s(&e.cost_center)),
                            Cell::Text(s(&e.canonical_model)),
                            Cell::Text(s(&e.provider)),
                            Cell::Text(s(&e.role)),
                        ];
                        if history {
                            row.push(Cell::Text(if e.removed { "remove" } else { "set" }.into()));
                            row.push(Cell::Text(e.changed_by.clone()));
                            row.push(Cell::Text(r.changed_at.clone()));
                            row.push(Cell::Text(s(&e.note)));
                        }
                        row
                    })
                    .collect(),
                total: None,
            };
            out!("{}", tollgate_render::text(&t));
        }
        other => bail!(
            "--format {}: reference data is shown as table or json",
            other.name()
        ),
    }
    Ok(())
}
