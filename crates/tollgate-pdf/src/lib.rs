//! # tollgate-pdf
//!
//! PDF documents from report models: a model in, PDF bytes out. Layout is done by
//! [typst](https://typst.app) (through `typst-as-lib`), charts are drawn as SVG by `plotters`
//! and placed as vector images. The heavy typst dependency lives only here, so the rest of the
//! workspace compiles without it.
//!
//! - [`cfo`]: the CFO's monthly report (`tollgate report cfo`), four A4 pages.
//! - [`invoice`]: customer usage invoices (`tollgate invoice --format pdf`).
//! - [`variance`]: the one-page reconciliation variance report (`tollgate reconcile --report`).
//! - [`compile`]: typst markup plus named images to PDF bytes, for other documents.
//! - [`str_lit`]: the only way text reaches generated markup.
//!
//! Invariants:
//! - offline and deterministic: the only fonts are the DejaVu Sans files committed under
//!   `fonts/` (embedded as subsets); no system fonts, no packages, no network, no clock (the
//!   PDF carries the report's own generation date);
//! - data never becomes markup: every piece of text from the ledger (feature and provider
//!   names may contain `#`, `*`, `_`, `$`, brackets, quotes, backslashes) enters the typst
//!   source as an escaped string literal, so it is shown verbatim and cannot run code;
//! - floats appear only when drawing charts (pixel positions); every figure printed as text
//!   comes from the model's exact decimals.

pub mod cfo;
mod charts;
pub mod invoice;
pub mod variance;

use typst::foundations::{Bytes, Dict, IntoValue};
use typst_as_lib::TypstEngine;
use typst_layout::PagedDocument;

/// DejaVu Sans (Bitstream Vera license, see `fonts/LICENSE-DejaVu.txt`).
pub static FONT_REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
/// DejaVu Sans Bold.
pub static FONT_BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");
/// The font family every document uses (also in the charts' SVG).
pub const FONT_FAMILY: &str = "DejaVu Sans";

/// Errors while rendering a PDF.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// The generated typst source did not compile: a bug in the template or its data.
    #[error("PDF layout failed: {0}")]
    Layout(String),
    /// typst could not write the PDF.
    #[error("PDF export failed: {0}")]
    Export(String),
    /// plotters could not draw a chart.
    #[error("chart {chart}: {message}")]
    Chart { chart: String, message: String },
}

pub type Result<T> = std::result::Result<T, PdfError>;

/// Named images for [`compile`]: `(name, bytes)`.
pub type Images = Vec<(String, Vec<u8>)>;

/// A typst string literal that shows `s` verbatim: `"` and `\` escaped, control characters
/// as `\u{..}` escapes. In markup, use it as `#"..."` followed by `;` or inside code.
pub fn str_lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Compiles typst `source` into PDF bytes. `images` are available to the source as
/// `sys.inputs.at(name)` (bytes; use `image(sys.inputs.at(name), format: "svg")`).
pub fn compile(source: &str, images: Images) -> Result<Vec<u8>> {
    let engine = TypstEngine::builder()
        .main_file(source)
        .fonts([FONT_REGULAR, FONT_BOLD])
        .build();
    let mut inputs = Dict::new();
    for (name, bytes) in images {
        inputs.insert(name.as_str().into(), Bytes::new(bytes).into_value());
    }
    let doc: PagedDocument = engine
        .compile_with_input(inputs)
        .output
        .map_err(|e| PdfError::Layout(e.to_string()))?;
    typst_pdf::pdf(&doc, &typst_pdf::PdfOptions::default()).map_err(|diags| {
        PdfError::Export(
            diags
                .iter()
                .map(|d| d.message.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// Number of pages of a PDF: its `/Type /Page` objects (with or without the space; not
/// `/Pages` or `/PageLabel`), read from the bytes. Works on what [`compile`] writes, whose
/// page dictionaries are not compressed.
pub fn page_count(pdf: &[u8]) -> usize {
    let key = b"/Type";
    let mut n = 0;
    let mut i = 0;
    while let Some(pos) = pdf[i..].windows(key.len()).position(|w| w == key) {
        let mut j = i + pos + key.len();
        while pdf.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if pdf[j..].starts_with(b"/Page") && !pdf.get(j + 5).is_some_and(u8::is_ascii_alphanumeric)
        {
            n += 1;
        }
        i = j;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_show_any_text_verbatim() {
        assert_eq!(str_lit(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(str_lit("x\ny\u{7}"), r#""x\ny\u{7}""#);
        // Markup characters need no escaping inside a string literal.
        assert_eq!(str_lit("#*_$[]<>@`=-+/~"), "\"#*_$[]<>@`=-+/~\"");
    }

    #[test]
    fn hostile_text_renders_as_text() {
        let name = "#panic(\"boom\") *bold* _x_ $y$ [z] \\ \" // /* <l> @r `c` = h";
        let src = format!(
            "#set text(font: \"DejaVu Sans\")\n#let n = {}\n#n\n\n#table(columns: 1, n)\n",
            str_lit(name)
        );
        let pdf = compile(&src, vec![]).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert_eq!(page_count(&pdf), 1);
    }
}
