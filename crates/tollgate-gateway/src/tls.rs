//! TLS for the gateway's outgoing calls (upstreams and the OTLP endpoint): rustls with the
//! Mozilla root store (webpki-roots), plus the certificates of `gateway.ca_file` when set (a
//! private CA in front of a self-hosted, OpenAI-compatible server).

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
