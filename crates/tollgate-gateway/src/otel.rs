//! OpenTelemetry export (optional, `[gateway.otel]`): OTLP/HTTP with the JSON encoding, one
//! CLIENT span per recorded call following the GenAI semantic conventions, plus the histograms
//! `gen_ai.client.token.usage` and `gen_ai.client.operation.duration` (delta temporality),
//! sent every `export_interval_ms` and at shutdown. Telemetry is best effort: a failed export
//! is reported on stderr and dropped; the ledger remains the record.
//!
//! Span: name `{gen_ai.operation.name} {gen_ai.request.model}`; attributes
//! `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
//! `gen_ai.response.model`, `gen_ai.response.id`, `gen_ai.request.stream`,
//! `gen_ai.usage.input_tokens` (all input, cache included), `gen_ai.usage.output_tokens`,
//! `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_creation.input_tokens`,
//! `gen_ai.usage.reasoning.output_tokens`, `error.type` on failures, and `tollgate.*`:
//! attribution (`team_id`, `service`, `feature`, `environment`, `cost_center`, `tenant_id`,
//! `api_key_id`, `attribution_status`), `cost`, `currency`, `price_version`, `pricing_status`,
//! `event_id`, `request_id`, `attempt`. The trace id comes from the client's `traceparent`
//! when it sent one (the call's span is then its child).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use serde_json::{Value, json};
use tollgate_core::{Status, UsageEvent};

use crate::config::OtelConfig;

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// What the exporter needs about one call.
pub struct CallRecord {
    pub ev: UsageEvent,
    pub response_id: Option<String>,
    pub parent_span_id: Option<String>,
}

enum Msg {
    Call(Box<CallRecord>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Handle to the exporter task.
#[derive(Clone)]
pub struct Otel {
    tx: tokio::sync::mpsc::UnboundedSender<Msg>,
}

const TOKEN_BOUNDS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
const DURATION_BOUNDS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

#[derive(Default)]
struct Hist {
    count: u64,
    sum: f64,
    buckets: Vec<u64>,
}

impl Hist {
    fn add(&mut self, bounds: &[f64], v: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len() + 1];
        }
        self.count += 1;
        self.sum += v;
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.buckets[i] += 1;
    }
}

type Attrs = Vec<(String, String)>;

struct State {
    cfg: OtelConfig,
    client: HttpClient,
    spans: Vec<Value>,
    tokens: BTreeMap<Attrs, Hist>,
    durations: BTreeMap<Attrs, Hist>,
    window_start_ns: u128,
}

impl Otel {
    /// Starts the exporter on the current tokio runtime.
    pub fn start(cfg: OtelConfig, client: HttpClient) -> Otel {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
        let interval = cfg.export_interval;
        let mut st = State {
            cfg,
            client,
            spans: Vec::new(),
            tokens: BTreeMap::new(),
            durations: BTreeMap::new(),
            window_start_ns: now_ns(),
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(Msg::Call(c)) => {
                            st.add(&c);
                            if st.spans.len() >= 512 {
                                st.export().await;
                            }
                        }
                        Some(Msg::Flush(done)) => {
                            st.export().await;
                            let _ = done.send(());
                        }
                        None => {
                            st.export().await;
                            return;
                        }
                    },
                    _ = tick.tick() => st.export().await,
                }
            }
        });
        Otel { tx }
    }

    pub fn record(&self, c: CallRecord) {
        let _ = self.tx.send(Msg::Call(Box::new(c)));
    }

    /// Exports everything pending (at shutdown).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
    }
}

fn now_ns() -> u128 {
    jiff::Timestamp::now().as_nanosecond().max(0) as u128
}

/// The GenAI operation name of an event.
fn operation_name(ev: &UsageEvent) -> &'static str {
    use tollgate_core::Operation as O;
    match ev.operation {
        O::TextCompletion => "text_completion",
        O::Embeddings => "embeddings",
        _ => "chat",
    }
}

fn kv(k: &str, v: Value) -> Value {
    json!({"key": k, "value": v})
}

fn s(v: &str) -> Value {
    json!({"stringValue": v})
}

fn i(v: u64) -> Value {
    json!({"intValue": v.to_string()})
}

impl State {
    fn add(&mut self, c: &CallRecord) {
        let ev = &c.ev;
        let op = operation_name(ev);
        let req_model = ev
            .model_requested
            .clone()
            .unwrap_or_else(|| ev.model.clone());
        let u = &ev.usage;
        let mut a = vec![
            kv("gen_ai.operation.name", s(op)),
            kv("gen_ai.provider.name", s(&ev.provider)),
            kv("gen_ai.request.model", s(&req_model)),
            kv("gen_ai.response.model", s(&ev.model)),
            kv("gen_ai.request.stream", json!({"boolValue": ev.streamed})),
            kv("gen_ai.usage.input_tokens", i(u.total_input())),
            kv("gen_ai.usage.output_tokens", i(u.output_tokens)),
            kv(
                "gen_ai.usage.cache_read.input_tokens",
                i(u.cache_read_tokens),
            ),
            kv(
                "gen_ai.usage.cache_creation.input_tokens",
                i(u.cache_write_tokens + u.cache_write_1h_tokens),
            ),
            kv(
                "gen_ai.usage.reasoning.output_tokens",
                i(u.reasoning_tokens),
            ),
            kv("tollgate.event_id", s(&ev.event_id)),
            kv("tollgate.attempt", i(u64::from(ev.attempt))),
            kv(
                "tollgate.attribution_status",
                s(ev.attribution_status.as_str()),
            ),
            kv(
                "tollgate.pricing_status",
                s(ev.pricing.pricing_status.as_str()),
            ),
            kv("tollgate.currency", s(ev.pricing.currency.as_str())),
            kv("tollgate.status", s(ev.status.as_str())),
        ];
        if let Some(id) = &c.response_id {
            a.push(kv("gen_ai.response.id", s(id)));
        }
        if let Some(sid) = &ev.session_id {
            a.push(kv("gen_ai.conversation.id", s(sid)));
        }
        let at = &ev.attribution;
        for (k, v) in [
            ("tollgate.team_id", &at.team_id),
            ("tollgate.service", &at.service),
            ("tollgate.feature", &at.feature),
            ("tollgate.cost_center", &at.cost_center),
            ("tollgate.tenant_id", &at.tenant_id),
            ("tollgate.api_key_id", &at.api_key_id),
            ("tollgate.request_id", &ev.request_id),
            ("tollgate.price_version", &ev.pricing.price_version),
        ] {
            if let Some(v) = v {
                a.push(kv(k, s(v)));
            }
        }
        if let Some(e) = at.environment {
            a.push(kv("tollgate.environment", s(e.as_str())));
        }
        if let Some(c) = ev.pricing.cost {
            a.push(kv("tollgate.cost", s(&c.normalize().to_string())));
        }
        let failed = ev.status != Status::Ok;
        let error_type = failed.then(|| match ev.status {
            Status::Cancelled => "cancelled".to_string(),
            _ => ev
                .http_status
                .map_or("upstream_error".into(), |h| h.to_string()),
        });
        if let Some(e) = &error_type {
            a.push(kv("error.type", s(e)));
        }
        let start = ev.occurred_at.as_nanosecond().max(0) as u128;
        let end = ev
            .completed_at
            .map_or(start, |c| c.as_nanosecond().max(0) as u128);
        let mut span = json!({
            "traceId": ev.trace_id.clone().unwrap_or_default(),
            "spanId": ev.span_id.clone().unwrap_or_default(),
            "name": format!("{op} {req_model}"),
            "kind": 3,
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": end.to_string(),
            "attributes": a,
            "status": if failed { json!({"code": 2, "message": error_type.clone().unwrap_or_default()}) } else { json!({"code": 1}) },
        });
        if let Some(p) = &c.parent_span_id {
            span["parentSpanId"] = json!(p);
        }
        self.spans.push(span);

        let base: Attrs = vec![
            ("gen_ai.operation.name".into(), op.into()),
            ("gen_ai.provider.name".into(), ev.provider.clone()),
            ("gen_ai.request.model".into(), req_model),
            ("gen_ai.response.model".into(), ev.model.clone()),
        ];
        for (ty, n) in [("input", u.total_input()), ("output", u.output_tokens)] {
            let mut k = base.clone();
            k.push(("gen_ai.token.type".into(), ty.into()));
            self.tokens
                .entry(k)
                .or_default()
                .add(&TOKEN_BOUNDS, n as f64);
        }
        let mut k = base;
        if let Some(e) = error_type {
            k.push(("error.type".into(), e));
        }
        let secs = (end.saturating_sub(start)) as f64 / 1e9;
        self.durations
            .entry(k)
            .or_default()
            .add(&DURATION_BOUNDS, secs);
    }

    fn resource(&self) -> Value {
        json!({"attributes": [kv("service.name", s(&self.cfg.service_name))]})
    }

    async fn post(&self, path: &str, body: Value) {
        let url = format!("{}{path}", self.cfg.endpoint);
        let req = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())));
        let Ok(req) = req else { return };
        match tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await {
            Ok(Ok(r)) => {
                let status = r.status();
                let _ = r.into_body().collect().await;
                if !status.is_success() {
                    eprintln!("tollgate serve: OTLP export to {url} answered {status}");
                }
            }
            Ok(Err(e)) => eprintln!("tollgate serve: OTLP export to {url} failed: {e}"),
            Err(_) => eprintln!("tollgate serve: OTLP export to {url} timed out"),
        }
    }

    async fn export(&mut self) {
        let now = now_ns();
        if !self.spans.is_empty() {
            let spans = std::mem::take(&mut self.spans);
            let body = json!({"resourceSpans": [{"resource": self.resource(),
                "scopeSpans": [{"scope": {"name": "tollgate-gateway"}, "spans": spans}]}]});
            self.post("/v1/traces", body).await;
        }
        if self.tokens.is_empty() && self.durations.is_empty() {
            self.window_start_ns = now;
            return;
        }
        let points = |m: &BTreeMap<Attrs, Hist>, bounds: &[f64], start: u128| -> Vec<Value> {
            m.iter()
                .map(|(attrs, h)| {
                    json!({
                        "attributes": attrs.iter().map(|(k, v)| kv(k, s(v))).collect::<Vec<_>>(),
                        "startTimeUnixNano": start.to_string(),
                        "timeUnixNano": now.to_string(),
                        "count": h.count.to_string(),
                        "sum": h.sum,
                        "bucketCounts": h.buckets.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
                        "explicitBounds": bounds,
                    })
                })
                .collect()
        };
        let metrics = json!([
            {"name": "gen_ai.client.token.usage", "unit": "{token}",
             "description": "Number of input and output tokens used",
             "histogram": {"aggregationTemporality": 1,
                 "dataPoints": points(&self.tokens, &TOKEN_BOUNDS, self.window_start_ns)}},
            {"name": "gen_ai.client.operation.duration", "unit": "s",
             "description": "GenAI operation duration",
             "histogram": {"aggregationTemporality": 1,
                 "dataPoints": points(&self.durations, &DURATION_BOUNDS, self.window_start_ns)}},
        ]);
        self.tokens.clear();
        self.durations.clear();
        self.window_start_ns = now;
        let body = json!({"resourceMetrics": [{"resource": self.resource(),
            "scopeMetrics": [{"scope": {"name": "tollgate-gateway"}, "metrics": metrics}]}]});
        self.post("/v1/metrics", body).await;
    }
}

/// Parses a W3C `traceparent` header: `(trace id, parent span id)`.
pub fn parse_traceparent(h: &str) -> Option<(String, String)> {
    let mut p = h.trim().split('-');
    let (ver, trace, span, _flags) = (p.next()?, p.next()?, p.next()?, p.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if ver.len() != 2 || !hex(trace, 32) || !hex(span, 16) || trace.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace.to_ascii_lowercase(), span.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let (t, s) = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap_or_default();
        assert_eq!(
            (t.as_str(), s.as_str()),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        );
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(parse_traceparent("garbage").is_none());
    }
}
