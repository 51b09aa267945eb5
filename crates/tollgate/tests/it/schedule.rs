//! `tollgate schedule run --once --at T`: each job runs at its due instants in its own time
//! zone, a missed run is caught up, and no due instant runs twice.

use serde_json::json;

use crate::support::{Sandbox, event, jsonl, path_str};

const CONFIG: &str = r#"
[tenants.t1]
name = "T1"
number = "T1-{YYYY}{MM}"
plan = "pass_through"
margin = "0.20"

[[schedules]]
name = "weekly-digest"
job = "digest"
weekly = "MON 09:00"
timezone = "Europe/Berlin"
out_dir = "out"

[[schedules]]
name = "cfo"
job = "cfo"
monthly = "1 06:00"
timezone = "UTC"
out_dir = "out"

[[schedules]]
name = "invoices"
job = "invoices"
monthly = "1 10:00"
out_dir = "out"

[[schedules]]
name = "alerts"
job = "alerts"
every = "5m"
out_dir = "out"
"#;

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    // One call a day through July and August 2026 for tenant t1 (1,000 input tokens each).
    let mut evs = Vec::new();
    let mut n = 0;
    for (m, days) in [(7, 31), (8, 31)] {
        for d in 1..=days {
            n += 1;
            evs.push(event(
                n,
                json!({"occurred_at": format!("2026-{m:02}-{d:02}T12:00:00Z"),
                    "tenant_id": "t1", "input_tokens": 1000}),
            ));
        }
    }
    sb.write("events.jsonl", jsonl(&evs));
    sb.ingest("events.jsonl");
    sb.write("tollgate.toml", CONFIG);
    sb
}

fn once(sb: &Sandbox, at: &str) -> String {
    sb.run(&[
        "--config",
        path_str(&sb.path().join("tollgate.toml")),
        "schedule",
        "run",
        "--once",
        "--at",
        at,
    ])
    .ok()
    .to_string()
}

#[test]
fn jobs_run_when_due_catch_up_and_never_twice() {
    let sb = sandbox();
    let out = sb.path().join("out");
    // Monday 2026-08-03 08:50 in Berlin (CEST, UTC+2) = 06:50Z: this Monday's 09:00 digest is
    // not due yet, so the latest weekly run is the Monday before (2026-07-27 09:00 Berlin =
    // 07:00Z: the digest of W30, the week before it); the CFO PDF of July (due 2026-08-01
    // 06:00Z), July's invoices (due 10:00Z) and the anomaly check of 06:50Z are due.
    let log = once(&sb, "2026-08-03T06:50:00Z");
    assert!(
        log.contains("weekly-digest digest (due 2026-07-27T07:00:00.000000Z)"),
        "{log}"
    );
    assert!(out.join("digest-2026-W30.json").is_file(), "{log}");
    assert!(
        log.contains("cfo cfo (due 2026-08-01T06:00:00.000000Z)"),
        "{log}"
    );
    assert!(
        std::fs::read(out.join("cfo-2026-07.pdf"))
            .unwrap()
            .starts_with(b"%PDF")
    );
    assert!(
        log.contains("invoices invoices (due 2026-08-01T10:00:00.000000Z)"),
        "{log}"
    );
    let inv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("invoices/T1-202607.json")).unwrap())
            .unwrap();
    assert_eq!(inv["period"]["start"], "2026-07-01T00:00:00.000000Z");
    assert!(
        log.contains("alerts alerts (due 2026-08-03T06:50:00.000000Z)"),
        "{log}"
    );
    assert_eq!(log.lines().count(), 4, "{log}");

    // A minute later nothing is due: every due instant ran once.
    let log = once(&sb, "2026-08-03T06:51:00Z");
    assert_eq!(log.trim(), "nothing due at 2026-08-03T06:51:00.000000Z");

    // The scheduler was down for two weeks: both missed digests run, oldest first (Monday
    // 2026-08-03 and 2026-08-10 09:00 Berlin = 07:00Z, the digests of W31 and W32); the
    // anomaly check runs once, for the latest instant (08:15Z), not for every 5 minutes missed.
    let log = once(&sb, "2026-08-10T08:17:00Z");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[0].starts_with("weekly-digest digest (due 2026-08-03T07:00:00.000000Z)"),
        "{log}"
    );
    assert!(
        lines[1].starts_with("weekly-digest digest (due 2026-08-10T07:00:00.000000Z)"),
        "{log}"
    );
    assert!(
        lines[2].starts_with("alerts alerts (due 2026-08-10T08:15:00.000000Z)"),
        "{log}"
    );
    for w in ["2026-W31", "2026-W32"] {
        assert!(out.join(format!("digest-{w}.json")).is_file(), "{w}");
    }
    // The state names each schedule's last due instant done.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.data_dir().join("schedules/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["cfo"], "2026-08-01T06:00:00.000000Z");
    assert_eq!(state["weekly-digest"], "2026-08-10T07:00:00.000000Z");
}

#[test]
fn schedule_settings_are_checked() {
    let sb = Sandbox::new();
    for (toml, want) in [
        (
            "[[schedules]]\njob = \"backup\"\nevery = \"5m\"\n",
            "schedules[0].job: \"backup\" is not a job",
        ),
        (
            "[[schedules]]\njob = \"alerts\"\nevery = \"5 minutes\"\n",
            "schedules[0].every: \"5 minutes\" is not an interval",
        ),
        (
            "[[schedules]]\njob = \"digest\"\nweekly = \"MONDAY 9\"\n",
            "schedules[0].weekly: \"MONDAY 9\" is not a weekday and time",
        ),
        (
            "[[schedules]]\njob = \"cfo\"\nmonthly = \"1 06:00\"\nweekly = \"MON 09:00\"\n",
            "schedules[0]: give exactly one of every",
        ),
        (
            "[[schedules]]\njob = \"cfo\"\nmonthly = \"1 06:00\"\npost = true\n",
            "schedules[0].post: only the digest and alerts jobs post",
        ),
    ] {
        crate::support::assert_config_refused(&sb, toml, want);
    }
}
