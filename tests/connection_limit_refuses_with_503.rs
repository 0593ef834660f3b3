//! `--max-connections` caps upgraded connections per process: the next
//! handshake gets 503, and a closed connection frees its place.

mod common;

use common::{upgrade_request, RawClient, Server};
use ricochet::ws::frame::OpCode;
use std::time::Duration;

#[test]
fn handshake_beyond_the_limit_gets_503_until_a_place_frees() {
    let server = Server::start(&["--shards", "2", "--max-connections", "3"]);
    let mut open: Vec<RawClient> = (0..3).map(|_| RawClient::open(server.addr)).collect();
    let mut extra = RawClient::connect(server.addr);
    extra.send_raw(upgrade_request("/").as_bytes());
    let head = extra.read_http_head();
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    // Close one; its place is given back.
    let mut c = open.pop().unwrap();
    c.send(true, OpCode::Close, &1000u16.to_be_bytes());
    assert_eq!(c.expect_close(), Some(1000));
    c.read_to_end();
    std::thread::sleep(Duration::from_millis(100));
    let _again = RawClient::open(server.addr);
}
