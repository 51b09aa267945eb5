//! End-to-end tests of the `tollgate` binary.
//!
//! Every test runs the real compiled binary in its own temporary directory (its working
//! directory, and the ledger passed with `--data-dir`), so tests never share state, never touch
//! `./tollgate-data`, open no ports and never sleep. Money figures are worked out by hand in the
//! comments next to each assertion; rates come from a small override file written by the test
//! (`support::SEED_RATES`) except in the tests about the shipped catalog.

// Helpers outside #[test] functions: a failed unwrap or panic there is a failed test too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod alerts;
mod audit;
mod bills;
mod bills_fetch;
mod broken_pipe;
mod budgets;
mod catalog;
mod cfo;
mod clickhouse;
mod close;
mod demo;
mod digest;
mod finance;
mod focus;
mod gateway;
mod gateway_tls;
mod global;
mod ingest;
mod ingest_errors;
mod invoice;
mod price;
mod reconcile;
mod refdata;
mod report;
mod schedule;
mod sql;
mod stripe;
