//! `gcp-billing` against `testdata/gcp_billing_vertex.csv`. There is no GCP sample: the fixture
//! is hand-written from the column list of provider-formats.md §4 (see testdata/README.md).

use tollgate_providers::bills::{self, BillType, LineKind, TokenClass};

use crate::{add_column, d, error, parse, set_cell, summary, testdata, text, ts};

const GCP: &str = "gcp_billing_vertex.csv";

// The fixture, line by line:
//   2 Vertex AI  Gemini 2.5 Flash Input Text Tokens         4,000,000 count  1.2
//   3 Vertex AI  Gemini 2.5 Flash Output Text Tokens          500,000 count  1.25 (credit -0.5)
//   4 Vertex AI  Gemini 2.5 Flash Cached Input Text Tokens  1,000,000 count  0.075
//   5 Gemini API Gemini 2.5 Pro Input Tokens                  200,000 tokens 0.25
//   6 Gemini API Gemini 2.5 Pro Output Tokens                  80,000 tokens 0.8
//   7 Compute Engine (not AI: skipped)                                       3.5
//   8 Vertex AI  Gemini 2.5 Flash Input Text Tokens               250 count  7.5E-5 = 0.000075
//   9 Vertex AI  tax                                                         0.4
// usage cost = 1.2 + 1.25 + 0.075 + 0.25 + 0.8 + 0.000075 = 3.575075
// credits = -0.5 (from line 3's credits array); tax = 0.4
// input = 4,000,000 + 200,000 + 250 = 4,200,250; cache read = 1,000,000;
// output = 500,000 + 80,000 = 580,000
// Lines: 7 kept rows + 1 credit line = 8.

#[test]
fn fixture_totals() {
    let s = summary(BillType::GcpBilling, GCP, &testdata(GCP));
    assert_eq!(s.provider, "gcp.gemini,gcp.vertex_ai");
    assert_eq!(s.lines, 8);
    assert_eq!(s.cost, Some(d("3.575075")));
    assert_eq!(s.credits, d("-0.5"));
    assert_eq!(s.tax, d("0.4"));
    assert_eq!(s.tokens.input, 4_200_250);
    assert_eq!(s.tokens.cache_read, 1_000_000);
    assert_eq!(s.tokens.output, 580_000);
    assert_eq!(s.tokens.cache_write, 0);
    assert_eq!(s.period_start, ts("2026-09-01T00:00:00Z"));
    assert_eq!(s.period_end, ts("2026-10-01T00:00:00Z"));
}

#[test]
fn lines_carry_sku_project_labels_and_credits() {
    let lines = parse(BillType::GcpBilling, GCP, &testdata(GCP));
    let first = &lines[0];
    assert_eq!(first.provider, "gcp.vertex_ai");
    assert_eq!(first.source_line, 2);
    assert_eq!(first.period_start, ts("2026-09-01T10:00:00Z"));
    assert_eq!(first.period_end, ts("2026-09-01T11:00:00Z"));
    assert_eq!(first.model.as_deref(), Some("Gemini 2.5 Flash"));
    assert_eq!(first.token_class, Some(TokenClass::Input));
    assert_eq!(first.tokens, Some(4_000_000));
    assert_eq!(first.sku.as_deref(), Some("9F1A-2B3C-4D5E"));
    assert_eq!(first.project.as_deref(), Some("acme-search-prod"));
    assert_eq!(first.account.as_deref(), Some("01A2B3-C4D5E6-F7A8B9"));
    assert_eq!(first.region.as_deref(), Some("us-central1"));
    assert_eq!(first.tags.get("team").map(String::as_str), Some("search"));
    assert_eq!(
        first.tags.get("project/cost_center").map(String::as_str),
        Some("cc-1042")
    );
    assert_eq!(
        first.attributes.get("invoice_month").map(String::as_str),
        Some("202609")
    );
    // Line 3 and its credit.
    assert_eq!(lines[1].token_class, Some(TokenClass::Output));
    let credit = &lines[2];
    assert_eq!(
        (credit.source_line, credit.line_kind),
        (3, LineKind::Credit)
    );
    assert_eq!(credit.cost, Some(d("-0.5")));
    assert_eq!((credit.token_class, credit.tokens), (None, None));
    assert_eq!(
        credit.attributes.get("credit_type").map(String::as_str),
        Some("PROMOTION")
    );
    assert_eq!(lines[3].token_class, Some(TokenClass::CacheRead));
    assert_eq!(lines[4].provider, "gcp.gemini");
    assert_eq!(lines[4].model.as_deref(), Some("Gemini 2.5 Pro"));
    // Line 8: the E-notation cost, exact.
    let tiny = &lines[6];
    assert_eq!(tiny.source_line, 8);
    assert_eq!(tiny.cost, Some(d("0.000075")));
    let tax = &lines[7];
    assert_eq!((tax.source_line, tax.line_kind), (9, LineKind::Tax));
}

#[test]
fn a_bad_cost_fails_the_file_naming_line_and_column() {
    let t = set_cell(&text(&testdata(GCP)), 4, "cost", "0.07.5");
    let e = error(BillType::GcpBilling, GCP, t.as_bytes());
    assert!(
        e.starts_with(
            "gcp_billing_vertex.csv:4: cost: invalid value \"0.07.5\": expected a decimal number"
        ),
        "{e}"
    );
    let t = set_cell(
        &text(&testdata(GCP)),
        3,
        "credits",
        "[{\"name\":\"x\",\"amount\":\"lots\"}]",
    );
    let e = error(BillType::GcpBilling, GCP, t.as_bytes());
    assert!(
        e.starts_with("gcp_billing_vertex.csv:3: credits: invalid value"),
        "{e}"
    );
    let t = set_cell(
        &text(&testdata(GCP)),
        2,
        "usage_start_time",
        "01/09/2026 10:00",
    );
    let e = error(BillType::GcpBilling, GCP, t.as_bytes());
    assert!(
        e.starts_with(
            "gcp_billing_vertex.csv:2: usage_start_time: invalid value \"01/09/2026 10:00\""
        ),
        "{e}"
    );
}

#[test]
fn unknown_columns_and_underscore_names_are_read() {
    let t = add_column(&text(&testdata(GCP)), "system_labels", "[]");
    let s = bills::summarize(&parse(BillType::GcpBilling, GCP, t.as_bytes())).unwrap();
    assert_eq!(s.cost, Some(d("3.575075")));
    // service_description instead of service.description, and so on.
    let original = text(&testdata(GCP));
    let (header, rows) = original.split_once('\n').unwrap();
    let t = format!("{}\n{rows}", header.replace('.', "_"));
    let s = bills::summarize(&parse(BillType::GcpBilling, GCP, t.as_bytes())).unwrap();
    assert_eq!(s.cost, Some(d("3.575075")));
    assert_eq!(s.tokens.input, 4_200_250);
}
