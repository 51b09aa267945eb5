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
        // Whole numbers read in place: bounds, signs, fractions, exponents, leading zeros.
        r#","attempt":0"#,
        r#","attempt":4294967295"#,
        r#","http_status":65535"#,
        r#","http_status":00"#,
        r#","input_tokens":5."#,
        r#","input_tokens":5e"#,
        r#","input_tokens":1-"#,
        r#","input_tokens":+1"#,
        r#","input_tokens": 7 "#,
        r#","input_tokens":7x"#,
        r#","streamed":nul"#,
        r#","streamed":null"#,
        r#","streamed":"true""#,
        // Objects read in place.
        r#","tags":null"#,
        r#","tags":{"a":null}"#,
        r#","tags":{ "a" : "b" , "c":"d" }"#,
        r#","tags":{"a":"b",}"#,
        r#","units":null"#,
        r#","units":{"a":"1","a":"2"}"#,
        r#","units":{"x":true}"#,
        r#","units":{"x":01}"#,
        r#","cost_breakdown":null"#,
        r#","cost":"0.5","cost_breakdown":{"input":"0.25","input":"0.25"}"#,
        // Strings scanned eight bytes at a time: the end, an escape or a control character
        // at every offset of a word.
        r#","team_id":"abcdefghijklmnop""#,
        r#","team_id":"abcdefghijklmnopq""#,
        r#","team_id":"abcdefghijklmno\"q""#,
        r#","team_id":"abcdefgh\\ijklmnop""#,
        r#","team_id":"abcdefg\\ijklmnop""#,
        ",\"team_id\":\"abcdefghij\u{1}kl\"",
        ",\"team_id\":\"abcdefghijklmno\u{1f}\"",
        ",\"team_id\":\"abcdefghijklmno\u{7f}\"",
        r#","team_id":"ééééééééé✓✓✓✓ and more""#,
        r#","team_id":"abcdefghijklmnopqrstuvwxyz"#,
        // Keys: out of the usual order, near misses of known ones, escaped.
        r#","model_requested":"m","attempt":2,"request_id":"r""#,
        r#","modelx":"a""#,
        r#","mode":"a""#,
        r#","team\u005fid":"t""#,
        r#","team_id" :"t""#,
        // OpenTelemetry ids.
        r#","trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736","span_id":"00f067aa0ba902b7""#,
        r#","span_id":"00f067aa0ba902bG""#,
        r#","trace_id":"""#,
        r#","trace_id":"  ""#,
    ] {
        same(&format!("{{{base}{extra}}}"));
        same(&format!("  {{ {base}{extra} }}  "));
    }
    for id in [
        "01890A5D-AC96-774B-BCCE-B302099A8057",
        "01890a5d-ac96-774b-bcce-b302099a805g",
        "01890a5d-ac96-774b-bcce-b302099a80-7",
        "01890a5dac96-774b-bcce-b302099a8057-",
        "01890a5d-ac96-774b-bcce-b302099a8057 ",
        "",
    ] {
        same(&format!(
            r#"{{"event_id":"{id}","occurred_at":"2026-07-01T12:00:00Z","provider":"openai","model":"gpt-4o"}}"#
        ));
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
