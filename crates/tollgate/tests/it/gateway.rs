//! The gateway end to end: the real `tollgate serve` between the official `openai` and
//! `anthropic` Python SDKs and `tollgate fake-provider`, checking the recorded events token by
//! token. Token counts are the fake provider's configured usage (the `x-fake-usage` header
//! each call sends); prices come from `GW_RATES` below; costs are worked out by hand.
//! Ports are picked by the OS (`--listen 127.0.0.1:0`, read back from `--addr-file`); the
//! tests wait by polling with a deadline, and stop the gateway with SIGTERM, which flushes
//! every spooled event into the ledger before it exits.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Sandbox, path_str, python};

/// Per million tokens. openai/gw-gpt: input 1, cache read 0.1, output 5.
/// anthropic/gw-claude: input 3, cache read 0.3, cache write 3.75 (5 min) / 6 (1 h), output 15.
/// openai/gw-embed: input 0.02.
const GW_RATES: &str = r#"
[[rate]]
provider = "openai"
model = "gw-gpt"
currency = "USD"
input_per_mtok = "1"
cache_read_per_mtok = "0.1"
output_per_mtok = "5"

[[rate]]
provider = "openai"
model = "gw-embed"
currency = "USD"
input_per_mtok = "0.02"

[[rate]]
provider = "anthropic"
model = "gw-claude"
currency = "USD"
input_per_mtok = "3"
cache_read_per_mtok = "0.3"
cache_write_per_mtok = "3.75"
cache_write_1h_per_mtok = "6"
output_per_mtok = "15"
"#;

pub fn wait_for_file(p: &Path, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(p)
            && s.ends_with('\n')
        {
            return s.trim().to_string();
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("process exited ({st}) before writing {}", p.display());
        }
        assert!(
            Instant::now() < deadline,
            "{} not written within 30 s",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fake provider and a gateway in front of it, in one sandbox.
pub struct Gw {
    pub sb: Sandbox,
    fake: Child,
    gw: Option<Child>,
    pub addr: String,
    pub fake_addr: String,
    pub key: String,
    pub key_id: String,
    config: Option<PathBuf>,
    /// Replaces the fake provider as the OpenAI upstream at the next (re)start.
    pub openai_base_url: Option<String>,
}

impl Gw {
    pub fn start(config: Option<&str>) -> Gw {
        let sb = Sandbox::new();
        sb.write("rates.toml", GW_RATES);
        let config = config.map(|c| sb.write("tollgate.toml", c));
        let mut fake = sb
            .bare_command()
            .args(["fake-provider", "--listen", "127.0.0.1:0", "--addr-file"])
            .arg(sb.path().join("fake.addr"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake provider");
        let fake_addr = wait_for_file(&sb.path().join("fake.addr"), &mut fake);
        let out = sb
            .run(&[
                "keys",
                "add",
                "--team",
                "search",
                "--service",
                "api",
                "--environment",
                "prod",
                "--cost-center",
                "cc-42",
                "--format",
                "json",
            ])
            .json();
        let mut g = Gw {
            sb,
            fake,
            gw: None,
            addr: String::new(),
            fake_addr,
            key: out["key"].as_str().unwrap().to_string(),
            key_id: out["key_id"].as_str().unwrap().to_string(),
            config,
            openai_base_url: None,
        };
        g.launch();
        g
    }

    fn launch(&mut self) {
        let addr_file = self.sb.path().join("gw.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut c = self.sb.bare_command();
        c.arg("--data-dir")
            .arg(self.sb.data_dir())
            .arg("--prices")
            .arg(self.sb.path().join("rates.toml"));
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "2",
            "--addr-file",
        ])
        .arg(&addr_file)
        .env(
            "TOLLGATE_OPENAI_BASE_URL",
            self.openai_base_url
                .clone()
                .unwrap_or_else(|| format!("http://{}/v1", self.fake_addr)),
        )
        .env(
            "TOLLGATE_ANTHROPIC_BASE_URL",
            format!("http://{}", self.fake_addr),
        )
        .env("OPENAI_API_KEY", "sk-upstream-openai")
        .env("ANTHROPIC_API_KEY", "sk-upstream-anthropic")
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("start gateway");
        self.addr = wait_for_file(&addr_file, &mut child);
        self.gw = Some(child);
    }

    /// SIGTERM: the gateway drains and flushes the spool into the ledger, then exits 0.
    pub fn stop(&mut self) -> String {
        let child = self.gw.take().expect("gateway running");
        let st = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
        let out = child.wait_with_output().expect("wait gateway");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "gateway exit {:?}: {err}", out.status);
        err
    }

    /// SIGKILL: a crash.
    pub fn crash(&mut self) {
        let mut child = self.gw.take().expect("gateway running");
        child.kill().expect("kill -9");
        let _ = child.wait();
    }

    pub fn restart(&mut self) {
        self.launch();
    }

    /// Runs a Python script with the SDKs pointed at the gateway; returns its stdout as JSON.
    pub fn py(&self, script: &str) -> Value {
        let p = self.sb.write("client.py", script);
        let out = Command::new(python())
            .arg(&p)
            .current_dir(self.sb.path())
            .env("OPENAI_BASE_URL", format!("http://{}/v1", self.addr))
            .env("OPENAI_API_KEY", &self.key)
            .env("ANTHROPIC_BASE_URL", format!("http://{}", self.addr))
            .env("ANTHROPIC_API_KEY", &self.key)
            .env("GATEWAY", &self.addr)
            .output()
            .expect("run python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "python failed\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// Events by request id, from the ledger.
    pub fn events(&self) -> Vec<Value> {
        self.sb.sql(
            "SELECT request_id, attempt, parent_request_id, team_id, cost_center, service, feature, \
             environment, tenant_id, user_id, session_id, api_key_id, tags, attribution_status, provider, \
             model_requested, model, operation, status, http_status, streamed, input_tokens, \
             cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens, \
             reasoning_tokens, cost, pricing_status, price_version FROM events ORDER BY request_id, attempt",
        )
    }

    pub fn event(&self, rid: &str) -> Value {
        let all = self.events();
        let m: Vec<&Value> = all.iter().filter(|e| e["request_id"] == rid).collect();
        assert_eq!(m.len(), 1, "events for {rid}: {all:#?}");
        m[0].clone()
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(mut g) = self.gw.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
        let _ = self.fake.kill();
        let _ = self.fake.wait();
    }
}

/// A raw HTTP/1.1 request (Connection: close); returns status, headers (lowercase) and body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_string())
}

pub fn n(e: &Value, f: &str) -> i64 {
    e[f].as_i64().unwrap_or_else(|| panic!("{f} in {e}"))
}

#[test]
fn openai_sdk_calls_are_recorded_token_by_token() {
    let mut g = Gw::start(None);
    let r = g.py(
        r#"
import json, openai
c = openai.OpenAI(max_retries=0)
out = {}
def h(rid, usage, **extra):
    d = {"x-tollgate-request-id": rid, "x-fake-usage": usage, "x-tollgate-feature": "search",
         "x-tollgate-user": "u-7", "x-tollgate-session": "s-1", "x-tollgate-tags": "exp=a, ver=2"}
    d.update(extra)
    return d
raw = c.chat.completions.with_raw_response.create(model="gw-gpt", messages=[{"role": "user", "content": "hi"}],
    extra_headers=h("chat-whole", "prompt_tokens=1200,cached_tokens=200,completion_tokens=300,reasoning_tokens=50"))
out["rid_header"] = raw.headers.get("x-tollgate-request-id")
out["upstream_auth"] = raw.headers.get("x-fake-received-auth")
out["chat_usage"] = raw.parse().usage.prompt_tokens
# Streaming without include_usage: the gateway asks for usage and hides the extra chunk.
s = c.chat.completions.create(model="gw-gpt", messages=[], stream=True,
    extra_headers=h("chat-stream", "prompt_tokens=500,completion_tokens=40"))
chunks = list(s)
out["stream_text"] = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
out["stream_usage_chunks"] = sum(1 for ch in chunks if ch.usage is not None)
# Streaming with include_usage: the client gets its usage chunk.
s = c.chat.completions.create(model="gw-gpt", messages=[], stream=True, stream_options={"include_usage": True},
    extra_headers=h("chat-stream-usage", "prompt_tokens=70,completion_tokens=30"))
out["asked_usage"] = [ch.usage.completion_tokens for ch in s if ch.usage is not None]
r = c.responses.create(model="gw-gpt", input="hi",
    extra_headers=h("resp-whole", "prompt_tokens=900,cached_tokens=100,completion_tokens=80,reasoning_tokens=20"))
out["resp_text"] = r.output_text
evs = [e.type for e in c.responses.create(model="gw-gpt", input="hi", stream=True,
    extra_headers=h("resp-stream", "prompt_tokens=60,completion_tokens=20"))]
out["resp_events"] = evs[-1]
out["cmpl"] = c.completions.create(model="gw-gpt", prompt="hi",
    extra_headers=h("cmpl-whole", "prompt_tokens=33,completion_tokens=9")).choices[0].text
cs = c.completions.create(model="gw-gpt", prompt="hi", stream=True,
    extra_headers=h("cmpl-stream", "prompt_tokens=12,completion_tokens=4"))
out["cmpl_stream_usage_chunks"] = sum(1 for ch in cs if ch.usage is not None)
e = c.embeddings.create(model="gw-embed", input="hi", extra_headers=h("emb", "prompt_tokens=25"))
out["emb"] = list(e.data[0].embedding)
out["models"] = [m.id for m in c.models.list()]
print(json.dumps(out))
"#,
    );
    assert_eq!(r["rid_header"], "chat-whole");
    // The gateway key was replaced by the upstream key.
    assert_eq!(r["upstream_auth"], "Bearer sk-upstream-openai");
    assert_eq!(r["chat_usage"], 1200);
    assert_eq!(r["stream_text"], "Hello from the");
    assert_eq!(
        r["stream_usage_chunks"], 0,
        "the injected usage chunk leaked"
    );
    assert_eq!(r["asked_usage"], serde_json::json!([30]));
    assert_eq!(r["resp_text"], "Hello from the");
    assert_eq!(r["resp_events"], "response.completed");
    assert_eq!(r["cmpl"], "Hello from the");
    assert_eq!(r["cmpl_stream_usage_chunks"], 0);
    assert_eq!(r["emb"], serde_json::json!([0.25, -0.5, 0.125]));
    assert!(
        r["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "gpt-4o-mini")
    );
    g.stop();

    let all = g.events();
    // Eight priced calls; /v1/models is not an event.
    assert_eq!(all.len(), 8, "{all:#?}");
    let e = g.event("chat-whole");
    // prompt 1,200 includes 200 cached: input 1,000, cache read 200, output 300 (50 reasoning).
    assert_eq!(
        (
            n(&e, "input_tokens"),
            n(&e, "cache_read_tokens"),
            n(&e, "output_tokens"),
            n(&e, "reasoning_tokens")
        ),
        (1000, 200, 300, 50)
    );
    // 1,000 x 1e-6 + 200 x 0.1e-6 + 300 x 5e-6 = 0.001 + 0.00002 + 0.0015 = 0.00252
    assert_eq!(e["cost"], "0.00252");
    assert_eq!(e["pricing_status"], "priced");
    for (k, v) in [
        ("team_id", "search"),
        ("service", "api"),
        ("cost_center", "cc-42"),
        ("environment", "prod"),
        ("feature", "search"),
        ("user_id", "u-7"),
        ("session_id", "s-1"),
        ("attribution_status", "ok"),
        ("provider", "openai"),
        ("model", "gw-gpt"),
        ("operation", "chat"),
        ("status", "ok"),
    ] {
        assert_eq!(e[k], v, "{k} in {e}");
    }
    assert_eq!(e["api_key_id"], g.key_id.as_str());
    assert_eq!(e["tags"], r#"{"exp":"a","ver":"2"}"#);
    assert_eq!(e["streamed"], 0);

    let e = g.event("chat-stream");
    assert_eq!(
        (
            n(&e, "input_tokens"),
            n(&e, "output_tokens"),
            n(&e, "streamed")
        ),
        (500, 40, 1)
    );
    // 500 x 1e-6 + 40 x 5e-6 = 0.0005 + 0.0002 = 0.0007
    assert_eq!(e["cost"], "0.0007");
    let e = g.event("chat-stream-usage");
    assert_eq!((n(&e, "input_tokens"), n(&e, "output_tokens")), (70, 30));
    let e = g.event("resp-whole");
    assert_eq!(
        (
            n(&e, "input_tokens"),
            n(&e, "cache_read_tokens"),
            n(&e, "output_tokens"),
            n(&e, "reasoning_tokens")
        ),
        (800, 100, 80, 20)
    );
    assert_eq!(e["operation"], "responses");
    // 800 x 1e-6 + 100 x 0.1e-6 + 80 x 5e-6 = 0.0008 + 0.00001 + 0.0004 = 0.00121
    assert_eq!(e["cost"], "0.00121");
    let e = g.event("resp-stream");
    assert_eq!(
        (
            n(&e, "input_tokens"),
            n(&e, "output_tokens"),
            n(&e, "streamed")
        ),
        (60, 20, 1)
    );
    let e = g.event("cmpl-whole");
    assert_eq!((n(&e, "input_tokens"), n(&e, "output_tokens")), (33, 9));
    assert_eq!(e["operation"], "text_completion");
    let e = g.event("cmpl-stream");
    assert_eq!((n(&e, "input_tokens"), n(&e, "output_tokens")), (12, 4));
    let e = g.event("emb");
    assert_eq!((n(&e, "input_tokens"), n(&e, "output_tokens")), (25, 0));
    assert_eq!(e["operation"], "embeddings");
    // 25 x 0.02e-6 = 0.0000005
    assert_eq!(e["cost"], "0.0000005");
}

#[test]
fn anthropic_sdk_calls_keep_cache_classes_apart_and_take_the_last_delta() {
    let mut g = Gw::start(None);
    let r = g.py(
        r#"
import json, anthropic
c = anthropic.Anthropic(max_retries=0)
out = {}
def h(rid, usage):
    return {"x-tollgate-request-id": rid, "x-fake-usage": usage, "x-tollgate-feature": "chat",
            "x-tollgate-tenant": "acme"}
m = c.messages.with_raw_response.create(model="gw-claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
    extra_headers=h("msg-whole", "input_tokens=25,cache_read_input_tokens=2000,cache_5m_tokens=1000,cache_1h_tokens=500,output_tokens=512"))
out["upstream_auth"] = m.headers.get("x-fake-received-auth")
msg = m.parse()
out["text"] = msg.content[0].text
out["client_output_tokens"] = msg.usage.output_tokens
with c.messages.stream(model="gw-claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
        extra_headers=h("msg-stream", "input_tokens=40,output_tokens=90")) as s:
    out["stream_text"] = "".join(s.text_stream)
    out["stream_final_output"] = s.get_final_message().usage.output_tokens
out["count"] = c.messages.count_tokens(model="gw-claude", messages=[{"role": "user", "content": "hi"}],
    extra_headers={"x-fake-usage": "input_tokens=9", "x-tollgate-feature": "chat"}).input_tokens
print(json.dumps(out))
"#,
    );
    assert_eq!(r["upstream_auth"], "sk-upstream-anthropic");
    assert_eq!(r["text"], "Hello from the");
    assert_eq!(r["client_output_tokens"], 512);
    assert_eq!(r["stream_text"], "Hello from the");
    assert_eq!(r["stream_final_output"], 90);
    assert_eq!(r["count"], 9);
    g.stop();
    // count_tokens is passed through and not recorded.
    assert_eq!(g.events().len(), 2);
    let e = g.event("msg-whole");
    // Anthropic input_tokens already excludes caches: 25 uncached, 2,000 read, 1,000 written
    // for 5 min, 500 for 1 h; output 512.
    assert_eq!(
        (
            n(&e, "input_tokens"),
            n(&e, "cache_read_tokens"),
            n(&e, "cache_write_tokens"),
            n(&e, "cache_write_1h_tokens"),
            n(&e, "output_tokens")
        ),
        (25, 2000, 1000, 500, 512)
    );
    // 25 x 3e-6 + 2,000 x 0.3e-6 + 1,000 x 3.75e-6 + 500 x 6e-6 + 512 x 15e-6
    // = 0.000075 + 0.0006 + 0.00375 + 0.003 + 0.00768 = 0.015105
    assert_eq!(e["cost"], "0.015105");
    assert_eq!(e["provider"], "anthropic");
    assert_eq!(e["tenant_id"], "acme");
    let e = g.event("msg-stream");
    // message_start says output 1; the deltas say 45 then 90 (cumulative): 90, never 136.
    assert_eq!(
        (
            n(&e, "input_tokens"),
            n(&e, "output_tokens"),
            n(&e, "streamed")
        ),
        (40, 90, 1)
    );
    // 40 x 3e-6 + 90 x 15e-6 = 0.00012 + 0.00135 = 0.00147
    assert_eq!(e["cost"], "0.00147");
}

#[test]
fn failures_still_give_exactly_one_event_with_the_right_status() {
    let mut g = Gw::start(Some(
        "[gateway.upstreams.dead]\nbase_url = \"http://127.0.0.1:1/v1\"\nmodels = [\"dead-*\"]\n",
    ));
    let r = g.py(
        r#"
import json, openai, anthropic, time
out = {}
c = openai.OpenAI(max_retries=2)
def h(rid, **kw):
    d = {"x-tollgate-request-id": rid, "x-tollgate-feature": "f"}
    d.update(kw)
    return d
# A retried call: the first attempt fails upstream, the SDK retries with the same headers.
r = c.chat.completions.create(model="gw-gpt", messages=[],
    extra_headers={"Idempotency-Key": "idem-1", "x-fake-fail-times": "1", "x-tollgate-feature": "f",
                   "x-fake-usage": "prompt_tokens=10,completion_tokens=5"})
out["retried"] = r.choices[0].message.content
c = openai.OpenAI(max_retries=0)
try:
    c.chat.completions.create(model="gw-gpt", messages=[], extra_headers=h("upstream-429", **{"x-fake-status": "429"}))
except openai.RateLimitError as e:
    out["e429"] = e.status_code
try:
    c.chat.completions.create(model="dead-model", messages=[], extra_headers=h("unreachable"))
except openai.APIStatusError as e:
    out["unreachable"] = [e.status_code, e.body["message"]]
# A stream cut mid-way (after 2 chunks, no usage record).
try:
    s = c.chat.completions.create(model="gw-gpt", messages=[], stream=True,
        extra_headers=h("cut", **{"x-fake-cut-after": "2"}))
    for ch in s: pass
    out["cut"] = "no error"
except Exception as e:
    out["cut"] = type(e).__name__
a = anthropic.Anthropic(max_retries=0)
try:
    with a.messages.stream(model="gw-claude", max_tokens=5, messages=[],
            extra_headers={"x-tollgate-request-id": "cut-anth", "x-tollgate-feature": "f",
                           "x-fake-cut-after": "1", "x-fake-usage": "input_tokens=40,output_tokens=90"}) as s:
        for t in s.text_stream: pass
    out["cut_anth"] = "no error"
except Exception as e:
    out["cut_anth"] = type(e).__name__
# The client goes away mid-stream.
s = c.chat.completions.create(model="gw-gpt", messages=[], stream=True,
    extra_headers=h("gone", **{"x-fake-chunks": "50", "x-fake-chunk-delay-ms": "100"}))
next(iter(s))
s.close()
print(json.dumps(out))
"#,
    );
    assert_eq!(r["retried"], "Hello from the");
    assert_eq!(r["e429"], 429);
    assert_eq!(r["unreachable"][0], 502);
    assert!(
        r["unreachable"][1]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1"),
        "{r}"
    );
    assert_ne!(r["cut"], "no error");
    assert_ne!(r["cut_anth"], "no error");
    g.stop();

    let all = g.events();
    // Retry: two attempts of one logical request; only the successful one carries usage.
    let attempts: Vec<&Value> = all
        .iter()
        .filter(|e| {
            e["attempt"] == 2 || e["parent_request_id"].is_string() || e["http_status"] == 500
        })
        .collect();
    assert_eq!(attempts.len(), 2, "{all:#?}");
    let (first, second) = (
        attempts.iter().find(|e| e["attempt"] == 1).unwrap(),
        attempts.iter().find(|e| e["attempt"] == 2).unwrap(),
    );
    assert_eq!(
        (first["status"].as_str(), n(first, "http_status")),
        (Some("upstream_error"), 500)
    );
    assert_eq!(
        (n(first, "input_tokens"), n(first, "output_tokens")),
        (0, 0)
    );
    assert_eq!(second["parent_request_id"], first["request_id"]);
    assert_eq!(
        (n(second, "input_tokens"), n(second, "output_tokens")),
        (10, 5)
    );
    assert_eq!(second["status"], "ok");

    let e = g.event("upstream-429");
    assert_eq!(
        (e["status"].as_str(), n(&e, "http_status")),
        (Some("upstream_error"), 429)
    );
    let e = g.event("unreachable");
    assert_eq!(
        (e["status"].as_str(), n(&e, "http_status")),
        (Some("upstream_error"), 502)
    );
    assert_eq!(e["provider"], "dead");

    let e = g.event("cut");
    assert_eq!(e["status"], "upstream_error");
    assert_eq!(e["pricing_status"], "estimated");
    // Estimate basis: output = streamed chars / 4, rounded up: "Hello from" is 10 chars -> 3.
    assert_eq!(n(&e, "output_tokens"), 3);
    assert!(
        e["tags"]
            .as_str()
            .unwrap()
            .contains("tollgate_estimate_basis"),
        "{e}"
    );
    assert!(e["cost"].is_string(), "an estimate is still priced: {e}");

    let e = g.event("cut-anth");
    // message_start gave the input exactly (40); output max(1 reported, ceil(5 chars / 4) = 2).
    assert_eq!(e["pricing_status"], "estimated");
    assert_eq!((n(&e, "input_tokens"), n(&e, "output_tokens")), (40, 2));

    let e = g.event("gone");
    assert_eq!(e["status"], "cancelled");
    // 2 retried-call events + 429 + unreachable + 2 cuts + gone.
    assert_eq!(all.len(), 7, "{all:#?}");
}

#[test]
fn bad_input_answers_in_the_providers_error_shape() {
    let mut g = Gw::start(Some("[gateway]\nmax_body_bytes = 1000\n"));
    let auth = format!("Bearer {}", g.key);
    let feat = ("x-tollgate-feature", "f");
    let (s, head, body) = http(
        &g.addr,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth), feat],
        b"{nope",
    );
    assert_eq!(s, 400);
    assert!(head.contains("x-tollgate-request-id:"), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    // Anthropic shape on the Anthropic route.
    let (s, _, body) = http(
        &g.addr,
        "POST",
        "/v1/messages",
        &[("x-api-key", &g.key), feat],
        b"[1,",
    );
    assert_eq!(s, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("invalid_request_error"))
    );
    let (s, head, _) = http(
        &g.addr,
        "GET",
        "/v2/whatever",
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(s, 404);
    assert!(head.contains("x-tollgate-request-id:"));
    let big = vec![b' '; 1001];
    let (s, _, body) = http(
        &g.addr,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &big,
    );
    assert_eq!(s, 413);
    assert!(body.contains("1000"), "{body}");
    // A successful answer without usage is estimated, never recorded as $0.
    let (s, _, _) = http(
        &g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            feat,
            ("x-tollgate-request-id", "no-usage"),
            ("x-fake-no-usage", "1"),
        ],
        br#"{"model":"gw-gpt","messages":[]}"#,
    );
    assert_eq!(s, 200);
    let (s, _, body) = http(
        &g.addr,
        "POST",
        "/v1/messages",
        &[("x-api-key", "tg_wrong")],
        b"{}",
    );
    assert_eq!(s, 401);
    assert!(body.contains("authentication_error"), "{body}");
    g.sb.run(&["keys", "revoke", &g.key_id]).ok();
    // Revocation reaches the running gateway (it re-reads the store when it changes).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _, body) = http(
            &g.addr,
            "POST",
            "/v1/chat/completions",
            &[("authorization", &auth), feat],
            br#"{"model":"gw-gpt"}"#,
        );
        if s == 401 {
            assert!(body.contains("revoked"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "revoked key still accepted");
        std::thread::sleep(Duration::from_millis(50));
    }
    g.stop();
    // Nothing reached the provider that should be billed, except the calls made before the
    // revocation was seen.
    assert!(g.events().iter().all(|e| e["status"] == "ok"));
    let e = g.event("no-usage");
    // The request body is 32 bytes: 32 / 4 = 8 input tokens, 0 output.
    assert_eq!(e["pricing_status"], "estimated");
    assert_eq!((n(&e, "input_tokens"), n(&e, "output_tokens")), (8, 0));

    // Invalid config: both config check and serve name the key path.
    let bad =
        g.sb.write("bad.toml", "[gateway.attribution]\nmode = \"strict\"\n");
    for args in [
        vec!["config", "check"],
        vec!["serve", "--listen", "127.0.0.1:0"],
    ] {
        let mut a = vec!["--config", path_str(&bad)];
        a.extend(args);
        let err = g.sb.run(&a).fails().to_string();
        assert!(
            err.contains("gateway.attribution.mode") && err.contains("strict"),
            "{err}"
        );
    }
}

#[test]
fn attribution_modes_report_enforce_quarantine_and_override() {
    let mut g = Gw::start(Some(
        "[gateway.attribution]\nmode = \"enforce\"\nrequired = [\"feature\"]\n[gateway.attribution.vocabularies]\nfeature = [\"search\", \"chat\"]\n",
    ));
    let auth = format!("Bearer {}", g.key);
    let body = br#"{"model":"gw-gpt","messages":[]}"#;
    let call = |rid: &str, feature: Option<&str>| {
        let mut h = vec![
            ("authorization", auth.as_str()),
            ("x-tollgate-request-id", rid),
        ];
        if let Some(f) = feature {
            h.push(("x-tollgate-feature", f));
        }
        http(&g.addr, "POST", "/v1/chat/completions", &h, body)
    };
    let (s, _, b) = call("no-feature", None);
    assert_eq!(s, 400);
    assert!(b.contains("feature: missing"), "{b}");
    let (s, _, b) = call("bad-feature", Some("billing"));
    assert_eq!(s, 400);
    assert!(
        b.contains("\\\"billing\\\" is not one of search, chat"),
        "{b}"
    );
    assert_eq!(call("good", Some("search")).0, 200);
    // Per-key quarantine, then a temporary report override.
    g.sb.run(&["keys", "mode", &g.key_id, "quarantine"]).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    loop {
        i += 1;
        let (s, _, _) = call(&format!("q{i}"), None);
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "per-key mode not applied");
        std::thread::sleep(Duration::from_millis(50));
    }
    let quarantined = format!("q{i}");
    g.sb.run(&[
        "keys",
        "mode",
        &g.key_id,
        "report",
        "--until",
        "2999-01-01T00:00:00Z",
    ])
    .ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut j = 0;
    let overridden = loop {
        j += 1;
        let rid = format!("o{j}");
        let (s, head, _) = call(&rid, None);
        assert_eq!(s, 200);
        if head.contains("x-tollgate-attribution: overridden") {
            break rid;
        }
        assert!(Instant::now() < deadline, "override not applied: {head}");
        std::thread::sleep(Duration::from_millis(50));
    };
    g.stop();
    assert_eq!(g.event(&quarantined)["attribution_status"], "quarantined");
    assert_eq!(g.event("good")["attribution_status"], "ok");
    let e = g.event(&overridden);
    assert!(e["feature"].is_null());
    assert!(
        e["tags"].as_str().unwrap().contains("feature: missing"),
        "{e}"
    );
    // Refused calls are not events.
    assert!(
        g.events()
            .iter()
            .all(|e| e["request_id"] != "no-feature" && e["request_id"] != "bad-feature")
    );
}

#[test]
fn a_crash_loses_no_event_and_a_restart_replays_the_spool() {
    let mut g = Gw::start(Some("[gateway]\ndurability = \"sync\"\n"));
    let auth = format!("Bearer {}", g.key);
    for i in 0..20 {
        let rid = format!("r{i:02}");
        let (s, _, _) = http(
            &g.addr,
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("x-tollgate-feature", "f"),
                ("x-tollgate-request-id", &rid),
                ("x-fake-usage", "prompt_tokens=3,completion_tokens=2"),
            ],
            br#"{"model":"gw-gpt","messages":[]}"#,
        );
        assert_eq!(s, 200);
    }
    g.crash();
    // Every answered call is in the spool or the ledger; the restart moves the rest over.
    g.restart();
    let err = g.stop();
    let all = g.events();
    assert_eq!(all.len(), 20, "{err}\n{all:#?}");
    for i in 0..20 {
        let e = g.event(&format!("r{i:02}"));
        assert_eq!((n(&e, "input_tokens"), n(&e, "output_tokens")), (3, 2));
    }
    assert!(
        std::fs::read_dir(g.sb.data_dir().join("spool"))
            .unwrap()
            .next()
            .is_none(),
        "spool not emptied"
    );
}

/// The demo's month goes through the real gateway into the demo's ledger: every generated
/// call that is not a batch job is recorded by the gateway with the generated call's tokens,
/// status and attribution; batch jobs are ingested directly.
#[test]
fn the_demo_sends_its_traffic_through_the_gateway() {
    let sb = Sandbox::new();
    let d = sb.path().join("d");
    let out = sb
        .run(&["demo", "--dir", path_str(&d), "--events", "1500"])
        .ok()
        .to_string();
    // What the generator wrote, read independently of the demo.
    let generated: Vec<Value> = std::fs::read_to_string(d.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(generated.len(), 1500);
    let is_batch = |e: &Value| e["operation"] == "batch" || e["service_tier"] == "batch";
    let batch = generated.iter().filter(|e| is_batch(e)).count();
    let live = generated.len() - batch;
    assert!(batch > 0 && live > 1000, "{batch} {live}");
    assert!(
        out.contains(&format!(
            "== Traffic: {live} calls through the gateway (tollgate serve, in process)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "all {live} recorded events equal the generated calls"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "batch jobs ingested directly (Batch API results): {batch}"
        )),
        "{out}"
    );
    // The soft budget on team-support (80 % of its month): the gateway warned on some of the
    // team's calls, those after its spend reached the limit, never on all of them.
    let support = generated
        .iter()
        .filter(|e| !is_batch(e) && e["team_id"] == "team-support")
        .count();
    let line = out
        .lines()
        .find(|l| l.contains("budgets: a soft limit of"))
        .unwrap_or_else(|| panic!("{out}"));
    let warned: usize = line
        .split("); ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        warned > 0 && warned < support,
        "{warned} of {support}: {line}"
    );
    // The gateway's own traces: its key store, and its spool, emptied into the ledger.
    assert!(d.join("gateway/keys.json").is_file());
    assert!(std::fs::read_dir(d.join("spool")).unwrap().next().is_none());

    // Every generated event is in the ledger with the same tokens, status and attribution.
    let mut c = sb.bare_command();
    c.arg("--data-dir").arg(&d).args([
        "sql",
        "SELECT event_id, request_id, attempt, parent_request_id, occurred_at, team_id, feature, \
         tenant_id, provider, model, operation, status, http_status, streamed, input_tokens, \
         cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens, \
         reasoning_tokens, attribution_status, tags FROM events",
        "--format",
        "json",
    ]);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1500);
    let by_id: std::collections::HashMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["event_id"].as_str().unwrap(), r))
        .collect();
    let (mut retries, mut streamed, mut errors, mut problems) = (0, 0, 0, 0);
    for g in &generated {
        let r = by_id[g["event_id"].as_str().unwrap()];
        for f in [
            "request_id",
            "attempt",
            "parent_request_id",
            "occurred_at",
            "team_id",
            "feature",
            "tenant_id",
            "provider",
            "model",
            "operation",
            "status",
            "http_status",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "output_tokens",
            "reasoning_tokens",
            "attribution_status",
        ] {
            assert_eq!(r[f], g[f], "{f} of {g}");
        }
        assert_eq!(r["streamed"] == 1, g["streamed"] == true, "{g}");
        retries += usize::from(g["attempt"] == 2);
        streamed += usize::from(g["streamed"] == true);
        errors += usize::from(g["status"] != "ok");
        // A call without a feature carries the gateway's note of the problem.
        if g["feature"].is_null() && !is_batch(g) {
            problems += 1;
            assert!(
                r["tags"]
                    .as_str()
                    .unwrap()
                    .contains("tollgate_attribution_problems"),
                "{r}"
            );
        }
    }
    // The sample exercises retries, streams and errors through the gateway.
    assert!(
        retries > 0 && streamed > 100 && errors > 5 && problems > 0,
        "{retries} {streamed} {errors} {problems}"
    );
}

/// `tollgate serve` ignores the demo's stamp header: the event keeps the gateway's own clock,
/// ids, key attribution and status.
#[test]
fn serve_ignores_the_demo_stamp() {
    let mut g = Gw::start(None);
    let auth = format!("Bearer {}", g.key);
    let stamp = r#"{"event_id":"stamped-id","occurred_at":"2020-01-01T00:00:00Z","team_id":"someone-else","api_key_id":"key_forged","attribution_status":"ok","status":"cancelled"}"#;
    let (status, _, _) = http(
        &g.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("x-tollgate-feature", "search"),
            ("x-tollgate-request-id", "stamp-1"),
            ("x-tollgate-demo-stamp", stamp),
        ],
        br#"{"model":"gw-gpt","messages":[]}"#,
    );
    assert_eq!(status, 200);
    g.stop();
    let rows = g.sb.sql(
        "SELECT event_id, occurred_at, team_id, api_key_id, status FROM events WHERE request_id = 'stamp-1'",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let e = &rows[0];
    assert_ne!(e["event_id"], "stamped-id");
    assert!(e["occurred_at"].as_str().unwrap() > "2026-", "{e}");
    assert_eq!(e["api_key_id"], g.key_id.as_str());
    assert_ne!(e["team_id"], "someone-else");
    assert_eq!(e["status"], "ok");
}

#[test]
fn auditor_and_attribution_report_see_the_gaps() {
    let mut g = Gw::start(None);
    let auth = format!("Bearer {}", g.key);
    let body = br#"{"model":"gw-gpt","messages":[]}"#;
    for (rid, feature) in [
        ("a1", Some("search")),
        ("a2", Some("search")),
        ("a3", None),
        ("a4", Some("search")),
    ] {
        let mut h = vec![
            ("authorization", auth.as_str()),
            ("x-tollgate-request-id", rid),
        ];
        if let Some(f) = feature {
            h.push(("x-tollgate-feature", f));
        }
        assert_eq!(
            http(&g.addr, "POST", "/v1/chat/completions", &h, body).0,
            200
        );
    }
    g.stop();
    let month = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let r =
        g.sb.run(&[
            "report",
            "attribution",
            "--period",
            &month,
            "--format",
            "json",
        ])
        .json();
    // 4 calls by one service and one key; 1 without a feature: 1 / 4 = 25.0%.
    for row in r.as_array().unwrap() {
        assert_eq!(row["calls"], 4, "{r}");
        assert_eq!(row["fields"]["feature"]["rate"], "25.0%", "{r}");
        assert_eq!(row["fields"]["team_id"]["rate"], "0.0%", "{r}");
        assert_eq!(row["fields"]["attribution_not_ok"]["missing"], 1, "{r}");
    }
    assert_eq!(
        r.as_array().unwrap().len(),
        2,
        "one row per service and per key: {r}"
    );
    // Export two events in the canonical names and audit them.
    let rows = g.sb.sql(
        "SELECT event_id, request_id, team_id, service, feature, api_key_id, attribution_status, provider, model, \
         operation, occurred_at, input_tokens, output_tokens, environment, cost, currency, pricing_status, \
         price_version FROM events WHERE request_id IN ('a1', 'a3') ORDER BY request_id",
    );
    let clean = |v: &Value| {
        Value::Object(
            v.as_object()
                .unwrap()
                .iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), x.clone()))
                .collect(),
        )
    };
    let good = g.sb.write("good.json", clean(&rows[0]).to_string());
    let out = g.sb.run(&["audit-trace", path_str(&good)]);
    assert!(out.ok().contains("defensible"), "{out:?}");
    let bad = g.sb.write("bad.json", clean(&rows[1]).to_string());
    let out =
        g.sb.run(&["audit-trace", path_str(&bad), "--format", "json"]);
    assert_eq!(out.code, Some(1));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let missing: Vec<&str> = v[0]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["field"].as_str().unwrap())
        .collect();
    assert_eq!(missing, vec!["feature", "attribution_status"]);
}

/// A minimal OTLP/HTTP receiver: records (path, JSON body) of every POST, answers 200 `{}`.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

fn otlp_receiver() -> (String, Received) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g2 = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let got = g2.clone();
            std::thread::spawn(move || {
                let mut r = std::io::BufReader::new(c.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if std::io::BufRead::read_line(&mut r, &mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        std::io::BufRead::read_line(&mut r, &mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    got.lock()
                        .unwrap()
                        .push((path, serde_json::from_slice(&body).unwrap()));
                    c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                        .unwrap();
                }
            });
        }
    });
    (addr, got)
}

fn otel_attr(span: &Value, key: &str) -> Value {
    let a = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key);
    let v = &a.unwrap_or_else(|| panic!("{key} missing in {span}"))["value"];
    v.as_object().unwrap().values().next().unwrap().clone()
}

#[test]
fn otel_export_follows_the_genai_conventions() {
    let (otlp, got) = otlp_receiver();
    let mut g = Gw::start(Some(&format!(
        "[gateway.otel]\nendpoint = \"http://{otlp}\"\nservice_name = \"gw-test\"\nexport_interval_ms = 50\n"
    )));
    let (s, _, _) = http(
        &g.addr,
        "POST",
        "/v1/messages",
        &[
            ("x-api-key", &g.key),
            ("x-tollgate-feature", "chat"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "x-fake-usage",
                "input_tokens=25,cache_read_input_tokens=2000,cache_5m_tokens=1000,cache_1h_tokens=500,output_tokens=512",
            ),
        ],
        br#"{"model":"gw-claude","max_tokens":10,"messages":[]}"#,
    );
    assert_eq!(s, 200);
    g.stop();
    let got = got.lock().unwrap().clone();
    let spans: Vec<&Value> = got
        .iter()
        .filter(|(p, _)| p == "/v1/traces")
        .flat_map(|(_, b)| {
            b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
        })
        .collect();
    assert_eq!(spans.len(), 1, "{got:?}");
    let sp = spans[0];
    assert_eq!(sp["name"], "chat gw-claude");
    assert_eq!(sp["kind"], 3);
    assert_eq!(sp["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(sp["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(otel_attr(sp, "gen_ai.provider.name"), "anthropic");
    // All input, cache included: 25 + 2,000 + 1,000 + 500 = 3,525.
    assert_eq!(otel_attr(sp, "gen_ai.usage.input_tokens"), "3525");
    assert_eq!(otel_attr(sp, "gen_ai.usage.output_tokens"), "512");
    assert_eq!(
        otel_attr(sp, "gen_ai.usage.cache_read.input_tokens"),
        "2000"
    );
    assert_eq!(
        otel_attr(sp, "gen_ai.usage.cache_creation.input_tokens"),
        "1500"
    );
    assert_eq!(otel_attr(sp, "gen_ai.response.id"), "msg_fake");
    assert_eq!(otel_attr(sp, "tollgate.team_id"), "search");
    assert_eq!(otel_attr(sp, "tollgate.feature"), "chat");
    // Same arithmetic as the Anthropic test: 0.015105 USD.
    assert_eq!(otel_attr(sp, "tollgate.cost"), "0.015105");
    assert!(
        otel_attr(sp, "tollgate.price_version")
            .as_str()
            .unwrap()
            .contains('@')
    );
    // The event carries the same trace id.
    assert_eq!(
        g.sb.sql("SELECT trace_id FROM events")[0]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    // Histograms: token usage by type, and duration.
    let metrics: Vec<&Value> = got
        .iter()
        .filter(|(p, _)| p == "/v1/metrics")
        .flat_map(|(_, b)| {
            b["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
                .as_array()
                .unwrap()
        })
        .collect();
    let tokens = metrics
        .iter()
        .find(|m| m["name"] == "gen_ai.client.token.usage")
        .expect("token histogram");
    let mut sums: Vec<(String, f64)> = tokens["histogram"]["dataPoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                otel_attr(p, "gen_ai.token.type")
                    .as_str()
                    .unwrap()
                    .to_string(),
                p["sum"].as_f64().unwrap(),
            )
        })
        .collect();
    sums.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        sums,
        vec![("input".to_string(), 3525.0), ("output".to_string(), 512.0)]
    );
    assert!(
        metrics
            .iter()
            .any(|m| m["name"] == "gen_ai.client.operation.duration" && m["unit"] == "s")
    );
}
