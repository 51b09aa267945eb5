//! `tollgate invoice`: customer usage invoices from the ledger, finalisation and credit notes.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tollgate_core::Period;
use tollgate_finance::invoice::{self, Invoice};
use tollgate_ledger::{Ledger, StoredInvoice};

use crate::Ctx;
use crate::config::TenantConfig;
use crate::output::{emit, write_atomic};

/// Invoice document formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InvoiceFormat {
    Text,
    Json,
    Csv,
    Pdf,
}

impl InvoiceFormat {
    fn ext(self) -> &'static str {
        match self {
            InvoiceFormat::Text => "txt",
            InvoiceFormat::Json => "json",
            InvoiceFormat::Csv => "csv",
            InvoiceFormat::Pdf => "pdf",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct InvoiceArgs {
    /// The tenant (a [tenants.ID] table of the config).
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    tenant: Option<String>,
    /// Every tenant of the config.
    #[arg(long)]
    all: bool,
    /// The month, YYYY-MM, in the tenant's time zone.
    #[arg(long)]
    period: String,
    /// Document format.
    #[arg(long, value_enum, default_value = "text")]
    format: InvoiceFormat,
    /// Write here (atomically); with --all, a directory that gets one file per invoice.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Finalize: store the invoice with its number; afterwards it never changes.
    #[arg(long, conflicts_with = "credit_note")]
    finalize: bool,
    /// Issue a credit note reversing the period's finalized invoice (needs --reason).
    #[arg(long, requires = "reason")]
    credit_note: bool,
    /// Why the credit note is issued (kept with it).
    #[arg(long)]
    reason: Option<String>,
    /// Deliver the finalized invoice: `stripe` creates invoice items and a draft invoice.
    #[arg(long, value_enum)]
    push: Option<PushTarget>,
}

/// Where `--push` delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PushTarget {
    Stripe,
}

/// Pushes a finalized invoice to Stripe.
fn push_stripe(ctx: &Ctx, t: &TenantConfig, inv: &Invoice, ledger: &dyn Ledger) -> Result<()> {
    if inv.kind != "invoice" {
        bail!("--push stripe: only invoices are pushed; record credit notes in Stripe by hand");
    }
    let finalized = ledger
        .invoices_for(&t.tenant.id, &inv.period.label())?
        .iter()
        .any(|s| s.number == inv.number && s.kind == "invoice");
    if !finalized {
        bail!(
            "--push stripe: invoice {} is a draft; finalize it first (--finalize --push stripe)",
            inv.number
        );
    }
    let customer = t.stripe_customer.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "--push stripe: tenant {} has no stripe_customer; add tenants.{}.stripe_customer = \"cus_...\" to the config",
            t.tenant.id,
            t.tenant.id
        )
    })?;
    let env = ctx
        .config
        .stripe
        .api_key_env
        .clone()
        .unwrap_or_else(|| "STRIPE_API_KEY".into());
    let api_key = std::env::var(&env)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--push stripe: set the Stripe secret key in the environment variable {env}"
            )
        })?;
    let target = crate::stripe::StripeTarget {
        base_url: ctx
            .config
            .stripe
            .base_url
            .clone()
            .unwrap_or_else(|| "https://api.stripe.com".into()),
        api_key,
        customer,
    };
    let pushed = crate::stripe::push(&target, inv)?;
    eprintln!(
        "pushed {} to Stripe: draft invoice {} with {} items",
        inv.number,
        pushed.invoice_id,
        pushed.item_ids.len()
    );
    Ok(())
}

/// The active (finalized, not credited) invoice of a period, and the next revision number.
fn state(stored: &[StoredInvoice]) -> (Option<&StoredInvoice>, u64) {
    let last_invoice = stored.iter().rev().find(|s| s.kind == "invoice");
    match last_invoice {
        Some(inv) => {
            let credited = stored
                .iter()
                .any(|s| s.kind == "credit_note" && s.corrects.as_deref() == Some(&inv.number));
            if credited {
                (None, inv.revision + 1)
            } else {
                (Some(inv), inv.revision)
            }
        }
        None => (None, 1),
    }
}

/// Number, sequence and scope for a new invoice of `revision`.
fn next_number(
    ledger: &dyn Ledger,
    t: &TenantConfig,
    period: &Period,
    revision: u64,
) -> Result<(String, u64, String)> {
    let scope = invoice::number_scope(&t.tenant.number, period, &t.tenant.id);
    if scope.contains("{SEQ") {
        let seq = ledger.last_invoice_seq(&scope)? + 1;
        Ok((invoice::fill_seq(&scope, seq), seq, scope))
    } else if revision > 1 {
        Ok((format!("{scope}-R{revision}"), revision, scope))
    } else {
        Ok((scope.clone(), 1, scope))
    }
}

fn render(inv: &Invoice, format: InvoiceFormat) -> Result<Vec<u8>> {
    Ok(match format {
        InvoiceFormat::Text => inv.to_text().into_bytes(),
        InvoiceFormat::Json => {
            format!("{}\n", serde_json::to_string_pretty(&inv.to_json())?).into_bytes()
        }
        InvoiceFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut w = csv::Writer::from_writer(&mut out);
                for r in inv.csv_rows() {
                    w.write_record(&r)?;
                }
                w.flush()?;
            }
            out
        }
        InvoiceFormat::Pdf => tollgate_pdf::invoice::render(inv)?,
    })
}

/// Builds (and with --finalize / --credit-note, stores) one tenant's document.
fn one(ctx: &Ctx, a: &InvoiceArgs, t: &TenantConfig, ledger: &mut dyn Ledger) -> Result<Invoice> {
    let period = Period::parse(&a.period, &t.tenant.timezone)
        .map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    if period.kind() != tollgate_core::period::PeriodKind::Month {
        bail!("--period {}: invoices are monthly; give YYYY-MM", a.period);
    }
    let mut tenant = t.tenant.clone();
    if let invoice::Plan::PassThrough { fx, .. } = &mut tenant.plan
        && tenant.currency != tollgate_core::Currency::USD
    {
        let entry = ctx.config.fx_for(&period.label(), tenant.currency).ok_or_else(|| {
                anyhow::anyhow!(
                    "tenant {} is billed in {} on a pass_through plan: add [[reporting.fx]] period = \"{}\" to = \"{}\" to the config",
                    tenant.id,
                    tenant.currency,
                    period.label(),
                    tenant.currency
                )
            })?;
        *fx = Some(entry.rate);
    }
    let stored = ledger.invoices_for(&tenant.id, &period.label())?;
    let (active, revision) = state(&stored);
    if a.credit_note {
        let Some(active) = active else {
            bail!(
                "tenant {} has no finalized invoice for {} to credit",
                tenant.id,
                period.label()
            );
        };
        // Reverse exactly what was finalized, whatever the ledger says now.
        let original: serde_json::Value = serde_json::from_str(&active.document)?;
        let fresh = invoice::build(ledger, &tenant, &period, active.number.clone())?;
        let stored_inv = restore(&original, fresh)?;
        let number = format!("CN-{}", active.number);
        let cn = stored_inv.credit_note(number.clone(), a.reason.as_deref().unwrap_or_default());
        let mut w = ledger.writer()?;
        w.record_invoice(&StoredInvoice {
            number,
            kind: "credit_note".into(),
            tenant_id: tenant.id.clone(),
            period: period.label(),
            pattern: format!("CN-{}", active.pattern),
            seq: active.seq,
            revision: active.revision,
            currency: tenant.currency.to_string(),
            total: cn.to_json()["total"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            document: cn.to_json().to_string(),
            corrects: Some(active.number.clone()),
            reason: a.reason.clone(),
        })?;
        w.commit()?;
        return Ok(cn);
    }
    if let Some(active) = active {
        let mut fresh = invoice::build(ledger, &tenant, &period, active.number.clone())?;
        fresh.finalized = true;
        let stored_doc: serde_json::Value = serde_json::from_str(&active.document)?;
        if fresh.to_json() != stored_doc {
            if a.finalize {
                bail!(
                    "invoice {} for {} was finalized with total {} {}; the ledger now gives {} {}. A finalized invoice is never edited: issue a credit note (--credit-note --reason ...), then finalize again",
                    active.number,
                    period.label(),
                    active.total,
                    active.currency,
                    fresh.to_json()["total"].as_str().unwrap_or_default(),
                    active.currency
                );
            }
            eprintln!(
                "warning: the ledger changed since invoice {} was finalized; showing the finalized invoice (use --credit-note to correct it)",
                active.number
            );
            return restore(&stored_doc, fresh);
        }
        return Ok(fresh);
    }
    if !a.finalize {
        invoice::check_has_data(ledger, &tenant, &period)?;
    }
    let (number, seq, scope) = next_number(ledger, t, &period, revision)?;
    let mut inv = invoice::build(ledger, &tenant, &period, number.clone())?;
    if a.finalize {
        invoice::check_has_data(ledger, &tenant, &period)?;
        if !inv.problems.is_empty() {
            let list: Vec<String> = inv
                .problems
                .iter()
                .map(|p| format!("  - {}\n    fix: {}", p.what, p.fix))
                .collect();
            bail!(
                "invoice {number} for tenant {} cannot be finalized:\n{}",
                tenant.id,
                list.join("\n")
            );
        }
        inv.finalized = true;
        let doc = inv.to_json();
        let mut w = ledger.writer()?;
        w.record_invoice(&StoredInvoice {
            number,
            kind: "invoice".into(),
            tenant_id: tenant.id.clone(),
            period: period.label(),
            pattern: scope,
            seq,
            revision,
            currency: tenant.currency.to_string(),
            total: doc["total"].as_str().unwrap_or_default().to_string(),
            document: doc.to_string(),
            corrects: None,
            reason: None,
        })?;
        w.commit()?;
    }
    Ok(inv)
}

/// A draft (or the finalized) invoice of one tenant for a month, as `invoice` prints it.
pub fn draft_invoice(
    ctx: &Ctx,
    t: &TenantConfig,
    period: &str,
    ledger: &mut dyn Ledger,
) -> Result<Invoice> {
    let args = InvoiceArgs {
        tenant: Some(t.tenant.id.clone()),
        all: false,
        period: period.to_string(),
        format: InvoiceFormat::Text,
        out: None,
        finalize: false,
        credit_note: false,
        reason: None,
        push: None,
    };
    one(ctx, &args, t, ledger)
}

/// Renders an invoice in one format (text, json, csv).
pub fn render_invoice(inv: &Invoice, format: InvoiceFormat) -> Result<Vec<u8>> {
    render(inv, format)
}

/// The finalized document is the source of truth: if the ledger changed, show what was
/// finalized. The text/CSV renderings are rebuilt from its JSON.
fn restore(stored: &serde_json::Value, fresh: Invoice) -> Result<Invoice> {
    invoice::from_json(stored, fresh).context("the stored invoice document does not read back")
}

pub fn run(ctx: &Ctx, a: &InvoiceArgs) -> Result<()> {
    let tenants: Vec<&TenantConfig> = if a.all {
        if ctx.config.tenants.is_empty() {
            bail!("--all: the config has no [tenants.*] tables");
        }
        ctx.config.tenants.values().collect()
    } else {
        vec![ctx.config.tenant(a.tenant.as_deref().unwrap_or_default())?]
    };
    let mut ledger = if a.finalize || a.credit_note {
        crate::cmd_ledger::open(ctx)?
    } else {
        crate::cmd_ledger::open_read_only(ctx)?
    };
    if !a.all {
        let inv = one(ctx, a, tenants[0], &mut *ledger)?;
        emit(
            a.out.as_deref(),
            &render(&inv, a.format)?,
            a.format == InvoiceFormat::Pdf,
        )?;
        if a.push == Some(PushTarget::Stripe) {
            push_stripe(ctx, tenants[0], &inv, &*ledger)?;
        }
        return Ok(());
    }
    let mut docs = Vec::new();
    for t in tenants {
        match one(ctx, a, t, &mut *ledger) {
            Ok(inv) => {
                if a.push == Some(PushTarget::Stripe)
                    && let Err(e) = push_stripe(ctx, t, &inv, &*ledger)
                {
                    eprintln!("{}: not pushed: {e:#}", t.tenant.id);
                }
                if let Some(dir) = &a.out {
                    let path = dir.join(format!("{}.{}", inv.number, a.format.ext()));
                    write_atomic(&path, &render(&inv, a.format)?)?;
                    eprintln!("{}: {} -> {}", t.tenant.id, inv.number, path.display());
                } else {
                    docs.push(inv);
                }
            }
            Err(e) => eprintln!("{}: skipped: {e:#}", t.tenant.id),
        }
    }
    if a.out.is_none() {
        let bytes = match a.format {
            InvoiceFormat::Json => format!(
                "{}\n",
                serde_json::to_string_pretty(
                    &docs.iter().map(Invoice::to_json).collect::<Vec<_>>()
                )?
            )
            .into_bytes(),
            f => {
                let mut all = Vec::new();
                for d in &docs {
                    all.extend(render(d, f)?);
                    all.push(b'\n');
                }
                all
            }
        };
        emit(None, &bytes, false)?;
    }
    Ok(())
}
