//! With permessage-deflate, a client that sends without reading is still
//! held back by TCP flow control, not by server buffers: compressed echoes
//! pass through as they came, and the fallback echo (which sends the
//! inflated bytes, up to about 1000 times the input) is produced only as
//! fast as the client reads. Then every message comes back intact.

mod common;

use common::{RawClient, Server};
use ricochet::ws::client::{deflate_message, Event};
use ricochet::ws::frame::OpCode;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Growth of the server's RSS allowed while the client is flooding.
const MAX_GROWTH_KIB: u64 = 8 * 1024;

/// Writes `frame` `count` times from another thread, counting bytes written.
fn flood(client: &RawClient, frame: Vec<u8>, count: usize) -> (std::thread::JoinHandle<()>, Arc<AtomicU64>) {
    let mut w = client.stream.tcp().try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let s = sent.clone();
    let h = std::thread::spawn(move || {
        for _ in 0..count {
            w.write_all(&frame).expect("write");
            s.fetch_add(frame.len() as u64, Ordering::Relaxed);
        }
    });
    (h, sent)
}

/// Waits until the writer has not moved for 800 ms (or is done); returns the bytes it wrote.
fn wait_until_still(sent: &AtomicU64, total: u64) -> u64 {
    let (mut last, mut since, t0) = (u64::MAX, Instant::now(), Instant::now());
    while since.elapsed() < Duration::from_millis(800) {
        assert!(t0.elapsed() < Duration::from_secs(30), "writer never stalled");
        std::thread::sleep(Duration::from_millis(50));
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if now == total {
            std::thread::sleep(Duration::from_millis(800));
            break;
        }
    }
    sent.load(Ordering::Relaxed)
}

fn masked_compressed(op: OpCode, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    ricochet::ws::client::encode_masked(&mut f, true, op, &deflate_message(data), [1, 2, 3, 4]);
    f[0] |= ricochet::ws::frame::RSV1_BIT;
    f
}

#[test]
fn compressed_flood_without_reading_is_held_back_and_passes_through() {
    // Not run over TLS: a TLS stream cannot be split between a writer and a
    // reader thread (tests/tls_backpressure_bounds_memory.rs covers TLS).
    let server = Server::start(&["--permessage-deflate"]);
    if server.is_tls() {
        return;
    }
    let (mut client, _) = RawClient::open_with_extensions(server.addr, "permessage-deflate; client_max_window_bits");
    let baseline = server.rss_kib();
    // 64 KiB of text that compresses about 3:1.
    let text: String = (0..16000u32).map(|i| format!("{} ", i.wrapping_mul(2654435761) % 10_000)).collect();
    let text = &text[..64 * 1024];
    let frame = masked_compressed(OpCode::Text, text.as_bytes());
    let count = 4000;
    let total = (frame.len() * count) as u64;
    let (writer, sent) = flood(&client, frame, count);
    let stalled_at = wait_until_still(&sent, total);
    let growth = server.rss_kib().saturating_sub(baseline);
    eprintln!("writer stalled after {} KiB of {} KiB; server RSS grew {growth} KiB", stalled_at / 1024, total / 1024);
    assert!(stalled_at < total / 4, "client was not held back: {stalled_at} bytes accepted");
    assert!(growth < MAX_GROWTH_KIB, "server RSS grew {growth} KiB while flooded");
    for i in 0..count {
        match client.next_event() {
            Some(Event::Message(OpCode::Text, got)) if got == text.as_bytes() => {}
            other => panic!("message {i}: {:?}", other.map(|e| format!("{e:?}").chars().take(80).collect::<String>())),
        }
    }
    writer.join().unwrap();
    let growth = server.rss_kib().saturating_sub(baseline);
    assert!(growth < MAX_GROWTH_KIB, "server RSS grew {growth} KiB");
}

#[test]
fn fallback_echo_of_bombs_is_produced_only_as_fast_as_it_is_read() {
    let server = Server::start(&["--permessage-deflate"]);
    if server.is_tls() {
        return;
    }
    // A server window below 15 without a client bound: the fallback echo.
    let (mut client, head) =
        RawClient::open_with_extensions(server.addr, "permessage-deflate; server_max_window_bits=10");
    assert!(head.contains("server_max_window_bits=10"), "{head}");
    let baseline = server.rss_kib();
    // 1 MiB of zeros is about 1 KiB compressed: 200 of them are 200 MiB to echo.
    let data = vec![0u8; 1 << 20];
    let frame = masked_compressed(OpCode::Binary, &data);
    assert!(frame.len() < 2048);
    let count = 200;
    let total = (frame.len() * count) as u64;
    let (writer, sent) = flood(&client, frame, count);
    let written = wait_until_still(&sent, total);
    let growth = server.rss_kib().saturating_sub(baseline);
    eprintln!("client wrote {} KiB of {} KiB; server RSS grew {growth} KiB", written / 1024, total / 1024);
    assert!(growth < MAX_GROWTH_KIB, "server RSS grew {growth} KiB with {} MiB to echo", count);
    for i in 0..count {
        match client.next_event() {
            Some(Event::Message(OpCode::Binary, got)) if got.len() == data.len() && got.iter().all(|&b| b == 0) => {}
            other => panic!("message {i}: {:?}", other.map(|e| format!("{e:?}").chars().take(80).collect::<String>())),
        }
    }
    writer.join().unwrap();
    let growth = server.rss_kib().saturating_sub(baseline);
    assert!(growth < MAX_GROWTH_KIB, "server RSS grew {growth} KiB");
}
