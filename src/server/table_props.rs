//! Property: however a connection's input is cut, whatever phase it is in
//! and whatever its output does, a fired timer makes progress. A simulated
//! driver feeds a client's bytes in random reads, stalls and drains the
//! output at random (a client that stops reading), moves the clock by random
//! steps, starts a shutdown at random, and after every step fires the due
//! timers the way both drivers do: the loop must end with no timer due at
//! the same `now` (issue #23: one re-armed itself in the past forever), and
//! once the client stops sending the connection must end within its
//! timeouts, however its output stalls.
//!
//! Every phase is reached: handshake, PROXY header pending, TLS handshaking,
//! open, mid-frame inside a committed binary echo, mid-message with
//! backpressure, the permessage-deflate fallback echo (stalled on its output
//! budget), rate-limited (paused until its bucket refills), close sent,
//! closed, and a graceful shutdown on top of any of them.

use super::*;
use crate::server::config::{ServeArgs, Settings};
use crate::server::metrics::ShardMetrics;
use crate::server::shared::Shared;
use crate::ws::client::{deflate_message, encode_masked};
use crate::ws::frame::{OpCode, RSV1_BIT};
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

/// Stands in for a socket: the address a PROXY-less connection came from.
struct FakeIo;

impl PeerAddr for FakeIo {
    fn peer_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], 40000)))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Plain,
    /// permessage-deflate, echoed as it came.
    Deflate,
    /// permessage-deflate, echoed inflated (the client's window was not bounded).
    Fallback,
    /// `--max-message-rate 2 --max-bytes-per-second 20000`: most scripts outrun it.
    RateLimited,
    /// `--proxy-protocol`: a PROXY header first.
    Proxy,
    /// A TLS listener: only (part of) a ClientHello ever arrives.
    Tls,
}

#[derive(Clone, Debug)]
enum Op {
    /// The client's next bytes, up to this many, if the driver would read now.
    Feed(usize),
    /// The clock moves on.
    Advance(u64),
    /// The client stops reading: output the socket does not take is queued.
    Stall,
    /// The client reads again: queued output is taken.
    Unstall,
    /// SIGTERM.
    Shutdown,
}

#[derive(Clone, Debug)]
struct Msg {
    text: bool,
    len: usize,
    compressed: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    prop_oneof![
        Just(Setup::Plain),
        Just(Setup::Deflate),
        Just(Setup::Fallback),
        Just(Setup::RateLimited),
        Just(Setup::Proxy),
        Just(Setup::Tls),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..70_000).prop_map(Op::Feed),
        4 => (0u64..3_000).prop_map(Op::Advance),
        1 => Just(Op::Stall),
        1 => Just(Op::Unstall),
        1 => Just(Op::Shutdown),
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    (any::<bool>(), prop_oneof![0usize..200, 1_000usize..200_000], any::<bool>())
        .prop_map(|(text, len, compressed)| Msg { text, len, compressed })
}

/// The settings of `setup`: short timeouts, so a case covers all of them.
fn settings(setup: Setup) -> Settings {
    let mut a = ServeArgs {
        handshake_timeout: Some("1s".into()),
        idle_timeout: Some("2s".into()),
        shutdown_grace: Some("3s".into()),
        ..ServeArgs::default()
    };
    match setup {
        Setup::Deflate | Setup::Fallback => a.permessage_deflate = true,
        Setup::RateLimited => {
            a.max_message_rate = Some("2".into());
            a.max_bytes_per_second = Some("20000".into());
        }
        Setup::Proxy => a.proxy_protocol = true,
        Setup::Tls => {
            a.tls_listen = vec!["127.0.0.1:0".into()];
            a.tls_self_signed = true;
        }
        Setup::Plain => {}
    }
    Settings::resolve(&a).expect("valid settings")
}

/// One TLS server configuration for every case (a certificate costs a key).
fn tls_config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let (certs, _) = crate::server::tls::Certificates::load(crate::server::tls::CertSource::SelfSigned)
                .expect("a self-signed certificate");
            crate::server::tls::server_config(certs, None).expect("a TLS configuration")
        })
        .clone()
}

/// A real ClientHello (the client never gets further).
fn client_hello() -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(crate::server::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut c = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut out = Vec::new();
    c.write_tls(&mut out).unwrap();
    out
}

/// What the client sends, whole: the opening and `msgs` (and a close if `close`).
fn script(setup: Setup, msgs: &[Msg], close: bool) -> Vec<u8> {
    if setup == Setup::Tls {
        return client_hello();
    }
    let mut w = Vec::new();
    if setup == Setup::Proxy {
        w.extend_from_slice(b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 80\r\n");
    }
    let offer = match setup {
        Setup::Deflate => "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        Setup::Fallback => "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n",
        _ => "",
    };
    w.extend_from_slice(
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        )
        .as_bytes(),
    );
    let deflate = matches!(setup, Setup::Deflate | Setup::Fallback);
    for (i, m) in msgs.iter().enumerate() {
        let data: Vec<u8> = (0..m.len).map(|j| b'a' + ((i * 31 + j * 7) % 26) as u8).collect();
        let compressed = deflate && m.compressed;
        let payload = if compressed { deflate_message(&data) } else { data };
        let at = w.len();
        let op = if m.text { OpCode::Text } else { OpCode::Binary };
        encode_masked(&mut w, true, op, &payload, [1, 2, 3, 4]);
        if compressed {
            w[at] |= RSV1_BIT;
        }
    }
    if close {
        encode_masked(&mut w, true, OpCode::Close, &1000u16.to_be_bytes(), [5, 6, 7, 8]);
    }
    w
}

/// A driver without sockets, doing what epoll.rs and uring/ do with the table.
struct Sim {
    table: Table<FakeIo>,
    slot: usize,
    now: Instant,
    script: Vec<u8>,
    fed: usize,
    /// The client does not read: output is queued, and the connection is not read.
    stalled: bool,
}

impl Sim {
    fn new(setup: Setup, script: Vec<u8>) -> Sim {
        let now = Instant::now();
        let tls = setup == Setup::Tls;
        let ctx = ShardContext {
            id: 0,
            settings: Arc::new(settings(setup)),
            shared: Arc::new(Shared::new(100, None)),
            tls: tls.then(tls_config),
            metrics: Arc::new(ShardMetrics::default()),
            rooms: None,
        };
        let mut table = Table::new(ctx);
        let slot = table.insert(FakeIo, now, tls).expect("admitted");
        Sim { table, slot, now, script, fed: 0, stalled: false }
    }

    fn alive(&mut self) -> bool {
        self.table.get_mut(self.slot).is_some()
    }

    /// The table's output goes out, or is queued while the client does not read.
    fn deliver(&mut self, buf: &[u8]) {
        let stalled = self.stalled;
        let Some((s, out, _)) = self.table.split(self.slot) else { return };
        if stalled || s.conn.has_pending() {
            s.conn.queue(out, buf, 0);
        }
        self.after_output();
    }

    /// What the drivers' `after_output` does: a finished close handshake ends it.
    fn after_output(&mut self) {
        self.table.settle(self.slot);
        let Some(s) = self.table.get_mut(self.slot) else { return };
        if !s.conn.has_pending() && (s.conn.session.close_handshake_done() || s.conn.peer_eof) {
            self.table.remove(self.slot);
        }
    }

    /// Reads up to `n` of the client's bytes, if a driver would read now.
    fn feed(&mut self, n: usize) {
        let (slot, now) = (self.slot, self.now);
        let Some(s) = self.table.get_mut(slot) else { return };
        if s.conn.has_pending() || self.table.parked(slot) || self.table.throttled(slot, now) {
            return;
        }
        let stalled = self.table.stalled(slot);
        let take = if stalled { 0 } else { n.min(self.script.len() - self.fed) };
        if take == 0 && !stalled {
            return;
        }
        let s = self.table.get_mut(slot).expect("checked");
        let reserve = HEADROOM + s.conn.carry_len();
        let mut buf = vec![0u8; reserve + take];
        let start = s.conn.stage_carry(&mut buf, reserve);
        buf[reserve..].copy_from_slice(&self.script[self.fed..self.fed + take]);
        self.fed += take;
        self.table.input(slot, &mut buf, start, now);
        self.deliver(&buf);
    }

    /// Drains queued output, if the client reads.
    fn drain(&mut self) {
        if self.stalled {
            return;
        }
        let Some(s) = self.table.get_mut(self.slot) else { return };
        let n = s.conn.pending().len();
        if n > 0 {
            s.conn.advance_pending(n);
            self.after_output();
        }
    }

    /// Fires every due timer at `now`, as the drivers' loops do; then the
    /// shutdown steps. Asserts that the loop ends with nothing due.
    fn turn(&mut self) {
        self.table.new_turn();
        if self.table.begin_shutdown(self.now) {
            self.feed(0);
        }
        let mut fired = 0;
        while let Some((slot, action)) = self.table.next_timer(self.now) {
            assert_eq!(slot, self.slot);
            fired += 1;
            // A resume (rate limit refilled) may be followed by the session's
            // own deadline, which must then move on: never more than that.
            assert!(fired <= 3, "a timer fired {fired} times at one instant");
            match action {
                TimerAction::Drop => drop(self.table.remove(slot)),
                TimerAction::Send => self.deliver(&[]),
                TimerAction::Resume => self.feed(usize::MAX),
            }
        }
        if let Some(due) = self.table.timers.next_deadline() {
            assert!(due > self.now, "a timer is still due after the timer loop ended");
        }
        if self.table.shutting_down() {
            if self.table.shutdown_done(self.now) {
                drop(self.table.remove(self.slot));
            } else if self.table.get_mut(self.slot).is_some_and(|s| !s.conn.has_pending()) {
                self.feed(usize::MAX);
                if self.table.shutdown_close(self.slot, self.now) {
                    self.deliver(&[]);
                }
            }
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Feed(n) => self.feed(n),
            Op::Advance(ms) => self.now += Duration::from_millis(ms),
            Op::Stall => self.stalled = true,
            Op::Unstall => {
                self.stalled = false;
                self.drain();
                self.feed(0);
            }
            Op::Shutdown => {
                self.table.ctx.shared.request_shutdown();
            }
        }
        self.drain();
        self.turn();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_fired_timer_makes_progress(
        setup in setup(),
        msgs in prop::collection::vec(msg(), 0..6),
        close in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        ops in prop::collection::vec(op(), 1..60),
        stall_at_end in any::<bool>(),
    ) {
        let mut script = script(setup, &msgs, close);
        // Sometimes the client stops part way (a partial header, frame or record).
        if cut.index(4) == 0 {
            let keep = cut.index(script.len() + 1);
            script.truncate(keep);
        }
        let mut sim = Sim::new(setup, script);
        for op in &ops {
            sim.step(op);
        }
        // The client sends nothing more and reads (or not): within its
        // timeouts (handshake 1 s, idle 2 s, close 5 s, a rate pause, the
        // 3 s grace) the connection is gone.
        sim.stalled = stall_at_end;
        for _ in 0..60 {
            if !sim.alive() {
                break;
            }
            sim.step(&Op::Feed(usize::MAX));
            sim.step(&Op::Advance(500));
        }
        prop_assert!(!sim.alive(), "the connection outlived every timeout: {:?}", sim.table.get_mut(sim.slot).map(|s| s.conn.session.phase()));
    }
}
