//! Customer usage invoices as PDF: the same document as the text and JSON forms (lines,
//! subtotal, tax, total, the pricing note, problems of a draft), with the usage appendix by
//! model and by day on the following page(s).

use rust_decimal::Decimal;
use tollgate_core::money::{fmt_decimal, group_thousands, round_half_away};
use tollgate_finance::invoice::Invoice;

use crate::{Result, compile, str_lit};

fn cell(s: &str) -> String {
    format!("[#{}]", str_lit(s))
}

/// Renders an invoice (or credit note) to PDF bytes.
pub fn render(inv: &Invoice) -> Result<Vec<u8>> {
    let c = inv.tenant.currency;
    let money = |d: Decimal| group_thousands(&round_half_away(d, c.minor_units()).to_string());
    let title = if inv.kind == "credit_note" {
        "AI Usage Credit Note"
    } else {
        "AI Usage Invoice"
    };
    let status = if inv.finalized {
        ""
    } else {
        "DRAFT: not finalized"
    };
    let last_day = inv
        .period
        .shifted(1)
        .ok()
        .and_then(|p| p.first_day().yesterday().ok())
        .map(|d| d.to_string())
        .unwrap_or_default();
    let mut rows = String::new();
    for l in &inv.lines {
        let per = match l.unit.as_str() {
            "1k_tokens" => "per 1K tokens".to_string(),
            "included" => "included".to_string(),
            other => format!("per {other}"),
        };
        let qty = if l.unit == "included" {
            String::new()
        } else {
            fmt_decimal(l.quantity)
        };
        let price = if l.unit == "included" {
            String::new()
        } else {
            l.unit_price.to_string()
        };
        rows.push_str(&format!(
            "  {}, {}, {}, {}, {}, {}, {}, {},\n",
            cell(&l.label),
            cell(&group_thousands(&l.requests.to_string())),
            cell(
                &l.sessions
                    .map(|n| group_thousands(&n.to_string()))
                    .unwrap_or_default()
            ),
            cell(&group_thousands(&l.tokens.to_string())),
            cell(&qty),
            cell(&price),
            cell(&per),
            cell(&money(l.amount)),
        ));
    }
    let tax_line = match &inv.tenant.tax {
        Some(t) => format!(
            "[#{}], [#{}],",
            str_lit(&format!(
                "{} ({}%)",
                t.name,
                fmt_decimal(t.rate * Decimal::new(100, 0))
            )),
            str_lit(&format!("{} {c}", money(inv.tax_amount)))
        ),
        None => String::new(),
    };
    let problems: String = inv
        .problems
        .iter()
        .map(|p| {
            format!(
                "- #{} #linebreak() #text(fill: rgb(\"#666666\"))[#{}]\n",
                str_lit(&p.what),
                str_lit(&p.fix)
            )
        })
        .collect();
    let by_model: String = inv
        .by_model
        .iter()
        .map(|(m, r, t)| {
            format!(
                "  {}, {}, {},\n",
                cell(m),
                cell(&group_thousands(&r.to_string())),
                cell(&group_thousands(&t.to_string()))
            )
        })
        .collect();
    let by_day: String = inv
        .by_day
        .iter()
        .map(|(d, r, t)| {
            format!(
                "  {}, {}, {},\n",
                cell(&d.to_string()),
                cell(&group_thousands(&r.to_string())),
                cell(&group_thousands(&t.to_string()))
            )
        })
        .collect();
    let mut head = vec![
        format!("Invoice #: {}", inv.number),
        format!(
            "Period: {} to {} ({})",
            inv.period.first_day(),
            last_day,
            inv.period.tz_name()
        ),
        format!("Issued: {}", inv.issue_date),
    ];
    if let Some(cn) = &inv.corrects {
        head.push(format!("Reverses invoice: {cn}"));
    }
    if let Some(r) = &inv.reason {
        head.push(format!("Reason: {r}"));
    }
    let head: String = head
        .iter()
        .map(|h| format!("#{} #linebreak()\n", str_lit(h)))
        .collect();
    let source = format!(
        r##"#set document(title: {doc_title}, author: "Tollgate")
#set text(font: "DejaVu Sans", size: 9pt, lang: "en")
#set page(paper: "a4", margin: (x: 1.8cm, y: 2cm),
  footer: context [#set text(size: 7.5pt, fill: rgb("#666666")); #{number_lit} #h(1fr) Page #counter(page).display() of #counter(page).final().first()])
#text(size: 16pt, weight: "bold", fill: rgb("#2b5c8a"))[#{tenant_lit} — #{title_lit}]
#if {status_lit} != "" [ #h(1em) #text(size: 11pt, weight: "bold", fill: rgb("#c0392b"))[#{status_lit}] ]
#v(4pt)
{head}
#v(8pt)
#text(weight: "bold")[Line items (#{currency_lit})]
#table(
  columns: (1fr, auto, auto, auto, auto, auto, auto, auto),
  align: (left, right, right, right, right, right, left, right),
  stroke: 0.4pt + rgb("#c8c8c8"),
  table.header([*Item*], [*Requests*], [*Sessions*], [*Tokens*], [*Quantity*], [*Unit price*], [*Unit*], [*Amount*]),
{rows})
#align(right)[#table(
  columns: (auto, auto),
  align: (left, right),
  stroke: none,
  [*Subtotal*], [#{subtotal_lit}],
  {tax_line}
  [*Total*], [*#{total_lit}*],
)]
#v(6pt)
#text(size: 8.5pt)[Note: #{note_lit}]
#if {has_problems} [
  #v(6pt)
  #text(weight: "bold", fill: rgb("#c0392b"))[Cannot be finalized until these are fixed:]
{problems}
]
#pagebreak()
#text(size: 12pt, weight: "bold", fill: rgb("#2b5c8a"))[Appendix A: usage by model]
#table(columns: (1fr, auto, auto), align: (left, right, right), stroke: 0.4pt + rgb("#c8c8c8"),
  table.header([*Model*], [*Requests*], [*Tokens*]),
{by_model})
#v(8pt)
#text(size: 12pt, weight: "bold", fill: rgb("#2b5c8a"))[Appendix B: usage by day (#{tz_lit})]
#table(columns: (1fr, auto, auto), align: (left, right, right), stroke: 0.4pt + rgb("#c8c8c8"),
  table.header([*Day*], [*Requests*], [*Tokens*]),
{by_day})
"##,
        doc_title = str_lit(&format!("{} {}", title, inv.number)),
        number_lit = str_lit(&inv.number),
        tenant_lit = str_lit(&inv.tenant.name),
        title_lit = str_lit(title),
        status_lit = str_lit(status),
        currency_lit = str_lit(c.as_str()),
        subtotal_lit = str_lit(&format!("{} {c}", money(inv.subtotal))),
        total_lit = str_lit(&format!("{} {c}", money(inv.total))),
        note_lit = str_lit(&inv.note),
        has_problems = if inv.problems.is_empty() {
            "false"
        } else {
            "true"
        },
        tz_lit = str_lit(inv.period.tz_name()),
    );
    compile(&source, Vec::new())
}
