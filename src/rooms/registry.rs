//! Which rooms exist, and how many members each has on each shard.

use crate::rooms::Uplink;
use crate::ws::handshake::Rejection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A room: a request path with members.
///
/// Invariant the publishers rely on: `members[s]` is at least the number of
/// members shard `s` holds in its own [`crate::rooms::Members`] for this
/// room. A shard counts a member in (under the registry's lock) before it
/// lists it, and lists it out before it counts it out. So a publisher that
/// reads 0 for a shard (without the lock) may skip that shard: it has no
/// member to miss. A shard that reads more than it holds gets a message it
/// delivers to nobody, which is harmless.
#[derive(Debug)]
pub struct Room {
    /// Unique for the life of the process (a room that closes and opens
    /// again is a new room).
    pub id: u64,
    /// The request path (one allocation, shared with the registry's key).
    pub path: Arc<str>,
    /// Members per shard.
    members: Box<[AtomicU32]>,
    /// What happened in the room, for the status page.
    pub stats: RoomStats,
}

/// Counters of one room (each shard adds its own part).
#[derive(Debug, Default)]
pub struct RoomStats {
    /// Messages members sent into the room.
    pub published: AtomicU64,
    /// Messages queued for a member.
    pub deliveries: AtomicU64,
    /// Messages left out for a member past its backlog (`--slow-member drop`).
    pub dropped: AtomicU64,
    /// Members closed with 1008 past their backlog (`--slow-member close`).
    pub slow_closed: AtomicU64,
}

impl Room {
    /// Members on shard `shard` now (as last counted; see the invariant).
    pub fn members_on(&self, shard: usize) -> u32 {
        self.members[shard].load(Ordering::Acquire)
    }

    /// Members on every shard.
    pub fn members(&self) -> u64 {
        self.members.iter().map(|m| m.load(Ordering::Relaxed) as u64).sum()
    }

    /// How many shards the process has (the range of shard numbers).
    pub fn shards(&self) -> usize {
        self.members.len()
    }
}

/// Every room of the process.
pub struct Registry {
    rooms: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    shards: usize,
    max_rooms: usize,
    next_id: AtomicU64,
    /// Gauge: rooms open.
    open: AtomicU64,
    /// Gauge: members in every room.
    members: AtomicU64,
    /// Told of rooms opening and closing (under the lock, so in order).
    uplink: Option<Arc<dyn Uplink>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("open", &self.open()).field("members", &self.members()).finish()
    }
}

impl Registry {
    /// No rooms yet; at most `max_rooms` at once; `uplink` is told of each
    /// room that opens and closes.
    pub fn new(shards: usize, max_rooms: usize, uplink: Option<Arc<dyn Uplink>>) -> Registry {
        Registry {
            rooms: Mutex::new(HashMap::new()),
            shards,
            max_rooms,
            next_id: AtomicU64::new(1),
            open: AtomicU64::new(0),
            members: AtomicU64::new(0),
            uplink,
        }
    }

    /// Counts a member of room `path` in on `shard`, opening the room if it
    /// has none; [`Rejection::TooManyRooms`] if that would pass `--max-rooms`.
    pub fn join(&self, path: &str, shard: usize) -> Result<Arc<Room>, Rejection> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let room = match rooms.get(path) {
            Some(r) => r.clone(),
            None => {
                if rooms.len() >= self.max_rooms {
                    return Err(Rejection::TooManyRooms(self.max_rooms));
                }
                let path: Arc<str> = path.into();
                let r = Arc::new(Room {
                    id: self.next_id.fetch_add(1, Ordering::Relaxed),
                    path: path.clone(),
                    members: (0..self.shards).map(|_| AtomicU32::new(0)).collect(),
                    stats: RoomStats::default(),
                });
                rooms.insert(path, r.clone());
                self.open.store(rooms.len() as u64, Ordering::Relaxed);
                if let Some(u) = &self.uplink {
                    u.opened(&r);
                }
                r
            }
        };
        room.members[shard].fetch_add(1, Ordering::AcqRel);
        self.members.fetch_add(1, Ordering::Relaxed);
        Ok(room)
    }

    /// Counts a member of `room` on `shard` out (after the shard listed it
    /// out); the room closes with its last member.
    pub fn leave(&self, room: &Room, shard: usize) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let before = room.members[shard].fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a member left a room it was not counted in");
        self.members.fetch_sub(1, Ordering::Relaxed);
        if room.members() == 0 {
            // Only the room in the map with this id: a room of the same path
            // opened since is another room.
            if rooms.get(&*room.path).is_some_and(|r| r.id == room.id) {
                rooms.remove(&*room.path);
                if let Some(u) = &self.uplink {
                    u.closed(room);
                }
            }
            self.open.store(rooms.len() as u64, Ordering::Relaxed);
        }
    }

    /// Rooms open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Members of every room now.
    pub fn members(&self) -> u64 {
        self.members.load(Ordering::Relaxed)
    }

    /// The `n` rooms with the most members, largest first (for the status page).
    pub fn largest(&self, n: usize) -> Vec<Arc<Room>> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Arc<Room>> = rooms.values().cloned().collect();
        drop(rooms);
        v.sort_by_key(|r| std::cmp::Reverse(r.members()));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_opens_with_its_first_member_and_closes_with_its_last() {
        let r = Registry::new(2, 10, None);
        let a = r.join("/chat", 0).unwrap();
        let b = r.join("/chat", 1).unwrap();
        assert_eq!(a.id, b.id, "the same room");
        assert_eq!((a.members_on(0), a.members_on(1), r.open(), r.members()), (1, 1, 1, 2));
        r.leave(&a, 0);
        assert_eq!((r.open(), r.members()), (1, 1));
        r.leave(&b, 1);
        assert_eq!((r.open(), r.members()), (0, 0));
        let c = r.join("/chat", 0).unwrap();
        assert_ne!(c.id, a.id, "a room opened again is a new room");
    }

    #[test]
    fn the_room_limit_refuses_a_new_room_but_not_a_new_member() {
        let r = Registry::new(1, 2, None);
        r.join("/a", 0).unwrap();
        let b = r.join("/b", 0).unwrap();
        assert_eq!(r.join("/c", 0).unwrap_err(), Rejection::TooManyRooms(2));
        r.join("/a", 0).expect("a member of an open room is not a new room");
        r.leave(&b, 0);
        r.join("/c", 0).expect("a place came free");
    }

    #[test]
    fn a_stale_leave_does_not_close_a_reopened_room() {
        let r = Registry::new(1, 10, None);
        let old = r.join("/x", 0).unwrap();
        r.leave(&old, 0);
        let new = r.join("/x", 0).unwrap();
        // The old room's handle is gone for good; the new room stays open.
        assert_eq!(r.open(), 1);
        assert_eq!(new.members(), 1);
    }
}
