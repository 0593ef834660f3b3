//! Shared by the peer servers: the flags they take (`--listen ADDR`, and
//! `--tls-cert FILE --tls-key FILE` for wss://) and the line they print.

use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The value after `flag` on the command line.
fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// With `--tls-cert` and `--tls-key`: a rustls server configuration as
/// Ricochet's (the same provider, TLS 1.3 and 1.2, ALPN http/1.1, tickets).
fn tls_config() -> Option<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = (arg("--tls-cert")?, arg("--tls-key")?);
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&cert).expect("--tls-cert").map(|c| c.expect("certificate")).collect();
    let key = PrivateKeyDer::from_pem_file(&key).expect("--tls-key");
    #[cfg(feature = "aws-lc-rs")]
    let (provider, ticketer) =
        (rustls::crypto::aws_lc_rs::default_provider(), rustls::crypto::aws_lc_rs::Ticketer::new());
    #[cfg(not(feature = "aws-lc-rs"))]
    let (provider, ticketer) = (rustls::crypto::ring::default_provider(), rustls::crypto::ring::Ticketer::new());
    let provider = Arc::new(provider);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = ticketer.expect("ticketer");
    Some(Arc::new(config))
}

/// A connection: plain TCP, or TLS over it (tokio-rustls).
pub enum Stream {
    /// ws://.
    Plain(tokio::net::TcpStream),
    /// wss://.
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// `--listen ADDR` (default 127.0.0.1:0), as `ricochet serve` takes it.
pub fn listen_addr() -> SocketAddr {
    arg("--listen").as_deref().unwrap_or("127.0.0.1:0").parse().unwrap_or_else(|_| {
        eprintln!("usage: PEER [--listen ADDR] [--tls-cert FILE --tls-key FILE]");
        std::process::exit(2)
    })
}

/// Prints `listening on ADDR` (with ` (tls)` for wss://), the line `make bench` waits for.
pub fn announce(addr: SocketAddr, tls: bool) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}{}", if tls { " (tls)" } else { "" });
    let _ = out.flush();
}

/// Runs a single-threaded tokio server: binds `--listen`, announces it, and
/// hands each accepted connection (TCP_NODELAY set) to `handle` as a local task.
pub fn serve_current_thread<F, Fut>(handle: F)
where
    F: Fn(Stream) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    // Timers too: sockudo-ws' split streams keep a heartbeat timer.
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let tls = tls_config().map(tokio_rustls::TlsAcceptor::from);
    let handle = std::rc::Rc::new(handle);
    local.block_on(&rt, async {
        let listener = tokio::net::TcpListener::bind(listen_addr()).await.expect("bind");
        announce(listener.local_addr().expect("local address"), tls.is_some());
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let handle = handle.clone();
            match &tls {
                None => drop(tokio::task::spawn_local(handle(Stream::Plain(stream)))),
                Some(acceptor) => {
                    let accept = acceptor.accept(stream);
                    tokio::task::spawn_local(async move {
                        if let Ok(s) = accept.await {
                            handle(Stream::Tls(Box::new(s))).await;
                        }
                    });
                }
            }
        }
    });
}
