//! `tollgate report summary`.
//!
//! The events carry their costs explicitly, so every figure is known exactly:
//!
//! | event | when (UTC)            | team | cost    | note                         |
//! |-------|-----------------------|------|---------|------------------------------|
//! | 1     | 2026-07-05 10:00      | a    | 0.125   |                              |
//! | 2     | 2026-07-06 10:00      | a    | 0.125   |                              |
//! | 3     | 2026-07-07 10:00      | b    | 0.125   |                              |
//! | 4     | 2026-07-08 10:00      | c    | 0.005   |                              |
//! | 5     | 2026-07-09 10:00      | -    | 0.004   | no team_id: quarantined      |
//! | 6     | 2026-07-10 10:00      | a    | -       | unknown model: unpriced      |
//! | 7     | 2026-06-30 19:30      | d    | 0.01    | July in Almaty, June in UTC  |
//! | 8     | 2026-08-01 00:00      | a    | 1       | August in UTC (end excluded) |

use serde_json::{Value, json};

use crate::support::{Sandbox, event, jsonl, path_str};

fn ledger() -> Sandbox {
    let sb = Sandbox::new();
    let at = |d: &str| format!("2026-07-{d}T10:00:00Z");
    let events = vec![
        event(
            1,
            json!({"occurred_at": at("05"), "cost": "0.125", "input_tokens": 100, "output_tokens": 10}),
        ),
        event(
            2,
            json!({"occurred_at": at("06"), "cost": "0.125", "input_tokens": 200, "output_tokens": 20}),
        ),
        event(
            3,
            json!({"occurred_at": at("07"), "team_id": "b", "cost": "0.125"}),
        ),
        event(
            4,
            json!({"occurred_at": at("08"), "team_id": "c", "cost": "0.005"}),
        ),
        event(
            5,
            json!({"occurred_at": at("09"), "team_id": null, "cost": "0.004"}),
        ),
        event(
            6,
            json!({"occurred_at": at("10"), "model": "mystery-model", "input_tokens": 1000}),
        ),
        event(
            7,
            json!({"occurred_at": "2026-06-30T19:30:00Z", "team_id": "d", "cost": "0.01"}),
        ),
        event(
            8,
            json!({"occurred_at": "2026-08-01T00:00:00Z", "cost": "1"}),
        ),
    ];
    sb.write("events.jsonl", jsonl(&events));
    let s = sb.ingest("events.jsonl");
    assert_eq!(s["ingested"], 8, "{s}");
    sb
}

fn summary(sb: &Sandbox, extra: &[&str]) -> Value {
    let mut args = vec![
        "report", "summary", "--period", "2026-07", "--by", "team", "--format", "json",
    ];
    args.extend_from_slice(extra);
    sb.run(&args).json()
}

/// The row for `team` with `status`.
fn row<'a>(doc: &'a Value, team: Value, status: &str) -> &'a Value {
    doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["team"] == team && r["status"] == status)
        .unwrap_or_else(|| panic!("no row team={team} status={status} in {doc:#}"))
}

#[test]
fn july_utc_by_team() {
    let sb = ledger();
    let doc = summary(&sb, &[]);
    assert_eq!(doc["currency"], "USD");
    assert_eq!(doc["period"]["start"], "2026-07-01T00:00:00.000000Z");
    assert_eq!(doc["period"]["end"], "2026-08-01T00:00:00.000000Z");
    // a, b, c (ok), quarantined, unpriced: five rows; d (June 30 UTC) and event 8 (August)
    // are outside the period.
    assert_eq!(doc["rows"].as_array().unwrap().len(), 5, "{doc:#}");

    // a: 0.125 + 0.125 = 0.25
    let a = row(&doc, json!("a"), "ok");
    assert_eq!(a["cost"], "0.25");
    assert_eq!(a["requests"], 2);
    assert_eq!(a["input_tokens"], 300); // 100 + 200
    assert_eq!(a["output_tokens"], 30); // 10 + 20
    // b: 0.125 rounds half away from zero to 0.13
    assert_eq!(row(&doc, json!("b"), "ok")["cost"], "0.13");
    // c: 0.005 rounds half away from zero to 0.01
    assert_eq!(row(&doc, json!("c"), "ok")["cost"], "0.01");
    // Quarantined usage is its own row (no team): 0.004 shows as 0.00
    let q = row(&doc, Value::Null, "quarantined");
    assert_eq!(q["cost"], "0.00");
    assert_eq!(q["requests"], 1);
    // Unpriced usage is its own row, with no cost (not 0) but its tokens.
    let u = row(&doc, json!("a"), "unpriced");
    assert_eq!(u["cost"], Value::Null);
    assert_eq!(u["requests"], 1);
    assert_eq!(u["input_tokens"], 1000);

    // The total is the sum of the displayed rows: 0.25 + 0.13 + 0.01 + 0.00 = 0.39
    // (rounding the exact sum 0.25 + 0.125 + 0.005 + 0.004 = 0.384 would give 0.38).
    assert_eq!(doc["total"]["cost"], "0.39", "{:#}", doc["total"]);
    // Every event of the period counts as a request: 2 + 1 + 1 + 1 + 1 = 6.
    assert_eq!(doc["total"]["requests"], 6);
    assert_eq!(doc["total"]["unpriced_requests"], 1);
    assert_eq!(doc["total"]["input_tokens"], 1300); // 100 + 200 + 1000
}

#[test]
fn july_in_almaty_starts_at_19_00_utc_on_june_30() {
    let sb = ledger();
    let doc = summary(&sb, &["--tz", "Asia/Almaty"]);
    assert_eq!(doc["period"]["start"], "2026-06-30T19:00:00.000000Z");
    assert_eq!(doc["period"]["end"], "2026-07-31T19:00:00.000000Z");
    assert_eq!(doc["period"]["timezone"], "Asia/Almaty");
    // Event 7 (2026-06-30T19:30Z) is July 1, 00:30 in Almaty: team d, 0.01.
    let d = row(&doc, json!("d"), "ok");
    assert_eq!(d["cost"], "0.01");
    assert_eq!(d["requests"], 1);
    // Total: 0.25 + 0.13 + 0.01 (c) + 0.01 (d) + 0.00 = 0.40; requests 6 + 1 = 7.
    assert_eq!(doc["total"]["cost"], "0.40");
    assert_eq!(doc["total"]["requests"], 7);

    // ...and it is not in the July UTC report.
    let utc = summary(&sb, &["--tz", "UTC"]);
    assert!(
        utc["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["team"] != "d"),
        "{utc:#}"
    );
}

#[test]
fn converted_to_kzt_at_a_fixed_rate() {
    let sb = ledger();
    let doc = summary(&sb, &["--currency", "KZT", "--fx-rate", "510.25"]);
    assert_eq!(doc["currency"], "KZT");
    // a: 0.25 x 510.25 = 127.5625 -> 127.56
    assert_eq!(row(&doc, json!("a"), "ok")["cost"], "127.56");
    // b: 0.125 x 510.25 = 63.78125 -> 63.78
    assert_eq!(row(&doc, json!("b"), "ok")["cost"], "63.78");
    // c: 0.005 x 510.25 = 2.55125 -> 2.55
    assert_eq!(row(&doc, json!("c"), "ok")["cost"], "2.55");
    // quarantined: 0.004 x 510.25 = 2.041 -> 2.04
    assert_eq!(row(&doc, Value::Null, "quarantined")["cost"], "2.04");
    assert_eq!(row(&doc, json!("a"), "unpriced")["cost"], Value::Null);
    // Total = 127.56 + 63.78 + 2.55 + 2.04 = 195.93
    // (the exact 0.384 x 510.25 = 195.936 would round to 195.94).
    assert_eq!(doc["total"]["cost"], "195.93");
    let rule = doc["fx"]["rule"].as_str().expect("fx rule");
    assert!(rule.contains("510.25 KZT/USD"), "{rule}");
    assert_eq!(doc["fx"]["rate"], "510.25");

    // The table header states the rule too.
    let table = sb.run(&[
        "report",
        "summary",
        "--period",
        "2026-07",
        "--by",
        "team",
        "--currency",
        "KZT",
        "--fx-rate",
        "510.25",
    ]);
    let text = table.ok();
    assert!(
        text.contains("converted from USD at 510.25 KZT/USD for the whole period"),
        "{text}"
    );
    assert!(text.contains("195.93"), "{text}");
}

#[test]
fn csv_has_a_total_row() {
    let sb = ledger();
    let out = sb.run(&[
        "report", "summary", "--period", "2026-07", "--by", "team", "--format", "csv",
    ]);
    let text = out.ok();
    let total = text
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .unwrap_or_else(|| panic!("no TOTAL row:\n{text}"));
    // Same total as the JSON: 0.39 over 6 requests.
    let cells: Vec<&str> = total.split(',').collect();
    assert_eq!(cells.last(), Some(&"0.39"), "{total}");
    assert!(cells.contains(&"6"), "{total}");
    // The column header line and the rows are there.
    assert!(
        text.lines().any(|l| l.starts_with("team,status,requests")),
        "{text}"
    );
}

#[test]
fn xlsx_is_written_to_out() {
    let sb = ledger();
    let out = sb.path().join("f.xlsx");
    sb.run(&[
        "report",
        "summary",
        "--period",
        "2026-07",
        "--by",
        "team",
        "--format",
        "xlsx",
        "--out",
        path_str(&out),
    ])
    .ok();
    let bytes = std::fs::read(&out).expect("f.xlsx written");
    assert!(bytes.starts_with(b"PK"), "not a zip (xlsx) file");
}

#[test]
fn json_to_out_matches_stdout() {
    let sb = ledger();
    let out = sb.path().join("r/summary.json");
    sb.run(&[
        "report",
        "summary",
        "--period",
        "2026-07",
        "--by",
        "team",
        "--format",
        "json",
        "--out",
        path_str(&out),
    ])
    .ok();
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).expect("written")).expect("json");
    assert_eq!(doc["total"]["cost"], "0.39");
}

#[test]
fn unknown_dimension_is_named() {
    let sb = ledger();
    let err = sb
        .run(&[
            "report", "summary", "--period", "2026-07", "--by", "nonsense",
        ])
        .fails()
        .to_string();
    assert!(err.contains("nonsense"), "{err}");
}

#[test]
fn by_model_splits_rows_by_price_version() {
    // A price change inside the month: the seed-model rows split at 2026-07-16.
    let sb = Sandbox::new();
    sb.write(
        "events.jsonl",
        jsonl(&[
            // 200,000 input (not above the tier threshold) x 0.75 / 1e6 = 0.15
            event(
                1,
                json!({"occurred_at": "2026-07-15T23:59:59.999999Z", "input_tokens": 200_000}),
            ),
            // 200,000 input x 1 / 1e6 = 0.2 (second period, from 2026-07-16)
            event(
                2,
                json!({"occurred_at": "2026-07-16T00:00:00Z", "input_tokens": 200_000}),
            ),
        ]),
    );
    sb.ingest("events.jsonl");
    let doc = sb
        .run(&[
            "report", "summary", "--period", "2026-07", "--by", "model", "--format", "json",
        ])
        .json();
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{doc:#}");
    let mut costs: Vec<&str> = rows.iter().filter_map(|r| r["cost"].as_str()).collect();
    costs.sort();
    assert_eq!(costs, ["0.15", "0.20"]);
    // Total: 0.15 + 0.20 = 0.35
    assert_eq!(doc["total"]["cost"], "0.35");
    assert_eq!(
        doc["price_versions"].as_array().map(Vec::len),
        Some(2),
        "{doc:#}"
    );
}

#[test]
fn fx_rate_without_currency_is_refused() {
    let sb = ledger();
    let err = sb
        .run(&[
            "report",
            "summary",
            "--period",
            "2026-07",
            "--fx-rate",
            "510.25",
        ])
        .fails()
        .to_string();
    assert!(err.contains("--currency"), "{err}");
}

#[test]
fn yen_has_no_minor_unit() {
    let sb = ledger();
    let doc = summary(&sb, &["--currency", "JPY", "--fx-rate", "150"]);
    // a: 0.25 x 150 = 37.5 -> 38 (half away from zero, 0 decimals)
    assert_eq!(row(&doc, json!("a"), "ok")["cost"], "38", "{doc:#}");
    // b: 0.125 x 150 = 18.75 -> 19
    assert_eq!(row(&doc, json!("b"), "ok")["cost"], "19");
    // c: 0.005 x 150 = 0.75 -> 1
    assert_eq!(row(&doc, json!("c"), "ok")["cost"], "1");
    // quarantined: 0.004 x 150 = 0.6 -> 1
    assert_eq!(row(&doc, Value::Null, "quarantined")["cost"], "1");
    // Total of the rows shown: 38 + 19 + 1 + 1 = 59 (the exact 57.6 would round to 58).
    assert_eq!(doc["total"]["cost"], "59");
}

#[test]
fn table_total_is_the_sum_of_the_rows_shown() {
    let sb = ledger();
    let text = sb
        .run(&["report", "summary", "--period", "2026-07", "--by", "team"])
        .ok()
        .to_string();
    let total = text
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .expect("TOTAL line");
    // 0.25 + 0.13 + 0.01 + 0.00 = 0.39 over 6 requests (see july_utc_by_team).
    assert!(total.trim_end().ends_with(" 0.39"), "{total}");
    assert!(text.contains("Period: 2026-07 in UTC = [2026-07-01T00:00:00.000000Z, 2026-08-01T00:00:00.000000Z) UTC"), "{text}");
    assert!(text.contains("unpriced"), "{text}");
    assert!(text.contains("quarantined"), "{text}");
}

#[test]
fn a_day_period() {
    let sb = ledger();
    let doc = sb
        .run(&[
            "report",
            "summary",
            "--period",
            "2026-07-05",
            "--by",
            "team",
            "--format",
            "json",
        ])
        .json();
    assert_eq!(doc["period"]["start"], "2026-07-05T00:00:00.000000Z");
    assert_eq!(doc["period"]["end"], "2026-07-06T00:00:00.000000Z");
    // Only event 1: 0.125 -> 0.13
    assert_eq!(doc["total"]["requests"], 1, "{doc:#}");
    assert_eq!(doc["total"]["cost"], "0.13");
}

#[test]
fn half_hour_time_zone_bounds_are_exact() {
    // Asia/Kolkata is UTC+05:30: July there is [2026-06-30T18:30Z, 2026-07-31T18:30Z), whose
    // bounds fall in the middle of UTC hours.
    let sb = Sandbox::new();
    let at = |n: u32, t: &str, cost: &str| event(n, json!({"occurred_at": t, "cost": cost}));
    sb.write(
        "events.jsonl",
        jsonl(&[
            at(1, "2026-06-30T18:15:00Z", "1"),     // June 30, 23:45 IST: out
            at(2, "2026-06-30T18:45:00Z", "0.1"),   // July 1, 00:15 IST: in
            at(3, "2026-07-15T12:00:00Z", "0.01"),  // mid-month: in
            at(4, "2026-07-31T18:15:00Z", "0.001"), // July 31, 23:45 IST: in
            at(5, "2026-07-31T18:45:00Z", "10"),    // August 1, 00:15 IST: out
        ]),
    );
    sb.ingest("events.jsonl");
    let doc = summary(&sb, &["--tz", "Asia/Kolkata"]);
    assert_eq!(doc["period"]["start"], "2026-06-30T18:30:00.000000Z");
    assert_eq!(doc["period"]["end"], "2026-07-31T18:30:00.000000Z");
    // Exactly events 2, 3 and 4: 0.1 + 0.01 + 0.001 = 0.111 (shown as 0.11).
    assert_eq!(doc["total"]["requests"], 3, "{doc:#}");
    assert_eq!(doc["total"]["cost_exact"], "0.111");
    assert_eq!(doc["total"]["cost"], "0.11");
}

#[test]
fn dst_month_in_new_york() {
    // March 2026 in America/New_York: starts at 00:00 EST (UTC-5) and ends at 00:00 EDT
    // (UTC-4) on April 1, after the DST change of March 8.
    let sb = ledger();
    let doc = sb
        .run(&[
            "report",
            "summary",
            "--period",
            "2026-03",
            "--tz",
            "America/New_York",
            "--format",
            "json",
        ])
        .json();
    assert_eq!(doc["period"]["start"], "2026-03-01T05:00:00.000000Z");
    assert_eq!(doc["period"]["end"], "2026-04-01T04:00:00.000000Z");
    assert_eq!(doc["total"]["requests"], 0);
    assert_eq!(doc["total"]["cost"], "0.00");

    // The spring-forward day has 23 hours (05:00Z to 04:00Z), the fall-back day 25
    // (04:00Z to 05:00Z).
    for (day, start, end) in [
        (
            "2026-03-08",
            "2026-03-08T05:00:00.000000Z",
            "2026-03-09T04:00:00.000000Z",
        ),
        (
            "2026-11-01",
            "2026-11-01T04:00:00.000000Z",
            "2026-11-02T05:00:00.000000Z",
        ),
    ] {
        let doc = sb
            .run(&[
                "report",
                "summary",
                "--period",
                day,
                "--tz",
                "America/New_York",
                "--format",
                "json",
            ])
            .json();
        assert_eq!(doc["period"]["start"], start, "{day}");
        assert_eq!(doc["period"]["end"], end, "{day}");
    }
}

#[test]
fn an_explicit_currency_must_match_the_ledger() {
    // Costs in the fixture are USD: asking for USD works; asking for EUR without a rate is
    // refused rather than printing USD amounts under a EUR header.
    let sb = ledger();
    sb.run(&[
        "report",
        "summary",
        "--period",
        "2026-07",
        "--currency",
        "USD",
        "--format",
        "json",
    ])
    .ok();
    let err = sb
        .run(&[
            "report",
            "summary",
            "--period",
            "2026-07",
            "--currency",
            "EUR",
        ])
        .fails()
        .to_string();
    assert!(err.contains("EUR") && err.contains("--fx-rate"), "{err}");
}

#[test]
fn ingest_summary_formats_are_table_or_json() {
    let sb = Sandbox::new();
    sb.write("e.jsonl", jsonl(&[event(1, json!({}))]));
    let err = sb
        .run(&["ingest", "events", "e.jsonl", "--format", "csv"])
        .fails()
        .to_string();
    assert!(err.contains("--format csv"), "{err}");
    // Refused before the import: no ledger was even created.
    assert!(!sb.data_dir().join("ledger.sqlite").exists());
}
