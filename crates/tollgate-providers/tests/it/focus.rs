//! `focus` against `samples/focus_sample.csv` (FOCUS 1.3, all 65 columns plus `x_Model`,
//! `x_TokenType`, `x_RequestCount`; 7 usage rows, a credit and a tax row).

use tollgate_providers::bills::{self, BillType, LineKind, TokenClass};

use crate::{add_column, d, error, parse, replace_once, sample, set_cell, summary, text, ts};

const FOCUS: &str = "focus_sample.csv";

// BilledCost of the Usage rows:
//   2 OpenAI    gpt-4o input          921,600 tokens  2.304
//   3 OpenAI    gpt-4o cached_input   921,600 tokens  1.152
//   4 OpenAI    gpt-4o output         210,400 tokens  2.104
//   5 Anthropic sonnet-4 cache_read   880,400 tokens  0.26412
//   6 Anthropic sonnet-4 write 5m      40,000 tokens  0.15
//   7 AWS       Claude4.6Sonnet input 1,843,200 tokens 6.08256
//   8 AWS       NovaPro output        410,000 tokens  1.312
//   cost = 2.304 + 1.152 + 2.104 + 0.26412 + 0.15 + 6.08256 + 1.312 = 13.36868
//   9 Credit -25.0; 10 Tax 4.125 (beside the cost)
// input = 921,600 + 1,843,200 = 2,764,800; cache read = 921,600 + 880,400 = 1,802,000;
// cache write = 40,000; output = 210,400 + 410,000 = 620,400.

fn check_sample_summary(s: &bills::BillSummary) {
    assert_eq!(s.provider, "anthropic,aws.bedrock,openai");
    assert_eq!(s.lines, 9);
    assert_eq!(s.cost, Some(d("13.36868")));
    assert_eq!(s.credits, d("-25.0"));
    assert_eq!(s.tax, d("4.125"));
    assert_eq!(s.tokens.input, 2_764_800);
    assert_eq!(s.tokens.cache_read, 1_802_000);
    assert_eq!(s.tokens.cache_write, 40_000);
    assert_eq!(s.tokens.cache_write_1h, 0);
    assert_eq!(s.tokens.output, 620_400);
    assert_eq!(s.period_start, ts("2026-09-01T00:00:00Z"));
    assert_eq!(s.period_end, ts("2026-10-01T00:00:00Z"));
}

#[test]
fn sample_totals() {
    check_sample_summary(&summary(BillType::Focus, FOCUS, &sample(FOCUS)));
}

#[test]
fn lines_carry_provider_model_and_sub_accounts() {
    let lines = parse(BillType::Focus, FOCUS, &sample(FOCUS));
    let first = &lines[0];
    assert_eq!(first.provider, "openai");
    assert_eq!(first.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(first.token_class, Some(TokenClass::Input));
    assert_eq!(first.tokens, Some(921_600));
    assert_eq!(first.project.as_deref(), Some("proj_search7Hq2"));
    assert_eq!(first.account.as_deref(), Some("org-Acme9f3K2"));
    assert_eq!(first.tags.get("team").map(String::as_str), Some("search"));
    assert_eq!(first.sku.as_deref(), Some("gpt-4o-2024-08-06:input"));
    assert_eq!(lines[1].token_class, Some(TokenClass::CacheRead));
    let anthropic = &lines[3];
    assert_eq!(anthropic.provider, "anthropic");
    assert_eq!(
        anthropic.workspace.as_deref(),
        Some("wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ")
    );
    assert_eq!(lines[4].token_class, Some(TokenClass::CacheWrite));
    // Claude on Bedrock is billed by AWS, whatever ServiceProviderName says.
    let bedrock = &lines[5];
    assert_eq!(bedrock.provider, "aws.bedrock");
    assert_eq!(bedrock.model.as_deref(), Some("Claude4.6Sonnet"));
    assert_eq!(bedrock.account.as_deref(), Some("444455556666"));
    assert_eq!(bedrock.region.as_deref(), Some("us-east-1"));
    assert_eq!(
        bedrock.tags.get("cost_center").map(String::as_str),
        Some("cc-1042")
    );
    let credit = &lines[7];
    assert_eq!(
        (credit.source_line, credit.line_kind),
        (9, LineKind::Credit)
    );
    assert_eq!(credit.provider, "aws.bedrock");
    // The tax row leaves HostProviderName blank; ProviderName (AWS) names the biller.
    let tax = &lines[8];
    assert_eq!(
        (tax.source_line, tax.line_kind, tax.provider.as_str()),
        (10, LineKind::Tax, "aws.bedrock")
    );
    assert_eq!(
        tax.attributes.get("effective_cost").map(String::as_str),
        Some("4.125")
    );
}

#[test]
fn a_bad_cost_fails_the_file_naming_line_and_column() {
    let t = set_cell(&text(&sample(FOCUS)), 3, "BilledCost", "1.152 USD");
    let e = error(BillType::Focus, FOCUS, t.as_bytes());
    assert!(
        e.starts_with(
            "focus_sample.csv:3: BilledCost: invalid value \"1.152 USD\": expected a decimal number"
        ),
        "{e}"
    );
    let t = set_cell(&text(&sample(FOCUS)), 6, "ChargeCategory", "Refund");
    let e = error(BillType::Focus, FOCUS, t.as_bytes());
    assert_eq!(
        e,
        "focus_sample.csv:6: ChargeCategory: invalid value \"Refund\": expected one of Usage, Purchase, Tax, Credit, Adjustment"
    );
    let t = set_cell(&text(&sample(FOCUS)), 4, "ConsumedQuantity", "-210400");
    let e = error(BillType::Focus, FOCUS, t.as_bytes());
    assert!(e.starts_with("focus_sample.csv:4: ConsumedQuantity: invalid value \"-210400\": a token count cannot be negative"), "{e}");
    let t = set_cell(&text(&sample(FOCUS)), 2, "Tags", "team=search");
    let e = error(BillType::Focus, FOCUS, t.as_bytes());
    assert!(
        e.starts_with(
            "focus_sample.csv:2: Tags: invalid value \"team=search\": expected a JSON object"
        ),
        "{e}"
    );
}

#[test]
fn unknown_and_extension_columns_are_ignored() {
    let t = add_column(&text(&sample(FOCUS)), "x_SomethingNew", "{\"a\":1}");
    let t = add_column(&t, "NotInTheSpec", "zzz");
    check_sample_summary(&bills::summarize(&parse(BillType::Focus, FOCUS, t.as_bytes())).unwrap());
}

#[test]
fn without_x_token_type_the_sku_meter_gives_the_class() {
    let t = text(&sample(FOCUS));
    let t = replace_once(
        &t,
        ",x_Model,x_TokenType,x_RequestCount",
        ",x_Model,x_Other,x_RequestCount",
    );
    let s = bills::summarize(&parse(BillType::Focus, FOCUS, t.as_bytes())).unwrap();
    assert_eq!(s.tokens.input, 2_764_800);
    assert_eq!(s.tokens.cache_read, 1_802_000);
    assert_eq!(s.tokens.cache_write, 40_000);
    assert_eq!(s.tokens.output, 620_400);
}

#[test]
fn a_missing_mandatory_column_is_named() {
    let t = replace_once(
        &text(&sample(FOCUS)),
        ",BilledCost,",
        ",Billed_Cost_Renamed,",
    );
    let e = error(BillType::Focus, FOCUS, t.as_bytes());
    assert!(
        e.starts_with("focus_sample.csv:1: BilledCost: required column missing"),
        "{e}"
    );
}
