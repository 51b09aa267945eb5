//! `tollgate reconcile`: one planted difference of each class, found and named; figures by
//! hand; the same inputs give the same output byte for byte.

use serde_json::{Value, json};

use crate::support::{SEED_RATES, Sandbox, event, jsonl, path_str};

/// Unix seconds of 2026-07-DD 00:00:00 UTC (2026-07-01 = 1782864000).
fn day(d: i64) -> i64 {
    1_782_864_000 + (d - 1) * 86_400
}

/// One OpenAI Costs API result: a line item of `model` (input tokens) under an API key.
fn cost(model: &str, key: &str, tokens: u64, dollars: &str) -> Value {
    json!({"object": "organization.costs.result",
           "amount": {"value": dollars.parse::<f64>().unwrap(), "currency": "usd"},
           "line_item": format!("{model}, input"), "project_id": null, "api_key_id": key,
           "quantity": tokens, "quantity_unit": "tokens"})
}

fn bucket(d: i64, results: Vec<Value>) -> Value {
    json!({"object": "bucket", "start_time": day(d), "end_time": day(d + 1), "results": results})
}

const REFDATA: &str = r#"
[[api_key]]
key = "k_search"
team = "a"
cost_center = "CC-A"
[[api_key]]
key = "k_tz"
team = "a"
[[api_key]]
key = "k_notebook"
team = "b"
[[model]]
key = "seed-model-2026-07-01"
model = "seed-model"
provider = "openai"
"#;

fn setup() -> (Sandbox, std::path::PathBuf) {
    let sb = Sandbox::new();
    // Ledger (priced at ingest with SEED_RATES: input 0.75/M until the 16th, 1/M after). Calls
    // of 200,000 input tokens each, so the tier above 200,000 never applies.
    let mut events = Vec::new();
    let mut calls = |at: &str, key: &str, total: u64| {
        for _ in 0..total / 200_000 {
            let n = events.len() as u32 + 1;
            events.push(event(
                n,
                json!({"occurred_at": at, "api_key_id": key, "input_tokens": 200_000}),
            ));
        }
    };
    calls("2026-07-05T12:00:00Z", "k_search", 1_000_000); // 0.75: matches the bill
    calls("2026-07-06T02:00:00Z", "k_tz", 2_000_000); // 1.50: 07-05 22:00 in New York
    calls("2026-07-20T12:00:00Z", "k_search", 2_000_000); // 2.00 (stale: 2.5/M now)
    calls("2026-07-22T12:00:00Z", "k_search", 2_000_000); // 2.00, billed under an alias
    calls("2026-07-24T12:00:00Z", "k_search", 2_000_000); // 2.00, not billed
    calls("2026-07-26T12:00:00Z", "k_search", 2_000_000); // 2.00, billed under k_tz
    calls("2026-07-28T12:00:00Z", "k_search", 2_000_000); // 2.00 (5.00 now), billed 3.50
    sb.write("events.jsonl", jsonl(&events));
    sb.ingest("events.jsonl");
    let m = "seed-model-2026-07-01";
    let bill = json!({"object": "page", "has_more": false, "next_page": null, "data": [
        bucket(5, vec![cost(m, "k_search", 1_000_000, "0.75"),
                       // New York's 07-05: the provider cut the day there.
                       cost(m, "k_tz", 2_000_000, "1.5")]),
        bucket(7, vec![cost(m, "k_mystery", 2_000_000, "1.5")]),
        bucket(8, vec![cost(m, "k_notebook", 4_000_000, "3")]),
        bucket(20, vec![cost(m, "k_search", 2_000_000, "5")]),
        bucket(22, vec![cost("seed-model-x9", "k_search", 2_000_000, "2")]),
        bucket(24, vec![]),
        bucket(26, vec![cost(m, "k_tz", 2_000_000, "2")]),
        bucket(28, vec![cost(m, "k_search", 2_000_000, "3.5")]),
        bucket(31, vec![]),
    ]});
    let f = sb.write("costs.json", bill.to_string());
    sb.run(&["ingest", "bills", "--type", "openai-costs", path_str(&f)])
        .ok();
    let r = sb.write("ref.toml", REFDATA);
    sb.run(&["refdata", "import", path_str(&r), "--by", "test"])
        .ok();
    // The rates in force now: input 2.5/M from the 16th (the ledger still has 1/M).
    let v2 = SEED_RATES.replacen("input_per_mtok = \"1\"", "input_per_mtok = \"2.5\"", 1);
    let v2 = sb.write("rates-v2.toml", v2);
    (sb, v2)
}

fn reconcile(sb: &Sandbox, v2: &std::path::Path, format: &str) -> String {
    sb.run(&[
        "--prices",
        path_str(v2),
        "reconcile",
        "--period",
        "2026-07",
        "--company-tz",
        "America/New_York",
        "--threshold-amount",
        "1",
        "--format",
        format,
    ])
    .ok()
    .to_string()
}

#[test]
fn each_planted_difference_is_found_and_named() {
    let (sb, v2) = setup();
    let out: Value = serde_json::from_str(&reconcile(&sb, &v2, "json")).unwrap();
    let class_of = |d: &str, model: &str, key: &str| -> Value {
        let rows = out["rows"].as_array().unwrap();
        let r = rows
            .iter()
            .find(|r| r["day"] == d && r["model"] == model && r["key"] == key)
            .unwrap_or_else(|| panic!("no row {d} {model} {key}"));
        r["class"].clone()
    };
    let m = "seed-model";
    // 07-05 k_search: 1M at 0.75/M = 0.75 on both sides: not flagged.
    assert_eq!(class_of("2026-07-05", m, "k_search"), Value::Null);
    // 2M at 0.75/M = 1.50 on the bill's 07-05 and the ledger's 07-06 (02:00 UTC); by New York
    // days the ledger has 1.50 on 07-05 and nothing on 07-06, as the bill.
    assert_eq!(class_of("2026-07-05", m, "k_tz"), "timezone_cutoff");
    assert_eq!(class_of("2026-07-06", m, "k_tz"), "timezone_cutoff");
    // k_mystery: no owner, never seen by the gateway: 1.50 > max(3 % of 1.50, 1).
    assert_eq!(class_of("2026-07-07", m, "k_mystery"), "unmapped_key");
    // k_notebook belongs to team b but never went through the gateway: 3.00 billed.
    assert_eq!(class_of("2026-07-08", m, "k_notebook"), "missing_in_ledger");
    // 2M tokens on both sides; ledger 2M x 1/M = 2.00, bill 5.00; at today's 2.5/M the
    // ledger's events cost 2M x 2.5/M = 5.00: the variance disappears.
    assert_eq!(class_of("2026-07-20", m, "k_search"), "stale_rate");
    // Billed as seed-model-x9, which the dictionary lacks; the ledger's 2.00 row is offset by it.
    assert_eq!(
        class_of("2026-07-22", "seed-model-x9", "k_search"),
        "unknown_model_alias"
    );
    assert_eq!(class_of("2026-07-22", m, "k_search"), "unknown_model_alias");
    // 2.00 in the ledger, nothing billed.
    assert_eq!(class_of("2026-07-24", m, "k_search"), "missing_in_bill");
    // The same 2.00 under k_search in the ledger and under k_tz on the bill.
    assert_eq!(class_of("2026-07-26", m, "k_search"), "tagging_failure");
    assert_eq!(class_of("2026-07-26", m, "k_tz"), "tagging_failure");
    // Tokens agree; repriced 5.00 vs billed 3.50 is still 1.50 > 1: the provider's own price.
    assert_eq!(class_of("2026-07-28", m, "k_search"), "provider_delta");
    // Ledger 0.75 + 1.50 + 2 + 2 + 2 + 2 + 2 = 12.25; bill 0.75 + 1.5 + 1.5 + 3 + 5 + 2 + 2
    // + 3.5 = 19.25; variance 7.00. Eleven of twelve rows flagged.
    assert_eq!(out["totals"]["ledger"], "12.25");
    assert_eq!(out["totals"]["bill"], "19.25");
    assert_eq!(out["totals"]["variance"], "7");
    assert_eq!(out["flagged"], 11);
    assert_eq!(out["rows"].as_array().unwrap().len(), 12);
    // Per team: a's bill 0.75 + 1.5 + 5 + 2 + 2 + 3.5 = 14.75 against its 12.25; b 3.00 billed
    // (no ledger); 1.50 without an owner.
    let teams = out["teams"].as_array().unwrap();
    let team = |t: &str| teams.iter().find(|x| x["team"] == t).unwrap().clone();
    assert_eq!(team("a")["bill"], "14.75");
    assert_eq!(team("a")["variance"], "2.5");
    assert_eq!(team("b")["bill"], "3");
    assert_eq!(team("")["bill"], "1.5");
}

#[test]
fn reruns_are_identical_and_formats_agree() {
    let (sb, v2) = setup();
    let a = reconcile(&sb, &v2, "csv");
    let b = reconcile(&sb, &v2, "csv");
    assert_eq!(a, b);
    assert_eq!(a.lines().count(), 13); // header + 12 rows
    let t = reconcile(&sb, &v2, "table");
    assert!(t.contains("stale_rate"), "{t}");
    assert!(t.contains("Flagged rows (11 of 12)"), "{t}");
    let report = sb.path().join("variance.txt");
    sb.run(&[
        "--prices",
        path_str(&v2),
        "reconcile",
        "--period",
        "2026-07",
        "--company-tz",
        "America/New_York",
        "--threshold-amount",
        "1",
        "--report",
        path_str(&report),
    ])
    .ok();
    // The PDF variance report is one page.
    let pdf = sb.path().join("variance.pdf");
    sb.run(&[
        "--prices",
        path_str(&v2),
        "reconcile",
        "--period",
        "2026-07",
        "--threshold-amount",
        "1",
        "--report",
        path_str(&pdf),
    ])
    .ok();
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF"));
    assert_eq!(crate::cfo::pages(&bytes), 1);
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("VARIANCE REPORT 2026-07"), "{text}");
    assert!(
        text.contains("Ledger          12.25   Bills          19.25   Variance           7.00 USD"),
        "{text}"
    );
}

#[test]
fn defaults_flag_only_above_500_dollars_and_no_bill_is_an_error() {
    let (sb, v2) = setup();
    // With the default max(3 %, 500) nothing this small is flagged.
    let out: Value = serde_json::from_str(
        sb.run(&[
            "--prices",
            path_str(&v2),
            "reconcile",
            "--period",
            "2026-07",
            "--format",
            "json",
        ])
        .ok(),
    )
    .unwrap();
    assert_eq!(out["flagged"], 0);
    assert_eq!(out["thresholds"]["amount"], "500");
    let err = sb
        .run(&["reconcile", "--period", "2026-08"])
        .fails()
        .to_string();
    assert!(err.contains("no bill in the ledger for 2026-08"), "{err}");
}

/// The demo plants four discrepancies in the bills of its own traffic; its reconciliation names
/// each one, and only those classes appear.
#[test]
fn the_demo_finds_and_names_its_planted_discrepancies() {
    let sb = Sandbox::new();
    let dir = sb.path().join("demo");
    let out = sb
        .run(&["demo", "--dir", path_str(&dir), "--events", "20000"])
        .ok()
        .to_string();
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("reports/reconcile-2026-10.json")).unwrap(),
    )
    .unwrap();
    let rows = rec["rows"].as_array().unwrap();
    let class_of = |key: &str, day: &str| -> Vec<Value> {
        rows.iter()
            .filter(|r| r["key"] == key && r["day"] == day && r["flagged"] == true)
            .map(|r| r["class"].clone())
            .collect()
    };
    // key_legacy_etl: 2M gpt-4o input tokens at 2.50/M = 5.00 on each of the 7th-9th.
    for d in ["07", "08", "09"] {
        assert_eq!(
            class_of("key_legacy_etl", &format!("2026-10-{d}")),
            vec!["unmapped_key"]
        );
    }
    let legacy = rows.iter().find(|r| r["key"] == "key_legacy_etl").unwrap();
    assert_eq!(legacy["bill"]["cost"], "5");
    // The notebook's gpt-5 calls on the 21st-22nd, owned by team-analytics.
    for d in ["21", "22"] {
        assert_eq!(
            class_of("key_analytics_notebook", &format!("2026-10-{d}")),
            vec!["missing_in_ledger"]
        );
    }
    // Sonnet from the 25th: some rows flagged, every flagged one a stale rate.
    let sonnet: Vec<&Value> = rows
        .iter()
        .filter(|r| r["model"] == "claude-sonnet-4-5" && r["flagged"] == true)
        .collect();
    assert!(!sonnet.is_empty());
    assert!(
        sonnet
            .iter()
            .all(|r| r["class"] == "stale_rate" && r["day"].as_str().unwrap() >= "2026-10-25")
    );
    // The Tokyo-cut OpenAI days: some flagged rows, all timezone_cutoff.
    assert!(rec["classes"]["timezone_cutoff"].as_u64().unwrap() > 0);
    for c in [
        "unknown_model_alias",
        "missing_in_bill",
        "tagging_failure",
        "provider_delta",
    ] {
        assert_eq!(rec["classes"][c], 0, "{c}");
    }
    assert!(out.contains("-> unmapped_key (3 rows)"), "{out}");
    assert!(out.contains("reports/variance-2026-10.txt"), "{out}");
}
