//! `anthropic-cost`: the Anthropic Admin API cost report
//! (`GET /v1/organizations/cost_report`), one page object or an array of pages.
//!
//! **Unit:** `amount` is a decimal *string* in the lowest currency unit, **cents** (the API
//! docs: `"123.45"` USD is $1.23; fractional cents occur). It is read exactly and divided by
//! 100 by moving the decimal point, so a line's `cost` is in dollars. The sample confirms it:
//! 152,300 uncached Sonnet 4 input tokens at $3 per million are $0.4569, and the report says
//! `"45.69"`. A JSON number is accepted too, read from its exact text.
//!
//! Each `data[].results[]` entry is one `Usage` line. `cost_type = "tokens"` lines get the
//! class named by `token_type` (`uncached_input_tokens`, `cache_read_input_tokens`,
//! `cache_creation.ephemeral_5m_input_tokens`, `cache_creation.ephemeral_1h_input_tokens`,
//! `output_tokens`) and no token count (the report has none). An unknown `token_type` keeps
//! the cost with no class (`attributes["token_type"]` holds it). Other cost types
//! (`web_search`, `code_execution`, `session_usage`) are lines with `unit` = the cost type.
//! `description` is kept in `sku`; a null `workspace_id` is the default workspace when the
//! report is grouped by workspace (as for the usage report).

use super::anthropic_usage::{DIMENSIONS, name_default_workspace};
use super::json_source::{self, Object};
use super::{BillError, BillLine, LineKind, TokenClass};
use tollgate_core::Currency;

const PROVIDER: &str = "anthropic";

pub(super) fn parse(file: &str, text: &str) -> Result<Vec<BillLine>, BillError> {
    let root = json_source::root(file, text)?;
    let mut lines = Vec::new();
    let mut record = 0u64;
    for page in json_source::pages(&root)? {
        let data = page.required("data", "expected the report's data array of buckets")?;
        for bucket in data.as_array()? {
            let bucket = bucket.as_object()?;
            let (start, end) = bucket.period("starting_at", "ending_at", Object::instant)?;
            for result in bucket.array("results")? {
                record += 1;
                let r = result.as_object()?;
                lines.push(read_result(&r, record, start, end)?);
            }
        }
    }
    name_default_workspace(&mut lines);
    Ok(lines)
}

fn read_result(
    r: &Object<'_>,
    record: u64,
    start: jiff::Timestamp,
    end: jiff::Timestamp,
) -> Result<BillLine, BillError> {
    if r.node("uncached_input_tokens").is_some() {
        return Err(r
            .required("uncached_input_tokens", "")?
            .invalid("this is a usage report result; ingest it with --type anthropic-usage"));
    }
    let amount_node = r.required(
        "amount",
        "expected the amount in cents as a decimal string, such as \"45.69\"",
    )?;
    let mut cost = amount_node.as_decimal()?;
    // Cents to dollars: move the point two places (exact; refuses more than 28 decimals).
    cost.set_scale(cost.scale() + 2)
        .map_err(|_| amount_node.invalid("too many decimal places to convert cents to dollars"))?;
    let currency_node = r.required("currency", "expected a currency code such as \"USD\"")?;
    let currency = Currency::parse(&currency_node.as_string()?).map_err(|_| {
        currency_node.invalid("expected a three-letter ISO 4217 currency code such as \"USD\"")
    })?;

    let mut line = BillLine::new(PROVIDER, LineKind::Usage, start, end, currency, record);
    line.cost = Some(cost);
    line.model = r.string("model")?;
    line.workspace = r.string("workspace_id")?;
    line.service_tier = r.string("service_tier")?;
    line.sku = r.string("description")?;
    for key in DIMENSIONS {
        if let Some(v) = r.string(key)? {
            line.attributes.insert((*key).to_string(), v);
        }
    }
    let cost_type = r.string("cost_type")?;
    let token_type = r.string("token_type")?;
    match (cost_type.as_deref(), token_type) {
        (Some("tokens") | None, Some(tt)) => {
            line.token_class = token_class(&tt);
            if line.token_class.is_none() {
                line.attributes.insert("token_type".into(), tt);
            }
        }
        (Some(other), _) if other != "tokens" => line.unit = Some(other.to_string()),
        _ => {}
    }
    if let Some(ct) = cost_type {
        line.attributes.insert("cost_type".into(), ct);
    }
    Ok(line)
}

fn token_class(token_type: &str) -> Option<TokenClass> {
    Some(match token_type {
        "uncached_input_tokens" | "input_tokens" => TokenClass::Input,
        "cache_read_input_tokens" => TokenClass::CacheRead,
        "cache_creation.ephemeral_5m_input_tokens" | "cache_creation_input_tokens" => {
            TokenClass::CacheWrite
        }
        "cache_creation.ephemeral_1h_input_tokens" => TokenClass::CacheWrite1h,
        "output_tokens" => TokenClass::Output,
        _ => return None,
    })
}
