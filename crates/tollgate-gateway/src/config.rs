//! The `[gateway]` section of `tollgate.toml`: raw serde types (deserialized with the rest of
//! the file, so TOML errors carry line and column) and their validation into
//! [`GatewayConfig`], whose errors name the key path (`gateway.upstreams.openai.base_url: ...`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

/// `[gateway]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    listen: Option<String>,
    max_body_bytes: Option<u64>,
    durability: Option<String>,
    group_commit_ms: Option<u64>,
    upstream_timeout_secs: Option<u64>,
    spool_dir: Option<String>,
    ca_file: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    #[serde(default)]
    attribution: RawAttribution,
    #[serde(default)]
    upstreams: BTreeMap<String, RawUpstream>,
    otel: Option<RawOtel>,
    #[serde(default)]
    budgets: Vec<RawBudget>,
}

/// `[[gateway.budgets]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    team: Option<String>,
    tenant: Option<String>,
    feature: Option<String>,
    key: Option<String>,
    monthly_limit: String,
    enforce: Option<String>,
    timezone: Option<String>,
    default_max_output_tokens: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtel {
    /// OTLP/HTTP base URL (the collector's :4318); `/v1/traces` and `/v1/metrics` are added.
    endpoint: String,
    service_name: Option<String>,
    export_interval_ms: Option<u64>,
}

/// OpenTelemetry export (OTLP/HTTP, JSON encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelConfig {
    pub endpoint: String,
    pub service_name: String,
    pub export_interval: Duration,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttribution {
    mode: Option<String>,
    required: Option<Vec<String>>,
    #[serde(default)]
    vocabularies: BTreeMap<String, Vec<String>>,
    #[serde(rename = "override")]
    override_: Option<RawOverride>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    mode: String,
    until: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    /// Wire format: `openai` or `anthropic` (default: `anthropic` for the upstream named
    /// `anthropic`, `openai` otherwise).
    format: Option<String>,
    base_url: Option<String>,
    api_key_env: Option<String>,
    /// Provider name written on events (default: the upstream's name).
    provider: Option<String>,
    /// Model names (globs with `*`) routed to this upstream.
    #[serde(default)]
    models: Vec<String>,
}

/// Attribution policy when a required field is missing or outside its vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accept and flag the event (`attribution_status = flagged`).
    Report,
    /// Reject with 400 in the provider's error shape.
    Enforce,
    /// Accept and park the event (`attribution_status = quarantined`).
    Quarantine,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "report" => Some(Mode::Report),
            "enforce" => Some(Mode::Enforce),
            "quarantine" => Some(Mode::Quarantine),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Report => "report",
            Mode::Enforce => "enforce",
            Mode::Quarantine => "quarantine",
        }
    }
}

/// A mode in force until an instant (then the normal mode applies again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeOverride {
    pub mode: Mode,
    pub until: Timestamp,
}

/// When a response's event must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the spool before the response ends; fsynced within the group-commit window.
    Group,
    /// Written and fsynced before the response ends.
    Sync,
}

/// Wire format of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAi,
    Anthropic,
}

/// One upstream provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub format: Format,
    /// OpenAI format: includes `/v1`; Anthropic format: without `/v1` (as the official SDKs).
    pub base_url: String,
    pub api_key_env: String,
    pub provider: String,
    pub models: Vec<String>,
}

/// Attribution rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributionConfig {
    pub mode: Mode,
    /// Required fields among `feature`, `tenant`, `user`, `session` (the key always gives
    /// team, service and environment).
    pub required: Vec<String>,
    /// Allowed values per field (`feature`, `tenant`, `user`, `session`, or `tags.KEY`).
    pub vocabularies: BTreeMap<String, Vec<String>>,
    pub override_: Option<ModeOverride>,
}

/// The validated gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    pub listen: String,
    pub max_body_bytes: u64,
    pub durability: Durability,
    pub group_commit: Duration,
    pub upstream_timeout: Duration,
    pub spool_dir: Option<PathBuf>,
    /// Extra trusted root certificates (PEM) for HTTPS upstreams and the OTLP endpoint.
    pub ca_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub attribution: AttributionConfig,
    /// By name; always has `openai` and `anthropic`.
    pub upstreams: BTreeMap<String, Upstream>,
    pub otel: Option<OtelConfig>,
    /// Monthly spending limits checked before each call (`[[gateway.budgets]]`).
    pub budgets: Vec<crate::budget::BudgetRule>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        #[allow(clippy::expect_used)]
        GatewayConfig::from_raw(RawGateway::default(), &PathBuf::from("."))
            .expect("the built-in gateway defaults are valid")
    }
}

/// Validates `[[gateway.budgets]]` entry `i`; errors name `gateway.budgets[i].KEY`.
fn budget_rule(i: usize, b: RawBudget) -> Result<crate::budget::BudgetRule, String> {
    use crate::budget::{BudgetRule, Scope};
    let at = |k: &str| format!("gateway.budgets[{i}].{k}");
    let scopes: Vec<(Scope, String)> = [
        (Scope::Team, b.team),
        (Scope::Tenant, b.tenant),
        (Scope::Feature, b.feature),
        (Scope::Key, b.key),
    ]
    .into_iter()
    .filter_map(|(s, v)| v.map(|v| (s, v)))
    .collect();
    let (scope, value) = match scopes.as_slice() {
        [(s, v)] if !v.is_empty() => (*s, v.clone()),
        [(s, _)] => return Err(format!("{}: must not be empty", at(s.as_str()))),
        [] => {
            return Err(format!(
                "gateway.budgets[{i}]: says what it limits with one of team, tenant, feature or key (a key_id from `tollgate keys list`)"
            ));
        }
        _ => {
            return Err(format!(
                "gateway.budgets[{i}]: has more than one of team, tenant, feature and key; write one budget per scope"
            ));
        }
    };
    let monthly_limit: rust_decimal::Decimal = b
        .monthly_limit
        .trim()
        .parse()
        .ok()
        .filter(|d: &rust_decimal::Decimal| *d > rust_decimal::Decimal::ZERO)
        .ok_or_else(|| {
            format!(
                "{}: {:?} is not a positive decimal amount (e.g. \"4000.00\", in the rates' currency, USD)",
                at("monthly_limit"),
                b.monthly_limit
            )
        })?;
    let hard = match b.enforce.as_deref() {
        None | Some("hard") => true,
        Some("soft") => false,
        Some(o) => {
            return Err(format!(
                "{}: {o:?} is not an enforcement; use \"hard\" (refuse calls with 429 at the limit) or \"soft\" (warn only)",
                at("enforce")
            ));
        }
    };
    if let Some(tz) = &b.timezone {
        tollgate_core::period::time_zone(tz).map_err(|e| format!("{}: {e}", at("timezone")))?;
    }
    let default_max_output_tokens = b.default_max_output_tokens.unwrap_or(32_768);
    if default_max_output_tokens == 0 {
        return Err(format!(
            "{}: must be above zero",
            at("default_max_output_tokens")
        ));
    }
    Ok(BudgetRule {
        scope,
        value,
        monthly_limit,
        hard,
        timezone: b.timezone,
        default_max_output_tokens,
    })
}

/// Fields a request can carry in headers (and hence can be required).
pub const HEADER_FIELDS: &[&str] = &["feature", "tenant", "user", "session"];

impl GatewayConfig {
    /// Validates the raw section; `base` resolves relative paths. Errors name the key path.
    pub fn from_raw(raw: RawGateway, base: &std::path::Path) -> Result<GatewayConfig, String> {
        let listen = raw.listen.unwrap_or_else(|| "127.0.0.1:8787".into());
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "gateway.listen: {listen:?} is not an address with a port (e.g. \"127.0.0.1:8787\")"
            ));
        }
        let max_body_bytes = raw.max_body_bytes.unwrap_or(10 * 1024 * 1024);
        if max_body_bytes == 0 {
            return Err("gateway.max_body_bytes: must be above zero".into());
        }
        let durability = match raw.durability.as_deref() {
            None | Some("group") => Durability::Group,
            Some("sync") => Durability::Sync,
            Some(o) => {
                return Err(format!(
                    "gateway.durability: {o:?} is not a durability mode; use \"group\" (fsync within group_commit_ms) or \"sync\" (fsync before every response ends)"
                ));
            }
        };
        let group_ms = raw.group_commit_ms.unwrap_or(10);
        if group_ms == 0 || group_ms > 1000 {
            return Err(format!(
                "gateway.group_commit_ms: {group_ms} is out of range; use 1 to 1000"
            ));
        }
        let timeout = raw.upstream_timeout_secs.unwrap_or(600);
        if timeout == 0 {
            return Err("gateway.upstream_timeout_secs: must be above zero".into());
        }
        let attribution = attribution(raw.attribution)?;
        let mut upstreams = BTreeMap::new();
        for (name, u) in raw.upstreams {
            let key = |k: &str| format!("gateway.upstreams.{name}.{k}");
            let format = match u.format.as_deref() {
                Some("openai") => Format::OpenAi,
                Some("anthropic") => Format::Anthropic,
                None if name == "anthropic" => Format::Anthropic,
                None => Format::OpenAi,
                Some(o) => {
                    return Err(format!(
                        "{}: {o:?} is not a wire format; use \"openai\" (any OpenAI-compatible server) or \"anthropic\"",
                        key("format")
                    ));
                }
            };
            let base_url = match (u.base_url, name.as_str()) {
                (Some(b), _) => b,
                (None, "openai") => DEFAULT_OPENAI.into(),
                (None, "anthropic") => DEFAULT_ANTHROPIC.into(),
                (None, _) => {
                    return Err(format!(
                        "{}: missing; an upstream other than openai/anthropic needs its base URL (e.g. \"http://localhost:8000/v1\")",
                        key("base_url")
                    ));
                }
            };
            check_base_url(&base_url, format).map_err(|e| format!("{}: {e}", key("base_url")))?;
            let api_key_env = u
                .api_key_env
                .unwrap_or_else(|| default_key_env(format).into());
            if api_key_env.is_empty()
                || !api_key_env
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!(
                    "{}: {api_key_env:?} is not an environment variable name",
                    key("api_key_env")
                ));
            }
            upstreams.insert(
                name.clone(),
                Upstream {
                    provider: u.provider.unwrap_or_else(|| name.clone()),
                    name,
                    format,
                    base_url: base_url.trim_end_matches('/').to_string(),
                    api_key_env,
                    models: u.models,
                },
            );
        }
        for (name, format, url) in [
            ("openai", Format::OpenAi, DEFAULT_OPENAI),
            ("anthropic", Format::Anthropic, DEFAULT_ANTHROPIC),
        ] {
            upstreams.entry(name.to_string()).or_insert(Upstream {
                name: name.into(),
                format,
                base_url: url.into(),
                api_key_env: default_key_env(format).into(),
                provider: name.into(),
                models: Vec::new(),
            });
        }
        for (name, format) in [("openai", Format::OpenAi), ("anthropic", Format::Anthropic)] {
            if upstreams.get(name).map(|u| u.format) != Some(format) {
                return Err(format!(
                    "gateway.upstreams.{name}.format: the default {name} upstream must use the {name} format"
                ));
            }
        }
        let otel = match raw.otel {
            None => None,
            Some(o) => {
                check_base_url(&o.endpoint, Format::OpenAi)
                    .map_err(|e| format!("gateway.otel.endpoint: {e}"))?;
                let ms = o.export_interval_ms.unwrap_or(1000);
                if ms == 0 || ms > 600_000 {
                    return Err(format!(
                        "gateway.otel.export_interval_ms: {ms} is out of range; use 1 to 600000"
                    ));
                }
                Some(OtelConfig {
                    endpoint: o.endpoint.trim_end_matches('/').to_string(),
                    service_name: o.service_name.unwrap_or_else(|| "tollgate-gateway".into()),
                    export_interval: Duration::from_millis(ms),
                })
            }
        };
        let ca_file = match raw.ca_file {
            Some(f) => {
                let p = base.join(f);
                crate::tls::load_ca_file(&p).map_err(|e| format!("gateway.ca_file: {e}"))?;
                Some(p)
            }
            None => None,
        };
        let tls = match (raw.tls_cert, raw.tls_key) {
            (Some(c), Some(k)) => {
                let (c, k) = (base.join(c), base.join(k));
                crate::tls::server_config(&c, &k)?;
                Some((c, k))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(
                    "gateway.tls_key: missing; tls_cert needs the certificate's private key (PEM)"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "gateway.tls_cert: missing; tls_key needs its certificate chain (PEM)".into(),
                );
            }
        };
        let mut budgets = Vec::new();
        for (i, b) in raw.budgets.into_iter().enumerate() {
            budgets.push(budget_rule(i, b)?);
        }
        Ok(GatewayConfig {
            budgets,
            otel,
            listen,
            max_body_bytes,
            durability,
            group_commit: Duration::from_millis(group_ms),
            upstream_timeout: Duration::from_secs(timeout),
            spool_dir: raw.spool_dir.map(|d| base.join(d)),
            ca_file,
            tls,
            attribution,
            upstreams,
        })
    }

    /// Applies `TOLLGATE_OPENAI_BASE_URL` and `TOLLGATE_ANTHROPIC_BASE_URL`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        for (var, name) in [
            ("TOLLGATE_OPENAI_BASE_URL", "openai"),
            ("TOLLGATE_ANTHROPIC_BASE_URL", "anthropic"),
        ] {
            if let Some(v) = get(var).filter(|v| !v.is_empty())
                && let Some(u) = self.upstreams.get_mut(name)
            {
                check_base_url(&v, u.format).map_err(|e| format!("{var}: {e}"))?;
                u.base_url = v.trim_end_matches('/').to_string();
            }
        }
        Ok(())
    }

    /// The upstream serving `model` in `format`: the first whose `models` globs match, else
    /// the default one (`openai` / `anthropic`).
    pub fn route(&self, format: Format, model: Option<&str>) -> &Upstream {
        if let Some(m) = model
            && let Some(u) = self.upstreams.values().find(|u| {
                u.format == format
                    && u.models
                        .iter()
                        .any(|p| tollgate_core::rates::glob_match(p, m))
            })
        {
            return u;
        }
        let name = match format {
            Format::OpenAi => "openai",
            Format::Anthropic => "anthropic",
        };
        // from_raw guarantees both defaults exist.
        self.upstreams
            .get(name)
            .or_else(|| self.upstreams.values().next())
            .unwrap_or_else(|| unreachable_upstream())
    }
}

fn unreachable_upstream() -> &'static Upstream {
    static U: std::sync::OnceLock<Upstream> = std::sync::OnceLock::new();
    U.get_or_init(|| Upstream {
        name: "openai".into(),
        format: Format::OpenAi,
        base_url: DEFAULT_OPENAI.into(),
        api_key_env: "OPENAI_API_KEY".into(),
        provider: "openai".into(),
        models: Vec::new(),
    })
}

const DEFAULT_OPENAI: &str = "https://api.openai.com/v1";
const DEFAULT_ANTHROPIC: &str = "https://api.anthropic.com";

fn default_key_env(f: Format) -> &'static str {
    match f {
        Format::OpenAi => "OPENAI_API_KEY",
        Format::Anthropic => "ANTHROPIC_API_KEY",
    }
}

fn check_base_url(url: &str, format: Format) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    let trimmed = url.trim_end_matches('/');
    if format == Format::Anthropic && trimmed.ends_with("/v1") {
        return Err(format!(
            "{url:?} ends with /v1; the Anthropic base URL does not include /v1 (as in the official SDK), the gateway adds /v1/messages"
        ));
    }
    Ok(())
}

fn attribution(raw: RawAttribution) -> Result<AttributionConfig, String> {
    let mode = match raw.mode.as_deref() {
        None => Mode::Report,
        Some(m) => Mode::parse(m).ok_or_else(|| {
            format!(
                "gateway.attribution.mode: {m:?} is not a mode; use \"report\", \"enforce\" or \"quarantine\""
            )
        })?,
    };
    let required = raw.required.unwrap_or_else(|| vec!["feature".to_string()]);
    for (i, r) in required.iter().enumerate() {
        if !HEADER_FIELDS.contains(&r.as_str()) {
            return Err(format!(
                "gateway.attribution.required[{i}]: {r:?} is not a request field; use some of {} (team, service and environment come from the key)",
                HEADER_FIELDS.join(", ")
            ));
        }
    }
    for (k, vals) in &raw.vocabularies {
        if !HEADER_FIELDS.contains(&k.as_str()) && !k.starts_with("tags.") {
            return Err(format!(
                "gateway.attribution.vocabularies.{k}: not a request field; use one of {} or tags.KEY",
                HEADER_FIELDS.join(", ")
            ));
        }
        if vals.is_empty() {
            return Err(format!(
                "gateway.attribution.vocabularies.{k}: empty list; list the allowed values or remove the key"
            ));
        }
    }
    let override_ = match raw.override_ {
        None => None,
        Some(o) => {
            let mode = Mode::parse(&o.mode).ok_or_else(|| {
                format!(
                    "gateway.attribution.override.mode: {:?} is not a mode; use \"report\", \"enforce\" or \"quarantine\"",
                    o.mode
                )
            })?;
            let until: Timestamp = o.until.parse().map_err(|_| {
                format!(
                    "gateway.attribution.override.until: {:?} is not an RFC 3339 instant (e.g. 2026-12-01T00:00:00Z)",
                    o.until
                )
            })?;
            Some(ModeOverride { mode, until })
        }
    };
    Ok(AttributionConfig {
        mode,
        required,
        vocabularies: raw.vocabularies,
        override_,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn parse(t: &str) -> Result<GatewayConfig, String> {
        #[derive(Deserialize)]
        struct W {
            gateway: RawGateway,
        }
        let w: W = toml::from_str(t).map_err(|e| e.to_string())?;
        GatewayConfig::from_raw(w.gateway, std::path::Path::new("."))
    }

    #[test]
    fn defaults_have_both_providers_and_feature_required() {
        let c = GatewayConfig::default();
        assert_eq!(c.upstreams["openai"].base_url, "https://api.openai.com/v1");
        assert_eq!(
            c.upstreams["anthropic"].base_url,
            "https://api.anthropic.com"
        );
        assert_eq!(c.attribution.required, vec!["feature"]);
        assert_eq!(c.attribution.mode, Mode::Report);
        assert_eq!(c.durability, Durability::Group);
        assert_eq!(c.group_commit, Duration::from_millis(10));
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = parse("[gateway.upstreams.anthropic]\nbase_url = \"http://x/v1\"\n").unwrap_err();
        assert!(
            e.starts_with("gateway.upstreams.anthropic.base_url:"),
            "{e}"
        );
        let e = parse("[gateway.attribution]\nmode = \"strict\"\n").unwrap_err();
        assert!(
            e.starts_with("gateway.attribution.mode:") && e.contains("strict"),
            "{e}"
        );
        let e = parse("[gateway.upstreams.vllm]\nformat = \"openai\"\n").unwrap_err();
        assert!(
            e.starts_with("gateway.upstreams.vllm.base_url: missing"),
            "{e}"
        );
        let e = parse("[gateway]\ndurability = \"fast\"\n").unwrap_err();
        assert!(e.starts_with("gateway.durability:"), "{e}");
    }

    #[test]
    fn env_overrides_and_model_routing() {
        let mut c = parse(
            "[gateway.upstreams.vllm]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"llama-*\"]\n",
        )
        .unwrap();
        c.apply_env(|k| (k == "TOLLGATE_OPENAI_BASE_URL").then(|| "http://127.0.0.1:1/v1/".into()))
            .unwrap();
        assert_eq!(
            c.route(Format::OpenAi, Some("gpt-4o")).base_url,
            "http://127.0.0.1:1/v1"
        );
        assert_eq!(c.route(Format::OpenAi, Some("llama-3")).name, "vllm");
        assert_eq!(c.route(Format::OpenAi, Some("llama-3")).provider, "vllm");
        let e = c
            .apply_env(|k| (k == "TOLLGATE_ANTHROPIC_BASE_URL").then(|| "http://h/v1".into()))
            .unwrap_err();
        assert!(e.starts_with("TOLLGATE_ANTHROPIC_BASE_URL:"), "{e}");
    }
}
