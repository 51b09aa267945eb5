//! `tollgate ingest bills`: provider bills into the ledger, a re-delivered bill supersedes the
//! earlier one, a bad row writes nothing.

use std::path::PathBuf;

use crate::support::{Sandbox, path_str};

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/samples")
        .join(name)
}

#[test]
fn a_cur_file_is_summarized_and_stored_and_redelivery_supersedes_it() {
    let sb = Sandbox::new();
    let cur = sample("bedrock_cur2.csv");
    let s = sb
        .run(&[
            "ingest",
            "bills",
            "--type",
            "aws-cur",
            path_str(&cur),
            "--format",
            "json",
        ])
        .json();
    // Summed independently from the sample's line_item_unblended_cost by line type (Python's
    // decimal module over the 30 rows): Usage 53.2436408, Tax 4.125, Credit -25.
    assert_eq!(s["provider"], "aws.bedrock");
    assert_eq!(s["lines"], 30);
    assert_eq!(s["cost"], "53.2436408");
    assert_eq!(s["tax"], "4.125");
    assert_eq!(s["credits"], "-25");
    assert_eq!(s["currency"], "USD");
    assert_eq!(s["period"]["start"], "2026-09-01T00:00:00.000000Z");
    // AWS delivers the month's CUR again: the new import is the one in force, nothing deleted.
    sb.run(&[
        "ingest",
        "bills",
        "--type",
        "aws-cur",
        path_str(&cur),
        "--format",
        "json",
    ])
    .json();
    let current = sb.sql("SELECT COUNT(*) AS n FROM current_bill_lines");
    assert_eq!(current[0]["n"], 30);
    let all = sb.sql("SELECT COUNT(*) AS n FROM bill_lines");
    assert_eq!(all[0]["n"], 60);
}

#[test]
fn a_bad_row_fails_the_file_and_writes_nothing() {
    let sb = Sandbox::new();
    let text = std::fs::read_to_string(sample("focus_sample.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header.iter().position(|h| *h == "BilledCost").unwrap();
    // Corrupt BilledCost on the third data row (file line 4).
    let mut cells: Vec<String> = lines[3].split(',').map(String::from).collect();
    cells[col] = "12.5O".into();
    lines[3] = cells.join(",");
    sb.write("bad.csv", lines.join("\n") + "\n");
    let err = sb
        .run(&["ingest", "bills", "--type", "focus", "bad.csv"])
        .fails()
        .to_string();
    assert!(
        err.contains("bad.csv:4: BilledCost:") && err.contains("12.5O"),
        "{err}"
    );
    // Nothing was written, not even an empty ledger.
    assert!(!sb.data_dir().join("ledger.sqlite").exists());
    let err = sb
        .run(&["ingest", "bills", "--type", "cur", "bad.csv"])
        .fails()
        .to_string();
    assert!(err.contains("aws-cur"), "{err}");
}

#[test]
fn a_bad_row_after_thousands_of_stored_lines_still_writes_nothing() {
    // Lines go into the ledger while the file is parsed, a few thousand at a time: a bad row
    // far down the file must still roll all of them back, and leave the import in force.
    let sb = Sandbox::new();
    let cur = sample("bedrock_cur2.csv");
    let s = sb
        .run(&[
            "ingest",
            "bills",
            "--type",
            "aws-cur",
            path_str(&cur),
            "--format",
            "json",
        ])
        .json();
    assert_eq!(s["lines"], 30);
    let text = std::fs::read_to_string(&cur).unwrap();
    let mut rows = text.lines();
    let header = rows.next().unwrap();
    let row = rows.next().unwrap();
    // 5,000 copies of the first usage row (file lines 2..=5001), then the same row with a
    // broken end date on line 5002 (same month: it would supersede the sample).
    let mut big = format!("{header}\n");
    for _ in 0..5000 {
        big.push_str(row);
        big.push('\n');
    }
    let bad = row.replacen(
        "2026-09-02T00:00:00Z,AmazonBedrock",
        "not-a-date,AmazonBedrock",
        1,
    );
    assert_ne!(bad, row);
    big.push_str(&bad);
    big.push('\n');
    sb.write("big.csv", big);
    let err = sb
        .run(&["ingest", "bills", "--type", "aws-cur", "big.csv"])
        .fails()
        .to_string();
    assert!(
        err.contains("big.csv:5002: line_item_usage_end_date:") && err.contains("not-a-date"),
        "{err}"
    );
    assert_eq!(sb.sql("SELECT COUNT(*) AS n FROM bill_lines")[0]["n"], 30);
    assert_eq!(
        sb.sql("SELECT COUNT(*) AS n FROM current_bill_lines")[0]["n"],
        30
    );
    assert_eq!(sb.sql("SELECT COUNT(*) AS n FROM bill_imports")[0]["n"], 1);
}
