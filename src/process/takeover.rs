//! `--takeover PATH`: restarts and upgrades that refuse no connection.
//!
//! A server started with it offers its listeners on the unix socket PATH.
//! A new server started with the same PATH finds it there, receives the
//! very same listening sockets (SCM_RIGHTS, [`super::handover`]), starts
//! accepting on them, and says so; only then does the old one stop
//! accepting and drain (everything sent before is echoed, then close 1001),
//! and the new one offers the sockets at PATH in turn. The sockets never
//! close, so no connection waiting in an accept queue is reset, and there
//! is no moment without a listener, so none is refused. This is the model
//! of Cloudflare's tableflip, nginx's binary upgrade and HAProxy's `-x`.
//! Without a server at PATH (the first start), the listeners are bound as
//! usual.

use super::drain::Drain;
use super::handover::{self, Passed, Role};
use super::ServeError;
use crate::server::shard::ShardListener;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How long an old server waits for the new one to say it accepts before
/// it keeps serving as if nothing happened.
pub const CONFIRM_WAIT: Duration = Duration::from_secs(30);

/// A handover in progress, on the new server's side.
pub struct Takeover {
    stream: UnixStream,
    /// The listeners received, not yet claimed.
    pub passed: Vec<Passed>,
}

/// Takes the listeners of the server offering them at `path`, if one is
/// there; `None` when no server answers (the first start, or a stale file).
pub fn take(path: &Path) -> Result<Option<Takeover>, ServeError> {
    let stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) => return Err(ServeError::Takeover(format!("cannot reach {}: {e}", path.display()))),
    };
    stream
        .set_read_timeout(Some(CONFIRM_WAIT))
        .map_err(|e| ServeError::Takeover(format!("{}: {e}", path.display())))?;
    let passed = handover::take(&stream)
        .map_err(|e| ServeError::Takeover(format!("receiving the listeners at {}: {e}", path.display())))?;
    info!(path = %path.display(), listeners = passed.len(), "takeover: received the running server's listeners");
    Ok(Some(Takeover { stream, passed }))
}

/// Tells the old server this one accepts now.
pub fn confirm(t: &Takeover) -> io::Result<()> {
    handover::confirm(&t.stream)
}

/// The received sockets for `role` on `addr` (port 0 takes whatever port
/// the old server had), removed from `passed`.
pub fn claim(passed: &mut Vec<Passed>, role: Role, addr: SocketAddr) -> Vec<TcpListener> {
    let fits =
        |p: &Passed| p.role == role && p.addr.ip() == addr.ip() && (addr.port() == 0 || p.addr.port() == addr.port());
    let (mine, rest): (Vec<Passed>, Vec<Passed>) = std::mem::take(passed).into_iter().partition(fits);
    *passed = rest;
    // Port 0 asks for one port: the first one's, if the old server had several.
    let port = mine.first().map(|p| p.addr.port());
    mine.into_iter().filter(|p| Some(p.addr.port()) == port).map(|p| p.socket).collect()
}

/// Deals each address's sockets out to `shards` shards: with at least as
/// many sockets as shards, each shard gets every `shards`-th one (so every
/// socket is served); with fewer, shards share them (a copy each).
pub fn share(bound: Vec<(Vec<TcpListener>, bool)>, shards: usize) -> io::Result<Vec<Vec<ShardListener>>> {
    let mut per_shard: Vec<Vec<ShardListener>> = (0..shards).map(|_| Vec::new()).collect();
    for (ls, tls) in bound {
        let n = ls.len();
        if n >= shards {
            for (i, socket) in ls.into_iter().enumerate() {
                per_shard[i % shards].push(ShardListener { socket, tls, shared: false });
            }
        } else {
            for (i, shard) in per_shard.iter_mut().enumerate() {
                shard.push(ShardListener { socket: ls[i % n].try_clone()?, tls, shared: true });
            }
        }
    }
    Ok(per_shard)
}

/// The socket file this server offers its listeners at.
pub struct OwnSocket {
    path: PathBuf,
    id: (u64, u64, i64, i64),
    drain: Arc<Drain>,
}

/// What tells one socket file from a later one at the same path (an inode
/// number alone is soon reused on tmpfs).
fn file_id(m: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
}

impl OwnSocket {
    /// At exit: removes the file, unless the listeners were handed over (the
    /// new server's file is there now) or another file replaced it.
    pub fn remove_if_ours(&self) {
        if self.drain.shared.handed_over() {
            return;
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| file_id(&m) == self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Offers this server's listeners (the copies in `drain.kept`) at `path`,
/// readable and writable by this user only (whoever connects gets the
/// sockets). After a confirmed handover it starts the drain.
pub fn serve(path: &Path, drain: Arc<Drain>) -> io::Result<OwnSocket> {
    // The old server's file (it has handed over) or a stale one.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let id = file_id(&std::fs::metadata(path)?);
    let shown = path.display().to_string();
    let own = OwnSocket { path: path.to_path_buf(), id, drain: drain.clone() };
    std::thread::Builder::new().name("takeover".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(stream) = conn else { continue };
            if drain.shared.shutdown_requested() {
                break; // draining: the listeners are closed already
            }
            let given = {
                let kept = drain.kept.lock().unwrap_or_else(|e| e.into_inner());
                let list: Vec<(Role, &TcpListener)> = kept.iter().map(|(r, l)| (*r, l)).collect();
                handover::give(&stream, &list, CONFIRM_WAIT)
            };
            match given {
                Ok(true) => {
                    drain.shared.hand_over();
                    drain.start();
                    info!(path = %shown, "takeover: a new server accepts on the listeners; draining");
                    break;
                }
                Ok(false) => warn!(path = %shown, "takeover: the new server did not confirm; still serving"),
                Err(e) => warn!(path = %shown, error = %e, "takeover failed; still serving"),
            }
        }
    })?;
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(n: usize) -> Vec<TcpListener> {
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect()
    }

    fn fds(per_shard: &[Vec<ShardListener>]) -> Vec<Vec<u16>> {
        per_shard.iter().map(|s| s.iter().map(|l| l.socket.local_addr().unwrap().port()).collect()).collect()
    }

    #[test]
    fn more_sockets_than_shards_are_all_served_and_fewer_are_shared() {
        let four = listeners(4);
        let ports: Vec<u16> = four.iter().map(|l| l.local_addr().unwrap().port()).collect();
        let per_shard = share(vec![(four, false)], 2).unwrap();
        assert!(per_shard.iter().flatten().all(|l| !l.shared && !l.tls));
        assert_eq!(fds(&per_shard), vec![vec![ports[0], ports[2]], vec![ports[1], ports[3]]]);
        let two = listeners(2);
        let ports: Vec<u16> = two.iter().map(|l| l.local_addr().unwrap().port()).collect();
        let per_shard = share(vec![(two, true)], 5).unwrap();
        assert!(per_shard.iter().flatten().all(|l| l.shared && l.tls));
        assert_eq!(fds(&per_shard), (0..5).map(|i| vec![ports[i % 2]]).collect::<Vec<_>>());
    }

    #[test]
    fn claims_match_role_and_address_and_port_zero_takes_the_old_port() {
        let mk = |role, l: TcpListener| Passed { role, addr: l.local_addr().unwrap(), socket: l, stored: false };
        let [a, b, c]: [TcpListener; 3] = listeners(3).try_into().unwrap();
        let (pa, pc) = (a.local_addr().unwrap(), c.local_addr().unwrap());
        let mut passed = vec![mk(Role::Plain, a), mk(Role::Tls, b), mk(Role::Admin, c)];
        let got = claim(&mut passed, Role::Plain, "127.0.0.1:0".parse().unwrap());
        assert_eq!(got.iter().map(|l| l.local_addr().unwrap()).collect::<Vec<_>>(), vec![pa]);
        assert!(claim(&mut passed, Role::Admin, "127.0.0.2:0".parse().unwrap()).is_empty(), "another address");
        assert_eq!(claim(&mut passed, Role::Admin, pc).len(), 1);
        assert_eq!(passed.len(), 1, "the TLS one is left");
    }
}
