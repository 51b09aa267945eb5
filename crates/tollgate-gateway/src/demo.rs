//! The demo's clock and attribution injection (`tollgate demo` only).
//!
//! `tollgate demo` replays a generated month of traffic through the real gateway, in process,
//! to the in-process fake provider. Everything a real call gives the gateway comes the real way:
//! the gateway key, the `x-tollgate-*` headers (feature, tenant, user, session, tags, request
//! id), `traceparent`, `Idempotency-Key` (retries), the request body (model, stream), and the
//! provider's answer (usage, model, HTTP status; streamed or whole); the gateway prices the call
//! and records it through its spool into the ledger. What a replay of the past cannot give it
//! comes in one header, [`HEADER`]: the call's instants and durations (`occurred_at`,
//! `completed_at`, `latency_ms`, `ttft_ms`: the month is in the past), its ids (`event_id`,
//! `span_id`, so the demo is reproducible), the key-side attribution of the generated call
//! (`team_id`, `cost_center`, `service`, `environment`, `api_key_id`, `region`, and the
//! `attribution_status` the generator gave it), and how the client saw the call end (`status`:
//! `cancelled` for a stream the user stopped, `client_error` for a 4xx the caller caused).
//!
//! The header is honoured only when the gateway was started with
//! [`crate::server::ServeOptions::demo_stamps`], which only the demo sets, in process:
//! `tollgate serve` and its configuration cannot turn it on, and since every `x-tollgate-*`
//! header is dropped before the call goes upstream, a stamp sent to a real gateway does nothing.

use jiff::Timestamp;
use serde::Deserialize;
use tollgate_core::event::truncate_to_micros;
use tollgate_core::{AttributionStatus, Environment, Status, UsageEvent};

/// The request header carrying a [`DemoStamp`] as JSON.
pub const HEADER: &str = "x-tollgate-demo-stamp";

/// What the demo injects into one call's event (see the module docs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoStamp {
    pub event_id: String,
    pub span_id: Option<String>,
    pub occurred_at: String,
    pub completed_at: Option<String>,
    pub latency_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub team_id: Option<String>,
    pub cost_center: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub api_key_id: Option<String>,
    pub region: Option<String>,
    pub attribution_status: String,
    /// `cancelled` or `client_error` override the status the gateway saw; else ignored.
    pub status: Option<String>,
}

/// A parsed stamp, ready to apply.
#[derive(Debug, Clone)]
pub struct Stamp {
    raw: DemoStamp,
    pub occurred_at: Timestamp,
    completed_at: Option<Timestamp>,
    environment: Option<Environment>,
    attribution_status: AttributionStatus,
    status: Option<Status>,
}

/// Parses the header's JSON; `Err` names the problem.
pub fn parse(header: &str) -> Result<Stamp, String> {
    let raw: DemoStamp =
        serde_json::from_str(header).map_err(|e| format!("{HEADER}: invalid: {e}"))?;
    let ts = |s: &str| -> Result<Timestamp, String> {
        let t = s
            .parse::<Timestamp>()
            .map_err(|e| format!("{HEADER}: instant {s:?}: {e}"))?;
        truncate_to_micros(t).ok_or_else(|| format!("{HEADER}: instant {s:?}: out of range"))
    };
    let occurred_at = ts(&raw.occurred_at)?;
    let completed_at = raw.completed_at.as_deref().map(ts).transpose()?;
    let environment = raw
        .environment
        .as_deref()
        .map(|e| e.parse::<Environment>())
        .transpose()
        .map_err(|e| format!("{HEADER}: environment: {e}"))?;
    let attribution_status = raw
        .attribution_status
        .parse::<AttributionStatus>()
        .map_err(|e| format!("{HEADER}: attribution_status: {e}"))?;
    let status = match raw.status.as_deref() {
        None => None,
        Some(s) => match s.parse::<Status>() {
            Ok(st @ (Status::Cancelled | Status::ClientError)) => Some(st),
            Ok(_) => None,
            Err(e) => return Err(format!("{HEADER}: status: {e}")),
        },
    };
    Ok(Stamp {
        raw,
        occurred_at,
        completed_at,
        environment,
        attribution_status,
        status,
    })
}

impl Stamp {
    /// Puts the stamp on a recorded event, before it is priced.
    pub fn apply(&self, ev: &mut UsageEvent) {
        let r = &self.raw;
        ev.event_id = r.event_id.clone();
        ev.span_id = r.span_id.clone();
        ev.occurred_at = self.occurred_at;
        ev.completed_at = self.completed_at;
        ev.latency_ms = r.latency_ms;
        ev.ttft_ms = r.ttft_ms;
        let a = &mut ev.attribution;
        a.team_id = r.team_id.clone();
        a.cost_center = r.cost_center.clone();
        a.service = r.service.clone();
        a.environment = self.environment;
        a.api_key_id = r.api_key_id.clone();
        a.region = r.region.clone();
        ev.attribution_status = self.attribution_status;
        if let Some(s) = self.status {
            ev.status = s;
        }
    }

    /// The stamped time to first token (streams).
    pub fn ttft_ms(&self) -> Option<u64> {
        self.raw.ttft_ms
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_and_rejects_with_the_field_named() {
        let s = parse(
            r#"{"event_id":"e1","occurred_at":"2026-10-03T10:00:00.1234567Z","attribution_status":"quarantined","status":"cancelled","environment":"staging"}"#,
        )
        .unwrap();
        // Instants keep microseconds, as every ledger instant does.
        assert_eq!(s.occurred_at.to_string(), "2026-10-03T10:00:00.123456Z");
        assert_eq!(s.status, Some(Status::Cancelled));
        assert_eq!(s.attribution_status, AttributionStatus::Quarantined);
        // Only the two client-side outcomes override what the gateway saw.
        let s = parse(
            r#"{"event_id":"e1","occurred_at":"2026-10-03T10:00:00Z","attribution_status":"ok","status":"ok"}"#,
        )
        .unwrap();
        assert_eq!(s.status, None);
        let e = parse(r#"{"event_id":"e1","occurred_at":"yesterday","attribution_status":"ok"}"#)
            .unwrap_err();
        assert!(e.contains("instant \"yesterday\""), "{e}");
        let e = parse(r#"{"event_id":"e1","occurred_at":"2026-10-03T10:00:00Z","attribution_status":"ok","cost":"1"}"#)
            .unwrap_err();
        assert!(e.contains("unknown field `cost`"), "{e}");
    }
}
