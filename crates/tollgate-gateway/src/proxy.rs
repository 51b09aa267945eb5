//! The request path: route, authenticate, attribute, forward, tee usage, record one event.
//!
//! Per request: the gateway key (OpenAI `Authorization: Bearer`, Anthropic `x-api-key`) is
//! looked up by hash and replaced by the upstream's key; attribution comes from the key and the
//! `x-tollgate-*` headers; the body goes upstream unchanged, except that an OpenAI streaming
//! chat or completions request that did not ask for usage gets
//! `stream_options.include_usage = true` (and the extra usage chunk is then not passed on).
//! Whole responses are read, their usage captured, the event spooled, then the response sent;
//! streams are forwarded event by event as they arrive, and their final event is held back
//! until the usage event is spooled. Whatever happens (upstream error, timeout, client gone),
//! exactly one event is recorded per priced call.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use jiff::Timestamp;
use tollgate_core::event::truncate_to_micros;
use tollgate_core::{
    Attribution, AttributionStatus, Environment, Pricer, Pricing, PricingStatus, Status, Usage,
    UsageEvent,
};

use crate::config::{Format, GatewayConfig, Mode, Upstream};
use crate::keys::{KeyRecord, KeyTable};
use crate::spool::Spool;
use crate::usage::{Api, SseSplitter, StreamEnd, StreamTap, capture_body};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The response body: whole, or a stream fed by the forwarding task.
pub type OutBody = http_body_util::Either<Full<Bytes>, StreamBody>;

/// A body fed through a channel by the task that reads the upstream stream.
/// An `Err` item aborts the client's connection: a stream cut upstream is cut for the client
/// too, rather than ended as if it were complete.
pub struct StreamBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// Shared state of a running gateway.
pub struct Gateway {
    pub cfg: GatewayConfig,
    client: Client<Connector, Full<Bytes>>,
    keys: RwLock<Arc<KeyTable>>,
    keys_stamp: Mutex<Option<SystemTime>>,
    data_dir: std::path::PathBuf,
    pricer: Arc<Pricer>,
    pub spool: Spool,
    /// Retry bookkeeping: idempotency key -> (first attempt's request id, attempts so far).
    attempts: Mutex<HashMap<String, (String, u32)>>,
    /// Upstream API keys read from the environment at startup, by upstream name.
    upstream_keys: HashMap<String, Option<HeaderValue>>,
    otel: Option<crate::otel::Otel>,
    /// Honour the demo's [`crate::demo::HEADER`] (only `tollgate demo` sets this, in process).
    demo_stamps: bool,
    budgets: Option<Arc<crate::budget::Budgets>>,
}

const REQUEST_ID: &str = "x-tollgate-request-id";

impl Gateway {
    pub fn new(
        cfg: GatewayConfig,
        data_dir: std::path::PathBuf,
        pricer: Arc<Pricer>,
        spool: Spool,
    ) -> anyhow::Result<Gateway> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config(cfg.ca_file.as_deref())?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build(connector);
        let mut upstream_keys = HashMap::new();
        for u in cfg.upstreams.values() {
            let v = std::env::var(&u.api_key_env)
                .ok()
                .filter(|k| !k.is_empty())
                .and_then(|k| {
                    let s = match u.format {
                        Format::OpenAi => format!("Bearer {k}"),
                        Format::Anthropic => k,
                    };
                    HeaderValue::from_str(&s).ok().map(|mut h| {
                        h.set_sensitive(true);
                        h
                    })
                });
            upstream_keys.insert(u.name.clone(), v);
        }
        let otel = cfg
            .otel
            .clone()
            .map(|o| crate::otel::Otel::start(o, client.clone()));
        let g = Gateway {
            otel,
            cfg,
            client,
            keys: RwLock::new(Arc::new(KeyTable::default())),
            keys_stamp: Mutex::new(None),
            data_dir,
            pricer,
            spool,
            attempts: Mutex::new(HashMap::new()),
            upstream_keys,
            demo_stamps: false,
            budgets: None,
        };
        g.reload_keys(true)?;
        Ok(g)
    }

    /// Makes the gateway honour the demo's clock and attribution stamp
    /// ([`crate::demo`]); for `tollgate demo`'s in-process gateway only.
    pub fn with_demo_stamps(mut self, on: bool) -> Gateway {
        self.demo_stamps = on;
        self
    }

    /// Checks these budgets before every priced call ([`crate::budget`]).
    pub fn with_budgets(mut self, b: Option<Arc<crate::budget::Budgets>>) -> Gateway {
        self.budgets = b.filter(|b| !b.is_empty());
        self
    }

    /// Re-reads the key store when its modification time changed (or when forced).
    pub fn reload_keys(&self, force: bool) -> anyhow::Result<()> {
        let p = crate::keys::store_path(&self.data_dir);
        let stamp = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
        if let Ok(mut s) = self.keys_stamp.lock() {
            if !force && *s == stamp {
                return Ok(());
            }
            *s = stamp;
        }
        let table = KeyTable::new(crate::keys::load(&self.data_dir)?);
        if let Ok(mut k) = self.keys.write() {
            *k = Arc::new(table);
        }
        Ok(())
    }

    fn key_table(&self) -> Arc<KeyTable> {
        self.keys
            .read()
            .map(|k| k.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Handles one request; never fails (errors become responses in the provider's shape).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<OutBody>, Infallible> {
        let started = Instant::now();
        let occurred_at = truncate_to_micros(Timestamp::now()).unwrap_or_else(Timestamp::now);
        let path = req.uri().path().to_string();
        let anthropic_path = path.starts_with("/v1/messages");
        let shape = if anthropic_path {
            Format::Anthropic
        } else {
            Format::OpenAi
        };
        if path == "/tollgate/health" {
            return Ok(plain(StatusCode::OK, "ok\n", "-"));
        }
        let Some(api) = Api::from_path(&path) else {
            return Ok(error(
                shape,
                StatusCode::NOT_FOUND,
                &format!(
                    "unknown route {} {path}; the gateway serves /v1/chat/completions, /v1/responses, /v1/completions, /v1/embeddings, /v1/models, /v1/messages and /v1/messages/count_tokens",
                    req.method()
                ),
                &crate::ids::uuid_v7(),
            ));
        };

        // Request id and retries.
        let client_rid = header(req.headers(), REQUEST_ID).map(str::to_string);
        let idem = header(req.headers(), "idempotency-key").map(str::to_string);
        let (request_id, attempt, parent) = self.attempt_of(client_rid, idem);

        // Authentication.
        let presented = presented_key(req.headers());
        let Some(key) = presented.as_deref().and_then(|k| self.lookup_key(k)) else {
            return Ok(error(
                shape,
                StatusCode::UNAUTHORIZED,
                if presented.is_some() {
                    "unknown gateway key; create one with `tollgate keys add`"
                } else {
                    "no gateway key; send it as the SDK sends its API key (OpenAI: Authorization: Bearer KEY, Anthropic: x-api-key: KEY)"
                },
                &request_id,
            ));
        };
        if key.revoked_at.is_some() {
            return Ok(error(
                shape,
                StatusCode::UNAUTHORIZED,
                &format!("gateway key {} is revoked", key.key_id),
                &request_id,
            ));
        }

        // Body, within the limit.
        let limit = self.cfg.max_body_bytes;
        if let Some(n) = header(req.headers(), "content-length").and_then(|v| v.parse::<u64>().ok())
            && n > limit
        {
            return Ok(too_large(shape, n, limit, &request_id));
        }
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, limit as usize).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return Ok(too_large(shape, limit + 1, limit, &request_id));
                }
                return Ok(error(
                    shape,
                    StatusCode::BAD_REQUEST,
                    "could not read the request body",
                    &request_id,
                ));
            }
        };

        // The request's model, stream flag, and the include_usage injection.
        let mut info = RequestInfo::default();
        let mut body = body;
        if parts.method == hyper::Method::POST && api != Api::Models {
            match inspect(api, &body) {
                Ok((i, rewritten)) => {
                    info = i;
                    if let Some(b) = rewritten {
                        body = b;
                    }
                }
                Err(msg) => {
                    return Ok(error(shape, StatusCode::BAD_REQUEST, &msg, &request_id));
                }
            }
        }

        // Attribution.
        let (attribution, status) = match self.attribute(&key, &parts.headers) {
            Ok(a) => a,
            Err(problems) => {
                return Ok(error(
                    shape,
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "attribution refused (mode enforce): {}; send the x-tollgate-* headers (see docs/gateway.md)",
                        problems.join("; ")
                    ),
                    &request_id,
                ));
            }
        };
        let stamp = match header(&parts.headers, crate::demo::HEADER).filter(|_| self.demo_stamps) {
            None => None,
            Some(h) => match crate::demo::parse(h) {
                Ok(s) => Some(Box::new(s)),
                Err(msg) => return Ok(error(shape, StatusCode::BAD_REQUEST, &msg, &request_id)),
            },
        };
        let occurred_at = stamp.as_ref().map_or(occurred_at, |s| s.occurred_at);
        let session_id = header(&parts.headers, "x-tollgate-session")
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .map(str::to_string);

        let format = if api.is_anthropic() {
            Format::Anthropic
        } else {
            Format::OpenAi
        };
        let upstream = self.cfg.route(format, info.model.as_deref()).clone();
        let (trace_id, parent_span) =
            match header(&parts.headers, "traceparent").and_then(crate::otel::parse_traceparent) {
                Some((t, p)) => (t, Some(p)),
                None => (crate::ids::random_hex(16), None),
            };
        let mut draft = Draft {
            request_id: request_id.clone(),
            trace_id,
            span_id: crate::ids::random_hex(8),
            parent_span,
            attempt,
            parent,
            occurred_at,
            started,
            session_id,
            attribution,
            status,
            provider: upstream.provider.clone(),
            model_requested: info.model.clone(),
            api,
            streamed: info.stream,
            request_bytes: body.len() as u64,
            stamp,
            budget: None,
        };

        // Budgets: a hard limit refuses the call before it costs anything.
        let mut budget_warnings = Vec::new();
        if let Some(b) = &self.budgets
            && api.is_priced()
        {
            let (provider, model) = (&draft.provider, info.model.as_deref());
            let worst = |default_out: u64| {
                model.and_then(|m| {
                    crate::budget::worst_case_cost(
                        &self.pricer,
                        provider,
                        m,
                        occurred_at,
                        draft.request_bytes,
                        info.max_output_tokens.unwrap_or(default_out),
                    )
                })
            };
            match b.admit(&draft.attribution, &worst, occurred_at) {
                crate::budget::Admission::Refuse(msg) => {
                    let mut r = error(shape, StatusCode::TOO_MANY_REQUESTS, &msg, &request_id);
                    // The official SDKs retry a 429 unless told not to.
                    r.headers_mut().insert(
                        HeaderName::from_static("x-should-retry"),
                        HeaderValue::from_static("false"),
                    );
                    return Ok(r);
                }
                crate::budget::Admission::Go { hold, warnings } => {
                    draft.budget = hold;
                    budget_warnings = warnings;
                }
            }
        }

        // Forward.
        let upstream_req = match self.upstream_request(&upstream, &parts, api, body) {
            Ok(r) => r,
            Err(msg) => {
                return Ok(error(shape, StatusCode::BAD_REQUEST, &msg, &request_id));
            }
        };
        let deadline = tokio::time::Instant::from_std(started + self.cfg.upstream_timeout);
        let sent = tokio::time::timeout_at(deadline, self.client.request(upstream_req)).await;
        let resp = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let msg = format!(
                    "upstream {} ({}) unreachable: {}",
                    upstream.name,
                    upstream.base_url,
                    error_chain(&e)
                );
                if api.is_priced() {
                    let ev = self.event(
                        &mut draft,
                        Status::UpstreamError,
                        502,
                        None,
                        None,
                        None,
                        None,
                    );
                    self.emit(ev, &draft, None).await;
                }
                return Ok(error(shape, StatusCode::BAD_GATEWAY, &msg, &request_id));
            }
            Err(_) => {
                if api.is_priced() {
                    let ev = self.event(
                        &mut draft,
                        Status::UpstreamError,
                        504,
                        None,
                        None,
                        None,
                        None,
                    );
                    self.emit(ev, &draft, None).await;
                }
                return Ok(error(
                    shape,
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "upstream {} did not answer within {:?}",
                        upstream.name, self.cfg.upstream_timeout
                    ),
                    &request_id,
                ));
            }
        };

        let (rparts, rbody) = resp.into_parts();
        let is_sse = rparts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut headers = rparts.headers.clone();
        strip_hop_headers(&mut headers);
        headers.remove(hyper::header::CONTENT_LENGTH);
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert(HeaderName::from_static(REQUEST_ID), v);
        }
        headers.insert(
            HeaderName::from_static("x-tollgate-attribution"),
            HeaderValue::from_static(draft.status.as_str()),
        );
        if !budget_warnings.is_empty()
            && let Ok(v) = HeaderValue::from_str(&budget_warnings.join("; "))
        {
            headers.insert(HeaderName::from_static("x-tollgate-budget-warning"), v);
        }

        if is_sse && rparts.status.is_success() && api.is_priced() {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
            let strip = info.injected_usage;
            let status = rparts.status.as_u16();
            let g = self.clone();
            tokio::spawn(async move {
                g.pump(rbody, tx, draft, strip, status, deadline).await;
            });
            let mut resp = Response::new(http_body_util::Either::Right(StreamBody { rx }));
            *resp.status_mut() = rparts.status;
            *resp.headers_mut() = headers;
            return Ok(resp);
        }

        // Whole response.
        let collected = tokio::time::timeout_at(deadline, rbody.collect()).await;
        let (bytes, status_code, st) = match collected {
            Ok(Ok(b)) => {
                let b = b.to_bytes();
                let st = if rparts.status.is_success() {
                    Status::Ok
                } else {
                    Status::UpstreamError
                };
                (b, rparts.status.as_u16(), st)
            }
            Ok(Err(e)) => {
                if api.is_priced() {
                    let ev = self.event(
                        &mut draft,
                        Status::UpstreamError,
                        502,
                        None,
                        None,
                        None,
                        None,
                    );
                    self.emit(ev, &draft, None).await;
                }
                return Ok(error(
                    shape,
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "upstream {} broke off its response: {}",
                        upstream.name,
                        error_chain(&e)
                    ),
                    &request_id,
                ));
            }
            Err(_) => {
                if api.is_priced() {
                    let ev = self.event(
                        &mut draft,
                        Status::UpstreamError,
                        504,
                        None,
                        None,
                        None,
                        None,
                    );
                    self.emit(ev, &draft, None).await;
                }
                return Ok(error(
                    shape,
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "upstream {} did not finish within {:?}",
                        upstream.name, self.cfg.upstream_timeout
                    ),
                    &request_id,
                ));
            }
        };
        if api.is_priced() {
            let cap = capture_body(api, &bytes);
            // A successful answer without a readable usage record is estimated, never $0.
            let estimate = (st == Status::Ok && cap.usage.is_none()).then(|| {
                (
                    Usage {
                        input_tokens: draft.request_bytes.div_ceil(4),
                        ..Usage::default()
                    },
                    format!(
                        "the response carried no usage record: input = request body {} bytes / 4, output unknown (0)",
                        draft.request_bytes
                    ),
                )
            });
            let ev = self.event(
                &mut draft,
                st,
                status_code,
                cap.usage,
                cap.model,
                cap.service_tier,
                estimate,
            );
            self.emit(ev, &draft, cap.id).await;
        }
        let mut resp = Response::new(http_body_util::Either::Left(Full::new(bytes)));
        *resp.status_mut() = rparts.status;
        *resp.headers_mut() = headers;
        Ok(resp)
    }

    /// Sends a finished call to the exporter (if any) and waits for its event to be spooled.
    async fn emit(&self, ev: UsageEvent, d: &Draft, response_id: Option<String>) {
        if let Some(o) = &self.otel {
            o.record(crate::otel::CallRecord {
                ev: ev.clone(),
                response_id,
                parent_span_id: d.parent_span.clone(),
            });
        }
        self.spool.record(ev).await;
    }

    /// Exports pending telemetry (at shutdown).
    pub async fn flush_otel(&self) {
        if let Some(o) = &self.otel {
            o.flush().await;
        }
    }

    fn lookup_key(&self, k: &str) -> Option<KeyRecord> {
        if let Some(r) = self.key_table().lookup(k) {
            return Some(r.clone());
        }
        // A key added since the last reload: re-read the store if it changed.
        let _ = self.reload_keys(false);
        self.key_table().lookup(k).cloned()
    }

    fn attempt_of(
        &self,
        client_rid: Option<String>,
        idem: Option<String>,
    ) -> (String, u32, Option<String>) {
        let fresh = || crate::ids::uuid_v7();
        let key = match (&idem, &client_rid) {
            (Some(i), _) => format!("idem:{i}"),
            (None, Some(r)) => format!("rid:{r}"),
            (None, None) => return (fresh(), 1, None),
        };
        let Ok(mut m) = self.attempts.lock() else {
            return (fresh(), 1, None);
        };
        if m.len() > 200_000 {
            m.clear();
        }
        match m.get_mut(&key) {
            Some((first, n)) => {
                *n += 1;
                // A retry that names itself with a new request id keeps it.
                let rid = client_rid
                    .filter(|r| !r.is_empty() && r.len() <= 200 && r != first)
                    .unwrap_or_else(fresh);
                (rid, *n, Some(first.clone()))
            }
            None => {
                let rid = client_rid
                    .filter(|r| !r.is_empty() && r.len() <= 200)
                    .unwrap_or_else(fresh);
                m.insert(key, (rid.clone(), 1));
                (rid, 1, None)
            }
        }
    }

    /// Attribution from the key and the headers, and the status the mode gives it; `Err` with
    /// the problems when the mode in force is `enforce`.
    fn attribute(
        &self,
        key: &KeyRecord,
        h: &HeaderMap,
    ) -> Result<(Attribution, AttributionStatus), Vec<String>> {
        let mut problems = Vec::new();
        let mut field = |name: &str| -> Option<String> {
            let v = h.get(format!("x-tollgate-{name}"))?;
            match v.to_str() {
                Ok(s) if s.trim().is_empty() => None,
                Ok(s) if s.len() > 512 => {
                    problems.push(format!("{name}: longer than 512 bytes"));
                    None
                }
                Ok(s) => Some(s.trim().to_string()),
                Err(_) => {
                    problems.push(format!("{name}: not visible ASCII"));
                    None
                }
            }
        };
        let feature = field("feature");
        let header_tenant = field("tenant");
        let user = field("user");
        let session = field("session");
        let tags_raw = field("tags");
        let tenant = match (&key.tenant, header_tenant) {
            (Some(k), Some(hd)) if *k != hd => {
                problems.push(format!(
                    "tenant: {hd:?} differs from the key's tenant {k:?}"
                ));
                Some(k.clone())
            }
            (Some(k), _) => Some(k.clone()),
            (None, hd) => hd,
        };
        let mut tags = BTreeMap::new();
        if let Some(t) = tags_raw {
            for pair in t.split(',').filter(|p| !p.trim().is_empty()) {
                match pair.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => {
                        tags.insert(k.trim().to_string(), v.trim().to_string());
                    }
                    _ => problems.push(format!("tags: {pair:?} is not key=value")),
                }
            }
        }
        let values: [(&str, Option<&String>); 4] = [
            ("feature", feature.as_ref()),
            ("tenant", tenant.as_ref()),
            ("user", user.as_ref()),
            ("session", session.as_ref()),
        ];
        let rules = &self.cfg.attribution;
        for r in &rules.required {
            if values.iter().any(|(n, v)| n == r && v.is_none()) {
                problems.push(format!("{r}: missing (send the x-tollgate-{r} header)"));
            }
        }
        for (field_name, allowed) in &rules.vocabularies {
            let v = if let Some(t) = field_name.strip_prefix("tags.") {
                tags.get(t)
            } else {
                values
                    .iter()
                    .find(|(n, _)| n == field_name)
                    .and_then(|(_, v)| *v)
            };
            if let Some(v) = v
                && !allowed.iter().any(|a| a == v)
            {
                problems.push(format!(
                    "{field_name}: {v:?} is not one of {}",
                    allowed.join(", ")
                ));
            }
        }
        let now = Timestamp::now();
        let (mode, overridden) = if let Some(o) = key.mode_override().filter(|o| o.until > now) {
            (o.mode, true)
        } else if let Some(m) = key.mode() {
            (m, false)
        } else if let Some(o) = rules.override_.as_ref().filter(|o| o.until > now) {
            (o.mode, true)
        } else {
            (rules.mode, false)
        };
        let status = if problems.is_empty() {
            AttributionStatus::Ok
        } else {
            match (mode, overridden) {
                (Mode::Enforce, _) => return Err(problems),
                (_, true) => AttributionStatus::Overridden,
                (Mode::Report, false) => AttributionStatus::Flagged,
                (Mode::Quarantine, false) => AttributionStatus::Quarantined,
            }
        };
        if !problems.is_empty() {
            tags.insert("tollgate_attribution_problems".into(), problems.join("; "));
        }
        let a = Attribution {
            team_id: Some(key.team.clone()),
            cost_center: key.cost_center.clone(),
            service: Some(key.service.clone()),
            feature,
            environment: key.environment.parse::<Environment>().ok(),
            tenant_id: tenant,
            user_id: user,
            api_key_id: Some(key.key_id.clone()),
            region: None,
            tags,
        };
        Ok((a, status))
    }

    fn upstream_request(
        &self,
        u: &Upstream,
        parts: &hyper::http::request::Parts,
        api: Api,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, String> {
        let path = parts.uri.path();
        let suffix = match u.format {
            // The OpenAI base URL includes /v1.
            Format::OpenAi => path.strip_prefix("/v1").unwrap_or(path),
            Format::Anthropic => path,
        };
        let mut url = format!("{}{}", u.base_url, suffix);
        if let Some(q) = parts.uri.query() {
            url.push('?');
            url.push_str(q);
        }
        let mut b = Request::builder().method(parts.method.clone()).uri(&url);
        if let Some(h) = b.headers_mut() {
            for (k, v) in &parts.headers {
                let n = k.as_str();
                if n == "host"
                    || n == "authorization"
                    || n == "x-api-key"
                    || n == "content-length"
                    // Usage is read from the body: ask for it uncompressed.
                    || n == "accept-encoding"
                    || n.starts_with("x-tollgate-")
                    || is_hop(n)
                {
                    continue;
                }
                h.append(k.clone(), v.clone());
            }
            if let Some(Some(k)) = self.upstream_keys.get(&u.name) {
                let name = match u.format {
                    Format::OpenAi => hyper::header::AUTHORIZATION,
                    Format::Anthropic => HeaderName::from_static("x-api-key"),
                };
                h.insert(name, k.clone());
            }
        }
        let _ = api;
        b.body(Full::new(body))
            .map_err(|e| format!("cannot build the upstream request for {url}: {e}"))
    }

    /// Builds, prices and returns the one event of a call.
    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        d: &mut Draft,
        status: Status,
        http_status: u16,
        usage: Option<Usage>,
        model: Option<String>,
        service_tier: Option<String>,
        estimate: Option<(Usage, String)>,
    ) -> UsageEvent {
        let completed = truncate_to_micros(Timestamp::now()).unwrap_or(d.occurred_at);
        let mut attribution = std::mem::take(&mut d.attribution);
        let (usage, estimated) = match (usage, estimate) {
            (Some(u), _) => (u, false),
            (None, Some((u, basis))) => {
                attribution
                    .tags
                    .insert("tollgate_estimate_basis".into(), basis);
                (u, true)
            }
            (None, None) => (Usage::default(), false),
        };
        let model = model
            .filter(|m| !m.is_empty() && m.len() <= 512)
            .or_else(|| d.model_requested.clone())
            .unwrap_or_else(|| "unknown".into());
        let mut ev = UsageEvent {
            event_id: crate::ids::uuid_v7(),
            request_id: Some(d.request_id.clone()),
            attempt: d.attempt,
            parent_request_id: d.parent.clone(),
            occurred_at: d.occurred_at,
            completed_at: Some(completed.max(d.occurred_at)),
            trace_id: Some(d.trace_id.clone()),
            span_id: Some(d.span_id.clone()),
            session_id: d.session_id.clone(),
            attribution,
            attribution_status: d.status,
            provider: d.provider.clone(),
            model_requested: d.model_requested.clone(),
            model,
            operation: d.api.operation(),
            service_tier,
            status,
            http_status: Some(http_status),
            streamed: d.streamed,
            latency_ms: Some(d.started.elapsed().as_millis() as u64),
            ttft_ms: None,
            usage,
            pricing: Pricing::unpriced(),
        };
        if estimated {
            ev.pricing.pricing_status = PricingStatus::Estimated;
        }
        if let Some(s) = &d.stamp {
            s.apply(&mut ev);
        }
        // An unknown model stays unpriced (never $0); the reason is visible in reports.
        let _ = self.pricer.price_event(&mut ev);
        if let Some(h) = d.budget.take() {
            h.settle(ev.pricing.cost);
        }
        ev
    }

    /// Forwards a stream event by event, then records its event.
    async fn pump(
        self: Arc<Self>,
        mut body: Incoming,
        tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
        mut d: Draft,
        strip: bool,
        http_status: u16,
        deadline: tokio::time::Instant,
    ) {
        let mut split = SseSplitter::default();
        let mut tap = StreamTap::new(d.api, strip);
        let mut held = BytesMut::new();
        let mut ttft: Option<u64> = None;
        enum End {
            Normal,
            ClientGone,
            UpstreamBroke,
            Timeout,
        }
        let end = loop {
            let frame = tokio::select! {
                _ = tx.closed() => break End::ClientGone,
                f = tokio::time::timeout_at(deadline, body.frame()) => f,
            };
            match frame {
                Err(_) => break End::Timeout,
                Ok(None) => break End::Normal,
                Ok(Some(Err(_))) => break End::UpstreamBroke,
                Ok(Some(Ok(f))) => {
                    let Ok(data) = f.into_data() else { continue };
                    let mut out = BytesMut::new();
                    for ev in split.push(&data) {
                        let pass = tap.observe(ev.event.as_deref(), &ev.data);
                        if tap.first_token && ttft.is_none() {
                            ttft = Some(d.started.elapsed().as_millis() as u64);
                        }
                        if pass {
                            if tap.end == StreamEnd::Open {
                                out.extend_from_slice(&ev.raw);
                            } else {
                                // The terminal event waits for the spool.
                                held.extend_from_slice(&ev.raw);
                            }
                        }
                    }
                    if !out.is_empty() && tx.send(Ok(out.freeze())).await.is_err() {
                        break End::ClientGone;
                    }
                }
            }
        };
        if let Some(rest) = split.rest() {
            held.extend_from_slice(&rest);
        }
        let (status, code) = match (&end, tap.end) {
            (End::ClientGone, _) => (Status::Cancelled, 499),
            (End::Timeout, _) => (Status::UpstreamError, 504),
            (End::UpstreamBroke, _) => (Status::UpstreamError, 502),
            (End::Normal, StreamEnd::Failed) => (Status::UpstreamError, http_status),
            (End::Normal, StreamEnd::Open) => (Status::UpstreamError, 502),
            (End::Normal, _) => (Status::Ok, http_status),
        };
        let usage = tap.has_final_usage().then(|| tap.usage()).flatten();
        let estimate = if usage.is_none() {
            Some(estimate(&tap, d.request_bytes))
        } else {
            None
        };
        let mut ev = self.event(
            &mut d,
            status,
            code,
            usage,
            tap.model.clone(),
            tap.service_tier.clone(),
            estimate,
        );
        ev.ttft_ms = match &d.stamp {
            Some(s) => s.ttft_ms(),
            None => ttft,
        };
        if matches!(end, End::ClientGone) {
            if let Some(o) = &self.otel {
                o.record(crate::otel::CallRecord {
                    ev: ev.clone(),
                    response_id: tap.id.clone(),
                    parent_span_id: d.parent_span.clone(),
                });
            }
            self.spool.record_nowait(ev);
            return;
        }
        self.emit(ev, &d, tap.id.clone()).await;
        if !held.is_empty() {
            let _ = tx.send(Ok(held.freeze())).await;
        }
        if matches!(end, End::UpstreamBroke | End::Timeout) {
            crate::fake::drained(&tx).await;
            let _ = tx
                .send(Err(std::io::Error::other("upstream stream cut")))
                .await;
        }
    }
}

/// A usage estimate for a stream cut before its usage record: what the provider did report
/// (Anthropic's `message_start`), else about 4 characters per token.
fn estimate(tap: &StreamTap, request_bytes: u64) -> (Usage, String) {
    let est_out = tap.output_chars.div_ceil(4);
    match tap.usage() {
        Some(mut u) => {
            let reported = u.output_tokens;
            u.output_tokens = u.output_tokens.max(est_out);
            (
                u,
                format!(
                    "stream cut: input from the provider's message_start; output max(reported {reported}, {} streamed chars / 4)",
                    tap.output_chars
                ),
            )
        }
        None => (
            Usage {
                input_tokens: request_bytes.div_ceil(4),
                output_tokens: est_out,
                ..Usage::default()
            },
            format!(
                "stream cut before usage: input = request body {request_bytes} bytes / 4, output = {} streamed chars / 4",
                tap.output_chars
            ),
        ),
    }
}

/// What the gateway needs to know about an event before the response ends.
struct Draft {
    request_id: String,
    trace_id: String,
    span_id: String,
    parent_span: Option<String>,
    attempt: u32,
    parent: Option<String>,
    occurred_at: Timestamp,
    started: Instant,
    session_id: Option<String>,
    attribution: Attribution,
    status: AttributionStatus,
    provider: String,
    model_requested: Option<String>,
    api: Api,
    streamed: bool,
    request_bytes: u64,
    /// The demo's stamp, if any ([`crate::demo`]).
    stamp: Option<Box<crate::demo::Stamp>>,
    /// The call's budget reservation, settled when its event is priced.
    budget: Option<crate::budget::Hold>,
}

#[derive(Debug, Default)]
struct RequestInfo {
    model: Option<String>,
    stream: bool,
    injected_usage: bool,
    /// The request's own output bound (`max_tokens`, `max_completion_tokens`,
    /// `max_output_tokens`), for budget reservations.
    max_output_tokens: Option<u64>,
}

#[derive(serde::Deserialize)]
struct ReqPeek<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    stream_options: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    max_tokens: Option<serde_json::Value>,
    #[serde(default)]
    max_completion_tokens: Option<serde_json::Value>,
    #[serde(default)]
    max_output_tokens: Option<serde_json::Value>,
}

/// Reads the model and stream flag; for OpenAI chat/completions streams without
/// `stream_options.include_usage`, returns the rewritten body that asks for usage.
fn inspect(api: Api, body: &[u8]) -> Result<(RequestInfo, Option<Bytes>), String> {
    let peek: ReqPeek<'_> = serde_json::from_slice(body)
        .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
    let mut info = RequestInfo {
        model: peek
            .model
            .as_deref()
            .filter(|m| !m.is_empty() && m.len() <= 512)
            .map(str::to_string),
        stream: peek.stream == Some(true),
        injected_usage: false,
        max_output_tokens: [
            &peek.max_tokens,
            &peek.max_completion_tokens,
            &peek.max_output_tokens,
        ]
        .into_iter()
        .filter_map(|v| v.as_ref().and_then(serde_json::Value::as_u64))
        .min(),
    };
    if info.stream && matches!(api, Api::Chat | Api::Completions) {
        let asked = peek
            .stream_options
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
            .and_then(|v| v.get("include_usage").and_then(|b| b.as_bool()))
            == Some(true);
        if !asked {
            let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
                .map_err(|e| format!("the request body is not a JSON object: {e}"))?;
            let opts = v
                .entry("stream_options")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let serde_json::Value::Object(o) = opts {
                o.insert("include_usage".into(), serde_json::Value::Bool(true));
            } else {
                *opts = serde_json::json!({"include_usage": true});
            }
            info.injected_usage = true;
            let b = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
            return Ok((info, Some(Bytes::from(b))));
        }
    }
    Ok((info, None))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn presented_key(h: &HeaderMap) -> Option<String> {
    if let Some(k) = header(h, "x-api-key").filter(|k| !k.is_empty()) {
        return Some(k.to_string());
    }
    let a = header(h, "authorization")?;
    let k = a
        .strip_prefix("Bearer ")
        .or_else(|| a.strip_prefix("bearer "))?
        .trim();
    (!k.is_empty()).then(|| k.to_string())
}

fn is_hop(n: &str) -> bool {
    matches!(
        n,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
    )
}

fn strip_hop_headers(h: &mut HeaderMap) {
    let names: Vec<HeaderName> = h.keys().filter(|k| is_hop(k.as_str())).cloned().collect();
    for n in names {
        h.remove(n);
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn too_large(shape: Format, n: u64, limit: u64, rid: &str) -> Response<OutBody> {
    error(
        shape,
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "request body of {n} bytes is over the gateway's limit of {limit} bytes (gateway.max_body_bytes)"
        ),
        rid,
    )
}

fn plain(status: StatusCode, text: &str, rid: &str) -> Response<OutBody> {
    let mut r = Response::new(http_body_util::Either::Left(Full::new(Bytes::from(
        text.to_string(),
    ))));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), v);
    }
    r
}

/// An error response in the provider's own shape.
pub fn error(shape: Format, status: StatusCode, message: &str, rid: &str) -> Response<OutBody> {
    let body = match shape {
        Format::OpenAi => {
            let (kind, code) = match status.as_u16() {
                401 => ("invalid_request_error", "invalid_api_key"),
                404 => ("invalid_request_error", "unknown_url"),
                413 => ("invalid_request_error", "request_too_large"),
                400 => ("invalid_request_error", "invalid_request"),
                429 => ("insufficient_quota", "budget_exceeded"),
                _ => ("api_error", "upstream_error"),
            };
            serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Format::Anthropic => {
            let kind = match status.as_u16() {
                400 => "invalid_request_error",
                401 => "authentication_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                504 => "timeout_error",
                _ => "api_error",
            };
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    };
    let mut r = Response::new(http_body_util::Either::Left(Full::new(Bytes::from(
        body.to_string(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), v);
    }
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn include_usage_is_added_only_when_missing() {
        let (i, b) = inspect(Api::Chat, br#"{"model":"m","stream":true,"messages":[]}"#).unwrap();
        assert!(i.injected_usage && i.stream);
        let v: serde_json::Value = serde_json::from_slice(&b.unwrap()).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");
        let (i, b) = inspect(
            Api::Chat,
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(!i.injected_usage && b.is_none());
        let (i, b) = inspect(Api::Chat, br#"{"model":"m"}"#).unwrap();
        assert!(!i.stream && b.is_none());
        assert!(
            inspect(Api::Chat, b"{not json")
                .unwrap_err()
                .contains("not valid JSON")
        );
    }
}
