//! `--auth-tokens FILE`: a handshake must carry one of the tokens, in any of
//! the three places (`Authorization: Bearer`, `?access_token=`, a
//! `bearer.TOKEN` subprotocol entry beside a real one that `--subprotocol`
//! selects); otherwise 401 with `WWW-Authenticate: Bearer`. SIGHUP re-reads
//! the file: a new token works, a removed one is refused for new
//! connections while open ones stay. No token is ever logged.

mod common;

use common::{upgrade_request, RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::path::PathBuf;
use std::process::Command;

fn token_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tokens");
    std::fs::write(&f, text).unwrap();
    (dir, f)
}

/// Sends a handshake for `path` with `extra` header lines; returns the client and the response head.
fn handshake(server: &Server, path: &str, extra: &str) -> (RawClient, String) {
    let mut c = RawClient::connect(server.addr);
    let req = upgrade_request(path).replace("\r\n\r\n", &format!("\r\n{extra}\r\n"));
    c.send_raw(req.as_bytes());
    let head = c.read_http_head();
    (c, head)
}

fn echoes(c: &mut RawClient) -> bool {
    c.send(true, OpCode::Text, b"still here");
    c.next_event() == Some(Event::Message(OpCode::Text, b"still here".to_vec()))
}

#[test]
fn each_place_a_token_may_be_is_accepted() {
    let (_dir, f) = token_file("# clients\nalpha-token\n\nbeta+token/=\n");
    let server = Server::start_debug(&["--auth-tokens", f.to_str().unwrap(), "--subprotocol", "chat.v1,chat.v2"]);
    let (mut c, head) = handshake(&server, "/", "Authorization: Bearer alpha-token\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(echoes(&mut c));
    let (mut c, head) = handshake(&server, "/?room=1&access_token=beta%2Btoken%2F%3D", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(echoes(&mut c));
    // The token entry is never selected; the real one beside it is.
    let (mut c, head) = handshake(&server, "/", "Sec-WebSocket-Protocol: bearer.alpha-token, chat.v2, chat.v1\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("\r\nSec-WebSocket-Protocol: chat.v2\r\n"), "{head}");
    assert!(echoes(&mut c));
    // Each admission names its token by fingerprint: two tokens, two names.
    let log = server.wait_for_log_lines("admitted with a bearer token", 3);
    assert!(!log.contains("alpha-token") && !log.contains("beta"), "{log}");
    let names: std::collections::HashSet<&str> = log
        .lines()
        .filter(|l| l.contains("admitted with a bearer token"))
        .filter_map(|l| l.split("token=").nth(1))
        .collect();
    assert_eq!(names.len(), 2, "{log}");
}

#[test]
fn a_missing_or_wrong_token_is_401_and_logged_by_fingerprint_only() {
    let (_dir, f) = token_file("alpha-token\n");
    let server = Server::start_debug(&["--auth-tokens", f.to_str().unwrap()]);
    let (_, head) = handshake(&server, "/", "");
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
    assert!(head.contains("\r\nWWW-Authenticate: Bearer\r\n") && head.contains("Connection: close"), "{head}");
    let (_, head) = handshake(&server, "/?access_token=alpha-tokem", "Authorization: Basic YWxwaGE6dG9rZW4=\r\n");
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(head.contains("\r\nWWW-Authenticate: Bearer error=\"invalid_token\"\r\n"), "{head}");
    let (_, head) = handshake(&server, "/", "Sec-WebSocket-Protocol: bearer.ALPHA-TOKEN\r\n");
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let log = server.wait_for_log("bearer token not accepted (sha256 ");
    assert!(!log.contains("alpha-tokem") && !log.contains("ALPHA-TOKEN"), "{log}");
    // The health check needs no token (load balancers do not have one).
    let out = common::http_exchange(server.addr, "GET /healthz HTTP/1.0\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[test]
fn sighup_rereads_the_tokens_and_open_connections_stay() {
    let (_dir, f) = token_file("alpha-token\n");
    let server = Server::start(&["--auth-tokens", f.to_str().unwrap()]);
    let (mut open, head) = handshake(&server, "/", "Authorization: Bearer alpha-token\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    std::fs::write(&f, "gamma-token\n").unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("bearer tokens re-read");
    let (mut c, head) = handshake(&server, "/", "Authorization: Bearer gamma-token\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(echoes(&mut c));
    let (_, head) = handshake(&server, "/", "Authorization: Bearer alpha-token\r\n");
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(echoes(&mut open), "an open connection stays");
    // A file left without tokens keeps the ones in use.
    std::fs::write(&f, "# none\n").unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for_log("keeping the tokens in use");
    let (_, head) = handshake(&server, "/", "Authorization: Bearer gamma-token\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[test]
fn the_load_generator_sends_its_token() {
    let (_dir, f) = token_file("bench-token\n");
    let server = Server::start(&["--auth-tokens", f.to_str().unwrap()]);
    let bench = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
        cmd.args(["bench", &server.url(), "--connections", "2", "--duration", "300ms"]).args(extra);
        if server.is_tls() {
            cmd.arg("--ca").arg(common::tls::shared().0.ca_file());
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = bench(&["--token", "bench-token"]);
    assert!(ok && out.contains(" 0 failed connections"), "{out}");
    let (ok, out) = bench(&[]);
    assert!(!ok && !out.contains(" 0 failed connections"), "{out}");
}

#[test]
fn token_settings_that_cannot_work_stop_the_start() {
    let (_dir, empty) = token_file("# nobody yet\n");
    for (args, want) in [
        (vec!["serve", "--auth-tokens", "/nonexistent/tokens"], "/nonexistent/tokens"),
        (vec!["serve", "--auth-tokens", empty.to_str().unwrap()], "no token in it"),
        (vec!["serve", "--subprotocol", "bad name"], "subprotocol"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ricochet")).args(&args).env("RUST_LOG", "off").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.lines().count() == 1 && stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn headless_chromium_connects_with_a_token_and_is_refused_without() {
    let (_dir, f) = token_file("browser-token-1\n");
    let server = Server::start(&["--auth-tokens", f.to_str().unwrap(), "--subprotocol", "chat.v1"]);
    let out = Command::new(common::python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/chromium_tokens.py"))
        .arg(server.url())
        .arg("browser-token-1")
        .output()
        .expect("run python");
    common::assert_script_passed("Chromium", out, &server);
}
