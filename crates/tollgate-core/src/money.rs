//! Exact money: a decimal amount with a currency.
//!
//! Invariants: amounts are `rust_decimal::Decimal` (never floats); arithmetic is checked and
//! refuses to mix currencies; rounding happens only through [`Money::round_minor`], half away
//! from zero to the currency's minor unit, and only where a document shows money.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::error::CoreError;

/// Largest number of decimal places the ledger keeps for any amount (1e-12 of the unit).
pub const LEDGER_SCALE: u32 = 12;

/// An ISO 4217 currency code: three ASCII capital letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    /// Parses a three-letter code; lowercase is accepted and upper-cased.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return Err(CoreError::InvalidValue {
                field: "currency".into(),
                value: s.into(),
                expected: "a three-letter ISO 4217 code such as USD".into(),
            });
        }
        Ok(Currency([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]))
    }

    pub fn as_str(&self) -> &str {
        // The bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Digits after the decimal point of the currency's minor unit (ISO 4217).
    pub fn minor_units(&self) -> u32 {
        match &self.0 {
            b"JPY" | b"KRW" | b"VND" | b"CLP" | b"ISK" | b"UGX" | b"XAF" | b"XOF" | b"PYG"
            | b"RWF" | b"KMF" | b"GNF" | b"VUV" | b"XPF" | b"DJF" | b"BIF" => 0,
            b"BHD" | b"KWD" | b"OMR" | b"JOD" | b"IQD" | b"LYD" | b"TND" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

/// An exact amount of money in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Money { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Money {
            amount: Decimal::ZERO,
            currency,
        }
    }

    /// Parses a decimal string such as `"12.345"` (no exponent, no float).
    pub fn parse(amount: &str, currency: Currency) -> Result<Self, CoreError> {
        Ok(Money::new(parse_decimal("amount", amount)?, currency))
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    fn same_currency(&self, other: &Money) -> Result<(), CoreError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(CoreError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, CoreError> {
        self.same_currency(other)?;
        self.amount
            .checked_add(other.amount)
            .map(|a| Money::new(a, self.currency))
            .ok_or(CoreError::Overflow)
    }

    pub fn checked_sub(&self, other: &Money) -> Result<Money, CoreError> {
        self.same_currency(other)?;
        self.amount
            .checked_sub(other.amount)
            .map(|a| Money::new(a, self.currency))
            .ok_or(CoreError::Overflow)
    }

    /// Multiplies by an exact factor (a quantity, a rate, a tax rate).
    pub fn checked_mul(&self, factor: Decimal) -> Result<Money, CoreError> {
        self.amount
            .checked_mul(factor)
            .map(|a| Money::new(a, self.currency))
            .ok_or(CoreError::Overflow)
    }

    /// Converts into another currency at an exact rate (units of `to` per unit of `self`).
    pub fn convert(&self, rate: Decimal, to: Currency) -> Result<Money, CoreError> {
        self.amount
            .checked_mul(rate)
            .map(|a| Money::new(a, to))
            .ok_or(CoreError::Overflow)
    }

    /// Rounds half away from zero to the currency's minor unit: the one rounding rule for
    /// every amount a document shows.
    pub fn round_minor(&self) -> Money {
        Money::new(
            round_half_away(self.amount, self.currency.minor_units()),
            self.currency,
        )
    }

    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount.normalize(), self.currency)
    }
}

/// Rounds half away from zero to `dp` decimal places, padding to exactly `dp` places.
pub fn round_half_away(d: Decimal, dp: u32) -> Decimal {
    let mut r = d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(dp);
    r
}

/// Parses a plain decimal string (digits, optional sign and point; no exponent, no spaces).
pub fn parse_decimal(field: &str, s: &str) -> Result<Decimal, CoreError> {
    let ok_chars = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+');
    let parsed = if ok_chars {
        Decimal::from_str_exact(s).ok()
    } else {
        None
    };
    parsed.ok_or_else(|| CoreError::InvalidValue {
        field: field.into(),
        value: s.into(),
        expected: "a decimal number written as a string, such as \"2.50\"".into(),
    })
}

/// Formats an exact decimal without trailing zeros (and without exponent), e.g. `0.00453`.
pub fn fmt_decimal(d: Decimal) -> String {
    let n = d.normalize();
    if n.is_zero() {
        "0".to_string()
    } else {
        n.to_string()
    }
}

/// Inserts thousands separators into a plain decimal text: `1234567.5` -> `1,234,567.5`.
/// Text that is not a plain number is returned unchanged.
pub fn group_thousands(s: &str) -> String {
    let (sign, digits) = s.strip_prefix('-').map_or(("", s), |d| ("-", d));
    let (int, frac) = digits
        .split_once('.')
        .map_or((digits, None), |(i, f)| (i, Some(f)));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return s.to_string();
    }
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// A ledger amount as a scaled integer: units of 1e-12. Errors if `d` has more decimals.
pub fn to_scaled_e12(d: Decimal) -> Result<i128, CoreError> {
    // The usual case without normalizing: at most 12 decimals, so the mantissa times a power
    // of ten is exact (checked: it cannot overflow for a 96-bit mantissa, but stay honest).
    if d.scale() <= LEDGER_SCALE
        && let Some(v) = d
            .mantissa()
            .checked_mul(10i128.pow(LEDGER_SCALE - d.scale()))
    {
        return Ok(v);
    }
    let n = d.normalize();
    if n.scale() > LEDGER_SCALE {
        return Err(CoreError::TooPrecise {
            value: n.to_string(),
        });
    }
    let mut r = n;
    r.rescale(LEDGER_SCALE);
    Ok(r.mantissa())
}

/// The inverse of [`to_scaled_e12`].
pub fn from_scaled_e12(v: i128) -> Result<Decimal, CoreError> {
    Decimal::try_from_i128_with_scale(v, LEDGER_SCALE).map_err(|_| CoreError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn rounds_half_away_from_zero_to_minor_unit() {
        // 0.125 -> 0.13 (half away), -0.125 -> -0.13, 0.124 -> 0.12
        assert_eq!(
            Money::new(d("0.125"), Currency::USD)
                .round_minor()
                .amount()
                .to_string(),
            "0.13"
        );
        assert_eq!(
            Money::new(d("-0.125"), Currency::USD)
                .round_minor()
                .amount()
                .to_string(),
            "-0.13"
        );
        assert_eq!(
            Money::new(d("0.124"), Currency::USD)
                .round_minor()
                .amount()
                .to_string(),
            "0.12"
        );
        // JPY has no minor unit: 100.5 -> 101
        let jpy = Currency::parse("jpy").unwrap();
        assert_eq!(
            Money::new(d("100.5"), jpy)
                .round_minor()
                .amount()
                .to_string(),
            "101"
        );
        // padding: 5 -> 5.00
        assert_eq!(
            Money::new(d("5"), Currency::USD)
                .round_minor()
                .amount()
                .to_string(),
            "5.00"
        );
    }

    #[test]
    fn refuses_to_mix_currencies() {
        let usd = Money::new(d("1"), Currency::USD);
        let eur = Money::new(d("1"), Currency::parse("EUR").unwrap());
        assert!(matches!(
            usd.checked_add(&eur),
            Err(CoreError::CurrencyMismatch { .. })
        ));
        assert_eq!(usd.checked_add(&usd).unwrap().amount(), d("2"));
    }

    #[test]
    fn parses_only_plain_decimals() {
        assert_eq!(parse_decimal("x", "2.50").unwrap(), d("2.50"));
        assert!(parse_decimal("x", "1e-6").is_err());
        assert!(parse_decimal("x", "").is_err());
        assert!(parse_decimal("x", " 1").is_err());
        assert!(parse_decimal("x", "abc").is_err());
    }

    #[test]
    fn scaled_integers_round_trip_and_refuse_excess_precision() {
        assert_eq!(to_scaled_e12(d("0.00453")).unwrap(), 4_530_000_000);
        assert_eq!(
            from_scaled_e12(4_530_000_000).unwrap().normalize(),
            d("0.00453")
        );
        assert!(to_scaled_e12(d("0.0000000000001")).is_err());
        // 13 decimals written, but the last is a zero: 1e-12 exactly.
        assert_eq!(to_scaled_e12(d("0.0000000000010")).unwrap(), 1);
        // 1.5 = 1,500,000,000,000 x 1e-12; -12 = -12 x 10^12 x 1e-12.
        assert_eq!(to_scaled_e12(d("1.5")).unwrap(), 1_500_000_000_000);
        assert_eq!(to_scaled_e12(d("-12")).unwrap(), -12_000_000_000_000);
        assert!(Currency::parse("US").is_err());
        assert!(Currency::parse("U$D").is_err());
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(group_thousands("1234567.50"), "1,234,567.50");
        assert_eq!(group_thousands("-1000"), "-1,000");
        assert_eq!(group_thousands("999"), "999");
        assert_eq!(group_thousands("abc"), "abc");
    }

    #[test]
    fn converts_at_an_exact_rate() {
        // 10.50 USD at 510.25 KZT/USD = 5357.625 KZT, shown as 5357.63 KZT
        let kzt = Currency::parse("KZT").unwrap();
        let m = Money::new(d("10.50"), Currency::USD)
            .convert(d("510.25"), kzt)
            .unwrap();
        assert_eq!(m.amount(), d("5357.625"));
        assert_eq!(m.round_minor().amount().to_string(), "5357.63");
    }
}
