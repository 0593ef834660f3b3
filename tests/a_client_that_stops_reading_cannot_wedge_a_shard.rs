//! Clients that push large messages and never read must not take a shard
//! down once their idle timeout passes (issue #23: a committed binary echo
//! stalled by backpressure re-armed its timer in the past, and the shard spun
//! on it at 100% CPU, deaf to new clients and to SIGTERM).
//!
//! Each test starts a one-shard server with a 1 s idle timeout, lets one or
//! fifty clients (4 KiB receive buffers) write until TCP holds them back,
//! and waits past the idle timeout. Then a fresh client must echo within a
//! second, the server must use under 20% of a core over the next 3 s (read
//! from /proc), the stuck clients must be gone and counted as idle timeouts,
//! and SIGTERM must end the process within its grace period. `make test` runs
//! it on both backends, plain and over TLS.

mod common;

use common::admin::{sum, wait_for};
use common::{upgrade_request, RawClient, Server};
use ricochet::ws::client::{deflate_message, encode_masked, Event};
use ricochet::ws::frame::OpCode;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Each stuck client's message: large enough that one echo outgrows every buffer.
const MESSAGE: usize = 1 << 20;
const IDLE: &str = "1s";
const GRACE: Duration = Duration::from_secs(3);
/// The most CPU the server may use over [`QUIET`] once the stuck clients
/// passed their idle timeout: 20% of one core.
const QUIET: Duration = Duration::from_secs(3);
const MAX_TICKS: u64 = 60;

#[derive(Clone, Copy, Debug)]
struct Case {
    clients: usize,
    text: bool,
    deflate: bool,
    /// `--max-message-rate`, if any.
    rate: Option<u32>,
}

/// User plus system CPU time of `pid` so far, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A client with a 4 KiB receive buffer that upgraded (offering
/// permessage-deflate if `deflate`) and has read nothing since.
fn stuck_client(addr: SocketAddr, deflate: bool) -> RawClient {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut c = RawClient::over(TcpStream::from(sock));
    let mut req = upgrade_request("/");
    if deflate {
        req = req.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
    }
    c.send_raw(req.as_bytes());
    let head = c.read_http_head();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(deflate, head.contains("permessage-deflate"), "{head}");
    c
}

/// One message of the case as a masked client frame: text or binary,
/// compressed (incompressible bytes, so the echo stays large) if `deflate`.
fn message_frame(case: Case) -> Vec<u8> {
    // Random bytes (letters for text): compressed, they stay nearly as
    // large, so the echo backs up as fast as without compression.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut payload: Vec<u8> = (0..MESSAGE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if case.text {
                b'a' + (x % 26) as u8
            } else {
                x as u8
            }
        })
        .collect();
    if case.deflate {
        payload = deflate_message(&payload);
    }
    let mut f = Vec::with_capacity(payload.len() + 14);
    let op = if case.text { OpCode::Text } else { OpCode::Binary };
    encode_masked(&mut f, true, op, &payload, [0x11, 0x22, 0x33, 0x44]);
    if case.deflate {
        f[0] |= ricochet::ws::frame::RSV1_BIT;
    }
    f
}

/// Writes messages until TCP holds the client back (a write blocks for half
/// a second); returns the client, still open and still not reading.
fn push_until_held(mut c: RawClient, frame: &[u8]) -> RawClient {
    c.stream.tcp().set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if c.stream.write_all(frame).is_err() {
            return c;
        }
    }
    panic!("the server took 20 s of writes from a client that never reads");
}

/// Starts the server for `case` and leaves its stuck clients held back.
fn start_stuck(case: Case, extra: &[&str]) -> (Server, SocketAddr, Vec<RawClient>) {
    let rate = case.rate.map(|r| r.to_string());
    let grace = format!("{}s", GRACE.as_secs());
    let mut args = vec!["--idle-timeout", IDLE, "--shutdown-grace", &grace, "--metrics-listen", "127.0.0.1:0"];
    if case.deflate {
        args.push("--permessage-deflate");
    }
    if let Some(r) = &rate {
        args.extend(["--max-message-rate", r]);
    }
    args.extend(extra);
    let server = Server::start(&args);
    let metrics = server.metrics.expect("metrics listener");
    let frame = message_frame(case);
    let clients: Vec<RawClient> = (0..case.clients).map(|_| stuck_client(server.addr, case.deflate)).collect();
    let pushers: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let frame = frame.clone();
            std::thread::spawn(move || push_until_held(c, &frame))
        })
        .collect();
    let clients = pushers.into_iter().map(|t| t.join().expect("pusher")).collect();
    (server, metrics, clients)
}

fn fresh_echo(server: &Server) -> Duration {
    let t0 = Instant::now();
    let mut c = RawClient::open(server.addr);
    c.send(true, OpCode::Text, b"still here");
    let ev = c.next_event();
    let took = t0.elapsed();
    assert!(
        matches!(&ev, Some(Event::Message(OpCode::Text, t)) if t == b"still here"),
        "fresh client got {ev:?}\n{}",
        server.log()
    );
    took
}

fn stuck_clients_cannot_wedge(case: Case) {
    let (mut server, metrics, clients) = start_stuck(case, &[]);
    // Past the idle timeout (the ping at half of it, then the close or drop).
    std::thread::sleep(Duration::from_millis(1500));
    let took = fresh_echo(&server);
    assert!(took < Duration::from_secs(1), "{case:?}: a fresh client's echo took {took:?}\n{}", server.log());
    let before = cpu_ticks(server.pid());
    std::thread::sleep(QUIET);
    let used = cpu_ticks(server.pid()) - before;
    assert!(used < MAX_TICKS, "{case:?}: the server used {used} ticks of CPU in {QUIET:?} with nobody sending");
    // Dropped at the idle timeout, or closed then and dropped at the close
    // timeout (5 s) when their echoes were still queued behind the close.
    let n = case.clients as f64;
    wait_for(metrics, "stuck clients dropped", |m| {
        sum(m, "ricochet_connections_open", &[]) == 0.0 && sum(m, "ricochet_timeouts_total", &["kind=\"idle\""]) >= n
    });
    drop(clients);
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(GRACE + Duration::from_secs(1));
    assert!(status.is_some_and(|s| s.success()), "{case:?}: SIGTERM: {status:?}\n{}", server.log());
}

#[test]
fn one_binary_client() {
    stuck_clients_cannot_wedge(Case { clients: 1, text: false, deflate: false, rate: None });
}

#[test]
fn fifty_binary_clients() {
    stuck_clients_cannot_wedge(Case { clients: 50, text: false, deflate: false, rate: None });
}

#[test]
fn one_text_client() {
    stuck_clients_cannot_wedge(Case { clients: 1, text: true, deflate: false, rate: None });
}

#[test]
fn fifty_text_clients() {
    stuck_clients_cannot_wedge(Case { clients: 50, text: true, deflate: false, rate: None });
}

#[test]
fn one_compressed_binary_client() {
    stuck_clients_cannot_wedge(Case { clients: 1, text: false, deflate: true, rate: None });
}

#[test]
fn fifty_compressed_text_clients() {
    stuck_clients_cannot_wedge(Case { clients: 50, text: true, deflate: true, rate: None });
}

#[test]
fn one_compressed_text_client() {
    stuck_clients_cannot_wedge(Case { clients: 1, text: true, deflate: true, rate: None });
}

#[test]
fn fifty_compressed_binary_clients() {
    stuck_clients_cannot_wedge(Case { clients: 50, text: false, deflate: true, rate: None });
}

#[test]
fn fifty_rate_limited_binary_clients() {
    stuck_clients_cannot_wedge(Case { clients: 50, text: false, deflate: false, rate: Some(50) });
}

/// SIGTERM while the stuck clients are held back: their idle timeouts pass
/// during the drain, which must still end within the grace period.
fn shutdown_with_stuck_clients(case: Case) {
    let (mut server, _metrics, clients) = start_stuck(case, &["--idle-timeout", "2s"]);
    server.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let status = server.wait_exit(GRACE + Duration::from_secs(1));
    assert!(
        status.is_some_and(|s| s.success()),
        "{case:?}: SIGTERM: {status:?} after {:?}\n{}",
        t0.elapsed(),
        server.log()
    );
    drop(clients);
}

#[test]
fn a_drain_with_stuck_binary_clients_ends_in_time() {
    shutdown_with_stuck_clients(Case { clients: 50, text: false, deflate: false, rate: None });
}

#[test]
fn a_drain_with_stuck_text_clients_ends_in_time() {
    shutdown_with_stuck_clients(Case { clients: 50, text: true, deflate: false, rate: None });
}
