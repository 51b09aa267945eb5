use tollgate_core::event::parse_json_event;
use tollgate_core::{Pricer, PricingError, PricingStatus, RateBook, Usage};

use crate::{d, ts};

const RATES: &str = r#"
[[rate]]
provider = "openai"
model = "seed-model"
aliases = ["seed-alias"]
patterns = ["seed-model-2026-*"]
effective_to = "2026-07-16T00:00:00Z"
currency = "USD"
input_per_mtok = "0.75"
cache_read_per_mtok = "0.075"
output_per_mtok = "4.50"
batch_multiplier = "0.5"

[[rate]]
provider = "openai"
model = "seed-model"
aliases = ["seed-alias"]
effective_from = "2026-07-16T00:00:00Z"
currency = "USD"
input_per_mtok = "0.60"
cache_read_per_mtok = "0.06"
output_per_mtok = "3.60"

[[rate]]
provider = "anthropic"
model = "tiered"
input_per_mtok = "3"
cache_read_per_mtok = "0.3"
cache_write_per_mtok = "3.75"
cache_write_1h_per_mtok = "6"
output_per_mtok = "15"
[[rate.tier]]
above_input_tokens = 200000
input_per_mtok = "6"
cache_read_per_mtok = "0.6"
cache_write_per_mtok = "7.5"
cache_write_1h_per_mtok = "12"
output_per_mtok = "22.5"
[rate.per_unit]
web_search_requests = "0.01"
"#;

fn pricer() -> Pricer {
    Pricer::new(vec![RateBook::parse("test rates", RATES).unwrap()])
}

fn usage(input: u64, cr: u64, cw: u64, cw1h: u64, out: u64) -> Usage {
    Usage {
        input_tokens: input,
        cache_read_tokens: cr,
        cache_write_tokens: cw,
        cache_write_1h_tokens: cw1h,
        output_tokens: out,
        ..Usage::default()
    }
}

#[test]
fn seed_003_example_costs_0_00453() {
    // 3,400 prompt tokens of which 1,200 cached, 620 completion: classes 2,200 / 1,200 / 620.
    // 2,200 x 0.75e-6 + 1,200 x 0.075e-6 + 620 x 4.50e-6 = 0.00165 + 0.00009 + 0.00279 = 0.00453
    let q = pricer()
        .quote(
            "openai",
            "seed-model",
            ts("2026-07-01T12:00:00Z"),
            &usage(2200, 1200, 0, 0, 620),
            false,
        )
        .unwrap();
    assert_eq!(q.breakdown.input, d("0.00165"));
    assert_eq!(q.breakdown.cache_read, d("0.00009"));
    assert_eq!(q.breakdown.output, d("0.00279"));
    assert_eq!(q.cost, d("0.00453"));
    assert_eq!(q.currency.as_str(), "USD");
}

#[test]
fn a_price_change_splits_exactly_at_the_instant() {
    let p = pricer();
    let u = usage(1_000_000, 0, 0, 0, 0);
    // One microsecond before the change: 1M x 0.75e-6 = 0.75; at the instant: 1M x 0.60e-6 = 0.60.
    let before = p
        .quote(
            "openai",
            "seed-model",
            ts("2026-07-15T23:59:59.999999Z"),
            &u,
            false,
        )
        .unwrap();
    let at = p
        .quote(
            "openai",
            "seed-model",
            ts("2026-07-16T00:00:00Z"),
            &u,
            false,
        )
        .unwrap();
    assert_eq!(before.cost, d("0.75"));
    assert_eq!(at.cost, d("0.60"));
    assert_ne!(before.price_version, at.price_version);
    assert!(
        at.price_version.ends_with("@2026-07-16T00:00:00.000000Z"),
        "{}",
        at.price_version
    );
    assert!(
        before.price_version.ends_with("@-inf"),
        "{}",
        before.price_version
    );
}

#[test]
fn aliases_and_patterns_resolve_to_the_canonical_model() {
    let p = pricer();
    let u = usage(1_000_000, 0, 0, 0, 0);
    let at = ts("2026-07-01T00:00:00Z");
    for name in ["seed-model", "seed-alias", "seed-model-2026-05-01"] {
        let q = p.quote("openai", name, at, &u, false).unwrap();
        assert_eq!(q.model, "seed-model", "{name}");
        assert_eq!(q.cost, d("0.75"), "{name}");
    }
    // The provider must match: the same name under another provider is unknown.
    assert!(matches!(
        p.quote("anthropic", "seed-model", at, &u, false),
        Err(PricingError::UnknownModel { .. })
    ));
}

#[test]
fn the_long_context_tier_is_a_cliff_on_total_input() {
    let p = pricer();
    let at = ts("2026-07-01T00:00:00Z");
    // Total input exactly 200,000 (150,000 + 50,000): base prices.
    // 150,000 x 3e-6 = 0.45; 50,000 x 0.3e-6 = 0.015; 1,000 x 15e-6 = 0.015; total 0.48
    let q = p
        .quote(
            "anthropic",
            "tiered",
            at,
            &usage(150_000, 50_000, 0, 0, 1000),
            false,
        )
        .unwrap();
    assert_eq!(q.cost, d("0.48"));
    assert_eq!(q.tier, None);
    // One more cache-read token: 200,001 > 200,000, every class pays tier prices.
    // 150,000 x 6e-6 = 0.9; 50,001 x 0.6e-6 = 0.0300006; 1,000 x 22.5e-6 = 0.0225
    // total 0.9525006
    let q = p
        .quote(
            "anthropic",
            "tiered",
            at,
            &usage(150_000, 50_001, 0, 0, 1000),
            false,
        )
        .unwrap();
    assert_eq!(q.breakdown.cache_read, d("0.0300006"));
    assert_eq!(q.cost, d("0.9525006"));
    assert_eq!(q.tier, Some(200_000));
    // Cache writes count toward total input: 100,000 + 60,000 + 40,001 (1h) = 200,001.
    // 100,000 x 6e-6 = 0.6; 60,000 x 7.5e-6 = 0.45; 40,001 x 12e-6 = 0.480012; total 1.530012
    let q = p
        .quote(
            "anthropic",
            "tiered",
            at,
            &usage(100_000, 0, 60_000, 40_001, 0),
            false,
        )
        .unwrap();
    assert_eq!(q.cost, d("1.530012"));
}

#[test]
fn batch_prices_and_per_unit_prices() {
    let p = pricer();
    let at = ts("2026-07-01T00:00:00Z");
    // Batch at x0.5: 1M input x 0.375e-6 + 1M output x 2.25e-6 = 0.375 + 2.25 = 2.625
    let q = p
        .quote(
            "openai",
            "seed-model",
            at,
            &usage(1_000_000, 0, 0, 0, 1_000_000),
            true,
        )
        .unwrap();
    assert_eq!(q.cost, d("2.625"));
    // The later period has no batch multiplier: batch usage there is an error, not full price.
    let e = p
        .quote(
            "openai",
            "seed-model",
            ts("2026-08-01T00:00:00Z"),
            &usage(1, 0, 0, 0, 0),
            true,
        )
        .unwrap_err();
    assert!(matches!(e, PricingError::NoBatchPrice { .. }), "{e}");
    // 3 web searches x 0.01 = 0.03 on top of 1,000 input x 3e-6 = 0.003 -> 0.033
    let mut u = usage(1000, 0, 0, 0, 0);
    u.units.insert("web_search_requests".into(), d("3"));
    let q = p.quote("anthropic", "tiered", at, &u, false).unwrap();
    assert_eq!(q.breakdown.units["web_search_requests"], d("0.03"));
    assert_eq!(q.cost, d("0.033"));
}

#[test]
fn a_class_without_a_price_is_an_error_not_zero() {
    let p = pricer();
    let at = ts("2026-07-01T00:00:00Z");
    // seed-model has no cache write price: usage with cache writes cannot be priced.
    let e = p
        .quote("openai", "seed-model", at, &usage(10, 0, 5, 0, 0), false)
        .unwrap_err();
    match e {
        PricingError::MissingClassPrice {
            class, quantity, ..
        } => {
            assert_eq!(class, "cache_write_tokens");
            assert_eq!(quantity, "5");
        }
        other => panic!("expected MissingClassPrice, got {other}"),
    }
    // Zero tokens in a class without a price is fine: nothing to price.
    assert!(
        p.quote("openai", "seed-model", at, &usage(10, 0, 0, 0, 0), false)
            .is_ok()
    );
    // An unknown unit is an error too.
    let mut u = usage(1, 0, 0, 0, 0);
    u.units.insert("images".into(), d("2"));
    assert!(p.quote("openai", "seed-model", at, &u, false).is_err());
}

#[test]
fn unknown_models_are_unpriced_with_suggestions_never_zero() {
    let p = pricer();
    let mut ev = parse_json_event(
        r#"{"event_id":"01890a5d-ac96-774b-bcce-b302099a8057","occurred_at":"2026-07-01T12:00:00Z","provider":"openai","model":"seed-modle","input_tokens":10}"#,
    )
    .unwrap();
    let err = p.price_event(&mut ev).unwrap_err();
    assert_eq!(ev.pricing.pricing_status, PricingStatus::Unpriced);
    assert_eq!(ev.pricing.cost, None);
    assert!(err.to_string().contains("seed-modle"), "{err}");
    // Suggestions are computed on demand (find), not per event.
    let msg = p
        .find("openai", "seed-modle", ts("2026-07-01T12:00:00Z"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("did you mean seed-model"), "{msg}");
}

#[test]
fn reasoning_tokens_are_never_priced_on_top() {
    let p = pricer();
    let at = ts("2026-07-01T00:00:00Z");
    let mut u = usage(0, 0, 0, 0, 1000);
    let plain = p.quote("openai", "seed-model", at, &u, false).unwrap().cost;
    u.reasoning_tokens = 800;
    // 1,000 output x 4.5e-6 = 0.0045 either way.
    assert_eq!(plain, d("0.0045"));
    assert_eq!(
        p.quote("openai", "seed-model", at, &u, false).unwrap().cost,
        d("0.0045")
    );
}

#[test]
fn events_that_carry_a_cost_keep_it() {
    let p = pricer();
    let mut ev = parse_json_event(
        r#"{"event_id":"01890a5d-ac96-774b-bcce-b302099a8057","occurred_at":"2026-07-01T12:00:00Z","provider":"openai","model":"seed-model","input_tokens":1000000,"cost":"9.99"}"#,
    )
    .unwrap();
    p.price_event(&mut ev).unwrap();
    // Not re-priced at 0.75: the carried cost stands.
    assert_eq!(ev.pricing.cost, Some(d("9.99")));
}

#[test]
fn overrides_win_over_the_catalog_and_fall_back_outside_their_interval() {
    let negotiated = RateBook::parse(
        "negotiated.toml",
        r#"
[[rate]]
provider = "openai"
model = "seed-model"
effective_from = "2026-07-10T00:00:00Z"
effective_to = "2026-07-20T00:00:00Z"
input_per_mtok = "0.5"
"#,
    )
    .unwrap();
    let p = Pricer::new(vec![negotiated, RateBook::parse("catalog", RATES).unwrap()]);
    let u = usage(1_000_000, 0, 0, 0, 0);
    // Inside the override: 0.5. Before it: the catalog's 0.75. After: catalog's 0.60.
    let cost = |at: &str| {
        p.quote("openai", "seed-model", ts(at), &u, false)
            .unwrap()
            .cost
    };
    assert_eq!(cost("2026-07-12T00:00:00Z"), d("0.5"));
    assert_eq!(cost("2026-07-05T00:00:00Z"), d("0.75"));
    assert_eq!(cost("2026-07-25T00:00:00Z"), d("0.60"));
    // Aliases known only to the catalog still resolve (to the catalog's rates).
    assert_eq!(
        p.quote(
            "openai",
            "seed-alias",
            ts("2026-07-05T00:00:00Z"),
            &u,
            false
        )
        .unwrap()
        .cost,
        d("0.75")
    );
}
