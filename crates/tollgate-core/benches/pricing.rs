//! Pricing throughput on one core: `cargo bench -p tollgate-core --bench pricing`.
//!
//! Prices 5,000,000 events (a mix of models of the shipped catalog, with cache classes and a
//! tier-crossing share) through `Pricer::price_event`, the function ingest and the gateway
//! call, and prints events per second. Best of 3 runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed check

use std::hint::black_box;
use std::time::Instant;

use tollgate_core::event::parse_json_event;
use tollgate_core::{Pricer, UsageEvent};

fn main() {
    let n: usize = std::env::var("PRICING_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let pricer = Pricer::new(vec![Pricer::catalog().expect("catalog loads")]);
    let models = [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4o-2024-08-06"),
        ("openai", "gpt-5"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5"),
        ("gcp.gemini", "gemini-2.5-flash"),
        (
            "aws.bedrock",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
    ];
    // A pool of distinct events, priced round-robin (cost cleared before each pricing).
    let pool: Vec<UsageEvent> = (0..4096u64)
        .map(|i| {
            let (p, m) = models[(i as usize) % models.len()];
            let big = if i % 97 == 0 { 250_000 } else { 0 };
            parse_json_event(&format!(
                r#"{{"event_id":"0190a000-0000-7000-8000-{i:012x}","occurred_at":"2026-07-01T12:00:00Z","provider":"{p}","model":"{m}","input_tokens":{},"cache_read_tokens":{},"cache_write_tokens":{},"output_tokens":{}}}"#,
                1000 + (i * 37) % 5000 + big,
                (i * 53) % 3000,
                if p == "anthropic" { (i * 11) % 900 } else { 0 },
                50 + (i * 29) % 1500
            ))
            .expect("valid bench event")
        })
        .collect();
    let mut best = f64::MAX;
    for run in 0..3 {
        let mut evs = pool.clone();
        let start = Instant::now();
        let mut priced = 0usize;
        for k in 0..n {
            let e = &mut evs[k & 4095];
            e.pricing.cost = None;
            if pricer.price_event(e).is_ok() {
                priced += 1;
            }
            black_box(&e.pricing.cost);
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(priced, n, "every bench event is priceable");
        println!(
            "run {run}: {n} events in {secs:.3} s = {:.0} events/s",
            n as f64 / secs
        );
        best = best.min(secs);
    }
    println!(
        "pricing: best of 3: {:.0} events/s on one core ({n} events)",
        n as f64 / best
    );
}
