//! The durable event path: an append-only spool of checksummed records, then the ledger.
//!
//! Record format (little endian): `u32 length`, `u32 CRC-32 of the payload`, payload (the
//! event as canonical JSON). Segment files `spool-NNNNNNNNNN.log` in the spool directory.
//!
//! - The request's own thread writes its record (one `write` under the segment's lock, no
//!   hand-off to another thread); an fsync thread does the `fdatasync`s, so writing never
//!   waits for the disk. `group` durability acknowledges as soon as the bytes are written (in
//!   the OS: a crash of the process loses nothing) and fsyncs within the window; `sync`
//!   durability acknowledges only after an fsync that began after the write (one fsync serves
//!   everything queued meanwhile: group commit). A response ends only after its
//!   acknowledgement.
//! - The ledger thread tails the segments and appends what was spooled in batches (one
//!   transaction each; the ledger is idempotent on `event_id`) and deletes a segment once all
//!   of it is in the ledger.
//! - At startup, [`replay`] moves whatever segments are left into the ledger (a torn record at
//!   the tail of a segment, from a crash mid-write, ends that segment's replay).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tollgate_core::{Pricer, UsageEvent};
use tollgate_ledger::sqlite::SqliteLedger;
use tollgate_ledger::{Ledger, PriceVersionRecord};

use crate::config::Durability;

/// Segments are rotated past this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// At most this many events per ledger transaction.
const LEDGER_BATCH: usize = 4096;
/// At least this long between two ledger transactions while events keep coming, so that each
/// transaction (and its fsync) carries many events instead of a few. Kept short: each
/// transaction is a burst of CPU beside the request path, and its length is the gateway's p99
/// (at 10,000 calls/s: p99 0.85 ms with 3 ms, 1.2 ms with 10 ms, 1.4 ms at 5,000 calls/s with
/// 50 ms; BENCHMARKS.md, runs M-T).
const LEDGER_PACE: Duration = Duration::from_millis(3);
/// The ledger writer's SQLite page cache (KiB): appends need little.
const LEDGER_CACHE_KIB: u32 = 8 * 1024;

enum LedgerMsg {
    /// Segment `seg` now holds `end` bytes of whole records.
    Written {
        seg: u64,
        end: u64,
    },
    /// Segment `seg` is complete at `end` bytes: delete it once all of it is in the ledger.
    Closed {
        seg: u64,
        end: u64,
    },
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// Counters for `/tollgate/stats` and the logs.
#[derive(Debug, Default)]
pub struct Stats {
    pub spooled: AtomicU64,
    pub committed: AtomicU64,
    pub fsyncs: AtomicU64,
    pub ledger_errors: AtomicU64,
}

/// The spool's current segment, written under a lock by the request's own thread.
struct Writer {
    dir: PathBuf,
    /// The current segment's id; its file, or `None` when it is opened on the next write
    /// (after a shutdown closed the previous one).
    id: u64,
    file: Option<Arc<File>>,
    /// Bytes of whole records in the current segment.
    size: u64,
}

struct Inner {
    writer: Mutex<Writer>,
    /// To the ledger thread: what is written and what is closed.
    ltx: mpsc::Sender<LedgerMsg>,
    /// To the fsync thread.
    stx: mpsc::Sender<SyncReq>,
    durability: Durability,
}

/// Handle to the spool: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
    pub stats: Arc<Stats>,
}

fn segment_name(id: u64) -> String {
    format!("spool-{id:010}.log")
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(id) = name
            .strip_prefix("spool-")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            v.push((id, e.path()));
        }
    }
    v.sort();
    Ok(v)
}

/// Encodes one record.
pub fn encode(ev: &UsageEvent, out: &mut Vec<u8>) {
    let json = ev.to_json();
    let len = u32::try_from(json.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(json.as_bytes()).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
}

/// Decodes the good records of a segment; stops at the first torn or corrupt record.
/// Returns the events and whether the whole file was readable.
pub fn decode(bytes: &[u8]) -> (Vec<UsageEvent>, bool) {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.len() - i < 8 {
            return (out, false);
        }
        let len = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]]);
        let body = &bytes[i + 8..];
        if body.len() < len || crc32fast::hash(&body[..len]) != crc {
            return (out, false);
        }
        match event_from_json(&body[..len]) {
            Some(ev) => out.push(ev),
            None => return (out, false),
        }
        i += 8 + len;
    }
    (out, true)
}

/// Decodes whole records from the start of `bytes`; returns the events and the bytes they
/// took, or `Err(offset)` at a corrupt record.
fn decode_prefix(bytes: &[u8]) -> Result<(Vec<UsageEvent>, usize), usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while bytes.len() - i >= 8 {
        let len = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]]);
        let body = &bytes[i + 8..];
        if body.len() < len {
            break;
        }
        if crc32fast::hash(&body[..len]) != crc {
            return Err(i);
        }
        out.push(event_from_json(&body[..len]).ok_or(i)?);
        i += 8 + len;
    }
    Ok((out, i))
}

/// Parses a spooled event; the attribution status the gateway decided is kept as written.
pub fn event_from_json(payload: &[u8]) -> Option<UsageEvent> {
    let s = std::str::from_utf8(payload).ok()?;
    let mut ev = tollgate_core::event::parse_json_event(s).ok()?;
    #[derive(serde::Deserialize)]
    struct St<'a> {
        #[serde(borrow)]
        attribution_status: Option<std::borrow::Cow<'a, str>>,
    }
    if let Ok(St {
        attribution_status: Some(a),
    }) = serde_json::from_str::<St<'_>>(s)
        && let Ok(a) = a.parse()
    {
        ev.attribution_status = a;
    }
    Some(ev)
}

/// Opens the ledger the spool appends to (each call a new handle; the ledger thread owns it).
pub type OpenLedger = Arc<dyn Fn() -> Result<Box<dyn Ledger + Send>> + Send + Sync>;

/// The SQLite ledger in `data_dir` (the default).
pub fn sqlite_ledger(data_dir: &Path) -> OpenLedger {
    let dir = data_dir.to_path_buf();
    Arc::new(move || {
        let mut l = SqliteLedger::open(&dir)?;
        // A small page cache: the gateway only appends (see LEDGER_CACHE_KIB).
        l.set_cache_kib(LEDGER_CACHE_KIB)?;
        Ok(Box::new(l) as Box<dyn Ledger + Send>)
    })
}

/// Moves every leftover segment into the ledger; returns the number of events replayed.
/// A segment with a corrupt record in the middle is kept (renamed `.corrupt`), never lost.
pub fn replay(dir: &Path, open: &OpenLedger, pricer: &Pricer) -> Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    replay_segments(segments(dir)?, open, pricer)
}

/// What [`replay_or_defer`] did at startup.
pub struct Replayed {
    /// Events moved into the ledger before serving.
    pub events: u64,
    /// The leftover segments could not go into the ledger yet (it is unreachable): a
    /// background thread retries them, with backoff, until they are in; it sends once done.
    pub deferred: Option<mpsc::Receiver<()>>,
}

/// [`replay`] at startup, without refusing to serve when the ledger cannot take the events
/// yet (a ClickHouse server that is down): the leftover segments stay on disk and a
/// background thread keeps replaying exactly those (the segments present now; the spool's new
/// segments get higher numbers and are the ledger thread's) until it succeeds. Appends are
/// idempotent on `event_id`, so events of a segment half-replayed before a failure are not
/// counted twice. Only a spool directory that cannot be read or created fails.
pub fn replay_or_defer(dir: &Path, open: &OpenLedger, pricer: Arc<Pricer>) -> Result<Replayed> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let segs = segments(dir)?;
    let Some(last) = segs.last().map(|(id, _)| *id) else {
        return Ok(Replayed {
            events: 0,
            deferred: None,
        });
    };
    let e = match replay_segments(segs, open, &pricer) {
        Ok(events) => {
            return Ok(Replayed {
                events,
                deferred: None,
            });
        }
        Err(e) => e,
    };
    eprintln!(
        "tollgate serve: cannot replay the spool into the ledger yet ({e:#}); serving, and retrying in the background"
    );
    let (done, rx) = mpsc::channel();
    let dir = dir.to_path_buf();
    let open = open.clone();
    std::thread::Builder::new()
        .name("tollgate-replay".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(200);
            loop {
                std::thread::sleep(backoff);
                let left = segments(&dir).map(|s| {
                    s.into_iter()
                        .filter(|(id, _)| *id <= last)
                        .collect::<Vec<_>>()
                });
                match left.and_then(|s| replay_segments(s, &open, &pricer)) {
                    Ok(n) => {
                        eprintln!(
                            "tollgate serve: replayed {n} spooled events into the ledger (deferred)"
                        );
                        let _ = done.send(());
                        return;
                    }
                    Err(e) => {
                        eprintln!("tollgate serve: spool replay failed (will retry): {e:#}");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        })?;
    Ok(Replayed {
        events: 0,
        deferred: Some(rx),
    })
}

/// Replays the given segments (sorted by id) into the ledger; each one is deleted (or renamed
/// `.corrupt`) once its events are in.
fn replay_segments(segs: Vec<(u64, PathBuf)>, open: &OpenLedger, pricer: &Pricer) -> Result<u64> {
    if segs.is_empty() {
        return Ok(0);
    }
    let mut ledger = open()?;
    let mut known = HashSet::new();
    let mut n = 0;
    for (_, path) in segs {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let (events, whole) = decode(&bytes);
        for chunk in events.chunks(LEDGER_BATCH) {
            append(ledger.as_mut(), chunk, pricer, &mut known)?;
        }
        n += events.len() as u64;
        let torn_tail_only = whole || tail_is_torn(&bytes, &events);
        if torn_tail_only {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        } else {
            let bad = path.with_extension("corrupt");
            eprintln!(
                "tollgate serve: {} has a corrupt record after {} good ones; kept as {}",
                path.display(),
                events.len(),
                bad.display()
            );
            std::fs::rename(&path, &bad)?;
        }
    }
    Ok(n)
}

/// True when the unreadable part is a record cut short by the end of the file (a crash
/// mid-write), not a bad record followed by more data.
fn tail_is_torn(bytes: &[u8], good: &[UsageEvent]) -> bool {
    let mut i = 0;
    for _ in good {
        let len = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        i += 8 + len;
    }
    let rest = bytes.len() - i;
    if rest < 8 {
        return true;
    }
    let len = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
    rest < 8 + len
}

fn append(
    ledger: &mut dyn Ledger,
    events: &[UsageEvent],
    pricer: &Pricer,
    known: &mut HashSet<String>,
) -> Result<()> {
    let mut w = ledger.writer()?;
    let mut recs = Vec::new();
    for e in events {
        if let Some(v) = &e.pricing.price_version
            && !known.contains(v)
            && let Some(r) = pricer.rate_by_version(v)
        {
            known.insert(v.clone());
            recs.push(PriceVersionRecord::of_rate(r));
        }
    }
    if !recs.is_empty() {
        w.record_price_versions(&recs)?;
    }
    w.append(events)?;
    w.commit()?;
    Ok(())
}

impl Spool {
    /// Starts the fsync and ledger threads (after [`replay`]).
    pub fn start(
        dir: &Path,
        open: &OpenLedger,
        durability: Durability,
        window: Duration,
        pricer: Arc<Pricer>,
    ) -> Result<Spool> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let next_id = segments(dir)?.last().map_or(1, |(id, _)| id + 1);
        let stats = Arc::new(Stats::default());
        let (ltx, lrx) = mpsc::channel::<LedgerMsg>();
        let (stx, srx) = mpsc::channel::<SyncReq>();
        let ledger = open()?;
        let st = stats.clone();
        let ldir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("tollgate-ledger".into())
            .spawn(move || ledger_loop(ledger, ldir, next_id, lrx, pricer, st))?;
        let st = stats.clone();
        std::thread::Builder::new()
            .name("tollgate-fsync".into())
            .spawn(move || syncer_loop(srx, durability, window, st))?;
        let first = open_segment(dir, next_id)?;
        let size = first.metadata()?.len();
        Ok(Spool {
            inner: Arc::new(Inner {
                writer: Mutex::new(Writer {
                    dir: dir.to_path_buf(),
                    id: next_id,
                    file: Some(Arc::new(first)),
                    size,
                }),
                ltx,
                stx,
                durability,
            }),
            stats,
        })
    }

    /// Spools an event; resolves once it is as durable as the configured mode promises.
    /// The record is written by the calling thread (no hand-off to another thread and back):
    /// in `group` mode the call returns as soon as the bytes are in the OS, in `sync` mode it
    /// waits for an fsync that began after the write.
    pub async fn record(&self, ev: UsageEvent) {
        if let Some(wait) = self.write(&ev, true) {
            let _ = wait.await;
        }
    }

    /// Spools an event without waiting for its fsync (the client is gone, nobody to hold
    /// back).
    pub fn record_nowait(&self, ev: UsageEvent) {
        let _ = self.write(&ev, false);
    }

    /// Appends one record to the current segment; returns what to wait on in `sync` mode. A
    /// spool that cannot be written stops the process: nothing may be acknowledged that is
    /// not spooled.
    fn write(&self, ev: &UsageEvent, ack: bool) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let mut rec = Vec::with_capacity(1024);
        encode(ev, &mut rec);
        let inner = &*self.inner;
        // The lock covers the write only; the fsync request goes out after it.
        let appended = inner
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .append(&rec, &inner.ltx);
        match appended {
            Ok(file) => {
                self.stats.spooled.fetch_add(1, Ordering::Relaxed);
                let (acks, wait) = if ack && inner.durability == Durability::Sync {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    (vec![tx], Some(rx))
                } else {
                    (Vec::new(), None)
                };
                // In `group` mode the fsync thread sleeps out its window while these queue up,
                // so this wakes it at most once per window.
                let _ = inner.stx.send(SyncReq { file, acks });
                wait
            }
            Err(e) => {
                eprintln!("tollgate serve: spool failed: {e:#}");
                std::process::exit(3);
            }
        }
    }

    /// Flushes everything into the ledger and stops the ledger thread. A record written after
    /// this (a straggler) goes to a new segment, replayed at the next start.
    pub fn shutdown(&self) {
        let inner = &*self.inner;
        {
            let mut w = inner
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = w.close(&inner.ltx) {
                eprintln!("tollgate serve: spool failed at shutdown: {e:#}");
            }
        }
        let (tx, rx) = mpsc::channel();
        if inner.ltx.send(LedgerMsg::Shutdown(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(60));
        }
    }
}

impl Writer {
    /// Writes one whole record, tells the ledger thread, rotates a full segment; returns the
    /// file the record went to (for its fsync).
    fn append(&mut self, rec: &[u8], ltx: &mpsc::Sender<LedgerMsg>) -> Result<Arc<File>> {
        let file = match &self.file {
            Some(f) => f.clone(),
            None => {
                let f = Arc::new(open_segment(&self.dir, self.id)?);
                self.size = f.metadata()?.len();
                self.file = Some(f.clone());
                f
            }
        };
        (&*file)
            .write_all(rec)
            .with_context(|| format!("cannot write {}", segment_name(self.id)))?;
        self.size += rec.len() as u64;
        let _ = ltx.send(LedgerMsg::Written {
            seg: self.id,
            end: self.size,
        });
        if self.size >= SEGMENT_BYTES {
            self.close(ltx)?;
        }
        Ok(file)
    }

    /// Fsyncs the current segment and hands it to the ledger thread to finish and delete; the
    /// next write opens the next segment.
    fn close(&mut self, ltx: &mpsc::Sender<LedgerMsg>) -> Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_data()
                .with_context(|| format!("cannot fsync {}", segment_name(self.id)))?;
            let _ = ltx.send(LedgerMsg::Closed {
                seg: self.id,
                end: self.size,
            });
            self.id += 1;
            self.size = 0;
        }
        Ok(())
    }
}

fn open_segment(dir: &Path, id: u64) -> Result<File> {
    let p = dir.join(segment_name(id));
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| format!("cannot open spool segment {}", p.display()))
}

/// A request to the syncer thread: fsync this segment, then release these acknowledgements.
struct SyncReq {
    file: Arc<File>,
    acks: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// Runs the fsyncs off the writer thread, so writing (and, in `group` mode, answering) never
/// waits for the disk. `group`: after the first request, waits out the window collecting more,
/// then syncs once. `sync`: syncs at once for everything queued meanwhile (group commit), then
/// releases those responses.
fn syncer_loop(
    rx: mpsc::Receiver<SyncReq>,
    durability: Durability,
    window: Duration,
    stats: Arc<Stats>,
) {
    loop {
        let Ok(first) = rx.recv() else { return };
        let mut reqs = vec![first];
        if durability == Durability::Group {
            // Sleep out the window rather than wait on the channel: the writes made meanwhile
            // queue up without waking this thread for each one.
            std::thread::sleep(window);
        }
        while let Ok(r) = rx.try_recv() {
            reqs.push(r);
        }
        let mut synced: Vec<Arc<File>> = Vec::new();
        for r in &reqs {
            if synced.iter().any(|f| Arc::ptr_eq(f, &r.file)) {
                continue;
            }
            if let Err(e) = r.file.sync_data() {
                eprintln!("tollgate serve: spool fsync failed: {e}");
                std::process::exit(3);
            }
            stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            synced.push(r.file.clone());
        }
        for r in reqs {
            for a in r.acks {
                let _ = a.send(());
            }
        }
    }
}

/// Tails the spool: reads whole records from the current segment up to what the spool thread
/// reported written, appends them in batches, deletes a segment once it is closed and read.
/// Memory stays bounded by one read buffer, however far the ledger falls behind.
fn ledger_loop(
    mut ledger: Box<dyn Ledger + Send>,
    dir: PathBuf,
    first_seg: u64,
    rx: mpsc::Receiver<LedgerMsg>,
    pricer: Arc<Pricer>,
    stats: Arc<Stats>,
) {
    let mut known = HashSet::new();
    let mut seg = first_seg;
    let mut off: u64 = 0;
    // Highest written offset per segment, and the final size of closed segments.
    let mut written: std::collections::BTreeMap<u64, u64> = Default::default();
    let mut closed: std::collections::BTreeMap<u64, u64> = Default::default();
    let mut shutdown: Option<mpsc::Sender<()>> = None;
    let mut file: Option<File> = None;
    let mut stuck = false;
    let mut rbuf: Vec<u8> = Vec::new();
    let mut last_commit: Option<Instant> = None;
    loop {
        let caught_up = written.get(&seg).is_none_or(|e| off >= *e) && !closed.contains_key(&seg);
        let first = if caught_up && shutdown.is_none() {
            match rx.recv() {
                Ok(m) => {
                    // Events keep coming: let them gather for one transaction.
                    if let Some(t) = last_commit
                        && let Some(rest) = LEDGER_PACE.checked_sub(t.elapsed())
                    {
                        std::thread::sleep(rest);
                    }
                    Some(m)
                }
                Err(_) => return,
            }
        } else {
            rx.try_recv().ok()
        };
        let mut next = first;
        while let Some(m) = next {
            match m {
                LedgerMsg::Written { seg: s, end } => {
                    written.insert(s, end);
                }
                LedgerMsg::Closed { seg: s, end } => {
                    written.insert(s, end);
                    closed.insert(s, end);
                }
                LedgerMsg::Shutdown(d) => shutdown = Some(d),
            }
            next = rx.try_recv().ok();
        }
        // Read and append what is there.
        let end = written.get(&seg).copied().unwrap_or(0);
        if off < end && !stuck {
            if file.is_none() {
                file = File::open(dir.join(segment_name(seg))).ok();
            }
            let Some(f) = file.as_mut() else {
                stuck = true;
                continue;
            };
            // At most 1 MiB per read (the largest record is an event of a few KiB).
            let want = (end - off).min(1 << 20) as usize;
            rbuf.resize(want, 0);
            let read = std::io::Seek::seek(f, std::io::SeekFrom::Start(off))
                .and_then(|_| f.read_exact(&mut rbuf[..want]));
            if read.is_err() {
                stuck = true;
                continue;
            }
            match decode_prefix(&rbuf[..want]) {
                Ok((events, used)) => {
                    let mut backoff = Duration::from_millis(50);
                    last_commit = Some(Instant::now());
                    for chunk in events.chunks(LEDGER_BATCH) {
                        loop {
                            match append(ledger.as_mut(), chunk, &pricer, &mut known) {
                                Ok(()) => {
                                    stats
                                        .committed
                                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                                    break;
                                }
                                Err(e) => {
                                    // The events stay in the spool; keep trying (a busy or
                                    // missing ledger only grows the spool).
                                    stats.ledger_errors.fetch_add(1, Ordering::Relaxed);
                                    eprintln!(
                                        "tollgate serve: ledger append failed (will retry): {e:#}"
                                    );
                                    std::thread::sleep(backoff);
                                    backoff = (backoff * 2).min(Duration::from_secs(5));
                                }
                            }
                        }
                    }
                    off += used as u64;
                    if used == 0 {
                        // A record larger than the read window: cannot happen with events,
                        // stop rather than spin; the restart replays it.
                        stuck = true;
                    }
                }
                Err(at) => {
                    eprintln!(
                        "tollgate serve: corrupt spool record in {} at byte {}; left for the replay at restart",
                        segment_name(seg),
                        off + at as u64
                    );
                    stuck = true;
                }
            }
            continue;
        }
        // A closed segment read to its end: delete it and move on.
        if let Some(&fin) = closed.get(&seg)
            && off >= fin
            && !stuck
        {
            let _ = std::fs::remove_file(dir.join(segment_name(seg)));
            closed.remove(&seg);
            written.remove(&seg);
            seg += 1;
            off = 0;
            file = None;
            continue;
        }
        if let Some(d) = shutdown.take() {
            let _ = d.send(());
            return;
        }
    }
}

/// Reads a file fully (helper for tools).
pub fn read_all(p: &Path) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(p)?.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn ev(n: u32) -> UsageEvent {
        let line = format!(
            r#"{{"event_id":"00000000-0000-7000-8000-{n:012}","occurred_at":"2026-07-01T00:00:00Z","provider":"openai","model":"m","team_id":"t","service":"s","environment":"prod","attribution_status":"flagged","input_tokens":{n}}}"#
        );
        let mut e = tollgate_core::event::parse_json_event(&line).unwrap();
        e.attribution_status = tollgate_core::AttributionStatus::Flagged;
        e
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_told_from_corruption() {
        let mut b = Vec::new();
        for n in 1..=3 {
            encode(&ev(n), &mut b);
        }
        let (got, whole) = decode(&b);
        assert!(whole);
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].usage.input_tokens, 3);
        // The gateway's decision survives the round trip (feature is missing: "flagged", not
        // the importer's "quarantined").
        assert_eq!(
            got[0].attribution_status,
            tollgate_core::AttributionStatus::Flagged
        );
        // A crash mid-write: the last record is cut short.
        let torn = &b[..b.len() - 5];
        let (got, whole) = decode(torn);
        assert_eq!((got.len(), whole), (2, false));
        assert!(tail_is_torn(torn, &got));
        // A flipped byte in the middle record: corruption, not a torn tail.
        let mut bad = b.clone();
        let first_len = 8 + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        bad[first_len + 20] ^= 0xff;
        let (got, whole) = decode(&bad);
        assert_eq!((got.len(), whole), (1, false));
        assert!(!tail_is_torn(&bad, &got));
        assert_eq!(decode_prefix(&bad).unwrap_err(), first_len);
    }

    /// A ledger that cannot take the leftover segments at startup: `replay_or_defer` returns
    /// at once (the gateway serves), and a background thread replays exactly the segments
    /// that were there (not the new one the live spool writes meanwhile) once it can.
    #[test]
    fn a_replay_the_ledger_cannot_take_yet_is_deferred_to_a_background_thread() {
        use std::sync::atomic::AtomicBool;
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("spool");
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Vec::new();
        encode(&ev(1), &mut b);
        encode(&ev(2), &mut b);
        std::fs::write(dir.join(segment_name(1)), &b).unwrap();
        let up = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU64::new(0));
        let sqlite = sqlite_ledger(data.path());
        let open: OpenLedger = {
            let (up, attempts) = (up.clone(), attempts.clone());
            Arc::new(move || {
                attempts.fetch_add(1, Ordering::Relaxed);
                if up.load(Ordering::Relaxed) {
                    sqlite()
                } else {
                    anyhow::bail!("cannot reach the ledger")
                }
            })
        };
        let pricer = Arc::new(Pricer::new(Vec::new()));
        let r = replay_or_defer(&dir, &open, pricer).unwrap();
        assert_eq!(r.events, 0);
        let done = r.deferred.expect("deferred");
        // The live spool's next segment, written while the ledger is still down.
        let mut b3 = Vec::new();
        encode(&ev(3), &mut b3);
        std::fs::write(dir.join(segment_name(2)), &b3).unwrap();
        up.store(true, Ordering::Relaxed);
        done.recv_timeout(Duration::from_secs(60)).unwrap();
        assert!(attempts.load(Ordering::Relaxed) >= 2);
        // Segment 1 is in the ledger (events 1 and 2) and gone; segment 2 is the ledger
        // thread's, untouched.
        assert!(!dir.join(segment_name(1)).exists());
        assert_eq!(std::fs::read(dir.join(segment_name(2))).unwrap(), b3);
        let l = SqliteLedger::open(data.path()).unwrap();
        assert_eq!(l.event_count().unwrap(), 2);
    }
}
