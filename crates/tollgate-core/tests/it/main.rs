//! Integration tests of tollgate-core: pricing rules pinned with hand-worked figures, rate
//! file validation, the shipped catalog, and property tests of the pricing invariants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed check

mod catalog;
mod fastjson;
mod pricing;
mod properties;
mod rate_files;

use rust_decimal::Decimal;

pub fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

pub fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}
