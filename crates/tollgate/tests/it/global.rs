//! Global flags and their environment variables.

use serde_json::json;

use crate::support::{Sandbox, event, jsonl};

#[test]
fn tollgate_data_dir_env_works_like_the_flag() {
    let sb = Sandbox::new();
    let dir = sb.path().join("from-env");
    sb.write("events.jsonl", jsonl(&[event(1, json!({"cost": "0.25"}))]));

    let mut c = sb.bare_command();
    c.env("TOLLGATE_DATA_DIR", &dir)
        .args(["ingest", "events", "events.jsonl", "--format", "json"]);
    let out = c.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.join("ledger.sqlite").is_file(),
        "the env var was ignored"
    );
    // Not the default ./tollgate-data.
    assert!(!sb.path().join("tollgate-data").exists());

    // Reading through the env var and through the flag sees the same ledger.
    let mut c = sb.bare_command();
    c.env("TOLLGATE_DATA_DIR", &dir)
        .args(["sql", "SELECT cost FROM events", "--format", "json"]);
    let out = c.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!([{"cost": "0.25"}]));

    let mut c = sb.bare_command();
    c.arg("--data-dir").arg(&dir).args([
        "sql",
        "SELECT COUNT(*) AS n FROM events",
        "--format",
        "json",
    ]);
    let out = c.output().expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!([{"n": 1}]));
}

#[test]
fn the_flag_wins_over_the_env_var() {
    let sb = Sandbox::new();
    let env_dir = sb.path().join("env");
    let flag_dir = sb.path().join("flag");
    sb.write("events.jsonl", jsonl(&[event(1, json!({"cost": "0.25"}))]));
    let mut c = sb.bare_command();
    c.env("TOLLGATE_DATA_DIR", &env_dir)
        .arg("--data-dir")
        .arg(&flag_dir)
        .args(["ingest", "events", "events.jsonl"]);
    assert!(c.output().expect("run").status.success());
    assert!(flag_dir.join("ledger.sqlite").is_file());
    assert!(!env_dir.exists());
}

#[test]
fn global_flags_go_after_the_subcommand_too() {
    let sb = Sandbox::new();
    let rates = sb.seed_rates();
    let q = sb
        .run(&[
            "price",
            "--provider",
            "openai",
            "--model",
            "seed-model",
            "--input-tokens",
            "2200",
            "--cache-read-tokens",
            "1200",
            "--output-tokens",
            "620",
            "--at",
            "2026-07-01T00:00:00Z",
            "--format",
            "json",
            "--prices",
            rates.to_str().unwrap(),
        ])
        .json();
    // The seed example again: 0.00165 + 0.00009 + 0.00279 = 0.00453.
    assert_eq!(q["cost"], "0.00453");
}

/// A config file naming the ledger, the rate overrides and the reporting defaults, all relative
/// to the file's own directory.
fn write_config(sb: &Sandbox) -> std::path::PathBuf {
    std::fs::create_dir_all(sb.path().join("etc")).unwrap();
    sb.write("etc/rates.toml", crate::support::SEED_RATES);
    sb.write(
        "etc/tollgate.toml",
        "[ledger]\ndata_dir = \"ledger\"\n\
         [pricing]\noverrides = [\"rates.toml\"]\n\
         [reporting]\ntimezone = \"Asia/Almaty\"\ncurrency = \"KZT\"\n\
         [[reporting.fx]]\nperiod = \"2026-07\"\nto = \"KZT\"\nrate = \"510.25\"\nsource = \"NBK\"\n",
    )
}

#[test]
fn config_file_sets_ledger_rates_zone_and_currency() {
    let sb = Sandbox::new();
    let config = write_config(&sb);
    // The seed usage, priced by the override the config names: 0.00453 USD. And a team-b
    // event at 2026-06-30T19:30Z, which is July 1 in Almaty: 0.25 USD.
    sb.write(
        "events.jsonl",
        jsonl(&[
            event(
                1,
                json!({"input_tokens": 2200, "cache_read_tokens": 1200, "output_tokens": 620}),
            ),
            event(
                2,
                json!({"team_id": "b", "occurred_at": "2026-06-30T19:30:00Z", "cost": "0.25"}),
            ),
        ]),
    );
    for env in [false, true] {
        // Once with --config, once with TOLLGATE_CONFIG; each into a fresh ledger.
        let _ = std::fs::remove_dir_all(sb.path().join("etc/ledger"));
        let run = |args: &[&str]| {
            let mut c = sb.bare_command();
            if env {
                c.env("TOLLGATE_CONFIG", &config);
            } else {
                c.arg("--config").arg(&config);
            }
            let out = c.args(args).output().expect("run");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
        };
        let s = run(&["ingest", "events", "events.jsonl", "--format", "json"]);
        assert_eq!(s["ingested"], 2, "{s}");
        assert_eq!(
            s["unpriced"], 0,
            "the override named in the config was not used: {s}"
        );
        assert!(
            sb.path().join("etc/ledger/ledger.sqlite").is_file(),
            "data_dir not relative to the config"
        );

        let doc = run(&[
            "report", "summary", "--period", "2026-07", "--by", "team", "--format", "json",
        ]);
        assert_eq!(doc["period"]["timezone"], "Asia/Almaty");
        assert_eq!(doc["period"]["start"], "2026-06-30T19:00:00.000000Z");
        assert_eq!(doc["currency"], "KZT");
        assert_eq!(doc["fx"]["rate"], "510.25");
        let rows = doc["rows"].as_array().unwrap();
        let cost = |team: &str| {
            rows.iter()
                .find(|r| r["team"] == team)
                .map(|r| r["cost"].clone())
        };
        // a: 0.00453 x 510.25 = 2.3114325 -> 2.31
        assert_eq!(cost("a"), Some(json!("2.31")), "{doc:#}");
        // b: 0.25 x 510.25 = 127.5625 -> 127.56
        assert_eq!(cost("b"), Some(json!("127.56")));
        // 2.31 + 127.56 = 129.87
        assert_eq!(doc["total"]["cost"], "129.87");
    }
}

#[test]
fn a_bad_config_names_the_key() {
    let sb = Sandbox::new();
    let config = sb.write("bad.toml", "[reporting]\ntimezone = \"Mars/Base\"\n");
    let mut c = sb.bare_command();
    let out = c
        .arg("--config")
        .arg(&config)
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reporting.timezone") && err.contains("Mars/Base"),
        "{err}"
    );
}
