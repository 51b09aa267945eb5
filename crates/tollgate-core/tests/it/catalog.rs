use tollgate_core::{Pricer, Usage};

use crate::{d, ts};

#[test]
fn the_shipped_catalog_loads_and_prices_known_models() {
    let p = Pricer::new(vec![Pricer::catalog().unwrap()]);
    let at = ts("2026-07-01T00:00:00Z");
    let u = Usage {
        input_tokens: 1_000_000,
        cache_read_tokens: 1_000_000,
        output_tokens: 1_000_000,
        ..Usage::default()
    };
    // gpt-4o (genai-prices): input 2.5, cached input 1.25, output 10 per million -> 13.75
    let q = p.quote("openai", "gpt-4o", at, &u, false).unwrap();
    assert_eq!(q.cost, d("13.75"));
    // A dated snapshot name resolves to a model of the catalog.
    assert!(
        p.quote("openai", "gpt-4o-2024-08-06", at, &u, false)
            .is_ok()
    );
    // claude-sonnet-4-5: input 3, cache read 0.3, output 15 -> 18.3 (below the 200k tier).
    let small = Usage {
        input_tokens: 100_000,
        cache_read_tokens: 50_000,
        output_tokens: 10_000,
        ..Usage::default()
    };
    // 100,000 x 3e-6 = 0.3; 50,000 x 0.3e-6 = 0.015; 10,000 x 15e-6 = 0.15 -> 0.465
    let q = p
        .quote("anthropic", "claude-sonnet-4-5", at, &small, false)
        .unwrap();
    assert_eq!(q.cost, d("0.465"));
}

#[test]
fn every_catalog_rate_has_a_version_and_no_overlaps() {
    // Parsing validates overlaps, scales and names; here: sizes and versions.
    let book = Pricer::catalog().unwrap();
    assert!(book.rates().len() > 1000, "{}", book.rates().len());
    assert!(book.rates().iter().all(|r| r.version.contains('@')));
    for provider in ["openai", "anthropic", "aws.bedrock", "gcp.gemini"] {
        assert!(
            book.rates().iter().any(|r| r.provider == provider),
            "{provider}"
        );
    }
}
