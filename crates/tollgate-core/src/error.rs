//! The core's one error type, with typed context.

use crate::money::Currency;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{field}: invalid value {value:?}: expected {expected}")]
    InvalidValue {
        field: String,
        value: String,
        expected: String,
    },
    #[error("{field}: missing (required)")]
    Missing { field: String },
    #[error("cannot combine amounts in {left} and {right}; convert one first")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("arithmetic overflow in money computation")]
    Overflow,
    #[error(
        "amount {value} has more than 12 decimal places; the ledger keeps money to 1e-12, round it first"
    )]
    TooPrecise { value: String },
    #[error("unknown time zone {name:?}: use an IANA name such as \"UTC\" or \"Asia/Almaty\"")]
    UnknownTimeZone { name: String },
    #[error("invalid period {value:?}: {expected}")]
    InvalidPeriod { value: String, expected: String },
}
