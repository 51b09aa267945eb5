//! The `events` table: a read-only SQLite virtual table over the event blocks.
//!
//! Registered on every connection the ledger opens (`register`), as an eponymous table named
//! `events`, so `SELECT ... FROM events` works as it did when events were rows. It has the
//! columns of [`blocks::COLUMNS`]; its rowid is `seq`. Constraints on `occurred_at`, `seq` (or
//! the rowid) and `event_id = ?` choose which blocks to read (blocks record their first and last
//! instant and seq, and their ids' hashes); SQLite still checks every constraint on every row,
//! so the pruning only has to be conservative. Rows come in `seq` order, which the table tells
//! SQLite so that `ORDER BY seq` needs no sort, or in `(occurred_at, seq)` order when the query
//! asks for it. Reading the chosen blocks in either order is [`BlockScan`]'s (`block_scan.rs`,
//! shared with the audit export); this module turns SQLite's plan into the list of blocks and
//! hands values to SQLite.
//!
//! It has no xUpdate: INSERT, UPDATE and DELETE on `events` fail. The blocks themselves are
//! guarded by triggers (events are immutable).
//!
//! This module is the ledger's only `unsafe` code: the rusqlite virtual-table traits are
//! `unsafe` to implement (SQLite casts the structs below to its C structs, which is why each
//! starts with the C base struct and is `repr(C)`), and the cursor queries the blocks through
//! the connection that owns the table (`Connection::from_handle`, which does not close it).
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::{CStr, c_int};
use std::fmt::Write as _;

use rusqlite::types::Value;
use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, Module, VTab, VTabConnection, VTabCursor,
};
use rusqlite::{Connection, ffi};

use crate::LedgerError;
use crate::block_scan::{BlockScan, InstantBuf, InstantText, Order, RowFilter};
use crate::blocks::{self, ALL, COL_EVENT_ID, COL_OCCURRED_AT, COL_SEQ, COLUMNS, Kind};

/// Registers the `events` table on `conn`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    const MODULE: Module<EventsTab> = Module::eponymous_only_module();
    conn.create_module(c"events", &MODULE, None::<()>)
}

#[repr(C)]
struct EventsTab {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab,
    db: *mut ffi::sqlite3,
}

// The plan bits of `idx_num`: which bounds `filter` receives, in this order.
const OCC_LO: c_int = 1;
const OCC_HI: c_int = 2;
const OCC_EQ: c_int = 4;
const SEQ_LO: c_int = 8;
const SEQ_HI: c_int = 16;
const SEQ_EQ: c_int = 32;
const ID_EQ: c_int = 64;
const BY_SEQ: c_int = 128;
const BY_TIME: c_int = 256;

fn schema() -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|(name, kind)| {
            let t = match kind {
                Kind::Seq | Kind::Int => "INTEGER",
                _ => "TEXT",
            };
            format!("{name} {t}")
        })
        .collect();
    format!("CREATE TABLE x({})", cols.join(", "))
}

unsafe impl<'vtab> VTab<'vtab> for EventsTab {
    type Aux = ();
    type Cursor = EventsCursor<'vtab>;

    fn connect(
        db: &mut VTabConnection,
        _aux: Option<&()>,
        _module_name: &[u8],
        _database_name: &[u8],
        _table_name: &[u8],
        _args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, Self)> {
        let sql = std::ffi::CString::new(schema())
            .map_err(|e| rusqlite::Error::ModuleError(e.to_string()))?;
        // SAFETY: the handle is the connection this table belongs to; it outlives the table.
        let handle = unsafe { db.handle() };
        Ok((
            Cow::Owned(sql),
            EventsTab {
                base: ffi::sqlite3_vtab::default(),
                db: handle,
            },
        ))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        // (bit, constraint index) of the first usable constraint of each kind.
        let mut chosen: Vec<(c_int, usize)> = Vec::new();
        let mut plan = 0;
        for (i, c) in info.constraints().enumerate() {
            if !c.is_usable() {
                continue;
            }
            use IndexConstraintOp::*;
            let col = c.column();
            let op = c.operator();
            let bit = match (col, op) {
                (5, SQLITE_INDEX_CONSTRAINT_GE | SQLITE_INDEX_CONSTRAINT_GT) => OCC_LO,
                (5, SQLITE_INDEX_CONSTRAINT_LE | SQLITE_INDEX_CONSTRAINT_LT) => OCC_HI,
                (5, SQLITE_INDEX_CONSTRAINT_EQ) => OCC_EQ,
                (-1 | 0, SQLITE_INDEX_CONSTRAINT_GE | SQLITE_INDEX_CONSTRAINT_GT) => SEQ_LO,
                (-1 | 0, SQLITE_INDEX_CONSTRAINT_LE | SQLITE_INDEX_CONSTRAINT_LT) => SEQ_HI,
                (-1 | 0, SQLITE_INDEX_CONSTRAINT_EQ) => SEQ_EQ,
                (1, SQLITE_INDEX_CONSTRAINT_EQ) => ID_EQ,
                _ => 0,
            };
            if bit != 0 && plan & bit == 0 {
                plan |= bit;
                chosen.push((bit, i));
            }
        }
        // Arguments reach `filter` in bit order.
        chosen.sort_by_key(|(b, _)| *b);
        for (n, (_, i)) in chosen.iter().enumerate() {
            let mut u = info.constraint_usage(*i);
            u.set_argv_index(n as c_int + 1);
            // SQLite checks each constraint again per row: the blocks only narrow the scan.
            u.set_omit(false);
        }
        // Orders the cursor can deliver itself: by seq (the blocks' order), or by
        // (occurred_at, seq) (a merge of the blocks' rows in time order).
        let obs: Vec<(c_int, bool)> = info
            .order_bys()
            .map(|o| (o.column(), o.is_order_by_desc()))
            .collect();
        let order = match obs.as_slice() {
            [(0 | -1, false)] => BY_SEQ,
            [(5, false)] | [(5, false), (0 | -1, false)] => BY_TIME,
            _ => 0,
        };
        if order != 0 {
            info.set_order_by_consumed(true);
            plan |= order;
        }
        let rows: i64 = if plan & ID_EQ != 0 {
            1
        } else if plan & (OCC_LO | OCC_HI | OCC_EQ | SEQ_LO | SEQ_HI | SEQ_EQ) != 0 {
            100_000
        } else {
            10_000_000
        };
        info.set_estimated_rows(rows);
        info.set_estimated_cost(rows as f64);
        info.set_idx_num(plan);
        // The columns the statement reads (bit 63 stands for every column from 63 on; there
        // are fewer), plus `seq` for the rowid: `filter` decodes only these.
        let used = info.col_used();
        let mask = if used & (1 << 63) != 0 {
            ALL
        } else {
            used & ALL
        } | (1 << COL_SEQ);
        info.set_idx_str(&format!("{mask:x}"));
        Ok(true)
    }

    fn open(&'vtab mut self) -> rusqlite::Result<EventsCursor<'vtab>> {
        // SAFETY: `db` is this table's own connection, open while any cursor exists; the
        // wrapper does not close it when dropped.
        let conn = unsafe { Connection::from_handle(self.db) }?;
        Ok(EventsCursor {
            base: ffi::sqlite3_vtab_cursor::default(),
            conn,
            scan: BlockScan::default(),
            instants: InstantText::default(),
            _tab: std::marker::PhantomData,
        })
    }
}

#[repr(C)]
struct EventsCursor<'vtab> {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab_cursor,
    conn: Connection,
    /// The blocks chosen by `filter`, read in seq or time order.
    scan: BlockScan,
    instants: InstantText,
    _tab: std::marker::PhantomData<&'vtab EventsTab>,
}

fn module_err(e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::ModuleError(e.to_string())
}

/// A ledger error as SQLite's: its own errors (busy, interrupted ...) as they were.
fn sql_err(e: LedgerError) -> rusqlite::Error {
    match e {
        LedgerError::Sqlite(e) => e,
        e => module_err(e),
    }
}

unsafe impl VTabCursor for EventsCursor<'_> {
    fn filter(
        &mut self,
        idx_num: c_int,
        idx_str: Option<&str>,
        args: &Filters<'_>,
    ) -> rusqlite::Result<()> {
        let mask = idx_str
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .unwrap_or(ALL);
        let by_time = idx_num & BY_TIME != 0;
        let mut sql =
            String::from("SELECT block_id, ids, min_occurred_at FROM event_blocks WHERE 1");
        let mut params: Vec<Value> = Vec::new();
        let mut id_hash = None;
        let mut a = 0;
        for (bit, col) in [
            (OCC_LO, "max_occurred_at >= "),
            (OCC_HI, "min_occurred_at <= "),
            (OCC_EQ, ""),
            (SEQ_LO, "max_seq >= "),
            (SEQ_HI, "min_seq <= "),
            (SEQ_EQ, ""),
            (ID_EQ, ""),
        ] {
            if idx_num & bit == 0 {
                continue;
            }
            let v: Value = args.get(a)?;
            a += 1;
            // A bound of another type than the column's compares by SQLite's type order,
            // which the block ranges do not follow: such a bound narrows nothing.
            match (bit, v) {
                (OCC_LO | OCC_HI, Value::Text(t)) => {
                    params.push(Value::Text(t));
                    let _ = write!(sql, " AND {col}?{}", params.len());
                }
                (SEQ_LO | SEQ_HI, Value::Integer(i)) => {
                    params.push(Value::Integer(i));
                    let _ = write!(sql, " AND {col}?{}", params.len());
                }
                (OCC_EQ, Value::Text(t)) => {
                    params.push(Value::Text(t));
                    let n = params.len();
                    let _ = write!(
                        sql,
                        " AND min_occurred_at <= ?{n} AND max_occurred_at >= ?{n}"
                    );
                }
                (SEQ_EQ, Value::Integer(i)) => {
                    params.push(Value::Integer(i));
                    let n = params.len();
                    let _ = write!(sql, " AND min_seq <= ?{n} AND max_seq >= ?{n}");
                }
                (ID_EQ, Value::Text(t)) => {
                    id_hash = Some(blocks::id_hash(&t));
                }
                _ => {}
            }
        }
        sql.push_str(if by_time {
            " ORDER BY min_occurred_at, block_id"
        } else {
            " ORDER BY block_id"
        });
        let order = if by_time { Order::Time } else { Order::Seq };
        // SQLite checks every constraint on every row itself: the scan yields whole blocks.
        self.scan.reset(order, mask, RowFilter::default());
        {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                if let Some(h) = id_hash
                    && !blocks::ids_contain(r.get_ref(1)?.as_blob()?, h)
                {
                    continue;
                }
                self.scan
                    .add_block(id, r.get_ref(2)?.as_str()?)
                    .map_err(sql_err)?;
            }
        }
        self.scan.begin(&self.conn).map_err(sql_err)
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.scan.advance(&self.conn).map_err(sql_err)
    }

    fn eof(&self) -> bool {
        self.scan.current().is_none()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        let c = usize::try_from(i).unwrap_or(usize::MAX);
        let (Some(&(_, kind)), Some((s, row))) = (COLUMNS.get(c), self.scan.current()) else {
            return ctx.set_result(rusqlite::types::Null);
        };
        let b = &s.block;
        match kind {
            Kind::Seq => ctx.set_result(s.seq(row)),
            Kind::Text => ctx.set_result(b.text(row, c)),
            Kind::Int => ctx.set_result(b.int(row, c)),
            Kind::Instant => {
                let mut buf = InstantBuf::default();
                let text = self.instants.column(b, row, c, &mut buf).map_err(sql_err)?;
                ctx.set_result(text)
            }
            Kind::Cost => ctx.set_result(b.cost(row, &mut [0u8; 48])),
            Kind::IngestedAt => ctx.set_result(s.ingested_at.as_str()),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        match self.scan.current() {
            Some((s, row)) => Ok(s.seq(row)),
            None => Err(module_err("no current row")),
        }
    }
}

// Columns the pruning relies on, checked against the column list.
const _: () = {
    assert!(matches!(COLUMNS[COL_OCCURRED_AT].1, Kind::Instant));
    assert!(matches!(COLUMNS[COL_EVENT_ID].1, Kind::Text));
    assert!(matches!(COLUMNS[COL_SEQ].1, Kind::Seq));
};
