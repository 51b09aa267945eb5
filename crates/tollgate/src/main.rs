//! # tollgate
//!
//! The `tollgate` binary: command line, configuration and wiring over the library crates
//! (`tollgate-core` for the domain, `tollgate-ledger` for storage, `tollgate-finance` for report
//! models, `tollgate-render` for output). Commands are documented in `docs/cli.md`.
//!
//! Conventions: every command that touches the ledger takes the global `--data-dir`
//! (env `TOLLGATE_DATA_DIR`); data-producing commands take `--format` and `--out`; errors go
//! to stderr as `error: ...` with their cause chain and a non-zero exit code; output files are
//! written atomically (a temporary file renamed into place), so a failed command leaves none.

mod cmd_alerts;
mod cmd_attribution;
mod cmd_audit;
mod cmd_bills;
mod cmd_cfo;
mod cmd_chargeback;
mod cmd_close;
mod cmd_demo;
mod cmd_digest;
mod cmd_finance;
mod cmd_focus;
mod cmd_ingest;
mod cmd_invoice;
mod cmd_ledger;
mod cmd_prices;
mod cmd_reconcile;
mod cmd_refdata;
mod cmd_report;
mod cmd_reprice;
mod cmd_schedule;
mod cmd_serve;
mod cmd_sql;
mod config;
mod demo_bills;
mod demo_data;
mod demo_live;
mod fx;
mod ingest_pipeline;
mod output;
mod stripe;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::output::outln;

/// Tollgate: who spent what on LLM calls, exactly.
#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate: who spent what on LLM calls, exactly: an immutable usage ledger, exact pricing, reports.",
    max_term_width = 100
)]
pub struct Cli {
    /// Ledger directory (holds ledger.sqlite).
    #[arg(long, global = true, env = "TOLLGATE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "TOLLGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Local rate overrides (TOML rate format); repeatable; win over the shipped catalog.
    #[arg(long = "prices", global = true, value_name = "FILE")]
    prices: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a realistic month of traffic into ./tollgate-demo and show what Tollgate makes of it.
    Demo(cmd_demo::DemoArgs),
    /// Price one usage at an instant.
    Price(cmd_prices::PriceArgs),
    /// Inspect the rate tables in force.
    Prices {
        #[command(subcommand)]
        command: cmd_prices::PricesCommand,
    },
    /// Import data into the ledger.
    Ingest {
        #[command(subcommand)]
        command: cmd_ingest::IngestCommand,
    },
    /// Customer usage invoices: draft, finalize, credit notes.
    Invoice(cmd_invoice::InvoiceArgs),
    /// Reports over the ledger.
    Report {
        #[command(subcommand)]
        command: cmd_report::ReportCommand,
    },
    /// Read-only SQL over the ledger.
    Sql(cmd_sql::SqlArgs),
    /// Pin a note (a deploy, a model switch) to an instant; shown on the daily spend report.
    Annotate(cmd_finance::AnnotateArgs),
    /// Anomaly alerts: daily jumps, cache hit drops, runaway users, budget overruns; posted
    /// to Slack once each.
    Alerts {
        #[command(subcommand)]
        command: cmd_alerts::AlertsCommand,
    },
    /// Scheduled jobs ([[schedules]]): the weekly digest, the CFO PDF, invoice drafts, the
    /// anomaly check; missed runs caught up, none run twice.
    Schedule {
        #[command(subcommand)]
        command: cmd_schedule::ScheduleCommand,
    },
    /// Team budgets: set a monthly limit, record the owner's comment.
    Budgets {
        #[command(subcommand)]
        command: cmd_finance::BudgetsCommand,
    },
    /// The ledger itself: migrate, export, copy between backends, ClickHouse DDL.
    Ledger {
        #[command(subcommand)]
        command: cmd_ledger::LedgerCommand,
    },
    /// Compare the ledger with the imported provider bills: variance per row and team, each
    /// flagged difference classified.
    Reconcile(cmd_reconcile::ReconcileArgs),
    /// Month-end close: freeze a period's booked figures (late events go to the next open one).
    Close(cmd_close::CloseArgs),
    /// Reopen a closed period (logged with the reason).
    Reopen(cmd_close::ReopenArgs),
    /// Record an approved adjustment for a team in an open period.
    Adjust(cmd_close::AdjustArgs),
    /// What is booked in a period: usage, late events, adjustments, corrections; the close log.
    Books(cmd_close::BooksArgs),
    /// Re-price a period under the rates given with --prices: corrections recorded, events untouched.
    Reprice(cmd_reprice::RepriceArgs),
    /// Allocate shared costs (usage without an owner, a pool team) to teams, to the cent.
    Allocate(cmd_chargeback::AllocateArgs),
    /// The chargeback journal: debit and credit lines per cost center, CSV for an ERP import.
    Journal(cmd_chargeback::JournalArgs),
    /// Provider bills: fetch a month's usage and cost reports from a provider's admin API.
    Bills {
        #[command(subcommand)]
        command: cmd_bills::BillsCommand,
    },
    /// Reference data: owners of keys, projects, workspaces, principals and tags; the model
    /// dictionary; approvers. Versioned, every change logged with who and when.
    Refdata {
        #[command(subcommand)]
        command: cmd_refdata::RefdataCommand,
    },
    /// Run the gateway: OpenAI and Anthropic compatible, attributes, prices and records every call.
    Serve(cmd_serve::ServeArgs),
    /// Gateway keys: add, list, revoke, mode.
    Keys {
        #[command(subcommand)]
        command: cmd_serve::KeysCommand,
    },
    /// A local fake OpenAI/Anthropic provider (tests, benchmarks, the demo).
    FakeProvider(cmd_serve::FakeArgs),
    /// Does one event or OTLP trace carry what a defensible chargeback needs? Exit 0/1.
    AuditTrace(cmd_attribution::AuditTraceArgs),
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (and the rate files it names) without starting anything.
    Check,
}

/// Resolved global context shared by commands.
pub struct Ctx {
    pub config: Config,
    pub data_dir: PathBuf,
    pub price_files: Vec<PathBuf>,
}

impl Ctx {
    fn new(cli: &Cli) -> Result<Ctx> {
        let config = match &cli.config {
            Some(p) => Config::load(p)?,
            None => Config::defaults(),
        };
        let data_dir = cli
            .data_dir
            .clone()
            .or_else(|| config.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("tollgate-data"));
        // Flags first: they win over overrides named in the config.
        let mut price_files = cli.prices.clone();
        price_files.extend(config.price_overrides.iter().cloned());
        Ok(Ctx {
            config,
            data_dir,
            price_files,
        })
    }

    /// The pricer: override files (flag order, then config order), then the shipped catalog.
    pub fn pricer(&self) -> Result<tollgate_core::Pricer> {
        cmd_prices::load_pricer(&self.price_files)
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let ctx = Ctx::new(&cli)?;
    match cli.command {
        Command::Demo(a) => cmd_demo::run(&ctx, &a),
        Command::Price(a) => cmd_prices::price(&ctx, &a),
        Command::Prices { command } => cmd_prices::prices(&ctx, &command),
        Command::Ingest { command } => cmd_ingest::run(&ctx, &command),
        Command::Invoice(a) => cmd_invoice::run(&ctx, &a),
        Command::Report { command } => cmd_report::run(&ctx, &command),
        Command::Sql(a) => cmd_sql::run(&ctx, &a),
        Command::Annotate(a) => cmd_finance::annotate(&ctx, &a),
        Command::Budgets { command } => cmd_finance::budgets(&ctx, &command),
        Command::Alerts { command } => cmd_alerts::run(&ctx, &command),
        Command::Schedule { command } => cmd_schedule::run(&ctx, &command),
        Command::Ledger { command } => cmd_ledger::run(&ctx, &command),
        Command::Reconcile(a) => cmd_reconcile::run(&ctx, &a),
        Command::Close(a) => cmd_close::close(&ctx, &a),
        Command::Reopen(a) => cmd_close::reopen(&ctx, &a),
        Command::Adjust(a) => cmd_close::adjust(&ctx, &a),
        Command::Books(a) => cmd_close::books(&ctx, &a),
        Command::Reprice(a) => cmd_reprice::run(&ctx, &a),
        Command::Bills { command } => cmd_bills::run(&ctx, &command),
        Command::Allocate(a) => cmd_chargeback::allocate_cmd(&ctx, &a),
        Command::Journal(a) => cmd_chargeback::journal(&ctx, &a),
        Command::Refdata { command } => cmd_refdata::run(&ctx, &command),
        Command::Serve(a) => cmd_serve::serve(&ctx, &a),
        Command::Keys { command } => cmd_serve::keys_cmd(&ctx, &command),
        Command::FakeProvider(a) => cmd_serve::fake_provider(&a),
        Command::AuditTrace(a) => cmd_attribution::audit_trace(&a),
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let pricer = ctx.pricer()?;
            outln!(
                "config ok: {}",
                ctx.config
                    .path
                    .as_ref()
                    .map_or("(no file: defaults)".to_string(), |p| p
                        .display()
                        .to_string())
            );
            match &ctx.config.clickhouse {
                Some(c) => outln!(
                    "  ledger: ClickHouse {} database {} (password from ${})",
                    c.url,
                    c.database,
                    c.password_env
                ),
                None => outln!("  data dir: {}", ctx.data_dir.display()),
            }
            outln!("  reporting time zone: {}", ctx.config.timezone);
            outln!("  gateway: {}", cmd_serve::describe(&ctx.config.gateway));
            for b in pricer.books() {
                outln!("  rates: {} ({} entries)", b.name(), b.rates().len());
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Broken pipe (`tollgate ... | head`) is not an error worth a message.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
