//! `openai-costs`: the OpenAI Costs API response (`GET /v1/organization/costs`), one page
//! object or an array of pages.
//!
//! Each `data[].results[]` entry is one line. `amount.value` is in major units (dollars) and is
//! usually a JSON number: it is read from its exact text (a string is accepted too).
//! `amount.currency` is a lower-case ISO code.
//!
//! `line_item` is an unspecified label. When it has the shape `"<model>, <kind>[ (<tier>)]"`
//! with a known kind (`input`, `cached input`, `cache write`, `output`) and tier (`batch`,
//! `flex`, `priority`, `scale`, `default`), e.g. `"gpt-4o-mini-2024-07-18, input (batch)"`, the
//! line gets that model, token class and tier, and `quantity` becomes its token count when
//! `quantity_unit` is a token unit (`tokens`, `1000_tokens`). Any other label keeps
//! `model = None`, `token_class = None` and the raw `quantity` / `quantity_unit`. The raw label
//! is always in `sku`. Every line is a `Usage` charge: the API has no credit or tax lines.

use super::common::{token_scale, whole_tokens};
use super::json_source::{self, Object};
use super::{BillError, BillLine, LineKind, TokenClass};
use tollgate_core::Currency;

const PROVIDER: &str = "openai";
const RESULT_OBJECT: &str = "organization.costs.result";

pub(super) fn parse(file: &str, text: &str) -> Result<Vec<BillLine>, BillError> {
    let root = json_source::root(file, text)?;
    let mut lines = Vec::new();
    let mut record = 0u64;
    for page in json_source::pages(&root)? {
        let data = page.required("data", "expected the response's data array of buckets")?;
        for bucket in data.as_array()? {
            let bucket = bucket.as_object()?;
            let (start, end) = bucket.period("start_time", "end_time", Object::unix_seconds)?;
            for result in bucket.array("results")? {
                record += 1;
                let r = result.as_object()?;
                lines.push(read_result(&r, record, start, end)?);
            }
        }
    }
    Ok(lines)
}

fn read_result(
    r: &Object<'_>,
    record: u64,
    start: jiff::Timestamp,
    end: jiff::Timestamp,
) -> Result<BillLine, BillError> {
    if let Some(object) = r.string("object")?
        && object != RESULT_OBJECT
    {
        let hint = if object.starts_with("organization.usage.") {
            "this is a Usage API result; ingest it with --type openai-usage".to_string()
        } else {
            format!("expected {RESULT_OBJECT:?} (the costs endpoint)")
        };
        return Err(r.required("object", "")?.invalid(&hint));
    }
    let amount = r
        .required(
            "amount",
            "expected an amount object {\"value\": ..., \"currency\": \"usd\"}",
        )?
        .as_object()?;
    let value = amount
        .required("value", "expected the amount in dollars, such as 2.304")?
        .as_decimal()?;
    let currency_node = amount.required("currency", "expected a currency code such as \"usd\"")?;
    let currency = Currency::parse(&currency_node.as_string()?).map_err(|_| {
        currency_node.invalid("expected a three-letter ISO 4217 currency code such as \"usd\"")
    })?;

    let mut line = BillLine::new(PROVIDER, LineKind::Usage, start, end, currency, record);
    line.cost = Some(value);
    line.project = r.string("project_id")?;
    line.api_key = r.string("api_key_id")?;
    let line_item = r.string("line_item")?;
    let quantity = r.decimal("quantity")?;
    let unit = r.string("quantity_unit")?;

    let parsed = line_item.as_deref().and_then(split_line_item);
    line.sku = line_item;
    match parsed {
        Some((model, class, tier)) => {
            line.model = model;
            line.token_class = Some(class);
            line.service_tier = tier;
            match (quantity, unit.as_deref().and_then(token_scale)) {
                (Some(q), Some(scale)) => {
                    let n = q.checked_mul(scale).ok_or(BillError::Overflow)?;
                    let node = r.required("quantity", "")?;
                    line.tokens = Some(whole_tokens(n).map_err(|why| node.invalid(why))?);
                }
                _ => {
                    line.quantity = quantity;
                    line.unit = unit;
                }
            }
        }
        None => {
            line.quantity = quantity;
            line.unit = unit;
        }
    }
    Ok(line)
}

/// `"gpt-4o-2024-08-06, cached input"` -> (model, class, tier); `None` for other labels.
fn split_line_item(item: &str) -> Option<(Option<String>, TokenClass, Option<String>)> {
    let (model, rest) = item.rsplit_once(',')?;
    let mut kind = rest.trim().to_ascii_lowercase();
    let mut tier = None;
    if let Some(open) = kind.rfind(" (")
        && kind.ends_with(')')
    {
        let t = kind[open + 2..kind.len() - 1].to_string();
        if !matches!(
            t.as_str(),
            "batch" | "flex" | "priority" | "scale" | "default"
        ) {
            return None;
        }
        tier = Some(t);
        kind.truncate(open);
    }
    let class = match kind.as_str() {
        "input" | "uncached input" => TokenClass::Input,
        "cached input" | "cache read" | "cached_input" => TokenClass::CacheRead,
        "cache write" | "cached input write" | "input cache write" => TokenClass::CacheWrite,
        "output" => TokenClass::Output,
        _ => return None,
    };
    let model = model.trim();
    let model = (!model.is_empty()).then(|| model.to_string());
    Some((model, class, tier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_items() {
        let s = |m: &str, c, t: Option<&str>| (Some(m.to_string()), c, t.map(str::to_string));
        assert_eq!(
            split_line_item("gpt-4o-2024-08-06, input"),
            Some(s("gpt-4o-2024-08-06", TokenClass::Input, None))
        );
        assert_eq!(
            split_line_item("gpt-4o-2024-08-06, cached input"),
            Some(s("gpt-4o-2024-08-06", TokenClass::CacheRead, None))
        );
        assert_eq!(
            split_line_item("gpt-4o-mini-2024-07-18, output (batch)"),
            Some(s(
                "gpt-4o-mini-2024-07-18",
                TokenClass::Output,
                Some("batch")
            ))
        );
        assert_eq!(split_line_item("gpt-4o"), None);
        assert_eq!(split_line_item("web search tool calls"), None);
        assert_eq!(split_line_item("gpt-4o, input (audio)"), None);
        assert_eq!(split_line_item("gpt-4o, image generation"), None);
    }
}
