//! Rooms across processes and hosts (`--cluster`): a bridge to NATS.
//!
//! The rooms know only an [`crate::rooms::Uplink`]; this module is one,
//! and `src/process/cluster.rs` assembles it: the [`Link`] the shards push
//! into, and the bridge thread that runs the NATS client. docs/cluster.md
//! describes what operators see: topology, guarantees, failures, sizing.

pub mod bridge;
pub mod link;
pub mod settings;
pub mod stats;
pub mod subject;
pub mod wire;

pub use link::Link;
pub use settings::ClusterSettings;
pub use stats::{ClusterStats, DropReason};
