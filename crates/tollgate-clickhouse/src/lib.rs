//! # tollgate-clickhouse
//!
//! The ClickHouse backend of the Tollgate ledger: [`ClickHouseLedger`] implements
//! [`tollgate_ledger::Ledger`] and [`tollgate_ledger::LedgerWriter`] over ClickHouse's HTTP
//! interface, so every command, report and invoice runs on it with the same numbers as on the
//! embedded SQLite ledger (both pass `tollgate_ledger::conformance`).
//!
//! - [`client`]: the HTTP client (query parameters, settings, retries with classification).
//! - [`schema`]: versioned migrations; single-node DDL by default, cluster DDL on request.
//! - [`ledger`]: reads (`FINAL` wherever unmerged duplicates could show) and the writer
//!   (batched, idempotent inserts; nothing is sent before `commit`).
//! - [`lease`]: a lease for batch jobs that must run once per schedule across replicas.
//!
//! See docs/clickhouse.md for the schema and its guarantees.

pub mod client;
pub mod lease;
pub mod ledger;
pub mod native;
pub mod schema;
#[doc(hidden)]
pub mod testing;

pub use client::ClickHouseConfig;
pub use ledger::ClickHouseLedger;
