//! The fast event reader must agree with serde_json on every line: same event, or the same
//! error (it defers to serde_json whenever it is unsure).

use proptest::prelude::*;
use tollgate_core::event::{fast_reader_accepts, parse_json_event, parse_json_event_serde};

fn same(line: &str) {
    let fast = parse_json_event(line);
    let slow = parse_json_event_serde(line);
    assert_eq!(fast, slow, "line: {line}");
}

#[test]
fn agrees_on_hand_picked_lines() {
    let base = r#""event_id":"01890a5d-ac96-774b-bcce-b302099a8057","occurred_at":"2026-07-01T12:00:00Z","provider":"openai","model":"gpt-4o""#;
    for extra in [
        "",
        r#","input_tokens":0"#,
        r#","input_tokens":18446744073709551615"#,
        r#","input_tokens":18446744073709551616"#,
        r#","input_tokens":1.0"#,
        r#","input_tokens":1e3"#,
        r#","input_tokens":-1"#,
        r#","input_tokens":01"#,
        r#","input_tokens":null"#,
        r#","input_tokens":"5""#,
        r#","attempt":4294967296"#,
        r#","http_status":65536"#,
        r#","streamed":true"#,
        r#","streamed":1"#,
        r#","team_id":"t\"q""#,
        r#","team_id":"t\u00e9""#,
        r#","team_id":"tÃ©am ✓""#,
        r#","team_id":"""#,
        r#","team_id":null"#,
        r#","tags":{}"#,
        r#","tags":{"a":"b","c":"d"}"#,
        r#","tags":{"a":1}"#,
        r#","tags":{"a":{"b":"c"}}"#,
        r#","tags":{"a":"b","a":"c"}"#,
        r#","units":{"images":2,"audio_seconds":31.5,"x":"1.25"}"#,
        r#","units":{"images":-2}"#,
        r#","units":{"images":1e2}"#,
        r#","cost":"0.5""#,
        r#","cost":0.5"#,
        r#","cost":null"#,
        r#","cost":"0.5","cost_breakdown":{"input":"0.5"}"#,
        r#","cost":"0.5","cost_breakdown":{"input":0.5}"#,
        r#","model":"dup""#,
        r#","prompt":"hello""#,
        r#" , "status" : "ok" "#,
        r#","status":"OK""#,
    ] {
        same(&format!("{{{base}{extra}}}"));
        same(&format!("  {{ {base}{extra} }}  "));
    }
    for odd in [
        "",
        "{",
        "}",
        "[]",
        "{}",
        "null",
        r#"{"event_id":"x"} trailing"#,
        "{\"a\":1,}",
    ] {
        same(odd);
    }
}

#[test]
fn the_fast_reader_takes_ordinary_lines_and_defers_on_odd_ones() {
    let ordinary = r#"{"event_id":"01890a5d-ac96-774b-bcce-b302099a8057","occurred_at":"2026-07-01T12:00:00Z","provider":"openai","model":"gpt-4o","team_id":"t","tags":{"k":"v"},"units":{"images":2},"streamed":false,"input_tokens":5,"cost":"0.1","cost_breakdown":{"input":"0.1"}}"#;
    assert!(fast_reader_accepts(ordinary));
    // An escape, a money number and a duplicate go to serde_json.
    assert!(!fast_reader_accepts(
        &ordinary.replace("\"t\"", "\"t\\\"x\"")
    ));
    assert!(!fast_reader_accepts(
        &ordinary.replace("\"cost\":\"0.1\"", "\"cost\":0.1")
    ));
    assert!(!fast_reader_accepts(
        &ordinary.replace("\"team_id\":\"t\"", "\"model\":\"x\"")
    ));
}

proptest! {
    /// Random events built from the canonical fields agree between the two readers.
    #[test]
    fn agrees_on_generated_events(
        tokens in prop::array::uniform6(0u64..10_000_000),
        team in prop::option::of("[a-z][a-z0-9-]{0,12}"),
        feature in prop::option::of("[a-zA-Z ._-]{0,10}"),
        env in prop::sample::select(vec!["prod", "staging", "dev", "test", "production", ""]),
        streamed in any::<bool>(),
        cost in prop::option::of((0u32..1_000_000, 0u32..6)),
        tag in prop::option::of(("[a-z]{1,5}", "[ -~]{0,8}")),
        ws in prop::sample::select(vec!["", " ", "\t", "\n "]),
        micros in 0u32..1_000_000,
    ) {
        let mut parts = vec![
            "\"event_id\":\"01890a5d-ac96-774b-bcce-b302099a8057\"".to_string(),
            format!("\"occurred_at\":\"2026-07-01T12:00:00.{micros:06}+02:00\""),
            "\"provider\":\"anthropic\"".to_string(),
            "\"model\":\"claude-sonnet-4-5\"".to_string(),
            format!("\"input_tokens\":{}", tokens[0]),
            format!("\"cache_read_tokens\":{}", tokens[1]),
            format!("\"cache_write_tokens\":{}", tokens[2]),
            format!("\"cache_write_1h_tokens\":{}", tokens[3]),
            format!("\"output_tokens\":{}", tokens[4]),
            format!("\"reasoning_tokens\":{}", tokens[5]),
            format!("\"environment\":\"{env}\""),
            format!("\"streamed\":{streamed}"),
        ];
        if let Some(t) = team { parts.push(format!("\"team_id\":\"{t}\"")); }
        if let Some(f) = feature { parts.push(format!("\"feature\":\"{f}\"")); }
        if let Some((m, sc)) = cost {
            let d = rust_decimal::Decimal::new(i64::from(m), sc);
            parts.push(format!("\"cost\":\"{d}\""));
        }
        if let Some((k, v)) = tag {
            parts.push(format!("\"tags\":{{\"{k}\":{}}}", serde_json::to_string(&v).unwrap()));
        }
        let line = format!("{{{ws}{}{ws}}}", parts.join(&format!(",{ws}")));
        same(&line);
    }
}
