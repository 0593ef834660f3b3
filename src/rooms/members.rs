//! A shard's own members of each room.

use crate::rooms::Room;
use std::collections::HashMap;
use std::sync::Arc;

/// A member: a slot of the shard's table and its generation. Eight bytes,
/// not sixteen: a room's member list is most of what a small room costs
/// (slots fit in 32 bits: a shard holds far fewer connections).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The slot.
    pub slot: u32,
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

    /// True with no members here.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::Registry;

    #[test]
    fn a_message_that_races_a_leave_finds_nobody_and_the_room_outlives_it() {
        let registry = Registry::new(2, 10, None);
        let mut members = Members::default();
        let room = registry.join("/r", 1).unwrap();
        let m = Member { slot: 7, generation: 3 };
        members.add(&room, m);
        let id = room.id;
        // A message for room `id` is on its way from another shard (it holds
        // the id, not the member) while the member leaves: listed out first,
        // then counted out, as the table does.
        members.remove(id, m);
        registry.leave(&room, 1);
        assert!(members.of(id).is_none(), "the late message is delivered to nobody");
        assert_eq!(registry.open(), 0);
        // A member of the same path now is in a new room, which the late
        // message (for the old id) does not reach.
        let again = registry.join("/r", 1).unwrap();
        members.add(&again, Member { slot: 7, generation: 4 });
        assert!(members.of(id).is_none());
        assert_eq!(members.of(again.id).map(|(_, v)| v.len()), Some(1));
    }

    #[test]
    fn members_leave_in_any_order() {
        let registry = Registry::new(1, 10, None);
        let room = registry.join("/r", 0).unwrap();
        let mut members = Members::default();
        let all: Vec<Member> = (0..5u32).map(|slot| Member { slot, generation: 1 }).collect();
        for &m in &all {
            members.add(&room, m);
        }
        for &m in [all[2], all[0], all[4]].iter() {
            members.remove(room.id, m);
        }
        let (_, left) = members.of(room.id).unwrap();
        let mut left = left.clone();
        left.sort_by_key(|m| m.slot);
        assert_eq!(left, [all[1], all[3]]);
        members.remove(room.id, all[1]);
        members.remove(room.id, all[3]);
        assert!(members.is_empty());
    }
}
