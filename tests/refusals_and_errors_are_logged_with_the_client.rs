//! At `RUST_LOG=debug` every refused handshake and every protocol error is
//! logged with the client's address, the status or close code, and why; a
//! shutdown that waits on clients says so once a second.

mod common;

use common::{http_exchange, RawClient, Server};
use ricochet::ws::frame::OpCode;
use std::time::Duration;

#[test]
fn refusals_name_the_client_the_status_and_the_reason() {
    let server = Server::start_debug(&[
        "--path",
        "/ws",
        "--allowed-origin",
        "https://ok.example",
        "--handshake-timeout",
        "300ms",
    ]);
    let cases = [
        (common::upgrade_request("/other"), "status=404", "no WebSocket endpoint at this path"),
        (common::upgrade_request("/ws"), "status=403", "origin not allowed"),
        ("POST /ws HTTP/1.1\r\nHost: a\r\n\r\n".to_string(), "status=405", "method POST not allowed"),
        ("\x16\x03\x01\x02\x00\x01\x00".to_string(), "status=400", "malformed HTTP request"),
    ];
    for (request, status, reason) in cases {
        let mut c = RawClient::connect(server.addr);
        let peer = c.stream.local_addr().unwrap().to_string();
        c.send_raw(request.as_bytes());
        c.read_to_end();
        let log = server.wait_for_log(&format!("peer={peer}"));
        let line = log.lines().find(|l| l.contains(&format!("peer={peer}"))).unwrap_or_else(|| panic!("{log}"));
        assert!(line.contains("handshake refused") && line.contains(status) && line.contains(reason), "{line}");
    }
    // A client that never finishes its request: 408, logged too.
    let mut c = RawClient::connect(server.addr);
    let peer = c.stream.local_addr().unwrap().to_string();
    c.send_raw(b"GET /ws HTTP/1.1\r\n");
    assert!(String::from_utf8_lossy(&c.read_to_end()).starts_with("HTTP/1.1 408 "));
    let log = server.wait_for_log(&format!("peer={peer}"));
    assert!(log.lines().any(|l| l.contains(&format!("peer={peer}")) && l.contains("status=408")), "{log}");
}

#[test]
fn protocol_errors_name_the_client_and_the_close_code() {
    let server = Server::start_debug(&[]);
    let mut c = RawClient::open(server.addr);
    let peer = c.stream.local_addr().unwrap().to_string();
    c.send_raw(&[0x81, 0x02, b'h', b'i']); // unmasked client frame: 1002
    assert_eq!(c.expect_close(), Some(1002));
    let log = server.wait_for_log(&format!("peer={peer}"));
    let line = log.lines().find(|l| l.contains(&format!("peer={peer}"))).unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("protocol error") && line.contains("close_code=1002") && line.contains("not masked"),
        "{line}"
    );
    // Health checks are not refusals and log nothing at debug.
    assert!(http_exchange(server.addr, "GET /healthz HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
}

#[test]
fn a_waiting_shutdown_reports_the_connections_still_closing() {
    let mut server = Server::start(&["--shutdown-grace", "3s"]);
    // A client that never answers the server's close keeps the shutdown waiting.
    let mut silent = RawClient::open(server.addr);
    silent.send(true, OpCode::Text, b"x");
    assert!(silent.next_frame().is_some());
    std::thread::sleep(Duration::from_millis(100));
    server.signal(libc::SIGTERM);
    let log = server.wait_for_log_lines("connections still closing", 2);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("connections still closing")).collect();
    assert!(lines.len() >= 2, "{log}");
    assert!(lines[0].contains("connections=1"), "{}", lines[0]);
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());
    let log = server.wait_for_log("grace period over");
    assert!(log.contains("grace period over, dropping connections"), "{log}");
}
