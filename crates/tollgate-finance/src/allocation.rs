//! Shared costs (issue #5 item 6): usage without an owner (shared keys, the platform pool)
//! split among teams by usage share, evenly, or by fixed percentages, by the largest-remainder
//! method, so that the parts add up to the total to the cent.
//!
//! The rule: the total is first rounded to the minor unit (half away from zero) and counted in
//! minor units `N`; each team gets `floor(N × w / W)` units (its weight `w` of the weights'
//! sum `W`), and the units left over go one each to the largest remainders (ties: team name
//! order). Integer arithmetic throughout, so the result is exact and the same on every run.

use rust_decimal::Decimal;

use crate::{FinanceError, Result};

/// How a shared amount is split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// By each team's own (owned) usage cost in the period.
    UsageShare(Vec<(String, Decimal)>),
    /// Evenly among these teams.
    Even(Vec<String>),
    /// By fixed percentages that add up to 100.
    Fixed(Vec<(String, Decimal)>),
}

/// Splits `total` (in a currency with `dp` minor digits) by `method`; returns (team, part) in
/// team order. The parts add up to `total` rounded to `dp` digits.
pub fn allocate(total: Decimal, method: &Method, dp: u32) -> Result<Vec<(String, Decimal)>> {
    let weights: Vec<(String, Decimal)> = match method {
        Method::UsageShare(w) => w.clone(),
        Method::Even(teams) => teams.iter().map(|t| (t.clone(), Decimal::ONE)).collect(),
        Method::Fixed(w) => {
            let sum: Decimal = w.iter().map(|x| x.1).sum();
            if sum != Decimal::ONE_HUNDRED {
                return Err(FinanceError::Invalid(format!(
                    "fixed percentages add up to {}, not 100",
                    sum.normalize()
                )));
            }
            w.clone()
        }
    };
    let mut weights = weights;
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    if weights.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(FinanceError::Invalid("a team appears twice".into()));
    }
    if weights.iter().any(|w| w.1 < Decimal::ZERO) {
        return Err(FinanceError::Invalid("a weight is negative".into()));
    }
    // Weights as integers at a common scale.
    let scale = weights.iter().map(|w| w.1.scale()).max().unwrap_or(0);
    let ints: Vec<i128> = weights
        .iter()
        .map(|w| {
            let mut d = w.1;
            d.rescale(scale);
            d.mantissa()
        })
        .collect();
    let sum: i128 = ints.iter().sum();
    if sum == 0 {
        return Err(FinanceError::Invalid(
            "nothing to allocate by: the weights are all zero (no team, or no usage)".into(),
        ));
    }
    let rounded = tollgate_core::money::round_half_away(total, dp);
    let mut units = rounded;
    units.rescale(dp);
    let n = units.mantissa();
    let (sign, n) = (n.signum(), n.abs());
    let mut parts: Vec<(i128, i128, usize)> = ints
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let p = n.checked_mul(*w).unwrap_or(i128::MAX);
            (p / sum, p % sum, i)
        })
        .collect();
    let given: i128 = parts.iter().map(|p| p.0).sum();
    let mut left = n - given;
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| parts[b].1.cmp(&parts[a].1).then(a.cmp(&b)));
    for &i in &order {
        if left == 0 {
            break;
        }
        parts[i].0 += 1;
        left -= 1;
    }
    Ok(parts
        .into_iter()
        .map(|(q, _, i)| {
            (
                weights[i].0.clone(),
                Decimal::from_i128_with_scale(sign * q, dp),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn even_split_gives_the_leftover_cents_to_the_first_teams() {
        // 100.00 / 3 = 33.333...: 33.33 each, one cent left, to the first name (remainders tie).
        let p = allocate(
            d("100"),
            &Method::Even(vec!["c".into(), "a".into(), "b".into()]),
            2,
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                ("a".into(), d("33.34")),
                ("b".into(), d("33.33")),
                ("c".into(), d("33.33"))
            ]
        );
    }

    #[test]
    fn usage_share_and_fixed_by_hand() {
        // 10.00 by usage 1 : 2 : 3 -> 1.666.., 3.333.., 5.00 -> 166 r2, 333 r2, 500 r0 units;
        // 1 cent left goes to a (remainder 2, first by name): 1.67, 3.33, 5.00.
        let p = allocate(
            d("10"),
            &Method::UsageShare(vec![
                ("a".into(), d("1")),
                ("b".into(), d("2")),
                ("c".into(), d("3")),
            ]),
            2,
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                ("a".into(), d("1.67")),
                ("b".into(), d("3.33")),
                ("c".into(), d("5.00"))
            ]
        );
        // -0.05 at 70 % / 30 %: 3.5 and 1.5 cents -> 3 r(.5), 1 r(.5): tie, a first: -0.04, -0.01.
        let p = allocate(
            d("-0.05"),
            &Method::Fixed(vec![("a".into(), d("70")), ("b".into(), d("30"))]),
            2,
        )
        .unwrap();
        assert_eq!(p, vec![("a".into(), d("-0.04")), ("b".into(), d("-0.01"))]);
        assert!(allocate(d("1"), &Method::Fixed(vec![("a".into(), d("99"))]), 2).is_err());
        assert!(allocate(d("1"), &Method::Even(vec![]), 2).is_err());
    }

    proptest! {
        #[test]
        fn parts_add_up_to_the_total_and_stay_within_a_cent_of_the_share(
            cents in -10_000_000i64..10_000_000,
            weights in proptest::collection::vec(0u32..100_000, 1..12),
        ) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let total = Decimal::new(cents, 2);
            let w: Vec<(String, Decimal)> = weights.iter().enumerate()
                .map(|(i, x)| (format!("t{i:02}"), Decimal::new(i64::from(*x), 3))).collect();
            let parts = allocate(total, &Method::UsageShare(w.clone()), 2).unwrap();
            let sum: Decimal = parts.iter().map(|p| p.1).sum();
            prop_assert_eq!(sum, total);
            let wsum: Decimal = w.iter().map(|x| x.1).sum();
            for ((_, part), (_, wi)) in parts.iter().zip(w.iter()) {
                let exact = total * wi / wsum;
                prop_assert!((*part - exact).abs() < Decimal::new(1, 2));
            }
            // The same inputs give the same parts.
            prop_assert_eq!(parts, allocate(total, &Method::UsageShare(w), 2).unwrap());
        }
    }
}
