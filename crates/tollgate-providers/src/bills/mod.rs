//! Provider bills: each supported export parsed into [`BillLine`]s, and [`summarize`]d.
//!
//! One module per format (`openai_usage`, `openai_costs`, `anthropic_usage`, `anthropic_cost`,
//! `aws_cur`, `gcp_billing`, `focus`), over two small readers that attach a location to every
//! error (`csv_source`: file and line; `json_source`: file and JSON path).
//!
//! What a [`BillLine`] promises:
//! - one token class *or* one other charge: "each token type is its own bill line";
//! - `tokens` is set only together with `token_class` (a cost-only line, such as a line of
//!   Anthropic's cost report, has a class and no tokens);
//! - `cost` is `None` exactly when the file carries no money for the line (usage-only
//!   exports); it is never an invented zero;
//! - the charge period is a half-open UTC interval `[period_start, period_end)`;
//! - identifiers (model, key, project, ...) are kept as the bill writes them; mapping them to
//!   canonical names is the reference data's job, not the parser's.
//!
//! Token lines whose count is zero are not emitted: a provider's cost reports omit zero
//! classes too, and a zero line carries nothing to reconcile.

mod anthropic_cost;
mod anthropic_usage;
mod aws_cur;
mod common;
mod csv_source;
mod error;
mod focus;
mod gcp_billing;
mod json_source;
mod openai_costs;
mod openai_usage;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_core::Currency;

pub use error::BillError;

/// The bill and usage formats Tollgate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BillType {
    /// OpenAI Usage API, `/organization/usage/completions` (tokens only, no money).
    OpenAiUsage,
    /// OpenAI Costs API, `/organization/costs` (money in dollars).
    OpenAiCosts,
    /// Anthropic Admin API messages usage report (tokens only, no money).
    AnthropicUsage,
    /// Anthropic Admin API cost report (money in cents, as decimal strings).
    AnthropicCost,
    /// AWS CUR 2.0 (Data Exports) CSV, plain or gzip: the Amazon Bedrock lines.
    AwsCur,
    /// Google Cloud billing export (BigQuery) as CSV: the Vertex AI and Gemini API lines.
    GcpBilling,
    /// FinOps FOCUS 1.2 / 1.3 cost and usage CSV.
    Focus,
}

impl BillType {
    pub const ALL: [BillType; 7] = [
        BillType::OpenAiUsage,
        BillType::OpenAiCosts,
        BillType::AnthropicUsage,
        BillType::AnthropicCost,
        BillType::AwsCur,
        BillType::GcpBilling,
        BillType::Focus,
    ];

    /// Parses the name used on the command line (`--type aws-cur`).
    pub fn parse(s: &str) -> Option<BillType> {
        BillType::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The command-line name: `openai-usage`, `openai-costs`, `anthropic-usage`,
    /// `anthropic-cost`, `aws-cur`, `gcp-billing` or `focus`.
    pub fn name(self) -> &'static str {
        match self {
            BillType::OpenAiUsage => "openai-usage",
            BillType::OpenAiCosts => "openai-costs",
            BillType::AnthropicUsage => "anthropic-usage",
            BillType::AnthropicCost => "anthropic-cost",
            BillType::AwsCur => "aws-cur",
            BillType::GcpBilling => "gcp-billing",
            BillType::Focus => "focus",
        }
    }
}

impl fmt::Display for BillType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of charge a line is. Only `Usage` lines make up a bill's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineKind {
    Usage,
    Credit,
    Tax,
    Refund,
    /// Fees, purchases, discounts, adjustments, rounding: charges that are none of the above.
    Other,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Usage => "usage",
            LineKind::Credit => "credit",
            LineKind::Tax => "tax",
            LineKind::Refund => "refund",
            LineKind::Other => "other",
        }
    }
}

impl fmt::Display for LineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Disjoint token classes, named as in `tollgate-core`'s usage and rate tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenClass {
    /// Uncached input: excludes cache reads and cache writes.
    Input,
    CacheRead,
    /// Cache write with the default (5-minute) lifetime.
    CacheWrite,
    /// Cache write with a 1-hour lifetime (Anthropic, Bedrock Marketplace).
    CacheWrite1h,
    /// Output, reasoning included.
    Output,
}

impl TokenClass {
    pub const ALL: [TokenClass; 5] = [
        TokenClass::Input,
        TokenClass::CacheRead,
        TokenClass::CacheWrite,
        TokenClass::CacheWrite1h,
        TokenClass::Output,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenClass::Input => "input",
            TokenClass::CacheRead => "cache_read",
            TokenClass::CacheWrite => "cache_write",
            TokenClass::CacheWrite1h => "cache_write_1h",
            TokenClass::Output => "output",
        }
    }
}

impl fmt::Display for TokenClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a provider bill: one token class (or one charge) for one
/// (period, model, key/project, ...). "Each token type is its own bill line".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    /// OpenTelemetry `gen_ai.provider.name` style: `openai`, `anthropic`, `aws.bedrock`,
    /// `gcp.vertex_ai`, `gcp.gemini`, or for FOCUS the billing provider mapped the same way.
    pub provider: String,
    pub line_kind: LineKind,
    /// Start of the charge period (inclusive, UTC).
    pub period_start: Timestamp,
    /// End of the charge period (exclusive, UTC).
    pub period_end: Timestamp,
    /// The model as the bill names it (raw; normalisation happens later).
    pub model: Option<String>,
    /// `None` for charges that are not tokens (web searches, tax, credits, ...).
    pub token_class: Option<TokenClass>,
    /// Token count; only ever set together with `token_class`.
    pub tokens: Option<u64>,
    /// Any other quantity (requests, web searches, a unit the parser does not turn into tokens).
    pub quantity: Option<Decimal>,
    pub unit: Option<String>,
    /// Exact amount in `currency`, signed as the file gives it (credits are usually negative).
    /// `None` when the file has no money for the line (usage-only exports).
    pub cost: Option<Decimal>,
    /// The line's currency. Usage-only exports carry none; their lines say USD, the currency
    /// both providers bill in.
    pub currency: Currency,
    /// Billing or usage account (AWS usage account, GCP billing account, FOCUS account).
    pub account: Option<String>,
    pub project: Option<String>,
    pub workspace: Option<String>,
    /// API key id as the provider names it (never a secret).
    pub api_key: Option<String>,
    /// Caller identity where the bill carries one (CUR `line_item_iam_principal`).
    pub principal: Option<String>,
    /// The billed resource (CUR `line_item_resource_id`, e.g. an inference profile ARN; FOCUS
    /// `ResourceId`; GCP `resource.name`).
    pub resource: Option<String>,
    /// The provider's own name for the charge: CUR usage type, OpenAI `line_item`, Anthropic
    /// `description`, GCP `sku.id`, FOCUS `SkuId`.
    pub sku: Option<String>,
    pub service_tier: Option<String>,
    pub region: Option<String>,
    /// Cost-allocation tags / labels, keys as the bill writes them (CUR: `user_team`).
    pub tags: BTreeMap<String, String>,
    /// Other provider dimensions kept verbatim (`context_window`, `line_item_type`, ...).
    pub attributes: BTreeMap<String, String>,
    /// CSV: the file line the row starts on. JSON: the 1-based number of the result object in
    /// file order (all lines from one result share it).
    pub source_line: u64,
}

impl BillLine {
    /// A line with the given identity and every optional field empty.
    pub fn new(
        provider: impl Into<String>,
        line_kind: LineKind,
        period_start: Timestamp,
        period_end: Timestamp,
        currency: Currency,
        source_line: u64,
    ) -> Self {
        BillLine {
            provider: provider.into(),
            line_kind,
            period_start,
            period_end,
            model: None,
            token_class: None,
            tokens: None,
            quantity: None,
            unit: None,
            cost: None,
            currency,
            account: None,
            project: None,
            workspace: None,
            api_key: None,
            principal: None,
            resource: None,
            sku: None,
            service_tier: None,
            region: None,
            tags: BTreeMap::new(),
            attributes: BTreeMap::new(),
            source_line,
        }
    }
}

/// Token counts per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenTotals {
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub cache_write_1h: u64,
    pub output: u64,
}

impl TokenTotals {
    pub fn get(&self, class: TokenClass) -> u64 {
        match class {
            TokenClass::Input => self.input,
            TokenClass::CacheRead => self.cache_read,
            TokenClass::CacheWrite => self.cache_write,
            TokenClass::CacheWrite1h => self.cache_write_1h,
            TokenClass::Output => self.output,
        }
    }

    fn slot(&mut self, class: TokenClass) -> &mut u64 {
        match class {
            TokenClass::Input => &mut self.input,
            TokenClass::CacheRead => &mut self.cache_read,
            TokenClass::CacheWrite => &mut self.cache_write,
            TokenClass::CacheWrite1h => &mut self.cache_write_1h,
            TokenClass::Output => &mut self.output,
        }
    }

    /// All classes together.
    pub fn total(&self) -> u64 {
        TokenClass::ALL
            .iter()
            .fold(0u64, |t, c| t.saturating_add(self.get(*c)))
    }
}

/// What a bill adds up to: the figures `tollgate ingest bills --format json` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillSummary {
    /// The provider, or for a multi-provider file (FOCUS) the distinct providers, sorted and
    /// joined with `,`.
    pub provider: String,
    pub lines: usize,
    /// Earliest line start and latest line end.
    pub period_start: Timestamp,
    pub period_end: Timestamp,
    pub currency: Currency,
    /// Exact sum of the `Usage` lines' costs; `None` when no usage line carries money
    /// (usage-only exports). Credits, tax, refunds and other charges are not in it.
    pub cost: Option<Decimal>,
    /// Exact sums of the other kinds, signed as the file gives them: credits and refunds are
    /// normally negative, tax positive. Zero when the file has none.
    pub credits: Decimal,
    pub tax: Decimal,
    pub refunds: Decimal,
    pub other: Decimal,
    /// Tokens per class over the `Usage` lines.
    pub tokens: TokenTotals,
    /// Other usage quantities summed per unit (`web_search_requests`, ...).
    pub quantities: BTreeMap<String, Decimal>,
}

/// Parses one bill file into its lines. `source_name` is used in error messages only. Gzip
/// input (magic bytes `1f 8b`) is decompressed first, whatever the type.
pub fn parse(kind: BillType, source_name: &str, bytes: &[u8]) -> Result<Vec<BillLine>, BillError> {
    let mut lines = Vec::new();
    parse_each(kind, source_name, bytes, |line| lines.push(line))?;
    Ok(lines)
}

/// Parses one bill file and hands each line to `each` as soon as it is read, without holding
/// the whole bill in memory (a month of CUR can have millions of lines).
///
/// Lines arrive in file order. The file is still all or nothing: when a later row is bad, the
/// lines already handed over must be discarded (a consumer writing to a database does so inside
/// one transaction and rolls back on `Err`). A consumer that fails itself keeps its own error
/// and ignores the remaining lines.
pub fn parse_each(
    kind: BillType,
    source_name: &str,
    bytes: &[u8],
    each: impl FnMut(BillLine),
) -> Result<(), BillError> {
    parse_read(kind, source_name, bytes, each)
}

/// [`parse_each`] over a reader (a file, stdin): the CSV formats (`aws-cur`, `gcp-billing`,
/// `focus`, plain or gzip) are read 1 MiB at a time, split into records (and decompressed) by
/// a second thread while this one parses the rows, so memory does not grow with the file; the
/// JSON API responses are small and are read whole.
pub fn parse_read<'r>(
    kind: BillType,
    source_name: &str,
    input: impl std::io::Read + Send + 'r,
    mut each: impl FnMut(BillLine),
) -> Result<(), BillError> {
    let emit: &mut dyn FnMut(BillLine) = &mut each;
    let input: Box<dyn std::io::Read + Send + 'r> = Box::new(input);
    match kind {
        BillType::AwsCur => aws_cur::parse(source_name, input, emit),
        BillType::GcpBilling => gcp_billing::parse(source_name, input, emit),
        BillType::Focus => focus::parse(source_name, input, emit),
        BillType::OpenAiUsage
        | BillType::OpenAiCosts
        | BillType::AnthropicUsage
        | BillType::AnthropicCost => {
            // API responses are small; they are read whole (the Anthropic parsers look at all
            // results before naming the default workspace).
            let mut bytes = Vec::new();
            let mut input = input;
            input.read_to_end(&mut bytes).map_err(|e| BillError::Read {
                file: source_name.to_string(),
                message: e.to_string(),
            })?;
            let text = json_source::decode(source_name, &bytes)?;
            let lines = match kind {
                BillType::OpenAiUsage => openai_usage::parse(source_name, &text)?,
                BillType::OpenAiCosts => openai_costs::parse(source_name, &text)?,
                BillType::AnthropicUsage => anthropic_usage::parse(source_name, &text)?,
                _ => anthropic_cost::parse(source_name, &text)?,
            };
            lines.into_iter().for_each(emit);
            Ok(())
        }
    }
}

/// Adds up parsed lines. Fails on an empty bill, on lines in more than one currency, and on
/// overflow.
pub fn summarize(lines: &[BillLine]) -> Result<BillSummary, BillError> {
    let mut s = Summarizer::default();
    for line in lines {
        s.add(line)?;
    }
    s.finish()
}

/// Adds up lines one at a time, for use with [`parse_each`]; [`summarize`] is this over a
/// slice.
#[derive(Debug, Default)]
pub struct Summarizer {
    summary: Option<BillSummary>,
    providers: BTreeSet<String>,
}

impl Summarizer {
    pub fn new() -> Self {
        Summarizer::default()
    }

    /// Adds one line. Fails when its currency differs from the first line's, or on overflow.
    pub fn add(&mut self, line: &BillLine) -> Result<(), BillError> {
        if !self.providers.contains(&line.provider) {
            self.providers.insert(line.provider.clone());
        }
        let s = self.summary.get_or_insert_with(|| BillSummary {
            provider: String::new(),
            lines: 0,
            period_start: line.period_start,
            period_end: line.period_end,
            currency: line.currency,
            cost: None,
            credits: Decimal::ZERO,
            tax: Decimal::ZERO,
            refunds: Decimal::ZERO,
            other: Decimal::ZERO,
            tokens: TokenTotals::default(),
            quantities: BTreeMap::new(),
        });
        if line.currency != s.currency {
            return Err(BillError::MixedCurrency {
                line: line.source_line,
                found: line.currency,
                first: s.currency,
            });
        }
        s.lines += 1;
        s.period_start = s.period_start.min(line.period_start);
        s.period_end = s.period_end.max(line.period_end);
        let amount = line.cost.unwrap_or(Decimal::ZERO);
        match line.line_kind {
            LineKind::Usage => {
                if let Some(c) = line.cost {
                    s.cost = Some(add(s.cost.unwrap_or(Decimal::ZERO), c)?);
                }
                if let (Some(class), Some(n)) = (line.token_class, line.tokens) {
                    let slot = s.tokens.slot(class);
                    *slot = slot.checked_add(n).ok_or(BillError::Overflow)?;
                }
                if let (Some(q), Some(unit)) = (line.quantity, &line.unit) {
                    let slot = s.quantities.entry(unit.clone()).or_default();
                    *slot = add(*slot, q)?;
                }
            }
            LineKind::Credit => s.credits = add(s.credits, amount)?,
            LineKind::Tax => s.tax = add(s.tax, amount)?,
            LineKind::Refund => s.refunds = add(s.refunds, amount)?,
            LineKind::Other => s.other = add(s.other, amount)?,
        }
        Ok(())
    }

    /// The summary of the lines added; fails when there were none.
    pub fn finish(self) -> Result<BillSummary, BillError> {
        let mut s = self.summary.ok_or(BillError::NoLines)?;
        s.provider = self.providers.into_iter().collect::<Vec<_>>().join(",");
        Ok(s)
    }
}

fn add(a: Decimal, b: Decimal) -> Result<Decimal, BillError> {
    a.checked_add(b).ok_or(BillError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bill_type_names_round_trip() {
        for t in BillType::ALL {
            assert_eq!(BillType::parse(t.name()), Some(t));
        }
        assert_eq!(BillType::parse("aws"), None);
        assert_eq!(BillType::parse("AWS-CUR"), None);
    }

    #[test]
    fn summary_keeps_credits_and_tax_beside_cost() {
        let t0: Timestamp = "2026-09-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-09-02T00:00:00Z".parse().unwrap();
        let mut usage = BillLine::new("aws.bedrock", LineKind::Usage, t0, t1, Currency::USD, 2);
        usage.cost = Some(Decimal::new(150, 2));
        usage.token_class = Some(TokenClass::Output);
        usage.tokens = Some(1000);
        let mut credit = BillLine::new("aws.bedrock", LineKind::Credit, t0, t1, Currency::USD, 3);
        credit.cost = Some(Decimal::new(-25, 0));
        let mut tax = BillLine::new("aws.bedrock", LineKind::Tax, t0, t1, Currency::USD, 4);
        tax.cost = Some(Decimal::new(4125, 3));
        let s = summarize(&[usage, credit, tax]).unwrap();
        // 1.50 of usage; -25 of credit and 4.125 of tax reported beside it, not in it.
        assert_eq!(s.cost, Some(Decimal::new(150, 2)));
        assert_eq!(s.credits, Decimal::new(-25, 0));
        assert_eq!(s.tax, Decimal::new(4125, 3));
        assert_eq!(s.tokens.output, 1000);
        assert_eq!(s.lines, 3);
    }

    #[test]
    fn summary_refuses_mixed_currencies_and_empty_bills() {
        let t0: Timestamp = "2026-09-01T00:00:00Z".parse().unwrap();
        let eur = Currency::parse("EUR").unwrap();
        let a = BillLine::new("openai", LineKind::Usage, t0, t0, Currency::USD, 1);
        let b = BillLine::new("openai", LineKind::Usage, t0, t0, eur, 2);
        let e = summarize(&[a, b]).unwrap_err().to_string();
        assert!(e.contains("EUR"), "{e}");
        assert!(matches!(summarize(&[]), Err(BillError::NoLines)));
    }
}
