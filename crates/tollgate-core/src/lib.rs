//! # tollgate-core
//!
//! The pure domain core of Tollgate: no I/O, no async runtime, no clock.
//!
//! - [`money`]: exact decimal money with a currency; one rounding rule (half away from zero to
//!   the minor unit), applied only where a document shows money.
//! - [`event`]: the usage event with the canonical field names of `event-schema.md`, disjoint
//!   token classes, and the validation every import goes through.
//! - [`vocab`]: controlled vocabularies (environment, operation, status, ...).
//! - [`period`]: reporting periods as half-open UTC intervals computed in an IANA time zone.
//! - [`rates`]: the TOML rate format, the shipped catalog, overrides, and the pure pricing
//!   function `(usage, rate) -> cost breakdown`.
//!
//! Invariants kept here and relied on everywhere: money is never a float; an unpriced event
//! has no cost (never zero); token classes never overlap, so cost is a plain sum of
//! `tokens x price` with no subtraction; exactly one rate version is in force per instant.

pub mod error;
pub mod event;
mod fastjson;
pub mod money;
pub mod period;
pub mod rates;
pub mod vocab;

pub use error::CoreError;
pub use event::{Attribution, CostBreakdown, FieldError, Pricing, Usage, UsageEvent};
pub use money::{Currency, Money};
pub use period::Period;
pub use rates::{Pricer, PricingError, Quote, Rate, RateBook, RateError};
pub use vocab::{AttributionStatus, Environment, Operation, PricingStatus, Status};
