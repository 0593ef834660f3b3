//! The io_uring backend's building blocks: the provided-buffer ring and the
//! start-up probe.

pub mod buf_ring;
pub mod probe;
