//! `GET` and `HEAD /healthz` answer `200` over HTTP/1.0 and 1.1, as load
//! balancers send them (HAProxy's `option httpchk`, keepalived's HTTP_GET
//! use HTTP/1.0), and a real HAProxy running the configuration the tuning
//! guide ships (`tuning/haproxy.cfg`) marks the server up and carries
//! WebSocket traffic to it.

mod common;

use common::haproxy::{wait_up, write_shipped, Haproxy};
use common::{http_exchange, Server};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[test]
fn get_and_head_over_http_1_0_and_1_1() {
    let server = Server::start(&["--path", "/ws"]);
    for version in ["HTTP/1.0", "HTTP/1.1"] {
        let get = http_exchange(server.addr, &format!("GET /healthz {version}\r\n\r\n"));
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.ends_with("\r\n\r\nok\n"), "{get}");
        let head = http_exchange(server.addr, &format!("HEAD /healthz {version}\r\nHost: a\r\n\r\n"));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 3\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    }
    // The upgrade itself stays HTTP/1.1 only; HEAD elsewhere is still 405.
    let r = http_exchange(server.addr, &common::upgrade_request("/ws").replace("HTTP/1.1", "HTTP/1.0"));
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = http_exchange(server.addr, "HEAD /ws HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn haproxy_with_the_guides_configuration_marks_the_server_up() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let front = free_port();
    // The shipped file with only its addresses changed (and an admin socket
    // for the test to read the check's verdict).
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/haproxy.cfg")).unwrap();
    assert!(shipped.contains("option httpchk GET /healthz"));
    let cfg_path = dir.path().join("haproxy.cfg");
    write_shipped(&shipped, front, &[server.addr], &socket, &cfg_path);
    let _proxy = Haproxy::start(&cfg_path);
    // Wait for a passed layer-7 check (L7OK) and the server UP.
    let stat = wait_up(&socket, "ricochet", "ricochet1");
    assert!(stat.contains(",UP,") && stat.contains("L7OK"), "HAProxy's check did not pass: {stat}");
    // And WebSocket traffic through it echoes.
    common::tokio_runtime().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{front}/")).await.unwrap();
        ws.send(Message::text("through haproxy")).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::text("through haproxy"));
    });
}
