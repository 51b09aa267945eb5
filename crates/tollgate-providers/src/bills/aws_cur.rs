//! `aws-cur`: AWS CUR 2.0 (Data Exports) CSV, plain or gzip: the Amazon Bedrock lines.
//!
//! - **Rows kept:** Bedrock rows only (`line_item_product_code` or `product_servicecode`
//!   containing `Bedrock`, or a `product` whose `product_name` does, which catches Marketplace
//!   models such as `Claude 3 Haiku (Amazon Bedrock Edition)`). Rows of other AWS services
//!   (EC2, S3, ...) in a whole-account export are skipped unread: they are not LLM spend.
//! - **Kind:** `line_item_line_item_type`: `Usage`, `DiscountedUsage` and
//!   `SavingsPlanCoveredUsage` are usage; `Credit`, `Tax`, `Refund` are themselves; anything
//!   else (fees, discounts, negations) is `Other`. A type other than `Usage` is kept in
//!   `attributes["line_item_type"]`; a billing entity other than `AWS` (Marketplace) in
//!   `attributes["billing_entity"]`, with the product code.
//! - **Money:** `line_item_unblended_cost`, the authoritative cost, in
//!   `line_item_currency_code`. On usage rows `usage_amount x unblended_rate` must equal it
//!   (within 1e-4 or one part in a million): a row that breaks that identity is refused.
//! - **Tokens:** the token class comes from `line_item_usage_type`
//!   (`{REGION}-{Model}-{input-tokens|output-tokens|cache-read-input-token-count|
//!   cache-write-input-token-count}[-suffix]`, or the Marketplace scheme
//!   `{REGION}-MP:{REGION}_{InputTokenCount|OutputTokenCount|CacheReadInputTokenCount|
//!   CacheWriteInputTokenCount|CacheWrite1hInputTokenCount}[_suffix]-Units`), and the count is
//!   `line_item_usage_amount x scale(pricing_unit)`: `1K tokens` is x1,000, and Marketplace
//!   `Units` are millions of tokens (x1,000,000), as the provider-formats notes assume. The
//!   count must come out whole. A token usage type with an unknown unit is refused.
//! - **Suffixes:** `-flex`, `-priority`, `-batch`, `-standard` give the service tier;
//!   `-cross-region-global` and `-long-context` are kept in `attributes`.
//! - **Other columns:** model from `product['model']`, else the usage type's model segment,
//!   else `product['product_name']`; region `product_region_code` (an AWS region code, never the
//!   usage-type prefix); account `line_item_usage_account_id`; principal
//!   `line_item_iam_principal`; resource `line_item_resource_id` (inference profile ARN); tags
//!   from the `resource_tags` map (keys as CUR writes them, `user_team`), flattened
//!   `resource_tags_*` columns and the newer `tags` map. Map columns are JSON text.
//! - Legacy CUR (`lineItem/UsageType` headers) is refused with a hint.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use rust_decimal::Decimal;

use super::common::{string_map_from_json, token_scale, whole_tokens};
use super::csv_source::{self, Col, Header, Row};
use super::{BillError, BillLine, LineKind, TokenClass};
use tollgate_core::Currency;

const PROVIDER: &str = "aws.bedrock";

struct Cols {
    line_item_type: Col,
    start: Col,
    end: Col,
    cost: Col,
    currency: Col,
    amount: Option<Col>,
    rate: Option<Col>,
    usage_type: Option<Col>,
    product_code: Option<Col>,
    servicecode: Option<Col>,
    product: Option<Col>,
    product_name: Option<Col>,
    region: Option<Col>,
    pricing_unit: Option<Col>,
    resource: Option<Col>,
    principal: Option<Col>,
    account: Option<Col>,
    billing_entity: Option<Col>,
    resource_tags: Option<Col>,
    flat_tags: Vec<(String, Col)>,
    tags: Option<Col>,
}

impl Cols {
    fn find(h: &Header) -> Result<Cols, BillError> {
        if h.col("line_item_line_item_type").is_none() && h.col("lineItem/LineItemType").is_some() {
            return Err(BillError::MissingColumn {
                file: h.file().to_string(),
                column: "line_item_line_item_type".into(),
                hint: "this looks like a legacy CUR (lineItem/... headers); export CUR 2.0 \
                       from AWS Data Exports instead"
                    .into(),
            });
        }
        const HINT: &str = "expected a CUR 2.0 export (AWS Data Exports, snake_case columns)";
        Ok(Cols {
            line_item_type: h.require("line_item_line_item_type", HINT)?,
            start: h.require("line_item_usage_start_date", HINT)?,
            end: h.require("line_item_usage_end_date", HINT)?,
            cost: h.require("line_item_unblended_cost", HINT)?,
            currency: h.require("line_item_currency_code", HINT)?,
            amount: h.col("line_item_usage_amount"),
            rate: h.col("line_item_unblended_rate"),
            usage_type: h.col("line_item_usage_type"),
            product_code: h.col("line_item_product_code"),
            servicecode: h.col("product_servicecode"),
            product: h.col("product"),
            product_name: h.col("product_product_name"),
            region: h.col("product_region_code"),
            pricing_unit: h.col("pricing_unit"),
            resource: h.col("line_item_resource_id"),
            principal: h.col("line_item_iam_principal"),
            account: h.col("line_item_usage_account_id"),
            billing_entity: h.col("bill_billing_entity"),
            resource_tags: h.col("resource_tags"),
            flat_tags: h.with_prefix("resource_tags_"),
            tags: h.col("tags"),
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
        let mut memo = Memo::default();
        while let Some(row) = records.next(header)? {
            if let Some(line) = read_row(&row, &cols, &mut memo)? {
                emit(line);
            }
        }
        Ok(())
    })
}

/// Most of a CUR file repeats: the same usage types, product maps and tag maps on thousands of
/// rows. Parsed values are remembered by their text (a bounded number of them), which keeps a
/// million-row file from re-parsing the same JSON a million times.
#[derive(Default)]
struct Memo {
    usage_types: HashMap<String, Rc<UsageType>>,
    products: HashMap<String, Rc<BTreeMap<String, String>>>,
    maps: HashMap<String, BTreeMap<String, String>>,
    /// The last pricing unit read and its token scale.
    unit: Option<(String, Option<Decimal>)>,
}

/// Distinct texts remembered per kind; past that, values are parsed every time.
const MEMO_LIMIT: usize = 4096;

impl Memo {
    fn usage_type(&mut self, text: &str) -> Rc<UsageType> {
        if let Some(u) = self.usage_types.get(text) {
            return Rc::clone(u);
        }
        let u = Rc::new(UsageType::parse(text));
        if self.usage_types.len() < MEMO_LIMIT {
            self.usage_types.insert(text.to_string(), Rc::clone(&u));
        }
        u
    }

    /// [`token_scale`] of a pricing unit; a CUR repeats the same unit row after row.
    fn token_scale(&mut self, unit: &str) -> Option<Decimal> {
        match &self.unit {
            Some((u, scale)) if u == unit => *scale,
            _ => {
                let scale = token_scale(unit);
                self.unit = Some((unit.to_string(), scale));
                scale
            }
        }
    }

    /// The `product` map cell, shared rather than copied: only a few of its keys are read.
    fn product(
        &mut self,
        row: &Row<'_>,
        col: Option<Col>,
    ) -> Result<Rc<BTreeMap<String, String>>, BillError> {
        let Some(text) = row.str(col)? else {
            return Ok(Rc::default());
        };
        if let Some(m) = self.products.get(text) {
            return Ok(Rc::clone(m));
        }
        let m = Rc::new(row.json_map(col, string_map_from_json)?);
        if self.products.len() < MEMO_LIMIT {
            self.products.insert(text.to_string(), Rc::clone(&m));
        }
        Ok(m)
    }

    /// A JSON map cell (`resource_tags`, `tags`), parsed once per distinct text.
    fn map(
        &mut self,
        row: &Row<'_>,
        col: Option<Col>,
    ) -> Result<BTreeMap<String, String>, BillError> {
        let Some(text) = row.str(col)? else {
            return Ok(BTreeMap::new());
        };
        if let Some(m) = self.maps.get(text) {
            return Ok(m.clone());
        }
        let m = row.json_map(col, string_map_from_json)?;
        if self.maps.len() < MEMO_LIMIT {
            self.maps.insert(text.to_string(), m.clone());
        }
        Ok(m)
    }
}

fn contains_bedrock(s: &str) -> bool {
    const NEEDLE: &[u8] = b"bedrock";
    s.as_bytes()
        .windows(NEEDLE.len())
        .any(|w| w.eq_ignore_ascii_case(NEEDLE))
}

fn read_row(row: &Row<'_>, c: &Cols, memo: &mut Memo) -> Result<Option<BillLine>, BillError> {
    let product_code = row.str(c.product_code)?;
    let servicecode = row.str(c.servicecode)?;
    let coded_bedrock =
        product_code.is_some_and(contains_bedrock) || servicecode.is_some_and(contains_bedrock);
    let product = match memo.product(row, c.product) {
        Ok(p) => p,
        // A broken product map on a row that does not look like Bedrock at all is another
        // service's problem: skip the row, as for any other service.
        Err(_) if !coded_bedrock && !row.str(c.product)?.is_some_and(contains_bedrock) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let product_name = match row.str(c.product_name)? {
        Some(n) => Some(n.to_string()),
        None => product.get("product_name").cloned(),
    };
    if !coded_bedrock && !product_name.as_deref().is_some_and(contains_bedrock) {
        return Ok(None);
    }

    let raw_type = row.required(
        c.line_item_type,
        "expected the line item type (Usage, Credit, Tax, Refund, ...)",
    )?;
    let kind = match raw_type {
        "Usage" | "DiscountedUsage" | "SavingsPlanCoveredUsage" => LineKind::Usage,
        "Credit" => LineKind::Credit,
        "Tax" => LineKind::Tax,
        "Refund" => LineKind::Refund,
        _ => LineKind::Other,
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
    let cost = row.required_decimal(
        c.cost,
        "expected the unblended cost in dollars, such as 6.08256",
    )?;
    let currency_text = row.required(c.currency, "expected a currency code such as USD")?;
    let currency = Currency::parse(currency_text).map_err(|_| {
        row.invalid(
            c.currency,
            currency_text,
            "expected a three-letter ISO 4217 currency code such as USD",
        )
    })?;

    let mut line = BillLine::new(PROVIDER, kind, start, end, currency, row.line());
    line.cost = Some(cost);
    line.account = row.string(c.account)?;
    line.principal = row.string(c.principal)?;
    line.resource = row.string(c.resource)?;
    line.region = match row.string(c.region)? {
        Some(r) => Some(r),
        None => product.get("region").cloned(),
    };
    // Only what departs from the plain case, to keep a million lines light.
    if raw_type != "Usage" {
        line.attributes
            .insert("line_item_type".into(), raw_type.to_string());
    }
    if let Some(e) = row.str(c.billing_entity)?
        && e != "AWS"
    {
        line.attributes
            .insert("billing_entity".into(), e.to_string());
        if let Some(p) = product_code {
            line.attributes.insert("product_code".into(), p.to_string());
        }
    }
    line.tags = tags(row, c, memo)?;

    let amount = row.decimal(c.amount)?;
    let pricing_unit = row.str(c.pricing_unit)?;
    let usage_type = row.string(c.usage_type)?;
    let parsed = usage_type
        .as_deref()
        .map(|u| memo.usage_type(u))
        .unwrap_or_default();
    line.model = product
        .get("model")
        .cloned()
        .or_else(|| parsed.model.clone())
        .or(product_name.filter(|n| n != "Amazon Bedrock"));
    line.service_tier = parsed.tier.clone();
    if let Some(x) = &parsed.cross_region {
        line.attributes.insert("cross_region".into(), x.clone());
    }
    if parsed.long_context {
        line.attributes.insert("long_context".into(), "true".into());
    }
    line.sku = usage_type;

    match (kind, parsed.class) {
        (LineKind::Usage, Some(class)) => {
            let scale = pricing_unit.and_then(|u| memo.token_scale(u)).or_else(|| {
                (parsed.marketplace
                    && pricing_unit.is_some_and(|u| u.eq_ignore_ascii_case("units")))
                .then(|| Decimal::from(1_000_000u32))
            });
            let Some(scale) = scale else {
                let unit_col = c.pricing_unit.unwrap_or(c.line_item_type);
                return Err(row.invalid(
                    unit_col,
                    pricing_unit.unwrap_or(""),
                    "a token usage type needs a token pricing unit (\"1K tokens\", \"1M tokens\", \
                     or \"Units\" on a Marketplace usage type); check the export",
                ));
            };
            let amount_col = c.amount.unwrap_or(c.line_item_type);
            let Some(amount) = amount else {
                return Err(
                    row.missing(amount_col, "a token usage row needs line_item_usage_amount")
                );
            };
            let n = amount.checked_mul(scale).ok_or(BillError::Overflow)?;
            let tokens =
                whole_tokens(n).map_err(|why| row.invalid(amount_col, &amount.to_string(), why))?;
            line.token_class = Some(class);
            line.tokens = Some(tokens);
        }
        _ => {
            line.quantity = amount;
            line.unit = amount.and(pricing_unit).map(str::to_string);
        }
    }

    if kind == LineKind::Usage
        && let (Some(amount), Some(rate)) = (amount, row.decimal(c.rate)?)
    {
        check_cost_identity(row, c, amount, rate, cost)?;
    }
    Ok(Some(line))
}

/// CUR guarantees `usage_amount x unblended_rate = unblended_cost` up to rounding.
fn check_cost_identity(
    row: &Row<'_>,
    c: &Cols,
    amount: Decimal,
    rate: Decimal,
    cost: Decimal,
) -> Result<(), BillError> {
    let Some(expected) = amount.checked_mul(rate) else {
        return Err(BillError::Overflow);
    };
    let tolerance = (cost.abs() * Decimal::new(1, 6)).max(Decimal::new(1, 4));
    if (expected - cost).abs() > tolerance {
        return Err(row.invalid(
            c.cost,
            &cost.to_string(),
            &format!(
                "line_item_usage_amount x line_item_unblended_rate = {amount} x {rate} = {}; \
                 the row contradicts itself, check the export",
                expected.normalize()
            ),
        ));
    }
    Ok(())
}

fn tags(row: &Row<'_>, c: &Cols, memo: &mut Memo) -> Result<BTreeMap<String, String>, BillError> {
    let mut tags = memo.map(row, c.resource_tags)?;
    for (key, col) in &c.flat_tags {
        if let Some(v) = row.str(Some(*col))? {
            tags.entry(key.clone()).or_insert_with(|| v.to_string());
        }
    }
    for (k, v) in memo.map(row, c.tags)? {
        tags.entry(k).or_insert(v);
    }
    Ok(tags)
}

/// What a Bedrock usage type says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct UsageType {
    model: Option<String>,
    class: Option<TokenClass>,
    marketplace: bool,
    tier: Option<String>,
    cross_region: Option<String>,
    long_context: bool,
}

/// Native token markers, longest first where one contains another.
const NATIVE_MARKERS: &[(&str, TokenClass)] = &[
    ("-cache-read-input-token-count", TokenClass::CacheRead),
    (
        "-cache-write-1h-input-token-count",
        TokenClass::CacheWrite1h,
    ),
    ("-cache-write-input-token-count", TokenClass::CacheWrite),
    ("-mantle-input-tokens", TokenClass::Input),
    ("-mantle-output-tokens", TokenClass::Output),
    ("-input-tokens", TokenClass::Input),
    ("-output-tokens", TokenClass::Output),
];

impl UsageType {
    fn parse(ut: &str) -> UsageType {
        let lower = ut.to_ascii_lowercase();
        if let Some(at) = lower.find("mp:") {
            return UsageType::parse_marketplace(&lower[at + 3..]);
        }
        let mut out = UsageType::default();
        for (marker, class) in NATIVE_MARKERS {
            if let Some(at) = lower.find(marker) {
                out.class = Some(*class);
                // `USE1-Claude4.6Sonnet-...`: the model sits between the region prefix and
                // the marker, in the original spelling.
                let head = &ut[..at];
                let model = match head.split_once('-') {
                    Some((region, rest)) if is_region_prefix(region) => rest,
                    _ => head,
                };
                out.model = (!model.is_empty()).then(|| model.to_string());
                out.read_suffix(lower[at + marker.len()..].split('-'));
                break;
            }
        }
        out
    }

    /// `use1_inputtokencount_batch-units`, `use1_output_tokens_global_standard-units`.
    fn parse_marketplace(rest: &str) -> UsageType {
        let mut out = UsageType {
            marketplace: true,
            ..UsageType::default()
        };
        let rest = rest.strip_suffix("-units").unwrap_or(rest);
        let body = match rest.split_once('_') {
            Some((region, body)) if is_region_prefix(region) => body,
            _ => rest,
        };
        let compact: String = body.chars().filter(|c| *c != '_').collect();
        if !compact.contains("token") {
            return out;
        }
        out.class = [
            ("cacheread", TokenClass::CacheRead),
            ("cachewrite1h", TokenClass::CacheWrite1h),
            ("cachewrite", TokenClass::CacheWrite),
            ("input", TokenClass::Input),
            ("output", TokenClass::Output),
        ]
        .into_iter()
        .find(|(p, _)| compact.starts_with(p))
        .map(|(_, c)| c);
        out.read_suffix(body.split('_'));
        out
    }

    fn read_suffix<'s>(&mut self, parts: impl Iterator<Item = &'s str>) {
        let parts: Vec<&str> = parts.filter(|p| !p.is_empty()).collect();
        let mut i = 0;
        while i < parts.len() {
            match parts[i] {
                "flex" | "priority" | "batch" | "standard" => {
                    self.tier = Some(parts[i].to_string());
                }
                "global" => self.cross_region = Some("global".into()),
                "cross" if parts.get(i + 1) == Some(&"region") => {
                    if let Some(scope) = parts.get(i + 2) {
                        self.cross_region = Some((*scope).to_string());
                    }
                    i += 2;
                }
                "long" if parts.get(i + 1) == Some(&"context") => {
                    self.long_context = true;
                    i += 1;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// `USE1`, `EUC1`, `APS3`, `UGW1`: 2-5 upper-case letters and digits.
fn is_region_prefix(s: &str) -> bool {
    (2..=5).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b.is_ascii_lowercase())
        && s.bytes().any(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ut(s: &str) -> UsageType {
        UsageType::parse(s)
    }

    #[test]
    fn native_usage_types() {
        let u = ut("USE1-Claude4.6Sonnet-input-tokens");
        assert_eq!(u.class, Some(TokenClass::Input));
        assert_eq!(u.model.as_deref(), Some("Claude4.6Sonnet"));
        assert!(!u.marketplace);

        let u = ut("USE1-Claude4Sonnet-cache-read-input-token-count-cross-region-global");
        assert_eq!(u.class, Some(TokenClass::CacheRead));
        assert_eq!(u.model.as_deref(), Some("Claude4Sonnet"));
        assert_eq!(u.cross_region.as_deref(), Some("global"));

        let u = ut("USE1-Claude4Sonnet-input-tokens-long-context-cross-region-global");
        assert_eq!(u.class, Some(TokenClass::Input));
        assert!(u.long_context);
        assert_eq!(u.cross_region.as_deref(), Some("global"));

        let u = ut("USE1-Nova2.0Lite-input-tokens-flex");
        assert_eq!(u.class, Some(TokenClass::Input));
        assert_eq!(u.model.as_deref(), Some("Nova2.0Lite"));
        assert_eq!(u.tier.as_deref(), Some("flex"));

        let u = ut("USE1-openai.gpt-oss-120b-mantle-input-tokens-standard");
        assert_eq!(u.class, Some(TokenClass::Input));
        assert_eq!(u.model.as_deref(), Some("openai.gpt-oss-120b"));
        assert_eq!(u.tier.as_deref(), Some("standard"));

        let u = ut("USE1-NovaPro-cache-write-input-token-count");
        assert_eq!(u.class, Some(TokenClass::CacheWrite));
        assert_eq!(
            ut("USE1-NovaPro-output-tokens").class,
            Some(TokenClass::Output)
        );

        // Not tokens: provisioned throughput.
        let u = ut("USE1-Reserved_1Month_InputTPM-Claude");
        assert_eq!(u.class, None);
    }

    #[test]
    fn marketplace_usage_types() {
        let u = ut("USE1-MP:USE1_InputTokenCount-Units");
        assert!(u.marketplace);
        assert_eq!(u.class, Some(TokenClass::Input));
        assert_eq!(u.model, None);
        assert_eq!(
            ut("USE1-MP:USE1_CacheWrite1hInputTokenCount_Global-Units").class,
            Some(TokenClass::CacheWrite1h)
        );
        assert_eq!(
            ut("USE1-MP:USE1_CacheReadInputTokenCount-Units").class,
            Some(TokenClass::CacheRead)
        );
        assert_eq!(
            ut("USE1-MP:USE1_CacheWriteInputTokenCount-Units").class,
            Some(TokenClass::CacheWrite)
        );
        let u = ut("USE1-MP:USE1_InputTokenCount_Batch-Units");
        assert_eq!(u.class, Some(TokenClass::Input));
        assert_eq!(u.tier.as_deref(), Some("batch"));
        let u = ut("USE1-MP:USE1_output_tokens_global_standard-Units");
        assert_eq!(u.class, Some(TokenClass::Output));
        assert_eq!(u.cross_region.as_deref(), Some("global"));
        assert_eq!(u.tier.as_deref(), Some("standard"));
    }
}
