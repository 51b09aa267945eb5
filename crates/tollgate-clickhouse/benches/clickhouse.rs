//! Throughput of the ClickHouse ledger through the chDB adapter: batched inserts (events/s)
//! and a month's summary report over all of them.
//!
//! ```sh
//! TG_BENCH_EVENTS=10000000 cargo bench -p tollgate-clickhouse --bench clickhouse
//! ```
//!
//! Starts `tests/clickhouse/adapter.py` (scripts/pyenv's Python) on port 0 in a temporary
//! directory. Events are spread evenly over July 2026 with 20 teams, 10 services, 30
//! features, 8 models, 50 tenants; each batch is one writer (`append` + `commit`) of
//! `TG_BENCH_BATCH` events (default 100,000); `TG_BENCH_WRITERS` (default 1) writers run at
//! once, each on its own connection, taking batches in turn. Prints figures; asserts nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use jiff::Timestamp;
use tollgate_clickhouse::testing::{Adapter, cpu_seconds, python};
use tollgate_clickhouse::{ClickHouseConfig, ClickHouseLedger};
use tollgate_ledger::conformance::event;
use tollgate_ledger::{Dim, Ledger, SummaryQuery};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Events `j0 .. j0 + k` of the benchmark's traffic.
struct Traffic {
    month0: Timestamp,
    step: i64,
    teams: Vec<String>,
    services: Vec<String>,
    features: Vec<String>,
    tenants: Vec<String>,
}

const MODELS: [&str; 8] = [
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "mistral-large",
];

impl Traffic {
    fn batch(&self, j0: u64, k: u64) -> Vec<tollgate_core::UsageEvent> {
        (j0..j0 + k)
            .map(|j| {
                let u = |m: u64| usize::try_from(j % m).unwrap();
                let mut e = event(
                    u32::try_from(j % u64::from(u32::MAX)).unwrap(),
                    "2026-07-01T00:00:00Z",
                    Some(&self.teams[u(20)]),
                    1000 + j % 5000,
                    Some("0.00453"),
                );
                e.event_id = format!("0190a000-0000-7000-8000-{j:012x}");
                e.occurred_at = self
                    .month0
                    .checked_add(jiff::SignedDuration::from_micros(
                        i64::try_from(j).unwrap() * self.step,
                    ))
                    .unwrap();
                e.completed_at = Some(e.occurred_at);
                e.attribution.service = Some(self.services[u(10)].clone());
                e.attribution.feature = Some(self.features[u(30)].clone());
                e.attribution.tenant_id = Some(self.tenants[u(50)].clone());
                e.model = MODELS[u(8)].to_string();
                e
            })
            .collect()
    }
}

/// Per writer: (write spans, append time, generation time).
type WriterTimes = (Vec<(Instant, Instant)>, Duration, Duration);

/// Total length of the union of intervals.
fn covered(mut spans: Vec<(Instant, Instant)>) -> Duration {
    spans.sort();
    let mut total = Duration::ZERO;
    let mut cur: Option<(Instant, Instant)> = None;
    for (a, b) in spans {
        cur = match cur {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = cur {
        total += b - a;
    }
    total
}

fn main() {
    let n = env("TG_BENCH_EVENTS", 1_000_000);
    let batch = env("TG_BENCH_BATCH", 100_000);
    // Concurrent writers (several gateways or importers): writer w takes batches w, w + W, ...
    let writers = env("TG_BENCH_WRITERS", 1).max(1);
    let dir = tempfile::tempdir().unwrap();
    let adapter = Adapter::start(&python().unwrap(), dir.path(), None).unwrap();
    let mut cfg = ClickHouseConfig::new(&adapter.url, "bench");
    cfg.batch_rows = usize::try_from(batch).unwrap();
    let l = ClickHouseLedger::open(cfg.clone()).unwrap();
    let month0: Timestamp = "2026-07-01T00:00:00Z".parse().unwrap();
    let month_us: i64 = 31 * 86_400 * 1_000_000;
    let traffic = Traffic {
        month0,
        step: month_us / i64::try_from(n).unwrap(),
        teams: (0..20).map(|i| format!("team-{i}")).collect(),
        services: (0..10).map(|i| format!("svc-{i}")).collect(),
        features: (0..30).map(|i| format!("feature-{i}")).collect(),
        tenants: (0..50).map(|i| format!("tenant-{i}")).collect(),
    };
    let batches = n.div_ceil(batch);
    let next = std::sync::atomic::AtomicU64::new(0);
    let done = std::sync::atomic::AtomicU64::new(0);
    let cpu_start = (cpu_seconds(adapter.pid()), cpu_seconds(std::process::id()));
    let results: Vec<WriterTimes> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                let (traffic, next, done, cfg) = (&traffic, &next, &done, cfg.clone());
                s.spawn(move || {
                    let mut l = ClickHouseLedger::open(cfg).unwrap();
                    let mut spans = Vec::new();
                    let (mut append_time, mut gen_time) = (Duration::ZERO, Duration::ZERO);
                    loop {
                        let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if b >= batches {
                            break;
                        }
                        let t0 = Instant::now();
                        let k = batch.min(n - b * batch);
                        let evs = traffic.batch(b * batch, k);
                        gen_time += t0.elapsed();
                        let t1 = Instant::now();
                        let mut w = l.writer().unwrap();
                        let out = w.append(&evs).unwrap();
                        let t2 = Instant::now();
                        w.commit().unwrap();
                        spans.push((t1, Instant::now()));
                        append_time += t2 - t1;
                        assert_eq!(out.inserted, k);
                        let d = done.fetch_add(k, std::sync::atomic::Ordering::Relaxed) + k;
                        if d.is_multiple_of(batch * 10) || d == n {
                            eprintln!("  {d} events");
                        }
                    }
                    (spans, append_time, gen_time)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let cpu_end = (cpu_seconds(adapter.pid()), cpu_seconds(std::process::id()));
    let (mut server_cpu, mut client_cpu) = (0.0f64, 0.0f64);
    if let (Some(a0), Some(a1), Some(b0), Some(b1)) =
        (cpu_start.0, cpu_end.0, cpu_start.1, cpu_end.1)
    {
        server_cpu = a1 - a0;
        client_cpu = b1 - b0;
    }
    let mut all_spans = Vec::new();
    let (mut append_time, mut gen_time, mut busy) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for (spans, a, g) in results {
        busy += spans.iter().map(|(a, b)| *b - *a).sum::<Duration>();
        all_spans.extend(spans);
        append_time += a;
        gen_time += g;
    }
    let write_time = covered(all_spans);
    println!(
        "insert: {n} events in batches of {batch}, {writers} writer(s): {:.1} s wall clock with a write in progress ({:.0} events/s); generating them took {:.1} s (not counted unless it overlapped a write)",
        write_time.as_secs_f64(),
        n as f64 / write_time.as_secs_f64(),
        gen_time.as_secs_f64()
    );
    println!(
        "  summed over writers: append (duplicate check by id + encoding) {:.1} s, commit (the INSERTs) {:.1} s",
        append_time.as_secs_f64(),
        (busy - append_time).as_secs_f64()
    );
    println!(
        "  CPU time over the insert phase: adapter (chDB + HTTP server) {server_cpu:.1} s = {:.0} events per CPU-second; client (generating, encoding, HTTP) {client_cpu:.1} s = {:.0} events per CPU-second",
        n as f64 / server_cpu.max(0.01),
        n as f64 / client_cpu.max(0.01)
    );
    // A replayed spool: batches already stored, appended again (the writer looks their ids
    // up and sends nothing): the first batch, and one from the middle.
    let mut l = l;
    for b in [0, batches / 2] {
        let k = batch.min(n - b * batch);
        let evs = traffic.batch(b * batch, k);
        let t = Instant::now();
        let mut w = l.writer().unwrap();
        let out = w.append(&evs).unwrap();
        w.commit().unwrap();
        assert_eq!((out.inserted, out.duplicates), (0, k));
        println!(
            "replay of stored batch {b} ({k} events, all duplicates): {:.3} s",
            t.elapsed().as_secs_f64()
        );
    }
    let month_end: Timestamp = "2026-08-01T00:00:00Z".parse().unwrap();
    let queries = [
        (
            "month summary by team, service, model, provider",
            SummaryQuery::new(
                month0,
                month_end,
                vec![Dim::Team, Dim::Service, Dim::Model, Dim::Provider],
            ),
        ),
        (
            "month summary by tenant, feature",
            SummaryQuery::new(month0, month_end, vec![Dim::Tenant, Dim::Feature]),
        ),
        (
            "half-hour edges (2026-07-01T00:30 .. 2026-07-31T23:30) by team",
            SummaryQuery::new(
                "2026-07-01T00:30:00Z".parse().unwrap(),
                "2026-07-31T23:30:00Z".parse().unwrap(),
                vec![Dim::Team],
            ),
        ),
    ];
    for (name, q) in queries {
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let rows = l.summarize(&q).unwrap();
            times.push(t.elapsed());
            total = rows.iter().map(|r| r.totals.requests).sum::<u64>();
        }
        times.sort();
        println!(
            "summary: {name}: {total} requests, median {:.3} s (min {:.3} s, max {:.3} s, 5 runs)",
            times[2].as_secs_f64(),
            times[0].as_secs_f64(),
            times[4].as_secs_f64()
        );
    }
    let t = Instant::now();
    let c = l.event_count().unwrap();
    println!(
        "event_count (FINAL over all events): {c} in {:.3} s",
        t.elapsed().as_secs_f64()
    );
    let parts = l
        .query_sql(
            "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts
             WHERE database = 'bench' AND active AND table IN ('events', 'rollups', 'key_rollups') GROUP BY table ORDER BY table",
        )
        .unwrap();
    for r in parts.rows {
        let cell = |i: usize| r[i].to_string().parse::<f64>().unwrap_or(0.0);
        println!(
            "storage: {}: {} rows, {:.1} MB on disk ({:.0} bytes/row compressed, {:.0} uncompressed)",
            r[0],
            r[1],
            cell(2) / 1e6,
            cell(2) / cell(1).max(1.0),
            cell(3) / cell(1).max(1.0)
        );
    }
    // What reconciliation reads: usage per provider, model, hour, API key, team and cost
    // center (whole hours from key_rollups, edge hours from events FINAL); last, the month
    // with key_rollups emptied (a ledger from before migration 4: all from events FINAL).
    let edges: (Timestamp, Timestamp) = (
        "2026-07-01T00:30:00Z".parse().unwrap(),
        "2026-07-31T23:30:00Z".parse().unwrap(),
    );
    for (name, a, b) in [
        ("month", month0, month_end),
        ("half-hour edges", edges.0, edges.1),
        ("month, key_rollups emptied", month0, month_end),
    ] {
        if name.contains("emptied") {
            l.client()
                .run(&tollgate_clickhouse::client::Request::new(
                    "TRUNCATE TABLE key_rollups",
                ))
                .unwrap();
        }
        let mut times = Vec::new();
        let (mut rows, mut total) = (0, 0);
        for _ in 0..5 {
            let t = Instant::now();
            let u = l.usage_by_key(a, b, false).unwrap();
            times.push(t.elapsed());
            rows = u.len();
            total = u.iter().map(|r| r.totals.requests).sum::<u64>();
        }
        times.sort();
        println!(
            "usage_by_key ({name}): {rows} rows, {total} requests, median {:.3} s (min {:.3} s, max {:.3} s, 5 runs)",
            times[2].as_secs_f64(),
            times[0].as_secs_f64(),
            times[4].as_secs_f64()
        );
    }
    drop(adapter);
}
