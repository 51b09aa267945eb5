//! `tollgate alerts check`: each anomaly rule fires on a ledger built to trip it, with figures
//! worked out by hand; `--post` sends the new alerts in one Slack message and a second run
//! sends nothing (no alert storms).
//!
//! Rates (`SEED_RATES`, in force from 2026-07-16): input 1, cache read 0.1, output 5 USD per
//! million tokens. The check runs at 2026-08-15T10:30:00Z (UTC): the day judged is 2026-08-14,
//! the day before 2026-08-13, the baseline week 2026-08-07 .. 2026-08-13.

use serde_json::{Value, json};

use crate::support::{Sandbox, event, jsonl, webhook_receiver};

const AT: &str = "2026-08-15T10:30:00Z";

fn ledger() -> Sandbox {
    let sb = Sandbox::new();
    let mut evs = Vec::new();
    let mut n = 0;
    let mut push = |o: Value| {
        n += 1;
        evs.push(event(n, o));
    };
    // Baseline, feature "answer" (team a): 2 calls a day, each 500,000 uncached + 500,000
    // cached input and 10 output tokens (all reasoning): 0.5 + 0.05 + 0.00005 = 0.55005 USD;
    // a day is 1.1001 USD; cache hit ratio 500,000 / 1,000,000 = 50 %.
    for day in 7..=13 {
        for hour in [12, 13] {
            push(
                json!({"occurred_at": format!("2026-08-{day:02}T{hour}:00:00Z"),
                "input_tokens": 500_000, "cache_read_tokens": 500_000,
                "output_tokens": 10, "reasoning_tokens": 10}),
            );
        }
    }
    // 2026-08-14: 2 calls of 1,000,000 uncached input and 100,000 output (100 reasoning):
    // 1 + 0.5 = 1.5 USD each, 3.0 USD the day; cache hit ratio 0 %.
    for hour in [12, 13] {
        push(json!({"occurred_at": format!("2026-08-14T{hour}:00:00Z"),
            "input_tokens": 1_000_000, "output_tokens": 100_000, "reasoning_tokens": 100}));
    }
    // Service "nightly": 3 of its 4 calls on 2026-08-14 between 00:00 and 06:00 (no tokens).
    for t in ["02:00", "02:10", "02:20", "14:00"] {
        push(
            json!({"occurred_at": format!("2026-08-14T{t}:00Z"), "service": "nightly",
            "feature": "sync"}),
        );
    }
    // User u-loop: 4 calls in the hour before the check.
    for m in [31, 40, 50, 59] {
        push(
            json!({"occurred_at": format!("2026-08-15T09:{m}:00Z"), "user_id": "u-loop",
            "feature": "sync"}),
        );
    }
    // Team b: one call of 10,000,000 input tokens on 2026-08-10 = 10 USD.
    push(
        json!({"occurred_at": "2026-08-10T08:00:00Z", "team_id": "b", "feature": "other",
        "input_tokens": 10_000_000}),
    );
    sb.write("events.jsonl", jsonl(&evs));
    sb.ingest("events.jsonl");
    sb.run(&[
        "budgets", "set", "--team", "a", "--period", "2026-08", "--limit", "5",
    ])
    .ok();
    sb.run(&[
        "budgets", "set", "--team", "b", "--period", "2026-08", "--limit", "20",
    ])
    .ok();
    sb.write(
        "tollgate.toml",
        "[alerts]\nmin_calls = 2\nmin_daily_spend = \"1\"\nrunaway_calls_per_hour = 3\noff_hours_min_calls = 4\n",
    );
    sb
}

/// `alerts check --at AT EXTRA...` on the sandbox's ledger and config; `webhook`: the Slack
/// webhook URL in the environment (none when absent).
fn check(sb: &Sandbox, webhook: Option<&str>, extra: &[&str]) -> std::process::Output {
    let mut c = sb.bare_command();
    match webhook {
        Some(url) => c.env("TOLLGATE_SLACK_WEBHOOK_URL", url),
        None => c.env_remove("TOLLGATE_SLACK_WEBHOOK_URL"),
    };
    c.arg("--data-dir")
        .arg(sb.data_dir())
        .arg("--config")
        .arg(sb.path().join("tollgate.toml"))
        .args(["alerts", "check", "--at", AT])
        .args(extra);
    c.output().unwrap()
}

#[test]
fn every_rule_fires_with_hand_worked_figures() {
    let sb = ledger();
    let o = check(&sb, None, &["--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let alerts = v["alerts"].as_array().unwrap();
    let keys: Vec<&str> = alerts.iter().map(|a| a["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "budget_forecast:b:2026-08",
            "budget_overrun:a:2026-08",
            "cache_hit_drop:answer:2026-08-14",
            "cost_per_call_jump:answer:2026-08-14",
            "daily_jump:2026-08-14",
            "off_hours:nightly:2026-08-14",
            "reasoning_surge:seed-model:2026-08-14",
            "runaway_user:u-loop:2026-08-15T10",
        ],
        "{v:#}"
    );
    let msg = |k: &str| {
        alerts.iter().find(|a| a["key"] == k).unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // (3.0 - 1.1001) / 1.1001 = 1.727 -> 173 %.
    assert_eq!(
        msg("daily_jump:2026-08-14"),
        "Spend on 2026-08-14 was $3.00 against $1.10 on 2026-08-13: 173% up (threshold 30%)"
    );
    assert!(msg("cache_hit_drop:answer:2026-08-14").contains("fell to 0% on 2026-08-14 from 50%"));
    // 1.5 per call against 0.55005: +172.7 % -> 173 %.
    assert!(
        msg("cost_per_call_jump:answer:2026-08-14")
            .contains("$1.5000 on 2026-08-14 against $0.5501")
    );
    assert!(msg("off_hours:nightly:2026-08-14").contains("made 3 of its 4 calls"));
    assert!(msg("runaway_user:u-loop:2026-08-15T10").contains("made 4 calls"));
    // Team a, August to the check: 7 x 1.1001 + 3.0 = 10.7007 USD > 5.
    assert_eq!(
        msg("budget_overrun:a:2026-08"),
        "Team a has spent $10.70 of its $5.00 budget for 2026-08 ($5.70 over)"
    );
    // Team b spent 10 USD in 14 days 10.5 hours (1,247,400 s) of 31 days (2,678,400 s):
    // 10 x 2,678,400 / 1,247,400 = 21.4719 USD > 20.
    assert_eq!(
        msg("budget_forecast:b:2026-08"),
        "Team b is on course for $21.47 in 2026-08 against a $20.00 budget ($10.00 spent so far)"
    );
}

#[test]
fn post_sends_new_alerts_once_in_one_message() {
    let sb = ledger();
    let (addr, h) = webhook_receiver("200 OK", "ok");
    let url = format!("http://{addr}/hook");
    let o = check(&sb, Some(&url), &["--post"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sent: Value = serde_json::from_str(&h.join().unwrap().1).unwrap();
    assert_eq!(sent["text"], "Tollgate: 8 new cost alert(s)");
    let body = sent["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(body.lines().count(), 8, "{body}");
    // The second run finds the same alerts, all already sent: no message (with no webhook URL
    // set, a post would fail the command), and the table marks them as sent.
    let o = check(&sb, None, &["--post"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        out.lines().filter(|l| l.starts_with("sent")).count(),
        8,
        "{out}"
    );
    let state = std::fs::read_to_string(sb.data_dir().join("alerts/sent.json")).unwrap();
    assert!(state.contains("daily_jump:2026-08-14"), "{state}");
}

#[test]
fn bad_thresholds_are_named() {
    let sb = Sandbox::new();
    crate::support::assert_config_refused(
        &sb,
        "[alerts]\ndaily_jump = \"lots\"\n",
        "alerts.daily_jump: \"lots\" is not a decimal number",
    );
}
