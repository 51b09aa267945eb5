//! `openai-usage`: the OpenAI Usage API completions response
//! (`GET /v1/organization/usage/completions`), one page object or an array of pages.
//!
//! Each `data[].results[]` entry becomes up to four disjoint token lines. OpenAI's
//! `input_tokens` *includes* cached and cache-write tokens, so:
//! - `Input`      = `input_tokens - input_cached_tokens - input_cache_write_tokens`
//!   (an error if negative, and checked against `input_uncached_tokens` when the file has it);
//! - `CacheRead`  = `input_cached_tokens`;
//! - `CacheWrite` = `input_cache_write_tokens` (newer field; absent reads as 0);
//! - `Output`     = `output_tokens` (reasoning included).
//!
//! Usage only: lines have no cost (and say USD, the currency OpenAI bills in). `batch: true`
//! sets the service tier to `batch`. Request counts and modality breakdowns are kept in
//! `attributes`. Empty buckets (`"results": []`) produce no lines.

use super::json_source::{self, Object};
use super::{BillError, BillLine, LineKind, TokenClass};
use tollgate_core::Currency;

const PROVIDER: &str = "openai";
const RESULT_OBJECT: &str = "organization.usage.completions.result";

/// Fields copied into `attributes` when present and non-zero.
const EXTRA_COUNTS: &[&str] = &[
    "num_model_requests",
    "input_audio_tokens",
    "input_cached_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "input_cached_image_tokens",
    "output_image_tokens",
];

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
                read_result(&r, record, start, end, &mut lines)?;
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
    lines: &mut Vec<BillLine>,
) -> Result<(), BillError> {
    if let Some(object) = r.string("object")?
        && object != RESULT_OBJECT
    {
        let hint = if object == "organization.costs.result" {
            "this is a Costs API result; ingest it with --type openai-costs".to_string()
        } else {
            format!("expected {RESULT_OBJECT:?} (the completions usage endpoint)")
        };
        return Err(r.required("object", "")?.invalid(&hint));
    }
    const COUNT: &str = "expected a whole, non-negative number of tokens";
    let input_node = r.required("input_tokens", COUNT)?;
    let input_total = input_node.as_count()?;
    let output = r.required("output_tokens", COUNT)?.as_count()?;
    let cached = r.count("input_cached_tokens")?.unwrap_or(0);
    let cache_write = r.count("input_cache_write_tokens")?.unwrap_or(0);
    let Some(uncached) = input_total
        .checked_sub(cached)
        .and_then(|n| n.checked_sub(cache_write))
    else {
        let why = format!(
            "input_cached_tokens ({cached}) plus input_cache_write_tokens ({cache_write}) exceed \
             input_tokens ({input_total}), which includes them; the classes cannot be split, \
             re-fetch the usage"
        );
        return Err(r
            .node("input_cached_tokens")
            .unwrap_or(input_node)
            .invalid(&why));
    };
    if let Some(node) = r.node("input_uncached_tokens")
        && node.as_count()? != uncached
    {
        return Err(node.invalid(&format!(
            "expected input_tokens - input_cached_tokens - input_cache_write_tokens = \
             {input_total} - {cached} - {cache_write} = {uncached}; the response contradicts \
             itself, re-fetch the usage"
        )));
    }

    let batch = r.bool("batch")?;
    let mut template = BillLine::new(PROVIDER, LineKind::Usage, start, end, Currency::USD, record);
    template.model = r.string("model")?;
    template.project = r.string("project_id")?;
    template.api_key = r.string("api_key_id")?;
    template.service_tier = match batch {
        Some(true) => Some("batch".to_string()),
        _ => r.string("service_tier")?,
    };
    if let Some(b) = batch {
        template.attributes.insert("batch".into(), b.to_string());
    }
    if let Some(user) = r.string("user_id")? {
        template.attributes.insert("user_id".into(), user);
    }
    for key in EXTRA_COUNTS {
        if let Some(n) = r.count(key)?
            && n > 0
        {
            template
                .attributes
                .insert((*key).to_string(), n.to_string());
        }
    }

    for (class, n) in [
        (TokenClass::Input, uncached),
        (TokenClass::CacheRead, cached),
        (TokenClass::CacheWrite, cache_write),
        (TokenClass::Output, output),
    ] {
        if n > 0 {
            let mut line = template.clone();
            line.token_class = Some(class);
            line.tokens = Some(n);
            lines.push(line);
        }
    }
    Ok(())
}
