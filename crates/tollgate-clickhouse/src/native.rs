//! Events encoded in ClickHouse's `Native` format (columnar, binary) for inserts: the server
//! takes whole columns at once instead of parsing text row by row, about three times less work
//! for the `events` table's 50 columns (see BENCHMARKS.md). Low-cardinality columns are sent
//! as their plain types (`String`, `Nullable(String)`) with the setting
//! `low_cardinality_allow_in_native_format = 0`; the server builds the dictionaries.
//!
//! A block: column count and row count (variable-length integers), then per column its name,
//! its type name and its data: little-endian fixed-width values; strings as a length and the
//! bytes; `Nullable(T)` as one null byte per row followed by `T` (a default where null); a
//! `Map(String, String)` as cumulative `UInt64` offsets, then all keys, then all values.

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_core::UsageEvent;
use tollgate_core::money::to_scaled_e12;
use tollgate_ledger::{LedgerError, Result};

fn varuint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    varuint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// One column being filled.
enum Col {
    Str(Vec<u8>),
    NStr(Vec<u8>, Vec<u8>),
    Fixed(Vec<u8>),
    NFixed(Vec<u8>, Vec<u8>, usize),
    Map(Vec<u64>, Vec<u8>, Vec<u8>),
}

/// The events columns in insert order, with the types sent.
pub const COLUMNS: [(&str, &str); 50] = [
    ("event_id", "String"),
    ("request_id", "Nullable(String)"),
    ("attempt", "UInt32"),
    ("parent_request_id", "Nullable(String)"),
    ("occurred_at", "DateTime64(6, 'UTC')"),
    ("completed_at", "Nullable(DateTime64(6, 'UTC'))"),
    ("trace_id", "Nullable(String)"),
    ("span_id", "Nullable(String)"),
    ("session_id", "Nullable(String)"),
    ("team_id", "Nullable(String)"),
    ("cost_center", "Nullable(String)"),
    ("service", "Nullable(String)"),
    ("feature", "Nullable(String)"),
    ("environment", "Nullable(String)"),
    ("tenant_id", "Nullable(String)"),
    ("user_id", "Nullable(String)"),
    ("api_key_id", "Nullable(String)"),
    ("region", "Nullable(String)"),
    ("tags", "Map(String, String)"),
    ("attribution_status", "String"),
    ("provider", "String"),
    ("model_requested", "Nullable(String)"),
    ("model", "String"),
    ("operation", "String"),
    ("service_tier", "Nullable(String)"),
    ("status", "String"),
    ("http_status", "Nullable(UInt16)"),
    ("streamed", "Bool"),
    ("latency_ms", "Nullable(UInt64)"),
    ("ttft_ms", "Nullable(UInt64)"),
    ("input_tokens", "UInt64"),
    ("cache_read_tokens", "UInt64"),
    ("cache_write_tokens", "UInt64"),
    ("cache_write_1h_tokens", "UInt64"),
    ("output_tokens", "UInt64"),
    ("reasoning_tokens", "UInt64"),
    ("units", "Map(String, String)"),
    ("currency", "String"),
    ("cost", "Nullable(String)"),
    ("cost_e12", "Nullable(Int64)"),
    ("cost_input_e12", "Nullable(Int64)"),
    ("cost_cache_read_e12", "Nullable(Int64)"),
    ("cost_cache_write_e12", "Nullable(Int64)"),
    ("cost_cache_write_1h_e12", "Nullable(Int64)"),
    ("cost_output_e12", "Nullable(Int64)"),
    ("cost_units", "Map(String, String)"),
    ("price_version", "Nullable(String)"),
    ("pricing_status", "String"),
    ("ingested_at", "DateTime64(6, 'UTC')"),
    ("seq", "UInt64"),
];

/// `INSERT INTO events (...)` column list for [`COLUMNS`].
pub fn column_list() -> String {
    COLUMNS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
}

/// A block of events under construction.
pub struct EventBlock {
    rows: u64,
    cols: Vec<Col>,
}

impl Default for EventBlock {
    fn default() -> Self {
        EventBlock::new()
    }
}

impl EventBlock {
    pub fn new() -> EventBlock {
        let cols = COLUMNS
            .iter()
            .map(|(_, t)| match *t {
                "String" => Col::Str(Vec::new()),
                "Nullable(String)" => Col::NStr(Vec::new(), Vec::new()),
                "Map(String, String)" => Col::Map(Vec::new(), Vec::new(), Vec::new()),
                "UInt32" => Col::Fixed(Vec::new()),
                "Nullable(UInt16)" => Col::NFixed(Vec::new(), Vec::new(), 2),
                "Nullable(UInt64)" | "Nullable(Int64)" | "Nullable(DateTime64(6, 'UTC'))" => {
                    Col::NFixed(Vec::new(), Vec::new(), 8)
                }
                _ => Col::Fixed(Vec::new()),
            })
            .collect();
        EventBlock { rows: 0, cols }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends one event.
    pub fn push(&mut self, e: &UsageEvent, ingested_at: Timestamp, seq: u64) -> Result<()> {
        let a = &e.attribution;
        let p = &e.pricing;
        let e12 = |c: Decimal| -> Result<i64> {
            i64::try_from(to_scaled_e12(c)?).map_err(|_| {
                LedgerError::Refused(format!("cost {c} of event {} is too large", e.event_id))
            })
        };
        let (cost, classes): (Option<String>, [Option<i64>; 6]) = match p.cost {
            Some(c) => {
                let b = &p.cost_breakdown;
                (
                    Some(c.normalize().to_string()),
                    [
                        Some(e12(c)?),
                        Some(e12(b.input)?),
                        Some(e12(b.cache_read)?),
                        Some(e12(b.cache_write)?),
                        Some(e12(b.cache_write_1h)?),
                        Some(e12(b.output)?),
                    ],
                )
            }
            None => (None, [None; 6]),
        };
        let u = &e.usage;
        let units: Vec<(&str, String)> = u
            .units
            .iter()
            .map(|(k, v)| (k.as_str(), v.normalize().to_string()))
            .collect();
        let cost_units: Vec<(&str, String)> = if p.cost.is_some() {
            p.cost_breakdown
                .units
                .iter()
                .map(|(k, v)| (k.as_str(), v.normalize().to_string()))
                .collect()
        } else {
            Vec::new()
        };
        let tags: Vec<(&str, String)> = a
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let mut c = self.cols.iter_mut();
        let mut next = || {
            c.next()
                .ok_or_else(|| LedgerError::Corrupt("native columns".into()))
        };
        let s = |col: &mut Col, v: &str| {
            if let Col::Str(b) = col {
                string(b, v.as_bytes());
            }
        };
        let ns = |col: &mut Col, v: Option<&str>| {
            if let Col::NStr(n, b) = col {
                n.push(u8::from(v.is_none()));
                string(b, v.unwrap_or("").as_bytes());
            }
        };
        let fixed = |col: &mut Col, bytes: &[u8]| {
            if let Col::Fixed(b) = col {
                b.extend_from_slice(bytes);
            }
        };
        let nfixed = |col: &mut Col, v: Option<&[u8]>| {
            if let Col::NFixed(n, b, w) = col {
                n.push(u8::from(v.is_none()));
                match v {
                    Some(x) => b.extend_from_slice(x),
                    None => b.extend(std::iter::repeat_n(0u8, *w)),
                }
            }
        };
        let map = |col: &mut Col, kv: &[(&str, String)]| {
            if let Col::Map(o, k, v) = col {
                let last = o.last().copied().unwrap_or(0);
                o.push(last + kv.len() as u64);
                for (key, val) in kv {
                    string(k, key.as_bytes());
                    string(v, val.as_bytes());
                }
            }
        };
        let micros = |t: Timestamp| t.as_microsecond().to_le_bytes();
        s(next()?, &e.event_id);
        ns(next()?, e.request_id.as_deref());
        fixed(next()?, &e.attempt.to_le_bytes());
        ns(next()?, e.parent_request_id.as_deref());
        fixed(next()?, &micros(e.occurred_at));
        nfixed(next()?, e.completed_at.map(micros).as_ref().map(|b| &b[..]));
        ns(next()?, e.trace_id.as_deref());
        ns(next()?, e.span_id.as_deref());
        ns(next()?, e.session_id.as_deref());
        ns(next()?, a.team_id.as_deref());
        ns(next()?, a.cost_center.as_deref());
        ns(next()?, a.service.as_deref());
        ns(next()?, a.feature.as_deref());
        ns(next()?, a.environment.map(|x| x.as_str()));
        ns(next()?, a.tenant_id.as_deref());
        ns(next()?, a.user_id.as_deref());
        ns(next()?, a.api_key_id.as_deref());
        ns(next()?, a.region.as_deref());
        map(next()?, &tags);
        s(next()?, e.attribution_status.as_str());
        s(next()?, &e.provider);
        ns(next()?, e.model_requested.as_deref());
        s(next()?, &e.model);
        s(next()?, e.operation.as_str());
        ns(next()?, e.service_tier.as_deref());
        s(next()?, e.status.as_str());
        nfixed(
            next()?,
            e.http_status.map(u16::to_le_bytes).as_ref().map(|b| &b[..]),
        );
        fixed(next()?, &[u8::from(e.streamed)]);
        nfixed(
            next()?,
            e.latency_ms.map(u64::to_le_bytes).as_ref().map(|b| &b[..]),
        );
        nfixed(
            next()?,
            e.ttft_ms.map(u64::to_le_bytes).as_ref().map(|b| &b[..]),
        );
        for v in [
            u.input_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            u.cache_write_1h_tokens,
            u.output_tokens,
            u.reasoning_tokens,
        ] {
            fixed(next()?, &v.to_le_bytes());
        }
        map(next()?, &units);
        s(next()?, p.currency.as_str());
        ns(next()?, cost.as_deref());
        for v in classes {
            nfixed(next()?, v.map(i64::to_le_bytes).as_ref().map(|b| &b[..]));
        }
        map(next()?, &cost_units);
        ns(next()?, p.price_version.as_deref());
        s(next()?, p.pricing_status.as_str());
        fixed(next()?, &micros(ingested_at));
        fixed(next()?, &seq.to_le_bytes());
        self.rows += 1;
        Ok(())
    }

    /// The block in `Native` format.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .cols
            .iter()
            .map(|c| match c {
                Col::Str(b) | Col::Fixed(b) => b.len(),
                Col::NStr(n, b) | Col::NFixed(n, b, _) => n.len() + b.len(),
                Col::Map(o, k, v) => o.len() * 8 + k.len() + v.len(),
            })
            .sum();
        let mut out = Vec::with_capacity(size + 4096);
        varuint(&mut out, COLUMNS.len() as u64);
        varuint(&mut out, self.rows);
        for ((name, ty), col) in COLUMNS.iter().zip(&self.cols) {
            string(&mut out, name.as_bytes());
            string(&mut out, ty.as_bytes());
            match col {
                Col::Str(b) | Col::Fixed(b) => out.extend_from_slice(b),
                Col::NStr(n, b) | Col::NFixed(n, b, _) => {
                    out.extend_from_slice(n);
                    out.extend_from_slice(b);
                }
                Col::Map(o, k, v) => {
                    for x in o {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                    out.extend_from_slice(k);
                    out.extend_from_slice(v);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn varuints_and_strings() {
        let mut b = Vec::new();
        varuint(&mut b, 1);
        varuint(&mut b, 300);
        string(&mut b, b"ab");
        // 300 = 0b1_0010_1100: low seven bits 0x2c with the continuation bit, then 0x02.
        assert_eq!(b, vec![1, 0xac, 0x02, 2, b'a', b'b']);
    }
}
