//! The admin listener (`--metrics-listen`): Prometheus metrics, the same
//! figures as JSON, a health check and a live status page, on a port apart
//! from the public one and on threads apart from the shards. Shards never
//! wait for it: it only reads their counters.
//!
//! It speaks HTTP/1.1 GET and HEAD with keep-alive (what Prometheus and a
//! browser need) through the core's request parser, one thread per
//! connection, at most [`MAX_CONNECTIONS`] at once.

pub mod exposition;
pub mod history;
pub mod process_stats;

use crate::server::config::Settings;
use crate::server::metrics::ShardMetrics;
use crate::server::shared::Shared;
use crate::ws::handshake::{self, Rejection};
use exposition::{BuildInfo, Scrape};
use history::History;
use process_stats::ProcessStats;
use serde_json::json;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, warn};

/// Admin connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 16;

/// An admin connection with no complete request for this long is closed
/// (Prometheus scrapes every 15 s by default and keeps its connection).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest request head read.
const MAX_HEAD: usize = 8192;

/// How often the status page's history is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The status page: one file, no external scripts, fonts or styles.
const PAGE: &str = include_str!("page.html");

/// What the admin threads read.
pub struct AdminContext {
    /// Each shard's counters, in shard order.
    pub shards: Vec<Arc<ShardMetrics>>,
    /// The open WebSocket count and the shutdown flag.
    pub shared: Arc<Shared>,
    /// The server's settings.
    pub settings: Arc<Settings>,
    /// Build and backend, for `ricochet_build_info` and the page.
    pub info: BuildInfo,
    /// The public listeners as bound (port 0 resolved), with whether each is TLS.
    pub public: Vec<(SocketAddr, bool)>,
    /// When the server started.
    pub started: Instant,
    history: Mutex<History>,
    /// With `--reply room`: the rooms.
    pub rooms: Option<Arc<crate::rooms::Rooms>>,
    /// With `--cluster`: the bridge's counters.
    pub cluster: Option<Arc<crate::cluster::ClusterStats>>,
}

impl AdminContext {
    /// Gathers what the admin threads read.
    pub fn new(
        shards: Vec<Arc<ShardMetrics>>,
        shared: Arc<Shared>,
        settings: Arc<Settings>,
        info: BuildInfo,
        public: Vec<(SocketAddr, bool)>,
    ) -> AdminContext {
        AdminContext {
            shards,
            shared,
            settings,
            info,
            public,
            started: Instant::now(),
            history: Mutex::default(),
            rooms: None,
            cluster: None,
        }
    }

    /// With `--cluster`: the bridge's counters, for the metrics.
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::ClusterStats>>) -> AdminContext {
        self.cluster = cluster;
        self
    }

    /// With `--reply room`: the rooms, for their metrics and the status page.
    pub fn with_rooms(mut self, rooms: Option<Arc<crate::rooms::Rooms>>) -> AdminContext {
        self.rooms = rooms;
        self
    }

    fn scrape(&self) -> Scrape<'_> {
        Scrape {
            shards: &self.shards,
            info: &self.info,
            websockets_open: self.shared.active() as u64,
            process: ProcessStats::read().ok(),
            rooms_open: self.rooms.as_ref().map(|r| r.registry.open()),
            cluster: self.cluster.as_deref(),
        }
    }
}

/// The bound admin listener, not yet serving.
pub struct Admin {
    listener: TcpListener,
}

impl std::os::fd::AsRawFd for Admin {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.as_raw_fd()
    }
}

impl Admin {
    /// Binds `addr` (before the shards start, so a taken port stops the start).
    pub fn bind(addr: SocketAddr) -> io::Result<Admin> {
        Ok(Admin { listener: TcpListener::bind(addr)? })
    }

    /// Serves a listener received from another process (`--takeover`).
    pub fn from_listener(listener: TcpListener) -> Admin {
        Admin { listener }
    }

    /// A copy of the listening socket, to hand over.
    pub fn try_clone_listener(&self) -> io::Result<TcpListener> {
        self.listener.try_clone()
    }

    /// The address bound (port 0 resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts the accepting thread and the sampler thread; both live as long as the process.
    pub fn start(self, ctx: Arc<AdminContext>) -> io::Result<()> {
        let sampler = ctx.clone();
        std::thread::Builder::new().name("admin-sampler".into()).spawn(move || loop {
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            sampler.history.lock().unwrap_or_else(|e| e.into_inner()).sample(&sampler.shards, t);
            std::thread::sleep(SAMPLE_EVERY);
        })?;
        let active = Arc::new(AtomicUsize::new(0));
        // Non-blocking, polled: after a handover the thread must notice and
        // let go of the socket, which the new process serves.
        self.listener.set_nonblocking(true)?;
        std::thread::Builder::new().name("admin".into()).spawn(move || {
            while !ctx.shared.handed_over() {
                let mut stream = match self.listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let mut pfd = libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                        // SAFETY: one pollfd, valid for the call.
                        unsafe { libc::poll(&mut pfd, 1, 200) };
                        continue;
                    }
                    Err(e) => {
                        // EMFILE and the like: wait rather than spin.
                        warn!(error = %e, "admin listener: accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                let _ = stream.set_nonblocking(false);
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    let mut out = Vec::new();
                    Rejection::Overloaded.write_response(&mut out);
                    let _ = stream.write_all(&out);
                    continue;
                }
                let (ctx, done) = (ctx.clone(), active.clone());
                let spawned = std::thread::Builder::new().name("admin-conn".into()).spawn(move || {
                    serve_connection(stream, &ctx);
                    done.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
        Ok(())
    }
}

/// Answers requests on one connection until it closes, asks to close,
/// errs, or idles past [`IDLE_TIMEOUT`].
fn serve_connection(mut stream: TcpStream, ctx: &AdminContext) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match handshake::parse_plain_request(&buf, MAX_HEAD) {
            Ok(Some(req)) => {
                let out = respond(ctx, &req.path, req.head, req.keep_alive);
                if stream.write_all(&out).is_err() || !req.keep_alive {
                    return;
                }
                buf.drain(..req.len);
            }
            Ok(None) => match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            Err(r) => {
                debug!(reason = %r, "admin listener: bad request");
                let mut out = Vec::new();
                r.write_response(&mut out);
                let _ = stream.write_all(&out);
                return;
            }
        }
    }
}

/// The whole response to a GET (or, with `head`, a HEAD) of `path`.
pub fn respond(ctx: &AdminContext, path: &str, head: bool, keep_alive: bool) -> Vec<u8> {
    let (status, content_type, body): (&str, &str, Vec<u8>) = match path {
        "/metrics" => {
            ("200 OK", exposition::CONTENT_TYPE, exposition::prometheus_text(&ctx.scrape().families()).into())
        }
        "/stats.json" => ("200 OK", "application/json", stats_json(ctx).to_string().into()),
        "/history.json" => ("200 OK", "application/json", history_json(ctx).to_string().into()),
        // A balancer or systemd check: 503 once draining, so traffic moves away.
        "/healthz" if ctx.shared.shutdown_requested() => {
            ("503 Service Unavailable", "text/plain; charset=utf-8", b"draining\n".to_vec())
        }
        "/healthz" => ("200 OK", "text/plain; charset=utf-8", b"ok\n".to_vec()),
        "/" => ("200 OK", "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            b"not found: try /metrics, /stats.json, /healthz or /\n".to_vec(),
        ),
    };
    let mut out = Vec::with_capacity(body.len() + 256);
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if !head {
        out.extend_from_slice(&body);
    }
    out
}

/// `/stats.json`: every metric (the same families as `/metrics`), each
/// shard's latest rates, the uptime, the build and the main settings.
pub fn stats_json(ctx: &AdminContext) -> serde_json::Value {
    let families = ctx.scrape().families();
    let latest = ctx.history.lock().unwrap_or_else(|e| e.into_inner()).latest().cloned();
    json!({
        "version": ctx.info.version,
        "commit": ctx.info.commit,
        "backend": ctx.info.backend,
        "uptime_seconds": ctx.started.elapsed().as_secs_f64(),
        "draining": ctx.shared.shutdown_requested(),
        "public": ctx.public.iter().map(|(a, tls)| json!({ "addr": a.to_string(), "tls": tls })).collect::<Vec<_>>(),
        "path": ctx.settings.core.handshake.path,
        "tokens_required": ctx.settings.auth_tokens.is_some(),
        "settings": settings_json(&ctx.settings),
        "rates": latest,
        "rooms": rooms_json(ctx),
        "cluster": cluster_json(ctx),
        "metrics": exposition::json(&families),
    })
}

/// How many rooms the status page lists.
const LARGEST_ROOMS: usize = 10;

/// With `--reply room`: the largest rooms, each with its members and
/// counters (the page turns the counters into rates between its polls);
/// `null` for any other reply.
fn rooms_json(ctx: &AdminContext) -> serde_json::Value {
    let Some(rooms) = &ctx.rooms else { return serde_json::Value::Null };
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let largest: Vec<serde_json::Value> = rooms
        .registry
        .largest(LARGEST_ROOMS)
        .iter()
        .map(|r| {
            json!({
                "path": &*r.path,
                "members": r.members(),
                "published": load(&r.stats.published),
                "deliveries": load(&r.stats.deliveries),
                "dropped": load(&r.stats.dropped),
                "slow_closed": load(&r.stats.slow_closed),
            })
        })
        .collect();
    json!({ "open": rooms.registry.open(), "members": rooms.registry.members(), "largest": largest })
}

/// With `--cluster`: the link to NATS (its state, the servers named, and
/// the bridge's counters, which the page turns into rates between its
/// polls); `null` without.
fn cluster_json(ctx: &AdminContext) -> serde_json::Value {
    use crate::cluster::{ClusterStats, DropReason};
    let Some(c) = &ctx.cluster else { return serde_json::Value::Null };
    let get = ClusterStats::get;
    let dropped: serde_json::Map<String, serde_json::Value> =
        DropReason::ALL.iter().map(|r| (r.label().to_string(), json!(c.dropped(*r)))).collect();
    json!({
        "connected": get(&c.connected) == 1,
        // Never secrets: URLs with a user or password are refused at start.
        "servers": ctx.settings.cluster.as_ref().map(|s| s.servers.clone()).unwrap_or_default(),
        "published": get(&c.published),
        "received": get(&c.received),
        "dropped": dropped,
        "reconnects": get(&c.reconnects),
        "queue_depth": get(&c.queue_depth),
        "queue_bytes": get(&c.queue_bytes),
        "subscriptions": get(&c.subscriptions),
        "max_payload_bytes": get(&c.max_payload),
    })
}

/// `/history.json`: the sampled per-shard rates of the last minutes.
pub fn history_json(ctx: &AdminContext) -> serde_json::Value {
    let h = ctx.history.lock().unwrap_or_else(|e| e.into_inner());
    json!({ "interval_seconds": SAMPLE_EVERY.as_secs_f64(), "points": h.points().collect::<Vec<_>>() })
}

/// The settings an operator looks for first, as display strings.
fn settings_json(s: &Settings) -> serde_json::Value {
    let on = |b: bool| if b { "on" } else { "off" };
    let secs = |d: Duration| humantime::format_duration(d).to_string();
    let h = &s.core.handshake;
    json!({
        "shards": s.shards,
        "max-connections": s.max_connections,
        "max-message-size": s.core.max_message_size,
        "handshake-timeout": secs(s.core.handshake_timeout),
        "idle-timeout": s.core.idle_timeout.map_or_else(|| "off".to_string(), secs),
        "close-timeout": secs(s.core.close_timeout),
        "shutdown-grace": secs(s.shutdown_grace),
        "permessage-deflate": on(h.permessage_deflate),
        "auth-tokens": on(s.auth_tokens.is_some()),
        "proxy-protocol": on(s.proxy_protocol),
        "max-connections-per-ip": s.max_connections_per_ip.map_or_else(|| "off".to_string(), |n| n.to_string()),
        "max-message-rate": s.rate.and_then(|r| r.messages_per_second).map_or_else(|| "off".to_string(), |n| format!("{n}/s")),
        "max-bytes-per-second": s.rate.and_then(|r| r.bytes_per_second).map_or_else(|| "off".to_string(), |n| format!("{n} B/s")),
        "tls-client-auth": s.tls_client.as_ref().map_or("off", |c| if c.optional { "optional" } else { "required" }),
        "allowed-origin": if h.allowed_origins.is_empty() { "any".to_string() } else { h.allowed_origins.join(", ") },
        "path": h.path.clone().unwrap_or_else(|| "any".into()),
        "reply": match &s.core.reply {
            crate::ws::Reply::Echo => "echo",
            crate::ws::Reply::Fixed(_) => "pong",
            crate::ws::Reply::Collect => "room",
        },
    })
}
