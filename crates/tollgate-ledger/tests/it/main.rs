//! Integration tests of tollgate-ledger: the trait suite on the SQLite backend, plus
//! SQLite-specific behaviour (WAL, immutability triggers, migrations, rollup rebuild).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed check

use tollgate_ledger::sqlite::SqliteLedger;
use tollgate_ledger::{Ledger, SummaryQuery, conformance};

#[test]
fn sqlite_passes_the_ledger_suite() {
    let mut dirs = Vec::new();
    conformance::run_all(&mut || {
        let d = tempfile::tempdir().unwrap();
        let l = SqliteLedger::open(d.path()).unwrap();
        dirs.push(d);
        Box::new(l)
    });
}

#[test]
fn events_cannot_be_edited_even_with_raw_sql() {
    let d = tempfile::tempdir().unwrap();
    let mut l = SqliteLedger::open(d.path()).unwrap();
    l.append(&[conformance::event(
        1,
        "2026-07-01T10:00:00Z",
        Some("a"),
        1,
        Some("1"),
    )])
    .unwrap();
    // Through the ledger, `events` is a virtual table without writes.
    assert!(l.query_sql("SELECT COUNT(*) FROM events").is_ok());
    drop(l);
    // A user with the sqlite3 shell: the events are in blocks, and triggers refuse edits.
    let c = rusqlite::Connection::open(d.path().join("ledger.sqlite")).unwrap();
    let err = c
        .execute("UPDATE event_blocks SET data = x'00'", [])
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    let err = c.execute("DELETE FROM event_blocks", []).unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    let n: i64 = c
        .query_row("SELECT SUM(n) FROM event_blocks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn reopening_applies_no_migration_twice_and_rebuilt_rollups_match() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut l = SqliteLedger::open(d.path()).unwrap();
        l.append(&[
            conformance::event(1, "2026-07-01T10:00:00Z", Some("a"), 1, Some("1.25")),
            conformance::event(2, "2026-07-01T12:00:00Z", Some("b"), 1, None),
        ])
        .unwrap();
    }
    let mut l = SqliteLedger::open(d.path()).unwrap();
    // Ten migrations exist (events, invoices, bills, annotations+budgets, sessions index,
    // reference data, month-end close, key rollups, rollups per tenant, event blocks); each
    // recorded once.
    let n = l
        .query_sql("SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations")
        .unwrap();
    assert_eq!(n.rows[0][0].to_string(), "10");
    assert_eq!(n.rows[0][1].to_string(), "10");
    let q = SummaryQuery {
        start: "2026-07-01T00:00:00Z".parse().unwrap(),
        end: "2026-07-02T00:00:00Z".parse().unwrap(),
        group_by: vec![tollgate_ledger::Dim::Team],
        filters: vec![],
    };
    let before = l.summarize(&q).unwrap();
    l.rebuild_rollups().unwrap();
    assert_eq!(l.summarize(&q).unwrap(), before);
    assert_eq!(before.len(), 2);
}

#[test]
fn read_only_handle_refuses_a_missing_ledger() {
    let d = tempfile::tempdir().unwrap();
    let err = SqliteLedger::open_read_only(d.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no ledger here"), "{err}");
}
