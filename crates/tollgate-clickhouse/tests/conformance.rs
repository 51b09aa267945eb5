//! The ledger test suite (`tollgate_ledger::conformance`) against ClickHouse, through the chDB
//! adapter started on port 0 in a temporary directory; plus the ClickHouse-specific checks:
//! unmerged duplicates never show, retries, credentials, leases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tollgate_clickhouse::testing::{Adapter, python};
use tollgate_clickhouse::{ClickHouseConfig, ClickHouseLedger};
use tollgate_ledger::conformance::{self, event};
use tollgate_ledger::{Dim, Ledger, SqlValue, SummaryQuery};

fn start(password: Option<&str>) -> (tempfile::TempDir, Adapter) {
    let dir = tempfile::tempdir().unwrap();
    let a = Adapter::start(&python().unwrap(), dir.path(), password).unwrap();
    (dir, a)
}

fn cfg(a: &Adapter, db: &str) -> ClickHouseConfig {
    let mut c = ClickHouseConfig::new(&a.url, db);
    c.attempts = 2;
    c.backoff = Duration::from_millis(10);
    c
}

#[test]
fn conformance_suite_passes_on_clickhouse() {
    let (_d, a) = start(None);
    // A fresh database per check: every check starts from an empty ledger.
    let n = AtomicU32::new(0);
    conformance::run_all(&mut || {
        let db = format!("conf{}", n.fetch_add(1, Ordering::Relaxed));
        Box::new(ClickHouseLedger::open(cfg(&a, &db)).unwrap())
    });
    assert!(n.load(Ordering::Relaxed) >= 13);
}

#[test]
fn unmerged_duplicates_and_migrations() {
    let (_d, a) = start(None);
    let mut l = ClickHouseLedger::open(cfg(&a, "dups")).unwrap();
    // Migrating again applies nothing.
    assert_eq!(l.migrate().unwrap(), Vec::<i64>::new());
    assert_eq!(
        l.applied_version().unwrap(),
        tollgate_clickhouse::schema::schema_version()
    );
    let e1 = event(1, "2026-07-01T10:00:00Z", Some("a"), 1, Some("1.5"));
    let e2 = event(2, "2026-07-01T10:30:00Z", Some("a"), 1, Some("2"));
    l.append(&[e1.clone(), e2]).unwrap();
    // A second writer that bypassed the duplicate check (a replica racing on the same event):
    // the row lands twice in `events` until a merge collapses it.
    let raw = a.url.clone();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let r = agent
        .post(format!("{raw}/?database=dups"))
        .send("INSERT INTO events SELECT * FROM events WHERE event_id = '0190a000-0000-7000-8000-000000000001'")
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let plain = l.query_sql("SELECT count() FROM events").unwrap();
    assert_eq!(plain.rows, vec![vec![SqlValue::Integer(3)]]);
    // Reads see each event once: 2 events, and the edge-hour summary (10:15 .. 11:00 is read
    // from events) counts event 2 only: 2.
    assert_eq!(l.event_count().unwrap(), 2);
    let q = SummaryQuery::new(
        "2026-07-01T10:00:00Z".parse().unwrap(),
        "2026-07-01T10:45:00Z".parse().unwrap(),
        vec![Dim::Team],
    );
    let rows = l.summarize(&q).unwrap();
    // 1.5 + 2 = 3.5 over two requests, not 5 over three.
    assert_eq!(rows[0].totals.requests, 2);
    assert_eq!(rows[0].totals.cost_e12, 3_500_000_000_000);
    assert_eq!(l.get_event(&e1.event_id).unwrap().unwrap(), e1);
    let mut n = 0;
    l.scan_audit(q.start, q.end, None, &mut |_| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn history_rows_stored_twice_show_once() {
    let (_d, a) = start(None);
    let mut l = ClickHouseLedger::open(cfg(&a, "hist")).unwrap();
    let mut w = l.writer().unwrap();
    for (key, team) in [("k1", "search"), ("k2", "support"), ("k1", "growth")] {
        w.record_refdata(&tollgate_ledger::RefDataEntry {
            kind: "api_key".into(),
            key: key.into(),
            team_id: Some(team.into()),
            changed_by: "ana".into(),
            ..Default::default()
        })
        .unwrap();
    }
    w.record_period_action(&tollgate_ledger::PeriodAction {
        period: "2026-07".into(),
        action: "close".into(),
        by: "ana".into(),
        ..Default::default()
    })
    .unwrap();
    w.record_adjustment(&tollgate_ledger::Adjustment {
        period: "2026-07".into(),
        kind: "adjustment".into(),
        team_id: "search".into(),
        amount: "5".into(),
        currency: "USD".into(),
        reason: "r".into(),
        requested_by: "ana".into(),
        ..Default::default()
    })
    .unwrap();
    w.commit().unwrap();
    let before = (
        l.refdata(None).unwrap(),
        l.refdata_history(None, None).unwrap(),
        l.period_actions(None).unwrap(),
        l.adjustments(None).unwrap(),
    );
    // Every history row stored a second time (a raw re-insert, as a repeated copy without
    // the check would do): the tables hold each row twice, no merge collapses them
    // (MergeTree), and reads still show each row once.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for t in ["refdata", "period_log", "adjustments"] {
        let r = agent
            .post(format!("{}/?database=hist", a.url))
            .send(format!("INSERT INTO {t} SELECT * FROM {t}"))
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let raw = l.query_sql("SELECT count() FROM refdata").unwrap();
    assert_eq!(raw.rows, vec![vec![SqlValue::Integer(6)]]);
    assert_eq!(before.1.len(), 3);
    assert_eq!(before.0.len(), 2);
    assert_eq!(
        before,
        (
            l.refdata(None).unwrap(),
            l.refdata_history(None, None).unwrap(),
            l.period_actions(None).unwrap(),
            l.adjustments(None).unwrap(),
        )
    );
}

#[test]
fn password_is_sent_and_checked() {
    let (_d, a) = start(Some("s3cret"));
    let mut bad = cfg(&a, "auth");
    bad.password = Some("wrong".into());
    let err = ClickHouseLedger::open(bad).err().unwrap().to_string();
    assert!(
        err.contains("516") && err.contains("AUTHENTICATION_FAILED"),
        "{err}"
    );
    // Not retried: a wrong password does not fix itself.
    assert!(!err.contains("attempts"), "{err}");
    let mut good = cfg(&a, "auth");
    good.password = Some("s3cret".into());
    let l = ClickHouseLedger::open(good).unwrap();
    assert_eq!(l.event_count().unwrap(), 0);
}

#[test]
fn a_server_that_is_down_is_retried_then_reported() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = ClickHouseConfig::new(&format!("http://127.0.0.1:{port}"), "x");
    c.attempts = 3;
    c.backoff = Duration::from_millis(1);
    let err = ClickHouseLedger::open(c).err().unwrap().to_string();
    assert!(err.contains("after 3 attempts"), "{err}");
    assert!(err.contains("cannot reach ClickHouse"), "{err}");
}

#[test]
fn leases_run_a_job_once() {
    use tollgate_clickhouse::lease::{Lease, acquire, release};
    let (_d, a) = start(None);
    let l = ClickHouseLedger::open(cfg(&a, "leases")).unwrap();
    let ttl = Duration::from_secs(600);
    let settle = Duration::from_millis(50);
    let first = acquire(&l, "digest", "replica-b", ttl, settle).unwrap();
    assert!(matches!(first, Lease::Held { term: 1, .. }), "{first:?}");
    // Another replica is refused while the lease runs; the holder renews it.
    let other = acquire(&l, "digest", "replica-a", ttl, settle).unwrap();
    assert!(
        matches!(other, Lease::Busy { ref holder, .. } if holder == "replica-b"),
        "{other:?}"
    );
    let renew = acquire(&l, "digest", "replica-b", ttl, settle).unwrap();
    assert!(matches!(renew, Lease::Held { term: 1, .. }), "{renew:?}");
    // Released: the next replica takes term 2.
    release(&l, "digest", "replica-b").unwrap();
    let next = acquire(&l, "digest", "replica-a", ttl, settle).unwrap();
    assert!(matches!(next, Lease::Held { term: 2, .. }), "{next:?}");
    // Eight replicas racing for a fresh lease: exactly one holds it.
    let held = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for i in 0..8 {
            let (l, held, url) = (&l, &held, a.url.clone());
            let _ = l;
            s.spawn(move || {
                let mine = ClickHouseLedger::connect(cfg_url(&url, "leases"));
                let got = acquire(
                    &mine,
                    "month-end",
                    &format!("r{i}"),
                    ttl,
                    Duration::from_millis(300),
                )
                .unwrap();
                if matches!(got, Lease::Held { .. }) {
                    held.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(held.load(Ordering::Relaxed), 1);
}

fn cfg_url(url: &str, db: &str) -> ClickHouseConfig {
    ClickHouseConfig::new(url, db)
}

#[test]
fn awkward_text_round_trips() {
    let (_d, a) = start(None);
    let mut l = ClickHouseLedger::open(cfg(&a, "text")).unwrap();
    // Tabs, newlines, backslashes and quotes in a dimension, a tag key and value, and an id.
    let odd = "a\tb\\c\nd'e\"f\r{}:,";
    let mut e = event(1, "2026-07-01T10:00:00Z", Some(odd), 1, Some("0.5"));
    e.attribution.tags.insert(odd.to_string(), odd.to_string());
    e.request_id = Some(odd.to_string());
    l.append(std::slice::from_ref(&e)).unwrap();
    assert_eq!(l.get_event(&e.event_id).unwrap().unwrap(), e);
    let q = SummaryQuery::new(
        "2026-07-01T00:00:00Z".parse().unwrap(),
        "2026-07-02T00:00:00Z".parse().unwrap(),
        vec![Dim::Team],
    )
    .filter(Dim::Team, odd);
    let rows = l.summarize(&q).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].keys, vec![odd.to_string()]);
    // Appending it again is a duplicate, found by id.
    let again = l.append(std::slice::from_ref(&e)).unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 1));
}

/// The adapter speaks the documented subset of ClickHouse's HTTP interface
/// (tests/clickhouse/README.md), checked over raw HTTP.
#[test]
fn adapter_speaks_the_documented_http_subset() {
    let (_d, a) = start(None);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |q: &str| {
        let mut r = agent.get(format!("{}/{q}", a.url)).call().unwrap();
        let code = r
            .headers()
            .get("X-ClickHouse-Exception-Code")
            .map(|v| v.to_str().unwrap().to_string());
        (
            r.status().as_u16(),
            code,
            r.body_mut().read_to_string().unwrap(),
        )
    };
    let post = |q: &str, body: &str| {
        let mut r = agent.post(format!("{}/{q}", a.url)).send(body).unwrap();
        let code = r
            .headers()
            .get("X-ClickHouse-Exception-Code")
            .map(|v| v.to_str().unwrap().to_string());
        (
            r.status().as_u16(),
            code,
            r.body_mut().read_to_string().unwrap(),
        )
    };
    assert_eq!(get("ping").2, "Ok.\n");
    // Query in the URL, a typed parameter, FORMAT in the query.
    let (s, _, body) = get(
        "?query=SELECT%20%7Bx:UInt8%7D%20%2B%201%20AS%20y%20FORMAT%20TabSeparatedWithNames&param_x=41",
    );
    assert_eq!((s, body.as_str()), (200, "y\n42\n"));
    // A default format, and a setting as a URL parameter (applied to this request only).
    let (_, _, body) = post(
        "?default_format=JSONEachRow&max_threads=3",
        "SELECT getSetting('max_threads') AS t",
    );
    assert_eq!(body, "{\"t\":3}\n");
    let (_, _, body) = post(
        "?default_format=JSONEachRow",
        "SELECT getSetting('max_threads') = 3 AS t",
    );
    assert_eq!(body, "{\"t\":0}\n");
    // database=, an insert with its data in the body, an unknown table.
    assert_eq!(post("", "CREATE DATABASE d").0, 200);
    assert_eq!(
        post(
            "?database=d",
            "CREATE TABLE t (a UInt64) ENGINE = MergeTree ORDER BY a"
        )
        .0,
        200
    );
    assert_eq!(
        post(
            "?database=d&query=INSERT%20INTO%20t%20FORMAT%20TabSeparated",
            "1\n2\n"
        )
        .0,
        200
    );
    assert_eq!(post("?database=d", "SELECT sum(a) FROM t").2, "3\n");
    let (s, code, body) = post("?database=d", "SELECT * FROM nope");
    assert_eq!((s, code.as_deref()), (404, Some("60")));
    assert!(body.starts_with("Code: 60. DB::Exception:"), "{body}");
    // GET is read-only, as on a server; so is readonly=2; multi-statements are refused.
    let (s, code, _) = get("?database=d&query=DROP%20TABLE%20t");
    assert_eq!((s, code.as_deref()), (403, Some("164")));
    let (s, code, _) = post("?database=d&readonly=2", "INSERT INTO t VALUES (5)");
    assert_eq!((s, code.as_deref()), (403, Some("164")));
    let (s, code, _) = post("?database=d", "SELECT 1; DROP TABLE t");
    assert_eq!((s, code.as_deref()), (400, Some("62")));
    assert_eq!(post("?database=d", "SELECT count() FROM t").2, "2\n");
}

#[test]
fn duplicates_are_found_below_and_above_the_largest_stored_id() {
    let (_d, a) = start(None);
    let mut l = ClickHouseLedger::open(cfg(&a, "ids")).unwrap();
    let ev = |n: u32| event(n, "2026-07-01T10:00:00Z", Some("a"), 1, Some("1"));
    // Ids 2 and 3 first; then 4 and 5 sort after everything stored (no lookup needed).
    assert_eq!(l.append(&[ev(2), ev(3)]).unwrap().inserted, 2);
    assert_eq!(l.append(&[ev(4), ev(5)]).unwrap().inserted, 2);
    // 1 sorts below, 3 and 5 are stored, 6 is new: 2 inserted, 2 duplicates.
    let out = l.append(&[ev(1), ev(3), ev(5), ev(6)]).unwrap();
    assert_eq!((out.inserted, out.duplicates), (2, 2));
    // Within one writer: the same id twice counts once.
    let out = l.append(&[ev(7), ev(7)]).unwrap();
    assert_eq!((out.inserted, out.duplicates), (1, 1));
    assert_eq!(l.event_count().unwrap(), 7);
    // Both ways of finding them: a range holding at most twice the batch's size in stored
    // ids is read and intersected here (above: 2..5 stored in the range 1..6 of a batch of
    // 4; 4..7 in the range 4..8 of a batch of 2); one holding more is looked up id by id on
    // the server (1..8 stored in the range 1..9 of a batch of 2).
    let out = l.append(&[ev(4), ev(8)]).unwrap();
    assert_eq!((out.inserted, out.duplicates), (1, 1));
    let out = l.append(&[ev(1), ev(9)]).unwrap();
    assert_eq!((out.inserted, out.duplicates), (1, 1));
    assert_eq!(l.event_count().unwrap(), 9);
}

/// `usage_by_key` reads whole hours from `key_rollups` (migration 4) only where they agree
/// with `rollups`, so a ledger whose key rollups are empty (events stored before the
/// migration) or off for an hour gives the same answer from the events; the migration's
/// backfill fills them once, and running it again adds nothing.
#[test]
fn key_rollups_answer_whole_hours_and_fall_back_where_they_disagree() {
    let (_d, a) = start(None);
    let mut l = ClickHouseLedger::open(cfg(&a, "keys")).unwrap();
    let mut evs = vec![
        event(1, "2026-07-01T10:05:00Z", Some("a"), 100, Some("1.5")),
        event(2, "2026-07-01T10:55:00Z", Some("a"), 50, Some("0.25")),
        event(3, "2026-07-01T11:00:00Z", Some("b"), 7, None),
        event(4, "2026-07-01T12:59:59Z", Some("b"), 9, Some("9")),
    ];
    evs[0].attribution.api_key_id = Some("k1".into());
    evs[1].attribution.api_key_id = Some("k1".into());
    evs[3].attribution.api_key_id = Some("k2".into());
    l.append(&evs).unwrap();
    let ts = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    let day = |l: &ClickHouseLedger| {
        l.usage_by_key(
            ts("2026-07-01T00:00:00Z"),
            ts("2026-07-02T00:00:00Z"),
            false,
        )
        .unwrap()
    };
    let want = day(&l);
    // Hour 10 on k1: 150 tokens, 1.75; hour 11 on the events' default key-1: 7 tokens,
    // unpriced; hour 12 on k2: 9 tokens, 9.
    let got: Vec<(String, String, u64, i128, u64)> = want
        .iter()
        .map(|u| {
            (
                u.bucket.clone(),
                u.api_key_id.clone(),
                u.totals.input_tokens,
                u.totals.cost_e12,
                u.unpriced,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "2026-07-01T10:00:00.000000Z".into(),
                "k1".into(),
                150,
                1_750_000_000_000,
                0
            ),
            (
                "2026-07-01T11:00:00.000000Z".into(),
                "key-1".into(),
                7,
                0,
                1
            ),
            (
                "2026-07-01T12:00:00.000000Z".into(),
                "k2".into(),
                9,
                9_000_000_000_000,
                0
            ),
        ]
    );
    let key_rollups = |l: &ClickHouseLedger| {
        l.query_sql("SELECT sum(requests), sum(input_tokens) FROM key_rollups")
            .unwrap()
            .rows
    };
    // The materialized view filled key_rollups on insert: 4 requests, 166 tokens.
    assert_eq!(
        key_rollups(&l),
        vec![vec![SqlValue::Integer(4), SqlValue::Integer(166)]]
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let exec = |sql: &str| {
        let r = agent
            .post(format!("{}/?database=keys", a.url))
            .send(sql)
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{sql}");
    };
    // Key rollups that disagree with the rollups for hour 11 (a row counted twice): that hour
    // comes from the events, the others from key_rollups; same answer.
    exec(
        "INSERT INTO key_rollups SELECT * FROM key_rollups WHERE hour = toDateTime('2026-07-01 11:00:00', 'UTC')",
    );
    assert_eq!(day(&l), want);
    // No key rollups at all (a ledger from before migration 4): every hour from the events.
    exec("TRUNCATE TABLE key_rollups");
    assert_eq!(day(&l), want);
    // The migration's backfill fills them from `events FINAL`, and only while they are empty.
    let fill: Vec<String> = tollgate_clickhouse::schema::MIGRATIONS
        .iter()
        .filter(|m| m.0 == 4)
        .flat_map(|m| m.2.iter())
        .flat_map(|s| {
            tollgate_clickhouse::schema::render(
                "keys",
                &tollgate_clickhouse::schema::Layout::Single,
                s,
            )
        })
        .filter(|s| s.starts_with("INSERT INTO"))
        .collect();
    assert_eq!(fill.len(), 1);
    exec(&fill[0]);
    exec(&fill[0]);
    assert_eq!(
        key_rollups(&l),
        vec![vec![SqlValue::Integer(4), SqlValue::Integer(166)]]
    );
    assert_eq!(day(&l), want);

    // An upgrade from schema version 3 with events stored: migrating applies 4, which fills
    // key_rollups from the events and attaches the view for the appends that follow.
    exec("DROP VIEW key_rollups_mv");
    exec("DROP TABLE key_rollups");
    exec("DELETE FROM schema_migrations WHERE version = 4");
    assert_eq!(l.applied_version().unwrap(), 3);
    assert_eq!(l.migrate().unwrap(), vec![4]);
    assert_eq!(
        key_rollups(&l),
        vec![vec![SqlValue::Integer(4), SqlValue::Integer(166)]]
    );
    let mut e5 = event(5, "2026-07-01T12:10:00Z", Some("b"), 11, Some("1"));
    e5.attribution.api_key_id = Some("k2".into());
    l.append(&[e5]).unwrap();
    // 5 requests, 166 + 11 = 177 tokens; hour 12 on k2 now 9 + 11 = 20 tokens, 9 + 1 = 10.
    assert_eq!(
        key_rollups(&l),
        vec![vec![SqlValue::Integer(5), SqlValue::Integer(177)]]
    );
    let after = day(&l);
    assert_eq!(after[..2], want[..2]);
    assert_eq!(
        (after[2].totals.input_tokens, after[2].totals.cost_e12),
        (20, 10_000_000_000_000)
    );
}

/// The gateway's opener: a server that is down does not stop it (the migrations wait for the
/// first write); once the server is up, the first writer applies them and appends.
#[test]
fn a_ledger_opened_while_the_server_is_down_migrates_on_the_first_write() {
    let (_d, mut a) = start(None);
    a.kill();
    let mut c = cfg(&a, "later");
    c.attempts = 1;
    let mut l = ClickHouseLedger::open_when_reachable(c).unwrap();
    let e = event(1, "2026-07-01T10:05:00Z", Some("a"), 100, Some("1.5"));
    let err = l.append(std::slice::from_ref(&e)).unwrap_err().to_string();
    assert!(err.contains("cannot reach ClickHouse"), "{err}");
    a.restart().unwrap();
    assert_eq!(l.append(std::slice::from_ref(&e)).unwrap().inserted, 1);
    assert_eq!(
        l.applied_version().unwrap(),
        tollgate_clickhouse::schema::schema_version()
    );
    assert_eq!(l.get_event(&e.event_id).unwrap().unwrap(), e);
}

/// A server that accepts connections and never answers (a hung host) does not hold the
/// gateway's opener or its first writes for the request timeout: each waits for one `/ping`
/// of at most 5 s, then defers (open) or fails (writer, retried by the spool).
#[test]
fn a_silent_server_is_given_up_on_after_one_short_probe() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut c = ClickHouseConfig::new(&format!("http://127.0.0.1:{port}"), "hung");
    c.timeout = Duration::from_secs(600);
    let t = std::time::Instant::now();
    let mut l = ClickHouseLedger::open_when_reachable(c).unwrap();
    let e = event(1, "2026-07-01T10:05:00Z", Some("a"), 1, Some("1"));
    let err = l.append(&[e]).unwrap_err().to_string();
    assert!(err.contains("cannot reach ClickHouse"), "{err}");
    // Two probes of 5 s, not the 600 s request timeout.
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    drop(silent);
}
