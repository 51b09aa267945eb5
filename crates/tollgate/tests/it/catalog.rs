//! The shipped catalog, without any override file.

use serde_json::Value;

use crate::support::Sandbox;

#[test]
fn gpt_4o_from_the_shipped_catalog() {
    let sb = Sandbox::new();
    let q = sb
        .run(&[
            "price",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
            "--input-tokens",
            "1000000",
            "--output-tokens",
            "1000000",
            "--format",
            "json",
        ])
        .json();
    // genai-prices' current gpt-4o price: input 2.5, output 10 USD per million tokens.
    //   1,000,000 x 2.5 / 1e6 = 2.5
    //   1,000,000 x 10  / 1e6 = 10
    //   total = 12.5
    assert_eq!(q["breakdown"]["input"], "2.5", "{q}");
    assert_eq!(q["breakdown"]["output"], "10");
    assert_eq!(q["cost"], "12.5");
    assert_eq!(q["currency"], "USD");
    assert_eq!(q["model"], "gpt-4o");
    assert_eq!(q["pricing_status"], "priced");
}

#[test]
fn prices_list_filters_by_provider() {
    let sb = Sandbox::new();
    let doc = sb
        .run(&[
            "prices",
            "list",
            "--provider",
            "anthropic",
            "--format",
            "json",
        ])
        .json();
    let rates = doc["rates"].as_array().expect("rates array");
    assert!(!rates.is_empty(), "{doc}");
    assert!(
        rates.iter().all(|r| r["provider"] == "anthropic"),
        "another provider leaked into --provider anthropic"
    );
    assert!(
        rates.iter().any(|r| r["model"] == "claude-sonnet-4-5"),
        "claude-sonnet-4-5 missing from {}",
        rates
            .iter()
            .map(|r| r["model"].to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[test]
fn prices_show_lists_the_rates_of_a_model() {
    let sb = Sandbox::new();
    let doc = sb
        .run(&["prices", "show", "gpt-4o", "--format", "json"])
        .json();
    assert_eq!(doc["model"], "gpt-4o");
    let rates = doc["rates"].as_array().expect("rates array");
    assert!(!rates.is_empty(), "{doc}");
    assert!(rates.iter().all(|r| r["model"] == "gpt-4o"), "{doc}");
    // The OpenAI rate in force has the 2.5 / 10 prices used above.
    assert!(
        rates.iter().any(|r| r["provider"] == "openai"
            && r["input_per_mtok"] == "2.5"
            && r["output_per_mtok"] == "10"
            && r["version"].as_str().is_some_and(|v| v.contains('@'))),
        "{doc}"
    );
}

#[test]
fn an_override_wins_over_the_catalog() {
    let sb = Sandbox::new();
    let rates = sb.write(
        "gpt4o.toml",
        "[[rate]]\nprovider = \"openai\"\nmodel = \"gpt-4o\"\ncurrency = \"USD\"\ninput_per_mtok = \"1\"\noutput_per_mtok = \"2\"\n",
    );
    let q: Value = sb
        .run(&[
            "--prices",
            rates.to_str().unwrap(),
            "price",
            "--provider",
            "openai",
            "--model",
            "gpt-4o",
            "--input-tokens",
            "1000000",
            "--output-tokens",
            "1000000",
            "--format",
            "json",
        ])
        .json();
    // Override prices 1 and 2 per million: 1,000,000 x 1 / 1e6 + 1,000,000 x 2 / 1e6 = 3.
    assert_eq!(q["cost"], "3", "{q}");
}
