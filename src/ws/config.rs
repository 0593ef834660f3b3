//! Per-server settings the protocol core needs.

use crate::ws::frame::{self, OpCode};
use crate::ws::handshake::HandshakePolicy;
use std::time::Duration;

/// What the server sends back for each data message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Echo every frame back as received (streaming, zero-copy).
    Echo,
    /// Answer every complete data message with one fixed message; holds the
    /// encoded frame so that replying is a copy of a few bytes.
    Fixed(Vec<u8>),
    /// Send nothing back: hand every complete data message, whole and
    /// unmasked (inflated if it came compressed), to the caller as one
    /// encoded server frame ([`crate::ws::Output::messages`]). What the
    /// caller does with it (a room's fan-out) is not the core's business.
    Collect,
}

impl Reply {
    /// A fixed text reply, e.g. `Reply::fixed_text("Pong")`.
    pub fn fixed_text(text: &str) -> Reply {
        let mut f = Vec::new();
        frame::encode_frame(&mut f, true, OpCode::Text, text.as_bytes());
        Reply::Fixed(f)
    }
}

/// Settings of the protocol core, shared by every session of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// What a handshake must satisfy.
    pub handshake: HandshakePolicy,
    /// Largest message (sum of its frames) in bytes; larger fails with 1009.
    pub max_message_size: u64,
    /// Echo, or a fixed reply.
    pub reply: Reply,
    /// Time from accept to a complete request head; then 408 and close.
    pub handshake_timeout: Duration,
    /// Time without input before the server closes with 1000; a ping is sent
    /// at half of it. `None` disables both.
    pub idle_timeout: Option<Duration>,
    /// How long to wait for the peer's close frame, and then for its FIN,
    /// before dropping the TCP connection.
    pub close_timeout: Duration,
    /// Report each data message's start in [`crate::ws::Progress::seen`]
    /// (`--log-messages`).
    pub log_messages: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake: HandshakePolicy::default(),
            max_message_size: 16 * 1024 * 1024,
            reply: Reply::Echo,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(120)),
            close_timeout: Duration::from_secs(5),
            log_messages: false,
        }
    }
}
