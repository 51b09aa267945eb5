//! The audit CSV (seed 000, issue 4 item 4): one line per call in `[start, end)`, in
//! `occurred_at` order, streamed from the ledger straight into a writer.
//!
//! Invariants:
//! - constant memory: rows are borrowed from the ledger's cursors and encoded ([`encode_row`])
//!   into chunks that go to the writer in order ([`Ledger::export_audit`]; the SQLite ledger
//!   reads and encodes on two cores through bounded queues); nothing is collected;
//! - the cost is the ledger's exact decimal text, never rounded; an unpriced call has an empty
//!   cost (never `0`) and `pricing_status` says `unpriced`;
//! - the token convention is stated in the first line (a `#` comment) and in `docs/reports.md`:
//!   `input_tokens` is **all** input (uncached + cache reads + cache writes, the OpenAI and
//!   OpenTelemetry convention); `cached_input_tokens` (cache reads) and `cache_write_tokens`
//!   are parts of it; `output_tokens` includes `reasoning_tokens`;
//! - no prompt or completion content: the ledger holds none.

use std::io::Write;

use jiff::Timestamp;
use tollgate_core::event::format_instant;
use tollgate_ledger::{AuditRow, Ledger, LedgerError};

/// The columns, in order.
pub const COLUMNS: [&str; 24] = [
    "ts",
    "request_id",
    "event_id",
    "tenant_id",
    "user_id",
    "team_id",
    "service",
    "feature",
    "environment",
    "provider",
    "model",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
    "currency",
    "latency_ms",
    "status",
    "http_status",
    "price_version",
    "pricing_status",
    "attribution_status",
];

/// What to export.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Inclusive start.
    pub start: Timestamp,
    /// Exclusive end.
    pub end: Timestamp,
    /// Only this tenant's calls.
    pub tenant: Option<String>,
    /// Write the leading `#` line that states the range and the token convention.
    pub comment: bool,
}

/// Errors while exporting.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("writing the audit CSV")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The `#` line: range, tenant, token convention, cost rule. It holds no comma or quote, so
/// even a reader that does not skip comments sees one field.
pub fn comment_line(opts: &AuditOptions) -> String {
    format!(
        "# Tollgate audit export: one row per call with {} <= occurred_at < {} (UTC); tenant: {}. \
         Tokens: input_tokens = all input tokens = uncached + cache reads + cache writes (the OpenAI and OpenTelemetry convention); \
         cached_input_tokens = cache reads and cache_write_tokens = cache writes (5 min + 1 h) are both included in input_tokens; \
         output_tokens includes reasoning_tokens. \
         cost = the exact ledger cost in currency (not rounded); empty when unpriced (pricing_status = unpriced). \
         ts = occurred_at in UTC. No prompt or completion content.",
        format_instant(opts.start),
        format_instant(opts.end),
        opts.tenant.as_deref().map_or_else(
            || "all".to_string(),
            |t| t.replace([',', '"', '\n', '\r'], "_")
        ),
    )
}

/// Writes the CSV (comment line, header, one line per call) to `out` and returns the number
/// of calls written. Rows arrive in chunks of a few hundred KB; `out` is not flushed here.
pub fn write_csv(
    ledger: &dyn Ledger,
    opts: &AuditOptions,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    if opts.end <= opts.start {
        return Err(AuditError::Invalid(format!(
            "the range is empty: --from {} is not before --to {}",
            format_instant(opts.start),
            format_instant(opts.end)
        )));
    }
    if opts.comment {
        out.write_all(comment_line(opts).as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.write_all(COLUMNS.join(",").as_bytes())?;
    out.write_all(b"\n")?;
    // The sink can only return ledger errors: park an I/O error here and stop the export.
    let mut io_error: Option<std::io::Error> = None;
    let encode = |r: &AuditRow<'_>, buf: &mut Vec<u8>| encode_row(buf, r);
    let exported = ledger.export_audit(
        opts.start,
        opts.end,
        opts.tenant.as_deref(),
        &encode,
        &mut |bytes| {
            if let Err(e) = out.write_all(bytes) {
                io_error = Some(e);
                return Err(LedgerError::Refused("output failed".into()));
            }
            Ok(())
        },
    );
    if let Some(e) = io_error {
        return Err(AuditError::Io(e));
    }
    Ok(exported?)
}

/// Appends one CSV line (with its `\n`) for `r`.
pub fn encode_row(line: &mut Vec<u8>, r: &AuditRow<'_>) {
    let total_input = r
        .input_tokens
        .saturating_add(r.cache_read_tokens)
        .saturating_add(r.cache_write_tokens)
        .saturating_add(r.cache_write_1h_tokens);
    let cache_writes = r.cache_write_tokens.saturating_add(r.cache_write_1h_tokens);
    text(line, r.occurred_at);
    line.push(b',');
    text(line, r.request_id);
    line.push(b',');
    text(line, r.event_id);
    line.push(b',');
    text(line, r.tenant_id);
    line.push(b',');
    text(line, r.user_id);
    line.push(b',');
    text(line, r.team_id);
    line.push(b',');
    text(line, r.service);
    line.push(b',');
    text(line, r.feature);
    line.push(b',');
    text(line, r.environment);
    line.push(b',');
    text(line, r.provider);
    line.push(b',');
    text(line, r.model);
    line.push(b',');
    uint(line, total_input);
    line.push(b',');
    uint(line, r.cache_read_tokens);
    line.push(b',');
    uint(line, cache_writes);
    line.push(b',');
    uint(line, r.output_tokens);
    line.push(b',');
    uint(line, r.reasoning_tokens);
    line.push(b',');
    text(line, r.cost);
    line.push(b',');
    text(line, r.currency);
    line.push(b',');
    if let Some(v) = r.latency_ms {
        uint(line, v);
    }
    line.push(b',');
    text(line, r.status);
    line.push(b',');
    if let Some(v) = r.http_status {
        if v < 0 {
            line.push(b'-');
        }
        uint(line, v.unsigned_abs());
    }
    line.push(b',');
    text(line, r.price_version);
    line.push(b',');
    text(line, r.pricing_status);
    line.push(b',');
    text(line, r.attribution_status);
    line.push(b'\n');
}

/// A text field, quoted (RFC 4180) only when it holds a comma, quote or line break.
fn text(line: &mut Vec<u8>, s: &[u8]) {
    // Fast path: `,` `"` `\n` `\r` are all below `-` (0x2D); ids, instants, decimals and
    // names rarely hold a byte below it. No early exit, so the check vectorises.
    let mut low = false;
    for &b in s {
        low |= b < b'-';
    }
    if !low || !s.iter().any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        line.extend_from_slice(s);
        return;
    }
    line.push(b'"');
    for &b in s {
        if b == b'"' {
            line.push(b'"');
        }
        line.push(b);
    }
    line.push(b'"');
}

/// Decimal digits of `v`, without allocating.
fn uint(line: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `v % 10` is below 10, so the cast cannot truncate.
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    line.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn row() -> AuditRow<'static> {
        AuditRow {
            occurred_at: b"2026-07-01T12:00:00.000000Z",
            event_id: b"0190a000-0000-7000-8000-000000000001",
            request_id: b"req,\"1\"",
            tenant_id: b"acme",
            user_id: b"",
            team_id: b"search",
            service: b"svc",
            feature: b"smart-search",
            environment: b"prod",
            provider: b"openai",
            model: b"gpt-4o",
            status: b"ok",
            http_status: Some(200),
            latency_ms: Some(0),
            input_tokens: 2200,
            cache_read_tokens: 1200,
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
            output_tokens: 620,
            reasoning_tokens: 18_446_744_073_709_551_615,
            currency: b"USD",
            cost: b"0.00453",
            price_version: b"abc@-inf",
            pricing_status: b"priced",
            attribution_status: b"ok",
        }
    }

    #[test]
    fn a_row_is_quoted_only_where_needed_and_counts_all_input() {
        let mut line = Vec::new();
        encode_row(&mut line, &row());
        // 2,200 uncached + 1,200 cache reads = 3,400 input tokens, of which 1,200 cached.
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "2026-07-01T12:00:00.000000Z,\"req,\"\"1\"\"\",0190a000-0000-7000-8000-000000000001,\
             acme,,search,svc,smart-search,prod,openai,gpt-4o,3400,1200,0,620,\
             18446744073709551615,0.00453,USD,0,ok,200,abc@-inf,priced,ok\n"
        );
    }

    #[test]
    fn the_comment_line_is_one_csv_field() {
        let opts = AuditOptions {
            start: "2026-07-01T00:00:00Z".parse().unwrap(),
            end: "2026-08-01T00:00:00Z".parse().unwrap(),
            tenant: Some("a,b".into()),
            comment: true,
        };
        let c = comment_line(&opts);
        assert!(c.starts_with("# "));
        assert!(
            !c.contains(',') && !c.contains('"') && !c.contains('\n'),
            "{c}"
        );
        assert!(c.contains("tenant: a_b."), "{c}");
    }
}
