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

use crate::event::{FIELDS, RawDecimal, RawEvent};

struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Whether any of the 8 bytes in `x` is `"`, `\` or a control character (below 0x20): the
/// bytes that end or complicate a JSON string.
fn special_byte(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of v is zero (or, second form, below 0x20).
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero(x ^ (ONES * u64::from(b'"')));
    let backslash = zero(x ^ (ONES * u64::from(b'\\')));
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    (quote | backslash | control) != 0
}

/// Equal slices of the same length, compared in line: keys are a dozen bytes, for which a
/// call to `memcmp` costs more than the comparison.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
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
        // Eight bytes at a time up to the word holding the closing quote.
        while let Some(w) = self.b.get(self.i..self.i + 8) {
            let x = u64::from_le_bytes(<[u8; 8]>::try_from(w).ok()?);
            if special_byte(x) {
                break;
            }
            self.i += 8;
        }
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

    /// Whether the next string is exactly `word` (then read past it): the expected key,
    /// matched without scanning for its end.
    fn quoted(&mut self, word: &str) -> bool {
        self.ws();
        let w = word.as_bytes();
        let at = self.i;
        let hit = self.b.get(at) == Some(&b'"')
            && self
                .b
                .get(at + 1..at + 1 + w.len())
                .is_some_and(|k| same_bytes(k, w))
            && self.b.get(at + 1 + w.len()) == Some(&b'"');
        if hit {
            self.i = at + w.len() + 2;
        }
        hit
    }

    /// `null`, after the whitespace before a value.
    fn null(&mut self) -> Option<()> {
        self.literal("null")
    }

    /// A string or null.
    fn opt_str(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.peek()? {
            b'"' => self.string().map(|t| Some(Cow::Borrowed(t))),
            b'n' => self.null().map(|()| None),
            _ => None,
        }
    }

    /// A whole number >= 0 that fits `T`, or null. Anything else (a sign, a fraction, an
    /// exponent, a leading zero, too many digits) is for serde_json to judge.
    fn opt_uint<T: TryFrom<u64>>(&mut self) -> Option<Option<T>> {
        match self.peek()? {
            b'n' => return self.null().map(|()| None),
            b'0'..=b'9' => {}
            _ => return None,
        }
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        if digits > 1 && self.b.get(start) == Some(&b'0') {
            return None;
        }
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E' | b'-' | b'+')) {
            return None;
        }
        T::try_from(v).ok().map(Some)
    }

    fn opt_bool(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b't' => self.literal("true").map(|()| Some(true)),
            b'f' => self.literal("false").map(|()| Some(false)),
            b'n' => self.null().map(|()| None),
            _ => None,
        }
    }

    /// A flat object, or null: `each` takes every key and the cursor at its value.
    fn opt_object(
        &mut self,
        mut each: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<Option<()>> {
        match self.peek()? {
            b'n' => return self.null().map(|()| None),
            b'{' => self.i += 1,
            _ => return None,
        }
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(Some(()));
        }
        loop {
            let k = self.string()?;
            self.eat(b':')?;
            each(self, k)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(Some(()));
                }
                _ => return None,
            }
        }
    }

    /// An object of strings (tags), or null. A repeated key is for serde_json to judge.
    fn opt_string_map(&mut self) -> Option<Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>> {
        let mut m = BTreeMap::new();
        let got = self.opt_object(|c, k| {
            if c.peek()? != b'"' {
                return None;
            }
            let v = c.string()?;
            m.insert(Cow::Borrowed(k), Cow::Borrowed(v))
                .is_none()
                .then_some(())
        })?;
        Some(got.map(|()| m))
    }

    /// An object of decimal strings (and, with `numbers_ok`, JSON numbers), or null.
    /// `numbers_ok` = false sends JSON numbers to serde (money must be a string, and serde
    /// explains why).
    fn opt_decimal_map(
        &mut self,
        numbers_ok: bool,
    ) -> Option<Option<BTreeMap<Cow<'a, str>, RawDecimal<'a>>>> {
        let mut m = BTreeMap::new();
        let got = self.opt_object(|c, k| {
            let t = match c.peek()? {
                b'"' => c.string()?,
                b'-' | b'0'..=b'9' if numbers_ok => c.number()?,
                _ => return None,
            };
            m.insert(Cow::Borrowed(k), RawDecimal::Text(Cow::Borrowed(t)))
                .is_none()
                .then_some(())
        })?;
        Some(got.map(|()| m))
    }
}

/// The field's position in [`crate::event::FIELDS`] (which is also its bit in the set of
/// fields seen).
fn field_index(key: &str) -> Option<usize> {
    Some(match key {
        "event_id" => 0,
        "request_id" => 1,
        "attempt" => 2,
        "parent_request_id" => 3,
        "occurred_at" => 4,
        "completed_at" => 5,
        "trace_id" => 6,
        "span_id" => 7,
        "session_id" => 8,
        "team_id" => 9,
        "cost_center" => 10,
        "service" => 11,
        "feature" => 12,
        "environment" => 13,
        "tenant_id" => 14,
        "user_id" => 15,
        "api_key_id" => 16,
        "region" => 17,
        "tags" => 18,
        "attribution_status" => 19,
        "provider" => 20,
        "model_requested" => 21,
        "model" => 22,
        "operation" => 23,
        "service_tier" => 24,
        "status" => 25,
        "http_status" => 26,
        "streamed" => 27,
        "latency_ms" => 28,
        "ttft_ms" => 29,
        "input_tokens" => 30,
        "cache_read_tokens" => 31,
        "cache_write_tokens" => 32,
        "cache_write_1h_tokens" => 33,
        "output_tokens" => 34,
        "reasoning_tokens" => 35,
        "units" => 36,
        "currency" => 37,
        "cost" => 38,
        "cost_breakdown" => 39,
        "price_version" => 40,
        "pricing_status" => 41,
        _ => return None,
    })
}

/// Fields tried in canonical order before a key is looked up by name.
const LOOK_AHEAD: usize = 4;

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
    // Lines usually list the fields in the canonical order, leaving out some optional ones:
    // the few fields after the last one read are tried first, with one comparison each.
    let mut guess = 0usize;
    if c.peek()? == b'}' {
        c.i += 1;
    } else {
        loop {
            let ahead = FIELDS
                .get(guess..)
                .unwrap_or_default()
                .iter()
                .take(LOOK_AHEAD);
            let idx = match ahead.zip(guess..).find(|(f, _)| c.quoted(f)) {
                Some((_, i)) => i,
                None => field_index(c.string()?)?,
            };
            guess = idx + 1;
            if seen & (1 << idx) != 0 {
                return None;
            }
            seen |= 1 << idx;
            c.eat(b':')?;
            match idx {
                0 => r.event_id = c.opt_str()?,
                1 => r.request_id = c.opt_str()?,
                2 => r.attempt = c.opt_uint()?,
                3 => r.parent_request_id = c.opt_str()?,
                4 => r.occurred_at = c.opt_str()?,
                5 => r.completed_at = c.opt_str()?,
                6 => r.trace_id = c.opt_str()?,
                7 => r.span_id = c.opt_str()?,
                8 => r.session_id = c.opt_str()?,
                9 => r.team_id = c.opt_str()?,
                10 => r.cost_center = c.opt_str()?,
                11 => r.service = c.opt_str()?,
                12 => r.feature = c.opt_str()?,
                13 => r.environment = c.opt_str()?,
                14 => r.tenant_id = c.opt_str()?,
                15 => r.user_id = c.opt_str()?,
                16 => r.api_key_id = c.opt_str()?,
                17 => r.region = c.opt_str()?,
                18 => r.tags = c.opt_string_map()?,
                19 => r.attribution_status = c.opt_str()?,
                20 => r.provider = c.opt_str()?,
                21 => r.model_requested = c.opt_str()?,
                22 => r.model = c.opt_str()?,
                23 => r.operation = c.opt_str()?,
                24 => r.service_tier = c.opt_str()?,
                25 => r.status = c.opt_str()?,
                26 => r.http_status = c.opt_uint()?,
                27 => r.streamed = c.opt_bool()?,
                28 => r.latency_ms = c.opt_uint()?,
                29 => r.ttft_ms = c.opt_uint()?,
                30 => r.input_tokens = c.opt_uint()?,
                31 => r.cache_read_tokens = c.opt_uint()?,
                32 => r.cache_write_tokens = c.opt_uint()?,
                33 => r.cache_write_1h_tokens = c.opt_uint()?,
                34 => r.output_tokens = c.opt_uint()?,
                35 => r.reasoning_tokens = c.opt_uint()?,
                36 => r.units = c.opt_decimal_map(true)?,
                37 => r.currency = c.opt_str()?,
                38 => r.cost = c.opt_str()?.map(RawDecimal::Text),
                39 => r.cost_breakdown = c.opt_decimal_map(false)?,
                40 => r.price_version = c.opt_str()?,
                41 => r.pricing_status = c.opt_str()?,
                _ => return None,
            }
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
