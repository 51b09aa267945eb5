//! The parse stage of `ingest events`: records in, validated and priced batches out, in file
//! order.
//!
//! JSONL is parsed in parallel: one reader thread cuts the input into chunks of whole lines
//! (about [`CHUNK_BYTES`] each) and numbers them; worker threads (one per core, at least two)
//! validate and price a chunk each into a [`Batch`]; the calling thread takes the batches back
//! strictly in chunk order (a small reorder buffer) and hands them to its `consume` callback.
//! At most a few chunks are in flight (a token is taken per chunk when it is read and given
//! back when its batch has been consumed), so memory stays bounded whatever the file size.
//!
//! Errors keep the single-threaded meaning: a worker stops its chunk at its first bad line and
//! reports it by its line number within the chunk; the calling thread, which has seen every
//! earlier chunk (and their line counts) before it, turns that into `FILE:LINE: FIELD: what`.
//! So the error reported is the earliest bad line of the file, and nothing after it reaches
//! `consume`. CSV, whose quoted fields may hold newlines, is read by one thread in order.
//!
//! For a ledger that prepares batches ([`tollgate_ledger::Preparer`], the SQLite ledger), a
//! worker reads each line into an event whose texts borrow from the chunk
//! ([`tollgate_core::event::EventRef`]: no string is allocated per field), prices it, and
//! prepares the chunk's events for the ledger (encoded blocks, rollups, id hashes); the events
//! are then dropped and the batch keeps the chunk's text. Only when the ledger refuses a
//! preparation (one of its events is stored already) are the events needed as owned values:
//! they are parsed again from the text on the calling thread, and the workers keep owned
//! events (besides the preparation) for the batches after it, until a batch goes in as
//! prepared. `--check` counts borrowed events the same way.
//!
//! Memory goes back to the thread that allocated it: a consumed batch's events return to the
//! worker that parsed them (which frees them and reuses the vector), and chunk buffers return
//! to the reader.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use anyhow::{Context, Result, bail};
use std::borrow::Cow;

use tollgate_core::event::{EventRef, FieldError, parse_json_event_as};
use tollgate_core::{Pricer, UsageEvent};

use crate::cmd_ingest::InputFormat;

/// Bytes per JSONL chunk (the chunk is cut at the last line end after this many bytes).
const CHUNK_BYTES: usize = 4 << 20;

/// Test hook, undocumented: cut JSONL chunks every N lines instead of by size.
const CHUNK_LINES_ENV: &str = "TOLLGATE_INGEST_CHUNK_LINES";

/// Events per batch on the CSV path.
const CSV_BATCH: usize = 8192;

/// Validated and priced events of one chunk, with what the summary needs to know about them.
///
/// A JSONL chunk read for a ledger with a [`tollgate_ledger::Preparer`] is parsed into events
/// that borrow their texts from the chunk, which are prepared for the ledger and dropped
/// there: the batch holds the preparation and the chunk's text, and gives owned events
/// ([`Batch::events`]) only if the ledger refuses the preparation (an event already stored).
pub(crate) struct Batch {
    /// Events validated: lines with a record.
    pub n: usize,
    /// The owned events: parsed so (CSV; a ledger without a preparer) or on demand.
    events: Vec<UsageEvent>,
    /// The chunk's text when its events were not kept owned (`buf[..len]`), to parse them
    /// again on demand; its buffer goes back to the reader once the batch is consumed.
    text: Option<(Vec<u8>, usize)>,
    /// Price versions stamped on these events.
    pub versions: BTreeSet<String>,
    /// Why events are unpriced, with counts.
    pub reasons: BTreeMap<String, u64>,
    /// The events' ids as numbers ([`id_key`]), when asked for.
    pub ids: Vec<u128>,
    /// Per event, when ids are asked for: bit 0 quarantined, bit 1 unpriced.
    pub flags: Vec<u8>,
    /// The events made ready for the ledger by the worker (see [`Options::prepare`]).
    pub prepared: tollgate_ledger::Prepared,
    want_ids: bool,
    /// Physical lines of the input the chunk held (JSONL).
    lines: u64,
    /// The thread that parsed it: its events are freed there.
    worker: usize,
    /// Events of this batch; `events` may hold older ones after them, from a batch consumed
    /// before, until [`Batch::seal`].
    filled: usize,
    /// Whether [`Batch::events`] was called.
    needed: bool,
}

impl Batch {
    fn new((events, mut ids): Spent, worker: usize, want_ids: bool) -> Batch {
        ids.clear();
        Batch {
            n: 0,
            events,
            text: None,
            versions: BTreeSet::new(),
            reasons: BTreeMap::new(),
            ids,
            flags: Vec::new(),
            prepared: tollgate_ledger::Prepared::none(),
            want_ids,
            lines: 0,
            worker,
            filled: 0,
            needed: false,
        }
    }

    /// Prices a validated event and notes what the summary needs of it.
    fn price<'p, S>(&mut self, pricer: &'p Pricer, ev: &mut tollgate_core::UsageEvent<S>)
    where
        S: std::ops::Deref<Target = str> + From<&'p str>,
    {
        if let Err(reason) = pricer.price_event(ev) {
            *self.reasons.entry(reason.to_string()).or_default() += 1;
        }
        if let Some(v) = ev.pricing.price_version.as_deref()
            && !self.versions.contains(v)
        {
            self.versions.insert(v.to_string());
        }
        if self.want_ids {
            self.ids.push(id_key(&ev.event_id));
            let quarantined =
                ev.attribution_status == tollgate_core::AttributionStatus::Quarantined;
            self.flags
                .push(u8::from(quarantined) | (u8::from(ev.pricing.cost.is_none()) << 1));
        }
        self.n += 1;
    }

    /// Prices a validated event and keeps it.
    fn add(&mut self, pricer: &Pricer, mut ev: UsageEvent) {
        self.price(pricer, &mut ev);
        // An event consumed earlier is freed as each new one takes its place: the allocator
        // then hands its blocks straight to the next event (freeing a whole batch at once
        // and allocating the next would go through its slower shared lists).
        match self.events.get_mut(self.filled) {
            Some(slot) => *slot = ev,
            None => self.events.push(ev),
        }
        self.filled += 1;
    }

    /// Drops the older events left after this batch's own.
    fn seal(&mut self) {
        self.events.truncate(self.filled);
    }

    /// The batch's events, owned: those kept, or (when only their preparation was kept)
    /// the chunk's lines parsed and priced again, as the worker did.
    pub fn events(&mut self, pricer: &Pricer) -> Result<&[UsageEvent]> {
        self.needed = true;
        if let Some((buf, len)) = &self.text
            && self.events.is_empty()
        {
            let mut events = Vec::with_capacity(self.n);
            // Priced again; why some are unpriced was counted the first time.
            parse_chunk(&buf[..*len], |mut ev: UsageEvent| {
                let _ = pricer.price_event(&mut ev);
                events.push(ev);
            })
            .map_err(|_| anyhow::anyhow!("a chunk read before could not be read again"))?;
            self.events = events;
        }
        Ok(&self.events)
    }
}

/// A validated event id (a UUID, lower-cased) as a number.
pub(crate) fn id_key(id: &str) -> u128 {
    // A hex digit's value without a branch: its low nibble, plus 9 for a letter.
    id.bytes().filter(|&b| b != b'-').fold(0u128, |k, b| {
        (k << 4) | u128::from((b & 0x0f) + 9 * (b >> 6))
    })
}

/// What went wrong in a chunk.
enum Fail {
    /// A bad record at this line of the chunk (1 = its first line).
    Record(u64, FieldError),
    /// A line that is not UTF-8, at this line of the chunk.
    NotUtf8(u64),
    /// The input could not be read after the lines of the chunks before this one.
    Read(std::io::Error),
    /// An error that already names its line (CSV).
    Located(anyhow::Error),
    /// The worker parsing the chunk panicked.
    Panicked,
}

/// Reports the chunk a worker took as failed if the worker panics before it sends an outcome:
/// the chunk's turn then comes, with an error, instead of never (with its token never given
/// back, the reader would wait forever).
struct Unfinished<'a> {
    idx: u64,
    results: &'a Sender<Outcome>,
    done: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.results.send((self.idx, Err(Fail::Panicked)));
        }
    }
}

/// A consumed batch's vectors, back to the thread that filled them.
type Spent = (Vec<UsageEvent>, Vec<u128>);

/// A consumed batch's vectors and its preparation, sent back to its worker: the worker frees
/// what it allocated (the preparation at once, the vectors as it reuses them).
type Returned = (Vec<UsageEvent>, Vec<u128>, tollgate_ledger::Prepared);

/// The vectors of returned batches; their preparations are freed here, on the worker.
fn reuse(trash: &Receiver<Returned>) -> impl Iterator<Item = Spent> + '_ {
    trash
        .try_iter()
        .map(|(events, ids, _prepared)| (events, ids))
}

type Outcome = (u64, std::result::Result<Batch, Fail>);

/// How the reader cuts chunks.
#[derive(Clone, Copy)]
enum Cut {
    Bytes(usize),
    Lines(usize),
}

impl Cut {
    fn from_env() -> Cut {
        match std::env::var(CHUNK_LINES_ENV)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            Some(n) if n > 0 => Cut::Lines(n),
            _ => Cut::Bytes(CHUNK_BYTES),
        }
    }

    /// The buffer size to start with.
    fn buffer(self) -> usize {
        match self {
            Cut::Bytes(n) => n,
            Cut::Lines(_) => 64 << 10,
        }
    }

    /// Where the chunk held in `data` ends (just after a line end), if it is complete.
    fn end(self, data: &[u8]) -> Option<usize> {
        match self {
            Cut::Bytes(n) if data.len() >= n => memchr::memrchr(b'\n', data).map(|i| i + 1),
            Cut::Bytes(_) => None,
            Cut::Lines(n) => memchr::memchr_iter(b'\n', data).nth(n - 1).map(|i| i + 1),
        }
    }
}

/// A chunk of whole lines: `buf[..len]`.
struct Chunk {
    idx: u64,
    buf: Vec<u8>,
    len: usize,
}

/// What the workers do besides parsing.
#[derive(Clone, Copy, Default)]
pub(crate) struct Options {
    /// Fill [`Batch::ids`].
    pub want_ids: bool,
    /// Fill [`Batch::prepared`] with this (the ledger's [`tollgate_ledger::Ledger::preparer`]),
    /// so the ledger's writer thread has less to do.
    pub prepare: Option<tollgate_ledger::Preparer>,
}

/// Parses `input` and calls `consume` with every batch, in file order (with the events' ids
/// as numbers in [`Batch::ids`] when `want_ids`). Returns the first error in file order (a bad
/// record, unreadable input, or `consume`'s own error); after an error `consume` is not
/// called again.
pub(crate) fn run(
    source: &str,
    input: Box<dyn BufRead + Send + '_>,
    fmt: InputFormat,
    pricer: &Pricer,
    bytes_read: &AtomicU64,
    opts: Options,
    consume: &mut dyn FnMut(&mut Batch) -> Result<()>,
) -> Result<()> {
    let Options { want_ids, prepare } = opts;
    let workers = match fmt {
        InputFormat::Csv => 1,
        InputFormat::Jsonl => std::thread::available_parallelism()
            .map_or(2, std::num::NonZero::get)
            .clamp(2, 32),
    };
    let cut = Cut::from_env();
    let stop = AtomicBool::new(false);
    let needed = AtomicBool::new(false);
    let (results, results_rx) = mpsc::channel::<Outcome>();
    // A token per chunk read and not yet consumed: the reader waits when all are out.
    let (tokens, tokens_rx) = mpsc::sync_channel::<()>(2 * workers + 2);
    let (jobs, jobs_rx) = mpsc::channel::<Chunk>();
    let jobs_rx = Mutex::new(jobs_rx);
    let (spare, spare_rx) = mpsc::channel::<Vec<u8>>();
    let mut trash = Vec::with_capacity(workers);
    let mut trash_rxs = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (t, r) = mpsc::channel::<Returned>();
        trash.push(t);
        trash_rxs.push(r);
    }
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(workers + 1);
        match fmt {
            InputFormat::Csv => {
                let results = results.clone();
                let trash_rx = trash_rxs.pop();
                handles.push(scope.spawn(move || {
                    if let Some(trash_rx) = trash_rx {
                        let sink = (&tokens, &results, &trash_rx);
                        produce_csv(source, input, pricer, bytes_read, want_ids, sink);
                    }
                }));
                drop(jobs);
            }
            InputFormat::Jsonl => {
                for (id, trash) in trash_rxs.drain(..).enumerate() {
                    let w = Worker {
                        id,
                        jobs: &jobs_rx,
                        trash,
                        spare: spare.clone(),
                        results: results.clone(),
                        pricer,
                        want_ids,
                        prepare,
                        needed: &needed,
                        stop: &stop,
                    };
                    handles.push(scope.spawn(move || w.run()));
                }
                let r = Reader {
                    cut,
                    jobs,
                    tokens,
                    spare: spare_rx,
                    results: results.clone(),
                    bytes_read,
                    stop: &stop,
                };
                handles.push(scope.spawn(move || {
                    let mut input = input;
                    r.run(&mut *input);
                }));
            }
        }
        drop(results);
        let outcome = in_order(
            source,
            results_rx,
            tokens_rx,
            (&trash, &spare, &needed),
            consume,
        );
        drop(spare);
        if outcome.is_err() {
            // The threads stop at their next chunk; the reader finds the tokens gone.
            stop.store(true, Ordering::Relaxed);
        }
        drop(trash);
        let mut panicked = false;
        for h in handles {
            panicked |= h.join().is_err();
        }
        outcome?;
        if panicked {
            bail!("{source}: the reader thread failed");
        }
        Ok(())
    })
}

/// Takes the outcomes as they come and hands batches to `consume` in chunk order.
fn in_order(
    source: &str,
    results: Receiver<Outcome>,
    tokens: Receiver<()>,
    (trash, spare, needed): (&[Sender<Returned>], &Sender<Vec<u8>>, &AtomicBool),
    consume: &mut dyn FnMut(&mut Batch) -> Result<()>,
) -> Result<()> {
    let mut pending: BTreeMap<u64, std::result::Result<Batch, Fail>> = BTreeMap::new();
    let mut next: u64 = 0;
    // Physical lines of the chunks consumed so far.
    let mut lines: u64 = 0;
    for (idx, outcome) in results {
        pending.insert(idx, outcome);
        while let Some(outcome) = pending.remove(&next) {
            next += 1;
            // The chunk is done: the reader may read another.
            let _ = tokens.try_recv();
            match outcome {
                Ok(mut batch) => {
                    lines += batch.lines;
                    consume(&mut batch)?;
                    needed.store(batch.needed, Ordering::Relaxed);
                    if let Some((buf, _)) = batch.text.take() {
                        let _ = spare.send(buf);
                    }
                    if let Some(t) = trash.get(batch.worker) {
                        let _ = t.send((
                            std::mem::take(&mut batch.events),
                            std::mem::take(&mut batch.ids),
                            std::mem::take(&mut batch.prepared),
                        ));
                    }
                }
                Err(Fail::Record(at, e)) => bail!("{source}:{}: {e}", lines + at),
                Err(Fail::NotUtf8(at)) => {
                    return Err(anyhow::Error::new(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "stream did not contain valid UTF-8",
                    ))
                    .context(format!("{source}:{}: cannot read", lines + at)));
                }
                Err(Fail::Read(e)) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("{source}:{}: cannot read", lines + 1)));
                }
                Err(Fail::Located(e)) => return Err(e),
                Err(Fail::Panicked) => bail!("{source}: a parser thread failed"),
            }
        }
    }
    if !pending.is_empty() {
        bail!("{source}: the reader thread failed");
    }
    Ok(())
}

/// The reader thread: cuts the input into chunks of whole lines for the workers.
struct Reader<'a> {
    cut: Cut,
    jobs: Sender<Chunk>,
    /// Taken before each chunk is sent (the consumer gives them back).
    tokens: SyncSender<()>,
    /// Chunk buffers the workers are done with.
    spare: Receiver<Vec<u8>>,
    /// For a read error, which comes in its turn after the chunks before it.
    results: Sender<Outcome>,
    bytes_read: &'a AtomicU64,
    stop: &'a AtomicBool,
}

impl Reader<'_> {
    fn run(self, input: &mut (dyn BufRead + Send + '_)) {
        let Reader {
            cut,
            jobs,
            tokens,
            spare,
            results,
            bytes_read,
            stop,
        } = self;
        // The start of a line read with the previous chunk.
        let mut carry: Vec<u8> = Vec::new();
        let mut idx: u64 = 0;
        let mut eof = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // A returned buffer (already the right size) or a new one.
            let mut buf = spare.try_recv().unwrap_or_default();
            let want = cut.buffer().max(carry.len() * 2);
            if buf.len() < want {
                buf.resize(want, 0);
            }
            let mut filled = carry.len();
            buf[..filled].copy_from_slice(&carry);
            carry.clear();
            let mut failed: Option<std::io::Error> = None;
            let end = loop {
                if let Some(end) = cut.end(&buf[..filled]) {
                    break end;
                }
                if eof {
                    break filled;
                }
                if filled == buf.len() {
                    // A line longer than the buffer (or too few lines in it): make room.
                    buf.resize(buf.len() * 2, 0);
                }
                match input.read(&mut buf[filled..]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        filled += n;
                        bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(e);
                        eof = true;
                        // The complete lines read so far are still checked first.
                        break memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |i| i + 1);
                    }
                }
            };
            if failed.is_none() {
                carry.extend_from_slice(&buf[end..filled]);
            }
            if end > 0 {
                if tokens.send(()).is_err() {
                    return;
                }
                let chunk = Chunk { idx, buf, len: end };
                idx += 1;
                if jobs.send(chunk).is_err() {
                    return;
                }
            }
            if let Some(e) = failed {
                if tokens.send(()).is_ok() {
                    let _ = results.send((idx, Err(Fail::Read(e))));
                }
                return;
            }
            if eof && carry.is_empty() {
                return;
            }
        }
    }
}

/// A worker thread: validates and prices chunks until the reader is done.
struct Worker<'a> {
    id: usize,
    jobs: &'a Mutex<Receiver<Chunk>>,
    /// Consumed batches of this worker, to free and reuse.
    trash: Receiver<Returned>,
    /// Where chunk buffers go back to the reader.
    spare: Sender<Vec<u8>>,
    results: Sender<Outcome>,
    pricer: &'a Pricer,
    want_ids: bool,
    prepare: Option<tollgate_ledger::Preparer>,
    /// Whether the last batch consumed needed its events ([`Batch::events`]).
    needed: &'a AtomicBool,
    stop: &'a AtomicBool,
}

impl Worker<'_> {
    fn run(self) {
        let Worker {
            id,
            jobs,
            trash,
            spare,
            results,
            pricer,
            want_ids,
            prepare,
            needed,
            stop,
        } = self;
        let results = &results;
        // Event vectors to fill, kept rather than freed: freeing a large block makes the
        // allocator consolidate all the small ones just freed.
        let mut pool: Vec<Spent> = Vec::new();
        // The vector of borrowed events, reused from chunk to chunk.
        let mut borrowed: Vec<EventRef<'static>> = Vec::new();
        loop {
            let chunk = {
                let Ok(rx) = jobs.lock() else { return };
                match rx.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                }
            };
            if stop.load(Ordering::Relaxed) {
                continue;
            }
            let mut unfinished = Unfinished {
                idx: chunk.idx,
                results,
                done: false,
            };
            // Consumed batches come back here: their events are freed by the thread that
            // allocated them.
            pool.extend(reuse(&trash));
            let (mut events, ids) = pool.pop().unwrap_or_default();
            let text = &chunk.buf[..chunk.len];
            let mut batch;
            // The ledger refused the last batch's preparation (an event stored already, as
            // when a file is imported twice): its events were needed. The next batches keep
            // theirs too, so that they are not parsed again on the writer's thread.
            let keep_owned = prepare.is_some() && needed.load(Ordering::Relaxed);
            let outcome = if prepare.is_some() || want_ids {
                // Events borrowing from the chunk, dropped once prepared or counted.
                batch = Batch::new((events, ids), id, want_ids);
                let mut refs = recycle(std::mem::take(&mut borrowed));
                refs.reserve(chunk.len / 512 + 16);
                let parsed = parse_chunk(text, |mut ev: EventRef<'_>| {
                    batch.price(pricer, &mut ev);
                    refs.push(ev);
                });
                if parsed.is_ok()
                    && let Some(prepare) = prepare
                {
                    batch.prepared = prepare(&refs);
                }
                if keep_owned {
                    batch.events.clear();
                    batch
                        .events
                        .extend(refs.drain(..).map(|e| e.map_texts(String::from)));
                    batch.filled = batch.events.len();
                }
                borrowed = recycle(refs);
                parsed
            } else {
                events.reserve((chunk.len / 512 + 16).saturating_sub(events.len()));
                batch = Batch::new((events, ids), id, want_ids);
                parse_chunk(text, |ev: UsageEvent| batch.add(pricer, ev))
            };
            let outcome = match outcome {
                Ok(lines) => {
                    batch.lines = lines;
                    batch.seal();
                    if prepare.is_some() && !keep_owned {
                        // Kept for [`Batch::events`]; back to the reader when consumed.
                        batch.text = Some((chunk.buf, chunk.len));
                    } else {
                        let _ = spare.send(chunk.buf);
                    }
                    Ok(batch)
                }
                Err(f) => {
                    let _ = spare.send(chunk.buf);
                    Err(f)
                }
            };
            unfinished.done = true;
            if results.send((chunk.idx, outcome)).is_err() {
                return;
            }
        }
    }
}

/// The line as a record: surrounding whitespace (a `\r` too) removed. Most lines start with
/// `{` and end with `}`, and need no search.
fn trim_line(line: &str) -> &str {
    let b = line.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) if (0x21..0x80).contains(&f) && (0x21..0x80).contains(&l) => line,
        _ => line.trim(),
    }
}

/// Validates the lines of one chunk and hands each event to `each`; stops at the first bad
/// one. Returns the number of physical lines.
fn parse_chunk<'t, S>(
    bytes: &'t [u8],
    mut each: impl FnMut(tollgate_core::UsageEvent<S>),
) -> std::result::Result<u64, Fail>
where
    S: From<Cow<'t, str>>,
{
    // The chunk is checked as UTF-8 once; only when that fails is each line checked, so the
    // error names the first line that is not (the lines before it are parsed first).
    let text = std::str::from_utf8(bytes).ok();
    let mut n: u64 = 0;
    let mut start = 0usize;
    let ends = memchr::memchr_iter(b'\n', bytes).chain((!bytes.is_empty()).then_some(bytes.len()));
    for end in ends {
        if start >= bytes.len() {
            break;
        }
        n += 1;
        let line = match text {
            Some(t) => t.get(start..end).unwrap_or_default(),
            None => std::str::from_utf8(bytes.get(start..end).unwrap_or_default())
                .map_err(|_| Fail::NotUtf8(n))?,
        };
        start = end + 1;
        let t = trim_line(line);
        if !t.is_empty() {
            each(parse_json_event_as(t).map_err(|e| Fail::Record(n, e))?);
        }
    }
    Ok(n)
}

/// An empty vector of events borrowing from one chunk, reusing the allocation of one that
/// borrowed from another (the elements are all dropped first; collecting a vector's own
/// iterator into a vector of a type of the same size reuses its allocation).
fn recycle<'b>(mut v: Vec<EventRef<'_>>) -> Vec<EventRef<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!("cleared")).collect()
}

/// The CSV path: one thread reads, validates and prices records in order (a quoted field
/// may hold a newline, so the file is not cut into chunks).
fn produce_csv(
    source: &str,
    input: Box<dyn BufRead + Send + '_>,
    pricer: &Pricer,
    bytes_read: &AtomicU64,
    want_ids: bool,
    (tokens, results, trash): (&SyncSender<()>, &Sender<Outcome>, &Receiver<Returned>),
) {
    let mut idx: u64 = 0;
    let mut send = |outcome: std::result::Result<Batch, Fail>| -> bool {
        let sent = tokens.send(()).is_ok() && results.send((idx, outcome)).is_ok();
        idx += 1;
        sent
    };
    let mut pool: Vec<Spent> = Vec::new();
    let mut fresh = || {
        pool.extend(reuse(trash));
        let (mut events, ids) = pool.pop().unwrap_or_default();
        events.reserve(CSV_BATCH.saturating_sub(events.len()));
        Batch::new((events, ids), 0, want_ids)
    };
    let read = (|| -> Result<bool> {
        let mut batch = fresh();
        let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(input);
        let headers = rdr
            .headers()
            .with_context(|| format!("{source}:1: cannot read the CSV header"))?
            .clone();
        for h in headers.iter() {
            if !tollgate_core::event::FIELDS.contains(&h) {
                bail!(
                    "{source}:1: {h}: unknown column; the canonical field names are in docs/event-format.md"
                );
            }
        }
        let mut rec = csv::StringRecord::new();
        loop {
            let more = rdr.read_record(&mut rec).map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                anyhow::anyhow!("{source}:{line}: (record): {e}")
            })?;
            if !more {
                break;
            }
            let line = rec.position().map_or(0, |p| p.line());
            bytes_read.store(rec.position().map_or(0, |p| p.byte()), Ordering::Relaxed);
            let ev = crate::cmd_ingest::csv_event(&headers, &rec)
                .map_err(|e| anyhow::anyhow!("{source}:{line}: {e}"))?;
            batch.add(pricer, ev);
            if batch.filled >= CSV_BATCH {
                let mut full = std::mem::replace(&mut batch, fresh());
                full.seal();
                if !send(Ok(full)) {
                    return Ok(false);
                }
            }
        }
        if batch.filled > 0 {
            batch.seal();
            return Ok(send(Ok(batch)));
        }
        Ok(true)
    })();
    if let Err(e) = read {
        send(Err(Fail::Located(e)));
    }
}
