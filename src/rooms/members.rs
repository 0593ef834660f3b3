//! A shard's own members of each room.

use crate::rooms::Room;
use std::collections::HashMap;
use std::sync::Arc;

/// A member: a slot of the shard's table and its generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The slot.
    pub slot: usize,
    /// Its generation when it joined.
    pub generation: u32,
}

/// The rooms this shard has members of, by room id. Only the shard's own
/// thread touches it: delivering to local members takes no lock.
#[derive(Debug, Default)]
pub struct Members {
    rooms: HashMap<u64, (Arc<Room>, Vec<Member>)>,
}

impl Members {
    /// Lists `m` in `room` (already counted in the registry).
    pub fn add(&mut self, room: &Arc<Room>, m: Member) {
        self.rooms.entry(room.id).or_insert_with(|| (room.clone(), Vec::new())).1.push(m);
    }

    /// Lists `m` out of room `id` (to be counted out of the registry after).
    /// A scan of the room's local members: leaving costs what a room's size
    /// on this shard is, joining and delivering do not.
    pub fn remove(&mut self, id: u64, m: Member) {
        if let Some((_, v)) = self.rooms.get_mut(&id) {
            if let Some(i) = v.iter().position(|x| *x == m) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.rooms.remove(&id);
            }
        }
    }

    /// The room `id` and its members here, if it has any.
    pub fn of(&self, id: u64) -> Option<&(Arc<Room>, Vec<Member>)> {
        self.rooms.get(&id)
    }

    /// Rooms with members here.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// True with no members here.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}
