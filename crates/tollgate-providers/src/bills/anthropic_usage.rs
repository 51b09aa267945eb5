//! `anthropic-usage`: the Anthropic Admin API messages usage report
//! (`GET /v1/organizations/usage_report/messages`), one page object or an array of pages.
//!
//! Anthropic's classes are already disjoint: `uncached_input_tokens` excludes cache reads and
//! writes. Each `data[].results[]` entry becomes up to five token lines (`Input`, `CacheRead`,
//! `CacheWrite` = `cache_creation.ephemeral_5m_input_tokens`, `CacheWrite1h` =
//! `cache_creation.ephemeral_1h_input_tokens`, `Output`) plus one quantity line per server tool
//! (`web_search_requests`, `web_fetch_requests`). An older flat `cache_creation_input_tokens`
//! (no TTL split) reads as 5-minute writes.
//!
//! Usage only: lines have no cost (and say USD). `workspace_id` is null both when the report is
//! not grouped by workspace and for the default workspace; when any result of the file has a
//! workspace, the report was grouped and a null one is the default workspace, written
//! `"default"`. `context_window`, `inference_geo`, `service_account_id` and `speed` are kept in
//! `attributes`.

use rust_decimal::Decimal;

use super::json_source::{self, Object};
use super::{BillError, BillLine, LineKind, TokenClass};
use tollgate_core::Currency;

const PROVIDER: &str = "anthropic";
pub(super) const DEFAULT_WORKSPACE: &str = "default";

const SERVER_TOOLS: &[&str] = &["web_search_requests", "web_fetch_requests"];
pub(super) const DIMENSIONS: &[&str] = &[
    "context_window",
    "inference_geo",
    "service_account_id",
    "speed",
];

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
                read_result(&r, record, start, end, &mut lines)?;
            }
        }
    }
    name_default_workspace(&mut lines);
    Ok(lines)
}

/// When the file is grouped by workspace (some line has one), a null workspace is the default
/// workspace.
pub(super) fn name_default_workspace(lines: &mut [BillLine]) {
    if lines.iter().any(|l| l.workspace.is_some()) {
        for l in lines.iter_mut().filter(|l| l.workspace.is_none()) {
            l.workspace = Some(DEFAULT_WORKSPACE.to_string());
        }
    }
}

fn read_result(
    r: &Object<'_>,
    record: u64,
    start: jiff::Timestamp,
    end: jiff::Timestamp,
    lines: &mut Vec<BillLine>,
) -> Result<(), BillError> {
    if r.node("amount").is_some() {
        return Err(r
            .required("amount", "")?
            .invalid("this is a cost report result; ingest it with --type anthropic-cost"));
    }
    const COUNT: &str = "expected a whole, non-negative number of tokens";
    let input = r.required("uncached_input_tokens", COUNT)?.as_count()?;
    let output = r.required("output_tokens", COUNT)?.as_count()?;
    let cache_read = r.count("cache_read_input_tokens")?.unwrap_or(0);
    let (write_5m, write_1h) = match r.object("cache_creation")? {
        Some(c) => (
            c.count("ephemeral_5m_input_tokens")?.unwrap_or(0),
            c.count("ephemeral_1h_input_tokens")?.unwrap_or(0),
        ),
        None => (r.count("cache_creation_input_tokens")?.unwrap_or(0), 0),
    };

    let mut template = BillLine::new(PROVIDER, LineKind::Usage, start, end, Currency::USD, record);
    template.model = r.string("model")?;
    template.api_key = r.string("api_key_id")?;
    template.workspace = r.string("workspace_id")?;
    template.account = r.string("account_id")?;
    template.service_tier = r.string("service_tier")?;
    for key in DIMENSIONS {
        if let Some(v) = r.string(key)? {
            template.attributes.insert((*key).to_string(), v);
        }
    }

    for (class, n) in [
        (TokenClass::Input, input),
        (TokenClass::CacheRead, cache_read),
        (TokenClass::CacheWrite, write_5m),
        (TokenClass::CacheWrite1h, write_1h),
        (TokenClass::Output, output),
    ] {
        if n > 0 {
            let mut line = template.clone();
            line.token_class = Some(class);
            line.tokens = Some(n);
            lines.push(line);
        }
    }
    if let Some(tools) = r.object("server_tool_use")? {
        for key in SERVER_TOOLS {
            if let Some(n) = tools.count(key)?
                && n > 0
            {
                let mut line = template.clone();
                line.quantity = Some(Decimal::from(n));
                line.unit = Some((*key).to_string());
                lines.push(line);
            }
        }
    }
    Ok(())
}
