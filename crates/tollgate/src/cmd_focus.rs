//! `tollgate report focus`: the month's usage as a FinOps FOCUS 1.3 Cost and Usage CSV.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use tollgate_core::Period;
use tollgate_finance::focus::{self, FocusExport, FocusOptions};

use crate::Ctx;
use crate::cmd_audit::AtomicFile;

#[derive(Debug, clap::Args)]
pub struct FocusArgs {
    /// Billing period: a month YYYY-MM.
    #[arg(long)]
    pub period: String,
    /// IANA time zone of the month and of its daily charge periods (default: config
    /// reporting.timezone, else UTC).
    #[arg(long)]
    pub tz: Option<String>,
    /// Write here, atomically (the whole file or nothing); stdout when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Builds the export described by `a`.
pub fn build_focus(ctx: &Ctx, a: &FocusArgs) -> Result<FocusExport> {
    let tz = a.tz.clone().unwrap_or_else(|| ctx.config.timezone.clone());
    let period = Period::parse(&a.period, &tz).map_err(|e| anyhow::anyhow!("--period: {e}"))?;
    let ledger = crate::cmd_ledger::open_read_only(ctx)?;
    let export = focus::build(&*ledger, &FocusOptions { period })?;
    if export.rows.is_empty() {
        bail!(
            "no usage in {} ({}): nothing to export; check --period and --tz",
            export.period.label(),
            export.period.tz_name()
        );
    }
    Ok(export)
}

/// Writes the export as CSV to `out` (atomically) or stdout.
pub fn write_focus(export: &FocusExport, out: Option<&Path>) -> Result<()> {
    let write = |w: &mut dyn Write| -> Result<()> {
        let mut c = csv::Writer::from_writer(w);
        c.write_record(focus::columns())?;
        for r in &export.rows {
            c.write_record(export.record(r).iter().map(|v| v.as_bytes()))?;
        }
        c.flush()?;
        Ok(())
    };
    match out {
        Some(path) => {
            let mut f = AtomicFile::create(path)?;
            write(f.writer())?;
            f.commit()?;
            eprintln!(
                "focus: {} rows for {} written to {}",
                export.rows.len(),
                export.period.label(),
                path.display()
            );
            Ok(())
        }
        None => {
            let mut w = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            write(&mut w)?;
            w.flush()?;
            Ok(())
        }
    }
}

pub fn run(ctx: &Ctx, a: &FocusArgs) -> Result<()> {
    let export = build_focus(ctx, a)?;
    write_focus(&export, a.out.as_deref())
}
