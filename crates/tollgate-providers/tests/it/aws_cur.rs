//! `aws-cur` against `samples/bedrock_cur2.csv` (CUR 2.0, 28 usage rows over 2026-09-01 and 02,
//! then a Tax row on line 30 and a Credit row on line 31).

use tollgate_providers::bills::{self, BillType, LineKind, TokenClass};

use crate::{
    add_column, add_row, class_lines, d, error, gzip, parse, replace_once, sample, set_cell,
    summary, text, ts,
};

const CUR: &str = "bedrock_cur2.csv";

// line_item_unblended_cost of the Usage rows (lines 2-29):
//   day 1: 6.08256 + 3.4716 + 3.04128 + 1.9008 + 1.5 + 1.2 + 2.56 + 1.312 + 0.3 + 0.2
//          + 0.36 + 0.108 + 1.6 + 0.9                                          = 24.53624
//   day 2: 7.1165952 + 4.061772 + 3.5582976 + 2.223936 + 1.755 + 1.404 + 2.9952
//          + 1.53504 + 0.351 + 0.234 + 0.4212 + 0.12636 + 1.872 + 1.053        = 28.7074008
//   usage cost = 24.53624 + 28.7074008                                         = 53.2436408
//   tax (line 30) = 4.125; credit (line 31) = -25, both beside the cost.
// Tokens = line_item_usage_amount x 1,000 ("1K tokens") or x 1,000,000 (Marketplace "Units"):
//   input  d1: 1,843,200 + 500,000 + 3,200,000 + 12,000,000 + 6,400,000 = 23,943,200
//          d2: 2,156,544 + 585,000 + 3,744,000 + 14,040,000 + 7,488,000 = 28,013,544
//          total                                                         = 51,956,744
//   output d1: 210,400 + 80,000 + 410,000 + 900,000 + 720,000            =  2,320,400
//          d2: 246,168 + 93,600 + 479,700 + 1,053,000 + 842,400          =  2,714,868
//          total                                                         =  5,035,268
//   cache read  (9,216,000 + 1,500,000) + (10,782,720 + 1,755,000)       = 23,253,720
//   cache write (460,800 + 250,000) + (539,136 + 292,500)                =  1,542,436

fn check_sample_summary(s: &bills::BillSummary) {
    assert_eq!(s.provider, "aws.bedrock");
    assert_eq!(s.lines, 30);
    assert_eq!(s.cost, Some(d("53.2436408")));
    assert_eq!(s.tax, d("4.125"));
    assert_eq!(s.credits, d("-25"));
    assert_eq!(s.refunds, d("0"));
    assert_eq!(s.other, d("0"));
    assert_eq!(s.tokens.input, 51_956_744);
    assert_eq!(s.tokens.output, 5_035_268);
    assert_eq!(s.tokens.cache_read, 23_253_720);
    assert_eq!(s.tokens.cache_write, 1_542_436);
    assert_eq!(s.tokens.cache_write_1h, 0);
    assert_eq!(s.currency.as_str(), "USD");
    assert_eq!(s.period_start, ts("2026-09-01T00:00:00Z"));
    // The tax and credit rows cover the whole billing month.
    assert_eq!(s.period_end, ts("2026-10-01T00:00:00Z"));
}

#[test]
fn sample_totals() {
    check_sample_summary(&summary(BillType::AwsCur, CUR, &sample(CUR)));
}

#[test]
fn gzip_parses_the_same_as_plain() {
    let plain = parse(BillType::AwsCur, CUR, &sample(CUR));
    let gz = parse(BillType::AwsCur, "bedrock_cur2.csv.gz", &gzip(&sample(CUR)));
    assert_eq!(plain, gz);
    check_sample_summary(&bills::summarize(&gz).unwrap());
}

#[test]
fn lines_carry_model_class_and_attribution() {
    let lines = parse(BillType::AwsCur, CUR, &sample(CUR));
    let first = &lines[0];
    assert_eq!(first.source_line, 2);
    assert_eq!(first.line_kind, LineKind::Usage);
    assert_eq!(first.model.as_deref(), Some("Claude4.6Sonnet"));
    assert_eq!(first.token_class, Some(TokenClass::Input));
    assert_eq!(first.tokens, Some(1_843_200));
    assert_eq!(first.cost, Some(d("6.08256")));
    assert_eq!(
        first.sku.as_deref(),
        Some("USE1-Claude4.6Sonnet-input-tokens")
    );
    assert_eq!(first.region.as_deref(), Some("us-east-1"));
    assert_eq!(first.account.as_deref(), Some("444455556666"));
    assert_eq!(
        first.principal.as_deref(),
        Some("arn:aws:sts::444455556666:assumed-role/search-api-role/i-0abc123def4567890")
    );
    assert_eq!(
        first.resource.as_deref(),
        Some("arn:aws:bedrock:us-east-1:444455556666:application-inference-profile/a1b2c3d4e5f6")
    );
    assert_eq!(
        first.tags.get("user_team").map(String::as_str),
        Some("search")
    );
    assert_eq!(
        first.tags.get("user_cost_center").map(String::as_str),
        Some("cc-1042")
    );

    // Line 6: cross-region global inference.
    assert_eq!(
        lines[4].attributes.get("cross_region").map(String::as_str),
        Some("global")
    );
    // Line 12: Nova 2.0 Lite on the flex tier, 12,000 K tokens.
    assert_eq!(lines[10].service_tier.as_deref(), Some("flex"));
    assert_eq!(lines[10].model.as_deref(), Some("Nova2.0Lite"));
    assert_eq!(lines[10].tokens, Some(12_000_000));
    // Line 8: a direct foundation-model call without tags.
    assert!(lines[6].tags.is_empty());
    // Line 14: Marketplace scheme, 6.4 "Units" = 6.4 M tokens, model from product_name.
    let mp = &lines[12];
    assert_eq!(mp.source_line, 14);
    assert_eq!(mp.token_class, Some(TokenClass::Input));
    assert_eq!(mp.tokens, Some(6_400_000));
    assert_eq!(
        mp.model.as_deref(),
        Some("Claude 3 Haiku (Amazon Bedrock Edition)")
    );
    assert_eq!(
        mp.attributes.get("billing_entity").map(String::as_str),
        Some("AWS Marketplace")
    );
    // Lines 30 and 31: tax and credit, no tokens, no class.
    let tax = &lines[28];
    assert_eq!((tax.source_line, tax.line_kind), (30, LineKind::Tax));
    assert_eq!(tax.cost, Some(d("4.125")));
    let credit = &lines[29];
    assert_eq!(
        (credit.source_line, credit.line_kind),
        (31, LineKind::Credit)
    );
    assert_eq!(credit.cost, Some(d("-25")));
    for l in [tax, credit] {
        assert_eq!(
            (l.token_class, l.tokens, l.model.as_deref()),
            (None, None, None)
        );
    }
    // Four token types, each line one of them.
    for class in [
        TokenClass::Input,
        TokenClass::Output,
        TokenClass::CacheRead,
        TokenClass::CacheWrite,
    ] {
        assert!(!class_lines(&lines, class).is_empty(), "{class}");
    }
    assert_eq!(lines.iter().filter(|l| l.token_class.is_some()).count(), 28);
}

#[test]
fn a_bad_cost_fails_the_file_naming_line_and_column() {
    let t = set_cell(&text(&sample(CUR)), 5, "line_item_unblended_cost", "1.9O08");
    let e = error(BillType::AwsCur, CUR, t.as_bytes());
    assert!(
        e.starts_with(
            "bedrock_cur2.csv:5: line_item_unblended_cost: invalid value \"1.9O08\": expected a decimal number"
        ),
        "{e}"
    );
    // The same corruption inside a gzip file.
    let e = error(BillType::AwsCur, "cur.csv.gz", &gzip(t.as_bytes()));
    assert!(
        e.starts_with("cur.csv.gz:5: line_item_unblended_cost:"),
        "{e}"
    );
}

#[test]
fn a_bad_date_and_a_blank_cost_fail_the_file() {
    let t = set_cell(
        &text(&sample(CUR)),
        3,
        "line_item_usage_start_date",
        "2026-09-31T00:00:00Z",
    );
    let e = error(BillType::AwsCur, CUR, t.as_bytes());
    assert!(
        e.starts_with("bedrock_cur2.csv:3: line_item_usage_start_date: invalid value \"2026-09-31T00:00:00Z\": expected a UTC date-time"),
        "{e}"
    );
    let t = set_cell(&text(&sample(CUR)), 31, "line_item_unblended_cost", "");
    let e = error(BillType::AwsCur, CUR, t.as_bytes());
    assert!(
        e.starts_with("bedrock_cur2.csv:31: line_item_unblended_cost: missing"),
        "{e}"
    );
}

#[test]
fn a_row_breaking_amount_times_rate_is_refused() {
    // Line 2: 1843.3 x 0.0033 = 6.08289, but the cost says 6.08256.
    let t = set_cell(&text(&sample(CUR)), 2, "line_item_usage_amount", "1843.3");
    let e = error(BillType::AwsCur, CUR, t.as_bytes());
    assert!(e.starts_with("bedrock_cur2.csv:2: line_item_unblended_cost: invalid value \"6.08256\": line_item_usage_amount x line_item_unblended_rate = 1843.3 x 0.0033 = 6.08289"), "{e}");
}

#[test]
fn a_negative_or_fractional_token_amount_is_refused() {
    let t = set_cell(&text(&sample(CUR)), 9, "line_item_usage_amount", "410.0005");
    let t = set_cell(&t, 9, "line_item_unblended_cost", "1.3120016");
    let e = error(BillType::AwsCur, CUR, t.as_bytes());
    assert!(e.starts_with("bedrock_cur2.csv:9: line_item_usage_amount: invalid value \"410.0005\": not a whole number of tokens"), "{e}");
}

#[test]
fn e_notation_costs_are_converted_exactly() {
    // Line 10's cost 0.3 written as 3.0E-1: the total does not move.
    let t = set_cell(
        &text(&sample(CUR)),
        10,
        "line_item_unblended_cost",
        "3.0E-1",
    );
    let s = bills::summarize(&parse(BillType::AwsCur, CUR, t.as_bytes())).unwrap();
    assert_eq!(s.cost, Some(d("53.2436408")));
}

#[test]
fn unknown_columns_are_ignored() {
    let t = add_column(
        &text(&sample(CUR)),
        "line_item_brand_new_column",
        "whatever, with a comma",
    );
    check_sample_summary(&bills::summarize(&parse(BillType::AwsCur, CUR, t.as_bytes())).unwrap());
}

#[test]
fn other_services_are_skipped_and_flattened_tags_read() {
    // An EC2 row (not LLM spend) appended after the credit: skipped, totals unchanged.
    let t = add_row(
        &text(&sample(CUR)),
        9,
        &[
            ("line_item_product_code", "AmazonEC2"),
            ("product_servicecode", "AmazonEC2"),
            ("line_item_usage_type", "USE1-BoxUsage:m5.large"),
            (
                "product",
                "{\"product_name\":\"Amazon Elastic Compute Cloud\"}",
            ),
            ("line_item_unblended_cost", "not even a number"),
        ],
    );
    check_sample_summary(&bills::summarize(&parse(BillType::AwsCur, CUR, t.as_bytes())).unwrap());
    // Athena-style flattened tag columns.
    let t = add_column(&text(&sample(CUR)), "resource_tags_user_project", "genai");
    let lines = parse(BillType::AwsCur, CUR, t.as_bytes());
    assert_eq!(
        lines[0].tags.get("user_project").map(String::as_str),
        Some("genai")
    );
    assert_eq!(
        lines[0].tags.get("user_team").map(String::as_str),
        Some("search")
    );
}

#[test]
fn bad_map_json_and_missing_columns_are_reported() {
    let t = set_cell(&text(&sample(CUR)), 4, "resource_tags", "{\"user_team\":");
    let e = error(BillType::AwsCur, CUR, t.as_bytes());
    assert!(e.starts_with("bedrock_cur2.csv:4: resource_tags: invalid value \"{\\\"user_team\\\":\": expected a JSON object"), "{e}");

    let t = replace_once(
        &text(&sample(CUR)),
        ",line_item_unblended_cost,",
        ",line_item_unblended_cost_x,",
    );
    let e = error(BillType::AwsCur, CUR, t.as_bytes());
    assert!(
        e.starts_with("bedrock_cur2.csv:1: line_item_unblended_cost: required column missing"),
        "{e}"
    );

    let legacy = "identity/LineItemId,lineItem/LineItemType,lineItem/UsageType,lineItem/UnblendedCost\nx,Usage,USE1-NovaPro-input-tokens,1\n";
    let e = error(BillType::AwsCur, "legacy.csv", legacy.as_bytes());
    assert!(e.contains("legacy CUR"), "{e}");
}

#[test]
fn a_short_row_is_a_csv_error_on_its_line() {
    let t = text(&sample(CUR));
    let mut lines: Vec<&str> = t.lines().collect();
    lines[6] = "8e837b5aa9a1ac22de07e1e367cdb352a3e8922d,too,short";
    let t = lines.join("\n");
    let e = error(BillType::AwsCur, CUR, t.as_bytes());
    assert!(
        e.starts_with(
            "bedrock_cur2.csv:7: not valid CSV (the row has 3 fields but the header has 39)"
        ),
        "{e}"
    );
}
