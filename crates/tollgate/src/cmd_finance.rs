//! The standing finance reports (`report finance ...`), annotations and budgets.

use std::path::PathBuf;

use anyhow::{Result, bail};
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tollgate_core::Period;
use tollgate_core::event::format_instant;
use tollgate_core::money::{parse_decimal, round_half_away};
use tollgate_finance::standing::{self, ShareRow};
use tollgate_ledger::{Annotation, BudgetEntry, Dim};
use tollgate_render::{Cell, Table};

use crate::Ctx;
use crate::output::{Format, emit};

/// Which standing report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Daily total spend with annotations (deploys) and the day-over-day change.
    Daily,
    /// Spend by feature.
    Features,
    /// Spend by tenant.
    Tenants,
    /// Spend by user, with the Pareto view (share of the top 1 % and 10 %).
    Users,
    /// Team budgets: limit, actual, variance in money and percent, owner's comment.
    Budgets,
}

#[derive(Debug, clap::Args)]
pub struct FinanceArgs {
    /// The report.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The month, YYYY-MM.
    #[arg(long)]
    pub period: String,
    /// IANA time zone of the month (default: config reporting.timezone, else UTC).
    #[arg(long)]
    pub tz: Option<String>,
    /// Report currency, converted from USD at one fixed rate (--fx-rate, or the config's
    /// [[reporting.fx]] for the month).
    #[arg(long)]
    pub currency: Option<String>,
    /// Units of --currency per USD for the whole month.
    #[arg(long)]
    pub fx_rate: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write here instead of stdout (atomically).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn pct(d: Option<Decimal>) -> String {
    d.map(|d| format!("{}%", round_half_away(d * Decimal::new(100, 0), 1)))
        .unwrap_or_default()
}

/// The report currency: one fixed rate per USD for the whole period.
#[derive(Clone)]
struct Fx {
    rate: Decimal,
    currency: tollgate_core::Currency,
    rule: Option<String>,
}

impl Fx {
    /// Converts an exact USD amount and rounds it for display.
    fn money(&self, d: Decimal) -> Decimal {
        round_half_away(d * self.rate, self.currency.minor_units())
    }
}

fn share_table(fx: &Fx, rows: &[ShareRow], key: &str) -> Result<(Table, Value)> {
    let mut t = Table {
        columns: [key, "requests", "tokens", "cost", "share", "cost_per_call"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Table::default()
    };
    let mut json_rows = Vec::new();
    let mut total = Decimal::ZERO;
    let mut requests = 0u64;
    for r in rows {
        let cost = fx.money(r.totals.cost()?);
        total += cost;
        requests += r.totals.requests;
        let tokens = r.totals.input_tokens
            + r.totals.cache_read_tokens
            + r.totals.cache_write_tokens
            + r.totals.cache_write_1h_tokens
            + r.totals.output_tokens;
        let exact = r.totals.cost()? * fx.rate;
        let per_call = (r.totals.requests > 0)
            .then(|| round_half_away(exact / Decimal::from(r.totals.requests), 6));
        let name = if r.key.is_empty() {
            "(none)".to_string()
        } else {
            r.key.clone()
        };
        t.rows.push(vec![
            Cell::Text(name.clone()),
            Cell::Int(i128::from(r.totals.requests)),
            Cell::Int(i128::from(tokens)),
            Cell::Money(cost.to_string()),
            Cell::Text(pct(r.share)),
            Cell::Money(
                per_call
                    .map(|d| d.normalize().to_string())
                    .unwrap_or_default(),
            ),
        ]);
        json_rows.push(
            json!({key: if r.key.is_empty() { Value::Null } else { Value::String(r.key.clone()) },
            "requests": r.totals.requests, "tokens": tokens, "cost": cost.to_string(),
            "cost_exact": (r.totals.cost()? * fx.rate).normalize().to_string(),
            "share": r.share.map(|s| round_half_away(s, 4).to_string())}),
        );
    }
    t.total = Some(vec![
        Cell::Text("TOTAL".into()),
        Cell::Int(i128::from(requests)),
        Cell::Empty,
        Cell::Money(total.to_string()),
        Cell::Empty,
        Cell::Empty,
    ]);
    Ok((
        t,
        json!({"rows": json_rows, "total": {"requests": requests, "cost": total.to_string()}}),
    ))
}

pub fn run(ctx: &Ctx, a: &FinanceArgs) -> Result<()> {
    let tz = a.tz.clone().unwrap_or_else(|| ctx.config.timezone.clone());
    let period = Period::parse(&a.period, &tz).map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    let fx = match crate::fx::resolve(ctx, a.currency.as_deref(), a.fx_rate.as_deref(), &period)? {
        (_, Some(rule)) => Fx {
            rate: rule.rate,
            currency: rule.to,
            rule: Some(rule.describe()),
        },
        (_, None) => Fx {
            rate: Decimal::ONE,
            currency: tollgate_core::Currency::USD,
            rule: None,
        },
    };
    let ledger = crate::cmd_ledger::open_read_only(ctx)?;
    let header = vec![
        format!(
            "Tollgate {} report: {} in {} = [{}, {}) UTC",
            match a.kind {
                Kind::Daily => "daily spend",
                Kind::Features => "spend by feature",
                Kind::Tenants => "spend by tenant",
                Kind::Users => "spend by user",
                Kind::Budgets => "team budget",
            },
            period.label(),
            period.tz_name(),
            format_instant(period.start()),
            format_instant(period.end())
        ),
        format!(
            "Currency: {}{}; amounts rounded half away from zero to the minor unit; the total is the sum of the rows shown",
            fx.currency,
            fx.rule
                .as_ref()
                .map(|r| format!(", {r}"))
                .unwrap_or_else(|| " (as recorded in the ledger)".into())
        ),
    ];
    let (mut table, mut doc) = match a.kind {
        Kind::Features => share_table(
            &fx,
            &standing::by_dim(&*ledger, &period, Dim::Feature)?,
            "feature",
        )?,
        Kind::Tenants => share_table(
            &fx,
            &standing::by_dim(&*ledger, &period, Dim::Tenant)?,
            "tenant",
        )?,
        Kind::Users => {
            let u = standing::by_user(&*ledger, &period)?;
            let (mut t, mut d) = share_table(&fx, &u.rows, "user")?;
            let line = format!(
                "Pareto: {} users; the top 1 % spent {} of the cost, the top 10 % spent {}",
                u.users,
                pct(u.top1_share),
                pct(u.top10_share)
            );
            t.header.push(line);
            d["users"] = json!(u.users);
            d["top1_share"] = json!(u.top1_share.map(|s| round_half_away(s, 4).to_string()));
            d["top10_share"] = json!(u.top10_share.map(|s| round_half_away(s, 4).to_string()));
            (t, d)
        }
        Kind::Daily => {
            let days = standing::daily(&*ledger, &period)?;
            let mut t = Table {
                columns: ["day", "requests", "cost", "change", "annotations"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                ..Table::default()
            };
            let mut rows = Vec::new();
            let mut total = Decimal::ZERO;
            let mut requests = 0;
            for d in &days {
                let cost = fx.money(d.totals.cost()?);
                total += cost;
                requests += d.totals.requests;
                t.rows.push(vec![
                    Cell::Text(d.day.to_string()),
                    Cell::Int(i128::from(d.totals.requests)),
                    Cell::Money(cost.to_string()),
                    Cell::Text(pct(d.change)),
                    Cell::Text(d.notes.join("; ")),
                ]);
                rows.push(json!({"day": d.day.to_string(), "requests": d.totals.requests, "cost": cost.to_string(),
                    "change": d.change.map(|c| round_half_away(c, 4).to_string()), "annotations": d.notes}));
            }
            t.total = Some(vec![
                Cell::Text("TOTAL".into()),
                Cell::Int(i128::from(requests)),
                Cell::Money(total.to_string()),
                Cell::Empty,
                Cell::Empty,
            ]);
            (
                t,
                json!({"rows": rows, "total": {"requests": requests, "cost": total.to_string()}}),
            )
        }
        Kind::Budgets => {
            let rows = standing::budgets(&*ledger, &period)?;
            let mut t = Table {
                columns: [
                    "team",
                    "limit",
                    "actual",
                    "variance",
                    "variance_pct",
                    "owner",
                    "comment",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                ..Table::default()
            };
            let mut out = Vec::new();
            for r in &rows {
                let m = |d: Option<Decimal>| {
                    d.map_or(Cell::Empty, |d| Cell::Money(fx.money(d).to_string()))
                };
                t.rows.push(vec![
                    Cell::Text(if r.team.is_empty() {
                        "(none)".into()
                    } else {
                        r.team.clone()
                    }),
                    m(r.limit),
                    Cell::Money(fx.money(r.actual).to_string()),
                    m(r.variance),
                    Cell::Text(pct(r.variance_pct)),
                    Cell::Text(r.owner.clone().unwrap_or_default()),
                    Cell::Text(r.comment.clone().unwrap_or_default()),
                ]);
                out.push(json!({"team": r.team, "limit": r.limit.map(|d| fx.money(d).to_string()),
                    "actual": fx.money(r.actual).to_string(), "variance": r.variance.map(|d| fx.money(d).to_string()),
                    "variance_pct": r.variance_pct.map(|d| round_half_away(d, 4).to_string()),
                    "owner": r.owner, "comment": r.comment}));
            }
            (t, json!({"rows": out}))
        }
    };
    let mut h = header;
    h.append(&mut table.header);
    table.header = h;
    doc["period"] = json!({"label": period.label(), "start": format_instant(period.start()),
        "end": format_instant(period.end()), "timezone": period.tz_name()});
    doc["currency"] = json!(fx.currency.as_str());
    doc["fx_rule"] = json!(fx.rule);
    match a.format {
        Format::Table => emit(
            a.out.as_deref(),
            tollgate_render::text(&table).as_bytes(),
            false,
        ),
        Format::Csv => emit(
            a.out.as_deref(),
            &tollgate_render::csv(&table, true)?,
            false,
        ),
        Format::Json => emit(
            a.out.as_deref(),
            format!("{}\n", serde_json::to_string_pretty(&doc)?).as_bytes(),
            false,
        ),
        Format::Xlsx => emit(
            a.out.as_deref(),
            &tollgate_render::xlsx(&table, "Report", 2)?,
            true,
        ),
    }
}

#[derive(Debug, clap::Args)]
pub struct AnnotateArgs {
    /// When (RFC 3339), e.g. the deploy time.
    #[arg(long)]
    pub at: String,
    /// What happened, e.g. "deploy search-api v2.3 (rerank-v2)".
    #[arg(long)]
    pub note: String,
    /// The service it concerns.
    #[arg(long)]
    pub service: Option<String>,
}

pub fn annotate(ctx: &Ctx, a: &AnnotateArgs) -> Result<()> {
    let at: Timestamp = a.at.parse().map_err(|_| {
        anyhow::anyhow!(
            "--at {:?}: not an RFC 3339 instant such as 2026-07-01T12:00:00Z",
            a.at
        )
    })?;
    if a.note.trim().is_empty() {
        bail!("--note: empty");
    }
    let mut ledger = crate::cmd_ledger::open(ctx)?;
    let mut w = ledger.writer()?;
    w.record_annotation(&Annotation {
        at: format_instant(at),
        note: a.note.clone(),
        service: a.service.clone(),
    })?;
    w.commit().map_err(anyhow::Error::from)
}

#[derive(Debug, clap::Subcommand)]
pub enum BudgetsCommand {
    /// Set a team's monthly limit (a new row; the latest one is in force).
    Set {
        #[arg(long)]
        team: String,
        /// The month, YYYY-MM.
        #[arg(long)]
        period: String,
        /// The limit, a decimal amount.
        #[arg(long)]
        limit: String,
        #[arg(long)]
        owner: Option<String>,
    },
    /// Record the owner's comment on a team's month.
    Comment {
        #[arg(long)]
        team: String,
        #[arg(long)]
        period: String,
        #[arg(long)]
        text: String,
    },
}

pub fn budgets(ctx: &Ctx, cmd: &BudgetsCommand) -> Result<()> {
    let mut ledger = crate::cmd_ledger::open(ctx)?;
    let entry = match cmd {
        BudgetsCommand::Set {
            team,
            period,
            limit,
            owner,
        } => {
            Period::parse(period, "UTC").map_err(|e| anyhow::anyhow!("--period: {e}"))?;
            let l = parse_decimal("--limit", limit)?;
            if l <= Decimal::ZERO {
                bail!("--limit {limit:?} must be above zero");
            }
            let prev = ledger
                .budgets(period)?
                .into_iter()
                .find(|b| &b.team_id == team);
            BudgetEntry {
                team_id: team.clone(),
                period: period.clone(),
                limit: l.to_string(),
                currency: "USD".into(),
                owner: owner
                    .clone()
                    .or(prev.as_ref().and_then(|p| p.owner.clone())),
                comment: prev.and_then(|p| p.comment),
            }
        }
        BudgetsCommand::Comment { team, period, text } => {
            let prev = ledger.budgets(period)?.into_iter().find(|b| &b.team_id == team).ok_or_else(|| {
                anyhow::anyhow!("team {team:?} has no budget for {period}; set one first with `tollgate budgets set`")
            })?;
            BudgetEntry {
                comment: Some(text.clone()),
                ..prev
            }
        }
    };
    let mut w = ledger.writer()?;
    w.record_budget(&entry)?;
    w.commit()?;
    Ok(())
}
