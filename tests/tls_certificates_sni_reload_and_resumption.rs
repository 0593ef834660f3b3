//! On a TLS listener: the certificate is chosen by SNI, the first one
//! answers clients without SNI; SIGHUP re-reads the files (new connections
//! see the new certificate, open ones keep echoing, a bad file keeps the
//! old); a plain HTTP request gets a plain 400 and other bytes are closed;
//! TLS 1.3 sessions resume from a ticket on any shard.

mod common;

use common::tls::{echo, echo_again, Pki};
use common::{backend, Server};
use rustls::pki_types::ServerName;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn start(pairs: &[(&std::path::Path, &std::path::Path)], extra: &[&str]) -> Server {
    let mut args: Vec<String> = ["serve", "--tls-listen", "127.0.0.1:0", "--shards", "1", "--no-pin", "--backend"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(backend());
    for (c, k) in pairs {
        args.extend(["--tls-cert".into(), c.display().to_string(), "--tls-key".into(), k.display().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_raw(&args)
}

/// A TLS connection to `addr` checking `name` (sent as SNI unless an IP
/// address), handshaken; returns the stream.
fn tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let conn = rustls::ClientConnection::new(config, ServerName::try_from(name.to_string()).unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("TLS handshake");
    }
    s
}

/// The DER of the certificate the server presented.
fn presented(s: &rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> Vec<u8> {
    s.conn.peer_certificates().expect("a certificate")[0].to_vec()
}

fn der_of(pem_file: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(pem_file).unwrap().to_vec()
}

/// Upgrades `s` and echoes one text message over it.

#[test]
fn sni_picks_the_certificate_and_the_first_answers_without_sni() {
    let pki = Pki::new();
    let one = pki.leaf("one", &["one.test", "127.0.0.1"]);
    let two = pki.leaf("two", &["two.test", "*.wild.test", "127.0.0.1"]);
    let server = start(&[(&one.0, &one.1), (&two.0, &two.1)], &[]);
    // As a browser: ALPN http/1.1, no session kept between connections.
    let mut c = (*pki.client_config()).clone();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(c);
    assert_eq!(presented(&tls(server.addr, config.clone(), "two.test")), der_of(&two.0));
    assert_eq!(presented(&tls(server.addr, config.clone(), "a.wild.test")), der_of(&two.0));
    assert_eq!(presented(&tls(server.addr, config.clone(), "one.test")), der_of(&one.0));
    // An IP address sends no SNI: the first certificate answers.
    let mut s = tls(server.addr, config, "127.0.0.1");
    assert_eq!(presented(&s), der_of(&one.0));
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    echo(&mut s, "over TLS");
}

#[test]
fn sighup_reloads_certificates_and_keeps_the_old_on_a_bad_file() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("site", &["site.test", "127.0.0.1"]);
    let first = der_of(&cert);
    let server = start(&[(&cert, &key)], &[]);
    // No session kept between connections: a resumed one would show the old certificate.
    let mut c = (*pki.client_config()).clone();
    c.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(c);
    let mut old = tls(server.addr, config.clone(), "site.test");
    echo(&mut old, "before");
    // Renewal: a new certificate and key in the same files.
    let (c2, k2) = pki.leaf("site-renewed", &["site.test", "127.0.0.1"]);
    std::fs::copy(&c2, &cert).unwrap();
    std::fs::copy(&k2, &key).unwrap();
    let renewed = der_of(&cert);
    assert_ne!(first, renewed);
    server.signal(libc::SIGHUP);
    server.wait_for_log("SIGHUP: loaded");
    assert_eq!(presented(&tls(server.addr, config.clone(), "site.test")), renewed);
    echo_again(&mut old, "the open connection is untouched");
    // A broken key file: the renewed certificate stays in use.
    std::fs::write(&key, "not a key").unwrap();
    server.signal(libc::SIGHUP);
    let log = server.wait_for_log("keeping the certificates in use");
    assert!(log.contains("no PEM private key"), "{log}");
    assert_eq!(presented(&tls(server.addr, config, "site.test")), renewed);
}

#[test]
fn plain_http_gets_400_and_other_bytes_are_closed() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("site", &["127.0.0.1"]);
    let server = start(&[(&cert, &key)], &[]);
    let r = common::http_exchange(server.addr, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
    assert!(r.ends_with("this port speaks TLS: use https:// or wss://\n"), "{r}");
    let r = common::http_exchange(server.addr, "\x00\x01\x02 noise");
    assert!(r.is_empty(), "{r:?}");
    // A TLS client that does not trust the server's certificate fails its
    // handshake; the server counts it and keeps serving.
    let stranger = Pki::new().client_config();
    let conn = rustls::ClientConnection::new(stranger, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, TcpStream::connect(server.addr).unwrap());
    let mut handshake = || -> std::io::Result<()> {
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(())
    };
    let e = handshake().expect_err("a certificate from an unknown CA was accepted");
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");
    drop(s);
    let mut ok = tls(server.addr, pki.client_config(), "127.0.0.1");
    echo(&mut ok, "still serving");
    drop(ok);
    // The noise and the refused handshake are counted as TLS failures (the plain request as a refusal).
    server.signal(libc::SIGTERM);
    let log = server.wait_for_log("shard stopped");
    let count = |k: &str| -> u64 {
        log.split(&format!("{k}="))
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    assert_eq!((count("tls_failures"), count("rejected")), (2, 1), "{log}");
}

#[test]
fn sessions_resume_from_a_ticket_on_any_shard() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("site", &["127.0.0.1"]);
    let server = start(&[(&cert, &key)], &["--shards", "2"]);
    let config = pki.client_config(); // keeps its session cache across connections
    let mut resumed = 0;
    let t0 = Instant::now();
    for i in 0..8 {
        let mut s = tls(server.addr, config.clone(), "127.0.0.1");
        if i > 0 && s.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed += 1;
        }
        // Reading the echo also reads the tickets sent after the handshake.
        echo(&mut s, "ticket please");
        assert!(t0.elapsed() < Duration::from_secs(20));
    }
    // With two shards, connections land on both: resuming on every one of
    // them means one ticketer is shared.
    assert_eq!(resumed, 7, "only {resumed} of 7 reconnections resumed");
}
