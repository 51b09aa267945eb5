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
//! Invariants: money stays exact until a cell is shown; each shown amount is rounded half away
//! from zero to the currency's minor unit; a shown total is the sum of the shown amounts.

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
