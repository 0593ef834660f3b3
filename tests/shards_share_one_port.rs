//! With two shards bound to one port (SO_REUSEPORT), both accept connections.

mod common;

use common::{RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::time::Duration;

#[test]
fn both_shards_accept_and_log_their_counters() {
    let mut server = Server::start(&["--shards", "2"]);
    let log = server.wait_for_log("shard=1");
    assert!(log.contains("shard=0") && log.contains("shard=1"), "{log}");
    // SO_REUSEPORT hashes each connection's 4-tuple: 64 connections all
    // landing on one shard has probability 2^-63.
    let mut clients: Vec<RawClient> = (0..64).map(|_| RawClient::open(server.addr)).collect();
    for c in &mut clients {
        c.send(true, OpCode::Text, b"hi");
        assert_eq!(c.next_event(), Some(Event::Message(OpCode::Text, b"hi".to_vec())));
        c.send(true, OpCode::Close, &1000u16.to_be_bytes());
        assert_eq!(c.expect_close(), Some(1000));
    }
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(10)).unwrap().success());
    let log = server.wait_for_log_lines("shard stopped", 2);
    let accepted: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("shard stopped"))
        .filter_map(|l| l.split("accepted=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(accepted.len(), 2, "{log}");
    assert!(accepted.iter().all(|&n| n > 0), "one shard accepted nothing: {accepted:?}");
    assert_eq!(accepted.iter().sum::<u64>(), 64);
}
