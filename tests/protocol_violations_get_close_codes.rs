//! Every RFC 6455 violation reaches a real client as the right close code,
//! and every malformed handshake as the right HTTP status.

mod common;

use common::{upgrade_request, RawClient, Server};
use ricochet::ws::client::encode_masked;
use ricochet::ws::frame::OpCode;

const KEY: [u8; 4] = [1, 2, 3, 4];

fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_masked(&mut v, fin, op, payload, KEY);
    v
}

fn with_first_byte(mut f: Vec<u8>, b0: u8) -> Vec<u8> {
    f[0] = b0;
    f
}

#[test]
fn each_violation_closes_with_its_code() {
    let server = Server::start(&["--max-message-size", "1000"]);
    let frag_then = |second: Vec<u8>| {
        let mut v = frame(false, OpCode::Text, b"a");
        v.extend(second);
        v
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", b"\x81\x02hi".to_vec(), 1002),
        ("RSV1 set", with_first_byte(frame(true, OpCode::Text, b"x"), 0xc1), 1002),
        ("RSV3 set", with_first_byte(frame(true, OpCode::Text, b"x"), 0x91), 1002),
        ("reserved opcode 3", with_first_byte(frame(true, OpCode::Text, b"x"), 0x83), 1002),
        ("reserved opcode 0xB", with_first_byte(frame(true, OpCode::Text, b"x"), 0x8b), 1002),
        ("ping over 125 bytes", frame(true, OpCode::Ping, &[0; 126]), 1002),
        ("fragmented ping", frame(false, OpCode::Ping, b"x"), 1002),
        ("continuation first", frame(true, OpCode::Continuation, b"x"), 1002),
        ("text inside fragmented", frag_then(frame(true, OpCode::Text, b"b")), 1002),
        ("64-bit length top bit", b"\x82\xff\x80\0\0\0\0\0\0\0\x01\x02\x03\x04".to_vec(), 1002),
        ("close 1-byte payload", frame(true, OpCode::Close, b"\x03"), 1002),
        ("close code 1005", frame(true, OpCode::Close, &1005u16.to_be_bytes()), 1002),
        ("close code 999", frame(true, OpCode::Close, &999u16.to_be_bytes()), 1002),
        ("close reason bad UTF-8", frame(true, OpCode::Close, b"\x03\xe8\xff"), 1007),
        ("text bad UTF-8", frame(true, OpCode::Text, b"\xce\xba\xed\xa0\x80"), 1007),
        ("text ends mid code point", frame(true, OpCode::Text, b"ok\xe2\x82"), 1007),
        ("frame over the limit", frame(true, OpCode::Binary, &[0; 1001]), 1009),
        (
            "message over the limit",
            {
                let mut v = frame(false, OpCode::Binary, &[0; 600]);
                v.extend(frame(true, OpCode::Continuation, &[0; 600]));
                v
            },
            1009,
        ),
    ];
    for (name, bytes, code) in cases {
        let mut c = RawClient::open(server.addr);
        c.send_raw(&bytes);
        let mut got = None;
        while let Some(ev) = c.next_event() {
            if let ricochet::ws::client::Event::Close(cc, _) = ev {
                got = cc;
                break;
            }
        }
        assert_eq!(got, Some(code), "{name}");
        // The server then closes the TCP connection itself.
        assert!(c.read_to_end().is_empty(), "{name}: bytes after close");
    }
}

#[test]
fn too_big_is_refused_from_the_header_before_the_payload_is_sent() {
    let server = Server::start(&["--max-message-size", "1000"]);
    let mut c = RawClient::open(server.addr);
    let f = frame(true, OpCode::Binary, &[0; 5000]);
    c.send_raw(&f[..8]); // header only
    assert_eq!(c.expect_close(), Some(1009));
}

#[test]
fn malformed_handshakes_get_their_status() {
    let server = Server::start(&["--path", "/ws", "--allowed-origin", "https://ok.example"]);
    let good = upgrade_request("/ws").replace("\r\n\r\n", "\r\nOrigin: https://ok.example\r\n\r\n");
    let cases: Vec<(&str, String, &str)> = vec![
        ("valid", good.clone(), "101"),
        ("POST", good.replacen("GET", "POST", 1), "405"),
        ("HTTP/1.0", good.replace("HTTP/1.1", "HTTP/1.0"), "400"),
        ("no Host", good.replace("Host: 127.0.0.1\r\n", ""), "400"),
        ("no Upgrade", good.replace("Upgrade: websocket\r\n", ""), "400"),
        ("no Connection upgrade", good.replace("Connection: Upgrade", "Connection: close"), "400"),
        ("version 8", good.replace("Version: 13", "Version: 8"), "426"),
        ("short key", good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), "400"),
        ("wrong path", good.replace("GET /ws", "GET /other"), "404"),
        ("wrong origin", good.replace("https://ok.example", "https://evil.example"), "403"),
        ("huge head", good.replace("\r\n\r\n", &format!("\r\nX-Pad: {}\r\n\r\n", "a".repeat(9000))), "431"),
        ("TLS ClientHello", String::from_utf8_lossy(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03").into(), "400"),
        ("health check", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".into(), "200"),
    ];
    for (name, req, status) in cases {
        let mut c = RawClient::connect(server.addr);
        c.send_raw(req.as_bytes());
        let head = c.read_http_head();
        let line = head.lines().next().unwrap_or("");
        assert!(line.starts_with(&format!("HTTP/1.1 {status} ")), "{name}: {line}");
        if status != "101" {
            assert!(head.contains("Connection: close\r\n"), "{name}: {head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name}: no Content-Length"));
            let body = c.read_to_end();
            assert_eq!(body.len(), len, "{name}");
            assert!(body.ends_with(b"\n") && !body[..len - 1].contains(&b'\n'), "{name}: one-line reason");
        }
        if status == "405" {
            assert!(head.contains("Allow: GET\r\n"));
        }
        if status == "426" {
            assert!(head.contains("Sec-WebSocket-Version: 13\r\n"));
        }
    }
}

#[test]
fn request_arriving_byte_by_byte_is_accepted() {
    let server = Server::start(&[]);
    let mut c = RawClient::connect(server.addr);
    for b in upgrade_request("/").as_bytes() {
        c.send_raw(&[*b]);
    }
    assert!(c.read_http_head().starts_with("HTTP/1.1 101 "));
    c.send(true, OpCode::Text, b"after a slow handshake");
    assert_eq!(
        c.next_event(),
        Some(ricochet::ws::client::Event::Message(OpCode::Text, b"after a slow handshake".to_vec()))
    );
}
