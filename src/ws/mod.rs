//! The protocol core: RFC 6455 with no I/O and no clock. Bytes in, bytes and
//! events out, time passed in; both I/O backends drive it.

pub mod bearer;
pub mod client;
pub mod close;
pub mod config;
pub mod counters;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod harness;
pub mod mask;
pub mod output;
pub mod proxy;
pub mod session;
pub mod tls;
pub mod utf8;

pub use config::{Config, Reply};
pub use error::ProtocolError;
pub use output::{Chunk, Output};
pub use session::{Budget, Ctx, MessageSeen, Phase, Progress, Session, HEADROOM, MIN_PIECE};
