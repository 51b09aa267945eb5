//! `tollgate price` against the local override file (`support::SEED_RATES`).

use serde_json::Value;

use crate::support::{Sandbox, path_str};

/// An instant inside the first rate period (which ends 2026-07-16).
const JULY_1: &str = "2026-07-01T00:00:00Z";

/// Runs `price --prices rates.toml --provider openai --format json ARGS...` and parses it.
fn quote(sb: &Sandbox, args: &[&str]) -> Value {
    let rates = sb.seed_rates();
    let mut all = vec![
        "--prices",
        path_str(&rates),
        "price",
        "--provider",
        "openai",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    sb.run(&all).json()
}

/// The seed 003 usage: 2,200 input, 1,200 cache read, 620 output.
const SEED_USAGE: [&str; 6] = [
    "--input-tokens",
    "2200",
    "--cache-read-tokens",
    "1200",
    "--output-tokens",
    "620",
];

fn seed_quote(sb: &Sandbox, model: &str, at: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--model", model, "--at", at];
    args.extend_from_slice(&SEED_USAGE);
    args.extend_from_slice(extra);
    quote(sb, &args)
}

#[test]
fn seed_003_example_costs_0_00453() {
    let sb = Sandbox::new();
    let q = seed_quote(&sb, "seed-model", JULY_1, &[]);
    // input:      2,200 x 0.75  / 1e6 = 0.00165
    // cache read: 1,200 x 0.075 / 1e6 = 0.00009
    // output:       620 x 4.50  / 1e6 = 0.00279
    // total: 0.00165 + 0.00009 + 0.00279 = 0.00453
    assert_eq!(q["cost"], "0.00453", "{q}");
    assert_eq!(q["breakdown"]["input"], "0.00165");
    assert_eq!(q["breakdown"]["cache_read"], "0.00009");
    assert_eq!(q["breakdown"]["output"], "0.00279");
    // No cache writes: the classes are zero, not missing.
    assert_eq!(q["breakdown"]["cache_write"], "0");
    assert_eq!(q["breakdown"]["cache_write_1h"], "0");
    assert_eq!(q["currency"], "USD");
    assert_eq!(q["provider"], "openai");
    assert_eq!(q["model"], "seed-model");
    assert_eq!(q["pricing_status"], "priced");
    let version = q["price_version"]
        .as_str()
        .expect("price_version is a string");
    // The first period has no effective_from: hash@-inf.
    assert!(version.contains('@'), "{version}");
    assert!(version.ends_with("@-inf"), "{version}");
}

#[test]
fn tier_is_a_cliff_strictly_above_the_threshold() {
    let sb = Sandbox::new();
    // Total input exactly 200,000 (190,000 input + 10,000 cache read): not above the
    // threshold, base prices.
    //   190,000 x 0.75  / 1e6 = 0.1425
    //    10,000 x 0.075 / 1e6 = 0.00075
    //     1,000 x 4.50  / 1e6 = 0.0045
    //   total = 0.1425 + 0.00075 + 0.0045 = 0.14775
    let base = quote(
        &sb,
        &[
            "--model",
            "seed-model",
            "--at",
            JULY_1,
            "--input-tokens",
            "190000",
            "--cache-read-tokens",
            "10000",
            "--output-tokens",
            "1000",
        ],
    );
    assert_eq!(base["breakdown"]["input"], "0.1425", "{base}");
    assert_eq!(base["breakdown"]["cache_read"], "0.00075");
    assert_eq!(base["breakdown"]["output"], "0.0045");
    assert_eq!(base["cost"], "0.14775");

    // One more input token: 200,001 > 200,000, so every class pays the tier prices.
    //   190,001 x 1.5  / 1e6 = 0.2850015
    //    10,000 x 0.15 / 1e6 = 0.0015
    //     1,000 x 9    / 1e6 = 0.009
    //   total = 0.2850015 + 0.0015 + 0.009 = 0.2955015
    let tier = quote(
        &sb,
        &[
            "--model",
            "seed-model",
            "--at",
            JULY_1,
            "--input-tokens",
            "190001",
            "--cache-read-tokens",
            "10000",
            "--output-tokens",
            "1000",
        ],
    );
    assert_eq!(tier["breakdown"]["input"], "0.2850015", "{tier}");
    assert_eq!(tier["breakdown"]["cache_read"], "0.0015");
    assert_eq!(tier["breakdown"]["output"], "0.009");
    assert_eq!(tier["cost"], "0.2955015");
    // Same rate period: the tier does not change the price version.
    assert_eq!(tier["price_version"], base["price_version"]);
}

#[test]
fn batch_halves_every_class() {
    let sb = Sandbox::new();
    let q = seed_quote(&sb, "seed-model", JULY_1, &["--batch"]);
    // batch_multiplier 0.5:
    //   2,200 x 0.375  / 1e6 = 0.000825
    //   1,200 x 0.0375 / 1e6 = 0.000045
    //     620 x 2.25   / 1e6 = 0.001395
    //   total = 0.000825 + 0.000045 + 0.001395 = 0.002265 (= 0.00453 / 2)
    assert_eq!(q["breakdown"]["input"], "0.000825", "{q}");
    assert_eq!(q["breakdown"]["cache_read"], "0.000045");
    assert_eq!(q["breakdown"]["output"], "0.001395");
    assert_eq!(q["cost"], "0.002265");
}

#[test]
fn per_unit_prices_add_to_the_tokens() {
    let sb = Sandbox::new();
    let q = seed_quote(
        &sb,
        "seed-model",
        JULY_1,
        &["--unit", "web_search_requests=3"],
    );
    // 3 x 0.01 = 0.03 on top of the seed 0.00453: 0.03453
    assert_eq!(q["breakdown"]["web_search_requests"], "0.03", "{q}");
    assert_eq!(q["breakdown"]["input"], "0.00165");
    assert_eq!(q["cost"], "0.03453");
}

#[test]
fn alias_and_pattern_resolve_to_the_canonical_model() {
    let sb = Sandbox::new();
    let canonical = seed_quote(&sb, "seed-model", JULY_1, &[]);
    for name in ["seed-alias", "seed-model-2026-05-13"] {
        let q = seed_quote(&sb, name, JULY_1, &[]);
        assert_eq!(q["model"], "seed-model", "{name}: {q}");
        // Same rate as the canonical name: 0.00453 (worked in seed_003_example_costs_0_00453).
        assert_eq!(q["cost"], "0.00453", "{name}");
        assert_eq!(q["price_version"], canonical["price_version"], "{name}");
    }
}

#[test]
fn effective_to_is_exclusive_and_the_next_period_takes_over() {
    let sb = Sandbox::new();
    let before = seed_quote(&sb, "seed-model", "2026-07-15T23:59:59.999999Z", &[]);
    // First period (0.75 / 0.075 / 4.50): 0.00453 as in the seed example.
    assert_eq!(before["cost"], "0.00453", "{before}");
    let v1 = before["price_version"].as_str().unwrap();
    assert!(v1.ends_with("@-inf"), "{v1}");

    let after = seed_quote(&sb, "seed-model", "2026-07-16T00:00:00Z", &[]);
    // Second period from 2026-07-16 (1 / 0.1 / 5):
    //   2,200 x 1   / 1e6 = 0.0022
    //   1,200 x 0.1 / 1e6 = 0.00012
    //     620 x 5   / 1e6 = 0.0031
    //   total = 0.0022 + 0.00012 + 0.0031 = 0.00542
    assert_eq!(after["breakdown"]["input"], "0.0022", "{after}");
    assert_eq!(after["breakdown"]["cache_read"], "0.00012");
    assert_eq!(after["breakdown"]["output"], "0.0031");
    assert_eq!(after["cost"], "0.00542");
    let v2 = after["price_version"].as_str().unwrap();
    assert!(v2.ends_with("@2026-07-16T00:00:00.000000Z"), "{v2}");
    assert_ne!(v1, v2);

    // The same instant written with an offset: 02:00+02:00 is 00:00Z, the second period.
    let offset = seed_quote(&sb, "seed-model", "2026-07-16T02:00:00+02:00", &[]);
    assert_eq!(offset["cost"], "0.00542", "{offset}");
    assert_eq!(offset["price_version"], v2);
}

#[test]
fn unknown_model_fails_naming_it_and_suggesting_a_close_match() {
    let sb = Sandbox::new();
    let rates = sb.seed_rates();
    let r = sb.run(&[
        "--prices",
        path_str(&rates),
        "price",
        "--provider",
        "openai",
        "--model",
        "seed-modle",
        "--input-tokens",
        "10",
        "--at",
        JULY_1,
        "--format",
        "json",
    ]);
    let err = r.fails();
    assert!(err.contains("seed-modle"), "{err}");
    assert!(
        err.contains("did you mean") && err.contains("seed-model"),
        "{err}"
    );
    // Never a $0 quote on stdout.
    assert!(!r.stdout.contains("\"cost\""), "{}", r.stdout);
}

#[test]
fn reasoning_tokens_above_output_tokens_is_an_error() {
    let sb = Sandbox::new();
    let rates = sb.seed_rates();
    let r = sb.run(&[
        "--prices",
        path_str(&rates),
        "price",
        "--provider",
        "openai",
        "--model",
        "seed-model",
        "--output-tokens",
        "10",
        "--reasoning-tokens",
        "11",
        "--at",
        JULY_1,
    ]);
    let err = r.fails();
    assert!(err.contains("--reasoning-tokens 11"), "{err}");
    assert!(err.contains("--output-tokens 10"), "{err}");
}

#[test]
fn reasoning_tokens_are_not_priced_on_top_of_output() {
    let sb = Sandbox::new();
    let q = quote(
        &sb,
        &[
            "--model",
            "seed-model",
            "--at",
            JULY_1,
            "--output-tokens",
            "620",
            "--reasoning-tokens",
            "600",
        ],
    );
    // Only the 620 output tokens are priced: 620 x 4.50 / 1e6 = 0.00279.
    assert_eq!(q["cost"], "0.00279", "{q}");
}

#[test]
fn a_class_without_a_price_is_an_error_not_zero() {
    // The override has no cache_write price: 10 cache-write tokens cannot be priced.
    let sb = Sandbox::new();
    let rates = sb.seed_rates();
    let r = sb.run(&[
        "--prices",
        path_str(&rates),
        "price",
        "--provider",
        "openai",
        "--model",
        "seed-model",
        "--input-tokens",
        "100",
        "--cache-write-tokens",
        "10",
        "--at",
        JULY_1,
        "--format",
        "json",
    ]);
    let err = r.fails();
    assert!(err.contains("cache_write_tokens"), "{err}");
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

#[test]
fn batch_without_a_multiplier_is_an_error() {
    // The second period (from 2026-07-16) has no batch_multiplier.
    let sb = Sandbox::new();
    let rates = sb.seed_rates();
    let err = sb
        .run(&[
            "--prices",
            path_str(&rates),
            "price",
            "--provider",
            "openai",
            "--model",
            "seed-model",
            "--input-tokens",
            "100",
            "--batch",
            "--at",
            "2026-07-20T00:00:00Z",
        ])
        .fails()
        .to_string();
    assert!(err.contains("batch"), "{err}");
}
