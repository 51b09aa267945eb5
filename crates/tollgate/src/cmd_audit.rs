//! `tollgate report audit`: the audit CSV, one line per call, streamed from the ledger into a
//! file that appears only once complete ([`AtomicFile`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use tollgate_core::event::format_instant;
use tollgate_core::period::time_zone;
use tollgate_finance::audit::{self, AuditOptions};
use tollgate_ledger::{Dim, SummaryQuery};

use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this tenant's calls (its tenant_id).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Start, inclusive: an RFC 3339 instant (2026-07-01T00:00:00Z) or a date YYYY-MM-DD
    /// (local midnight in --tz).
    #[arg(long)]
    pub from: String,
    /// End, exclusive: same forms as --from.
    #[arg(long)]
    pub to: String,
    /// IANA time zone of date forms (default: config reporting.timezone, else UTC).
    #[arg(long)]
    pub tz: Option<String>,
    /// Write here, atomically (the whole file or nothing); stdout when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave out the leading `#` line that states the range and the token convention (for
    /// CSV readers that cannot skip comment lines).
    #[arg(long)]
    pub no_comment: bool,
}

/// Parses `--from`/`--to`: an RFC 3339 instant with an offset, or a civil date at local
/// midnight in `tz`.
pub fn parse_bound(flag: &str, s: &str, tz: &str) -> Result<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>()
        && s.len() == 10
    {
        let zone = time_zone(tz).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
        return d
            .to_zoned_datetime(zone)
            .map(|z| z.timestamp())
            .map_err(|e| anyhow::anyhow!("{flag} {s:?}: {e}"));
    }
    bail!(
        "{flag} {s:?} is not an RFC 3339 instant with an offset (2026-07-01T00:00:00Z) or a date YYYY-MM-DD"
    )
}

/// Writes the audit CSV described by `a`; returns the number of calls written.
pub fn run(ctx: &Ctx, a: &AuditArgs) -> Result<u64> {
    let tz = a.tz.clone().unwrap_or_else(|| ctx.config.timezone.clone());
    let start = parse_bound("--from", &a.from, &tz)?;
    let end = parse_bound("--to", &a.to, &tz)?;
    if end <= start {
        bail!(
            "--from {} must be before --to {} (the range is half-open: [from, to))",
            a.from,
            a.to
        );
    }
    let opts = AuditOptions {
        start,
        end,
        tenant: a.tenant.clone(),
        comment: !a.no_comment,
    };
    let ledger = crate::cmd_ledger::open_read_only(ctx)?;
    // A range without calls is a mistake more often than an answer: say so, write nothing.
    // (Grouped by currency: an ungrouped summary fails on an empty partial hour.)
    let mut q = SummaryQuery::new(start, end, vec![Dim::Currency]);
    if let Some(t) = &a.tenant {
        q = q.filter(Dim::Tenant, t);
    }
    if ledger.summarize(&q)?.iter().all(|r| r.totals.requests == 0) {
        bail!(
            "no calls in [{}, {}){}: nothing written; check --from/--to{}",
            format_instant(start),
            format_instant(end),
            a.tenant
                .as_deref()
                .map(|t| format!(" for tenant {t:?}"))
                .unwrap_or_default(),
            if a.tenant.is_some() {
                " and --tenant"
            } else {
                ""
            }
        );
    }
    let began = Instant::now();
    let n = match &a.out {
        Some(path) => {
            let mut f = AtomicFile::create(path)?;
            let n = audit::write_csv(&*ledger, &opts, f.writer())?;
            f.commit()?;
            let secs = began.elapsed().as_secs_f64();
            eprintln!(
                "audit: {n} calls written to {} in {secs:.2} s",
                path.display()
            );
            n
        }
        None => {
            let mut w = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            let n = audit::write_csv(&*ledger, &opts, &mut w)?;
            w.flush()?;
            n
        }
    };
    Ok(n)
}

/// A file that appears at its path only when complete: written to a temporary file in the
/// same directory through a buffer, synced, then renamed over the target by
/// [`AtomicFile::commit`]. Dropped without a commit (an error on the way), it removes the
/// temporary file and leaves any earlier file at the target untouched.
///
/// A large file is synced to disk while it is written (a helper thread flushes what is written
/// every [`SYNC_EVERY`] bytes), so the final sync before the rename has little left to do.
pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    w: BufWriter<SyncingFile>,
    syncer: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    committed: bool,
}

/// Bytes written between two background syncs.
const SYNC_EVERY: usize = 32 << 20;

/// The temporary file, asking the helper thread for a sync every [`SYNC_EVERY`] bytes.
struct SyncingFile {
    f: File,
    unsynced: usize,
    /// Closed (None) on commit, which ends the helper thread.
    tx: Option<std::sync::mpsc::SyncSender<()>>,
}

impl Write for SyncingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.f.write(buf)?;
        self.unsynced += n;
        if self.unsynced >= SYNC_EVERY {
            self.unsynced = 0;
            // A sync already pending covers this data too: never wait for the helper.
            if let Some(tx) = &self.tx {
                let _ = tx.try_send(());
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.f.flush()
    }
}

impl AtomicFile {
    /// Creates the temporary file (and the target's directory if needed).
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let helper = f
            .try_clone()
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let syncer = std::thread::spawn(move || -> std::io::Result<()> {
            for () in rx {
                helper.sync_data()?;
            }
            Ok(())
        });
        Ok(AtomicFile {
            dest: dest.to_path_buf(),
            tmp,
            // Smaller than the exporters' chunks, so those go to the file without a copy.
            w: BufWriter::with_capacity(
                1 << 16,
                SyncingFile {
                    f,
                    unsynced: 0,
                    tx: Some(tx),
                },
            ),
            syncer: Some(syncer),
            committed: false,
        })
    }

    /// The buffered writer into the temporary file.
    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.w
    }

    /// Flushes, syncs and renames the temporary file into place.
    pub fn commit(mut self) -> Result<()> {
        let tmp = self.tmp.display().to_string();
        self.w
            .flush()
            .with_context(|| format!("cannot write {tmp}"))?;
        self.w.get_mut().tx = None;
        if let Some(h) = self.syncer.take() {
            match h.join() {
                Ok(r) => r.with_context(|| format!("cannot write {tmp}"))?,
                Err(_) => bail!("cannot write {tmp}: the sync thread failed"),
            }
        }
        self.w
            .get_ref()
            .f
            .sync_all()
            .with_context(|| format!("cannot write {tmp}"))?;
        std::fs::rename(&self.tmp, &self.dest)
            .with_context(|| format!("cannot move the output into {}", self.dest.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            // Closing the channel ends the helper thread after at most one sync.
            self.w.get_mut().tx = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn bounds_are_instants_or_local_midnights() {
        // July 1 in Asia/Almaty (UTC+5) starts at 19:00Z the day before.
        assert_eq!(
            parse_bound("--from", "2026-07-01", "Asia/Almaty").unwrap(),
            "2026-06-30T19:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            parse_bound("--from", "2026-07-01T12:00:00+02:00", "UTC").unwrap(),
            "2026-07-01T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(parse_bound("--to", "2026-07-32", "UTC").is_err());
        assert!(parse_bound("--to", "2026-07-01T00:00:00", "UTC").is_err());
        assert!(parse_bound("--to", "2026-07-01", "Mars/Olympus").is_err());
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing_and_keeps_the_old_one() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("a.csv");
        std::fs::write(&dest, "old\n").unwrap();
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.writer().write_all(b"half a fi").unwrap();
            // dropped: an error on the way
        }
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old\n");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let mut f = AtomicFile::create(&dest).unwrap();
        f.writer().write_all(b"new\n").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new\n");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
