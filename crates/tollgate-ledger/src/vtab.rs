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
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ffi::{CStr, c_int};
use std::fmt::Write as _;

use rusqlite::types::Value;
use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, Module, VTab, VTabConnection, VTabCursor,
};
use rusqlite::{Connection, ffi};

use crate::blocks::{self, ALL, Block, COL_EVENT_ID, COL_OCCURRED_AT, COL_SEQ, COLUMNS, Kind};

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
            pending: Vec::new(),
            next_block: 0,
            slots: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            cur: (0, 0),
            by_time: false,
            eof: true,
            mask: ALL,
            instants: InstantText::default(),
            _tab: std::marker::PhantomData,
        })
    }
}

/// One loaded block and the order its rows are read in.
#[derive(Default)]
struct Slot {
    block: Block,
    min_seq: i64,
    ingested_at: String,
    /// Row indices in (occurred_at, seq) order (time-ordered reads only).
    order: Vec<u32>,
    /// The next position in the block (seq order) or in `order` (time order).
    pos: usize,
}

impl Slot {
    fn seq(&self, row: usize) -> i64 {
        self.min_seq + self.block.raw(row, COL_SEQ) as i64
    }

    fn key(&self, row: usize) -> (i64, i64) {
        let at = self.block.int(row, COL_OCCURRED_AT).unwrap_or(i64::MIN);
        (at, self.seq(row))
    }
}

/// A block still to read, with its earliest instant (microseconds) for time-ordered reads.
struct Pending {
    id: i64,
    min_us: i64,
}

#[repr(C)]
struct EventsCursor<'vtab> {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab_cursor,
    conn: Connection,
    /// The blocks to read: by block id, or by earliest instant for time-ordered reads.
    pending: Vec<Pending>,
    next_block: usize,
    /// Loaded blocks: one at a time in seq order; in time order, every block that may hold
    /// the next row (blocks whose time ranges overlap are read side by side).
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Time order: each active slot's next row as (occurred_at, seq, slot), least first.
    heap: BinaryHeap<Reverse<(i64, i64, usize)>>,
    /// The current row: slot and row index in its block.
    cur: (usize, usize),
    by_time: bool,
    eof: bool,
    /// The columns to decode (bit `c` for column `c`), from `best_index`.
    mask: u64,
    instants: InstantText,
    _tab: std::marker::PhantomData<&'vtab EventsTab>,
}

/// Formats instants as the ledger stores them, remembering the last day's date text (rows
/// come mostly in time order, so most share it).
#[derive(Default)]
struct InstantText {
    /// The day (since the epoch) and its `YYYY-MM-DDT`.
    day: std::cell::Cell<Option<(i64, [u8; 11])>>,
}

impl InstantText {
    /// `us` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` in `buf`, or `None` for years outside 0-9999
    /// (the caller formats those in full).
    fn format<'b>(&self, us: i64, buf: &'b mut [u8; 27]) -> Option<&'b str> {
        let day = us.div_euclid(86_400_000_000);
        let date = match self.day.get() {
            Some((d, date)) if d == day => date,
            _ => {
                let t = jiff::Timestamp::from_microsecond(day * 86_400_000_000).ok()?;
                let mut s = String::with_capacity(27);
                tollgate_core::event::write_instant(&mut s, t);
                let b = s.as_bytes();
                if b.len() != 27 || b[10] != b'T' {
                    return None;
                }
                let mut date = [0u8; 11];
                date.copy_from_slice(&b[..11]);
                self.day.set(Some((day, date)));
                date
            }
        };
        buf[..11].copy_from_slice(&date);
        let rest = us.rem_euclid(86_400_000_000);
        let (secs, frac) = (rest / 1_000_000, rest % 1_000_000);
        let put = |buf: &mut [u8; 27], at: usize, v: i64, width: usize| {
            let mut v = v;
            for i in (0..width).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(buf, 11, secs / 3600, 2);
        buf[13] = b':';
        put(buf, 14, secs / 60 % 60, 2);
        buf[16] = b':';
        put(buf, 17, secs % 60, 2);
        buf[19] = b'.';
        put(buf, 20, frac, 6);
        buf[26] = b'Z';
        std::str::from_utf8(&buf[..]).ok()
    }
}

fn module_err(e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::ModuleError(e.to_string())
}

impl EventsCursor<'_> {
    /// Loads block `id` into slot `slot`.
    fn load(&mut self, slot: usize, id: i64) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT min_seq, ingested_at, data FROM event_blocks WHERE block_id = ?1",
        )?;
        let mut rows = stmt.query([id])?;
        let Some(r) = rows.next()? else {
            return Err(module_err(format!("event block {id} vanished")));
        };
        let s = &mut self.slots[slot];
        s.min_seq = r.get(0)?;
        s.ingested_at.clear();
        s.ingested_at.push_str(r.get_ref(1)?.as_str()?);
        // The block's bytes go into the slot's previous buffer (no allocation per block).
        let mut data = s.block.take_data();
        data.clear();
        data.extend_from_slice(r.get_ref(2)?.as_blob()?);
        s.block.load(data, self.mask).map_err(module_err)?;
        s.pos = 0;
        Ok(())
    }

    /// Seq order: moves to the first row of the next non-empty block, or sets `eof`.
    fn load_next(&mut self) -> rusqlite::Result<()> {
        if self.slots.is_empty() {
            self.slots.push(Slot::default());
        }
        loop {
            let Some(id) = self.pending.get(self.next_block).map(|p| p.id) else {
                self.eof = true;
                return Ok(());
            };
            self.next_block += 1;
            self.load(0, id)?;
            if self.slots[0].block.n > 0 {
                self.cur = (0, 0);
                self.eof = false;
                return Ok(());
            }
        }
    }

    /// Time order: loads every pending block that may hold the next row, then moves to the
    /// least row of the active blocks, or sets `eof`.
    fn advance_by_time(&mut self) -> rusqlite::Result<()> {
        while let Some(p) = self.pending.get(self.next_block) {
            if let Some(Reverse((at, _, _))) = self.heap.peek()
                && p.min_us > *at
            {
                break;
            }
            let id = p.id;
            self.next_block += 1;
            let slot = match self.free.pop() {
                Some(s) => s,
                None => {
                    self.slots.push(Slot::default());
                    self.slots.len() - 1
                }
            };
            self.load(slot, id)?;
            let s = &mut self.slots[slot];
            let mut order = std::mem::take(&mut s.order);
            order.clear();
            order.extend(0..s.block.n as u32);
            // Rows usually arrive in time order already: the stable sort sees one run.
            order.sort_by_key(|&r| s.key(r as usize));
            s.order = order;
            match s.order.first() {
                Some(&r) => {
                    let (at, seq) = s.key(r as usize);
                    self.heap.push(Reverse((at, seq, slot)));
                }
                None => self.free.push(slot),
            }
        }
        match self.heap.peek() {
            Some(Reverse((_, _, slot))) => {
                let s = &self.slots[*slot];
                self.cur = (*slot, s.order[s.pos] as usize);
                self.eof = false;
            }
            None => self.eof = true,
        }
        Ok(())
    }
}

unsafe impl VTabCursor for EventsCursor<'_> {
    fn filter(
        &mut self,
        idx_num: c_int,
        idx_str: Option<&str>,
        args: &Filters<'_>,
    ) -> rusqlite::Result<()> {
        self.mask = idx_str
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .unwrap_or(ALL);
        self.by_time = idx_num & BY_TIME != 0;
        if self.by_time {
            self.mask |= 1 << COL_OCCURRED_AT;
        }
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
        sql.push_str(if self.by_time {
            " ORDER BY min_occurred_at, block_id"
        } else {
            " ORDER BY block_id"
        });
        self.pending.clear();
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
                let min: &str = r.get_ref(2)?.as_str()?;
                let min_us = min
                    .parse::<jiff::Timestamp>()
                    .map_err(module_err)?
                    .as_microsecond();
                self.pending.push(Pending { id, min_us });
            }
        }
        self.next_block = 0;
        self.heap.clear();
        self.free = (0..self.slots.len()).collect();
        if self.by_time {
            self.advance_by_time()
        } else {
            self.load_next()
        }
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        if self.by_time {
            let Some(Reverse((_, _, slot))) = self.heap.pop() else {
                self.eof = true;
                return Ok(());
            };
            let s = &mut self.slots[slot];
            s.pos += 1;
            match s.order.get(s.pos) {
                Some(&r) => {
                    let (at, seq) = s.key(r as usize);
                    self.heap.push(Reverse((at, seq, slot)));
                }
                None => self.free.push(slot),
            }
            return self.advance_by_time();
        }
        let s = &mut self.slots[0];
        s.pos += 1;
        if s.pos >= s.block.n {
            return self.load_next();
        }
        self.cur = (0, s.pos);
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
        let (slot, row) = self.cur;
        let s = &self.slots[slot];
        let b = &s.block;
        match kind {
            Kind::Seq => ctx.set_result(s.seq(row)),
            Kind::Text => ctx.set_result(b.text(row, c)),
            Kind::Int => ctx.set_result(b.int(row, c)),
            Kind::Instant => match b.int(row, c) {
                None => ctx.set_result(rusqlite::types::Null),
                Some(us) => {
                    let mut buf = [0u8; 27];
                    match self.instants.format(us, &mut buf) {
                        Some(text) => ctx.set_result(text),
                        None => {
                            let t = jiff::Timestamp::from_microsecond(us).map_err(module_err)?;
                            let mut text = String::with_capacity(27);
                            tollgate_core::event::write_instant(&mut text, t);
                            ctx.set_result(text)
                        }
                    }
                }
            },
            Kind::Cost => match b.int(row, blocks::COL_COST_E12) {
                None => ctx.set_result(rusqlite::types::Null),
                Some(e12) => {
                    let mut buf = [0u8; 48];
                    ctx.set_result(blocks::format_e12(e12, &mut buf))
                }
            },
            Kind::IngestedAt => ctx.set_result(s.ingested_at.as_str()),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        let (slot, row) = self.cur;
        Ok(self.slots[slot].seq(row))
    }
}

// Columns the pruning relies on, checked against the column list.
const _: () = {
    assert!(matches!(COLUMNS[COL_OCCURRED_AT].1, Kind::Instant));
    assert!(matches!(COLUMNS[COL_EVENT_ID].1, Kind::Text));
    assert!(matches!(COLUMNS[COL_SEQ].1, Kind::Seq));
};
