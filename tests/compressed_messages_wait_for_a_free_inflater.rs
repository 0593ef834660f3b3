//! permessage-deflate's inflaters are a bounded per-shard pool: with all of
//! them held by messages in flight, a connection whose compressed message
//! spans reads waits, unread, and goes on once one is given back. Nothing
//! fails, nothing is lost. Real sockets, `--inflate-pool 1`, one shard.

mod common;

use common::{RawClient, Server};
use ricochet::ws::client::{deflate_message, Event};
use ricochet::ws::frame::OpCode;
use std::time::Duration;

/// Chrome's and Firefox's offer.
const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Text that compresses poorly, so its compressed form spans several writes.
fn varied(tag: &str) -> String {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ tag.len() as u64;
    let mut s = String::from(tag);
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{:x} ", x % 0xfffff));
    }
    s
}

#[test]
fn a_second_spanning_message_waits_for_the_only_inflater() {
    let server = Server::start(&["--permessage-deflate", "--inflate-pool", "1"]);
    let (mut a, head) = RawClient::open_with_extensions(server.addr, OFFER);
    assert!(head.contains("permessage-deflate"), "{head}");
    let (mut b, _) = RawClient::open_with_extensions(server.addr, OFFER);
    let (text_a, text_b) = (varied("a"), varied("b"));
    let (za, zb) = (deflate_message(text_a.as_bytes()), deflate_message(text_b.as_bytes()));
    assert!(za.len() > 8000 && zb.len() > 8000);

    // A's message: the first of two frames, then a pause: A holds the inflater.
    a.send_compressed(false, OpCode::Text, &za[..4000]);
    std::thread::sleep(Duration::from_millis(200));
    // B's message spans reads too: first part, pause, second part.
    b.send_compressed(false, OpCode::Text, &zb[..4000]);
    std::thread::sleep(Duration::from_millis(100));
    b.send(true, OpCode::Continuation, &zb[4000..]);
    // B is not answered while A holds the only inflater (its echo would need
    // the first frame inflated): a short read times out with nothing.
    b.stream.tcp().set_read_timeout(Some(Duration::from_millis(400))).unwrap();
    let mut probe = [0u8; 1];
    let waited = matches!(std::io::Read::read(&mut b.stream, &mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut);
    assert!(waited, "b was answered while the pool was empty\n{}", server.log());
    b.stream.tcp().set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    // A finishes: its echo arrives, then B's.
    a.send(true, OpCode::Continuation, &za[4000..]);
    assert_eq!(a.next_event(), Some(Event::Message(OpCode::Text, text_a.into_bytes())));
    assert_eq!(b.next_event(), Some(Event::Message(OpCode::Text, text_b.clone().into_bytes())));

    // Both go on normally afterwards, spanning reads or not.
    b.send_compressed(true, OpCode::Text, &deflate_message(b"after"));
    assert_eq!(b.next_event(), Some(Event::Message(OpCode::Text, b"after".to_vec())));
    b.send_compressed(false, OpCode::Binary, &zb[..100]);
    std::thread::sleep(Duration::from_millis(50));
    b.send(true, OpCode::Continuation, &zb[100..]);
    assert_eq!(b.next_event(), Some(Event::Message(OpCode::Binary, text_b.into_bytes())));
}

#[test]
fn a_client_gone_mid_message_gives_its_inflater_back() {
    let server = Server::start(&["--permessage-deflate", "--inflate-pool", "1"]);
    let z = deflate_message(varied("gone").as_bytes());
    {
        let (mut a, _) = RawClient::open_with_extensions(server.addr, OFFER);
        a.send_compressed(false, OpCode::Text, &z[..3000]);
        std::thread::sleep(Duration::from_millis(100));
        // Dropped here, mid-message, holding the only inflater.
    }
    std::thread::sleep(Duration::from_millis(200));
    let (mut b, _) = RawClient::open_with_extensions(server.addr, OFFER);
    let text = varied("next");
    let zb = deflate_message(text.as_bytes());
    b.send_compressed(false, OpCode::Text, &zb[..3000]);
    std::thread::sleep(Duration::from_millis(50));
    b.send(true, OpCode::Continuation, &zb[3000..]);
    assert_eq!(b.next_event(), Some(Event::Message(OpCode::Text, text.into_bytes())));
}
