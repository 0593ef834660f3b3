//! `--max-connections-per-ip`: clients from different loopback addresses
//! (127.0.0.2, 127.0.0.3: all of 127.0.0.0/8 is loopback) each get their own
//! limit; beyond it a handshake gets 429 with Retry-After, a one-line reason
//! and `Connection: close`; a closed connection frees its place; as many
//! more may be in their handshake, and a connection beyond those is closed
//! unanswered at accept; under `--proxy-protocol` the address counted is the
//! header's.

mod common;

use common::admin::{sum, wait_for};
use common::{upgrade_request, RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

/// A handshake from `from`: the client, open, or the refusal's head and body.
fn handshake(c: &mut RawClient) -> Result<(), String> {
    c.send_raw(upgrade_request("/").as_bytes());
    let head = c.read_http_head();
    if head.starts_with("HTTP/1.1 101 ") {
        return Ok(());
    }
    let body = String::from_utf8_lossy(&c.read_to_end()).into_owned();
    Err(format!("{head}{body}"))
}

fn open_from(from: &str, to: SocketAddr) -> Result<RawClient, String> {
    let mut c = RawClient::over(connect_from(from, to));
    handshake(&mut c).map(|_| c)
}

/// A client from `from` once one is admitted, trying for up to 2 s (a place
/// is given back when the server has handled the close, a moment after the
/// client sees it).
fn open_soon(from: &str, to: SocketAddr) -> Option<RawClient> {
    (0..100).find_map(|_| {
        let c = open_from(from, to).ok();
        if c.is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    })
}

/// Whether the server closed `s` without sending a byte (end of stream or a
/// reset) within 5 s; a connection it keeps reads nothing until then.
fn closed_unanswered(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

fn echo(c: &mut RawClient, text: &str) {
    c.send(true, OpCode::Text, text.as_bytes());
    assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, text.as_bytes().to_vec())));
}

#[test]
fn each_address_has_its_own_limit_and_a_close_frees_a_place() {
    let server = Server::start(&["--max-connections-per-ip", "2", "--metrics-listen", "127.0.0.1:0", "--shards", "2"]);
    let mut a1 = open_from("127.0.0.2", server.addr).unwrap();
    let mut a2 = open_from("127.0.0.2", server.addr).unwrap();
    let refusal = open_from("127.0.0.2", server.addr).err().expect("a third from 127.0.0.2 was admitted");
    assert!(refusal.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{refusal}");
    assert!(refusal.contains("\r\nRetry-After: 5\r\n") && refusal.contains("\r\nConnection: close\r\n"), "{refusal}");
    let body = refusal.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(body, "too many connections from your address (at most 2), try again later\n");
    // Another address is unaffected, and the first two still echo.
    let mut b1 = open_from("127.0.0.3", server.addr).unwrap();
    let _b2 = open_from("127.0.0.3", server.addr).unwrap();
    echo(&mut a1, "a1");
    echo(&mut a2, "a2");
    echo(&mut b1, "b1");
    // A close gives the place back.
    a1.send(true, OpCode::Close, &1000u16.to_be_bytes());
    assert_eq!(a1.expect_close(), Some(1000));
    let mut again = open_soon("127.0.0.2", server.addr).expect("the closed connection's place was not freed");
    echo(&mut again, "again");
    let m = wait_for(server.metrics.unwrap(), "the refusal counted", |m| {
        sum(m, "ricochet_handshakes_refused_total", &["status=\"429\"", "reason=\"too_many_from_address\""]) >= 1.0
    });
    assert_eq!(sum(&m, "ricochet_websockets_open", &[]), 4.0);
}

#[test]
fn connections_that_send_nothing_hold_no_more_than_their_places() {
    let server = Server::start(&["--max-connections-per-ip", "2", "--metrics-listen", "127.0.0.1:0", "--shards", "2"]);
    let metrics = server.metrics.unwrap();
    // Two connections from 127.0.0.2 that send nothing take its two handshake places.
    let silent: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.2", server.addr)).collect();
    wait_for(metrics, "both held", |m| sum(m, "ricochet_connections_open", &[]) >= 2.0);
    let mut third = connect_from("127.0.0.2", server.addr);
    assert!(closed_unanswered(&mut third), "a third connection in its handshake from 127.0.0.2 was kept");
    // Another address is unaffected.
    let mut b = open_from("127.0.0.3", server.addr).unwrap();
    echo(&mut b, "b");
    // The two kept still upgrade and echo; upgrading gives their handshake places back.
    let mut held: Vec<RawClient> = silent
        .into_iter()
        .map(|s| {
            let mut c = RawClient::over(s);
            handshake(&mut c).expect("a connection kept in its handshake upgrades");
            c
        })
        .collect();
    for c in &mut held {
        echo(c, "held");
    }
    // Two upgraded, none in a handshake: the next one is kept, and its
    // handshake meets the upgrade limit (429), not the handshake limit.
    let refusal = open_from("127.0.0.2", server.addr).err().expect("a third upgrade from 127.0.0.2");
    assert!(refusal.starts_with("HTTP/1.1 429 "), "{refusal}");
    let m = wait_for(metrics, "the 429 counted", |m| {
        sum(m, "ricochet_handshakes_refused_total", &["reason=\"too_many_from_address\""]) >= 1.0
    });
    assert_eq!(sum(&m, "ricochet_connections_refused_total", &[]), 1.0);
    assert_eq!(sum(&m, "ricochet_websockets_open", &[]), 3.0);
}

#[test]
fn a_handshake_that_times_out_gives_its_place_back() {
    let server = Server::start(&["--max-connections-per-ip", "1", "--handshake-timeout", "300ms"]);
    let mut silent = connect_from("127.0.0.2", server.addr);
    // Answered (408 on a plain listener, nothing over TLS) and closed by the timeout.
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let mut admitted =
        open_soon("127.0.0.2", server.addr).expect("the timed-out handshake kept its address's only place");
    echo(&mut admitted, "after");
}

#[test]
fn behind_a_balancer_the_header_address_is_the_one_counted() {
    let server =
        Server::start(&["--max-connections-per-ip", "1", "--proxy-protocol", "--metrics-listen", "127.0.0.1:0"]);
    let metrics = server.metrics.unwrap();
    let header = |src: &str| format!("PROXY TCP4 {src} 10.0.0.1 40000 443\r\n").into_bytes();
    // All from 127.0.0.1 (the balancer), for two different clients.
    let mut x = RawClient::connect_after(server.addr, &header("192.0.2.10"), false);
    handshake(&mut x).unwrap();
    let mut y = RawClient::connect_after(server.addr, &header("192.0.2.11"), false);
    handshake(&mut y).unwrap();
    let mut x2 = RawClient::connect_after(server.addr, &header("192.0.2.10"), false);
    let refusal = handshake(&mut x2).unwrap_err();
    assert!(refusal.starts_with("HTTP/1.1 429 "), "{refusal}");
    echo(&mut x, "x");
    echo(&mut y, "y");
    // A client that sends its header and then nothing holds its one
    // handshake place; the next from it is closed right after its header.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent.write_all(&header("192.0.2.20")).unwrap();
    wait_for(metrics, "the header read", |m| sum(m, "ricochet_proxy_headers_total", &["result=\"ok\""]) >= 4.0);
    let mut next = TcpStream::connect(server.addr).unwrap();
    next.write_all(&header("192.0.2.20")).unwrap();
    assert!(closed_unanswered(&mut next), "a second handshake from 192.0.2.20 was kept");
    let mut c = RawClient::over(silent);
    handshake(&mut c).expect("the connection kept in its handshake upgrades");
    echo(&mut c, "kept");
    let m = wait_for(metrics, "the close counted", |m| sum(m, "ricochet_connections_refused_total", &[]) >= 1.0);
    assert_eq!(sum(&m, "ricochet_connections_refused_total", &[]), 1.0);
}
