//! Demo data: a deterministic, realistic month of LLM usage for `tollgate demo` and benchmarks.
//!
//! [`DemoGenerator`] streams `total` unpriced [`UsageEvent`]s for one period in `occurred_at`
//! order. Everything comes from a small splitmix64 generator seeded by the caller (no clock, no
//! OS randomness, no floats), so the same `(seed, period, total)` yields the same events, byte
//! for byte. Memory is O(hours in the period), never O(total): events are made one at a time.
//!
//! The story the month tells:
//! - five teams, ten features, five B2B tenants; traffic peaks on weekday business hours (UTC)
//!   and is low at night and at weekends, while `nightly-digest` runs 01:00-05:00 UTC (mostly as
//!   batch jobs) and `embeddings-index` runs around the clock;
//! - about 85 % prod, 10 % staging, 5 % dev; about 0.5 % of events lack `team_id` and/or
//!   `feature` (quarantined at ingest); 0.2 % run on `self_hosted/acme-finetune-v2`, which no
//!   rate covers (unpriced at ingest);
//! - about 1 % errors, 0.3 % cancelled streams, 0.5 % retries linked to a failed first attempt;
//! - `query-rewrite` moves from gpt-4o to gpt-4.1-mini on the 20th (cost per call drops);
//! - a runaway `email-drafts` session on one weekday after the 16th: about 1.5 % of that day's
//!   volume in one hour, for the loop-detection alert;
//! - [`demo_price_overrides`]: a negotiated Sonnet rate that gets cheaper at the 16th 00:00Z.
//!
//! Invariants: token classes are disjoint and `reasoning_tokens <= output_tokens`; event ids are
//! UUIDv7 whose random bits embed a bijective hash of the event's index, so they never collide;
//! every other (provider, model) is priced by the shipped catalog plus the override file, and
//! every prompt stays far below the catalog's long-context tiers.

use std::collections::BTreeMap;

use jiff::Timestamp;
use tollgate_core::{
    Attribution, AttributionStatus, Environment, Operation, Period, Pricing, Status, Usage,
    UsageEvent,
};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// The splitmix64 finalizer: a bijection on `u64`.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64, with integer-only helpers so results are identical on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }
    /// Uniform in `0..n` (`0` when `n == 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }
    /// In `lo..=hi`, small values more likely (the smaller of two uniforms).
    fn skewed(&mut self, lo: u64, hi: u64) -> u64 {
        let a = self.range(lo, hi);
        a.min(self.range(lo, hi))
    }
    /// True with probability `per_100k / 100_000`.
    fn chance(&mut self, per_100k: u64) -> bool {
        self.below(100_000) < per_100k
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(s: &mut String, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        s.push(char::from(HEX[((v >> (i * 4)) & 0xf) as usize]));
    }
}

fn hex_id(prefix: &str, v: u64, digits: u32) -> String {
    let mut s = String::with_capacity(prefix.len() + digits as usize);
    s.push_str(prefix);
    push_hex(&mut s, v, digits);
    s
}

/// UUIDv7 text: 48-bit unix milliseconds, version 7, variant `10`, then the 64 bits of `h`
/// (12 in `rand_a`, 52 at the top of `rand_b`) and 10 bits of `extra`.
fn uuid_v7(unix_ms: u64, h: u64, extra: u64) -> String {
    let hi = ((unix_ms & 0xFFFF_FFFF_FFFF) << 16) | (0x7 << 12) | (h >> 52);
    let lo = (0b10 << 62) | ((h & ((1 << 52) - 1)) << 10) | (extra & 0x3FF);
    let mut s = String::with_capacity(36);
    let groups = [
        (hi >> 32, 8),
        (hi >> 16, 4),
        (hi, 4),
        (lo >> 48, 4),
        (lo, 12),
    ];
    for (v, digits) in groups {
        if !s.is_empty() {
            s.push('-');
        }
        push_hex(&mut s, v, digits);
    }
    s
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cache {
    /// No prompt caching.
    None,
    /// Automatic caching (OpenAI, Gemini): reads only, prompts of 1024+ tokens.
    Auto,
    /// Explicit breakpoints (Anthropic): reads, 5-minute writes, and 1-hour writes if enabled.
    Explicit { one_hour: bool },
}

struct Model {
    provider: &'static str,
    /// The catalog's canonical name.
    name: &'static str,
    /// A name callers ask for instead (a dated snapshot or alias the catalog resolves).
    alias: Option<&'static str>,
    cache: Cache,
    /// Percent of output spent reasoning (lo, hi).
    reasoning: (u64, u64),
    ms_per_token: u64,
}

const GPT4O: usize = 0;
const GPT4O_MINI: usize = 1;
const GPT41_MINI: usize = 2;
const GPT5: usize = 3;
const EMBED: usize = 4;
const SONNET: usize = 5;
const HAIKU: usize = 6;
const BEDROCK_HAIKU: usize = 7;
const GEMINI_FLASH: usize = 8;
const SELF_HOSTED: usize = 9;

/// Canonical catalog name of the Sonnet model the override file renegotiates.
const SONNET_NAME: &str = "claude-sonnet-4-5";

#[rustfmt::skip]
const fn m(provider: &'static str, name: &'static str, alias: Option<&'static str>, cache: Cache, reasoning: (u64, u64), ms_per_token: u64) -> Model {
    Model { provider, name, alias, cache, reasoning, ms_per_token }
}

#[rustfmt::skip]
static MODELS: [Model; 10] = [
    m("openai", "gpt-4o", Some("gpt-4o-2024-08-06"), Cache::Auto, (0, 0), 11),
    m("openai", "gpt-4o-mini", Some("gpt-4o-mini-2024-07-18"), Cache::Auto, (0, 0), 7),
    m("openai", "gpt-4.1-mini", Some("gpt-4.1-mini-2025-04-14"), Cache::Auto, (0, 0), 7),
    m("openai", "gpt-5", Some("gpt-5-2025-08-07"), Cache::Auto, (40, 80), 12),
    m("openai", "text-embedding-3-small", None, Cache::None, (0, 0), 0),
    m("anthropic", SONNET_NAME, Some("claude-sonnet-4-5-20250929"), Cache::Explicit { one_hour: true }, (0, 0), 15),
    m("anthropic", "claude-haiku-4-5", Some("claude-haiku-4-5-20251001"), Cache::Explicit { one_hour: true }, (0, 0), 7),
    m("aws.bedrock", "global.anthropic.claude-haiku-4-5-20251001-v1:0", None, Cache::Explicit { one_hour: false }, (0, 0), 8),
    m("gcp.gemini", "gemini-2.5-flash", Some("gemini-2.5-flash-latest"), Cache::Auto, (10, 40), 4),
    m("self_hosted", "acme-finetune-v2", None, Cache::None, (0, 0), 4),
];

#[derive(Clone, Copy)]
enum Shape {
    /// Weekday business hours in UTC, quiet nights and weekends.
    Business = 0,
    /// 01:00-05:00 UTC every night.
    Night = 1,
    /// Around the clock.
    Flat = 2,
}

struct Feature {
    team: usize,
    service: &'static str,
    name: &'static str,
    /// API key stem: `key_<stem>_<environment>`.
    key: &'static str,
    /// Expected share of all events, per 10,000.
    weight: u64,
    shape: Shape,
    /// B2B traffic: prod events carry a tenant.
    b2b: bool,
    users: bool,
    /// Chat-like: events carry a `session_id`.
    chat: bool,
    stream_pct: u64,
    /// Total prompt tokens (all input classes) and output tokens, `lo..=hi`.
    input: (u64, u64),
    output: (u64, u64),
    /// Percent of the prompt served from cache on a hit.
    cache_pct: u64,
    /// (weight, model)
    models: &'static [(u64, usize)],
}

const SMART_SEARCH: usize = 0;
const QUERY_REWRITE: usize = 1;
const TICKET_REPLY: usize = 2;
const NIGHTLY_DIGEST: usize = 5;
const EMAIL_DRAFTS: usize = 7;

#[rustfmt::skip]
static FEATURES: [Feature; 10] = [
    Feature { team: 0, service: "search-api", name: "smart-search", key: "search", weight: 2700, shape: Shape::Business,
        b2b: true, users: true, chat: false, stream_pct: 80, input: (1200, 6000), output: (80, 600), cache_pct: 45, models: &[(1, GPT4O)] },
    Feature { team: 0, service: "search-api", name: "query-rewrite", key: "search", weight: 1500, shape: Shape::Business,
        b2b: true, users: true, chat: false, stream_pct: 0, input: (200, 900), output: (50, 160), cache_pct: 0, models: &[(1, GPT4O)] },
    Feature { team: 1, service: "support-bot", name: "ticket-reply", key: "support", weight: 1500, shape: Shape::Business,
        b2b: true, users: true, chat: true, stream_pct: 95, input: (2000, 8000), output: (150, 1200), cache_pct: 66, models: &[(1, SONNET)] },
    Feature { team: 1, service: "support-bot", name: "summarize-thread", key: "support", weight: 900, shape: Shape::Business,
        b2b: true, users: true, chat: false, stream_pct: 0, input: (1500, 8000), output: (100, 500), cache_pct: 30, models: &[(60, HAIKU), (40, BEDROCK_HAIKU)] },
    Feature { team: 2, service: "analytics-worker", name: "report-summary", key: "analytics", weight: 500, shape: Shape::Business,
        b2b: true, users: true, chat: false, stream_pct: 30, input: (2000, 8000), output: (400, 2000), cache_pct: 20, models: &[(50, GPT5), (50, GEMINI_FLASH)] },
    Feature { team: 2, service: "analytics-worker", name: "nightly-digest", key: "analytics", weight: 300, shape: Shape::Night,
        b2b: true, users: false, chat: false, stream_pct: 0, input: (3000, 8000), output: (200, 900), cache_pct: 50, models: &[(1, GPT4O_MINI)] },
    Feature { team: 3, service: "growth-web", name: "onboarding-assistant", key: "growth", weight: 900, shape: Shape::Business,
        b2b: true, users: true, chat: true, stream_pct: 90, input: (600, 4000), output: (80, 700), cache_pct: 35, models: &[(60, GPT4O_MINI), (40, HAIKU)] },
    Feature { team: 3, service: "growth-web", name: "email-drafts", key: "growth", weight: 500, shape: Shape::Business,
        b2b: false, users: true, chat: true, stream_pct: 50, input: (800, 3000), output: (150, 900), cache_pct: 20, models: &[(1, GPT41_MINI)] },
    Feature { team: 4, service: "platform-indexer", name: "embeddings-index", key: "platform", weight: 1180, shape: Shape::Flat,
        b2b: true, users: false, chat: false, stream_pct: 0, input: (200, 8000), output: (0, 0), cache_pct: 0, models: &[(1, EMBED)] },
    Feature { team: 4, service: "platform-api", name: "intent-classify", key: "platform", weight: 20, shape: Shape::Business,
        b2b: false, users: false, chat: false, stream_pct: 0, input: (100, 600), output: (50, 80), cache_pct: 0, models: &[(1, SELF_HOSTED)] },
];
const NF: usize = FEATURES.len();

/// (immutable team id, cost center).
#[rustfmt::skip]
static TEAMS: [(&str, &str); 5] = [
    ("team-search", "CC-1001"), ("team-support", "CC-1002"), ("team-analytics", "CC-1003"),
    ("team-growth", "CC-1004"), ("team-platform", "CC-1005"),
];

/// (tenant, weight, region it is served from).
#[rustfmt::skip]
static TENANTS: [(&str, u64, &str); 5] = [
    ("acme", 35, "us-east-1"), ("globex", 25, "eu-west-1"), ("initech", 18, "us-east-1"),
    ("umbrella", 14, "us-west-2"), ("hooli", 8, "us-west-2"),
];

/// Relative load by UTC hour on a weekday, for [`Shape::Business`].
#[rustfmt::skip]
const BUSINESS: [u64; 24] = [
    22, 18, 15, 14, 15, 20, 32, 50, 72, 90, 100, 100, 88, 95, 100, 100, 92, 80, 62, 50, 42, 36, 30, 26,
];

/// What the weights of one hour-long slot of the period depend on.
#[derive(Default)]
struct SlotInfo {
    start_us: i64,
    span_us: i64,
    hour: usize,
    weekend: bool,
    /// Day-to-day wobble, percent.
    noise: u64,
}

fn shape_load(shape: Shape, s: &SlotInfo) -> u128 {
    let load = match shape {
        Shape::Business => BUSINESS[s.hour] * if s.weekend { 28 } else { 100 } * s.noise,
        Shape::Night => u64::from((1..5).contains(&s.hour)) * 1_000_000,
        Shape::Flat => 10_000 * s.noise,
    };
    u128::from(load) * (s.span_us / 1_000_000) as u128
}

/// `YYYY-MM-DDT00:00:00Z` of day `day` of the period's (first) month.
fn day_of_month(period: &Period, day: u8) -> String {
    let d = period.first_day();
    format!("{:04}-{:02}-{day:02}T00:00:00Z", d.year(), d.month())
}

/// Streams demo events in occurred_at order. Deterministic: same (seed, period, total) -> same
/// events, byte for byte.
pub struct DemoGenerator {
    rng: Rng,
    seed: u64,
    id_key: u64,
    total: u64,
    emitted: u64,
    start_us: i64,
    end_us: i64,
    start: Timestamp,
    /// When `query-rewrite` switches model (the 20th, 00:00Z).
    switch_us: i64,
    shape_total: [u128; 3],
    /// Events per hour-long slot.
    counts: Vec<u64>,
    slot: usize,
    in_slot: u64,
    info: SlotInfo,
    /// Cumulative feature weights of the current slot.
    cum: [u64; NF],
    /// The runaway loop: (slot, events, events still to place).
    spike: Option<(usize, u64, u64)>,
    /// A failed first attempt awaiting its retry: (due, event, feature, model).
    pending: Option<(i64, UsageEvent, usize, usize)>,
}

impl DemoGenerator {
    /// `period` is a month (e.g. `Period::parse("2026-10", "UTC")`); `total` the number of
    /// events to produce (e.g. 60_000 for the demo, 10_000_000 for benchmarks).
    pub fn new(seed: u64, period: &Period, total: u64) -> DemoGenerator {
        let start_us = period.start().as_microsecond();
        let end_us = period.end().as_microsecond();
        let n_slots = usize::try_from((end_us - start_us + HOUR_US - 1) / HOUR_US).unwrap_or(0);
        let day_us = |d| {
            let t = day_of_month(period, d).parse::<Timestamp>();
            t.map_or(i64::MAX, |t| t.as_microsecond())
        };
        let mut g = DemoGenerator {
            rng: Rng(mix64(seed ^ 0x7011_6a7e)),
            seed,
            id_key: mix64(seed.wrapping_add(0x1D5)),
            total,
            emitted: 0,
            start_us,
            end_us,
            start: period.start(),
            switch_us: day_us(20),
            shape_total: [0; 3],
            counts: Vec::with_capacity(n_slots),
            slot: 0,
            in_slot: 0,
            info: SlotInfo::default(),
            cum: [0; NF],
            spike: None,
            pending: None,
        };
        for k in 0..n_slots {
            let s = g.slot_info(k);
            for shape in [Shape::Business, Shape::Night, Shape::Flat] {
                g.shape_total[shape as usize] += shape_load(shape, &s);
            }
        }
        let weights: Vec<u128> = (0..n_slots)
            .map(|k| u128::from(g.feature_cum(&g.slot_info(k))[NF - 1]))
            .collect();
        let w_total: u128 = weights.iter().sum();
        // The runaway loop: a weekday from the 16th on (not the last day), 14:00-16:59 UTC,
        // with 1.5 % of that day's expected volume.
        let first = day_us(16)
            .max(start_us)
            .saturating_add(DAY_US - 1)
            .div_euclid(DAY_US);
        let days: Vec<i64> = (first..end_us.div_euclid(DAY_US) - 1)
            .filter(|d| (d + 3).rem_euclid(7) < 5)
            .collect();
        let mut spike_n = 0;
        if !days.is_empty() && w_total > 0 {
            let day = days[g.rng.below(days.len() as u64) as usize];
            let at = day * DAY_US + (14 + g.rng.below(3) as i64) * HOUR_US;
            let day_w: u128 = (0..n_slots)
                .filter(|&k| g.slot_info(k).start_us.div_euclid(DAY_US) == day)
                .map(|k| weights[k])
                .sum();
            spike_n = (u128::from(total) * day_w * 15 / (w_total * 1000)) as u64;
            g.spike = Some((((at - start_us) / HOUR_US) as usize, spike_n, spike_n));
        }
        // Exact allocation of the other events to slots, by cumulative weight.
        let (normal, mut cum_w, mut prev) = (u128::from(total - spike_n), 0u128, 0u64);
        for (k, w) in weights.iter().enumerate() {
            cum_w += w;
            let c = (normal * cum_w).checked_div(w_total).unwrap_or(0) as u64;
            let extra = g.spike.map_or(0, |s| if s.0 == k { s.1 } else { 0 });
            g.counts.push(c - prev + extra);
            prev = c;
        }
        if w_total == 0 {
            g.total = 0;
        } else {
            g.enter_slot(0);
        }
        g
    }

    fn slot_info(&self, k: usize) -> SlotInfo {
        let start_us = self.start_us + k as i64 * HOUR_US;
        let day = start_us.div_euclid(DAY_US);
        SlotInfo {
            start_us,
            span_us: HOUR_US.min(self.end_us - start_us),
            hour: (start_us.rem_euclid(DAY_US) / HOUR_US) as usize,
            weekend: (day + 3).rem_euclid(7) >= 5,
            noise: 92 + mix64(self.seed ^ (day as u64).wrapping_mul(GOLDEN)) % 17,
        }
    }

    /// Cumulative feature weights of a slot; each shape is normalised over the period, so a
    /// feature's share of the month is its `weight`.
    fn feature_cum(&self, s: &SlotInfo) -> [u64; NF] {
        let (mut cum, mut acc) = ([0u64; NF], 0u64);
        for (i, f) in FEATURES.iter().enumerate() {
            let w = (u128::from(f.weight) * shape_load(f.shape, s)) << 40;
            acc += w
                .checked_div(self.shape_total[f.shape as usize])
                .unwrap_or(0) as u64;
            cum[i] = acc;
        }
        cum
    }

    fn enter_slot(&mut self, k: usize) {
        self.slot = k;
        self.info = self.slot_info(k);
        self.cum = self.feature_cum(&self.info);
        self.in_slot = 0;
    }

    /// An index drawn with the given weights.
    fn pick(&mut self, weights: impl Iterator<Item = u64> + Clone) -> usize {
        let mut r = self.rng.below(weights.clone().sum());
        for (i, w) in weights.enumerate() {
            if r < w {
                return i;
            }
            r -= w;
        }
        0
    }

    fn next_id(&mut self, t_us: i64) -> String {
        let h = mix64(self.emitted ^ self.id_key);
        uuid_v7((t_us / 1000) as u64, h, self.rng.next())
    }

    /// A new event; `spike` is the iteration number of the runaway loop, if it is one.
    fn event(&mut self, t_us: i64, spike: Option<u64>) -> UsageEvent {
        let r = &mut self.rng;
        let f = match spike {
            Some(_) => EMAIL_DRAFTS,
            None => {
                let x = r.below(self.cum[NF - 1]);
                self.cum.iter().position(|c| x < *c).unwrap_or(0)
            }
        };
        let feat = &FEATURES[f];
        let env = match (spike, r.below(100)) {
            (Some(_), _) | (None, 0..=84) => Environment::Prod,
            (_, 85..=94) => Environment::Staging,
            _ => Environment::Dev,
        };
        let tenant =
            (feat.b2b && env == Environment::Prod).then(|| self.pick(TENANTS.iter().map(|t| t.1)));
        let r = &mut self.rng;
        let person = match spike {
            Some(_) => mix64(self.seed ^ 0x5b1e),
            None => mix64(self.seed ^ ((tenant.unwrap_or(9) as u64) << 32) ^ r.skewed(0, 1999)),
        };
        let user = feat.users.then(|| hex_id("u_", person, 12));
        // One session per user, feature and hour; the runaway loop keeps its one session.
        let hour = if spike.is_some() { 0 } else { self.slot as u64 };
        let session_key = mix64(person ^ ((f as u64) << 56) ^ hour.wrapping_mul(GOLDEN));
        let session = feat.chat.then(|| hex_id("s_", session_key, 16));
        let model = match f {
            QUERY_REWRITE if t_us >= self.switch_us => GPT41_MINI,
            _ => feat.models[self.pick(feat.models.iter().map(|m| m.0))].1,
        };
        let (md, (team, cc), r) = (&MODELS[model], TEAMS[feat.team], &mut self.rng);
        let mut tags = BTreeMap::new();
        if f == SMART_SEARCH && env == Environment::Prod && r.chance(25_000) {
            tags.insert("experiment".to_string(), "rerank-v2".to_string());
        } else if f == TICKET_REPLY {
            let channel = if r.chance(40_000) { "email" } else { "chat" };
            tags.insert("channel".to_string(), channel.to_string());
        }
        let model_requested = match (md.alias, r.below(10)) {
            (Some(a), 0..=4) => Some(a.to_string()),
            (_, 5..=7) => Some(md.name.to_string()),
            _ => None,
        };
        let (operation, service_tier) = if model == EMBED {
            (Operation::Embeddings, None)
        } else if f == NIGHTLY_DIGEST && r.chance(70_000) {
            (Operation::Batch, Some("batch".to_string()))
        } else if md.reasoning.0 > 0 && md.provider == "openai" {
            (Operation::Responses, None)
        } else {
            (Operation::Chat, None)
        };
        let streamed = spike.is_none()
            && matches!(operation, Operation::Chat | Operation::Responses)
            && r.chance(feat.stream_pct * 1000);
        let mut trace = hex_id("", r.next(), 16);
        push_hex(&mut trace, r.next(), 16);
        let (request, span) = (r.next(), r.next());
        let key = ["key_", feat.key, "_", env.as_str()].concat();
        let mut ev = UsageEvent {
            event_id: self.next_id(t_us),
            request_id: Some(hex_id("req_", request, 16)),
            attempt: 1,
            parent_request_id: None,
            occurred_at: Timestamp::from_microsecond(t_us).unwrap_or(self.start),
            completed_at: None,
            trace_id: Some(trace),
            span_id: Some(hex_id("", span, 16)),
            session_id: session,
            attribution: Attribution {
                team_id: Some(team.to_string()),
                cost_center: Some(cc.to_string()),
                service: Some(feat.service.to_string()),
                feature: Some(feat.name.to_string()),
                environment: Some(env),
                tenant_id: tenant.map(|t| TENANTS[t].0.to_string()),
                user_id: user,
                api_key_id: Some(key),
                region: Some(tenant.map_or("us-east-1", |t| TENANTS[t].2).to_string()),
                tags,
            },
            attribution_status: AttributionStatus::Ok,
            provider: md.provider.to_string(),
            model_requested,
            model: md.name.to_string(),
            operation,
            service_tier,
            status: Status::Ok,
            http_status: None,
            streamed,
            latency_ms: None,
            ttft_ms: None,
            usage: Usage::default(),
            pricing: Pricing::unpriced(),
        };
        let r = &mut self.rng;
        if spike.is_none() && r.chance(500) {
            let a = &mut ev.attribution;
            match r.below(10) {
                0..=4 => (a.team_id, a.cost_center) = (None, None),
                5..=7 => a.feature = None,
                _ => (a.team_id, a.cost_center, a.feature) = (None, None, None),
            }
            ev.attribution_status = AttributionStatus::Quarantined;
        }
        let roll = spike.map_or_else(|| r.below(100_000), |_| u64::MAX);
        let status = match roll {
            0..=699 => Status::UpstreamError,
            700..=1099 => Status::ClientError,
            1100..=1699 if ev.streamed => Status::Cancelled, // ~0.3 % of all events
            _ => Status::Ok,
        };
        // The loop feeds its output back: the prompt grows with every iteration.
        let prompt = spike.map(|k| 1800 + k * 6000 / self.spike.map_or(1, |s| s.1.max(1)));
        self.finish(&mut ev, f, model, status, prompt);
        if roll < 500 && self.pending.is_none() {
            let backoff = self.rng.range(200, 2000) as i64 * 1000;
            let due = ev.completed_at.map_or(t_us, |c| c.as_microsecond()) + backoff;
            self.pending = Some((due, ev.clone(), f, model));
        }
        ev
    }

    /// The second attempt of a failed request: same trace and attribution, linked by
    /// `parent_request_id`.
    fn retry(
        &mut self,
        (_, mut ev, f, model): (i64, UsageEvent, usize, usize),
        t_us: i64,
    ) -> UsageEvent {
        ev.event_id = self.next_id(t_us);
        ev.parent_request_id = ev.request_id.take();
        ev.request_id = Some(hex_id("req_", self.rng.next(), 16));
        ev.span_id = Some(hex_id("", self.rng.next(), 16));
        ev.attempt = 2;
        ev.occurred_at = Timestamp::from_microsecond(t_us).unwrap_or(self.start);
        self.finish(&mut ev, f, model, Status::Ok, None);
        ev
    }

    /// Sets status, usage, latency and completion time. `prompt` fixes the prompt size.
    fn finish(
        &mut self,
        ev: &mut UsageEvent,
        f: usize,
        model: usize,
        status: Status,
        prompt: Option<u64>,
    ) {
        let (feat, md, r) = (&FEATURES[f], &MODELS[model], &mut self.rng);
        let mut u = Usage::default();
        let (http, latency, ttft) = match status {
            Status::UpstreamError => {
                let code = match (md.provider, r.chance(70_000)) {
                    ("anthropic", _) => 529,
                    (_, true) => 500,
                    _ => 503,
                };
                (code, r.range(120, 2500), None)
            }
            Status::ClientError => {
                let code = if r.chance(80_000) { 429 } else { 400 };
                (code, r.range(15, 180), None)
            }
            Status::Ok | Status::Cancelled => {
                let total_in = prompt.unwrap_or_else(|| r.skewed(feat.input.0, feat.input.1));
                let pct = feat.cache_pct;
                match md.cache {
                    Cache::None => {}
                    Cache::Auto if pct > 0 && total_in >= 1024 && r.chance(75_000) => {
                        let p = r.range(pct.saturating_sub(15), pct + 15);
                        u.cache_read_tokens = total_in * p / 100 / 128 * 128;
                    }
                    Cache::Auto => {}
                    Cache::Explicit { one_hour } => {
                        let prefix = total_in * r.range(pct.saturating_sub(10), pct + 10) / 100;
                        match r.below(100) {
                            0..=7 => u.cache_write_tokens = prefix,
                            8..=9 if one_hour => u.cache_write_1h_tokens = prefix,
                            _ if pct == 0 => {}
                            _ => {
                                u.cache_read_tokens = prefix;
                                if feat.chat {
                                    // The newest turn is written for the next one.
                                    u.cache_write_tokens = (total_in - prefix) / 2;
                                }
                            }
                        }
                    }
                }
                u.input_tokens = total_in - u.total_input();
                if model != EMBED {
                    u.output_tokens = r.skewed(feat.output.0, feat.output.1);
                    u.reasoning_tokens =
                        u.output_tokens * r.range(md.reasoning.0, md.reasoning.1) / 100;
                }
                if status == Status::Cancelled {
                    u.output_tokens = u.output_tokens * r.range(5, 60) / 100;
                    u.reasoning_tokens = u.reasoning_tokens.min(u.output_tokens);
                }
                let first =
                    r.range(180, 700) + total_in / 25 + u.reasoning_tokens * md.ms_per_token;
                let all =
                    first + (u.output_tokens - u.reasoning_tokens) * md.ms_per_token + r.below(200);
                if ev.is_batch() {
                    (200, r.range(15, 300) * 60_000, None)
                } else if model == EMBED {
                    (200, 30 + total_in / 50 + r.below(80), None)
                } else {
                    (200, all, ev.streamed.then_some(first))
                }
            }
        };
        ev.status = status;
        ev.http_status = Some(http);
        ev.latency_ms = Some(latency);
        ev.ttft_ms = ttft;
        ev.usage = u;
        let done = ev.occurred_at.as_microsecond() + latency as i64 * 1000 + r.below(1000) as i64;
        ev.completed_at = Timestamp::from_microsecond(done).ok();
    }
}

impl Iterator for DemoGenerator {
    type Item = UsageEvent;

    fn next(&mut self) -> Option<UsageEvent> {
        if self.emitted >= self.total {
            return None;
        }
        while self.in_slot >= self.counts[self.slot] {
            if self.slot + 1 >= self.counts.len() {
                return None;
            }
            self.enter_slot(self.slot + 1);
        }
        // Event i of n gets a random instant in the i-th n-th of its slot: sorted by design.
        let (i, n, span) = (self.in_slot, self.counts[self.slot], self.info.span_us);
        let lo = (span as u128 * u128::from(i) / u128::from(n)) as u64;
        let hi = (span as u128 * u128::from(i + 1) / u128::from(n)) as u64;
        let t_us = self.info.start_us + (lo + self.rng.below(hi - lo)) as i64;
        self.in_slot += 1;
        let spike = match &mut self.spike {
            // Selection sampling: exactly `n` of the slot's events belong to the loop.
            Some((slot, n_loop, left)) if *slot == self.slot && self.rng.below(n - i) < *left => {
                *left -= 1;
                Some(*n_loop - *left)
            }
            _ => None,
        };
        let ev = match (spike, self.pending.take_if(|p| p.0 <= t_us)) {
            (Some(k), p) => {
                self.pending = p;
                self.event(t_us, Some(k))
            }
            (None, Some(p)) => self.retry(p, t_us),
            (None, None) => self.event(t_us, None),
        };
        self.emitted += 1;
        Some(ev)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.total - self.emitted).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// The override rate file the demo installs: a negotiated Sonnet price (10 % off the list
/// price) that drops at `YYYY-MM-16T00:00:00Z` of the period's month with a renewed contract
/// (20 % off), so that month's Sonnet usage is split at that instant.
pub fn demo_price_overrides(period: &Period) -> String {
    let split = day_of_month(period, 16);
    format!(
        r#"# Tollgate demo: negotiated Anthropic rates, cheaper from the 16th.
[[rate]]
provider = "anthropic"
model = "{SONNET_NAME}"
effective_to = "{split}"
currency = "USD"
input_per_mtok = "2.7"
cache_read_per_mtok = "0.27"
cache_write_per_mtok = "3.375"
cache_write_1h_per_mtok = "5.4"
output_per_mtok = "13.5"
batch_multiplier = "0.5"
source = "demo negotiated rate"

[[rate]]
provider = "anthropic"
model = "{SONNET_NAME}"
effective_from = "{split}"
currency = "USD"
input_per_mtok = "2.4"
cache_read_per_mtok = "0.24"
cache_write_per_mtok = "3"
cache_write_1h_per_mtok = "4.8"
output_per_mtok = "12"
batch_multiplier = "0.5"
source = "demo renewed contract"
"#
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use tollgate_core::event::parse_json_event;
    use tollgate_core::{Pricer, RateBook};

    use super::*;

    fn oct() -> Period {
        Period::parse("2026-10", "UTC").unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn books() -> Pricer {
        let o = RateBook::parse("demo overrides", &demo_price_overrides(&oct())).unwrap();
        Pricer::new(vec![o, Pricer::catalog().unwrap()])
    }

    #[test]
    fn same_arguments_give_the_same_events_byte_for_byte() {
        let json = |seed| -> Vec<String> {
            let events = DemoGenerator::new(seed, &oct(), 60_000).take(5_000);
            events.map(|e| e.to_json()).collect()
        };
        assert_eq!(json(42), json(42));
        assert_ne!(json(42), json(43));
    }

    #[test]
    fn events_are_ordered_in_the_period_valid_and_exactly_counted() {
        let cases = [
            ("2026-10", "UTC", 60_000),
            ("2026-10", "Asia/Almaty", 3_000),
            ("2026-10", "America/New_York", 1),
            ("2026-10", "UTC", 0),
            ("2026-W43", "Europe/Berlin", 2_000),
            ("2026-10-28", "Asia/Kathmandu", 500),
        ];
        for (spec, tz, total) in cases {
            let p = Period::parse(spec, tz).unwrap();
            let mut prev = p.start();
            let mut n = 0;
            for e in DemoGenerator::new(3, &p, total) {
                assert!(p.contains(e.occurred_at) && prev <= e.occurred_at);
                assert!(e.completed_at.unwrap() >= e.occurred_at);
                assert!(e.usage.reasoning_tokens <= e.usage.output_tokens);
                assert_eq!(e.pricing, Pricing::unpriced());
                assert_eq!(parse_json_event(&e.to_json()).unwrap(), e, "round trip");
                if e.status != Status::Ok && e.status != Status::Cancelled {
                    assert_eq!(e.usage.total_input() + e.usage.output_tokens, 0);
                }
                if e.operation == Operation::Embeddings {
                    assert_eq!(e.usage.output_tokens, 0);
                }
                if e.ttft_ms.is_some() {
                    assert!(e.streamed && e.ttft_ms <= e.latency_ms);
                }
                prev = e.occurred_at;
                n += 1;
            }
            assert_eq!(n, total, "{spec} {tz}");
        }
    }

    #[test]
    fn event_ids_are_unique_uuidv7() {
        let mut seen = HashSet::new();
        for e in DemoGenerator::new(9, &oct(), 200_000) {
            let id = e.event_id.as_str();
            let ms = u64::from_str_radix(&id[..8], 16).unwrap() << 16
                | u64::from_str_radix(&id[9..13], 16).unwrap();
            assert_eq!(ms as i64, e.occurred_at.as_millisecond());
            assert_eq!(&id[14..15], "7");
            assert!("89ab".contains(&id[19..20]));
            assert!(seen.insert(e.event_id), "duplicate id");
        }
    }

    #[test]
    fn overrides_parse_and_split_at_the_16th() {
        let p = books();
        let at = |t| p.find("anthropic", SONNET_NAME, ts(t)).unwrap();
        let (before, after) = (at("2026-10-15T23:59:59Z"), at("2026-10-16T00:00:00Z"));
        assert_ne!(before.version, after.version);
        assert_eq!(after.effective_from, Some(ts("2026-10-16T00:00:00Z")));
        assert_eq!(before.source.as_deref(), Some("demo negotiated rate"));
        let feb = demo_price_overrides(&Period::parse("2027-02", "Asia/Almaty").unwrap());
        assert!(feb.contains("effective_from = \"2027-02-16T00:00:00Z\""));
    }

    #[test]
    fn every_model_is_priced_except_the_self_hosted_one() {
        let p = books();
        let (mut unpriced, mut batch, mut versions) = (0, 0, HashSet::new());
        for mut e in DemoGenerator::new(5, &oct(), 60_000) {
            let unknown =
                (e.provider.as_str(), e.model.as_str()) == ("self_hosted", "acme-finetune-v2");
            unpriced += u32::from(unknown);
            if unknown && unpriced > 1 {
                continue; // (an unknown model costs a slow "did you mean" search)
            }
            let found = p.find(&e.provider, &e.model, e.occurred_at);
            assert_eq!(found.is_err(), unknown, "{}/{}", e.provider, e.model);
            // Every class the usage has is priced (and batch has a multiplier).
            let priced = p.price_event(&mut e);
            assert_eq!(priced.is_err(), unknown, "{priced:?}");
            batch += u32::from(e.is_batch());
            if e.model == SONNET_NAME {
                versions.insert(e.pricing.price_version.clone());
            }
        }
        for md in &MODELS[..SELF_HOSTED] {
            let rate = p
                .find(md.provider, md.name, ts("2026-10-10T00:00:00Z"))
                .unwrap();
            assert!(
                rate.tiers.iter().all(|(t, _)| *t >= 10_000),
                "{}: tier",
                md.name
            );
        }
        assert!((60..=240).contains(&unpriced), "{unpriced}");
        assert!(batch > 100, "{batch}");
        assert_eq!(versions.len(), 2, "Sonnet usage splits at the 16th");
    }

    #[test]
    fn shares_match_the_story() {
        let events: Vec<UsageEvent> = DemoGenerator::new(11, &oct(), 50_000).collect();
        let share = |f: &dyn Fn(&UsageEvent) -> bool| {
            events.iter().filter(|e| f(e)).count() as f64 / events.len() as f64
        };
        let q = share(&|e| e.attribution_status == AttributionStatus::Quarantined);
        assert!((0.002..=0.01).contains(&q), "quarantined {q}");
        let prod = share(&|e| e.attribution.environment == Some(Environment::Prod));
        assert!((0.82..=0.88).contains(&prod), "prod {prod}");
        let err = share(&|e| matches!(e.status, Status::UpstreamError | Status::ClientError));
        assert!((0.007..=0.015).contains(&err), "errors {err}");
        let cancelled = share(&|e| e.status == Status::Cancelled);
        assert!((0.001..=0.005).contains(&cancelled), "{cancelled}");
        // Retries follow a failed first attempt with the same trace.
        let failed = events.iter().filter(|e| e.status == Status::UpstreamError);
        let failed: HashMap<_, _> = failed.map(|e| (e.request_id.clone(), e)).collect();
        let retries: Vec<_> = events.iter().filter(|e| e.attempt == 2).collect();
        assert!((100..=400).contains(&retries.len()), "{}", retries.len());
        for r in &retries {
            let first = failed[&r.parent_request_id];
            assert!(first.completed_at.unwrap() < r.occurred_at && first.trace_id == r.trace_id);
        }
        // The model switch on the 20th.
        let switch = ts("2026-10-20T00:00:00Z");
        for e in events
            .iter()
            .filter(|e| e.attribution.feature.as_deref() == Some("query-rewrite"))
        {
            let expected = if e.occurred_at < switch {
                "gpt-4o"
            } else {
                "gpt-4.1-mini"
            };
            assert_eq!(e.model, expected);
        }
        // The runaway session: one email-drafts session, ~1.5 % of its day, in one hour.
        let mut sessions: HashMap<&str, Vec<&UsageEvent>> = HashMap::new();
        for e in &events {
            if let Some(s) = &e.session_id {
                sessions.entry(s).or_default().push(e);
            }
        }
        let top = sessions.values().max_by_key(|v| v.len()).unwrap();
        let (a, b) = (top[0].occurred_at, top[top.len() - 1].occurred_at);
        assert!(top.len() > 15 && (b - a).as_hours() == 0 && a >= ts("2026-10-16T00:00:00Z"));
        assert_eq!(top[0].attribution.feature.as_deref(), Some("email-drafts"));
        let same_day =
            |e: &&UsageEvent| e.occurred_at.as_second() / 86_400 == a.as_second() / 86_400;
        let day = events.iter().filter(same_day).count();
        let pct = top.len() as f64 * 100.0 / day as f64;
        assert!((1.2..=1.8).contains(&pct), "spike is {pct}% of its day");
        // Business hours are busier than nights, weekdays than weekends.
        let hour = |at: &str| {
            events
                .iter()
                .filter(|e| e.occurred_at.to_string().starts_with(at))
                .count()
        };
        let (wed_day, wed_night, sat_day) = (
            hour("2026-10-14T14"),
            hour("2026-10-14T03"),
            hour("2026-10-17T14"),
        );
        assert!(
            wed_day > 2 * wed_night && wed_day > 2 * sat_day,
            "{wed_day} {wed_night} {sat_day}"
        );
    }
}
