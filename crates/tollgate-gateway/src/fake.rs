//! A fake LLM provider for tests, benchmarks and the demo: it speaks the OpenAI wire format
//! (`/v1/chat/completions`, `/v1/responses`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/models`) and the Anthropic one (`/v1/messages`, `/v1/messages/count_tokens`), whole
//! or as SSE streams, with the usage, latency, errors and mid-stream cuts a request asks for.
//!
//! Behaviour is driven by request headers (the official SDKs send them with `extra_headers`):
//! - `x-fake-usage: k=v,...` usage in the provider's own field names. OpenAI:
//!   `prompt_tokens` (all input, cached included), `cached_tokens`, `cache_write_tokens`,
//!   `completion_tokens`, `reasoning_tokens`. Anthropic: `input_tokens` (uncached),
//!   `cache_read_input_tokens`, `cache_5m_tokens`, `cache_1h_tokens`, `output_tokens`,
//!   `web_search_requests`. Defaults: 11 input, 7 output, nothing cached.
//! - `x-fake-latency-ms: N` wait before answering; `x-fake-chunk-delay-ms: N` between chunks.
//! - `x-fake-chunks: N` content chunks in a stream (default 3).
//! - `x-fake-status: CODE` answer with that HTTP status and the provider's error body.
//! - `x-fake-fail-times: N` fail the first N requests carrying the same `Idempotency-Key`
//!   with 500 (to exercise client retries).
//! - `x-fake-cut-after: N` break the connection after N content chunks (no usage record).
//! - `x-fake-stream-error: 1` send the provider's error event mid-stream, then end.
//! - `x-fake-no-usage: 1` leave `usage` out of a whole response.
//! - `x-fake-model: NAME` answer as model NAME (default: the request's `model`).
//!
//! Anthropic streams send two cumulative `message_delta` events (half, then all of the
//! output), as Anthropic does with server tools: a reader that sums them is wrong.
//! Response headers `x-fake-received-auth` and `x-fake-include-usage` say what arrived.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const TEXT: [&str; 6] = ["Hello", " from", " the", " fake", " provider", "."];

type FakeBody = http_body_util::Either<Full<Bytes>, ChanBody>;

/// A streamed body; an `Err` item aborts the connection (a mid-stream cut).
pub struct ChanBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl Body for ChanBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

#[derive(Default)]
struct State {
    failures: Mutex<HashMap<String, u32>>,
}

/// Runs the fake provider until Ctrl-C / SIGTERM.
pub fn run(listen: &str, addr_file: Option<PathBuf>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr = bind_and_serve(listen).await?;
        if let Some(f) = addr_file {
            let tmp = f.with_extension("tmp");
            std::fs::write(&tmp, format!("{addr}\n"))?;
            std::fs::rename(&tmp, &f)?;
        }
        eprintln!("tollgate fake-provider: listening on {addr}");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// Starts the fake provider on a background thread; returns its address.
pub fn spawn(listen: &str) -> Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    let listen = listen.to_string();
    std::thread::Builder::new()
        .name("fake-provider".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match bind_and_serve(&listen).await {
                    Ok(a) => {
                        let _ = tx.send(Ok(a));
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.recv().context("the fake provider thread died")?
}

async fn bind_and_serve(listen: &str) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State::default());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let st = state.clone();
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service_fn(move |r| handle(st.clone(), r)))
                    .await;
            });
        }
    });
    Ok(addr)
}

fn hdr<'a>(r: &'a hyper::http::request::Parts, n: &str) -> Option<&'a str> {
    r.headers.get(n).and_then(|v| v.to_str().ok())
}

fn num(r: &hyper::http::request::Parts, n: &str) -> Option<u64> {
    hdr(r, n).and_then(|v| v.trim().parse().ok())
}

fn usage_map(r: &hyper::http::request::Parts) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    if let Some(u) = hdr(r, "x-fake-usage") {
        for p in u.split(',') {
            if let Some((k, v)) = p.split_once('=')
                && let Ok(n) = v.trim().parse()
            {
                m.insert(k.trim().to_string(), n);
            }
        }
    }
    m
}

fn json_resp(status: StatusCode, v: &Value) -> Response<FakeBody> {
    let mut r = Response::new(http_body_util::Either::Left(Full::new(Bytes::from(
        v.to_string(),
    ))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn provider_error(anthropic: bool, status: u16) -> Value {
    if anthropic {
        json!({"type": "error", "error": {"type": "api_error", "message": format!("fake upstream error {status}")}})
    } else {
        json!({"error": {"message": format!("fake upstream error {status}"), "type": "server_error", "param": null, "code": null}})
    }
}

async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<FakeBody>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let anthropic = path.starts_with("/v1/messages");
    let req_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let received_auth = hdr(&parts, "authorization")
        .or_else(|| hdr(&parts, "x-api-key"))
        .unwrap_or("")
        .to_string();
    let include_usage = req_json["stream_options"]["include_usage"] == json!(true);
    let mut resp = route(&st, &parts, &path, anthropic, &req_json).await;
    if let Ok(v) = hyper::header::HeaderValue::from_str(&received_auth) {
        resp.headers_mut().insert("x-fake-received-auth", v);
    }
    resp.headers_mut().insert(
        "x-fake-include-usage",
        hyper::header::HeaderValue::from_static(if include_usage { "true" } else { "false" }),
    );
    Ok(resp)
}

async fn route(
    st: &State,
    parts: &hyper::http::request::Parts,
    path: &str,
    anthropic: bool,
    req: &Value,
) -> Response<FakeBody> {
    if let Some(ms) = num(parts, "x-fake-latency-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = num(parts, "x-fake-status") {
        let s = StatusCode::from_u16(code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return json_resp(s, &provider_error(anthropic, s.as_u16()));
    }
    if let Some(n) = num(parts, "x-fake-fail-times") {
        let key = hdr(parts, "idempotency-key").unwrap_or("").to_string();
        let fail = st.failures.lock().map(|mut m| {
            let c = m.entry(key).or_insert(0);
            *c += 1;
            u64::from(*c) <= n
        });
        if fail.unwrap_or(false) {
            return json_resp(
                StatusCode::INTERNAL_SERVER_ERROR,
                &provider_error(anthropic, 500),
            );
        }
    }
    // The model that "ran": `x-fake-model`, else the one asked for.
    let model = hdr(parts, "x-fake-model")
        .or_else(|| req["model"].as_str())
        .unwrap_or("fake-model")
        .to_string();
    let stream = req["stream"] == json!(true);
    let u = usage_map(parts);
    let g = |k: &str, d: u64| u.get(k).copied().unwrap_or(d);
    match path {
        "/v1/models" => json_resp(
            StatusCode::OK,
            &json!({"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 1_700_000_000, "owned_by": "fake"},
                {"id": "claude-sonnet-4-5", "object": "model", "created": 1_700_000_000, "owned_by": "fake"}]}),
        ),
        "/v1/messages/count_tokens" => json_resp(
            StatusCode::OK,
            &json!({"input_tokens": g("input_tokens", 11)}),
        ),
        "/v1/embeddings" => {
            let n = g("prompt_tokens", 11);
            let vec = [0.25f32, -0.5, 0.125];
            let emb = if req["encoding_format"] == json!("base64") {
                let mut b = Vec::new();
                for f in vec {
                    b.extend_from_slice(&f.to_le_bytes());
                }
                json!(base64(&b))
            } else {
                json!(vec)
            };
            json_resp(
                StatusCode::OK,
                &json!({"object": "list", "model": model,
                    "data": [{"object": "embedding", "index": 0, "embedding": emb}],
                    "usage": {"prompt_tokens": n, "total_tokens": n}}),
            )
        }
        "/v1/chat/completions" | "/v1/completions" | "/v1/responses" | "/v1/messages" => {
            let kind = match path {
                "/v1/chat/completions" => Kind::Chat,
                "/v1/completions" => Kind::Completions,
                "/v1/responses" => Kind::Responses,
                _ => Kind::Messages,
            };
            let spec = Spec {
                kind,
                model,
                u: u.clone(),
                chunks: num(parts, "x-fake-chunks").unwrap_or(3).clamp(1, 1000) as usize,
                chunk_delay: num(parts, "x-fake-chunk-delay-ms").map(Duration::from_millis),
                cut_after: num(parts, "x-fake-cut-after").map(|n| n as usize),
                stream_error: hdr(parts, "x-fake-stream-error").is_some(),
                include_usage: req["stream_options"]["include_usage"] == json!(true),
            };
            if stream {
                stream_resp(spec)
            } else {
                let mut v = whole(&spec);
                if hdr(parts, "x-fake-no-usage").is_some()
                    && let Some(o) = v.as_object_mut()
                {
                    o.remove("usage");
                }
                json_resp(StatusCode::OK, &v)
            }
        }
        _ => json_resp(StatusCode::NOT_FOUND, &provider_error(anthropic, 404)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completions,
    Responses,
    Messages,
}

struct Spec {
    kind: Kind,
    model: String,
    u: HashMap<String, u64>,
    chunks: usize,
    chunk_delay: Option<Duration>,
    cut_after: Option<usize>,
    stream_error: bool,
    include_usage: bool,
}

impl Spec {
    fn g(&self, k: &str, d: u64) -> u64 {
        self.u.get(k).copied().unwrap_or(d)
    }

    fn text(&self) -> String {
        (0..self.chunks).map(|i| TEXT[i % TEXT.len()]).collect()
    }

    fn oai_usage(&self, responses: bool) -> Value {
        let p = self.g("prompt_tokens", 11);
        let c = self.g("completion_tokens", 7);
        let cached = self.g("cached_tokens", 0);
        let written = self.g("cache_write_tokens", 0);
        let r = self.g("reasoning_tokens", 0);
        if responses {
            json!({"input_tokens": p, "input_tokens_details": {"cached_tokens": cached},
                   "output_tokens": c, "output_tokens_details": {"reasoning_tokens": r},
                   "total_tokens": p + c})
        } else {
            let mut pd = json!({"cached_tokens": cached, "audio_tokens": 0});
            if written > 0 {
                pd["cache_write_tokens"] = json!(written);
            }
            json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                   "prompt_tokens_details": pd,
                   "completion_tokens_details": {"reasoning_tokens": r, "audio_tokens": 0,
                       "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
        }
    }

    fn anth_usage(&self, output: u64) -> Value {
        let c5 = self.g("cache_5m_tokens", 0);
        let c1 = self.g("cache_1h_tokens", 0);
        let mut v = json!({"input_tokens": self.g("input_tokens", 11),
            "cache_creation_input_tokens": c5 + c1,
            "cache_read_input_tokens": self.g("cache_read_input_tokens", 0),
            "cache_creation": {"ephemeral_5m_input_tokens": c5, "ephemeral_1h_input_tokens": c1},
            "output_tokens": output, "service_tier": "standard"});
        if let Some(w) = self.u.get("web_search_requests") {
            v["server_tool_use"] = json!({"web_search_requests": w});
        }
        v
    }
}

fn whole(s: &Spec) -> Value {
    let text = s.text();
    match s.kind {
        Kind::Chat => {
            json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000,
            "model": s.model, "service_tier": "default", "system_fingerprint": null,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": s.oai_usage(false)})
        }
        Kind::Completions => {
            json!({"id": "cmpl-fake", "object": "text_completion", "created": 1_700_000_000,
            "model": s.model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
            "usage": s.oai_usage(false)})
        }
        Kind::Responses => response_obj(s, "completed", Some(&text), true),
        Kind::Messages => {
            json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": s.model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": s.anth_usage(s.g("output_tokens", 7))})
        }
    }
}

fn response_obj(s: &Spec, status: &str, text: Option<&str>, usage: bool) -> Value {
    let output = match text {
        Some(t) => {
            json!([{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": []}]}])
        }
        None => json!([]),
    };
    json!({"id": "resp_fake", "object": "response", "created_at": 1_700_000_000, "status": status,
        "model": s.model, "output": output, "parallel_tool_calls": true, "tool_choice": "auto",
        "tools": [], "error": null, "incomplete_details": null,
        "usage": if usage { s.oai_usage(true) } else { Value::Null }})
}

fn sse(event: Option<&str>, data: &Value) -> Bytes {
    let mut s = String::new();
    if let Some(e) = event {
        s.push_str("event: ");
        s.push_str(e);
        s.push('\n');
    }
    s.push_str("data: ");
    s.push_str(&data.to_string());
    s.push_str("\n\n");
    Bytes::from(s)
}

fn stream_resp(s: Spec) -> Response<FakeBody> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let _ = produce(&s, &tx).await;
    });
    let mut r = Response::new(http_body_util::Either::Right(ChanBody { rx }));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    r
}

type Tx = tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>;

async fn produce(s: &Spec, tx: &Tx) -> Result<(), ()> {
    let send = |b: Bytes| async move { tx.send(Ok(b)).await.map_err(|_| ()) };
    let cut = || async {
        // Let the connection write out what was sent before breaking it.
        drained(tx).await;
        let _ = tx
            .send(Err(std::io::Error::other("fake provider: mid-stream cut")))
            .await;
    };
    // Opening events.
    match s.kind {
        Kind::Messages => {
            send(sse(Some("message_start"), &json!({"type": "message_start", "message": {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": s.model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": s.anth_usage(1)}}))).await?;
            send(sse(
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ))
            .await?;
            send(sse(Some("ping"), &json!({"type": "ping"}))).await?;
        }
        Kind::Responses => {
            send(sse(
                Some("response.created"),
                &json!({"type": "response.created", "sequence_number": 0,
                "response": response_obj(s, "in_progress", None, false)}),
            ))
            .await?;
        }
        _ => {}
    }
    let mut text = String::new();
    for i in 0..s.chunks {
        if s.cut_after == Some(i) {
            cut().await;
            return Ok(());
        }
        if s.stream_error && i == s.chunks / 2 {
            let e = match s.kind {
                Kind::Messages => sse(
                    Some("error"),
                    &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                ),
                Kind::Responses => sse(
                    Some("error"),
                    &json!({"type": "error", "sequence_number": i + 1, "code": "server_error", "message": "fake stream error", "param": null}),
                ),
                _ => sse(
                    None,
                    &json!({"error": {"message": "fake stream error", "type": "server_error", "param": null, "code": null}}),
                ),
            };
            send(e).await?;
            return Ok(());
        }
        if let Some(d) = s.chunk_delay {
            tokio::time::sleep(d).await;
        }
        let piece = TEXT[i % TEXT.len()];
        text.push_str(piece);
        let b = match s.kind {
            Kind::Chat => {
                let mut delta = json!({"content": piece});
                if i == 0 {
                    delta["role"] = json!("assistant");
                }
                let mut c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
                    "model": s.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]});
                if s.include_usage {
                    c["usage"] = Value::Null;
                }
                sse(None, &c)
            }
            Kind::Completions => {
                let mut c = json!({"id": "cmpl-fake", "object": "text_completion", "created": 1_700_000_000,
                    "model": s.model, "choices": [{"index": 0, "text": piece, "logprobs": null, "finish_reason": null}]});
                if s.include_usage {
                    c["usage"] = Value::Null;
                }
                sse(None, &c)
            }
            Kind::Responses => sse(
                Some("response.output_text.delta"),
                &json!({"type": "response.output_text.delta",
                "sequence_number": i + 1, "item_id": "msg_fake", "output_index": 0, "content_index": 0, "delta": piece}),
            ),
            Kind::Messages => sse(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}}),
            ),
        };
        send(b).await?;
    }
    if s.cut_after == Some(s.chunks) {
        cut().await;
        return Ok(());
    }
    match s.kind {
        Kind::Chat | Kind::Completions => {
            let fin = if s.kind == Kind::Chat {
                json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
                    "model": s.model, "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]})
            } else {
                json!({"id": "cmpl-fake", "object": "text_completion", "created": 1_700_000_000,
                    "model": s.model, "choices": [{"index": 0, "text": "", "logprobs": null, "finish_reason": "stop"}]})
            };
            let mut fin = fin;
            if s.include_usage {
                fin["usage"] = Value::Null;
            }
            send(sse(None, &fin)).await?;
            if s.include_usage {
                let obj = if s.kind == Kind::Chat {
                    "chat.completion.chunk"
                } else {
                    "text_completion"
                };
                send(sse(
                    None,
                    &json!({"id": "chatcmpl-fake", "object": obj, "created": 1_700_000_000,
                    "model": s.model, "choices": [], "usage": s.oai_usage(false)}),
                ))
                .await?;
            }
            send(Bytes::from_static(b"data: [DONE]\n\n")).await?;
        }
        Kind::Responses => {
            send(sse(
                Some("response.completed"),
                &json!({"type": "response.completed",
                "sequence_number": s.chunks + 1,
                "response": response_obj(s, "completed", Some(&text), true)}),
            ))
            .await?;
        }
        Kind::Messages => {
            send(sse(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": 0}),
            ))
            .await?;
            let out = s.g("output_tokens", 7);
            // Cumulative deltas: half, then all. The last value wins.
            send(sse(Some("message_delta"), &json!({"type": "message_delta",
                "delta": {"stop_reason": null, "stop_sequence": null}, "usage": {"output_tokens": out / 2}}))).await?;
            send(sse(Some("message_delta"), &json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": out}}))).await?;
            send(sse(Some("message_stop"), &json!({"type": "message_stop"}))).await?;
        }
    }
    Ok(())
}

/// Waits until the body has taken every queued chunk and had time to write it out.
pub async fn drained<T>(tx: &tokio::sync::mpsc::Sender<T>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tx.capacity() < tx.max_capacity() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        s.push(A[(n >> 18) as usize & 63] as char);
        s.push(A[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"f"), "Zg==");
    }
}
