//! `ricochet bench`: a load generator built on the client side of the core.
//!
//! Closed loop: each connection keeps `--pipeline` messages in flight and
//! sends the next as each echo returns, checking every echoed byte. Latency
//! goes into an HDR histogram. The client reports its own CPU time per
//! message and, given `--server-pid`, the server's, so a run says which side
//! was the bottleneck. `--mode idle` opens connections and holds them (for
//! memory per connection).

pub mod conn;
pub mod progress;

use crate::server::config::{parse_duration, parse_size};
use clap::{Args, ValueEnum};
use conn::{Conn, Errors, State};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use progress::Progress;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};
use thiserror::Error;

/// What the load generator does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Closed-loop echo: send, wait for the echo, send again.
    Echo,
    /// Open the connections and hold them idle for the duration.
    Idle,
    /// New connections and handshakes per second: each of the connections
    /// connects, upgrades, closes, and starts over.
    Connect,
}

/// `ricochet bench` flags.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Server URL, e.g. ws://127.0.0.1:8080/, or tcp://127.0.0.1:9000 for a raw TCP echo (same bytes, no WebSocket)
    pub url: String,
    /// Connections to open
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Message size, e.g. 20, 1K, 64KiB
    #[arg(long, default_value = "20")]
    pub size: String,
    /// How long to measure, e.g. 10s
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Messages in flight per connection
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// echo: closed-loop messages; idle: hold connections open
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Client threads, each with its own event loop and share of the connections
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// CPUs to pin client threads to, e.g. 1 or 2,3 (thread i gets the i-th, round robin)
    #[arg(long, value_delimiter = ',')]
    pub cpu: Vec<usize>,
    /// The server's process id: report its CPU time (and RSS in idle mode) next to the client's
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Open loop: send this many messages per second in all (instead of as fast as echoes return);
    /// latency is measured from each message's intended send time, so stalls are not hidden
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Why a run could not be done or failed.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The URL is not ws://HOST:PORT/PATH or tcp://HOST:PORT.
    #[error("invalid URL {0:?}: expected ws://HOST:PORT/PATH or tcp://HOST:PORT")]
    Url(String),
    /// Raw mode needs messages of at least one byte.
    #[error("a raw TCP echo needs --size of at least 1")]
    RawEmpty,
    /// A setting is invalid.
    #[error(transparent)]
    Setting(#[from] crate::server::config::ConfigError),
    /// Connecting failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The event loop failed.
    #[error("event loop: {0}")]
    Io(#[from] std::io::Error),
}

/// What a run measured.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// echo, idle or connect.
    pub mode: String,
    /// Echoes completed and checked (handshakes completed, in connect mode).
    pub messages: u64,
    /// Measured wall time.
    pub seconds: f64,
    /// Message size in bytes.
    pub size: usize,
    /// Latency percentiles in microseconds: p50, p90, p99, p99.9, max.
    pub latency_us: [f64; 5],
    /// Echoes whose bytes or type differ from what was sent.
    pub mismatched: u64,
    /// Messages never echoed.
    pub missing: u64,
    /// Connections that failed.
    pub failed: u64,
    /// Client CPU seconds over the run.
    pub client_cpu: f64,
    /// Server CPU seconds over the run, when its pid was given.
    pub server_cpu: Option<f64>,
    /// Server RSS in KiB before and after opening the connections (idle mode).
    pub server_rss_kib: Option<(u64, u64)>,
    /// Connections established.
    pub connected: usize,
}

impl Report {
    /// True when every echo was right and no connection failed.
    pub fn clean(&self) -> bool {
        self.mismatched == 0 && self.failed == 0 && self.missing == 0
    }
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    raw: bool,
}

fn parse_url(url: &str) -> Result<Target, BenchError> {
    let (raw, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("tcp://")) {
        (Some(r), _) => (false, r),
        (None, Some(r)) => (true, r),
        _ => return Err(BenchError::Url(url.into())),
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = hostport.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| BenchError::Url(url.into()))?;
    Ok(Target { addr, host: hostport.into(), path: path.into(), raw })
}

/// Runs the benchmark described by `args`.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let target = parse_url(&args.url)?;
    let size = parse_size("size", &args.size, 0, 64 << 20)?;
    if target.raw && size == 0 && args.mode == Mode::Echo {
        return Err(BenchError::RawEmpty);
    }
    let duration = parse_duration("duration", &args.duration, false)?;
    // Idle runs hold many sockets.
    crate::tune::raise_nofile_limit();
    let threads = args.threads.clamp(1, args.connections.max(1));
    let cpu0 = process_cpu_seconds();
    let srv0 = args.server_pid.and_then(pid_cpu_seconds);
    let rss0 = args.server_pid.and_then(pid_rss_kib);
    let t0 = Instant::now();
    let progress = Progress::new(duration, !args.json);
    let results: Vec<Result<ThreadResult, BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = args.connections / threads + usize::from(t < args.connections % threads);
                let cpu = (!args.cpu.is_empty()).then(|| args.cpu[t % args.cpu.len()]);
                let target = &target;
                let progress = &progress;
                s.spawn(move || {
                    if let Some(c) = cpu {
                        core_affinity::set_for_current(core_affinity::CoreId { id: c });
                    }
                    let plan = Plan {
                        conns: n,
                        first_id: t as u64 * 1_000_000,
                        size,
                        pipeline: args.pipeline.max(1),
                        rate: args.rate.map(|r| r / threads as f64),
                        progress,
                    };
                    match args.mode {
                        Mode::Echo => run_echo(target, &plan, duration),
                        Mode::Idle => run_idle(target, &plan, duration, args.server_pid),
                        Mode::Connect => run_connect(target, &plan, duration),
                    }
                })
            })
            .collect::<Vec<_>>();
        while !handles.iter().all(|h| h.is_finished()) {
            progress.tick();
            std::thread::sleep(Duration::from_millis(100));
        }
        handles.into_iter().map(|h| h.join().expect("bench thread panicked")).collect()
    });
    progress.finish();
    let seconds = t0.elapsed().as_secs_f64();
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mode = format!("{:?}", args.mode).to_lowercase();
    let mut report = Report { size, mode, ..Default::default() };
    let mut measured = 0.0f64;
    for r in results {
        let r = r?;
        hist.add(&r.hist).expect("histogram add");
        report.messages += r.messages;
        report.mismatched += r.errors.mismatched;
        report.failed += r.errors.failed;
        report.missing += r.errors.missing;
        report.connected += r.connected;
        measured = measured.max(r.seconds);
        if let Some(rss) = r.rss_kib {
            report.server_rss_kib = Some((rss0.unwrap_or(0), rss));
        }
    }
    report.seconds = if measured > 0.0 { measured } else { seconds };
    if !hist.is_empty() {
        let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
        report.latency_us = [q(0.5), q(0.9), q(0.99), q(0.999), hist.max() as f64 / 1000.0];
    }
    report.client_cpu = process_cpu_seconds() - cpu0;
    report.server_cpu = match (srv0, args.server_pid.and_then(pid_cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(report)
}

struct Plan<'a> {
    conns: usize,
    first_id: u64,
    size: usize,
    pipeline: usize,
    /// Open loop: messages per second for this thread.
    rate: Option<f64>,
    progress: &'a Progress,
}

struct ThreadResult {
    hist: Histogram<u64>,
    messages: u64,
    errors: Errors,
    seconds: f64,
    connected: usize,
    rss_kib: Option<u64>,
}

/// Handshakes in flight at once while opening connections. More would only
/// overflow a slow server's accept queue (Rust's std and tokio listen with a
/// backlog of 128), and each dropped SYN costs a one-second retransmit:
/// tokio-tungstenite took 21 s for 10,000 connections with 256 in flight and
/// 3 s with 64.
const HANDSHAKES_IN_FLIGHT: usize = 64;

/// Opens `plan.conns` connections and completes their handshakes.
fn open_all(
    target: &Target,
    plan: &Plan,
    poll: &mut Poll,
    errors: &mut Errors,
) -> Result<Vec<Conn<TcpStream>>, BenchError> {
    let mut conns = Vec::with_capacity(plan.conns);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events = Events::with_capacity(1024);
    let mut opening = 0usize;
    let registry = poll.registry().try_clone()?;
    // Waits for events once and moves finished handshakes on.
    let mut turn = |conns: &mut Vec<Conn<TcpStream>>, opening: &mut usize, errors: &mut Errors| -> io::Result<()> {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.state == State::Handshake {
                let _ = c.flush();
                if !c.read(errors, |_| {})? && c.state != State::Running {
                    c.state = State::Done;
                    errors.failed += 1;
                }
                if c.state != State::Handshake {
                    *opening -= 1;
                }
                if c.state == State::Running {
                    plan.progress.add_connected();
                }
            }
        }
        Ok(())
    };
    for i in 0..plan.conns {
        while opening >= HANDSHAKES_IN_FLIGHT && Instant::now() < deadline {
            turn(&mut conns, &mut opening, errors)?;
        }
        let std = std::net::TcpStream::connect(target.addr)
            .map_err(|source| BenchError::Connect { addr: target.addr, source })?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(std);
        registry.register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        let mut c = Conn::new(s, plan.first_id + i as u64, &target.host, &target.path, plan.size, target.raw);
        c.flush()?;
        if c.state == State::Handshake {
            opening += 1;
        } else {
            plan.progress.add_connected();
        }
        conns.push(c);
    }
    while opening > 0 && Instant::now() < deadline {
        turn(&mut conns, &mut opening, errors)?;
    }
    for c in conns.iter_mut().filter(|c| c.state == State::Handshake) {
        c.state = State::Done;
        errors.failed += 1;
    }
    Ok(conns)
}

fn run_echo(target: &Target, plan: &Plan, duration: Duration) -> Result<ThreadResult, BenchError> {
    let mut poll = Poll::new()?;
    let mut errors = Errors::default();
    let mut conns = open_all(target, plan, &mut poll, &mut errors)?;
    let connected = conns.iter().filter(|c| c.state == State::Running).count();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut messages = 0u64;
    let t0 = Instant::now();
    plan.progress.start_measuring(t0);
    let end = t0 + duration;
    if plan.rate.is_none() {
        for c in conns.iter_mut().filter(|c| c.state == State::Running) {
            for _ in 0..plan.pipeline {
                c.queue_message(t0);
            }
            c.flush()?;
        }
    }
    // Open loop: the intended time of the next message, and the gap between them.
    let interval = plan.rate.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-3)));
    let mut next_at = t0;
    let mut rr = 0usize;
    let mut events = Events::with_capacity(1024);
    let mut sending = true;
    let drain_until = end + Duration::from_secs(2);
    loop {
        let now = Instant::now();
        if sending && now >= end {
            sending = false;
        }
        if !sending && (now >= drain_until || conns.iter().all(|c| c.in_flight() == 0 || c.state == State::Done)) {
            break;
        }
        let mut timeout = Duration::from_millis(50);
        if let (Some(gap), true) = (interval, sending) {
            // Send every message whose time has come, stamped with that time:
            // a stalled server then shows as latency, not as fewer samples.
            while next_at <= now && next_at < end {
                if conns.is_empty() {
                    break;
                }
                let n = conns.len();
                let c = &mut conns[rr % n];
                rr += 1;
                if c.state == State::Running {
                    c.queue_message(next_at);
                    if c.flush().is_err() {
                        c.state = State::Done;
                        errors.failed += 1;
                    }
                }
                next_at += gap;
            }
            timeout = timeout.min(next_at.saturating_duration_since(now));
        }
        poll.poll(&mut events, Some(timeout))?;
        let before = messages;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.state != State::Running {
                continue;
            }
            let mut completed = 0;
            // A read error ends the connection like end of stream does.
            let alive = c
                .read(&mut errors, |t| {
                    let _ = hist.record(t.elapsed().as_nanos() as u64);
                    completed += 1;
                })
                .unwrap_or_default();
            messages += completed;
            if !alive {
                c.state = State::Done;
                errors.failed += 1;
                continue;
            }
            if sending && interval.is_none() {
                let now = Instant::now();
                for _ in 0..completed {
                    c.queue_message(now);
                }
            }
            if c.flush().is_err() {
                c.state = State::Done;
                errors.failed += 1;
            }
        }
        plan.progress.add_messages(messages - before);
    }
    let seconds = t0.elapsed().min(duration).as_secs_f64();
    errors.missing += conns.iter().map(|c| c.in_flight() as u64).sum::<u64>();
    for c in conns.iter_mut().filter(|c| c.state == State::Running) {
        c.queue_close();
        let _ = c.flush();
    }
    Ok(ThreadResult { hist, messages, errors, seconds, connected, rss_kib: None })
}

/// Connect mode: each slot connects, upgrades, closes and starts over;
/// latency is connect-to-101.
fn run_connect(target: &Target, plan: &Plan, duration: Duration) -> Result<ThreadResult, BenchError> {
    let mut poll = Poll::new()?;
    let mut errors = Errors::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let t0 = Instant::now();
    plan.progress.start_measuring(t0);
    let end = t0 + duration;
    let mut next_id = plan.first_id;
    let mut slots: Vec<Option<(Conn<TcpStream>, Instant)>> = (0..plan.conns).map(|_| None).collect();
    let mut done = 0u64;
    let mut events = Events::with_capacity(1024);
    let start = |i: usize, next_id: &mut u64, poll: &Poll, errors: &mut Errors| -> Option<(Conn<TcpStream>, Instant)> {
        *next_id += 1;
        let t = Instant::now();
        let mut s = match TcpStream::connect(target.addr) {
            Ok(s) => s,
            Err(_) => {
                errors.failed += 1;
                return None;
            }
        };
        poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE).ok()?;
        Some((Conn::new(s, *next_id, &target.host, &target.path, 0, false), t))
    };
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = start(i, &mut next_id, &poll, &mut errors);
    }
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let Some((c, t)) = slots[i].as_mut() else { continue };
            let t = *t;
            let finished = match c.flush() {
                Err(_) => Some(false),
                Ok(_) => match c.read(&mut errors, |_| {}) {
                    _ if c.state == State::Running => Some(true),
                    Ok(true) => None,
                    _ => Some(false),
                },
            };
            match finished {
                None => continue,
                Some(true) => {
                    let _ = hist.record(t.elapsed().as_nanos() as u64);
                    done += 1;
                    plan.progress.add_messages(1);
                    c.queue_close();
                    let _ = c.flush();
                }
                Some(false) => errors.failed += 1,
            }
            if let Some((mut c, _)) = slots[i].take() {
                let _ = poll.registry().deregister(&mut c.stream);
            }
            if Instant::now() < end {
                slots[i] = start(i, &mut next_id, &poll, &mut errors);
            }
        }
        // Slots whose connect failed outright are retried.
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.is_none() && Instant::now() < end {
                *slot = start(i, &mut next_id, &poll, &mut errors);
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64().min(duration.as_secs_f64());
    Ok(ThreadResult { hist, messages: done, errors, seconds, connected: plan.conns, rss_kib: None })
}

fn run_idle(
    target: &Target,
    plan: &Plan,
    duration: Duration,
    server_pid: Option<u32>,
) -> Result<ThreadResult, BenchError> {
    let mut poll = Poll::new()?;
    let mut errors = Errors::default();
    let conns = open_all(target, plan, &mut poll, &mut errors)?;
    let connected = conns.iter().filter(|c| c.state == State::Running).count();
    plan.progress.start_measuring(Instant::now());
    std::thread::sleep(duration);
    let rss_kib = server_pid.and_then(pid_rss_kib);
    Ok(ThreadResult {
        hist: Histogram::new(3).expect("histogram"),
        messages: 0,
        errors,
        seconds: duration.as_secs_f64(),
        connected,
        rss_kib,
    })
}

/// Prints the report as a table, or as one JSON object.
pub fn print_report(r: &Report, mode: Mode, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("report serialises"));
        return;
    }
    println!("connections    {}", r.connected);
    if mode == Mode::Idle {
        if let Some((before, after)) = r.server_rss_kib {
            let per = (after.saturating_sub(before) as f64 * 1024.0) / r.connected.max(1) as f64;
            println!("server RSS     {before} KiB -> {after} KiB ({per:.0} bytes per connection)");
        }
    } else if mode == Mode::Connect {
        println!(
            "handshakes     {} in {:.2}s ({:.0} per second)",
            r.messages,
            r.seconds,
            r.messages as f64 / r.seconds
        );
        let l = r.latency_us;
        println!(
            "connect-to-101 (us)  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            l[0], l[1], l[2], l[3], l[4]
        );
        if let Some(s) = r.server_cpu {
            println!("server CPU     {:.2}s ({:.0}% of one CPU)", s, 100.0 * s / r.seconds);
        }
    } else {
        let rate = r.messages as f64 / r.seconds;
        println!("messages       {} in {:.2}s", r.messages, r.seconds);
        println!("throughput     {:.0} msgs/s, {:.1} MB/s each way", rate, rate * r.size as f64 / 1e6);
        let l = r.latency_us;
        println!(
            "latency (us)   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            l[0], l[1], l[2], l[3], l[4]
        );
        let per_msg = |cpu: f64| cpu * 1e9 / r.messages.max(1) as f64;
        println!(
            "client CPU     {:.2}s ({:.0}% of one CPU, {:.0} ns per message)",
            r.client_cpu,
            100.0 * r.client_cpu / r.seconds,
            per_msg(r.client_cpu)
        );
        if let Some(s) = r.server_cpu {
            println!(
                "server CPU     {:.2}s ({:.0}% of one CPU, {:.0} ns per message)",
                s,
                100.0 * s / r.seconds,
                per_msg(s)
            );
            println!("per server CPU-second  {:.0} msgs", r.messages as f64 / s.max(1e-9));
            if r.client_cpu > s {
                println!("note: the client used more CPU than the server: it may be the bottleneck");
            }
        }
    }
    println!("errors         {} wrong echoes, {} missing, {} failed connections", r.mismatched, r.missing, r.failed);
}

fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct passed.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// utime + stime of a process, from /proc/PID/stat.
pub fn pid_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// Resident memory of a process in KiB.
pub fn pid_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}
