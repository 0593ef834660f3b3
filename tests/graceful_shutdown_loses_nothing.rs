//! SIGTERM: the server stops accepting, echoes everything clients sent
//! before, sends close 1001 to each, waits for their close replies within
//! the grace period and exits 0. A second signal exits at once.

mod common;

use common::{RawClient, Server};
use ricochet::ws::client::{encode_masked, Event};
use ricochet::ws::frame::OpCode;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn every_client_gets_its_echoes_then_1001_and_the_server_exits_0() {
    let mut server = Server::start(&["--shards", "2", "--shutdown-grace", "10s"]);
    let mut idle: Vec<RawClient> = (0..10).map(|_| RawClient::open(server.addr)).collect();
    // Sent before the signal, not yet read back.
    for (i, c) in idle.iter_mut().enumerate() {
        for k in 0..50 {
            c.send(true, OpCode::Text, format!("client {i} message {k}").as_bytes());
        }
    }
    // A message in progress: its first fragment is in, the last comes after the signal.
    let mut midway = RawClient::open(server.addr);
    midway.send(false, OpCode::Binary, b"first half, ");
    assert_eq!(midway.next_frame().map(|f| f.payload), Some(b"first half, ".to_vec()));
    std::thread::sleep(Duration::from_millis(200));

    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // The server no longer accepts.
    assert!(TcpStream::connect(server.addr).is_err(), "still accepting after SIGTERM");

    midway.send(true, OpCode::Continuation, b"second half");
    assert_eq!(midway.next_frame().map(|f| f.payload), Some(b"second half".to_vec()));
    assert_eq!(midway.expect_close(), Some(1001));
    midway.send(true, OpCode::Close, &1001u16.to_be_bytes());

    for (i, c) in idle.iter_mut().enumerate() {
        for k in 0..50 {
            let want = format!("client {i} message {k}").into_bytes();
            assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, want)));
        }
        assert_eq!(c.expect_close(), Some(1001));
        c.send(true, OpCode::Close, &1001u16.to_be_bytes());
        assert!(c.read_to_end().is_empty());
    }
    let t0 = Instant::now();
    let status = server.wait_exit(Duration::from_secs(15)).expect("server did not exit");
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
    // Every client replied, so the server did not need the whole grace period.
    assert!(t0.elapsed() < Duration::from_secs(5));
    let log = server.wait_for_log("shard stopped");
    assert!(log.contains("shard stopped"), "{log}");
}

#[test]
fn a_backed_up_client_gets_every_byte_before_1001() {
    let mut server = Server::start(&["--shutdown-grace", "20s"]);
    let client = RawClient::open(server.addr);
    let mut writer = client.stream.tcp().try_clone().unwrap();
    let total: usize = 32 << 20;
    let w = std::thread::spawn(move || {
        let payload = vec![0x5a; 64 * 1024];
        let mut f = Vec::new();
        encode_masked(&mut f, true, OpCode::Binary, &payload, [1, 2, 3, 4]);
        for _ in 0..total / payload.len() {
            writer.write_all(&f).unwrap();
        }
    });
    // Let the server's output back up before the signal.
    std::thread::sleep(Duration::from_millis(500));
    server.signal(libc::SIGTERM);
    let mut c = client;
    let mut got = 0usize;
    let close = loop {
        match c.next_frame().expect("connection ended before the close") {
            f if f.opcode == OpCode::Close => break u16::from_be_bytes([f.payload[0], f.payload[1]]),
            f => {
                assert!(f.payload.iter().all(|&b| b == 0x5a));
                got += f.payload.len();
            }
        }
    };
    w.join().unwrap();
    assert_eq!(got, total, "bytes echoed before the close");
    assert_eq!(close, 1001);
    c.send(true, OpCode::Close, &1001u16.to_be_bytes());
    assert!(server.wait_exit(Duration::from_secs(10)).expect("exit").success());
}

#[test]
fn silent_client_is_dropped_after_the_grace_period() {
    let mut server = Server::start(&["--shutdown-grace", "1s"]);
    let mut c = RawClient::open(server.addr);
    server.signal(libc::SIGINT);
    assert_eq!(c.expect_close(), Some(1001));
    // No close reply: the server waits out the grace period, then exits 0.
    let status = server.wait_exit(Duration::from_secs(10)).expect("server did not exit");
    assert!(status.success());
}

#[test]
fn second_signal_exits_at_once() {
    let mut server = Server::start(&["--shutdown-grace", "60s"]);
    let _c = RawClient::open(server.addr);
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5)).expect("second signal did not exit");
    assert!(!status.success());
}
