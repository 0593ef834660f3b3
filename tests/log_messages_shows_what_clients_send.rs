//! `--log-messages`: each message received is logged at info with its kind,
//! length and first bytes as text, for trying a client out; a flood is cut
//! to 20 lines a second per shard and the rest counted, so it cannot fill a
//! disk. Off by default.

mod common;

use common::{RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::time::Duration;

#[test]
fn each_message_is_a_line_and_a_flood_is_cut() {
    let server = Server::start(&["--log-messages"]);
    let mut c = RawClient::open(server.addr);
    c.send(true, OpCode::Text, b"hello, ricochet");
    assert!(matches!(c.next_event(), Some(Event::Message(OpCode::Text, _))));
    let long = vec![b'x'; 1000];
    c.send(true, OpCode::Binary, &long);
    assert!(matches!(c.next_event(), Some(Event::Message(OpCode::Binary, _))));
    let log = server.wait_for_log_lines("message: ", 2);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("message: ")).collect();
    assert!(
        lines[0].contains("INFO") && lines[0].contains("\"hello, ricochet\"") && lines[0].contains("bytes=15"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("kind=\"text\"") || lines[0].contains("kind=text"), "{}", lines[0]);
    assert!(
        lines[1].contains(&format!("\"{}\"...", "x".repeat(32))) && lines[1].contains("bytes=1000"),
        "{}",
        lines[1]
    );
    // A flood: 200 messages in well under a second; at most 20 lines a second.
    for i in 0..200 {
        c.send(true, OpCode::Text, format!("flood {i}").as_bytes());
        assert!(matches!(c.next_event(), Some(Event::Message(OpCode::Text, _))));
    }
    std::thread::sleep(Duration::from_millis(1100));
    c.send(true, OpCode::Text, b"after the flood");
    assert!(matches!(c.next_event(), Some(Event::Message(OpCode::Text, _))));
    let log = server.wait_for_log("lines not written");
    // Every one of the 202 messages before the last is a line or counted.
    let written = log.lines().filter(|l| l.contains("message: ") && !l.contains("after the flood")).count() as u64;
    let skipped: u64 = log
        .lines()
        .filter(|l| l.contains("lines not written"))
        .filter_map(|l| l.split("skipped=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(written + skipped, 202, "written {written}, skipped {skipped}");
    // At most 20 a second: the flood took under two seconds, so at most two windows' worth.
    assert!(written <= 40 && skipped >= 162, "written {written}, skipped {skipped}");
}

#[test]
fn off_by_default() {
    let server = Server::start(&[]);
    let mut c = RawClient::open(server.addr);
    c.send(true, OpCode::Text, b"not logged");
    assert!(matches!(c.next_event(), Some(Event::Message(OpCode::Text, _))));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!server.log().contains("message: "), "{}", server.log());
}
