//! A client that writes 1 GiB without reading is held back by TCP flow
//! control, not by server buffers: the server's RSS stays within a few MiB,
//! and once the client reads, every byte comes back intact and in order.

mod common;

use common::{check_flood_echo, flood_pattern, RawClient, Server};
use ricochet::ws::client::encode_masked;
use ricochet::ws::frame::OpCode;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOTAL: u64 = 1 << 30;
const FRAME: usize = 64 * 1024;
/// Growth of the server's RSS allowed while the client is flooding.
const MAX_GROWTH_KIB: u64 = 8 * 1024;

#[test]
fn flood_without_reading_is_held_back_and_fully_echoed() {
    let server = Server::start(&[]);
    let client = RawClient::open(server.addr);
    let baseline = server.rss_kib();
    let mut writer = client.stream.tcp().try_clone().unwrap();
    let mut reader = client.stream;
    let sent = Arc::new(AtomicU64::new(0));
    let sent_w = sent.clone();
    let w = std::thread::spawn(move || {
        let mut payload = vec![0u8; FRAME];
        let mut frame = Vec::with_capacity(FRAME + 14);
        let mut off = 0u64;
        while off < TOTAL {
            flood_pattern(off, &mut payload);
            frame.clear();
            encode_masked(&mut frame, true, OpCode::Binary, &payload, [9, 8, 7, 6]);
            writer.write_all(&frame).expect("write");
            off += FRAME as u64;
            sent_w.store(off, Ordering::Relaxed);
        }
    });

    // Phase 1: do not read. The writer must stall well short of 1 GiB.
    let mut last = 0;
    let mut still_since = Instant::now();
    let t0 = Instant::now();
    while still_since.elapsed() < Duration::from_millis(800) {
        assert!(t0.elapsed() < Duration::from_secs(30), "writer never stalled");
        std::thread::sleep(Duration::from_millis(50));
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    let stalled_at = sent.load(Ordering::Relaxed);
    let growth = server.rss_kib().saturating_sub(baseline);
    eprintln!("writer stalled after {} KiB; server RSS grew {growth} KiB", stalled_at / 1024);
    assert!(stalled_at < TOTAL / 8, "client was not held back: {stalled_at} bytes accepted");
    assert!(growth < MAX_GROWTH_KIB, "server RSS grew {growth} KiB while flooded");

    // Phase 2: read everything back, checking every byte and watching RSS.
    let mut buf = vec![0u8; 256 * 1024];
    let mut have = 0;
    let mut got = 0u64;
    let mut expect = vec![0u8; 256 * 1024];
    let mut max_growth = growth;
    let mut reads = 0u64;
    while got < TOTAL {
        let n = reader.read(&mut buf[have..]).expect("read");
        assert!(n > 0, "connection closed after {got} bytes");
        have += n;
        // Server frames are at most one read of the server's (128 KiB), so a
        // whole one always fits the buffer.
        (have, got) = check_flood_echo(&mut buf, have, got, &mut expect);
        reads += 1;
        if reads % 512 == 0 {
            max_growth = max_growth.max(server.rss_kib().saturating_sub(baseline));
        }
    }
    w.join().unwrap();
    eprintln!("echoed {} MiB intact; max server RSS growth {max_growth} KiB", got >> 20);
    assert_eq!(got, TOTAL);
    assert!(max_growth < MAX_GROWTH_KIB, "server RSS grew {max_growth} KiB");
}
