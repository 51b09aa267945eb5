//! The `events` table: a read-only SQLite virtual table over the event blocks.
//!
//! Registered on every connection the ledger opens (`register`), as an eponymous table named
//! `events`, so `SELECT ... FROM events` works as it did when events were rows. It has the
//! columns of [`blocks::COLUMNS`]; its rowid is `seq`. Constraints on `occurred_at`, `seq` (or
//! the rowid) and `event_id = ?` choose which blocks to read (blocks record their first and last
//! instant and seq, and their ids' hashes); SQLite still checks every constraint on every row,
//! so the pruning only has to be conservative. Rows come in `seq` order, which the table tells
//! SQLite so that `ORDER BY seq` needs no sort.
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

use rusqlite::types::{Value, ValueRef};
use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, Module, VTab, VTabConnection, VTabCursor,
};
use rusqlite::{Connection, ffi};

use crate::blocks::{self, Block, COL_EVENT_ID, COL_OCCURRED_AT, COL_SEQ, COLUMNS, Kind, STORED};

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
        let mut by_seq = false;
        {
            let mut obs = info.order_bys();
            if let Some(o) = obs.next()
                && (o.column() == 0 || o.column() == -1)
                && !o.is_order_by_desc()
                && obs.next().is_none()
            {
                by_seq = true;
            }
        }
        if by_seq {
            info.set_order_by_consumed(true);
            plan |= BY_SEQ;
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
        Ok(true)
    }

    fn open(&'vtab mut self) -> rusqlite::Result<EventsCursor<'vtab>> {
        // SAFETY: `db` is this table's own connection, open while any cursor exists; the
        // wrapper does not close it when dropped.
        let conn = unsafe { Connection::from_handle(self.db) }?;
        Ok(EventsCursor {
            base: ffi::sqlite3_vtab_cursor::default(),
            conn,
            blocks: Vec::new(),
            next_block: 0,
            block: Block::default(),
            min_seq: 0,
            ingested_at: String::new(),
            row: 0,
            eof: true,
            _tab: std::marker::PhantomData,
        })
    }
}

#[repr(C)]
struct EventsCursor<'vtab> {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab_cursor,
    conn: Connection,
    /// The blocks to read, in order.
    blocks: Vec<i64>,
    next_block: usize,
    block: Block,
    min_seq: i64,
    ingested_at: String,
    row: usize,
    eof: bool,
    _tab: std::marker::PhantomData<&'vtab EventsTab>,
}

impl EventsCursor<'_> {
    /// Loads the next non-empty block, or sets `eof`.
    fn load_next(&mut self) -> rusqlite::Result<()> {
        loop {
            let Some(&id) = self.blocks.get(self.next_block) else {
                self.eof = true;
                return Ok(());
            };
            self.next_block += 1;
            let (min_seq, ingested_at, data): (i64, String, Vec<u8>) = self.conn.query_row(
                "SELECT min_seq, ingested_at, data FROM event_blocks WHERE block_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            self.block = Block::decode(data, STORED)
                .map_err(|e| rusqlite::Error::ModuleError(e.to_string()))?;
            self.min_seq = min_seq;
            self.ingested_at = ingested_at;
            self.row = 0;
            if self.block.n > 0 {
                self.eof = false;
                return Ok(());
            }
        }
    }
}

unsafe impl VTabCursor for EventsCursor<'_> {
    fn filter(
        &mut self,
        idx_num: c_int,
        _idx_str: Option<&str>,
        args: &Filters<'_>,
    ) -> rusqlite::Result<()> {
        let mut sql = String::from("SELECT block_id, ids FROM event_blocks WHERE 1");
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
                (OCC_LO | OCC_HI | SEQ_LO | SEQ_HI, v @ (Value::Text(_) | Value::Integer(_)))
                    if matches!(
                        (bit, &v),
                        (OCC_LO | OCC_HI, Value::Text(_)) | (SEQ_LO | SEQ_HI, Value::Integer(_))
                    ) =>
                {
                    params.push(v);
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
        sql.push_str(" ORDER BY block_id");
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        self.blocks.clear();
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            if let Some(h) = id_hash {
                let ValueRef::Blob(ids) = r.get_ref(1)? else {
                    continue;
                };
                if !blocks::ids_contain(ids, h) {
                    continue;
                }
            }
            self.blocks.push(id);
        }
        drop(rows);
        drop(stmt);
        self.next_block = 0;
        self.load_next()
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.row += 1;
        if self.row >= self.block.n {
            self.load_next()?;
        }
        Ok(())
    }

    fn eof(&self) -> bool {
        self.eof
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        let c = usize::try_from(i).unwrap_or(usize::MAX);
        let Some(&(_, kind)) = COLUMNS.get(c) else {
            return ctx.set_result(rusqlite::types::Null);
        };
        let b = &self.block;
        match kind {
            Kind::Seq => ctx.set_result(self.seq()),
            Kind::Text => ctx.set_result(b.text(self.row, c)),
            Kind::Int => ctx.set_result(b.int(self.row, c)),
            Kind::Instant => match b.int(self.row, c) {
                None => ctx.set_result(rusqlite::types::Null),
                Some(us) => {
                    let t = jiff::Timestamp::from_microsecond(us)
                        .map_err(|e| rusqlite::Error::ModuleError(e.to_string()))?;
                    let mut s = String::with_capacity(27);
                    tollgate_core::event::write_instant(&mut s, t);
                    ctx.set_result(s)
                }
            },
            Kind::Cost => match b.int(self.row, blocks::COL_COST_E12) {
                None => ctx.set_result(rusqlite::types::Null),
                Some(e12) => {
                    let d = tollgate_core::money::from_scaled_e12(i128::from(e12))
                        .map_err(|e| rusqlite::Error::ModuleError(e.to_string()))?;
                    ctx.set_result(d.normalize().to_string())
                }
            },
            Kind::IngestedAt => ctx.set_result(self.ingested_at.as_str()),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(self.seq())
    }
}

impl EventsCursor<'_> {
    fn seq(&self) -> i64 {
        self.min_seq + self.block.raw(self.row, COL_SEQ) as i64
    }
}

// Columns the pruning relies on, checked against the column list.
const _: () = {
    assert!(matches!(COLUMNS[COL_OCCURRED_AT].1, Kind::Instant));
    assert!(matches!(COLUMNS[COL_EVENT_ID].1, Kind::Text));
    assert!(matches!(COLUMNS[COL_SEQ].1, Kind::Seq));
};
