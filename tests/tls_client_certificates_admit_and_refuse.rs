//! `--tls-client-ca`: TLS listeners admit a client whose certificate chains
//! to that CA (tokio-tungstenite with a rustls client configuration presents
//! it) and refuse, in the TLS handshake, one from another CA and one without
//! any; `--tls-client-auth optional` admits a client without one. The
//! subject is logged at debug. Both backends (RICOCHET_TEST_BACKEND).

mod common;

use common::tls::{shared, Pki};
use common::{backend, tokio_runtime, Server};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A TLS-only server whose clients must (or, if `optional`, may) present a certificate from `client_ca`.
fn server(client_ca: &Pki, optional: bool) -> Server {
    let (_, cert, key) = shared();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--shards", "1", "--no-pin", "--backend", &backend(), "--tls-listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .arg("--tls-client-ca")
        .arg(client_ca.ca_file());
    if optional {
        cmd.args(["--tls-client-auth", "optional"]);
    }
    Server::spawn_logging(&mut cmd, "debug")
}

/// tokio-tungstenite over rustls with `config`: an echo comes back.
fn echoes(server: &Server, config: Arc<rustls::ClientConfig>) -> Result<(), String> {
    tokio_runtime().block_on(async {
        let url = format!("wss://{}/", server.addr);
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            &url,
            None,
            true,
            Some(tokio_tungstenite::Connector::Rustls(config)),
        );
        let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        ws.send(Message::text("who goes there")).await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "who goes there" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
}

/// A blocking client with `config`: sends the upgrade request and reads
/// what comes back; returns it and the error that ended the reading (a TLS
/// alert from the server, when it refuses the certificate).
fn upgrade_answer(server: &Server, config: Arc<rustls::ClientConfig>) -> (String, String) {
    let conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = std::net::TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let _ = tls.write_all(common::upgrade_request("/").as_bytes());
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut ended = String::from("end of stream");
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Err(e) => {
                ended = e.to_string();
                break;
            }
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), ended)
}

#[test]
fn a_certificate_from_the_client_ca_is_admitted_and_logged() {
    let clients = Pki::new();
    let server = server(&clients, false);
    let ours = shared().0.client_config_with(Some(clients.client_cert("load-generator-7")));
    echoes(&server, ours).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let log = server.wait_for_log("TLS client certificate");
    assert!(log.contains("CN=load-generator-7"), "{log}");
}

#[test]
fn another_ca_or_no_certificate_is_refused_in_the_tls_handshake() {
    let clients = Pki::new();
    let strangers = Pki::new();
    let server = server(&clients, false);
    let theirs = shared().0.client_config_with(Some(strangers.client_cert("intruder")));
    assert!(echoes(&server, theirs.clone()).is_err());
    // Refused with an alert, not a silent close (and the shard survives the
    // bytes that follow the refused certificate: it once panicked in rustls).
    let (answer, ended) = upgrade_answer(&server, theirs);
    assert!(!answer.contains("101") && ended.contains("received fatal alert"), "{answer:?} {ended}");
    let none = shared().0.client_config_with(None);
    assert!(echoes(&server, none.clone()).is_err());
    let (answer, ended) = upgrade_answer(&server, none);
    assert!(!answer.contains("101") && ended.contains("CertificateRequired"), "{answer:?} {ended}");
    // The server is still there for a good client.
    let ours = shared().0.client_config_with(Some(clients.client_cert("after")));
    echoes(&server, ours).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
}

#[test]
fn optional_admits_a_client_without_a_certificate_but_not_a_bad_one() {
    let clients = Pki::new();
    let strangers = Pki::new();
    let server = server(&clients, true);
    echoes(&server, shared().0.client_config_with(None)).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    echoes(&server, shared().0.client_config_with(Some(clients.client_cert("good")))).unwrap();
    let theirs = shared().0.client_config_with(Some(strangers.client_cert("intruder")));
    assert!(echoes(&server, theirs).is_err());
}

#[test]
fn the_load_generator_presents_a_certificate_with_cert_and_key() {
    let clients = Pki::new();
    let server = server(&clients, false);
    let (cert, key) = clients.client_cert_files("bench");
    let bench = |extra: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
            .args(["bench", &format!("wss://localhost:{}/", server.addr.port()), "--connections", "2"])
            .args(["--duration", "300ms", "--ca"])
            .arg(shared().0.ca_file())
            .args(extra)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = bench(&["--cert".as_ref(), cert.as_os_str(), "--key".as_ref(), key.as_os_str()]);
    assert!(ok && out.contains(" 0 failed connections"), "{out}\n{}", server.log());
    let (ok, out) = bench(&[]);
    assert!(!ok && !out.contains(" 0 failed connections"), "{out}");
}

#[test]
fn client_ca_settings_that_cannot_work_stop_the_start() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ricochet")).args(args).env("RUST_LOG", "off").output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (_, cert, key) = shared();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls = ["serve", "--tls-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["serve", "--tls-client-ca", cert], "tls-client-ca"),
        ([&tls[..], &["--tls-client-auth", "optional"]].concat(), "tls-client-auth"),
        ([&tls[..], &["--tls-client-ca", cert, "--tls-client-auth", "maybe"]].concat(), "tls-client-auth"),
        ([&tls[..], &["--tls-client-ca", "/nonexistent/ca.pem"]].concat(), "/nonexistent/ca.pem"),
        ([&tls[..], &["--tls-client-ca", key]].concat(), "no PEM certificate"),
    ];
    for (args, want) in cases {
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
