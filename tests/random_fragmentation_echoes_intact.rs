//! Random traffic from an independent client (tokio-tungstenite), one
//! connection at a time and 32 at once: text and
//! binary messages of random sizes, cut into random fragments, with pings
//! between fragments, all sent back to back while the echoes are read. Every
//! message and every pong must come back intact and in order. Seeded, so a
//! failure names a reproducible case; each seed covers shapes no hand-written
//! case does (thousands of frames in one read, a header split across reads,
//! fragments of every size class).

mod common;

use common::{tokio_runtime, Server, IO_TIMEOUT};
use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// xorshift64*: small, deterministic, good enough to pick shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Mostly small, sometimes large: each size class about as likely.
    fn size(&mut self, max_log2: u32) -> usize {
        let bits = self.below(max_log2 as usize + 1) as u32;
        self.below(1 << bits) + self.below(2)
    }
}

/// What the client expects back, in order.
#[derive(Debug, PartialEq)]
enum Expect {
    Text(String),
    Binary(Vec<u8>),
    Pong(Vec<u8>),
}

/// One scripted connection: its frames to send and what must come back.
fn script(seed: u64) -> (Vec<Message>, Vec<Expect>) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (mut frames, mut expect) = (Vec::new(), Vec::new());
    let mut budget: usize = 3 << 20;
    let mut ping = 0u32;
    while budget > 0 {
        let len = rng.size(17).min(budget);
        budget -= len.max(1).min(budget);
        let text = rng.below(2) == 0;
        let payload: Vec<u8> = if text {
            let s: String = "aé✓𝄞".chars().cycle().skip(rng.below(4)).take(len).collect();
            s.into_bytes()
        } else {
            (0..len).map(|_| rng.next() as u8).collect()
        };
        // Cut into 1 to 64 fragments (tiny ones included), with a ping
        // between some of them (RFC 6455 §5.4: control frames may be
        // injected in the middle of a fragmented message).
        let pieces = 1 + rng.below(64).min(payload.len());
        let mut cuts: Vec<usize> = (0..pieces - 1).map(|_| rng.below(payload.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(payload.len());
        let mut start = 0;
        for (i, &end) in cuts.iter().enumerate() {
            let op = match (i, text) {
                (0, true) => OpCode::Data(Data::Text),
                (0, false) => OpCode::Data(Data::Binary),
                _ => OpCode::Data(Data::Continue),
            };
            frames.push(Message::Frame(Frame::message(payload[start..end].to_vec(), op, i + 1 == cuts.len())));
            start = end;
            let last = i + 1 == cuts.len();
            if !last && rng.below(8) == 0 {
                // Answered at once: the pong arrives before this message ends.
                ping += 1;
                let p = ping.to_be_bytes().to_vec();
                frames.push(Message::Ping(p.clone().into()));
                expect.push(Expect::Pong(p));
            }
        }
        expect.push(if text { Expect::Text(String::from_utf8(payload).unwrap()) } else { Expect::Binary(payload) });
    }
    (frames, expect)
}

/// One connection: sends seed's script while checking every echo.
async fn exchange(url: String, seed: u64) {
    let (frames, expect) = script(seed);
    let ws = common::ws_connect(&url).await;
    let (mut tx, mut rx) = ws.split();
    let send = async {
        for f in frames {
            tx.feed(f).await.unwrap();
        }
        tx.flush().await.unwrap();
    };
    let recv = async {
        for (i, want) in expect.iter().enumerate() {
            let got = timeout(IO_TIMEOUT, rx.next()).await.expect("echo timeout").unwrap().unwrap();
            let got = match got {
                Message::Text(t) => Expect::Text(t.as_str().to_owned()),
                Message::Binary(b) => Expect::Binary(b.to_vec()),
                Message::Pong(p) => Expect::Pong(p.to_vec()),
                other => panic!("seed {seed}, item {i}: unexpected {other:?}"),
            };
            assert!(got == *want, "seed {seed}, item {i}: echo differs from what was sent");
        }
    };
    tokio::join!(send, recv);
}

/// Runs seeds one connection after another against one server.
fn run(server: &Server, seeds: std::ops::Range<u64>) {
    let rt = tokio_runtime();
    for seed in seeds {
        rt.block_on(exchange(server.url(), seed));
    }
}

#[test]
fn random_traffic_echoes_intact_with_default_buffers() {
    run(&Server::start(&[]), 1..9);
}

#[test]
fn random_traffic_echoes_intact_with_small_buffers() {
    // Reads of a few KiB: frame headers, pings and UTF-8 sequences straddle
    // reads far more often.
    let server = Server::start(&["--read-buffer", "4K", "--uring-buffer-size", "4K"]);
    run(&server, 9..17);
}

#[test]
fn random_traffic_on_32_connections_at_once_echoes_intact() {
    // Connections interleave in the shard: reads, buffers and sends of one
    // must never show up in another.
    let server = Server::start(&[]);
    let local = tokio::task::LocalSet::new();
    let tasks: Vec<_> = (100..132).map(|seed| local.spawn_local(exchange(server.url(), seed))).collect();
    tokio_runtime().block_on(local.run_until(async {
        for t in tasks {
            t.await.unwrap();
        }
    }));
}
