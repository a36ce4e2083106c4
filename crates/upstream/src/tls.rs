//! HTTPS to upstreams: trusted roots, a source's own CA bundle and client certificate.
//!
//! Server certificates are checked against the platform's trust store (through
//! `rustls-platform-verifier`, reqwest's rustls default), so an operator trusts a hospital's
//! internal CA the way the rest of the host does, and a CA distrusted by an OS update stops
//! being trusted without a rebuild of medgate. A source's `tls_ca` adds certificates on top of
//! those roots; `tls_client_cert` + `tls_client_key` present a client certificate (mutual TLS).
//!
//! The files are read and checked once, by [`load`], for both `medgate check` ([`check_tls`])
//! and start-up ([`client_for`]), so the two can never disagree about a file.

use std::path::Path;

use medgate_core::config::ConfigIssue;
use medgate_core::SourceCommon;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::UpstreamError;

/// A source's TLS material, read and checked.
pub(crate) struct Material {
    /// Extra trusted roots, PEM (as reqwest takes them).
    ca: Vec<reqwest::Certificate>,
    /// Client certificate chain and key, PEM concatenated (as reqwest takes them).
    identity: Option<Vec<u8>>,
}

/// Checks a source's TLS keys the way start-up reads them: the files exist and are readable,
/// hold PEM certificates (and a private key), the certificate and the key are given together
/// and belong to each other. Keys are relative to the source (`tls_ca`, `tls_client_cert`,
/// `tls_client_key`), as a plugin's `validate` reports them. Empty when the source has no
/// TLS keys.
pub fn check_tls(common: &SourceCommon) -> Vec<ConfigIssue> {
    load(common).err().unwrap_or_default()
}

/// Reads and checks the TLS keys of `common`; `None` when it has none.
pub(crate) fn load(common: &SourceCommon) -> Result<Option<Material>, Vec<ConfigIssue>> {
    let mut issues = Vec::new();
    let ca = common
        .tls_ca
        .as_deref()
        .and_then(|path| record(&mut issues, load_ca(path)));
    let identity = match (&common.tls_client_cert, &common.tls_client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => record(&mut issues, load_identity(cert, key)),
        (Some(_), None) => {
            issues.push(ConfigIssue::new(
                "tls_client_key",
                "is required with tls_client_cert (mutual TLS needs the certificate and its key)",
            ));
            None
        }
        (None, Some(_)) => {
            issues.push(ConfigIssue::new(
                "tls_client_cert",
                "is required with tls_client_key (mutual TLS needs the certificate and its key)",
            ));
            None
        }
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    if ca.is_none() && identity.is_none() {
        return Ok(None);
    }
    Ok(Some(Material {
        ca: ca.unwrap_or_default(),
        identity,
    }))
}

fn record<T>(issues: &mut Vec<ConfigIssue>, result: Result<T, ConfigIssue>) -> Option<T> {
    result.map_err(|issue| issues.push(issue)).ok()
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigIssue> {
    std::fs::read(path)
        .map_err(|e| ConfigIssue::new(key, format!("cannot read `{}`: {e}", path.display())))
}

/// The PEM certificates in `pem`, at least one.
fn certificates(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigIssue> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigIssue::new(key, format!("`{}` is not valid PEM: {e}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(ConfigIssue::new(
            key,
            format!(
                "`{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, ConfigIssue> {
    const KEY: &str = "tls_ca";
    let pem = read(KEY, path)?;
    let certs = certificates(KEY, path, &pem)?;
    let mut roots = rustls::RootCertStore::empty();
    let mut out = Vec::with_capacity(certs.len());
    for (i, der) in certs.into_iter().enumerate() {
        // The same parse rustls applies to a trust anchor, so a bad certificate fails here
        // and not at the first call.
        roots.add(der.clone()).map_err(|e| {
            ConfigIssue::new(
                KEY,
                format!(
                    "certificate {} in `{}` is not a usable CA certificate: {e}",
                    i + 1,
                    path.display()
                ),
            )
        })?;
        out.push(reqwest::Certificate::from_der(&der).map_err(|e| {
            ConfigIssue::new(
                KEY,
                format!("certificate {} in `{}`: {e}", i + 1, path.display()),
            )
        })?);
    }
    Ok(out)
}

fn load_identity(cert_path: &Path, key_path: &Path) -> Result<Vec<u8>, ConfigIssue> {
    let pair = load_certified(cert_path, key_path, "tls_client_cert", "tls_client_key")?;
    let mut identity = pair.cert_pem;
    identity.push(b'\n');
    identity.extend_from_slice(&pair.key_pem);
    Ok(identity)
}

/// A certificate chain and its private key, read from PEM files and checked to belong
/// together.
pub struct CertifiedPem {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The chain's private key.
    pub key: PrivateKeyDer<'static>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// Reads a PEM certificate chain and its private key and checks they belong together; issues
/// are keyed `cert_key` / `key_key` (e.g. `tls_client_cert`, or the server's `tls_cert`). The
/// one loader for client certificates of sources and the gateway's own server certificate.
///
/// # Errors
/// The first problem: unreadable file, no PEM certificate or key, unsupported key, mismatch.
pub fn load_certified(
    cert_path: &Path,
    key_path: &Path,
    cert_key: &'static str,
    key_key: &'static str,
) -> Result<CertifiedPem, ConfigIssue> {
    let cert_pem = read(cert_key, cert_path)?;
    let chain = certificates(cert_key, cert_path, &cert_pem)?;
    let key_pem = read(key_key, key_path)?;
    // Never echo the key file's content or rustls' view of it beyond the error kind.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        ConfigIssue::new(
            key_key,
            format!(
                "`{}` holds no usable PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC): {e}",
                key_path.display()
            ),
        )
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| {
            ConfigIssue::new(
                key_key,
                format!("`{}`: unsupported private key: {e}", key_path.display()),
            )
        })?;
    rustls::sign::CertifiedKey::new(chain.clone(), signing_key)
        .keys_match()
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                ConfigIssue::new(
                    key_key,
                    format!(
                        "`{}` is not the private key of the certificate in `{}`",
                        key_path.display(),
                        cert_path.display()
                    ),
                )
            }
            e => ConfigIssue::new(
                cert_key,
                format!("`{}`: unusable certificate: {e}", cert_path.display()),
            ),
        })?;
    Ok(CertifiedPem {
        chain,
        key,
        cert_pem,
        key_pem,
    })
}

/// The client a source calls its upstream with: `shared` (one connection pool for every
/// source) unless the source has TLS keys, in which case a client of its own is built here,
/// once, with the same settings plus its roots and certificate.
///
/// # Errors
/// [`UpstreamError::Tls`] with the issues [`check_tls`] reports, or [`UpstreamError::Client`]
/// when the TLS backend refuses the material.
pub fn client_for(
    shared: &reqwest::Client,
    common: &SourceCommon,
) -> Result<reqwest::Client, UpstreamError> {
    let material = load(common).map_err(|issues| UpstreamError::Tls {
        name: common.name.clone(),
        issues,
    })?;
    let Some(material) = material else {
        return Ok(shared.clone());
    };
    let mut builder = crate::client_builder().tls_certs_merge(material.ca);
    if let Some(pem) = material.identity {
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| UpstreamError::Client {
            name: common.name.clone(),
            detail: crate::describe(&e),
        })?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| UpstreamError::Client {
        name: common.name.clone(),
        detail: crate::describe(&e),
    })
}
