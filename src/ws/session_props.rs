//! Property: random messages, cut into random fragments with pings between
//! them, fed in random reads, come back as the same messages and pongs.

use super::*;
use crate::ws::client::{
    decode_server_frames, decode_server_frames_with, deflate_message, encode_masked, events, Event,
};
use crate::ws::harness::Harness;
use proptest::prelude::*;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[derive(Clone, Debug)]
struct Msg {
    text: bool,
    data: Vec<u8>,
    /// Fragment boundaries as fractions of the length.
    cuts: Vec<u16>,
    ping_after_first: Option<Vec<u8>>,
}

fn msg() -> impl Strategy<Value = Msg> {
    let text = ".{0,300}".prop_map(|s: String| (true, s.into_bytes()));
    let bin = prop::collection::vec(any::<u8>(), 0..3000).prop_map(|b| (false, b));
    (
        prop_oneof![text, bin],
        prop::collection::vec(any::<u16>(), 0..4),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..125)),
    )
        .prop_map(|((text, data), cuts, ping)| Msg { text, data, cuts, ping_after_first: ping })
}

/// Encodes the messages as masked client frames; returns the bytes and the
/// events a client should get back.
fn encode(msgs: &[Msg], key: [u8; 4]) -> (Vec<u8>, Vec<Event>) {
    encode_with(msgs, key, false)
}

/// [`encode`], each message compressed first if `deflate` (RFC 7692 §7.2.1,
/// no context takeover): the compressed bytes are what is fragmented.
fn encode_with(msgs: &[Msg], key: [u8; 4], deflate: bool) -> (Vec<u8>, Vec<Event>) {
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    for m in msgs {
        let payload = if deflate { deflate_message(&m.data) } else { m.data.clone() };
        let mut points: Vec<usize> = m.cuts.iter().map(|&c| c as usize * payload.len() / 65536).collect();
        points.sort_unstable();
        points.push(payload.len());
        let mut last = 0;
        for (i, &p) in points.iter().enumerate() {
            let op = match (i, m.text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            let fin = i + 1 == points.len();
            let at = wire.len();
            encode_masked(&mut wire, fin, op, &payload[last..p], key);
            if deflate && i == 0 {
                wire[at] |= crate::ws::frame::RSV1_BIT;
            }
            last = p;
            if fin {
                let op = if m.text { OpCode::Text } else { OpCode::Binary };
                expect.push(Event::Message(op, m.data.clone()));
            }
            if i == 0 {
                if let Some(ping) = &m.ping_after_first {
                    encode_masked(&mut wire, true, OpCode::Ping, ping, key);
                    expect.push(Event::Pong(ping.clone()));
                }
            }
        }
    }
    (wire, expect)
}

/// Feeds `wire` in reads of the sizes `reads` gives, cycling through them.
fn feed_in_reads(h: &mut Harness, ctx: &Ctx<'_>, wire: &[u8], reads: &[usize]) {
    let mut pos = 0;
    for r in reads.iter().cycle() {
        if pos >= wire.len() {
            break;
        }
        let end = (pos + r).min(wire.len());
        h.feed(ctx, &wire[pos..end]);
        pos = end;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn echoed_messages_equal_sent_ones(
        msgs in prop::collection::vec(msg(), 1..12),
        key in any::<[u8; 4]>(),
        reads in prop::collection::vec(1usize..2000, 1..40),
    ) {
        let config = Config::default();
        let now = Instant::now();
        let ctx = crate::ws::harness::ctx(&config, now);
        let (wire, expect) = encode(&msgs, key);
        let mut h = Harness::new(Session::new(&config, now));
        h.feed(&ctx, REQUEST);
        h.sent.clear();
        feed_in_reads(&mut h, &ctx, &wire, &reads);
        let (frames, used) = decode_server_frames(&h.sent).unwrap();
        prop_assert_eq!(used, h.sent.len());
        prop_assert_eq!(events(&frames), expect);
        prop_assert_eq!(h.total.messages, msgs.len() as u64);
        prop_assert!(h.carry.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Compressed messages, in random fragments and reads, with the
    /// passthrough echo or the fallback: every echo inflates to what was sent.
    #[test]
    fn compressed_echoes_inflate_to_sent_messages(
        msgs in prop::collection::vec(msg(), 1..10),
        key in any::<[u8; 4]>(),
        reads in prop::collection::vec(1usize..2000, 1..40),
        fallback in any::<bool>(),
    ) {
        let mut config = Config::default();
        config.handshake.permessage_deflate = true;
        let now = Instant::now();
        let ctx = crate::ws::harness::ctx(&config, now);
        let offer = if fallback { "server_max_window_bits=9" } else { "client_max_window_bits" };
        let request = String::from_utf8(REQUEST.to_vec()).unwrap().replace(
            "\r\n\r\n",
            &format!("\r\nSec-WebSocket-Extensions: permessage-deflate; {offer}\r\n\r\n"),
        );
        let (wire, expect) = encode_with(&msgs, key, true);
        let mut h = Harness::new(Session::new(&config, now));
        h.feed(&ctx, request.as_bytes());
        prop_assert!(h.sent.starts_with(b"HTTP/1.1 101"));
        h.sent.clear();
        feed_in_reads(&mut h, &ctx, &wire, &reads);
        let (frames, used) = decode_server_frames_with(&h.sent, true).unwrap();
        prop_assert_eq!(used, h.sent.len());
        prop_assert_eq!(frames.iter().any(|f| f.compressed), !fallback && !msgs.is_empty());
        prop_assert_eq!(events(&frames), expect);
        prop_assert_eq!(h.total.messages, msgs.len() as u64);
        prop_assert!(h.carry.is_empty());
        prop_assert_eq!(crate::ws::harness::inflaters().lent(), 0);
    }
}
