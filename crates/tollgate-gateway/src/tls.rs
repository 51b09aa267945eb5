//! TLS with rustls (ring). Outgoing calls (upstreams and the OTLP endpoint) trust the Mozilla
//! root store (webpki-roots), plus the certificates of `gateway.ca_file` when set (a private CA
//! in front of a self-hosted, OpenAI-compatible server). The listener serves HTTPS when
//! `gateway.tls_cert` and `gateway.tls_key` are set.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Reads the PEM certificates of `path`; an error names the file and what is wrong with it.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for (i, c) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let c = c.map_err(|e| {
            format!(
                "{}: PEM block {} is not a readable certificate: {e}",
                path.display(),
                i + 1
            )
        })?;
        certs.push(c);
    }
    if certs.is_empty() {
        return Err(format!(
            "{}: holds no certificate; give a PEM file with one or more `-----BEGIN CERTIFICATE-----` blocks",
            path.display()
        ));
    }
    Ok(certs)
}

/// The client TLS configuration: Mozilla's roots, plus those of `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(p) = ca_file {
        for (i, c) in load_ca_file(p)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .enumerate()
        {
            roots.add(c).map_err(|e| {
                anyhow::anyhow!(
                    "gateway.ca_file: {}: certificate {} cannot be a trust anchor: {e}",
                    p.display(),
                    i + 1
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The server TLS configuration for `gateway.tls_cert` (PEM chain, leaf first) and
/// `gateway.tls_key` (PEM private key): HTTP/1.1 over TLS 1.2 or 1.3.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let chain = load_ca_file(cert).map_err(|e| format!("gateway.tls_cert: {e}"))?;
    let pem = std::fs::read(key)
        .map_err(|e| format!("gateway.tls_key: cannot read {}: {e}", key.display()))?;
    let key_der = rustls_pki_types::PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "gateway.tls_key: {}: no readable PEM private key ({e}); give a `-----BEGIN PRIVATE KEY-----` (PKCS#8), RSA or EC key",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            format!(
                "gateway.tls_key: {} does not go with the certificate of {}: {e}",
                key.display(),
                cert.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}
