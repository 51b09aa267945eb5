//! `tollgate bills fetch openai|anthropic --period YYYY-MM` against a local HTTP/1.1 server
//! that replays the sample API responses split into two pages each, and records every request:
//! path, query (pagination cursor included) and authentication headers are all checked, and the
//! stored bills add up to the samples' own sums (worked out by hand below).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::sync::mpsc;

use serde_json::{Value, json};

use crate::support::Sandbox;

#[derive(Debug)]
struct Req {
    path: String,
    query: Vec<(String, String)>,
    headers: BTreeMap<String, String>,
}

impl Req {
    fn params(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn param(&self, key: &str) -> Option<&str> {
        let v = self.params(key);
        assert!(v.len() <= 1, "{key} given {} times", v.len());
        v.first().copied()
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Canned answers: (path, page cursor or "" for the first page) -> (status, body).
type Answers = HashMap<(String, String), (u16, String)>;

/// Serves one connection (keep-alive: several requests) until it closes; false on QUIT.
fn serve(stream: TcpStream, answers: &Answers, tx: &mpsc::Sender<Req>) -> bool {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return true;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        if method == "QUIT" {
            return false;
        }
        assert_eq!(method, "GET");
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
        let query: Vec<(String, String)> = qs
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        let page = query
            .iter()
            .find(|(k, _)| k == "page")
            .map_or(String::new(), |(_, v)| v.clone());
        let (status, body) = answers
            .get(&(path.to_string(), page))
            .cloned()
            .unwrap_or((404, r#"{"error":{"message":"no such page"}}"#.to_string()));
        write!(
            w,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        w.flush().unwrap();
        tx.send(Req {
            path: path.to_string(),
            query,
            headers,
        })
        .unwrap();
    }
}

/// A running replay server: its port, the requests it received, and a stop on drop.
struct Server {
    port: u16,
    rx: mpsc::Receiver<Req>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(answers: Answers) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            for s in listener.incoming() {
                if !serve(s.unwrap(), &answers, &tx) {
                    break;
                }
            }
        });
        Server {
            port,
            rx,
            handle: Some(handle),
        }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// The requests received so far (the command has exited, so all of them).
    fn requests(&self) -> Vec<Req> {
        self.rx.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.write_all(b"QUIT\r\n");
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn sample(name: &str) -> Value {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/samples")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Splits a sample page into two: buckets `[..at]` with `has_more` and `cursor`, then the rest.
fn split(page: &Value, at: usize, cursor: &str) -> (String, String) {
    let data = page["data"].as_array().unwrap();
    assert!(at > 0 && at < data.len());
    let mut first = page.clone();
    first["data"] = Value::Array(data[..at].to_vec());
    first["has_more"] = json!(true);
    first["next_page"] = json!(cursor);
    let mut second = page.clone();
    second["data"] = Value::Array(data[at..].to_vec());
    second["has_more"] = json!(false);
    second["next_page"] = Value::Null;
    (first.to_string(), second.to_string())
}

fn two_pages(answers: &mut Answers, path: &str, sample_name: &str, cursor: &str) {
    let (p1, p2) = split(&sample(sample_name), 1, cursor);
    answers.insert((path.into(), String::new()), (200, p1));
    answers.insert((path.into(), cursor.into()), (200, p2));
}

const OPENAI_USAGE: &str = "/v1/organization/usage/completions";
const OPENAI_COSTS: &str = "/v1/organization/costs";
const ANTHROPIC_USAGE: &str = "/v1/organizations/usage_report/messages";
const ANTHROPIC_COST: &str = "/v1/organizations/cost_report";
// Cursors with characters that must be percent-encoded in a query.
const CURSOR_USAGE: &str = "page_AAAAAGdGxdEi+JdKO/AAAAAGcqsYA=";
const CURSOR_COSTS: &str = "page_Q29zdHMgcGFnZSAy&x=1";

fn openai_answers() -> Answers {
    let mut a = Answers::new();
    two_pages(
        &mut a,
        OPENAI_USAGE,
        "openai_usage_completions.json",
        CURSOR_USAGE,
    );
    two_pages(&mut a, OPENAI_COSTS, "openai_costs.json", CURSOR_COSTS);
    a
}

const OPENAI_KEY: &str = "sk-admin-TEST-do-not-log-0123456789";

/// Runs the binary with `--data-dir` and exactly the environment given (no admin variables
/// leak in from the caller's).
fn run_env(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = sb.bare_command();
    for v in [
        "OPENAI_ADMIN_KEY",
        "ANTHROPIC_ADMIN_KEY",
        "TOLLGATE_OPENAI_ADMIN_URL",
        "TOLLGATE_ANTHROPIC_ADMIN_URL",
    ] {
        c.env_remove(v);
    }
    c.arg("--data-dir").arg(sb.data_dir()).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn fetch_openai(sb: &Sandbox, server: &Server) -> Output {
    run_env(
        sb,
        &[
            "bills", "fetch", "openai", "--period", "2026-09", "--format", "json",
        ],
        &[
            ("OPENAI_ADMIN_KEY", OPENAI_KEY),
            ("TOLLGATE_OPENAI_ADMIN_URL", &server.url()),
        ],
    )
}

#[test]
fn openai_reports_are_fetched_page_by_page_and_stored_with_the_samples_totals() {
    let server = Server::start(openai_answers());
    let sb = Sandbox::new();
    let o = fetch_openai(&sb, &server);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(!out.contains(OPENAI_KEY) && !err.contains(OPENAI_KEY));

    // Every request: two pages of each report, in order, the cursor passed back as `page`.
    let reqs = server.requests();
    let seen: Vec<(&str, Option<&str>)> = reqs
        .iter()
        .map(|r| (r.path.as_str(), r.param("page")))
        .collect();
    assert_eq!(
        seen,
        [
            (OPENAI_USAGE, None),
            (OPENAI_USAGE, Some(CURSOR_USAGE)),
            (OPENAI_COSTS, None),
            (OPENAI_COSTS, Some(CURSOR_COSTS)),
        ]
    );
    for r in &reqs {
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {OPENAI_KEY}").as_str())
        );
        // 2026-09-01T00:00:00Z = 1788220800 (the sample's first bucket); September has 30
        // days: 1788220800 + 30 x 86400 = 1790812800 (2026-10-01T00:00:00Z).
        assert_eq!(r.param("start_time"), Some("1788220800"));
        assert_eq!(r.param("end_time"), Some("1790812800"));
        assert_eq!(r.param("bucket_width"), Some("1d"));
        assert_eq!(r.param("limit"), Some("31"));
    }
    assert_eq!(
        reqs[0].params("group_by"),
        ["project_id", "api_key_id", "model", "batch", "service_tier"]
    );
    assert_eq!(
        reqs[2].params("group_by"),
        ["line_item", "project_id", "api_key_id"]
    );

    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["provider"], "openai");
    assert_eq!(doc["period"], "2026-09");
    let usage = &doc["bills"][0];
    assert_eq!(usage["type"], "openai-usage");
    assert_eq!(usage["pages"], 2);
    // Usage sample, five results (the third bucket is empty):
    // uncached input 921600 + 3072000 + 9800000 + 905080 + 320500 = 15019180
    // cache read     921600 + 2048000 + 0 + 1105920 + 0            = 4075520
    // output         210400 + 640000 + 1200000 + 198765 + 45210    = 2294375
    // lines: 3 + 3 + 2 (no cache read) + 3 + 2 (no cache read)      = 13
    assert_eq!(usage["tokens"]["input"], 15019180);
    assert_eq!(usage["tokens"]["cache_read"], 4075520);
    assert_eq!(usage["tokens"]["cache_write"], 0);
    assert_eq!(usage["tokens"]["output"], 2294375);
    assert_eq!(usage["lines"], 13);
    assert_eq!(usage["cost"], Value::Null);
    let costs = &doc["bills"][1];
    assert_eq!(costs["type"], "openai-costs");
    assert_eq!(costs["pages"], 2);
    // Costs sample: day 1: 2.304 + 1.152 + 2.104 + 0.4608 + 0.1536 + 0.384 + 0.735 + 0.36
    // = 7.6534; day 2: 2.2627 + 1.3824 + 1.98765 + 0.80125 + 0.4521 = 6.8861;
    // 7.6534 + 6.8861 = 14.5395 over 8 + 5 = 13 lines.
    assert_eq!(costs["cost"], "14.5395");
    assert_eq!(costs["lines"], 13);
    assert_eq!(costs["currency"], "USD");

    // Stored as `ingest bills` stores them: one import per report, in force.
    let imports = sb.sql(
        "SELECT bill_type, provider, month, lines, cost FROM current_bill_imports ORDER BY bill_type",
    );
    assert_eq!(
        imports,
        [
            json!({"bill_type": "openai-costs", "provider": "openai", "month": "2026-09", "lines": 13, "cost": "14.5395"}),
            json!({"bill_type": "openai-usage", "provider": "openai", "month": "2026-09", "lines": 13, "cost": null}),
        ]
    );
    let tokens = sb.sql(
        "SELECT token_class, SUM(tokens) AS n FROM current_bill_lines l JOIN bill_imports i
         ON i.id = l.import_id WHERE i.bill_type = 'openai-usage' GROUP BY token_class ORDER BY 1",
    );
    assert_eq!(
        tokens,
        [
            json!({"token_class": "cache_read", "n": 4075520}),
            json!({"token_class": "input", "n": 15019180}),
            json!({"token_class": "output", "n": 2294375}),
        ]
    );

    // Fetching the month again replaces it: the same lines in force, the earlier kept.
    let o = fetch_openai(&sb, &server);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(
        sb.sql("SELECT COUNT(*) AS n FROM current_bill_lines")[0]["n"],
        26
    );
    assert_eq!(sb.sql("SELECT COUNT(*) AS n FROM bill_lines")[0]["n"], 52);
}

#[test]
fn anthropic_reports_use_the_configured_url_and_key_variable() {
    let mut answers = Answers::new();
    two_pages(
        &mut answers,
        ANTHROPIC_USAGE,
        "anthropic_usage_report.json",
        "page_MjAyNS0wNS0xNFQwMDowMDowMFo=",
    );
    two_pages(
        &mut answers,
        ANTHROPIC_COST,
        "anthropic_cost_report.json",
        "page_Y29zdA==",
    );
    let server = Server::start(answers);
    let sb = Sandbox::new();
    let config = sb.write(
        "tollgate.toml",
        format!(
            "[bills]\nanthropic_base_url = \"{}/\"\nanthropic_admin_key_env = \"MY_ANT_ADMIN\"\n",
            server.url()
        ),
    );
    let key = "sk-ant-admin01-TEST-secret";
    let o = run_env(
        &sb,
        &[
            "--config",
            config.to_str().unwrap(),
            "bills",
            "fetch",
            "anthropic",
            "--period",
            "2026-09",
            "--format",
            "json",
        ],
        &[("MY_ANT_ADMIN", key)],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(!out.contains(key) && !err.contains(key));
    let reqs = server.requests();
    let seen: Vec<(&str, Option<&str>)> = reqs
        .iter()
        .map(|r| (r.path.as_str(), r.param("page")))
        .collect();
    assert_eq!(
        seen,
        [
            (ANTHROPIC_USAGE, None),
            (ANTHROPIC_USAGE, Some("page_MjAyNS0wNS0xNFQwMDowMDowMFo=")),
            (ANTHROPIC_COST, None),
            (ANTHROPIC_COST, Some("page_Y29zdA==")),
        ]
    );
    for r in &reqs {
        assert_eq!(r.headers.get("x-api-key").map(String::as_str), Some(key));
        assert_eq!(
            r.headers.get("anthropic-version").map(String::as_str),
            Some("2023-06-01")
        );
        assert!(!r.headers.contains_key("authorization"));
        assert_eq!(r.param("starting_at"), Some("2026-09-01T00:00:00Z"));
        assert_eq!(r.param("ending_at"), Some("2026-10-01T00:00:00Z"));
        assert_eq!(r.param("bucket_width"), Some("1d"));
    }
    assert_eq!(
        reqs[0].params("group_by[]"),
        [
            "api_key_id",
            "workspace_id",
            "model",
            "service_tier",
            "context_window"
        ]
    );
    assert_eq!(
        reqs[2].params("group_by[]"),
        ["workspace_id", "description"]
    );

    let doc: Value = serde_json::from_str(&out).unwrap();
    let usage = &doc["bills"][0];
    assert_eq!(usage["type"], "anthropic-usage");
    // Usage sample, five results over two days:
    // uncached input 152300 + 500000 + 2400000 + 640000 + 1800000 = 5492300
    // cache write 5m 40000 + 0 + 100000 + 0 + 50000               = 190000
    // cache write 1h 12000                                          = 12000
    // cache read     880400 + 0 + 3100000 + 1200000 + 2200000     = 7380400
    // output         61250 + 120000 + 310000 + 22000 + 250000     = 763250
    assert_eq!(usage["tokens"]["input"], 5492300);
    assert_eq!(usage["tokens"]["cache_write"], 190000);
    assert_eq!(usage["tokens"]["cache_write_1h"], 12000);
    assert_eq!(usage["tokens"]["cache_read"], 7380400);
    assert_eq!(usage["tokens"]["output"], 763250);
    let cost = &doc["bills"][1];
    assert_eq!(cost["type"], "anthropic-cost");
    // Cost sample in cents: day 1: 45.69 + 15 + 7.2 + 26.412 + 91.875 + 75 + 90 + 192 + 10
    // + 24.8 + 124 + 14 (web search) = 715.977; day 2: 192 + 36 + 33 + 144 + 5 + 17.6 + 100
    // + 3 (web search) = 530.6; 715.977 + 530.6 = 1246.577 cents = $12.46577 over 20 lines.
    assert_eq!(cost["cost"], "12.46577");
    assert_eq!(cost["lines"], 20);
    let imports = sb.sql("SELECT bill_type, cost FROM current_bill_imports ORDER BY bill_type");
    assert_eq!(
        imports,
        [
            json!({"bill_type": "anthropic-cost", "cost": "12.46577"}),
            json!({"bill_type": "anthropic-usage", "cost": null}),
        ]
    );
}

#[test]
fn a_failing_page_stores_nothing_and_says_which_request_failed() {
    let mut answers = openai_answers();
    // The second page of the costs report fails.
    answers.insert(
        (OPENAI_COSTS.into(), CURSOR_COSTS.into()),
        (
            500,
            r#"{"error":{"message":"The server had an error","type":"server_error"}}"#.into(),
        ),
    );
    let server = Server::start(answers);
    let sb = Sandbox::new();
    let o = fetch_openai(&sb, &server);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("GET /v1/organization/costs (page 2) answered HTTP 500")
            && err.contains("The server had an error")
            && err.contains("nothing was stored"),
        "{err}"
    );
    // Every usage page was fine, yet nothing was written, not even an empty ledger.
    assert_eq!(server.requests().len(), 4);
    assert!(!sb.data_dir().join("ledger.sqlite").exists());
}

#[test]
fn a_refused_key_or_a_failing_page_leaves_the_earlier_fetch_in_force() {
    let good = Server::start(openai_answers());
    let sb = Sandbox::new();
    assert!(fetch_openai(&sb, &good).status.success());

    // A page that is not a valid report (a token count as text) fails the fetch.
    let mut answers = openai_answers();
    let mut page: Value =
        serde_json::from_str(&answers[&(OPENAI_USAGE.to_string(), CURSOR_USAGE.to_string())].1)
            .unwrap();
    page["data"][0]["results"][0]["output_tokens"] = json!("many");
    answers.insert(
        (OPENAI_USAGE.into(), CURSOR_USAGE.into()),
        (200, page.to_string()),
    );
    let bad = Server::start(answers);
    let o = fetch_openai(&sb, &bad);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    // The second page is `[1]` in the array of pages.
    assert!(
        err.contains(
            "/v1/organization/usage/completions 2026-09: [1].data[0].results[0].output_tokens"
        ),
        "{err}"
    );

    // A refused key: the message names the variable to fix and never echoes the key, even
    // when the provider's message does.
    let mut answers = Answers::new();
    answers.insert(
        (OPENAI_USAGE.into(), String::new()),
        (
            401,
            format!(r#"{{"error":{{"message":"Incorrect API key provided: {OPENAI_KEY}"}}}}"#),
        ),
    );
    let refused = Server::start(answers);
    let o = fetch_openai(&sb, &refused);
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("GET /v1/organization/usage/completions (page 1) answered HTTP 401")
            && err.contains("OPENAI_ADMIN_KEY"),
        "{err}"
    );
    assert!(
        !out.contains(OPENAI_KEY) && !err.contains(OPENAI_KEY),
        "{err}"
    );

    // The first fetch is still the one in force and nothing else was written.
    assert_eq!(sb.sql("SELECT COUNT(*) AS n FROM bill_imports")[0]["n"], 2);
    assert_eq!(
        sb.sql("SELECT COUNT(*) AS n FROM current_bill_lines")[0]["n"],
        26
    );
}

#[test]
fn a_missing_key_or_a_bad_period_is_refused_before_any_request() {
    let server = Server::start(openai_answers());
    let sb = Sandbox::new();
    let o = run_env(
        &sb,
        &["bills", "fetch", "openai", "--period", "2026-09"],
        &[("TOLLGATE_OPENAI_ADMIN_URL", &server.url())],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("OPENAI_ADMIN_KEY"), "{err}");
    let o = run_env(
        &sb,
        &["bills", "fetch", "openai", "--period", "2026-09-01"],
        &[
            ("OPENAI_ADMIN_KEY", OPENAI_KEY),
            ("TOLLGATE_OPENAI_ADMIN_URL", &server.url()),
        ],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("--period \"2026-09-01\"") && err.contains("YYYY-MM"),
        "{err}"
    );
    assert!(server.requests().is_empty());
    assert!(!sb.data_dir().join("ledger.sqlite").exists());
}
