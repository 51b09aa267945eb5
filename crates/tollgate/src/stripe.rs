//! Delivery of finalized invoices to Stripe: one invoice item per line (and one for tax), then
//! a draft invoice that collects them. Plain HTTPS calls to Stripe's REST API (form-encoded),
//! with an `Idempotency-Key` on every request so that pushing twice creates nothing twice.

use anyhow::{Context, Result, bail};
use rust_decimal::Decimal;
use tollgate_finance::invoice::Invoice;

/// Where to send, and with which key.
pub struct StripeTarget {
    pub base_url: String,
    pub api_key: String,
    pub customer: String,
}

/// What Stripe answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub invoice_id: String,
    pub item_ids: Vec<String>,
}

/// An amount in the currency's minor units (Stripe's integer `amount`).
fn minor_units(amount: Decimal, minor: u32) -> Result<i64> {
    let scaled = amount * Decimal::from(10i64.pow(minor));
    if scaled.fract() != Decimal::ZERO {
        bail!("amount {amount} is not a whole number of minor units");
    }
    i64::try_from(scaled.mantissa() / 10i128.pow(scaled.scale()))
        .context("amount out of range for Stripe")
}

fn form(pairs: &[(String, String)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn post(
    t: &StripeTarget,
    path: &str,
    idem: &str,
    body: &[(String, String)],
) -> Result<serde_json::Value> {
    let url = format!("{}{path}", t.base_url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {}", t.api_key))
        .header("Idempotency-Key", idem)
        .header("Stripe-Version", "2024-06-20")
        .content_type("application/x-www-form-urlencoded")
        .send(form(body))
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer of POST {url}"))?;
    if !(200..300).contains(&status) {
        // Stripe's error shape: {"error": {"message": ...}}; never echo the key.
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(String::from))
            .unwrap_or(text);
        bail!("Stripe answered {status} to POST {path}: {msg}");
    }
    serde_json::from_str(&text)
        .with_context(|| format!("Stripe's answer to POST {path} is not JSON"))
}

/// Pushes a finalized invoice: invoice items (lines with an amount, and tax), then a draft
/// invoice that includes them.
pub fn push(t: &StripeTarget, inv: &Invoice) -> Result<Pushed> {
    let cur = inv.tenant.currency;
    let minor = cur.minor_units();
    let currency = cur.as_str().to_ascii_lowercase();
    let start = inv.period.start().as_second().to_string();
    let end = inv.period.end().as_second().to_string();
    let mut items = Vec::new();
    let mut charges: Vec<(String, Decimal)> = inv
        .lines
        .iter()
        .filter(|l| !l.amount.is_zero())
        .map(|l| (l.label.clone(), l.amount))
        .collect();
    if let Some(tax) = &inv.tenant.tax
        && !inv.tax_amount.is_zero()
    {
        charges.push((
            format!(
                "{} {}%",
                tax.name,
                (tax.rate * Decimal::new(100, 0)).normalize()
            ),
            inv.tax_amount,
        ));
    }
    for (i, (label, amount)) in charges.iter().enumerate() {
        let body = vec![
            ("customer".to_string(), t.customer.clone()),
            (
                "amount".to_string(),
                minor_units(*amount, minor)?.to_string(),
            ),
            ("currency".to_string(), currency.clone()),
            ("description".to_string(), label.clone()),
            ("period[start]".to_string(), start.clone()),
            ("period[end]".to_string(), end.clone()),
            ("metadata[tollgate_invoice]".to_string(), inv.number.clone()),
            ("metadata[tollgate_line]".to_string(), (i + 1).to_string()),
        ];
        let v = post(
            t,
            "/v1/invoiceitems",
            &format!("tollgate-{}-item-{}", inv.number, i + 1),
            &body,
        )?;
        items.push(v["id"].as_str().unwrap_or_default().to_string());
    }
    let body = vec![
        ("customer".to_string(), t.customer.clone()),
        ("auto_advance".to_string(), "false".to_string()),
        ("collection_method".to_string(), "send_invoice".to_string()),
        ("days_until_due".to_string(), "30".to_string()),
        (
            "pending_invoice_items_behavior".to_string(),
            "include".to_string(),
        ),
        (
            "description".to_string(),
            format!("AI usage {} ({})", inv.period.label(), inv.number),
        ),
        ("metadata[tollgate_invoice]".to_string(), inv.number.clone()),
        (
            "metadata[tollgate_total]".to_string(),
            inv.total.to_string(),
        ),
    ];
    let v = post(
        t,
        "/v1/invoices",
        &format!("tollgate-{}-invoice", inv.number),
        &body,
    )?;
    Ok(Pushed {
        invoice_id: v["id"].as_str().unwrap_or_default().to_string(),
        item_ids: items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_become_minor_units_exactly() {
        let d = |s: &str| Decimal::from_str_exact(s).unwrap();
        assert_eq!(minor_units(d("99.20"), 2).unwrap(), 9920);
        assert_eq!(minor_units(d("-638.88"), 2).unwrap(), -63888);
        assert_eq!(minor_units(d("101"), 0).unwrap(), 101);
        assert!(minor_units(d("0.005"), 2).is_err());
    }

    #[test]
    fn forms_are_url_encoded() {
        let f = form(&[("metadata[x]".into(), "a b&c".into())]);
        assert_eq!(f, "metadata%5Bx%5D=a+b%26c");
    }
}
