//! # tollgate-render
//!
//! Renderers: a [`Table`] (header lines, columns, rows, an optional total row) in, bytes out:
//! aligned text for people, CSV and XLSX for machines and spreadsheets. Report-specific JSON
//! is produced by the report models themselves.
//!
//! Invariants: renderers never compute: every number is already final (money already rounded
//! by the report model) and is written exactly as given.

use std::fmt::Write as _;

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    /// A whole number (tokens, requests).
    Int(i128),
    /// An amount already rounded for display, as exact decimal text (e.g. `"12.30"`).
    Money(String),
    Empty,
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Text(s) | Cell::Money(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Empty => String::new(),
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Cell::Int(_) | Cell::Money(_))
    }
}

/// A titled table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Lines printed above the table (period, currency, FX rule, ...).
    pub header: Vec<String>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// Printed after a rule, in bold in XLSX.
    pub total: Option<Vec<Cell>>,
}

/// Errors while rendering.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("XLSX: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("{0}")]
    Other(String),
}

fn group_thousands(s: &str) -> String {
    let (sign, digits) = s.strip_prefix('-').map_or(("", s), |d| ("-", d));
    let (int, frac) = digits
        .split_once('.')
        .map_or((digits, None), |(i, f)| (i, Some(f)));
    if !int.bytes().all(|b| b.is_ascii_digit()) {
        return s.to_string();
    }
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// Aligned text: numbers right-aligned with thousands separators.
pub fn text(t: &Table) -> String {
    let fmt = |c: &Cell| {
        if c.is_numeric() {
            group_thousands(&c.text())
        } else {
            c.text()
        }
    };
    let mut all: Vec<Vec<String>> = vec![t.columns.clone()];
    let mut numeric = vec![false; t.columns.len()];
    for r in t.rows.iter().chain(t.total.iter()) {
        for (i, c) in r.iter().enumerate() {
            if c.is_numeric() && i < numeric.len() {
                numeric[i] = true;
            }
        }
        all.push(r.iter().map(fmt).collect());
    }
    let mut width = vec![0usize; t.columns.len()];
    for r in &all {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    for h in &t.header {
        out.push_str(h);
        out.push('\n');
    }
    if !t.header.is_empty() {
        out.push('\n');
    }
    let line = |out: &mut String, r: &[String]| {
        let mut s = String::new();
        for (i, c) in r.iter().enumerate() {
            let w = width.get(i).copied().unwrap_or(0);
            if i > 0 {
                s.push_str("  ");
            }
            if numeric.get(i).copied().unwrap_or(false) {
                let _ = write!(s, "{c:>w$}");
            } else {
                let _ = write!(s, "{c:<w$}");
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut out, &all[0]);
    let rule: String = width
        .iter()
        .map(|w| "-".repeat(*w))
        .collect::<Vec<_>>()
        .join("  ");
    out.push_str(&rule);
    out.push('\n');
    let body_end = 1 + t.rows.len();
    for r in &all[1..body_end] {
        line(&mut out, r);
    }
    if t.total.is_some() {
        out.push_str(&rule);
        out.push('\n');
        line(&mut out, &all[body_end]);
    }
    out
}

/// CSV: header lines as `# ` comment lines (with `with_header`), then the columns, the rows
/// and the total row. Numbers are written without thousands separators.
pub fn csv(t: &Table, with_header: bool) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    if with_header {
        for h in &t.header {
            out.extend_from_slice(b"# ");
            out.extend_from_slice(h.as_bytes());
            out.push(b'\n');
        }
    }
    {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record(&t.columns)?;
        for r in t.rows.iter().chain(t.total.iter()) {
            w.write_record(r.iter().map(Cell::text))?;
        }
        w.flush().map_err(|e| RenderError::Other(e.to_string()))?;
    }
    Ok(out)
}

/// XLSX: one sheet with the header lines, a bold column header, the rows and a bold total row.
/// Money cells are numbers with the currency's decimals shown (`minor_units`).
pub fn xlsx(t: &Table, sheet_name: &str, minor_units: u32) -> Result<Vec<u8>, RenderError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(sheet_name)?;
    let bold = Format::new().set_bold();
    let money_fmt = if minor_units == 0 {
        "#,##0".to_string()
    } else {
        format!("#,##0.{}", "0".repeat(minor_units as usize))
    };
    let money = Format::new().set_num_format(&money_fmt);
    let money_bold = Format::new().set_num_format(&money_fmt).set_bold();
    let int = Format::new().set_num_format("#,##0");
    let int_bold = Format::new().set_num_format("#,##0").set_bold();
    let mut row: u32 = 0;
    for h in &t.header {
        ws.write_string(row, 0, h)?;
        row += 1;
    }
    if !t.header.is_empty() {
        row += 1;
    }
    for (i, c) in t.columns.iter().enumerate() {
        ws.write_string_with_format(row, col(i)?, c, &bold)?;
    }
    row += 1;
    let write_row = |ws: &mut rust_xlsxwriter::Worksheet,
                     row: u32,
                     cells: &[Cell],
                     is_total: bool|
     -> Result<(), RenderError> {
        for (i, c) in cells.iter().enumerate() {
            let cidx = col(i)?;
            match c {
                Cell::Text(s) => {
                    if is_total {
                        ws.write_string_with_format(row, cidx, s, &bold)?;
                    } else {
                        ws.write_string(row, cidx, s)?;
                    }
                }
                Cell::Int(v) => {
                    // Spreadsheet numbers are doubles; token counts below 2^53 are exact.
                    let f: f64 = v
                        .to_string()
                        .parse()
                        .map_err(|_| RenderError::Other(format!("number {v}")))?;
                    ws.write_number_with_format(
                        row,
                        cidx,
                        f,
                        if is_total { &int_bold } else { &int },
                    )?;
                }
                Cell::Money(s) => {
                    // The amount is already rounded to the minor unit; the cell shows exactly it.
                    let f: f64 = s
                        .parse()
                        .map_err(|_| RenderError::Other(format!("amount {s}")))?;
                    ws.write_number_with_format(
                        row,
                        cidx,
                        f,
                        if is_total { &money_bold } else { &money },
                    )?;
                }
                Cell::Empty => {}
            }
        }
        Ok(())
    };
    for r in &t.rows {
        write_row(ws, row, r, false)?;
        row += 1;
    }
    if let Some(tot) = &t.total {
        write_row(ws, row, tot, true)?;
    }
    ws.autofit();
    Ok(wb.save_to_buffer()?)
}

fn col(i: usize) -> Result<u16, RenderError> {
    u16::try_from(i).map_err(|_| RenderError::Other("too many columns".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        Table {
            header: vec!["Period: 2026-07".into()],
            columns: vec!["team".into(), "requests".into(), "cost".into()],
            rows: vec![
                vec![
                    Cell::Text("search".into()),
                    Cell::Int(1234567),
                    Cell::Money("12.30".into()),
                ],
                vec![
                    Cell::Text("a,b".into()),
                    Cell::Int(5),
                    Cell::Money("0.05".into()),
                ],
            ],
            total: Some(vec![
                Cell::Text("TOTAL".into()),
                Cell::Int(1234572),
                Cell::Money("12.35".into()),
            ]),
        }
    }

    #[test]
    fn text_aligns_and_groups_thousands() {
        let out = text(&sample());
        let expected = "Period: 2026-07\n\nteam     requests   cost\n------  ---------  -----\nsearch  1,234,567  12.30\na,b             5   0.05\n------  ---------  -----\nTOTAL   1,234,572  12.35\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn csv_quotes_and_keeps_exact_numbers() {
        let out = String::from_utf8(csv(&sample(), true).unwrap()).unwrap();
        assert_eq!(
            out,
            "# Period: 2026-07\nteam,requests,cost\nsearch,1234567,12.30\n\"a,b\",5,0.05\nTOTAL,1234572,12.35\n"
        );
    }

    #[test]
    fn xlsx_is_a_zip_workbook() {
        let bytes = xlsx(&sample(), "Summary", 2).unwrap();
        assert_eq!(&bytes[..2], b"PK");
        assert!(bytes.len() > 1000);
    }
}
