//! Event blocks: how the SQLite ledger stores events.
//!
//! Events are stored many to a row of `event_blocks` (one block per append, at most
//! [`BLOCK_EVENTS`] events), encoded compactly: a per-block string dictionary (each distinct
//! string once: team, model, tags, ...), then each event as a sequence of variable-length
//! integers, one per stored column of [`COLUMNS`]. The SQL table `events` that reports, `tollgate
//! sql` and users query is a read-only virtual table over the blocks (`vtab.rs`) with the same
//! columns, types and values as the row-per-event table of schema versions 1 to 9.
//!
//! Why: a row per event with a unique `event_id` index cost ~35,000 instructions per event in
//! SQLite (binding 49 columns, B-tree inserts into the table and three indexes), which capped
//! ingest at ~130,000 events/s on the project's 2-core machine. A block is one B-tree insert for
//! thousands of events.
//!
//! Duplicate detection (`event_id` is unique in the ledger) uses a 64-bit hash of each id: every
//! block stores its ids' hashes, sorted, in `event_blocks.ids`; the writer keeps them in memory
//! (sorted per shard, behind a Bloom filter). A hash seen before is only a candidate: the
//! writer finds a block holding it and compares the ids themselves, so two different ids that
//! share a hash are both stored.
//!
//! Value encoding per column kind (`0` always means NULL):
//! - text: `k + 1` for the k-th string of the block's dictionary;
//! - integer and instant (microseconds since the Unix epoch): zigzag(v) + 1;
//! - `seq`: the offset from the block's `min_seq` (never NULL).
//!
//! `cost` is not stored: it is `cost_e12 / 10^12`, exactly (the ledger refuses costs with more
//! than 12 decimals), shown normalized as before. `ingested_at` is one per block.

use crate::{LedgerError, Result};

/// Most events in one block (the ingest batch size).
pub const BLOCK_EVENTS: usize = 8192;

/// Block format version (first byte of every block). Blocks of format 2 (written on
/// 2026-12-03 before format 3) are still read.
const FORMAT: u8 = 3;
const FORMAT_2: u8 = 2;

/// Columns of ids, unique to their event (`event_id`, `request_id`, `parent_request_id`,
/// `trace_id`, `span_id`): stored in their column (not the dictionary), the hex digits that
/// end them packed two to a byte (see [`BlockEncoder::text_unique`]).
pub const fn unique(c: usize) -> bool {
    let mut i = 0;
    while i < ID_COLUMNS.len() {
        if ID_COLUMNS[i] == c {
            return true;
        }
        i += 1;
    }
    false
}

const ID_COLUMNS: [usize; 5] = [
    column("event_id"),
    column("request_id"),
    column("parent_request_id"),
    column("trace_id"),
    column("span_id"),
];

/// `completed_at`: stored as its distance from the event's `occurred_at`.
const COL_COMPLETED_AT: usize = column("completed_at");

// The columns named above exist (`column` gives `COLUMNS.len()` for a missing name) and are
// stored per event before `cost` (their stored index is their column index).
const _: () = {
    let mut i = 0;
    while i < ID_COLUMNS.len() {
        assert!(ID_COLUMNS[i] < 39 && matches!(COLUMNS[ID_COLUMNS[i]].1, Kind::Text));
        i += 1;
    }
    assert!(matches!(COLUMNS[COL_COMPLETED_AT].1, Kind::Instant));
    assert!(COL_COMPLETED_AT < 39);
};

/// Tags of a value in a column of ids.
const ID_NULL: u8 = 0;
/// Any text: length, bytes.
const ID_RAW: u8 = 1;
/// A prefix (length, bytes), then a run of lowercase hex digits (count, packed).
const ID_HEX: u8 = 2;
/// The same prefix as the column's previous `ID_HEX`/`ID_SAME` value, then the hex run.
const ID_SAME: u8 = 3;
/// A UUID in its canonical lowercase form: the 16 bytes.
const ID_UUID: u8 = 4;

/// Shortest hex run worth packing.
const MIN_HEX: usize = 8;

/// Each byte's value as a lowercase hex digit, or [`NOT_HEX`].
const HEX_VALUE: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 16 {
        t[HEX[i] as usize] = i as u8;
        i += 1;
    }
    t
};
const NOT_HEX: u8 = 0xFF;

const HEX: &[u8; 16] = b"0123456789abcdef";

fn is_hex(c: u8) -> bool {
    HEX_VALUE[usize::from(c)] != NOT_HEX
}

/// Packs the hex digits `h` (all lowercase hex), two per byte, high nibble first.
fn pack_hex(out: &mut Vec<u8>, h: &[u8]) {
    let v = |c: u8| HEX_VALUE[usize::from(c)] & 15;
    let mut pairs = h.chunks_exact(2);
    for p in &mut pairs {
        out.push((v(p[0]) << 4) | v(p[1]));
    }
    if let [last] = pairs.remainder() {
        out.push(v(*last) << 4);
    }
}

/// The hyphens of a canonical UUID (`8-4-4-4-12` hex digits).
const UUID_HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// Whether `b` is a UUID as `8-4-4-4-12` lowercase hex digits.
fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && UUID_HYPHENS.iter().all(|&i| b[i] == b'-')
        && b.iter()
            .enumerate()
            .all(|(i, &c)| is_hex(c) || UUID_HYPHENS.contains(&i))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The event's position in the ledger (the virtual table's rowid).
    Seq,
    Text,
    Int,
    /// An instant, shown as `2026-07-01T12:00:00.000000Z`.
    Instant,
    /// `cost`, derived from `cost_e12`.
    Cost,
    /// `ingested_at`, one per block.
    IngestedAt,
}

/// The columns of `events`, in order (the row-per-event table of schema versions 1 to 9).
pub const COLUMNS: [(&str, Kind); 50] = [
    ("seq", Kind::Seq),
    ("event_id", Kind::Text),
    ("request_id", Kind::Text),
    ("attempt", Kind::Int),
    ("parent_request_id", Kind::Text),
    ("occurred_at", Kind::Instant),
    ("completed_at", Kind::Instant),
    ("trace_id", Kind::Text),
    ("span_id", Kind::Text),
    ("session_id", Kind::Text),
    ("team_id", Kind::Text),
    ("cost_center", Kind::Text),
    ("service", Kind::Text),
    ("feature", Kind::Text),
    ("environment", Kind::Text),
    ("tenant_id", Kind::Text),
    ("user_id", Kind::Text),
    ("api_key_id", Kind::Text),
    ("region", Kind::Text),
    ("tags", Kind::Text),
    ("attribution_status", Kind::Text),
    ("provider", Kind::Text),
    ("model_requested", Kind::Text),
    ("model", Kind::Text),
    ("operation", Kind::Text),
    ("service_tier", Kind::Text),
    ("status", Kind::Text),
    ("http_status", Kind::Int),
    ("streamed", Kind::Int),
    ("latency_ms", Kind::Int),
    ("ttft_ms", Kind::Int),
    ("input_tokens", Kind::Int),
    ("cache_read_tokens", Kind::Int),
    ("cache_write_tokens", Kind::Int),
    ("cache_write_1h_tokens", Kind::Int),
    ("output_tokens", Kind::Int),
    ("reasoning_tokens", Kind::Int),
    ("units", Kind::Text),
    ("currency", Kind::Text),
    ("cost", Kind::Cost),
    ("cost_e12", Kind::Int),
    ("cost_input_e12", Kind::Int),
    ("cost_cache_read_e12", Kind::Int),
    ("cost_cache_write_e12", Kind::Int),
    ("cost_cache_write_1h_e12", Kind::Int),
    ("cost_output_e12", Kind::Int),
    ("cost_units", Kind::Text),
    ("price_version", Kind::Text),
    ("pricing_status", Kind::Text),
    ("ingested_at", Kind::IngestedAt),
];

pub const COL_SEQ: usize = 0;
pub const COL_EVENT_ID: usize = 1;
pub const COL_OCCURRED_AT: usize = 5;
pub const COL_COST_E12: usize = 40;

/// The index of the column named `name` in [`COLUMNS`] (`COLUMNS.len()` when there is none:
/// use it in a constant, checked against the length at compile time).
pub const fn column(name: &str) -> usize {
    let name = name.as_bytes();
    let mut c = 0;
    while c < COLUMNS.len() {
        let col = COLUMNS[c].0.as_bytes();
        if col.len() == name.len() {
            let mut i = 0;
            while i < col.len() && col[i] == name[i] {
                i += 1;
            }
            if i == col.len() {
                return c;
            }
        }
        c += 1;
    }
    COLUMNS.len()
}

/// Columns with a stored value per event (all but `cost` and `ingested_at`).
pub const STORED: usize = 48;

/// Whether column `c` has a stored value per event.
pub const fn stored(c: usize) -> bool {
    !matches!(COLUMNS[c].1, Kind::Cost | Kind::IngestedAt)
}

/// The 64-bit hash of an event id kept in `event_blocks.ids` (stable: it is stored). Not
/// collision-free; the writer confirms every match by comparing the ids.
pub fn id_hash(id: &str) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    fn mix(a: u64, b: u64) -> u64 {
        let p = u128::from(a) * u128::from(b);
        // The folded product (wyhash's `mum`): the high and low halves xored.
        ((p >> 64) as u64) ^ (p as u64)
    }
    let b = id.as_bytes();
    let mut h = K ^ (b.len() as u64);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(w), 0xA076_1D64_78BD_642F);
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    w[..rest.len()].copy_from_slice(rest);
    h = mix(h ^ u64::from_le_bytes(w), 0xE703_7ED1_A0B4_28DB);
    mix(h, K)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], at: &mut usize) -> Result<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some(&byte) = b.get(*at) else {
            return Err(LedgerError::Corrupt(
                "event block ends inside a value".into(),
            ));
        };
        *at += 1;
        if shift > 63 {
            return Err(LedgerError::Corrupt("event block value too long".into()));
        }
        v |= u64::from(byte & 0x7F) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
        shift += 7;
    }
}

/// A nullable integer as stored: 0 for NULL, zigzag(v) + 1 otherwise.
pub fn enc_int(v: Option<i64>) -> u64 {
    match v {
        None => 0,
        // zigzag(i64::MIN) is u64::MAX; no column holds it (the ledger stores counts, costs
        // and instants), so saturating keeps the encoding total.
        Some(v) => (((v << 1) ^ (v >> 63)) as u64).saturating_add(1),
    }
}

/// The inverse of [`enc_int`].
pub fn dec_int(v: u64) -> Option<i64> {
    (v != 0).then(|| {
        let z = v - 1;
        ((z >> 1) as i64) ^ -((z & 1) as i64)
    })
}

type FxMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<tollgate_core::rates::FxHasher>>;

/// Slots per column in the encoder's text cache.
const CACHE: usize = 16;

/// Builds one block: call [`BlockEncoder::text`], [`BlockEncoder::int`] ... once per stored
/// column, in [`COLUMNS`] order, for each event, then [`BlockEncoder::finish`].
///
/// Layout (all integers varints): format byte, events `n`, strings count, byte length of the
/// string lengths, the lengths, byte length of the strings, the strings' bytes (one UTF-8
/// run), then per stored column its byte length and its `n` values. Column by column, so a
/// reader decodes only the columns a query uses.
pub struct BlockEncoder<'a> {
    dict: FxMap<&'a str, u32>,
    owned: FxMap<String, u32>,
    lens: Vec<u8>,
    bytes: Vec<u8>,
    /// Where each string's bytes are in `bytes`.
    offsets: Vec<(u32, u32)>,
    cols: Vec<Vec<u8>>,
    /// The stored column the next value belongs to.
    col: usize,
    /// Per column, codes of texts stored by [`BlockEncoder::text`] in slots picked from the
    /// text (0: empty slot).
    cache: [[u32; CACHE]; STORED],
    /// Per column of ids, the prefix of its last packed value.
    prefix: [Vec<u8>; STORED],
    /// `occurred_at` of the previous event and of this one (instants are stored as
    /// differences: from the previous event's, and `completed_at` from its event's).
    prev_at: i64,
    row_at: i64,
    n: u32,
}

impl<'a> Default for BlockEncoder<'a> {
    fn default() -> Self {
        BlockEncoder {
            dict: FxMap::default(),
            owned: FxMap::default(),
            lens: Vec::new(),
            bytes: Vec::with_capacity(1 << 16),
            offsets: Vec::new(),
            cols: (0..STORED).map(|_| Vec::with_capacity(1 << 10)).collect(),
            col: 0,
            cache: [[0; CACHE]; STORED],
            prefix: std::array::from_fn(|_| Vec::new()),
            prev_at: 0,
            row_at: 0,
            n: 0,
        }
    }
}

impl<'a> BlockEncoder<'a> {
    fn add_string(
        lens: &mut Vec<u8>,
        bytes: &mut Vec<u8>,
        offsets: &mut Vec<(u32, u32)>,
        s: &str,
    ) -> u32 {
        put_varint(lens, s.len() as u64);
        let at = bytes.len() as u32;
        bytes.extend_from_slice(s.as_bytes());
        offsets.push((at, bytes.len() as u32));
        offsets.len() as u32
    }

    fn put(&mut self, v: u64) {
        // A value past the last column would be a caller bug (`end_row` checks in debug
        // builds); it lands in the last column rather than out of bounds.
        let c = self.col.min(STORED - 1);
        put_varint(&mut self.cols[c], v);
        self.col += 1;
    }

    /// A text value that lives as long as the block's events, stored once per block however
    /// often it occurs. Returns its code (0 for NULL; see [`BlockEncoder::string`]).
    pub fn text(&mut self, s: Option<&'a str>) -> u32 {
        let v = match s {
            None => 0,
            Some(s) => {
                // A small per-column cache first (most columns take few values): a slot
                // picked from the string's length and edge bytes, checked by comparing, is
                // cheaper than hashing the whole string.
                let col = self.col.min(STORED - 1);
                let b = s.as_bytes();
                let slot = match b {
                    [] => 0,
                    [first, .., last] => {
                        (b.len() ^ usize::from(*first) ^ (usize::from(*last) << 2)) & (CACHE - 1)
                    }
                    [one] => usize::from(*one) & (CACHE - 1),
                };
                let cached = self.cache[col][slot];
                if cached != 0 && self.code_bytes(cached) == b {
                    cached
                } else {
                    let (lens, bytes, offsets) =
                        (&mut self.lens, &mut self.bytes, &mut self.offsets);
                    let k = *self
                        .dict
                        .entry(s)
                        .or_insert_with(|| Self::add_string(lens, bytes, offsets, s));
                    self.cache[col][slot] = k;
                    k
                }
            }
        };
        self.put(u64::from(v));
        v
    }

    fn code_bytes(&self, code: u32) -> &[u8] {
        let (a, b) = self.offsets[code as usize - 1];
        &self.bytes[a as usize..b as usize]
    }

    /// A value of a column of ids ([`unique`]), stored in the column itself, tagged: a
    /// canonical lowercase UUID as its 16 bytes; text ending in at least [`MIN_HEX`] lowercase
    /// hex digits as its prefix (or "same prefix as the previous value") and the digits packed
    /// two to a byte (`req_8f2c0ec7d85eda57`: 4 + 8 bytes); anything else as it is.
    pub fn text_unique(&mut self, s: Option<&str>) {
        let c = self.col.min(STORED - 1);
        let out = &mut self.cols[c];
        match s {
            None => out.push(ID_NULL),
            Some(s) => {
                let b = s.as_bytes();
                if is_uuid(b) {
                    out.push(ID_UUID);
                    pack_hex(out, &b[0..8]);
                    pack_hex(out, &b[9..13]);
                    pack_hex(out, &b[14..18]);
                    pack_hex(out, &b[19..23]);
                    pack_hex(out, &b[24..36]);
                    self.col += 1;
                    return;
                }
                let digits = b.iter().rev().take_while(|&&x| is_hex(x)).count();
                if digits >= MIN_HEX {
                    let (pre, hex) = b.split_at(b.len() - digits);
                    let last = &mut self.prefix[c];
                    // Compared in line: prefixes are a few bytes, a call to `memcmp` costs more.
                    let same = last.len() == pre.len()
                        && last.iter().zip(pre).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0;
                    if same {
                        out.push(ID_SAME);
                    } else {
                        out.push(ID_HEX);
                        put_varint(out, pre.len() as u64);
                        out.extend_from_slice(pre);
                        last.clear();
                        last.extend_from_slice(pre);
                    }
                    put_varint(out, digits as u64);
                    pack_hex(out, hex);
                } else {
                    out.push(ID_RAW);
                    put_varint(out, b.len() as u64);
                    out.extend_from_slice(b);
                }
            }
        }
        self.col += 1;
    }

    /// A text value built for this event (JSON of tags, units): copied if new to the block.
    pub fn text_scratch(&mut self, s: Option<&str>) {
        let v = match s {
            None => 0,
            Some(s) => match self.owned.get(s) {
                Some(k) => *k,
                None => {
                    let k = Self::add_string(&mut self.lens, &mut self.bytes, &mut self.offsets, s);
                    self.owned.insert(s.to_string(), k);
                    k
                }
            },
        };
        self.put(u64::from(v));
    }

    /// The text of a code returned by [`BlockEncoder::text`] ("" for NULL).
    pub fn string(&self, code: u32) -> &str {
        if code == 0 {
            return "";
        }
        let (a, b) = self.offsets[code as usize - 1];
        std::str::from_utf8(&self.bytes[a as usize..b as usize]).unwrap_or("")
    }

    pub fn int(&mut self, v: Option<i64>) {
        self.put(enc_int(v));
    }

    /// An instant (microseconds since the Unix epoch): `occurred_at` stored as its distance
    /// from the previous event's (events come mostly in time order: 2-4 bytes instead of 8),
    /// `completed_at` as its distance from its event's `occurred_at`.
    pub fn instant(&mut self, v: Option<i64>) {
        let stored = match v {
            None => None,
            Some(us) if self.col == COL_OCCURRED_AT => {
                let d = us.wrapping_sub(self.prev_at);
                self.prev_at = us;
                self.row_at = us;
                Some(d)
            }
            Some(us) => Some(us.wrapping_sub(self.row_at)),
        };
        self.put(enc_int(stored));
    }

    /// The event's `seq`, as its offset from the block's first.
    pub fn seq_offset(&mut self, off: u64) {
        self.put(off);
    }

    /// Marks the end of one event's values.
    pub fn end_row(&mut self) {
        debug_assert_eq!(self.col, STORED, "one value per stored column");
        self.col = 0;
        self.row_at = 0;
        self.n += 1;
    }

    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The encoded block.
    pub fn finish(&self) -> Vec<u8> {
        let body: usize = self.cols.iter().map(|c| c.len() + 5).sum();
        let mut out = Vec::with_capacity(32 + self.lens.len() + self.bytes.len() + body);
        out.push(FORMAT);
        put_varint(&mut out, u64::from(self.n));
        put_varint(&mut out, self.offsets.len() as u64);
        put_varint(&mut out, self.lens.len() as u64);
        out.extend_from_slice(&self.lens);
        put_varint(&mut out, self.bytes.len() as u64);
        out.extend_from_slice(&self.bytes);
        for c in &self.cols {
            put_varint(&mut out, c.len() as u64);
            out.extend_from_slice(c);
        }
        out
    }
}

/// A decoded block: the dictionary's strings, and the values of the columns asked for (see
/// [`Block::load`]). It keeps no reference to the encoded bytes.
#[derive(Default)]
pub struct Block {
    /// The dictionary's strings, one after another (checked to be UTF-8 once).
    text: String,
    strings: Vec<(u32, u32)>,
    /// `STORED` runs of `n` values; only the asked-for columns' runs are filled.
    vals: Vec<u64>,
    /// Bit `c` set: column `c` (of [`COLUMNS`]) is decoded.
    mask: u64,
    pub n: usize,
}

/// The index of column `c` among the stored values of an event.
pub const fn stored_index(c: usize) -> usize {
    // `cost` (39) is the only unstored column before `ingested_at` (49, the last).
    if c > 39 { c - 1 } else { c }
}

/// A mask of every column.
pub const ALL: u64 = (1 << COLUMNS.len()) - 1;

fn bad(what: &str) -> LedgerError {
    LedgerError::Corrupt(format!("event block: {what}"))
}

/// Format 3 stores instants as differences (see [`BlockEncoder::instant`]): makes the
/// decoded values of column `c` (of `n` events) absolute again.
fn absolute_instants(vals: &mut [u64], c: usize, n: usize) {
    let base = stored_index(c) * n;
    if c == COL_OCCURRED_AT {
        let mut prev: i64 = 0;
        for v in &mut vals[base..base + n] {
            if let Some(d) = dec_int(*v) {
                prev = prev.wrapping_add(d);
                *v = enc_int(Some(prev));
            }
        }
    } else {
        let at = stored_index(COL_OCCURRED_AT) * n;
        for r in 0..n {
            let row_at = dec_int(vals[at + r]).unwrap_or(0);
            let v = &mut vals[base + r];
            if let Some(d) = dec_int(*v) {
                *v = enc_int(Some(row_at.wrapping_add(d)));
            }
        }
    }
}

/// Reads one value of a column of ids at `*p` (see [`BlockEncoder::text_unique`]), appending
/// its text to `text`: its span there, or `None` for NULL. `prefix` is the span in `text` of
/// the column's last prefix.
fn decode_id(
    col: &[u8],
    p: &mut usize,
    prefix: &mut (usize, usize),
    text: &mut String,
) -> Result<Option<(u32, u32)>> {
    let Some(&tag) = col.get(*p) else {
        return Err(bad("a column of ids ends early"));
    };
    *p += 1;
    let take = |p: &mut usize, len: usize| -> Result<std::ops::Range<usize>> {
        let end = p.checked_add(len).filter(|e| *e <= col.len());
        let Some(end) = end else {
            return Err(bad("an id out of bounds"));
        };
        let r = *p..end;
        *p = end;
        Ok(r)
    };
    let unpack = |text: &mut String, packed: &[u8], digits: usize| {
        text.extend((0..digits).map(|i| {
            let b = packed[i / 2];
            let nib = if i % 2 == 0 { b >> 4 } else { b & 15 };
            char::from(HEX[usize::from(nib)])
        }));
    };
    let start = text.len();
    match tag {
        ID_NULL => return Ok(None),
        ID_RAW => {
            let len = get_varint(col, p)? as usize;
            let r = take(p, len)?;
            let Ok(t) = std::str::from_utf8(&col[r]) else {
                return Err(bad("an id is not UTF-8"));
            };
            text.push_str(t);
        }
        ID_UUID => {
            let r = take(p, 16)?;
            let b = &col[r];
            for (i, part) in [0..4, 4..6, 6..8, 8..10, 10..16].into_iter().enumerate() {
                if i > 0 {
                    text.push('-');
                }
                unpack(text, &b[part.clone()], part.len() * 2);
            }
        }
        ID_HEX | ID_SAME => {
            if tag == ID_HEX {
                let len = get_varint(col, p)? as usize;
                let r = take(p, len)?;
                let Ok(t) = std::str::from_utf8(&col[r]) else {
                    return Err(bad("an id prefix is not UTF-8"));
                };
                text.push_str(t);
                *prefix = (start, text.len());
            } else {
                let (a, b) = *prefix;
                if b > text.len() || !text.is_char_boundary(a) || !text.is_char_boundary(b) {
                    return Err(bad("an id refers to a missing prefix"));
                }
                text.extend_from_within(a..b);
            }
            let digits = get_varint(col, p)? as usize;
            let r = take(p, digits.div_ceil(2))?;
            unpack(text, &col[r], digits);
        }
        _ => return Err(bad(&format!("unknown id tag {tag}"))),
    }
    let span = (u32::try_from(start), u32::try_from(text.len()));
    match span {
        (Ok(a), Ok(b)) => Ok(Some((a, b))),
        _ => Err(bad("block text too long")),
    }
}

impl Block {
    /// Decodes `data`: the columns in `mask` (see [`Block::load`]).
    pub fn decode(data: &[u8], mask: u64) -> Result<Block> {
        let mut b = Block::default();
        b.load(data, mask)?;
        Ok(b)
    }

    /// Replaces this block with the one encoded in `data`, decoding the columns in `mask`
    /// (bit `c` for column `c` of [`COLUMNS`]; `cost` needs `cost_e12`, which this adds).
    /// Copies the strings and decodes the values (`data` is not kept); reuses the buffers.
    pub fn load(&mut self, data: &[u8], mask: u64) -> Result<()> {
        let mut mask = mask;
        if mask & (1 << 39) != 0 {
            mask |= 1 << COL_COST_E12;
        }
        if mask & (1 << COL_COMPLETED_AT) != 0 {
            mask |= 1 << COL_OCCURRED_AT;
        }
        self.mask = mask;
        self.n = 0;
        let d = data;
        let format = match d.first() {
            Some(&f) if f == FORMAT || f == FORMAT_2 => f,
            other => return Err(bad(&format!("unknown format {other:?}"))),
        };
        let mut at = 1;
        let n = get_varint(d, &mut at)? as usize;
        let ns = get_varint(d, &mut at)? as usize;
        let lens_len = get_varint(d, &mut at)? as usize;
        let Some(lens_end) = at.checked_add(lens_len).filter(|e| *e <= d.len()) else {
            return Err(bad("string lengths out of bounds"));
        };
        let mut lat = at;
        at = lens_end;
        let bytes_len = get_varint(d, &mut at)? as usize;
        let bytes_at = at;
        let Some(bytes_end) = at.checked_add(bytes_len).filter(|e| *e <= d.len()) else {
            return Err(bad("strings out of bounds"));
        };
        let Ok(text) = std::str::from_utf8(&d[bytes_at..bytes_end]) else {
            return Err(bad("strings are not UTF-8"));
        };
        // A copy of the strings as one `String`: reads slice it without checking UTF-8 again.
        self.text.clear();
        self.text.push_str(text);
        self.strings.clear();
        self.strings.reserve(ns);
        let mut off = 0usize;
        for _ in 0..ns {
            let len = get_varint(&d[..lens_end], &mut lat)? as usize;
            let end = off + len;
            if end > bytes_len || !text.is_char_boundary(end) {
                return Err(bad("string out of bounds"));
            }
            self.strings.push((off as u32, end as u32));
            off = end;
        }
        at = bytes_end;
        self.vals.resize(STORED * n, 0);
        for (c, &(_, kind)) in COLUMNS.iter().enumerate() {
            if !stored(c) {
                continue;
            }
            let len = get_varint(d, &mut at)? as usize;
            let Some(end) = at.checked_add(len).filter(|e| *e <= d.len()) else {
                return Err(bad("column out of bounds"));
            };
            if mask & (1 << c) != 0 {
                let col = &d[at..end];
                let base = stored_index(c) * n;
                if format == FORMAT && unique(c) {
                    // Ids: decoded into the text, after the dictionary's strings.
                    let mut p = 0;
                    let mut prefix: (usize, usize) = (0, 0);
                    for r in 0..n {
                        self.vals[base + r] =
                            match decode_id(col, &mut p, &mut prefix, &mut self.text)? {
                                Some(span) => {
                                    self.strings.push(span);
                                    self.strings.len() as u64
                                }
                                None => 0,
                            };
                    }
                } else {
                    let mut p = 0;
                    for v in &mut self.vals[base..base + n] {
                        *v = get_varint(col, &mut p)?;
                    }
                    if kind == Kind::Text
                        && self.vals[base..base + n].iter().any(|v| *v as usize > ns)
                    {
                        return Err(bad("a value names a missing string"));
                    }
                    if format == FORMAT && kind == Kind::Instant {
                        absolute_instants(&mut self.vals, c, n);
                    }
                }
            }
            at = end;
        }
        self.n = n;
        Ok(())
    }

    /// The stored value of column `c` (a stored, decoded column) of event `row`.
    pub fn raw(&self, row: usize, c: usize) -> u64 {
        debug_assert!(self.mask & (1 << c) != 0, "column {c} not decoded");
        self.vals[stored_index(c) * self.n + row]
    }

    /// A text column (`None` for NULL).
    pub fn text(&self, row: usize, c: usize) -> Option<&str> {
        let v = self.raw(row, c);
        if v == 0 {
            return None;
        }
        let (a, b) = self.strings[(v - 1) as usize];
        self.text.get(a as usize..b as usize)
    }

    /// An integer or instant column (`None` for NULL).
    pub fn int(&self, row: usize, c: usize) -> Option<i64> {
        dec_int(self.raw(row, c))
    }

    /// The `cost` of event `row` (`cost_e12` decoded): its exact decimal ([`format_e12`]) in
    /// `buf`, `None` when unpriced.
    pub fn cost<'b>(&self, row: usize, buf: &'b mut [u8; 48]) -> Option<&'b str> {
        self.int(row, COL_COST_E12).map(|e12| format_e12(e12, buf))
    }
}

/// A cost in units of 1e-12 as the ledger shows it: the exact decimal, without trailing
/// zeros (`4530000000` is `0.00453`, `12000000000000` is `12`).
pub fn format_e12(v: i64, buf: &mut [u8; 48]) -> &str {
    let neg = v < 0;
    let mut m = v.unsigned_abs();
    let int = m / 1_000_000_000_000;
    let mut frac = m % 1_000_000_000_000;
    let mut at = buf.len();
    // The fraction, without trailing zeros.
    let mut digits = 12;
    while digits > 0 && frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    if digits > 0 {
        for _ in 0..digits {
            at -= 1;
            buf[at] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        at -= 1;
        buf[at] = b'.';
    }
    m = int;
    loop {
        at -= 1;
        buf[at] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if neg {
        at -= 1;
        buf[at] = b'-';
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("")
}

/// The sorted id hashes of a block, as stored in `event_blocks.ids`.
pub fn ids_blob(hashes: &mut [u64]) -> Vec<u8> {
    hashes.sort_unstable();
    hashes.iter().flat_map(|h| h.to_le_bytes()).collect()
}

/// Whether a block's `ids` blob holds `hash`.
pub fn ids_contain(blob: &[u8], hash: u64) -> bool {
    let n = blob.len() / 8;
    let at = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&blob[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match at(mid).cmp(&hash) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// The hashes of an `ids` blob.
pub fn ids_of(blob: &[u8]) -> impl Iterator<Item = u64> + '_ {
    blob.chunks_exact(8).map(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_including_null_and_negatives() {
        for v in [
            None,
            Some(0),
            Some(1),
            Some(-1),
            Some(200),
            Some(i64::MAX),
            Some(-5_000_000),
        ] {
            assert_eq!(dec_int(enc_int(v)), v, "{v:?}");
        }
        assert_eq!(enc_int(None), 0);
        // zigzag: 0 -> 0, -1 -> 1, 1 -> 2; plus one for NULL.
        assert_eq!(enc_int(Some(0)), 1);
        assert_eq!(enc_int(Some(-1)), 2);
        assert_eq!(enc_int(Some(1)), 3);
    }

    #[test]
    fn a_block_round_trips_text_ints_and_shares_strings() {
        let mut e = BlockEncoder::default();
        for (i, team) in ["a", "b", "a"].iter().enumerate() {
            for (c, &(_, kind)) in COLUMNS.iter().enumerate() {
                if !stored(c) {
                    continue;
                }
                match kind {
                    Kind::Seq => e.seq_offset(i as u64),
                    Kind::Text if c == 10 => {
                        e.text(Some(team));
                    }
                    Kind::Text if c == 1 => e.text_unique(Some(team)),
                    Kind::Text if c == 19 => e.text_scratch(Some("{\"k\":\"v\"}")),
                    Kind::Text => {
                        e.text(None);
                    }
                    _ => e.int(if c == 31 { Some(i as i64 * 1000) } else { None }),
                }
            }
            e.end_row();
        }
        let data = e.finish();
        let b = Block::decode(&data, ALL).unwrap();
        assert_eq!(b.n, 3);
        assert_eq!(b.text(0, 10), Some("a"));
        assert_eq!(b.text(1, 10), Some("b"));
        assert_eq!(b.text(2, 10), Some("a"));
        assert_eq!(b.text(2, 19), Some("{\"k\":\"v\"}"));
        assert_eq!(b.text(1, 11), None);
        assert_eq!(b.text(2, 1), Some("a"));
        assert_eq!(b.int(2, 31), Some(2000));
        assert_eq!(b.int(2, 27), None);
        assert_eq!(b.raw(2, 0), 2);
        // Three shared strings in the dictionary ("a", "b" and the tags, each once), plus
        // the three unique ones.
        assert_eq!(b.strings.len(), 6);
    }

    /// Encodes one event per entry: `ids[i]` in every column of ids, `at[i]` as
    /// (occurred_at, completed_at), other columns NULL.
    #[allow(clippy::type_complexity)]
    fn block_of(ids: &[Option<&str>], at: &[(Option<i64>, Option<i64>)]) -> Vec<u8> {
        let mut e = BlockEncoder::default();
        for (i, id) in ids.iter().enumerate() {
            for (c, &(_, kind)) in COLUMNS.iter().enumerate() {
                match kind {
                    Kind::Seq => e.seq_offset(i as u64),
                    _ if unique(c) => e.text_unique(*id),
                    Kind::Instant if c == COL_OCCURRED_AT => e.instant(at[i].0),
                    Kind::Instant => e.instant(at[i].1),
                    Kind::Text => {
                        e.text(None);
                    }
                    Kind::Int => e.int(None),
                    Kind::Cost | Kind::IngestedAt => {}
                }
            }
            e.end_row();
        }
        e.finish()
    }

    #[test]
    fn ids_round_trip_in_every_form() {
        let ids = [
            Some("01a0f4c2-cb78-7cbd-ba8a-3e608dd131ba"), // canonical UUID: 16 bytes
            Some("01A0F4C2-CB78-7CBD-BA8A-3E608DD131BA"), // upper case: kept as it is
            Some("req_8f2c0ec7d85eda57"),                 // prefix + hex
            Some("req_1d258f71bdefb38f"),                 // same prefix
            Some("e932d2528f0501ca92c4d91cdc811927"),     // hex only (empty prefix)
            Some("req_abc123def"),                        // odd number of digits
            None,
            Some("req_1"), // too few digits: raw
            Some(""),
            Some("ид-0123456789abcdef"),           // a UTF-8 prefix
            Some("req_8f2c0ec7d85eda57"),          // the prefix again, after others
            Some("chatcmpl-0123456789ABCDEF0123"), // 4 lower-case hex digits at the end: raw
        ];
        let at = vec![(Some(1), None); ids.len()];
        let b = Block::decode(&block_of(&ids, &at), ALL).unwrap();
        for (i, id) in ids.iter().enumerate() {
            for c in [1, 2, 4, 7, 8] {
                assert_eq!(b.text(i, c), *id, "row {i} column {c}");
            }
        }
        // Only some columns decoded: the ids still come out right.
        let b = Block::decode(&block_of(&ids, &at), 1 << COL_EVENT_ID).unwrap();
        assert_eq!(b.text(2, COL_EVENT_ID), Some("req_8f2c0ec7d85eda57"));
        assert_eq!(b.text(11, COL_EVENT_ID), ids[11]);
    }

    #[test]
    fn packed_ids_take_about_half_their_text() {
        // 1,000 UUIDs in the five columns of ids: 16 bytes and a tag each (36 characters of
        // text each, 180,000 bytes in all, in format 2). By hand:
        // - ids: 5 x 1,000 x 17 = 85,000;
        // - 40 NULL columns (text and int): 40 x 1,000 x 1 byte = 40,000;
        // - seq offsets 0-127 in 1 byte, 128-999 in 2: 128 + 1,744 = 1,872;
        // - occurred_at: the first as its distance from 0, zigzag(1,000,000) + 1 = 2,000,001
        //   (3 bytes), then 999 x distance 0 (1 byte) = 1,002; completed_at 1,000,000 after
        //   it: 1,000 x 3 = 3,000;
        // - header: format 1, n 2, no strings 3 x 1; column lengths: 17,000 x 5 (3 bytes
        //   each), 1,000 x 40 (2), 1,872 / 1,002 / 3,000 (2 each) = 15 + 80 + 6: 107.
        // Total 85,000 + 40,000 + 1,872 + 1,002 + 3,000 + 107 = 130,981.
        let owned: Vec<String> = (0..1000)
            .map(|i| format!("01a0f4c2-cb78-7cbd-ba8a-{i:012x}"))
            .collect();
        let ids: Vec<Option<&str>> = owned.iter().map(|s| Some(s.as_str())).collect();
        let at = vec![(Some(1_000_000), Some(2_000_000)); ids.len()];
        let data = block_of(&ids, &at);
        assert_eq!(data.len(), 130_981);
        let b = Block::decode(&data, ALL).unwrap();
        assert_eq!(b.text(999, 8), Some("01a0f4c2-cb78-7cbd-ba8a-0000000003e7"));
    }

    #[test]
    fn instants_round_trip_as_differences() {
        // Out of order, negative, a completion before its event, NULLs.
        let at = [
            (Some(1_790_000_000_000_000), Some(1_790_000_000_048_555)),
            (Some(1_789_999_999_000_000), None),
            (None, Some(5)),
            (Some(-86_400_000_000), Some(-86_400_000_001)),
            (Some(1_790_000_000_000_001), Some(1_790_000_000_000_001)),
        ];
        let ids = vec![Some("x"); at.len()];
        for mask in [ALL, 1 << COL_COMPLETED_AT, 1 << COL_OCCURRED_AT] {
            let b = Block::decode(&block_of(&ids, &at), mask).unwrap();
            for (i, (occ, done)) in at.iter().enumerate() {
                assert_eq!(b.int(i, COL_OCCURRED_AT), *occ, "row {i}");
                if mask & (1 << COL_COMPLETED_AT) != 0 {
                    assert_eq!(b.int(i, COL_COMPLETED_AT), *done, "row {i}");
                }
            }
        }
    }

    #[test]
    fn format_2_blocks_are_still_read() {
        // A format-2 block by hand: one event, the dictionary ["ev-1", "team-a"], event_id
        // code 1, team_id (column 10) code 2, occurred_at absolute: zigzag(1000) + 1 = 2001;
        // completed_at absolute 1500: 3001; input_tokens (31) 7: 15; every other value 0.
        // Header: format, n = 1, 2 strings, 2 bytes of lengths (4, 6), 10 bytes of text.
        let mut d = vec![FORMAT_2, 1, 2, 2, 4, 6, 10];
        d.extend_from_slice(b"ev-1team-a");
        for c in 0..COLUMNS.len() {
            if !stored(c) {
                continue;
            }
            let v: u64 = match c {
                1 => 1,
                10 => 2,
                5 => 2001,
                6 => 3001,
                31 => 15,
                _ => 0,
            };
            let mut col = Vec::new();
            put_varint(&mut col, v);
            put_varint(&mut d, col.len() as u64);
            d.extend_from_slice(&col);
        }
        let b = Block::decode(&d, ALL).unwrap();
        assert_eq!(b.n, 1);
        assert_eq!(b.text(0, COL_EVENT_ID), Some("ev-1"));
        assert_eq!(b.text(0, 10), Some("team-a"));
        assert_eq!(b.int(0, COL_OCCURRED_AT), Some(1000));
        assert_eq!(b.int(0, COL_COMPLETED_AT), Some(1500));
        assert_eq!(b.int(0, 31), Some(7));
        assert_eq!(b.text(0, 2), None);
    }

    #[test]
    fn a_truncated_block_is_an_error_not_a_panic() {
        let mut e = BlockEncoder::default();
        for c in 0..COLUMNS.len() {
            if stored(c) {
                e.int(Some(123_456));
            }
        }
        e.end_row();
        let mut data = e.finish();
        data.truncate(data.len() - 3);
        assert!(Block::decode(&data, ALL).is_err());
    }

    #[test]
    fn costs_print_as_their_exact_decimal() {
        let mut buf = [0u8; 48];
        // By hand: 4,530,000,000 x 1e-12 = 0.00453; 12 x 10^12 x 1e-12 = 12.
        assert_eq!(format_e12(4_530_000_000, &mut buf), "0.00453");
        assert_eq!(format_e12(12_000_000_000_000, &mut buf), "12");
        assert_eq!(format_e12(0, &mut buf), "0");
        assert_eq!(format_e12(1, &mut buf), "0.000000000001");
        assert_eq!(format_e12(-2_500_000_000_000, &mut buf), "-2.5");
        assert_eq!(format_e12(i64::MIN, &mut buf), "-9223372.036854775808");
        // The same text as the decimal type gives, over a spread of values.
        for v in [
            7,
            10,
            999_999_999_999,
            1_000_000_000_001,
            123_456_789_012_345,
            -42,
        ] {
            let d = tollgate_core::money::from_scaled_e12(i128::from(v)).unwrap();
            assert_eq!(format_e12(v, &mut buf), d.normalize().to_string(), "{v}");
        }
    }

    #[test]
    fn ids_blobs_are_searchable() {
        let mut h = vec![id_hash("c"), id_hash("a"), id_hash("b")];
        let blob = ids_blob(&mut h);
        assert!(ids_contain(&blob, id_hash("a")));
        assert!(ids_contain(&blob, id_hash("c")));
        assert!(!ids_contain(&blob, id_hash("d")));
        assert_eq!(ids_of(&blob).count(), 3);
        assert_ne!(id_hash("a"), id_hash("b"));
        // Stored hashes must never change between versions (ledgers hold them): pinned.
        // (Values recorded from this implementation on 2026-12-03: a regression pin.)
        assert_eq!(id_hash(""), 0x501c_e46a_a4bc_33eb);
        assert_eq!(
            id_hash("01a0f4c2-cb78-7cbd-ba8a-3e608dd131ba"),
            0x3431_960c_10ff_f068
        );
    }
}
