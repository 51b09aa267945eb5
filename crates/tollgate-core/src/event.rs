//! The usage event: one record per LLM call, with the canonical field names of
//! `event-schema.md`, and the validation every import goes through.
//!
//! Invariants of a validated [`UsageEvent`]:
//! - token classes are disjoint (`input_tokens` excludes cache reads and writes) and
//!   `reasoning_tokens <= output_tokens`;
//! - instants are UTC, truncated to microseconds;
//! - a priced event has a cost equal to the sum of its breakdown, with at most 12 decimals;
//!   an unpriced event has no cost at all (never zero);
//! - an event missing required attribution is `quarantined`, never dropped.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::money::{Currency, LEDGER_SCALE, parse_decimal};
use crate::vocab::{AttributionStatus, Environment, Operation, PricingStatus, Status};

/// A validation problem in one field of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Token counts in disjoint classes, plus other billable units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cache_write_1h_tokens: u64,
    pub output_tokens: u64,
    /// The part of `output_tokens` spent on reasoning; never priced on top.
    pub reasoning_tokens: u64,
    /// Other billable quantities (`images`, `web_search_requests`, `audio_seconds`, ...).
    pub units: BTreeMap<String, Decimal>,
}

impl Usage {
    /// Total input as OpenTelemetry and the provider usage APIs count it.
    pub fn total_input(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_read_tokens)
            .saturating_add(self.cache_write_tokens)
            .saturating_add(self.cache_write_1h_tokens)
    }
}

/// Cost per class. Every amount is exact; the total is their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostBreakdown {
    pub input: Decimal,
    pub cache_read: Decimal,
    pub cache_write: Decimal,
    pub cache_write_1h: Decimal,
    pub output: Decimal,
    pub units: BTreeMap<String, Decimal>,
}

impl CostBreakdown {
    pub fn total(&self) -> Decimal {
        let mut t =
            self.input + self.cache_read + self.cache_write + self.cache_write_1h + self.output;
        for v in self.units.values() {
            t += *v;
        }
        t
    }

    /// `(name, amount)` for every class, token classes first.
    pub fn entries(&self) -> Vec<(&str, Decimal)> {
        let mut v = vec![
            ("input", self.input),
            ("cache_read", self.cache_read),
            ("cache_write", self.cache_write),
            ("cache_write_1h", self.cache_write_1h),
            ("output", self.output),
        ];
        for (k, a) in &self.units {
            v.push((k.as_str(), *a));
        }
        v
    }

    fn set(&mut self, key: &str, value: Decimal) {
        match key {
            "input" => self.input = value,
            "cache_read" => self.cache_read = value,
            "cache_write" => self.cache_write = value,
            "cache_write_1h" => self.cache_write_1h = value,
            "output" => self.output = value,
            other => {
                self.units.insert(other.to_string(), value);
            }
        }
    }
}

/// Who, what and where. `S` is the type of its texts (see [`UsageEvent`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution<S = String> {
    pub team_id: Option<S>,
    pub cost_center: Option<S>,
    pub service: Option<S>,
    pub feature: Option<S>,
    pub environment: Option<Environment>,
    pub tenant_id: Option<S>,
    pub user_id: Option<S>,
    pub api_key_id: Option<S>,
    pub region: Option<S>,
    pub tags: BTreeMap<String, String>,
}

impl<S> Attribution<S> {
    /// Names of the required attribution fields that are missing.
    pub fn missing_required(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.team_id.is_none() {
            m.push("team_id");
        }
        if self.service.is_none() {
            m.push("service");
        }
        if self.feature.is_none() {
            m.push("feature");
        }
        if self.environment.is_none() {
            m.push("environment");
        }
        m
    }
}

/// Price and cost as recorded on the event. `S` is the type of its texts (see
/// [`UsageEvent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing<S = String> {
    pub currency: Currency,
    /// `None` exactly when the event is unpriced.
    pub cost: Option<Decimal>,
    pub cost_breakdown: CostBreakdown,
    pub price_version: Option<S>,
    pub pricing_status: PricingStatus,
}

impl<S> Pricing<S> {
    pub fn unpriced() -> Self {
        Pricing {
            currency: Currency::USD,
            cost: None,
            cost_breakdown: CostBreakdown::default(),
            price_version: None,
            pricing_status: PricingStatus::Unpriced,
        }
    }
}

/// One LLM call.
///
/// `S` is the type of its texts: owned `String`s everywhere an event is kept, or
/// `Cow<'a, str>` borrowed from the line it was read from ([`EventRef`]), which the import
/// validates, prices and encodes without allocating a string per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent<S = String> {
    pub event_id: S,
    pub request_id: Option<S>,
    pub attempt: u32,
    pub parent_request_id: Option<S>,
    pub occurred_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub trace_id: Option<S>,
    pub span_id: Option<S>,
    pub session_id: Option<S>,
    pub attribution: Attribution<S>,
    pub attribution_status: AttributionStatus,
    pub provider: S,
    pub model_requested: Option<S>,
    pub model: S,
    pub operation: Operation,
    pub service_tier: Option<S>,
    pub status: Status,
    pub http_status: Option<u16>,
    pub streamed: bool,
    pub latency_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub usage: Usage,
    pub pricing: Pricing<S>,
}

/// An event whose texts borrow from the record it was read from (escaped JSON strings are
/// owned).
pub type EventRef<'a> = UsageEvent<Cow<'a, str>>;

impl<S: std::ops::Deref<Target = str>> UsageEvent<S> {
    /// Whether this event is billed at batch prices.
    pub fn is_batch(&self) -> bool {
        self.operation == Operation::Batch || self.service_tier.as_deref() == Some("batch")
    }
}

impl<S> UsageEvent<S> {
    /// The same event with every text turned into a `T` by `f` (e.g. `String::from` to own
    /// the texts of an [`EventRef`]).
    pub fn map_texts<T>(self, mut f: impl FnMut(S) -> T) -> UsageEvent<T> {
        let a = self.attribution;
        let p = self.pricing;
        UsageEvent {
            event_id: f(self.event_id),
            request_id: self.request_id.map(&mut f),
            attempt: self.attempt,
            parent_request_id: self.parent_request_id.map(&mut f),
            occurred_at: self.occurred_at,
            completed_at: self.completed_at,
            trace_id: self.trace_id.map(&mut f),
            span_id: self.span_id.map(&mut f),
            session_id: self.session_id.map(&mut f),
            attribution: Attribution {
                team_id: a.team_id.map(&mut f),
                cost_center: a.cost_center.map(&mut f),
                service: a.service.map(&mut f),
                feature: a.feature.map(&mut f),
                environment: a.environment,
                tenant_id: a.tenant_id.map(&mut f),
                user_id: a.user_id.map(&mut f),
                api_key_id: a.api_key_id.map(&mut f),
                region: a.region.map(&mut f),
                tags: a.tags,
            },
            attribution_status: self.attribution_status,
            provider: f(self.provider),
            model_requested: self.model_requested.map(&mut f),
            model: f(self.model),
            operation: self.operation,
            service_tier: self.service_tier.map(&mut f),
            status: self.status,
            http_status: self.http_status,
            streamed: self.streamed,
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
            usage: self.usage,
            pricing: Pricing {
                currency: p.currency,
                cost: p.cost,
                cost_breakdown: p.cost_breakdown,
                price_version: p.price_version.map(&mut f),
                pricing_status: p.pricing_status,
            },
        }
    }
}

/// Every canonical field name, in the order exports write them.
pub const FIELDS: &[&str] = &[
    "event_id",
    "request_id",
    "attempt",
    "parent_request_id",
    "occurred_at",
    "completed_at",
    "trace_id",
    "span_id",
    "session_id",
    "team_id",
    "cost_center",
    "service",
    "feature",
    "environment",
    "tenant_id",
    "user_id",
    "api_key_id",
    "region",
    "tags",
    "attribution_status",
    "provider",
    "model_requested",
    "model",
    "operation",
    "service_tier",
    "status",
    "http_status",
    "streamed",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "units",
    "currency",
    "cost",
    "cost_breakdown",
    "price_version",
    "pricing_status",
];

/// A decimal quantity as read: the text of a JSON number or string (never through a float),
/// or a CSV cell.
#[derive(Debug)]
pub enum RawDecimal<'a> {
    /// A JSON value, number or string, exactly as written.
    Json(&'a serde_json::value::RawValue),
    /// A plain text cell (CSV).
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawDecimal<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a serde_json::value::RawValue>::deserialize(d).map(RawDecimal::Json)
    }
}

impl RawDecimal<'_> {
    /// True when the value was written as a JSON number.
    fn is_json_number(&self) -> bool {
        matches!(self, RawDecimal::Json(r) if !r.get().starts_with('"'))
    }

    fn text(&self) -> Cow<'_, str> {
        match self {
            RawDecimal::Text(t) => Cow::Borrowed(t.as_ref()),
            RawDecimal::Json(r) => {
                let g = r.get();
                if g.starts_with('"') {
                    serde_json::from_str::<Cow<'_, str>>(g).unwrap_or(Cow::Borrowed(g))
                } else {
                    Cow::Borrowed(g)
                }
            }
        }
    }
}

/// An event as read from JSON or CSV, before validation. Field names are the canonical ones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent<'a> {
    #[serde(borrow)]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub request_id: Option<Cow<'a, str>>,
    pub attempt: Option<u32>,
    #[serde(borrow)]
    pub parent_request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub occurred_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub completed_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub trace_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub span_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub team_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub cost_center: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub service: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub feature: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub environment: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub tenant_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub api_key_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub region: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub tags: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(borrow)]
    pub attribution_status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub provider: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub model_requested: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub operation: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub service_tier: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub status: Option<Cow<'a, str>>,
    pub http_status: Option<u16>,
    pub streamed: Option<bool>,
    pub latency_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub input_tokens: Option<u64>,
    pub cache_read_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    pub cache_write_1h_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    #[serde(borrow)]
    pub units: Option<BTreeMap<Cow<'a, str>, RawDecimal<'a>>>,
    #[serde(borrow)]
    pub currency: Option<Cow<'a, str>>,
    /// Money must be a string in JSON; a JSON number is refused (see validation).
    #[serde(borrow)]
    pub cost: Option<RawDecimal<'a>>,
    #[serde(borrow)]
    pub cost_breakdown: Option<BTreeMap<Cow<'a, str>, RawDecimal<'a>>>,
    #[serde(borrow)]
    pub price_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub pricing_status: Option<Cow<'a, str>>,
}

/// Checks a UUID in its 8-4-4-4-12 hex text form and returns it lower-cased.
pub fn normalize_uuid(field: &str, s: &str) -> Result<String, FieldError> {
    uuid_text(field, Cow::Borrowed(s)).map(Cow::into_owned)
}

/// The text lower-cased (ASCII), copied only when it has an upper-case letter.
fn lower(v: Cow<'_, str>) -> Cow<'_, str> {
    if v.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(v.to_ascii_lowercase())
    } else {
        v
    }
}

/// [`normalize_uuid`] keeping a text that is already lower case as it is.
fn uuid_text<'a>(field: &str, v: Cow<'a, str>) -> Result<Cow<'a, str>, FieldError> {
    let s = &*v;
    let b = s.as_bytes();
    // Five groups of hex digits with a dash between each two.
    let hex = |r: std::ops::Range<usize>| b.get(r).is_some_and(all_hex);
    let ok = b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b.get(i) == Some(&b'-'))
        && hex(0..8)
        && hex(9..13)
        && hex(14..18)
        && hex(19..23)
        && hex(24..36);
    if ok {
        Ok(lower(v))
    } else {
        Err(FieldError::new(
            field,
            format!("{s:?} is not a UUID (expected 8-4-4-4-12 hex digits, e.g. a UUIDv7)"),
        ))
    }
}

/// Whether every byte is an ASCII hex digit. No early exit: ids are random hex, on which a
/// branch per byte (digit or letter?) is mispredicted half the time.
fn all_hex(b: &[u8]) -> bool {
    b.iter().fold(true, |ok, &c| {
        ok & (c.is_ascii_digit() | matches!(c | 0x20, b'a'..=b'f'))
    })
}

/// Parses an RFC 3339 instant with an explicit offset, in UTC, truncated to microseconds.
pub fn parse_instant(field: &str, s: &str) -> Result<Timestamp, FieldError> {
    if let Some(t) = utc_instant_fast(s) {
        return Ok(t);
    }
    let t: Timestamp = s.parse().map_err(|_| {
        FieldError::new(
            field,
            format!("{s:?} is not an RFC 3339 instant with an offset (e.g. 2026-07-01T12:00:00Z)"),
        )
    })?;
    truncate_to_micros(t).ok_or_else(|| FieldError::new(field, format!("{s:?} is out of range")))
}

/// The common shape of an instant, `YYYY-MM-DDTHH:MM:SS[.fraction]Z` from 1970 to 9998,
/// read without jiff's general parser: the same instant `parse_instant` gives, truncated to
/// microseconds, or `None` for anything else (another shape, an offset, a leap second, an
/// invalid date), which jiff then reads or explains. Hot path of ingest; tested against
/// jiff.
fn utc_instant_fast(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b.get(r)?.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // The fraction: 1 to 9 digits, of which microseconds are kept.
    let (micros, rest) = match b.get(19) {
        Some(b'.') => {
            let digits = b
                .get(20..)?
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if !(1..=9).contains(&digits) {
                return None;
            }
            let kept = digits.min(6);
            let mut us = num(20..20 + kept)?;
            for _ in kept..6 {
                us *= 10;
            }
            (us, 20 + digits)
        }
        _ => (0, 19),
    };
    if b.len() != rest + 1 || !at(rest, b'Z') {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1970..=9998).contains(&year)
        || !(1..=month_days).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days since 1970-01-01 from the civil date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Timestamp::from_microsecond(secs * 1_000_000 + micros).ok()
}

/// Drops sub-microsecond digits (the ledger keeps microseconds).
pub fn truncate_to_micros(t: Timestamp) -> Option<Timestamp> {
    Timestamp::from_microsecond(t.as_microsecond()).ok()
}

/// Formats an instant as the ledger stores it: UTC, exactly six fraction digits, `Z`.
pub fn format_instant(t: Timestamp) -> String {
    let mut s = String::with_capacity(27);
    write_instant(&mut s, t);
    s
}

/// Appends `t` in the ledger's instant format (`2026-07-01T12:00:00.000000Z`). Hot path of
/// ingest: civil date from the day number (Howard Hinnant's algorithm), no allocation.
pub fn write_instant(out: &mut String, t: Timestamp) {
    let micros = t.as_microsecond();
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        out.push_str(&format!("{t:.6}"));
        return;
    }
    let mut buf = [0u8; 27];
    let put = |buf: &mut [u8; 27], at: usize, v: i64, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            // v is a small non-negative number here; the remainder is a digit.
            buf[at + i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
            v /= 10;
        }
    };
    put(&mut buf, 0, year, 4);
    buf[4] = b'-';
    put(&mut buf, 5, month, 2);
    buf[7] = b'-';
    put(&mut buf, 8, day, 2);
    buf[10] = b'T';
    put(&mut buf, 11, sod / 3600, 2);
    buf[13] = b':';
    put(&mut buf, 14, (sod / 60) % 60, 2);
    buf[16] = b':';
    put(&mut buf, 17, sod % 60, 2);
    buf[19] = b'.';
    put(&mut buf, 20, frac, 6);
    buf[26] = b'Z';
    out.push_str(std::str::from_utf8(&buf).unwrap_or("0000-00-00T00:00:00.000000Z"));
}

/// Whether a text is empty or only whitespace. Most values start with a visible ASCII
/// character, which settles it without trimming.
fn is_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        None => true,
        Some(b) if b.is_ascii_graphic() => false,
        Some(_) => s.trim().is_empty(),
    }
}

/// A text that is not blank, checked for length; borrowed as given.
fn opt_str<'s>(field: &str, v: &'s Option<Cow<'_, str>>) -> Result<Option<&'s str>, FieldError> {
    match v.as_deref() {
        None => Ok(None),
        Some(s) if is_blank(s) => Ok(None),
        Some(s) if s.len() > 512 => Err(FieldError::new(
            field,
            format!("value is {} bytes long; at most 512 are allowed", s.len()),
        )),
        Some(s) => Ok(Some(s)),
    }
}

/// A text that is not blank, checked for length, as the event's text type.
fn opt_string<'a, S: From<Cow<'a, str>>>(
    field: &str,
    v: Option<Cow<'a, str>>,
) -> Result<Option<S>, FieldError> {
    if opt_str(field, &v)?.is_none() {
        return Ok(None);
    }
    Ok(v.map(S::from))
}

/// An OpenTelemetry id: `len` hex digits (lower-cased).
fn hex_id<'a, S: From<Cow<'a, str>>>(
    field: &str,
    v: Option<Cow<'a, str>>,
    len: usize,
) -> Result<Option<S>, FieldError> {
    match opt_str(field, &v)? {
        None => return Ok(None),
        Some(s) if s.len() == len && all_hex(s.as_bytes()) => {}
        Some(s) => {
            return Err(FieldError::new(
                field,
                format!("{s:?} is not an OpenTelemetry id ({len} hex digits)"),
            ));
        }
    }
    Ok(v.map(|v| S::from(lower(v))))
}

fn parse_vocab<T: std::str::FromStr<Err = crate::error::CoreError>>(
    field: &str,
    v: Option<&str>,
) -> Result<Option<T>, FieldError> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<T>().map(Some).map_err(|e| {
            let msg = e.to_string();
            let msg = msg
                .strip_prefix(&format!("{field}: "))
                .unwrap_or(&msg)
                .to_string();
            FieldError::new(field, msg)
        }),
    }
}

fn units_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl<'a> RawEvent<'a> {
    /// Validates and normalises the record. Missing attribution is not an error: the event
    /// becomes `quarantined`.
    pub fn validate(self) -> Result<UsageEvent, FieldError> {
        self.validate_as()
    }

    /// [`RawEvent::validate`] into an event whose texts are `S`: `String`, or `Cow<'a, str>`
    /// to borrow them from the record ([`EventRef`]).
    pub fn validate_as<S: From<Cow<'a, str>>>(self) -> Result<UsageEvent<S>, FieldError> {
        let event_id = match self.event_id {
            Some(s) if !s.is_empty() => S::from(uuid_text("event_id", s)?),
            _ => return Err(FieldError::new("event_id", "missing (required)")),
        };
        let occurred_at = match self.occurred_at.as_deref() {
            Some(s) if !s.is_empty() => parse_instant("occurred_at", s)?,
            _ => return Err(FieldError::new("occurred_at", "missing (required)")),
        };
        let completed_at = match self.completed_at.as_deref() {
            Some(s) if !s.is_empty() => Some(parse_instant("completed_at", s)?),
            _ => None,
        };
        if let Some(c) = completed_at
            && c < occurred_at
        {
            return Err(FieldError::new(
                "completed_at",
                format!(
                    "{} is before occurred_at {}",
                    format_instant(c),
                    format_instant(occurred_at)
                ),
            ));
        }
        let attempt = self.attempt.unwrap_or(1);
        if attempt == 0 {
            return Err(FieldError::new(
                "attempt",
                "must be 1 or more (1 = first attempt)",
            ));
        }
        let provider = opt_string("provider", self.provider)?
            .ok_or_else(|| FieldError::new("provider", "missing (required)"))?;
        let model = opt_string("model", self.model)?
            .ok_or_else(|| FieldError::new("model", "missing (required)"))?;

        let mut tags = BTreeMap::new();
        for (k, v) in self.tags.unwrap_or_default() {
            if k.is_empty() {
                return Err(FieldError::new("tags", "a tag has an empty key"));
            }
            tags.insert(k.into_owned(), v.into_owned());
        }
        let attribution = Attribution {
            team_id: opt_string("team_id", self.team_id)?,
            cost_center: opt_string("cost_center", self.cost_center)?,
            service: opt_string("service", self.service)?,
            feature: opt_string("feature", self.feature)?,
            environment: parse_vocab("environment", self.environment.as_deref())?,
            tenant_id: opt_string("tenant_id", self.tenant_id)?,
            user_id: opt_string("user_id", self.user_id)?,
            api_key_id: opt_string("api_key_id", self.api_key_id)?,
            region: opt_string("region", self.region)?,
            tags,
        };
        let given_status: Option<AttributionStatus> =
            parse_vocab("attribution_status", self.attribution_status.as_deref())?;
        let attribution_status = if attribution.missing_required().is_empty() {
            match given_status {
                // A complete record cannot stay quarantined: it has what it lacked.
                Some(AttributionStatus::Quarantined) | None => AttributionStatus::Ok,
                Some(s) => s,
            }
        } else {
            AttributionStatus::Quarantined
        };

        let output_tokens = self.output_tokens.unwrap_or(0);
        let reasoning_tokens = self.reasoning_tokens.unwrap_or(0);
        if reasoning_tokens > output_tokens {
            return Err(FieldError::new(
                "reasoning_tokens",
                format!(
                    "{reasoning_tokens} is more than output_tokens {output_tokens}; reasoning tokens are part of output"
                ),
            ));
        }
        let mut units = BTreeMap::new();
        for (k, v) in self.units.unwrap_or_default() {
            if !units_key_ok(&k) {
                return Err(FieldError::new(
                    "units",
                    format!("unit name {k:?} must be lowercase letters, digits and _"),
                ));
            }
            let d = parse_decimal(&format!("units.{k}"), &v.text())
                .map_err(|e| FieldError::new(format!("units.{k}"), e.to_string()))?;
            if d.is_sign_negative() {
                return Err(FieldError::new(
                    format!("units.{k}"),
                    "must not be negative",
                ));
            }
            if d.normalize().scale() > 3 {
                return Err(FieldError::new(
                    format!("units.{k}"),
                    format!("{d} has more than 3 decimal places"),
                ));
            }
            units.insert(k.into_owned(), d.normalize());
        }
        let usage = Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            cache_read_tokens: self.cache_read_tokens.unwrap_or(0),
            cache_write_tokens: self.cache_write_tokens.unwrap_or(0),
            cache_write_1h_tokens: self.cache_write_1h_tokens.unwrap_or(0),
            output_tokens,
            reasoning_tokens,
            units,
        };

        let currency = match self.currency.as_deref() {
            None | Some("") => Currency::USD,
            Some(c) => Currency::parse(c).map_err(|_| {
                FieldError::new(
                    "currency",
                    format!("{c:?} is not a three-letter ISO 4217 code"),
                )
            })?,
        };
        let pricing = validate_pricing(
            currency,
            self.cost,
            self.cost_breakdown,
            self.price_version,
            self.pricing_status.as_deref(),
        )?;

        Ok(UsageEvent {
            event_id,
            request_id: opt_string("request_id", self.request_id)?,
            attempt,
            parent_request_id: opt_string("parent_request_id", self.parent_request_id)?,
            occurred_at,
            completed_at,
            trace_id: hex_id("trace_id", self.trace_id, 32)?,
            span_id: hex_id("span_id", self.span_id, 16)?,
            session_id: opt_string("session_id", self.session_id)?,
            attribution,
            attribution_status,
            provider,
            model_requested: opt_string("model_requested", self.model_requested)?,
            model,
            operation: parse_vocab("operation", self.operation.as_deref())?
                .unwrap_or(Operation::Chat),
            service_tier: opt_string("service_tier", self.service_tier)?,
            status: parse_vocab("status", self.status.as_deref())?.unwrap_or(Status::Ok),
            http_status: self.http_status,
            streamed: self.streamed.unwrap_or(false),
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
            usage,
            pricing,
        })
    }
}

fn money_text(field: &str, v: &RawDecimal<'_>) -> Result<Decimal, FieldError> {
    if v.is_json_number() {
        let t = v.text();
        return Err(FieldError::new(
            field,
            format!(
                "{t} is a JSON number; write money as a decimal string (\"{t}\") so no float touches it"
            ),
        ));
    }
    let d = parse_decimal(field, &v.text()).map_err(|e| {
        FieldError::new(field, {
            let m = e.to_string();
            m.strip_prefix(&format!("{field}: "))
                .unwrap_or(&m)
                .to_string()
        })
    })?;
    if d.normalize().scale() > LEDGER_SCALE {
        return Err(FieldError::new(
            field,
            format!(
                "{d} has more than {LEDGER_SCALE} decimal places; the ledger keeps money to 1e-12"
            ),
        ));
    }
    if d.is_sign_negative() && !d.is_zero() {
        return Err(FieldError::new(
            field,
            format!(
                "{d} is negative; usage costs are never negative (credits and corrections are recorded separately)"
            ),
        ));
    }
    Ok(d.normalize())
}

fn validate_pricing<'a, S: From<Cow<'a, str>>>(
    currency: Currency,
    cost: Option<RawDecimal<'_>>,
    breakdown: Option<BTreeMap<Cow<'_, str>, RawDecimal<'_>>>,
    price_version: Option<Cow<'a, str>>,
    status: Option<&str>,
) -> Result<Pricing<S>, FieldError> {
    let status: Option<PricingStatus> = parse_vocab("pricing_status", status)?;
    let cost = match &cost {
        None => None,
        Some(v) if v.text().is_empty() || &*v.text() == "null" => None,
        Some(v) => Some(money_text("cost", v)?),
    };
    let mut cb = CostBreakdown::default();
    if let Some(b) = &breakdown {
        for (k, v) in b {
            if !units_key_ok(k) {
                return Err(FieldError::new(
                    "cost_breakdown",
                    format!("class name {k:?} is not valid"),
                ));
            }
            cb.set(k, money_text(&format!("cost_breakdown.{k}"), v)?);
        }
    }
    match cost {
        None => {
            if status == Some(PricingStatus::Priced) {
                return Err(FieldError::new(
                    "cost",
                    "missing, but pricing_status is \"priced\"; give the cost or leave both out to have Tollgate price it",
                ));
            }
            if breakdown.is_some() {
                return Err(FieldError::new(
                    "cost",
                    "missing, but cost_breakdown is given",
                ));
            }
            Ok(Pricing {
                currency,
                cost: None,
                cost_breakdown: CostBreakdown::default(),
                // Tollgate prices it at ingest and stamps its own version; an event that stays
                // unpriced has no version. "estimated" (usage estimated, e.g. a cut stream)
                // survives pricing.
                price_version: None,
                pricing_status: if status == Some(PricingStatus::Estimated) {
                    PricingStatus::Estimated
                } else {
                    PricingStatus::Unpriced
                },
            })
        }
        Some(c) => {
            if status == Some(PricingStatus::Unpriced) {
                return Err(FieldError::new(
                    "pricing_status",
                    "\"unpriced\" but a cost is given; an unpriced event has no cost",
                ));
            }
            if breakdown.is_some() && cb.total() != c {
                return Err(FieldError::new(
                    "cost",
                    format!(
                        "{c} is not the sum of cost_breakdown ({})",
                        cb.total().normalize()
                    ),
                ));
            }
            if breakdown.is_none() {
                // Without a breakdown the whole cost is recorded as one class: `other`.
                cb.units.insert("other".to_string(), c);
            }
            Ok(Pricing {
                currency,
                cost: Some(c),
                cost_breakdown: cb,
                price_version: opt_string("price_version", price_version)?,
                pricing_status: status.unwrap_or(PricingStatus::Priced),
            })
        }
    }
}

/// Parses one JSON object into a validated event. Type errors name the field.
pub fn parse_json_event(line: &str) -> Result<UsageEvent, FieldError> {
    parse_json_event_as(line)
}

/// [`parse_json_event`] into an event whose texts borrow from `line` where they can.
pub fn parse_json_event_ref(line: &str) -> Result<EventRef<'_>, FieldError> {
    parse_json_event_as(line)
}

/// [`parse_json_event`] into an event whose texts are `S` (see [`RawEvent::validate_as`]).
pub fn parse_json_event_as<'a, S: From<Cow<'a, str>>>(
    line: &'a str,
) -> Result<UsageEvent<S>, FieldError> {
    if let Some(raw) = crate::fastjson::read_event(line) {
        return raw.validate_as();
    }
    match serde_json::from_str::<RawEvent<'_>>(line) {
        Ok(raw) => raw.validate_as(),
        Err(e) => Err(explain_json_error(line, &e)),
    }
}

/// Whether the fast reader handles `line` itself (instead of deferring to serde_json).
/// For tests and benchmarks.
#[doc(hidden)]
pub fn fast_reader_accepts(line: &str) -> bool {
    crate::fastjson::read_event(line).is_some()
}

/// The reference path of [`parse_json_event`]: serde_json alone, without the fast reader.
/// Both must give the same result for every line (tested).
pub fn parse_json_event_serde(line: &str) -> Result<UsageEvent, FieldError> {
    match serde_json::from_str::<RawEvent<'_>>(line) {
        Ok(raw) => raw.validate(),
        Err(e) => Err(explain_json_error(line, &e)),
    }
}

/// Turns a serde error into a field-named message (slow path, only on bad input).
fn explain_json_error(line: &str, e: &serde_json::Error) -> FieldError {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix("duplicate field `") {
        let field = rest.split('`').next().unwrap_or("(record)");
        return FieldError::new(field, "appears twice in the record; give each field once");
    }
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(_) => {
            return FieldError::new(
                "(record)",
                format!("not valid JSON: {e}; each line must be one JSON object"),
            );
        }
    };
    let Some(obj) = value.as_object() else {
        return FieldError::new(
            "(record)",
            "not a JSON object; each line must be one JSON object",
        );
    };
    for (k, v) in obj {
        if !FIELDS.contains(&k.as_str()) {
            return FieldError::new(
                k.clone(),
                "unknown field; see docs/event-format.md for the canonical field names",
            );
        }
        let expect = expected_type(k);
        let ok = match expect {
            "string" => v.is_string() || v.is_null(),
            "integer" => v.is_u64() || v.is_null(),
            "boolean" => v.is_boolean() || v.is_null(),
            "object" => v.is_object() || v.is_null(),
            _ => true,
        };
        let negative = v.as_i64().is_some_and(|n| n < 0) || v.as_f64().is_some_and(|f| f < 0.0);
        if !ok || (expect == "integer" && v.is_number() && !v.is_u64()) {
            let what = if expect == "integer" && negative {
                "must not be negative".to_string()
            } else if expect == "integer" {
                format!("expected a whole number >= 0, found {v}")
            } else {
                format!("expected a {expect}, found {v}")
            };
            return FieldError::new(k.clone(), what);
        }
        if expect == "integer" {
            let too_big = match k.as_str() {
                "attempt" => v.as_u64().is_some_and(|n| n > u64::from(u32::MAX)),
                "http_status" => v.as_u64().is_some_and(|n| n > u64::from(u16::MAX)),
                _ => false,
            };
            if too_big {
                return FieldError::new(k.clone(), format!("{v} is out of range"));
            }
        }
        if expect == "object"
            && let Some(o) = v.as_object()
        {
            for (ik, iv) in o {
                let inner_ok = if k == "tags" {
                    iv.is_string()
                } else {
                    iv.is_string() || iv.is_number()
                };
                if !inner_ok {
                    return FieldError::new(format!("{k}.{ik}"), format!("unexpected value {iv}"));
                }
            }
        }
    }
    FieldError::new("(record)", format!("invalid record: {e}"))
}

fn expected_type(field: &str) -> &'static str {
    match field {
        "attempt"
        | "http_status"
        | "latency_ms"
        | "ttft_ms"
        | "input_tokens"
        | "cache_read_tokens"
        | "cache_write_tokens"
        | "cache_write_1h_tokens"
        | "output_tokens"
        | "reasoning_tokens" => "integer",
        "streamed" => "boolean",
        "tags" | "units" | "cost_breakdown" => "object",
        "cost" => "any",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"01890a5d-ac96-774b-bcce-b302099a8057","occurred_at":"2026-07-01T12:00:00.1234567+02:00","provider":"openai","model":"gpt-4o","team_id":"t-search","service":"search-api","feature":"smart-search","environment":"prod","input_tokens":2200,"cache_read_tokens":1200,"output_tokens":620,"reasoning_tokens":100,"tags":{"exp":"a"},"units":{"images":2,"audio_seconds":"31.5"}}"#;

    #[test]
    fn a_good_record_validates_and_normalises() {
        let e = parse_json_event(GOOD).unwrap();
        // +02:00 -> UTC, truncated to microseconds
        assert_eq!(format_instant(e.occurred_at), "2026-07-01T10:00:00.123456Z");
        assert_eq!(e.attribution_status, AttributionStatus::Ok);
        assert_eq!(e.usage.total_input(), 3400);
        assert_eq!(e.usage.units["audio_seconds"].to_string(), "31.5");
        assert_eq!(e.pricing.pricing_status, PricingStatus::Unpriced);
        assert_eq!(e.pricing.cost, None);
        assert_eq!(e.operation, Operation::Chat);
    }

    #[test]
    fn a_borrowed_event_is_the_owned_one_and_copies_only_what_changes() {
        // Upper-case ids are lower-cased (a copy); the other texts borrow from the line.
        let line = GOOD.replace("01890a5d-ac96", "01890A5D-AC96").replace(
            "\"input_tokens\"",
            "\"span_id\":\"00F067AA0BA902B7\",\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"input_tokens\"",
        );
        let r = parse_json_event_ref(&line).unwrap();
        let copied = |c: &Cow<'_, str>| matches!(c, Cow::Owned(_));
        assert!(copied(&r.event_id));
        assert_eq!(&*r.event_id, "01890a5d-ac96-774b-bcce-b302099a8057");
        assert!(copied(r.span_id.as_ref().unwrap()));
        assert_eq!(r.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(!copied(r.trace_id.as_ref().unwrap()));
        assert!(!copied(&r.model));
        assert!(!copied(r.attribution.team_id.as_ref().unwrap()));
        assert_eq!(r.map_texts(String::from), parse_json_event(&line).unwrap());
        // An escaped text is unescaped (the line is read by serde_json).
        let escaped = line.replace("\"t-search\"", "\"t-\\u0073earch\"");
        let r = parse_json_event_ref(&escaped).unwrap();
        assert_eq!(r.attribution.team_id.as_deref(), Some("t-search"));
        assert_eq!(r.map_texts(String::from), parse_json_event(&line).unwrap());
    }

    #[test]
    fn missing_attribution_quarantines_instead_of_failing() {
        let e = parse_json_event(
            r#"{"event_id":"01890a5d-ac96-774b-bcce-b302099a8057","occurred_at":"2026-07-01T12:00:00Z","provider":"openai","model":"gpt-4o","team_id":"t1"}"#,
        )
        .unwrap();
        assert_eq!(e.attribution_status, AttributionStatus::Quarantined);
        assert_eq!(
            e.attribution.missing_required(),
            vec!["service", "feature", "environment"]
        );
    }

    fn err(json: &str) -> FieldError {
        parse_json_event(json).unwrap_err()
    }

    #[test]
    fn bad_records_name_the_field() {
        let base = &GOOD[..GOOD.len() - 1];
        assert_eq!(
            err(&format!("{base},\"input_tokens\":-5}}")).field,
            "input_tokens"
        );
        let e = err(&GOOD.replace("\"input_tokens\":2200", "\"input_tokens\":-5"));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("input_tokens", "must not be negative")
        );
        let e = err(&GOOD.replace("\"input_tokens\":2200", "\"input_tokens\":\"many\""));
        assert_eq!(e.field, "input_tokens");
        let e = err(&GOOD.replace("\"environment\":\"prod\"", "\"environment\":\"production\""));
        assert_eq!(e.field, "environment");
        assert!(e.message.contains("production"), "{}", e.message);
        let e = err(&GOOD.replace("2026-07-01T12:00:00.1234567+02:00", "yesterday"));
        assert_eq!(e.field, "occurred_at");
        let e = err(&GOOD.replace("2026-07-01T12:00:00.1234567+02:00", "2026-07-01T12:00:00"));
        assert_eq!(
            e.field, "occurred_at",
            "an instant without offset is ambiguous"
        );
        let e = err(&GOOD.replace(
            "\"provider\":\"openai\",",
            "\"prompt\":\"hello\",\"provider\":\"openai\",",
        ));
        assert_eq!(e.field, "prompt");
        assert_eq!(err("{not json").field, "(record)");
        let e = err(&GOOD.replace("01890a5d-ac96-774b-bcce-b302099a8057", "42"));
        assert_eq!(e.field, "event_id");
        let e = err(&GOOD.replace("\"reasoning_tokens\":100", "\"reasoning_tokens\":700"));
        assert_eq!(e.field, "reasoning_tokens");
    }

    #[test]
    fn estimated_usage_stays_estimated_and_otel_ids_are_hex() {
        let est = GOOD.replace(
            "\"tags\"",
            "\"pricing_status\":\"estimated\",\"price_version\":\"x@-inf\",\"tags\"",
        );
        let e = parse_json_event(&est).unwrap();
        assert_eq!(e.pricing.pricing_status, PricingStatus::Estimated);
        // A version without a cost is dropped: Tollgate stamps its own when it prices.
        assert_eq!(e.pricing.price_version, None);
        let ok = GOOD.replace("\"tags\"", "\"trace_id\":\"4BF92F3577B34DA6A3CE929D0E0E4736\",\"span_id\":\"00f067aa0ba902b7\",\"tags\"");
        let e = parse_json_event(&ok).unwrap();
        assert_eq!(
            e.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let bad = GOOD.replace("\"tags\"", "\"span_id\":\"xyz\",\"tags\"");
        assert_eq!(err(&bad).field, "span_id");
    }

    #[test]
    fn the_fast_instant_reader_agrees_with_jiff() {
        let jiff = |s: &str| s.parse::<Timestamp>().ok().and_then(truncate_to_micros);
        let mut cases: Vec<String> = vec![
            "2026-07-01T12:00:00Z".into(),
            "2026-07-01T12:00:00.1234567Z".into(),
            "2026-07-01T12:00:00.123456789Z".into(),
            "2026-07-01T12:00:00.1234567891Z".into(),
            "2026-07-01T12:00:00.Z".into(),
            "2026-07-01T12:00:00.5".into(),
            "2026-07-01T12:00:00z".into(),
            "2026-07-01t12:00:00Z".into(),
            "2026-07-01 12:00:00Z".into(),
            "2026-07-01T12:00:00+00:00".into(),
            "2026-07-01T12:00:00+02:00".into(),
            "2026-07-01T12:00:00".into(),
            "2026-07-01T12:00Z".into(),
            "2026-07-01T23:59:60Z".into(),
            "2026-07-01T24:00:00Z".into(),
            "2026-13-01T00:00:00Z".into(),
            "2026-00-01T00:00:00Z".into(),
            "2026-07-00T00:00:00Z".into(),
            "2026-07-01T12:00:00Z ".into(),
            "+2026-07-01T12:00:00Z".into(),
            "1969-12-31T23:59:59.999999Z".into(),
            "1970-01-01T00:00:00Z".into(),
            "9998-12-31T23:59:59.999999Z".into(),
            "9999-12-30T00:00:00Z".into(),
            "0001-01-01T00:00:00Z".into(),
            "2026-07-01T1:00:00Z".into(),
            "2026-07-01T12:00:00.-1Z".into(),
        ];
        // Every month end, in leap and common years (1900 and 2100 are not leap, 2000 is).
        for year in [1970, 1999, 1900, 2000, 2024, 2026, 2100, 2400, 9998] {
            for month in 1..=12 {
                for day in 27..=32 {
                    cases.push(format!("{year:04}-{month:02}-{day:02}T23:59:59.9Z"));
                }
            }
        }
        for s in &cases {
            let fast = utc_instant_fast(s);
            if let Some(t) = fast {
                assert_eq!(Some(t), jiff(s), "{s}");
            }
            // And the public path gives jiff's answer either way.
            assert_eq!(parse_instant("t", s).ok(), jiff(s), "{s}");
        }
        assert!(utc_instant_fast("2026-07-01T12:00:00.123456Z").is_some());
        assert!(utc_instant_fast("2024-02-29T00:00:00Z").is_some());
        assert!(utc_instant_fast("2026-02-29T00:00:00Z").is_none());
        // A spread of instants over the fast reader's whole range (1970 to the end of 9998),
        // with microseconds.
        let mut t: i64 = 0;
        while t < 253_370_764_800 {
            let ts = Timestamp::from_microsecond(t * 1_000_000 + t % 999_983).unwrap();
            let s = format!("{}", ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ"));
            let fast = utc_instant_fast(&s);
            assert!(fast.is_some(), "{s}");
            assert_eq!(fast, jiff(&s), "{s}");
            t += 7_777_777;
        }
    }

    #[test]
    fn uuids_and_otel_ids_are_checked_and_lower_cased() {
        let id = |s: &str| normalize_uuid("event_id", s);
        assert_eq!(
            id("01890A5D-AC96-774B-BCCE-B302099A8057").unwrap(),
            "01890a5d-ac96-774b-bcce-b302099a8057"
        );
        for bad in [
            "01890a5d-ac96-774b-bcce-b302099a805g",
            "01890a5d-ac96-774b-bcce-b302099a80-7",
            "01890a5dac96-774b-bcce-b302099a8057-",
            "01890a5d-ac96-774b-bcce-b302099a805",
            "01890a5d-ac96-774b-bcce-b302099a80577",
            "01890a5d-ac96-774b-bcce-b302099a8\u{e9}",
            "",
        ] {
            let e = id(bad).unwrap_err();
            assert_eq!(e.field, "event_id");
            assert!(e.message.contains("is not a UUID"), "{bad}: {}", e.message);
        }
        let hex = |s: &str| hex_id::<String>("span_id", Some(Cow::Borrowed(s)), 16);
        assert_eq!(
            hex("00F067AA0BA902B7").unwrap().as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(hex("").unwrap(), None);
        assert_eq!(hex(" \t").unwrap(), None);
        assert_eq!(hex_id::<String>("span_id", None, 16).unwrap(), None);
        let e = hex("00f067aa0ba902bg").unwrap_err();
        assert_eq!(
            e.message,
            "\"00f067aa0ba902bg\" is not an OpenTelemetry id (16 hex digits)"
        );
        let e = hex(&"a".repeat(513)).unwrap_err();
        assert_eq!(
            e.message,
            "value is 513 bytes long; at most 512 are allowed"
        );
        // Blank values are absent; others are kept exactly as given.
        let text = |s: &'static str| opt_string::<String>("team_id", Some(Cow::Borrowed(s)));
        assert_eq!(text(" ").unwrap(), None);
        assert_eq!(text("\u{a0}").unwrap(), None);
        assert_eq!(text(" t ").unwrap().as_deref(), Some(" t "));
    }

    #[test]
    fn carried_cost_is_kept_exactly_and_checked() {
        let with_cost = GOOD.replace(
            "\"tags\"",
            "\"cost\":\"0.00453\",\"cost_breakdown\":{\"input\":\"0.00165\",\"cache_read\":\"0.00009\",\"output\":\"0.00279\"},\"tags\"",
        );
        let e = parse_json_event(&with_cost).unwrap();
        assert_eq!(e.pricing.cost.unwrap().to_string(), "0.00453");
        assert_eq!(e.pricing.pricing_status, PricingStatus::Priced);
        // A breakdown that does not add up is refused.
        let bad = with_cost.replace("\"output\":\"0.00279\"", "\"output\":\"0.00280\"");
        assert_eq!(err(&bad).field, "cost");
        // A negative usage cost is refused.
        let neg = with_cost.replace("\"cost\":\"0.00453\"", "\"cost\":\"-0.00453\"");
        assert_eq!(err(&neg).field, "cost");
        // Money as a JSON number is refused, with the fix in the message.
        let num = GOOD.replace("\"tags\"", "\"cost\":0.00453,\"tags\"");
        let e = err(&num);
        assert_eq!(e.field, "cost");
        assert!(e.message.contains("\"0.00453\""), "{}", e.message);
    }
}

/// Appends `s` as a JSON string literal (quoted, escaped).
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    // Fast path: most values need no escaping at all.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl UsageEvent {
    /// Appends the event as one JSON object with the canonical field names (money as
    /// strings; absent optional fields omitted). `parse_json_event` reads it back unchanged.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write as _;
        // `event_id` always comes first, so every later field starts with a comma.
        let s = |out: &mut String, k: &str, v: Option<&str>| {
            if let Some(v) = v {
                out.push(',');
                push_json_str(out, k);
                out.push(':');
                push_json_str(out, v);
            }
        };
        out.push_str("{\"event_id\":");
        push_json_str(out, &self.event_id);
        s(out, "request_id", self.request_id.as_deref());
        let _ = write!(out, ",\"attempt\":{}", self.attempt);
        s(out, "parent_request_id", self.parent_request_id.as_deref());
        out.push_str(",\"occurred_at\":\"");
        write_instant(out, self.occurred_at);
        out.push('"');
        if let Some(c) = self.completed_at {
            out.push_str(",\"completed_at\":\"");
            write_instant(out, c);
            out.push('"');
        }
        s(out, "trace_id", self.trace_id.as_deref());
        s(out, "span_id", self.span_id.as_deref());
        s(out, "session_id", self.session_id.as_deref());
        let a = &self.attribution;
        s(out, "team_id", a.team_id.as_deref());
        s(out, "cost_center", a.cost_center.as_deref());
        s(out, "service", a.service.as_deref());
        s(out, "feature", a.feature.as_deref());
        s(out, "environment", a.environment.map(|e| e.as_str()));
        s(out, "tenant_id", a.tenant_id.as_deref());
        s(out, "user_id", a.user_id.as_deref());
        s(out, "api_key_id", a.api_key_id.as_deref());
        s(out, "region", a.region.as_deref());
        if !a.tags.is_empty() {
            out.push_str(",\"tags\":{");
            for (i, (k, v)) in a.tags.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k);
                out.push(':');
                push_json_str(out, v);
            }
            out.push('}');
        }
        s(
            out,
            "attribution_status",
            Some(self.attribution_status.as_str()),
        );
        s(out, "provider", Some(&self.provider));
        s(out, "model_requested", self.model_requested.as_deref());
        s(out, "model", Some(&self.model));
        s(out, "operation", Some(self.operation.as_str()));
        s(out, "service_tier", self.service_tier.as_deref());
        s(out, "status", Some(self.status.as_str()));
        if let Some(h) = self.http_status {
            let _ = write!(out, ",\"http_status\":{h}");
        }
        let _ = write!(out, ",\"streamed\":{}", self.streamed);
        if let Some(v) = self.latency_ms {
            let _ = write!(out, ",\"latency_ms\":{v}");
        }
        if let Some(v) = self.ttft_ms {
            let _ = write!(out, ",\"ttft_ms\":{v}");
        }
        let u = &self.usage;
        let _ = write!(
            out,
            ",\"input_tokens\":{},\"cache_read_tokens\":{},\"cache_write_tokens\":{},\"cache_write_1h_tokens\":{},\"output_tokens\":{},\"reasoning_tokens\":{}",
            u.input_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            u.cache_write_1h_tokens,
            u.output_tokens,
            u.reasoning_tokens
        );
        if !u.units.is_empty() {
            out.push_str(",\"units\":{");
            for (i, (k, v)) in u.units.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k);
                let _ = write!(out, ":{}", crate::money::fmt_decimal(*v));
            }
            out.push('}');
        }
        let p = &self.pricing;
        let _ = write!(out, ",\"currency\":\"{}\"", p.currency);
        if let Some(c) = p.cost {
            let _ = write!(out, ",\"cost\":\"{}\"", crate::money::fmt_decimal(c));
            out.push_str(",\"cost_breakdown\":{");
            for (i, (k, v)) in p.cost_breakdown.entries().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k);
                let _ = write!(out, ":\"{}\"", crate::money::fmt_decimal(*v));
            }
            out.push('}');
        }
        s(out, "price_version", p.price_version.as_deref());
        s(out, "pricing_status", Some(p.pricing_status.as_str()));
        out.push('}');
    }

    /// The event as a JSON string (see [`UsageEvent::write_json`]).
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(768);
        self.write_json(&mut s);
        s
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn instants_format_like_jiff() {
        for s in [
            "2026-07-01T12:00:00Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "2000-02-29T23:59:59.5Z",
            "2100-03-01T00:00:00.000001Z",
            "9999-12-30T00:00:00.999999Z",
            "0001-01-01T00:00:00Z",
        ] {
            let t: Timestamp = s.parse().unwrap();
            assert_eq!(format_instant(t), format!("{t:.6}"), "{s}");
        }
    }

    #[test]
    fn json_round_trips_through_the_import_parser() {
        let line = r#"{"event_id":"01890a5d-ac96-774b-bcce-b302099a8057","request_id":"r\"1","occurred_at":"2026-07-01T12:00:00.5Z","provider":"openai","model":"gpt-4o","team_id":"t","service":"s","feature":"f","environment":"prod","tags":{"k":"v"},"input_tokens":5,"output_tokens":3,"units":{"images":2},"cost":"0.0123","cost_breakdown":{"input":"0.01","output":"0.0023"},"price_version":"abc@-inf"}"#;
        let e = parse_json_event(line).unwrap();
        let again = parse_json_event(&e.to_json()).unwrap();
        assert_eq!(e, again);
        assert!(e.to_json().contains("\"cost\":\"0.0123\""));
        assert!(
            e.to_json()
                .contains("\"occurred_at\":\"2026-07-01T12:00:00.500000Z\"")
        );
    }
}
