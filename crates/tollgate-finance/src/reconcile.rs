//! Reconciliation (issue #5 item 4): the ledger against the providers' bills, per provider,
//! model, day (in the bill's time zone) and key (or owning team), tokens per class first, then
//! money; variance per row and per team; each flagged row classified.
//!
//! Two phases, so the expensive part (re-pricing raw events) is done only where it matters:
//! [`draft`] compares and flags, and lists the rows whose tokens agree but whose money does not
//! ([`Draft::needs_reprice`]); the caller re-prices those rows' events under the rates in force
//! now and hands the figures to [`Draft::finish`], which classifies every flagged row.
//!
//! **Grain.** A provider whose bill lines in the period all carry an API key is compared per
//! key ("key grain"); otherwise (OpenAI costs per project, Anthropic costs per workspace, CUR
//! per IAM principal) per owning team, each bill line's identifier resolved through the
//! reference data ("team grain"). Providers without any bill line in the period are not
//! compared (listed in [`Reconciliation::not_billed`]); within a billed provider only the days
//! its bills cover are compared.
//!
//! **Money.** A bill's money is the sum of its usage lines' costs. A usage-only export (OpenAI
//! and Anthropic usage reports) has no money: its tokens are valued at the rate in force on the
//! day (the caller's `value_tokens`), and the row says so. Credits, tax and refunds are not
//! compared (they are reported beside the total). Everything is exact; rounding happens only
//! where a renderer shows money (half away from zero, to the cent).
//!
//! **Flag.** A row is flagged when `|variance| > max(pct × base, amount)`, `variance = bill −
//! ledger`, `base = max(|bill|, |ledger|)`; `pct` (default 3 %) and `amount` (default 500) are
//! configurable.
//!
//! **Classes** (first that applies, in this order; docs/reconcile.md):
//! 1. `timezone_cutoff`: the row's variance is within the threshold when the ledger's day
//!    boundary moves to the company's time zone (unless re-pricing, step 5, leaves a smaller
//!    residual: then `stale_rate`);
//! 2. `unknown_model_alias`: the bill's model name is neither in the model dictionary nor a
//!    model the ledger knows for that provider (and, for the ledger-side row of the same
//!    provider, day and key, those unknown-name bill rows bring it within the threshold);
//! 3. `unmapped_key`: the bill's key (or project, workspace, principal, tag) has no owner in
//!    the reference data and, at key grain, the gateway never saw it (and, for the ledger-side
//!    row, the unmapped bill rows of the same provider, model and day bring it within the
//!    threshold);
//! 4. `tagging_failure`: the usage is on both sides but under different keys or owners: the
//!    provider, model and day, summed over all keys, is within the threshold;
//! 5. tokens agree (every class within `pct`) but money does not: `stale_rate` when re-pricing
//!    the ledger's events under the rates in force brings the row within the threshold,
//!    otherwise `provider_delta` (the provider's own pricing: multipliers, discounts,
//!    rounding);
//! 6. tokens differ: `missing_in_ledger` when the bill has more (traffic that bypassed the
//!    gateway), `missing_in_bill` when the ledger has more.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use rust_decimal::Decimal;
use tollgate_core::money::from_scaled_e12;
use tollgate_core::period::civil_day;
use tollgate_ledger::{KeyUsage, RefDataRecord, StoredBillLine};

use crate::{FinanceError, Result};

/// Token classes in order: input, cache_read, cache_write, cache_write_1h, output.
pub const CLASSES: [&str; 5] = [
    "input",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "output",
];

/// Bill types that carry tokens without money; when a provider has one, its tokens come from
/// it (a costs export's token quantities would count them twice).
const USAGE_ONLY: [&str; 2] = ["openai-usage", "anthropic-usage"];

/// When a row is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Percent (3 means 3 %).
    pub pct: Decimal,
    /// Absolute amount in the bills' currency.
    pub amount: Decimal,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            pct: Decimal::from(3),
            amount: Decimal::from(500),
        }
    }
}

impl Thresholds {
    /// `max(pct × max(|a|, |b|), amount)`.
    pub fn limit(&self, a: Decimal, b: Decimal) -> Decimal {
        let base = a.abs().max(b.abs());
        (base * self.pct / Decimal::ONE_HUNDRED).max(self.amount)
    }

    pub fn exceeded(&self, ledger: Decimal, bill: Decimal) -> bool {
        (bill - ledger).abs() > self.limit(ledger, bill)
    }
}

/// What explains a flagged row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    TimezoneCutoff,
    UnknownModelAlias,
    UnmappedKey,
    TaggingFailure,
    StaleRate,
    ProviderDelta,
    MissingInLedger,
    MissingInBill,
}

impl Class {
    pub const ALL: [Class; 8] = [
        Class::TimezoneCutoff,
        Class::UnmappedKey,
        Class::UnknownModelAlias,
        Class::StaleRate,
        Class::MissingInLedger,
        Class::MissingInBill,
        Class::TaggingFailure,
        Class::ProviderDelta,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::TimezoneCutoff => "timezone_cutoff",
            Class::UnknownModelAlias => "unknown_model_alias",
            Class::UnmappedKey => "unmapped_key",
            Class::TaggingFailure => "tagging_failure",
            Class::StaleRate => "stale_rate",
            Class::ProviderDelta => "provider_delta",
            Class::MissingInLedger => "missing_in_ledger",
            Class::MissingInBill => "missing_in_bill",
        }
    }
}

/// The comparison key of a row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey {
    pub provider: String,
    pub model: String,
    /// The day in the bill's time zone.
    pub day: Date,
    /// The API key (key grain) or the owning team (team grain; `unmapped:KIND:ID` when the
    /// reference data has no owner for the bill's identifier).
    pub key: String,
}

/// One side of a row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Side {
    pub tokens: [u64; 5],
    pub cost: Decimal,
    /// Whether anything was seen on this side.
    pub present: bool,
}

impl Side {
    pub fn total_tokens(&self) -> u64 {
        self.tokens.iter().sum()
    }
    fn add(&mut self, o: &Side) {
        for i in 0..5 {
            self.tokens[i] += o.tokens[i];
        }
        self.cost += o.cost;
        self.present |= o.present;
    }
}

/// One compared row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: RowKey,
    /// The owning team (reference data, else the ledger events' team), `""` when unknown.
    pub team: String,
    pub ledger: Side,
    pub bill: Side,
    /// The bill's money was valued from its tokens at the rate in force (usage-only export).
    pub bill_valued: bool,
    /// The bill gave token counts for this row (a cost-only export gives none: only money is
    /// compared).
    pub bill_tokens_known: bool,
    /// Events without a cost (they count in tokens, not in money).
    pub ledger_unpriced: u64,
    pub flagged: bool,
    pub class: Option<Class>,
    /// Why, in a few words (figures that made the decision).
    pub note: String,
}

impl Row {
    pub fn variance(&self) -> Decimal {
        self.bill.cost - self.ledger.cost
    }
    /// Variance in percent of the bill (None when the bill is zero).
    pub fn variance_pct(&self) -> Option<Decimal> {
        (!self.bill.cost.is_zero())
            .then(|| self.variance() * Decimal::ONE_HUNDRED / self.bill.cost.abs())
    }
    pub fn token_variance(&self) -> [i128; 5] {
        let mut v = [0i128; 5];
        for (i, x) in v.iter_mut().enumerate() {
            *x = i128::from(self.bill.tokens[i]) - i128::from(self.ledger.tokens[i]);
        }
        v
    }
}

/// Per-team totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamVariance {
    pub team: String,
    pub ledger: Decimal,
    pub bill: Decimal,
    pub flagged_rows: u64,
}

impl TeamVariance {
    pub fn variance(&self) -> Decimal {
        self.bill - self.ledger
    }
}

/// The finished comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    pub period: String,
    pub bill_tz: String,
    pub company_tz: String,
    pub currency: String,
    pub thresholds: Thresholds,
    /// Sorted by key.
    pub rows: Vec<Row>,
    pub teams: Vec<TeamVariance>,
    pub ledger_total: Decimal,
    pub bill_total: Decimal,
    /// Non-usage bill lines by kind (credit, tax, refund, other): not compared.
    pub bill_other: BTreeMap<String, Decimal>,
    /// Providers with ledger usage in the period but no bill: not compared.
    pub not_billed: Vec<String>,
    /// Providers compared, with their grain (`key` or `team`).
    pub providers: Vec<(String, String)>,
}

impl Reconciliation {
    pub fn flagged(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.flagged)
    }
    pub fn count(&self, c: Class) -> usize {
        self.flagged().filter(|r| r.class == Some(c)).count()
    }
    pub fn variance(&self) -> Decimal {
        self.bill_total - self.ledger_total
    }
}

/// Values tokens per class of (provider, canonical model) at an instant.
pub type ValueTokens<'a> = dyn Fn(&str, &str, Timestamp, &[u64; 5]) -> Option<Decimal> + 'a;

/// What the comparison reads.
pub struct Inputs<'a> {
    pub period: String,
    /// `[start, end)`: the period in the bill's time zone.
    pub start: Timestamp,
    pub end: Timestamp,
    pub bill_tz: TimeZone,
    pub bill_tz_name: String,
    pub company_tz: TimeZone,
    pub company_tz_name: String,
    /// Ledger usage per hour (or minute) over at least `[start - 1 day, end + 1 day)`.
    pub usage: &'a [KeyUsage],
    /// Bill lines in force whose charge starts in `[start, end)`.
    pub bills: &'a [StoredBillLine],
    pub refdata: &'a [RefDataRecord],
    pub thresholds: Thresholds,
    /// Values tokens per class of (provider, canonical model) at an instant, for usage-only
    /// bills; None when no rate covers them.
    pub value_tokens: &'a ValueTokens<'a>,
}

/// Reference data resolved for lookups.
#[derive(Debug, Default, Clone)]
pub struct RefMaps {
    /// (kind, key) -> (team, cost center).
    owners: HashMap<(String, String), (String, String)>,
    /// name as billed -> (canonical model, provider).
    models: HashMap<String, (String, String)>,
}

impl RefMaps {
    pub fn new(refdata: &[RefDataRecord]) -> RefMaps {
        let mut m = RefMaps::default();
        for r in refdata {
            let e = &r.entry;
            if e.kind == "model" {
                if let (Some(c), Some(p)) = (&e.canonical_model, &e.provider) {
                    m.models.insert(e.key.clone(), (c.clone(), p.clone()));
                }
            } else if let Some(t) = &e.team_id {
                m.owners.insert(
                    (e.kind.clone(), e.key.clone()),
                    (t.clone(), e.cost_center.clone().unwrap_or_default()),
                );
            }
        }
        m
    }

    /// The owner (team, cost center) of an identifier.
    pub fn owner(&self, kind: &str, key: &str) -> Option<&(String, String)> {
        self.owners.get(&(kind.to_string(), key.to_string()))
    }

    /// The canonical (model, provider) of a name as billed.
    pub fn model(&self, name: &str) -> Option<&(String, String)> {
        self.models.get(name)
    }
}

/// A bill line resolved to a comparison row.
struct BillCell {
    key: RowKey,
    team: String,
    tokens: [u64; 5],
    cost: Option<Decimal>,
    counts_tokens: bool,
    has_tokens: bool,
    model_known: bool,
    key_mapped: bool,
}

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<tollgate_core::rates::FxHasher>>;

/// A bill line identity resolved through the reference data.
struct Resolved {
    provider: String,
    model: String,
    key: String,
    team: String,
    model_known: bool,
    key_mapped: bool,
    counts_tokens: bool,
}

/// Bill lines of one identity and day, summed.
#[derive(Default)]
struct CellAcc {
    tokens: [u64; 5],
    cost: Decimal,
    has_cost: bool,
    has_tokens: bool,
}

/// The comparison before classification.
pub struct Draft {
    rec: Reconciliation,
    /// Ledger per row with the day in the company's time zone.
    ledger_company: HashMap<RowKey, Side>,
    unknown_model: BTreeSet<RowKey>,
    unmapped: BTreeSet<RowKey>,
    grains: BTreeMap<String, bool>,
    maps: RefMaps,
}

fn class_index(c: &str) -> Option<usize> {
    CLASSES.iter().position(|x| *x == c)
}

fn parse_ts(s: &str) -> Result<Timestamp> {
    s.parse()
        .map_err(|e| FinanceError::Invalid(format!("stored instant {s:?}: {e}")))
}

fn dec(s: &str) -> Result<Decimal> {
    tollgate_core::money::parse_decimal("cost", s).map_err(FinanceError::Core)
}

/// The bill line's owner identifier: (kind, id), first of API key, project, workspace,
/// principal, then a tag the reference data knows (else the first tag).
fn identifier(l: &tollgate_ledger::BillLineRecord, maps: &RefMaps) -> (String, String) {
    for (kind, v) in [
        ("api_key", &l.api_key),
        ("project", &l.project),
        ("workspace", &l.workspace),
        ("principal", &l.principal),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            return (kind.to_string(), v.to_string());
        }
    }
    if let Some(tags) = l
        .tags
        .as_deref()
        .and_then(|t| serde_json::from_str::<BTreeMap<String, String>>(t).ok())
    {
        let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(p) = pairs.iter().find(|p| maps.owner("tag", p).is_some()) {
            return ("tag".into(), p.clone());
        }
        if let Some(p) = pairs.first() {
            return ("tag".into(), p.clone());
        }
    }
    (String::new(), String::new())
}

impl Draft {
    /// The comparison key an event of `provider` with this API key and team falls under (for
    /// re-pricing a row's events).
    pub fn event_key(&self, provider: &str, api_key_id: &str, team_id: &str) -> String {
        if self.grains.get(provider).copied().unwrap_or(true) {
            api_key_id.to_string()
        } else {
            self.maps
                .owner("api_key", api_key_id)
                .map(|o| o.0.clone())
                .unwrap_or_else(|| team_id.to_string())
        }
    }

    /// Rows whose money must be re-priced to tell `stale_rate` from `provider_delta`: flagged,
    /// on both sides, tokens agreeing.
    pub fn needs_reprice(&self) -> Vec<RowKey> {
        let t = self.rec.thresholds;
        self.rec
            .rows
            .iter()
            .filter(|r| r.flagged && r.ledger.present && r.bill.present)
            .filter(|r| tokens_agree(r, &t))
            .map(|r| r.key.clone())
            .collect()
    }

    /// Classifies every flagged row. `repriced`: the ledger cost of a row's events under the
    /// rates in force now (rows of [`Draft::needs_reprice`]).
    pub fn finish(mut self, repriced: &HashMap<RowKey, Decimal>) -> Reconciliation {
        let t = self.rec.thresholds;
        let tz_differs = self.rec.bill_tz != self.rec.company_tz;
        // Sums per (provider, day, key) of unknown-alias bill rows; per (provider, model, day)
        // of unmapped bill rows; per (provider, model, day) of both sides over all keys.
        let mut alias_sum: HashMap<(String, Date, String), Side> = HashMap::new();
        let mut unmapped_sum: HashMap<(String, String, Date), Side> = HashMap::new();
        // Variances per (provider, model, day): (sum of positive, sum of negative).
        let mut spread: HashMap<(String, String, Date), (Decimal, Decimal)> = HashMap::new();
        for r in &self.rec.rows {
            let k = &r.key;
            if self.unknown_model.contains(k) {
                alias_sum
                    .entry((k.provider.clone(), k.day, k.key.clone()))
                    .or_default()
                    .add(&r.bill);
            }
            if self.unmapped.contains(k) {
                unmapped_sum
                    .entry((k.provider.clone(), k.model.clone(), k.day))
                    .or_default()
                    .add(&r.bill);
            }
            let e = spread
                .entry((k.provider.clone(), k.model.clone(), k.day))
                .or_default();
            let v = r.variance();
            if v > Decimal::ZERO {
                e.0 += v;
            } else {
                e.1 += v;
            }
        }
        for r in self.rec.rows.iter_mut().filter(|r| r.flagged) {
            let k = r.key.clone();
            let within = |ledger: Decimal, bill: Decimal| !t.exceeded(ledger, bill);
            // When both the company-time-zone days and today's rates explain the row, the
            // one leaving the smaller residual wins.
            let stale_residual = repriced
                .get(&k)
                .filter(|_| r.ledger.present && r.bill.present && tokens_agree(r, &t))
                .map(|c| (r.bill.cost - *c).abs());
            if tz_differs {
                let lc = self.ledger_company.get(&k).cloned().unwrap_or_default();
                let tz_residual = (r.bill.cost - lc.cost).abs();
                if within(lc.cost, r.bill.cost) && stale_residual.is_none_or(|s| tz_residual <= s) {
                    r.class = Some(Class::TimezoneCutoff);
                    r.note = format!(
                        "ledger by {} days: {}",
                        self.rec.company_tz,
                        lc.cost.normalize()
                    );
                    continue;
                }
            }
            if self.unknown_model.contains(&k) {
                r.class = Some(Class::UnknownModelAlias);
                r.note = format!("model {:?} is not in the model dictionary", k.model);
                continue;
            }
            let ledger_side = !r.bill.present || r.ledger.cost > r.bill.cost;
            if ledger_side
                && let Some(a) = alias_sum.get(&(k.provider.clone(), k.day, k.key.clone()))
                && within(r.ledger.cost, r.bill.cost + a.cost)
            {
                r.class = Some(Class::UnknownModelAlias);
                r.note = "billed under a model name the dictionary lacks".into();
                continue;
            }
            if self.unmapped.contains(&k) {
                r.class = Some(Class::UnmappedKey);
                r.note = format!("{} has no owner in the reference data", k.key);
                continue;
            }
            if ledger_side
                && let Some(u) = unmapped_sum.get(&(k.provider.clone(), k.model.clone(), k.day))
                && within(r.ledger.cost, r.bill.cost + u.cost)
            {
                r.class = Some(Class::UnmappedKey);
                r.note = "billed under a key with no owner in the reference data".into();
                continue;
            }
            // The opposite-signed variances of the other keys offset this one.
            let v = r.variance();
            let (pos, neg) = spread
                .get(&(k.provider.clone(), k.model.clone(), k.day))
                .copied()
                .unwrap_or_default();
            let opposite = if v > Decimal::ZERO { neg } else { pos };
            if !opposite.is_zero() && (v + opposite).abs() <= t.limit(r.ledger.cost, r.bill.cost) {
                r.class = Some(Class::TaggingFailure);
                r.note = "same usage under another key or owner on the other side".into();
                continue;
            }
            if r.ledger.present && r.bill.present && tokens_agree(r, &t) {
                match repriced.get(&k) {
                    Some(c) if within(*c, r.bill.cost) => {
                        r.class = Some(Class::StaleRate);
                        r.note = format!("repriced at the rates in force: {}", c.normalize());
                    }
                    other => {
                        r.class = Some(Class::ProviderDelta);
                        r.note = match other {
                            Some(c) => format!(
                                "tokens agree; repriced at the rates in force: {}",
                                c.normalize()
                            ),
                            None => "tokens agree; money differs".into(),
                        };
                    }
                }
                continue;
            }
            let (bt, lt) = (r.bill.total_tokens(), r.ledger.total_tokens());
            let more_in_bill = if r.bill_tokens_known {
                bt > lt || (bt == lt && r.bill.cost > r.ledger.cost)
            } else {
                r.bill.cost > r.ledger.cost
            };
            if more_in_bill {
                r.class = Some(Class::MissingInLedger);
                r.note = if r.bill_tokens_known {
                    format!("bill has {} more tokens", bt.saturating_sub(lt))
                } else {
                    "bill has more money".into()
                };
            } else {
                r.class = Some(Class::MissingInBill);
                r.note = if r.bill_tokens_known {
                    format!("ledger has {} more tokens", lt.saturating_sub(bt))
                } else {
                    "ledger has more money".into()
                };
            }
        }
        self.rec
    }
}

/// Every class within `pct` of the larger side (and zero against zero); true when the bill
/// gave no token counts (nothing contradicts the ledger's).
fn tokens_agree(r: &Row, t: &Thresholds) -> bool {
    !r.bill_tokens_known
        || (0..5).all(|i| {
            let (a, b) = (
                Decimal::from(r.ledger.tokens[i]),
                Decimal::from(r.bill.tokens[i]),
            );
            (a - b).abs() * Decimal::ONE_HUNDRED <= a.max(b) * t.pct
        })
}

/// Compares and flags (phase 1).
pub fn draft(inp: &Inputs<'_>) -> Result<Draft> {
    let maps = RefMaps::new(inp.refdata);
    // Ledger models per provider (a bill name equal to one of them is known).
    let mut ledger_models: BTreeSet<(String, String)> = BTreeSet::new();
    for u in inp.usage {
        ledger_models.insert((u.provider.clone(), u.model.clone()));
    }
    // Which keys the gateway has seen (per provider), and their team from the events.
    let mut key_team: HashMap<(String, String), String> = HashMap::new();
    for u in inp.usage {
        key_team
            .entry((u.provider.clone(), u.api_key_id.clone()))
            .or_insert_with(|| u.team_id.clone());
    }
    // Usage lines per provider; grains; coverage; which types give tokens.
    let mut usage_lines: Vec<&StoredBillLine> = Vec::new();
    let mut bill_other: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut currency: Option<String> = None;
    for b in inp.bills {
        let l = &b.line;
        match &currency {
            None => currency = Some(l.currency.clone()),
            Some(c) if *c != l.currency => {
                return Err(FinanceError::Invalid(format!(
                    "bill line {} of import {} ({}) is in {}, other bills of the period in {c}; reconcile one currency at a time",
                    l.source_line, b.import_id, b.bill_type, l.currency
                )));
            }
            _ => {}
        }
        if l.line_kind == "usage" {
            usage_lines.push(b);
        } else if let Some(c) = &l.cost {
            *bill_other.entry(l.line_kind.clone()).or_default() += dec(c)?;
        }
    }
    let mut grains: BTreeMap<String, bool> = BTreeMap::new();
    let mut coverage: BTreeMap<String, (Timestamp, Timestamp)> = BTreeMap::new();
    let mut has_usage_only: BTreeSet<String> = BTreeSet::new();
    for b in &usage_lines {
        let l = &b.line;
        let g = grains.entry(l.provider.clone()).or_insert(true);
        *g &= l.api_key.as_deref().is_some_and(|k| !k.is_empty());
        let (s, e) = (parse_ts(&l.period_start)?, parse_ts(&l.period_end)?);
        let c = coverage.entry(l.provider.clone()).or_insert((s, e));
        c.0 = c.0.min(s);
        c.1 = c.1.max(e);
        if USAGE_ONLY.contains(&b.bill_type.as_str()) {
            has_usage_only.insert(l.provider.clone());
        }
    }
    let day_of = |t: Timestamp, tz: &TimeZone| civil_day(t, tz);
    let (first_day, last_day) = (
        day_of(inp.start, &inp.bill_tz),
        day_of(
            inp.end
                .checked_sub(jiff::SignedDuration::from_micros(1))
                .unwrap_or(inp.end),
            &inp.bill_tz,
        ),
    );
    // Bill cells: each distinct line identity (provider, model as billed, identifiers, bill
    // type) is resolved once, each distinct charge start turned into a day once, and the
    // lines are summed per (identity, day) before any row key is built.
    type Identity<'l> = (
        &'l str,
        &'l str,
        &'l str,
        &'l str,
        &'l str,
        &'l str,
        &'l str,
        &'l str,
    );
    let mut memo: FxMap<Identity<'_>, usize> = FxMap::default();
    let mut resolved: Vec<Resolved> = Vec::new();
    let mut days: FxMap<&str, Date> = FxMap::default();
    let mut accs: FxMap<(usize, Date), CellAcc> = FxMap::default();
    fn o(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or("")
    }
    for b in &usage_lines {
        let l = &b.line;
        let ident: Identity<'_> = (
            l.provider.as_str(),
            o(&l.model),
            o(&l.api_key),
            o(&l.project),
            o(&l.workspace),
            o(&l.principal),
            o(&l.tags),
            b.bill_type.as_str(),
        );
        let idx = match memo.get(&ident) {
            Some(i) => *i,
            None => {
                let raw_model = l.model.clone().unwrap_or_default();
                let (model, provider, model_known) = match maps.model(&raw_model) {
                    Some((m, p)) => (m.clone(), p.clone(), true),
                    None => {
                        let known =
                            ledger_models.contains(&(l.provider.clone(), raw_model.clone()));
                        (raw_model.clone(), l.provider.clone(), known)
                    }
                };
                let key_grain = grains.get(&l.provider).copied().unwrap_or(true);
                let (kind, id) = identifier(l, &maps);
                let owner = maps.owner(&kind, &id).cloned();
                let (key, team, key_mapped) = if key_grain {
                    let seen = key_team.get(&(provider.clone(), id.clone())).cloned();
                    let team = owner
                        .as_ref()
                        .map(|o| o.0.clone())
                        .or(seen.clone())
                        .unwrap_or_default();
                    (id.clone(), team, owner.is_some() || seen.is_some())
                } else {
                    match owner {
                        Some(o) => (o.0.clone(), o.0, true),
                        None => (format!("unmapped:{kind}:{id}"), String::new(), false),
                    }
                };
                let counts_tokens = !has_usage_only.contains(&l.provider)
                    || USAGE_ONLY.contains(&b.bill_type.as_str());
                resolved.push(Resolved {
                    provider,
                    model,
                    key,
                    team,
                    model_known,
                    key_mapped,
                    counts_tokens,
                });
                memo.insert(ident, resolved.len() - 1);
                resolved.len() - 1
            }
        };
        let day = match days.get(l.period_start.as_str()) {
            Some(d) => *d,
            None => {
                let d = day_of(parse_ts(&l.period_start)?, &inp.bill_tz);
                days.insert(l.period_start.as_str(), d);
                d
            }
        };
        let acc = accs.entry((idx, day)).or_default();
        if resolved[idx].counts_tokens
            && let (Some(c), Some(n)) = (l.token_class.as_deref().and_then(class_index), l.tokens)
        {
            acc.tokens[c] += n;
            acc.has_tokens = true;
        }
        if let Some(c) = l.cost.as_deref() {
            acc.cost += dec(c)?;
            acc.has_cost = true;
        }
    }
    let mut cells: Vec<BillCell> = accs
        .into_iter()
        .map(|((idx, day), acc)| {
            let r = &resolved[idx];
            BillCell {
                key: RowKey {
                    provider: r.provider.clone(),
                    model: r.model.clone(),
                    day,
                    key: r.key.clone(),
                },
                team: r.team.clone(),
                tokens: acc.tokens,
                cost: acc.has_cost.then_some(acc.cost),
                counts_tokens: r.counts_tokens,
                has_tokens: acc.has_tokens,
                model_known: r.model_known,
                key_mapped: r.key_mapped,
            }
        })
        .collect();
    cells.sort_by(|a, b| a.key.cmp(&b.key));
    let billed: BTreeSet<String> = grains.keys().cloned().collect();
    let key_of = |provider: &str, api_key: &str, team: &str| -> String {
        if grains.get(provider).copied().unwrap_or(true) {
            api_key.to_string()
        } else {
            maps.owner("api_key", api_key)
                .map(|o| o.0.clone())
                .unwrap_or_else(|| team.to_string())
        }
    };
    // Ledger sides, by bill-tz day and by company-tz day.
    let mut rows: BTreeMap<RowKey, Row> = BTreeMap::new();
    let mut ledger_company: HashMap<RowKey, Side> = HashMap::new();
    let mut not_billed: BTreeSet<String> = BTreeSet::new();
    for u in inp.usage {
        if !billed.contains(&u.provider) {
            let t = parse_ts(&u.bucket)?;
            if t >= inp.start && t < inp.end {
                not_billed.insert(u.provider.clone());
            }
            continue;
        }
        let t = parse_ts(&u.bucket)?;
        let (cs, ce) = coverage[&u.provider];
        let side = Side {
            tokens: [
                u.totals.input_tokens,
                u.totals.cache_read_tokens,
                u.totals.cache_write_tokens,
                u.totals.cache_write_1h_tokens,
                u.totals.output_tokens,
            ],
            cost: from_scaled_e12(u.totals.cost_e12)?,
            present: true,
        };
        let key = key_of(&u.provider, &u.api_key_id, &u.team_id);
        let cday = day_of(t, &inp.company_tz);
        if cday >= first_day && cday <= last_day {
            ledger_company
                .entry(RowKey {
                    provider: u.provider.clone(),
                    model: u.model.clone(),
                    day: cday,
                    key: key.clone(),
                })
                .or_default()
                .add(&side);
        }
        if t < inp.start || t >= inp.end || t < cs || t >= ce {
            continue;
        }
        let rk = RowKey {
            provider: u.provider.clone(),
            model: u.model.clone(),
            day: day_of(t, &inp.bill_tz),
            key,
        };
        let team = maps
            .owner("api_key", &u.api_key_id)
            .map(|o| o.0.clone())
            .unwrap_or_else(|| u.team_id.clone());
        let row = rows.entry(rk.clone()).or_insert_with(|| new_row(rk, team));
        row.ledger.add(&side);
        row.ledger_unpriced += u.unpriced;
    }
    // Bill sides.
    let mut unknown_model = BTreeSet::new();
    let mut unmapped = BTreeSet::new();
    let mut has_cost: BTreeSet<RowKey> = BTreeSet::new();
    for c in &cells {
        let row = rows
            .entry(c.key.clone())
            .or_insert_with(|| new_row(c.key.clone(), c.team.clone()));
        if row.team.is_empty() {
            row.team = c.team.clone();
        }
        for i in 0..5 {
            row.bill.tokens[i] += c.tokens[i];
        }
        if let Some(cost) = c.cost {
            row.bill.cost += cost;
            has_cost.insert(c.key.clone());
        }
        row.bill.present |= c.counts_tokens || c.cost.is_some();
        row.bill_tokens_known |= c.has_tokens;
        if !c.model_known {
            unknown_model.insert(c.key.clone());
        }
        if !c.key_mapped {
            unmapped.insert(c.key.clone());
        }
    }
    // Usage-only bills: value their tokens at the rate in force on the day.
    for (k, r) in rows.iter_mut() {
        if r.bill.present && !has_cost.contains(k) {
            let day_start = k
                .day
                .to_zoned_datetime(inp.bill_tz.clone())
                .map_err(|e| FinanceError::Invalid(format!("day {}: {e}", k.day)))?
                .timestamp();
            match (inp.value_tokens)(&k.provider, &k.model, day_start, &r.bill.tokens) {
                Some(v) => {
                    r.bill.cost = v;
                    r.bill_valued = true;
                }
                None => {
                    r.note = "bill tokens could not be valued: no rate".into();
                }
            }
        }
    }
    let t = inp.thresholds;
    let mut ledger_total = Decimal::ZERO;
    let mut bill_total = Decimal::ZERO;
    let mut teams: BTreeMap<String, TeamVariance> = BTreeMap::new();
    for r in rows.values_mut() {
        r.flagged = t.exceeded(r.ledger.cost, r.bill.cost);
        ledger_total += r.ledger.cost;
        bill_total += r.bill.cost;
        let tv = teams.entry(r.team.clone()).or_insert_with(|| TeamVariance {
            team: r.team.clone(),
            ..Default::default()
        });
        tv.ledger += r.ledger.cost;
        tv.bill += r.bill.cost;
        tv.flagged_rows += u64::from(r.flagged);
    }
    Ok(Draft {
        rec: Reconciliation {
            period: inp.period.clone(),
            bill_tz: inp.bill_tz_name.clone(),
            company_tz: inp.company_tz_name.clone(),
            currency: currency.unwrap_or_else(|| "USD".into()),
            thresholds: t,
            rows: rows.into_values().collect(),
            teams: teams.into_values().collect(),
            ledger_total,
            bill_total,
            bill_other,
            not_billed: not_billed.into_iter().collect(),
            providers: grains
                .iter()
                .map(|(p, g)| (p.clone(), if *g { "key" } else { "team" }.to_string()))
                .collect(),
        },
        ledger_company,
        unknown_model,
        unmapped,
        grains,
        maps,
    })
}

fn new_row(key: RowKey, team: String) -> Row {
    Row {
        key,
        team,
        ledger: Side::default(),
        bill: Side::default(),
        bill_valued: false,
        bill_tokens_known: false,
        ledger_unpriced: 0,
        flagged: false,
        class: None,
        note: String::new(),
    }
}
