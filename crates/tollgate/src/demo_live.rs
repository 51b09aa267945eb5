//! The demo's traffic through the real gateway: the generated month is sent, call by call, to
//! `tollgate serve`'s gateway (started in process on port 0) in front of the fake provider (in
//! process, port 0), which answers each call with the generated call's exact usage; the gateway
//! authenticates the key, reads attribution from the `x-tollgate-*` headers, captures usage from
//! the answer (streamed or whole), prices it and records it through its spool into the demo's
//! own ledger. Every later demo step reads those gateway-recorded events.
//!
//! What a replay of a past month cannot give a gateway (the instants, the generated ids, the
//! key-side attribution, a client hanging up) comes in the demo-only stamp header
//! ([`tollgate_gateway::demo`]), which only this in-process gateway honours.
//!
//! Not through the gateway: batch jobs (`operation = batch`, about 2 % of the demo), which run
//! through a provider's Batch API (files in, files out) rather than per-call HTTP; they are
//! ingested directly, as their results would be imported. Above [`DIRECT_ABOVE`] events the
//! demo ingests everything directly (the benchmark-sized fast path).
//!
//! Differences between a recorded event and the generated one, by design: `model_requested` is
//! always the model the request named (the generator leaves it empty for some calls), and a call
//! without a feature carries the gateway's `tollgate_attribution_problems` tag. After the run,
//! every recorded event is compared with its generated one on every other field, cost included.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use tollgate_core::{Operation, Period, Pricer, Status, UsageEvent};
use tollgate_ledger::Ledger;

use crate::demo_data::DemoGenerator;
use crate::output::outln;

/// Above this many events, the demo ingests its month directly instead of through the gateway.
pub const DIRECT_ABOVE: u64 = 200_000;
/// Concurrent client connections (each one kept alive and reused).
pub const CONNECTIONS: usize = 8;

/// What the run did.
pub struct Traffic {
    pub through_gateway: u64,
    pub batch_ingested: u64,
    pub seconds: f64,
    pub by_status: std::collections::BTreeMap<u16, u64>,
    pub matched: u64,
    /// The soft budget the demo sets on [`BUDGET_TEAM`] (USD per month) and the calls whose
    /// answer carried `x-tollgate-budget-warning`.
    pub budget_limit: rust_decimal::Decimal,
    pub budget_warned: u64,
}

/// The team the demo gives a soft monthly budget of 80 % of its month's gateway spend, so the
/// gateway starts warning in the last days of the month.
pub const BUDGET_TEAM: &str = "team-support";

/// The gateway config of the demo: the fake provider behind every upstream.
fn gateway_config(
    dir: &Path,
    fake: std::net::SocketAddr,
    budget: rust_decimal::Decimal,
) -> Result<tollgate_gateway::GatewayConfig> {
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
[[budgets]]
team = "{BUDGET_TEAM}"
monthly_limit = "{budget}"
enforce = "soft"
[attribution]
mode = "quarantine"
required = ["feature"]
[upstreams.openai]
base_url = "http://{fake}/v1"
[upstreams.anthropic]
base_url = "http://{fake}"
[upstreams.bedrock]
format = "anthropic"
base_url = "http://{fake}"
provider = "aws.bedrock"
models = ["global.anthropic.*"]
[upstreams.gemini]
base_url = "http://{fake}/v1"
provider = "gcp.gemini"
models = ["gemini-*"]
[upstreams.vllm]
base_url = "http://{fake}/v1"
provider = "self_hosted"
models = ["acme-*"]
"#
    );
    let raw: tollgate_gateway::RawGateway =
        toml::from_str(&toml).context("the demo's gateway config")?;
    tollgate_gateway::GatewayConfig::from_raw(raw, dir).map_err(|e| anyhow::anyhow!(e))
}

fn anthropic_format(provider: &str) -> bool {
    matches!(provider, "anthropic" | "aws.bedrock")
}

/// One call of the demo as the client sends it.
struct Call {
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn call_of(ev: &UsageEvent, key: &str) -> Call {
    let anth = anthropic_format(&ev.provider);
    let path = match (ev.operation, anth) {
        (Operation::Embeddings, _) => "/v1/embeddings",
        (Operation::Responses, _) => "/v1/responses",
        (_, true) => "/v1/messages",
        _ => "/v1/chat/completions",
    };
    let mut h: Vec<(&'static str, String)> = Vec::with_capacity(16);
    if anth {
        h.push(("x-api-key", key.to_string()));
        h.push(("anthropic-version", "2023-06-01".into()));
    } else {
        h.push(("authorization", format!("Bearer {key}")));
    }
    let a = &ev.attribution;
    for (name, v) in [
        ("x-tollgate-feature", &a.feature),
        ("x-tollgate-tenant", &a.tenant_id),
        ("x-tollgate-user", &a.user_id),
        ("x-tollgate-session", &ev.session_id),
        ("x-tollgate-request-id", &ev.request_id),
    ] {
        if let Some(v) = v {
            h.push((name, v.clone()));
        }
    }
    if !a.tags.is_empty() {
        let tags: Vec<String> = a.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        h.push(("x-tollgate-tags", tags.join(",")));
    }
    // Every attempt of one logical request carries the first attempt's id as its key.
    if let Some(root) = ev.parent_request_id.as_ref().or(ev.request_id.as_ref()) {
        h.push(("idempotency-key", root.clone()));
    }
    if let (Some(t), Some(s)) = (&ev.trace_id, &ev.span_id) {
        h.push(("traceparent", format!("00-{t}-{s}-01")));
    }
    // The fake provider answers with the generated call's usage, model and status.
    let u = &ev.usage;
    let usage = if anth {
        format!(
            "input_tokens={},cache_read_input_tokens={},cache_5m_tokens={},cache_1h_tokens={},output_tokens={}",
            u.input_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            u.cache_write_1h_tokens,
            u.output_tokens
        )
    } else {
        format!(
            "prompt_tokens={},cached_tokens={},cache_write_tokens={},completion_tokens={},reasoning_tokens={}",
            u.input_tokens + u.cache_read_tokens + u.cache_write_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            u.output_tokens,
            u.reasoning_tokens
        )
    };
    h.push(("x-fake-usage", usage));
    h.push(("x-fake-model", ev.model.clone()));
    if ev.status != Status::Ok
        && ev.status != Status::Cancelled
        && let Some(code) = ev.http_status
    {
        h.push(("x-fake-status", code.to_string()));
    }
    let ts = |t: jiff::Timestamp| t.to_string();
    let stamp = serde_json::json!({
        "event_id": ev.event_id,
        "span_id": ev.span_id,
        "occurred_at": ts(ev.occurred_at),
        "completed_at": ev.completed_at.map(ts),
        "latency_ms": ev.latency_ms,
        "ttft_ms": ev.ttft_ms,
        "team_id": a.team_id,
        "cost_center": a.cost_center,
        "service": a.service,
        "environment": a.environment.map(|e| e.as_str()),
        "api_key_id": a.api_key_id,
        "region": a.region,
        "attribution_status": ev.attribution_status.as_str(),
        "status": ev.status.as_str(),
    });
    h.push((tollgate_gateway::demo::HEADER, stamp.to_string()));
    // A failed call has no answer naming the model that ran: it asks for the canonical one.
    let model = match ev.status {
        Status::Ok | Status::Cancelled => ev.model_requested.as_deref().unwrap_or(&ev.model),
        _ => &ev.model,
    };
    let stream = if ev.streamed { ",\"stream\":true" } else { "" };
    let body = match path {
        "/v1/embeddings" => format!(r#"{{"model":"{model}","input":"demo document"}}"#),
        "/v1/responses" => format!(r#"{{"model":"{model}","input":"demo"{stream}}}"#),
        "/v1/messages" => format!(
            r#"{{"model":"{model}","max_tokens":{},"messages":[{{"role":"user","content":"demo"}}]{stream}}}"#,
            u.output_tokens.max(1)
        ),
        _ => format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"demo"}}]{stream}}}"#
        ),
    };
    Call {
        path,
        headers: h,
        body,
    }
}

/// The fields a recorded event must share with its generated one (documented differences
/// removed), as a hash.
fn fingerprint(ev: &UsageEvent) -> u64 {
    let mut e = ev.clone();
    e.model_requested = None;
    e.attribution.tags.remove("tollgate_attribution_problems");
    let cost = e.pricing.cost.map(|c| c.normalize());
    e.pricing.cost = None;
    e.pricing.cost_breakdown = Default::default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{e:?}|{cost:?}").hash(&mut h);
    h.finish()
}

fn worker(
    base: String,
    rx: std::sync::mpsc::Receiver<Call>,
) -> Result<(std::collections::BTreeMap<u16, u64>, u64)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut by_status = std::collections::BTreeMap::new();
    let mut warned = 0u64;
    for c in rx {
        let mut req = agent
            .post(&format!("{base}{}", c.path))
            .content_type("application/json");
        for (k, v) in &c.headers {
            req = req.header(*k, v);
        }
        let mut resp = req
            .send(c.body.as_str())
            .with_context(|| format!("the demo's call to the gateway ({})", c.path))?;
        let status = resp.status().as_u16();
        if resp.headers().contains_key("x-tollgate-budget-warning") {
            warned += 1;
        }
        resp.body_mut()
            .read_to_vec()
            .with_context(|| format!("reading the gateway's answer ({})", c.path))?;
        *by_status.entry(status).or_insert(0) += 1;
    }
    Ok((by_status, warned))
}

/// Sends the month through the gateway into the ledger in `dir`; batch jobs are ingested.
pub fn run(
    dir: &Path,
    files: &[std::path::PathBuf],
    period: &Period,
    seed: u64,
    total: u64,
) -> Result<Traffic> {
    for sub in ["gateway", "spool"] {
        let p = dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p)
                .with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    let pricer: Pricer = crate::cmd_prices::load_pricer(files)?;
    // One gateway key per generated API key (team and environment), made before the gateway
    // starts.
    let mut keys: HashMap<String, String> = HashMap::new();
    let mut team_spend = rust_decimal::Decimal::ZERO;
    for ev in DemoGenerator::new(seed, period, total) {
        if !ev.is_batch() && ev.attribution.team_id.as_deref() == Some(BUDGET_TEAM) {
            let mut priced = ev.clone();
            let _ = pricer.price_event(&mut priced);
            team_spend += priced.pricing.cost.unwrap_or_default();
        }
        let a = &ev.attribution;
        let Some(key_id) = &a.api_key_id else {
            continue;
        };
        if keys.contains_key(key_id) {
            continue;
        }
        // The stamp carries each call's own key-side attribution; these only authenticate.
        let team = a.team_id.clone().unwrap_or_else(|| "unattributed".into());
        let service = a.service.clone().unwrap_or_else(|| "unattributed".into());
        let (k, _) = tollgate_gateway::keys::add(
            dir,
            &tollgate_gateway::keys::NewKey {
                team,
                service,
                environment: a.environment.map_or("prod", |e| e.as_str()).into(),
                cost_center: a.cost_center.clone(),
                ..Default::default()
            },
        )?;
        keys.insert(key_id.clone(), k);
    }
    // 80 % of the team's month, in whole dollars (at least one).
    let budget_limit = (team_spend * rust_decimal::Decimal::new(8, 1))
        .floor()
        .max(rust_decimal::Decimal::ONE);
    let fake = tollgate_gateway::fake::spawn("127.0.0.1:0")?;
    let gw = tollgate_gateway::server::start(tollgate_gateway::ServeOptions {
        config: gateway_config(dir, fake, budget_limit)?,
        data_dir: dir.to_path_buf(),
        pricer: crate::cmd_prices::load_pricer(files)?,
        addr_file: None,
        threads: Some(2),
        ledger: None,
        demo_stamps: true,
        timezone: "UTC".into(),
    })?;
    let base = format!("http://{}", gw.addr);

    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut batch = String::new();
    let mut txs = Vec::with_capacity(CONNECTIONS);
    let mut handles = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Call>(256);
        let base = base.clone();
        txs.push(tx);
        handles.push(
            std::thread::Builder::new()
                .name(format!("demo-client-{i}"))
                .spawn(move || worker(base, rx))?,
        );
    }
    let started = Instant::now();
    let mut through = 0u64;
    let mut send_err = None;
    for ev in DemoGenerator::new(seed, period, total) {
        let mut priced = ev.clone();
        let _ = pricer.price_event(&mut priced);
        if ev.is_batch() {
            ev.write_json(&mut batch);
            batch.push('\n');
            continue;
        }
        expected.insert(ev.event_id.clone(), fingerprint(&priced));
        let key_id = ev.attribution.api_key_id.as_deref().unwrap_or_default();
        let Some(key) = keys.get(key_id) else {
            anyhow::bail!("demo event {} has no gateway key", ev.event_id);
        };
        // All attempts of one request go down one connection, in order.
        let root = ev.parent_request_id.as_ref().or(ev.request_id.as_ref());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        root.hash(&mut h);
        let w = (h.finish() % CONNECTIONS as u64) as usize;
        if txs[w].send(call_of(&ev, key)).is_err() {
            send_err = Some(w);
            break;
        }
        through += 1;
    }
    drop(txs);
    let mut by_status = std::collections::BTreeMap::new();
    let mut budget_warned = 0;
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok((m, w))) => {
                budget_warned += w;
                for (k, v) in m {
                    *by_status.entry(k).or_insert(0) += v;
                }
            }
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(anyhow::anyhow!("a demo client thread panicked"))),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    gw.stop()?;
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(w) = send_err {
        anyhow::bail!("demo client {w} stopped early");
    }

    // Batch jobs: their results are imported, as from a provider's Batch API.
    let batch_n = batch.lines().count() as u64;
    if batch_n > 0 {
        let mut ledger = tollgate_ledger::sqlite::SqliteLedger::open(dir)?;
        crate::cmd_ingest::ingest(
            &mut ledger,
            &pricer,
            "demo batch jobs",
            Box::new(std::io::Cursor::new(batch.into_bytes())),
            crate::cmd_ingest::InputFormat::Jsonl,
            crate::cmd_ingest::IngestOptions::default(),
        )?;
    }

    // Every gateway-recorded event equals its generated one (documented differences aside).
    let ledger = tollgate_ledger::sqlite::SqliteLedger::open_read_only(dir)?;
    let mut matched = 0u64;
    let mut mismatched: Vec<String> = Vec::new();
    ledger.scan_events(period.start(), period.end(), &mut |ev| {
        if let Some(want) = expected.remove(&ev.event_id) {
            if want == fingerprint(&ev) {
                matched += 1;
            } else if mismatched.len() < 3 {
                mismatched.push(format!("{ev:?}"));
            }
        }
        Ok(())
    })?;
    if !mismatched.is_empty() || !expected.is_empty() {
        anyhow::bail!(
            "the gateway recorded {matched} of {through} demo calls as generated; {} missing; differing: {}",
            expected.len(),
            mismatched.join("\n")
        );
    }
    Ok(Traffic {
        through_gateway: through,
        batch_ingested: batch_n,
        seconds,
        by_status,
        matched,
        budget_limit,
        budget_warned,
    })
}

/// Prints what [`run`] did.
pub fn print(t: &Traffic) -> Result<()> {
    outln!(
        "== Traffic: {} calls through the gateway (tollgate serve, in process) to the fake provider ==",
        t.through_gateway
    );
    outln!(
        "  {} connections: {:.1} s, {:.0} calls/s; HTTP statuses {:?}",
        CONNECTIONS,
        t.seconds,
        t.through_gateway as f64 / t.seconds.max(1e-9),
        t.by_status
    );
    outln!(
        "  all {} recorded events equal the generated calls (tokens, cost, attribution, status)",
        t.matched
    );
    outln!(
        "  batch jobs ingested directly (Batch API results): {}",
        t.batch_ingested
    );
    outln!(
        "  budgets: a soft limit of {} USD/month on {BUDGET_TEAM} (80 % of its month); {} calls after it was reached carried x-tollgate-budget-warning",
        t.budget_limit,
        t.budget_warned
    );
    Ok(())
}
