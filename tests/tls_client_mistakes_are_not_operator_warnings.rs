//! A TLS client's mistake is not the operator's warning (#24): rustls logs
//! an IP address sent as SNI at WARN, and testssl drew 448 such lines from
//! a server at the default level. Its records now come out at debug, beside
//! Ricochet's own TLS lines; at the default level, nothing.

mod common;

use common::Server;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `openssl s_client` (it sends the IP address as SNI when told to) against `addr`.
fn s_client_with_ip_sni(addr: std::net::SocketAddr) {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-servername", "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl (make deps installs it)");
    assert!(String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE"), "no handshake");
}

fn start(level: &str) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--shards", "1", "--no-pin", "--backend", &common::backend()]);
    cmd.args(["--tls-listen", "127.0.0.1:0", "--tls-self-signed"]);
    Server::spawn_logging(&mut cmd, level)
}

#[test]
fn an_ip_address_as_sni_is_no_warning() {
    let server = start("info");
    s_client_with_ip_sni(server.addr);
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log();
    assert!(!log.contains("SNI"), "{log}");
    assert!(!log.lines().any(|l| l.contains("WARN")), "{log}");
}

#[test]
fn rustls_records_are_there_at_debug() {
    let server = start("debug");
    s_client_with_ip_sni(server.addr);
    let log = server.wait_for_log("Illegal SNI");
    let line = log.lines().find(|l| l.contains("Illegal SNI")).expect("the rustls record");
    assert!(line.contains("DEBUG") && line.contains("rustls"), "{line}");
}
