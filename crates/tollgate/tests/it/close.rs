//! Month-end close: `close` freezes a period's booked figures, late events go to the next open
//! period flagged late, `adjust` needs an approver and an open period, `reopen` is logged;
//! nothing is edited in place.

use serde_json::{Value, json};

use crate::support::{Sandbox, event, jsonl};

/// Calls of 200,000 input tokens of seed-model: 0.15 each before the 16th (0.75/M), 0.20 from
/// the 16th (1/M); never above the 200,000 tier.
fn calls(sb: &Sandbox, file: &str, first: u32, spec: &[(&str, &str)]) {
    let evs: Vec<_> = spec
        .iter()
        .enumerate()
        .map(|(i, (at, team))| {
            event(
                first + i as u32,
                json!({"occurred_at": at, "team_id": team, "cost_center": format!("CC-{team}"),
                       "input_tokens": 200_000}),
            )
        })
        .collect();
    sb.write(file, jsonl(&evs));
    sb.ingest(file);
}

fn books(sb: &Sandbox, period: &str) -> Value {
    sb.run(&["books", "--period", period, "--format", "json"])
        .json()
}

#[test]
fn close_freezes_late_events_move_on_and_reopen_is_logged() {
    let sb = Sandbox::new();
    calls(
        &sb,
        "july.jsonl",
        1,
        &[
            ("2026-07-10T10:00:00Z", "a"),
            ("2026-07-10T11:00:00Z", "a"),
            ("2026-07-11T10:00:00Z", "b"),
        ],
    );
    sb.run(&["refdata", "set", "approver", "key_cfo", "--by", "cfo"])
        .ok();
    // Not an approver: refused, nothing recorded.
    let err = sb
        .run(&[
            "adjust",
            "--period",
            "2026-07",
            "--team",
            "a",
            "--amount",
            "-0.05",
            "--reason",
            "outage credit",
            "--approver",
            "key_intern",
        ])
        .fails()
        .to_string();
    assert!(err.contains("not a key with the approver role"), "{err}");
    let adjust = [
        "adjust",
        "--period",
        "2026-07",
        "--team",
        "a",
        "--amount",
        "-0.05",
        "--reason",
        "outage credit",
        "--approver",
        "key_cfo",
        "--by",
        "ana",
    ];
    sb.run(&adjust).ok();
    // The same adjustment again records nothing.
    assert!(sb.run(&adjust).ok().contains("already recorded"));
    // Booked: a 0.15 + 0.15 = 0.30, b 0.15, adjustment -0.05: 0.40.
    let b = books(&sb, "2026-07");
    assert_eq!(b["closed"], false);
    assert_eq!(b["total"], "0.4");
    let out = sb
        .run(&["close", "--period", "2026-07", "--by", "ana"])
        .ok()
        .to_string();
    assert!(out.contains("2026-07 closed by ana"), "{out}");
    assert!(
        sb.run(&["close", "--period", "2026-07"])
            .fails()
            .contains("already closed")
    );
    // A late event of July (0.20 on the 20th) arrives after the close.
    calls(&sb, "late.jsonl", 10, &[("2026-07-20T10:00:00Z", "a")]);
    let july = books(&sb, "2026-07");
    assert_eq!(july["closed"], true);
    assert_eq!(july["total"], "0.4");
    let aug = books(&sb, "2026-08");
    assert_eq!(aug["total"], "0.2");
    assert_eq!(aug["lines"][0]["kind"], "late");
    assert_eq!(aug["lines"][0]["source_period"], "2026-07");
    assert_eq!(aug["lines"][0]["team"], "a");
    // No adjustment lands in a closed period.
    let err = sb
        .run(&[
            "adjust",
            "--period",
            "2026-07",
            "--team",
            "b",
            "--amount",
            "1",
            "--reason",
            "x",
            "--approver",
            "key_cfo",
        ])
        .fails()
        .to_string();
    assert!(
        err.contains("2026-07 is closed") && err.contains("2026-08"),
        "{err}"
    );
    // Reopen (logged with its reason): July is live again, 0.40 + 0.20 = 0.60; August has no
    // late line any more.
    assert!(
        sb.run(&["reopen", "--period", "2026-08", "--reason", "x"])
            .fails()
            .contains("not closed")
    );
    sb.run(&[
        "reopen",
        "--period",
        "2026-07",
        "--reason",
        "late bill",
        "--by",
        "cfo",
    ])
    .ok();
    assert_eq!(books(&sb, "2026-07")["total"], "0.6");
    assert_eq!(books(&sb, "2026-08")["total"], "0");
    sb.run(&["close", "--period", "2026-07", "--by", "ana"])
        .ok();
    let july = books(&sb, "2026-07");
    assert_eq!(july["total"], "0.6");
    let log: Vec<(String, String)> = july["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().into(),
                r["by"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        log,
        vec![
            ("close".into(), "ana".into()),
            ("reopen".into(), "cfo".into()),
            ("close".into(), "ana".into())
        ]
    );
    // Nothing was edited: 4 events, 1 adjustment, 3 log rows; the tables refuse edits.
    assert_eq!(sb.event_count(), 4);
    assert_eq!(sb.sql("SELECT COUNT(*) AS n FROM adjustments")[0]["n"], 1);
    assert!(sb.run(&["sql", "DELETE FROM period_log"]).code != Some(0));
}

#[test]
fn reprice_records_corrections_once_and_books_a_closed_period_forward() {
    let sb = Sandbox::new();
    calls(
        &sb,
        "july.jsonl",
        1,
        &[
            ("2026-07-20T10:00:00Z", "a"),
            ("2026-07-21T10:00:00Z", "a"),
            ("2026-07-10T10:00:00Z", "b"),
        ],
    );
    let v2 = crate::support::SEED_RATES.replacen(
        "input_per_mtok = \"1\"",
        "input_per_mtok = \"2.5\"",
        1,
    );
    let v2 = sb.write("v2.toml", v2);
    let v2 = v2.to_str().unwrap();
    let r = sb
        .run(&[
            "--prices", v2, "reprice", "--period", "2026-07", "--format", "json", "--by", "ana",
        ])
        .json();
    // a: 2 calls x 200,000 tokens x 2.5/M = 1.00 instead of 2 x 0.20 = 0.40: +0.60. b's call on
    // the 10th keeps 0.75/M.
    assert_eq!(r["total"]["difference"], "0.6");
    assert_eq!(r["corrections_recorded"], 1);
    assert_eq!(r["rows"].as_array().unwrap().len(), 1);
    assert_eq!(r["rows"][0]["team"], "a");
    // Again: already corrected, nothing recorded.
    let again = sb
        .run(&[
            "--prices", v2, "reprice", "--period", "2026-07", "--format", "json",
        ])
        .json();
    assert_eq!(again["corrections_recorded"], 0);
    // Booked: 0.40 + 0.15 + 0.60 = 1.15; the events keep their 0.55.
    assert_eq!(books(&sb, "2026-07")["total"], "1.15");
    assert_eq!(
        sb.sql("SELECT SUM(cost_e12) AS c FROM events")[0]["c"],
        550_000_000_000i64
    );
    // Closed July, re-priced at 3.5/M: 2 x 0.70 = 1.40 - 0.40 = 1.00 in all, 0.60 already
    // booked: 0.40 more, booked in August (the next open period) as a correction of July.
    sb.run(&["close", "--period", "2026-07"]).ok();
    let v3 = crate::support::SEED_RATES.replacen(
        "input_per_mtok = \"1\"",
        "input_per_mtok = \"3.5\"",
        1,
    );
    let v3 = sb.write("v3.toml", v3);
    let r = sb
        .run(&[
            "--prices",
            v3.to_str().unwrap(),
            "reprice",
            "--period",
            "2026-07",
            "--format",
            "json",
        ])
        .json();
    assert_eq!(r["booked_in"], "2026-08");
    assert_eq!(books(&sb, "2026-07")["total"], "1.15");
    let aug = books(&sb, "2026-08");
    assert_eq!(aug["total"], "0.4");
    assert_eq!(aug["lines"][0]["kind"], "reprice");
    assert_eq!(aug["lines"][0]["source_period"], "2026-07");
}

#[test]
fn shared_costs_are_allocated_to_the_cent_and_the_journal_balances() {
    let sb = Sandbox::new();
    // a: 2 calls (0.30, CC-a), b: 1 call (0.15, CC-b), one call without a team (0.15).
    calls(
        &sb,
        "july.jsonl",
        1,
        &[
            ("2026-07-10T10:00:00Z", "a"),
            ("2026-07-10T11:00:00Z", "a"),
            ("2026-07-11T10:00:00Z", "b"),
        ],
    );
    let unowned = event(
        9,
        json!({"occurred_at": "2026-07-12T10:00:00Z", "team_id": null,
                                 "input_tokens": 200_000}),
    );
    sb.write("unowned.jsonl", jsonl(&[unowned]));
    sb.ingest("unowned.jsonl");
    // 0.15 evenly between a and b: 15 cents / 2 = 7 each, remainder 1 each; the tie goes to a:
    // a 0.08, b 0.07.
    let out = sb
        .run(&["allocate", "--period", "2026-07", "--method", "even"])
        .ok()
        .to_string();
    assert!(
        out.contains("0.15 of usage without a team allocated by even"),
        "{out}"
    );
    let again = sb
        .run(&["allocate", "--period", "2026-07", "--method", "even"])
        .ok()
        .to_string();
    assert!(again.contains("nothing left to allocate"), "{again}");
    let b = books(&sb, "2026-07");
    assert_eq!(b["total"], "0.6");
    let alloc: Vec<(String, String)> = b["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "allocation")
        .map(|l| {
            (
                l["team"].as_str().unwrap().into(),
                l["amount"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        alloc,
        vec![
            ("".into(), "-0.15".into()),
            ("a".into(), "0.08".into()),
            ("b".into(), "0.07".into())
        ]
    );
    // Journal in EUR at 0.9: CC-a (0.30 + 0.08) x 0.9 = 0.342, CC-b (0.15 + 0.07) x 0.9 = 0.198;
    // total 0.54 = 54 cents; 34 r.2 and 19 r.8: the leftover cent to CC-b: 0.34 and 0.20.
    let csv = sb
        .run(&[
            "journal",
            "--period",
            "2026-07",
            "--currency",
            "EUR",
            "--fx-rate",
            "0.9",
        ])
        .ok()
        .to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "journal_id,date,period,line,cost_center,account,debit,credit,currency,memo"
    );
    assert_eq!(
        lines[1],
        "LLM-2026-07,2026-07-31,2026-07,1,CC-a,LLM-USAGE,0.34,0.00,EUR,LLM usage chargeback 2026-07"
    );
    assert_eq!(
        lines[2],
        "LLM-2026-07,2026-07-31,2026-07,2,CC-b,LLM-USAGE,0.20,0.00,EUR,LLM usage chargeback 2026-07"
    );
    assert_eq!(
        lines[3],
        "LLM-2026-07,2026-07-31,2026-07,3,CLEARING,LLM-CLEARING,0.00,0.54,EUR,LLM providers 2026-07"
    );
    assert_eq!(lines.len(), 4);
}
