//! The load generator's TLS: a non-blocking rustls client stream over a mio
//! socket, so a `Conn` runs over wss:// exactly as over ws://.
//!
//! Reads keep the contract the plain socket gives the event loop: a read
//! shorter than the buffer means the socket is drained (edge-triggered
//! epoll reports the next arrival anew), so a read pulls records from the
//! socket until it would block or the buffer is full.

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// The CA bundle used when neither `--ca` nor `--insecure` is given.
pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A client certificate to present: its PEM chain and key files.
pub type ClientCert<'a> = (&'a Path, &'a Path);

/// Reads a `--cert`/`--key` pair.
fn client_cert((cert, key): ClientCert<'_>) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--cert {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--cert {}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--key {}: {e}", key.display()))?;
    Ok((chain, key))
}

/// A client configuration: trusting the CAs in `ca` (PEM), or, with
/// `insecure`, any certificate at all; `resume` keeps session tickets so
/// later handshakes resume; `cert` is presented when the server asks for one.
pub fn client_config(
    ca: Option<&Path>,
    insecure: bool,
    resume: bool,
    cert: Option<ClientCert<'_>>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = crate::server::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let cert = cert.map(client_cert).transpose()?;
    let with_cert = |b: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>| match cert {
        Some((chain, key)) => b.with_client_auth_cert(chain, key).map_err(|e| format!("--cert/--key: {e}")),
        None => Ok(b.with_no_client_auth()),
    };
    let mut config = if insecure {
        with_cert(builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))))?
    } else {
        let path = ca.unwrap_or(Path::new(SYSTEM_CA));
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("--ca {}: {e}", path.display()))?;
        for c in certs {
            roots.add(c.map_err(|e| format!("--ca {}: {e}", path.display()))?).map_err(|e| e.to_string())?;
        }
        if roots.is_empty() {
            return Err(format!("--ca {}: no certificate in it", path.display()));
        }
        let pinned: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("--ca {}: {e}", path.display()))?
            .filter_map(Result::ok)
            .collect();
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("--ca {}: {e}", path.display()))?;
        let verifier = CaOrItself { webpki, pinned };
        with_cert(builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)))?
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// A TLS client connection over a non-blocking socket.
pub struct TlsStream {
    /// The socket (registered with the event loop).
    pub tcp: TcpStream,
    conn: ClientConnection,
}

impl TlsStream {
    /// Starts a TLS client on `tcp` for `name`.
    pub fn new(tcp: TcpStream, config: Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(TlsStream { tcp, conn })
    }

    /// True once the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// Sends what rustls has to send, until the socket would block.
    fn send_pending(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            match self.conn.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled), // close_notify
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: end of stream all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut self.tcp) {
                Ok(0) => return Ok(filled),
                Ok(_) => {
                    self.conn.process_new_packets().map_err(|e| io::Error::other(in_words(&e)))?;
                    self.send_pending()?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        self.send_pending()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.conn.writer().write_vectored(bufs)?;
        self.send_pending()?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Sends what rustls still holds (called on every writable event).
    fn flush(&mut self) -> io::Result<()> {
        self.send_pending()
    }
}

/// A rustls error in words, for the one-line report (never a `Debug` dump
/// such as `Other(OtherError(CaUsedAsEndEntity))`).
pub fn in_words(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                C::UnknownIssuer => "it is not signed by a CA of --ca (or of the system's bundle)".to_string(),
                C::Expired | C::ExpiredContext { .. } => "it has expired".to_string(),
                C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".to_string(),
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "it is not for the host name in the URL (its subjectAltName lacks it)".to_string()
                }
                C::BadSignature => "its signature does not verify".to_string(),
                C::Revoked => "it was revoked".to_string(),
                C::BadEncoding => "it cannot be parsed".to_string(),
                C::Other(o) if o.to_string().contains("CaUsedAsEndEntity") => {
                    "it is a CA certificate used as the server's own (give that very certificate as --ca to trust it)"
                        .to_string()
                }
                C::Other(o) => format!("{o}"),
                other => format!("{other:?}").to_lowercase(),
            };
            format!("the server's certificate was refused: {why}")
        }
        rustls::Error::AlertReceived(a) => format!("the server ended the TLS handshake with the alert {a:?}"),
        other => other.to_string(),
    }
}

/// `--ca FILE`: the server's chain must lead to a certificate in FILE, as
/// usual; and a certificate that is itself in FILE is trusted as it is (for
/// its host names), as Python, Node and curl do. The certificate most people
/// make first (`openssl req -x509`) is a self-signed CA used as the server's
/// own, which WebPKI refuses (CaUsedAsEndEntity).
#[derive(Debug)]
struct CaOrItself {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaOrItself {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Err(e) if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) => {
                // Trusted as it is: only its names (and dates) remain to check.
                let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| e.clone())?;
                cert.verify_is_valid_for_subject_name(name)
                    .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))?;
                let (_, parsed) = x509_parser::parse_x509_certificate(end_entity.as_ref()).map_err(|_| e.clone())?;
                let t = now.as_secs() as i64;
                if t > parsed.validity().not_after.timestamp() {
                    return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired));
                }
                if t < parsed.validity().not_before.timestamp() {
                    return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet));
                }
                Ok(ServerCertVerified::assertion())
            }
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `--insecure`: accepts any certificate, but still checks the handshake
/// signatures, so the connection is encrypted, only not authenticated.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
