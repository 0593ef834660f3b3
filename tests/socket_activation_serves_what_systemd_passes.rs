//! systemd socket activation: started by `systemd-socket-activate` (from
//! Debian's systemd package; it passes `LISTEN_FDS`, `LISTEN_PID` and
//! `LISTEN_FDNAMES` exactly as systemd does) with no `--listen`, Ricochet
//! serves on the passed socket and opens no listener of its own, and its
//! shards share the socket's connections. And a
//! restart loop like `systemctl restart` under a `ricochet.socket` unit (the
//! socket held across stop and start by the service manager, here by the
//! test itself, passing it as systemd does): no connection refused or reset.

mod common;

use common::restarts::through_five_restarts;
use common::{backend, upgrade_request, RawClient};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The local ports of the listening TCP sockets `pid` holds.
fn listening_ports(pid: u32) -> Vec<u16> {
    let mut ports: Vec<u16> = common::listeners::listening(pid).into_iter().map(|(_, port)| port).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn echo_once(addr: SocketAddr, text: &str) {
    let mut c = RawClient::open(addr);
    c.send(true, OpCode::Text, text.as_bytes());
    assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, text.as_bytes().to_vec())));
}

#[test]
fn started_by_systemd_socket_activate_it_serves_the_passed_socket_only() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new("systemd-socket-activate")
        .args(["-l", &addr.to_string(), "--fdname=ws", "-E", "RUST_LOG=info"])
        .arg(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--shards", "2", "--no-pin", "--backend", &backend(), "--metrics-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate (Debian's systemd package)");
    // It listens at once and starts the server at the first connection,
    // which waits in the passed socket's queue meanwhile.
    let t0 = Instant::now();
    let first = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(_) if t0.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("systemd-socket-activate never listened: {e}"),
        }
    };
    let mut c = RawClient::over(first);
    c.send_raw(upgrade_request("/").as_bytes());
    assert!(c.read_http_head().starts_with("HTTP/1.1 101 "));
    c.send(true, OpCode::Text, b"activated");
    assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, b"activated".to_vec())));
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    lines.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), format!("listening on {addr}"), "the passed socket, not the default 0.0.0.0:8080");
    let mut metrics = String::new();
    lines.read_line(&mut metrics).unwrap();
    let admin: SocketAddr = metrics.trim().strip_prefix("metrics on ").unwrap().parse().unwrap();
    // Both shards serve it; the only listeners are the passed one and the
    // admin listener asked for.
    for i in 0..8 {
        echo_once(addr, &format!("client {i}"));
    }
    assert_eq!(listening_ports(child.id()), {
        let mut p = vec![port, admin.port()];
        p.sort_unstable();
        p
    });
    // The shards take turns at the one shared queue: on io_uring a shard
    // that kept a multishot accept armed on it took every connection.
    for _ in 0..200 {
        let out = common::http_exchange(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    let metrics = common::http_exchange(admin, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let per_shard: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("ricochet_connections_accepted_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(per_shard.len(), 2, "{metrics}");
    // A share, not a half: which shard wakes first is the scheduler's call,
    // and under a busy test run one took 172 of 209. The bug this guards
    // against gave one shard every connection.
    assert!(per_shard.iter().all(|&n| n >= 10.0), "each shard takes a share of 208 connections: {per_shard:?}");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// `ricochet serve` given `socket` as systemd gives it: descriptor 3,
/// `LISTEN_FDS=1`, `LISTEN_FDNAMES=ws`, and `LISTEN_PID` its own pid (set by
/// the shell it is exec'd from, so the pid is the server's).
fn start_with(socket: &TcpListener, backend: &str) -> Child {
    let fd = socket.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "export LISTEN_PID=$$; exec \"$@\"", "sh", env!("CARGO_BIN_EXE_ricochet")])
        .args(["serve", "--shards", "2", "--no-pin", "--backend", backend])
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "ws")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: dup2 is async-signal-safe; the child owns its copy at 3.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 clears close-on-exec on the copy; a socket already at 3 needs it cleared.
            let r = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert!(ready.starts_with("listening on"), "{ready}");
    child
}

#[test]
fn restarts_under_a_held_socket_refuse_and_reset_nothing() {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let backend = backend();
    let mut server = start_with(&socket, &backend);
    let tally = through_five_restarts(addr, |_| {
        // `systemctl restart`: stop (SIGTERM, drain, exit), then start.
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
        assert!(server.wait().unwrap().success());
        server = start_with(&socket, &backend);
    });
    let line = tally.line();
    eprintln!("socket activation restarts: {line}");
    assert_eq!(tally.get(&tally.refused) + tally.get(&tally.reset) + tally.get(&tally.wrong), 0, "{line}");
    assert!(tally.get(&tally.sessions) >= 30, "too few sessions to mean anything: {line}");
    let _ = server.kill();
    let _ = server.wait();
}
