//! Clients in a loop across server restarts: connect, handshake, three
//! echoes, close; what they saw is tallied (shared by the restart tests:
//! takeover, socket activation).

use super::{upgrade_request, RawClient};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the clients saw.
#[derive(Default)]
pub struct Tally {
    pub sessions: AtomicU64,
    pub echoes: AtomicU64,
    pub refused: AtomicU64,
    pub reset: AtomicU64,
    pub wrong: AtomicU64,
    pub closed_1001: AtomicU64,
}

impl Tally {
    /// A count.
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Every count, on one line.
    pub fn line(&self) -> String {
        format!(
            "sessions {} echoes {} refused {} reset {} wrong {} closed-by-server {}",
            self.get(&self.sessions),
            self.get(&self.echoes),
            self.get(&self.refused),
            self.get(&self.reset),
            self.get(&self.wrong),
            self.get(&self.closed_1001)
        )
    }
}

/// One client's life: connect, handshake, three echoes, close.
fn session(addr: SocketAddr, id: usize, n: u64, t: &Tally) {
    let tcp = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            t.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            t.reset.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    // Any failure of the stream below (a reset, an early EOF) counts as a reset.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut c = RawClient::over(tcp);
        c.send_raw(upgrade_request("/").as_bytes());
        let head = c.read_http_head();
        if !head.starts_with("HTTP/1.1 101 ") {
            // A 503 from a draining server is a refusal too.
            t.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        for m in 0..3 {
            let text = format!("client {id} session {n} message {m}");
            c.send(true, OpCode::Text, text.as_bytes());
            match c.next_event() {
                Some(Event::Message(OpCode::Text, got)) if got == text.as_bytes() => {
                    t.echoes.fetch_add(1, Ordering::Relaxed);
                }
                Some(Event::Close(Some(1001), _)) => {
                    // The old server drains: what was sent was echoed; close back.
                    c.send(true, OpCode::Close, &1001u16.to_be_bytes());
                    t.closed_1001.fetch_add(1, Ordering::Relaxed);
                    t.sessions.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                other => {
                    eprintln!("client {id}: {other:?}");
                    t.wrong.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        c.send(true, OpCode::Close, &1000u16.to_be_bytes());
        match c.expect_close() {
            Some(1000 | 1001) => {
                t.sessions.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                eprintln!("client {id}: closed with {other:?}");
                t.wrong.fetch_add(1, Ordering::Relaxed);
            }
        }
    }));
    if outcome.is_err() {
        t.reset.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs clients against `addr` while `restart` replaces the server five
/// times; returns what they saw.
pub fn through_five_restarts(addr: SocketAddr, mut restart: impl FnMut(usize)) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|id| {
            let (t, stop) = (tally.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 100_000 {
                    session(addr, id, n, &t);
                    n += 1;
                }
            })
        })
        .collect();
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        restart(i);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    tally
}
