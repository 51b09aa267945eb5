//! `tollgate report audit`: the per-call audit CSV.
//!
//! The ledger (seed rates: 0.75 / 0.075 / 4.50 USD per million input / cache read / output
//! tokens until 2026-07-16):
//!
//! | event | occurred_at (UTC)           | tenant | tokens (disjoint classes)             | cost                 |
//! |-------|-----------------------------|--------|---------------------------------------|----------------------|
//! | 1     | 2026-07-10 12:00            | acme   | 2,200 in, 1,200 cache read, 620 out   | 0.00453 (priced)     |
//! | 2     | 2026-07-10 09:00            | beta   | 10 in                                 | 0.123456789012 given |
//! | 3     | 2026-07-11 00:00            | acme   | 1 in                                  | 1 given              |
//! | 4     | 2026-07-09 23:59:59.999999  | acme   | 1 in                                  | 2 given              |
//! | 5     | 2026-07-10 12:00 (= event 1)| acme   | 5,000 in (unknown model)              | unpriced             |
//! | 6     | 2026-07-10 15:30            | acme   | 1,000 in, 300 + 100 cache writes, 50 out | 0.002 given       |
//!
//! Event 1: 2,200 x 0.75e-6 + 1,200 x 0.075e-6 + 620 x 4.50e-6 = 0.00165 + 0.00009 + 0.00279
//! = 0.00453.

use std::path::Path;

use serde_json::json;

use crate::support::{Sandbox, event, event_id, jsonl, path_str};

const HEADER: &str = "ts,request_id,event_id,tenant_id,user_id,team_id,service,feature,environment,provider,model,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost,currency,latency_ms,status,http_status,price_version,pricing_status,attribution_status";

fn ledger() -> Sandbox {
    let sb = Sandbox::new();
    let events = vec![
        event(
            1,
            json!({"occurred_at": "2026-07-10T12:00:00Z", "tenant_id": "acme", "user_id": "u-1",
                   "request_id": "req-1", "latency_ms": 840, "http_status": 200,
                   "input_tokens": 2200, "cache_read_tokens": 1200, "output_tokens": 620}),
        ),
        event(
            2,
            json!({"occurred_at": "2026-07-10T09:00:00Z", "tenant_id": "beta",
                   "request_id": "r,\"2\"", "input_tokens": 10, "cost": "0.123456789012"}),
        ),
        event(
            3,
            json!({"occurred_at": "2026-07-11T00:00:00Z", "tenant_id": "acme", "input_tokens": 1, "cost": "1"}),
        ),
        event(
            4,
            json!({"occurred_at": "2026-07-09T23:59:59.999999Z", "tenant_id": "acme", "input_tokens": 1, "cost": "2"}),
        ),
        event(
            5,
            json!({"occurred_at": "2026-07-10T12:00:00Z", "tenant_id": "acme",
                   "model": "mystery-model", "input_tokens": 5000}),
        ),
        event(
            6,
            json!({"occurred_at": "2026-07-10T15:30:00Z", "tenant_id": "acme", "input_tokens": 1000,
                   "cache_write_tokens": 300, "cache_write_1h_tokens": 100, "output_tokens": 50,
                   "reasoning_tokens": 20, "cost": "0.002"}),
        ),
    ];
    sb.write("events.jsonl", jsonl(&events));
    let s = sb.ingest("events.jsonl");
    assert_eq!(s["ingested"], 6, "{s}");
    sb
}

/// Runs `report audit ARGS --out audit.csv` and returns the file's text.
fn audit(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.path().join("audit.csv");
    let mut a = vec!["report", "audit"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--out", path_str(&out)]);
    sb.run(&a).ok();
    std::fs::read_to_string(&out).expect("audit.csv written")
}

/// The data rows as records (the `#` line and the header skipped).
fn records(text: &str) -> Vec<csv::StringRecord> {
    let mut r = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    assert_eq!(
        r.headers().expect("header").iter().collect::<Vec<_>>(),
        HEADER.split(',').collect::<Vec<_>>()
    );
    r.records().map(|x| x.expect("record")).collect()
}

fn col(rec: &csv::StringRecord, name: &str) -> String {
    let i = HEADER
        .split(',')
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    rec[i].to_string()
}

/// Files in `dir` (names), sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn header_states_the_token_convention_and_rows_are_exact() {
    let sb = ledger();
    let text = audit(&sb, &["--from", "2026-07-10", "--to", "2026-07-11"]);
    let mut lines = text.lines();
    let first = lines.next().expect("comment line");
    assert!(first.starts_with("# Tollgate audit export"), "{first}");
    assert!(
        first.contains("input_tokens = all input tokens = uncached + cache reads + cache writes"),
        "{first}"
    );
    assert!(
        first.contains("cached_input_tokens = cache reads"),
        "{first}"
    );
    assert!(
        first.contains(
            "2026-07-10T00:00:00.000000Z <= occurred_at < 2026-07-11T00:00:00.000000Z (UTC)"
        ),
        "{first}"
    );
    assert!(first.contains("empty when unpriced"), "{first}");
    assert!(
        !first.contains(','),
        "the comment line is one CSV field: {first}"
    );
    assert_eq!(lines.next(), Some(HEADER));

    let rows = records(&text);
    // [2026-07-10, 2026-07-11) UTC: events 2 (09:00), 1 and 5 (both 12:00, in ingest order),
    // 6 (15:30). Event 4 is a microsecond before the start; event 3 is on the excluded end.
    let ids: Vec<String> = rows.iter().map(|r| col(r, "event_id")).collect();
    assert_eq!(
        ids,
        vec![event_id(2), event_id(1), event_id(5), event_id(6)]
    );

    // Event 1: 2,200 uncached + 1,200 cache reads = 3,400 input tokens, of which 1,200 cached;
    // cost exactly 0.00453, as stored.
    let e1 = &rows[1];
    assert_eq!(col(e1, "ts"), "2026-07-10T12:00:00.000000Z");
    assert_eq!(col(e1, "request_id"), "req-1");
    assert_eq!(col(e1, "tenant_id"), "acme");
    assert_eq!(col(e1, "user_id"), "u-1");
    assert_eq!(col(e1, "team_id"), "a");
    assert_eq!(col(e1, "feature"), "answer");
    assert_eq!(col(e1, "provider"), "openai");
    assert_eq!(col(e1, "model"), "seed-model");
    assert_eq!(col(e1, "input_tokens"), "3400");
    assert_eq!(col(e1, "cached_input_tokens"), "1200");
    assert_eq!(col(e1, "cache_write_tokens"), "0");
    assert_eq!(col(e1, "output_tokens"), "620");
    assert_eq!(col(e1, "cost"), "0.00453");
    assert_eq!(col(e1, "currency"), "USD");
    assert_eq!(col(e1, "latency_ms"), "840");
    assert_eq!(col(e1, "status"), "ok");
    assert_eq!(col(e1, "http_status"), "200");
    assert_eq!(col(e1, "pricing_status"), "priced");
    assert_eq!(col(e1, "attribution_status"), "ok");
    let pv = col(e1, "price_version");
    let stored = sb.sql(&format!(
        "SELECT price_version FROM events WHERE event_id = '{}'",
        event_id(1)
    ));
    assert_eq!(stored[0]["price_version"], pv.as_str());
    assert!(!pv.is_empty());

    // Event 2: twelve decimals kept, not rounded; the request id with a comma and quotes
    // survives CSV quoting.
    assert_eq!(col(&rows[0], "cost"), "0.123456789012");
    assert_eq!(col(&rows[0], "request_id"), "r,\"2\"");
    assert!(text.contains(",\"r,\"\"2\"\"\","), "{text}");

    // Event 5: unpriced: an empty cost, never 0.
    let e5 = &rows[2];
    assert_eq!(col(e5, "cost"), "");
    assert_eq!(col(e5, "pricing_status"), "unpriced");
    assert_eq!(col(e5, "price_version"), "");
    assert_eq!(col(e5, "input_tokens"), "5000");

    // Event 6: 1,000 uncached + 300 (5 min) + 100 (1 h) cache writes = 1,400 input tokens;
    // cache writes 400; no cache reads; output 50 including 20 reasoning.
    let e6 = &rows[3];
    assert_eq!(col(e6, "input_tokens"), "1400");
    assert_eq!(col(e6, "cached_input_tokens"), "0");
    assert_eq!(col(e6, "cache_write_tokens"), "400");
    assert_eq!(col(e6, "output_tokens"), "50");
    assert_eq!(col(e6, "reasoning_tokens"), "20");
    assert_eq!(col(e6, "cost"), "0.002");
    // Absent values are empty cells.
    assert_eq!(col(e6, "request_id"), "");
    assert_eq!(col(e6, "user_id"), "");
}

#[test]
fn tenant_filter_and_half_open_instants() {
    let sb = ledger();
    // acme only, [12:00Z, 15:30Z): events 1 and 5 (12:00, start included); event 6 sits on the
    // excluded end; event 2 is beta's.
    let text = audit(
        &sb,
        &[
            "--tenant",
            "acme",
            "--from",
            "2026-07-10T12:00:00Z",
            "--to",
            "2026-07-10T15:30:00Z",
        ],
    );
    assert!(text.lines().next().unwrap().contains("tenant: acme."));
    let ids: Vec<String> = records(&text).iter().map(|r| col(r, "event_id")).collect();
    assert_eq!(ids, vec![event_id(1), event_id(5)]);
    // One microsecond later the end takes event 6 in; an offset is honoured (+02:00).
    let text = audit(
        &sb,
        &[
            "--tenant",
            "acme",
            "--from",
            "2026-07-10T14:00:00+02:00",
            "--to",
            "2026-07-10T15:30:00.000001Z",
        ],
    );
    let ids: Vec<String> = records(&text).iter().map(|r| col(r, "event_id")).collect();
    assert_eq!(ids, vec![event_id(1), event_id(5), event_id(6)]);
}

#[test]
fn dates_are_local_midnights_in_the_time_zone() {
    let sb = ledger();
    // July 10 in Asia/Almaty (UTC+5) = [2026-07-09T19:00Z, 2026-07-10T19:00Z): event 4
    // (23:59:59.999999Z on the 9th) joins; all of the 10th's UTC events are in too.
    let text = audit(
        &sb,
        &[
            "--from",
            "2026-07-10",
            "--to",
            "2026-07-11",
            "--tz",
            "Asia/Almaty",
            "--no-comment",
        ],
    );
    assert!(text.starts_with(HEADER), "no comment line: {text}");
    let rows = records(&text);
    let ids: Vec<String> = rows.iter().map(|r| col(r, "event_id")).collect();
    assert_eq!(
        ids,
        vec![
            event_id(4),
            event_id(2),
            event_id(1),
            event_id(5),
            event_id(6)
        ]
    );
    assert_eq!(col(&rows[0], "ts"), "2026-07-09T23:59:59.999999Z");
}

#[test]
fn a_failed_export_leaves_the_old_file_and_no_temporary_file() {
    let sb = ledger();
    let dir = sb.path().join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("audit.csv");
    std::fs::write(&target, "previous export\n").unwrap();
    let run = |extra: &[&str]| {
        let mut a = vec!["report", "audit", "--out", path_str(&target)];
        a.extend_from_slice(extra);
        sb.run(&a)
    };
    // A bad --to: refused before anything is written.
    let err = run(&["--from", "2026-07-10", "--to", "2026-13-01"])
        .fails()
        .to_string();
    assert!(err.contains("--to") && err.contains("2026-13-01"), "{err}");
    // An empty range (to before from), an unknown zone, an unknown tenant's empty range.
    let err = run(&["--from", "2026-07-11", "--to", "2026-07-10"])
        .fails()
        .to_string();
    assert!(err.contains("must be before --to"), "{err}");
    let err = run(&[
        "--from",
        "2026-07-10",
        "--to",
        "2026-07-11",
        "--tz",
        "Mars/Olympus",
    ])
    .fails()
    .to_string();
    assert!(err.contains("Mars/Olympus"), "{err}");
    let err = run(&[
        "--from",
        "2026-07-10",
        "--to",
        "2026-07-11",
        "--tenant",
        "nobody",
    ])
    .fails()
    .to_string();
    assert!(err.contains("no calls") && err.contains("nobody"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "previous export\n"
    );
    assert_eq!(files(&dir), vec!["audit.csv"]);

    // A failure after every row was written: the target is a directory, so the final rename
    // fails. The temporary file (a full export by then) is removed.
    let busy = dir.join("busy.csv");
    std::fs::create_dir_all(busy.join("inside")).unwrap();
    let err = sb
        .run(&[
            "report",
            "audit",
            "--from",
            "2026-07-10",
            "--to",
            "2026-07-11",
            "--out",
            path_str(&busy),
        ])
        .fails()
        .to_string();
    assert!(err.contains("busy.csv"), "{err}");
    assert_eq!(files(&dir), vec!["audit.csv", "busy.csv"]);
    assert_eq!(files(&busy), vec!["inside"]);
}

#[test]
fn stdout_when_no_out_is_given() {
    let sb = ledger();
    let run = sb.run(&[
        "report",
        "audit",
        "--from",
        "2026-07-10",
        "--to",
        "2026-07-11",
        "--tenant",
        "beta",
    ]);
    let rows = records(run.ok());
    assert_eq!(rows.len(), 1);
    assert_eq!(col(&rows[0], "event_id"), event_id(2));
}
