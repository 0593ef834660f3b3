//! permessage-deflate in the session (RFC 7692): the passthrough echo, the
//! fallback echo, every error's close code, and the inflater pool. Every
//! input is also fed split at every byte boundary.

use super::*;
use crate::ws::client::{decode_server_frames_with, deflate_message, encode_masked, events, Event};
use crate::ws::close;
use crate::ws::harness::{inflaters, Harness};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const PLAIN: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
/// What Chrome, Firefox and Node's `ws` offer.
const BROWSER: &str = "permessage-deflate; client_max_window_bits";
/// An offer the passthrough cannot serve: the server's window is bounded, the client's is not.
const NARROW: &str = "permessage-deflate; server_max_window_bits=10";
/// RFC 7692 §7.2.3.1: "Hello", compressed.
const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

fn deflate_config() -> Config {
    let mut c = Config::default();
    c.handshake.permessage_deflate = true;
    c
}

fn request(offer: Option<&str>) -> Vec<u8> {
    let mut r = PLAIN.to_string();
    if let Some(o) = offer {
        r.push_str(&format!("Sec-WebSocket-Extensions: {o}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A masked client frame with RSV1 as given.
fn frame(fin: bool, rsv1: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_masked(&mut v, fin, op, payload, KEY);
    if rsv1 {
        v[0] |= frame::RSV1_BIT;
    }
    v
}

fn compressed(op: OpCode, data: &[u8]) -> Vec<u8> {
    frame(true, true, op, &deflate_message(data))
}

/// Handshake with `offer`, then `input` in the pieces `splits` cut; returns
/// what was sent after the 101, and the harness.
fn run_with(config: &Config, offer: Option<&str>, input: &[u8], splits: &[usize]) -> (Vec<u8>, Harness) {
    super::tests::run_request(config, &request(offer), input, splits, |sent| {
        assert!(sent.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(sent))
    })
}

fn view(sent: &[u8]) -> Vec<Event> {
    let (frames, used) = decode_server_frames_with(sent, true).expect("server output decodes");
    assert_eq!(used, sent.len(), "server output ends on a frame boundary");
    events(&frames)
}

/// Feeds `input` whole, at every 2-way split and byte by byte: the client
/// must see the same events each time. Returns the whole feed's output.
fn check(offer: &str, input: &[u8]) -> Vec<u8> {
    let config = deflate_config();
    let (whole, _) = run_with(&config, Some(offer), input, &[]);
    let expect = view(&whole);
    for i in 1..input.len() {
        let (out, _) = run_with(&config, Some(offer), input, &[i]);
        assert_eq!(view(&out), expect, "split at {i}");
    }
    let every: Vec<usize> = (1..input.len()).collect();
    let (out, _) = run_with(&config, Some(offer), input, &every);
    assert_eq!(view(&out), expect, "byte by byte");
    assert_eq!(inflaters().lent(), 0, "every inflater went back");
    whole
}

fn close_code(sent: &[u8]) -> Option<u16> {
    view(sent).into_iter().find_map(|e| match e {
        Event::Close(code, _) => code,
        _ => None,
    })
}

/// Text that compresses poorly: `s` and numbers.
fn varied(s: &str) -> String {
    (0..100u32).map(|i| format!("{s} {}", i.wrapping_mul(2654435761) % 100_000)).collect()
}

fn text(s: &str) -> Event {
    Event::Message(OpCode::Text, s.as_bytes().to_vec())
}

#[test]
fn compressed_hello_echoes_byte_identical_with_rsv1() {
    let out = check(BROWSER, &frame(true, true, OpCode::Text, &HELLO));
    assert_eq!(out, [&[0xc1, 0x07][..], &HELLO].concat());
    assert_eq!(view(&out), vec![text("Hello")]);
}

#[test]
fn fragmented_message_keeps_rsv1_on_its_first_frame_only() {
    // RFC 7692 §7.2.3.1, the fragmented form.
    let mut input = frame(false, true, OpCode::Text, &HELLO[..3]);
    input.extend(frame(true, false, OpCode::Continuation, &HELLO[3..]));
    let out = check(BROWSER, &input);
    assert_eq!(out, [&[0x41, 0x03][..], &HELLO[..3], &[0x80, 0x04], &HELLO[3..]].concat());
}

#[test]
fn rfc_7692_payload_shapes_echo_and_inflate() {
    let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
    let two_blocks = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
    let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    for (payload, want) in [(&stored[..], "Hello"), (&two_blocks, "Hello"), (&bfinal, "Hello"), (&[0x00], "")] {
        let input = frame(true, true, OpCode::Text, payload);
        let out = check(BROWSER, &input);
        assert_eq!(view(&out), vec![text(want)], "{payload:02x?}");
        assert_eq!(&out[2..], payload, "passthrough keeps the bytes");
    }
}

#[test]
fn a_stream_ended_mid_message_goes_on_decoding() {
    // RFC 7692 §7.2.3.5: BFINAL set in mid-message; the rest is a new stream.
    let mut payload = vec![0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    payload.extend(deflate_message(b", world"));
    let out = check(BROWSER, &frame(true, true, OpCode::Text, &payload));
    assert_eq!(view(&out), vec![text("Hello, world")]);
    // And bad text after the end is still caught.
    let mut payload = vec![0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    payload.extend(deflate_message(b"\xff"));
    assert_eq!(close_code(&check(BROWSER, &frame(true, true, OpCode::Text, &payload))), Some(close::INVALID_PAYLOAD));
}

#[test]
fn uncompressed_messages_still_echo_with_deflate_negotiated() {
    let mut input = frame(true, false, OpCode::Text, b"plain");
    input.extend(compressed(OpCode::Binary, &[7u8; 3000]));
    input.extend(frame(true, false, OpCode::Binary, &[1, 2, 3]));
    let out = check(BROWSER, &input);
    assert_eq!(
        view(&out),
        vec![
            text("plain"),
            Event::Message(OpCode::Binary, vec![7; 3000]),
            Event::Message(OpCode::Binary, vec![1, 2, 3])
        ]
    );
}

#[test]
fn ping_between_compressed_fragments_is_answered() {
    let z = deflate_message(b"fragmented and pinged");
    let mut input = frame(false, true, OpCode::Text, &z[..5]);
    input.extend(frame(true, false, OpCode::Ping, b"p"));
    input.extend(frame(true, false, OpCode::Continuation, &z[5..]));
    let out = check(BROWSER, &input);
    assert_eq!(view(&out), vec![Event::Pong(b"p".to_vec()), text("fragmented and pinged")]);
}

#[test]
fn rsv1_without_negotiation_is_1002() {
    let config = deflate_config();
    let (out, h) = run_with(&config, None, &frame(true, true, OpCode::Text, &HELLO), &[]);
    let (frames, _) = decode_server_frames_with(&out, false).unwrap();
    assert_eq!(events(&frames), vec![Event::Close(Some(close::PROTOCOL_ERROR), b"reserved bits set".to_vec())]);
    assert_eq!(h.total.error, Some(ProtocolError::ReservedBits(4)));
}

#[test]
fn rsv1_on_a_continuation_or_control_frame_is_1002() {
    let mut input = frame(false, true, OpCode::Text, &HELLO[..3]);
    input.extend(frame(true, true, OpCode::Continuation, &HELLO[3..]));
    assert_eq!(close_code(&check(BROWSER, &input)), Some(close::PROTOCOL_ERROR));
    let input = frame(true, true, OpCode::Ping, b"");
    assert_eq!(close_code(&check(BROWSER, &input)), Some(close::PROTOCOL_ERROR));
    let mut input = frame(false, false, OpCode::Binary, b"ab");
    input.extend(frame(true, true, OpCode::Continuation, b"cd"));
    assert_eq!(close_code(&check(BROWSER, &input)), Some(close::PROTOCOL_ERROR));
}

#[test]
fn corrupt_deflate_data_is_1007_and_not_echoed() {
    let out = check(BROWSER, &frame(true, true, OpCode::Binary, &[0xff, 0xff, 0xff, 0xff, 0x00]));
    assert_eq!(view(&out), vec![Event::Close(Some(close::INVALID_PAYLOAD), b"invalid compressed data".to_vec())]);
}

#[test]
fn inflated_text_that_is_not_utf8_is_1007() {
    let out = check(BROWSER, &compressed(OpCode::Text, b"ok so far \xc3\x28 then bad"));
    assert_eq!(close_code(&out), Some(close::INVALID_PAYLOAD));
    // Ending inside a code point is found at the message's end.
    let out = check(BROWSER, &compressed(OpCode::Text, b"cut \xe2\x82"));
    assert_eq!(close_code(&out), Some(close::INVALID_PAYLOAD));
}

#[test]
fn a_decompression_bomb_is_1009() {
    let config = Config { max_message_size: 64 * 1024, ..deflate_config() };
    let bomb = compressed(OpCode::Binary, &vec![0u8; 1 << 20]);
    assert!(bomb.len() < 2048);
    let (out, h) = run_with(&config, Some(BROWSER), &bomb, &[]);
    assert_eq!(close_code(&out), Some(close::MESSAGE_TOO_BIG));
    assert!(matches!(h.total.error, Some(ProtocolError::TooBig(_))));
    // Just under the limit is fine.
    let ok = compressed(OpCode::Binary, &vec![0u8; 64 * 1024]);
    let (out, _) = run_with(&config, Some(BROWSER), &ok, &[]);
    assert_eq!(view(&out), vec![Event::Message(OpCode::Binary, vec![0; 64 * 1024])]);
}

#[test]
fn fallback_echoes_the_inflated_message_uncompressed() {
    let data: Vec<u8> = (0..5000u32).map(|i| b"abcdefgh"[(i % 7) as usize]).collect();
    let mut input = compressed(OpCode::Text, &data);
    input.extend(frame(true, true, OpCode::Text, &HELLO));
    let out = check(NARROW, &input);
    let (frames, _) = decode_server_frames_with(&out, true).unwrap();
    assert!(frames.iter().all(|f| !f.compressed), "RSV1 never set in the fallback");
    assert_eq!(view(&out), vec![Event::Message(OpCode::Text, data), text("Hello")]);
}

#[test]
fn fallback_output_per_call_is_bounded() {
    // 4 MiB of zeros is a few KiB compressed: its echo comes out a budget
    // at a time, each call stopping until the caller comes back.
    let config = deflate_config();
    let data = vec![0u8; 4 << 20];
    let input = compressed(OpCode::Binary, &data);
    let now = Instant::now();
    let ctx = crate::ws::harness::ctx(&config, now);
    let mut h = Harness::new(Session::new(&config, now));
    h.feed(&ctx, &request(Some(NARROW)));
    h.sent.clear();
    h.feed_once(&ctx, &input);
    assert_eq!(h.session.stalled(), Some(Stall::Output));
    let mut calls = 1;
    let mut most = h.sent.len();
    while h.session.stalled().is_some() {
        let before = h.sent.len();
        h.feed_once(&ctx, &[]);
        most = most.max(h.sent.len() - before);
        calls += 1;
    }
    assert!(most <= FALLBACK_BUDGET + crate::ws::deflate::inflate::SCRATCH_LEN + 64, "{most}");
    assert!(calls >= (4 << 20) / (FALLBACK_BUDGET + 16 * 1024), "{calls}");
    assert_eq!(view(&h.sent), vec![Event::Message(OpCode::Binary, data)]);
    assert_eq!(inflaters().lent(), 0);
}

#[test]
fn a_message_spanning_reads_waits_for_a_free_inflater() {
    let config = deflate_config();
    let pool = Inflaters::new(1);
    let now = Instant::now();
    let ctx = Ctx { inflaters: &pool, ..crate::ws::harness::ctx(&config, now) };
    let (mut a, mut b) = (Harness::new(Session::new(&config, now)), Harness::new(Session::new(&config, now)));
    a.feed(&ctx, &request(Some(BROWSER)));
    b.feed(&ctx, &request(Some(BROWSER)));
    a.sent.clear();
    b.sent.clear();
    let (text_a, text_b) = (varied("first message, from a"), varied("second message, from b"));
    let msg_a = compressed(OpCode::Text, text_a.as_bytes());
    let msg_b = compressed(OpCode::Text, text_b.as_bytes());
    assert!(msg_a.len() > 200 && msg_b.len() > 200);
    // A's message spans two reads: it holds the only inflater in between.
    a.feed(&ctx, &msg_a[..msg_a.len() - 80]);
    assert_eq!(pool.lent(), 1);
    b.feed(&ctx, &msg_b[..msg_b.len() - 80]);
    assert_eq!(b.session.stalled(), Some(Stall::Inflater), "b waits, unread");
    assert_eq!(b.carry.len(), msg_b.len() - 80);
    assert!(b.sent.is_empty());
    // A message complete in one read needs no pooled inflater.
    let mut c = Harness::new(Session::new(&config, now));
    c.feed(&ctx, &request(Some(BROWSER)));
    c.sent.clear();
    c.feed(&ctx, &compressed(OpCode::Text, b"whole"));
    assert_eq!(view(&c.sent), vec![text("whole")]);
    // A finishes and gives the inflater back; b goes on.
    a.feed(&ctx, &msg_a[msg_a.len() - 80..]);
    assert_eq!(pool.lent(), 0);
    assert!(pool.available());
    b.feed(&ctx, &msg_b[msg_b.len() - 80..]);
    assert_eq!(b.session.stalled(), None);
    assert_eq!(view(&a.sent), vec![text(&text_a)]);
    assert_eq!(view(&b.sent), vec![text(&text_b)]);
    assert_eq!(pool.lent(), 0);
}

#[test]
fn a_connection_failed_mid_message_gives_its_inflater_back() {
    let config = deflate_config();
    let pool = Inflaters::new(1);
    let now = Instant::now();
    let ctx = Ctx { inflaters: &pool, ..crate::ws::harness::ctx(&config, now) };
    let mut a = Harness::new(Session::new(&config, now));
    a.feed(&ctx, &request(Some(BROWSER)));
    let z = deflate_message(&[5u8; 10_000]);
    a.feed(&ctx, &frame(false, true, OpCode::Binary, &z));
    assert_eq!(pool.lent(), 1);
    a.feed(&ctx, &frame(true, false, OpCode::Text, b"not a continuation"));
    assert!(a.session.is_closed());
    assert_eq!(pool.lent(), 0);
    // And one simply dropped gives it back through `release`.
    let mut b = Harness::new(Session::new(&config, now));
    b.feed(&ctx, &request(Some(BROWSER)));
    b.feed(&ctx, &frame(false, true, OpCode::Binary, &z));
    assert_eq!(pool.lent(), 1);
    b.session.release(&pool);
    assert_eq!(pool.lent(), 0);
}

#[test]
fn pong_reply_mode_answers_compressed_messages_uncompressed() {
    let config = Config { reply: Reply::fixed_text("Pong"), ..deflate_config() };
    let (out, _) = run_with(&config, Some(BROWSER), &frame(true, true, OpCode::Text, &HELLO), &[]);
    assert_eq!(out, b"\x81\x04Pong");
    let (out, _) = run_with(&config, Some(BROWSER), &frame(true, true, OpCode::Text, &[0xff, 0xff, 0xff]), &[]);
    assert_eq!(close_code(&out), Some(close::INVALID_PAYLOAD));
}

#[test]
fn the_handshake_answer_names_the_extension() {
    let config = deflate_config();
    let now = Instant::now();
    let ctx = crate::ws::harness::ctx(&config, now);
    let mut h = Harness::new(Session::new(&config, now));
    h.feed(&ctx, &request(Some(BROWSER)));
    let text = String::from_utf8(h.sent.clone()).unwrap();
    assert!(text.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n"), "{text}");
    assert_eq!(h.session.deflate(), Some(Echo::Passthrough));
    // Disabled: the offer is ignored.
    let config = Config::default();
    let ctx = crate::ws::harness::ctx(&config, now);
    let mut h = Harness::new(Session::new(&config, now));
    h.feed(&ctx, &request(Some(BROWSER)));
    assert!(!String::from_utf8_lossy(&h.sent).contains("Extensions"));
    assert_eq!(h.session.deflate(), None);
}
