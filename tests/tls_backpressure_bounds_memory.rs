//! Over TLS as over plain TCP: a client that writes 128 MiB without reading
//! is held back by TCP flow control, the server's RSS grows by less than
//! 16 MiB, and once the client reads, every byte comes back intact.

mod common;

use common::{check_flood_echo, flood_pattern, tls, tokio_runtime};
use ricochet::ws::client::encode_masked;
use ricochet::ws::frame::OpCode;
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOTAL: u64 = 128 << 20;
const FRAME: usize = 64 * 1024;
const MAX_GROWTH_KIB: u64 = 16 * 1024;

#[test]
fn tls_flood_without_reading_is_held_back_and_fully_echoed() {
    let server = common::start_tls(&[]);
    let addr = server.addr;
    tokio_runtime().block_on(async {
        let connector = tokio_rustls::TlsConnector::from(tls::shared().0.client_config());
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut s = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap();
        s.write_all(common::upgrade_request("/").as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 101 "));
        let baseline = server.rss_kib();
        let (mut reader, mut writer) = tokio::io::split(s);
        let sent = Arc::new(AtomicU64::new(0));
        let sent_w = sent.clone();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let w = tokio::task::spawn_local(async move {
                    let mut payload = vec![0u8; FRAME];
                    let mut frame = Vec::with_capacity(FRAME + 14);
                    let mut off = 0u64;
                    while off < TOTAL {
                        flood_pattern(off, &mut payload);
                        frame.clear();
                        encode_masked(&mut frame, true, OpCode::Binary, &payload, [9, 8, 7, 6]);
                        writer.write_all(&frame).await.expect("write");
                        off += FRAME as u64;
                        sent_w.store(off, Ordering::Relaxed);
                    }
                    writer.flush().await.unwrap();
                    writer
                });
                // Phase 1: do not read. The writer must stall well short of 128 MiB.
                let (mut last, mut still_since, t0) = (0, Instant::now(), Instant::now());
                while still_since.elapsed() < Duration::from_millis(800) {
                    assert!(t0.elapsed() < Duration::from_secs(30), "writer never stalled");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let now = sent.load(Ordering::Relaxed);
                    if now != last {
                        (last, still_since) = (now, Instant::now());
                    }
                }
                let stalled_at = sent.load(Ordering::Relaxed);
                let growth = server.rss_kib().saturating_sub(baseline);
                eprintln!("TLS writer stalled after {} KiB; server RSS grew {growth} KiB", stalled_at / 1024);
                assert!(stalled_at < TOTAL / 2, "client was not held back: {stalled_at} bytes accepted");
                assert!(growth < MAX_GROWTH_KIB, "server RSS grew {growth} KiB while flooded");
                // Phase 2: read everything back, checking every byte.
                let mut buf = vec![0u8; 512 * 1024];
                let (mut have, mut got) = (0, 0u64);
                let mut expect = vec![0u8; 512 * 1024];
                let mut max_growth = growth;
                let mut reads = 0u64;
                while got < TOTAL {
                    let n = tokio::time::timeout(common::IO_TIMEOUT, reader.read(&mut buf[have..]))
                        .await
                        .expect("read timeout")
                        .expect("read");
                    assert!(n > 0, "connection closed after {got} bytes");
                    have += n;
                    (have, got) = check_flood_echo(&mut buf, have, got, &mut expect);
                    reads += 1;
                    if reads % 256 == 0 {
                        max_growth = max_growth.max(server.rss_kib().saturating_sub(baseline));
                    }
                }
                w.await.unwrap();
                eprintln!("echoed {} MiB intact over TLS; max server RSS growth {max_growth} KiB", got >> 20);
                assert!(max_growth < MAX_GROWTH_KIB, "server RSS grew {max_growth} KiB");
            })
            .await;
    });
}
