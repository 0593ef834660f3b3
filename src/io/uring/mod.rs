//! The io_uring backend: a shard driver over the shared connection table, the
//! provided-buffer ring it receives into, and the start-up probe.

pub mod buf_ring;
pub mod probe;
pub mod recv_limit;
pub mod shard;
