//! The admin listener's counters follow what really happens on the public
//! port: echoes, closes by code, refusals by status and reason, protocol
//! errors, timeouts by kind, backpressure stalls, inflated messages, TLS
//! handshakes, rooms (open, members, published, deliveries). Every scrape after real traffic passes `promtool check
//! metrics` (Debian's `prometheus` package).

mod common;

use common::admin::{get, parse_response, scrape, sum, wait_for};
use common::{over_tls, RawClient, Server};
use ricochet::ws::client::{deflate_message, Event};
use ricochet::ws::frame::OpCode;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};

fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--metrics-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    assert!(server.metrics.is_some(), "no `metrics on` line");
    server
}

/// `promtool check metrics` on a scrape: the format and the naming rules.
fn promtool_passes(body: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/install-deps.sh installs it)");
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}");
}

#[test]
fn echoes_closes_refusals_and_errors_are_counted() {
    let server = start(&["--shards", "2"]);
    let admin = server.metrics.unwrap();
    let mut clients: Vec<RawClient> = (0..4).map(|_| RawClient::open(server.addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        for k in 0..3 {
            let text = format!("message {i}.{k}");
            c.send(true, OpCode::Text, text.as_bytes());
            assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, text.into_bytes())));
        }
    }
    let m = wait_for(admin, "four open, twelve echoes", |m| {
        sum(m, "ricochet_websockets_open", &[]) == 4.0 && sum(m, "ricochet_messages_sent_total", &[]) == 12.0
    });
    assert_eq!(sum(&m, "ricochet_messages_received_total", &[]), 12.0);
    assert_eq!(sum(&m, "ricochet_handshakes_total", &[]), 4.0);
    assert_eq!(sum(&m, "ricochet_connections_open", &[]), 4.0);
    assert!(sum(&m, "ricochet_connections_accepted_total", &[]) >= 4.0);
    assert!(sum(&m, "ricochet_received_bytes_total", &[]) > 12.0 * 15.0);
    assert!(sum(&m, "ricochet_sent_bytes_total", &[]) > 12.0 * 13.0);
    // Two shards, each its own series.
    assert!(
        m.contains_key("ricochet_connections_open{shard=\"0\"}")
            && m.contains_key("ricochet_connections_open{shard=\"1\"}")
    );

    for mut c in clients {
        c.send(true, OpCode::Close, &1000u16.to_be_bytes());
        assert_eq!(c.expect_close(), Some(1000));
    }
    // Not a WebSocket request: 400, reason not_upgrade.
    let mut plain = RawClient::connect(server.addr);
    plain.send_raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(plain.read_http_head().starts_with("HTTP/1.1 400 "));
    // A reserved opcode: 1002.
    let mut bad = RawClient::open(server.addr);
    bad.send_raw(&[0x83, 0x80, 1, 2, 3, 4]);
    assert_eq!(bad.expect_close(), Some(1002));

    let m = wait_for(admin, "closes, refusal and error", |m| {
        sum(m, "ricochet_close_frames_received_total", &["code=\"1000\""]) == 4.0
            && sum(m, "ricochet_protocol_errors_total", &["code=\"1002\""]) == 1.0
            && sum(m, "ricochet_websockets_open", &[]) == 0.0
    });
    assert_eq!(sum(&m, "ricochet_close_frames_sent_total", &["code=\"1000\""]), 4.0);
    assert_eq!(sum(&m, "ricochet_close_frames_sent_total", &["code=\"1002\""]), 1.0);
    assert_eq!(sum(&m, "ricochet_protocol_errors_total", &[]), 1.0);
    assert_eq!(sum(&m, "ricochet_handshakes_refused_total", &["status=\"400\"", "reason=\"not_upgrade\""]), 1.0);
    assert_eq!(sum(&m, "ricochet_handshakes_refused_total", &[]), 1.0);
    if over_tls() {
        // Six connections, each a full handshake (nothing to resume from).
        assert_eq!(sum(&m, "ricochet_tls_handshakes_total", &["result=\"full\""]), 6.0);
        assert_eq!(sum(&m, "ricochet_tls_handshakes_total", &["result=\"failed\""]), 0.0);
    } else {
        assert!(!m.keys().any(|k| k.starts_with("ricochet_tls_")));
    }
    if common::backend() == "uring" {
        assert!(sum(&m, "ricochet_uring_receive_buffers", &[]) > 0.0);
        assert!(m.contains_key("ricochet_uring_receive_starved_total{shard=\"1\"}"));
    }
    assert!(sum(&m, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(sum(&m, "process_open_fds", &[]) >= 4.0);

    // /stats.json carries the same figures.
    let j: serde_json::Value = serde_json::from_str(&get(admin, "/stats.json").body).unwrap();
    let total =
        |name: &str| j["metrics"][name].as_array().unwrap().iter().map(|s| s["value"].as_f64().unwrap()).sum::<f64>();
    assert_eq!(total("ricochet_messages_received_total"), 12.0);
    assert_eq!(total("ricochet_handshakes_refused_total"), 1.0);
    assert_eq!(j["public"][0]["addr"], server.addr.to_string());
    assert_eq!(j["public"][0]["tls"], over_tls());

    promtool_passes(&get(admin, "/metrics").body);
}

#[test]
fn timeouts_are_counted_by_kind() {
    let server = start(&["--handshake-timeout", "1s", "--idle-timeout", "1s"]);
    let admin = server.metrics.unwrap();
    // Sends nothing at all: the handshake (TLS or HTTP) times out.
    let silent = TcpStream::connect(server.addr).unwrap();
    // Answers nothing: pinged at half the idle timeout, closed at the whole,
    // and dropped when its close never comes.
    let mut idle = RawClient::open(server.addr);
    assert!(matches!(idle.next_event(), Some(Event::Ping(_))));
    assert_eq!(idle.next_event(), Some(Event::Close(Some(1000), b"idle timeout".to_vec())));
    let m = wait_for(admin, "handshake and idle timeouts", |m| {
        sum(m, "ricochet_timeouts_total", &["kind=\"handshake\""]) == 1.0
            && sum(m, "ricochet_timeouts_total", &["kind=\"idle\""]) == 1.0
    });
    assert_eq!(sum(&m, "ricochet_handshakes_refused_total", &["status=\"408\"", "reason=\"timeout\""]), 1.0);
    assert_eq!(sum(&m, "ricochet_close_frames_sent_total", &["code=\"1000\""]), 1.0);
    // Neither hangs up after its refusal or close: both are dropped at the
    // close timeout (5 s). Over TLS the silent one never finished its TLS
    // handshake, so no 408 could be sent: it was dropped at once.
    let lingering = if over_tls() { 1.0 } else { 2.0 };
    let t0 = std::time::Instant::now();
    loop {
        let m = scrape(admin);
        if sum(&m, "ricochet_timeouts_total", &["kind=\"close\""]) == lingering {
            assert_eq!(sum(&m, "ricochet_connections_open", &[]), 0.0);
            break;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(15), "no close timeout: {m:#?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop((silent, idle));
}

#[test]
fn a_client_that_does_not_read_is_counted_as_a_stall() {
    let server = start(&[]);
    let admin = server.metrics.unwrap();
    let mut client = RawClient::open(server.addr);
    let tcp = client.stream.tcp().try_clone().unwrap();
    // 32 MiB of echoes no one reads: the server's socket fills and it stops reading.
    let writer = std::thread::spawn(move || {
        let payload = vec![7u8; 256 * 1024];
        for _ in 0..128 {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client.send(true, OpCode::Binary, &payload)))
                .is_err()
            {
                return;
            }
        }
    });
    wait_for(admin, "a backpressure stall", |m| sum(m, "ricochet_backpressure_stalls_total", &[]) >= 1.0);
    let _ = tcp.shutdown(Shutdown::Both);
    let _ = writer.join();
}

/// A member of room `path` (`--reply room`).
fn member(addr: std::net::SocketAddr, path: &str) -> RawClient {
    let mut c = RawClient::connect(addr);
    c.send_raw(common::upgrade_request(path).as_bytes());
    let head = c.read_http_head();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    c
}

#[test]
fn rooms_members_publications_and_deliveries_are_counted() {
    let server = start(&["--shards", "2", "--reply", "room"]);
    let admin = server.metrics.unwrap();
    // Members of /a on both shards (the kernel spreads connections over
    // the shards' listeners by their addresses: more join until it did,
    // four at least) and one of /b.
    let mut a: Vec<RawClient> = (0..4).map(|_| member(server.addr, "/a")).collect();
    let mut b = member(server.addr, "/b");
    let mut m;
    loop {
        let n = a.len() as f64;
        m = wait_for(admin, "two rooms, and every member", |m| {
            sum(m, "ricochet_rooms_open", &[]) == 2.0 && sum(m, "ricochet_room_members", &[]) == n + 1.0
        });
        let on = |shard: &str| sum(&m, "ricochet_room_members", &[shard]);
        if on("shard=\"0\"") >= 1.0 && on("shard=\"1\"") >= 1.0 {
            break;
        }
        assert!(a.len() < 16, "16 members, all on one shard: {m:#?}");
        a.push(member(server.addr, "/a"));
    }
    // Each member of /a publishes once: n messages, n² deliveries; /b's one
    // message reaches its one member.
    let n = a.len();
    for (i, c) in a.iter_mut().enumerate() {
        c.send(true, OpCode::Text, format!("from {i}").as_bytes());
    }
    b.send(true, OpCode::Text, b"alone");
    for c in a.iter_mut() {
        for _ in 0..n {
            assert!(matches!(c.next_event(), Some(Event::Message(OpCode::Text, _))));
        }
    }
    assert_eq!(b.next_event(), Some(Event::Message(OpCode::Text, b"alone".to_vec())));
    let m = wait_for(admin, "every message published and delivered", |m| {
        sum(m, "ricochet_room_messages_published_total", &[]) == (n + 1) as f64
            && sum(m, "ricochet_room_deliveries_total", &[]) == (n * n + 1) as f64
    });
    assert_eq!(sum(&m, "ricochet_room_drops_total", &[]), 0.0);
    assert_eq!(sum(&m, "ricochet_room_slow_closes_total", &[]), 0.0);
    promtool_passes(&get(admin, "/metrics").body);
    // Everyone leaves: no room is open and no member is left.
    for mut c in a.into_iter().chain([b]) {
        c.send(true, OpCode::Close, &1000u16.to_be_bytes());
        assert_eq!(c.expect_close(), Some(1000));
    }
    wait_for(admin, "no room open", |m| {
        sum(m, "ricochet_rooms_open", &[]) == 0.0 && sum(m, "ricochet_room_members", &[]) == 0.0
    });
}

#[test]
fn compressed_messages_are_counted_as_inflated() {
    let server = start(&["--permessage-deflate"]);
    let admin = server.metrics.unwrap();
    let (mut c, _) = RawClient::open_with_extensions(server.addr, "permessage-deflate");
    for k in 0..3 {
        let text = format!("compressed {k} ").repeat(20);
        c.send_compressed(true, OpCode::Text, &deflate_message(text.as_bytes()));
        assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, text.into_bytes())));
    }
    let m = wait_for(admin, "three inflated", |m| sum(m, "ricochet_deflate_messages_inflated_total", &[]) == 3.0);
    assert_eq!(sum(&m, "ricochet_deflate_inflaters_in_use", &[]), 0.0);
}

#[test]
fn the_admin_listener_speaks_plain_http_with_keep_alive() {
    let server = start(&[]);
    let admin = server.metrics.unwrap();
    let h = get(admin, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    let metrics = get(admin, "/metrics");
    assert!(metrics.head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"), "{}", metrics.head);
    assert_eq!(get(admin, "/nothing").status, 404);

    // Two requests on one connection (Prometheus keeps its connection), then a HEAD.
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches("ok\n").count() < 2 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after: {seen}");
        seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    s.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    let head = parse_response(&rest);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty() && head.head.contains("Content-Length: "), "{rest}");

    // Only GET and HEAD.
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert_eq!(parse_response(&text).status, 405, "{text}");

    // The status page stands alone: nothing fetched from elsewhere.
    let page = get(admin, "/");
    assert_eq!(page.status, 200);
    assert!(page.head.contains("text/html"));
    for outside in ["src=\"http", "href=\"http", "@import", "url(http", "src=\"//", "href=\"//"] {
        assert!(!page.body.contains(outside), "the page loads {outside}…");
    }
}
