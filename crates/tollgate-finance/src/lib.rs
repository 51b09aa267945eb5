//! # tollgate-finance
//!
//! Report models built from the ledger: numbers and labels, no formatting. Renderers
//! (`tollgate-render`) turn them into text, CSV, JSON or XLSX.
//!
//! - [`summary`]: the monthly summary table (seed 002): usage and cost per chosen dimensions,
//!   quarantined and unpriced usage as their own rows, a total that equals the sum of the rows
//!   as displayed, and a header with the period, its UTC bounds, time zone, currency, FX rule
//!   and the price versions used.
//!
//! - [`alerts`]: anomaly alerts (daily jumps, cache hit drops, reasoning surges, cost-per-call
//!   jumps, runaway users, off-hours services, budget overruns and forecasts), each keyed by
//!   rule, subject and time bucket so that a check every five minutes sends it once.
//!
//! Invariants: money stays exact until a cell is shown; each shown amount is rounded half away
//! from zero to the currency's minor unit; a shown total is the sum of the shown amounts.

pub mod alerts;
pub mod allocation;
pub mod audit;
pub mod cfo;
pub mod close;
pub mod digest;
pub mod focus;
pub mod invoice;
pub mod reconcile;
pub mod standing;
pub mod summary;

/// Errors while building a report.
#[derive(Debug, thiserror::Error)]
pub enum FinanceError {
    #[error(transparent)]
    Ledger(#[from] tollgate_ledger::LedgerError),
    #[error(transparent)]
    Core(#[from] tollgate_core::CoreError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, FinanceError>;
