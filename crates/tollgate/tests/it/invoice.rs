//! `tollgate invoice`: seed 000's ACME invoice rebuilt from raw events, plans, numbering,
//! finalisation, credit notes and bad configuration.

use serde_json::{Value, json};

use crate::support::{Sandbox, event, jsonl};

const ACME: &str = r#"
[tenants.acme]
name = "ACME CORP"
currency = "USD"
timezone = "UTC"
number = "AI-{YYYY}-{MM}-ACME"
tax = { name = "KDV", rate = "0.20" }
plan = "rate_card"
[[tenants.acme.lines]]
feature = "smart-search"
label = "Smart Search Feature"
unit = "1k_tokens"
price = "0.008"
[[tenants.acme.lines]]
feature = "ai-summary"
label = "AI Summary Feature"
unit = "1k_tokens"
price = "0.012"
[[tenants.acme.lines]]
feature = "agent-workflow"
label = "Agent Workflow"
unit = "1k_tokens"
price = "0.020"
show_sessions = true
"#;

/// Seed 000's April usage as raw events: smart-search 4 x 3.1M tokens = 12.4M, ai-summary
/// 3 x 1.7M = 5.1M, agent-workflow 6 x 3.1M = 18.6M in 3 sessions; plus traffic that must
/// not count: staging, another tenant, and March/May.
fn acme() -> Sandbox {
    let sb = Sandbox::new();
    let mut evs = Vec::new();
    let mut n = 0;
    let mut add = |feature: &str, day: &str, input: u64, output: u64, extra: Value| {
        n += 1;
        let mut e = event(
            n,
            json!({"occurred_at": format!("2026-04-{day}T10:00:00Z"), "tenant_id": "acme",
                   "feature": feature, "input_tokens": input, "output_tokens": output}),
        );
        if let Value::Object(o) = extra {
            for (k, v) in o {
                if v.is_null() {
                    e.remove(&k);
                } else {
                    e.insert(k, v);
                }
            }
        }
        evs.push(e);
    };
    for d in ["01", "02", "03", "30"] {
        add("smart-search", d, 3_000_000, 100_000, json!({}));
    }
    for d in ["10", "11", "12"] {
        add("ai-summary", d, 1_500_000, 200_000, json!({}));
    }
    for (i, d) in ["20", "21", "22", "23", "24", "25"].iter().enumerate() {
        add(
            "agent-workflow",
            d,
            3_000_000,
            100_000,
            json!({"session_id": format!("s{}", i % 3)}),
        );
    }
    add(
        "smart-search",
        "15",
        9_000_000,
        0,
        json!({"environment": "staging"}),
    );
    add(
        "smart-search",
        "15",
        9_000_000,
        0,
        json!({"tenant_id": "globex"}),
    );
    add(
        "smart-search",
        "15",
        9_000_000,
        0,
        json!({"occurred_at": "2026-03-31T23:59:59.999999Z"}),
    );
    add(
        "smart-search",
        "15",
        9_000_000,
        0,
        json!({"occurred_at": "2026-05-01T00:00:00Z"}),
    );
    sb.write("acme.jsonl", jsonl(&evs));
    assert_eq!(sb.ingest("acme.jsonl")["ingested"], 17);
    sb.write("tollgate.toml", ACME);
    sb
}

fn invoice(sb: &Sandbox, extra: &[&str]) -> Value {
    let mut args = vec![
        "--config",
        "tollgate.toml",
        "invoice",
        "--tenant",
        "acme",
        "--period",
        "2026-04",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    sb.run(&args).json()
}

#[test]
fn seed_000_acme_invoice_from_raw_events() {
    let sb = acme();
    let doc = invoice(&sb, &[]);
    assert_eq!(doc["number"], "AI-2026-04-ACME");
    assert_eq!(doc["status"], "draft");
    assert_eq!(doc["tenant"], "acme");
    assert_eq!(doc["currency"], "USD");
    assert_eq!(doc["period"]["start"], "2026-04-01T00:00:00.000000Z");
    assert_eq!(doc["period"]["end"], "2026-05-01T00:00:00.000000Z");
    assert_eq!(doc["period"]["timezone"], "UTC");
    let lines = doc["lines"].as_array().unwrap();
    // 12,400 x 0.008 = 99.20; 5,100 x 0.012 = 61.20; 18,600 x 0.020 = 372.00
    let got: Vec<(&str, u64, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["feature"].as_str().unwrap(),
                l["tokens"].as_u64().unwrap(),
                l["unit_price"].as_str().unwrap(),
                l["amount"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("smart-search", 12_400_000, "0.008", "99.20"),
            ("ai-summary", 5_100_000, "0.012", "61.20"),
            ("agent-workflow", 18_600_000, "0.020", "372.00"),
        ]
    );
    assert_eq!(lines[0]["requests"], 4);
    assert_eq!(lines[0]["quantity"], "12400");
    assert_eq!(lines[0]["unit"], "1k_tokens");
    // Three distinct sessions on the agent workflow.
    assert_eq!(lines[2]["sessions"], 3);
    // 99.20 + 61.20 + 372.00 = 532.40; KDV 20 % = 106.48; total 638.88
    assert_eq!(doc["subtotal"], "532.40");
    assert_eq!(doc["tax"]["name"], "KDV");
    assert_eq!(doc["tax"]["rate"], "0.20");
    assert_eq!(doc["tax"]["amount"], "106.48");
    assert_eq!(doc["total"], "638.88");
    // The appendix counts the same prod traffic: 13 requests, 36.1M tokens.
    assert_eq!(doc["usage_by_model"][0]["requests"], 13);
    assert_eq!(doc["usage_by_model"][0]["tokens"], 36_100_000);
    assert_eq!(doc["usage_by_day"].as_array().unwrap().len(), 13);
    // Same ledger, same invoice.
    assert_eq!(invoice(&sb, &[]), doc);
    // The text form reads like the seed's.
    let text = sb
        .run(&[
            "--config",
            "tollgate.toml",
            "invoice",
            "--tenant",
            "acme",
            "--period",
            "2026-04",
        ])
        .ok()
        .to_string();
    for needle in [
        "ACME CORP",
        "AI-2026-04-ACME",
        "Amount: 99.20",
        "SUBTOTAL: 532.40",
        "KDV (20%): 106.48",
        "TOTAL: 638.88",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
}

#[test]
fn finalized_invoices_never_change_and_need_a_credit_note() {
    let sb = acme();
    let first = invoice(&sb, &["--finalize"]);
    assert_eq!(first["total"], "638.88");
    assert_eq!(first["status"], "final");
    // Finalizing again with unchanged usage is idempotent.
    assert_eq!(invoice(&sb, &["--finalize"]), first);
    // Late usage arrives: 1M more smart-search tokens in April.
    sb.write("late.jsonl", jsonl(&[event(99, json!({"occurred_at": "2026-04-28T00:00:00Z", "tenant_id": "acme", "feature": "smart-search", "input_tokens": 1_000_000}))]));
    sb.ingest("late.jsonl");
    let err = sb
        .run(&[
            "--config",
            "tollgate.toml",
            "invoice",
            "--tenant",
            "acme",
            "--period",
            "2026-04",
            "--finalize",
        ])
        .fails()
        .to_string();
    assert!(
        err.contains("credit note") && err.contains("638.88"),
        "{err}"
    );
    // Without --finalize the finalized document is shown, unchanged.
    assert_eq!(invoice(&sb, &[])["total"], "638.88");
    // The credit note reverses it in full.
    let cn = invoice(&sb, &["--credit-note", "--reason", "late usage"]);
    assert_eq!(cn["kind"], "credit_note");
    assert_eq!(cn["number"], "CN-AI-2026-04-ACME");
    assert_eq!(cn["corrects"], "AI-2026-04-ACME");
    assert_eq!(cn["total"], "-638.88");
    // The new invoice: 13,400 x 0.008 = 107.20; 107.20 + 61.20 + 372.00 = 540.40;
    // KDV 108.08; total 648.48. A new number: revision 2.
    let second = invoice(&sb, &["--finalize"]);
    assert_eq!(second["number"], "AI-2026-04-ACME-R2");
    assert_eq!(second["subtotal"], "540.40");
    assert_eq!(second["total"], "648.48");
    let stored = sb.sql("SELECT number, kind, total FROM invoices ORDER BY id");
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[1]["total"], "-638.88");
    // Stored invoices cannot be edited, even by SQL.
    assert_ne!(
        sb.run(&["sql", "UPDATE invoices SET total = '0'"]).code,
        Some(0)
    );
}

#[test]
fn quarantined_usage_blocks_finalisation_with_a_list() {
    let sb = acme();
    sb.write("q.jsonl", jsonl(&[event(50, json!({"occurred_at": "2026-04-05T00:00:00Z", "tenant_id": "acme", "feature": null, "input_tokens": 10}))]));
    sb.ingest("q.jsonl");
    let err = sb
        .run(&[
            "--config",
            "tollgate.toml",
            "invoice",
            "--tenant",
            "acme",
            "--period",
            "2026-04",
            "--finalize",
        ])
        .fails()
        .to_string();
    assert!(
        err.contains("cannot be finalized") && err.contains("quarantined"),
        "{err}"
    );
    assert!(sb.sql("SELECT COUNT(*) AS n FROM invoices")[0]["n"] == 0);
}

#[test]
fn sequential_numbers_per_pattern() {
    let sb = acme();
    sb.write(
        "tollgate.toml",
        ACME.replace(
            "number = \"AI-{YYYY}-{MM}-ACME\"",
            "number = \"INV-{YYYY}-{SEQ:4}\"",
        ),
    );
    // A draft shows the number it would get; finalizing takes it; the next one is +1.
    assert_eq!(invoice(&sb, &[])["number"], "INV-2026-0001");
    assert_eq!(invoice(&sb, &["--finalize"])["number"], "INV-2026-0001");
    invoice(&sb, &["--credit-note", "--reason", "test"]);
    assert_eq!(invoice(&sb, &["--finalize"])["number"], "INV-2026-0002");
}

#[test]
fn pass_through_and_minimum_commitment() {
    let sb = Sandbox::new();
    // Costs carried by the events: 10.00 + 2.505 = 12.505 wholesale.
    sb.write(
        "e.jsonl",
        jsonl(&[
            event(
                1,
                json!({"tenant_id": "t1", "feature": "a", "cost": "10.00", "input_tokens": 100}),
            ),
            event(
                2,
                json!({"tenant_id": "t1", "feature": "b", "cost": "2.505", "input_tokens": 50}),
            ),
        ]),
    );
    sb.ingest("e.jsonl");
    sb.write(
        "tollgate.toml",
        "[tenants.t1]\nname = \"T1\"\nnumber = \"T1-{YYYY}{MM}\"\nplan = \"pass_through\"\nmargin = \"0.20\"\nminimum = \"20\"\n",
    );
    let doc = sb
        .run(&[
            "--config",
            "tollgate.toml",
            "invoice",
            "--tenant",
            "t1",
            "--period",
            "2026-07",
            "--format",
            "json",
        ])
        .json();
    // a: 10.00 x 1.20 = 12.00; b: 2.505 x 1.20 = 3.006 -> 3.01; subtotal 15.01 < 20, so a
    // minimum-commitment line of 4.99 brings it to 20.00; no tax.
    let amounts: Vec<&str> = doc["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, vec!["12.00", "3.01", "4.99"]);
    assert_eq!(doc["subtotal"], "20.00");
    assert_eq!(doc["total"], "20.00");
    assert!(
        doc["note"].as_str().unwrap().contains("20% margin"),
        "{}",
        doc["note"]
    );
}

#[test]
fn bad_tenant_config_names_the_key() {
    let sb = acme();
    let cases = [
        (
            ACME.replace("rate = \"0.20\"", "rate = \"20\""),
            "tenants.acme.tax.rate",
        ),
        (
            ACME.replace("plan = \"rate_card\"", "plan = \"freemium\""),
            "tenants.acme.plan",
        ),
        (
            ACME.replace(
                "unit = \"1k_tokens\"\nprice = \"0.008\"",
                "unit = \"token\"\nprice = \"0.008\"",
            ),
            "tenants.acme.lines[0].unit",
        ),
        (
            ACME.replace("price = \"0.008\"", "price = \"cheap\""),
            "tenants.acme.lines[0].price",
        ),
    ];
    for (toml, key) in cases {
        sb.write("bad.toml", toml);
        let err = sb
            .run(&[
                "--config", "bad.toml", "invoice", "--tenant", "acme", "--period", "2026-04",
            ])
            .fails()
            .to_string();
        assert!(err.contains(key), "{key} not named in: {err}");
    }
    let err = sb
        .run(&[
            "--config",
            "tollgate.toml",
            "invoice",
            "--tenant",
            "nobody",
            "--period",
            "2026-04",
        ])
        .fails()
        .to_string();
    assert!(err.contains("nobody") && err.contains("acme"), "{err}");
    // A period without data is an error, not an empty invoice.
    let err = sb
        .run(&[
            "--config",
            "tollgate.toml",
            "invoice",
            "--tenant",
            "acme",
            "--period",
            "2025-01",
        ])
        .fails()
        .to_string();
    assert!(err.contains("no usage"), "{err}");
}

#[test]
fn pdf_invoices_have_the_lines_and_the_appendix() {
    let sb = acme();
    sb.run(&[
        "--config",
        "tollgate.toml",
        "invoice",
        "--tenant",
        "acme",
        "--period",
        "2026-04",
        "--format",
        "pdf",
        "--out",
        "acme.pdf",
    ])
    .ok();
    let pdf = std::fs::read(sb.path().join("acme.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    // Page 1: the lines and totals; page 2: the appendix by model and by day (13 days).
    assert_eq!(crate::cfo::pages(&pdf), 2);
    // A failing run leaves no file: an unknown tenant.
    sb.run(&[
        "--config",
        "tollgate.toml",
        "invoice",
        "--tenant",
        "nobody",
        "--period",
        "2026-04",
        "--format",
        "pdf",
        "--out",
        "no.pdf",
    ])
    .fails();
    assert!(!sb.path().join("no.pdf").exists());
}
