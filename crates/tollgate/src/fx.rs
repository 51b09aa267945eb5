//! One rule for the report currency of every monthly report: `--currency` (default: the
//! config's `reporting.currency`) converted from USD at `--fx-rate`, or at the config's
//! `[[reporting.fx]]` rate for the period.

use anyhow::{Result, bail};
use rust_decimal::Decimal;
use tollgate_core::money::parse_decimal;
use tollgate_core::{Currency, Period};
use tollgate_finance::summary::FxRule;

use crate::Ctx;

/// The requested currency (if any) and the fixed conversion for `period` (None = USD as
/// recorded).
pub fn resolve(
    ctx: &Ctx,
    currency: Option<&str>,
    fx_rate: Option<&str>,
    period: &Period,
) -> Result<(Option<Currency>, Option<FxRule>)> {
    let currency = match currency {
        Some(c) => Some(Currency::parse(c).map_err(|e| anyhow::anyhow!("--currency: {e}"))?),
        None => ctx.config.currency.filter(|c| *c != Currency::USD),
    };
    let fx = match (currency, fx_rate) {
        (None, Some(_)) => bail!("--fx-rate needs --currency (the currency it converts into)"),
        (None, None) => None,
        (Some(to), Some(r)) => {
            let rate = parse_decimal("--fx-rate", r)?;
            if rate <= Decimal::ZERO {
                bail!("--fx-rate {r:?} must be above zero");
            }
            Some(FxRule {
                from: Currency::USD,
                to,
                rate,
                source: Some("--fx-rate".into()),
            })
        }
        (Some(to), None) if to == Currency::USD => None,
        (Some(to), None) => match ctx.config.fx_for(&period.label(), to) {
            Some(f) => Some(FxRule {
                from: f.from,
                to: f.to,
                rate: f.rate,
                source: f.source.clone(),
            }),
            None => bail!(
                "no FX rate for {to} in {}: pass --fx-rate, or add [[reporting.fx]] period = \"{}\" to the config",
                period.label(),
                period.label()
            ),
        },
    };
    Ok((currency, fx))
}
