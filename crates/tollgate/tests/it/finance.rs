//! `report finance daily|features|tenants|users|budgets`, `annotate` and `budgets`.

use serde_json::json;

use crate::support::{Sandbox, event, jsonl};

/// July 2026 (UTC), costs carried by the events:
/// - 07-01: team a, feature f1, tenant t1, user u1: 4.00
/// - 07-02: team a, feature f2, tenant t2, user u2: 2.00 and user u1: 4.00 (6.00 that day)
/// - 07-02: team b, feature f1, no tenant, user u3: 0.50
fn ledger() -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "e.jsonl",
        jsonl(&[
            event(1, json!({"occurred_at": "2026-07-01T10:00:00Z", "team_id": "a", "feature": "f1", "tenant_id": "t1", "user_id": "u1", "cost": "4.00"})),
            event(2, json!({"occurred_at": "2026-07-02T10:00:00Z", "team_id": "a", "feature": "f2", "tenant_id": "t2", "user_id": "u2", "cost": "2.00"})),
            event(3, json!({"occurred_at": "2026-07-02T11:00:00Z", "team_id": "a", "feature": "f2", "tenant_id": "t2", "user_id": "u1", "cost": "4.00"})),
            event(4, json!({"occurred_at": "2026-07-02T12:00:00Z", "team_id": "b", "feature": "f1", "user_id": "u3", "cost": "0.50"})),
        ]),
    );
    sb.ingest("e.jsonl");
    sb
}

fn report(sb: &Sandbox, kind: &str) -> serde_json::Value {
    sb.run(&[
        "report", "finance", kind, "--period", "2026-07", "--format", "json",
    ])
    .json()
}

#[test]
fn daily_spend_with_change_and_annotations() {
    let sb = ledger();
    sb.run(&[
        "annotate",
        "--at",
        "2026-07-02T09:15:00Z",
        "--note",
        "deploy v2",
        "--service",
        "chat",
    ])
    .ok();
    let d = report(&sb, "daily");
    let rows = d["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 31);
    // 07-01: 4.00; 07-02: 2.00 + 4.00 + 0.50 = 6.50, +62.5 % (6.50 / 4.00 - 1).
    assert_eq!(rows[0]["cost"], "4.00");
    assert_eq!(rows[1]["cost"], "6.50");
    assert_eq!(rows[1]["change"], "0.6250");
    assert_eq!(rows[1]["annotations"][0], "09:15 deploy v2 (chat)");
    // 07-03 has no spend: -100 %; 07-04 follows a day without spend: no change figure.
    assert_eq!(rows[2]["change"], "-1.0000");
    assert!(rows[3]["change"].is_null());
    assert_eq!(d["total"]["cost"], "10.50");
}

#[test]
fn breakdowns_and_the_pareto_view() {
    let sb = ledger();
    let f = report(&sb, "features");
    // f2: 6.00 of 10.50 = 57.14 %; f1: 4.50 = 42.86 %.
    assert_eq!(f["rows"][0]["feature"], "f2");
    assert_eq!(f["rows"][0]["cost"], "6.00");
    assert_eq!(f["rows"][0]["share"], "0.5714");
    assert_eq!(f["rows"][1]["share"], "0.4286");
    let t = report(&sb, "tenants");
    // t2 6.00, t1 4.00, no tenant 0.50.
    let tenants: Vec<&serde_json::Value> = t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["tenant"])
        .collect();
    assert_eq!(
        tenants,
        vec![&json!("t2"), &json!("t1"), &serde_json::Value::Null]
    );
    let u = report(&sb, "users");
    // u1 8.00, u2 2.00, u3 0.50 of 10.50. Three users: the top 1 % and the top 10 % are both
    // one user (u1): 8.00 / 10.50 = 0.7619.
    assert_eq!(u["users"], 3);
    assert_eq!(u["rows"][0]["user"], "u1");
    assert_eq!(u["rows"][0]["cost"], "8.00");
    assert_eq!(u["top1_share"], "0.7619");
    assert_eq!(u["top10_share"], "0.7619");
}

#[test]
fn budgets_show_limit_actual_variance_and_comment() {
    let sb = ledger();
    sb.run(&[
        "budgets", "set", "--team", "a", "--period", "2026-07", "--limit", "8", "--owner", "Ana",
    ])
    .ok();
    sb.run(&[
        "budgets",
        "comment",
        "--team",
        "a",
        "--period",
        "2026-07",
        "--text",
        "launch week",
    ])
    .ok();
    // Raising the limit keeps owner and comment.
    sb.run(&[
        "budgets", "set", "--team", "a", "--period", "2026-07", "--limit", "9.60",
    ])
    .ok();
    let b = report(&sb, "budgets");
    // Team a spent 4.00 + 2.00 + 4.00 = 10.00 against 9.60: variance 0.40 = 4.17 %.
    let a = &b["rows"][0];
    assert_eq!(a["team"], "a");
    assert_eq!(a["limit"], "9.60");
    assert_eq!(a["actual"], "10.00");
    assert_eq!(a["variance"], "0.40");
    assert_eq!(a["variance_pct"], "0.0417");
    assert_eq!(a["owner"], "Ana");
    assert_eq!(a["comment"], "launch week");
    // Team b has spend but no budget: listed without a limit.
    assert_eq!(b["rows"][1]["team"], "b");
    assert!(b["rows"][1]["limit"].is_null());
    let err = sb
        .run(&[
            "budgets", "comment", "--team", "zz", "--period", "2026-07", "--text", "x",
        ])
        .fails()
        .to_string();
    assert!(err.contains("no budget"), "{err}");
}

#[test]
fn reports_convert_at_one_fixed_rate_stated_in_the_header() {
    let sb = ledger();
    let f = sb
        .run(&[
            "report",
            "finance",
            "features",
            "--period",
            "2026-07",
            "--currency",
            "KZT",
            "--fx-rate",
            "510.25",
            "--format",
            "json",
        ])
        .json();
    // f2: 6.00 USD x 510.25 = 3061.50 KZT; f1: 4.50 x 510.25 = 2296.125 -> 2296.13 (half away).
    assert_eq!(f["currency"], "KZT");
    assert_eq!(f["rows"][0]["cost"], "3061.50");
    assert_eq!(f["rows"][1]["cost"], "2296.13");
    // The total is the sum of the rows shown: 3061.50 + 2296.13 = 5357.63.
    assert_eq!(f["total"]["cost"], "5357.63");
    assert!(
        f["fx_rule"].as_str().unwrap().contains("510.25 KZT/USD"),
        "{}",
        f["fx_rule"]
    );
    let err = sb
        .run(&[
            "report",
            "finance",
            "daily",
            "--period",
            "2026-07",
            "--currency",
            "EUR",
        ])
        .fails()
        .to_string();
    assert!(err.contains("no FX rate for EUR"), "{err}");
}
