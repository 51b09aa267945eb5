//! `tollgate sql "SELECT ..."`: read-only SQL over the ledger.

use std::path::PathBuf;

use anyhow::Result;
use tollgate_ledger::SqlValue;
use tollgate_render::{Cell, Table};

use crate::Ctx;
use crate::output::{Format, emit};

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The query (SELECT / WITH ... SELECT). Tables: events, rollups, price_versions, imports.
    pub query: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write here instead of stdout (atomically: the whole file or nothing).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, a: &SqlArgs) -> Result<()> {
    let ledger = crate::cmd_ledger::open_read_only(ctx)?;
    let t = ledger.query_sql(&a.query)?;
    match a.format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = t
                .rows
                .iter()
                .map(|r| {
                    let mut m = serde_json::Map::new();
                    for (c, v) in t.columns.iter().zip(r) {
                        m.insert(
                            c.clone(),
                            match v {
                                SqlValue::Null => serde_json::Value::Null,
                                SqlValue::Integer(i) => (*i).into(),
                                // REAL results are user arithmetic; keep their text, never reparse.
                                SqlValue::Real(s) | SqlValue::Text(s) => s.clone().into(),
                                SqlValue::Blob(b) => format!("<{} bytes>", b.len()).into(),
                            },
                        );
                    }
                    serde_json::Value::Object(m)
                })
                .collect();
            emit(
                a.out.as_deref(),
                format!("{}\n", serde_json::to_string_pretty(&rows)?).as_bytes(),
                false,
            )
        }
        fmt => {
            let table = Table {
                header: vec![],
                columns: t.columns.clone(),
                rows: t
                    .rows
                    .iter()
                    .map(|r| {
                        r.iter()
                            .map(|v| match v {
                                SqlValue::Integer(i) => Cell::Int(i128::from(*i)),
                                SqlValue::Null => Cell::Empty,
                                other => Cell::Text(other.to_string()),
                            })
                            .collect()
                    })
                    .collect(),
                total: None,
            };
            match fmt {
                Format::Csv => emit(
                    a.out.as_deref(),
                    &tollgate_render::csv(&table, false)?,
                    false,
                ),
                Format::Xlsx => emit(
                    a.out.as_deref(),
                    &tollgate_render::xlsx(&table, "Query", 2)?,
                    true,
                ),
                _ => emit(
                    a.out.as_deref(),
                    tollgate_render::text(&table).as_bytes(),
                    false,
                ),
            }
        }
    }
}
