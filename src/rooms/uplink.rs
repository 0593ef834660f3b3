//! Where a process's rooms reach past it: the cluster bridge
//! (`--cluster`, src/cluster/) implements [`Uplink`]; the rooms know
//! nothing of what is behind it.
//!
//! What the rooms promise an uplink:
//! - [`Uplink::opened`] and [`Uplink::closed`] are called under the
//!   registry's lock, so for one path they come in the order the room
//!   opened and closed (an uplink must not block in them);
//! - [`Uplink::forward`] gets every message a member of this process
//!   published, once, in each sender's order (a sender's messages are
//!   published by its own shard, in order), and never a message that came
//!   from the uplink;
//! - messages the uplink brings in go through [`crate::rooms::Rooms::deliver_remote`],
//!   into the same inboxes as other shards' messages, so each is encoded
//!   once for the whole process.

use crate::rooms::{Message, Room};
use std::sync::Arc;

/// The rooms' side of a link to other processes.
pub trait Uplink: Send + Sync {
    /// Room `room` has its first member in this process.
    fn opened(&self, room: &Arc<Room>);
    /// Room `room` lost its last member in this process.
    fn closed(&self, room: &Room);
    /// Messages published by members of this process (the batch is
    /// emptied). Must not block: what does not fit is dropped and counted
    /// by the uplink.
    fn forward(&self, batch: &mut Vec<(Arc<Room>, Arc<Message>)>);
    /// The largest message payload the uplink can carry; a member that
    /// publishes a larger one is closed with 1009 before anyone gets it.
    fn max_payload(&self) -> usize;
}
