//! What is particular to the io_uring backend: it recovers when its buffer
//! ring runs dry (ENOBUFS ends a multishot receive), and where io_uring is
//! forbidden, `--backend uring` fails with one line while `auto` falls back
//! to epoll and says why. (Everything else runs on both backends through the
//! whole suite: `make test`.)

mod common;

use common::{deny_io_uring, RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_tiny_buffer_ring_loses_nothing_and_does_not_stall() {
    // Two 512-byte buffers for 16 busy connections: receives run dry all the time.
    let mut server = Server::start(&["--backend", "uring", "--uring-buffers", "2", "--uring-buffer-size", "512"]);
    let addr = server.addr;
    let workers: Vec<_> = (0..16)
        .map(|id| {
            std::thread::spawn(move || {
                let mut c = RawClient::open(addr);
                for k in 0..40usize {
                    let len = (id * 131 + k * 977) % 3000;
                    let payload: Vec<u8> = (0..len).map(|i| (i + id + k) as u8).collect();
                    c.send(true, OpCode::Binary, &payload);
                    assert_eq!(c.next_event(), Some(Event::Message(OpCode::Binary, payload)), "conn {id} msg {k}");
                }
                c.send(true, OpCode::Close, &1000u16.to_be_bytes());
                assert_eq!(c.expect_close(), Some(1000));
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client failed");
    }
    // The ring did run dry, and recovered each time.
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).expect("exit").success());
    let log = server.wait_for_log("shard stopped");
    let starved: u64 = log
        .lines()
        .find(|l| l.contains("shard stopped"))
        .and_then(|l| l.split("recv_starved=").nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no counters in {log}"));
    assert!(starved > 0, "the ring never ran out: the test did not test recovery\n{log}");
}

#[test]
fn uring_where_forbidden_fails_with_one_line_and_exit_2() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--backend", "uring"]);
    deny_io_uring(&mut cmd);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ricochet:")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("io_uring") && lines[0].contains("Operation not permitted"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn auto_falls_back_to_epoll_and_says_why() {
    let server =
        Server::start_without_io_uring(&["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--backend", "auto"]);
    let log = server.wait_for_log("shard accepting");
    assert!(log.contains("using epoll because io_uring setup failed"), "{log}");
    assert!(log.contains("backend=\"epoll\""), "{log}");
    let mut c = RawClient::open(server.addr);
    c.send(true, OpCode::Text, b"still echoed");
    assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, b"still echoed".to_vec())));
}

#[test]
fn auto_picks_io_uring_where_it_works() {
    let server = Server::start_raw(&["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--backend", "auto"]);
    let log = server.wait_for_log("shard accepting");
    assert!(log.contains("io_uring available, using it") && log.contains("backend=\"io_uring\""), "{log}");
    std::thread::sleep(Duration::from_millis(10));
}
