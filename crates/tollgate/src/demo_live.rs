//! The demo's live part: a few calls through the real gateway (`tollgate serve`, in process)
//! to the fake provider, recorded in their own ledger (`<demo dir>/gateway/`), so the demo
//! month's ledger and reports stay deterministic.

use std::path::Path;

use anyhow::{Context, Result};
use tollgate_ledger::Ledger;

use crate::output::outln;

/// Sends the demo's live calls through a gateway and prints the events they became.
pub fn run(dir: &Path, pricer: tollgate_core::Pricer) -> Result<()> {
    let data = dir.join("gateway");
    if data.exists() {
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("cannot remove {}", data.display()))?;
    }
    let fake = tollgate_gateway::fake::spawn("127.0.0.1:0")?;
    let (key, rec) = tollgate_gateway::keys::add(
        &data,
        &tollgate_gateway::keys::NewKey {
            team: "search".into(),
            service: "ranker".into(),
            environment: "prod".into(),
            cost_center: Some("CC-1001".into()),
            ..Default::default()
        },
    )?;
    let mut cfg = tollgate_gateway::GatewayConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    cfg.apply_env(|k| match k {
        "TOLLGATE_OPENAI_BASE_URL" => Some(format!("http://{fake}/v1")),
        "TOLLGATE_ANTHROPIC_BASE_URL" => Some(format!("http://{fake}")),
        _ => None,
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    let gw = tollgate_gateway::server::start(tollgate_gateway::ServeOptions {
        config: cfg,
        data_dir: data.clone(),
        pricer,
        addr_file: None,
        threads: Some(1),
        ledger: None,
    })?;
    let base = format!("http://{}", gw.addr);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    // (path, auth header, feature, fake usage, body)
    let calls: [(&str, &str, Option<&str>, &str, &str); 4] = [
        (
            "/v1/chat/completions",
            "authorization",
            Some("smart-search"),
            "prompt_tokens=3400,cached_tokens=1200,completion_tokens=620",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"demo"}]}"#,
        ),
        (
            "/v1/chat/completions",
            "authorization",
            Some("smart-search"),
            "prompt_tokens=900,completion_tokens=150",
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"demo"}]}"#,
        ),
        (
            "/v1/messages",
            "x-api-key",
            Some("summaries"),
            "input_tokens=25,cache_read_input_tokens=20000,cache_5m_tokens=1500,output_tokens=512",
            r#"{"model":"claude-sonnet-4-5","max_tokens":600,"stream":true,"messages":[{"role":"user","content":"demo"}]}"#,
        ),
        (
            "/v1/messages",
            "x-api-key",
            None,
            "input_tokens=300,output_tokens=80",
            r#"{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"demo"}]}"#,
        ),
    ];
    let mut results = Vec::new();
    for (path, auth, feature, usage, body) in calls {
        let value = if auth == "authorization" {
            format!("Bearer {key}")
        } else {
            key.clone()
        };
        let mut req = agent
            .post(&format!("{base}{path}"))
            .header(auth, &value)
            .header("x-fake-usage", usage)
            .header("anthropic-version", "2023-06-01")
            .content_type("application/json");
        if let Some(f) = feature {
            req = req.header("x-tollgate-feature", f);
        }
        let mut resp = req.send(body).with_context(|| format!("POST {path}"))?;
        let status = resp.status().as_u16();
        let _ = resp.body_mut().read_to_string();
        results.push(status);
    }
    gw.stop()?;

    let ledger = tollgate_ledger::sqlite::SqliteLedger::open_read_only(&data)?;
    let t = ledger.query_sql(
        "SELECT model, streamed, feature, attribution_status AS attribution, input_tokens, \
         cache_read_tokens, cache_write_tokens, output_tokens, cost FROM events ORDER BY occurred_at",
    )?;
    outln!();
    outln!(
        "== Live: {} calls through the gateway (tollgate serve) to the fake provider ==",
        results.len()
    );
    outln!(
        "  key {} (team search, service ranker, prod); HTTP statuses {:?}",
        rec.key_id,
        results
    );
    outln!("  {}", t.columns.join("  "));
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(cell).collect();
        outln!("  {}", cells.join("  "));
    }
    outln!("  ledger: {}", data.join("ledger.sqlite").display());
    Ok(())
}

fn cell(v: &tollgate_ledger::SqlValue) -> String {
    match v {
        tollgate_ledger::SqlValue::Null => "-".into(),
        other => other.to_string(),
    }
}
