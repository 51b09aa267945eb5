//! Usage capture: the providers' usage objects mapped into the ledger's disjoint token
//! classes (`event-schema.md`), for whole JSON responses and for SSE streams.
//!
//! - OpenAI `prompt_tokens` / `input_tokens` include cached and cache-write tokens, so
//!   `input_tokens = prompt - cached - cache_write` (never negative).
//! - Anthropic `input_tokens` already excludes cache reads and writes; cache writes split by
//!   lifetime when `cache_creation` is given.
//! - Anthropic streams: `message_start` carries the input side, every `message_delta` carries
//!   cumulative values: the last value of each field wins, never a sum.
//! - OpenAI chat/completions streams: the usage chunk (`choices: []`) before `[DONE]`; when the
//!   gateway asked for it on the client's behalf, that chunk is not passed on.
//! - Responses streams: `response.completed`, `response.incomplete`, `response.failed`.

use rust_decimal::Decimal;
use serde::Deserialize;
use tollgate_core::Usage;

/// Which API a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Responses,
    Completions,
    Embeddings,
    Models,
    Messages,
    CountTokens,
}

impl Api {
    /// The route table: path (after any query string is removed) to API.
    pub fn from_path(path: &str) -> Option<Api> {
        Some(match path {
            "/v1/chat/completions" => Api::Chat,
            "/v1/responses" => Api::Responses,
            "/v1/completions" => Api::Completions,
            "/v1/embeddings" => Api::Embeddings,
            "/v1/messages" => Api::Messages,
            "/v1/messages/count_tokens" => Api::CountTokens,
            p if p == "/v1/models" || p.starts_with("/v1/models/") => Api::Models,
            _ => return None,
        })
    }

    pub fn is_anthropic(self) -> bool {
        matches!(self, Api::Messages | Api::CountTokens)
    }

    /// Whether calls are recorded as usage events (models and token counting are free).
    pub fn is_priced(self) -> bool {
        !matches!(self, Api::Models | Api::CountTokens)
    }

    pub fn operation(self) -> tollgate_core::Operation {
        use tollgate_core::Operation as O;
        match self {
            Api::Chat | Api::Messages | Api::Models | Api::CountTokens => O::Chat,
            Api::Responses => O::Responses,
            Api::Completions => O::TextCompletion,
            Api::Embeddings => O::Embeddings,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OaiPromptDetails {
    cached_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OaiOutputDetails {
    reasoning_tokens: Option<u64>,
}

/// OpenAI `CompletionUsage` and `ResponseUsage` (both spellings).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OaiUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<OaiPromptDetails>,
    completion_tokens_details: Option<OaiOutputDetails>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<OaiPromptDetails>,
    output_tokens_details: Option<OaiOutputDetails>,
}

impl OaiUsage {
    pub fn to_usage(&self) -> Usage {
        let total_in = self.prompt_tokens.or(self.input_tokens).unwrap_or(0);
        let det = self
            .prompt_tokens_details
            .as_ref()
            .or(self.input_tokens_details.as_ref());
        let cached = det.and_then(|d| d.cached_tokens).unwrap_or(0);
        let written = det.and_then(|d| d.cache_write_tokens).unwrap_or(0);
        let out = self.completion_tokens.or(self.output_tokens).unwrap_or(0);
        let reasoning = self
            .completion_tokens_details
            .as_ref()
            .or(self.output_tokens_details.as_ref())
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        Usage {
            input_tokens: total_in.saturating_sub(cached).saturating_sub(written),
            cache_read_tokens: cached.min(total_in),
            cache_write_tokens: written.min(total_in.saturating_sub(cached)),
            cache_write_1h_tokens: 0,
            output_tokens: out,
            reasoning_tokens: reasoning.min(out),
            units: Default::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct AnthCacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct AnthServerTools {
    web_search_requests: Option<u64>,
    web_fetch_requests: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
struct AnthOutputDetails {
    thinking_tokens: Option<u64>,
}

/// Anthropic `Usage` / `MessageDeltaUsage`: every field optional, so a delta overrides only
/// what it carries.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
pub struct AnthUsage {
    input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation: Option<AnthCacheCreation>,
    output_tokens: Option<u64>,
    output_tokens_details: Option<AnthOutputDetails>,
    server_tool_use: Option<AnthServerTools>,
}

impl AnthUsage {
    /// Cumulative merge: a field present in `later` replaces ours (last value wins).
    pub fn merge(&mut self, later: AnthUsage) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            input_tokens,
            cache_creation_input_tokens,
            cache_read_input_tokens,
            cache_creation,
            output_tokens,
            output_tokens_details,
            server_tool_use
        );
    }

    pub fn to_usage(&self) -> Usage {
        let written = self.cache_creation_input_tokens.unwrap_or(0);
        let (w5, w1h) = match &self.cache_creation {
            Some(c)
                if c.ephemeral_5m_input_tokens.is_some()
                    || c.ephemeral_1h_input_tokens.is_some() =>
            {
                (
                    c.ephemeral_5m_input_tokens.unwrap_or(0),
                    c.ephemeral_1h_input_tokens.unwrap_or(0),
                )
            }
            _ => (written, 0),
        };
        let out = self.output_tokens.unwrap_or(0);
        let mut units = std::collections::BTreeMap::new();
        if let Some(s) = &self.server_tool_use {
            for (k, v) in [
                ("web_search_requests", s.web_search_requests),
                ("web_fetch_requests", s.web_fetch_requests),
            ] {
                if let Some(n) = v.filter(|n| *n > 0) {
                    units.insert(k.to_string(), Decimal::from(n));
                }
            }
        }
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            cache_read_tokens: self.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: w5,
            cache_write_1h_tokens: w1h,
            output_tokens: out,
            reasoning_tokens: self
                .output_tokens_details
                .as_ref()
                .and_then(|d| d.thinking_tokens)
                .unwrap_or(0)
                .min(out),
            units,
        }
    }
}

/// What a whole (non-streaming) response body says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captured {
    pub usage: Option<Usage>,
    /// The provider's response id (`chatcmpl-...`, `resp_...`, `msg_...`).
    pub id: Option<String>,
    pub model: Option<String>,
    pub service_tier: Option<String>,
}

#[derive(Deserialize)]
struct OaiBody {
    id: Option<String>,
    model: Option<String>,
    usage: Option<OaiUsage>,
    service_tier: Option<String>,
}

#[derive(Deserialize)]
struct AnthBody {
    id: Option<String>,
    model: Option<String>,
    usage: Option<AnthUsage>,
}

/// Usage and model from a whole JSON response body (`None` usage when absent or not JSON).
pub fn capture_body(api: Api, body: &[u8]) -> Captured {
    if api.is_anthropic() {
        match serde_json::from_slice::<AnthBody>(body) {
            Ok(b) => Captured {
                usage: b.usage.map(|u| u.to_usage()),
                id: b.id,
                model: b.model,
                service_tier: None,
            },
            Err(_) => Captured::default(),
        }
    } else {
        match serde_json::from_slice::<OaiBody>(body) {
            Ok(b) => Captured {
                usage: b.usage.map(|u| u.to_usage()),
                id: b.id,
                model: b.model,
                service_tier: b.service_tier.filter(|t| t != "default" && t != "auto"),
            },
            Err(_) => Captured::default(),
        }
    }
}

/// How a stream ended, as the stream itself says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Still open (no terminal event seen).
    Open,
    /// A normal end (`[DONE]`, `message_stop`, `response.completed`).
    Done,
    /// The provider reported an error in the stream (`error` event, `response.failed`).
    Failed,
    /// `response.incomplete`.
    Incomplete,
}

/// Reads an SSE stream event by event, collecting usage; decides which events to pass on.
#[derive(Debug)]
pub struct StreamTap {
    api: Api,
    /// The gateway added `stream_options.include_usage`: drop the usage chunk.
    strip_usage_chunk: bool,
    pub anth: Option<AnthUsage>,
    pub oai: Option<Usage>,
    pub model: Option<String>,
    pub id: Option<String>,
    pub service_tier: Option<String>,
    pub end: StreamEnd,
    /// Characters of generated text seen (the basis of an estimate if the stream is cut).
    pub output_chars: u64,
    /// Whether a content event was seen (time to first token).
    pub first_token: bool,
}

#[derive(Deserialize)]
struct OaiChunk {
    id: Option<String>,
    model: Option<String>,
    usage: Option<OaiUsage>,
    choices: Option<Vec<OaiChoice>>,
    service_tier: Option<String>,
}

#[derive(Deserialize)]
struct OaiChoice {
    delta: Option<OaiDelta>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct OaiDelta {
    content: Option<String>,
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct RespEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    delta: Option<serde_json::Value>,
    response: Option<RespObj>,
}

#[derive(Deserialize)]
struct RespObj {
    id: Option<String>,
    model: Option<String>,
    usage: Option<OaiUsage>,
    service_tier: Option<String>,
}

#[derive(Deserialize)]
struct AnthEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<AnthBody>,
    usage: Option<AnthUsage>,
    delta: Option<serde_json::Value>,
}

impl StreamTap {
    pub fn new(api: Api, strip_usage_chunk: bool) -> StreamTap {
        StreamTap {
            api,
            strip_usage_chunk,
            anth: None,
            oai: None,
            model: None,
            id: None,
            service_tier: None,
            end: StreamEnd::Open,
            output_chars: 0,
            first_token: false,
        }
    }

    /// The usage reported so far, if the provider reported any.
    pub fn usage(&self) -> Option<Usage> {
        match self.api {
            Api::Messages => self.anth.as_ref().map(|u| u.to_usage()),
            _ => self.oai.clone(),
        }
    }

    /// Whether the final usage record arrived (the stream's usage is exact).
    pub fn has_final_usage(&self) -> bool {
        match self.api {
            // message_start alone gives the input side; the output count is final only once
            // the stream ended normally (the last message_delta before message_stop).
            Api::Messages => self.anth.is_some() && self.end == StreamEnd::Done,
            _ => self.oai.is_some(),
        }
    }

    /// Looks at one SSE event (`event:` name and joined `data:`); returns false when the
    /// event must not be passed to the client.
    pub fn observe(&mut self, event: Option<&str>, data: &str) -> bool {
        match self.api {
            Api::Messages => self.observe_anthropic(data),
            Api::Responses => self.observe_responses(data),
            _ => self.observe_openai(event, data),
        }
    }

    fn observe_openai(&mut self, _event: Option<&str>, data: &str) -> bool {
        let d = data.trim();
        if d == "[DONE]" {
            if self.end == StreamEnd::Open {
                self.end = StreamEnd::Done;
            }
            return true;
        }
        let Ok(c) = serde_json::from_str::<OaiChunk>(d) else {
            // `{"error": ...}` mid-stream, or anything unreadable: pass it on.
            if d.contains("\"error\"") {
                self.end = StreamEnd::Failed;
            }
            return true;
        };
        if self.model.is_none() {
            self.model = c.model;
        }
        if self.id.is_none() {
            self.id = c.id;
        }
        if let Some(t) = c.service_tier.filter(|t| t != "default" && t != "auto") {
            self.service_tier = Some(t);
        }
        let choices = c.choices.unwrap_or_default();
        for ch in &choices {
            let mut n = ch.text.as_ref().map_or(0, |t| t.chars().count());
            if let Some(dl) = &ch.delta {
                n += dl.content.as_ref().map_or(0, |t| t.chars().count());
                n += dl
                    .reasoning_content
                    .as_ref()
                    .map_or(0, |t| t.chars().count());
            }
            if n > 0 {
                self.first_token = true;
                self.output_chars += n as u64;
            }
        }
        if let Some(u) = c.usage {
            self.oai = Some(u.to_usage());
            if self.strip_usage_chunk && choices.is_empty() {
                return false;
            }
        }
        true
    }

    fn observe_responses(&mut self, data: &str) -> bool {
        let Ok(e) = serde_json::from_str::<RespEvent>(data.trim()) else {
            return true;
        };
        let kind = e.kind.as_deref().unwrap_or("");
        if let Some(r) = &e.response {
            if let Some(m) = &r.model {
                self.model = Some(m.clone());
            }
            if let Some(i) = &r.id {
                self.id = Some(i.clone());
            }
            if let Some(t) = r
                .service_tier
                .as_ref()
                .filter(|t| *t != "default" && *t != "auto")
            {
                self.service_tier = Some(t.clone());
            }
        }
        if kind.ends_with(".delta")
            && let Some(serde_json::Value::String(s)) = &e.delta
        {
            self.first_token = true;
            self.output_chars += s.chars().count() as u64;
        }
        match kind {
            "response.completed" | "response.incomplete" | "response.failed" => {
                if let Some(u) = e.response.and_then(|r| r.usage) {
                    self.oai = Some(u.to_usage());
                }
                self.end = match kind {
                    "response.completed" => StreamEnd::Done,
                    "response.incomplete" => StreamEnd::Incomplete,
                    _ => StreamEnd::Failed,
                };
            }
            "error" => self.end = StreamEnd::Failed,
            _ => {}
        }
        true
    }

    fn observe_anthropic(&mut self, data: &str) -> bool {
        let Ok(e) = serde_json::from_str::<AnthEvent>(data.trim()) else {
            return true;
        };
        match e.kind.as_deref().unwrap_or("") {
            "message_start" => {
                if let Some(m) = e.message {
                    self.model = m.model.or(self.model.take());
                    self.id = m.id.or(self.id.take());
                    if let Some(u) = m.usage {
                        self.anth.get_or_insert_with(AnthUsage::default).merge(u);
                    }
                }
            }
            "message_delta" => {
                if let Some(u) = e.usage {
                    self.anth.get_or_insert_with(AnthUsage::default).merge(u);
                }
            }
            "content_block_delta" => {
                if let Some(serde_json::Value::Object(d)) = &e.delta {
                    for k in ["text", "thinking", "partial_json"] {
                        if let Some(serde_json::Value::String(s)) = d.get(k) {
                            self.first_token = true;
                            self.output_chars += s.chars().count() as u64;
                        }
                    }
                }
            }
            "message_stop" => self.end = StreamEnd::Done,
            "error" => self.end = StreamEnd::Failed,
            _ => {}
        }
        true
    }
}

/// Splits an SSE byte stream into whole events (terminated by a blank line), keeping any
/// partial event for the next chunk. Only the partial event is ever held.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
}

/// One SSE event: its raw bytes (to forward unchanged) and its parsed name and data.
#[derive(Debug)]
pub struct SseEvent {
    pub raw: bytes::Bytes,
    pub event: Option<String>,
    pub data: String,
}

impl SseSplitter {
    /// Appends a chunk and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.buf.len() {
            // An event ends at "\n\n" or "\r\n\r\n" (or "\r\r").
            let end = if self.buf[i..].starts_with(b"\n\n") || self.buf[i..].starts_with(b"\r\r") {
                Some(i + 2)
            } else if self.buf[i..].starts_with(b"\r\n\r\n") {
                Some(i + 4)
            } else {
                None
            };
            if let Some(e) = end {
                out.push(parse_event(&self.buf[start..e]));
                start = e;
                i = e;
            } else {
                i += 1;
            }
        }
        self.buf.drain(..start);
        out
    }

    /// Whatever is left when the stream ends (an unterminated event).
    pub fn rest(&mut self) -> Option<bytes::Bytes> {
        if self.buf.is_empty() {
            None
        } else {
            Some(bytes::Bytes::from(std::mem::take(&mut self.buf)))
        }
    }
}

fn parse_event(raw: &[u8]) -> SseEvent {
    let text = String::from_utf8_lossy(raw);
    let mut event = None;
    let mut data = String::new();
    for line in text.split(['\n', '\r']) {
        if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_string());
        }
    }
    SseEvent {
        raw: bytes::Bytes::copy_from_slice(raw),
        event,
        data,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn openai_classes_add_up_to_the_providers_totals() {
        // prompt 3,400 of which 1,200 cached and 100 written: input 2,100; output 620 (50
        // reasoning). 2,100 + 1,200 + 100 = 3,400 = prompt_tokens.
        let c = capture_body(
            Api::Chat,
            br#"{"model":"gpt-x","usage":{"prompt_tokens":3400,"completion_tokens":620,"total_tokens":4020,
              "prompt_tokens_details":{"cached_tokens":1200,"cache_write_tokens":100},
              "completion_tokens_details":{"reasoning_tokens":50}}}"#,
        );
        let u = c.usage.unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
                u.output_tokens,
                u.reasoning_tokens
            ),
            (2100, 1200, 100, 620, 50)
        );
        assert_eq!(u.total_input(), 3400);
        assert_eq!(c.model.as_deref(), Some("gpt-x"));
        // Responses spelling.
        let u = capture_body(
            Api::Responses,
            br#"{"model":"m","usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":3},"total_tokens":17}}"#,
        )
        .usage
        .unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cache_read_tokens,
                u.output_tokens,
                u.reasoning_tokens
            ),
            (6, 4, 7, 3)
        );
    }

    #[test]
    fn anthropic_classes_add_up_and_split_cache_lifetimes() {
        // input 25 excludes caches; 1,500 written (1,000 for 5 min, 500 for 1 h), 20,000 read.
        let u = capture_body(
            Api::Messages,
            br#"{"model":"claude-x","usage":{"input_tokens":25,"cache_creation_input_tokens":1500,"cache_read_input_tokens":20000,
               "cache_creation":{"ephemeral_5m_input_tokens":1000,"ephemeral_1h_input_tokens":500},"output_tokens":512,
               "server_tool_use":{"web_search_requests":2}}}"#,
        )
        .usage
        .unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
                u.cache_write_1h_tokens,
                u.output_tokens
            ),
            (25, 20000, 1000, 500, 512)
        );
        assert_eq!(u.total_input(), 25 + 1500 + 20000);
        assert_eq!(u.units["web_search_requests"], Decimal::from(2));
    }

    #[test]
    fn anthropic_stream_last_delta_wins_never_summed() {
        let mut t = StreamTap::new(Api::Messages, false);
        t.observe(Some("message_start"), r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":30,"cache_read_input_tokens":5,"output_tokens":1}}}"#);
        t.observe(
            Some("message_delta"),
            r#"{"type":"message_delta","usage":{"output_tokens":40}}"#,
        );
        t.observe(
            Some("message_delta"),
            r#"{"type":"message_delta","usage":{"output_tokens":90,"input_tokens":30}}"#,
        );
        assert!(!t.has_final_usage());
        t.observe(Some("message_stop"), r#"{"type":"message_stop"}"#);
        let u = t.usage().unwrap();
        // 90, not 1 + 40 + 90; input 30 once.
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.output_tokens),
            (30, 5, 90)
        );
        assert!(t.has_final_usage());
    }

    #[test]
    fn injected_usage_chunk_is_dropped_only_when_injected() {
        let usage_chunk = r#"{"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        let mut t = StreamTap::new(Api::Chat, true);
        assert!(t.observe(
            None,
            r#"{"model":"m","choices":[{"delta":{"content":"hey"}}],"usage":null}"#
        ));
        assert!(!t.observe(None, usage_chunk));
        assert!(t.observe(None, "[DONE]"));
        assert_eq!(t.usage().unwrap().output_tokens, 2);
        assert_eq!(t.output_chars, 3);
        let mut t = StreamTap::new(Api::Chat, false);
        assert!(t.observe(None, usage_chunk));
    }

    #[test]
    fn splitter_holds_only_the_partial_event() {
        let mut s = SseSplitter::default();
        let ev = s.push(b"event: a\ndata: {\"x\":1}\n\ndata: par");
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].event.as_deref(), Some("a"));
        assert_eq!(ev[0].data, "{\"x\":1}");
        let ev = s.push(b"tial\r\n\r\n");
        assert_eq!(ev[0].data, "partial");
        assert!(s.rest().is_none());
    }
}
