//! `tollgate sql`: read-only SQL over the ledger.

use serde_json::json;

use crate::support::{Sandbox, event, jsonl};

fn two_events() -> Sandbox {
    let sb = Sandbox::new();
    sb.write(
        "events.jsonl",
        jsonl(&[
            event(1, json!({"cost": "0.25"})),
            event(2, json!({"cost": "0.5"})),
        ]),
    );
    assert_eq!(sb.ingest("events.jsonl")["ingested"], 2);
    sb
}

#[test]
fn delete_is_refused_and_nothing_changes() {
    let sb = two_events();
    let err = sb.run(&["sql", "DELETE FROM events"]).fails().to_string();
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(sb.event_count(), 2);
}

#[test]
fn other_writes_are_refused_too() {
    let sb = two_events();
    for q in [
        "UPDATE events SET cost = '0'",
        "INSERT INTO imports (source, imported_at, read, ingested, duplicates, quarantined, unpriced) VALUES ('x', 'y', 0, 0, 0, 0, 0)",
        "DROP TABLE events",
    ] {
        let err = sb.run(&["sql", q]).fails().to_string();
        assert!(err.contains("read-only"), "{q}: {err}");
    }
    assert_eq!(sb.event_count(), 2);
    assert_eq!(sb.sql("SELECT COUNT(*) AS n FROM imports")[0]["n"], 1);
    let costs = sb.sql("SELECT cost FROM events ORDER BY event_id");
    assert_eq!(costs, vec![json!({"cost": "0.25"}), json!({"cost": "0.5"})]);
}

#[test]
fn exact_sums_with_scaled_integers() {
    let sb = two_events();
    // cost_e12 is the cost in units of 1e-12: 0.25 + 0.5 = 0.75 -> 750,000,000,000.
    let r = sb.sql("SELECT SUM(cost_e12) AS s FROM events");
    assert_eq!(r[0]["s"], 750_000_000_000_i64);
}

#[test]
fn csv_output_has_a_header() {
    let sb = two_events();
    let out = sb.run(&[
        "sql",
        "SELECT event_id, cost FROM events ORDER BY event_id",
        "--format",
        "csv",
    ]);
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "event_id,cost");
    assert_eq!(lines[1], "00000000-0000-7000-8000-000000000001,0.25");
    assert_eq!(lines[2], "00000000-0000-7000-8000-000000000002,0.5");
}

#[test]
fn no_ledger_is_an_error_not_an_empty_one() {
    let sb = Sandbox::new();
    let err = sb.run(&["sql", "SELECT 1"]).fails().to_string();
    assert!(err.contains("no ledger"), "{err}");
    // And the read-only path did not create one.
    assert!(!sb.data_dir().join("ledger.sqlite").exists());
}
