//! A small client for ClickHouse's HTTP interface (`ureq`): a query goes in the POST body, or in
//! the `query` URL parameter when the body carries the data of an `INSERT`; values are bound as
//! query parameters (`{name:Type}` + `param_name=`), never spliced into SQL text; settings ride
//! as URL parameters. Credentials go in the `X-ClickHouse-User` / `X-ClickHouse-Key` headers and
//! are never logged.
//!
//! Failures are classified ([`Failure`]): transport errors (refused, reset, timed out) and the
//! server's transient exception codes (too many parts, too many simultaneous queries, read-only
//! replica, keeper, timeouts, HTTP 502/503/504) are retried with exponential backoff; every
//! other answer (syntax, unknown table, authentication, bad data) fails at once with
//! ClickHouse's own message. Inserts are retried safely: each carries an
//! `insert_deduplication_token`, so a block that did land before the connection broke is not
//! stored twice.

use std::time::Duration;

use tollgate_ledger::{LedgerError, Result};

/// Where and how to reach the server.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// Base URL of the HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// The database holding the ledger's tables (created by `migrate`).
    pub database: String,
    pub user: Option<String>,
    /// The password (from the environment; never from a config file, never logged).
    pub password: Option<String>,
    /// Attempts per request for transient failures (1 = no retry).
    pub attempts: u32,
    /// First backoff between attempts (doubles each time, capped at 5 s).
    pub backoff: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Events per `INSERT` (the batch size).
    pub batch_rows: usize,
}

impl ClickHouseConfig {
    pub fn new(url: &str, database: &str) -> ClickHouseConfig {
        ClickHouseConfig {
            url: url.trim_end_matches('/').to_string(),
            database: database.to_string(),
            user: None,
            password: None,
            attempts: 5,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(300),
            batch_rows: 100_000,
        }
    }
}

/// Why a request failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: connection refused or reset, timeout. Retried.
    Transport(String),
    /// The server answered with an error; `retryable` from its exception code / HTTP status.
    Server {
        status: u16,
        code: Option<u32>,
        message: String,
        retryable: bool,
    },
}

impl Failure {
    pub fn retryable(&self) -> bool {
        match self {
            Failure::Transport(_) => true,
            Failure::Server { retryable, .. } => *retryable,
        }
    }
}

/// ClickHouse exception codes worth retrying: the server or cluster is busy or briefly
/// unavailable, not the request wrong.
const RETRYABLE_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE (connection cut)
    159, // TIMEOUT_EXCEEDED
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    236, // ABORTED
    242, // TABLE_IS_READ_ONLY (replica lost its keeper session)
    252, // TOO_MANY_PARTS
    285, // TOO_FEW_LIVE_REPLICAS
    319, // UNKNOWN_STATUS_OF_INSERT
    341, // UNFINISHED
    425, // SYSTEM_ERROR
    999, // KEEPER_EXCEPTION
];

/// Classifies a server answer.
pub fn classify(status: u16, code: Option<u32>, message: String) -> Failure {
    let retryable = match code {
        Some(c) => RETRYABLE_CODES.contains(&c),
        None => matches!(status, 502..=504),
    } || matches!(status, 502..=504);
    Failure::Server {
        status,
        code,
        message,
        retryable,
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(m) => write!(f, "cannot reach ClickHouse: {m}"),
            Failure::Server {
                status, message, ..
            } => write!(f, "ClickHouse answered {status}: {}", message.trim()),
        }
    }
}

/// The HTTP client.
pub struct Client {
    agent: ureq::Agent,
    cfg: ClickHouseConfig,
}

/// One request.
pub struct Request<'a> {
    pub sql: &'a str,
    /// Rows for an `INSERT ... FORMAT X` (sent as the body; `sql` then goes in the URL).
    pub data: Option<&'a [u8]>,
    pub params: &'a [(&'a str, String)],
    pub settings: &'a [(&'a str, String)],
    /// Run in the configured database (false for `CREATE DATABASE`).
    pub in_database: bool,
}

impl<'a> Request<'a> {
    pub fn new(sql: &'a str) -> Request<'a> {
        Request {
            sql,
            data: None,
            params: &[],
            settings: &[],
            in_database: true,
        }
    }
    pub fn params(mut self, p: &'a [(&'a str, String)]) -> Self {
        self.params = p;
        self
    }
    pub fn settings(mut self, s: &'a [(&'a str, String)]) -> Self {
        self.settings = s;
        self
    }
    pub fn data(mut self, d: &'a [u8]) -> Self {
        self.data = Some(d);
        self
    }
    pub fn no_database(mut self) -> Self {
        self.in_database = false;
        self
    }
}

impl Client {
    pub fn new(cfg: ClickHouseConfig) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.timeout))
            .build()
            .into();
        Client { agent, cfg }
    }

    pub fn config(&self) -> &ClickHouseConfig {
        &self.cfg
    }

    /// One attempt.
    fn once(&self, r: &Request<'_>) -> std::result::Result<Vec<u8>, Failure> {
        let mut req = self.agent.post(format!("{}/", self.cfg.url));
        if r.in_database {
            req = req.query("database", &self.cfg.database);
        }
        // Errors as an HTTP status, not in the middle of a 200 body.
        req = req.query("wait_end_of_query", "1");
        for (k, v) in r.settings {
            req = req.query(*k, v);
        }
        for (k, v) in r.params {
            req = req.query(format!("param_{k}"), escape_param(v));
        }
        if let Some(u) = &self.cfg.user {
            req = req.header("X-ClickHouse-User", u);
        }
        if let Some(p) = &self.cfg.password {
            req = req.header("X-ClickHouse-Key", p);
        }
        let sent = match r.data {
            Some(d) => req.query("query", r.sql).send(d),
            None => req.send(r.sql.as_bytes()),
        };
        let mut resp = sent.map_err(|e| Failure::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let code = resp
            .headers()
            .get("X-ClickHouse-Exception-Code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        let body = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| Failure::Transport(e.to_string()))?;
        if status == 200 {
            return Ok(body);
        }
        let message = String::from_utf8_lossy(&body).into_owned();
        let code = code.or_else(|| {
            message
                .strip_prefix("Code: ")
                .and_then(|m| m.split('.').next())
                .and_then(|c| c.parse().ok())
        });
        Err(classify(status, code, message))
    }

    /// One `GET /ping` without retries, within 5 s (a host that drops packets must not hold
    /// a gateway's startup for the whole request timeout): `Err` with the failure when the
    /// server cannot be reached or answers other than 200 (a probe before deciding whether
    /// to wait for it).
    pub fn ping(&self) -> std::result::Result<(), Failure> {
        let mut resp = self
            .agent
            .get(format!("{}/ping", self.cfg.url))
            .config()
            .timeout_global(Some(self.cfg.timeout.min(Duration::from_secs(5))))
            .build()
            .call()
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| Failure::Transport(e.to_string()))?;
        if status == 200 {
            Ok(())
        } else {
            Err(classify(status, None, body))
        }
    }

    /// Runs a request, retrying transient failures.
    pub fn run(&self, r: &Request<'_>) -> Result<Vec<u8>> {
        let mut wait = self.cfg.backoff;
        let attempts = self.cfg.attempts.max(1);
        let mut last = None;
        for attempt in 1..=attempts {
            match self.once(r) {
                Ok(b) => return Ok(b),
                Err(f) if f.retryable() && attempt < attempts => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                    last = Some(f);
                }
                Err(f) => return Err(self.error(f, attempt)),
            }
        }
        Err(self.error(
            last.unwrap_or(Failure::Transport("no attempt".into())),
            attempts,
        ))
    }

    pub(crate) fn error(&self, f: Failure, attempts: u32) -> LedgerError {
        let tries = if attempts > 1 {
            format!(" (after {attempts} attempts)")
        } else {
            String::new()
        };
        match &f {
            Failure::Server {
                code: Some(164), ..
            } => LedgerError::Refused(format!(
                "{f}; the ledger is append-only: only read-only statements are allowed"
            )),
            Failure::Transport(_) => LedgerError::Open {
                path: self.cfg.url.clone(),
                message: format!("{f}{tries}; is the server up and [ledger] url right?"),
            },
            Failure::Server { .. } => LedgerError::Open {
                path: format!("{} database {}", self.cfg.url, self.cfg.database),
                message: format!("{f}{tries}"),
            },
        }
    }

    /// A query returning `TabSeparated` rows, parsed.
    pub fn rows(&self, r: &Request<'_>) -> Result<Vec<Vec<Option<String>>>> {
        let body = self.run(r)?;
        parse_tsv(&body)
    }
}

/// Parses `TabSeparated` output: `\N` is NULL; escapes (`\t`, `\n`, `\\`, ...) are undone.
pub fn parse_tsv(body: &[u8]) -> Result<Vec<Vec<Option<String>>>> {
    let text = std::str::from_utf8(body)
        .map_err(|_| LedgerError::Corrupt("ClickHouse answered with invalid UTF-8".into()))?;
    let mut out = Vec::new();
    for line in text.split_terminator('\n') {
        out.push(line.split('\t').map(unescape_tsv).collect());
    }
    Ok(out)
}

/// One `TabSeparated` field.
pub fn unescape_tsv(f: &str) -> Option<String> {
    if f == "\\N" {
        return None;
    }
    if !f.contains('\\') {
        return Some(f.to_string());
    }
    let mut s = String::with_capacity(f.len());
    let mut it = f.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            s.push(c);
            continue;
        }
        match it.next() {
            Some('t') => s.push('\t'),
            Some('n') => s.push('\n'),
            Some('r') => s.push('\r'),
            Some('0') => s.push('\0'),
            Some('b') => s.push('\x08'),
            Some('f') => s.push('\x0c'),
            Some('a') => s.push('\x07'),
            Some('v') => s.push('\x0b'),
            Some(o) => s.push(o),
            None => s.push('\\'),
        }
    }
    Some(s)
}

/// A query parameter value as ClickHouse parses it: escaped like a `TabSeparated` field
/// (backslash, tab, newline, carriage return), so any text arrives unchanged.
pub fn escape_param(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '\t', '\n', '\r']) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut s = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\t' => s.push_str("\\t"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            c => s.push(c),
        }
    }
    std::borrow::Cow::Owned(s)
}

/// `s` as a ClickHouse string literal (for the few places a list of values is inlined, such as
/// `IN (...)` over a batch of event ids; everything else is bound as a parameter).
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        match c {
            '\'' => q.push_str("\\'"),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            '\0' => q.push_str("\\0"),
            c => q.push(c),
        }
    }
    q.push('\'');
    q
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tsv_escapes_and_nulls() {
        let rows = parse_tsv(b"a\\tb\t\\N\tx\\\\y\\nz\n\t1\n").unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("a\tb".into()), None, Some("x\\y\nz".into())],
                vec![Some(String::new()), Some("1".into())]
            ]
        );
    }

    #[test]
    fn failures_are_classified() {
        // Too many parts: the server is behind on merges, try again later.
        assert!(classify(500, Some(252), "Code: 252".into()).retryable());
        // A syntax error or an unknown table will not fix itself.
        assert!(!classify(400, Some(62), "Code: 62".into()).retryable());
        assert!(!classify(404, Some(60), "Code: 60".into()).retryable());
        // A proxy in front of a restarting server.
        assert!(classify(503, None, "unavailable".into()).retryable());
        assert!(!classify(401, Some(516), "auth".into()).retryable());
        assert!(Failure::Transport("refused".into()).retryable());
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote("a'b\\c"), "'a\\'b\\\\c'");
    }
}
