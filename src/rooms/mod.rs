//! Rooms (`--reply room`): every complete message a member sends goes to
//! every member on the same request path, across shards.
//!
//! The pieces, and who owns what:
//! - the protocol core collects whole messages ([`crate::ws::Reply::Collect`])
//!   and knows nothing of rooms;
//! - [`Registry`] (one per process, behind a lock taken only to join and to
//!   leave) knows which rooms exist and how many members each has on each
//!   shard, so a publisher finds the shards to send to without asking them;
//! - each shard owns its members ([`Members`]) and an [`Inbox`] that other
//!   shards put messages into, a batch per lock;
//! - a message is encoded once ([`Message`]) and shared by reference count
//!   by every receiver on every shard; each receiver's [`Backlog`] holds
//!   references to the frames it has still to send, and the drivers write
//!   them with vectored sends straight from the shared buffers.
//!
//! docs/rooms.md describes the behaviour operators see.

mod backlog;
mod inbox;
mod members;
mod registry;
mod uplink;

pub use backlog::{Backlog, Item, Offer};
pub use inbox::{Delivery, Inbox, INBOX_BYTES};
pub use members::{Member, Members};
pub use registry::{Registry, Room, RoomStats};
pub use uplink::Uplink;

use crate::ws::output::Collected;
use std::sync::Arc;

/// What a slow member gets once its backlog is full (`--slow-member`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowMember {
    /// Close it with 1008 "too slow" (RFC 6455 §7.4.1: a policy violation).
    Close,
    /// Leave the message out for that member only, and count it.
    Drop,
}

/// The room settings of a server with `--reply room`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    /// `--room-exclude-sender`: a member's own messages do not come back to it.
    pub exclude_sender: bool,
    /// `--room-backlog`: the most room output bytes one member may have waiting.
    pub backlog: usize,
    /// `--slow-member`: what happens past the backlog.
    pub slow_member: SlowMember,
    /// `--max-rooms`: rooms open at once.
    pub max_rooms: usize,
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings { exclude_sender: false, backlog: 1 << 20, slow_member: SlowMember::Close, max_rooms: 100_000 }
    }
}

/// Who sent a message: its shard, slot and the slot's generation, so that
/// `--room-exclude-sender` can leave it out wherever it is delivered.
/// [`Sender::REMOTE`] for a message that came through the [`Uplink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sender {
    /// The shard the sender is on.
    pub shard: usize,
    /// Its slot in that shard's table.
    pub slot: usize,
    /// The slot's generation.
    pub generation: u32,
}

impl Sender {
    /// A sender in another process: matches no member here.
    pub const REMOTE: Sender = Sender { shard: usize::MAX, slot: usize::MAX, generation: u32::MAX };
}

/// One room message: the encoded server frame every receiver sends as it is.
///
/// Shared (`Arc`) by every receiver on every shard; its buffer is freed
/// when the last receiver has sent it or let it go. Never changed once made.
#[derive(Debug)]
pub struct Message {
    /// The frame, header and payload.
    pub frame: Collected,
    /// Who sent it.
    pub from: Sender,
}

impl Message {
    /// The bytes to send: the plain frame.
    pub fn bytes(&self) -> &[u8] {
        self.frame.frame()
    }

    /// The frame as it came, compressed, if it came so.
    pub fn compressed_bytes(&self) -> Option<&[u8]> {
        self.frame.compressed.as_ref().map(|c| c.frame())
    }

    /// Whether a member whose server window is `window` (None: no
    /// permessage-deflate) may get the compressed frame: it negotiated the
    /// extension and lets the server use a window at least as large as the
    /// sender's (RFC 7692 §7.1.2.1).
    pub fn compressed_for(&self, window: Option<u8>) -> bool {
        match (&self.frame.compressed, window) {
            (Some(c), Some(w)) => c.window <= w,
            _ => false,
        }
    }
}

/// What every shard of a process shares for rooms.
pub struct Rooms {
    /// The settings.
    pub settings: RoomSettings,
    /// Which rooms exist and where their members are.
    pub registry: Registry,
    /// One inbox per shard, by shard number.
    pub inboxes: Vec<Inbox>,
    /// Other processes' rooms (`--cluster`), if any.
    pub uplink: Option<Arc<dyn Uplink>>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").field("settings", &self.settings).field("registry", &self.registry).finish()
    }
}

impl Rooms {
    /// Rooms for a process of `shards` shards, linked to other processes'
    /// through `uplink` if there is one.
    pub fn new(settings: RoomSettings, shards: usize, uplink: Option<Arc<dyn Uplink>>) -> Arc<Rooms> {
        Arc::new(Rooms {
            registry: Registry::new(shards, settings.max_rooms, uplink.clone()),
            inboxes: (0..shards).map(|_| Inbox::new()).collect(),
            settings,
            uplink,
        })
    }

    /// Delivers messages from another process to the members of `room`
    /// here, in order: one push (one lock) per shard that has members; no
    /// shard encodes anything (the frames are shared). A shard whose inbox
    /// holds `inbox_limit` bytes or more already gets none of them: returns
    /// how many (message, shard) pairs were left out so, for the caller to
    /// count as dropped.
    pub fn deliver_remote(&self, room: &Room, messages: &[Arc<Message>], inbox_limit: usize) -> u64 {
        let mut skipped = 0;
        let mut batch = Vec::with_capacity(messages.len());
        for shard in 0..room.shards() {
            if room.members_on(shard) == 0 {
                continue;
            }
            let inbox = &self.inboxes[shard];
            if inbox.bytes() >= inbox_limit {
                skipped += messages.len() as u64;
                continue;
            }
            batch.extend(messages.iter().map(|m| Delivery { room: room.id, message: m.clone() }));
            inbox.push(&mut batch);
        }
        skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Arc<Message> {
        Arc::new(Message { frame: Collected::message(true, &vec![b'a'; len]), from: Sender::REMOTE })
    }

    #[test]
    fn remote_messages_go_to_the_shards_with_members_and_skip_a_full_inbox() {
        let rooms = Rooms::new(RoomSettings::default(), 3, None);
        let room = rooms.registry.join("/r", 0).unwrap();
        rooms.registry.join("/r", 2).unwrap();
        let batch = [message(10), message(20)];
        assert_eq!(rooms.deliver_remote(&room, &batch, 1 << 20), 0);
        assert_eq!((rooms.inboxes[0].depth(), rooms.inboxes[1].depth(), rooms.inboxes[2].depth()), (2, 0, 2));
        // Shard 2's inbox now holds more than the limit: it is skipped.
        rooms.inboxes[2].push(&mut vec![Delivery { room: room.id, message: message(1000) }]);
        assert_eq!(rooms.deliver_remote(&room, &batch, 1000), 2, "two messages left out for one shard");
        assert_eq!((rooms.inboxes[0].depth(), rooms.inboxes[2].depth()), (4, 3));
    }
}
