//! Budgets at the edge: monthly spending limits per team, tenant, feature or gateway key,
//! checked on every call before it goes upstream (`[[gateway.budgets]]`, docs/gateway.md).
//!
//! - A **hard** budget refuses a call (429 in the provider's error shape) when the month's
//!   spend, plus what the calls in flight may still cost, plus this call's worst case would go
//!   over the limit. The worst case is an upper bound, not a guess: input tokens cannot exceed
//!   the request body's bytes (every token is at least one byte of text), priced at the
//!   model's highest input-class price (tiers included); output tokens cannot exceed the
//!   request's `max_tokens` / `max_completion_tokens` / `max_output_tokens` (or the budget's
//!   `default_max_output_tokens` when the request sets none), at the highest output price. The
//!   worst case is reserved until the call's event is priced, then replaced by its exact cost,
//!   so concurrent calls cannot slip past the limit together. A call whose model has no price
//!   cannot be bounded: a hard budget refuses it.
//! - A **soft** budget never refuses: once the month's spend reaches the limit, responses carry
//!   `x-tollgate-budget-warning` and the gateway logs it once per budget and month.
//! - The month is the calendar month in the budget's time zone (default: `reporting.timezone`).
//!   At startup each budget's spend so far this month is read from the ledger (after the spool
//!   replay); from then on the gateway adds the exact cost of each call it records (an unpriced
//!   call counts its reserved worst case). Spend is tracked per gateway process: replicas
//!   behind one ledger each see the ledger at their start plus their own calls (see
//!   docs/gateway.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_core::Pricer;
use tollgate_core::event::Attribution;
use tollgate_core::period::Period;
use tollgate_ledger::{Dim, Ledger, SummaryQuery};

/// What a budget applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Team,
    Tenant,
    Feature,
    /// A gateway key, by its `key_id`.
    Key,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Team => "team",
            Scope::Tenant => "tenant",
            Scope::Feature => "feature",
            Scope::Key => "key",
        }
    }
}

/// One `[[gateway.budgets]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRule {
    pub scope: Scope,
    pub value: String,
    /// Per calendar month, in the rates' currency (USD for the shipped catalog).
    pub monthly_limit: Decimal,
    pub hard: bool,
    /// IANA zone of the month's bounds; `None`: the reporting time zone.
    pub timezone: Option<String>,
    /// The output bound of a request that sets no maximum.
    pub default_max_output_tokens: u64,
}

impl BudgetRule {
    /// `team search`, `key k_123`: how messages name the budget.
    pub fn label(&self) -> String {
        format!("{} {:?}", self.scope.as_str(), self.value)
    }

    fn matches(&self, a: &Attribution) -> bool {
        let v = match self.scope {
            Scope::Team => &a.team_id,
            Scope::Tenant => &a.tenant_id,
            Scope::Feature => &a.feature,
            Scope::Key => &a.api_key_id,
        };
        v.as_deref() == Some(self.value.as_str())
    }
}

struct Slot {
    period: Period,
    spent: Decimal,
    reserved: Decimal,
    warned: bool,
}

/// The budgets of one gateway process and their month-to-date spend.
pub struct Budgets {
    rules: Vec<BudgetRule>,
    slots: Mutex<Vec<Slot>>,
}

/// A call's reservation: released when its event is priced ([`Hold::settle`]), or when the
/// call ends without an event (drop).
pub struct Hold {
    budgets: Arc<Budgets>,
    /// (rule index, start of the month the reservation belongs to).
    entries: Vec<(usize, Timestamp)>,
    reserve: Decimal,
    done: AtomicBool,
}

/// The outcome of [`Budgets::admit`].
pub enum Admission {
    /// Go ahead; `warnings` are soft budgets already spent (for the response header).
    Go {
        hold: Option<Hold>,
        warnings: Vec<String>,
    },
    /// A hard budget refuses the call; the message says which, and how much is spent.
    Refuse(String),
}

fn month_of(t: Timestamp, tz: &str) -> Result<Period, String> {
    let zone = tollgate_core::period::time_zone(tz).map_err(|e| e.to_string())?;
    let d = tollgate_core::period::civil_day(t, &zone);
    Period::month(d.year(), d.month(), tz).map_err(|e| e.to_string())
}

/// Spend of a budget's scope over `[start, end)`, from the ledger.
fn spent_in_ledger(
    ledger: &dyn Ledger,
    rule: &BudgetRule,
    start: Timestamp,
    end: Timestamp,
) -> anyhow::Result<Decimal> {
    if end <= start {
        return Ok(Decimal::ZERO);
    }
    let e12: i128 = match rule.scope {
        Scope::Key => ledger
            .usage_by_key(start, end, false)?
            .iter()
            .filter(|u| u.api_key_id == rule.value)
            .map(|u| u.totals.cost_e12)
            .sum(),
        s => {
            let dim = match s {
                Scope::Team => Dim::Team,
                Scope::Tenant => Dim::Tenant,
                _ => Dim::Feature,
            };
            let mut q = SummaryQuery::new(start, end, Vec::new());
            q.filters.push((dim, rule.value.clone()));
            ledger
                .summarize(&q)?
                .iter()
                .map(|r| r.totals.cost_e12)
                .sum()
        }
    };
    Ok(Decimal::from_i128_with_scale(e12, 12).normalize())
}

impl Budgets {
    /// Loads each budget's spend so far this month from `ledger`.
    pub fn load(
        rules: Vec<BudgetRule>,
        default_tz: &str,
        ledger: &dyn Ledger,
        now: Timestamp,
    ) -> anyhow::Result<Arc<Budgets>> {
        let mut slots = Vec::new();
        for r in &rules {
            let tz = r.timezone.clone().unwrap_or_else(|| default_tz.to_string());
            let period = month_of(now, &tz).map_err(anyhow::Error::msg)?;
            let spent = spent_in_ledger(ledger, r, period.start(), now)?;
            slots.push(Slot {
                period,
                spent,
                reserved: Decimal::ZERO,
                warned: false,
            });
        }
        Ok(Arc::new(Budgets {
            rules,
            slots: Mutex::new(slots),
        }))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Month-to-date spend and reservations per budget (for `/tollgate/stats` and tests).
    pub fn snapshot(&self) -> Vec<(String, Decimal, Decimal)> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        self.rules
            .iter()
            .zip(slots.iter())
            .map(|(r, s)| (r.label(), s.spent, s.reserved))
            .collect()
    }

    /// Decides whether a call may go upstream. `worst_case` prices the call's upper bound
    /// given an output bound (`None`: the model has no price).
    pub fn admit(
        self: &Arc<Self>,
        a: &Attribution,
        worst_case: &dyn Fn(u64) -> Option<Decimal>,
        now: Timestamp,
    ) -> Admission {
        let matching: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].matches(a))
            .collect();
        if matching.is_empty() {
            return Admission::Go {
                hold: None,
                warnings: Vec::new(),
            };
        }
        // The largest output bound among the matching hard budgets' defaults.
        let hard: Vec<&BudgetRule> = matching
            .iter()
            .map(|&i| &self.rules[i])
            .filter(|r| r.hard)
            .collect();
        let reserve = match hard.iter().map(|r| r.default_max_output_tokens).max() {
            None => Decimal::ZERO,
            Some(out) => match worst_case(out) {
                Some(c) => c,
                None => {
                    return Admission::Refuse(format!(
                        "budget {} is a hard limit and this call's model has no price, so its cost cannot be bounded; add a rate for the model (--prices) or call a priced model",
                        hard[0].label()
                    ));
                }
            },
        };
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut warnings = Vec::new();
        for &i in &matching {
            let r = &self.rules[i];
            let s = &mut slots[i];
            // A new month: its spend starts from zero (calls in flight stay with the old one).
            // A slot that has seen nothing yet also follows a call from an earlier month (the
            // demo replays a past month through the gateway); a live gateway's calls are never
            // earlier than its start.
            let unused = s.spent.is_zero() && s.reserved.is_zero();
            if !s.period.contains(now)
                && (now >= s.period.end() || unused)
                && let Ok(p) = month_of(now, s.period.tz_name())
            {
                *s = Slot {
                    period: p,
                    spent: Decimal::ZERO,
                    reserved: Decimal::ZERO,
                    warned: false,
                };
            }
            if r.hard {
                let committed = s.spent + s.reserved;
                if committed + reserve > r.monthly_limit {
                    return Admission::Refuse(format!(
                        "budget {} is spent for {}: {} of {} used ({} in calls still running), and this call may cost up to {}; the limit resets at {}",
                        r.label(),
                        s.period.label(),
                        s.spent.round_dp(6).normalize(),
                        r.monthly_limit,
                        s.reserved.round_dp(6).normalize(),
                        reserve.round_dp(6).normalize(),
                        s.period.end()
                    ));
                }
            } else if s.spent >= r.monthly_limit {
                warnings.push(format!(
                    "soft budget {} reached: {} of {} spent in {}",
                    r.label(),
                    s.spent.round_dp(6).normalize(),
                    r.monthly_limit,
                    s.period.label()
                ));
                if !s.warned {
                    s.warned = true;
                    eprintln!("tollgate serve: {}", warnings[warnings.len() - 1]);
                }
            }
        }
        let mut entries = Vec::with_capacity(matching.len());
        for &i in &matching {
            slots[i].reserved += reserve;
            entries.push((i, slots[i].period.start()));
        }
        Admission::Go {
            hold: Some(Hold {
                budgets: self.clone(),
                entries,
                reserve,
                done: AtomicBool::new(false),
            }),
            warnings,
        }
    }
}

impl Hold {
    /// Replaces the reservation by the call's exact cost (`None`, an unpriced call: the
    /// reservation itself counts as spent).
    pub fn settle(&self, cost: Option<Decimal>) {
        self.release(Some(cost.unwrap_or(self.reserve)));
    }

    /// Gives back the reservation once, adding `spent` to each budget still in the same month.
    fn release(&self, spent: Option<Decimal>) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut slots = self.budgets.slots.lock().unwrap_or_else(|e| e.into_inner());
        for &(i, start) in &self.entries {
            let s = &mut slots[i];
            if s.period.start() == start {
                s.reserved -= self.reserve;
                s.spent += spent.unwrap_or_default();
            }
        }
    }
}

/// A call that ends without an event gives its reservation back and spends nothing.
impl Drop for Hold {
    fn drop(&mut self) {
        self.release(None);
    }
}

/// The worst-case cost of a call: `input_bytes` tokens at the highest input-class price and
/// `max_output` tokens at the highest output price of the model's rate in force (tiers
/// included); `None` when the model has no price.
pub fn worst_case_cost(
    pricer: &Pricer,
    provider: &str,
    model: &str,
    at: Timestamp,
    input_bytes: u64,
    max_output: u64,
) -> Option<Decimal> {
    let rate = pricer.find(provider, model, at).ok()?;
    let classes = std::iter::once(&rate.base).chain(rate.tiers.iter().map(|(_, p)| p));
    let mut max_in = Decimal::ZERO;
    let mut max_out = Decimal::ZERO;
    for c in classes {
        // Classes: input, cache read, cache write (5 min), cache write (1 h), output.
        for p in c.0[..4].iter().flatten() {
            max_in = max_in.max(*p);
        }
        if let Some(p) = c.0[4] {
            max_out = max_out.max(p);
        }
    }
    let mult = rate
        .batch_multiplier
        .filter(|m| *m > Decimal::ONE)
        .unwrap_or(Decimal::ONE);
    let per_m = Decimal::from(1_000_000u32);
    let cost = (Decimal::from(input_bytes).checked_mul(max_in)?)
        .checked_add(Decimal::from(max_output).checked_mul(max_out)?)?
        .checked_div(per_m)?
        .checked_mul(mult)?;
    Some(cost)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn rule(hard: bool, limit: &str) -> BudgetRule {
        BudgetRule {
            scope: Scope::Team,
            value: "search".into(),
            monthly_limit: limit.parse().unwrap(),
            hard,
            timezone: Some("UTC".into()),
            default_max_output_tokens: 1000,
        }
    }

    fn budgets(rules: Vec<BudgetRule>) -> Arc<Budgets> {
        let now: Timestamp = "2026-07-10T00:00:00Z".parse().unwrap();
        let slots = rules
            .iter()
            .map(|_| Slot {
                period: month_of(now, "UTC").unwrap(),
                spent: Decimal::ZERO,
                reserved: Decimal::ZERO,
                warned: false,
            })
            .collect();
        Arc::new(Budgets {
            rules,
            slots: Mutex::new(slots),
        })
    }

    fn team(t: &str) -> Attribution {
        Attribution {
            team_id: Some(t.into()),
            ..Attribution::default()
        }
    }

    #[test]
    fn reservations_keep_concurrent_calls_under_a_hard_limit() {
        let b = budgets(vec![rule(true, "1.00")]);
        let now: Timestamp = "2026-07-10T01:00:00Z".parse().unwrap();
        let wc = |_: u64| Some(Decimal::new(40, 2)); // 0.40 worst case per call
        // Two calls in flight reserve 0.80; a third (0.80 + 0.40 = 1.20 > 1.00) is refused.
        let Admission::Go { hold: h1, .. } = b.admit(&team("search"), &wc, now) else {
            panic!()
        };
        let Admission::Go { hold: h2, .. } = b.admit(&team("search"), &wc, now) else {
            panic!()
        };
        assert!(matches!(
            b.admit(&team("search"), &wc, now),
            Admission::Refuse(m) if m.contains("team \"search\"") && m.contains("0.8 in calls still running")
        ));
        // Another team is not affected.
        assert!(matches!(
            b.admit(&team("other"), &wc, now),
            Admission::Go { hold: None, .. }
        ));
        // The first call cost 0.05 exactly: spent 0.05, reserved 0.40; a third call fits
        // (0.05 + 0.40 + 0.40 = 0.85 <= 1.00).
        h1.unwrap().settle(Some(Decimal::new(5, 2)));
        let Admission::Go { hold: h3, .. } = b.admit(&team("search"), &wc, now) else {
            panic!()
        };
        // A call that ends without an event releases its reservation.
        drop(h2);
        drop(h3);
        let snap = b.snapshot();
        assert_eq!(snap[0].1, Decimal::new(5, 2));
        assert_eq!(snap[0].2, Decimal::ZERO);
        // Unpriced models cannot be bounded under a hard budget.
        assert!(matches!(
            b.admit(&team("search"), &|_| None, now),
            Admission::Refuse(m) if m.contains("no price")
        ));
    }

    #[test]
    fn soft_budgets_warn_and_a_new_month_starts_from_zero() {
        let b = budgets(vec![rule(false, "0.10")]);
        let july: Timestamp = "2026-07-31T23:00:00Z".parse().unwrap();
        let wc = |_: u64| None; // soft budgets do not need a bound
        let Admission::Go { hold, warnings } = b.admit(&team("search"), &wc, july) else {
            panic!()
        };
        assert!(warnings.is_empty());
        hold.unwrap().settle(Some(Decimal::new(12, 2)));
        let Admission::Go { warnings, .. } = b.admit(&team("search"), &wc, july) else {
            panic!()
        };
        assert_eq!(
            warnings,
            vec!["soft budget team \"search\" reached: 0.12 of 0.10 spent in 2026-07".to_string()]
        );
        // A slot nothing was spent in follows a call of an earlier month (a replayed month).
        let b2 = budgets(vec![rule(false, "0.10")]);
        let june: Timestamp = "2026-06-15T00:00:00Z".parse().unwrap();
        let Admission::Go { hold, .. } = b2.admit(&team("search"), &wc, june) else {
            panic!()
        };
        hold.unwrap().settle(Some(Decimal::new(12, 2)));
        let Admission::Go { warnings, .. } = b2.admit(&team("search"), &wc, june) else {
            panic!()
        };
        assert_eq!(
            warnings,
            vec!["soft budget team \"search\" reached: 0.12 of 0.10 spent in 2026-06".to_string()]
        );
        let august: Timestamp = "2026-08-01T00:00:00Z".parse().unwrap();
        let Admission::Go { warnings, .. } = b.admit(&team("search"), &wc, august) else {
            panic!()
        };
        assert!(warnings.is_empty());
    }
}
