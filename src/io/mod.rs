//! I/O backends that drive the protocol core.
pub mod epoll;
pub mod send;
pub mod uring;

/// Alignment wanted for the start of an echo in a receive buffer.
pub const ECHO_ALIGN: usize = 64;

/// Padding after `addr` (where received bytes would land) that puts the start
/// of the first echoed frame on an [`ECHO_ALIGN`] boundary. A client frame's
/// header is 4 bytes (the mask key, RFC 6455 §5.2) longer than ours for the
/// same payload, so our echo begins 4 bytes into what was received. The
/// kernel copies a send with `rep movsb`, which on an AMD machine ran about
/// 3x slower from a source misaligned against the socket's page fragments:
/// 64 KiB echoes spent 40% of the server's cycles in that copy
/// (`_copy_from_iter`) before this, 18% after. On an Intel Xeon it makes no
/// measurable difference either way.
pub const fn aligned_echo_pad(addr: usize) -> usize {
    let mask_key = crate::ws::frame::MAX_HEADER_LEN - crate::ws::frame::MAX_SERVER_HEADER_LEN;
    (ECHO_ALIGN - (addr + mask_key) % ECHO_ALIGN) % ECHO_ALIGN
}
