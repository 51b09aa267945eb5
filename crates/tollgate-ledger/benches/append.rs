//! Ledger append throughput: `cargo bench -p tollgate-ledger --bench append`.
//!
//! Appends 500,000 ready-made, priced events (distinct ids, a month of timestamps, a few
//! hundred attribution combinations) to a fresh SQLite ledger in batches of 8,192 inside one
//! transaction, the way `tollgate ingest events` does, and prints events per second.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed check

use std::time::Instant;

use tollgate_ledger::Ledger;
use tollgate_ledger::conformance::event;
use tollgate_ledger::sqlite::SqliteLedger;

fn main() {
    let n: u32 = std::env::var("APPEND_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let base: jiff::Timestamp = "2026-07-01T00:00:00Z".parse().expect("instant");
    let teams = ["search", "support", "analytics", "growth", "platform"];
    let events: Vec<_> = (0..n)
        .map(|i| {
            let at = base
                .checked_add(jiff::SignedDuration::from_millis(i64::from(i) * 5))
                .expect("in range");
            let mut e = event(
                i,
                &at.to_string(),
                Some(teams[(i % 5) as usize]),
                1000 + u64::from(i % 777),
                Some("0.00453"),
            );
            e.attribution.feature = Some(format!("feature-{}", i % 13));
            e.model = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"][(i % 3) as usize].to_string();
            e
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut l = SqliteLedger::open(dir.path()).expect("ledger");
    let start = Instant::now();
    {
        let mut w = l.writer().expect("writer");
        for chunk in events.chunks(8192) {
            w.append(chunk).expect("append");
        }
        w.commit().expect("commit");
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(l.event_count().expect("count"), u64::from(n));
    println!(
        "append: {n} events in {secs:.2} s = {:.0} events/s (one transaction, batches of 8,192)",
        f64::from(n) / secs
    );
}
