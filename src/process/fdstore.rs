//! systemd's file descriptor store (`FDSTORE=1`, `sd_pid_notify_with_fds(3)`,
//! systemd.io/FILE_DESCRIPTOR_STORE): the server gives systemd a copy of
//! each listening socket it bound, and systemd keeps them while a restart
//! job runs (`systemctl restart`, or `Restart=` after a crash) and passes
//! them back to the next process as `LISTEN_FDS`, named as they were
//! stored. So no listening socket closes between the old process and the
//! new one: connections that arrive meanwhile wait in its queue instead of
//! being refused, without a socket unit, and with one SO_REUSEPORT socket
//! per shard as `--listen` binds them.
//!
//! The store is used when systemd says it has one: `$FDSTORE`, the unit's
//! `FileDescriptorStoreMax=`, set by systemd 254 and later (`ricochet.service`
//! sets it for older ones). Sockets a socket unit passed are not stored:
//! systemd holds them already.

use super::handover::Role;
use crate::server::notify::{Notifier, MAX_FDS_PER_MESSAGE};
use std::os::fd::RawFd;

/// The prefix of the names stored sockets carry (`FDNAME=`), which tells
/// them from a socket unit's when they come back.
pub const PREFIX: &str = "ricochet-";

/// The name a stored socket of `role` carries.
pub fn name(role: Role) -> &'static str {
    match role {
        Role::Plain => "ricochet-ws",
        Role::Tls => "ricochet-tls",
        Role::Admin => "ricochet-metrics",
    }
}

/// How many descriptors systemd keeps for this service (`$FDSTORE`), if
/// it keeps any.
pub fn capacity() -> Option<usize> {
    std::env::var("FDSTORE").ok()?.trim().parse().ok().filter(|&n: &usize| n > 0)
}

/// Why the listeners were not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store is smaller than the sockets to keep.
    #[error(
        "the file descriptor store holds {capacity} and this server listens on {needed} sockets (one per shard per address): none were stored, so a restart refuses connections; set FileDescriptorStoreMax={needed} (and FDSTORE={needed} for systemd before 254)"
    )]
    TooSmall {
        /// `$FDSTORE`.
        capacity: usize,
        /// The sockets to keep.
        needed: usize,
    },
    /// systemd could not be told.
    #[error("could not give the listening sockets to systemd's file descriptor store: {0}")]
    Send(#[from] std::io::Error),
}

/// Asks systemd to close and forget the stored sockets named `names`
/// (`FDSTOREREMOVE=1`): sockets an earlier process stored that this one
/// does not serve (its settings changed) would otherwise keep their port
/// bound by systemd for as long as the service runs.
pub fn forget(notifier: &Notifier, names: &[&str]) -> std::io::Result<()> {
    for n in names {
        notifier.send_fds(&format!("FDSTOREREMOVE=1\nFDNAME={n}"), &[])?;
    }
    Ok(())
}

/// Gives systemd a copy of each of `sockets` (all or none: a partial set
/// would leave some shards' sockets to close at a restart, and with them
/// the connections waiting in their queues). systemd ignores a socket it
/// already holds, so storing again after a restart adds nothing.
/// `FDPOLL=0`: a listener never hangs up, and systemd need not watch it.
pub fn store(notifier: &Notifier, capacity: usize, sockets: &[(Role, RawFd)]) -> Result<(), StoreError> {
    if sockets.len() > capacity {
        return Err(StoreError::TooSmall { capacity, needed: sockets.len() });
    }
    for role in [Role::Plain, Role::Tls, Role::Admin] {
        let fds: Vec<RawFd> = sockets.iter().filter(|(r, _)| *r == role).map(|&(_, fd)| fd).collect();
        for chunk in fds.chunks(MAX_FDS_PER_MESSAGE) {
            notifier.send_fds(&format!("FDSTORE=1\nFDNAME={}\nFDPOLL=0", name(role)), chunk)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_carry_the_prefix_and_say_the_role() {
        for role in [Role::Plain, Role::Tls, Role::Admin] {
            assert!(name(role).starts_with(PREFIX));
        }
        assert_ne!(name(Role::Plain), name(Role::Tls));
    }

    #[test]
    fn a_store_too_small_for_every_socket_takes_none() {
        let n = Notifier::from_env();
        let err = store(&n, 1, &[(Role::Plain, 0), (Role::Plain, 1)]).unwrap_err();
        assert!(err.to_string().contains("FileDescriptorStoreMax=2"), "{err}");
    }
}
