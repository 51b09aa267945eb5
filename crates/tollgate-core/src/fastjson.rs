//! A fast reader for the common shape of an event line: one flat JSON object whose values are
//! strings without escapes, whole numbers, booleans, null, or flat objects of those.
//!
//! It is an accelerator, not a second parser: anything it does not fully understand (escapes,
//! unknown or repeated fields, fractions where whole numbers belong, nesting, trailing bytes)
//! makes it return `None`, and the caller falls back to serde_json, which either accepts the
//! line with the same result or explains the error. Equivalence with serde_json is tested on
//! every field and on generated events.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::event::{RawDecimal, RawEvent};

struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

enum Val<'a> {
    Str(&'a str),
    /// The text of a number.
    Num(&'a str),
    Bool(bool),
    Null,
    Obj(Vec<(&'a str, Val<'a>)>),
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            let c = *self.b.get(self.i)?;
            if c == b'"' {
                let out = self.s.get(start..self.i)?;
                self.i += 1;
                return Some(out);
            }
            if c == b'\\' || c < 0x20 {
                return None;
            }
            self.i += 1;
        }
    }

    fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            if c.is_ascii_digit() || c == b'-' || c == b'+' || c == b'.' || c == b'e' || c == b'E' {
                self.i += 1;
            } else {
                break;
            }
        }
        let t = self.s.get(start..self.i)?;
        // JSON's number grammar, strictly: no leading zeros, digits after '.', etc.
        let ok = {
            let n = t.strip_prefix('-').unwrap_or(t);
            let (int, rest) = n.split_at(n.find(|c: char| !c.is_ascii_digit()).unwrap_or(n.len()));
            let int_ok = int == "0" || (!int.is_empty() && !int.starts_with('0'));
            let rest_ok = if rest.is_empty() {
                true
            } else if let Some(frac) = rest.strip_prefix('.') {
                !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit())
            } else {
                false
            };
            int_ok && rest_ok
        };
        ok.then_some(t)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.i + word.len();
        if self.b.get(self.i..end)? == word.as_bytes() {
            self.i = end;
            Some(())
        } else {
            None
        }
    }

    fn value(&mut self, nested: bool) -> Option<Val<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Val::Str),
            b'{' if !nested => {
                self.i += 1;
                let mut fields = Vec::new();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(Val::Obj(fields));
                }
                loop {
                    let k = self.string()?;
                    self.eat(b':')?;
                    let v = self.value(true)?;
                    if fields.iter().any(|(q, _)| *q == k) {
                        return None;
                    }
                    fields.push((k, v));
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(Val::Obj(fields));
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal("true").map(|()| Val::Bool(true)),
            b'f' => self.literal("false").map(|()| Val::Bool(false)),
            b'n' => self.literal("null").map(|()| Val::Null),
            b'-' | b'0'..=b'9' => self.number().map(Val::Num),
            _ => None,
        }
    }
}

fn s<'a>(v: Val<'a>) -> Option<Option<Cow<'a, str>>> {
    match v {
        Val::Str(t) => Some(Some(Cow::Borrowed(t))),
        Val::Null => Some(None),
        _ => None,
    }
}

fn uint<T: std::str::FromStr>(v: Val<'_>) -> Option<Option<T>> {
    match v {
        Val::Num(t) if t.bytes().all(|b| b.is_ascii_digit()) => t.parse().ok().map(Some),
        Val::Null => Some(None),
        _ => None,
    }
}

fn boolean(v: Val<'_>) -> Option<Option<bool>> {
    match v {
        Val::Bool(b) => Some(Some(b)),
        Val::Null => Some(None),
        _ => None,
    }
}

fn string_map(v: Val<'_>) -> Option<Option<BTreeMap<Cow<'_, str>, Cow<'_, str>>>> {
    match v {
        Val::Obj(fields) => {
            let mut m = BTreeMap::new();
            for (k, v) in fields {
                match v {
                    Val::Str(t) => {
                        m.insert(Cow::Borrowed(k), Cow::Borrowed(t));
                    }
                    _ => return None,
                }
            }
            Some(Some(m))
        }
        Val::Null => Some(None),
        _ => None,
    }
}

/// Numbers and strings as decimal text; `numbers_ok` = false sends JSON numbers to serde
/// (money must be a string, and serde explains why).
fn decimal_map(
    v: Val<'_>,
    numbers_ok: bool,
) -> Option<Option<BTreeMap<Cow<'_, str>, RawDecimal<'_>>>> {
    match v {
        Val::Obj(fields) => {
            let mut m = BTreeMap::new();
            for (k, v) in fields {
                let d = match v {
                    Val::Str(t) => RawDecimal::Text(Cow::Borrowed(t)),
                    Val::Num(t) if numbers_ok => RawDecimal::Text(Cow::Borrowed(t)),
                    _ => return None,
                };
                m.insert(Cow::Borrowed(k), d);
            }
            Some(Some(m))
        }
        Val::Null => Some(None),
        _ => None,
    }
}

/// Reads one event line, or `None` when serde_json must decide.
pub fn read_event(line: &str) -> Option<RawEvent<'_>> {
    let mut c = Cursor {
        s: line,
        b: line.as_bytes(),
        i: 0,
    };
    c.eat(b'{')?;
    let mut r = RawEvent::default();
    let mut seen: u64 = 0;
    if c.peek()? == b'}' {
        c.i += 1;
    } else {
        loop {
            let key = c.string()?;
            c.eat(b':')?;
            let v = c.value(false)?;
            // One dispatch per key; the arm number is the bit that catches repeated keys.
            let bit: u32 = match key {
                "event_id" => {
                    r.event_id = s(v)?;
                    0
                }
                "request_id" => {
                    r.request_id = s(v)?;
                    1
                }
                "attempt" => {
                    r.attempt = uint(v)?;
                    2
                }
                "parent_request_id" => {
                    r.parent_request_id = s(v)?;
                    3
                }
                "occurred_at" => {
                    r.occurred_at = s(v)?;
                    4
                }
                "completed_at" => {
                    r.completed_at = s(v)?;
                    5
                }
                "trace_id" => {
                    r.trace_id = s(v)?;
                    6
                }
                "span_id" => {
                    r.span_id = s(v)?;
                    7
                }
                "session_id" => {
                    r.session_id = s(v)?;
                    8
                }
                "team_id" => {
                    r.team_id = s(v)?;
                    9
                }
                "cost_center" => {
                    r.cost_center = s(v)?;
                    10
                }
                "service" => {
                    r.service = s(v)?;
                    11
                }
                "feature" => {
                    r.feature = s(v)?;
                    12
                }
                "environment" => {
                    r.environment = s(v)?;
                    13
                }
                "tenant_id" => {
                    r.tenant_id = s(v)?;
                    14
                }
                "user_id" => {
                    r.user_id = s(v)?;
                    15
                }
                "api_key_id" => {
                    r.api_key_id = s(v)?;
                    16
                }
                "region" => {
                    r.region = s(v)?;
                    17
                }
                "tags" => {
                    r.tags = string_map(v)?;
                    18
                }
                "attribution_status" => {
                    r.attribution_status = s(v)?;
                    19
                }
                "provider" => {
                    r.provider = s(v)?;
                    20
                }
                "model_requested" => {
                    r.model_requested = s(v)?;
                    21
                }
                "model" => {
                    r.model = s(v)?;
                    22
                }
                "operation" => {
                    r.operation = s(v)?;
                    23
                }
                "service_tier" => {
                    r.service_tier = s(v)?;
                    24
                }
                "status" => {
                    r.status = s(v)?;
                    25
                }
                "http_status" => {
                    r.http_status = uint(v)?;
                    26
                }
                "streamed" => {
                    r.streamed = boolean(v)?;
                    27
                }
                "latency_ms" => {
                    r.latency_ms = uint(v)?;
                    28
                }
                "ttft_ms" => {
                    r.ttft_ms = uint(v)?;
                    29
                }
                "input_tokens" => {
                    r.input_tokens = uint(v)?;
                    30
                }
                "cache_read_tokens" => {
                    r.cache_read_tokens = uint(v)?;
                    31
                }
                "cache_write_tokens" => {
                    r.cache_write_tokens = uint(v)?;
                    32
                }
                "cache_write_1h_tokens" => {
                    r.cache_write_1h_tokens = uint(v)?;
                    33
                }
                "output_tokens" => {
                    r.output_tokens = uint(v)?;
                    34
                }
                "reasoning_tokens" => {
                    r.reasoning_tokens = uint(v)?;
                    35
                }
                "units" => {
                    r.units = decimal_map(v, true)?;
                    36
                }
                "currency" => {
                    r.currency = s(v)?;
                    37
                }
                "cost" => {
                    r.cost = match v {
                        Val::Str(t) => Some(RawDecimal::Text(Cow::Borrowed(t))),
                        Val::Null => None,
                        _ => return None,
                    };
                    38
                }
                "cost_breakdown" => {
                    r.cost_breakdown = decimal_map(v, false)?;
                    39
                }
                "price_version" => {
                    r.price_version = s(v)?;
                    40
                }
                "pricing_status" => {
                    r.pricing_status = s(v)?;
                    41
                }
                _ => return None,
            };
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
            match c.peek()? {
                b',' => c.i += 1,
                b'}' => {
                    c.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    c.ws();
    (c.i == c.b.len()).then_some(r)
}
