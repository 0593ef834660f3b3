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
mod room;
pub mod tls;
pub mod window;

use crate::server::config::{parse_duration, parse_size};
use clap::{Args, ValueEnum};
use conn::{Conn, Errors, Framing, State};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use progress::Progress;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use window::{Turn, Window};

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
    /// Reconnect storm: every one of the connections connects at once (as
    /// after a balancer failover) and sends one message after its handshake;
    /// reports the time until all of them have had their first echo and the
    /// connect-to-first-echo latency. --duration is the limit.
    Storm,
    /// Rooms (a server with --reply room): the connections join --rooms
    /// rooms, --publishers of them publish (closed loop, or --rate in all),
    /// every member checks every message (whole, once, in its publisher's
    /// order) and measures publish-to-delivery latency.
    Room,
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
    /// Echo mode: send for this long before the measured window opens,
    /// counting nothing, then let what is in flight come back. TCP windows,
    /// the kernel's quick-ACK allowance of a new connection and the server's
    /// buffers settle first, so a short run measures the steady state
    #[arg(long, default_value = "0s", value_name = "TIME")]
    pub warmup: String,
    /// Messages in flight per connection
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// echo: closed-loop messages; idle: hold connections open; connect: handshakes per second; storm: everyone connects at once; room: fan-out through a --reply room server
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Room and idle modes: rooms the connections are spread over (connection k joins room k mod N, on the path URL/room-K; one room uses the URL's own path). Idle mode with a --reply room server measures memory per room member
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Room mode: how many of the connections publish (spread over the rooms like the rest)
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Client threads, each with its own event loop and share of the connections
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// CPUs to pin client threads to, e.g. 1 or 2,3 (thread i gets the i-th, round robin)
    #[arg(long, value_delimiter = ',')]
    pub cpu: Vec<usize>,
    /// The server's process id: report its CPU time (and RSS in idle mode) next to the client's. Several, comma-separated, for the servers of --also: their CPU times are summed
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Room mode: another server whose rooms are linked with the first one's (`serve --cluster`), repeatable. Members, publishers among them, are spread over the URL and these in turn, and the latency of deliveries to a member on another server than its publisher's is reported apart (it crosses the NATS bridge twice)
    #[arg(long, value_name = "URL")]
    pub also: Vec<String>,
    /// Open loop: send this many messages per second in all (instead of as fast as echoes return);
    /// latency is measured from each message's intended send time, so stalls are not hidden
    /// (to send on time the load generator polls without sleeping: its CPU share reads 100%)
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
    /// wss://: trust the CA certificates in this PEM file [default: /etc/ssl/certs/ca-certificates.crt]
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Offer permessage-deflate (RFC 7692, no context takeover) and send
    /// compressed text messages (--size bytes of JSON-like text before
    /// compression); each echo must come back compressed, byte for byte.
    /// Servers that do not accept the offer fail the handshake
    #[arg(long)]
    pub deflate: bool,
    /// Send this bearer token in every handshake (`Authorization: Bearer TOKEN`), for a server with --auth-tokens
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// wss://: present this PEM client certificate (chain) when the server asks for one (its --tls-client-ca); with --key
    #[arg(long, value_name = "FILE")]
    pub cert: Option<std::path::PathBuf>,
    /// wss://: the private key of --cert (PKCS#8, SEC1 or PKCS#1 PEM)
    #[arg(long, value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,
    /// wss://: accept any server certificate (encrypted, not authenticated; for self-signed test servers)
    #[arg(long)]
    pub insecure: bool,
    /// wss://: keep TLS session tickets, so reconnections resume (--mode connect then measures resumed handshakes)
    #[arg(long)]
    pub resume: bool,
}

/// A load-generator connection's byte stream: plain TCP or TLS over it.
pub enum Stream {
    /// ws:// and tcp://.
    Plain(TcpStream),
    /// wss://.
    Tls(Box<tls::TlsStream>),
}

impl Stream {
    /// The socket, for the event loop's (de)registration.
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &mut s.tcp,
        }
    }

    /// True on a TLS connection that resumed an earlier session.
    pub fn resumed(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.resumed())
    }
}

impl io::Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(b),
            Stream::Tls(s) => s.read(b),
        }
    }
}

impl io::Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(b),
            Stream::Tls(s) => s.write(b),
        }
    }
    fn write_vectored(&mut self, b: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write_vectored(b),
            Stream::Tls(s) => s.write_vectored(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Why a run could not be done or failed.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The URL is not ws://HOST:PORT/PATH, wss://HOST:PORT/PATH or tcp://HOST:PORT.
    #[error("invalid URL {0:?}: expected ws://HOST:PORT/PATH, wss://HOST:PORT/PATH or tcp://HOST:PORT")]
    Url(String),
    /// The TLS client could not be set up (`--ca`).
    #[error("{0}")]
    Tls(String),
    /// Raw mode needs messages of at least one byte.
    #[error("a raw TCP echo needs --size of at least 1")]
    RawEmpty,
    /// --deflate with a tcp:// URL.
    #[error("--deflate needs a ws:// or wss:// URL (a raw TCP echo has no extensions)")]
    RawDeflate,
    /// --warmup outside echo mode.
    #[error("--warmup applies to --mode echo only")]
    WarmupMode,
    /// Room mode over tcp:// or with --deflate.
    #[error("--mode room needs a ws:// or wss:// URL, without --deflate")]
    RoomFraming,
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

/// Latency percentiles of a run, in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// The largest.
    pub max: f64,
}

/// What a run measured. Every figure but the errors covers the measured
/// window alone (connection set-up and the final drain are outside it); the
/// JSON names carry their units.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// echo, idle or connect.
    pub mode: String,
    /// Connections established.
    pub connections: usize,
    /// Message size in bytes.
    pub message_bytes: usize,
    /// Echoes completed and checked within the window (handshakes, in connect mode).
    pub messages: u64,
    /// Length of the measured window.
    pub window_seconds: f64,
    /// `messages` / `window_seconds`.
    pub messages_per_second: f64,
    /// Latency in microseconds (from the intended send time, in open loop).
    pub latency_us: Percentiles,
    /// CPU seconds the client's load threads used within the window.
    pub client_cpu_seconds: f64,
    /// CPU seconds the server used within the window, when its pid was given.
    pub server_cpu_seconds: Option<f64>,
    /// Server resident memory before opening the connections (idle mode).
    pub server_rss_kib_before: Option<u64>,
    /// Server resident memory with the connections open (idle mode).
    pub server_rss_kib_after: Option<u64>,
    /// Echoes whose bytes or type differ from what was sent.
    pub mismatched_echoes: u64,
    /// Messages never echoed, even after the drain.
    pub missing_echoes: u64,
    /// Connections that failed.
    pub failed_connections: u64,
    /// wss:// connect mode: handshakes that resumed a TLS session.
    pub resumed_handshakes: u64,
    /// Room mode: messages published within the window and before it closed.
    #[serde(default)]
    pub published: Option<u64>,
    /// Room mode: rooms.
    #[serde(default)]
    pub rooms: Option<usize>,
    /// Room mode: publishers.
    #[serde(default)]
    pub publishers: Option<usize>,
    /// Room mode with `--also`: latency of deliveries to members on another
    /// server than their publisher's (`latency_us` is then the rest).
    #[serde(default)]
    pub latency_remote_us: Option<Percentiles>,
    /// Room mode with `--also`: how many deliveries that was.
    #[serde(default)]
    pub remote_deliveries: Option<u64>,
}

impl Report {
    /// True when every echo was right and no connection failed.
    pub fn clean(&self) -> bool {
        self.mismatched_echoes == 0 && self.failed_connections == 0 && self.missing_echoes == 0
    }
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    framing: Framing,
    /// Sent as `Authorization: Bearer` in every handshake.
    token: Option<String>,
    /// wss://: the client configuration and the name to verify.
    tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
}

impl Target {
    /// A load-generator connection `id` over `stream`, sending `size`-byte
    /// messages once its handshake is done.
    fn conn(&self, stream: Stream, id: u64, size: usize) -> Conn<Stream> {
        Conn::with_token(stream, id, &self.host, &self.path, size, self.framing, self.token.as_deref())
    }

    /// Wraps a connected (and registered) socket for this target.
    fn stream(&self, s: TcpStream) -> io::Result<Stream> {
        Ok(match &self.tls {
            Some((config, name)) => Stream::Tls(Box::new(tls::TlsStream::new(s, config.clone(), name.clone())?)),
            None => Stream::Plain(s),
        })
    }
}

fn parse_url(url: &str, args: &BenchArgs) -> Result<Target, BenchError> {
    let (raw, secure, rest) = if let Some(r) = url.strip_prefix("ws://") {
        (false, false, r)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (false, true, r)
    } else if let Some(r) = url.strip_prefix("tcp://") {
        (true, false, r)
    } else {
        return Err(BenchError::Url(url.into()));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = hostport.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| BenchError::Url(url.into()))?;
    let tls = if secure {
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| BenchError::Url(url.into()))?;
        let cert = match (&args.cert, &args.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => return Err(BenchError::Tls("--cert and --key go together".into())),
        };
        let config =
            tls::client_config(args.ca.as_deref(), args.insecure, args.resume, cert).map_err(BenchError::Tls)?;
        Some((config, name))
    } else {
        None
    };
    let framing = match (raw, args.deflate) {
        (true, true) => return Err(BenchError::RawDeflate),
        (true, false) => Framing::Raw,
        (false, true) => Framing::Deflate,
        (false, false) => Framing::Ws,
    };
    Ok(Target { addr, host: hostport.into(), path: path.into(), framing, token: args.token.clone(), tls })
}

/// Runs the benchmark described by `args`.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    let target = parse_url(&args.url, args)?;
    let size = parse_size("size", &args.size, 0, 64 << 20)?;
    if target.framing == Framing::Raw && size == 0 && args.mode == Mode::Echo {
        return Err(BenchError::RawEmpty);
    }
    let duration = parse_duration("duration", &args.duration, false)?;
    let warmup = parse_duration("warmup", &args.warmup, true)?;
    if !warmup.is_zero() && args.mode != Mode::Echo {
        return Err(BenchError::WarmupMode);
    }
    if args.connections == 0 {
        return Err(crate::server::config::ConfigError::Invalid {
            setting: "connections",
            value: "0".into(),
            allowed: "a whole number of at least 1",
        }
        .into());
    }
    // Idle runs hold many sockets.
    crate::tune::raise_nofile_limit();
    if args.mode == Mode::Room {
        if target.framing != Framing::Ws {
            return Err(BenchError::RoomFraming);
        }
        let mut targets = vec![target];
        for url in &args.also {
            targets.push(parse_url(url, args)?);
        }
        return room::run(args, &targets, size, duration);
    }
    let threads = args.threads.clamp(1, args.connections);
    let server_pid = args.server_pid.first().copied();
    let rss0 = server_pid.and_then(pid_rss_kib);
    let window = Window::new(threads, &args.server_pid).with_warmup(!warmup.is_zero());
    let progress = Progress::new(duration, !args.json);
    let results: Vec<Result<ThreadResult, BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = args.connections / threads + usize::from(t < args.connections % threads);
                let cpu = (!args.cpu.is_empty()).then(|| args.cpu[t % args.cpu.len()]);
                let target = &target;
                let progress = &progress;
                let window = &window;
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
                        rooms: if args.mode == Mode::Idle { args.rooms.max(1) } else { 1 },
                        progress,
                    };
                    let mut turn = Turn::new(window);
                    let mut r = match args.mode {
                        Mode::Echo => run_echo(target, &plan, warmup, duration, &mut turn),
                        Mode::Idle => run_idle(target, &plan, duration, server_pid, &mut turn),
                        Mode::Connect => run_connect(target, &plan, duration, &mut turn),
                        Mode::Storm => run_storm(target, &plan, duration, &mut turn),
                        Mode::Room => unreachable!("room mode runs on its own"),
                    };
                    turn.close();
                    if let Ok(r) = &mut r {
                        r.cpu = turn.cpu_seconds();
                    }
                    r
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
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mode = format!("{:?}", args.mode).to_lowercase();
    let mut report = Report { message_bytes: size, mode, ..Default::default() };
    for r in results {
        let r = r?;
        hist.add(&r.hist).expect("histogram add");
        report.messages += r.messages;
        report.mismatched_echoes += r.errors.mismatched;
        report.failed_connections += r.errors.failed;
        report.missing_echoes += r.errors.missing;
        report.connections += r.connected;
        report.client_cpu_seconds += r.cpu;
        report.resumed_handshakes += r.resumed;
        if let Some(rss) = r.rss_kib {
            report.server_rss_kib_before = rss0;
            report.server_rss_kib_after = Some(rss);
        }
    }
    let (seconds, server_cpu) = window.result();
    report.window_seconds = seconds;
    report.server_cpu_seconds = server_cpu;
    report.messages_per_second = report.messages as f64 / seconds.max(1e-9);
    if !hist.is_empty() {
        let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
        report.latency_us =
            Percentiles { p50: q(0.5), p90: q(0.9), p99: q(0.99), p99_9: q(0.999), max: hist.max() as f64 / 1000.0 };
    }
    Ok(report)
}

struct Plan<'a> {
    conns: usize,
    first_id: u64,
    size: usize,
    pipeline: usize,
    /// Open loop: messages per second for this thread.
    rate: Option<f64>,
    /// Idle mode: connection `first_id + i` joins room `(first_id + i) mod
    /// rooms` (its path, `room::room_path`); 1 keeps the URL's path.
    rooms: usize,
    progress: &'a Progress,
}

struct ThreadResult {
    hist: Histogram<u64>,
    /// Completed within the window.
    messages: u64,
    errors: Errors,
    connected: usize,
    rss_kib: Option<u64>,
    /// This thread's CPU seconds within the window (set from its [`Turn`]).
    cpu: f64,
    /// Handshakes that resumed a TLS session (connect mode).
    resumed: u64,
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
) -> Result<Vec<Conn<Stream>>, BenchError> {
    let mut conns = Vec::with_capacity(plan.conns);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events = Events::with_capacity(1024);
    let mut opening = 0usize;
    let registry = poll.registry().try_clone()?;
    // Waits for events once and moves finished handshakes on.
    let mut turn = |conns: &mut Vec<Conn<Stream>>, opening: &mut usize, errors: &mut Errors| -> io::Result<()> {
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
        let s = target.stream(s)?;
        let id = plan.first_id + i as u64;
        let mut c = if plan.rooms > 1 {
            let path = room::room_path(&target.path, plan.rooms, (id % plan.rooms as u64) as usize);
            Conn::with_token(s, id, &target.host, &path, plan.size, target.framing, target.token.as_deref())
        } else {
            target.conn(s, id, plan.size)
        };
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

fn run_echo(
    target: &Target,
    plan: &Plan,
    warmup: Duration,
    duration: Duration,
    turn: &mut Turn,
) -> Result<ThreadResult, BenchError> {
    let mut poll = Poll::new()?;
    let mut errors = Errors::default();
    let mut conns = open_all(target, plan, &mut poll, &mut errors)?;
    let connected = conns.iter().filter(|c| c.state == State::Running).count();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    if !warmup.is_zero() {
        // Every thread starts warming up together, so none is still
        // sending while another's window opens.
        turn.sync();
        let t = Instant::now();
        pump(&mut conns, &mut poll, plan, t, t + warmup, &mut errors, None)?;
    }
    let t0 = turn.open();
    plan.progress.start_measuring(t0);
    let messages = pump(&mut conns, &mut poll, plan, t0, t0 + duration, &mut errors, Some((&mut hist, turn)))?;
    errors.missing += conns.iter().map(|c| c.in_flight() as u64).sum::<u64>();
    for c in conns.iter_mut().filter(|c| c.state == State::Running) {
        c.queue_close();
        let _ = c.flush();
    }
    Ok(ThreadResult { hist, messages, errors, connected, rss_kib: None, cpu: 0.0, resumed: 0 })
}

/// One stretch of echo traffic on `conns`: from `t0` messages go out (as
/// fast as echoes return, `plan.pipeline` in flight each, or at the plan's
/// rate) until `end`; then what is in flight comes back (for up to 2 s),
/// checked but not counted. Returns the echoes completed before `end`. With
/// `window` this is the measured stretch: each echo's latency goes into the
/// histogram, progress is shown, and the turn closes at `end`; without, a
/// warm-up.
fn pump(
    conns: &mut [Conn<Stream>],
    poll: &mut Poll,
    plan: &Plan,
    t0: Instant,
    end: Instant,
    errors: &mut Errors,
    window: Option<(&mut Histogram<u64>, &mut Turn)>,
) -> Result<u64, BenchError> {
    let (mut hist, mut turn) = window.unzip();
    let mut messages = 0u64;
    let mut in_window = 0u64;
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
            // The stretch ends here; what completes during the drain is
            // checked but not counted.
            sending = false;
            in_window = messages;
            if let Some(t) = turn.as_deref_mut() {
                t.close();
            }
        }
        if !sending && (now >= drain_until || conns.iter().all(|c| c.in_flight() == 0 || c.state == State::Done)) {
            break;
        }
        let mut timeout = Duration::from_millis(50);
        if sending {
            timeout = timeout.min(end.saturating_duration_since(now));
        }
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
            // epoll's timeout is whole milliseconds, rounded up: sleeping
            // until a send time less than that away would send late, in
            // bursts, and the lateness would count as the server's latency.
            // So the loop polls without sleeping until then (the load
            // generator's CPU is its own).
            let until = next_at.saturating_duration_since(now);
            timeout = timeout.min(until.saturating_sub(Duration::from_millis(2)));
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
                .read(errors, |t| {
                    if let Some(h) = hist.as_deref_mut() {
                        let _ = h.record(t.elapsed().as_nanos() as u64);
                    }
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
        if hist.is_some() {
            plan.progress.add_messages(messages - before);
        }
    }
    Ok(in_window)
}

/// Connections a storm opens between two looks at the event loop: enough
/// that all of them are under way within a few milliseconds, few enough
/// that the first handshakes are answered while the rest are still opening.
const STORM_BATCH: usize = 256;

/// Storm mode: opens `plan.conns` connections as fast as sockets can be
/// made, with no cap on handshakes in flight (unlike [`open_all`]: a storm
/// is what overflows a server's accept queue), sends one message on each as
/// its handshake completes, and ends when every connection has had its
/// first echo or `limit` has passed. Latency is connect-to-first-echo; the
/// window (and so the server CPU) runs from the first connect to the last
/// first echo.
fn run_storm(target: &Target, plan: &Plan, limit: Duration, turn: &mut Turn) -> Result<ThreadResult, BenchError> {
    let mut poll = Poll::new()?;
    let mut errors = Errors::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("histogram");
    let mut conns: Vec<Conn<Stream>> = Vec::with_capacity(plan.conns);
    let mut events = Events::with_capacity(1024);
    let t0 = turn.open();
    plan.progress.start_measuring(t0);
    let deadline = t0 + limit;
    // Connections that have had their first echo, or failed.
    let mut settled = 0usize;
    let mut echoed = 0u64;
    // Moves a connection on after an event: handshake, first message, echo.
    let mut starts: Vec<Instant> = Vec::with_capacity(plan.conns);
    let step = |c: &mut Conn<Stream>,
                started: Instant,
                errors: &mut Errors,
                hist: &mut Histogram<u64>,
                echoed: &mut u64|
     -> bool {
        let was_handshake = c.state == State::Handshake;
        let mut got = 0;
        let ok = c.flush().is_ok()
            && c.read(errors, |t| {
                let _ = hist.record(t.elapsed().as_nanos() as u64);
                got += 1;
            })
            .unwrap_or(false);
        if !ok {
            c.state = State::Done;
            errors.failed += 1;
            return true;
        }
        if was_handshake && c.state == State::Running {
            // Stamped with the connection's start: the latency recorded at
            // its echo is connect-to-first-echo.
            c.queue_message(started);
            if c.flush().is_err() {
                c.state = State::Done;
                errors.failed += 1;
                return true;
            }
        }
        if got > 0 {
            *echoed += got;
            c.state = State::Done;
            return true;
        }
        false
    };
    while (conns.len() < plan.conns || settled < conns.len()) && Instant::now() < deadline {
        for _ in 0..STORM_BATCH.min(plan.conns - conns.len()) {
            let i = conns.len();
            let started = Instant::now();
            let mut s = match TcpStream::connect(target.addr) {
                Ok(s) => s,
                Err(source) => return Err(BenchError::Connect { addr: target.addr, source }),
            };
            s.set_nodelay(true)?;
            poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            let mut c = target.conn(target.stream(s)?, plan.first_id + i as u64, plan.size);
            starts.push(started);
            if c.state == State::Running {
                // A raw TCP echo has no handshake: the message goes out at once.
                c.queue_message(started);
            }
            conns.push(c);
        }
        let wait = if conns.len() < plan.conns { Duration::ZERO } else { Duration::from_millis(50) };
        poll.poll(&mut events, Some(wait.min(deadline.saturating_duration_since(Instant::now()))))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            if c.state != State::Done && step(c, starts[i], &mut errors, &mut hist, &mut echoed) {
                settled += 1;
                plan.progress.add_messages(1);
            }
        }
    }
    turn.close();
    // What has not settled by the limit never had its first echo.
    errors.missing += conns.iter().filter(|c| c.state != State::Done).count() as u64;
    errors.failed += (plan.conns - conns.len()) as u64;
    let connected = conns.len();
    for c in conns.iter_mut() {
        c.queue_close();
        let _ = c.flush();
    }
    Ok(ThreadResult { hist, messages: echoed, errors, connected, rss_kib: None, cpu: 0.0, resumed: 0 })
}

/// Connect mode: each slot connects, upgrades, closes and starts over;
/// latency is connect-to-101.
fn run_connect(target: &Target, plan: &Plan, duration: Duration, turn: &mut Turn) -> Result<ThreadResult, BenchError> {
    let mut poll = Poll::new()?;
    let mut errors = Errors::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let t0 = turn.open();
    plan.progress.start_measuring(t0);
    let end = t0 + duration;
    let mut next_id = plan.first_id;
    let mut slots: Vec<Option<(Conn<Stream>, Instant)>> = (0..plan.conns).map(|_| None).collect();
    let mut done = 0u64;
    let mut resumed = 0u64;
    let mut events = Events::with_capacity(1024);
    let start = |i: usize, next_id: &mut u64, poll: &Poll, errors: &mut Errors| -> Option<(Conn<Stream>, Instant)> {
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
        let s = target.stream(s).ok()?;
        Some((target.conn(s, *next_id, 0), t))
    };
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = start(i, &mut next_id, &poll, &mut errors);
    }
    while Instant::now() < end {
        let wait = end.saturating_duration_since(Instant::now()).min(Duration::from_millis(50));
        poll.poll(&mut events, Some(wait))?;
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
                    resumed += u64::from(c.stream.resumed());
                    plan.progress.add_messages(1);
                    c.queue_close();
                    let _ = c.flush();
                }
                Some(false) => errors.failed += 1,
            }
            if let Some((mut c, _)) = slots[i].take() {
                let _ = poll.registry().deregister(c.stream.tcp_mut());
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
    turn.close();
    Ok(ThreadResult { hist, messages: done, errors, connected: plan.conns, rss_kib: None, cpu: 0.0, resumed })
}

fn run_idle(
    target: &Target,
    plan: &Plan,
    duration: Duration,
    server_pid: Option<u32>,
    turn: &mut Turn,
) -> Result<ThreadResult, BenchError> {
    let mut poll = Poll::new()?;
    let mut errors = Errors::default();
    let mut conns = open_all(target, plan, &mut poll, &mut errors)?;
    if target.framing == Framing::Deflate && plan.size > 0 {
        // What an idle connection costs after compressed traffic, not only
        // after its handshake: one compressed echo each first.
        echo_once(&mut conns, &mut poll, &mut errors)?;
    }
    let connected = conns.iter().filter(|c| c.state == State::Running).count();
    plan.progress.start_measuring(turn.open());
    std::thread::sleep(duration);
    let rss_kib = server_pid.and_then(pid_rss_kib);
    turn.close();
    Ok(ThreadResult {
        hist: Histogram::new(3).expect("histogram"),
        messages: 0,
        errors,
        connected,
        rss_kib,
        cpu: 0.0,
        resumed: 0,
    })
}

/// Sends one message on every open connection and waits (up to 30 s) for
/// every echo; one missing is counted as missing.
fn echo_once(conns: &mut [Conn<Stream>], poll: &mut Poll, errors: &mut Errors) -> io::Result<()> {
    let now = Instant::now();
    for c in conns.iter_mut().filter(|c| c.state == State::Running) {
        c.queue_message(now);
        let _ = c.flush();
    }
    let deadline = now + Duration::from_secs(30);
    let mut events = Events::with_capacity(1024);
    while conns.iter().any(|c| c.state == State::Running && c.in_flight() > 0) && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.state == State::Running {
                let _ = c.flush();
                if !c.read(errors, |_| {})? {
                    c.state = State::Done;
                    errors.failed += 1;
                }
            }
        }
    }
    errors.missing += conns.iter().filter(|c| c.state == State::Running).map(|c| c.in_flight() as u64).sum::<u64>();
    Ok(())
}

/// Prints the report as a table, or as one JSON object.
pub fn print_report(r: &Report, mode: Mode, json: bool) {
    use std::io::Write;
    // Written whole and any error ignored: a reader that went away (`| head`)
    // must not turn a finished run into a panic.
    let _ = std::io::stdout().lock().write_all(report_text(r, mode, json).as_bytes());
}

/// The report [`print_report`] prints.
fn report_text(r: &Report, mode: Mode, json: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string(r).expect("report serialises"));
        return out;
    }
    let secs = r.window_seconds.max(1e-9);
    let _ = writeln!(out, "connections    {}", r.connections);
    let l = r.latency_us;
    let text = |l: &Percentiles| {
        format!("p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}", l.p50, l.p90, l.p99, l.p99_9, l.max)
    };
    let percentiles = text(&l);
    if mode == Mode::Idle {
        if let (Some(before), Some(after)) = (r.server_rss_kib_before, r.server_rss_kib_after) {
            if after > before {
                let per = ((after - before) as f64 * 1024.0) / r.connections.max(1) as f64;
                let _ = writeln!(out, "server RSS     {before} KiB -> {after} KiB ({per:.0} bytes per connection)");
            } else {
                // Memory an earlier load took was given back meanwhile: the
                // difference says nothing about these connections.
                let _ = writeln!(
                    out,
                    "server RSS     {before} KiB -> {after} KiB: no figure per connection, the server's memory fell \
                     during the run (it was not fresh); measure a freshly started server"
                );
            }
        }
    } else if mode == Mode::Storm {
        let _ = writeln!(out, "first echoes   {} of {} connections in {:.3}s", r.messages, r.connections, secs);
        let _ = writeln!(out, "connect-to-first-echo (us)  {percentiles}");
        if let Some(s) = r.server_cpu_seconds {
            let per = s * 1e6 / r.messages.max(1) as f64;
            let _ = writeln!(out, "server CPU     {s:.3}s ({per:.0} us per connection)");
        }
    } else if mode == Mode::Connect {
        let _ =
            writeln!(out, "handshakes     {} in {:.2}s ({:.0} per second)", r.messages, secs, r.messages_per_second);
        if r.resumed_handshakes > 0 {
            let _ = writeln!(out, "TLS resumed    {} of them", r.resumed_handshakes);
        }
        let _ = writeln!(out, "connect-to-101 (us)  {percentiles}");
        if let Some(s) = r.server_cpu_seconds {
            let _ = writeln!(out, "server CPU     {:.3}s ({:.0}% of one CPU)", s, 100.0 * s / secs);
        }
    } else if mode == Mode::Room {
        let published = r.published.unwrap_or(0);
        let _ = writeln!(
            out,
            "rooms          {} rooms, {} publishers, {} B messages",
            r.rooms.unwrap_or(1),
            r.publishers.unwrap_or(1),
            r.message_bytes
        );
        let _ =
            writeln!(out, "published      {} in {:.2}s ({:.0} per second)", published, secs, published as f64 / secs);
        let _ = writeln!(out, "deliveries     {} ({:.0} per second)", r.messages, r.messages_per_second);
        match (&r.latency_remote_us, r.remote_deliveries) {
            (Some(remote), Some(n)) => {
                let _ = writeln!(out, "publish-to-delivery, same server (us)     {percentiles}");
                let _ = writeln!(out, "publish-to-delivery, another server (us)  {}  ({n} deliveries)", text(remote));
            }
            _ => {
                let _ = writeln!(out, "publish-to-delivery (us)  {percentiles}");
            }
        }
        let c = r.client_cpu_seconds;
        let _ = writeln!(out, "client CPU     {:.3}s ({:.0}% of one CPU)", c, 100.0 * c / secs);
        if let Some(s) = r.server_cpu_seconds {
            let per = s * 1e9 / r.messages.max(1) as f64;
            let _ = writeln!(
                out,
                "server CPU     {:.3}s ({:.0}% of one CPU, {:.0} ns per delivery)",
                s,
                100.0 * s / secs,
                per
            );
            let _ = writeln!(out, "per server CPU-second  {:.0} deliveries", r.messages as f64 / s.max(1e-9));
            if c > s {
                let _ = writeln!(out, "note: the client used more CPU than the server: it may be the bottleneck");
            }
        }
    } else {
        let _ = writeln!(out, "messages       {} in {:.2}s", r.messages, secs);
        let _ = writeln!(
            out,
            "throughput     {:.0} msgs/s, {:.1} MB/s each way",
            r.messages_per_second,
            r.messages_per_second * r.message_bytes as f64 / 1e6
        );
        let _ = writeln!(out, "latency (us)   {percentiles}");
        let per_msg = |cpu: f64| cpu * 1e9 / r.messages.max(1) as f64;
        let c = r.client_cpu_seconds;
        let _ = writeln!(
            out,
            "client CPU     {:.3}s ({:.0}% of one CPU, {:.0} ns per message)",
            c,
            100.0 * c / secs,
            per_msg(c)
        );
        if let Some(s) = r.server_cpu_seconds {
            let _ = writeln!(
                out,
                "server CPU     {:.3}s ({:.0}% of one CPU, {:.0} ns per message)",
                s,
                100.0 * s / secs,
                per_msg(s)
            );
            let _ = writeln!(out, "per server CPU-second  {:.0} msgs", r.messages as f64 / s.max(1e-9));
            if c > s {
                let _ = writeln!(out, "note: the client used more CPU than the server: it may be the bottleneck");
            }
        }
    }
    let what = if mode == Mode::Room { "wrong, repeated or out of order" } else { "wrong echoes" };
    let _ = writeln!(
        out,
        "errors         {} {what}, {} missing, {} failed connections",
        r.mismatched_echoes, r.missing_echoes, r.failed_connections
    );
    out
}

/// CPU seconds of a process: its CPU-time clock (nanoseconds, every thread,
/// living or ended), else utime + stime from /proc/PID/stat (10 ms ticks).
pub fn pid_cpu_seconds(pid: u32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: both calls only write the values passed.
    let ok = unsafe {
        libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) == 0 && libc::clock_gettime(clock, &mut ts) == 0
    };
    if ok {
        return Some(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9);
    }
    pid_stat_cpu_seconds(pid)
}

/// utime + stime of a process, from /proc/PID/stat.
fn pid_stat_cpu_seconds(pid: u32) -> Option<f64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_run_whose_server_memory_fell_gives_no_figure() {
        let mut r = Report { connections: 1000, ..Report::default() };
        r.server_rss_kib_before = Some(10_000);
        r.server_rss_kib_after = Some(10_500);
        assert!(report_text(&r, Mode::Idle, false).contains("(512 bytes per connection)"));
        r.server_rss_kib_after = Some(9_000);
        let text = report_text(&r, Mode::Idle, false);
        assert!(text.contains("no figure per connection") && !text.contains("bytes per connection"), "{text}");
    }
}
