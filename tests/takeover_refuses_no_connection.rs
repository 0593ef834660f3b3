//! Restarts that refuse no connection (`--takeover`): clients connect,
//! handshake, echo and close in a loop while the server is replaced five
//! times; not one connection is refused or reset, every echo is exact, and
//! every WebSocket ends with a close code (1000 from the client's close, or
//! 1001 from a draining server). The same loop across plain stop-and-start
//! restarts (the negative control) sees refusals, so the test can fail.

mod common;

use common::admin::{scrape, sum};
use common::restarts::through_five_restarts;
use common::{RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::time::Duration;

fn args<'a>(listen: &'a str, path: Option<&'a str>, backend: &'a str) -> Vec<&'a str> {
    let mut a = vec!["serve", "--listen", listen, "--shards", "2", "--no-pin", "--backend", backend];
    if let Some(p) = path {
        a.extend_from_slice(&["--takeover", p, "--metrics-listen", "127.0.0.1:0"]);
    }
    a
}

#[test]
fn five_takeovers_refuse_and_reset_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("takeover.sock");
    let path = path.to_str().unwrap();
    let backend = common::backend();
    let mut server = Server::start_raw(&args("127.0.0.1:0", Some(path), &backend));
    let addr = server.addr;
    let admin = server.metrics.expect("metrics on");
    assert_eq!(sum(&scrape(admin), "ricochet_listeners_inherited", &[]), 0.0);
    let tally = through_five_restarts(addr, |i| {
        // A WebSocket open on the old server across the takeover: its echo
        // comes back, then the old server's close, 1001.
        let mut held = RawClient::open(addr);
        held.send(true, OpCode::Binary, b"held across");
        assert_eq!(held.next_event(), Some(Event::Message(OpCode::Binary, b"held across".to_vec())));
        // The new server takes the same sockets (port 0: whatever the old one has).
        let next = Server::start_raw(&args("127.0.0.1:0", Some(path), &backend));
        assert_eq!(next.addr, addr, "takeover {i} listens elsewhere");
        assert_eq!(next.metrics, Some(admin), "takeover {i}: the admin listener moves too");
        assert_eq!(held.expect_close(), Some(1001), "takeover {i}: the held connection");
        held.send(true, OpCode::Close, &1001u16.to_be_bytes());
        let status = server.wait_exit(Duration::from_secs(15)).expect("the old server did not exit");
        assert!(status.success(), "the old server exited with {status}: {}", server.log());
        assert!(server.log().contains("draining"), "{}", server.log());
        server = next;
    });
    let line = tally.line();
    assert_eq!(tally.get(&tally.refused), 0, "{line}");
    assert_eq!(tally.get(&tally.reset), 0, "{line}");
    assert_eq!(tally.get(&tally.wrong), 0, "{line}");
    assert!(tally.get(&tally.sessions) >= 30, "too few sessions to mean anything: {line}");
    eprintln!("takeover: {line}");
    // Two shards' sockets and the admin listener came over each time.
    assert_eq!(sum(&scrape(admin), "ricochet_listeners_inherited", &[]), 3.0);
    // The last server still serves, and offers the sockets on.
    assert!(std::path::Path::new(path).exists());
    let mut c = RawClient::open(addr);
    c.send(true, OpCode::Text, b"after five takeovers");
    assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, b"after five takeovers".to_vec())));
}

/// A free port below the ephemeral range. While nothing listens on a port
/// in that range, a client's connect can be given the port itself as its
/// source and connect to itself (TCP simultaneous open), and the restarted
/// server then finds its port taken: what `ip_local_reserved_ports` in the
/// tuning guide prevents on a real host.
fn port_outside_the_ephemeral_range() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low: u16 = range.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(32768);
    let start = 10_000 + (std::process::id() % 5_000) as u16;
    (start..low)
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port below the ephemeral range")
}

#[test]
fn plain_stop_and_start_refuses_connections_the_negative_control() {
    let backend = common::backend();
    let listen = format!("127.0.0.1:{}", port_outside_the_ephemeral_range());
    let mut server = Server::start_raw(&args(&listen, None, &backend));
    let addr = server.addr;
    let tally = through_five_restarts(addr, |_| {
        server.signal(libc::SIGTERM);
        server.wait_exit(Duration::from_secs(15)).expect("the server did not exit");
        server = Server::start_raw(&args(&listen, None, &backend));
    });
    let line = tally.line();
    eprintln!("stop and start: {line}");
    assert!(tally.get(&tally.refused) + tally.get(&tally.reset) > 0, "no refusal across five plain restarts: {line}");
}

#[test]
fn sigusr2_starts_the_successor_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("takeover.sock");
    let path = path.to_str().unwrap();
    let backend = common::backend();
    let mut server = Server::start_raw(&args("127.0.0.1:0", Some(path), &backend));
    let mut held = RawClient::open(server.addr);
    server.signal(libc::SIGUSR2);
    // The old server hands over, echoes what it has, and closes with 1001.
    assert_eq!(held.expect_close(), Some(1001));
    held.send(true, OpCode::Close, &1001u16.to_be_bytes());
    let status = server.wait_exit(Duration::from_secs(15)).expect("the old server did not exit");
    assert!(status.success(), "{status}: {}", server.log());
    let log = server.log();
    let pid: i32 = log
        .lines()
        .find(|l| l.contains("started a new server to take over"))
        .and_then(|l| l.split("pid=").nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no successor logged:\n{log}"));
    let mut c = RawClient::open(server.addr);
    c.send(true, OpCode::Text, b"served by the successor");
    assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, b"served by the successor".to_vec())));
    drop(c);
    // SAFETY: a signal to the successor, a process this test caused to exist.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let t0 = std::time::Instant::now();
    while std::path::Path::new(path).exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!std::path::Path::new(path).exists(), "the successor left its socket file behind");
}
