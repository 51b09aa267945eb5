//! Output plumbing: formats, and atomic writes to `--out` or stdout.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Output formats a command may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Xlsx,
}

impl Format {
    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Xlsx => "xlsx",
        }
    }
}

/// Writes `bytes` to `out` atomically (temp file in the same directory, then rename), or to
/// stdout when `out` is None. Binary formats refuse a terminal.
pub fn emit(out: Option<&Path>, bytes: &[u8], binary: bool) -> Result<()> {
    match out {
        Some(path) => write_atomic(path, bytes),
        None => {
            if binary && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("this format is binary: pass --out FILE (or redirect stdout to a file)");
            }
            let mut so = std::io::stdout().lock();
            so.write_all(bytes)?;
            so.flush()?;
            Ok(())
        }
    }
}

/// Writes a whole file or nothing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move the output into {}", path.display()))?;
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Reads a small JSON state file of string keys and values that tollgate writes (alert keys
/// posted, schedules' last runs); a missing file is empty. `hint` says what the file is and what
/// removing it does, for the error on a file that is not one.
pub fn read_state(path: &Path, hint: &str) -> Result<std::collections::BTreeMap<String, String>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{}: not the {hint}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes formatted text to stdout, returning the error (a closed pipe is an error to
/// return, not a panic as with `println!`).
pub fn write_out(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut so = std::io::stdout().lock();
    so.write_fmt(args)?;
    so.flush()
}

/// `print!` that returns I/O errors with `?` (use inside functions returning `anyhow::Result`).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*))?
    };
}

/// `println!` that returns I/O errors with `?`.
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use {out, outln};
