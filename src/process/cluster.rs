//! Assembles the cluster bridge of a process (`--cluster`): the link the
//! shards push into, made before the rooms, and the bridge thread, started
//! once the rooms exist. The thread runs a current-thread tokio runtime of
//! its own: the NATS client is async, the shards are not, and one thread
//! is plenty for what crosses hosts (docs/cluster.md has the figures).

use crate::cluster::bridge::{self, BridgeError};
use crate::cluster::{ClusterSettings, Link};
use crate::rooms::Rooms;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

/// The running bridge: stop it after the shards stopped.
pub struct Bridge {
    link: Arc<Link>,
    thread: std::thread::JoinHandle<()>,
}

/// Starts the bridge thread; returns once it connected, or, without
/// `--cluster-required`, once it started trying.
pub fn start(settings: ClusterSettings, link: Arc<Link>, rooms: Arc<Rooms>) -> Result<Bridge, BridgeError> {
    let (tx, rx) = mpsc::channel();
    let l = link.clone();
    let thread = std::thread::Builder::new()
        .name("cluster-bridge".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(BridgeError::Unreachable {
                        servers: settings.servers.join(","),
                        reason: format!("cannot start the bridge's runtime: {e}"),
                    }));
                    return;
                }
            };
            rt.block_on(async move {
                match bridge::connect(&settings, &l).await {
                    Ok(client) => {
                        let _ = tx.send(Ok(()));
                        bridge::run(client, settings, l, rooms).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| BridgeError::Unreachable { servers: String::new(), reason: e.to_string() })?;
    match rx.recv() {
        Ok(Ok(())) => Ok(Bridge { link, thread }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(BridgeError::Unreachable { servers: String::new(), reason: "the bridge thread ended".into() }),
    }
}

impl Bridge {
    /// Sends what the shards queued (for at most a second) and ends the
    /// thread. Call after the shards stopped, so nothing more is queued.
    pub fn stop(self) {
        self.link.stopping.store(true, Ordering::Release);
        self.link.wake.notify_one();
        let _ = self.thread.join();
    }
}
