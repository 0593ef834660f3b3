//! `--max-message-rate` and `--max-bytes-per-second`: a client that sends
//! faster gets every echo, exact and in order, at the configured rate (a
//! burst of one second's worth, then the rate; checked with a generous
//! tolerance), while another connection is not slowed.

mod common;

use common::admin::{sum, wait_for};
use common::{RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::time::{Duration, Instant};

/// Sends `n` messages of `size` bytes from a writer thread and reads every
/// echo; returns how long the echoes took.
fn flood(server: &Server, n: usize, size: usize) -> Duration {
    let mut c = RawClient::open(server.addr);
    let tcp = c.stream.tcp().try_clone().unwrap();
    let t0 = Instant::now();
    // The writer runs on a second TCP handle (over TLS both halves share
    // the stream, so there the messages go first and the echoes are read after).
    let msg = |k: usize| -> Vec<u8> { (0..size).map(|i| (k * 31 + i) as u8).collect() };
    if common::over_tls() {
        for k in 0..n {
            c.send(true, OpCode::Binary, &msg(k));
        }
    } else {
        let mut w = tcp;
        let frames: Vec<u8> = (0..n)
            .flat_map(|k| {
                let mut f = Vec::new();
                ricochet::ws::client::encode_masked(&mut f, true, OpCode::Binary, &msg(k), [1, 2, 3, 4]);
                f
            })
            .collect();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = w.write_all(&frames);
        });
    }
    for k in 0..n {
        assert_eq!(c.next_event(), Some(Event::Message(OpCode::Binary, msg(k))), "echo {k}");
    }
    let took = t0.elapsed();
    eprintln!("{n} messages of {size} B echoed in {took:?}");
    took
}

#[test]
fn a_message_rate_paces_echoes_and_loses_none() {
    let server = Server::start(&["--max-message-rate", "50", "--metrics-listen", "127.0.0.1:0", "--shards", "2"]);
    // 50 at once (the burst), then 100 at 50 per second: about 2 s.
    let took = flood(&server, 150, 64);
    assert!(took >= Duration::from_millis(1500), "150 messages at 50/s took only {took:?}");
    assert!(took <= Duration::from_secs(8), "150 messages at 50/s took {took:?}");
    // Another connection is not held back by the first one's limit.
    let mut other = RawClient::open(server.addr);
    let t0 = Instant::now();
    other.send(true, OpCode::Text, b"not slowed");
    assert_eq!(other.next_event(), Some(Event::Message(OpCode::Text, b"not slowed".to_vec())));
    assert!(t0.elapsed() < Duration::from_millis(500));
    wait_for(server.metrics.unwrap(), "rate limiting counted", |m| sum(m, "ricochet_rate_limited_total", &[]) >= 1.0);
}

#[test]
fn a_byte_rate_paces_echoes_and_loses_none() {
    let server = Server::start(&["--max-bytes-per-second", "64K"]);
    // 64 KiB at once, then 192 KiB at 64 KiB/s: about 3 s.
    let took = flood(&server, 64, 4096);
    assert!(took >= Duration::from_millis(2200), "256 KiB at 64 KiB/s took only {took:?}");
    assert!(took <= Duration::from_secs(12), "256 KiB at 64 KiB/s took {took:?}");
}
