//! A room with members that never read: they cost only themselves. Each
//! one's room output is bounded by `--room-backlog`; past it `--slow-member
//! drop` leaves messages out for that member alone (counted) and `close`
//! ends it with 1008 "too slow". The members that read get every message
//! whole and in order, and the server's memory stays bounded while 100
//! members take 32 MiB of 16 KiB messages each, 10 of them never reading
//! (it grows by under 16 MiB; under 2 MiB was seen).
//!
//! `make rooms-proof` runs the same at the full size
//! (`RICOCHET_ROOM_PROOF=full`): 1,000 members of which 100 never read, one
//! publisher sending 1 GiB of 16 KiB messages, every reader checking every
//! byte, under the same bound.

mod common;

use common::admin::{scrape, sum};
use common::{RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How big a run is: the test's size, or the full one (`make rooms-proof`).
struct Size {
    readers: usize,
    stalled: usize,
    messages: u64,
}

fn size() -> Size {
    match std::env::var("RICOCHET_ROOM_PROOF").as_deref() {
        // 1 GiB of 16 KiB messages to 999 members, 100 of them never reading.
        Ok("full") => Size { readers: 899, stalled: 100, messages: 65_536 },
        _ => Size { readers: 90, stalled: 10, messages: 2048 },
    }
}

const SIZE: usize = 16 * 1024;
/// Messages the publisher may be ahead of the slowest reader (the readers
/// say how far they got, as an application's acknowledgements would): 512
/// KiB, under a reader's 1 MiB backlog, so that no reader is ever slow
/// however the test's threads are scheduled.
const WINDOW: u64 = 32;
/// What the server may grow by while the messages go through (at either
/// size): the readers' backlogs, the stalled members' (1 MiB each at most,
/// of frames they share: under 2 MiB in all was seen), and the allocator's
/// slack. Everything copied per receiver would be hundreds of MiB.
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

fn message(seq: u64) -> Vec<u8> {
    let mut m = vec![0u8; SIZE];
    m[..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in m[8..].iter_mut().enumerate() {
        *b = (seq as usize * 7 + i) as u8;
    }
    m
}

fn seq_of(data: &[u8]) -> u64 {
    let seq = u64::from_be_bytes(data[..8].try_into().unwrap());
    assert!(data == message(seq).as_slice(), "message {seq} arrived damaged ({} bytes)", data.len());
    seq
}

/// What a stalled member got in the end: the sequence numbers, and its close code.
type Leftovers = (Vec<u64>, Option<u16>);

/// Runs the room under `policy`; returns what each stalled member got.
fn run(policy: &str) -> (Server, Vec<Leftovers>) {
    let Size { readers: n_readers, stalled: n_stalled, messages: n_messages } = size();
    let server = Server::start(&[
        "--reply",
        "room",
        "--shards",
        "2",
        "--metrics-listen",
        "127.0.0.1:0",
        "--slow-member",
        policy,
        "--room-backlog",
        "1MiB",
        // The publisher does not read while it sends: without this it would
        // be a slow member of its own room.
        "--room-exclude-sender",
        // Readers send nothing: at full size the run outlasts the idle
        // timeout, whose pings and close are not what this test is about.
        "--idle-timeout",
        "0",
        // A stalled member closed as too slow reads its 1008 only at the
        // end, minutes later at full size: past the default close timeout
        // the server would have hung up on it (as it should).
        "--close-timeout",
        "1h",
    ]);
    let admin = server.metrics.unwrap();
    let mut stalled: Vec<RawClient> = (0..n_stalled).map(|_| RawClient::open(server.addr)).collect();
    let readers: Vec<RawClient> = (0..n_readers).map(|_| RawClient::open(server.addr)).collect();
    let mut publisher = RawClient::open(server.addr);
    common::admin::wait_for(admin, "every member", |m| {
        sum(m, "ricochet_room_members", &[]) == (n_stalled + n_readers + 1) as f64
    });
    let base_kib = server.rss_kib();
    let peak_kib = Arc::new(AtomicU64::new(base_kib));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak_kib.clone(), done.clone(), server.pid());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let rss = ricochet::bench::pid_rss_kib(pid).unwrap_or(0);
                peak.fetch_max(rss, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..n_readers).map(|_| AtomicU64::new(0)).collect());
    let threads: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(k, mut c)| {
            let progress = progress.clone();
            std::thread::spawn(move || {
                for want in 0..n_messages {
                    match c.next_event() {
                        Some(Event::Message(OpCode::Binary, data)) => assert_eq!(seq_of(&data), want, "out of order"),
                        other => panic!("a reader got {other:?} when message {want} was due"),
                    }
                    progress[k].store(want + 1, Ordering::Release);
                }
            })
        })
        .collect();
    let slowest = || progress.iter().map(|p| p.load(Ordering::Acquire)).min().unwrap();
    for seq in 0..n_messages {
        let t0 = std::time::Instant::now();
        while seq - slowest() >= WINDOW {
            if t0.elapsed() > Duration::from_secs(5) {
                let m = scrape(admin);
                let rooms: Vec<_> = m.iter().filter(|(k, _)| k.contains("room")).collect();
                let lag: Vec<u64> = progress.iter().map(|p| p.load(Ordering::Acquire)).collect();
                panic!("stuck at {seq}: readers at {lag:?}\n{rooms:#?}\n{}", server.log());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        publisher.send(true, OpCode::Binary, &message(seq));
    }
    for t in threads {
        t.join().expect("every reader got every message whole and in order");
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let growth = peak_kib.load(Ordering::Relaxed).saturating_sub(base_kib);
    eprintln!(
        "{policy}: server RSS {base_kib} KiB at the start, at most {growth} KiB more while the messages went through"
    );
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "server RSS grew by {growth} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB) while {n_stalled} members never read"
    );
    // Now the stalled members read what they were left: with `drop`, they
    // say close themselves and get their backlog first.
    let got = stalled
        .iter_mut()
        .map(|c| {
            if policy == "drop" {
                c.send(true, OpCode::Close, &1000u16.to_be_bytes());
            }
            let mut seqs = Vec::new();
            loop {
                match c.next_event() {
                    Some(Event::Message(_, data)) => seqs.push(seq_of(&data)),
                    Some(Event::Close(code, _)) => return (seqs, code),
                    Some(_) => {}
                    None => return (seqs, None),
                }
            }
        })
        .collect();
    (server, got)
}

#[test]
fn drop_leaves_messages_out_for_the_slow_members_only() {
    let Size { readers: n_readers, stalled: n_stalled, messages: n_messages } = size();
    let (server, stalled) = run("drop");
    for (seqs, code) in &stalled {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "a subsequence, in order: {seqs:?}");
        assert!((seqs.len() as u64) < n_messages, "a member that never read missed some");
        assert_eq!(*code, Some(1000));
    }
    let m = scrape(server.metrics.unwrap());
    // Everyone but the sender receives each message.
    let members = (n_readers + n_stalled) as f64;
    let (published, delivered, dropped) = (
        sum(&m, "ricochet_room_messages_published_total", &[]),
        sum(&m, "ricochet_room_deliveries_total", &[]),
        sum(&m, "ricochet_room_drops_total", &[]),
    );
    assert_eq!(published, n_messages as f64);
    assert_eq!(delivered + dropped, published * members, "every delivery is made or counted as dropped");
    let got: usize = stalled.iter().map(|(s, _)| s.len()).sum();
    assert_eq!(
        dropped,
        (n_stalled as u64 * n_messages - got as u64) as f64,
        "the drops are the stalled members' missing messages, and only theirs"
    );
    assert_eq!(sum(&m, "ricochet_room_slow_closes_total", &[]), 0.0);
}

#[test]
fn close_ends_the_slow_members_with_1008() {
    let Size { stalled: n_stalled, .. } = size();
    let (server, stalled) = run("close");
    for (seqs, code) in &stalled {
        assert!(seqs.iter().enumerate().all(|(i, &s)| s == i as u64), "what came before the close is a prefix");
        assert_eq!(*code, Some(1008), "closed as too slow after {} messages", seqs.len());
    }
    let m = scrape(server.metrics.unwrap());
    assert_eq!(sum(&m, "ricochet_room_slow_closes_total", &[]), n_stalled as f64);
    assert_eq!(sum(&m, "ricochet_room_drops_total", &[]), 0.0);
}
