//! The FOCUS export (issue 4 item 6): the ledger's usage for one billing month as a FinOps
//! FOCUS 1.3 Cost and Usage dataset (`provider-formats.md` §5), so that LLM spend lands in the
//! same FinOps tool as the cloud bills.
//!
//! Granularity: one row per **charge period = one day in the reporting time zone** x provider
//! x model x price version x currency x attribution (team, service, feature, environment,
//! tenant, cost center) x attribution and pricing status x **billing class** (token classes
//! `input`, `cache_read`, `cache_write`, `cache_write_1h`, `output`, then unit classes such as
//! `web_search_requests`, and `other` for a cost imported without a breakdown).
//!
//! Invariants:
//! - every cost is exact (the sum of the events' stored per-class costs), never rounded;
//! - per group, the class rows add up to the group's stored cost, so the export's total equals
//!   the summary report's exact total for the same period and time zone;
//! - unpriced usage appears with its tokens and **empty** cost columns (`x_PricingStatus =
//!   unpriced`): FOCUS wants a number there, but 0 would claim the usage was free;
//! - quarantined usage appears like any other, marked by `x_AttributionStatus`;
//! - a unit price is given only when the rate version's published rate times the pricing
//!   quantity is exactly the cost (so `ListCost = ListUnitPrice x PricingQuantity` holds).

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_core::Period;
use tollgate_core::money::{fmt_decimal, from_scaled_e12};
use tollgate_ledger::{ClassTotals, Dim, Ledger, SummaryQuery};

use crate::{FinanceError, Result};

/// The 65 FOCUS 1.3 Cost and Usage columns, in the specification's (alphabetical) order.
pub const FOCUS_COLUMNS: [&str; 65] = [
    "AllocatedMethodDetails",
    "AllocatedMethodId",
    "AllocatedResourceId",
    "AllocatedResourceName",
    "AllocatedTags",
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractApplied",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "HostProviderName",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceProviderName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
];

/// Tollgate's custom columns (FOCUS requires the `x_` prefix), after the FOCUS columns.
pub const EXTRA_COLUMNS: [&str; 14] = [
    "x_Provider",
    "x_Model",
    "x_TokenClass",
    "x_Team",
    "x_Service",
    "x_Feature",
    "x_Environment",
    "x_Tenant",
    "x_CostCenter",
    "x_PriceVersion",
    "x_PricingStatus",
    "x_AttributionStatus",
    "x_RequestCount",
    "x_ReasoningTokens",
];

/// Every column of the export, in order.
pub fn columns() -> Vec<&'static str> {
    FOCUS_COLUMNS
        .iter()
        .chain(EXTRA_COLUMNS.iter())
        .copied()
        .collect()
}

/// The dimensions a row is grouped by (besides the day and the class), in key order.
const GROUP: [Dim; 12] = [
    Dim::Provider,
    Dim::Model,
    Dim::PriceVersion,
    Dim::Currency,
    Dim::Team,
    Dim::Service,
    Dim::Feature,
    Dim::Environment,
    Dim::Tenant,
    Dim::CostCenter,
    Dim::AttributionStatus,
    Dim::PricingStatus,
];

/// One row of the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FocusRow {
    /// The charge period: one civil day of the reporting time zone, as UTC instants.
    pub charge_start: Timestamp,
    pub charge_end: Timestamp,
    /// The group's values of [`GROUP`] (`""` = absent).
    pub provider: String,
    pub model: String,
    pub price_version: String,
    pub currency: String,
    pub team: String,
    pub service: String,
    pub feature: String,
    pub environment: String,
    pub tenant: String,
    pub cost_center: String,
    pub attribution_status: String,
    pub pricing_status: String,
    /// `input`, `cache_read`, `cache_write`, `cache_write_1h`, `output`, a unit name, `other`.
    pub class: String,
    /// Whether `class` is a token class.
    pub is_tokens: bool,
    /// Tokens (or the unit quantity); `None` when unknown (`other`).
    pub quantity: Option<Decimal>,
    /// The exact cost; `None` when unpriced.
    pub cost: Option<Decimal>,
    /// The published rate per [`FocusRow::pricing_unit`], when it explains the cost exactly.
    pub unit_price: Option<Decimal>,
    /// Requests of the group, on its first row only (so the column sums to the request count).
    pub requests: Option<u64>,
    /// Reasoning tokens (part of the output tokens), on the `output` row.
    pub reasoning_tokens: Option<u64>,
}

impl FocusRow {
    /// `PricingUnit`: per million tokens, or per unit for a unit class.
    pub fn pricing_unit(&self) -> Option<Cow<'static, str>> {
        if self.is_tokens {
            Some(Cow::Borrowed("1000000 Tokens"))
        } else if self.quantity.is_some() {
            Some(Cow::Owned(unit_name(&self.class)))
        } else {
            None
        }
    }

    /// `PricingQuantity`: tokens / 1,000,000 (exact), or the unit quantity.
    pub fn pricing_quantity(&self) -> Option<Decimal> {
        let q = self.quantity?;
        if self.is_tokens {
            let mut m = q;
            m.set_scale(q.scale() + 6).ok()?;
            Some(m.normalize())
        } else {
            Some(q)
        }
    }
}

/// The whole export.
#[derive(Debug, Clone)]
pub struct FocusExport {
    /// The billing period (a month in the reporting time zone).
    pub period: Period,
    pub rows: Vec<FocusRow>,
}

/// Options for [`build`].
#[derive(Debug, Clone)]
pub struct FocusOptions {
    /// The billing period: a month.
    pub period: Period,
}

/// Builds the export: one [`Ledger::class_costs`] query per day of the period.
pub fn build(ledger: &dyn Ledger, opts: &FocusOptions) -> Result<FocusExport> {
    if opts.period.kind() != tollgate_core::period::PeriodKind::Month {
        return Err(FinanceError::Invalid(format!(
            "--period {:?}: a FOCUS billing period is a month; pass YYYY-MM",
            opts.period.label()
        )));
    }
    let mut rows = Vec::new();
    let mut versions: BTreeMap<String, Option<serde_json::Value>> = BTreeMap::new();
    let mut groups: Vec<(Timestamp, Timestamp, ClassTotals)> = Vec::new();
    for day in opts.period.days() {
        let d = Period::parse(&day.to_string(), opts.period.tz_name())?;
        let q = SummaryQuery::new(d.start(), d.end(), GROUP.to_vec());
        for g in ledger.class_costs(&q)? {
            if !g.keys[2].is_empty() {
                versions.entry(g.keys[2].clone()).or_default();
            }
            groups.push((d.start(), d.end(), g));
        }
    }
    let ids: Vec<String> = versions.keys().cloned().collect();
    for pv in ledger.price_versions(&ids)? {
        let rate = serde_json::from_str(&pv.rate_json).ok();
        versions.insert(pv.version, rate);
    }
    for (start, end, g) in groups {
        let rate = versions.get(&g.keys[2]).and_then(Option::as_ref);
        group_rows(start, end, &g, rate, &mut rows)?;
    }
    Ok(FocusExport {
        period: opts.period.clone(),
        rows,
    })
}

/// A rate from the stored rate JSON (`"input_per_mtok": "2.5"`, `"per_unit": {...}`).
fn published_rate(
    rate: Option<&serde_json::Value>,
    class: &str,
    is_tokens: bool,
) -> Option<Decimal> {
    let v = if is_tokens {
        rate?.get(format!("{class}_per_mtok"))?
    } else {
        rate?.get("per_unit")?.get(class)?
    };
    Decimal::from_str_exact(v.as_str()?).ok()
}

fn group_rows(
    start: Timestamp,
    end: Timestamp,
    g: &ClassTotals,
    rate: Option<&serde_json::Value>,
    out: &mut Vec<FocusRow>,
) -> Result<()> {
    let k = |i: usize| g.keys[i].clone();
    let priced = g.keys[11] != "unpriced";
    let first = out.len();
    let make = |class: &str, is_tokens: bool, quantity: Option<Decimal>, cost: Option<Decimal>| {
        let mut row = FocusRow {
            charge_start: start,
            charge_end: end,
            provider: k(0),
            model: k(1),
            price_version: k(2),
            currency: k(3),
            team: k(4),
            service: k(5),
            feature: k(6),
            environment: k(7),
            tenant: k(8),
            cost_center: k(9),
            attribution_status: k(10),
            pricing_status: k(11),
            class: class.to_string(),
            is_tokens,
            quantity,
            cost,
            unit_price: None,
            requests: None,
            reasoning_tokens: (class == "output").then_some(g.totals.reasoning_tokens),
        };
        if let (Some(c), Some(q), Some(r)) = (
            row.cost,
            row.pricing_quantity(),
            published_rate(rate, class, is_tokens),
        ) && r.checked_mul(q) == Some(c)
        {
            row.unit_price = Some(r);
        }
        row
    };
    let tokens = g.token_counts();
    for (i, class) in ClassTotals::TOKEN_CLASSES.iter().enumerate() {
        let cost = from_scaled_e12(g.token_cost_e12[i])?;
        if tokens[i] == 0 && cost.is_zero() {
            continue;
        }
        out.push(make(
            class,
            true,
            Some(Decimal::from(tokens[i])),
            priced.then_some(cost.normalize()),
        ));
    }
    for (name, u) in &g.units {
        let cost = if priced {
            Some(u.cost.unwrap_or_default().normalize())
        } else {
            None
        };
        out.push(make(name, false, u.quantity.map(|q| q.normalize()), cost));
    }
    if out.len() == first {
        // Calls with no tokens and no cost (e.g. failed before any usage) still count.
        out.push(make(
            "input",
            true,
            Some(Decimal::ZERO),
            priced.then_some(Decimal::ZERO),
        ));
    }
    out[first].requests = Some(g.totals.requests);
    Ok(())
}

/// `Image`s, `Request`s, ...: the unit of a unit class, in FOCUS's `<plural units>` style.
fn unit_name(class: &str) -> String {
    match class {
        "images" => "Images".into(),
        "web_search_requests" | "requests" => "Requests".into(),
        "audio_seconds" | "seconds" => "Seconds".into(),
        "characters" => "Characters".into(),
        other => title(other),
    }
}

/// `cache_write_1h` -> `Cache Write 1h`.
fn title(s: &str) -> String {
    s.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_uppercase().collect::<String>() + c.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who sells, hosts, invoices and publishes a provider's models (FOCUS 1.3 entity columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entities {
    pub service_name: Cow<'static, str>,
    /// `ServiceProviderName`: the seller.
    pub service_provider: Cow<'static, str>,
    /// `HostProviderName`: the infrastructure host.
    pub host: Cow<'static, str>,
    /// `InvoiceIssuerName` (and the deprecated `ProviderName`): who invoices.
    pub invoice_issuer: Cow<'static, str>,
    /// `PublisherName`: who made the model.
    pub publisher: Cow<'static, str>,
}

/// The model's maker, from a model id such as `global.anthropic.claude-haiku-4-5-...`.
fn publisher_of(model: &str, default: &'static str) -> Cow<'static, str> {
    let m = model.to_ascii_lowercase();
    let m = ["global.", "us.", "eu.", "apac.", "jp.", "au.", "ca."]
        .iter()
        .find_map(|p| m.strip_prefix(p))
        .unwrap_or(&m)
        .to_string();
    let name = [
        ("anthropic", "Anthropic"),
        ("claude", "Anthropic"),
        ("amazon", "AWS"),
        ("meta", "Meta"),
        ("llama", "Meta"),
        ("mistral", "Mistral AI"),
        ("cohere", "Cohere"),
        ("ai21", "AI21 Labs"),
        ("deepseek", "DeepSeek"),
        ("openai", "OpenAI"),
        ("gpt", "OpenAI"),
        ("gemini", "Google"),
        ("gemma", "Google"),
        ("qwen", "Alibaba"),
    ]
    .iter()
    .find(|(p, _)| m.starts_with(p))
    .map_or(default, |(_, n)| n);
    Cow::Borrowed(name)
}

/// The entity columns for a provider id and model.
pub fn entities(provider: &str, model: &str) -> Entities {
    let same = |service: &'static str, name: &'static str| Entities {
        service_name: Cow::Borrowed(service),
        service_provider: Cow::Borrowed(name),
        host: Cow::Borrowed(name),
        invoice_issuer: Cow::Borrowed(name),
        publisher: Cow::Borrowed(name),
    };
    // A marketplace or cloud that hosts another maker's model: the maker sells it, the cloud
    // hosts and invoices it (provider-formats.md §5.2, the Claude-on-Bedrock judgment).
    let hosted = |service: &'static str, cloud: &'static str| {
        let publisher = publisher_of(model, cloud);
        Entities {
            service_name: Cow::Borrowed(service),
            service_provider: publisher.clone(),
            host: Cow::Borrowed(cloud),
            invoice_issuer: Cow::Borrowed(cloud),
            publisher,
        }
    };
    match provider {
        "openai" => same("OpenAI API", "OpenAI"),
        "anthropic" => same("Claude API", "Anthropic"),
        "gcp.gemini" => same("Gemini API", "Google"),
        "aws.bedrock" => hosted("Amazon Bedrock", "AWS"),
        "gcp.vertex_ai" => hosted("Vertex AI", "Google"),
        "azure.openai" | "azure.ai.openai" => Entities {
            service_name: Cow::Borrowed("Azure OpenAI"),
            service_provider: Cow::Borrowed("Microsoft"),
            host: Cow::Borrowed("Microsoft"),
            invoice_issuer: Cow::Borrowed("Microsoft"),
            publisher: Cow::Borrowed("OpenAI"),
        },
        "azure.ai.inference" => hosted("Azure AI Foundry", "Microsoft"),
        "self_hosted" => same("Self-hosted models", "Self-hosted"),
        other => {
            let n: Cow<'static, str> = Cow::Owned(other.to_string());
            Entities {
                service_name: n.clone(),
                service_provider: n.clone(),
                host: n.clone(),
                invoice_issuer: n.clone(),
                publisher: n,
            }
        }
    }
}

/// FOCUS date/time: UTC, `YYYY-MM-DDTHH:mm:ssZ`.
pub fn focus_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn json_object<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let m: serde_json::Map<String, serde_json::Value> = pairs
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::Value::Object(m).to_string()
}

impl FocusExport {
    /// The values of one row, in [`columns`] order.
    pub fn record<'a>(&'a self, r: &'a FocusRow) -> Vec<Cow<'a, str>> {
        let ent = entities(&r.provider, &r.model);
        let num = |d: Option<Decimal>| d.map_or(Cow::Borrowed(""), |d| fmt_decimal(d).into());
        let billing_start = focus_time(self.period.start());
        let billing_end = focus_time(self.period.end());
        let class_label = title(&r.class);
        let description = if r.class == "other" {
            format!(
                "{} usage (cost imported without a class breakdown)",
                r.model
            )
        } else if r.is_tokens {
            format!("{} {} tokens", r.model, r.class)
        } else {
            format!("{} {}", r.model, r.class)
        };
        columns()
            .into_iter()
            .map(|c| -> Cow<'a, str> {
                match c {
                    "BilledCost" | "EffectiveCost" | "ListCost" | "ContractedCost" => num(r.cost),
                    "BillingAccountId" => r.provider.clone().into(),
                    "BillingAccountType" => "Provider".into(),
                    "BillingCurrency" => r.currency.clone().into(),
                    "BillingPeriodStart" => billing_start.clone().into(),
                    "BillingPeriodEnd" => billing_end.clone().into(),
                    "ChargeCategory" => "Usage".into(),
                    "ChargeDescription" => description.clone().into(),
                    "ChargeFrequency" => "Usage-Based".into(),
                    "ChargePeriodStart" => focus_time(r.charge_start).into(),
                    "ChargePeriodEnd" => focus_time(r.charge_end).into(),
                    "ConsumedQuantity" => num(r.quantity),
                    "ConsumedUnit" => {
                        if r.is_tokens {
                            "Tokens".into()
                        } else if r.quantity.is_some() {
                            unit_name(&r.class).into()
                        } else {
                            "".into()
                        }
                    }
                    "ContractedUnitPrice" | "ListUnitPrice" => num(r.unit_price),
                    "HostProviderName" => ent.host.clone(),
                    "InvoiceIssuerName" | "ProviderName" => ent.invoice_issuer.clone(),
                    "PublisherName" => ent.publisher.clone(),
                    "ServiceProviderName" => ent.service_provider.clone(),
                    "ServiceName" => ent.service_name.clone(),
                    "ServiceCategory" => "AI and Machine Learning".into(),
                    "ServiceSubcategory" => "Generative AI".into(),
                    "PricingCategory" => {
                        if r.cost.is_some() {
                            "Standard".into()
                        } else {
                            "".into()
                        }
                    }
                    "PricingQuantity" => num(r.pricing_quantity()),
                    "PricingUnit" => r.pricing_unit().unwrap_or_default(),
                    "SkuId" => format!("{}/{}:{}", r.provider, r.model, r.class).into(),
                    "SkuMeter" => {
                        if r.is_tokens {
                            format!("{class_label} Tokens").into()
                        } else {
                            class_label.clone().into()
                        }
                    }
                    "SkuPriceId" => {
                        if r.price_version.is_empty() {
                            "".into()
                        } else {
                            format!("{}:{}", r.price_version, r.class).into()
                        }
                    }
                    "SkuPriceDetails" => json_object(
                        [
                            ("x_Model", r.model.as_str()),
                            ("x_TokenClass", r.class.as_str()),
                            ("x_PriceVersion", r.price_version.as_str()),
                        ]
                        .into_iter(),
                    )
                    .into(),
                    "Tags" => json_object(
                        [
                            ("team", r.team.as_str()),
                            ("service", r.service.as_str()),
                            ("feature", r.feature.as_str()),
                            ("environment", r.environment.as_str()),
                            ("tenant", r.tenant.as_str()),
                            ("cost_center", r.cost_center.as_str()),
                        ]
                        .into_iter(),
                    )
                    .into(),
                    "x_Provider" => r.provider.as_str().into(),
                    "x_Model" => r.model.as_str().into(),
                    "x_TokenClass" => r.class.as_str().into(),
                    "x_Team" => r.team.as_str().into(),
                    "x_Service" => r.service.as_str().into(),
                    "x_Feature" => r.feature.as_str().into(),
                    "x_Environment" => r.environment.as_str().into(),
                    "x_Tenant" => r.tenant.as_str().into(),
                    "x_CostCenter" => r.cost_center.as_str().into(),
                    "x_PriceVersion" => r.price_version.as_str().into(),
                    "x_PricingStatus" => r.pricing_status.as_str().into(),
                    "x_AttributionStatus" => r.attribution_status.as_str().into(),
                    "x_RequestCount" => r
                        .requests
                        .map_or(Cow::Borrowed(""), |n| n.to_string().into()),
                    "x_ReasoningTokens" => r
                        .reasoning_tokens
                        .map_or(Cow::Borrowed(""), |n| n.to_string().into()),
                    _ => "".into(),
                }
            })
            .collect()
    }

    /// Exact total cost per billing currency (priced and estimated rows).
    pub fn totals(&self) -> BTreeMap<String, Decimal> {
        let mut t: BTreeMap<String, Decimal> = BTreeMap::new();
        for r in &self.rows {
            if let Some(c) = r.cost {
                *t.entry(r.currency.clone()).or_default() += c;
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn column_set_is_focus_1_3_plus_x_columns() {
        let c = columns();
        assert_eq!(c.len(), 65 + EXTRA_COLUMNS.len());
        let mut sorted = FOCUS_COLUMNS.to_vec();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            FOCUS_COLUMNS.to_vec(),
            "FOCUS order is alphabetical"
        );
        assert!(EXTRA_COLUMNS.iter().all(|x| x.starts_with("x_")));
    }

    #[test]
    fn claude_on_bedrock_is_sold_by_anthropic_hosted_and_invoiced_by_aws() {
        let e = entities(
            "aws.bedrock",
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
        );
        assert_eq!(
            (
                e.service_name.as_ref(),
                e.service_provider.as_ref(),
                e.host.as_ref(),
                e.invoice_issuer.as_ref(),
                e.publisher.as_ref()
            ),
            ("Amazon Bedrock", "Anthropic", "AWS", "AWS", "Anthropic")
        );
        let nova = entities("aws.bedrock", "amazon.nova-pro-v1:0");
        assert_eq!(nova.service_provider, "AWS");
        assert_eq!(entities("openai", "gpt-4o").invoice_issuer, "OpenAI");
        assert_eq!(entities("acme-llm", "x").service_name, "acme-llm");
    }

    #[test]
    fn pricing_quantity_is_exact_millions() {
        let mut r = FocusRow {
            charge_start: Timestamp::UNIX_EPOCH,
            charge_end: Timestamp::UNIX_EPOCH,
            provider: String::new(),
            model: String::new(),
            price_version: String::new(),
            currency: String::new(),
            team: String::new(),
            service: String::new(),
            feature: String::new(),
            environment: String::new(),
            tenant: String::new(),
            cost_center: String::new(),
            attribution_status: String::new(),
            pricing_status: String::new(),
            class: "input".into(),
            is_tokens: true,
            quantity: Some(Decimal::from(921_600)),
            cost: None,
            unit_price: None,
            requests: None,
            reasoning_tokens: None,
        };
        // 921,600 tokens = 0.9216 million.
        assert_eq!(r.pricing_quantity().unwrap().to_string(), "0.9216");
        assert_eq!(r.pricing_unit().unwrap(), "1000000 Tokens");
        r.is_tokens = false;
        r.class = "web_search_requests".into();
        r.quantity = Some(Decimal::from(3));
        assert_eq!(r.pricing_quantity().unwrap().to_string(), "3");
        assert_eq!(r.pricing_unit().unwrap(), "Requests");
        assert_eq!(title("cache_write_1h"), "Cache Write 1h");
    }

    #[test]
    fn focus_times_are_whole_seconds_in_utc() {
        let t: Timestamp = "2026-09-30T19:00:00Z".parse().unwrap();
        assert_eq!(focus_time(t), "2026-09-30T19:00:00Z");
    }
}
