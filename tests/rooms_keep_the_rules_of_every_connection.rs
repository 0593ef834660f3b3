//! Rooms under the server's other rules: `--max-rooms` refuses a new room
//! with 503 (and frees the place when a room empties); a graceful shutdown
//! sends every message already published before each member's 1001; a ping
//! is answered, never broadcast; a compressed message reaches a
//! permessage-deflate member and a plain one intact; a message over
//! `--max-message-size` fails its sender with 1009 and reaches nobody.

mod common;

use common::admin::{sum, wait_for};
use common::{upgrade_request, RawClient, Server};
use ricochet::ws::client::{deflate_message, Event};
use ricochet::ws::frame::OpCode;

fn member(server: &Server, path: &str) -> RawClient {
    let mut c = RawClient::connect(server.addr);
    c.send_raw(upgrade_request(path).as_bytes());
    let head = c.read_http_head();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    c
}

fn room_server(extra: &[&str]) -> Server {
    let mut args = vec!["--reply", "room", "--shards", "2", "--metrics-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn a_room_past_max_rooms_is_refused_with_503_until_one_empties() {
    let server = room_server(&["--max-rooms", "2"]);
    let a = member(&server, "/a");
    let _b = member(&server, "/b");
    let _a2 = member(&server, "/a?second=1");
    let mut c = RawClient::connect(server.addr);
    c.send_raw(upgrade_request("/c").as_bytes());
    let response = String::from_utf8_lossy(&c.read_to_end()).into_owned();
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert!(response.contains("too many rooms open (at most 2)"), "{response}");
    let admin = server.metrics.unwrap();
    wait_for(admin, "the refusal counted", |m| {
        sum(m, "ricochet_handshakes_refused_total", &["reason=\"too_many_rooms\""]) == 1.0
    });
    assert_eq!(sum(&common::admin::scrape(admin), "ricochet_rooms_open", &[]), 2.0);
    // /a keeps a member: still full. When /b empties, /c may open.
    drop(a);
    drop(_b);
    wait_for(admin, "/b closed", |m| sum(m, "ricochet_rooms_open", &[]) == 1.0);
    let _c = member(&server, "/c");
}

#[test]
fn shutdown_sends_every_published_message_before_1001() {
    let server = room_server(&[]);
    let admin = server.metrics.unwrap();
    let mut members: Vec<RawClient> = (0..8).map(|_| member(&server, "/news")).collect();
    let mut publisher = member(&server, "/news");
    wait_for(admin, "9 members", |m| sum(m, "ricochet_room_members", &[]) == 9.0);
    for i in 0..200u32 {
        publisher.send(true, OpCode::Text, format!("item {i}").as_bytes());
    }
    wait_for(admin, "200 published", |m| sum(m, "ricochet_room_messages_published_total", &[]) == 200.0);
    server.signal(libc::SIGTERM);
    members.push(publisher);
    for m in &mut members {
        for i in 0..200u32 {
            match m.next_event() {
                Some(Event::Message(OpCode::Text, t)) => assert_eq!(t, format!("item {i}").into_bytes()),
                other => panic!("message {i} was due, got {other:?}"),
            }
        }
        match m.next_event() {
            Some(Event::Close(code, _)) => assert_eq!(code, Some(1001)),
            other => panic!("1001 was due, got {other:?}"),
        }
    }
}

#[test]
fn a_ping_gets_its_pong_and_reaches_nobody_else() {
    let server = room_server(&[]);
    let admin = server.metrics.unwrap();
    let mut a = member(&server, "/p");
    let mut b = member(&server, "/p");
    wait_for(admin, "2 members", |m| sum(m, "ricochet_room_members", &[]) == 2.0);
    a.send(true, OpCode::Ping, b"are you there");
    assert_eq!(a.next_event(), Some(Event::Pong(b"are you there".to_vec())));
    a.send(true, OpCode::Text, b"after the ping");
    assert_eq!(b.next_event(), Some(Event::Message(OpCode::Text, b"after the ping".to_vec())), "no ping, no pong");
    assert_eq!(a.next_event(), Some(Event::Message(OpCode::Text, b"after the ping".to_vec())));
}

#[test]
fn a_compressed_message_reaches_deflate_and_plain_members_intact() {
    let server = room_server(&["--permessage-deflate"]);
    let admin = server.metrics.unwrap();
    let mut plain = member(&server, "/");
    let (mut deflate, head) = RawClient::open_with_extensions(server.addr, "permessage-deflate");
    assert!(head.to_ascii_lowercase().contains("permessage-deflate"), "{head}");
    // A member that lets the server compress with 9-bit windows only cannot
    // take a message compressed with 15.
    let (mut narrow, _) = RawClient::open_with_extensions(server.addr, "permessage-deflate; server_max_window_bits=9");
    wait_for(admin, "3 members", |m| sum(m, "ricochet_room_members", &[]) == 3.0);
    let text = "a compressed room message, ".repeat(200);
    let compressed = deflate_message(text.as_bytes());
    deflate.send_compressed(true, OpCode::Text, &compressed);
    // The deflate member gets the sender's compressed bytes as they came.
    let f = deflate.next_frame().expect("a frame");
    assert!(f.compressed && f.fin && f.opcode == OpCode::Text, "{f:?}");
    assert_eq!(f.payload, compressed);
    // The others get it inflated, once, uncompressed.
    for c in [&mut plain, &mut narrow] {
        let f = c.next_frame().expect("a frame");
        assert!(!f.compressed, "{f:?}");
        assert_eq!((f.opcode, f.payload), (OpCode::Text, text.clone().into_bytes()));
    }
}

#[test]
fn a_message_over_the_size_limit_fails_its_sender_and_reaches_nobody() {
    let server = room_server(&["--max-message-size", "1KiB"]);
    let admin = server.metrics.unwrap();
    let mut a = member(&server, "/big");
    let mut b = member(&server, "/big");
    wait_for(admin, "2 members", |m| sum(m, "ricochet_room_members", &[]) == 2.0);
    a.send(false, OpCode::Binary, &[1; 1000]);
    a.send(true, OpCode::Continuation, &[2; 100]);
    assert_eq!(a.expect_close(), Some(1009));
    b.send(true, OpCode::Text, b"still here");
    assert_eq!(b.next_event(), Some(Event::Message(OpCode::Text, b"still here".to_vec())));
    let m = common::admin::scrape(admin);
    assert_eq!(sum(&m, "ricochet_room_messages_published_total", &[]), 1.0, "only b's message");
}

#[test]
fn the_status_page_lists_the_largest_rooms() {
    let server = room_server(&[]);
    let admin = server.metrics.unwrap();
    let _big: Vec<RawClient> = (0..3).map(|_| member(&server, "/lobby")).collect();
    let mut small = member(&server, "/side");
    wait_for(admin, "4 members", |m| sum(m, "ricochet_room_members", &[]) == 4.0);
    small.send(true, OpCode::Text, b"hi");
    assert_eq!(small.next_event(), Some(Event::Message(OpCode::Text, b"hi".to_vec())));
    let r = common::admin::get(admin, "/stats.json");
    let stats: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let rooms = &stats["rooms"];
    assert_eq!((rooms["open"].as_u64(), rooms["members"].as_u64()), (Some(2), Some(4)), "{rooms}");
    let largest = rooms["largest"].as_array().unwrap();
    assert_eq!(largest[0]["path"], "/lobby");
    assert_eq!(largest[0]["members"], 3);
    assert_eq!(largest[1]["path"], "/side");
    assert_eq!((largest[1]["published"].as_u64(), largest[1]["deliveries"].as_u64()), (Some(1), Some(1)));
    assert_eq!(stats["settings"]["reply"], "room");
}
