//! `--proxy-protocol`: every connection starts with a PROXY header (v1 or
//! v2, TLVs skipped), read however it is split, before TLS or HTTP; its
//! address is the client's in the logs. A missing or malformed header closes
//! the connection without an answer and is counted; the handshake timeout
//! covers a header that never ends. Behind a real HAProxy (`send-proxy-v2`
//! and `send-proxy`), echoes are exact and the client's own address is seen.

mod common;

use common::admin::{sum, wait_for};
use common::haproxy::{wait_up, Haproxy};
use common::{over_tls, upgrade_request, RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use ricochet::ws::proxy::V2_SIGNATURE;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    format!("PROXY TCP4 {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes()
}

/// A v2 PROXY header for TCP over IPv4, with a TLV as an AWS NLB adds one.
fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else { panic!("IPv4 only") };
    let tlv = [0xEA, 0x00, 0x05, 0x01, b'v', b'p', b'c', b'e'];
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&((12 + tlv.len()) as u16).to_be_bytes());
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h.extend_from_slice(&tlv);
    h
}

fn echo(c: &mut RawClient, text: &str) {
    c.send_raw(upgrade_request("/").as_bytes());
    let head = c.read_http_head();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    c.send(true, OpCode::Text, text.as_bytes());
    assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, text.as_bytes().to_vec())));
}

/// A request that is refused (no upgrade), so the server logs the client's address.
fn refused(c: &mut RawClient) {
    c.send_raw(b"GET /no-upgrade HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(c.read_http_head().starts_with("HTTP/1.1 400 "));
}

#[test]
fn a_header_split_byte_by_byte_names_the_client_and_the_echo_follows() {
    let server = Server::start_debug(&["--proxy-protocol", "--metrics-listen", "127.0.0.1:0"]);
    let dst = server.addr;
    for (k, make) in [v1 as fn(SocketAddr, SocketAddr) -> Vec<u8>, v2].into_iter().enumerate() {
        let src: SocketAddr = format!("192.0.2.{}:{}", 7 + k, 50000 + k).parse().unwrap();
        let header = make(src, dst);
        // Byte by byte, then in one write with the request right behind it.
        let mut c = RawClient::connect_after(server.addr, &header, true);
        echo(&mut c, "after a header in single bytes");
        let mut c = RawClient::connect_after(server.addr, &header, false);
        echo(&mut c, "after a header in one write");
        let mut c = RawClient::connect_after(server.addr, &header, false);
        refused(&mut c);
        let log = server.wait_for_log(&format!("peer={src}"));
        assert!(log.lines().any(|l| l.contains("handshake refused") && l.contains(&format!("peer={src}"))), "{log}");
    }
    let admin = server.metrics.unwrap();
    let m = wait_for(admin, "six headers", |m| sum(m, "ricochet_proxy_headers_total", &["result=\"ok\""]) == 6.0);
    assert_eq!(sum(&m, "ricochet_proxy_headers_total", &["result=\"error\""]), 0.0);
}

#[test]
fn a_missing_or_malformed_header_closes_the_connection_unanswered() {
    let server = Server::start(&["--proxy-protocol", "--metrics-listen", "127.0.0.1:0", "--handshake-timeout", "1s"]);
    let mut closed = 0.0;
    for bytes in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 443\r\nGET / HTTP/1.1\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
        s.write_all(bytes).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(got.is_empty(), "answered {:?}", String::from_utf8_lossy(&got));
        closed += 1.0;
    }
    let m = wait_for(server.metrics.unwrap(), "three refused headers", |m| {
        sum(m, "ricochet_proxy_headers_total", &["result=\"error\""]) == closed
    });
    assert_eq!(sum(&m, "ricochet_proxy_headers_total", &["result=\"ok\""]), 0.0);
    // Half a header and then silence: the handshake timeout ends it.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    s.write_all(b"PROXY TCP4 192.0").unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(t0.elapsed() < Duration::from_secs(10), "not cut off by the handshake timeout");
    assert!(got.is_empty(), "answered {:?}", String::from_utf8_lossy(&got));
}

/// A connection to `to` from 127.0.0.2, so the client's address differs from HAProxy's own.
fn connect_from_127_0_0_2(to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

#[test]
fn haproxy_send_proxy_v2_and_v1_carry_the_clients_address() {
    for mode in ["send-proxy-v2", "send-proxy"] {
        let server = Server::start_debug(&["--proxy-protocol"]);
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        // The health check goes with a header too (check-send-proxy): without
        // one Ricochet would close it. TLS passes through HAProxy untouched;
        // its check then speaks TLS itself.
        let tls_check = if over_tls() { " check-ssl verify none" } else { "" };
        let cfg = format!(
            "global\n    stats socket {}\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend websocket\n    bind {front}\n    default_backend ricochet\n\
             backend ricochet\n    option httpchk GET /healthz\n    http-check expect status 200\n\
             \x20   server r1 {} {mode} check check-send-proxy inter 500ms rise 1{tls_check}\n",
            socket.display(),
            server.addr
        );
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let _proxy = Haproxy::start(&cfg_path);
        let stat = wait_up(&socket, "ricochet", "r1");
        assert!(stat.contains(",UP,") && stat.contains("L7OK"), "{mode}: health check with a header failed: {stat}");
        for k in 0..3 {
            let mut c = RawClient::over(connect_from_127_0_0_2(front));
            echo(&mut c, &format!("through haproxy {mode} #{k}"));
        }
        let mut c = RawClient::over(connect_from_127_0_0_2(front));
        refused(&mut c);
        let log = server.wait_for_log("peer=127.0.0.2:");
        assert!(
            log.lines().any(|l| l.contains("handshake refused") && l.contains("peer=127.0.0.2:")),
            "{mode}: the client's address was not seen:\n{log}"
        );
        assert!(!log.contains("PROXY header refused"), "{log}");
    }
}
