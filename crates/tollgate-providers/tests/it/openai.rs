//! `openai-usage` and `openai-costs` against `samples/openai_usage_completions.json` and
//! `samples/openai_costs.json` (the same three days, 2026-09-01..03; the third bucket is empty).

use tollgate_providers::bills::{self, BillType, LineKind, TokenClass};

use crate::{class_lines, d, error, parse, replace_once, sample, summary, text, ts};

const USAGE: &str = "openai_usage_completions.json";
const COSTS: &str = "openai_costs.json";

// The usage sample, result by result (input_tokens includes input_cached_tokens; no cache
// writes anywhere):
//   day 1  gpt-4o       proj_search  input 1,843,200 cached   921,600 -> uncached   921,600, output   210,400
//          gpt-4o-mini  proj_search  input 5,120,000 cached 2,048,000 -> uncached 3,072,000, output   640,000
//          gpt-4o-mini  proj_billing input 9,800,000 cached         0 -> uncached 9,800,000, output 1,200,000 (batch)
//   day 2  gpt-4o       proj_search  input 2,011,000 cached 1,105,920 -> uncached   905,080, output   198,765
//          gpt-4o       proj_billing input   320,500 cached         0 -> uncached   320,500, output    45,210
// input   = 921,600 + 3,072,000 + 9,800,000 + 905,080 + 320,500 = 15,019,180
// cached  = 921,600 + 2,048,000 + 1,105,920                     =  4,075,520
// output  = 210,400 + 640,000 + 1,200,000 + 198,765 + 45,210    =  2,294,375
// input_tokens in the file = 1,843,200 + 5,120,000 + 9,800,000 + 2,011,000 + 320,500
//                          = 19,094,700 = 15,019,180 + 4,075,520
// Lines: 3 + 3 + 2 (no cached) + 3 + 2 (no cached) = 13.

#[test]
fn usage_sample_totals() {
    let s = summary(BillType::OpenAiUsage, USAGE, &sample(USAGE));
    assert_eq!(s.provider, "openai");
    assert_eq!(s.lines, 13);
    assert_eq!(s.tokens.input, 15_019_180);
    assert_eq!(s.tokens.cache_read, 4_075_520);
    assert_eq!(s.tokens.cache_write, 0);
    assert_eq!(s.tokens.cache_write_1h, 0);
    assert_eq!(s.tokens.output, 2_294_375);
    // Usage only: no money at all, not a zero.
    assert_eq!(s.cost, None);
    assert_eq!(s.period_start, ts("2026-09-01T00:00:00Z"));
    // The empty third bucket has no lines, so the lines end with day 2.
    assert_eq!(s.period_end, ts("2026-09-03T00:00:00Z"));
}

#[test]
fn usage_classes_are_disjoint_and_add_up_to_the_files_input_tokens() {
    let bytes = sample(USAGE);
    let raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut input_tokens = 0;
    let mut output_tokens = 0;
    for bucket in raw["data"].as_array().unwrap() {
        for r in bucket["results"].as_array().unwrap() {
            input_tokens += r["input_tokens"].as_u64().unwrap();
            output_tokens += r["output_tokens"].as_u64().unwrap();
        }
    }
    assert_eq!(input_tokens, 19_094_700);
    let s = summary(BillType::OpenAiUsage, USAGE, &bytes);
    assert_eq!(
        s.tokens.input + s.tokens.cache_read + s.tokens.cache_write,
        input_tokens
    );
    assert_eq!(s.tokens.output, output_tokens);
    // Each line is exactly one class.
    let lines = parse(BillType::OpenAiUsage, USAGE, &bytes);
    assert!(
        lines
            .iter()
            .all(|l| l.token_class.is_some() && l.tokens.is_some())
    );
}

#[test]
fn usage_lines_carry_the_group_by_dimensions() {
    let lines = parse(BillType::OpenAiUsage, USAGE, &sample(USAGE));
    let first = &lines[0];
    assert_eq!(first.line_kind, LineKind::Usage);
    assert_eq!(first.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(first.project.as_deref(), Some("proj_search7Hq2"));
    assert_eq!(first.api_key.as_deref(), Some("key_aZ91kPq3"));
    assert_eq!(first.token_class, Some(TokenClass::Input));
    assert_eq!(first.tokens, Some(921_600));
    assert_eq!(first.period_start, ts("2026-09-01T00:00:00Z"));
    assert_eq!(first.period_end, ts("2026-09-02T00:00:00Z"));
    assert_eq!(first.source_line, 1);
    assert_eq!(
        first
            .attributes
            .get("num_model_requests")
            .map(String::as_str),
        Some("412")
    );
    // The batch row: tier batch, and no cache-read line because it cached nothing.
    let batch: Vec<_> = lines.iter().filter(|l| l.source_line == 3).collect();
    assert_eq!(batch.len(), 2);
    assert!(
        batch
            .iter()
            .all(|l| l.service_tier.as_deref() == Some("batch"))
    );
    assert!(lines[..3].iter().all(|l| l.service_tier.is_none()));
}

#[test]
fn usage_accepts_an_array_of_pages() {
    let one = text(&sample(USAGE));
    let two = format!("[{one}, {one}]");
    let lines = parse(BillType::OpenAiUsage, "pages.json", two.as_bytes());
    assert_eq!(lines.len(), 26);
    // Record numbers keep counting across pages: 5 results per page.
    assert_eq!(lines.last().unwrap().source_line, 10);
    let s = bills::summarize(&lines).unwrap();
    assert_eq!(s.tokens.input, 2 * 15_019_180);
}

#[test]
fn usage_ignores_unknown_fields() {
    let t = text(&sample(USAGE));
    let t = replace_once(
        &t,
        "\"num_model_requests\": 412,",
        "\"num_model_requests\": 412, \"brand_new_field\": {\"nested\": [1, 2.5, null]},",
    );
    let t = replace_once(
        &t,
        "\"has_more\": false,",
        "\"has_more\": false, \"extra\": 1,",
    );
    let s = bills::summarize(&parse(BillType::OpenAiUsage, USAGE, t.as_bytes())).unwrap();
    assert_eq!(s.tokens.input, 15_019_180);
}

#[test]
fn usage_refuses_a_negative_token_count() {
    let t = replace_once(
        &text(&sample(USAGE)),
        "\"output_tokens\": 45210",
        "\"output_tokens\": -45210",
    );
    let e = error(BillType::OpenAiUsage, USAGE, t.as_bytes());
    assert_eq!(
        e,
        "openai_usage_completions.json: data[1].results[1].output_tokens: invalid value -45210: \
         a token count cannot be negative; correct the value or re-export the file"
    );
}

#[test]
fn usage_refuses_cached_tokens_above_input_tokens() {
    let t = replace_once(
        &text(&sample(USAGE)),
        "\"input_cached_tokens\": 921600,",
        "\"input_cached_tokens\": 2000000,",
    );
    let e = error(BillType::OpenAiUsage, USAGE, t.as_bytes());
    assert!(
        e.starts_with(
            "openai_usage_completions.json: data[0].results[0].input_cached_tokens: invalid value 2000000: \
             input_cached_tokens (2000000) plus input_cache_write_tokens (0) exceed input_tokens (1843200)"
        ),
        "{e}"
    );
}

#[test]
fn usage_refuses_a_self_contradicting_uncached_count() {
    let t = replace_once(
        &text(&sample(USAGE)),
        "\"input_uncached_tokens\": 905080,",
        "\"input_uncached_tokens\": 905000,",
    );
    let e = error(BillType::OpenAiUsage, USAGE, t.as_bytes());
    assert!(
        e.starts_with("openai_usage_completions.json: data[1].results[0].input_uncached_tokens: invalid value 905000: expected input_tokens - input_cached_tokens - input_cache_write_tokens = 2011000 - 1105920 - 0 = 905080"),
        "{e}"
    );
}

#[test]
fn usage_refuses_a_string_token_count_and_bad_json() {
    let t = replace_once(
        &text(&sample(USAGE)),
        "\"output_tokens\": 640000",
        "\"output_tokens\": \"640000\"",
    );
    let e = error(BillType::OpenAiUsage, USAGE, t.as_bytes());
    assert!(e.starts_with("openai_usage_completions.json: data[0].results[1].output_tokens: invalid value \"640000\": expected a whole"), "{e}");

    let all = text(&sample(USAGE));
    let e = error(BillType::OpenAiUsage, USAGE, &all.as_bytes()[..200]);
    assert!(e.starts_with("openai_usage_completions.json:"), "{e}");
    assert!(e.contains("not valid JSON"), "{e}");
}

#[test]
fn a_costs_file_given_as_usage_says_which_type_to_use() {
    let e = error(BillType::OpenAiUsage, COSTS, &sample(COSTS));
    assert!(e.contains("data[0].results[0].object"), "{e}");
    assert!(e.contains("--type openai-costs"), "{e}");
    let e = error(BillType::OpenAiCosts, USAGE, &sample(USAGE));
    assert!(e.contains("--type openai-usage"), "{e}");
}

// The costs sample, amounts in dollars:
//   day 1: 2.304 + 1.152 + 2.104 + 0.4608 + 0.1536 + 0.384 + 0.735 + 0.36  = 7.6534
//   day 2: 2.2627 + 1.3824 + 1.98765 + 0.80125 + 0.4521                    = 6.8861
//   total                                                                  = 14.5395
// Its quantities per class (line_item "<model>, input" / "cached input" / "output"):
//   input  = 921,600 + 3,072,000 + 9,800,000 + 905,080 + 320,500 = 15,019,180
//   cached = 921,600 + 2,048,000 + 1,105,920                     =  4,075,520
//   output = 210,400 + 640,000 + 1,200,000 + 198,765 + 45,210    =  2,294,375
// the same as the usage sample's classes.

#[test]
fn costs_sample_totals() {
    let s = summary(BillType::OpenAiCosts, COSTS, &sample(COSTS));
    assert_eq!(s.provider, "openai");
    assert_eq!(s.lines, 13);
    assert_eq!(s.cost, Some(d("14.5395")));
    assert_eq!(s.currency.as_str(), "USD");
    assert_eq!(s.credits, d("0"));
    assert_eq!(s.tokens.input, 15_019_180);
    assert_eq!(s.tokens.cache_read, 4_075_520);
    assert_eq!(s.tokens.output, 2_294_375);
    let day = |day: &str| -> rust_decimal::Decimal {
        parse(BillType::OpenAiCosts, COSTS, &sample(COSTS))
            .iter()
            .filter(|l| l.period_start == ts(day))
            .map(|l| l.cost.unwrap())
            .sum()
    };
    assert_eq!(day("2026-09-01T00:00:00Z"), d("7.6534"));
    assert_eq!(day("2026-09-02T00:00:00Z"), d("6.8861"));
}

#[test]
fn costs_and_usage_agree_on_tokens_per_class() {
    let u = summary(BillType::OpenAiUsage, USAGE, &sample(USAGE));
    let c = summary(BillType::OpenAiCosts, COSTS, &sample(COSTS));
    assert_eq!(u.tokens, c.tokens);
}

#[test]
fn costs_line_items_become_model_class_and_tier() {
    let lines = parse(BillType::OpenAiCosts, COSTS, &sample(COSTS));
    let cached = class_lines(&lines, TokenClass::CacheRead);
    assert_eq!(cached.len(), 3);
    assert_eq!(cached[0].model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(
        cached[0].sku.as_deref(),
        Some("gpt-4o-2024-08-06, cached input")
    );
    assert_eq!(cached[0].cost, Some(d("1.152")));
    assert_eq!(cached[0].tokens, Some(921_600));
    let batch = &lines[6];
    assert_eq!(batch.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(batch.token_class, Some(TokenClass::Input));
    assert_eq!(batch.service_tier.as_deref(), Some("batch"));
    assert_eq!(batch.project.as_deref(), Some("proj_billingBx4"));
    assert_eq!(batch.tokens, Some(9_800_000));
}

#[test]
fn costs_amounts_are_read_exactly_from_the_number_text() {
    let t = replace_once(
        &text(&sample(COSTS)),
        "\"value\": 2.304,",
        "\"value\": 0.8958740000000000,",
    );
    let lines = parse(BillType::OpenAiCosts, COSTS, t.as_bytes());
    assert_eq!(lines[0].cost.unwrap().to_string(), "0.8958740000000000");
    // A string value is accepted too, and E-notation is converted exactly.
    let t = replace_once(
        &text(&sample(COSTS)),
        "\"value\": 2.304,",
        "\"value\": \"2.304\",",
    );
    assert_eq!(
        parse(BillType::OpenAiCosts, COSTS, t.as_bytes())[0].cost,
        Some(d("2.304"))
    );
    let t = replace_once(
        &text(&sample(COSTS)),
        "\"value\": 2.304,",
        "\"value\": 2.304e0,",
    );
    assert_eq!(
        parse(BillType::OpenAiCosts, COSTS, t.as_bytes())[0].cost,
        Some(d("2.304"))
    );
}

#[test]
fn costs_refuse_a_non_numeric_amount() {
    let t = replace_once(
        &text(&sample(COSTS)),
        "\"value\": 0.384,",
        "\"value\": \"abc\",",
    );
    let e = error(BillType::OpenAiCosts, COSTS, t.as_bytes());
    assert!(
        e.starts_with("openai_costs.json: data[0].results[5].amount.value: invalid value \"abc\": expected a decimal number"),
        "{e}"
    );
    let t = replace_once(
        &text(&sample(COSTS)),
        "\"value\": 0.384,",
        "\"value\": true,",
    );
    let e = error(BillType::OpenAiCosts, COSTS, t.as_bytes());
    assert!(
        e.contains("data[0].results[5].amount.value: invalid value true"),
        "{e}"
    );
}

#[test]
fn costs_keep_an_unknown_line_item_as_a_raw_charge() {
    let t = replace_once(
        &text(&sample(COSTS)),
        "\"line_item\": \"gpt-4o-2024-08-06, output\",\n          \"project_id\": \"proj_search7Hq2\",\n          \"api_key_id\": null,\n          \"quantity\": 210400,",
        "\"line_item\": \"web search tool calls\",\n          \"project_id\": \"proj_search7Hq2\",\n          \"api_key_id\": null,\n          \"quantity\": 210400,",
    );
    let lines = parse(BillType::OpenAiCosts, COSTS, t.as_bytes());
    let l = &lines[2];
    assert_eq!(l.model, None);
    assert_eq!(l.token_class, None);
    assert_eq!(l.tokens, None);
    assert_eq!(l.sku.as_deref(), Some("web search tool calls"));
    assert_eq!(l.quantity, Some(d("210400")));
    assert_eq!(l.unit.as_deref(), Some("tokens"));
    // Still a charge: the cost is unchanged, the output tokens are 210,400 fewer.
    let s = bills::summarize(&lines).unwrap();
    assert_eq!(s.cost, Some(d("14.5395")));
    assert_eq!(s.tokens.output, 2_294_375 - 210_400);
}
