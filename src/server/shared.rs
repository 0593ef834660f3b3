//! The little state shards share: the process-wide connection count and the
//! per-address counts (touched only at handshake and close, never per
//! message), the shutdown flag and the bearer tokens, if any.

use crate::server::per_ip::PerIp;
use crate::server::tokens::Tokens;
use crate::ws::handshake::{Admission, Rejection};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shard's last loop turn, in milliseconds since the process started, on
/// a cache line of its own (one shard writes it, the watchdog reads it).
#[derive(Debug, Default)]
#[repr(align(64))]
struct Beat(AtomicU64);

/// Shared by all shards of a process.
#[derive(Debug)]
pub struct Shared {
    active: AtomicUsize,
    max: usize,
    shutdown: AtomicBool,
    /// The listeners were handed over to a new process (`--takeover`).
    handed_over: AtomicBool,
    tokens: Option<Arc<Tokens>>,
    /// `--max-connections-per-ip`, if set.
    per_ip: Option<PerIp>,
    /// For systemd's watchdog: how often every shard must turn, and when each last did.
    heartbeat: Option<Duration>,
    beats: Vec<Beat>,
    epoch: Instant,
}

impl Shared {
    /// At most `max` upgraded connections at once; with `tokens`, only
    /// handshakes that carry one of them.
    pub fn new(max: usize, tokens: Option<Arc<Tokens>>) -> Shared {
        Shared {
            active: AtomicUsize::new(0),
            max,
            shutdown: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
            tokens,
            per_ip: None,
            heartbeat: None,
            beats: Vec::new(),
            epoch: Instant::now(),
        }
    }

    /// At most `max` upgraded connections per client address (IPv6: per `/v6_prefix`).
    pub fn with_per_ip(mut self, max: u32, v6_prefix: u8) -> Shared {
        self.per_ip = Some(PerIp::new(max, v6_prefix));
        self
    }

    /// Whether connections are counted per client address.
    pub fn per_ip(&self) -> bool {
        self.per_ip.is_some()
    }

    /// Client addresses (or IPv6 prefixes) with connections open, with the per-address limit on.
    pub fn addresses(&self) -> Option<usize> {
        self.per_ip.as_ref().map(PerIp::addresses)
    }

    /// Counts in one more connection from `peer`: the process-wide limit,
    /// then the per-address one (when set and the address is known).
    pub fn try_admit_from(&self, peer: Option<IpAddr>) -> Result<(), Rejection> {
        let admitted =
            self.active.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1));
        if admitted.is_err() {
            return Err(Rejection::Overloaded);
        }
        if let (Some(p), Some(ip)) = (&self.per_ip, peer) {
            if !p.acquire(ip) {
                self.active.fetch_sub(1, Ordering::Relaxed);
                return Err(Rejection::TooManyFromAddress(p.max()));
            }
        }
        Ok(())
    }

    /// Asks each of `shards` shards to turn its loop at least every
    /// `every` (for systemd's watchdog, see [`Shared::all_turning`]).
    pub fn with_heartbeat(mut self, shards: usize, every: Duration) -> Shared {
        self.heartbeat = Some(every);
        self.beats = (0..shards).map(|_| Beat::default()).collect();
        self
    }

    /// How often a shard must turn its loop, if a watchdog watches.
    pub fn heartbeat(&self) -> Option<Duration> {
        self.heartbeat
    }

    /// Shard `id` turned its loop at `now`.
    pub fn beat(&self, id: usize, now: Instant) {
        if let Some(b) = self.beats.get(id) {
            b.0.store(now.saturating_duration_since(self.epoch).as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// True when every shard turned its loop within `within` of `now`.
    pub fn all_turning(&self, now: Instant, within: Duration) -> bool {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let within_ms = within.as_millis() as u64;
        self.beats.iter().all(|b| now_ms.saturating_sub(b.0.load(Ordering::Relaxed)) <= within_ms)
    }

    /// Counts a connection from `ip` that starts its handshake: false when
    /// `--max-connections-per-ip` of them already are, and it is to be
    /// closed unanswered (without the limit, always true).
    pub fn arrive(&self, ip: IpAddr) -> bool {
        self.per_ip.as_ref().is_none_or(|p| p.arrive(ip))
    }

    /// A connection counted by [`Shared::arrive`] left its handshake.
    pub fn arrived(&self, ip: IpAddr) {
        if let Some(p) = &self.per_ip {
            p.arrived(ip);
        }
    }

    /// Gives back the place of a connection admitted from `peer`.
    pub fn release(&self, peer: Option<IpAddr>) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        if let (Some(p), Some(ip)) = (&self.per_ip, peer) {
            p.release(ip);
        }
    }

    /// Upgraded connections now open.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Asks every shard to shut down gracefully; true for the caller that
    /// asked first (a signal and a takeover may race).
    pub fn request_shutdown(&self) -> bool {
        !self.shutdown.swap(true, Ordering::AcqRel)
    }

    /// Marks the listeners as handed over to a new process: the admin
    /// listener stops accepting at once (the new process serves it).
    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Release);
    }

    /// True once the listeners were handed over.
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }

    /// True once shutdown was requested.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

impl Admission for Shared {
    /// Without a client address: the process-wide limit only.
    fn try_admit(&self) -> Result<(), Rejection> {
        self.try_admit_from(None)
    }

    fn tokens_required(&self) -> bool {
        self.tokens.is_some()
    }

    fn accepts_token(&self, token: &[u8]) -> bool {
        self.tokens.as_ref().is_none_or(|t| t.accepts(token))
    }
}

/// Admission for one handshake from a known client address.
pub struct AdmitFrom<'a> {
    /// The process's shared state.
    pub shared: &'a Shared,
    /// The client's address (its PROXY header's, else the socket's).
    pub peer: Option<IpAddr>,
    /// With `--reply room`: where the connection joins its room.
    pub room: Option<RoomAdmit<'a>>,
}

/// A handshake's room: joined (counted in the registry) when the request
/// path is admitted, so that `--max-rooms` is never passed however many
/// shards admit at once. The joined room is left in `joined` for the table,
/// which lists the member, or counts it out again if the handshake was
/// refused after all.
pub struct RoomAdmit<'a> {
    /// The process's rooms.
    pub rooms: &'a crate::rooms::Rooms,
    /// The admitting shard.
    pub shard: usize,
    /// The room joined, if any.
    pub joined: &'a std::cell::Cell<Option<std::sync::Arc<crate::rooms::Room>>>,
}

impl Admission for AdmitFrom<'_> {
    fn admit_path(&self, path: &str) -> Result<(), Rejection> {
        if let Some(r) = &self.room {
            r.joined.set(Some(r.rooms.registry.join(path, r.shard)?));
        }
        Ok(())
    }

    fn try_admit(&self) -> Result<(), Rejection> {
        self.shared.try_admit_from(self.peer)
    }

    fn tokens_required(&self) -> bool {
        self.shared.tokens_required()
    }

    fn accepts_token(&self, token: &[u8]) -> bool {
        self.shared.accepts_token(token)
    }
}
