//! The assembly of a process: settings in, backend chosen, listeners bound,
//! one pinned thread per shard, then the threads around them (signals,
//! systemd, the admin listener). It sits above [`crate::server`] and
//! [`crate::io`]: drivers depend on the shared connection table, and nothing
//! below depends on them.

mod activation;
mod cluster;
mod drain;
mod fdstore;
mod handover;
mod signals;
mod systemd;
mod takeover;

use crate::admin::exposition::BuildInfo;
use crate::admin::{Admin, AdminContext};
use crate::io::{epoll, uring};
use crate::server::config::{Backend, Settings};
use crate::server::listener::{self, ListenOptions};
use crate::server::metrics::ShardMetrics;
use crate::server::notify::Notifier;
use crate::server::shard::ShardContext;
use crate::server::shared::Shared;
use crate::server::tls::{self, Certificates, TlsError};
use crate::server::tokens::{TokenError, Tokens};
use drain::Drain;
use handover::Role;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use thiserror::Error;
use tracing::{info, warn};

/// Why the server could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The cluster bridge could not start (`--cluster`).
    #[error("{0}")]
    Cluster(#[from] crate::cluster::bridge::BridgeError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {}", bind_words(.source))]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A shard failed.
    #[error("shard {shard} failed: {source}")]
    Shard {
        /// Which.
        shard: usize,
        /// Why.
        source: std::io::Error,
    },
    /// A shard stopped with an error while serving (after a good start).
    #[error("shard {shard} stopped: {source}")]
    Stopped {
        /// Which.
        shard: usize,
        /// Why.
        source: std::io::Error,
    },
    /// Another socket already listens on the address (and `--share-port` was not given).
    #[error("{addr} is already in use by another process (another ricochet?); stop it, choose another --listen, or pass --share-port to split connections with it on purpose")]
    InUse {
        /// Address.
        addr: SocketAddr,
    },
    /// Signal handling could not be set up.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The TLS certificates or configuration cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The bearer token file could not be used.
    #[error(transparent)]
    Tokens(#[from] TokenError),
    /// `--takeover` could not take or offer the listeners.
    #[error("--takeover: {0}")]
    Takeover(String),
    /// The sockets systemd passed (socket activation) cannot be used.
    #[error("socket activation: {0}")]
    Activation(String),
    /// `--backend uring` where io_uring cannot be used.
    #[error("--backend uring: {0}")]
    Uring(#[from] uring::probe::Unavailable),
}

/// Why a bind failed, in the words an operator needs (the OS's own are
/// kept for the rest).
fn bind_words(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => {
            "no interface of this host has that address (check --listen, or use 0.0.0.0)".into()
        }
        Some(libc::EACCES) => {
            "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE (AmbientCapabilities= in the unit)"
                .into()
        }
        _ => e.to_string(),
    }
}

/// The backend the shards run on, after probing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chosen {
    Epoll,
    Uring,
}

/// Resolves `auto` by probing io_uring; `uring` must pass the probe.
fn choose_backend(asked: Backend) -> Result<Chosen, ServeError> {
    match asked {
        Backend::Epoll => Ok(Chosen::Epoll),
        Backend::Uring => {
            uring::probe::probe()?;
            Ok(Chosen::Uring)
        }
        Backend::Auto => match uring::probe::probe() {
            Ok(s) => {
                info!(defer_taskrun = s.defer_taskrun, "backend auto: io_uring available, using it");
                Ok(Chosen::Uring)
            }
            Err(e) => {
                warn!("backend auto: using epoll because {e}");
                Ok(Chosen::Epoll)
            }
        },
    }
}

/// Runs the server until SIGINT/SIGTERM and a graceful shutdown. Prints
/// `listening on ADDR` on stdout once every shard accepts.
pub fn serve(settings: Settings) -> Result<(), ServeError> {
    // Each connection is a file: use all the hard limit allows, and say so
    // when even that, or the listen queue limit, would cap the server.
    let nofile = crate::tune::raise_nofile_limit();
    let max = settings.max_connections as u64;
    for w in crate::tune::serve_warnings(std::path::Path::new("/"), max, settings.backlog as u64, nofile) {
        if w.starts_with("open file limit") && !settings.max_connections_set {
            // The default limit is no promise the operator made: say what
            // the host allows, once, and keep warnings for what was asked.
            info!("open file limit {nofile} (the hard limit) holds about {} connections, fewer than the default --max-connections {max}", nofile.saturating_sub(64));
        } else {
            warn!("{w}");
        }
    }
    let cpus = crate::server::config::available_cpus();
    if settings.shards > cpus {
        info!(shards = settings.shards, cpus, "more shards than CPUs this process may run on: shards will share CPUs");
    }
    let backend = choose_backend(settings.backend)?;
    // Tokens and certificates first: a bad file stops the start before any port is taken.
    let tokens = match &settings.auth_tokens {
        Some(path) => {
            let (t, n) = Tokens::load(path)?;
            info!(file = %path.display(), tokens = n, "bearer tokens required");
            Some(Arc::new(t))
        }
        None => None,
    };
    let (certs, tls) = match &settings.tls {
        Some(source) => {
            let (certs, notes) = Certificates::load(source.clone())?;
            for n in notes {
                if n.warn {
                    warn!("{}", n.text);
                } else {
                    info!("{}", n.text);
                }
            }
            let config = tls::server_config(certs.clone(), settings.tls_client.as_ref())?;
            info!(provider = %tls::PROVIDER, "TLS crypto");
            if let Some(c) = &settings.tls_client {
                let mode = if c.optional { "optional" } else { "required" };
                info!(ca = %c.ca.display(), mode, "TLS client certificates");
            }
            (Some(certs), Some(config))
        }
        None => (None, None),
    };
    let opts = ListenOptions {
        backlog: settings.backlog,
        rcvbuf: settings.rcvbuf,
        sndbuf: settings.sndbuf,
        nodelay: settings.nodelay,
    };
    let mut wanted: Vec<(SocketAddr, bool)> =
        settings.listen.iter().map(|&a| (a, false)).chain(settings.tls_listen.iter().map(|&a| (a, true))).collect();
    // Sockets systemd passed (a ricochet.socket unit) are served as they are
    // and replace the default --listen; an address also named by --listen or
    // --tls-listen is served by the passed socket, not bound again.
    // Sockets back from the file descriptor store are this server's own,
    // bound by an earlier process: they serve what the settings name, like
    // a takeover's.
    let (stored, activated): (Vec<_>, Vec<_>) = activation::from_env()?.into_iter().partition(|p| p.stored);
    let activated_admin = activated.iter().find(|p| p.role == Role::Admin).map(|p| p.addr);
    // A socket unit's sockets stay with systemd: they are not stored.
    let from_unit: Vec<(Role, SocketAddr)> = activated.iter().map(|p| (p.role, p.addr)).collect();
    if !stored.is_empty() {
        info!(sockets = stored.len(), "serving the listening sockets systemd kept in its file descriptor store");
    }
    if !activated.is_empty() {
        if !settings.listen_set {
            wanted.retain(|w| w.1);
        }
        for p in &activated {
            let w = (p.addr, p.role == Role::Tls);
            if p.role != Role::Admin && !wanted.contains(&w) {
                if w.1 && tls.is_none() {
                    return Err(ServeError::Activation(format!(
                        "{} was passed as a TLS socket (FileDescriptorName=tls) but no certificate was given: --tls-listen {} with --tls-cert and --tls-key (or --tls-self-signed)",
                        p.addr, p.addr
                    )));
                }
                wanted.push(w);
            }
        }
        info!(sockets = activated.len(), "socket activation: serving the listening sockets systemd passed");
    }
    // With --takeover, a running server's listeners come first: the same
    // sockets, so nothing waiting in their queues is lost.
    let mut takeover = match &settings.takeover {
        Some(path) => takeover::take(path)?,
        None => None,
    };
    let mut passed = takeover.as_mut().map(|t| std::mem::take(&mut t.passed)).unwrap_or_default();
    passed.extend(activated);
    passed.extend(stored);
    let received = passed.len();
    // Per address, its sockets (one per shard when bound here); then per
    // shard, its share of each.
    let mut bound: Vec<(Vec<std::net::TcpListener>, bool)> = Vec::new();
    let mut ready_lines = Vec::new();
    for &(addr, is_tls) in &wanted {
        let bind_error = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::AddrInUse => ServeError::InUse { addr },
            _ => ServeError::Bind { addr, source },
        };
        let role = if is_tls { Role::Tls } else { Role::Plain };
        let inherited = takeover::claim(&mut passed, role, addr);
        let ls = if !inherited.is_empty() {
            for l in &inherited {
                listener::set_nodelay(l, settings.nodelay).map_err(|source| ServeError::Bind { addr, source })?;
            }
            inherited
        } else {
            if !settings.share_port {
                listener::ensure_unused(addr).map_err(bind_error)?;
            }
            listener::bind_all(addr, settings.shards, opts).map_err(bind_error)?
        };
        let actual = ls[0].local_addr().map_err(|source| ServeError::Bind { addr, source })?;
        ready_lines.push(if is_tls {
            format!("listening on {actual} (tls)")
        } else {
            format!("listening on {actual}")
        });
        bound.push((ls, is_tls));
    }
    // The admin listener is bound now too: a taken port stops the start.
    let admin = match settings.metrics_listen.or(activated_admin) {
        Some(addr) => {
            let bind_error = |source: std::io::Error| match source.kind() {
                std::io::ErrorKind::AddrInUse => ServeError::InUse { addr },
                _ => ServeError::Bind { addr, source },
            };
            let a = match takeover::claim(&mut passed, Role::Admin, addr).pop() {
                Some(l) => Admin::from_listener(l),
                None => Admin::bind(addr).map_err(bind_error)?,
            };
            let actual = a.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
            Some((a, actual))
        }
        None => None,
    };
    let inherited = (received - passed.len()) as u64;
    let mut unused_stored: Vec<&str> = Vec::new();
    for p in passed {
        if p.stored {
            let name = fdstore::name(p.role);
            if !unused_stored.contains(&name) {
                unused_stored.push(name);
            }
            info!(addr = %p.addr, "closing a listener an earlier process stored that the settings no longer name");
        } else {
            warn!(addr = %p.addr, "not serving a passed listener the settings do not name (takeover: it closes with the old process)");
        }
    }
    let public: Vec<(SocketAddr, bool)> =
        bound.iter().map(|(ls, is_tls)| (ls[0].local_addr().expect("checked when bound"), *is_tls)).collect();
    // Copies of every listener, to hand over to the next process.
    let mut kept = Vec::new();
    if settings.takeover.is_some() {
        for (ls, is_tls) in &bound {
            for l in ls {
                let copy = l.try_clone().map_err(|source| ServeError::Takeover(source.to_string()))?;
                kept.push((if *is_tls { Role::Tls } else { Role::Plain }, copy));
            }
        }
        if let Some((a, _)) = &admin {
            kept.push((Role::Admin, a.try_clone_listener().map_err(|e| ServeError::Takeover(e.to_string()))?));
        }
    }
    let notifier = Arc::new(Notifier::from_env());
    if let (Some(capacity), true) = (fdstore::capacity(), notifier.enabled()) {
        use std::os::fd::AsRawFd;
        // Every listener this server bound (a socket unit's stay with systemd).
        let mut fds: Vec<(Role, std::os::fd::RawFd)> = Vec::new();
        for (ls, is_tls) in &bound {
            let role = if *is_tls { Role::Tls } else { Role::Plain };
            if !ls[0].local_addr().is_ok_and(|a| from_unit.contains(&(role, a))) {
                fds.extend(ls.iter().map(|l| (role, l.as_raw_fd())));
            }
        }
        if let Some((a, _)) = admin.as_ref().filter(|(_, actual)| !from_unit.contains(&(Role::Admin, *actual))) {
            fds.push((Role::Admin, a.as_raw_fd()));
        }
        keep_in_store(&notifier, capacity, &unused_stored, &fds);
    }
    let per_shard = takeover::share(bound, settings.shards).map_err(|e| ServeError::Takeover(e.to_string()))?;
    let cores = if settings.pin { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
    let settings = Arc::new(settings);
    let watchdog = notifier.enabled().then(systemd::watchdog_interval).flatten();
    let mut shared = Shared::new(settings.max_connections, tokens.clone());
    if let Some(n) = settings.max_connections_per_ip {
        shared = shared.with_per_ip(n, settings.ipv6_prefix);
    }
    if let Some(w) = watchdog {
        // Every shard turns at least four times per watchdog interval.
        shared = shared.with_heartbeat(settings.shards, w / 4);
    }
    let shared = Arc::new(shared);
    let metrics: Vec<Arc<ShardMetrics>> = (0..settings.shards).map(|_| Arc::default()).collect();
    let link = settings.cluster.as_ref().map(|c| crate::cluster::Link::new(c.queue));
    let uplink = link.clone().map(|l| l as Arc<dyn crate::rooms::Uplink>);
    let rooms = settings.rooms.clone().map(|r| crate::rooms::Rooms::new(r, settings.shards, uplink));
    // Before the shards: with --cluster-required, a NATS that does not
    // answer stops the start before anything is served.
    let bridge = match (&settings.cluster, &link, &rooms) {
        (Some(c), Some(l), Some(r)) => Some(cluster::start(c.clone(), l.clone(), r.clone())?),
        _ => None,
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for (id, l) in per_shard.into_iter().enumerate() {
        let ctx = ShardContext {
            id,
            settings: settings.clone(),
            shared: shared.clone(),
            tls: tls.clone(),
            metrics: metrics[id].clone(),
            rooms: rooms.clone(),
        };
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let tx = ready_tx.clone();
        let t = std::thread::Builder::new()
            .name(format!("shard-{id}"))
            .spawn(move || {
                let pinned = core.is_some_and(core_affinity::set_for_current);
                let cpu = core.filter(|_| pinned).map(|c| c.id);
                let tx2 = tx.clone();
                let ready = move |r| {
                    let _ = tx2.send(Ok((id, cpu, r)));
                };
                let r = match backend {
                    Chosen::Epoll => epoll::run(ctx, l, ready),
                    Chosen::Uring => uring::shard::run(ctx, l, ready),
                };
                if let Err(e) = &r {
                    let _ = tx.send(Err((id, e.kind())));
                }
                r
            })
            .map_err(|source| ServeError::Shard { shard: id, source })?;
        threads.push(t);
    }
    drop(ready_tx);
    let mut wakers: Vec<Box<dyn Fn() + Send + Sync>> = Vec::new();
    let mut lines = Vec::new();
    for _ in 0..settings.shards {
        match ready_rx.recv() {
            Ok(Ok((id, cpu, r))) => {
                wakers.push(r.wake);
                lines.push((id, cpu));
            }
            Ok(Err((shard, kind))) => {
                shared.request_shutdown();
                return Err(ServeError::Shard { shard, source: kind.into() });
            }
            Err(_) => break,
        }
    }
    let drain = Arc::new(Drain {
        shared: shared.clone(),
        wakers,
        notifier: notifier.clone(),
        grace: settings.shutdown_grace,
        kept: std::sync::Mutex::new(kept),
        line_due: std::sync::atomic::AtomicBool::new(false),
    });
    signals::watch(drain.clone(), certs, tokens, settings.takeover.clone())?;
    if let Some((a, actual)) = admin {
        let info = BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("RICOCHET_GIT_COMMIT"),
            backend: if backend == Chosen::Uring { "io_uring" } else { "epoll" },
            tls: tls.is_some(),
            deflate: settings.core.handshake.permessage_deflate,
            proxy: settings.proxy_protocol,
            rate_limited: settings.rate.is_some(),
            per_ip: settings.max_connections_per_ip.is_some(),
            inherited: settings.takeover.as_ref().map(|_| inherited),
        };
        let ctx = AdminContext::new(metrics.clone(), shared.clone(), settings.clone(), info, public)
            .with_rooms(rooms.clone())
            .with_cluster(link.as_ref().map(|l| l.stats.clone()));
        a.start(Arc::new(ctx)).map_err(|source| ServeError::Bind { addr: actual, source })?;
        ready_lines.push(format!("metrics on {actual}"));
    }
    // Started: the log lines held since the start go out (before the ready
    // lines, so a reader of both sees them in order).
    crate::logging::release();
    {
        // One write, so a reader sees every ready line together.
        let text: String = ready_lines.iter().map(|l| format!("{l}\n")).collect();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    let addr = ready_lines.iter().filter_map(|l| l.strip_prefix("listening on ")).collect::<Vec<_>>().join(", ");
    // The old process may stop accepting now; then this one takes its place
    // for the next takeover.
    let mut own_socket = None;
    if let Some(path) = &settings.takeover {
        if let Some(t) = &takeover {
            takeover::confirm(t).map_err(|e| ServeError::Takeover(e.to_string()))?;
            info!(path = %path.display(), "took over the listeners of the running server; it drains now");
        }
        own_socket = Some(takeover::serve(path, drain.clone()).map_err(|e| ServeError::Takeover(e.to_string()))?);
    }
    // Type=notify: ready once every shard listens, then a status line now
    // and then. After a takeover this is a new main process (the unit needs
    // NotifyAccess=all to hear it).
    let main_pid = if takeover.is_some() { format!("MAINPID={}\n", std::process::id()) } else { String::new() };
    notifier.notify(&format!("{main_pid}READY=1\nSTATUS=serving on {addr}"));
    if notifier.enabled() {
        systemd::report_status(notifier.clone(), shared.clone(), addr.clone());
    }
    if let Some(w) = watchdog {
        systemd::feed_watchdog(notifier.clone(), shared.clone(), w);
    }
    lines.sort();
    for (id, cpu) in lines {
        let cpu = cpu.map_or_else(|| "unpinned".to_string(), |c| c.to_string());
        let backend = if backend == Chosen::Uring { "io_uring" } else { "epoll" };
        info!(shard = id, cpu = %cpu, backend, addr = %addr, "shard accepting");
    }
    for (id, t) in threads.into_iter().enumerate() {
        match t.join() {
            Ok(Ok(())) => {
                let m = &metrics[id];
                info!(
                    shard = id,
                    accepted = m.accepted.get(),
                    upgraded = m.upgraded.get(),
                    rejected = m.refused_total(),
                    closed_at_accept = m.arrivals_refused.get(),
                    protocol_errors = m.protocol_errors_total(),
                    messages = m.messages.get(),
                    bytes_in = m.bytes_in.get(),
                    bytes_out = m.bytes_out.get(),
                    backpressure_stalls = m.backpressure_stalls.get(),
                    recv_starved = m.recv_starved.get(),
                    ring_buffers = m.ring_buffers.get(),
                    tls_handshakes = m.tls_handshakes(),
                    tls_failures = m.tls_failures.get(),
                    tls_deferred = m.tls_deferred.get(),
                    "shard stopped"
                );
            }
            Ok(Err(source)) => return Err(ServeError::Stopped { shard: id, source }),
            Err(_) => return Err(ServeError::Stopped { shard: id, source: std::io::Error::other("panicked") }),
        }
    }
    // The shards stopped: what they queued for other hosts goes out.
    if let Some(b) = bridge {
        b.stop();
    }
    if let Some(own) = own_socket {
        own.remove_if_ours();
    }
    // The signal's own line first (a log that blocks cannot hold the exit long).
    drain.wait_for_the_line(std::time::Duration::from_millis(500));
    Ok(())
}

/// Gives systemd's file descriptor store a copy of every listener this
/// server bound (first forgetting the stored ones it no longer serves), so
/// that a restart closes none of them. A failure costs only that: it is
/// said, and the server serves on.
fn keep_in_store(notifier: &Notifier, capacity: usize, unused: &[&str], fds: &[(Role, std::os::fd::RawFd)]) {
    if let Err(e) = fdstore::forget(notifier, unused) {
        warn!("could not remove unused sockets from systemd's file descriptor store: {e}");
    }
    match fdstore::store(notifier, capacity, fds) {
        Ok(()) => info!(sockets = fds.len(), "listening sockets kept in systemd's file descriptor store for restarts"),
        Err(e) => warn!("{e}"),
    }
}
