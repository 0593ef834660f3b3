//! `Reply::Collect`: whole messages handed to the caller as one server frame
//! each, however the client fragments them and however the reads fall;
//! nothing echoed; control frames keep their meaning.

use super::*;
use crate::ws::client::{
    decode_server_frames, decode_server_frames_with, deflate_message, encode_masked, events, Event,
};
use crate::ws::harness::{ctx, inflaters, Harness};

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];
const REQUEST: &str = "GET /room HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

fn collect_config(deflate: bool) -> Config {
    let mut c = Config { reply: Reply::Collect, ..Config::default() };
    c.handshake.permessage_deflate = deflate;
    c
}

fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_masked(&mut v, fin, op, payload, KEY);
    v
}

/// Handshake (offering permessage-deflate if `deflate`), then `input` in
/// the pieces `splits` cut.
fn run(deflate: bool, input: &[u8], splits: &[usize]) -> Harness {
    let config = collect_config(deflate);
    let now = Instant::now();
    let c = ctx(&config, now);
    let mut h = Harness::new(Session::new(&config, now));
    let mut req = REQUEST.to_string();
    if deflate {
        req.push_str("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
    }
    req.push_str("\r\n");
    h.feed(&c, req.as_bytes());
    assert!(h.sent.starts_with(b"HTTP/1.1 101"));
    h.sent.clear();
    let mut last = 0;
    for &s in splits {
        h.feed(&c, &input[last..s]);
        last = s;
    }
    h.feed(&c, &input[last..]);
    h
}

/// The collected messages as a client would decode them.
fn messages(h: &Harness) -> Vec<Event> {
    let mut all = Vec::new();
    for m in &h.collected {
        let (frames, used) = decode_server_frames(m.frame()).expect("a collected frame decodes");
        assert_eq!(used, m.frame().len());
        assert_eq!(frames.len(), 1, "one frame per message");
        all.extend(events(&frames));
    }
    all
}

#[test]
fn a_fragmented_message_is_collected_whole_whatever_the_reads() {
    let mut input = frame(false, OpCode::Text, b"hello ");
    input.extend(frame(false, OpCode::Continuation, b"wide "));
    input.extend(frame(true, OpCode::Continuation, b"world"));
    input.extend(frame(true, OpCode::Binary, &[7u8; 300]));
    input.extend(frame(true, OpCode::Text, b""));
    let want = vec![
        Event::Message(OpCode::Text, b"hello wide world".to_vec()),
        Event::Message(OpCode::Binary, vec![7u8; 300]),
        Event::Message(OpCode::Text, vec![]),
    ];
    let whole = run(false, &input, &[]);
    assert_eq!(messages(&whole), want);
    assert!(whole.sent.is_empty(), "nothing is echoed");
    assert_eq!(whole.total.messages, 3);
    for i in 1..input.len() {
        assert_eq!(messages(&run(false, &input, &[i])), want, "split at {i}");
    }
    let every: Vec<usize> = (1..input.len()).collect();
    assert_eq!(messages(&run(false, &input, &every)), want, "byte by byte");
}

#[test]
fn a_ping_inside_a_fragmented_message_is_answered_not_collected() {
    let mut input = frame(false, OpCode::Binary, b"ab");
    input.extend(frame(true, OpCode::Ping, b"p"));
    input.extend(frame(true, OpCode::Continuation, b"cd"));
    let h = run(false, &input, &[]);
    assert_eq!(messages(&h), vec![Event::Message(OpCode::Binary, b"abcd".to_vec())]);
    let (frames, _) = decode_server_frames(&h.sent).unwrap();
    assert_eq!(events(&frames), vec![Event::Pong(b"p".to_vec())]);
}

#[test]
fn a_compressed_message_is_collected_inflated() {
    let text = "a room message, compressed by its sender ".repeat(20);
    let mut input = frame(true, OpCode::Text, &deflate_message(text.as_bytes()));
    input[0] |= frame::RSV1_BIT;
    for splits in [vec![], vec![5], (1..input.len()).collect::<Vec<_>>()] {
        let h = run(true, &input, &splits);
        assert_eq!(messages(&h), vec![Event::Message(OpCode::Text, text.as_bytes().to_vec())], "{splits:?}");
        // The collected frame is a plain one (no RSV1): any receiver can take it.
        let (frames, _) = decode_server_frames_with(h.collected[0].frame(), false).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(h.sent.is_empty());
        // And it is kept as it came, one frame with RSV1, for members that
        // can inflate it: the client's compressed bytes, unchanged.
        let c = h.collected[0].compressed.as_ref().expect("kept compressed");
        let (frames, _) = decode_server_frames_with(c.frame(), true).unwrap();
        assert!(frames[0].compressed && frames[0].fin && frames[0].opcode == OpCode::Text);
        assert_eq!(frames[0].payload, deflate_message(text.as_bytes()));
        assert_eq!(c.window, 15, "the browser offer leaves the client's window at 15 bits");
    }
    assert_eq!(inflaters().lent(), 0, "every inflater went back");
}

#[test]
fn invalid_text_fails_with_1007_and_collects_nothing() {
    let input = frame(true, OpCode::Text, &[0xff, 0xfe]);
    let h = run(false, &input, &[]);
    assert!(h.collected.is_empty());
    assert_eq!(h.total.error, Some(ProtocolError::InvalidUtf8));
}

#[test]
fn a_message_over_the_size_limit_fails_with_1009_before_it_is_gathered() {
    let mut config = collect_config(false);
    config.max_message_size = 100;
    let now = Instant::now();
    let c = ctx(&config, now);
    let mut h = Harness::new(Session::new(&config, now));
    h.feed(&c, format!("{REQUEST}\r\n").as_bytes());
    let mut input = frame(false, OpCode::Binary, &[1u8; 60]);
    input.extend(frame(true, OpCode::Continuation, &[1u8; 60]));
    h.feed(&c, &input);
    assert!(h.collected.is_empty());
    assert!(matches!(h.total.error, Some(ProtocolError::TooBig(120))));
}
