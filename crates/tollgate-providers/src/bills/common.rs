//! Value parsing shared by every format: exact decimals, token counts and units, instants,
//! JSON key-value maps, gzip detection.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::value::RawValue;

/// What a decimal cell or value must look like, for error messages.
pub(crate) const DECIMAL_EXPECTED: &str = "expected a decimal number such as 12.50 or 1.2E-5 \
     (no spaces, currency signs or thousands separators); correct the value or re-export the file";

/// What an instant must look like, for error messages.
pub(crate) const INSTANT_EXPECTED: &str = "expected a UTC date-time such as 2026-09-01T00:00:00Z \
     or 2026-09-01 00:00:00 UTC; correct the value or re-export the file";

/// Parses a decimal exactly from its text: `-12.50`, `0.8958740000000000`, `1.2E-5`.
///
/// The text must be an optional minus, digits with at most one point, and an optional exponent.
/// E-notation is scaled exactly (`1.2E-5` is 0.000012); a value that does not fit
/// `rust_decimal` (28 significant digits) is refused rather than rounded.
pub(crate) fn parse_exact_decimal(s: &str) -> Option<Decimal> {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let mut digits = 0;
    let mut point = false;
    while i < b.len() {
        match b[i] {
            b'0'..=b'9' => digits += 1,
            b'.' if !point => point = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if i == b.len() {
        return Decimal::from_str_exact(s).ok();
    }
    // Exponent: [eE][+-]?digits
    if !matches!(b[i], b'e' | b'E') {
        return None;
    }
    let exp = &b[i + 1..];
    let exp_digits = exp
        .strip_prefix(b"-")
        .or(exp.strip_prefix(b"+"))
        .unwrap_or(exp);
    if exp_digits.is_empty() || !exp_digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // The mantissa must itself be exact before it is scaled.
    Decimal::from_str_exact(&s[..i]).ok()?;
    Decimal::from_scientific(s).ok()
}

/// Turns a decimal quantity into a whole, non-negative token count.
pub(crate) fn whole_tokens(d: Decimal) -> Result<u64, &'static str> {
    if d.is_sign_negative() && !d.is_zero() {
        return Err("a token count cannot be negative; correct the value or re-export the file");
    }
    if !d.fract().is_zero() {
        return Err(
            "not a whole number of tokens; check the unit (a per-1K or per-1M unit must give whole tokens)",
        );
    }
    d.to_u64()
        .ok_or("token count too large for a 64-bit counter")
}

/// How many tokens one unit stands for, if `unit` is a token unit: `tokens` -> 1,
/// `1K tokens` / `1000 Tokens` / `1000_tokens` -> 1,000, `1M tokens` / `1000000 Tokens` /
/// `million tokens` -> 1,000,000. `None` for anything else.
pub(crate) fn token_scale(unit: &str) -> Option<Decimal> {
    let u = unit.trim().to_ascii_lowercase().replace(['_', '-'], " ");
    let rest = u
        .strip_suffix("tokens")
        .or_else(|| u.strip_suffix("token"))?
        .trim();
    let n: u64 = match rest.replace(',', "").as_str() {
        "" => 1,
        "k" | "1k" | "thousand" | "1 thousand" => 1_000,
        "m" | "1m" | "million" | "1 million" => 1_000_000,
        digits => digits.parse().ok().filter(|n| *n > 0)?,
    };
    Some(Decimal::from(n))
}

/// Parses an instant and returns it in UTC. Accepts RFC 3339 / ISO 8601 with an offset
/// (`2026-09-01T00:00:00Z`, `2026-09-01T02:00:00+02:00`), BigQuery's `2026-09-01 00:00:00 UTC`,
/// and a date-time without a zone, which billing exports write in UTC.
pub(crate) fn parse_instant(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let (s, utc_suffix) = match s.strip_suffix(" UTC") {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    if !utc_suffix && let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let dt: DateTime = s.parse().ok()?;
    TimeZone::UTC.to_timestamp(dt).ok()
}

/// Reads a JSON key-value object (tags, labels, CUR map columns) into strings. Numbers and
/// booleans keep their JSON text; nulls are dropped; nested values are refused. An empty text is
/// an empty map. `Err` carries what was expected.
pub(crate) fn string_map_from_json(text: &str) -> Result<BTreeMap<String, String>, &'static str> {
    const EXPECTED: &str = "expected a JSON object of text values such as {\"team\":\"search\"}";
    let mut out = BTreeMap::new();
    if text.trim().is_empty() {
        return Ok(out);
    }
    let map: BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(|_| EXPECTED)?;
    for (k, v) in map {
        if let Some(s) = scalar_text(v).map_err(|()| EXPECTED)? {
            out.insert(k, s);
        }
    }
    Ok(out)
}

/// Reads labels written either as an object (`{"team":"search"}`) or as BigQuery's array of
/// structs (`[{"key":"team","value":"search"}]`).
pub(crate) fn labels_from_json(text: &str) -> Result<BTreeMap<String, String>, &'static str> {
    const EXPECTED: &str = "expected labels as a JSON array such as [{\"key\":\"team\",\"value\":\"search\"}] \
         or an object such as {\"team\":\"search\"}";
    if !text.trim_start().starts_with('[') {
        return string_map_from_json(text).map_err(|_| EXPECTED);
    }
    let items: Vec<BTreeMap<String, &RawValue>> =
        serde_json::from_str(text).map_err(|_| EXPECTED)?;
    let mut out = BTreeMap::new();
    for item in items {
        let key = item.get("key").copied().ok_or(EXPECTED)?;
        let key = scalar_text(key).map_err(|()| EXPECTED)?.ok_or(EXPECTED)?;
        let value = match item.get("value") {
            Some(v) => scalar_text(v).map_err(|()| EXPECTED)?,
            None => None,
        };
        if let Some(v) = value {
            out.insert(key, v);
        }
    }
    Ok(out)
}

/// The text of a scalar JSON value: strings unquoted, numbers and booleans as written, null as
/// `None`; objects and arrays are an error.
pub(crate) fn scalar_text(v: &RawValue) -> Result<Option<String>, ()> {
    let g = v.get();
    match g.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(g).map(Some).map_err(|_| ()),
        Some(b'{' | b'[') | None => Err(()),
        _ if g == "null" => Ok(None),
        _ => Ok(Some(g.to_string())),
    }
}

/// Gzip magic bytes.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// `Some(s)` unless `s` is empty or blank.
pub(crate) fn non_blank(s: &str) -> Option<&str> {
    // Most cells start with a visible character: no need to scan them.
    match s.as_bytes().first() {
        None => None,
        Some(b) if !b.is_ascii_whitespace() && b.is_ascii() => Some(s),
        Some(_) if s.trim().is_empty() => None,
        Some(_) => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn decimals_are_exact_and_strict() {
        assert_eq!(
            parse_exact_decimal("0.8958740000000000"),
            Some(d("0.895874"))
        );
        assert_eq!(
            parse_exact_decimal("0.8958740000000000")
                .unwrap()
                .to_string(),
            "0.8958740000000000"
        );
        assert_eq!(parse_exact_decimal("-25"), Some(d("-25")));
        assert_eq!(parse_exact_decimal("1.2E-5"), Some(d("0.000012")));
        assert_eq!(parse_exact_decimal("7.5e-05"), Some(d("0.000075")));
        assert_eq!(parse_exact_decimal("1.5E+3"), Some(d("1500")));
        assert_eq!(parse_exact_decimal("2e2"), Some(d("200")));
        for bad in [
            "", "-", ".", "abc", "1,000", "$5", " 1", "1 ", "+1", "1e", "1e-", "1.2.3", "NaN",
            "inf", "1e-40",
        ] {
            assert_eq!(parse_exact_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn token_units() {
        assert_eq!(token_scale("Tokens"), Some(d("1")));
        assert_eq!(token_scale("1K tokens"), Some(d("1000")));
        assert_eq!(token_scale("1000 Tokens"), Some(d("1000")));
        assert_eq!(token_scale("1000_tokens"), Some(d("1000")));
        assert_eq!(token_scale("1M tokens"), Some(d("1000000")));
        assert_eq!(token_scale("1000000 Tokens"), Some(d("1000000")));
        assert_eq!(token_scale("Units"), None);
        assert_eq!(token_scale("requests"), None);
        assert_eq!(token_scale("0 tokens"), None);
        assert_eq!(whole_tokens(d("1843200.000")), Ok(1_843_200));
        assert!(whole_tokens(d("-1")).is_err());
        assert!(whole_tokens(d("1.5")).is_err());
    }

    #[test]
    fn instants() {
        let t: Timestamp = "2026-09-01T00:00:00Z".parse().unwrap();
        assert_eq!(parse_instant("2026-09-01T00:00:00Z"), Some(t));
        assert_eq!(parse_instant("2026-09-01T00:00:00.000Z"), Some(t));
        assert_eq!(parse_instant("2026-09-01T02:00:00+02:00"), Some(t));
        assert_eq!(parse_instant("2026-09-01 00:00:00 UTC"), Some(t));
        assert_eq!(parse_instant("2026-09-01 00:00:00"), Some(t));
        assert_eq!(parse_instant("2026-09-01T00:00:00"), Some(t));
        // A bare date is midnight UTC.
        assert_eq!(parse_instant("2026-09-01"), Some(t));
        assert_eq!(parse_instant("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_instant("yesterday"), None);
    }

    #[test]
    fn maps_and_labels() {
        let m = string_map_from_json(r#"{"team":"search","n":3,"x":null}"#).unwrap();
        assert_eq!(m.get("team").map(String::as_str), Some("search"));
        assert_eq!(m.get("n").map(String::as_str), Some("3"));
        assert!(!m.contains_key("x"));
        assert!(string_map_from_json(r#"{"a":{"b":1}}"#).is_err());
        assert!(string_map_from_json("not json").is_err());
        assert!(string_map_from_json("").unwrap().is_empty());
        let l = labels_from_json(r#"[{"key":"team","value":"search"}]"#).unwrap();
        assert_eq!(l.get("team").map(String::as_str), Some("search"));
        assert!(labels_from_json(r#"[{"value":"x"}]"#).is_err());
    }
}
