//! The shards' side of the bridge: what [`crate::rooms::Uplink`] asks of
//! it, done without blocking and without NATS. Rooms opening and closing
//! are noted for the bridge (the last word per path wins); published
//! messages wait in one bounded queue (`--cluster-queue`), and what does
//! not fit is dropped and counted. The bridge thread is woken once per
//! batch.

use crate::cluster::stats::{ClusterStats, DropReason};
use crate::rooms::{Message, Room, Uplink};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A message waiting for NATS: its room and the shared frame.
pub type Outgoing = (Arc<Room>, Arc<Message>);

/// The bounded queue between the shards and the bridge.
#[derive(Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    bytes: usize,
}

/// Shared by the shards (through [`Uplink`]) and the bridge thread.
pub struct Link {
    queue: Mutex<Queue>,
    queue_limit: usize,
    /// Rooms whose subscription must change: Some(room) to be subscribed
    /// (for that room: a path that closed and opened again is a new room),
    /// None to be unsubscribed. Bounded by the rooms opened or closed
    /// since the bridge last looked.
    changes: Mutex<HashMap<Arc<str>, Option<Arc<Room>>>>,
    /// Wakes the bridge.
    pub wake: tokio::sync::Notify,
    /// Set once the process stops: the bridge sends what waits and ends.
    pub stopping: AtomicBool,
    /// The largest room message payload NATS takes (its `max_payload` less
    /// the envelope); `usize::MAX` before the first connection.
    max_payload: AtomicUsize,
    /// The counters.
    pub stats: Arc<ClusterStats>,
}

impl Link {
    /// A link whose queue holds at most `queue_limit` bytes of frames.
    pub fn new(queue_limit: usize) -> Arc<Link> {
        Arc::new(Link {
            queue: Mutex::new(Queue::default()),
            queue_limit,
            changes: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            stopping: AtomicBool::new(false),
            max_payload: AtomicUsize::new(usize::MAX),
            stats: Arc::default(),
        })
    }

    /// Takes everything queued (into `into`, which must be empty).
    pub fn take_queue(&self, into: &mut VecDeque<Outgoing>) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut q.items, into);
        q.bytes = 0;
        self.stats.queue_depth.store(0, Ordering::Relaxed);
        self.stats.queue_bytes.store(0, Ordering::Relaxed);
    }

    /// Takes the subscription changes noted since the last call.
    pub fn take_changes(&self) -> HashMap<Arc<str>, Option<Arc<Room>>> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sets the server's `max_payload` (from its INFO).
    pub fn set_server_max_payload(&self, max_payload: usize) {
        self.stats.max_payload.store(max_payload as u64, Ordering::Relaxed);
        let m = max_payload.saturating_sub(crate::cluster::wire::OVERHEAD);
        self.max_payload.store(m, Ordering::Relaxed);
    }

    fn note(&self, room: &Room, state: Option<Arc<Room>>) {
        self.changes.lock().unwrap_or_else(|e| e.into_inner()).insert(room.path.clone(), state);
        self.wake.notify_one();
    }
}

impl Uplink for Link {
    fn opened(&self, room: &Arc<Room>) {
        self.note(room, Some(room.clone()));
    }

    fn closed(&self, room: &Room) {
        self.note(room, None);
    }

    fn forward(&self, batch: &mut Vec<Outgoing>) {
        if batch.is_empty() {
            return;
        }
        let mut dropped = 0;
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            for (room, m) in batch.drain(..) {
                let len = m.frame.payload().len();
                // The first message always fits, so one larger than the
                // whole queue still crosses when nothing else waits.
                if q.bytes > 0 && q.bytes + len > self.queue_limit {
                    dropped += 1;
                    continue;
                }
                q.bytes += len;
                q.items.push_back((room, m));
            }
            self.stats.queue_depth.store(q.items.len() as u64, Ordering::Relaxed);
            self.stats.queue_bytes.store(q.bytes as u64, Ordering::Relaxed);
        }
        self.stats.drop_n(DropReason::QueueFull, dropped);
        self.wake.notify_one();
    }

    fn max_payload(&self) -> usize {
        self.max_payload.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::{Registry, Sender};
    use crate::ws::output::Collected;

    fn message(len: usize) -> Arc<Message> {
        Arc::new(Message { frame: Collected::message(false, &vec![7; len]), from: Sender::REMOTE })
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_taking_empties_it() {
        let link = Link::new(100);
        let reg = Registry::new(1, 10, Some(link.clone()));
        let room = reg.join("/a", 0).unwrap();
        let mut batch = vec![(room.clone(), message(60)), (room.clone(), message(60)), (room.clone(), message(40))];
        link.forward(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(link.stats.dropped(DropReason::QueueFull), 1, "the second did not fit, the third did");
        assert_eq!(ClusterStats::get(&link.stats.queue_bytes), 100);
        let mut got = VecDeque::new();
        link.take_queue(&mut got);
        assert_eq!(got.len(), 2);
        assert_eq!(ClusterStats::get(&link.stats.queue_depth), 0);
        link.forward(&mut vec![(room, message(500))]);
        assert_eq!(link.stats.dropped(DropReason::QueueFull), 1, "alone, a large one still goes");
    }

    #[test]
    fn the_last_word_on_a_path_wins() {
        let link = Link::new(100);
        let reg = Registry::new(1, 10, Some(link.clone()));
        let a = reg.join("/a", 0).unwrap();
        reg.leave(&a, 0);
        let again = reg.join("/a", 0).unwrap();
        let b = reg.join("/b", 0).unwrap();
        reg.leave(&b, 0);
        let changes = link.take_changes();
        assert_eq!(changes.get("/a").and_then(|r| r.as_ref()).map(|r| r.id), Some(again.id), "the room open now");
        assert!(changes.get("/b").is_some_and(|r| r.is_none()), "closed");
        assert!(link.take_changes().is_empty());
    }
}
