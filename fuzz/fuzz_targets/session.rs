//! Arbitrary bytes into a session, in arbitrary reads: never a panic, the
//! carried bytes stay within a request head or a control frame, and the
//! output never outgrows the input by more than 1/32 plus a response and a
//! close frame (with permessage-deflate's fallback echo, which sends the
//! inflated bytes, by more than DEFLATE's largest ratio). Half the inputs
//! negotiate permessage-deflate, so compressed frames are fuzzed too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ricochet::ws::harness::Harness;
use ricochet::ws::{Config, Ctx, Reply, Session};
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// The same with a permessage-deflate offer the passthrough echo serves.
const DEFLATE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
/// And one that needs the fallback echo.
const FALLBACK: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((&step, rest)) = rest.split_first() else { return };
    let mut config = Config {
        max_message_size: 4096,
        reply: if flags & 2 != 0 { Reply::fixed_text("Pong") } else { Reply::Echo },
        ..Config::default()
    };
    config.handshake.permessage_deflate = true;
    let (request, fallback) = match flags & 12 {
        0 | 4 => (REQUEST, false),
        8 => (DEFLATE, false),
        _ => (FALLBACK, true),
    };
    let t0 = Instant::now();
    let ctx = ricochet::ws::harness::ctx(&config, t0);
    let mut h = Harness::new(Session::new(&config, t0));
    // Most inputs skip the handshake so the fuzzer spends its time on frames.
    if flags & 1 == 0 {
        h.feed(&ctx, request);
        h.sent.clear();
    }
    let step = step as usize + 1;
    for piece in rest.chunks(step) {
        h.feed(&ctx, piece);
        assert!(h.carry.len() <= config.handshake.max_head_bytes.max(131), "carry {}", h.carry.len());
    }
    let later = Ctx { now: t0 + Duration::from_secs(3600), ..ctx };
    h.tick(&later);
    h.tick(&later);
    let most = if fallback { rest.len() * 1040 } else { rest.len() + rest.len() / 32 };
    assert!(h.sent.len() <= most + 512, "output {} for input {}", h.sent.len(), rest.len());
});
