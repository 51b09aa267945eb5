//! The configuration file (`tollgate.toml`): raw serde types with `deny_unknown_fields`,
//! converted into validated types whose errors name the key path.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rust_decimal::Decimal;
use serde::Deserialize;
use tollgate_core::{Currency, money::parse_decimal, period::time_zone};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    ledger: RawLedger,
    #[serde(default)]
    pricing: RawPricing,
    #[serde(default)]
    reporting: RawReporting,
    #[serde(default)]
    tenants: std::collections::BTreeMap<String, RawTenant>,
    #[serde(default)]
    stripe: RawStripe,
    #[serde(default)]
    slack: RawSlack,
    #[serde(default)]
    cfo: RawCfo,
    #[serde(default)]
    gateway: tollgate_gateway::RawGateway,
    #[serde(default)]
    reconcile: RawReconcile,
    #[serde(default)]
    bills: crate::cmd_bills::BillsConfig,
    alerts: Option<RawAlerts>,
    #[serde(default)]
    schedules: Vec<crate::cmd_schedule::RawSchedule>,
}

/// `[alerts]`: thresholds of `tollgate alerts check` (decimal strings; ratios as fractions).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    daily_jump: Option<String>,
    min_daily_spend: Option<String>,
    cache_hit_drop: Option<String>,
    reasoning_surge: Option<String>,
    cost_per_call_jump: Option<String>,
    min_calls: Option<u64>,
    runaway_calls_per_hour: Option<u64>,
    off_hours_share: Option<String>,
    off_hours_min_calls: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReconcile {
    /// Flag a row above this percent of the larger side (decimal string, default "3").
    threshold_pct: Option<String>,
    /// ... and above this amount (decimal string, default "500").
    threshold_amount: Option<String>,
    /// The bills' time zone (default UTC).
    bill_timezone: Option<String>,
}

/// `[reconcile]`: when a reconciliation row is flagged, and the bills' time zone.
#[derive(Debug, Clone, Default)]
pub struct ReconcileConfig {
    pub threshold_pct: Option<Decimal>,
    pub threshold_amount: Option<Decimal>,
    pub bill_timezone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCfo {
    /// Monthly spend target in the report currency (decimal string).
    monthly_target: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    /// Environment variable holding the incoming-webhook URL (a secret).
    webhook_url_env: Option<String>,
    /// Link shown at the end of the digest.
    dashboard_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStripe {
    /// Base URL of Stripe's REST API (default https://api.stripe.com).
    base_url: Option<String>,
    /// Environment variable holding the secret key (default STRIPE_API_KEY).
    api_key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTax {
    name: String,
    rate: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    feature: String,
    label: Option<String>,
    unit: String,
    price: String,
    #[serde(default)]
    show_sessions: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    up_to_tokens: Option<u64>,
    price_per_1k: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    currency: Option<String>,
    timezone: Option<String>,
    number: String,
    tax: Option<RawTax>,
    plan: String,
    #[serde(default)]
    lines: Vec<RawLine>,
    margin: Option<String>,
    fee: Option<String>,
    included_tokens: Option<u64>,
    overage_price: Option<String>,
    #[serde(default)]
    tiers: Vec<RawTier>,
    minimum: Option<String>,
    stripe_customer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    data_dir: Option<String>,
    /// `sqlite` (default) or `clickhouse`.
    backend: Option<String>,
    /// ClickHouse HTTP URL (default http://127.0.0.1:8123).
    url: Option<String>,
    /// ClickHouse database (default `tollgate`).
    database: Option<String>,
    /// ClickHouse user (default: the server's default user).
    user: Option<String>,
    /// Environment variable holding the ClickHouse password (default
    /// TOLLGATE_CLICKHOUSE_PASSWORD).
    password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPricing {
    #[serde(default)]
    overrides: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReporting {
    timezone: Option<String>,
    currency: Option<String>,
    #[serde(default)]
    fx: Vec<RawFx>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFx {
    period: String,
    from: Option<String>,
    to: String,
    rate: String,
    source: Option<String>,
}

/// A fixed FX rate for one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FxEntry {
    pub period: String,
    pub from: Currency,
    pub to: Currency,
    pub rate: Decimal,
    pub source: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where the file was read from (None: built-in defaults).
    pub path: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// Rate override files, resolved relative to the config file.
    pub price_overrides: Vec<PathBuf>,
    pub timezone: String,
    pub currency: Option<Currency>,
    pub fx: Vec<FxEntry>,
    /// Billable tenants, by id.
    pub tenants: std::collections::BTreeMap<String, TenantConfig>,
    pub stripe: StripeConfig,
    pub slack: SlackConfig,
    /// The CFO report's monthly target (report currency); `--target` wins.
    pub cfo_monthly_target: Option<Decimal>,
    /// `[ledger] backend = "clickhouse"`: where the ClickHouse ledger is (None: SQLite).
    pub clickhouse: Option<ClickHouseLedgerConfig>,
    pub reconcile: ReconcileConfig,
    /// The `[gateway]` section (`tollgate serve`), validated.
    pub gateway: tollgate_gateway::GatewayConfig,
    /// `[alerts]` thresholds (None: the defaults).
    pub alerts: Option<tollgate_finance::alerts::AlertThresholds>,
    /// `[[schedules]]`, validated (`tollgate schedule run`).
    pub schedules: Vec<crate::cmd_schedule::Schedule>,
    /// The `[bills]` section (`tollgate bills fetch`).
    pub bills: crate::cmd_bills::BillsConfig,
}

/// The ClickHouse ledger's settings (`[ledger] backend = "clickhouse"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseLedgerConfig {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    /// The environment variable the password is read from (never the file itself).
    pub password_env: String,
}

/// The default environment variable of the ClickHouse password.
pub const CLICKHOUSE_PASSWORD_ENV: &str = "TOLLGATE_CLICKHOUSE_PASSWORD";

fn clickhouse_config(
    l: &RawLedger,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<ClickHouseLedgerConfig>> {
    match l.backend.as_deref().unwrap_or("sqlite") {
        "sqlite" => {
            for (k, v) in [
                ("url", &l.url),
                ("database", &l.database),
                ("user", &l.user),
            ] {
                if v.is_some() {
                    bail!(
                        "{}: only used with backend = \"clickhouse\"; remove it or set the backend",
                        at(&format!("ledger.{k}"))
                    );
                }
            }
            Ok(None)
        }
        "clickhouse" => {
            let url = l
                .url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8123".into());
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!(
                    "{}: {url:?} is not an http:// or https:// URL of ClickHouse's HTTP interface (e.g. http://127.0.0.1:8123)",
                    at("ledger.url")
                );
            }
            let database = l.database.clone().unwrap_or_else(|| "tollgate".into());
            if database.is_empty()
                || !database
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                bail!(
                    "{}: {database:?}: use letters, digits and underscores",
                    at("ledger.database")
                );
            }
            Ok(Some(ClickHouseLedgerConfig {
                url,
                database,
                user: l.user.clone(),
                password_env: l
                    .password_env
                    .clone()
                    .unwrap_or_else(|| CLICKHOUSE_PASSWORD_ENV.into()),
            }))
        }
        other => bail!(
            "{}: {other:?} is not a ledger backend; use \"sqlite\" (default) or \"clickhouse\"",
            at("ledger.backend")
        ),
    }
}

/// Where the weekly digest goes.
#[derive(Debug, Clone, Default)]
pub struct SlackConfig {
    pub webhook_url_env: Option<String>,
    pub dashboard_url: Option<String>,
}

/// A tenant: the invoice model's tenant plus delivery settings.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub tenant: tollgate_finance::invoice::Tenant,
    /// Stripe customer id (`cus_...`) for `invoice --push stripe`.
    pub stripe_customer: Option<String>,
}

/// Where and how to reach Stripe.
#[derive(Debug, Clone, Default)]
pub struct StripeConfig {
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let at = |key: &str| format!("{}: {key}", path.display());
        let timezone = raw.reporting.timezone.unwrap_or_else(|| "UTC".into());
        time_zone(&timezone).map_err(|e| anyhow::anyhow!("{}: {e}", at("reporting.timezone")))?;
        let currency = raw
            .reporting
            .currency
            .map(|c| Currency::parse(&c))
            .transpose()
            .map_err(|e| anyhow::anyhow!("{}: {e}", at("reporting.currency")))?;
        let mut fx = Vec::new();
        for (i, f) in raw.reporting.fx.into_iter().enumerate() {
            let key = |k: &str| at(&format!("reporting.fx[{i}].{k}"));
            tollgate_core::Period::parse(&f.period, "UTC")
                .map_err(|e| anyhow::anyhow!("{}: {e}", key("period")))?;
            let from = match f.from {
                Some(c) => {
                    Currency::parse(&c).map_err(|e| anyhow::anyhow!("{}: {e}", key("from")))?
                }
                None => Currency::USD,
            };
            let to = Currency::parse(&f.to).map_err(|e| anyhow::anyhow!("{}: {e}", key("to")))?;
            let rate = parse_decimal("rate", &f.rate)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key("rate")))?;
            if rate <= Decimal::ZERO {
                bail!("{}: {:?} must be above zero", key("rate"), f.rate);
            }
            fx.push(FxEntry {
                period: f.period,
                from,
                to,
                rate,
                source: f.source,
            });
        }
        let mut tenants = std::collections::BTreeMap::new();
        for (id, t) in raw.tenants {
            let tenant = tenant_config(&id, t, &at)?;
            tenants.insert(id, tenant);
        }
        // Numbers must be unique: two tenants cannot share a pattern without {SEQ}/{TENANT}.
        let fixed: Vec<(&String, &String)> = tenants
            .iter()
            .map(|(id, t)| (id, &t.tenant.number))
            .filter(|(_, n)| !n.contains("{SEQ") && !n.contains("{TENANT}"))
            .collect();
        for (i, (a, n)) in fixed.iter().enumerate() {
            if let Some((b, _)) = fixed[i + 1..].iter().find(|(_, m)| m == n) {
                bail!(
                    "{}: tenants {a} and {b} use the same invoice number pattern {n:?}; add {{TENANT}} or {{SEQ}} to one of them",
                    at("tenants")
                );
            }
        }
        let clickhouse = clickhouse_config(&raw.ledger, &at)?;
        let gateway = tollgate_gateway::GatewayConfig::from_raw(raw.gateway, base)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let reconcile = {
            let r = raw.reconcile;
            let non_negative = |k: &str, v: Option<String>| -> Result<Option<Decimal>> {
                let Some(v) = v else { return Ok(None) };
                let d = parse_decimal(k, &v).map_err(|_| {
                    anyhow::anyhow!(
                        "{}: {v:?} is not a decimal number written as a string",
                        at(&format!("reconcile.{k}"))
                    )
                })?;
                if d < Decimal::ZERO {
                    bail!(
                        "{}: {v:?} must not be negative",
                        at(&format!("reconcile.{k}"))
                    );
                }
                Ok(Some(d))
            };
            if let Some(tz) = &r.bill_timezone {
                time_zone(tz)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", at("reconcile.bill_timezone")))?;
            }
            ReconcileConfig {
                threshold_pct: non_negative("threshold_pct", r.threshold_pct)?,
                threshold_amount: non_negative("threshold_amount", r.threshold_amount)?,
                bill_timezone: r.bill_timezone,
            }
        };
        let alerts = match raw.alerts {
            None => None,
            Some(r) => {
                let mut t = tollgate_finance::alerts::AlertThresholds::default();
                let dec = |k: &str, v: Option<String>, slot: &mut Decimal| -> Result<()> {
                    if let Some(v) = v {
                        *slot = v
                            .trim()
                            .parse::<Decimal>()
                            .ok()
                            .filter(|d| *d >= Decimal::ZERO)
                            .ok_or_else(|| {
                                anyhow::anyhow!(
                                    "{}: {v:?} is not a decimal number of zero or more, written as a string (ratios as fractions: \"0.30\" = 30 %)",
                                    at(&format!("alerts.{k}"))
                                )
                            })?;
                    }
                    Ok(())
                };
                dec("daily_jump", r.daily_jump, &mut t.daily_jump)?;
                dec("min_daily_spend", r.min_daily_spend, &mut t.min_daily_spend)?;
                dec("cache_hit_drop", r.cache_hit_drop, &mut t.cache_hit_drop)?;
                dec("reasoning_surge", r.reasoning_surge, &mut t.reasoning_surge)?;
                dec(
                    "cost_per_call_jump",
                    r.cost_per_call_jump,
                    &mut t.cost_per_call_jump,
                )?;
                dec("off_hours_share", r.off_hours_share, &mut t.off_hours_share)?;
                if let Some(n) = r.min_calls {
                    t.min_calls = n;
                }
                if let Some(n) = r.runaway_calls_per_hour {
                    t.runaway_calls_per_hour = n;
                }
                if let Some(n) = r.off_hours_min_calls {
                    t.off_hours_min_calls = n;
                }
                Some(t)
            }
        };
        let mut schedules = Vec::new();
        for (i, r) in raw.schedules.into_iter().enumerate() {
            schedules.push(
                crate::cmd_schedule::parse(i, r, base, &timezone)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &schedules {
            if !names.insert(s.name.clone()) {
                bail!(
                    "{}: schedules: two schedules are named {:?}; names keep their run state apart",
                    path.display(),
                    s.name
                );
            }
        }
        Ok(Config {
            schedules,
            alerts,
            clickhouse,
            bills: raw.bills,
            reconcile,
            gateway,
            tenants,
            stripe: StripeConfig {
                base_url: raw.stripe.base_url,
                api_key_env: raw.stripe.api_key_env,
            },
            slack: SlackConfig {
                webhook_url_env: raw.slack.webhook_url_env,
                dashboard_url: raw.slack.dashboard_url,
            },
            cfo_monthly_target: match raw.cfo.monthly_target {
                None => None,
                Some(t) => {
                    let v = parse_decimal("monthly_target", &t).map_err(|_| {
                        anyhow::anyhow!(
                            "{}: {t:?} is not a decimal number written as a string",
                            at("cfo.monthly_target")
                        )
                    })?;
                    if v <= Decimal::ZERO {
                        bail!("{}: {t:?} must be above zero", at("cfo.monthly_target"));
                    }
                    Some(v)
                }
            },
            path: Some(path.to_path_buf()),
            data_dir: raw.ledger.data_dir.map(|d| base.join(d)),
            price_overrides: raw.pricing.overrides.iter().map(|p| base.join(p)).collect(),
            timezone,
            currency,
            fx,
        })
    }

    /// A tenant by id, or an error naming the known ones.
    pub fn tenant(&self, id: &str) -> Result<&TenantConfig> {
        self.tenants.get(id).ok_or_else(|| {
            anyhow::anyhow!(
                "tenant {id:?} is not in the config{}; add a [tenants.{id}] table{}",
                self.path
                    .as_ref()
                    .map(|p| format!(" ({})", p.display()))
                    .unwrap_or_else(|| " (no --config given)".into()),
                if self.tenants.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (known: {})",
                        self.tenants.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                }
            )
        })
    }

    /// Built-in defaults (no file).
    pub fn defaults() -> Config {
        Config {
            timezone: "UTC".into(),
            ..Config::default()
        }
    }

    /// The FX rate configured for `period` into `to`, if any.
    pub fn fx_for(&self, period: &str, to: Currency) -> Option<&FxEntry> {
        self.fx.iter().find(|f| f.period == period && f.to == to)
    }
}

fn tenant_config(id: &str, t: RawTenant, at: &dyn Fn(&str) -> String) -> Result<TenantConfig> {
    use tollgate_finance::invoice::{Plan, RateCardLine, Tax, Tenant, Tier, Unit};
    let key = |k: &str| at(&format!("tenants.{id}.{k}"));
    let dec = |k: &str, v: &str| -> Result<Decimal> {
        parse_decimal(k, v).map_err(|_| {
            anyhow::anyhow!(
                "{}: {v:?} is not a decimal number written as a string",
                key(k)
            )
        })
    };
    let non_negative = |k: &str, v: &str| -> Result<Decimal> {
        let d = dec(k, v)?;
        if d < Decimal::ZERO {
            bail!("{}: {v:?} must not be negative", key(k));
        }
        Ok(d)
    };
    let currency = match &t.currency {
        Some(c) => Currency::parse(c).map_err(|e| anyhow::anyhow!("{}: {e}", key("currency")))?,
        None => Currency::USD,
    };
    let timezone = t.timezone.unwrap_or_else(|| "UTC".into());
    time_zone(&timezone).map_err(|e| anyhow::anyhow!("{}: {e}", key("timezone")))?;
    if t.number.trim().is_empty() {
        bail!("{}: the invoice number pattern is empty", key("number"));
    }
    let tax = match t.tax {
        Some(tx) => {
            let rate = dec("tax.rate", &tx.rate)?;
            if rate < Decimal::ZERO || rate > Decimal::ONE {
                bail!(
                    "{}: {:?} must be a decimal between 0 and 1 (0.20 for 20 %)",
                    key("tax.rate"),
                    tx.rate
                );
            }
            Some(Tax {
                name: tx.name,
                rate,
            })
        }
        None => None,
    };
    let plan = match t.plan.as_str() {
        "rate_card" => {
            if t.lines.is_empty() {
                bail!(
                    "{}: a rate_card plan needs [[tenants.{id}.lines]]",
                    key("lines")
                );
            }
            let mut lines = Vec::new();
            for (i, l) in t.lines.into_iter().enumerate() {
                let unit = Unit::parse(&l.unit).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: unknown unit {:?}; use 1k_tokens, request or session",
                        key(&format!("lines[{i}].unit")),
                        l.unit
                    )
                })?;
                if lines.iter().any(|x: &RateCardLine| x.feature == l.feature) {
                    bail!(
                        "{}: feature {:?} has two lines",
                        key(&format!("lines[{i}].feature")),
                        l.feature
                    );
                }
                lines.push(RateCardLine {
                    show_sessions: l.show_sessions,
                    label: l.label.unwrap_or_else(|| l.feature.clone()),
                    feature: l.feature,
                    unit,
                    price: non_negative(&format!("lines[{i}].price"), &l.price)?,
                });
            }
            Plan::RateCard(lines)
        }
        "pass_through" => Plan::PassThrough {
            margin: non_negative(
                "margin",
                t.margin.as_deref().ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: a pass_through plan needs margin (e.g. \"0.20\")",
                        key("margin")
                    )
                })?,
            )?,
            fx: None,
        },
        "flat" => Plan::Flat {
            fee: non_negative(
                "fee",
                t.fee
                    .as_deref()
                    .ok_or_else(|| anyhow::anyhow!("{}: a flat plan needs fee", key("fee")))?,
            )?,
            included_tokens: t.included_tokens.unwrap_or(0),
            overage_per_1k: non_negative(
                "overage_price",
                t.overage_price.as_deref().unwrap_or("0"),
            )?,
        },
        "tiered" => {
            if t.tiers.is_empty() {
                bail!(
                    "{}: a tiered plan needs [[tenants.{id}.tiers]]",
                    key("tiers")
                );
            }
            let mut tiers = Vec::new();
            let mut last = 0u64;
            let n = t.tiers.len();
            for (i, tr) in t.tiers.into_iter().enumerate() {
                match tr.up_to_tokens {
                    Some(u) if u <= last => bail!(
                        "{}: {u} must be above the previous tier's {last}",
                        key(&format!("tiers[{i}].up_to_tokens"))
                    ),
                    Some(u) => last = u,
                    None if i + 1 < n => bail!(
                        "{}: only the last tier may be open-ended",
                        key(&format!("tiers[{i}].up_to_tokens"))
                    ),
                    None => {}
                }
                tiers.push(Tier {
                    up_to_tokens: tr.up_to_tokens,
                    price_per_1k: non_negative(
                        &format!("tiers[{i}].price_per_1k"),
                        &tr.price_per_1k,
                    )?,
                });
            }
            Plan::Tiered(tiers)
        }
        other => bail!(
            "{}: unknown plan {other:?}; use rate_card, pass_through, flat or tiered",
            key("plan")
        ),
    };
    let minimum = t
        .minimum
        .as_deref()
        .map(|m| non_negative("minimum", m))
        .transpose()?;
    Ok(TenantConfig {
        tenant: Tenant {
            id: id.to_string(),
            name: t.name,
            currency,
            timezone,
            number: t.number,
            tax,
            plan,
            minimum,
        },
        stripe_customer: t.stripe_customer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_paths_relative_to_the_file() {
        let c = Config::parse(
            "[ledger]\ndata_dir = \"data\"\n[pricing]\noverrides = [\"neg.toml\"]\n[reporting]\ntimezone = \"Asia/Almaty\"\ncurrency = \"KZT\"\n[[reporting.fx]]\nperiod = \"2026-07\"\nto = \"KZT\"\nrate = \"510.25\"\nsource = \"NBK\"\n",
            Path::new("/etc/tollgate/tollgate.toml"),
        )
        .unwrap();
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/etc/tollgate/data")));
        assert_eq!(
            c.price_overrides,
            vec![PathBuf::from("/etc/tollgate/neg.toml")]
        );
        let kzt = Currency::parse("KZT").unwrap();
        assert_eq!(c.fx_for("2026-07", kzt).unwrap().rate.to_string(), "510.25");
    }

    #[test]
    fn cfo_target_and_delivery_keys() {
        let c = Config::parse(
            "[cfo]\nmonthly_target = \"50000.00\"\n[slack]\ndashboard_url = \"https://x\"\n[stripe]\napi_key_env = \"SK\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.cfo_monthly_target.unwrap().to_string(), "50000.00");
        assert_eq!(c.slack.dashboard_url.as_deref(), Some("https://x"));
        assert_eq!(c.stripe.api_key_env.as_deref(), Some("SK"));
        let e = Config::parse("[cfo]\nmonthly_target = \"0\"\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cfo.monthly_target"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let p = Path::new("t.toml");
        let e = Config::parse("[reporting]\ntimezone = \"Mars/Base\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reporting.timezone") && e.contains("Mars/Base"),
            "{e}"
        );
        let e = Config::parse("[reporting]\nzone = \"UTC\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("zone"), "{e}");
        let e = Config::parse(
            "[[reporting.fx]]\nperiod = \"2026-07\"\nto = \"KZT\"\nrate = \"-1\"\n",
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("reporting.fx[0].rate"), "{e}");
    }
}
