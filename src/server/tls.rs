//! TLS set-up for the `--tls-listen` listeners: certificates and keys from
//! PEM files (or one made at start with `--tls-self-signed`), chosen by SNI,
//! re-read on SIGHUP; one rustls `ServerConfig` (and so one session
//! ticketer) shared by every shard.
//!
//! The per-connection TLS layer is `ws::tls`; this is only configuration.

use crate::server::config::ClientAuth;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use thiserror::Error;

/// Why the certificates could not be loaded; one line each.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{path}: no PEM certificate in it")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error("{path}: no PEM private key (PKCS#8, SEC1 or PKCS#1) in it")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key cannot be used, or does not belong to the certificate.
    #[error("{key} with {cert}: {reason}")]
    BadKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason, e.g. that the keys do not match.
        reason: String,
    },
    /// `--tls-cert` and `--tls-key` were not given in pairs.
    #[error("--tls-cert and --tls-key come in pairs: {certs} certificate(s), {keys} key(s)")]
    Unpaired {
        /// How many certificates.
        certs: usize,
        /// How many keys.
        keys: usize,
    },
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The client CA file holds no usable CA certificate.
    #[error("{path}: {reason}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where the certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// PEM files: (certificate chain, private key) pairs; the first answers clients without SNI.
    Files(Vec<(PathBuf, PathBuf)>),
    /// A certificate for localhost and 127.0.0.1 made at start.
    SelfSigned,
}

/// One loaded certificate: its key, the names it serves (from its
/// subjectAltName DNS entries) and when it expires.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    not_after: Option<std::time::SystemTime>,
}

/// A line to log about what was loaded; `warn` for an expired certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Log as a warning.
    pub warn: bool,
    /// The line.
    pub text: String,
}

/// The certificates in force: chosen by SNI, the first for clients without it.
#[derive(Debug, Default)]
struct Store {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` entries, by the part after `*.`.
    by_wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl Store {
    fn new(loaded: Vec<Loaded>) -> Store {
        let mut s = Store::default();
        for l in loaded {
            if s.default.is_none() {
                s.default = Some(l.key.clone());
            }
            for n in l.names {
                let n = n.to_ascii_lowercase();
                match n.strip_prefix("*.") {
                    Some(rest) => s.by_wildcard.entry(rest.to_string()).or_insert_with(|| l.key.clone()),
                    None => s.by_name.entry(n).or_insert_with(|| l.key.clone()),
                };
            }
        }
        s
    }

    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = sni.map(str::to_ascii_lowercase) else { return self.default.clone() };
        if let Some(k) = self.by_name.get(&name) {
            return Some(k.clone());
        }
        let parent = name.split_once('.').map(|(_, p)| p);
        parent.and_then(|p| self.by_wildcard.get(p)).cloned().or_else(|| self.default.clone())
    }
}

/// Picks the certificate by SNI; its contents are swapped whole on reload,
/// so handshakes already under way keep the key they started with.
#[derive(Debug)]
pub struct Certificates {
    source: CertSource,
    store: RwLock<Arc<Store>>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = self.store.read().map(|s| s.clone()).ok()?;
        store.pick(hello.server_name())
    }
}

impl Certificates {
    /// Loads every certificate of `source`; returns one line per
    /// certificate to log (its names and, for a self-signed one, its
    /// SHA-256 fingerprint).
    pub fn load(source: CertSource) -> Result<(Arc<Certificates>, Vec<Note>), TlsError> {
        let (loaded, lines) = load_all(&source)?;
        Ok((Arc::new(Certificates { source, store: RwLock::new(Arc::new(Store::new(loaded))) }), lines))
    }

    /// Re-reads the files (SIGHUP): new handshakes use the new certificates,
    /// established connections keep theirs. A bad file keeps the old ones.
    pub fn reload(&self) -> Result<Vec<Note>, TlsError> {
        if self.source == CertSource::SelfSigned {
            return Ok(vec![Note { warn: false, text: "self-signed certificate kept (nothing to re-read)".into() }]);
        }
        let (loaded, lines) = load_all(&self.source)?;
        *self.store.write().expect("certificate lock") = Arc::new(Store::new(loaded));
        Ok(lines)
    }
}

/// The crypto provider's name, chosen at build time: `ring` by default, or
/// `aws-lc-rs` when built with `--features aws-lc-rs` (docs/tls.md
/// has the figures behind the default).
pub const PROVIDER: &str = if cfg!(feature = "aws-lc-rs") { "aws-lc-rs" } else { "ring" };

/// The crypto provider every TLS configuration uses (see [`PROVIDER`]).
pub fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    return Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    #[cfg(not(feature = "aws-lc-rs"))]
    return Arc::new(rustls::crypto::ring::default_provider());
}

/// The TLS 1.3 session-ticket encrypter from the same provider.
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::Ticketer::new();
    #[cfg(not(feature = "aws-lc-rs"))]
    return rustls::crypto::ring::Ticketer::new();
}

/// The server configuration every shard shares: TLS 1.3 and 1.2, ALPN
/// `http/1.1` (RFC 6455 runs over HTTP/1.1), session tickets from one
/// ticketer (so a client resumes on any shard), certificates from `certs`,
/// and client certificates checked against `client`'s CA if given.
pub fn server_config(
    certs: Arc<Certificates>,
    client: Option<&ClientAuth>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client {
        None => builder.with_no_client_auth(),
        Some(c) => builder.with_client_cert_verifier(client_verifier(c)?),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = ticketer().map_err(|e| TlsError::Config(e.to_string()))?;
    // Resumption by ticket only: no per-server session cache to share or bound.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// rustls' WebPKI verifier over the CA certificates in `c.ca`: a client
/// certificate must chain to one of them (and be valid now, for client
/// authentication); with `c.optional` a client may also present none.
fn client_verifier(c: &ClientAuth) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let bad = |reason: String| TlsError::ClientCa { path: c.ca.clone(), reason };
    let pem = std::fs::read(&c.ca).map_err(|source| TlsError::Read { path: c.ca.clone(), source })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
        roots.add(cert).map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if c.optional { builder.allow_unauthenticated() } else { builder };
    builder.build().map_err(|e| bad(e.to_string()))
}

/// The subject of the client's certificate, for logs (`None` without one).
pub fn client_subject(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let der = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

fn load_all(source: &CertSource) -> Result<(Vec<Loaded>, Vec<Note>), TlsError> {
    let provider = provider();
    let mut loaded = Vec::new();
    let mut lines = Vec::new();
    match source {
        CertSource::SelfSigned => {
            let (l, line) = self_signed(&provider)?;
            loaded.push(l);
            lines.push(Note { warn: false, text: line });
        }
        CertSource::Files(pairs) => {
            for (i, (cert, key)) in pairs.iter().enumerate() {
                let l = load_pair(cert, key, &provider)?;
                let names = if l.names.is_empty() { "no DNS names".to_string() } else { l.names.join(", ") };
                let default = if i == 0 { ", the default for clients without SNI" } else { "" };
                let (warn, expiry) = match l.not_after {
                    Some(t) if t < std::time::SystemTime::now() => {
                        (true, format!("EXPIRED on {}: clients will refuse it", humantime::format_rfc3339_seconds(t)))
                    }
                    Some(t) => (false, format!("expires {}", humantime::format_rfc3339_seconds(t))),
                    None => (false, "expiry unreadable".into()),
                };
                lines.push(Note { warn, text: format!("loaded {} ({names}{default}); {expiry}", cert.display()) });
                loaded.push(l);
            }
        }
    }
    Ok((loaded, lines))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(cert)?).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.to_owned() });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| TlsError::NoKey { path: key.to_owned() })?;
    let certified = CertifiedKey::from_der(chain.clone(), key_der, provider).map_err(|e| TlsError::BadKey {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: match e {
            rustls::Error::InconsistentKeys(_) => "the private key does not match the certificate".into(),
            other => other.to_string(),
        },
    })?;
    Ok(Loaded { key: Arc::new(certified), names: dns_names(&chain[0]), not_after: not_after(&chain[0]) })
}

/// The end of a certificate's validity period (RFC 5280 §4.1.2.5).
fn not_after(cert: &CertificateDer<'_>) -> Option<std::time::SystemTime> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let secs = u64::try_from(parsed.validity().not_after.timestamp()).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// DNS names of a certificate's subjectAltName, read with webpki's parser.
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else { return Vec::new() };
    ee.valid_dns_names().map(str::to_string).collect()
}

fn self_signed(provider: &CryptoProvider) -> Result<(Loaded, String), TlsError> {
    let err = |e: rcgen::Error| TlsError::SelfSigned(e.to_string());
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = rcgen::CertificateParams::new(names).map_err(err)?.self_signed(&key).map_err(err)?;
    let der = cert.der().clone();
    let fingerprint = sha256_hex(&der);
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let certified =
        CertifiedKey::from_der(vec![der], key_der, provider).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let line = format!(
        "self-signed certificate for localhost, 127.0.0.1 and ::1 made at start (for trying out only), SHA-256 fingerprint {fingerprint}"
    );
    Ok((Loaded { key: Arc::new(certified), names: vec!["localhost".into()], not_after: None }, line))
}

/// SHA-256 of `bytes` as colon-separated hex, as browsers show fingerprints.
fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, not_after: (i32, u8, u8)) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn loading_says_when_a_certificate_expires_and_warns_when_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let pair = write_pair(dir.path(), (2099, 1, 2));
        let (_, notes) = Certificates::load(CertSource::Files(vec![pair])).unwrap();
        assert!(
            !notes[0].warn && notes[0].text.contains("a.test") && notes[0].text.contains("expires 2099-01-02"),
            "{notes:?}"
        );
        let pair = write_pair(dir.path(), (2021, 6, 1));
        let (_, notes) = Certificates::load(CertSource::Files(vec![pair])).unwrap();
        assert!(notes[0].warn && notes[0].text.contains("EXPIRED on 2021-06-01"), "{notes:?}");
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_default() {
        let provider = provider();
        let make = |n: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![n.to_string()]).unwrap().self_signed(&key).unwrap();
            let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
            Arc::new(CertifiedKey::from_der(vec![cert.der().clone()], der, &provider).unwrap())
        };
        let (a, w) = (make("a.test"), make("*.w.test"));
        let store = Store::new(vec![
            Loaded { key: a.clone(), names: vec!["A.test".into()], not_after: None },
            Loaded { key: w.clone(), names: vec!["*.w.test".into()], not_after: None },
        ]);
        assert!(Arc::ptr_eq(&store.pick(Some("a.TEST")).unwrap(), &a));
        assert!(Arc::ptr_eq(&store.pick(Some("x.w.test")).unwrap(), &w));
        // A wildcard covers one label only; unknown names get the default.
        assert!(Arc::ptr_eq(&store.pick(Some("y.x.w.test")).unwrap(), &a));
        assert!(Arc::ptr_eq(&store.pick(None).unwrap(), &a));
    }
}
