//! Under systemd's `Type=notify`, the server tells the socket in
//! `$NOTIFY_SOCKET` (a path or an `@` abstract address) `READY=1` once every
//! shard listens, and `STOPPING=1` with `EXTEND_TIMEOUT_USEC` (the grace
//! period and a margin) when a shutdown starts. A real datagram socket.

mod common;

use common::{backend, Server};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::Command;
use std::time::Duration;

fn serve(notify_socket: &str) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--shards", "2", "--no-pin", "--backend", &backend()])
        .args(["--shutdown-grace", "3s"])
        .env("NOTIFY_SOCKET", notify_socket);
    Server::spawn(&mut cmd)
}

fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn ready_then_stopping(sock: &UnixDatagram, server: &mut Server) {
    let ready = next(sock);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains(&format!("STATUS=serving on {}", server.addr)), "{ready}");
    // Ready means listening: a connection is answered now.
    let out = common::http_exchange(server.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    server.signal(libc::SIGTERM);
    let stopping = next(sock);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    // 3 s of grace and 5 s of margin, in microseconds.
    assert!(stopping.lines().any(|l| l == "EXTEND_TIMEOUT_USEC=8000000"), "{stopping}");
    assert!(server.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

#[test]
fn a_path_socket_hears_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut server = serve(path.to_str().unwrap());
    ready_then_stopping(&sock, &mut server);
}

#[test]
fn an_abstract_socket_hears_them_too() {
    let name = format!("ricochet-test-notify-{}", std::process::id());
    let sock = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut server = serve(&format!("@{name}"));
    ready_then_stopping(&sock, &mut server);
}

/// Notifications received within `window`.
fn all_within(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let end = std::time::Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn the_watchdog_is_fed_while_the_shards_turn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--shards", "2", "--no-pin", "--backend", &backend()])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000");
    let server = Server::spawn(&mut cmd);
    // Idle shards still turn (their loops wake for it): pings every 200 ms.
    let got = all_within(&sock, Duration::from_millis(1500));
    let pings = got.iter().filter(|m| m.as_str() == "WATCHDOG=1").count();
    assert!(pings >= 3, "{got:?}\n{}", server.log());
    drop(server);
    // A watchdog meant for another process (WATCHDOG_PID) is not fed.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--no-pin", "--backend", &backend()])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .env("WATCHDOG_PID", "1");
    let _other = Server::spawn(&mut cmd);
    let got = all_within(&sock, Duration::from_millis(1000));
    assert!(got.iter().all(|m| m.as_str() != "WATCHDOG=1"), "{got:?}");
}
