//! `tollgate ... | head`: a reader that goes away early is not an error worth a message
//! (main.rs: "Broken pipe (`tollgate ... | head`) is not an error worth a message") and must
//! never be a panic.
//!
//! The read end of the pipe is closed before the binary starts, so the first write to stdout
//! fails with EPIPE, deterministically.

use std::process::Stdio;

use serde_json::json;

use crate::support::{Sandbox, event, jsonl, path_str};

/// Runs the binary with stdout connected to a pipe nobody reads; returns (exit code, stderr).
fn into_closed_pipe(sb: &Sandbox, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut c = sb.bare_command();
    c.arg("--data-dir")
        .arg(sb.data_dir())
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(writer)
        .stderr(Stdio::piped());
    let out = c.output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn assert_quiet_success(code: Option<i32>, stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "panic on a closed stdout:\n{stderr}"
    );
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
}

#[test]
fn sql_into_a_closed_pipe() {
    let sb = Sandbox::new();
    sb.write("events.jsonl", jsonl(&[event(1, json!({"cost": "0.25"}))]));
    sb.ingest("events.jsonl");
    let (code, err) = into_closed_pipe(&sb, &["sql", "SELECT * FROM events"]);
    assert_quiet_success(code, &err);
}

#[test]
fn prices_list_into_a_closed_pipe() {
    let sb = Sandbox::new();
    let (code, err) = into_closed_pipe(&sb, &["prices", "list"]);
    assert_quiet_success(code, &err);
}

// Regression: `price` printed with println!, which panicked on EPIPE (exit 101).
#[test]
fn price_into_a_closed_pipe() {
    let sb = Sandbox::new();
    let rates = sb.seed_rates();
    let (code, err) = into_closed_pipe(
        &sb,
        &[
            "--prices",
            path_str(&rates),
            "price",
            "--provider",
            "openai",
            "--model",
            "seed-model",
            "--input-tokens",
            "10",
            "--at",
            "2026-07-01T00:00:00Z",
            "--format",
            "json",
        ],
    );
    assert_quiet_success(code, &err);
}

// Regression: `prices show` printed with println! and panicked on EPIPE (exit 101).
#[test]
fn prices_show_into_a_closed_pipe() {
    let sb = Sandbox::new();
    let (code, err) = into_closed_pipe(&sb, &["prices", "show", "gpt-4o"]);
    assert_quiet_success(code, &err);
}

// Regression: the ingest summary was printed with println! and panicked on EPIPE (exit 101)
// after the import had committed, reporting a failure for an import that succeeded.
#[test]
fn ingest_into_a_closed_pipe() {
    let sb = Sandbox::new();
    sb.write("events.jsonl", jsonl(&[event(1, json!({"cost": "0.25"}))]));
    let (code, err) = into_closed_pipe(&sb, &["ingest", "events", "events.jsonl"]);
    // The import itself is complete either way.
    assert_eq!(sb.event_count(), 1);
    assert_quiet_success(code, &err);
}
