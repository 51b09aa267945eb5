//! A malformed record fails the whole file with `FILE:LINE: FIELD: problem`, and nothing of the
//! file is written (not even the good lines before it).

use serde_json::json;

use crate::support::{Sandbox, event, jsonl};

/// Writes two good JSONL lines and then `third` (raw text), ingests the file by its relative
/// name, asserts the failure and an untouched ledger, and returns stderr.
fn fails_on_line_3(file: &str, third: &str) -> String {
    let sb = Sandbox::new();
    let good = jsonl(&[
        event(1, json!({"input_tokens": 10})),
        event(2, json!({"cost": "0.5"})),
    ]);
    sb.write(file, format!("{good}{third}\n"));
    let err = sb.run(&["ingest", "events", file]).fails().to_string();
    assert_nothing_written(&sb);
    err
}

fn assert_nothing_written(sb: &Sandbox) {
    // The ledger may exist (opened before reading), but holds nothing of the file.
    assert_eq!(sb.event_count(), 0, "a failed import wrote events");
    let imports = sb.sql("SELECT COUNT(*) AS n FROM imports");
    assert_eq!(imports[0]["n"], 0, "a failed import was recorded");
    let rollups = sb.sql("SELECT COUNT(*) AS n FROM rollups");
    assert_eq!(rollups[0]["n"], 0, "a failed import left rollups");
}

fn line(overrides: serde_json::Value) -> String {
    serde_json::Value::Object(event(3, overrides)).to_string()
}

#[test]
fn negative_tokens() {
    let err = fails_on_line_3("bad.jsonl", &line(json!({"input_tokens": -5})));
    assert!(err.contains("bad.jsonl:3: input_tokens:"), "{err}");
    assert!(err.contains("negative"), "{err}");
}

#[test]
fn unknown_environment() {
    let err = fails_on_line_3("env.jsonl", &line(json!({"environment": "production"})));
    assert!(err.contains("env.jsonl:3: environment:"), "{err}");
    assert!(err.contains("production"), "{err}");
}

#[test]
fn bad_timestamp() {
    // No offset: not an RFC 3339 instant.
    let err = fails_on_line_3(
        "time.jsonl",
        &line(json!({"occurred_at": "2026-07-10 12:00:00"})),
    );
    assert!(err.contains("time.jsonl:3: occurred_at:"), "{err}");
    assert!(err.contains("2026-07-10 12:00:00"), "{err}");
}

#[test]
fn timestamp_without_offset() {
    // A local time with no offset is ambiguous: refused, not guessed as UTC.
    let err = fails_on_line_3(
        "local.jsonl",
        &line(json!({"occurred_at": "2026-07-10T12:00:00"})),
    );
    assert!(err.contains("local.jsonl:3: occurred_at:"), "{err}");
}

#[test]
fn blank_lines_still_count_as_lines() {
    let sb = Sandbox::new();
    let good = jsonl(&[event(1, json!({}))]);
    // line 1 good, line 2 blank, line 3 good, line 4 bad
    let text = format!(
        "{good}\n{}{}\n",
        jsonl(&[event(2, json!({}))]),
        line(json!({"latency_ms": -1}))
    );
    sb.write("gaps.jsonl", text);
    let err = sb
        .run(&["ingest", "events", "gaps.jsonl"])
        .fails()
        .to_string();
    assert!(err.contains("gaps.jsonl:4: latency_ms:"), "{err}");
    assert_nothing_written(&sb);
}

#[test]
fn invalid_json() {
    let err = fails_on_line_3(
        "broken.jsonl",
        r#"{"event_id": "00000000-0000-7000-8000-000000000003", "#,
    );
    assert!(err.contains("broken.jsonl:3:"), "{err}");
    assert!(err.contains("JSON"), "{err}");
}

#[test]
fn unknown_field() {
    let err = fails_on_line_3("field.jsonl", &line(json!({"prompt": "hello"})));
    assert!(err.contains("field.jsonl:3: prompt:"), "{err}");
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn cost_as_a_json_number() {
    let err = fails_on_line_3("money.jsonl", &line(json!({"cost": 0.5})));
    assert!(err.contains("money.jsonl:3: cost:"), "{err}");
    assert!(err.contains("JSON number"), "{err}");
}

#[test]
fn wrong_type() {
    let err = fails_on_line_3("type.jsonl", &line(json!({"output_tokens": "620"})));
    assert!(err.contains("type.jsonl:3: output_tokens:"), "{err}");
}

#[test]
fn reasoning_above_output() {
    let err = fails_on_line_3(
        "reason.jsonl",
        &line(json!({"output_tokens": 5, "reasoning_tokens": 6})),
    );
    assert!(err.contains("reason.jsonl:3: reasoning_tokens:"), "{err}");
}

#[test]
fn bad_event_id() {
    let err = fails_on_line_3("id.jsonl", &line(json!({"event_id": "not-a-uuid"})));
    assert!(err.contains("id.jsonl:3: event_id:"), "{err}");
}

#[test]
fn missing_model() {
    let err = fails_on_line_3("model.jsonl", &line(json!({"model": null})));
    assert!(err.contains("model.jsonl:3: model:"), "{err}");
}

#[test]
fn the_path_is_named_as_given() {
    // An absolute path is reported as given, too.
    let sb = Sandbox::new();
    let good = jsonl(&[event(1, json!({}))]);
    let p = sb.write(
        "abs.jsonl",
        format!("{good}{good}{}\n", line(json!({"input_tokens": -1}))),
    );
    let given = p.to_str().unwrap();
    let err = sb.run(&["ingest", "events", given]).fails().to_string();
    assert!(err.contains(&format!("{given}:3: input_tokens:")), "{err}");
}

#[test]
fn csv_bad_cell_names_line_and_field() {
    let sb = Sandbox::new();
    // Header is line 1; data row 2 (`abc`) is line 3.
    let csv = "event_id,occurred_at,provider,model,team_id,service,feature,environment,output_tokens\n\
               00000000-0000-7000-8000-000000000001,2026-07-10T12:00:00Z,openai,seed-model,a,chat,answer,prod,10\n\
               00000000-0000-7000-8000-000000000002,2026-07-10T12:00:00Z,openai,seed-model,a,chat,answer,prod,abc\n\
               00000000-0000-7000-8000-000000000003,2026-07-10T12:00:00Z,openai,seed-model,a,chat,answer,prod,30\n";
    sb.write("bad.csv", csv);
    let err = sb.run(&["ingest", "events", "bad.csv"]).fails().to_string();
    assert!(err.contains("bad.csv:3: output_tokens:"), "{err}");
    assert!(err.contains("abc"), "{err}");
    assert_nothing_written(&sb);
}

#[test]
fn csv_unknown_column() {
    let sb = Sandbox::new();
    sb.write(
        "cols.csv",
        "event_id,occurred_at,provider,model,prompt\n00000000-0000-7000-8000-000000000001,2026-07-10T12:00:00Z,openai,seed-model,hi\n",
    );
    let err = sb
        .run(&["ingest", "events", "cols.csv"])
        .fails()
        .to_string();
    assert!(err.contains("cols.csv:1: prompt:"), "{err}");
    assert_nothing_written(&sb);
}

#[test]
fn a_failed_file_leaves_earlier_imports_intact() {
    let sb = Sandbox::new();
    sb.write("good.jsonl", jsonl(&[event(10, json!({"cost": "0.25"}))]));
    assert_eq!(sb.ingest("good.jsonl")["ingested"], 1);
    sb.write(
        "bad.jsonl",
        format!(
            "{}{}\n",
            jsonl(&[event(11, json!({}))]),
            line(json!({"environment": "qa"}))
        ),
    );
    let err = sb
        .run(&["ingest", "events", "bad.jsonl"])
        .fails()
        .to_string();
    assert!(err.contains("bad.jsonl:2: environment:"), "{err}");
    assert_eq!(sb.event_count(), 1);
}

#[test]
fn of_two_bad_lines_in_different_chunks_the_earlier_is_reported() {
    // 40 lines; line 7 and line 31 are bad (and line 31's problem is found sooner: it is
    // not even JSON). Parsed in chunks of 1, 3, 8 and 40 lines by several threads, the error
    // is always line 7's, as a one-by-one reading would give, and nothing is written.
    let sb = Sandbox::new();
    let mut text = String::new();
    for n in 1..=40u32 {
        let l = match n {
            7 => line(json!({"environment": "production"})),
            31 => "{not json".to_string(),
            _ => serde_json::Value::Object(event(n, json!({"output_tokens": n}))).to_string(),
        };
        text.push_str(&l);
        text.push('\n');
    }
    sb.write("two-bad.jsonl", &text);
    for lines in ["1", "3", "8", "40"] {
        let err = sb
            .run_env(
                &[("TOLLGATE_INGEST_CHUNK_LINES", lines)],
                &["ingest", "events", "two-bad.jsonl"],
            )
            .fails()
            .to_string();
        assert!(
            err.contains("two-bad.jsonl:7: environment:"),
            "chunks of {lines}: {err}"
        );
        assert!(!err.contains(":31:"), "chunks of {lines}: {err}");
        assert_nothing_written(&sb);
    }
}

#[test]
fn a_line_that_is_not_utf8_is_named_after_earlier_bad_records() {
    let sb = Sandbox::new();
    let good = jsonl(&[event(1, json!({}))]);
    // Line 2 is not UTF-8; in another file line 2 is a bad record and line 3 not UTF-8.
    let mut bytes = good.clone().into_bytes();
    bytes.extend_from_slice(b"{\"team_id\":\"\xff\"}\n");
    sb.write("latin.jsonl", &bytes);
    let err = sb
        .run(&["ingest", "events", "latin.jsonl"])
        .fails()
        .to_string();
    assert!(err.contains("latin.jsonl:2: cannot read"), "{err}");
    assert!(err.contains("UTF-8"), "{err}");
    let mut bytes = good.into_bytes();
    bytes.extend_from_slice(line(json!({"output_tokens": -1})).as_bytes());
    bytes.extend_from_slice(b"\n\xff\n");
    sb.write("both.jsonl", &bytes);
    let err = sb
        .run(&["ingest", "events", "both.jsonl"])
        .fails()
        .to_string();
    assert!(err.contains("both.jsonl:2: output_tokens:"), "{err}");
    assert_nothing_written(&sb);
}
