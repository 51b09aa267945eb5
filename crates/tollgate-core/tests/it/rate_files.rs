use tollgate_core::RateBook;

fn err(toml: &str) -> String {
    RateBook::parse("bad.toml", toml).unwrap_err().to_string()
}

#[test]
fn overlapping_periods_are_refused() {
    let e = err(r#"
[[rate]]
provider = "p"
model = "m"
effective_to = "2026-07-16T00:00:00Z"
input_per_mtok = "1"
[[rate]]
provider = "p"
model = "m"
effective_from = "2026-07-15T00:00:00Z"
input_per_mtok = "2"
"#);
    assert!(
        e.contains("bad.toml") && e.contains("overlaps") && e.contains("p/m"),
        "{e}"
    );
}

#[test]
fn prices_must_be_decimal_strings_with_at_most_six_places() {
    let e = err("[[rate]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_mtok = 2.5\n");
    assert!(e.contains("decimal strings"), "{e}");
    let e = err("[[rate]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_mtok = \"0.0000001\"\n");
    assert!(
        e.contains("input_per_mtok") && e.contains("6 decimal places"),
        "{e}"
    );
    let e = err("[[rate]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_mtok = \"-1\"\n");
    assert!(e.contains("negative"), "{e}");
    let e = err(
        "[[rate]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_mtok = \"1\"\nimput_per_mtok = \"1\"\n",
    );
    assert!(e.contains("imput_per_mtok"), "{e}");
}

#[test]
fn a_tier_must_price_every_class_the_base_prices() {
    let e = err(r#"
[[rate]]
provider = "p"
model = "m"
input_per_mtok = "1"
output_per_mtok = "2"
[[rate.tier]]
above_input_tokens = 1000
input_per_mtok = "2"
"#);
    assert!(e.contains("tier[0].output_per_mtok"), "{e}");
}

#[test]
fn a_name_belongs_to_one_model_and_bounds_are_ordered() {
    let e = err(r#"
[[rate]]
provider = "p"
model = "a"
aliases = ["x"]
input_per_mtok = "1"
[[rate]]
provider = "p"
model = "b"
aliases = ["x"]
input_per_mtok = "1"
"#);
    assert!(e.contains("\"x\"") && e.contains("already belongs"), "{e}");
    let e = err(r#"
[[rate]]
provider = "p"
model = "a"
effective_from = "2026-07-16T00:00:00Z"
effective_to = "2026-07-01T00:00:00Z"
input_per_mtok = "1"
"#);
    assert!(e.contains("effective_to") && e.contains("not after"), "{e}");
}

#[test]
fn versions_are_content_hashes() {
    let a = RateBook::parse(
        "a",
        "[[rate]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_mtok = \"1\"\n",
    )
    .unwrap();
    let same = RateBook::parse(
        "b",
        "[[rate]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_mtok = \"1.00\"\n",
    )
    .unwrap();
    let other = RateBook::parse(
        "c",
        "[[rate]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_mtok = \"1.01\"\n",
    )
    .unwrap();
    // "1" and "1.00" are the same price: same version; 1.01 is another.
    assert_eq!(a.rates()[0].version, same.rates()[0].version);
    assert_ne!(a.rates()[0].version, other.rates()[0].version);
    assert_eq!(a.rates()[0].version.len(), "0123456789ab@-inf".len());
}
