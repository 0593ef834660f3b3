//! One test per protocol rule. Each asserts the exact bytes or close code for
//! the input fed whole, and [`check`] also feeds it split at every byte
//! boundary and byte by byte: the client must see the same events.

use super::*;
use crate::ws::client::{decode_server_frames, encode_masked, events, Event};
use crate::ws::harness::Harness;
use std::time::Duration;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_masked(&mut v, fin, op, payload, KEY);
    v
}

fn raw(bytes: &[u8]) -> Vec<u8> {
    bytes.to_vec()
}

/// Feeds the handshake, then `pieces` of `input`; returns what was sent after the 101 and the harness.
fn run_with(config: &Config, input: &[u8], splits: &[usize]) -> (Vec<u8>, Harness) {
    run_request(config, REQUEST, input, splits, |sent| assert_eq!(sent, RESPONSE))
}

/// Feeds `request`, checks the answer with `answer`, then feeds `input` in
/// the pieces `splits` cut; returns what was sent after the answer, and the harness.
pub(super) fn run_request(
    config: &Config,
    request: &[u8],
    input: &[u8],
    splits: &[usize],
    answer: impl FnOnce(&[u8]),
) -> (Vec<u8>, Harness) {
    let now = Instant::now();
    let ctx = crate::ws::harness::ctx(config, now);
    let mut h = Harness::new(Session::new(config, now));
    h.feed(&ctx, request);
    answer(&h.sent);
    h.sent.clear();
    let mut last = 0;
    for &s in splits {
        h.feed(&ctx, &input[last..s]);
        last = s;
    }
    h.feed(&ctx, &input[last..]);
    (std::mem::take(&mut h.sent), h)
}

fn run(input: &[u8]) -> Vec<u8> {
    run_with(&Config::default(), input, &[]).0
}

fn client_view(sent: &[u8]) -> Vec<Event> {
    let (frames, used) = decode_server_frames(sent).expect("server output decodes");
    assert_eq!(used, sent.len(), "server output ends on a frame boundary");
    events(&frames)
}

/// Asserts that a split feed shows the client what the whole feed did. The
/// one allowed difference: when a failure cuts a message short, a split feed
/// may already have echoed more of its (valid) beginning, so its unfinished
/// message must start with the whole feed's.
fn assert_same_view(split: &[Event], whole: &[Event], what: &str) {
    let finished = |ev: &[Event]| -> Vec<Event> {
        ev.iter().filter(|e| !matches!(e, Event::Message(OpCode::Continuation, _))).cloned().collect()
    };
    let unfinished = |ev: &[Event]| -> Vec<u8> {
        ev.iter()
            .find_map(|e| match e {
                Event::Message(OpCode::Continuation, d) => Some(d.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    assert_eq!(finished(split), finished(whole), "{what}");
    assert!(unfinished(split).starts_with(&unfinished(whole)), "{what}");
}

/// Feeds `input` whole, at every 2-way split and byte by byte; returns the
/// whole-feed output after checking that every split gives the same events.
fn check_with(config: &Config, input: &[u8]) -> Vec<u8> {
    let (whole, h) = run_with(config, input, &[]);
    let expect = client_view(&whole);
    for i in 1..input.len() {
        let (out, hs) = run_with(config, input, &[i]);
        assert_same_view(&client_view(&out), &expect, &format!("split at {i}"));
        assert_eq!(hs.session.phase(), h.session.phase(), "split at {i}");
    }
    let every: Vec<usize> = (1..input.len()).collect();
    let (out, _) = run_with(config, input, &every);
    assert_same_view(&client_view(&out), &expect, "byte by byte");
    whole
}

fn check(input: &[u8]) -> Vec<u8> {
    check_with(&Config::default(), input)
}

fn close_code(sent: &[u8]) -> Option<u16> {
    client_view(sent).into_iter().find_map(|e| match e {
        Event::Close(code, _) => code,
        _ => None,
    })
}

/// Asserts that `input` fails the connection with `code`, also when split.
fn assert_fails(input: &[u8], code: u16) {
    let out = check(input);
    assert_eq!(close_code(&out), Some(code), "{:?}", client_view(&out));
    let (_, h) = run_with(&Config::default(), input, &[]);
    assert!(h.session.is_closed());
    assert!(h.total.error.is_some());
}

#[test]
fn handshake_split_at_every_byte_gives_the_same_101() {
    let config = Config::default();
    for i in 0..REQUEST.len() {
        let now = Instant::now();
        let ctx = crate::ws::harness::ctx(&config, now);
        let mut h = Harness::new(Session::new(&config, now));
        h.feed(&ctx, &REQUEST[..i]);
        assert!(h.sent.is_empty());
        h.feed(&ctx, &REQUEST[i..]);
        assert_eq!(h.sent, RESPONSE);
        assert_eq!(h.session.phase(), Phase::Open);
    }
}

#[test]
fn frames_after_the_request_in_the_same_read_are_echoed() {
    let config = Config::default();
    let now = Instant::now();
    let ctx = crate::ws::harness::ctx(&config, now);
    let mut h = Harness::new(Session::new(&config, now));
    let mut input = REQUEST.to_vec();
    input.extend(frame(true, OpCode::Text, b"early"));
    h.feed(&ctx, &input);
    let mut expect = RESPONSE.to_vec();
    expect.extend_from_slice(b"\x81\x05early");
    assert_eq!(h.sent, expect);
}

#[test]
fn text_frame_echoes_with_a_server_header_in_place() {
    assert_eq!(check(&frame(true, OpCode::Text, b"Hello")), b"\x81\x05Hello");
}

#[test]
fn each_length_encoding_echoes_exactly() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let out = run(&frame(true, OpCode::Binary, &payload));
        let mut expect = Vec::new();
        frame::encode_frame(&mut expect, true, OpCode::Binary, &payload);
        assert_eq!(out, expect, "len {len}");
    }
    // The split check on a mid-size frame (every boundary of a 65,536-byte frame would be slow).
    check(&frame(true, OpCode::Binary, &[7u8; 300]));
}

#[test]
fn fragments_echo_frame_by_frame_with_opcode_and_fin_as_received() {
    let mut input = frame(false, OpCode::Text, b"Hel");
    input.extend(frame(false, OpCode::Continuation, b"lo, "));
    input.extend(frame(true, OpCode::Continuation, b"world"));
    assert_eq!(check(&input), b"\x01\x03Hel\x00\x04lo, \x80\x05world");
}

#[test]
fn text_frame_split_across_reads_is_echoed_as_fragments_of_one_message() {
    let payload = "a".repeat(200);
    let input = frame(true, OpCode::Text, payload.as_bytes());
    // Header (8 bytes) and 100 payload bytes in the first read, 100 in the second.
    let (out, _) = run_with(&Config::default(), &input, &[108]);
    let mut expect = vec![0x01, 100];
    expect.extend_from_slice(&payload.as_bytes()[..100]);
    expect.extend_from_slice(&[0x80, 100]);
    expect.extend_from_slice(&payload.as_bytes()[100..]);
    assert_eq!(out, expect);
    assert_eq!(client_view(&out), vec![Event::Message(OpCode::Text, payload.into_bytes())]);
}

#[test]
fn binary_frames_echo_byte_identically_however_the_reads_fall() {
    let mut input = frame(false, OpCode::Binary, &[1u8; 300]);
    input.extend(frame(true, OpCode::Ping, b"p"));
    input.extend(frame(true, OpCode::Continuation, &[2u8; 70000]));
    let (whole, _) = run_with(&Config::default(), &input, &[]);
    for split in [1, 7, 8, 9, 100, 308, 309, 320, 40000, input.len() - 1] {
        let (out, _) = run_with(&Config::default(), &input, &[split]);
        assert_eq!(out, whole, "split at {split}");
    }
    let every: Vec<usize> = (1..input.len()).step_by(997).collect();
    assert_eq!(run_with(&Config::default(), &input, &every).0, whole);
}

#[test]
fn idle_timeout_inside_a_committed_frame_drops_without_a_close() {
    let config = Config { idle_timeout: Some(Duration::from_secs(10)), ..Config::default() };
    let t0 = Instant::now();
    let mut h = Harness::new(Session::new(&config, t0));
    h.feed(&at(&config, t0), REQUEST);
    let f = frame(true, OpCode::Binary, &[0u8; 1000]);
    h.feed(&at(&config, t0), &f[..500]);
    h.sent.clear();
    assert!(!h.tick(&at(&config, t0 + Duration::from_secs(5))), "no ping inside a frame");
    assert!(h.sent.is_empty());
    assert!(h.tick(&at(&config, t0 + Duration::from_secs(10))));
    assert!(h.sent.is_empty());
}

#[test]
fn small_pieces_wait_so_a_trickled_frame_is_not_amplified() {
    let payload = vec![9u8; 1000];
    let input = frame(true, OpCode::Binary, &payload);
    let every: Vec<usize> = (1..input.len()).collect();
    let (out, h) = run_with(&Config::default(), &input, &every);
    assert!(out.len() <= input.len() + input.len() / 32, "{} for {}", out.len(), input.len());
    assert_eq!(client_view(&out), vec![Event::Message(OpCode::Binary, payload)]);
    assert!(h.carry.is_empty());
}

#[test]
fn ping_is_answered_with_the_same_payload() {
    assert_eq!(check(&frame(true, OpCode::Ping, b"are you there")), b"\x8a\x0dare you there");
}

#[test]
fn ping_between_fragments_is_answered_in_place() {
    let mut input = frame(false, OpCode::Binary, b"a");
    input.extend(frame(true, OpCode::Ping, b"p"));
    input.extend(frame(true, OpCode::Continuation, b"b"));
    assert_eq!(check(&input), b"\x02\x01a\x8a\x01p\x80\x01b");
}

#[test]
fn unsolicited_pong_is_ignored() {
    assert_eq!(check(&frame(true, OpCode::Pong, b"x")), b"");
}

#[test]
fn close_is_answered_with_its_code_and_later_input_ignored() {
    let mut input = frame(true, OpCode::Close, b"\x03\xe8bye");
    input.extend(frame(true, OpCode::Text, b"after close"));
    assert_eq!(check(&input), b"\x88\x02\x03\xe8");
    let (_, h) = run_with(&Config::default(), &input, &[]);
    assert_eq!(h.session.phase(), Phase::Closed);
    assert!(h.session.close_handshake_done());
}

#[test]
fn failed_connection_is_closed_without_a_finished_handshake() {
    let (_, h) = run_with(&Config::default(), b"\x81\x02hi", &[]);
    assert!(h.session.is_closed());
    assert!(!h.session.close_handshake_done(), "a failed connection waits for the peer's FIN");
}

#[test]
fn empty_close_is_answered_with_1000() {
    assert_eq!(check(&frame(true, OpCode::Close, b"")), b"\x88\x02\x03\xe8");
}

#[test]
fn valid_close_codes_are_echoed() {
    for code in [1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
        let out = check(&frame(true, OpCode::Close, &code.to_be_bytes()));
        assert_eq!(close_code(&out), Some(code));
    }
}

#[test]
fn invalid_close_codes_and_one_byte_payloads_are_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
        assert_fails(&frame(true, OpCode::Close, &code.to_be_bytes()), 1002);
    }
    assert_fails(&frame(true, OpCode::Close, b"\x03"), 1002);
}

#[test]
fn close_reason_with_bad_utf8_is_1007() {
    assert_fails(
        &frame(true, OpCode::Close, b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),
        1007,
    );
}

#[test]
fn unmasked_client_frame_is_1002() {
    assert_fails(b"\x81\x05Hello", 1002);
}

#[test]
fn reserved_bits_are_1002() {
    for rsv in [0x40u8, 0x20, 0x10, 0x70] {
        let mut f = frame(true, OpCode::Text, b"x");
        f[0] |= rsv;
        assert_fails(&f, 1002);
    }
}

#[test]
fn reserved_opcodes_are_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        let mut f = frame(true, OpCode::Binary, b"x");
        f[0] = 0x80 | op;
        assert_fails(&f, 1002);
    }
}

#[test]
fn control_frame_over_125_bytes_is_1002() {
    assert_fails(&frame(true, OpCode::Ping, &[0u8; 126]), 1002);
}

#[test]
fn fragmented_control_frame_is_1002() {
    assert_fails(&frame(false, OpCode::Ping, b"x"), 1002);
}

#[test]
fn continuation_without_a_message_is_1002() {
    assert_fails(&frame(true, OpCode::Continuation, b"x"), 1002);
}

#[test]
fn new_message_inside_a_fragmented_one_is_1002() {
    let mut input = frame(false, OpCode::Text, b"a");
    input.extend(frame(true, OpCode::Binary, b"b"));
    let out = check(&input);
    assert_eq!(
        client_view(&out),
        vec![
            Event::Message(OpCode::Continuation, b"a".to_vec()),
            Event::Close(Some(1002), b"expected a continuation frame".to_vec())
        ]
    );
}

#[test]
fn length_with_top_bit_is_1002() {
    let mut f = raw(b"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00");
    f.extend_from_slice(&KEY);
    assert_fails(&f, 1002);
}

#[test]
fn frame_over_the_limit_is_1009_from_the_header_alone() {
    let config = Config { max_message_size: 1000, ..Config::default() };
    // Only the header of a 1001-byte frame: no payload has arrived.
    let f = frame(true, OpCode::Binary, &[0u8; 1001]);
    let header = &f[..8];
    let out = check_with(&config, header);
    assert_eq!(close_code(&out), Some(1009));
    // Exactly the limit is fine.
    let out = run_with(&config, &frame(true, OpCode::Binary, &[0u8; 1000]), &[]).0;
    assert_eq!(client_view(&out), vec![Event::Message(OpCode::Binary, vec![0u8; 1000])]);
}

#[test]
fn message_over_the_limit_across_fragments_is_1009() {
    let config = Config { max_message_size: 10, ..Config::default() };
    let mut input = frame(false, OpCode::Binary, b"123456");
    input.extend(frame(true, OpCode::Continuation, b"78901"));
    let out = check_with(&config, &input);
    assert_eq!(out, b"\x02\x06123456\x88\x11\x03\xf1message too big");
}

#[test]
fn invalid_utf8_is_1007_and_the_bad_frame_is_not_echoed() {
    let mut input = frame(false, OpCode::Text, b"ok ");
    input.extend(frame(true, OpCode::Continuation, b"\xf4\x90\x80\x80 rest"));
    let out = check(&input);
    assert_eq!(
        client_view(&out),
        vec![
            Event::Message(OpCode::Continuation, b"ok ".to_vec()),
            Event::Close(Some(1007), b"invalid UTF-8".to_vec())
        ]
    );
}

#[test]
fn invalid_utf8_fails_before_the_rest_of_the_frame_arrives() {
    // Only part of a 100-byte frame, invalid at its 4th byte (a piece too
    // small to echo yet is still checked at once).
    let mut payload = b"abc\xc0\xaf".to_vec();
    payload.resize(100, b'x');
    let f = frame(true, OpCode::Text, &payload);
    let out = check(&f[..6 + 10]);
    assert_eq!(close_code(&out), Some(1007));
}

#[test]
fn message_ending_inside_a_code_point_is_1007() {
    let mut input = frame(false, OpCode::Text, b"\xe2\x82");
    input.extend(frame(true, OpCode::Continuation, b""));
    assert_fails(&input, 1007);
}

#[test]
fn code_point_split_across_fragments_is_valid() {
    let mut input = frame(false, OpCode::Text, b"\xe2\x82");
    input.extend(frame(true, OpCode::Continuation, b"\xac"));
    assert_eq!(client_view(&check(&input)), vec![Event::Message(OpCode::Text, "€".into())]);
}

#[test]
fn fixed_reply_answers_each_complete_message() {
    let config = Config { reply: Reply::fixed_text("Pong"), ..Config::default() };
    let mut input = frame(false, OpCode::Text, b"Pi");
    input.extend(frame(true, OpCode::Continuation, b"ng"));
    input.extend(frame(true, OpCode::Binary, b"x"));
    assert_eq!(check_with(&config, &input), b"\x81\x04Pong\x81\x04Pong");
}

#[test]
fn messages_are_counted() {
    let mut input = frame(true, OpCode::Text, b"a");
    input.extend(frame(false, OpCode::Binary, b"b"));
    input.extend(frame(true, OpCode::Continuation, b"c"));
    let (_, h) = run_with(&Config::default(), &input, &[]);
    assert_eq!(h.total.messages, 2);
}

fn at(config: &Config, now: Instant) -> Ctx<'_> {
    crate::ws::harness::ctx(config, now)
}

#[test]
fn slow_handshake_gets_408_then_is_dropped() {
    let config = Config::default();
    let t0 = Instant::now();
    let mut h = Harness::new(Session::new(&config, t0));
    h.feed(&at(&config, t0), b"GET / HT");
    assert_eq!(h.session.poll_timeout(&config), Some(t0 + config.handshake_timeout));
    assert!(!h.tick(&at(&config, t0 + Duration::from_secs(9))));
    assert!(h.sent.is_empty());
    let t1 = t0 + config.handshake_timeout;
    assert!(!h.tick(&at(&config, t1)));
    assert!(h.sent.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
    assert!(h.session.is_closed());
    assert!(h.tick(&at(&config, t1 + config.close_timeout)));
}

#[test]
fn idle_connection_gets_a_ping_then_close_1000() {
    let config = Config { idle_timeout: Some(Duration::from_secs(10)), ..Config::default() };
    let t0 = Instant::now();
    let mut h = Harness::new(Session::new(&config, t0));
    h.feed(&at(&config, t0), REQUEST);
    h.sent.clear();
    assert_eq!(h.session.poll_timeout(&config), Some(t0 + Duration::from_secs(5)));
    h.tick(&at(&config, t0 + Duration::from_secs(5)));
    assert_eq!(h.sent, b"\x89\x00");
    h.sent.clear();
    assert_eq!(h.session.poll_timeout(&config), Some(t0 + Duration::from_secs(10)));
    h.tick(&at(&config, t0 + Duration::from_secs(10)));
    assert_eq!(close_code(&h.sent), Some(1000));
    assert_eq!(h.session.phase(), Phase::CloseSent);
    // The client never answers the close: dropped after the close timeout.
    assert!(h.tick(&at(&config, t0 + Duration::from_secs(10) + config.close_timeout)));
}

#[test]
fn input_postpones_the_idle_timeout() {
    let config = Config { idle_timeout: Some(Duration::from_secs(10)), ..Config::default() };
    let t0 = Instant::now();
    let mut h = Harness::new(Session::new(&config, t0));
    h.feed(&at(&config, t0), REQUEST);
    h.feed(&at(&config, t0 + Duration::from_secs(8)), &frame(true, OpCode::Pong, b""));
    assert_eq!(h.session.poll_timeout(&config), Some(t0 + Duration::from_secs(13)));
}

#[test]
fn server_close_waits_for_the_message_in_progress() {
    let config = Config::default();
    let t0 = Instant::now();
    let ctx = at(&config, t0);
    let mut h = Harness::new(Session::new(&config, t0));
    h.feed(&ctx, REQUEST);
    h.sent.clear();
    h.feed(&ctx, &frame(false, OpCode::Text, b"first "));
    h.close(&ctx, close::GOING_AWAY);
    assert_eq!(h.sent, b"\x01\x06first ");
    h.feed(&ctx, &frame(true, OpCode::Continuation, b"half"));
    assert_eq!(
        client_view(&h.sent),
        vec![
            Event::Message(OpCode::Text, b"first half".to_vec()),
            Event::Close(Some(1001), b"server shutting down".to_vec())
        ]
    );
    assert_eq!(h.session.phase(), Phase::CloseSent);
    // Data after our close is not echoed; the client's close ends it.
    h.sent.clear();
    let mut tail = frame(true, OpCode::Text, b"late");
    tail.extend(frame(true, OpCode::Close, b"\x03\xe9"));
    h.feed(&ctx, &tail);
    assert!(h.sent.is_empty());
    assert!(h.session.is_closed());
}

#[test]
fn shutdown_during_handshake_is_503() {
    let config = Config::default();
    let t0 = Instant::now();
    let mut h = Harness::new(Session::new(&config, t0));
    h.close(&at(&config, t0), close::GOING_AWAY);
    assert!(h.sent.starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"));
}

#[test]
fn rejected_handshake_closes_and_ignores_the_rest() {
    let config = Config::default();
    let t0 = Instant::now();
    let mut h = Harness::new(Session::new(&config, t0));
    h.feed(&at(&config, t0), b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03");
    assert!(h.sent.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{}", String::from_utf8_lossy(&h.sent));
    assert_eq!(h.total.rejected.map(|r| r.status().0), Some(400));
    assert!(h.session.is_closed());
    assert!(h.carry.is_empty());
}

#[test]
fn carry_is_bounded_by_a_header_or_a_control_frame() {
    // A partial data header leaves at most 13 bytes; a partial control frame at most 130.
    let f = frame(true, OpCode::Binary, &vec![1u8; 70000]);
    let (_, h) = run_with(&Config::default(), &f[..13], &[]);
    assert_eq!(h.carry.len(), 13);
    let p = frame(true, OpCode::Ping, &[2u8; 125]);
    let (_, h) = run_with(&Config::default(), &p[..130], &[]);
    assert_eq!(h.carry.len(), 130);
    // Text payload is carried only in pieces under MIN_PIECE, still masked.
    let (_, h) = run_with(&Config::default(), &f[..20000], &[]);
    assert!(h.carry.is_empty());
    let (_, h) = run_with(&Config::default(), &f[..14 + MIN_PIECE - 1], &[]);
    assert!(h.carry.is_empty(), "binary payload streams: never carried");
    let t = frame(true, OpCode::Text, &vec![b'a'; 70000]);
    let (_, h) = run_with(&Config::default(), &t[..14 + MIN_PIECE - 1], &[]);
    assert_eq!(h.carry, &t[14..14 + MIN_PIECE - 1]);
}

#[test]
fn a_budget_stops_at_a_frame_boundary_and_the_rest_waits_in_the_carry() {
    let config = Config::default();
    let now = Instant::now();
    let mut h = Harness::new(Session::new(&config, now));
    h.feed(&crate::ws::harness::ctx(&config, now), REQUEST);
    h.sent.clear();
    let wire: Vec<u8> = (0..5).flat_map(|k| frame(true, OpCode::Text, format!("m{k}").as_bytes())).collect();
    // Two messages allowed: the third frame is not even looked at.
    let tight = Ctx { budget: Budget { messages: 2, bytes: u64::MAX }, ..crate::ws::harness::ctx(&config, now) };
    h.feed_once(&tight, &wire);
    assert_eq!(h.session.stalled(), Some(Stall::Budget));
    assert_eq!(h.total.messages, 2);
    assert_eq!(h.carry, wire[2 * 8..], "three frames of 8 bytes wait");
    // Bytes: a frame starts while any are left, so 9 bytes let two through.
    let bytes = Ctx { budget: Budget { messages: u64::MAX, bytes: 9 }, ..crate::ws::harness::ctx(&config, now) };
    h.feed_once(&bytes, &[]);
    assert_eq!((h.total.messages, h.session.stalled()), (4, Some(Stall::Budget)));
    h.feed_once(&crate::ws::harness::ctx(&config, now), &[]);
    assert_eq!((h.total.messages, h.session.stalled()), (5, None));
    let (frames, _) = decode_server_frames(&h.sent).unwrap();
    let texts: Vec<Vec<u8>> = events(&frames)
        .into_iter()
        .map(|e| match e {
            Event::Message(OpCode::Text, t) => t,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, (0..5).map(|k| format!("m{k}").into_bytes()).collect::<Vec<_>>());
}
