//! Integration tests of tollgate-providers: every sample bill parsed, its totals checked against
//! figures worked by hand from the sample files (written out in the comments), and every
//! format's failure modes pinned (`FILE:LINE: FIELD: ...`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed check

mod anthropic;
mod aws_cur;
mod focus;
mod gcp;
mod openai;

use std::io::Write;

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_providers::bills::{self, BillLine, BillSummary, BillType};

pub fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A file of `testdata/` (samples are under `samples/`).
pub fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn sample(name: &str) -> Vec<u8> {
    testdata(&format!("samples/{name}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

pub fn parse(kind: BillType, name: &str, bytes: &[u8]) -> Vec<BillLine> {
    bills::parse(kind, name, bytes).unwrap_or_else(|e| panic!("{e}"))
}

pub fn summary(kind: BillType, name: &str, bytes: &[u8]) -> BillSummary {
    bills::summarize(&parse(kind, name, bytes)).unwrap()
}

/// The error message of a file that must fail.
pub fn error(kind: BillType, name: &str, bytes: &[u8]) -> String {
    match bills::parse(kind, name, bytes) {
        Ok(lines) => panic!(
            "{name} parsed ({} lines) but should have failed",
            lines.len()
        ),
        Err(e) => e.to_string(),
    }
}

/// `text` with `from` replaced by `to`; `from` must occur exactly once.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replacen(from, to, 1)
}

/// A CSV with one cell changed: the row on file line `line` (no multi-line cells), the column
/// named `column`.
pub fn set_cell(csv_text: &str, line: usize, column: &str, value: &str) -> String {
    edit_csv(csv_text, |i, header, row| {
        if i + 2 == line {
            let at = header.iter().position(|h| h == column).unwrap();
            row[at] = value.to_string();
        }
    })
}

/// A CSV with an extra column `name` (value `value` on every row) added in front.
pub fn add_column(csv_text: &str, name: &str, value: &str) -> String {
    let mut rdr = csv::ReaderBuilder::new().from_reader(csv_text.as_bytes());
    let mut out = writer_like(csv_text);
    let mut header = vec![name.to_string()];
    header.extend(rdr.headers().unwrap().iter().map(str::to_string));
    out.write_record(&header).unwrap();
    for r in rdr.records() {
        let mut row = vec![value.to_string()];
        row.extend(r.unwrap().iter().map(str::to_string));
        out.write_record(&row).unwrap();
    }
    String::from_utf8(out.into_inner().unwrap()).unwrap()
}

/// A CSV with one more row, built from row `like_line` with some cells changed.
pub fn add_row(csv_text: &str, like_line: usize, changes: &[(&str, &str)]) -> String {
    let mut rdr = csv::ReaderBuilder::new().from_reader(csv_text.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    let rows: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    let mut extra = rows[like_line - 2].clone();
    for (col, v) in changes {
        let at = header.iter().position(|h| h == col).unwrap();
        extra[at] = (*v).to_string();
    }
    let mut out = writer_like(csv_text);
    out.write_record(&header).unwrap();
    for r in rows.iter().chain(std::iter::once(&extra)) {
        out.write_record(r).unwrap();
    }
    String::from_utf8(out.into_inner().unwrap()).unwrap()
}

/// A CSV writer with the same line endings as `like` (the samples use CRLF).
fn writer_like(like: &str) -> csv::Writer<Vec<u8>> {
    let terminator = if like.contains("\r\n") {
        csv::Terminator::CRLF
    } else {
        csv::Terminator::Any(b'\n')
    };
    csv::WriterBuilder::new()
        .terminator(terminator)
        .from_writer(Vec::new())
}

fn edit_csv(csv_text: &str, mut f: impl FnMut(usize, &[String], &mut Vec<String>)) -> String {
    let mut rdr = csv::ReaderBuilder::new().from_reader(csv_text.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    let mut out = writer_like(csv_text);
    out.write_record(&header).unwrap();
    for (i, r) in rdr.records().enumerate() {
        let mut row: Vec<String> = r.unwrap().iter().map(str::to_string).collect();
        f(i, &header, &mut row);
        out.write_record(&row).unwrap();
    }
    String::from_utf8(out.into_inner().unwrap()).unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Lines of one token class.
pub fn class_lines(lines: &[BillLine], class: bills::TokenClass) -> Vec<&BillLine> {
    lines
        .iter()
        .filter(|l| l.token_class == Some(class))
        .collect()
}

#[test]
fn every_bill_type_name_round_trips() {
    for t in BillType::ALL {
        assert_eq!(BillType::parse(t.name()), Some(t));
        assert_eq!(t.to_string(), t.name());
    }
}

#[test]
fn parse_each_streams_the_same_lines_and_summary() {
    let files = [
        (
            BillType::OpenAiUsage,
            sample("openai_usage_completions.json"),
        ),
        (BillType::OpenAiCosts, sample("openai_costs.json")),
        (
            BillType::AnthropicUsage,
            sample("anthropic_usage_report.json"),
        ),
        (
            BillType::AnthropicCost,
            sample("anthropic_cost_report.json"),
        ),
        (BillType::AwsCur, sample("bedrock_cur2.csv")),
        (BillType::GcpBilling, testdata("gcp_billing_vertex.csv")),
        (BillType::Focus, sample("focus_sample.csv")),
    ];
    for (kind, bytes) in files {
        let lines = parse(kind, "bill", &bytes);
        let mut streamed = Vec::new();
        let mut acc = bills::Summarizer::new();
        bills::parse_each(kind, "bill", &bytes, |l| {
            acc.add(&l).unwrap();
            streamed.push(l);
        })
        .unwrap();
        assert_eq!(lines, streamed, "{kind}");
        assert_eq!(
            bills::summarize(&lines).unwrap(),
            acc.finish().unwrap(),
            "{kind}"
        );
    }
}

#[test]
fn gzip_is_detected_for_every_csv_type() {
    for (kind, bytes) in [
        (BillType::AwsCur, sample("bedrock_cur2.csv")),
        (BillType::Focus, sample("focus_sample.csv")),
        (BillType::GcpBilling, testdata("gcp_billing_vertex.csv")),
    ] {
        let plain = parse(kind, "bill.csv", &bytes);
        let gz = parse(kind, "bill.csv.gz", &gzip(&bytes));
        assert_eq!(plain, gz, "{kind}");
    }
}

#[test]
fn line_numbers_are_the_files_own_with_crlf_or_lf_endings() {
    let crlf = text(&sample("focus_sample.csv"));
    assert!(crlf.contains("\r\n"), "the sample uses CRLF");
    let lf = crlf.replace("\r\n", "\n");
    for t in [&crlf, &lf] {
        for bytes in [t.as_bytes().to_vec(), gzip(t.as_bytes())] {
            let lines = parse(BillType::Focus, "f.csv", &bytes);
            let numbers: Vec<u64> = lines.iter().map(|l| l.source_line).collect();
            assert_eq!(numbers, (2..=10).collect::<Vec<u64>>());
        }
    }
    // A short first data row is reported on line 2 in both.
    for t in [&crlf, &lf] {
        let eol = if t.contains("\r\n") { "\r\n" } else { "\n" };
        let (header, _) = t.split_once(eol).unwrap();
        let broken = format!("{header}{eol}a,b{eol}");
        let e = error(BillType::Focus, "f.csv", broken.as_bytes());
        assert!(e.starts_with("f.csv:2: not valid CSV"), "{e}");
    }
}

#[test]
fn a_truncated_gzip_file_is_refused() {
    let gz = gzip(&sample("bedrock_cur2.csv"));
    let cut = &gz[..gz.len() / 2];
    let e = error(BillType::AwsCur, "cur.csv.gz", cut);
    assert!(e.starts_with("cur.csv.gz: cannot decompress gzip"), "{e}");
}
