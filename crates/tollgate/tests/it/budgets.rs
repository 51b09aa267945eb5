//! Budgets at the gateway (`[[gateway.budgets]]`): a hard monthly limit refuses calls with 429
//! before they cost anything, counting what calls in flight may still cost, and survives a
//! restart (the month's spend is read back from the ledger); a soft limit only warns.
//!
//! Rates (`GW_RATES` in gateway.rs): openai/gw-gpt input 1 USD, output 5 USD per million
//! tokens. Every call here asks the fake provider for 1,000 input and 400 output tokens:
//! 1,000 x 1e-6 + 400 x 5e-6 = 0.001 + 0.002 = 0.003 USD. A call's worst case is its body's
//! bytes as input tokens at 1e-6 plus its max_tokens (1,000) at 5e-6: 0.005 + bytes x 1e-6.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::gateway::{Gw, http};

const USAGE: &str = "prompt_tokens=1000,completion_tokens=400";
const BODY: &[u8] = br#"{"model":"gw-gpt","messages":[],"max_tokens":1000}"#;

fn call(g: &Gw, key: &str, rid: &str, feature: &str) -> (u16, String, String) {
    let auth = format!("Bearer {key}");
    http(
        &g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("x-tollgate-request-id", rid),
            ("x-tollgate-feature", feature),
            ("x-fake-usage", USAGE),
        ],
        BODY,
    )
}

/// Starts a stream that the fake provider holds open (its second chunk comes after 10
/// minutes) and returns once the gateway has answered with its headers: the call is admitted
/// and in flight until the connection is dropped.
fn held_stream(g: &Gw, key: &str, rid: &str) -> TcpStream {
    let body = br#"{"model":"gw-gpt","messages":[],"max_tokens":1000,"stream":true,"stream_options":{"include_usage":true}}"#;
    let mut s = TcpStream::connect(&g.addr).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nx-tollgate-request-id: {rid}\r\nx-tollgate-feature: f\r\n\
         x-fake-chunks: 2\r\nx-fake-chunk-delay-ms: 600000\r\nContent-Length: {}\r\n\r\n",
        g.addr,
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "stream closed: {got:?}");
        got.push(b[0]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s
}

#[test]
fn hard_budgets_refuse_before_the_limit_and_soft_budgets_warn() {
    let mut g = Gw::start(Some(
        r#"
[[gateway.budgets]]
team = "search"
monthly_limit = "0.0125"

[[gateway.budgets]]
team = "ads"
monthly_limit = "0.012"
enforce = "hard"

[[gateway.budgets]]
feature = "cheap"
monthly_limit = "0.001"
enforce = "soft"
"#,
    ));
    // BODY is 50 bytes: worst case 0.005 + 50 x 1e-6 = 0.00505.
    assert_eq!(BODY.len(), 50);
    let key = g.key.clone();
    // Spent 0, then 0.003, then 0.006: at most 0.006 + 0.00505 = 0.01105 <= 0.0125, each fits.
    for rid in ["b-1", "b-2", "b-3"] {
        let (st, head, body) = call(&g, &key, rid, "cheap");
        assert_eq!(st, 200, "{rid}: {body}");
        if rid == "b-1" {
            assert!(!head.contains("x-tollgate-budget-warning"), "{head}");
        } else {
            // Feature "cheap" spent 0.003 (then 0.006) of its soft 0.001: warned, not refused.
            assert!(
                head.contains("x-tollgate-budget-warning: soft budget feature \"cheap\" reached"),
                "{head}"
            );
        }
    }
    // Spent 0.009: 0.009 + 0.00505 = 0.01405 > 0.0125, refused before going upstream.
    let (st, head, body) = call(&g, &key, "b-4", "f");
    assert_eq!(st, 429, "{body}");
    assert!(head.contains("x-should-retry: false"), "{head}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["type"], "insufficient_quota");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("budget team \"search\" is spent for 2")
            && msg.contains(": 0.009 of 0.0125 used (0 in calls still running), and this call may cost up to 0.00505"),
        "{msg}"
    );

    // Concurrency: two calls of team "ads" in flight reserve 2 x 0.005104 = 0.010208 (their
    // bodies are 104 bytes: 0.005 + 104 x 1e-6); a third (0.00505) would make 0.015258 >
    // 0.012, so it is refused although nothing is spent yet.
    let out =
        g.sb.run(&[
            "keys",
            "add",
            "--team",
            "ads",
            "--service",
            "api",
            "--environment",
            "prod",
            "--format",
            "json",
        ])
        .json();
    let ads = out["key"].as_str().unwrap().to_string();
    g.stop();
    g.restart();
    let s1 = held_stream(&g, &ads, "ads-1");
    let s2 = held_stream(&g, &ads, "ads-2");
    let (st, _, body) = call(&g, &ads, "ads-3", "f");
    assert_eq!(st, 429, "{body}");
    assert!(
        body.contains("0 of 0.012 used (0.010208 in calls still running)"),
        "{body}"
    );
    // The clients go away: both calls end as cancelled events.
    drop(s1);
    drop(s2);

    // After a restart the month's spend comes back from the ledger: team "search" is still
    // at 0.009 and still refused.
    g.stop();
    g.restart();
    let (st, _, body) = call(&g, &key, "b-5", "f");
    assert_eq!(st, 429, "{body}");
    assert!(body.contains("0.009 of 0.0125 used"), "{body}");
    // Team "ads" spent only its two cut streams' estimates (well under 0.001): admitted; the
    // soft budget of "cheap" (0.009 in the ledger) still warns.
    let (st, head, body) = call(&g, &ads, "ads-4", "cheap");
    assert_eq!(st, 200, "{body}");
    assert!(
        head.contains("soft budget feature \"cheap\" reached: 0.009 of 0.001"),
        "{head}"
    );
    g.stop();

    let all = g.events();
    let rids: Vec<&str> = all
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    // Refused calls never went upstream and have no event.
    assert_eq!(
        rids,
        ["ads-1", "ads-2", "ads-4", "b-1", "b-2", "b-3"],
        "{all:#?}"
    );
    assert_eq!(g.event("ads-1")["status"], "cancelled");
    assert_eq!(g.event("b-3")["cost"], "0.003");
}

#[test]
fn budget_settings_are_checked() {
    let sb = crate::support::Sandbox::new();
    for (toml, want) in [
        (
            "[[gateway.budgets]]\nmonthly_limit = \"10\"\n",
            "gateway.budgets[0]: says what it limits with one of team, tenant, feature or key",
        ),
        (
            "[[gateway.budgets]]\nteam = \"a\"\nfeature = \"b\"\nmonthly_limit = \"10\"\n",
            "gateway.budgets[0]: has more than one of team, tenant, feature and key",
        ),
        (
            "[[gateway.budgets]]\nteam = \"a\"\nmonthly_limit = \"-5\"\n",
            "gateway.budgets[0].monthly_limit: \"-5\" is not a positive decimal amount",
        ),
        (
            "[[gateway.budgets]]\nteam = \"a\"\nmonthly_limit = \"5\"\nenforce = \"strict\"\n",
            "gateway.budgets[0].enforce: \"strict\" is not an enforcement",
        ),
        (
            "[[gateway.budgets]]\nteam = \"a\"\nmonthly_limit = \"5\"\ntimezone = \"Mars/Olympus\"\n",
            "gateway.budgets[0].timezone: ",
        ),
    ] {
        crate::support::assert_config_refused(&sb, toml, want);
    }
}
