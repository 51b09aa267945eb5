//! Reading events straight from the blocks, in Rust: [`BlockScan`] walks the rows of a list of
//! event blocks in `seq` order (one block after another) or in `(occurred_at, seq)` order (a
//! heap merge of the blocks whose time ranges overlap), optionally only the rows in a time
//! range `[start, end)` and with one text column equal to a value.
//!
//! The `events` virtual table (`vtab.rs`) reads through it, and so does the audit export
//! (`sqlite.rs`), which builds its rows from the blocks without a SQL call per value. Both
//! format instants with [`InstantText`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;

use rusqlite::Connection;

use crate::blocks::{Block, COL_OCCURRED_AT, COL_SEQ};
use crate::{LedgerError, Result};

/// One loaded block and the order its rows are read in.
#[derive(Default)]
pub(crate) struct Slot {
    pub block: Block,
    pub min_seq: i64,
    pub ingested_at: String,
    /// The rows to read (indices in the block), in the scan's order.
    order: Vec<u32>,
    /// The next position in `order`.
    pos: usize,
}

impl Slot {
    /// The `seq` of row `row`.
    pub fn seq(&self, row: usize) -> i64 {
        self.min_seq + self.block.raw(row, COL_SEQ) as i64
    }

    /// The time-order key of row `row` (a NULL instant sorts first).
    fn key(&self, row: usize) -> (i64, i64) {
        let at = self.block.int(row, COL_OCCURRED_AT).unwrap_or(i64::MIN);
        (at, self.seq(row))
    }

    /// Loads block `id`, decoding the columns in `mask`.
    fn load(&mut self, conn: &Connection, id: i64, mask: u64) -> Result<()> {
        let mut stmt = conn.prepare_cached(
            "SELECT min_seq, ingested_at, data FROM event_blocks WHERE block_id = ?1",
        )?;
        let mut rows = stmt.query([id])?;
        let Some(r) = rows.next()? else {
            return Err(LedgerError::Corrupt(format!("event block {id} vanished")));
        };
        self.min_seq = r.get(0)?;
        self.ingested_at.clear();
        self.ingested_at
            .push_str(r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?);
        // Decoded straight from SQLite's copy of the bytes, into the slot's buffers.
        let data = r.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
        self.block.load(data, mask)?;
        self.pos = 0;
        Ok(())
    }
}

/// The order rows come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// By `seq`: the blocks one after another, in the order they were added.
    Seq,
    /// By `(occurred_at, seq)`: the blocks must be added by earliest instant.
    Time,
}

/// A block still to read, with its earliest instant (microseconds).
struct Pending {
    id: i64,
    min_us: i64,
}

/// Which rows of a block a scan yields.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowFilter {
    /// Only rows with `start <= occurred_at < end` (microseconds; a NULL instant is outside).
    pub range: Option<(i64, i64)>,
    /// Only rows whose text column `.0` is `.1` (a NULL is not equal to any text).
    pub text_eq: Option<(usize, String)>,
}

impl RowFilter {
    fn keeps(&self, b: &Block, row: usize) -> bool {
        if let Some((start, end)) = self.range {
            match b.int(row, COL_OCCURRED_AT) {
                Some(at) if at >= start && at < end => {}
                _ => return false,
            }
        }
        match &self.text_eq {
            Some((c, v)) => b.text(row, *c) == Some(v.as_str()),
            None => true,
        }
    }

    /// The columns [`RowFilter::keeps`] reads.
    fn mask(&self) -> u64 {
        let mut m = 0;
        if self.range.is_some() {
            m |= 1 << COL_OCCURRED_AT;
        }
        if let Some((c, _)) = self.text_eq {
            m |= 1 << c;
        }
        m
    }
}

/// A scan over event blocks: [`BlockScan::reset`], [`BlockScan::add_block`] for each block to
/// read, [`BlockScan::begin`]; then [`BlockScan::current`] is the current row (or `None` at
/// the end) and [`BlockScan::advance`] moves on. [`BlockScan::time_range`] does the first three
/// for the events of a time range in time order.
///
/// In time order the blocks are loaded as the merge reaches their earliest instant: every
/// block that may hold the next row is loaded, so blocks whose time ranges overlap are read
/// side by side, and memory is one block per overlapping block. The connection is passed to
/// each call that may load a block (the scan does not keep it).
pub(crate) struct BlockScan {
    /// The blocks to read, in the order they were added.
    pending: Vec<Pending>,
    next_block: usize,
    /// Loaded blocks: one at a time in seq order; in time order, every block that may hold
    /// the next row.
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Time order: each active slot's next row as (occurred_at, seq, slot), least first.
    heap: BinaryHeap<Reverse<(i64, i64, usize)>>,
    /// The current row: slot and row index in its block.
    cur: Option<(usize, usize)>,
    order: Order,
    /// The columns to decode (bit `c` for column `c`).
    mask: u64,
    filter: RowFilter,
}

impl Default for BlockScan {
    fn default() -> Self {
        BlockScan {
            pending: Vec::new(),
            next_block: 0,
            slots: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            cur: None,
            order: Order::Seq,
            mask: 0,
            filter: RowFilter::default(),
        }
    }
}

/// Parses a stored instant into microseconds.
fn micros(text: &str) -> Result<i64> {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_microsecond())
        .map_err(|_| LedgerError::Corrupt(format!("bad stored instant {text:?}")))
}

impl BlockScan {
    /// Forgets the blocks of the previous scan (keeping the buffers) and sets how the next one
    /// reads: in `order`, decoding the columns in `mask` (plus what the order and the filter
    /// need), yielding the rows `filter` keeps.
    pub fn reset(&mut self, order: Order, mask: u64, filter: RowFilter) {
        let mut mask = mask | (1 << COL_SEQ) | filter.mask();
        if order == Order::Time {
            mask |= 1 << COL_OCCURRED_AT;
        }
        self.order = order;
        self.mask = mask;
        self.filter = filter;
        self.pending.clear();
        self.next_block = 0;
        self.heap.clear();
        self.cur = None;
        self.free = (0..self.slots.len()).collect();
    }

    /// Adds block `id`, whose earliest instant is `min_occurred_at` (as stored), to read.
    pub fn add_block(&mut self, id: i64, min_occurred_at: &str) -> Result<()> {
        let min_us = micros(min_occurred_at)?;
        self.pending.push(Pending { id, min_us });
        Ok(())
    }

    /// Moves to the first row.
    pub fn begin(&mut self, conn: &Connection) -> Result<()> {
        match self.order {
            Order::Seq => self.next_seq_block(conn),
            Order::Time => self.fill(conn),
        }
    }

    /// The events with `start <= occurred_at < end` (instants as stored, `start` and `end`
    /// in the ledger's format) and, when `text_eq` is given, that text column equal to that
    /// value, in `(occurred_at, seq)` order, decoding the columns in `mask`. Reads only the
    /// blocks whose time range meets `[start, end)`.
    pub fn time_range(
        &mut self,
        conn: &Connection,
        (start, end): (&str, &str),
        mask: u64,
        text_eq: Option<(usize, String)>,
    ) -> Result<()> {
        let range = (micros(start)?, micros(end)?);
        self.reset(
            Order::Time,
            mask,
            RowFilter {
                range: Some(range),
                text_eq,
            },
        );
        {
            let mut stmt = conn.prepare_cached(
                "SELECT block_id, min_occurred_at FROM event_blocks
                 WHERE max_occurred_at >= ?1 AND min_occurred_at < ?2
                 ORDER BY min_occurred_at, block_id",
            )?;
            let mut rows = stmt.query([start, end])?;
            while let Some(r) = rows.next()? {
                self.add_block(
                    r.get(0)?,
                    r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?,
                )?;
            }
        }
        self.begin(conn)
    }

    /// The current row: its block (slot) and its index in the block; `None` at the end.
    pub fn current(&self) -> Option<(&Slot, usize)> {
        let (slot, row) = self.cur?;
        Some((self.slots.get(slot)?, row))
    }

    /// Moves to the next row.
    pub fn advance(&mut self, conn: &Connection) -> Result<()> {
        match self.order {
            Order::Seq => {
                let Some(s) = self.slots.first_mut() else {
                    self.cur = None;
                    return Ok(());
                };
                s.pos += 1;
                match s.order.get(s.pos) {
                    Some(&r) => {
                        self.cur = Some((0, r as usize));
                        Ok(())
                    }
                    None => self.next_seq_block(conn),
                }
            }
            Order::Time => {
                let Some(mut top) = self.heap.peek_mut() else {
                    self.cur = None;
                    return Ok(());
                };
                let slot = top.0.2;
                let s = &mut self.slots[slot];
                s.pos += 1;
                match s.order.get(s.pos) {
                    // The slot's next row replaces it at the top (one sift, no pop and push).
                    Some(&r) => {
                        let (at, seq) = s.key(r as usize);
                        *top = Reverse((at, seq, slot));
                        drop(top);
                    }
                    None => {
                        PeekMut::pop(top);
                        self.free.push(slot);
                    }
                }
                self.fill(conn)
            }
        }
    }

    /// Loads `id` into `slot` and lists the rows to read, in the scan's order.
    fn load(&mut self, conn: &Connection, slot: usize, id: i64) -> Result<()> {
        let s = &mut self.slots[slot];
        s.load(conn, id, self.mask)?;
        let mut order = std::mem::take(&mut s.order);
        order.clear();
        let filter = &self.filter;
        if filter.range.is_none() && filter.text_eq.is_none() {
            order.extend(0..s.block.n as u32);
        } else {
            order.extend((0..s.block.n as u32).filter(|&r| filter.keeps(&s.block, r as usize)));
        }
        if self.order == Order::Time {
            // Rows usually arrive in time order already: the stable sort sees one run.
            order.sort_by_key(|&r| s.key(r as usize));
        }
        s.order = order;
        Ok(())
    }

    /// Seq order: moves to the first row of the next block with rows to read, or to the end.
    fn next_seq_block(&mut self, conn: &Connection) -> Result<()> {
        if self.slots.is_empty() {
            self.slots.push(Slot::default());
        }
        loop {
            let Some(id) = self.pending.get(self.next_block).map(|p| p.id) else {
                self.cur = None;
                return Ok(());
            };
            self.next_block += 1;
            self.load(conn, 0, id)?;
            if let Some(&r) = self.slots[0].order.first() {
                self.cur = Some((0, r as usize));
                return Ok(());
            }
        }
    }

    /// Time order: loads every pending block that may hold the next row, then moves to the
    /// least row of the active blocks, or to the end.
    fn fill(&mut self, conn: &Connection) -> Result<()> {
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
            self.load(conn, slot, id)?;
            let s = &self.slots[slot];
            match s.order.first() {
                Some(&r) => {
                    let (at, seq) = s.key(r as usize);
                    self.heap.push(Reverse((at, seq, slot)));
                }
                None => self.free.push(slot),
            }
        }
        self.cur = match self.heap.peek() {
            Some(Reverse((_, _, slot))) => {
                let s = &self.slots[*slot];
                s.order.get(s.pos).map(|&r| (*slot, r as usize))
            }
            None => None,
        };
        Ok(())
    }
}

/// A buffer for [`InstantText::text`].
#[derive(Default)]
pub(crate) struct InstantBuf {
    short: [u8; 27],
    /// Instants outside the years 0-9999, formatted in full.
    long: String,
}

/// Formats instants as the ledger stores them, remembering the last day's date text (rows
/// come mostly in time order, so most share it).
#[derive(Default)]
pub(crate) struct InstantText {
    /// The day (since the epoch) and its `YYYY-MM-DDT`.
    day: std::cell::Cell<Option<(i64, [u8; 11])>>,
}

impl InstantText {
    /// Instant column `c` of event `row` of `b` as text in `buf` (`None` for NULL).
    pub fn column<'b>(
        &self,
        b: &Block,
        row: usize,
        c: usize,
        buf: &'b mut InstantBuf,
    ) -> Result<Option<&'b str>> {
        match b.int(row, c) {
            None => Ok(None),
            Some(us) => self.text(us, buf).map(Some),
        }
    }

    /// `us` (microseconds since the epoch) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the text
    /// `tollgate_core::event::write_instant` gives, in `buf`.
    pub fn text<'b>(&self, us: i64, buf: &'b mut InstantBuf) -> Result<&'b str> {
        if self.format(us, &mut buf.short) {
            // `format` wrote ASCII digits and separators only.
            return std::str::from_utf8(&buf.short)
                .map_err(|e| LedgerError::Corrupt(format!("instant text: {e}")));
        }
        let t = jiff::Timestamp::from_microsecond(us)
            .map_err(|e| LedgerError::Corrupt(format!("stored instant {us}: {e}")))?;
        buf.long.clear();
        tollgate_core::event::write_instant(&mut buf.long, t);
        Ok(&buf.long)
    }

    /// Writes `us` into `buf`; `false` (for years outside 0-9999) when the text does not have
    /// that fixed form.
    fn format(&self, us: i64, buf: &mut [u8; 27]) -> bool {
        let day = us.div_euclid(86_400_000_000);
        let date = match self.day.get() {
            Some((d, date)) if d == day => date,
            _ => {
                let Ok(t) = jiff::Timestamp::from_microsecond(day * 86_400_000_000) else {
                    return false;
                };
                let mut s = String::with_capacity(27);
                tollgate_core::event::write_instant(&mut s, t);
                let b = s.as_bytes();
                if b.len() != 27 || b[10] != b'T' {
                    return false;
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
        true
    }
}
