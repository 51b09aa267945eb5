//! Property tests of the pricing invariants.

use proptest::prelude::*;
use rust_decimal::Decimal;
use tollgate_core::{Pricer, RateBook, Usage};

use crate::ts;

const RATES: &str = r#"
[[rate]]
provider = "p"
model = "m"
effective_to = "2026-07-10T00:00:00Z"
input_per_mtok = "3"
cache_read_per_mtok = "0.3"
cache_write_per_mtok = "3.75"
cache_write_1h_per_mtok = "6"
output_per_mtok = "15"
[[rate]]
provider = "p"
model = "m"
effective_from = "2026-07-10T00:00:00Z"
effective_to = "2026-07-20T00:00:00Z"
input_per_mtok = "2.5"
cache_read_per_mtok = "0.25"
cache_write_per_mtok = "3"
cache_write_1h_per_mtok = "5"
output_per_mtok = "10"
[[rate]]
provider = "p"
model = "m"
effective_from = "2026-07-20T00:00:00Z"
input_per_mtok = "2"
cache_read_per_mtok = "0.2"
cache_write_per_mtok = "2.5"
cache_write_1h_per_mtok = "4"
output_per_mtok = "8"
"#;

fn usage(t: [u64; 5]) -> Usage {
    Usage {
        input_tokens: t[0],
        cache_read_tokens: t[1],
        cache_write_tokens: t[2],
        cache_write_1h_tokens: t[3],
        output_tokens: t[4],
        ..Usage::default()
    }
}

proptest! {
    /// Pricing is additive: cost(a) + cost(b) = cost(a + b) (no tiers here), and the cost is
    /// the sum of its breakdown.
    #[test]
    fn pricing_is_additive(a in prop::array::uniform5(0u64..5_000_000), b in prop::array::uniform5(0u64..5_000_000)) {
        let p = Pricer::new(vec![RateBook::parse("t", RATES).unwrap()]);
        let at = ts("2026-07-15T00:00:00Z");
        let qa = p.quote("p", "m", at, &usage(a), false).unwrap();
        let qb = p.quote("p", "m", at, &usage(b), false).unwrap();
        let sum: [u64; 5] = std::array::from_fn(|i| a[i] + b[i]);
        let qs = p.quote("p", "m", at, &usage(sum), false).unwrap();
        prop_assert_eq!(qa.cost + qb.cost, qs.cost);
        prop_assert_eq!(qs.breakdown.total(), qs.cost);
        prop_assert!(qs.cost.scale() <= 12);
    }

    /// Exactly one rate version is in force at any instant of the covered range.
    #[test]
    fn exactly_one_version_per_instant(secs in 1_780_000_000i64..1_790_000_000i64) {
        let book = RateBook::parse("t", RATES).unwrap();
        let at = jiff::Timestamp::from_second(secs).unwrap();
        let n = book.rates().iter().filter(|r| r.covers(at)).count();
        prop_assert_eq!(n, 1);
        let p = Pricer::new(vec![book]);
        let q = p.quote("p", "m", at, &usage([1_000_000, 0, 0, 0, 0]), false).unwrap();
        let expected = if secs < ts("2026-07-10T00:00:00Z").as_second() {
            Decimal::new(3, 0)
        } else if secs < ts("2026-07-20T00:00:00Z").as_second() {
            Decimal::new(25, 1)
        } else {
            Decimal::new(2, 0)
        };
        prop_assert_eq!(q.cost, expected);
    }
}
