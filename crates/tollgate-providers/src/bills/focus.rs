//! `focus`: a FinOps FOCUS 1.2 / 1.3 cost and usage CSV (1.4 files, without `ProviderName`,
//! read too). Every row is kept; `x_` extension columns and any other unknown column are
//! tolerated.
//!
//! - **Kind:** `ChargeCategory` (a closed list): `Usage` -> usage, `Credit` -> credit, `Tax` ->
//!   tax, `Purchase` and `Adjustment` -> `Other`. Any other value is refused.
//! - **Money:** `BilledCost` in `BillingCurrency`: the amount that appears on the invoice.
//!   `EffectiveCost` (amortised) is kept in `attributes["effective_cost"]` but not summed.
//! - **Provider:** who bills you, from `ProviderName`, else `HostProviderName`, else
//!   `InvoiceIssuerName` (never `ServiceProviderName`/`PublisherName`: Claude on Bedrock is billed
//!   by AWS), mapped to OTel names with `ServiceName`: OpenAI -> `openai`, Anthropic ->
//!   `anthropic`, AWS + Bedrock -> `aws.bedrock`, Google + Vertex AI -> `gcp.vertex_ai`,
//!   Google + Gemini -> `gcp.gemini`, Microsoft + OpenAI -> `azure.ai.openai`; otherwise the
//!   name in lower case with `_` for spaces.
//! - **Tokens:** when `ConsumedUnit` is a token unit (`Tokens`, `1000 Tokens`, ...), the count is
//!   `ConsumedQuantity x scale`, and the class comes from `x_TokenType` (`input`,
//!   `cached_input`/`cache_read`, `cache_write`/`cache_write_5m`, `cache_write_1h`, `output`,
//!   or Anthropic's `token_type` names), else from `SkuMeter` (`Input Tokens`, ...). A token row
//!   whose class cannot be told keeps `quantity`/`unit` and no class. Other units stay
//!   `quantity`/`unit`.
//! - **Other columns:** model `x_Model`, else `SkuPriceDetails["x_Model"]`; `SubAccountId` is
//!   the project or workspace when `SubAccountType` says so (account = `BillingAccountId`),
//!   otherwise the account; region `RegionId`; resource `ResourceId`; sku `SkuId`; tags from
//!   the `Tags` JSON object; `ChargeClass` (`Correction`) in `attributes`.

use super::common::{string_map_from_json, token_scale, whole_tokens};
use super::csv_source::{self, Col, Header, Row};
use super::{BillError, BillLine, LineKind, TokenClass};
use tollgate_core::Currency;

struct Cols {
    category: Col,
    billed_cost: Col,
    currency: Col,
    start: Col,
    end: Col,
    effective_cost: Option<Col>,
    charge_class: Option<Col>,
    provider: Option<Col>,
    host_provider: Option<Col>,
    invoice_issuer: Option<Col>,
    service: Option<Col>,
    quantity: Option<Col>,
    unit: Option<Col>,
    sku_id: Option<Col>,
    sku_meter: Option<Col>,
    sku_price_details: Option<Col>,
    tags: Option<Col>,
    x_model: Option<Col>,
    x_token_type: Option<Col>,
    billing_account: Option<Col>,
    sub_account: Option<Col>,
    sub_account_type: Option<Col>,
    region: Option<Col>,
    resource: Option<Col>,
}

impl Cols {
    fn find(h: &Header) -> Result<Cols, BillError> {
        const HINT: &str = "expected a FOCUS cost and usage export (FOCUS 1.2 or 1.3 columns)";
        Ok(Cols {
            category: h.require("ChargeCategory", HINT)?,
            billed_cost: h.require("BilledCost", HINT)?,
            currency: h.require("BillingCurrency", HINT)?,
            start: h.require("ChargePeriodStart", HINT)?,
            end: h.require("ChargePeriodEnd", HINT)?,
            effective_cost: h.col("EffectiveCost"),
            charge_class: h.col("ChargeClass"),
            provider: h.col("ProviderName"),
            host_provider: h.col("HostProviderName"),
            invoice_issuer: h.col("InvoiceIssuerName"),
            service: h.col("ServiceName"),
            quantity: h.col("ConsumedQuantity"),
            unit: h.col("ConsumedUnit"),
            sku_id: h.col("SkuId"),
            sku_meter: h.col("SkuMeter"),
            sku_price_details: h.col("SkuPriceDetails"),
            tags: h.col("Tags"),
            x_model: h.col("x_Model"),
            x_token_type: h.col("x_TokenType"),
            billing_account: h.col("BillingAccountId"),
            sub_account: h.col("SubAccountId"),
            sub_account_type: h.col("SubAccountType"),
            region: h.col("RegionId"),
            resource: h.col("ResourceId"),
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
            emit(read_row(&row, &cols)?);
        }
        Ok(())
    })
}

fn read_row(row: &Row<'_>, c: &Cols) -> Result<BillLine, BillError> {
    const CATEGORIES: &str = "expected one of Usage, Purchase, Tax, Credit, Adjustment";
    let category = row.required(c.category, CATEGORIES)?;
    let kind = match category {
        "Usage" => LineKind::Usage,
        "Credit" => LineKind::Credit,
        "Tax" => LineKind::Tax,
        "Purchase" | "Adjustment" => LineKind::Other,
        other => return Err(row.invalid(c.category, other, CATEGORIES)),
    };
    let start = row.required_instant(c.start)?;
    let end = row.required_instant(c.end)?;
    if end < start {
        return Err(row.invalid(
            c.end,
            &end.to_string(),
            "the charge period ends before it starts; check the export",
        ));
    }
    let cost = row.required_decimal(c.billed_cost, "expected the billed cost, such as 2.304")?;
    let currency_text = row.required(c.currency, "expected a currency code such as USD")?;
    let currency = Currency::parse(currency_text).map_err(|_| {
        row.invalid(
            c.currency,
            currency_text,
            "expected a three-letter ISO 4217 currency code such as USD",
        )
    })?;

    let provider_name = match row.str(c.provider)? {
        Some(p) => Some(p),
        None => match row.str(c.host_provider)? {
            Some(p) => Some(p),
            None => row.str(c.invoice_issuer)?,
        },
    };
    let service = row.str(c.service)?;
    let provider = otel_provider(provider_name.unwrap_or("unknown"), service.unwrap_or(""));

    let mut line = BillLine::new(provider, kind, start, end, currency, row.line());
    line.cost = Some(cost);
    if let Some(e) = row.decimal(c.effective_cost)? {
        line.attributes
            .insert("effective_cost".into(), e.to_string());
    }
    if let Some(cc) = row.str(c.charge_class)? {
        line.attributes
            .insert("charge_class".into(), cc.to_string());
    }
    line.attributes
        .insert("charge_category".into(), category.to_string());
    if let Some(s) = service {
        line.attributes.insert("service".into(), s.to_string());
    }
    line.region = row.string(c.region)?;
    line.resource = row.string(c.resource)?;
    line.sku = row.string(c.sku_id)?;
    line.tags = row.json_map(c.tags, string_map_from_json)?;

    let billing_account = row.string(c.billing_account)?;
    let sub_account = row.string(c.sub_account)?;
    match row
        .str(c.sub_account_type)?
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("project") => {
            line.project = sub_account;
            line.account = billing_account;
        }
        Some("workspace") => {
            line.workspace = sub_account;
            line.account = billing_account;
        }
        _ => line.account = sub_account.or(billing_account),
    }

    let price_details = row.json_map(c.sku_price_details, string_map_from_json)?;
    line.model = match row.string(c.x_model)? {
        Some(m) => Some(m),
        None => price_details.get("x_Model").cloned(),
    };

    let quantity = row.decimal(c.quantity)?;
    let unit = row.string(c.unit)?;
    let token_type = match row.str(c.x_token_type)? {
        Some(t) => Some(t.to_string()),
        None => price_details.get("x_TokenType").cloned(),
    };
    let meter = row.str(c.sku_meter)?;
    let class = token_type
        .as_deref()
        .and_then(class_from_token_type)
        .or_else(|| meter.and_then(class_from_meter));
    let scale = unit.as_deref().and_then(token_scale);
    match (kind, class, scale, quantity) {
        (LineKind::Usage, Some(class), Some(scale), Some(q)) => {
            let n = q.checked_mul(scale).ok_or(BillError::Overflow)?;
            let qcol = c.quantity.unwrap_or(c.billed_cost);
            line.token_class = Some(class);
            line.tokens =
                Some(whole_tokens(n).map_err(|why| row.invalid(qcol, &q.to_string(), why))?);
        }
        _ => {
            line.quantity = quantity;
            line.unit = quantity.and(unit);
        }
    }
    Ok(line)
}

/// OTel `gen_ai.provider.name` for a FOCUS provider and service.
fn otel_provider(provider: &str, service: &str) -> String {
    let p = provider.to_ascii_lowercase();
    let s = service.to_ascii_lowercase();
    let named = if p.contains("openai") {
        "openai"
    } else if p.contains("anthropic") {
        "anthropic"
    } else if p == "aws" || p.contains("amazon") {
        if s.contains("bedrock") {
            "aws.bedrock"
        } else {
            "aws"
        }
    } else if p.contains("google") || p == "gcp" {
        if s.contains("vertex") {
            "gcp.vertex_ai"
        } else if s.contains("gemini") || s.contains("generative language") {
            "gcp.gemini"
        } else {
            "gcp"
        }
    } else if p.contains("microsoft") || p.contains("azure") {
        if s.contains("openai") {
            "azure.ai.openai"
        } else {
            "azure"
        }
    } else {
        return p.split_whitespace().collect::<Vec<_>>().join("_");
    };
    named.to_string()
}

fn class_from_token_type(t: &str) -> Option<TokenClass> {
    Some(match t.to_ascii_lowercase().as_str() {
        "input" | "uncached_input" | "input_tokens" | "uncached_input_tokens" => TokenClass::Input,
        "cached_input" | "cache_read" | "cache_read_input_tokens" | "input_cached_tokens" => {
            TokenClass::CacheRead
        }
        "cache_write" | "cache_write_5m" | "cache_creation.ephemeral_5m_input_tokens" => {
            TokenClass::CacheWrite
        }
        "cache_write_1h" | "cache_creation.ephemeral_1h_input_tokens" => TokenClass::CacheWrite1h,
        "output" | "output_tokens" => TokenClass::Output,
        _ => return None,
    })
}

/// `Input Tokens`, `Cached_Input Tokens`, `Cache_Read Tokens`, `Cache_Write_5M Tokens`, ...
fn class_from_meter(meter: &str) -> Option<TokenClass> {
    let m = meter.to_ascii_lowercase().replace(['_', '-'], " ");
    let m = m.strip_suffix("tokens").unwrap_or(&m).trim().to_string();
    class_from_token_type(&m.replace(' ', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers() {
        assert_eq!(otel_provider("OpenAI", "OpenAI API"), "openai");
        assert_eq!(otel_provider("Anthropic", "Claude API"), "anthropic");
        assert_eq!(otel_provider("AWS", "Amazon Bedrock"), "aws.bedrock");
        assert_eq!(otel_provider("AWS", "Amazon EC2"), "aws");
        assert_eq!(otel_provider("Google Cloud", "Vertex AI"), "gcp.vertex_ai");
        assert_eq!(
            otel_provider("Microsoft", "Azure OpenAI Service"),
            "azure.ai.openai"
        );
        assert_eq!(otel_provider("Mistral AI", "La Plateforme"), "mistral_ai");
    }

    #[test]
    fn meters() {
        assert_eq!(class_from_meter("Input Tokens"), Some(TokenClass::Input));
        assert_eq!(
            class_from_meter("Cached_Input Tokens"),
            Some(TokenClass::CacheRead)
        );
        assert_eq!(
            class_from_meter("Cache_Read Tokens"),
            Some(TokenClass::CacheRead)
        );
        assert_eq!(
            class_from_meter("Cache_Write_5M Tokens"),
            Some(TokenClass::CacheWrite)
        );
        assert_eq!(class_from_meter("Output Tokens"), Some(TokenClass::Output));
        assert_eq!(class_from_meter("Requests"), None);
    }
}
