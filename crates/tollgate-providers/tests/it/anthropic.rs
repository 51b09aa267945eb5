//! `anthropic-usage` and `anthropic-cost` against `samples/anthropic_usage_report.json` and
//! `samples/anthropic_cost_report.json` (2026-09-01 and 02).

use tollgate_providers::bills::{self, BillType, LineKind, TokenClass};

use crate::{class_lines, d, error, parse, replace_once, sample, summary, text, ts};

const USAGE: &str = "anthropic_usage_report.json";
const COST: &str = "anthropic_cost_report.json";

// The usage sample, result by result (classes are already disjoint):
//                         uncached   cache read  write 5m  write 1h   output  web searches
//   d1 sonnet-4 std        152,300      880,400    40,000    12,000   61,250  14
//   d1 sonnet-4 batch      500,000            0         0         0  120,000   0
//   d1 haiku-3.5 (default)2,400,000   3,100,000   100,000         0  310,000   -
//   d2 sonnet-4 200k-1M    640,000    1,200,000         0         0   22,000   3
//   d2 haiku-3.5 (default)1,800,000   2,200,000    50,000         0  250,000   -
// input      = 152,300 + 500,000 + 2,400,000 + 640,000 + 1,800,000 = 5,492,300
// cache read = 880,400 + 3,100,000 + 1,200,000 + 2,200,000         = 7,380,400
// write 5m   = 40,000 + 100,000 + 50,000                           =   190,000
// write 1h   = 12,000
// output     = 61,250 + 120,000 + 310,000 + 22,000 + 250,000       =   763,250
// web search = 14 + 3                                              =        17
// Lines (non-zero only): 5+1, 2, 4, 3+1, 4 = 20.

#[test]
fn usage_sample_totals() {
    let s = summary(BillType::AnthropicUsage, USAGE, &sample(USAGE));
    assert_eq!(s.provider, "anthropic");
    assert_eq!(s.lines, 20);
    assert_eq!(s.tokens.input, 5_492_300);
    assert_eq!(s.tokens.cache_read, 7_380_400);
    assert_eq!(s.tokens.cache_write, 190_000);
    assert_eq!(s.tokens.cache_write_1h, 12_000);
    assert_eq!(s.tokens.output, 763_250);
    assert_eq!(s.quantities.get("web_search_requests"), Some(&d("17")));
    assert_eq!(s.cost, None);
    assert_eq!(s.period_start, ts("2026-09-01T00:00:00Z"));
    assert_eq!(s.period_end, ts("2026-09-03T00:00:00Z"));
}

#[test]
fn usage_classes_add_up_to_the_files_own_fields() {
    let bytes = sample(USAGE);
    let raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut total_input = 0;
    for bucket in raw["data"].as_array().unwrap() {
        for r in bucket["results"].as_array().unwrap() {
            total_input += r["uncached_input_tokens"].as_u64().unwrap()
                + r["cache_read_input_tokens"].as_u64().unwrap()
                + r["cache_creation"]["ephemeral_5m_input_tokens"]
                    .as_u64()
                    .unwrap()
                + r["cache_creation"]["ephemeral_1h_input_tokens"]
                    .as_u64()
                    .unwrap();
        }
    }
    let s = summary(BillType::AnthropicUsage, USAGE, &bytes);
    assert_eq!(
        s.tokens.input + s.tokens.cache_read + s.tokens.cache_write + s.tokens.cache_write_1h,
        total_input
    );
}

#[test]
fn usage_lines_carry_dimensions_and_name_the_default_workspace() {
    let lines = parse(BillType::AnthropicUsage, USAGE, &sample(USAGE));
    let first = &lines[0];
    assert_eq!(first.model.as_deref(), Some("claude-sonnet-4-20250514"));
    assert_eq!(
        first.api_key.as_deref(),
        Some("apikey_01Rj2N8SVvo6BePZj99NhmiT")
    );
    assert_eq!(
        first.workspace.as_deref(),
        Some("wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ")
    );
    assert_eq!(first.service_tier.as_deref(), Some("standard"));
    assert_eq!(
        first.attributes.get("context_window").map(String::as_str),
        Some("0-200k")
    );
    // Haiku runs in the default workspace: null in the file, grouped by workspace.
    let haiku: Vec<_> = lines
        .iter()
        .filter(|l| l.model.as_deref() == Some("claude-3-5-haiku-20241022"))
        .collect();
    assert_eq!(haiku.len(), 8);
    assert!(
        haiku
            .iter()
            .all(|l| l.workspace.as_deref() == Some("default"))
    );
    let one_hour = class_lines(&lines, TokenClass::CacheWrite1h);
    assert_eq!(one_hour.len(), 1);
    assert_eq!(one_hour[0].tokens, Some(12_000));
    let long = lines
        .iter()
        .filter(|l| l.attributes.get("context_window").map(String::as_str) == Some("200k-1M"))
        .count();
    assert_eq!(long, 4);
    let searches: Vec<_> = lines
        .iter()
        .filter(|l| l.unit.as_deref() == Some("web_search_requests"))
        .collect();
    assert_eq!(searches.len(), 2);
    assert!(
        searches
            .iter()
            .all(|l| l.token_class.is_none() && l.tokens.is_none())
    );
}

#[test]
fn usage_refuses_a_string_token_count() {
    let t = replace_once(
        &text(&sample(USAGE)),
        "\"output_tokens\": 61250",
        "\"output_tokens\": \"61250\"",
    );
    let e = error(BillType::AnthropicUsage, USAGE, t.as_bytes());
    assert!(
        e.starts_with(
            "anthropic_usage_report.json: data[0].results[0].output_tokens: invalid value \"61250\""
        ),
        "{e}"
    );
    let t = replace_once(
        &text(&sample(USAGE)),
        "\"ending_at\": \"2026-09-03T00:00:00Z\"",
        "\"ending_at\": \"2026-09-03T25:00:00Z\"",
    );
    let e = error(BillType::AnthropicUsage, USAGE, t.as_bytes());
    assert!(e.starts_with("anthropic_usage_report.json: data[1].ending_at: invalid value \"2026-09-03T25:00:00Z\": expected a UTC date-time"), "{e}");
}

// The cost sample, amounts in CENTS (decimal strings):
//   day 1: 45.69 + 15 + 7.2 + 26.412 + 91.875 + 75 + 90 + 192 + 10 + 24.8 + 124 + 14 = 715.977
//   day 2: 192 + 36 + 33 + 144 + 5 + 17.6 + 100 + 3                                   = 530.6
//   total 1,246.577 cents = $12.46577
// Check of the unit: 152,300 Sonnet 4 input tokens (usage sample) x $3 / 1M = $0.4569, and
// the cost report's line says "45.69" (cents).

#[test]
fn cost_sample_totals_in_dollars() {
    let s = summary(BillType::AnthropicCost, COST, &sample(COST));
    assert_eq!(s.provider, "anthropic");
    assert_eq!(s.lines, 20);
    assert_eq!(s.cost, Some(d("12.46577")));
    assert_eq!(s.currency.as_str(), "USD");
    // The cost report has no token counts.
    assert_eq!(s.tokens.total(), 0);
    let lines = parse(BillType::AnthropicCost, COST, &sample(COST));
    let day = |t: &str| -> rust_decimal::Decimal {
        lines
            .iter()
            .filter(|l| l.period_start == ts(t))
            .map(|l| l.cost.unwrap())
            .sum()
    };
    assert_eq!(day("2026-09-01T00:00:00Z"), d("7.15977"));
    assert_eq!(day("2026-09-02T00:00:00Z"), d("5.306"));
}

#[test]
fn cost_lines_have_class_model_and_dollars() {
    let lines = parse(BillType::AnthropicCost, COST, &sample(COST));
    let first = &lines[0];
    assert_eq!(first.cost, Some(d("0.4569")));
    assert_eq!(first.token_class, Some(TokenClass::Input));
    assert_eq!(first.tokens, None);
    assert_eq!(first.model.as_deref(), Some("claude-sonnet-4-20250514"));
    assert_eq!(first.service_tier.as_deref(), Some("standard"));
    assert_eq!(
        first.sku.as_deref(),
        Some("Claude Sonnet 4 Usage - Input Tokens")
    );
    assert_eq!(first.line_kind, LineKind::Usage);
    assert_eq!(lines[2].token_class, Some(TokenClass::CacheWrite1h));
    assert_eq!(lines[2].cost, Some(d("0.072")));
    let search = &lines[11];
    assert_eq!(search.unit.as_deref(), Some("web_search"));
    assert_eq!(search.token_class, None);
    assert_eq!(search.cost, Some(d("0.14")));
    assert_eq!(search.model, None);
    // Haiku (null workspace in a report grouped by workspace) is the default workspace.
    assert_eq!(lines[7].workspace.as_deref(), Some("default"));
    // Cost per class over both days, in dollars: 1h writes 7.2 cents = 0.072.
    let one_hour: rust_decimal::Decimal = class_lines(&lines, TokenClass::CacheWrite1h)
        .iter()
        .map(|l| l.cost.unwrap())
        .sum();
    assert_eq!(one_hour, d("0.072"));
}

#[test]
fn cost_agrees_with_usage_times_price() {
    // Sonnet 4 standard uncached input on day 1: 152,300 tokens x $3 / 1M = $0.4569.
    let usage = parse(BillType::AnthropicUsage, USAGE, &sample(USAGE));
    let cost = parse(BillType::AnthropicCost, COST, &sample(COST));
    let tokens = usage[0].tokens.unwrap();
    assert_eq!(tokens, 152_300);
    assert_eq!(
        rust_decimal::Decimal::from(tokens) * d("3") / d("1000000"),
        cost[0].cost.unwrap()
    );
}

#[test]
fn cost_refuses_a_bad_amount() {
    let t = replace_once(
        &text(&sample(COST)),
        "\"amount\": \"45.69\"",
        "\"amount\": \"45,69\"",
    );
    let e = error(BillType::AnthropicCost, COST, t.as_bytes());
    assert!(
        e.starts_with("anthropic_cost_report.json: data[0].results[0].amount: invalid value \"45,69\": expected a decimal number"),
        "{e}"
    );
    let t = replace_once(&text(&sample(COST)), "\"amount\": \"45.69\",", "");
    let e = error(BillType::AnthropicCost, COST, t.as_bytes());
    assert!(
        e.starts_with("anthropic_cost_report.json: data[0].results[0].amount: missing"),
        "{e}"
    );
}

#[test]
fn the_two_anthropic_reports_are_told_apart() {
    let e = error(BillType::AnthropicCost, USAGE, &sample(USAGE));
    assert!(e.contains("--type anthropic-usage"), "{e}");
    let e = error(BillType::AnthropicUsage, COST, &sample(COST));
    assert!(e.contains("--type anthropic-cost"), "{e}");
}

#[test]
fn cost_ignores_unknown_fields() {
    let t = replace_once(
        &text(&sample(COST)),
        "\"amount\": \"45.69\",",
        "\"amount\": \"45.69\", \"inference_geo\": \"us\", \"new_thing\": [1, {\"a\": 2}],",
    );
    let lines = parse(BillType::AnthropicCost, COST, t.as_bytes());
    assert_eq!(
        lines[0].attributes.get("inference_geo").map(String::as_str),
        Some("us")
    );
    assert_eq!(bills::summarize(&lines).unwrap().cost, Some(d("12.46577")));
}
