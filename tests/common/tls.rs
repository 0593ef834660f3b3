//! Test certificates, made at test time (rcgen): a CA and a leaf for
//! localhost and 127.0.0.1 signed by it, written to a temporary folder for
//! the server; client configurations that trust that CA.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// A CA, and certificates it signed.
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    /// Where the files are.
    pub dir: PathBuf,
}

impl Pki {
    /// A new CA in a new temporary folder.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap().keep();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Ricochet test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { ca, ca_key, dir }
    }

    /// The CA certificate's PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf for `names` signed by the CA, written as `<stem>.pem` and
    /// `<stem>.key`; returns both paths.
    pub fn leaf(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, stem);
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (c, k) = (self.dir.join(format!("{stem}.pem")), self.dir.join(format!("{stem}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// A client certificate for `name` (extended key usage clientAuth) signed by the CA.
    fn client_leaf(&self, name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        (params.signed_by(&key, &self.ca, &self.ca_key).unwrap(), key)
    }

    /// [`Pki::client_leaf`] as a DER chain and key, for a rustls client.
    pub fn client_cert(&self, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let (cert, key) = self.client_leaf(name);
        (vec![cert.der().clone()], PrivateKeyDer::try_from(key.serialize_der()).unwrap())
    }

    /// [`Pki::client_leaf`] written as `<name>.pem` and `<name>.key`; returns both paths.
    pub fn client_cert_files(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.client_leaf(name);
        let (c, k) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// A rustls client configuration that trusts only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client_config_with(None)
    }

    /// The same, presenting `cert` (a chain and its key) when asked for one.
    pub fn client_config_with(
        &self,
        cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.der().to_vec())).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

/// The PKI every test of a process shares, with one leaf for localhost and 127.0.0.1.
pub fn shared() -> &'static (Pki, PathBuf, PathBuf) {
    static PKI: OnceLock<(Pki, PathBuf, PathBuf)> = OnceLock::new();
    PKI.get_or_init(|| {
        let pki = Pki::new();
        let (c, k) = pki.leaf("localhost", &["localhost", "127.0.0.1"]);
        (pki, c, k)
    })
}

/// A blocking TLS client stream to `addr`, verifying the shared CA; `name`
/// is the name checked (and sent as SNI, unless it is an IP address).
pub fn connect(
    addr: std::net::SocketAddr,
    name: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    over(std::net::TcpStream::connect(addr).expect("connect"), name)
}

/// A blocking TLS client stream over an open TCP connection, as [`connect`].
pub fn over(
    tcp: std::net::TcpStream,
    name: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let config = shared().0.client_config();
    let conn = rustls::ClientConnection::new(config, ServerName::try_from(name.to_string()).unwrap()).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Upgrades a connection (`GET /`, expecting 101), then echoes `text` once.
pub fn echo(s: &mut (impl std::io::Read + std::io::Write), text: &str) {
    s.write_all(super::upgrade_request("/").as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed during the handshake");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&head));
    echo_again(s, text);
}

/// Sends `text` (under 126 bytes) as one masked text frame on an upgraded
/// connection and checks that the same comes back.
pub fn echo_again(s: &mut (impl std::io::Read + std::io::Write), text: &str) {
    let mut f = Vec::new();
    ricochet::ws::client::encode_masked(&mut f, true, ricochet::ws::frame::OpCode::Text, text.as_bytes(), [1, 2, 3, 4]);
    s.write_all(&f).unwrap();
    let mut got = vec![0u8; 2 + text.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got[2..], text.as_bytes());
}
