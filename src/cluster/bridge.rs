//! The bridge: one thread per process, with a current-thread tokio runtime
//! and the official NATS client (async-nats), between the shards and NATS.
//!
//! - Outgoing: it takes what the shards queued ([`Link`]) and publishes
//!   each message once, to its room's subject, in queue order (so in each
//!   sender's order: NATS keeps the order of one connection's messages).
//!   While there is no connection, what waits is dropped and counted.
//! - Incoming: one subscription per room with members here (a task each);
//!   a message becomes one frame, shared by the process's shards through
//!   their inboxes ([`Rooms::deliver_remote`]). The client is connected
//!   with `no_echo`, so this process's own messages never come back.
//! - State: async-nats reconnects (with this module's backoff) and
//!   subscribes every room again by itself; the bridge logs one line per
//!   change of state, not per message.
//!
//! The shards never wait for it: they only lock the queue or the change
//! list for a push.

use crate::cluster::link::{Link, Outgoing};
use crate::cluster::settings::ClusterSettings;
use crate::cluster::stats::DropReason;
use crate::cluster::{subject, wire};
use crate::rooms::{Message, Room, Rooms, Sender, INBOX_BYTES};
use crate::ws::output::Collected;
use async_nats::connection::State;
use futures_util::{FutureExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The credentials file is not one async-nats can read.
    #[error("cannot read the --cluster-credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file could not be read.
    #[error("cannot read the --cluster-token-file {path}: {source}")]
    Token {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// With `--cluster-required`: no NATS server answered.
    #[error("cannot connect to NATS at {servers} (--cluster-required): {reason}")]
    Unreachable {
        /// The URLs tried.
        servers: String,
        /// What the client said.
        reason: String,
    },
}

/// Messages taken from a subscription in one go, delivered with one push
/// per shard.
const BATCH: usize = 64;

/// Messages async-nats may hold per room subscription before it leaves
/// more out (counted: `slow_consumer`). The bridge's tasks take them as
/// they come and never wait, so this fills only while the bridge thread
/// does not run: with 256, three processes and NATS sharing one CPU lost
/// 10 messages of a 1:1,000 fan-out at 1,000/s (`make bench-cluster`); with
/// 1,024, none. The cost is memory that only a starved bridge uses: at
/// most this many messages per room with traffic.
const SUBSCRIPTION_CAPACITY: usize = 1024;

/// Publishes async-nats may hold before the bridge's next one waits (its
/// default, 2,048, could hold 2 GiB of 1 MiB messages): past it, the
/// bridge's own queue (`--cluster-queue`) fills and drops what does not fit.
const CLIENT_CAPACITY: usize = 128;

/// Bytes a shard's inbox may hold before messages from NATS are dropped for
/// it (counted: `shards_busy`): twice what makes local publishers wait. A
/// shard that far behind is saturated; NATS cannot be held back (a
/// subscriber that stops reading is cut off by the server), so the bridge
/// drops rather than buffers.
const REMOTE_INBOX_LIMIT: usize = 2 * INBOX_BYTES;

/// The connect options the settings ask for.
async fn options(settings: &ClusterSettings, link: &Arc<Link>) -> Result<async_nats::ConnectOptions, BridgeError> {
    let mut o = async_nats::ConnectOptions::new()
        .name(format!("ricochet {}", std::process::id()))
        .no_echo()
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .client_capacity(CLIENT_CAPACITY)
        .max_reconnects(None)
        // At once, then 100 ms doubling up to 2 s: a server back after a
        // restart is used within about 2 s.
        .reconnect_delay_callback(|attempts| match attempts {
            0 | 1 => Duration::ZERO,
            n => Duration::from_millis(100u64 << (n - 2).min(5)).min(Duration::from_secs(2)),
        })
        .connection_timeout(Duration::from_secs(2));
    if !settings.required {
        o = o.retry_on_initial_connect();
    }
    if settings.tls {
        o = o.require_tls(true);
    }
    if let Some(ca) = &settings.ca {
        o = o.add_root_certificates(ca.clone());
    }
    if let Some(path) = &settings.credentials {
        o = o.credentials_file(path).await.map_err(|source| BridgeError::Credentials { path: path.clone(), source })?;
    }
    if let Some(path) = &settings.token_file {
        let token =
            std::fs::read_to_string(path).map_err(|source| BridgeError::Token { path: path.clone(), source })?;
        o = o.token(token.trim().to_string());
    }
    let stats = link.stats.clone();
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    Ok(o.event_callback(move |event| {
        let (stats, first) = (stats.clone(), first.clone());
        async move {
            match event {
                // The gauge moves at once (the bridge's tick also sets it).
                async_nats::Event::Connected => {
                    stats.connected.store(1, Ordering::Relaxed);
                    if !first.swap(false, Ordering::Relaxed) {
                        stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                }
                async_nats::Event::Disconnected => stats.connected.store(0, Ordering::Relaxed),
                async_nats::Event::SlowConsumer(_) => stats.drop_n(DropReason::SlowConsumer, 1),
                _ => {}
            }
        }
    }))
}

/// Connects (or, without `--cluster-required`, starts trying to) and
/// returns the client; the caller then runs [`run`].
pub async fn connect(settings: &ClusterSettings, link: &Arc<Link>) -> Result<async_nats::Client, BridgeError> {
    let servers: Vec<async_nats::ServerAddr> =
        settings.servers.iter().map(|u| u.parse().expect("checked by ClusterSettings::resolve")).collect();
    let o = options(settings, link).await?;
    let client = async_nats::connect_with_options(servers, o)
        .await
        .map_err(|e| BridgeError::Unreachable { servers: settings.servers.join(","), reason: e.to_string() })?;
    // Without --cluster-required the first attempt runs in the background:
    // give it its connection timeout, so that a server that starts with NATS
    // up is linked by the time it says it listens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while client.connection_state() != State::Connected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(client)
}

/// A room subscription: its task, and the room it delivers to now.
struct Subscription {
    room: Arc<Mutex<Arc<Room>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the bridge until the link says the process stops; then sends what
/// waits (for at most a second) and returns.
pub async fn run(client: async_nats::Client, settings: ClusterSettings, link: Arc<Link>, rooms: Arc<Rooms>) {
    let servers = settings.servers.join(",");
    let mut subs: HashMap<Arc<str>, Subscription> = HashMap::new();
    let mut queue: VecDeque<Outgoing> = VecDeque::new();
    let mut state = client.connection_state();
    if state == State::Connected {
        info!(servers = %servers, "connected to NATS: rooms reach the other hosts");
    } else {
        warn!(servers = %servers, "NATS is not reachable: rooms are served locally, and the bridge keeps trying");
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = link.wake.notified() => {}
            _ = tick.tick() => {}
        }
        let now = client.connection_state();
        if now != state {
            match now {
                State::Connected => info!(
                    servers = %servers,
                    rooms = subs.len(),
                    "connected to NATS: rooms reach the other hosts again (subscriptions renewed)"
                ),
                _ => warn!(
                    servers = %servers,
                    "lost the NATS connection: local delivery goes on; messages for other hosts are dropped and counted until it is back"
                ),
            }
            state = now;
        }
        link.stats.connected.store((state == State::Connected) as u64, Ordering::Relaxed);
        if state == State::Connected {
            link.set_server_max_payload(client.server_info().max_payload);
        }
        let changes = link.take_changes();
        let changed = !changes.is_empty();
        for (path, change) in changes {
            apply(&client, &settings.subject_prefix, &link, &rooms, &mut subs, path, change).await;
        }
        if changed && state == State::Connected {
            // A PING answered: the server has every subscription above, so
            // the gauge below counts rooms that other hosts' messages reach.
            let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
        }
        link.stats.subscriptions.store(subs.len() as u64, Ordering::Relaxed);
        link.take_queue(&mut queue);
        publish(&client, &settings.subject_prefix, &link, &mut queue).await;
        if link.stopping.load(Ordering::Acquire) {
            // Whatever the shards queued before they stopped went out above.
            let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
            for (_, s) in subs.drain() {
                s.task.abort();
            }
            return;
        }
    }
}

/// Publishes what was queued, in order; without a connection, drops it.
async fn publish(client: &async_nats::Client, prefix: &str, link: &Link, queue: &mut VecDeque<Outgoing>) {
    for (room, m) in queue.drain(..) {
        if client.connection_state() != State::Connected {
            link.stats.drop_n(DropReason::Disconnected, 1);
            continue;
        }
        let payload = wire::encode(m.frame.text, m.frame.payload());
        match client.publish(subject::subject(prefix, &room.path), payload.into()).await {
            Ok(()) => {
                link.stats.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                link.stats.drop_n(DropReason::TooLarge, 1)
            }
            Err(_) => link.stats.drop_n(DropReason::Disconnected, 1),
        }
    }
}

/// Subscribes, re-points or unsubscribes one room.
async fn apply(
    client: &async_nats::Client,
    prefix: &str,
    link: &Arc<Link>,
    rooms: &Arc<Rooms>,
    subs: &mut HashMap<Arc<str>, Subscription>,
    path: Arc<str>,
    change: Option<Arc<Room>>,
) {
    match (change, subs.get(&path)) {
        (Some(room), Some(s)) => {
            // Closed and opened again since the last look: same subject,
            // new room.
            *s.room.lock().unwrap_or_else(|e| e.into_inner()) = room;
        }
        (Some(room), None) => {
            let sub = match client.subscribe(subject::subject(prefix, &path)).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(room = %path, "cannot subscribe to the room's NATS subject: {e}");
                    return;
                }
            };
            let cell = Arc::new(Mutex::new(room));
            let task = tokio::spawn(receive(sub, cell.clone(), link.clone(), rooms.clone()));
            subs.insert(path, Subscription { room: cell, task });
        }
        (None, Some(_)) => {
            if let Some(s) = subs.remove(&path) {
                // Dropping the subscriber (with its task) unsubscribes.
                s.task.abort();
            }
        }
        (None, None) => {}
    }
}

/// Delivers one room's messages from NATS to its members here, a batch
/// at a time.
async fn receive(mut sub: async_nats::Subscriber, room: Arc<Mutex<Arc<Room>>>, link: Arc<Link>, rooms: Arc<Rooms>) {
    let mut frames: Vec<Arc<Message>> = Vec::with_capacity(BATCH);
    while let Some(first) = sub.next().await {
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match wire::decode(&m.payload) {
                Some((text, payload)) => {
                    frames.push(Arc::new(Message { frame: Collected::message(text, payload), from: Sender::REMOTE }))
                }
                None => link.stats.drop_n(DropReason::Malformed, 1),
            }
            if frames.len() < BATCH {
                next = sub.next().now_or_never().flatten();
            }
        }
        if frames.is_empty() {
            continue;
        }
        link.stats.received.fetch_add(frames.len() as u64, Ordering::Relaxed);
        let target = room.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let skipped = rooms.deliver_remote(&target, &frames, REMOTE_INBOX_LIMIT);
        link.stats.drop_n(DropReason::ShardsBusy, skipped);
        frames.clear();
    }
}
