//! Micro-benchmarks of the protocol core (criterion):
//! - unmask throughput at 16 B, 1 KiB, 64 KiB next to `memcpy` of the same buffer;
//! - a session echoing 20 B, 1 KiB, 16 KiB and 64 KiB frames (one 64 KiB read's worth per call);
//! - parsing a browser's upgrade request;
//! - 1 KiB binary echo: this session next to fastwebsockets over an in-memory stream;
//! - permessage-deflate: 1 KiB and 16 KiB of text echoed compressed (passthrough,
//!   each message inflated once to check it) next to the same text uncompressed.
//!
//! Run with `make bench` (or `cargo bench --bench core`); compare the figures
//! as ratios within one run.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ricochet::ws::client::encode_masked;
use ricochet::ws::frame::OpCode;
use ricochet::ws::handshake::{parse_request, AdmitAll, HandshakePolicy};
use ricochet::ws::mask::apply_mask;
use ricochet::ws::{Config, Output, Session, HEADROOM};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: example.com:8080\r\nConnection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\nUpgrade: websocket\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [16usize, 1024, 65536] {
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0xabu8; size];
        g.bench_function(format!("apply_mask/{size}"), |b| b.iter(|| apply_mask(black_box(&mut buf), KEY, 1)));
        let src = vec![0xcdu8; size];
        let mut dst = vec![0u8; size];
        g.bench_function(format!("memcpy/{size}"), |b| b.iter(|| black_box(&mut dst).copy_from_slice(black_box(&src))));
    }
    g.finish();
}

/// A read's worth of masked binary frames of `size` bytes behind HEADROOM.
fn frames(size: usize) -> (Vec<u8>, u64) {
    let n = (65536 / (size + 14)).max(1);
    let payload = vec![0x5au8; size];
    let mut buf = vec![0u8; HEADROOM];
    for _ in 0..n {
        encode_masked(&mut buf, true, OpCode::Binary, &payload, KEY);
    }
    (buf, n as u64)
}

fn open_session(config: &Config) -> Session {
    let now = Instant::now();
    let mut s = Session::new(config, now);
    let mut buf = vec![0u8; HEADROOM];
    buf.extend_from_slice(REQUEST);
    let mut out = Output::new();
    s.handle_input(&ricochet::ws::harness::ctx(config, now), &mut buf, HEADROOM, &mut out);
    s
}

/// Times `iters` calls of `handle_input` over fresh copies of `template`
/// (the copying is not timed: one buffer is reused, as a shard reuses its own).
fn echo_iters(config: &Config, template: &[u8], n: u64, iters: u64) -> Duration {
    let mut session = open_session(config);
    let mut out = Output::new();
    let mut buf = template.to_vec();
    let mut total = Duration::ZERO;
    let now = Instant::now();
    for _ in 0..iters {
        buf.copy_from_slice(template);
        out.clear();
        let ctx = ricochet::ws::harness::ctx(config, now);
        let t0 = Instant::now();
        let p = session.handle_input(&ctx, black_box(&mut buf), HEADROOM, &mut out);
        total += t0.elapsed();
        assert_eq!(p.messages, n);
        black_box(out.len());
    }
    total
}

fn session_echo(c: &mut Criterion) {
    let config = Config::default();
    let mut g = c.benchmark_group("session_echo");
    for size in [20usize, 1024, 16384, 65536] {
        let (template, n) = frames(size);
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("{size}B"), |b| b.iter_custom(|iters| echo_iters(&config, &template, n, iters)));
    }
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let policy = HandshakePolicy::default();
    c.bench_function("handshake_parse", |b| b.iter(|| parse_request(black_box(REQUEST), &policy, &AdmitAll)));
}

/// An in-memory stream: reads hand out `input` in 64 KiB reads, writes are counted.
struct MemStream {
    input: std::sync::Arc<Vec<u8>>,
    pos: usize,
    written: usize,
}

impl AsyncRead for MemStream {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(65536).min(self.input.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.input[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.written += buf.len();
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Both sides echo the same read's worth of 1 KiB binary frames; each
/// iteration is one connection's worth of work for that read.
fn versus_fastwebsockets(c: &mut Criterion) {
    let (template, n) = frames(1024);
    let wire = std::sync::Arc::new(template[HEADROOM..].to_vec());
    let mut g = c.benchmark_group("echo_1KiB_vs");
    g.throughput(Throughput::Elements(n));
    let config = Config::default();
    g.bench_function("ricochet", |b| b.iter_custom(|iters| echo_iters(&config, &template, n, iters)));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    g.bench_function("fastwebsockets", |b| {
        b.iter_batched(
            || MemStream { input: wire.clone(), pos: 0, written: 0 },
            |stream| {
                rt.block_on(async {
                    let mut ws = fastwebsockets::WebSocket::after_handshake(stream, fastwebsockets::Role::Server);
                    ws.set_auto_close(true);
                    ws.set_auto_pong(true);
                    for _ in 0..n {
                        let f = ws.read_frame().await.unwrap();
                        ws.write_frame(f).await.unwrap();
                    }
                    black_box(ws.into_inner().written)
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// JSON-like text of `len` bytes (compresses about 3:1).
fn json_text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.extend_from_slice(format!("{{\"id\":{},\"name\":\"item-{}\",\"ok\":true}}\n", i >> 44, i >> 52).as_bytes());
    }
    out.truncate(len);
    out
}

/// A read's worth (up to 64 KiB) of masked text frames of `text`, compressed if `deflate`.
fn text_frames(text: &[u8], deflate: bool) -> (Vec<u8>, u64) {
    let payload = if deflate { ricochet::ws::client::deflate_message(text) } else { text.to_vec() };
    let n = (65536 / (payload.len() + 14)).max(1);
    let mut buf = vec![0u8; HEADROOM];
    for _ in 0..n {
        let at = buf.len();
        encode_masked(&mut buf, true, OpCode::Text, &payload, KEY);
        if deflate {
            buf[at] |= ricochet::ws::frame::RSV1_BIT;
        }
    }
    (buf, n as u64)
}

fn deflate_echo(c: &mut Criterion) {
    let plain = Config::default();
    let mut deflate = Config::default();
    deflate.handshake.permessage_deflate = true;
    let mut g = c.benchmark_group("deflate_echo");
    for size in [1024usize, 16384] {
        let text = json_text(size);
        for (name, config, compressed) in [("text", &plain, false), ("compressed", &deflate, true)] {
            let (template, n) = text_frames(&text, compressed);
            g.throughput(Throughput::Elements(n));
            g.bench_function(format!("{name}/{size}B"), |b| {
                b.iter_custom(|iters| echo_iters(config, &template, n, iters))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, unmask, session_echo, handshake, versus_fastwebsockets, deflate_echo);
criterion_main!(benches);
