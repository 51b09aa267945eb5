//! `tollgate report cfo`: the CFO's monthly PDF, end to end. The figures themselves are
//! worked by hand in `tollgate_finance::cfo`'s tests; here the binary must write a real
//! four-page PDF, atomically, and refuse bad input without leaving a file behind.

use serde_json::{Value, json};

use crate::support::{Sandbox, event, jsonl};

/// July 2026 with costs carried by the events, plus June 2026 and July 2025 to compare with:
/// - Jul 1: `search` 2 x 20.00 on openai; Jul 2: `chat` 20.00 on openai and a feature whose
///   name is full of typst markup, 30.00 on anthropic; Jul 3: one unpriced call.
/// - Jun 30: 72.00; 2025-07-15: 120.00.
///
/// Total 90.00: MoM 90 / 72 - 1 = +25.0 %, YoY 90 / 120 - 1 = -25.0 %.
fn months() -> Sandbox {
    let sb = Sandbox::new();
    let hostile = r#"#panic("x") *b* _i_ $m$ [l] \ "q" // <a> @r"#;
    let rows: Vec<Value> = vec![
        json!({"occurred_at": "2026-07-01T10:00:00Z", "feature": "search", "cost": "20.00", "input_tokens": 100, "cache_read_tokens": 300}),
        json!({"occurred_at": "2026-07-01T11:00:00Z", "feature": "search", "cost": "20.00"}),
        json!({"occurred_at": "2026-07-02T10:00:00Z", "feature": "chat", "cost": "20.00"}),
        json!({"occurred_at": "2026-07-02T12:00:00Z", "feature": hostile, "provider": "anthropic", "model": "claude-x", "cost": "30.00"}),
        json!({"occurred_at": "2026-07-03T01:00:00Z", "feature": "chat", "model": "no-such-model", "input_tokens": 50}),
        json!({"occurred_at": "2026-06-30T12:00:00Z", "feature": "chat", "cost": "72.00"}),
        json!({"occurred_at": "2025-07-15T12:00:00Z", "feature": "chat", "cost": "120.00"}),
    ];
    let evs: Vec<_> = rows
        .into_iter()
        .enumerate()
        .map(|(i, o)| event(u32::try_from(i).unwrap() + 1, o))
        .collect();
    sb.write("m.jsonl", jsonl(&evs));
    let out = sb.ingest("m.jsonl");
    assert_eq!(out["ingested"], 7, "{out}");
    sb
}

/// Pages of a PDF: its `/Type /Page` objects (typst writes `/Type/Page`; not `/Pages`),
/// read from the bytes.
pub fn pages(pdf: &[u8]) -> usize {
    let mut n = 0;
    for (i, _) in pdf.windows(5).enumerate().filter(|(_, w)| *w == b"/Type") {
        let rest = &pdf[i + 5..];
        let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
        if rest.starts_with(b"/Page") && !rest.get(5).is_some_and(u8::is_ascii_alphanumeric) {
            n += 1;
        }
    }
    n
}

/// Files in the sandbox other than the ledger and the inputs (no temporaries left behind).
fn leftovers(sb: &Sandbox) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !["data", "m.jsonl", "rates.toml"].contains(&n.as_str()))
        .collect();
    v.sort();
    v
}

#[test]
fn writes_a_four_page_pdf_with_embedded_fonts() {
    let sb = months();
    let out = sb
        .run(&[
            "report", "cfo", "--period", "2026-07", "--out", "cfo.pdf", "--target", "200",
        ])
        .ok()
        .to_string();
    assert!(
        out.contains("CFO report 2026-07 (UTC), total 90.00 USD, 4 pages"),
        "{out}"
    );
    let pdf = std::fs::read(sb.path().join("cfo.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    assert_eq!(pages(&pdf), 4);
    // The committed DejaVu fonts are embedded (as subsets), no other font is used.
    let text = String::from_utf8_lossy(&pdf);
    assert!(text.contains("DejaVuSans"), "no DejaVu font in the PDF");
    assert!(text.contains("/FontFile2"), "fonts are not embedded");
    assert_eq!(leftovers(&sb), ["cfo.pdf"]);
}

#[test]
fn converts_with_an_fx_rate_and_works_in_a_half_hour_zone() {
    let sb = months();
    let out = sb
        .run(&[
            "report",
            "cfo",
            "--period",
            "2026-07",
            "--out",
            "reports/eur.pdf",
            "--currency",
            "EUR",
            "--fx-rate",
            "0.9",
            "--tz",
            "Asia/Kolkata",
        ])
        .ok()
        .to_string();
    // 90.00 x 0.9 = 81.00 EUR (all July events are inside July in UTC+05:30 too).
    assert!(
        out.contains("CFO report 2026-07 (Asia/Kolkata), total 81.00 EUR, 4 pages"),
        "{out}"
    );
    let pdf = std::fs::read(sb.path().join("reports/eur.pdf")).unwrap();
    assert_eq!(pages(&pdf), 4);
}

#[test]
fn a_failing_run_leaves_no_file() {
    let sb = months();
    for (args, expect) in [
        (vec!["--period", "2026-13"], "--period"),
        (vec!["--period", "2026-07-10"], "calendar month"),
        (vec!["--period", "2026-09"], "no usage recorded in 2026-09"),
        (vec!["--period", "2026-07", "--target=-5"], "--target"),
        (
            vec!["--period", "2026-07", "--target", "0"],
            "must be above zero",
        ),
        (vec!["--period", "2026-07", "--target", "lots"], "--target"),
        (
            vec!["--period", "2026-07", "--fx-rate", "2"],
            "--fx-rate needs --currency",
        ),
        (
            vec!["--period", "2026-07", "--tz", "Mars/Olympus"],
            "Mars/Olympus",
        ),
    ] {
        let mut all = vec!["report", "cfo", "--out", "cfo.pdf"];
        all.extend(args.iter().copied());
        let err = sb.run(&all).fails().to_string();
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(
            leftovers(&sb).is_empty(),
            "{args:?} left {:?}",
            leftovers(&sb)
        );
    }
    // A failing run does not touch an existing report either.
    std::fs::write(sb.path().join("cfo.pdf"), b"old").unwrap();
    sb.run(&["report", "cfo", "--out", "cfo.pdf", "--period", "2026-13"])
        .fails();
    assert_eq!(std::fs::read(sb.path().join("cfo.pdf")).unwrap(), b"old");
}
