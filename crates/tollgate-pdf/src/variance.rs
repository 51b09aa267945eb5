//! The one-page variance report for the weekly review (`tollgate reconcile --report FILE.pdf`):
//! totals of ledger and bills, the teams with a variance, and each class of flagged difference
//! with its count, sum and largest rows. One A4 page: long lists are cut, and say so.

use rust_decimal::Decimal;
use tollgate_core::money::{group_thousands, round_half_away};
use tollgate_finance::reconcile::{Class, Reconciliation, Row};

use crate::{Result, compile, str_lit};

/// Teams listed at most (largest variance first).
const MAX_TEAMS: usize = 10;
/// Rows listed per class at most (largest first).
const ROWS_PER_CLASS: usize = 3;

fn money(d: Decimal) -> String {
    group_thousands(&round_half_away(d, 2).to_string())
}

fn cell(s: &str) -> String {
    format!("[#{}]", str_lit(s))
}

pub fn render(rec: &Reconciliation) -> Result<Vec<u8>> {
    let c = &rec.currency;
    let mut teams: Vec<_> = rec
        .teams
        .iter()
        .filter(|t| !t.variance().is_zero())
        .collect();
    teams.sort_by(|a, b| {
        b.variance()
            .abs()
            .cmp(&a.variance().abs())
            .then(a.team.cmp(&b.team))
    });
    let more_teams = teams.len().saturating_sub(MAX_TEAMS);
    let team_rows: String = teams
        .iter()
        .take(MAX_TEAMS)
        .map(|t| {
            format!(
                "  {}, {}, {}, {}, {},\n",
                cell(if t.team.is_empty() {
                    "(no owner)"
                } else {
                    &t.team
                }),
                cell(&money(t.ledger)),
                cell(&money(t.bill)),
                cell(&money(t.variance())),
                cell(&t.flagged_rows.to_string())
            )
        })
        .collect();
    let mut classes = String::new();
    for cl in Class::ALL {
        let mut rows: Vec<&Row> = rec.flagged().filter(|r| r.class == Some(cl)).collect();
        let sum: Decimal = rows.iter().map(|r| r.variance()).sum();
        classes.push_str(&format!(
            "  {}, {}, {},\n",
            cell(cl.as_str()),
            cell(&rows.len().to_string()),
            cell(&money(sum))
        ));
        rows.sort_by(|a, b| {
            b.variance()
                .abs()
                .cmp(&a.variance().abs())
                .then(a.key.cmp(&b.key))
        });
        for r in rows.iter().take(ROWS_PER_CLASS) {
            let what = format!(
                "{} {} {} {}: {}",
                r.key.day, r.key.provider, r.key.model, r.key.key, r.note
            );
            classes.push_str(&format!(
                "  table.cell(colspan: 2)[#text(size: 7pt, fill: rgb(\"#555555\"))[#{}]], {},\n",
                str_lit(&what),
                cell(&money(r.variance()))
            ));
        }
    }
    let head = [
        format!(
            "Days in {} (company time zone {}); variance = bill − ledger",
            rec.bill_tz, rec.company_tz
        ),
        format!(
            "Flagged when |variance| > max({} % of the larger side, {} {c})",
            rec.thresholds.pct.normalize(),
            rec.thresholds.amount.normalize()
        ),
        format!(
            "Compared: {}",
            rec.providers
                .iter()
                .map(|(p, g)| format!("{p} (per {g})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        if rec.not_billed.is_empty() {
            String::new()
        } else {
            format!("Not compared (no bill): {}", rec.not_billed.join(", "))
        },
    ];
    let head: String = head
        .iter()
        .filter(|h| !h.is_empty())
        .map(|h| format!("#{} #linebreak()\n", str_lit(h)))
        .collect();
    let source = format!(
        r##"#set document(title: {title}, author: "Tollgate")
#set text(font: "DejaVu Sans", size: 8.5pt, lang: "en")
#set page(paper: "a4", margin: (x: 1.6cm, y: 1.5cm))
#text(size: 15pt, weight: "bold", fill: rgb("#2b5c8a"))[#{title}]
#v(2pt)
#text(size: 8pt)[{head}]
#v(6pt)
#table(columns: (1fr, 1fr, 1fr, 1fr), align: center, stroke: 0.4pt + rgb("#c8c8c8"),
  [*Ledger*], [*Bills*], [*Variance*], [*Flagged rows*],
  [#{ledger}], [#{bill}], [*#{variance}*], [#{flagged}],
)
#v(6pt)
#text(weight: "bold")[Teams with a variance (#{currency})]
#table(columns: (1fr, auto, auto, auto, auto), align: (left, right, right, right, right),
  stroke: 0.4pt + rgb("#c8c8c8"),
  table.header([*Team*], [*Ledger*], [*Bill*], [*Variance*], [*Flagged*]),
{team_rows})
#if {more_teams} > 0 [#text(size: 7.5pt)[and {more_teams} more teams (see the CSV)]]
#v(6pt)
#text(weight: "bold")[Flagged differences by class, with the largest rows]
#table(columns: (1fr, auto, auto), align: (left, right, right), stroke: 0.4pt + rgb("#c8c8c8"),
  table.header([*Class*], [*Rows*], [*Sum*]),
{classes})
"##,
        title = str_lit(&format!("Variance report {}", rec.period)),
        ledger = str_lit(&format!("{} {c}", money(rec.ledger_total))),
        bill = str_lit(&format!("{} {c}", money(rec.bill_total))),
        variance = str_lit(&format!("{} {c}", money(rec.variance()))),
        flagged = str_lit(&format!("{} of {}", rec.flagged().count(), rec.rows.len())),
        currency = str_lit(c),
    );
    compile(&source, Vec::new())
}
