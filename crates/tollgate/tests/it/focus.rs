//! `tollgate report focus`: the FOCUS 1.3 Cost and Usage export.
//!
//! The ledger (seed rates: 0.75 / 0.075 / 4.50 USD per million input / cache read / output
//! tokens and 0.01 per web search until 2026-07-16, then 1 / 0.1 / 5):
//!
//! | event | occurred_at (UTC) | team | usage                                   | cost                               |
//! |-------|-------------------|------|-----------------------------------------|------------------------------------|
//! | 1     | 07-10 12:00       | a    | 2,200 in, 1,200 cache read, 620 out     | 0.00165 + 0.00009 + 0.00279 = 0.00453 |
//! | 2     | 07-14 13:00       | a    | 1,000 in, 100 out (feature `other`)     | 0.00075 + 0.00045 = 0.0012         |
//! | 3     | 07-11 08:00       | -    | cost given without breakdown            | 0.004, quarantined                 |
//! | 4     | 07-12 08:00       | a    | 5,000 in, unknown model                 | unpriced                           |
//! | 5     | 06-30 19:30       | d    | cost given                              | 0.01 (July in Almaty, June in UTC) |
//! | 6     | 07-20 08:00       | a    | 1,000 in, 200 out (second rate period)  | 0.001 + 0.001 = 0.002              |
//! | 7     | 07-12 09:00       | a    | 100 in, 2 web searches                  | 0.000075 + 0.02 = 0.020075         |
//!
//! July in UTC: 0.00453 + 0.0012 + 0.004 + 0.002 + 0.020075 = 0.031805.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::support::{Sandbox, event, event_id, jsonl, path_str};

fn ledger() -> Sandbox {
    let sb = Sandbox::new();
    let events = vec![
        event(
            1,
            json!({"occurred_at": "2026-07-10T12:00:00Z",
                   "input_tokens": 2200, "cache_read_tokens": 1200, "output_tokens": 620}),
        ),
        event(
            2,
            json!({"occurred_at": "2026-07-14T13:00:00Z", "feature": "other",
                   "input_tokens": 1000, "output_tokens": 100}),
        ),
        event(
            3,
            json!({"occurred_at": "2026-07-11T08:00:00Z", "team_id": null, "cost": "0.004"}),
        ),
        event(
            4,
            json!({"occurred_at": "2026-07-12T08:00:00Z", "model": "mystery-model", "input_tokens": 5000}),
        ),
        event(
            5,
            json!({"occurred_at": "2026-06-30T19:30:00Z", "team_id": "d", "cost": "0.01"}),
        ),
        event(
            6,
            json!({"occurred_at": "2026-07-20T08:00:00Z", "input_tokens": 1000, "output_tokens": 200}),
        ),
        event(
            7,
            json!({"occurred_at": "2026-07-12T09:00:00Z", "input_tokens": 100,
                   "units": {"web_search_requests": 2}}),
        ),
    ];
    sb.write("events.jsonl", jsonl(&events));
    let s = sb.ingest("events.jsonl");
    assert_eq!(s["ingested"], 7, "{s}");
    sb
}

type Row = HashMap<String, String>;

/// Runs the export to a file and returns (header, rows by column name).
fn focus(sb: &Sandbox, extra: &[&str]) -> (Vec<String>, Vec<Row>) {
    let out = sb.path().join("focus.csv");
    let mut a = vec![
        "report",
        "focus",
        "--period",
        "2026-07",
        "--out",
        path_str(&out),
    ];
    a.extend_from_slice(extra);
    sb.run(&a).ok();
    let text = std::fs::read_to_string(&out).expect("focus.csv written");
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.expect("record");
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect();
    (header, rows)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// Sum of a money column over rows (empty cells skipped).
fn sum(rows: &[&Row], col: &str) -> Decimal {
    rows.iter()
        .filter(|r| !r[col].is_empty())
        .map(|r| dec(&r[col]))
        .sum()
}

const FOCUS_1_3: [&str; 65] = [
    "AllocatedMethodDetails",
    "AllocatedMethodId",
    "AllocatedResourceId",
    "AllocatedResourceName",
    "AllocatedTags",
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractApplied",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "HostProviderName",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceProviderName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
];

#[test]
fn all_focus_columns_then_x_columns() {
    let sb = ledger();
    let (header, rows) = focus(&sb, &[]);
    assert_eq!(&header[..65], &FOCUS_1_3[..]);
    for x in [
        "x_Model",
        "x_TokenClass",
        "x_Team",
        "x_Service",
        "x_Feature",
        "x_Environment",
        "x_Tenant",
        "x_CostCenter",
        "x_PricingStatus",
        "x_AttributionStatus",
        "x_RequestCount",
    ] {
        assert!(header.iter().any(|h| h == x), "missing {x}");
    }
    assert!(header[65..].iter().all(|h| h.starts_with("x_")));
    for r in &rows {
        assert_eq!(r["ChargeCategory"], "Usage");
        assert_eq!(r["ChargeClass"], "");
        assert_eq!(r["ChargeFrequency"], "Usage-Based");
        assert_eq!(r["BillingCurrency"], "USD");
        assert_eq!(r["BillingPeriodStart"], "2026-07-01T00:00:00Z");
        assert_eq!(r["BillingPeriodEnd"], "2026-08-01T00:00:00Z");
        assert_eq!(r["ServiceCategory"], "AI and Machine Learning");
        assert_eq!(r["ServiceSubcategory"], "Generative AI");
        assert_eq!(r["ProviderName"], "OpenAI");
        assert_eq!(r["ServiceName"], "OpenAI API");
        assert_eq!(r["InvoiceIssuerName"], "OpenAI");
        // The four cost columns agree (Tollgate knows one price).
        for c in ["EffectiveCost", "ListCost", "ContractedCost"] {
            assert_eq!(r[c], r["BilledCost"], "{c}");
        }
    }
    // Requests: x_RequestCount is on one row per group, so it sums to the 6 July calls.
    let requests: u64 = rows
        .iter()
        .filter(|r| !r["x_RequestCount"].is_empty())
        .map(|r| r["x_RequestCount"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(requests, 6);
}

#[test]
fn a_known_event_is_split_per_token_class_and_adds_up() {
    let sb = ledger();
    let (_, rows) = focus(&sb, &[]);
    // Event 1 is alone in its day and group: three rows, input, cache_read, output.
    let e1: Vec<&Row> = rows
        .iter()
        .filter(|r| r["ChargePeriodStart"] == "2026-07-10T00:00:00Z")
        .collect();
    let classes: Vec<&str> = e1.iter().map(|r| r["x_TokenClass"].as_str()).collect();
    assert_eq!(classes, vec!["input", "cache_read", "output"]);
    assert!(
        e1.iter()
            .all(|r| r["ChargePeriodEnd"] == "2026-07-11T00:00:00Z")
    );
    let get = |class: &str, col: &str| {
        e1.iter().find(|r| r["x_TokenClass"] == class).unwrap()[col].clone()
    };
    // 2,200 x 0.75e-6 = 0.00165; 1,200 x 0.075e-6 = 0.00009; 620 x 4.50e-6 = 0.00279.
    assert_eq!(get("input", "BilledCost"), "0.00165");
    assert_eq!(get("cache_read", "BilledCost"), "0.00009");
    assert_eq!(get("output", "BilledCost"), "0.00279");
    assert_eq!(get("input", "ConsumedQuantity"), "2200");
    assert_eq!(get("cache_read", "ConsumedQuantity"), "1200");
    assert_eq!(get("output", "ConsumedQuantity"), "620");
    assert_eq!(get("input", "ConsumedUnit"), "Tokens");
    // Per-million pricing: 2,200 tokens = 0.0022 million at 0.75 = 0.00165 (the identity
    // ListCost = ListUnitPrice x PricingQuantity holds).
    assert_eq!(get("input", "PricingUnit"), "1000000 Tokens");
    assert_eq!(get("input", "PricingQuantity"), "0.0022");
    assert_eq!(get("input", "ListUnitPrice"), "0.75");
    assert_eq!(get("cache_read", "PricingQuantity"), "0.0012");
    assert_eq!(get("cache_read", "ListUnitPrice"), "0.075");
    assert_eq!(get("output", "PricingQuantity"), "0.00062");
    assert_eq!(get("output", "ListUnitPrice"), "4.5");
    assert_eq!(get("output", "SkuMeter"), "Output Tokens");
    assert_eq!(get("input", "x_RequestCount"), "1");
    assert_eq!(get("output", "x_RequestCount"), "");
    // The split adds up to the event's stored cost.
    let stored = sb.sql(&format!(
        "SELECT cost, price_version FROM events WHERE event_id = '{}'",
        event_id(1)
    ));
    assert_eq!(stored[0]["cost"], "0.00453");
    assert_eq!(sum(&e1, "BilledCost"), dec("0.00453"));
    // SKU price = the rate version that priced it, per class.
    let pv = stored[0]["price_version"].as_str().unwrap();
    assert_eq!(get("input", "SkuPriceId"), format!("{pv}:input"));
    assert_eq!(get("input", "x_PriceVersion"), pv);
    assert_eq!(get("input", "SkuId"), "openai/seed-model:input");
    // Attribution: Tags JSON and x_ columns.
    let tags: Value = serde_json::from_str(&get("input", "Tags")).unwrap();
    assert_eq!(
        tags,
        json!({"team": "a", "service": "chat", "feature": "answer", "environment": "prod"})
    );
    assert_eq!(get("input", "x_Team"), "a");
    assert_eq!(get("input", "x_Feature"), "answer");
    assert_eq!(get("input", "x_Model"), "seed-model");
    assert_eq!(get("input", "x_AttributionStatus"), "ok");
    assert_eq!(get("input", "x_PricingStatus"), "priced");
    let details: Value = serde_json::from_str(&get("input", "SkuPriceDetails")).unwrap();
    assert_eq!(details["x_TokenClass"], "input");

    // Event 7: a unit class row with its own unit and rate: 2 x 0.01 = 0.02.
    let web = rows
        .iter()
        .find(|r| r["x_TokenClass"] == "web_search_requests")
        .unwrap();
    assert_eq!(web["ConsumedQuantity"], "2");
    assert_eq!(web["ConsumedUnit"], "Requests");
    assert_eq!(web["PricingUnit"], "Requests");
    assert_eq!(web["BilledCost"], "0.02");
    assert_eq!(web["ListUnitPrice"], "0.01");
    assert_eq!(web["ChargePeriodStart"], "2026-07-12T00:00:00Z");
}

#[test]
fn quarantined_and_unpriced_usage_appear() {
    let sb = ledger();
    let (_, rows) = focus(&sb, &[]);
    // Event 4: unpriced: its tokens, and no cost at all (empty, never 0).
    let u: Vec<&Row> = rows
        .iter()
        .filter(|r| r["x_PricingStatus"] == "unpriced")
        .collect();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0]["x_Model"], "mystery-model");
    assert_eq!(u[0]["ConsumedQuantity"], "5000");
    for c in ["BilledCost", "EffectiveCost", "ListCost", "ContractedCost"] {
        assert_eq!(u[0][c], "", "{c}");
    }
    assert_eq!(u[0]["SkuPriceId"], "");
    // Event 3: quarantined, its whole cost in class `other` (imported without a breakdown),
    // no quantity.
    let q: Vec<&Row> = rows
        .iter()
        .filter(|r| r["x_AttributionStatus"] == "quarantined")
        .collect();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["x_TokenClass"], "other");
    assert_eq!(q[0]["BilledCost"], "0.004");
    assert_eq!(q[0]["ConsumedQuantity"], "");
    assert_eq!(q[0]["x_Team"], "");
    let tags: Value = serde_json::from_str(&q[0]["Tags"]).unwrap();
    assert!(tags.get("team").is_none(), "{tags}");
}

#[test]
fn totals_equal_the_summary_exact_total_in_utc_and_in_almaty() {
    let sb = ledger();
    for (tz, expected, start) in [
        ("UTC", "0.031805", "2026-07-01T00:00:00Z"),
        // + event 5 (0.01): 2026-06-30T19:30Z is July 1, 00:30 in Almaty.
        ("Asia/Almaty", "0.041805", "2026-06-30T19:00:00Z"),
    ] {
        let (_, rows) = focus(&sb, &["--tz", tz]);
        let all: Vec<&Row> = rows.iter().collect();
        assert_eq!(sum(&all, "BilledCost"), dec(expected), "{tz}");
        assert!(all.iter().all(|r| r["BillingPeriodStart"] == start), "{tz}");
        let doc = sb
            .run(&[
                "report", "summary", "--period", "2026-07", "--tz", tz, "--format", "json",
            ])
            .json();
        assert_eq!(
            dec(doc["total"]["cost_exact"].as_str().unwrap()),
            dec(expected)
        );
    }
    // In Almaty, event 5's row is charged to July 1 local = [06-30T19:00Z, 07-01T19:00Z).
    let (_, rows) = focus(&sb, &["--tz", "Asia/Almaty"]);
    let d = rows.iter().find(|r| r["x_Team"] == "d").unwrap();
    assert_eq!(d["ChargePeriodStart"], "2026-06-30T19:00:00Z");
    assert_eq!(d["ChargePeriodEnd"], "2026-07-01T19:00:00Z");
    assert_eq!(d["BilledCost"], "0.01");
    assert_eq!(d["BillingPeriodEnd"], "2026-07-31T19:00:00Z");
}

#[test]
fn bad_periods_are_refused_and_write_nothing() {
    let sb = ledger();
    let out = sb.path().join("f.csv");
    let err = sb
        .run(&[
            "report",
            "focus",
            "--period",
            "2026-W28",
            "--out",
            path_str(&out),
        ])
        .fails()
        .to_string();
    assert!(err.contains("month") && err.contains("2026-W28"), "{err}");
    let err = sb
        .run(&[
            "report",
            "focus",
            "--period",
            "2026-09",
            "--out",
            path_str(&out),
        ])
        .fails()
        .to_string();
    assert!(err.contains("no usage") && err.contains("2026-09"), "{err}");
    assert!(!out.exists());
    let entries = std::fs::read_dir(sb.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count();
    assert_eq!(entries, 0);
}
