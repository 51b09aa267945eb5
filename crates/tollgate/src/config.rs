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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    data_dir: Option<String>,
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
        Ok(Config {
            path: Some(path.to_path_buf()),
            data_dir: raw.ledger.data_dir.map(|d| base.join(d)),
            price_overrides: raw.pricing.overrides.iter().map(|p| base.join(p)).collect(),
            timezone,
            currency,
            fx,
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
