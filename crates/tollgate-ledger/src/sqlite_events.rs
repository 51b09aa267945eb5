//! The SQLite ledger's event storage: appending events as blocks (`crate::blocks`), duplicate
//! detection on `event_id`, and migration 10, which moves the rows of the old `events` table
//! into blocks.

use std::collections::HashSet;
use std::ops::Deref;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, params};
use tollgate_core::UsageEvent;
use tollgate_core::event::write_instant;

use super::{FxMap, JsonVal, i64_of, json_map_into};
use crate::blocks::{self, BLOCK_EVENTS, Block, BlockEncoder, COLUMNS, Kind, id_hash};
use crate::{LedgerError, Result};

/// Marks a hash held by more than one block (or a block id too large for the map): its
/// candidates are found by searching the blocks' `ids`.
const AMBIGUOUS: u32 = u32::MAX;

/// The hashes of every event id in the ledger ([`IdMap`]), built on the first append of a
/// ledger handle and caught up at the start of every later write transaction (other processes may
/// have appended in between).
#[derive(Default)]
pub(super) struct IdIndex {
    pub(super) map: IdMap,
    /// Every block up to this id is in `map`.
    through: i64,
}

fn map_value(block: i64) -> u32 {
    u32::try_from(block)
        .ok()
        .filter(|v| *v != AMBIGUOUS)
        .unwrap_or(AMBIGUOUS)
}

/// The id hashes of the stored events, in 256 shards picked by the hash's top byte. Each
/// shard keeps a sorted array of hashes (8 bytes per event, block unknown: a match is
/// confirmed by searching the blocks) and a small map of recent hashes with their block; the
/// map is merged into the array when it passes [`RECENT`] entries. So memory stays near 8
/// bytes per stored event (a hash map of hash -> block took ~20, plus a copy while growing),
/// and no step ever copies the whole set.
pub(super) struct IdMap {
    shards: Vec<Shard>,
    /// A Bloom filter over every hash (three bits each, all in one 64-bit word; at least 16
    /// bits per hash, rebuilt 4 times larger when it fills): most hashes of new events are
    /// turned away here without a search of the sorted arrays (false positives about 1 %;
    /// they only cost that search).
    bloom: Vec<u64>,
    /// log2 of the filter's bits.
    bloom_log: u32,
    /// Hashes added to the filter.
    count: usize,
}

/// The filter's smallest and largest sizes (log2 of bits): 8 KiB to 128 MiB.
const BLOOM_MIN: u32 = 16;
const BLOOM_MAX: u32 = 30;

/// The filter word of hash `h` (from its top bits, so that sorted hashes visit the filter in
/// memory order) and the three bits it sets in that word (from its low bits): one cache miss
/// per lookup, where bits anywhere in the filter cost one each.
fn bloom_word(h: u64, log: u32) -> (usize, u64) {
    let word = (h >> (64 - (log - 6))) as usize;
    let bits = (1u64 << (h & 63)) | (1u64 << ((h >> 6) & 63)) | (1u64 << ((h >> 12) & 63));
    (word, bits)
}

#[derive(Default)]
struct Shard {
    sorted: Vec<u64>,
    recent: FxMap<u64, u32>,
}

/// Recent hashes per shard before they are merged into its sorted array.
const RECENT: usize = 4096;

impl Default for IdMap {
    fn default() -> Self {
        IdMap {
            shards: (0..256).map(|_| Shard::default()).collect(),
            bloom: Vec::new(),
            bloom_log: BLOOM_MIN,
            count: 0,
        }
    }
}

impl Shard {
    /// Merges the recent hashes (and `more`) into the sorted array.
    fn compact(&mut self, more: &[u64]) {
        let mut add: Vec<u64> = self
            .recent
            .keys()
            .copied()
            .chain(more.iter().copied())
            .collect();
        self.recent.clear();
        if add.is_empty() {
            return;
        }
        add.sort_unstable();
        let old = std::mem::take(&mut self.sorted);
        let mut out = Vec::with_capacity(old.len() + add.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < add.len() {
            let next = match (old.get(i), add.get(j)) {
                (Some(&x), Some(&y)) if x <= y => {
                    i += 1;
                    x
                }
                (_, Some(&y)) => {
                    j += 1;
                    y
                }
                (Some(&x), None) => {
                    i += 1;
                    x
                }
                (None, None) => break,
            };
            if out.last() != Some(&next) {
                out.push(next);
            }
        }
        self.sorted = out;
    }
}

impl IdMap {
    fn shard(&self, h: u64) -> &Shard {
        &self.shards[(h >> 56) as usize]
    }

    fn may_hold(&self, h: u64) -> bool {
        let (w, bits) = bloom_word(h, self.bloom_log);
        self.bloom.get(w).is_some_and(|x| x & bits == bits)
    }

    fn set_bits(&mut self, h: u64) {
        let (w, bits) = bloom_word(h, self.bloom_log);
        self.bloom[w] |= bits;
    }

    fn remember(&mut self, h: u64) {
        if self.bloom.is_empty() {
            self.bloom = vec![0; 1 << (self.bloom_log - 6)];
        }
        self.count += 1;
        if self.count * 16 > 1 << self.bloom_log && self.bloom_log < BLOOM_MAX {
            // Rebuilt four times larger from the hashes themselves.
            self.bloom_log = (self.bloom_log + 2).min(BLOOM_MAX);
            self.bloom = vec![0; 1 << (self.bloom_log - 6)];
            let all: Vec<u64> = self
                .shards
                .iter()
                .flat_map(|s| s.sorted.iter().chain(s.recent.keys()).copied())
                .collect();
            for x in all {
                self.set_bits(x);
            }
        }
        self.set_bits(h);
    }

    /// The block holding hash `h`: `Some(block)` when known, `Some(AMBIGUOUS)` when the hash is
    /// stored but its block is to be searched, `None` when no stored event has this hash.
    pub(super) fn get(&self, h: &u64) -> Option<u32> {
        if !self.may_hold(*h) {
            return None;
        }
        let s = self.shard(*h);
        if let Some(v) = s.recent.get(h) {
            return Some(*v);
        }
        s.sorted.binary_search(h).ok().map(|_| AMBIGUOUS)
    }

    pub(super) fn contains_key(&self, h: &u64) -> bool {
        self.get(h).is_some()
    }

    #[cfg(test)]
    pub(super) fn insert(&mut self, h: u64, v: u32) {
        self.remember(h);
        self.shards[(h >> 56) as usize].recent.insert(h, v);
    }

    fn is_empty(&self) -> bool {
        self.shards
            .iter()
            .all(|s| s.sorted.is_empty() && s.recent.is_empty())
    }

    /// Adds every hash of `other` (blocks forgotten).
    fn absorb(&mut self, other: IdMap) {
        let mut added = Vec::new();
        for (mine, theirs) in self.shards.iter_mut().zip(other.shards) {
            let mut more = theirs.sorted;
            more.extend(theirs.recent.keys());
            mine.compact(&more);
            added.extend(more);
        }
        for h in added {
            self.remember(h);
        }
    }
}

/// Records that block `v` holds hash `h`.
fn note(map: &mut IdMap, h: u64, v: u32) {
    let known = map.may_hold(h);
    map.remember(h);
    let s = &mut map.shards[(h >> 56) as usize];
    if known && s.sorted.binary_search(&h).is_ok() {
        // Known already (block to be searched): nothing to add.
        return;
    }
    s.recent
        .entry(h)
        .and_modify(|x| {
            if *x != v {
                *x = AMBIGUOUS;
            }
        })
        .or_insert(v);
    if s.recent.len() > RECENT {
        s.compact(&[]);
    }
}

impl IdIndex {
    /// Adds the blocks committed since the last call (inside the caller's write transaction,
    /// so no other writer can add one meanwhile).
    fn catch_up(&mut self, conn: &Connection) -> Result<()> {
        let mut stmt = conn.prepare_cached(
            "SELECT block_id, ids FROM event_blocks WHERE block_id > ?1 ORDER BY block_id",
        )?;
        let mut rows = stmt.query([self.through])?;
        while let Some(r) = rows.next()? {
            let b: i64 = r.get(0)?;
            let ValueRef::Blob(blob) = r.get_ref(1)? else {
                return Err(LedgerError::Corrupt(format!("event block {b} has no ids")));
            };
            let v = map_value(b);
            for h in blocks::ids_of(blob) {
                note(&mut self.map, h, v);
            }
            self.through = b;
        }
        Ok(())
    }
}

/// Per-transaction state of the event writer, made on its first append.
pub(super) struct EventWriter {
    /// Hashes of the ids stored by this transaction (merged into the index on commit).
    pending: IdMap,
    next_seq: i64,
    next_block: i64,
    /// The ids of the block last read to confirm a candidate duplicate.
    verified: Option<(i64, HashSet<String>)>,
    /// This append's accepted events by id hash (index into the append's slice).
    batch: FxMap<u64, u32>,
    hashes: Vec<u64>,
    /// Rollups of this transaction's blocks not yet written to `rollups` / `key_rollups`,
    /// keyed by interned strings: summed here (far fewer upserts than one set per block) and
    /// written at the commit, when they pass [`SUMS_LIMIT`] keys, and, every [`EARLY_BLOCKS`]
    /// blocks, those of the hours before every event of these blocks (input in time order
    /// leaves its hours behind: they are written while the parsers still work, not all at the
    /// commit).
    sums: FxMap<(i64, [u32; 12]), crate::Totals>,
    key_sums: FxMap<(i64, [u32; 5]), (crate::Totals, u64)>,
    interned: FxMap<String, u32>,
    names: Vec<String>,
    /// Blocks written since the sums were last written, and their earliest instant.
    blocks_since_sums: u32,
    floor_us: i64,
}

/// Most rollup keys summed in memory before they are written.
const SUMS_LIMIT: usize = 100_000;

/// Blocks between two writes of the sums of the hours left behind.
const EARLY_BLOCKS: u32 = 8;

impl EventWriter {
    pub(super) fn start(conn: &Connection, ids: &mut IdIndex) -> Result<EventWriter> {
        ids.catch_up(conn)?;
        let (max_seq, max_block): (i64, i64) = conn.query_row(
            "SELECT COALESCE(MAX(max_seq), 0), COALESCE(MAX(block_id), 0) FROM event_blocks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(EventWriter {
            pending: IdMap::default(),
            next_seq: max_seq + 1,
            next_block: max_block + 1,
            verified: None,
            batch: FxMap::default(),
            hashes: Vec::new(),
            sums: FxMap::default(),
            key_sums: FxMap::default(),
            interned: FxMap::default(),
            names: Vec::new(),
            blocks_since_sums: 0,
            floor_us: i64::MAX,
        })
    }

    /// After the commit: this transaction's ids join the index.
    pub(super) fn committed(self, ids: &mut IdIndex) {
        if self.next_block - 1 > ids.through {
            if ids.map.is_empty() {
                // The first transaction of a fresh ledger: its ids are all there is.
                ids.map = self.pending;
            } else {
                ids.map.absorb(self.pending);
            }
            ids.through = self.next_block - 1;
        }
    }

    /// Whether block `b` holds `id`.
    fn block_holds(&mut self, conn: &Connection, b: i64, id: &str) -> Result<bool> {
        if self.verified.as_ref().is_none_or(|(v, _)| *v != b) {
            let data: Vec<u8> = conn.query_row(
                "SELECT data FROM event_blocks WHERE block_id = ?1",
                [b],
                |r| r.get(0),
            )?;
            let blk = Block::decode(&data, 1 << blocks::COL_EVENT_ID)?;
            let set = (0..blk.n)
                .filter_map(|i| blk.text(i, blocks::COL_EVENT_ID).map(str::to_string))
                .collect();
            self.verified = Some((b, set));
        }
        Ok(self.verified.as_ref().is_some_and(|(_, s)| s.contains(id)))
    }

    /// Whether any stored block holding hash `h` holds `id`, for a hash whose block is not
    /// known: the block read last (a re-imported file repeats its events in order), then the
    /// blocks whose time range holds `at` (a repeated event usually repeats its instant),
    /// then every block.
    fn search(&mut self, conn: &Connection, h: u64, id: &str, at: &str) -> Result<bool> {
        if self.verified.as_ref().is_some_and(|(_, s)| s.contains(id)) {
            return Ok(true);
        }
        for sql in [
            "SELECT block_id, ids FROM event_blocks WHERE max_occurred_at >= ?1 AND min_occurred_at <= ?1",
            "SELECT block_id, ids FROM event_blocks WHERE ?1 IS NOT NULL",
        ] {
            let mut candidates = Vec::new();
            {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query([at])?;
                while let Some(r) = rows.next()? {
                    if let ValueRef::Blob(blob) = r.get_ref(1)?
                        && blocks::ids_contain(blob, h)
                    {
                        candidates.push(r.get::<_, i64>(0)?);
                    }
                }
            }
            for b in candidates {
                if self.block_holds(conn, b, id)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Whether `id` (hash `h`) is already in the ledger or earlier in this transaction.
    fn stored(&mut self, conn: &Connection, ids: &IdIndex, h: u64, e: &UsageEvent) -> Result<bool> {
        let id = e.event_id.as_str();
        for v in [self.pending.get(&h), ids.map.get(&h)]
            .into_iter()
            .flatten()
        {
            let found = if v == AMBIGUOUS {
                let mut at = String::with_capacity(27);
                write_instant(&mut at, e.occurred_at);
                self.search(conn, h, id, &at)?
            } else {
                self.block_holds(conn, i64::from(v), id)?
            };
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Scratch text of one event: its JSON columns and its instants.
#[derive(Default)]
struct Scratch {
    tags: String,
    units: String,
    cost_units: String,
}

/// The costs of an event as stored (units of 1e-12): total and per class.
pub(super) struct Costs {
    pub total: Option<i64>,
    pub classes: [Option<i64>; 5],
}

fn micros(t: jiff::Timestamp) -> i64 {
    t.as_microsecond()
}

/// The dictionary codes of an event's rollup keys: the 12 columns of `rollups` (see
/// `add`), then api_key_id.
type Codes = [u32; 13];

fn encode_event<'a, S: Deref<Target = str>>(
    enc: &mut BlockEncoder<'a>,
    e: &'a UsageEvent<S>,
    seq_off: u64,
    c: &Costs,
    s: &mut Scratch,
) -> Codes {
    let mut k: Codes = [0; 13];
    let a = &e.attribution;
    let p = &e.pricing;
    let u = &e.usage;
    s.tags.clear();
    if !a.tags.is_empty() {
        json_map_into(
            &mut s.tags,
            a.tags.iter().map(|(k, v)| (k.as_str(), JsonVal::Str(v))),
        );
    }
    s.units.clear();
    if !u.units.is_empty() {
        json_map_into(
            &mut s.units,
            u.units.iter().map(|(k, v)| (k.as_str(), JsonVal::Num(*v))),
        );
    }
    s.cost_units.clear();
    if p.cost.is_some() && !p.cost_breakdown.units.is_empty() {
        json_map_into(
            &mut s.cost_units,
            p.cost_breakdown
                .units
                .iter()
                .map(|(k, v)| (k.as_str(), JsonVal::Dec(*v))),
        );
    }
    enc.seq_offset(seq_off);
    enc.text_unique(Some(&e.event_id));
    enc.text_unique(e.request_id.as_deref());
    enc.int(Some(i64::from(e.attempt)));
    enc.text_unique(e.parent_request_id.as_deref());
    enc.instant(Some(micros(e.occurred_at)));
    enc.instant(e.completed_at.map(micros));
    enc.text_unique(e.trace_id.as_deref());
    enc.text_unique(e.span_id.as_deref());
    enc.text(e.session_id.as_deref());
    k[0] = enc.text(a.team_id.as_deref());
    k[7] = enc.text(a.cost_center.as_deref());
    k[1] = enc.text(a.service.as_deref());
    k[2] = enc.text(a.feature.as_deref());
    k[6] = enc.text(a.environment.map(|x| x.as_str()));
    k[5] = enc.text(a.tenant_id.as_deref());
    enc.text(a.user_id.as_deref());
    k[12] = enc.text(a.api_key_id.as_deref());
    enc.text(a.region.as_deref());
    enc.text_scratch((!s.tags.is_empty()).then_some(s.tags.as_str()));
    k[9] = enc.text(Some(e.attribution_status.as_str()));
    k[4] = enc.text(Some(&e.provider));
    enc.text(e.model_requested.as_deref());
    k[3] = enc.text(Some(&e.model));
    enc.text(Some(e.operation.as_str()));
    enc.text(e.service_tier.as_deref());
    enc.text(Some(e.status.as_str()));
    enc.int(e.http_status.map(i64::from));
    enc.int(Some(i64::from(e.streamed)));
    enc.int(e.latency_ms.map(i64_of));
    enc.int(e.ttft_ms.map(i64_of));
    enc.int(Some(i64_of(u.input_tokens)));
    enc.int(Some(i64_of(u.cache_read_tokens)));
    enc.int(Some(i64_of(u.cache_write_tokens)));
    enc.int(Some(i64_of(u.cache_write_1h_tokens)));
    enc.int(Some(i64_of(u.output_tokens)));
    enc.int(Some(i64_of(u.reasoning_tokens)));
    enc.text_scratch((!s.units.is_empty()).then_some(s.units.as_str()));
    k[8] = enc.text(Some(p.currency.as_str()));
    enc.int(c.total);
    for v in c.classes {
        enc.int(v);
    }
    enc.text_scratch((!s.cost_units.is_empty()).then_some(s.cost_units.as_str()));
    k[11] = enc.text(p.price_version.as_deref());
    k[10] = enc.text(Some(p.pricing_status.as_str()));
    enc.end_row();
    k
}

/// One block being filled by an append, with the hourly totals of its events keyed by
/// dictionary codes (cheaper to hash than the strings; turned into strings once per block).
pub(super) struct BlockBuild<'a> {
    enc: BlockEncoder<'a>,
    min_seq: i64,
    min_us: i64,
    max_us: i64,
    scratch: Scratch,
    rollups: FxMap<(i64, [u32; 12]), crate::Totals>,
    /// Per hour, provider, model, api key, team and cost center: totals and unpriced count.
    key_rollups: FxMap<(i64, [u32; 5]), (crate::Totals, u64)>,
}

impl<'a> BlockBuild<'a> {
    pub(super) fn new() -> Self {
        BlockBuild {
            enc: BlockEncoder::default(),
            min_seq: 0,
            min_us: i64::MAX,
            max_us: i64::MIN,
            scratch: Scratch::default(),
            rollups: FxMap::default(),
            key_rollups: FxMap::default(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.enc.len()
    }
}

impl EventWriter {
    /// Whether `e` (the `idx`-th event of this append) is new: not in the ledger, not earlier
    /// in this transaction or this append. A new event's hash is noted for the append.
    pub(super) fn accept(
        &mut self,
        conn: &Connection,
        ids: &IdIndex,
        events: &[UsageEvent],
        idx: usize,
    ) -> Result<bool> {
        let e = &events[idx];
        let h = id_hash(&e.event_id);
        if let Some(&j) = self.batch.get(&h)
            && events[j as usize].event_id == e.event_id
        {
            return Ok(false);
        }
        if self.stored(conn, ids, h, e)? {
            return Ok(false);
        }
        self.batch.entry(h).or_insert(idx as u32);
        self.hashes.push(h);
        Ok(true)
    }

    /// Adds an accepted event to the block, with its `seq`.
    pub(super) fn add<'a>(&mut self, b: &mut BlockBuild<'a>, e: &'a UsageEvent, c: &Costs) {
        if b.enc.is_empty() {
            b.min_seq = self.next_seq;
        }
        let off = (self.next_seq - b.min_seq) as u64;
        self.next_seq += 1;
        b.push(e, off, c);
    }

    /// Writes the block (if it holds any event) and resets the append's state.
    pub(super) fn flush(
        &mut self,
        conn: &Connection,
        b: BlockBuild<'_>,
        ingested_at: &str,
    ) -> Result<()> {
        self.batch.clear();
        let min_seq = b.min_seq;
        let Some(sealed) = b.seal() else {
            self.hashes.clear();
            return Ok(());
        };
        let mut hashes = std::mem::take(&mut self.hashes);
        let ids = blocks::ids_blob(&mut hashes);
        self.write_sealed(conn, &sealed, min_seq, &hashes, &ids, ingested_at)?;
        hashes.clear();
        self.hashes = hashes;
        Ok(())
    }

    /// Stores a sealed block whose events are known to be new, as the next block, with
    /// `min_seq` as its first seq: the block row, its ids, its rollups.
    fn write_sealed(
        &mut self,
        conn: &Connection,
        b: &Sealed,
        min_seq: i64,
        hashes: &[u64],
        ids: &[u8],
        ingested_at: &str,
    ) -> Result<()> {
        let block = self.next_block;
        self.next_block += 1;
        let v = map_value(block);
        for &h in hashes {
            note(&mut self.pending, h, v);
        }
        insert_block(
            conn,
            block,
            min_seq,
            b.n,
            (b.min_us, b.max_us),
            ingested_at,
            ids,
            &b.data,
        )?;
        for ((h, k), t) in &b.rollups {
            let key = (*h, k.each_ref().map(|s| self.intern(s)));
            self.sums.entry(key).or_default().add(t);
        }
        for ((h, k), (t, unpriced)) in &b.key_rollups {
            let key = (*h, k.each_ref().map(|s| self.intern(s)));
            let e = self.key_sums.entry(key).or_default();
            e.0.add(t);
            e.1 += unpriced;
        }
        self.blocks_since_sums += 1;
        self.floor_us = self.floor_us.min(b.min_us);
        if self.sums.len() + self.key_sums.len() > SUMS_LIMIT {
            self.write_sums(conn)?;
        } else if self.blocks_since_sums >= EARLY_BLOCKS {
            let hour = self.floor_us.div_euclid(3_600_000_000) * 3600;
            self.write_sums_before(conn, Some(hour))?;
        }
        Ok(())
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&k) = self.interned.get(s) {
            return k;
        }
        let k = self.names.len() as u32;
        self.names.push(s.to_string());
        self.interned.insert(s.to_string(), k);
        k
    }

    /// Writes the summed rollups (the writer calls it before committing).
    pub(super) fn write_sums(&mut self, conn: &Connection) -> Result<()> {
        self.write_sums_before(conn, None)
    }

    /// Writes the summed rollups of the hours before `before` (all of them for `None`), in
    /// key order, and forgets them.
    fn write_sums_before(&mut self, conn: &Connection, before: Option<i64>) -> Result<()> {
        let keep = |h: i64| before.is_some_and(|b| h >= b);
        let rollups = due(&self.sums, &self.names, keep);
        super::upsert_rollups(conn, rollups.iter().map(|(k, t)| (k, t)))?;
        let keys = due(&self.key_sums, &self.names, keep);
        super::books_impl::upsert_key_rollups(conn, keys.iter().map(|(k, t)| (k, t)))?;
        self.sums.retain(|(h, _), _| keep(*h));
        self.key_sums.retain(|(h, _), _| keep(*h));
        self.blocks_since_sums = 0;
        self.floor_us = i64::MAX;
        Ok(())
    }

    /// Stores a batch prepared by [`prepare`]: when none of its events is stored already, its
    /// block goes in as it is (the usual case, and the cheap one: the encoding and the sums
    /// were done by the thread that prepared it); `None` when some event needs the per-event
    /// path.
    pub(super) fn append_prepared(
        &mut self,
        conn: &Connection,
        ids: &IdIndex,
        blocks: &[Prepared],
        ingested_at: &str,
    ) -> Result<Option<crate::AppendOutcome>> {
        let known = |h: &u64| self.pending.contains_key(h) || ids.map.contains_key(h);
        if blocks.iter().any(|p| p.hashes.iter().any(known)) {
            return Ok(None);
        }
        let mut out = crate::AppendOutcome::default();
        for p in blocks {
            let min_seq = self.next_seq;
            self.next_seq += p.sealed.n as i64;
            self.write_sealed(conn, &p.sealed, min_seq, &p.hashes, &p.ids, ingested_at)?;
            out.inserted += p.sealed.n as u64;
            out.quarantined += p.quarantined;
            out.unpriced += p.unpriced;
        }
        Ok(Some(out))
    }
}

/// A finished block: its bytes, size, time range and rollups (strings owned).
pub(crate) struct Sealed {
    data: Vec<u8>,
    n: usize,
    min_us: i64,
    max_us: i64,
    rollups: Vec<OwnedRollup<12, crate::Totals>>,
    /// Key rollups: totals and unpriced count.
    key_rollups: Vec<OwnedRollup<5, (crate::Totals, u64)>>,
}

/// Hourly totals keyed by hour and `N` attribution strings.
type OwnedRollup<const N: usize, T> = ((i64, [String; N]), T);

/// The same, the strings borrowed.
type NamedRollup<'a, const N: usize, T> = ((i64, [&'a str; N]), T);

/// The sums of `m` whose hour `keep` refuses, their keys as the interned `names`, in key order.
fn due<'n, const N: usize, T: Copy>(
    m: &FxMap<(i64, [u32; N]), T>,
    names: &'n [String],
    keep: impl Fn(i64) -> bool,
) -> Vec<NamedRollup<'n, N, T>> {
    let s = |k: &u32| names[*k as usize].as_str();
    let mut v: Vec<NamedRollup<'n, N, T>> = m
        .iter()
        .filter(|((h, _), _)| !keep(*h))
        .map(|((h, k), t)| ((*h, k.each_ref().map(s)), *t))
        .collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    v
}

impl<'a> BlockBuild<'a> {
    /// Encodes `e` as the block's next event, `off` after its first seq, and adds it to the
    /// block's rollups.
    fn push<S: Deref<Target = str>>(&mut self, e: &'a UsageEvent<S>, off: u64, c: &Costs) {
        let us = micros(e.occurred_at);
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
        let k = encode_event(&mut self.enc, e, off, c, &mut self.scratch);
        let hour = super::hour_of(e.occurred_at);
        let key: [u32; 12] = [
            k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], k[10], k[11],
        ];
        let cost = c.total.map(i128::from);
        self.rollups
            .entry((hour, key))
            .or_default()
            .add_usage(&e.usage, cost);
        // key_rollups: provider, model, api key, team, cost center.
        let kk = (hour, [k[4], k[3], k[12], k[0], k[7]]);
        let (t, unpriced) = self.key_rollups.entry(kk).or_default();
        t.add_usage(&e.usage, cost);
        if c.total.is_none() {
            *unpriced += 1;
        }
    }

    /// The finished block, or `None` if it holds no event.
    fn seal(self) -> Option<Sealed> {
        if self.enc.is_empty() {
            return None;
        }
        let s = |code: &u32| self.enc.string(*code).to_string();
        Some(Sealed {
            data: self.enc.finish(),
            n: self.enc.len(),
            min_us: self.min_us,
            max_us: self.max_us,
            rollups: self
                .rollups
                .iter()
                .map(|((h, k), t)| ((*h, k.each_ref().map(s)), *t))
                .collect(),
            key_rollups: self
                .key_rollups
                .iter()
                .map(|((h, k), t)| ((*h, k.each_ref().map(s)), *t))
                .collect(),
        })
    }
}

/// A batch made ready for the SQLite ledger on the caller's thread (see
/// [`crate::PreparedEvents`]).
pub(crate) struct Prepared {
    sealed: Sealed,
    /// The events' id hashes, sorted.
    hashes: Vec<u64>,
    /// The sorted hashes as stored.
    ids: Vec<u8>,
    quarantined: u64,
    unpriced: u64,
}

/// Encodes `events` as blocks of up to [`BLOCK_EVENTS`] (seq offsets from 0 in each), hashes
/// their ids and sums their rollups; `None` when the batch needs the per-event path (an id
/// twice in the batch, a cost the ledger refuses, no events).
pub(crate) fn prepare_blocks<S: Deref<Target = str>>(
    events: &[UsageEvent<S>],
) -> Option<Vec<Prepared>> {
    let mut out = Vec::with_capacity(events.len().div_ceil(BLOCK_EVENTS));
    for chunk in events.chunks(BLOCK_EVENTS) {
        // The ids' hashes, sorted once encoded (the writer checks and notes them in that
        // order: the Bloom filter in memory order).
        let mut hashes = Vec::with_capacity(chunk.len());
        let mut b = BlockBuild::new();
        let (mut quarantined, mut unpriced) = (0, 0);
        for (i, e) in chunk.iter().enumerate() {
            hashes.push(id_hash(&e.event_id));
            let c = costs_of(e).ok()?;
            if e.attribution_status == tollgate_core::AttributionStatus::Quarantined {
                quarantined += 1;
            }
            if c.total.is_none() {
                unpriced += 1;
            }
            b.push(e, i as u64, &c);
        }
        let sealed = b.seal()?;
        let ids = blocks::ids_blob(&mut hashes);
        out.push(Prepared {
            sealed,
            hashes,
            ids,
            quarantined,
            unpriced,
        });
    }
    // An id hash twice in the batch (the same id twice, or two ids sharing a hash): the
    // per-event path tells which. Each block's hashes are sorted: neighbours, then across
    // blocks.
    let twice = |v: &[u64]| v.windows(2).any(|w| w[0] == w[1]);
    if out.iter().any(|p| twice(&p.hashes)) {
        return None;
    }
    if out.len() > 1 {
        let mut all: Vec<u64> = out.iter().flat_map(|p| p.hashes.iter().copied()).collect();
        all.sort_unstable();
        if twice(&all) {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The costs of `e` as stored, or why the ledger refuses them.
pub(super) fn costs_of<S: Deref<Target = str>>(e: &UsageEvent<S>) -> Result<Costs> {
    let p = &e.pricing;
    let too_big = |c: &rust_decimal::Decimal| {
        LedgerError::Refused(format!("cost {c} of event {} is too large", &*e.event_id))
    };
    let e12 = |c: rust_decimal::Decimal| -> Result<i64> {
        i64::try_from(tollgate_core::money::to_scaled_e12(c)?).map_err(|_| too_big(&c))
    };
    Ok(match p.cost {
        Some(c) => {
            let b = &p.cost_breakdown;
            Costs {
                total: Some(e12(c)?),
                classes: [
                    Some(e12(b.input)?),
                    Some(e12(b.cache_read)?),
                    Some(e12(b.cache_write)?),
                    Some(e12(b.cache_write_1h)?),
                    Some(e12(b.output)?),
                ],
            }
        }
        None => Costs {
            total: None,
            classes: [None; 5],
        },
    })
}

fn instant_text(us: i64) -> Result<String> {
    let t = jiff::Timestamp::from_microsecond(us)
        .map_err(|e| LedgerError::Corrupt(format!("instant out of range: {e}")))?;
    let mut s = String::with_capacity(27);
    write_instant(&mut s, t);
    Ok(s)
}

#[allow(clippy::too_many_arguments)]
fn insert_block(
    conn: &Connection,
    block: i64,
    min_seq: i64,
    n: usize,
    (min_us, max_us): (i64, i64),
    ingested_at: &str,
    ids: &[u8],
    data: &[u8],
) -> Result<()> {
    // The data (about a megabyte) is written into the new row through incremental blob I/O:
    // bound as a parameter it would be copied twice into fresh buffers (the bound value, then
    // the record) before it reached the pages.
    let mut stmt = conn.prepare_cached(
        "INSERT INTO event_blocks (block_id, min_seq, max_seq, n, min_occurred_at,
         max_occurred_at, ingested_at, ids, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, zeroblob(?9))",
    )?;
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    stmt.execute(params![
        block,
        min_seq,
        min_seq + n - 1,
        n,
        instant_text(min_us)?,
        instant_text(max_us)?,
        ingested_at,
        ids,
        i64::try_from(data.len()).unwrap_or(i64::MAX)
    ])?;
    let mut blob = conn.blob_open(rusqlite::MAIN_DB, "event_blocks", "data", block, false)?;
    blob.write_at(data, 0)?;
    blob.close()?;
    Ok(())
}

/// Migration 10: copies the rows of the row-per-event `events` table (schema 1 to 9) into
/// blocks, in `seq` order, keeping each event's `seq`, values and `ingested_at`, then drops the
/// table (with its indexes and triggers). Runs inside the migration's transaction.
pub(super) fn move_events_to_blocks(tx: &Connection) -> Result<()> {
    let exists: bool = tx.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'events'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(());
    }
    let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    let mut stmt = tx.prepare(&format!(
        "SELECT {} FROM events ORDER BY seq",
        names.join(", ")
    ))?;
    let mut rows = stmt.query([])?;
    let mut next_block: i64 = 1;
    // The block being filled: its encoder, first seq, time range, ids and ingested_at.
    let mut enc = BlockEncoder::default();
    let mut min_seq = 0i64;
    let mut range = (i64::MAX, i64::MIN);
    let mut hashes: Vec<u64> = Vec::new();
    let mut ingested = String::new();
    let flush = |enc: &mut BlockEncoder<'_>,
                 min_seq: i64,
                 range: &mut (i64, i64),
                 hashes: &mut Vec<u64>,
                 ingested: &str,
                 next_block: &mut i64|
     -> Result<()> {
        if enc.is_empty() {
            return Ok(());
        }
        let ids = blocks::ids_blob(hashes);
        insert_block(
            tx,
            *next_block,
            min_seq,
            enc.len(),
            *range,
            ingested,
            &ids,
            &enc.finish(),
        )?;
        *next_block += 1;
        *enc = BlockEncoder::default();
        *range = (i64::MAX, i64::MIN);
        hashes.clear();
        Ok(())
    };
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let at: String = r.get(49)?;
        let last_seq = min_seq + enc.len() as i64 - 1;
        if !enc.is_empty() && (enc.len() >= BLOCK_EVENTS || at != ingested || seq <= last_seq) {
            flush(
                &mut enc,
                min_seq,
                &mut range,
                &mut hashes,
                &ingested,
                &mut next_block,
            )?;
        }
        if enc.is_empty() {
            min_seq = seq;
            ingested = at;
        }
        for (c, (name, kind)) in COLUMNS.iter().enumerate() {
            match kind {
                Kind::Seq => enc.seq_offset((seq - min_seq) as u64),
                Kind::Text => {
                    let v: Option<String> = r.get(c)?;
                    if c == blocks::COL_EVENT_ID {
                        hashes.push(id_hash(v.as_deref().unwrap_or("")));
                    }
                    if blocks::unique(c) {
                        enc.text_unique(v.as_deref());
                    } else {
                        enc.text_scratch(v.as_deref());
                    }
                }
                Kind::Int => enc.int(r.get::<_, Option<i64>>(c)?),
                Kind::Instant => {
                    let v: Option<String> = r.get(c)?;
                    let us = match v {
                        None => None,
                        Some(t) => Some(
                            t.parse::<jiff::Timestamp>()
                                .map_err(|_| super::corrupt(name, &t))?
                                .as_microsecond(),
                        ),
                    };
                    if c == blocks::COL_OCCURRED_AT
                        && let Some(us) = us
                    {
                        range = (range.0.min(us), range.1.max(us));
                    }
                    enc.instant(us);
                }
                Kind::Cost | Kind::IngestedAt => {}
            }
        }
        enc.end_row();
    }
    flush(
        &mut enc,
        min_seq,
        &mut range,
        &mut hashes,
        &ingested,
        &mut next_block,
    )?;
    drop(rows);
    drop(stmt);
    tx.execute_batch("DROP TABLE events")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed check

    use super::*;
    use crate::conformance::event;
    use crate::sqlite::SqliteLedger;
    use crate::{Ledger, SqlValue};
    use tollgate_core::UsageEvent;

    fn ids_in(l: &SqliteLedger, sql: &str) -> Vec<String> {
        l.query_sql(sql)
            .unwrap()
            .rows
            .into_iter()
            .map(|r| match &r[0] {
                SqlValue::Text(t) => t.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_hash_shared_by_several_blocks_is_settled_by_comparing_the_ids() {
        let d = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(d.path()).unwrap();
        let a = event(1, "2026-07-01T10:00:00Z", Some("t"), 1, Some("1"));
        let b = event(2, "2026-07-01T11:00:00Z", Some("t"), 1, Some("1"));
        assert_eq!(l.append(std::slice::from_ref(&a)).unwrap().inserted, 1);
        // As if other ids with the same hashes were stored: both hashes lead to a search.
        l.ids.map.insert(id_hash(&a.event_id), AMBIGUOUS);
        l.ids.map.insert(id_hash(&b.event_id), AMBIGUOUS);
        let o = l.append(&[a.clone(), b.clone()]).unwrap();
        assert_eq!((o.inserted, o.duplicates), (1, 1));
        // A hash that points at a block without the id: not a duplicate.
        let c = event(3, "2026-07-01T12:00:00Z", Some("t"), 1, Some("1"));
        l.ids.map.insert(id_hash(&c.event_id), 1);
        assert_eq!(l.append(&[c]).unwrap().inserted, 1);
        assert_eq!(l.event_count().unwrap(), 3);
    }

    #[test]
    fn the_id_map_keeps_every_hash_through_merges() {
        let mut m = IdMap::default();
        // 10,000 hashes in one shard (top byte 7): the recent map is merged into the sorted
        // array twice (after 4,097 and 8,194 entries); the rest stay recent with their block.
        let h = |i: u64| (7u64 << 56) | (i * 2 + 1);
        for i in 0..10_000 {
            note(&mut m, h(i), 5);
        }
        assert_eq!(m.shards[7].sorted.len(), 8194);
        assert_eq!(m.shards[7].recent.len(), 10_000 - 8194);
        assert!((0..10_000).all(|i| m.contains_key(&h(i))));
        // Even numbers were never added.
        assert!((0..10_000).all(|i| !m.contains_key(&((7u64 << 56) | (i * 2)))));
        // A merged hash's block is searched for; a recent one is known.
        assert_eq!(m.get(&h(0)), Some(AMBIGUOUS));
        assert_eq!(m.get(&h(9_999)), Some(5));
        // The same hash for another block: searched for.
        note(&mut m, h(9_999), 6);
        assert_eq!(m.get(&h(9_999)), Some(AMBIGUOUS));
        let mut other = IdMap::default();
        note(&mut other, h(20_000), 9);
        note(&mut other, 3, 9);
        m.absorb(other);
        assert!(m.contains_key(&h(20_000)) && m.contains_key(&3) && m.contains_key(&h(1)));
        assert!(!m.contains_key(&4));
    }

    #[test]
    fn two_handles_on_one_ledger_see_each_others_ids() {
        let d = tempfile::tempdir().unwrap();
        let mut one = SqliteLedger::open(d.path()).unwrap();
        let mut two = SqliteLedger::open(d.path()).unwrap();
        let a = event(1, "2026-07-01T10:00:00Z", Some("t"), 1, Some("1"));
        let b = event(2, "2026-07-01T11:00:00Z", Some("t"), 1, Some("1"));
        assert_eq!(one.append(std::slice::from_ref(&a)).unwrap().inserted, 1);
        assert_eq!(two.append(std::slice::from_ref(&a)).unwrap().duplicates, 1);
        assert_eq!(two.append(std::slice::from_ref(&b)).unwrap().inserted, 1);
        // `one` built its index before `b` was stored by `two`: it catches up.
        assert_eq!(one.append(&[b, a]).unwrap().duplicates, 2);
        assert_eq!(one.event_count().unwrap(), 2);
    }

    #[test]
    fn a_rolled_back_append_leaves_its_ids_free() {
        let d = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(d.path()).unwrap();
        let a = event(1, "2026-07-01T10:00:00Z", Some("t"), 1, Some("1"));
        {
            let mut w = l.writer().unwrap();
            assert_eq!(w.append(std::slice::from_ref(&a)).unwrap().inserted, 1);
            // Dropped without commit.
        }
        assert_eq!(l.event_count().unwrap(), 0);
        assert_eq!(l.append(&[a]).unwrap().inserted, 1);
        assert_eq!(l.event_count().unwrap(), 1);
    }

    #[test]
    fn the_events_table_narrows_by_time_seq_and_id_without_losing_rows() {
        let d = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(d.path()).unwrap();
        // Three appends: three blocks, on 1, 2 and 3 July; the second holds two events.
        l.append(&[event(1, "2026-07-01T10:00:00Z", Some("t"), 1, Some("1"))])
            .unwrap();
        l.append(&[
            event(3, "2026-07-02T10:00:00Z", Some("t"), 1, None),
            event(2, "2026-07-02T09:00:00Z", Some("t"), 1, Some("2")),
        ])
        .unwrap();
        l.append(&[event(4, "2026-07-03T10:00:00Z", None, 1, Some("3"))])
            .unwrap();
        let id = |n: u32| format!("0190a000-0000-7000-8000-{n:012x}");
        assert_eq!(
            ids_in(&l, "SELECT event_id FROM events ORDER BY seq"),
            [id(1), id(3), id(2), id(4)]
        );
        assert_eq!(
            ids_in(
                &l,
                "SELECT event_id FROM events WHERE occurred_at >= '2026-07-02T09:30:00.000000Z' AND occurred_at < '2026-07-03T10:00:00.000000Z'"
            ),
            [id(3)]
        );
        assert_eq!(
            ids_in(
                &l,
                "SELECT event_id FROM events WHERE occurred_at <= '2026-07-02T09:00:00.000000Z' ORDER BY seq"
            ),
            [id(1), id(2)]
        );
        assert_eq!(
            ids_in(&l, "SELECT event_id FROM events WHERE seq > 2 ORDER BY seq"),
            [id(2), id(4)]
        );
        assert_eq!(
            ids_in(&l, "SELECT event_id FROM events WHERE rowid = 2"),
            [id(3)]
        );
        assert_eq!(
            ids_in(
                &l,
                &format!("SELECT event_id FROM events WHERE event_id = '{}'", id(2))
            ),
            [id(2)]
        );
        // A bound of another type: SQLite's own comparison decides, as for the old TEXT
        // column (the number takes the column's text affinity: '2026-...' < '5').
        let count = |sql: &str| l.query_sql(sql).unwrap().rows[0][0].clone();
        assert_eq!(
            count("SELECT COUNT(*) FROM events WHERE occurred_at >= 5"),
            SqlValue::Integer(0)
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM events WHERE occurred_at < 5"),
            SqlValue::Integer(4)
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM events WHERE occurred_at = '2026-07-02T09:00:00.000000Z'"),
            SqlValue::Integer(1)
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM events WHERE seq = 3"),
            SqlValue::Integer(1)
        );
        // Values as before: text instants, exact cost text from cost_e12, NULL for unpriced.
        let r = l
            .query_sql(&format!(
                "SELECT occurred_at, cost, cost_e12, tags, streamed FROM events WHERE event_id = '{}'",
                id(2)
            ))
            .unwrap();
        assert_eq!(
            r.rows[0],
            [
                SqlValue::Text("2026-07-02T09:00:00.000000Z".into()),
                SqlValue::Text("2".into()),
                SqlValue::Integer(2_000_000_000_000),
                SqlValue::Text("{\"exp\":\"a\\\"b\"}".into()),
                // conformance::event is streamed.
                SqlValue::Integer(1),
            ]
        );
        let r = l
            .query_sql(&format!(
                "SELECT cost, cost_e12 FROM events WHERE event_id = '{}'",
                id(3)
            ))
            .unwrap();
        assert_eq!(r.rows[0], [SqlValue::Null, SqlValue::Null]);
    }

    fn all_rows(l: &SqliteLedger) -> Vec<Vec<SqlValue>> {
        l.query_sql("SELECT * FROM events ORDER BY seq")
            .unwrap()
            .rows
    }

    #[test]
    fn prepared_batches_store_what_plain_appends_store() {
        use crate::Prepared;
        let batch = |ns: &[u32]| -> Vec<UsageEvent> {
            ns.iter()
                .map(|&n| {
                    let team = (n % 2 == 0).then_some("t");
                    let cost = (n % 3 != 0).then_some("0.5");
                    event(n, &format!("2026-07-01T1{}:00:00Z", n % 10), team, 10, cost)
                })
                .collect()
        };
        let clock = || "2026-07-09T00:00:00Z".parse().unwrap();
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut plain = SqliteLedger::open(d1.path()).unwrap().with_clock(clock);
        let mut prep = SqliteLedger::open(d2.path()).unwrap().with_clock(clock);
        let mut outs = Vec::new();
        let mut stored_prepared = Vec::new();
        // New events; then 3 stored already (the prepared block is refused and the events
        // are appended instead); then an id twice in one batch (not prepared at all).
        for ns in [&[1, 2, 3, 4, 5][..], &[3, 6, 7], &[8, 8, 9]] {
            let mut w = plain.writer().unwrap();
            let a = w.append(&batch(ns)).unwrap();
            w.commit().unwrap();
            let mut w = prep.writer().unwrap();
            let events = batch(ns);
            let p = Prepared::for_sqlite(&events);
            assert_eq!(p.is_prepared(), ns != [8, 8, 9]);
            let taken = w.append_prepared(&p).unwrap();
            stored_prepared.push(taken.is_some());
            let b = match taken {
                Some(o) => o,
                None => w.append(&events).unwrap(),
            };
            w.commit().unwrap();
            assert_eq!(a, b);
            outs.push(b);
        }
        assert_eq!(stored_prepared, [true, false, false]);
        assert_eq!(
            outs.iter()
                .map(|o| (o.inserted, o.duplicates))
                .collect::<Vec<_>>(),
            [(5, 0), (2, 1), (2, 1)]
        );
        // Events 1, 3, 5 (no team) are quarantined; 3 and 9 (multiples of 3) unpriced.
        assert_eq!((outs[0].quarantined, outs[0].unpriced), (3, 1));
        assert_eq!(all_rows(&plain), all_rows(&prep));
        assert_eq!(all_rows(&prep).len(), 9);
        let sums = |l: &SqliteLedger| {
            l.query_sql("SELECT * FROM rollups ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13")
                .unwrap()
                .rows
        };
        assert_eq!(sums(&plain), sums(&prep));
        let keys = |l: &SqliteLedger| {
            l.query_sql("SELECT * FROM key_rollups ORDER BY 1, 2, 3, 4, 5, 6")
                .unwrap()
                .rows
        };
        assert_eq!(keys(&plain), keys(&prep));
    }

    #[test]
    fn sums_of_hours_left_behind_are_written_early_and_late_events_add_to_them() {
        let d = tempfile::tempdir().unwrap();
        drop(SqliteLedger::open(d.path()).unwrap());
        let conn = Connection::open(d.path().join(crate::sqlite::LEDGER_FILE)).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut ids = IdIndex::default();
        let mut w = EventWriter::start(&conn, &mut ids).unwrap();
        let at = |h: u32| format!("2026-07-01T{h:02}:30:00Z");
        // 3 events of 10 input tokens and 0.5 USD per block, block i in hour i (time order).
        let mut n = 0;
        let mut append = |w: &mut EventWriter, hours: &[u32]| {
            let events: Vec<UsageEvent> = hours
                .iter()
                .map(|&h| {
                    n += 1;
                    event(n, &at(h), Some("t"), 10, Some("0.5"))
                })
                .collect();
            let p = prepare_blocks(&events).unwrap();
            w.append_prepared(&conn, &ids, &p, "2026-07-09T00:00:00.000000Z")
                .unwrap()
                .unwrap();
        };
        for h in 0..16 {
            append(&mut w, &[h, h, h]);
        }
        // After block 8 the earliest recent event was in hour 0: nothing written. After
        // block 16 it was in hour 8: hours 0-7 are written (8 x 3 requests) and forgotten.
        let hour0 = 1_782_864_000; // 2026-07-01T00:00:00Z in Unix seconds
        let written = |c: &Connection| -> (i64, i64) {
            c.query_row(
                "SELECT COUNT(DISTINCT hour), COALESCE(SUM(requests), 0) FROM rollups",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(written(&conn), (8, 24));
        assert!(w.sums.keys().all(|(h, _)| *h >= hour0 + 8 * 3600));
        assert!(w.key_sums.keys().all(|(h, _)| *h >= hour0 + 8 * 3600));
        // Late events for hours 0 and 3, then the commit writes the rest.
        append(&mut w, &[0, 0, 3]);
        w.write_sums(&conn).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        let per_hour: Vec<(i64, i64, i64, i64)> = conn
            .prepare(
                "SELECT hour, SUM(requests), SUM(input_tokens), SUM(cost_e12) FROM rollups
                 GROUP BY hour ORDER BY hour",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        // By hand: every hour 3 requests, 30 tokens, 1.5 USD (1.5e12); hour 0 two more
        // (5, 50, 2.5e12), hour 3 one more (4, 40, 2e12).
        let want: Vec<(i64, i64, i64, i64)> = (0..16)
            .map(|h| {
                let r = match h {
                    0 => 5,
                    3 => 4,
                    _ => 3,
                };
                (hour0 + h * 3600, r, r * 10, r * 500_000_000_000)
            })
            .collect();
        assert_eq!(per_hour, want);
        let keys: (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), SUM(requests) FROM key_rollups WHERE hour = ?1",
                [hour0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(keys, (1, 5));
    }

    #[test]
    fn rows_come_in_time_order_across_overlapping_blocks_without_a_sort() {
        let d = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(d.path()).unwrap();
        let ev = |n: u32, at: &str| event(n, at, Some("t"), 1, Some("1"));
        // Block 1 spans 10:00-14:00, block 2 09:00-12:00 (overlapping, rows out of order),
        // block 3 11:00 (ties with block 2's 11:00 row: seq decides).
        l.append(&[ev(1, "2026-07-01T14:00:00Z"), ev(2, "2026-07-01T10:00:00Z")])
            .unwrap();
        l.append(&[
            ev(3, "2026-07-01T12:00:00Z"),
            ev(4, "2026-07-01T09:00:00Z"),
            ev(5, "2026-07-01T11:00:00Z"),
        ])
        .unwrap();
        l.append(&[ev(6, "2026-07-01T11:00:00Z")]).unwrap();
        let id = |n: u32| format!("0190a000-0000-7000-8000-{n:012x}");
        // By hand: 09:00 (4), 10:00 (2), 11:00 (5, seq 5; then 6, seq 6), 12:00 (3), 14:00 (1).
        let want = [id(4), id(2), id(5), id(6), id(3), id(1)];
        assert_eq!(
            ids_in(&l, "SELECT event_id FROM events ORDER BY occurred_at, seq"),
            want
        );
        assert_eq!(
            ids_in(&l, "SELECT event_id FROM events ORDER BY occurred_at"),
            want
        );
        assert_eq!(
            ids_in(
                &l,
                "SELECT event_id FROM events WHERE occurred_at >= '2026-07-01T10:00:00.000000Z' AND occurred_at < '2026-07-01T12:00:00.000000Z' ORDER BY occurred_at, seq"
            ),
            [id(2), id(5), id(6)]
        );
        // Descending is SQLite's to sort.
        assert_eq!(
            ids_in(
                &l,
                "SELECT event_id FROM events ORDER BY occurred_at DESC, seq DESC"
            ),
            [id(1), id(3), id(6), id(5), id(2), id(4)]
        );
        let plan = l
            .query_sql("EXPLAIN QUERY PLAN SELECT event_id FROM events ORDER BY occurred_at, seq")
            .unwrap();
        let text = format!("{:?}", plan.rows);
        assert!(!text.contains("TEMP B-TREE"), "{text}");
    }

    /// A ledger written by schema 9 (a row per event) is moved into blocks on open, every
    /// value, `seq` and `ingested_at` kept.
    #[test]
    fn migration_10_moves_rows_into_blocks_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(super::super::LEDGER_FILE);
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )
            .unwrap();
            for (v, desc, sql) in super::super::MIGRATIONS {
                if *v < super::super::BLOCKS_MIGRATION {
                    c.execute_batch(sql).unwrap();
                    c.execute(
                        "INSERT INTO schema_migrations VALUES (?1, ?2, '2026-01-01T00:00:00Z')",
                        params![v, desc],
                    )
                    .unwrap();
                }
            }
            // Two imports (two ingested_at), seq 1, 2 and 5 (a gap), one row mostly NULL.
            c.execute_batch(
                "INSERT INTO events (seq, event_id, request_id, attempt, occurred_at, completed_at,
                   team_id, tags, attribution_status, provider, model, operation, status,
                   http_status, streamed, latency_ms, input_tokens, cache_read_tokens,
                   cache_write_tokens, cache_write_1h_tokens, output_tokens, reasoning_tokens,
                   units, currency, cost, cost_e12, cost_input_e12, cost_cache_read_e12,
                   cost_cache_write_e12, cost_cache_write_1h_e12, cost_output_e12, price_version,
                   pricing_status, ingested_at)
                 VALUES
                 (1, 'id-a', 'req-a', 1, '2026-07-01T10:00:00.123456Z', '2026-07-01T10:00:01.000000Z',
                   'team-a', '{\"k\":\"v\"}', 'ok', 'openai', 'gpt-4o', 'chat', 'ok', 200, 1, 1000,
                   100, 20, 0, 0, 50, 0, NULL, 'USD', '0.00453', 4530000000, 2500000000, 30000000, 0, 0,
                   2000000000, 'abc@-inf', 'priced', '2026-07-02T00:00:00.000000Z'),
                 (2, 'id-b', NULL, 2, '2026-07-01T09:00:00.000000Z', NULL,
                   NULL, NULL, 'quarantined', 'self_hosted', 'm', 'chat', 'error', NULL, 0, NULL,
                   7, 0, 0, 0, 0, 0, '{\"images\":2}', 'USD', NULL, NULL, NULL, NULL, NULL, NULL,
                   NULL, NULL, 'unpriced', '2026-07-02T00:00:00.000000Z'),
                 (5, 'id-c', 'req-c', 1, '2026-07-03T00:00:00.000000Z', NULL,
                   'team-b', NULL, 'ok', 'anthropic', 'claude', 'chat', 'ok', 200, 0, 5,
                   1, 0, 0, 0, 1, 0, NULL, 'USD', '12.5', 12500000000000, 12500000000000, 0, 0, 0,
                   0, 'def@-inf', 'priced', '2026-07-04T00:00:00.000000Z');",
            )
            .unwrap();
        }
        let l = SqliteLedger::open(d.path()).unwrap();
        let r = l
            .query_sql(
                "SELECT seq, event_id, request_id, attempt, occurred_at, completed_at, team_id,
                 tags, attribution_status, http_status, streamed, latency_ms, input_tokens,
                 units, cost, cost_e12, cost_output_e12, price_version, ingested_at
                 FROM events ORDER BY seq",
            )
            .unwrap();
        let t = |s: &str| SqlValue::Text(s.into());
        let i = SqlValue::Integer;
        let n = SqlValue::Null;
        assert_eq!(
            r.rows,
            [
                vec![
                    i(1),
                    t("id-a"),
                    t("req-a"),
                    i(1),
                    t("2026-07-01T10:00:00.123456Z"),
                    t("2026-07-01T10:00:01.000000Z"),
                    t("team-a"),
                    t("{\"k\":\"v\"}"),
                    t("ok"),
                    i(200),
                    i(1),
                    i(1000),
                    i(100),
                    n.clone(),
                    t("0.00453"),
                    i(4_530_000_000),
                    i(2_000_000_000),
                    t("abc@-inf"),
                    t("2026-07-02T00:00:00.000000Z"),
                ],
                vec![
                    i(2),
                    t("id-b"),
                    n.clone(),
                    i(2),
                    t("2026-07-01T09:00:00.000000Z"),
                    n.clone(),
                    n.clone(),
                    n.clone(),
                    t("quarantined"),
                    n.clone(),
                    i(0),
                    n.clone(),
                    i(7),
                    t("{\"images\":2}"),
                    n.clone(),
                    n.clone(),
                    n.clone(),
                    n.clone(),
                    t("2026-07-02T00:00:00.000000Z"),
                ],
                vec![
                    i(5),
                    t("id-c"),
                    t("req-c"),
                    i(1),
                    t("2026-07-03T00:00:00.000000Z"),
                    n.clone(),
                    t("team-b"),
                    n.clone(),
                    t("ok"),
                    i(200),
                    i(0),
                    i(5),
                    i(1),
                    n.clone(),
                    t("12.5"),
                    i(12_500_000_000_000),
                    i(0),
                    t("def@-inf"),
                    t("2026-07-04T00:00:00.000000Z"),
                ],
            ]
        );
        // Two blocks: one per import (ingested_at); the old table is gone.
        let c = Connection::open(&path).unwrap();
        let blocks: i64 = c
            .query_row("SELECT COUNT(*) FROM event_blocks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(blocks, 2);
        let old: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0);
        drop(c);
        // Their ids are known to the writer: appending id-a again is a duplicate.
        let mut l = l;
        let mut a = event(1, "2026-07-01T10:00:00Z", Some("t"), 1, Some("1"));
        a.event_id = "id-a".into();
        assert_eq!(l.append(&[a]).unwrap().duplicates, 1);
        // The next event continues after the highest seq.
        l.append(&[event(9, "2026-07-05T00:00:00Z", Some("t"), 1, Some("1"))])
            .unwrap();
        let r = l.query_sql("SELECT MAX(seq) FROM events").unwrap();
        assert_eq!(r.rows[0][0], SqlValue::Integer(6));
    }
}
