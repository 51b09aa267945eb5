//! # tollgate-gateway
//!
//! The HTTP gateway behind `tollgate serve`: teams point their OpenAI or Anthropic SDK's base
//! URL at it and keep their code; every call is authenticated with a gateway key, attributed
//! (key + `x-tollgate-*` headers), forwarded unchanged to the configured upstream, its usage
//! read from the response or the SSE stream as it passes, priced, and recorded as exactly one
//! usage event: first in a local checksummed spool (before the client sees the end of its
//! response), then in the ledger.
//!
//! Modules: [`audit`] (the chargeback auditor), [`budget`] (monthly limits checked at the edge), [`config`] (the `[gateway]` section), [`demo`] (the demo's clock and attribution stamp), [`keys`] (gateway keys), [`otel`] (OTLP export), [`usage`] (provider
//! usage -> disjoint token classes, SSE parsing), [`proxy`] (the request path), [`spool`]
//! (durability), [`tls`] (outgoing TLS roots), [`server`] (listener, shutdown), [`fake`] (a fake provider for tests and the
//! demo), [`ids`] (UUIDv7 and secrets). User documentation: `docs/gateway.md`.

pub mod audit;
pub mod budget;
pub mod config;
pub mod demo;
pub mod fake;
pub mod ids;
pub mod keys;
pub mod otel;
pub mod proxy;
pub mod server;
pub mod spool;
pub mod tls;
pub mod usage;

pub use config::{GatewayConfig, RawGateway};
pub use server::{ServeOptions, serve};
