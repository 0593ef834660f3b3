//! 200 clients that push 1 MiB messages and never read cost a shard a bounded
//! amount of memory, and it is given back once they leave (#24: io_uring's
//! multishot receive read ahead 4 MiB per backed-up connection, 6 -> 183 MB
//! on one shard, 75 MB still held after; epoll 5 -> 20 -> 6 MB). `make test`
//! runs it on both backends.

mod common;

use common::{upgrade_request, RawClient, Server};
use ricochet::ws::client::encode_masked;
use ricochet::ws::frame::OpCode;
use std::io::Write;
use std::time::{Duration, Instant};

const CLIENTS: usize = 200;
/// Growth of RSS allowed while the clients push.
const PEAK_KIB: u64 = 64 * 1024;
/// Growth still allowed 3 s after they left.
const AFTER_KIB: u64 = 8 * 1024;

#[test]
fn the_peak_is_bounded_and_given_back() {
    let server = Server::start(&[]);
    let before = server.rss_kib();
    let mut frame = Vec::new();
    encode_masked(&mut frame, true, OpCode::Binary, &vec![7u8; 1 << 20], [1, 2, 3, 4]);
    let mut clients: Vec<RawClient> = (0..CLIENTS)
        .map(|_| {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.set_recv_buffer_size(4096).unwrap();
            sock.connect(&server.addr.into()).unwrap();
            let mut c = RawClient::over(std::net::TcpStream::from(sock));
            c.send_raw(upgrade_request("/").as_bytes());
            assert!(c.read_http_head().starts_with("HTTP/1.1 101 "));
            c.stream.tcp().set_nonblocking(true).unwrap();
            c
        })
        .collect();
    let mut offsets = vec![0usize; CLIENTS];
    let mut peak = before;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        for (c, off) in clients.iter_mut().zip(offsets.iter_mut()) {
            if let Ok(n) = c.stream.write(&frame[*off..]) {
                *off = (*off + n) % frame.len();
            }
        }
        peak = peak.max(server.rss_kib());
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(clients);
    std::thread::sleep(Duration::from_secs(3));
    let after = server.rss_kib();
    eprintln!("RSS {before} KiB -> peak {peak} KiB -> {after} KiB 3 s after the clients left");
    assert!(peak - before < PEAK_KIB, "{CLIENTS} non-reading clients grew RSS by {} KiB", peak - before);
    assert!(after.saturating_sub(before) < AFTER_KIB, "still {} KiB above the start after they left", after - before);
}
