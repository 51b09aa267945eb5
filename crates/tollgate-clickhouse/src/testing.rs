//! Test tooling: starts `tests/clickhouse/adapter.py` (ClickHouse's engine through chDB behind
//! a loopback HTTP adapter) on a free port in a directory of its own, and stops it on drop.
//! Used by this crate's tests and the binary's end-to-end tests; not part of the ledger.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running adapter.
pub struct Adapter {
    child: Child,
    pub port: u16,
    pub url: String,
    python: PathBuf,
    data_dir: PathBuf,
    password: Option<String>,
}

/// The repository root (this crate lives in `crates/tollgate-clickhouse`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interpreter of the test virtualenv (`scripts/pyenv`, which installs chdb).
pub fn python() -> std::io::Result<PathBuf> {
    let out = Command::new(repo_root().join("scripts/pyenv"))
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other("scripts/pyenv failed"));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

impl Adapter {
    /// Starts the adapter with `python` on port 0 over `data_dir`; waits (up to 120 s) for
    /// its `listening on 127.0.0.1:PORT` line. `password`: require it.
    pub fn start(
        python: &Path,
        data_dir: &Path,
        password: Option<&str>,
    ) -> std::io::Result<Adapter> {
        Adapter::start_on(python, data_dir, password, 0)
    }

    /// Kills the adapter (SIGKILL: the server is gone, as in a crash or a network cut) and
    /// waits for it; [`Adapter::restart`] brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the adapter again over the same data directory on the same port (the one it
    /// picked from port 0 at first), so clients configured with its URL reach it again.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let again = Adapter::start_on(
            &self.python,
            &self.data_dir,
            self.password.as_deref(),
            self.port,
        )?;
        // The old process is already reaped; dropping its handle kills nothing.
        drop(std::mem::replace(self, again));
        Ok(())
    }

    fn start_on(
        python: &Path,
        data_dir: &Path,
        password: Option<&str>,
        port: u16,
    ) -> std::io::Result<Adapter> {
        let mut cmd = Command::new(python);
        cmd.arg(repo_root().join("tests/clickhouse/adapter.py"))
            .arg("--port")
            .arg(port.to_string())
            .arg("--path")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(p) = password {
            cmd.args(["--password", p]);
        }
        let mut child = cmd.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                return Err(std::io::Error::other(
                    "the adapter did not start within 120 s",
                ));
            }
        };
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|_| line.starts_with("listening on "));
        let Some(port) = port else {
            let _ = child.kill();
            return Err(std::io::Error::other(format!(
                "the adapter printed {line:?}, not `listening on HOST:PORT`"
            )));
        };
        Ok(Adapter {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            python: python.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            password: password.map(str::to_string),
        })
    }
}

impl Adapter {
    /// The adapter's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// CPU seconds (user + system) used so far by process `pid` (`/proc/PID/stat`; Linux), or
/// `None` where unavailable.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

impl Drop for Adapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
