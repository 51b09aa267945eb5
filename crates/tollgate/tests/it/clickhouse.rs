//! The ClickHouse backend end to end: the demo month in SQLite and in ClickHouse (the real
//! engine through chDB behind `tests/clickhouse/adapter.py`, started on port 0 by the test)
//! gives byte-identical reports, invoices, exports; `ledger copy` is idempotent; `ledger
//! export` round-trips; the config's backend keys are checked.

use std::path::Path;

use tollgate_clickhouse::testing::Adapter;

use crate::support::{Sandbox, path_str, python};

fn start_adapter(sb: &Sandbox) -> Adapter {
    Adapter::start(&python(), &sb.path().join("chdata"), None).expect("start the adapter")
}

/// Runs the binary with `--config CONFIG ARGS`, returns stdout (asserting success).
fn run(sb: &Sandbox, config: &Path, args: &[&str]) -> Vec<u8> {
    let mut c = sb.bare_command();
    c.arg("--config").arg(config).args(args);
    let out = c.output().expect("run tollgate");
    assert!(
        out.status.success(),
        "tollgate --config {} {} failed:\n{}",
        config.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Reads a file the binary wrote.
fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Drops the lines that carry the export's wall-clock instant (`exported_at`, `# Exported:`),
/// the one thing two runs of the same report may not share.
fn without_clock(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .filter(|l| {
            !l.contains("\"exported_at\"")
                && !l.starts_with("# Exported: ")
                && !l.starts_with("Exported: ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replaces what two ledgers written at different instants cannot share: row ids after `#`
/// (`adjustment #8`) and instants (`2026-11-23T18:19:02.672477Z`), each by a fixed mark.
fn without_ids_and_instants(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let c: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    // An instant as the ledger writes it: YYYY-MM-DDTHH:MM:SS.ffffffZ (27 characters).
    let instant = |at: usize| -> bool {
        const SHAPE: &str = "dddd-dd-ddTdd:dd:dd.ddddddZ";
        at + SHAPE.len() <= c.len()
            && SHAPE.chars().zip(&c[at..]).all(|(p, ch)| match p {
                'd' => ch.is_ascii_digit(),
                p => p == *ch,
            })
    };
    while i < c.len() {
        if instant(i) {
            out.push_str("<instant>");
            i += 27;
        } else if c[i] == '#' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
            out.push_str("#<id>");
            i += 1;
            while c.get(i).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn masking_leaves_everything_but_ids_and_instants() {
    assert_eq!(
        without_ids_and_instants(
            b"adjustment #1795457942931521000: at 2026-11-23T18:19:02.931477Z; 2026-10 #x 12.50"
        ),
        "adjustment #<id>: at <instant>; 2026-10 #x 12.50"
    );
}

#[test]
fn demo_month_gives_the_same_answers_on_sqlite_and_clickhouse() {
    let sb = Sandbox::new();
    let demo = sb.path().join("demo");
    sb.run(&["demo", "--dir", path_str(&demo), "--events", "3000"])
        .ok();
    let ch = start_adapter(&sb);
    // The demo's tenants with each ledger.
    let tenants = std::fs::read_to_string(demo.join("tollgate.toml")).unwrap();
    let sq_cfg = sb.write(
        "sqlite.toml",
        format!("{tenants}\n[ledger]\ndata_dir = \"demo\"\n"),
    );
    let ch_cfg = sb.write(
        "clickhouse.toml",
        format!(
            "{tenants}\n[ledger]\nbackend = \"clickhouse\"\nurl = \"{}\"\ndatabase = \"demo\"\n",
            ch.url
        ),
    );
    // Copy the whole ledger; a second copy finds everything there.
    let first = String::from_utf8(run(
        &sb,
        &sq_cfg,
        &["ledger", "copy", "--to", path_str(&ch_cfg)],
    ))
    .unwrap();
    assert!(
        first.starts_with("copied 3000 events (0 already there)"),
        "{first}"
    );
    // The demo records one annotation and five budget rows, imports two provider bills
    // (OpenAI costs, Anthropic cost) and the reference data of its refdata.toml, one change
    // per entry.
    let refdata_entries = std::fs::read_to_string(demo.join("refdata.toml"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("[["))
        .count();
    assert!(refdata_entries > 10, "{refdata_entries}");
    assert!(
        first.contains(&format!(
            "2 bills, 1 annotations, 5 budget rows, {refdata_entries} reference data changes, 0 period log entries, 0 adjustments"
        )),
        "{first}"
    );
    let again = String::from_utf8(run(
        &sb,
        &sq_cfg,
        &["ledger", "copy", "--to", path_str(&ch_cfg)],
    ))
    .unwrap();
    assert!(
        again.starts_with("copied 0 events (3000 already there)")
            && again.contains("0 invoices, 0 bills, 0 annotations, 0 budget rows, 0 reference data changes, 0 period log entries, 0 adjustments"),
        "{again}"
    );

    // Byte-identical outputs (stdout), command by command.
    let same: &[&[&str]] = &[
        &[
            "report",
            "summary",
            "--period",
            "2026-10",
            "--by",
            "team,service,model,provider",
            "--format",
            "table",
        ],
        &[
            "report",
            "summary",
            "--period",
            "2026-10",
            "--by",
            "tenant,feature",
            "--format",
            "csv",
        ],
        &[
            "report", "summary", "--period", "2026-10", "--by", "team", "--format", "json",
        ],
        &[
            "invoice", "--all", "--period", "2026-10", "--format", "json",
        ],
        &[
            "invoice", "--all", "--period", "2026-10", "--format", "text",
        ],
        &[
            "invoice", "--tenant", "acme", "--period", "2026-10", "--format", "csv",
        ],
        &[
            "report",
            "audit",
            "--from",
            "2026-10-01",
            "--to",
            "2026-11-01",
        ],
        &[
            "report",
            "audit",
            "--from",
            "2026-10-01",
            "--to",
            "2026-11-01",
            "--tenant",
            "acme",
        ],
        &["report", "focus", "--period", "2026-10"],
        &["report", "digest", "--week", "2026-W42"],
        &["report", "finance", "daily", "--period", "2026-10"],
        &["report", "finance", "features", "--period", "2026-10"],
        &["report", "finance", "tenants", "--period", "2026-10"],
        &["report", "finance", "users", "--period", "2026-10"],
        &["report", "finance", "budgets", "--period", "2026-10"],
        &["ledger", "export", "--format", "jsonl"],
        &["ledger", "export", "--format", "csv"],
        &["report", "attribution", "--period", "2026-10"],
        &[
            "report",
            "attribution",
            "--period",
            "2026-10",
            "--format",
            "json",
        ],
        &["refdata", "list"],
        &["refdata", "list", "--format", "json"],
        &["refdata", "history"],
        &["refdata", "history", "--format", "json"],
    ];
    // The reconciliation of the demo month against its bills, with the rates in force now
    // (the late price cut first) as the demo runs it.
    let late_prices = demo.join("demo-prices-late.toml");
    let demo_prices = demo.join("demo-prices.toml");
    let with_rates = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--prices",
            path_str(&late_prices),
            "--prices",
            path_str(&demo_prices),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let reconcile: Vec<Vec<String>> = ["table", "csv", "json"]
        .iter()
        .map(|f| {
            with_rates(&[
                "reconcile",
                "--period",
                "2026-10",
                "--company-tz",
                "Asia/Tokyo",
                "--threshold-amount",
                "0.50",
                "--format",
                f,
            ])
        })
        .collect();
    let owned: Vec<Vec<&str>> = reconcile
        .iter()
        .map(|v| v.iter().map(String::as_str).collect())
        .collect();
    let same: Vec<&[&str]> = same
        .iter()
        .copied()
        .chain(owned.iter().map(Vec::as_slice))
        .collect();
    for args in same {
        let a = run(&sb, &sq_cfg, args);
        let b = run(&sb, &ch_cfg, args);
        assert!(
            a.len() > 200,
            "{args:?} printed almost nothing: {}",
            String::from_utf8_lossy(&a)
        );
        if a != b {
            // The same report apart from the instant it was made at (one line).
            let (x, y) = (without_clock(&a), without_clock(&b));
            assert_eq!(
                x.lines().count() + 1,
                String::from_utf8_lossy(&a).lines().count()
            );
            assert_eq!(x, y, "{args:?} differs between SQLite and ClickHouse");
        }
    }
    // The reconciliation found the demo's planted unmapped key and the traffic around the
    // gateway (the same on both, checked above).
    let rec = String::from_utf8(run(&sb, &ch_cfg, owned[0].as_slice())).unwrap();
    assert!(
        rec.contains("unmapped_key") && rec.contains("missing_in_ledger"),
        "{rec}"
    );

    // The month-end back office on each ledger on its own: the same re-pricing, shared-cost
    // allocation, approved adjustment (twice: recorded once) and close print the same, and
    // leave the same books and journal. Ids and instants are the ledger's own (masked).
    let backoffice: Vec<Vec<String>> = vec![
        with_rates(&["reprice", "--period", "2026-10", "--by", "ana"]),
        with_rates(&[
            "reprice", "--period", "2026-10", "--by", "ana", "--format", "json",
        ]),
        vec![
            "allocate", "--period", "2026-10", "--method", "usage", "--by", "ana",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
    ];
    let adjust: Vec<String> = [
        "adjust",
        "--period",
        "2026-10",
        "--team",
        "team-search",
        "--amount",
        "-2.50",
        "--reason",
        "credit for an outage",
        "--approver",
        "key_cfo",
        "--by",
        "ana",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let close: Vec<String> = ["close", "--period", "2026-10", "--by", "ana"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for args in &backoffice {
        let a = run(&sb, &sq_cfg, &strs(args));
        let b = run(&sb, &ch_cfg, &strs(args));
        assert!(!a.is_empty());
        assert!(
            a == b,
            "{args:?} differs:\n{}\n{}",
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b)
        );
    }
    for args in [&adjust, &adjust, &close] {
        let a = run(&sb, &sq_cfg, &strs(args));
        let b = run(&sb, &ch_cfg, &strs(args));
        assert_eq!(
            without_ids_and_instants(&a),
            without_ids_and_instants(&b),
            "{args:?}"
        );
    }
    let books: &[&[&str]] = &[
        &["books", "--period", "2026-10"],
        &["books", "--period", "2026-10", "--format", "json"],
        &["books", "--period", "2026-11"],
        &["books", "--period", "2026-11", "--format", "json"],
        &["journal", "--period", "2026-10"],
        &["journal", "--period", "2026-10", "--currency", "EUR"],
    ];
    for args in books {
        let (a, b) = (run(&sb, &sq_cfg, args), run(&sb, &ch_cfg, args));
        assert!(a.len() > 100, "{args:?}: {}", String::from_utf8_lossy(&a));
        assert_eq!(
            without_ids_and_instants(&a),
            without_ids_and_instants(&b),
            "{args:?}"
        );
    }
    let books_oct = String::from_utf8(run(&sb, &ch_cfg, books[0])).unwrap();
    assert!(
        books_oct.contains("closed") && books_oct.contains("credit for an outage"),
        "{books_oct}"
    );
    // ClickHouse's ledger copied into a new SQLite ledger: the history keeps its ids and
    // instants, and events when they were ingested, so every book, journal and history
    // reads byte for byte the same, with nothing masked (no event became late).
    let back_cfg = sb.write(
        "back.toml",
        format!("{tenants}\n[ledger]\ndata_dir = \"back\"\n"),
    );
    let copied = String::from_utf8(run(
        &sb,
        &ch_cfg,
        &["ledger", "copy", "--to", path_str(&back_cfg)],
    ))
    .unwrap();
    assert!(
        copied.starts_with("copied 3000 events (0 already there)")
            && copied.contains(&format!(
                "{refdata_entries} reference data changes, 1 period log entries,"
            )),
        "{copied}"
    );
    let again = String::from_utf8(run(
        &sb,
        &ch_cfg,
        &["ledger", "copy", "--to", path_str(&back_cfg)],
    ))
    .unwrap();
    assert!(
        again.contains("0 reference data changes, 0 period log entries, 0 adjustments"),
        "{again}"
    );
    for args in books
        .iter()
        .copied()
        .chain([&["refdata", "history", "--format", "json"][..]])
    {
        assert!(
            run(&sb, &ch_cfg, args) == run(&sb, &back_cfg, args),
            "{args:?} differs after copying ClickHouse into SQLite"
        );
    }

    // The CFO's PDF and the invoice PDF, byte for byte. They print when they were generated
    // (to the minute), so SQLite runs before and after the ClickHouse run: when those two
    // agree, no minute boundary fell in between and the ClickHouse PDF must equal them.
    for (args, name) in [
        (vec!["report", "cfo", "--period", "2026-10", "--out"], "cfo"),
        (
            vec![
                "invoice", "--tenant", "acme", "--period", "2026-10", "--format", "pdf", "--out",
            ],
            "inv",
        ),
    ] {
        let pdf = |cfg: &Path, which: &str| {
            let p = sb.path().join(format!("{name}-{which}.pdf"));
            let mut a = args.clone();
            a.push(path_str(&p));
            run(&sb, cfg, &a);
            read(&p)
        };
        let mut checked = false;
        for _attempt in 0..3 {
            let before = pdf(&sq_cfg, "sqlite-1");
            let ch_pdf = pdf(&ch_cfg, "clickhouse");
            let after = pdf(&sq_cfg, "sqlite-2");
            assert!(before.starts_with(b"%PDF"));
            if before == after {
                assert!(
                    before == ch_pdf,
                    "{name} PDF differs between SQLite and ClickHouse"
                );
                checked = true;
                break;
            }
        }
        assert!(
            checked,
            "{name}: three runs in a row straddled a minute boundary"
        );
    }

    // Ingesting the demo's event file straight into ClickHouse stores the same events as
    // ingesting it into a new SQLite ledger: the same export, the same audit CSV. (The demo's
    // own ledger holds the gateway-recorded events, which differ from the generated file by
    // design; see demo_live.rs.)
    let sq_ing_cfg = sb.write("sqlite-ingest.toml", "[ledger]\ndata_dir = \"ingested\"\n");
    let ing_cfg = sb.write(
        "ingest.toml",
        format!(
            "[ledger]\nbackend = \"clickhouse\"\nurl = \"{}\"\ndatabase = \"ingested\"\n",
            ch.url
        ),
    );
    let prices = demo.join("demo-prices.toml");
    let events = demo.join("events.jsonl");
    let ingest = |cfg: &Path| {
        let out = run(
            &sb,
            cfg,
            &[
                "--prices",
                path_str(&prices),
                "ingest",
                "events",
                path_str(&events),
                "--format",
                "json",
            ],
        );
        serde_json::from_slice::<serde_json::Value>(&out).unwrap()
    };
    let s1 = ingest(&ing_cfg);
    assert_eq!(
        (s1["read"].as_u64(), s1["ingested"].as_u64()),
        (Some(3000), Some(3000)),
        "{s1}"
    );
    // A replay stores nothing.
    let s2 = ingest(&ing_cfg);
    assert_eq!(
        (s2["ingested"].as_u64(), s2["duplicates"].as_u64()),
        (Some(0), Some(3000)),
        "{s2}"
    );
    let s3 = ingest(&sq_ing_cfg);
    assert_eq!(s3["ingested"].as_u64(), Some(3000), "{s3}");
    for args in [
        &["ledger", "export", "--format", "jsonl"][..],
        &[
            "report",
            "audit",
            "--from",
            "2026-10-01",
            "--to",
            "2026-11-01",
        ][..],
    ] {
        assert!(
            run(&sb, &sq_ing_cfg, args) == run(&sb, &ing_cfg, args),
            "{args:?} differs after ingesting into ClickHouse"
        );
    }
}

#[test]
fn export_round_trips_and_config_is_checked() {
    let sb = Sandbox::new();
    let demo = sb.path().join("demo");
    sb.run(&["demo", "--dir", path_str(&demo), "--events", "500"])
        .ok();
    let cfg = sb.write("a.toml", "[ledger]\ndata_dir = \"demo\"\n");
    let out = sb.path().join("out/events.csv");
    let msg = run(
        &sb,
        &cfg,
        &[
            "ledger",
            "export",
            "--format",
            "csv",
            "--out",
            path_str(&out),
        ],
    );
    assert_eq!(String::from_utf8(msg).unwrap(), "exported 500 events\n");
    // The CSV imports into an empty ledger as the same 500 events (with their stored costs).
    let b = sb.write("b.toml", "[ledger]\ndata_dir = \"copy\"\n");
    run(&sb, &b, &["ingest", "events", path_str(&out)]);
    let j1 = run(&sb, &cfg, &["ledger", "export", "--format", "jsonl"]);
    let j2 = run(&sb, &b, &["ledger", "export", "--format", "jsonl"]);
    assert_eq!(
        j1.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count(),
        500
    );
    assert!(
        j1 == j2,
        "CSV export -> import -> export changed the events"
    );
    // `config check` names the ClickHouse ledger and where its password comes from.
    let chk = sb.write(
        "ch.toml",
        "[ledger]\nbackend = \"clickhouse\"\nurl = \"http://127.0.0.1:1\"\n",
    );
    let out = String::from_utf8(run(&sb, &chk, &["config", "check"])).unwrap();
    assert!(
        out.contains(
            "ledger: ClickHouse http://127.0.0.1:1 database tollgate (password from $TOLLGATE_CLICKHOUSE_PASSWORD)"
        ),
        "{out}"
    );
    // `ledger migrate` on SQLite: already current.
    let m = String::from_utf8(run(&sb, &cfg, &["ledger", "migrate"])).unwrap();
    assert!(m.contains("up to date"), "{m}");

    // Bad backend settings name the key and the fix.
    for (toml, want) in [
        (
            "[ledger]\nbackend = \"postgres\"\n",
            "ledger.backend: \"postgres\" is not a ledger backend",
        ),
        (
            "[ledger]\nbackend = \"clickhouse\"\nurl = \"127.0.0.1:8123\"\n",
            "ledger.url: \"127.0.0.1:8123\" is not an http:// or https:// URL",
        ),
        (
            "[ledger]\nbackend = \"clickhouse\"\ndatabase = \"a-b\"\n",
            "ledger.database: \"a-b\": use letters, digits and underscores",
        ),
        (
            "[ledger]\nurl = \"http://x\"\n",
            "ledger.url: only used with backend = \"clickhouse\"",
        ),
    ] {
        crate::support::assert_config_refused(&sb, toml, want);
    }
}

#[test]
fn clickhouse_password_comes_from_the_environment() {
    let sb = Sandbox::new();
    let dir = sb.path().join("chdata");
    let ch = Adapter::start(&python(), &dir, Some("pw-from-env")).expect("start the adapter");
    let cfg = sb.write(
        "c.toml",
        format!(
            "[ledger]\nbackend = \"clickhouse\"\nurl = \"{}\"\ndatabase = \"pw\"\npassword_env = \"MY_CH_PASSWORD\"\n",
            ch.url
        ),
    );
    let migrate = |pw: Option<&str>| {
        let mut c = sb.bare_command();
        c.arg("--config").arg(&cfg).args(["ledger", "migrate"]);
        if let Some(p) = pw {
            c.env("MY_CH_PASSWORD", p);
        }
        c.output().unwrap()
    };
    let bad = migrate(None);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("AUTHENTICATION_FAILED"),
        "{err}"
    );
    // The password never appears in an error message.
    let wrong = migrate(Some("not-it"));
    assert!(!String::from_utf8_lossy(&wrong.stderr).contains("not-it"));
    let ok = migrate(Some("pw-from-env"));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.contains("database pw: migrated from version 0 to 4 (applied 1, 2, 3, 4)"),
        "{out}"
    );
}

#[test]
fn two_writers_on_one_clickhouse_ledger_give_the_totals_of_one() {
    let sb = Sandbox::new();
    let demo = sb.path().join("demo");
    sb.run(&["demo", "--dir", path_str(&demo), "--events", "2000"])
        .ok();
    let ch = start_adapter(&sb);
    let sq_cfg = sb.write("sqlite.toml", "[ledger]\ndata_dir = \"demo\"\n");
    let ch_cfg = sb.write(
        "clickhouse.toml",
        format!(
            "[ledger]\nbackend = \"clickhouse\"\nurl = \"{}\"\ndatabase = \"multi\"\n",
            ch.url
        ),
    );
    run(&sb, &ch_cfg, &["ledger", "migrate"]);
    // Two "replicas", each with its own half of the traffic (alternate lines), writing at
    // the same time.
    let text = std::fs::read_to_string(demo.join("events.jsonl")).unwrap();
    let (mut a, mut b) = (String::new(), String::new());
    for (i, l) in text.lines().enumerate() {
        let half = if i % 2 == 0 { &mut a } else { &mut b };
        half.push_str(l);
        half.push('\n');
    }
    let fa = sb.write("a.jsonl", a);
    let fb = sb.write("b.jsonl", b);
    let prices = demo.join("demo-prices.toml");
    let spawn = |f: &Path| {
        let mut c = sb.bare_command();
        c.arg("--config")
            .arg(&ch_cfg)
            .args(["--prices", path_str(&prices), "ingest", "events"])
            .arg(f)
            .args(["--format", "json"]);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (spawn(&fa), spawn(&fb));
    for p in [pa, pb] {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["ingested"].as_u64(), Some(1000), "{v}");
    }
    // A replica replaying everything (its spool after an outage) adds nothing.
    let replay = run(
        &sb,
        &ch_cfg,
        &[
            "--prices",
            path_str(&prices),
            "ingest",
            "events",
            path_str(&demo.join("events.jsonl")),
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&replay).unwrap();
    assert_eq!(
        (v["ingested"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(2000)),
        "{v}"
    );
    // The same totals as the demo's single SQLite import, byte for byte.
    for args in [
        &[
            "report",
            "summary",
            "--period",
            "2026-10",
            "--by",
            "team,model",
            "--format",
            "csv",
        ][..],
        &["report", "finance", "features", "--period", "2026-10"][..],
    ] {
        assert_eq!(
            without_clock(&run(&sb, &sq_cfg, args)),
            without_clock(&run(&sb, &ch_cfg, args)),
            "{args:?}"
        );
    }
}

/// Two `tollgate serve` replicas with `[ledger] backend = "clickhouse"` and one ClickHouse
/// ledger: each spool appends there (not to a SQLite file in its data directory); every call
/// of both is recorded once, token by token with its cost, and the totals are their sum.
#[test]
fn two_gateways_spool_into_one_clickhouse_ledger() {
    let chdir = tempfile::tempdir().unwrap();
    let ch = Adapter::start(&python(), chdir.path(), None).expect("start the adapter");
    let cfg = format!(
        "[ledger]\nbackend = \"clickhouse\"\nurl = \"{}\"\ndatabase = \"gw\"\n",
        ch.url
    );
    let mut a = crate::gateway::Gw::start(Some(&cfg));
    let mut b = crate::gateway::Gw::start(Some(&cfg));
    let calls = |g: &crate::gateway::Gw, calls: &str| {
        let r = g.py(&format!(
            r#"
import json, openai
c = openai.OpenAI(max_retries=0)
for rid, usage in [{calls}]:
    c.chat.completions.create(model="gw-gpt", messages=[{{"role": "user", "content": "hi"}}],
        extra_headers={{"x-tollgate-request-id": rid, "x-fake-usage": usage,
                       "x-tollgate-feature": "search"}})
print(json.dumps({{"ok": True}}))
"#
        ));
        assert_eq!(r["ok"], true);
    };
    calls(
        &a,
        r#"("ch-1", "prompt_tokens=1200,cached_tokens=200,completion_tokens=300")"#,
    );
    calls(&b, r#"("ch-2", "prompt_tokens=500,completion_tokens=40")"#);
    // SIGTERM flushes each spool into the ledger.
    a.stop();
    b.stop();
    let cfg_path = a.sb.path().join("tollgate.toml");
    let sql = |q: &str| {
        a.sb.run(&[
            "--config",
            path_str(&cfg_path),
            "sql",
            q,
            "--format",
            "json",
        ])
        .json()
    };
    let rows = sql(
        "SELECT request_id, input_tokens, cache_read_tokens, output_tokens, cost, team_id \
         FROM events FINAL ORDER BY request_id",
    );
    let got: Vec<(String, String, String, String, String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| match &r[k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (
                s("request_id"),
                s("input_tokens"),
                s("cache_read_tokens"),
                s("output_tokens"),
                s("cost"),
                s("team_id"),
            )
        })
        .collect();
    // ch-1 (replica a): prompt 1,200 with 200 cached: input 1,000, cache read 200, output
    // 300; 1,000 x 1e-6 + 200 x 0.1e-6 + 300 x 5e-6 = 0.00252. ch-2 (replica b): 500 x 1e-6
    // + 40 x 5e-6 = 0.0005 + 0.0002 = 0.0007.
    let t = |a: &str, b: &str, c: &str, d: &str, e: &str| {
        (
            a.into(),
            b.into(),
            c.into(),
            d.into(),
            e.into(),
            "search".into(),
        )
    };
    assert_eq!(
        got,
        vec![
            t("ch-1", "1000", "200", "300", "0.00252"),
            t("ch-2", "500", "0", "40", "0.0007")
        ]
    );
    // Totals over both replicas: 2 calls, 0.00252 + 0.0007 = 0.00322 USD = 3,220,000,000
    // units of 1e-12.
    let tot = sql("SELECT count() AS n, sum(cost_e12) AS e12 FROM events FINAL");
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    assert_eq!(
        (s(&tot[0]["n"]), s(&tot[0]["e12"])),
        ("2".to_string(), "3220000000".to_string()),
        "{tot}"
    );
    // Nothing went to a SQLite ledger in either data directory.
    for g in [&a, &b] {
        assert!(
            !g.sb.data_dir().join("ledger.sqlite").exists(),
            "a gateway wrote a SQLite ledger"
        );
    }
}

/// ClickHouse down while the gateway serves, and the gateway restarted while it is still
/// down: every client gets its answer, the gateway starts anyway (its leftover spool is
/// replayed in the background), and once ClickHouse is back every call is in the ledger
/// exactly once — one stored row per call, tokens, cost and rollups summed once.
#[test]
fn no_event_is_lost_while_clickhouse_is_down() {
    let chdir = tempfile::tempdir().unwrap();
    let mut ch = Adapter::start(&python(), chdir.path(), None).expect("start the adapter");
    let cfg = format!(
        "[ledger]\nbackend = \"clickhouse\"\nurl = \"{}\"\ndatabase = \"gw\"\n",
        ch.url
    );
    let mut g = crate::gateway::Gw::start(Some(&cfg));
    let cfg_path = g.sb.path().join("tollgate.toml");
    let call = |g: &crate::gateway::Gw, rid: &str, usage: &str| {
        let r = g.py(&format!(
            r#"
import json, openai
c = openai.OpenAI(max_retries=0)
r = c.chat.completions.create(model="gw-gpt", messages=[{{"role": "user", "content": "hi"}}],
    extra_headers={{"x-tollgate-request-id": "{rid}", "x-fake-usage": "{usage}"}})
print(json.dumps({{"completion_tokens": r.usage.completion_tokens}}))
"#
        ));
        r["completion_tokens"].as_u64().unwrap()
    };
    let sql = |g: &crate::gateway::Gw, q: &str| -> Vec<serde_json::Value> {
        g.sb.run(&[
            "--config",
            path_str(&cfg_path),
            "sql",
            q,
            "--format",
            "json",
        ])
        .json()
        .as_array()
        .unwrap()
        .clone()
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // Polls the ledger (ClickHouse is up) until it holds `n` events; the deadline covers the
    // writers' retry backoff (at most 5 s between attempts, each up to 5 tries).
    let wait_for = |g: &crate::gateway::Gw, n: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let rows = sql(g, "SELECT count() AS n FROM events FINAL");
            let got: u64 = text(&rows[0]["n"]).parse().unwrap();
            if got == n {
                return;
            }
            assert!(got < n, "{got} events in the ledger, expected {n}");
            assert!(
                std::time::Instant::now() < deadline,
                "only {got} of {n} events reached the ledger within 120 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };

    assert_eq!(
        call(&g, "out-1", "prompt_tokens=1000,completion_tokens=100"),
        100
    );
    wait_for(&g, 1);

    // ClickHouse goes away: the clients still get their answers; the events wait in the spool.
    ch.kill();
    assert_eq!(
        call(&g, "out-2", "prompt_tokens=2000,completion_tokens=200"),
        200
    );
    assert_eq!(
        call(
            &g,
            "out-3",
            "prompt_tokens=3000,cached_tokens=1000,completion_tokens=300"
        ),
        300
    );
    // The gateway crashes with out-2 and out-3 only in its spool (and out-1, already in the
    // ledger, still in the current segment), and starts again while ClickHouse is still down:
    // it must serve, not refuse to start.
    g.crash();
    g.restart();
    assert_eq!(
        call(&g, "out-4", "prompt_tokens=4000,completion_tokens=400"),
        400
    );

    // ClickHouse is back on the same port and data: the deferred replay (out-1 again, out-2,
    // out-3) and the ledger thread (out-4) get everything in, out-1 not a second time.
    ch.restart().expect("restart the adapter");
    wait_for(&g, 4);
    let err = g.stop();
    assert!(
        err.contains("cannot replay the spool into the ledger yet"),
        "the restart did not defer the replay:\n{err}"
    );
    let rows = sql(
        &g,
        "SELECT request_id, input_tokens, cache_read_tokens, output_tokens, cost \
         FROM events ORDER BY request_id",
    );
    let got: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            [
                "request_id",
                "input_tokens",
                "cache_read_tokens",
                "output_tokens",
                "cost",
            ]
            .iter()
            .map(|k| text(&r[*k]))
            .collect()
        })
        .collect();
    // Rates of gw-gpt: input 1 USD/Mtok, cache read 0.1, output 5. out-1: 1,000 x 1e-6 + 100
    // x 5e-6 = 0.0015; out-2: 0.002 + 0.001 = 0.003; out-3: input 2,000 (3,000 less 1,000
    // cached) x 1e-6 + 1,000 x 0.1e-6 + 300 x 5e-6 = 0.002 + 0.0001 + 0.0015 = 0.0036;
    // out-4: 0.004 + 0.002 = 0.006. One stored row each, without FINAL: nothing was sent twice.
    let row = |a: &str, b: &str, c: &str, d: &str, e: &str| -> Vec<String> {
        [a, b, c, d, e].iter().map(|s| s.to_string()).collect()
    };
    assert_eq!(
        got,
        vec![
            row("out-1", "1000", "0", "100", "0.0015"),
            row("out-2", "2000", "0", "200", "0.003"),
            row("out-3", "2000", "1000", "300", "0.0036"),
            row("out-4", "4000", "0", "400", "0.006"),
        ]
    );
    // The rollups (a materialized view fed by every insert) counted each call once: 4
    // requests, output 100 + 200 + 300 + 400 = 1,000 tokens, cost 0.0015 + 0.003 + 0.0036 +
    // 0.006 = 0.0141 USD = 14,100,000,000 units of 1e-12.
    let tot = sql(
        &g,
        "SELECT sum(requests) AS n, sum(output_tokens) AS o, sum(cost_e12) AS e12 FROM rollups",
    );
    assert_eq!(
        (text(&tot[0]["n"]), text(&tot[0]["o"]), text(&tot[0]["e12"])),
        ("4".into(), "1000".into(), "14100000000".into()),
        "{tot:?}"
    );
}
