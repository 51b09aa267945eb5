//! `gcp-billing`: the Google Cloud billing export (BigQuery standard or detailed usage table)
//! saved as CSV: the Vertex AI and Gemini API lines.
//!
//! BigQuery cannot write nested columns to CSV directly, so an export is a query result. Column
//! names may keep the dots of the schema (`service.description`) or use underscores
//! (`service_description`); both are read. Repeated fields are JSON text: `labels` and
//! `project.labels` as `[{"key":..,"value":..}]` (or an object), `credits` as
//! `[{"name":..,"amount":..,"type":..,"id":..}]`.
//!
//! - **Rows kept:** `service.description` naming Vertex AI (`gcp.vertex_ai`) or the Gemini /
//!   Generative Language API (`gcp.gemini`). Other services are skipped unread.
//! - **Kind:** `cost_type` `regular` (or absent) is usage, `tax` is tax, anything else
//!   (`adjustment`, `rounding_error`) is `Other`.
//! - **Money:** `cost` (BigQuery FLOAT, so E-notation such as `7.5E-5` occurs; converted
//!   exactly) in `currency`. Each element of `credits` becomes its own `Credit` line (same
//!   period, model and project, `cost` = the credit's amount, negative as Google writes it), so
//!   net cost = usage + credits as Google defines it.
//! - **Tokens** [ASSUMPTION: SKU wording is not specified; check against a real export]: the
//!   class comes from `sku.description` (`cached`/`cache read` -> `CacheRead`, else `input` /
//!   `prompt` -> `Input`, `output` / `response` / `thinking` -> `Output`; `cache storage` is
//!   not tokens), and the count is `usage.amount` when `usage.unit` is a token unit, or a
//!   `count` on a SKU that mentions tokens. The model is the SKU description's text before the
//!   token words (`Gemini 2.5 Flash Input Text Tokens` -> `Gemini 2.5 Flash`). The raw
//!   description is kept in `attributes`, and `sku` is `sku.id`, the stable key a mapping
//!   table should use.
//! - **Other columns:** account `billing_account_id`, project `project.id`, region
//!   `location.region`, resource `resource.name`, tags from `labels` and from `project.labels`
//!   (keys prefixed `project/`), `invoice.month` in `attributes`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::common::{
    DECIMAL_EXPECTED, labels_from_json, parse_exact_decimal, scalar_text, token_scale, whole_tokens,
};
use super::csv_source::{self, Col, Header, Row};
use super::{BillError, BillLine, LineKind, TokenClass};
use tollgate_core::Currency;

struct Cols {
    service: Col,
    start: Col,
    end: Col,
    cost: Col,
    currency: Col,
    cost_type: Option<Col>,
    sku_id: Option<Col>,
    sku_description: Option<Col>,
    amount: Option<Col>,
    unit: Option<Col>,
    project: Option<Col>,
    account: Option<Col>,
    region: Option<Col>,
    resource: Option<Col>,
    labels: Option<Col>,
    project_labels: Option<Col>,
    credits: Option<Col>,
    invoice_month: Option<Col>,
}

impl Cols {
    fn find(h: &Header) -> Result<Cols, BillError> {
        const HINT: &str = "expected a billing export saved as CSV with the columns \
             service.description, usage_start_time, usage_end_time, cost and currency";
        Ok(Cols {
            service: h.require("service.description", HINT)?,
            start: h.require("usage_start_time", HINT)?,
            end: h.require("usage_end_time", HINT)?,
            cost: h.require("cost", HINT)?,
            currency: h.require("currency", HINT)?,
            cost_type: h.col("cost_type"),
            sku_id: h.col("sku.id"),
            sku_description: h.col("sku.description"),
            amount: h.col("usage.amount"),
            unit: h.col("usage.unit"),
            project: h.col("project.id"),
            account: h.col("billing_account_id"),
            region: h.col_any(&["location.region", "location.location"]),
            resource: h.col_any(&["resource.global_name", "resource.name"]),
            labels: h.col("labels"),
            project_labels: h.col("project.labels"),
            credits: h.col("credits"),
            invoice_month: h.col("invoice.month"),
        })
    }
}

pub(super) fn parse(
    file: &str,
    input: Box<dyn std::io::Read + Send + '_>,
    emit: &mut dyn FnMut(BillLine),
) -> Result<(), BillError> {
    csv_source::read(file, input, |header, records| {
        let cols = Cols::find(header)?;
        while let Some(row) = records.next(header)? {
            read_row(&row, &cols, emit)?;
        }
        Ok(())
    })
}

/// The OTel provider name for an AI service, `None` for other services.
fn provider_for(service: &str) -> Option<&'static str> {
    let s = service.to_ascii_lowercase();
    if s.contains("vertex ai") {
        Some("gcp.vertex_ai")
    } else if s.contains("gemini") || s.contains("generative language") {
        Some("gcp.gemini")
    } else {
        None
    }
}

fn read_row(row: &Row<'_>, c: &Cols, emit: &mut dyn FnMut(BillLine)) -> Result<(), BillError> {
    let service = row.required(c.service, "expected the service name, such as Vertex AI")?;
    let Some(provider) = provider_for(service) else {
        return Ok(());
    };
    let kind = match row.str(c.cost_type)? {
        None | Some("regular") => LineKind::Usage,
        Some("tax") => LineKind::Tax,
        Some(_) => LineKind::Other,
    };
    let start = row.required_instant(c.start)?;
    let end = row.required_instant(c.end)?;
    if end < start {
        return Err(row.invalid(
            c.end,
            &end.to_string(),
            "the usage period ends before it starts; check the export",
        ));
    }
    let cost = row.required_decimal(c.cost, "expected the cost, such as 1.25")?;
    let currency_text = row.required(c.currency, "expected a currency code such as USD")?;
    let currency = Currency::parse(currency_text).map_err(|_| {
        row.invalid(
            c.currency,
            currency_text,
            "expected a three-letter ISO 4217 currency code such as USD",
        )
    })?;

    let mut line = BillLine::new(provider, kind, start, end, currency, row.line());
    line.cost = Some(cost);
    line.account = row.string(c.account)?;
    line.project = row.string(c.project)?;
    line.region = row.string(c.region)?;
    line.resource = row.string(c.resource)?;
    line.sku = row.string(c.sku_id)?;
    line.tags = row.json_map(c.labels, labels_from_json)?;
    for (k, v) in row.json_map(c.project_labels, labels_from_json)? {
        line.tags.insert(format!("project/{k}"), v);
    }
    if let Some(m) = row.str(c.invoice_month)? {
        line.attributes
            .insert("invoice_month".into(), m.to_string());
    }
    if let Some(ct) = row.str(c.cost_type)? {
        line.attributes.insert("cost_type".into(), ct.to_string());
    }
    line.attributes
        .insert("service".into(), service.to_string());

    let description = row.str(c.sku_description)?;
    let amount = row.decimal(c.amount)?;
    let unit = row.string(c.unit)?;
    let sku = description.map(SkuWords::parse).unwrap_or_default();
    line.model = sku.model.clone();
    if let Some(d) = description {
        line.attributes
            .insert("sku_description".into(), d.to_string());
    }
    let scale = match unit.as_deref() {
        Some(u) if sku.mentions_tokens && u.eq_ignore_ascii_case("count") => Some(Decimal::ONE),
        Some(u) => token_scale(u),
        None => None,
    };
    match (kind, sku.class, scale, amount) {
        (LineKind::Usage, Some(class), Some(scale), Some(amount)) => {
            let n = amount.checked_mul(scale).ok_or(BillError::Overflow)?;
            let amount_col = c.amount.unwrap_or(c.cost);
            line.token_class = Some(class);
            line.tokens = Some(
                whole_tokens(n).map_err(|why| row.invalid(amount_col, &amount.to_string(), why))?,
            );
        }
        _ => {
            line.quantity = amount;
            line.unit = amount.and(unit);
        }
    }

    // Each credit is a line of its own, beside the charge it reduces.
    let credit_lines: Vec<BillLine> = credits(row, c)?
        .into_iter()
        .map(|credit| credit_line(&line, credit))
        .collect();
    emit(line);
    credit_lines.into_iter().for_each(emit);
    Ok(())
}

fn credit_line(charge: &BillLine, credit: Credit) -> BillLine {
    let mut l = charge.clone();
    l.line_kind = LineKind::Credit;
    l.cost = Some(credit.amount);
    l.token_class = None;
    l.tokens = None;
    l.quantity = None;
    l.unit = None;
    for (key, value) in [
        ("credit_type", credit.kind),
        ("credit_name", credit.name),
        ("credit_id", credit.id),
    ] {
        if let Some(v) = value {
            l.attributes.insert(key.into(), v);
        }
    }
    l
}

struct Credit {
    amount: Decimal,
    kind: Option<String>,
    name: Option<String>,
    id: Option<String>,
}

/// The `credits` cell: a JSON array of `{name, amount, type, id, full_name}`.
fn credits(row: &Row<'_>, c: &Cols) -> Result<Vec<Credit>, BillError> {
    const EXPECTED: &str = "expected credits as a JSON array such as \
         [{\"name\":\"Free trial\",\"amount\":-0.5,\"type\":\"FREE_TRIAL\"}], each with a decimal \
         amount; correct the cell or re-export the file";
    let Some(col) = c.credits else {
        return Ok(Vec::new());
    };
    let Some(text) = row.str(Some(col))? else {
        return Ok(Vec::new());
    };
    let bad = || row.invalid(col, text, EXPECTED);
    let items: Vec<BTreeMap<String, &RawValue>> = serde_json::from_str(text).map_err(|_| bad())?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let text_of = |key: &str| -> Result<Option<String>, BillError> {
            match item.get(key) {
                Some(v) => scalar_text(v).map_err(|()| bad()),
                None => Ok(None),
            }
        };
        let amount_text = text_of("amount")?.ok_or_else(bad)?;
        let amount = parse_exact_decimal(&amount_text).ok_or_else(|| {
            row.invalid(
                col,
                text,
                &format!("credit amount {amount_text:?}: {DECIMAL_EXPECTED}"),
            )
        })?;
        out.push(Credit {
            amount,
            kind: text_of("type")?,
            name: text_of("name")?,
            id: text_of("id")?,
        });
    }
    Ok(out)
}

/// What a Vertex / Gemini SKU description says about tokens.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct SkuWords {
    model: Option<String>,
    class: Option<TokenClass>,
    mentions_tokens: bool,
}

impl SkuWords {
    fn parse(description: &str) -> SkuWords {
        let lower = description.to_ascii_lowercase();
        let mentions_tokens = lower.contains("token");
        let words: Vec<&str> = lower.split_whitespace().collect();
        let has = |w: &str| words.contains(&w);
        let class = if lower.contains("storage") {
            None
        } else if has("cached") || lower.contains("cache read") || lower.contains("cache hit") {
            Some(TokenClass::CacheRead)
        } else if has("input") || has("prompt") {
            Some(TokenClass::Input)
        } else if has("output") || has("response") || has("thinking") {
            Some(TokenClass::Output)
        } else {
            None
        };
        // The model: the words before the first token word, in the original spelling.
        const TOKEN_WORDS: &[&str] = &[
            "input", "output", "cached", "cache", "prompt", "response", "thinking", "text",
            "image", "audio", "video", "tokens", "token",
        ];
        let model = class.and_then(|_| {
            let original: Vec<&str> = description.split_whitespace().collect();
            let cut = words.iter().position(|w| TOKEN_WORDS.contains(w))?;
            (cut > 0).then(|| original[..cut].join(" "))
        });
        SkuWords {
            model,
            class,
            mentions_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_descriptions() {
        let s = SkuWords::parse("Gemini 2.5 Flash Input Text Tokens");
        assert_eq!(s.class, Some(TokenClass::Input));
        assert_eq!(s.model.as_deref(), Some("Gemini 2.5 Flash"));
        assert!(s.mentions_tokens);
        let s = SkuWords::parse("Gemini 2.5 Flash Cached Input Text Tokens");
        assert_eq!(s.class, Some(TokenClass::CacheRead));
        assert_eq!(s.model.as_deref(), Some("Gemini 2.5 Flash"));
        assert_eq!(
            SkuWords::parse("Gemini 2.5 Pro Output Tokens").class,
            Some(TokenClass::Output)
        );
        assert_eq!(
            SkuWords::parse("Gemini 2.5 Flash Context Cache Storage").class,
            None
        );
        assert_eq!(SkuWords::parse("Tax").class, None);
        assert_eq!(provider_for("Vertex AI"), Some("gcp.vertex_ai"));
        assert_eq!(provider_for("Gemini API"), Some("gcp.gemini"));
        assert_eq!(provider_for("Compute Engine"), None);
    }
}
