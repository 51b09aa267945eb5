//! `tollgate report digest`: the weekly Slack digest, with hand-worked weeks, and `--post` to a
//! local incoming-webhook receiver.

use serde_json::{Value, json};

use crate::support::{Sandbox, event, jsonl, webhook_receiver};

/// Weeks 2026-W17 (Apr 20-26) and W18 (Apr 27 - May 3), costs carried by the events:
/// - feature `search`: 100 calls a week. W17: 0.01 each = 1.00, 80 of 100 input tokens read
///   from cache (80 %). W18: 0.02 each = 2.00 (cost per call +100 %), cache 50 %.
/// - feature `chat`: 60 calls a week at 0.05 = 3.00 both weeks; model `m1` with 10 reasoning
///   tokens per call in W17 (600) and 25 in W18 (1,500): +150 %.
/// - W18 only: 2 calls of feature `agent` on the new model `big` at 1.50 each = 3.00.
///
/// Totals: W17 = 1.00 + 3.00 = 4.00; W18 = 2.00 + 3.00 + 3.00 = 8.00, +100 %.
fn weeks() -> Sandbox {
    let sb = Sandbox::new();
    let mut evs = Vec::new();
    let mut n = 0;
    let mut push = |overrides: Value| {
        n += 1;
        evs.push(event(n, overrides));
    };
    for (day, search_cost, search_cached, reasoning) in [
        ("2026-04-21", "0.01", 80, 10),
        ("2026-04-28", "0.02", 50, 25),
    ] {
        for _ in 0..100 {
            push(
                json!({"occurred_at": format!("{day}T10:00:00Z"), "feature": "search", "cost": search_cost,
                        "input_tokens": 100 - search_cached, "cache_read_tokens": search_cached}),
            );
        }
        for _ in 0..60 {
            push(
                json!({"occurred_at": format!("{day}T11:00:00Z"), "feature": "chat", "model": "m1", "cost": "0.05",
                        "output_tokens": 40, "reasoning_tokens": reasoning}),
            );
        }
    }
    for _ in 0..2 {
        push(
            json!({"occurred_at": "2026-04-30T09:00:00Z", "feature": "agent", "model": "big", "cost": "1.50"}),
        );
    }
    sb.write("w.jsonl", jsonl(&evs));
    assert_eq!(sb.ingest("w.jsonl")["ingested"], 322);
    sb
}

fn text_of(blocks: &[Value]) -> String {
    blocks
        .iter()
        .map(|b| b["text"]["text"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_digest_reports_totals_top_features_and_what_needs_attention() {
    let sb = weeks();
    let msg = sb.run(&["report", "digest", "--week", "2026-W18"]).json();
    assert_eq!(
        msg["text"],
        "LLM spend 2026-W18: 8.00 USD (+100% vs 2026-W17)"
    );
    let blocks = msg["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        "Weekly LLM cost digest — 2026-W18"
    );
    let all = text_of(blocks);
    assert!(
        all.contains("*Total spend:* 8.00 USD  (+100% vs previous week"),
        "{all}"
    );
    assert!(all.contains("*Requests:* 162"), "{all}");
    // Top features by cost: agent 3.00 (ties with chat 3.00, then by name), chat 3.00, search 2.00.
    assert!(all.contains("1. agent  3.00 USD  (2 calls)\n2. chat  3.00 USD  (60 calls)\n3. search  2.00 USD  (100 calls)"), "{all}");
    // Needs attention: search cache 80 % -> 50 %; search cost per call 0.01 -> 0.02 (+100 %);
    // m1 reasoning 600 -> 1,500 (+150 %); new model big at 1.50 per call, average
    // 8.00 / 162 = 0.0494 per call, so 1.50 / 0.0494 = 30.4 x.
    assert!(
        all.contains("*search*: cache hit ratio fell 80% → 50%"),
        "{all}"
    );
    assert!(
        all.contains("*search*: cost per call 0.01 → 0.02 USD (+100%)"),
        "{all}"
    );
    assert!(
        all.contains("*m1*: reasoning tokens up 150% (600 → 1500)"),
        "{all}"
    );
    assert!(
        all.contains("*big*: new this week, 1.5 USD per call (30.4× the average)"),
        "{all}"
    );
    // Block Kit limits.
    assert!(blocks.len() <= 50);
    for b in blocks {
        assert!(b["text"]["text"].as_str().map_or(0, |t| t.chars().count()) <= 3000);
    }
}

#[test]
fn a_quiet_week_says_so_and_the_week_must_be_an_iso_week() {
    let sb = weeks();
    // W17 against W16 (nothing): no change figure, nothing to flag.
    let msg = sb.run(&["report", "digest", "--week", "2026-W17"]).json();
    assert_eq!(msg["text"], "LLM spend 2026-W17: 4.00 USD");
    assert!(text_of(msg["blocks"].as_array().unwrap()).contains("Nothing unusual this week."));
    let err = sb
        .run(&["report", "digest", "--week", "2026-04"])
        .fails()
        .to_string();
    assert!(err.contains("ISO week"), "{err}");
}

#[test]
fn post_sends_the_message_to_the_webhook_and_reports_slack_errors() {
    for (status, body, ok) in [
        ("200 OK", "ok", true),
        ("400 Bad Request", "invalid_blocks", false),
    ] {
        let (addr, server) = webhook_receiver(status, body);
        let sb = weeks();
        let mut c = sb.bare_command();
        c.env(
            "TOLLGATE_SLACK_WEBHOOK_URL",
            format!("http://{addr}/services/T0/B0/secret"),
        )
        .arg("--data-dir")
        .arg(sb.data_dir())
        .args(["report", "digest", "--week", "2026-W18", "--post"]);
        let out = c.output().unwrap();
        let (head, sent) = server.join().unwrap();
        assert!(
            head.starts_with("POST /services/T0/B0/secret HTTP/1.1"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let sent: Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(
            sent["text"],
            "LLM spend 2026-W18: 8.00 USD (+100% vs 2026-W17)"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{stderr}");
        assert!(
            !stderr.contains("secret"),
            "the webhook URL is a secret: {stderr}"
        );
        if !ok {
            assert!(stderr.contains("invalid_blocks"), "{stderr}");
        }
    }
}
