//! Slow handshakes get 408 and are closed; silent connections get a
//! keepalive ping at half the idle timeout and close 1000 at the end of it;
//! a client that never answers the close is dropped.

mod common;

use common::{RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::time::{Duration, Instant};

#[test]
fn slow_handshake_gets_408_and_is_closed() {
    let server = Server::start(&["--handshake-timeout", "300ms"]);
    let mut c = RawClient::connect(server.addr);
    c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n"); // never finished
    let t0 = Instant::now();
    let head = c.read_http_head();
    assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
    assert!(t0.elapsed() >= Duration::from_millis(200));
    c.read_to_end();
}

#[test]
fn silent_client_is_pinged_then_closed_with_1000() {
    let server = Server::start(&["--idle-timeout", "600ms"]);
    let mut c = RawClient::open(server.addr);
    assert_eq!(c.next_event(), Some(Event::Ping(Vec::new())));
    assert_eq!(c.expect_close(), Some(1000));
    c.send(true, OpCode::Close, &1000u16.to_be_bytes());
    assert!(c.read_to_end().is_empty());
}

#[test]
fn answering_pings_keeps_a_connection_open() {
    let server = Server::start(&["--idle-timeout", "400ms"]);
    let mut c = RawClient::open(server.addr);
    for _ in 0..4 {
        assert_eq!(c.next_event(), Some(Event::Ping(Vec::new())));
        c.send(true, OpCode::Pong, b"");
    }
    c.send(true, OpCode::Text, b"still here");
    let mut got = c.next_event();
    while got == Some(Event::Ping(Vec::new())) {
        got = c.next_event();
    }
    assert_eq!(got, Some(Event::Message(OpCode::Text, b"still here".to_vec())));
}

#[test]
fn idle_timeout_zero_disables_it() {
    let server = Server::start(&["--idle-timeout", "0"]);
    let mut c = RawClient::open(server.addr);
    c.stream.tcp().set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let mut b = [0u8; 1];
    let r = std::io::Read::read(&mut c.stream, &mut b);
    assert!(matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock), "{r:?}");
}
