//! Helpers: a temporary workspace per test, running the binary, and building event files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Map, Value, json};

/// The rate override used by most tests: the seed 003 rates (0.75 / 0.075 / 4.50 USD per
/// million) until 2026-07-16, with a tier above 200,000 input tokens, batch x0.5 and a web
/// search unit price; then a second period from 2026-07-16 at 1 / 0.1 / 5 USD per million.
pub const SEED_RATES: &str = r#"
[[rate]]
provider = "openai"
model = "seed-model"
aliases = ["seed-alias"]
patterns = ["seed-model-2026-*"]
effective_to = "2026-07-16T00:00:00Z"
currency = "USD"
input_per_mtok = "0.75"
cache_read_per_mtok = "0.075"
output_per_mtok = "4.50"
batch_multiplier = "0.5"
[[rate.tier]]
above_input_tokens = 200000
input_per_mtok = "1.5"
cache_read_per_mtok = "0.15"
output_per_mtok = "9"
[rate.per_unit]
web_search_requests = "0.01"

[[rate]]
provider = "openai"
model = "seed-model"
aliases = ["seed-alias"]
patterns = ["seed-model-2026-*"]
effective_from = "2026-07-16T00:00:00Z"
currency = "USD"
input_per_mtok = "1"
cache_read_per_mtok = "0.1"
output_per_mtok = "5"
"#;

/// A temporary directory that is both the working directory of the binary and the home of
/// its ledger (`<tmp>/data`) and input files.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    label: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "`{}` failed\nstdout:\n{}\nstderr:\n{}",
            self.label,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts success and parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{out}", self.label))
    }

    /// Asserts a non-zero exit and returns stderr.
    #[track_caller]
    pub fn fails(&self) -> &str {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "`{}` should have failed (exit {:?})\nstdout:\n{}\nstderr:\n{}",
            self.label,
            self.code,
            self.stdout,
            self.stderr
        );
        &self.stderr
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The ledger directory passed with `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Writes a file into the sandbox and returns its absolute path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, contents).expect("write test file");
        p
    }

    /// Writes the standard rate override file and returns its path.
    pub fn seed_rates(&self) -> PathBuf {
        self.write("rates.toml", SEED_RATES)
    }

    /// A command for the binary in the sandbox, with none of the user's environment leaking in
    /// and no `--data-dir`.
    pub fn bare_command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        c.current_dir(self.path())
            .env_remove("TOLLGATE_DATA_DIR")
            .env_remove("TOLLGATE_CONFIG")
            .stdin(Stdio::null());
        c
    }

    /// Runs `tollgate --data-dir <sandbox>/data ARGS...`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut c = self.bare_command();
        c.arg("--data-dir").arg(self.data_dir()).args(args);
        finish(c.output().expect("run tollgate"), args)
    }

    /// Like [`Sandbox::run`], with extra environment variables.
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut c = self.bare_command();
        c.arg("--data-dir").arg(self.data_dir()).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        finish(c.output().expect("run tollgate"), args)
    }

    /// Like [`Sandbox::run`], with `stdin` piped in.
    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut c = self.bare_command();
        c.arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn tollgate");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write stdin");
        finish(child.wait_with_output().expect("wait tollgate"), args)
    }

    /// `sql QUERY --format json`, parsed.
    pub fn sql(&self, query: &str) -> Vec<Value> {
        match self.run(&["sql", query, "--format", "json"]).json() {
            Value::Array(rows) => rows,
            other => panic!("sql printed {other}"),
        }
    }

    /// The number of events in the ledger.
    pub fn event_count(&self) -> i64 {
        self.sql("SELECT COUNT(*) AS n FROM events")[0]["n"]
            .as_i64()
            .expect("count")
    }

    /// Ingests a file (path relative to the sandbox) with the standard rates; returns the JSON
    /// summary.
    pub fn ingest(&self, file: &str) -> Value {
        self.ingest_run(&[], file, &[]).json()
    }

    /// `ingest events FILE --format json EXTRA...` with the standard rates and extra
    /// environment variables; the run, to check for success or failure.
    pub fn ingest_run(&self, env: &[(&str, &str)], file: &str, extra: &[&str]) -> Run {
        let rates = self.seed_rates();
        let mut args = vec![
            "--prices",
            path_str(&rates),
            "ingest",
            "events",
            file,
            "--format",
            "json",
        ];
        args.extend(extra);
        self.run_env(env, &args)
    }
}

fn finish(o: Output, args: &[&str]) -> Run {
    Run {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        label: format!("tollgate {}", args.join(" ")),
    }
}

/// A one-shot HTTP receiver on a free loopback port (a stand-in for a Slack webhook): accepts
/// one request, answers `status` (e.g. `"200 OK"`) with the plain-text `body`, and yields the
/// request's head (request line and headers) and body. Returns its `host:port`.
pub fn webhook_receiver(
    status: &'static str,
    body: &'static str,
) -> (String, std::thread::JoinHandle<(String, String)>) {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let h = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut w = stream.try_clone().expect("clone");
        let mut r = BufReader::new(stream);
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("read");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
            head.push_str(&line);
        }
        let mut buf = vec![0; len];
        r.read_exact(&mut buf).expect("body");
        write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("answer");
        (head, String::from_utf8(buf).expect("utf-8"))
    });
    (addr, h)
}

/// Asserts that `tollgate --config FILE config check` refuses `toml` with an error that
/// contains `want`.
#[track_caller]
pub fn assert_config_refused(sb: &Sandbox, toml: &str, want: &str) {
    let p = sb.write("bad.toml", toml);
    let mut c = sb.bare_command();
    c.arg("--config").arg(&p).args(["config", "check"]);
    let o = c.output().expect("run tollgate");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(want), "{toml}: {err}");
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A valid event: `n` picks its id; attributed to team `a`, seed-model at 2026-07-10 12:00 UTC,
/// no tokens. `overrides` is a JSON object whose keys replace the defaults; a `null` value
/// removes the field.
pub fn event(n: u32, overrides: Value) -> Map<String, Value> {
    let mut m = match json!({
        "event_id": event_id(n),
        "occurred_at": "2026-07-10T12:00:00Z",
        "provider": "openai",
        "model": "seed-model",
        "team_id": "a",
        "service": "chat",
        "feature": "answer",
        "environment": "prod",
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    if let Value::Object(o) = overrides {
        for (k, v) in o {
            if v.is_null() {
                m.remove(&k);
            } else {
                m.insert(k, v);
            }
        }
    }
    m
}

/// The UUID text of event `n` (sorts in `n` order).
pub fn event_id(n: u32) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

/// Events as JSONL text.
pub fn jsonl(events: &[Map<String, Value>]) -> String {
    events
        .iter()
        .map(|e| format!("{}\n", Value::Object(e.clone())))
        .collect()
}

/// The Python interpreter of the test virtualenv (official `openai` and `anthropic` SDKs,
/// `chdb`), created on first use by `scripts/pyenv` from `tests/python/requirements.txt`.
#[allow(dead_code)] // used by the gateway and ClickHouse suites
pub fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pyenv");
            let out = Command::new(&script)
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(out.status.success(), "{} failed", script.display());
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}
