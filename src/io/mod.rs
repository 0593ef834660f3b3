//! I/O backends that drive the protocol core.
pub mod epoll;
pub mod uring;
