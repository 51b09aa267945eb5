//! The attribution auditor (`tollgate audit-trace FILE`): does one usage event (canonical JSON)
//! or each GenAI span of an OTLP/JSON trace carry what a defensible chargeback needs?
//!
//! - who: `team_id`, `service`, `feature`, `api_key_id`, and an `attribution_status` of `ok`
//!   or `overridden`;
//! - what: `provider`, `model`, `operation`, token usage, `occurred_at`;
//! - where: `environment` (prod, staging, dev, test);
//! - how much: `cost` with its `currency`, `pricing_status = priced`;
//! - price version: `price_version`.
//!
//! OTLP spans are read through the GenAI semantic conventions (`gen_ai.provider.name` or the
//! older `gen_ai.system`, `gen_ai.request.model` / `gen_ai.response.model`,
//! `gen_ai.operation.name`, `gen_ai.usage.*`) and Tollgate's `tollgate.*` attributes (the
//! names the gateway exports); `deployment.environment.name` and the resource's
//! `service.name` count for `environment` and `service`.

use std::collections::BTreeMap;

use serde_json::Value;

/// One requirement and how the record meets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub group: &'static str,
    pub field: &'static str,
    /// The value found (as text), if any.
    pub value: Option<String>,
    /// Why it does not do, if it does not.
    pub problem: Option<String>,
}

/// The verdict on one record (an event, or one span).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub label: String,
    pub checks: Vec<Check>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.problem.is_none())
    }

    pub fn problems(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.problem.is_some()).collect()
    }
}

/// Audits a file's text: one event JSON object, JSONL events, or an OTLP/JSON trace.
pub fn audit_text(text: &str) -> Result<Vec<Verdict>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the file is empty; give one event (JSON) or an OTLP/JSON trace".into());
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(v) if v.get("resourceSpans").is_some() => audit_otlp(&v),
        Ok(v @ Value::Object(_)) => Ok(vec![audit_event(&v, "event")]),
        Ok(_) => Err("expected a JSON object (an event or an OTLP trace)".into()),
        Err(first) => {
            // JSONL: one event per line.
            let mut out = Vec::new();
            for (i, line) in trimmed.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line).map_err(|e| {
                    if i == 0 {
                        format!("not JSON: {first}")
                    } else {
                        format!("line {}: not JSON: {e}", i + 1)
                    }
                })?;
                out.push(audit_event(&v, &format!("line {}", i + 1)));
            }
            Ok(out)
        }
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Audits one event in the canonical field names.
pub fn audit_event(v: &Value, label: &str) -> Verdict {
    let mut m = BTreeMap::new();
    if let Value::Object(o) = v {
        for (k, val) in o {
            if let Some(t) = text_of(val) {
                m.insert(k.clone(), t);
            }
        }
    }
    let label = match m.get("event_id").or_else(|| m.get("request_id")) {
        Some(id) => format!("{label} {id}"),
        None => label.to_string(),
    };
    verdict(label, &m)
}

fn verdict(label: String, m: &BTreeMap<String, String>) -> Verdict {
    let mut m = m.clone();
    let has_usage = ["input_tokens", "output_tokens", "cache_read_tokens"]
        .iter()
        .any(|k| m.contains_key(*k));
    if has_usage {
        let u = format!(
            "input {} / output {}",
            m.get("input_tokens").map_or("0", |s| s),
            m.get("output_tokens").map_or("0", |s| s)
        );
        m.insert("usage".into(), u);
    }
    let m = &m;
    let mut checks = Vec::new();
    let mut need =
        |group: &'static str, field: &'static str, check: &dyn Fn(&str) -> Option<String>| {
            let value = m.get(field).cloned();
            let problem = match &value {
                None => Some("missing".to_string()),
                Some(v) => check(v),
            };
            checks.push(Check {
                group,
                field,
                value,
                problem,
            });
        };
    let any = |_: &str| None;
    need("who", "team_id", &any);
    need("who", "service", &any);
    need("who", "feature", &any);
    need("who", "api_key_id", &any);
    need("who", "attribution_status", &|s| {
        (s != "ok" && s != "overridden")
            .then(|| format!("{s:?}: the attribution was not accepted as it stands"))
    });
    need("what", "provider", &any);
    need("what", "model", &any);
    need("what", "operation", &any);
    need("what", "occurred_at", &any);
    need("what", "usage", &any);
    need("where", "environment", &|s| {
        s.parse::<tollgate_core::Environment>()
            .err()
            .map(|_| format!("{s:?} is not one of prod, staging, dev, test"))
    });
    need("how much", "cost", &|s| {
        tollgate_core::money::parse_decimal("cost", s)
            .err()
            .map(|_| format!("{s:?} is not an exact decimal"))
    });
    need("how much", "currency", &any);
    need("how much", "pricing_status", &|s| {
        (s != "priced").then(|| format!("{s:?}: the cost is not an exact price of reported usage"))
    });
    need("price version", "price_version", &any);
    Verdict { label, checks }
}

/// OTLP attribute value as text.
fn any_value(v: &Value) -> Option<String> {
    for k in ["stringValue", "intValue", "doubleValue", "boolValue"] {
        if let Some(x) = v.get(k) {
            return text_of(x);
        }
    }
    None
}

fn attrs(list: &Value) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Some(a) = list.as_array() {
        for kv in a {
            if let (Some(k), Some(v)) = (kv["key"].as_str(), any_value(&kv["value"])) {
                m.insert(k.to_string(), v);
            }
        }
    }
    m
}

/// Audits every GenAI span (one with a `gen_ai.*` attribute) of an OTLP/JSON trace.
pub fn audit_otlp(v: &Value) -> Result<Vec<Verdict>, String> {
    let mut out = Vec::new();
    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
        let res = attrs(&rs["resource"]["attributes"]);
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for span in ss["spans"].as_array().into_iter().flatten() {
                let a = attrs(&span["attributes"]);
                if !a.keys().any(|k| k.starts_with("gen_ai.")) {
                    continue;
                }
                let pick = |keys: &[&str]| -> Option<String> {
                    keys.iter()
                        .find_map(|k| a.get(*k).or_else(|| res.get(*k)).cloned())
                };
                let mut m = BTreeMap::new();
                let mut put = |field: &str, keys: &[&str]| {
                    if let Some(v) = pick(keys) {
                        m.insert(field.to_string(), v);
                    }
                };
                put("team_id", &["tollgate.team_id"]);
                put("service", &["tollgate.service", "service.name"]);
                put("feature", &["tollgate.feature"]);
                put("api_key_id", &["tollgate.api_key_id"]);
                put("attribution_status", &["tollgate.attribution_status"]);
                put("provider", &["gen_ai.provider.name", "gen_ai.system"]);
                put("model", &["gen_ai.response.model", "gen_ai.request.model"]);
                put("operation", &["gen_ai.operation.name"]);
                put("input_tokens", &["gen_ai.usage.input_tokens"]);
                put("output_tokens", &["gen_ai.usage.output_tokens"]);
                put(
                    "environment",
                    &[
                        "tollgate.environment",
                        "deployment.environment.name",
                        "deployment.environment",
                    ],
                );
                put("cost", &["tollgate.cost"]);
                put("currency", &["tollgate.currency"]);
                put("pricing_status", &["tollgate.pricing_status"]);
                put("price_version", &["tollgate.price_version"]);
                if let Some(t) = span["startTimeUnixNano"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| span["startTimeUnixNano"].as_u64().map(|n| n.to_string()))
                {
                    m.insert("occurred_at".into(), t);
                }
                let label = format!(
                    "span {} {}",
                    span["spanId"].as_str().unwrap_or("?"),
                    span["name"].as_str().unwrap_or("")
                );
                out.push(verdict(label, &m));
            }
        }
    }
    if out.is_empty() {
        return Err("the trace has no GenAI span (no span with a gen_ai.* attribute)".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const GOOD: &str = r#"{"event_id":"e1","team_id":"t","service":"s","feature":"f","api_key_id":"k",
        "attribution_status":"ok","provider":"openai","model":"gpt-4o","operation":"chat",
        "occurred_at":"2026-07-01T00:00:00Z","input_tokens":5,"output_tokens":3,"environment":"prod",
        "cost":"0.001","currency":"USD","pricing_status":"priced","price_version":"abc@-inf"}"#;

    #[test]
    fn a_complete_event_passes_and_gaps_are_named() {
        let v = audit_text(GOOD).unwrap();
        assert!(v[0].ok(), "{v:?}");
        let bad = GOOD
            .replace(r#""team_id":"t","#, "")
            .replace(
                r#""pricing_status":"priced""#,
                r#""pricing_status":"estimated""#,
            )
            .replace(r#""environment":"prod""#, r#""environment":"production""#);
        let v = audit_text(&bad).unwrap();
        let p: Vec<&str> = v[0].problems().iter().map(|c| c.field).collect();
        assert_eq!(p, vec!["team_id", "environment", "pricing_status"]);
    }

    #[test]
    fn otlp_spans_are_read_through_genai_conventions() {
        let t = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"ranker"}}]},
          "scopeSpans":[{"spans":[{"name":"chat gpt-4o","spanId":"ab","startTimeUnixNano":"1","attributes":[
            {"key":"gen_ai.provider.name","value":{"stringValue":"openai"}},
            {"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},
            {"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},
            {"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}}]},
            {"name":"db query","spanId":"cd","attributes":[]}]}]}]}"#;
        let v = audit_text(t).unwrap();
        assert_eq!(v.len(), 1, "only the GenAI span");
        let p: Vec<&str> = v[0].problems().iter().map(|c| c.field).collect();
        assert_eq!(
            p,
            vec![
                "team_id",
                "feature",
                "api_key_id",
                "attribution_status",
                "environment",
                "cost",
                "currency",
                "pricing_status",
                "price_version"
            ]
        );
    }
}
