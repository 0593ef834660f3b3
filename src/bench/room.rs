//! `ricochet bench --mode room`: rooms, with the load generator at both
//! ends. `--connections` members are spread over `--rooms` rooms (member k
//! joins room k mod R, on the path `URL/room-R`, or the URL's own path with
//! one room); the first `--publishers` members publish, closed loop (the
//! next message when the publisher's own copy comes back) or at `--rate`
//! messages per second in all. Every message carries its publisher, its
//! sequence number and its send time, so every member checks that each
//! message arrives whole, once and in its publisher's order, and measures
//! publish-to-delivery latency on one clock. Loss, duplicates, reordering
//! and damage are errors (exit 1). With `--also`, member k connects to
//! server k mod S of the S given (rooms linked by `serve --cluster`), and
//! deliveries that crossed servers get their own latency figures.

use super::window::{Turn, Window};
use super::{BenchArgs, BenchError, Percentiles, Report, Stream, Target};
use crate::ws::client::encode_masked;
use crate::ws::frame::{parse_header, HeaderStatus, OpCode};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bytes in front of every message: a marker, the publisher (u32), the
/// sequence number (u64) and the send time (u64 nanoseconds on the run's clock).
pub const HEAD: usize = 21;
const MARK: u8 = b'R';
/// How long members may take, after the window, to receive what was sent in it.
const DRAIN: Duration = Duration::from_secs(5);

/// The room layout of a run.
#[derive(Clone, Copy, Debug)]
struct Layout {
    members: usize,
    rooms: usize,
    publishers: usize,
}

impl Layout {
    fn room_of(&self, member: usize) -> usize {
        member % self.rooms
    }
    /// Publisher `p`'s place among its room's publishers.
    fn slot_of(&self, p: usize) -> usize {
        p / self.rooms
    }
    /// Publishers in room `r`.
    fn publishers_in(&self, r: usize) -> usize {
        (self.publishers + self.rooms - 1 - r) / self.rooms
    }
}

/// Byte `j` of publisher `p`'s message `seq` after the head.
fn filler(p: usize, seq: u64, j: usize) -> u8 {
    ((p as u64).wrapping_mul(31).wrapping_add(seq).wrapping_add(j as u64) % 251) as u8
}

fn message(p: usize, seq: u64, sent_ns: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.push(MARK);
    out.extend_from_slice(&(p as u32).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&sent_ns.to_be_bytes());
    out.extend((0..size - HEAD).map(|j| filler(p, seq, j)));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    Open,
    Failed,
}

struct Member {
    stream: Stream,
    phase: Phase,
    /// Which of the servers it is connected to.
    server: usize,
    room: usize,
    /// Its index among the publishers, if it publishes.
    publisher: Option<usize>,
    out: Vec<u8>,
    out_off: usize,
    input: Vec<u8>,
    /// A fragmented message being gathered.
    partial: Vec<u8>,
    /// Next sequence number due from each publisher of its room (by place).
    next: Vec<u64>,
    /// Publisher: messages sent; whether its last one came back (closed loop);
    /// when the next is due (open loop).
    sent: u64,
    waiting: bool,
    due: Option<Instant>,
    key: [u8; 4],
}

/// What one thread brings back: its latencies (same server, another
/// server), its counts, the deliveries its members never got, its members
/// that opened, its CPU seconds.
type ThreadOutcome = ([Histogram<u64>; 2], Counts, u64, usize, f64);

/// A thread's result before its CPU time is read: [`ThreadOutcome`] less the last.
type ThreadResult = ([Histogram<u64>; 2], Counts, u64, usize);

/// What one thread counted.
#[derive(Default)]
struct Counts {
    deliveries: u64,
    /// Of them, to a member on another server than its publisher's.
    remote: u64,
    wrong: u64,
    failed: u64,
}

/// Runs the room benchmark against `targets` (the URL, then `--also`'s);
/// the first one's path is the room (or their prefix) on every server.
pub(super) fn run(args: &BenchArgs, targets: &[Target], size: usize, duration: Duration) -> Result<Report, BenchError> {
    let size = size.max(HEAD);
    let layout = Layout {
        members: args.connections,
        rooms: args.rooms.clamp(1, args.connections),
        publishers: args.publishers.clamp(1, args.connections),
    };
    let threads = args.threads.clamp(1, layout.members);
    let window = Window::new(threads, &args.server_pid);
    let sent: Vec<AtomicU64> = (0..layout.publishers).map(|_| AtomicU64::new(0)).collect();
    let epoch = Instant::now();
    let results: Vec<Result<ThreadOutcome, BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (window, sent) = (&window, &sent);
                let cpu = (!args.cpu.is_empty()).then(|| args.cpu[t % args.cpu.len()]);
                s.spawn(move || {
                    if let Some(c) = cpu {
                        core_affinity::set_for_current(core_affinity::CoreId { id: c });
                    }
                    let mine: Vec<usize> = (t..layout.members).step_by(threads).collect();
                    let mut turn = Turn::new(window);
                    let r = thread(targets, args, layout, &mine, size, duration, epoch, sent, &mut turn);
                    turn.close();
                    r.map(|(h, c, missing, open)| (h, c, missing, open, turn.cpu_seconds()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread panicked")).collect()
    });
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut remote = Histogram::<u64>::new(3).expect("histogram");
    let mut report = Report { mode: "room".into(), message_bytes: size, ..Default::default() };
    let mut remote_deliveries = 0;
    for r in results {
        let ([h, hr], c, missing, open, cpu) = r?;
        hist.add(&h).expect("histogram add");
        remote.add(&hr).expect("histogram add");
        remote_deliveries += c.remote;
        report.messages += c.deliveries;
        report.mismatched_echoes += c.wrong;
        report.failed_connections += c.failed;
        report.missing_echoes += missing;
        report.connections += open;
        report.client_cpu_seconds += cpu;
    }
    let (seconds, server_cpu) = window.result();
    report.window_seconds = seconds;
    report.server_cpu_seconds = server_cpu;
    report.messages_per_second = report.messages as f64 / seconds.max(1e-9);
    report.published = Some(sent.iter().map(|s| s.load(Ordering::Relaxed)).sum());
    report.rooms = Some(layout.rooms);
    report.publishers = Some(layout.publishers);
    let percentiles = |h: &Histogram<u64>| {
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        Percentiles { p50: q(0.5), p90: q(0.9), p99: q(0.99), p99_9: q(0.999), max: h.max() as f64 / 1000.0 }
    };
    if !hist.is_empty() {
        report.latency_us = percentiles(&hist);
    }
    if targets.len() > 1 {
        report.remote_deliveries = Some(remote_deliveries);
        report.latency_remote_us = Some(if remote.is_empty() { Percentiles::default() } else { percentiles(&remote) });
    }
    Ok(report)
}

/// The path of room `r` (also idle mode's, with `--rooms`).
pub(super) fn room_path(base: &str, rooms: usize, r: usize) -> String {
    if rooms == 1 {
        base.to_string()
    } else if base.ends_with('/') {
        format!("{base}room-{r}")
    } else {
        format!("{base}/room-{r}")
    }
}

#[allow(clippy::too_many_arguments)]
fn thread(
    targets: &[Target],
    args: &BenchArgs,
    layout: Layout,
    mine: &[usize],
    size: usize,
    duration: Duration,
    epoch: Instant,
    sent: &[AtomicU64],
    turn: &mut Turn,
) -> Result<ThreadResult, BenchError> {
    let mut poll = Poll::new()?;
    let mut members = Vec::with_capacity(mine.len());
    for (i, &k) in mine.iter().enumerate() {
        let server = k % targets.len();
        let target = &targets[server];
        let std = std::net::TcpStream::connect(target.addr)
            .map_err(|source| BenchError::Connect { addr: target.addr, source })?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(std);
        poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        let room = layout.room_of(k);
        let key = (k as u32).wrapping_mul(0x9e37_79b9).to_be_bytes();
        let request = super::conn::request(
            &target.host,
            &room_path(&targets[0].path, layout.rooms, room),
            &super::conn::base64_key(k as u64),
            false,
            target.token.as_deref(),
        );
        members.push(Member {
            stream: target.stream(s)?,
            phase: Phase::Handshake,
            server,
            room,
            publisher: (k < layout.publishers).then_some(k),
            out: request.into_bytes(),
            out_off: 0,
            input: Vec::new(),
            partial: Vec::new(),
            next: vec![0; layout.publishers_in(room)],
            sent: 0,
            waiting: false,
            due: None,
            key,
        });
    }
    let mut counts = Counts::default();
    let mut hist = [Histogram::<u64>::new(3).expect("histogram"), Histogram::<u64>::new(3).expect("histogram")];
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 256 * 1024];
    let mut msg = Vec::with_capacity(size);
    // Handshakes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while members.iter().any(|m| m.phase == Phase::Handshake) && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let m = &mut members[ev.token().0];
            flush(m);
            if m.phase == Phase::Handshake {
                fill(m, &mut scratch);
                if let Some(end) = m.input.windows(4).position(|w| w == b"\r\n\r\n") {
                    m.phase = if m.input.starts_with(b"HTTP/1.1 101") { Phase::Open } else { Phase::Failed };
                    m.input.drain(..end + 4);
                }
            }
        }
    }
    for m in members.iter_mut().filter(|m| m.phase != Phase::Open) {
        m.phase = Phase::Failed;
        counts.failed += 1;
    }
    let open = members.iter().filter(|m| m.phase == Phase::Open).count();
    // Every member of every thread is in its room before anyone publishes.
    let t0 = turn.open();
    let end = t0 + duration;
    let interval = args.rate.map(|r| Duration::from_secs_f64(layout.publishers as f64 / r.max(1e-9)));
    if let Some(iv) = interval {
        for m in members.iter_mut() {
            if let Some(p) = m.publisher {
                // Publishers start spread over one interval.
                m.due = Some(t0 + iv.mul_f64(p as f64 / layout.publishers as f64));
            }
        }
    }
    let mut publishing = true;
    let mut drain_until = None;
    loop {
        let now = Instant::now();
        if publishing && now >= end {
            publishing = false;
            // Every thread stops publishing before the counts are final.
            turn.close();
            drain_until = Some(Instant::now() + DRAIN);
        }
        if publishing {
            for m in members.iter_mut().filter(|m| m.phase == Phase::Open) {
                let Some(p) = m.publisher else { continue };
                let (go, stamp) = match (interval, m.due) {
                    (Some(iv), Some(due)) if now >= due => {
                        m.due = Some(due + iv);
                        (true, due)
                    }
                    (None, _) if !m.waiting => (true, now),
                    _ => (false, now),
                };
                if go {
                    let ns = stamp.saturating_duration_since(epoch).as_nanos() as u64;
                    message(p, m.sent, ns, size, &mut msg);
                    encode_masked(&mut m.out, true, OpCode::Binary, &msg, m.key);
                    m.sent += 1;
                    m.waiting = true;
                    sent[p].store(m.sent, Ordering::Relaxed);
                    flush(m);
                }
            }
        }
        if let Some(until) = drain_until {
            let all_in = members.iter().filter(|m| m.phase == Phase::Open).all(|m| {
                (0..m.next.len()).all(|slot| m.next[slot] >= sent[slot * layout.rooms + m.room].load(Ordering::Relaxed))
            });
            if all_in || Instant::now() >= until {
                break;
            }
        }
        let timeout = if interval.is_some() && publishing { Duration::ZERO } else { Duration::from_millis(20) };
        poll.poll(&mut events, Some(timeout))?;
        let now = Instant::now();
        let in_window = publishing;
        for ev in events.iter() {
            let m = &mut members[ev.token().0];
            if m.phase != Phase::Open {
                continue;
            }
            flush(m);
            if !fill(m, &mut scratch) {
                m.phase = Phase::Failed;
                counts.failed += 1;
                continue;
            }
            let servers = targets.len();
            let mut c = Checker { layout, size, epoch, now, in_window, servers, hist: &mut hist, counts: &mut counts };
            receive(m, &mut c);
        }
    }
    // What never came: every publisher's messages each member of its room lacks.
    let mut missing = 0;
    for m in members.iter().filter(|m| m.phase == Phase::Open) {
        for slot in 0..m.next.len() {
            let p = slot * layout.rooms + m.room;
            missing += sent[p].load(Ordering::Relaxed).saturating_sub(m.next[slot]);
        }
    }
    Ok((hist, counts, missing, open))
}

/// Writes what the member has to send, until the socket would block.
fn flush(m: &mut Member) {
    while m.out_off < m.out.len() {
        match m.stream.write(&m.out[m.out_off..]) {
            Ok(0) => break,
            Ok(n) => m.out_off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if m.out_off == m.out.len() {
        m.out.clear();
        m.out_off = 0;
    }
}

/// Reads what the socket has; false when the connection ended.
fn fill(m: &mut Member, scratch: &mut [u8]) -> bool {
    loop {
        match m.stream.read(scratch) {
            Ok(0) => return false,
            Ok(n) => m.input.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// What checking a thread's messages needs: the layout, the message size,
/// the run's clock, whether the window is open, and where results go.
struct Checker<'a> {
    layout: Layout,
    size: usize,
    epoch: Instant,
    now: Instant,
    in_window: bool,
    /// How many servers the members are spread over.
    servers: usize,
    /// Latencies: same server as the publisher, another server.
    hist: &'a mut [Histogram<u64>; 2],
    counts: &'a mut Counts,
}

/// Takes the complete frames out of the member's input and checks each message.
fn receive(m: &mut Member, c: &mut Checker) {
    let mut pos = 0;
    while let Ok(HeaderStatus::Complete(h)) = parse_header(&m.input[pos..]) {
        let start = pos + h.header_len;
        let end = start + h.len as usize;
        if end > m.input.len() {
            break;
        }
        pos = end;
        match h.opcode {
            OpCode::Ping => {
                let payload = m.input[start..end].to_vec();
                encode_masked(&mut m.out, true, OpCode::Pong, &payload, m.key);
                flush(m);
                continue;
            }
            OpCode::Close => {
                m.phase = Phase::Failed;
                c.counts.failed += 1;
                break;
            }
            OpCode::Pong => continue,
            _ => {}
        }
        let whole = if h.fin && m.partial.is_empty() {
            None
        } else {
            m.partial.extend_from_slice(&m.input[start..end]);
            if !h.fin {
                continue;
            }
            Some(std::mem::take(&mut m.partial))
        };
        let Member { input, next, waiting, room, publisher, sent, server, .. } = m;
        let data = whole.as_deref().unwrap_or(&input[start..end]);
        let own = publisher.filter(|_| *waiting).map(|p| (p, *sent));
        if check(*room, *server, own, next, data, c) {
            *waiting = false;
        }
    }
    m.input.drain(..pos);
}

/// Checks one message a member of `room` on server `server` got; true
/// when it is the copy `own` (this member's publisher index and messages
/// sent) waits for.
fn check(
    room: usize,
    server: usize,
    own: Option<(usize, u64)>,
    next: &mut [u64],
    data: &[u8],
    c: &mut Checker,
) -> bool {
    let Checker { layout, size, epoch, now, in_window, servers, ref mut hist, ref mut counts } = *c;
    if data.len() != size || data[0] != MARK {
        counts.wrong += 1;
        return false;
    }
    let p = u32::from_be_bytes(data[1..5].try_into().expect("4 bytes")) as usize;
    let seq = u64::from_be_bytes(data[5..13].try_into().expect("8 bytes"));
    let sent_ns = u64::from_be_bytes(data[13..21].try_into().expect("8 bytes"));
    let damaged = data[HEAD..].iter().enumerate().any(|(j, &b)| b != filler(p, seq, j));
    if damaged || p >= layout.publishers || p % layout.rooms != room {
        counts.wrong += 1;
        return false;
    }
    let slot = layout.slot_of(p);
    if seq != next[slot] {
        // Early: some were lost or overtaken; late: a duplicate or reordered.
        counts.wrong += 1;
    }
    next[slot] = next[slot].max(seq + 1);
    if in_window {
        counts.deliveries += 1;
        // Publisher p is member p, on server p mod S.
        let crossed = p % servers != server;
        counts.remote += crossed as u64;
        let latency = now.saturating_duration_since(epoch).as_nanos() as u64;
        let _ = hist[crossed as usize].record(latency.saturating_sub(sent_ns).max(1));
    }
    own == Some((p, seq + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_publishers_are_spread_over_the_rooms() {
        let l = Layout { members: 10, rooms: 3, publishers: 4 };
        assert_eq!((0..10).map(|k| l.room_of(k)).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
        // Publishers 0 and 3 are in room 0, 1 in room 1, 2 in room 2.
        assert_eq!((l.publishers_in(0), l.publishers_in(1), l.publishers_in(2)), (2, 1, 1));
        assert_eq!((l.slot_of(0), l.slot_of(3), l.slot_of(1)), (0, 1, 0));
        assert_eq!(room_path("/chat", 3, 2), "/chat/room-2");
        assert_eq!(room_path("/", 3, 0), "/room-0");
        assert_eq!(room_path("/x", 1, 0), "/x");
    }

    #[test]
    fn a_message_carries_its_publisher_sequence_and_time() {
        let mut out = Vec::new();
        message(7, 42, 123_456, 64, &mut out);
        assert_eq!(out.len(), 64);
        assert_eq!(out[0], MARK);
        assert_eq!(u32::from_be_bytes(out[1..5].try_into().unwrap()), 7);
        assert_eq!(u64::from_be_bytes(out[5..13].try_into().unwrap()), 42);
        assert_eq!(u64::from_be_bytes(out[13..21].try_into().unwrap()), 123_456);
        assert_eq!(out[HEAD + 5], filler(7, 42, 5));
    }
}
