//! `tollgate demo`: a deterministic month into a fresh ledger.

use serde_json::Value;

use crate::support::{Sandbox, path_str};

fn run_demo(sb: &Sandbox, dir: &std::path::Path) -> String {
    sb.run(&["demo", "--dir", path_str(dir), "--events", "3000"])
        .ok()
        .to_string()
}

/// Event count of the demo ledger in `dir`.
fn demo_count(sb: &Sandbox, dir: &std::path::Path) -> i64 {
    let mut c = sb.bare_command();
    c.arg("--data-dir").arg(dir).args([
        "sql",
        "SELECT COUNT(*) AS n FROM events",
        "--format",
        "json",
    ]);
    let out = c.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    v[0]["n"].as_i64().expect("count")
}

#[test]
fn demo_is_deterministic_and_starts_fresh() {
    let sb = Sandbox::new();
    let d = sb.path().join("d");

    let out = run_demo(&sb, &d);
    assert!(out.contains("Monthly summary"), "{out}");
    assert!(out.contains("TOTAL"), "{out}");
    assert!(
        out.contains(&d.join("ledger.sqlite").display().to_string()),
        "{out}"
    );
    for f in [
        "ledger.sqlite",
        "events.jsonl",
        "demo-prices.toml",
        "reports/summary.txt",
        "reports/summary.csv",
        "reports/summary.json",
        "reports/summary.xlsx",
    ] {
        assert!(d.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(d.join("events.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3000
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(d.join("reports/summary.json")).unwrap()).unwrap();
    assert_eq!(report["total"]["requests"], 3000, "{:#}", report["total"]);
    assert!(
        std::fs::read(d.join("reports/summary.xlsx"))
            .unwrap()
            .starts_with(b"PK")
    );
    // The alerts the demo wrote are the ones `alerts check` finds at the same instant.
    assert!(
        out.contains("== Anomaly alerts at 2026-10-17T10:00:00Z (tollgate alerts check) =="),
        "{out}"
    );
    let written: Value =
        serde_json::from_slice(&std::fs::read(d.join("reports/alerts-2026-10-17.json")).unwrap())
            .unwrap();
    let mut c = sb.bare_command();
    c.arg("--data-dir").arg(&d).args([
        "alerts",
        "check",
        "--at",
        "2026-10-17T10:00:00Z",
        "--tz",
        "UTC",
        "--format",
        "json",
    ]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let checked: Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["key"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(keys(&written), keys(&checked));
    for k in keys(&written) {
        let kind = k.split(':').next().unwrap().to_string();
        assert!(out.contains(&format!("  {kind:<18} ")), "{k}: {out}");
    }
    let first_events = std::fs::read(d.join("events.jsonl")).unwrap();
    assert_eq!(demo_count(&sb, &d), 3000);

    // Again: the same bytes, and a fresh ledger (not 6,000 events).
    run_demo(&sb, &d);
    let second_events = std::fs::read(d.join("events.jsonl")).unwrap();
    assert!(
        first_events == second_events,
        "events.jsonl differs between two demo runs"
    );
    assert_eq!(demo_count(&sb, &d), 3000);
    // The demo does not touch the --data-dir ledger.
    assert!(!sb.data_dir().join("ledger.sqlite").exists());
}
