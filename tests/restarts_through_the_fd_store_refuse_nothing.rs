//! systemd's file descriptor store: under a unit with
//! `FileDescriptorStoreMax=` (`$FDSTORE`), the server gives systemd a copy
//! of each listening socket it bound (`FDSTORE=1`, one per shard, named by
//! role), and systemd passes them back to the next process as
//! `LISTEN_FDS`. Here the test is the service manager: a real datagram
//! socket as `$NOTIFY_SOCKET` receives the descriptors, keeps them (each
//! socket once, as systemd does) across `systemctl restart`'s stop and
//! start, and passes them as systemd does. No connection is refused or
//! reset across five restarts, and no process binds a socket of its own.

mod common;

use common::restarts::through_five_restarts;
use common::{backend, Server};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One notification: its text and the descriptors attached.
fn recv(sock: &UnixDatagram) -> Option<(String, Vec<OwnedFd>)> {
    let mut buf = [0u8; 4096];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let mut control = vec![0u8; 8192];
    // SAFETY: an all-zero msghdr is valid; it points at `iov` and `control` below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.len() as _;
    // SAFETY: `msg` points at live buffers; received descriptors are close-on-exec.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return None;
    }
    assert_eq!(msg.msg_flags & libc::MSG_CTRUNC, 0, "descriptors truncated");
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into `control`;
    // each descriptor in them is this process's and is owned at once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Some((String::from_utf8_lossy(&buf[..n as usize]).into_owned(), fds))
}

/// The field `key` of a notification.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// A socket's identity (device, inode).
fn socket_id(fd: &OwnedFd) -> (u64, u64) {
    // SAFETY: fstat into a zeroed stat on a descriptor we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
    (st.st_dev, st.st_ino)
}

/// What the test, as systemd, holds for the service.
#[derive(Default)]
struct Store {
    fds: Vec<(String, OwnedFd)>,
}

impl Store {
    /// Takes what one notification stores (a socket already held is not
    /// added again, as in systemd's `service_add_fd_store`), or removes
    /// (`FDSTOREREMOVE=1`).
    fn apply(&mut self, text: &str, fds: Vec<OwnedFd>) {
        let name = field(text, "FDNAME").unwrap_or("stored").to_string();
        if field(text, "FDSTOREREMOVE") == Some("1") {
            self.fds.retain(|(n, _)| *n != name);
        } else if field(text, "FDSTORE") == Some("1") {
            for fd in fds {
                if !self.fds.iter().any(|(_, held)| socket_id(held) == socket_id(&fd)) {
                    self.fds.push((name.clone(), fd));
                }
            }
        }
    }

    /// Reads notifications until `READY=1`, applying each.
    fn until_ready(&mut self, sock: &UnixDatagram) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let (text, fds) = recv(sock).expect("READY=1 within 10 s");
            self.apply(&text, fds);
            let ready = field(&text, "READY") == Some("1");
            seen.push(text);
            if ready {
                return seen;
            }
        }
    }

    /// The inodes of the sockets held.
    fn ids(&self) -> BTreeSet<u64> {
        self.fds.iter().map(|(_, fd)| socket_id(fd).1).collect()
    }
}

fn notify_socket() -> (tempfile::TempDir, UnixDatagram, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, sock, path)
}

/// `ricochet serve` as systemd starts it: `$NOTIFY_SOCKET`, `$FDSTORE`, and
/// the store's descriptors from 3 on with `LISTEN_FDS`, `LISTEN_FDNAMES`
/// and `LISTEN_PID` (its own, set by the shell it is exec'd from).
fn start(store: &Store, notify: &str, fdstore: &str, args: &[&str]) -> Child {
    let fds: Vec<RawFd> = store.fds.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    let names: Vec<&str> = store.fds.iter().map(|(n, _)| n.as_str()).collect();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "export LISTEN_PID=$$; exec \"$@\"", "sh", env!("CARGO_BIN_EXE_ricochet")])
        .args(["serve", "--no-pin", "--backend", &backend()])
        .args(args)
        .env("NOTIFY_SOCKET", notify)
        .env("FDSTORE", fdstore)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !fds.is_empty() {
        cmd.env("LISTEN_FDS", fds.len().to_string()).env("LISTEN_FDNAMES", names.join(":"));
    }
    // SAFETY: only fcntl and dup2 (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first (a source may sit where a target goes),
            // then down to 3, 4, …; dup2's copies are not close-on-exec.
            let mut high = [0 as RawFd; 64];
            let mut n = 0;
            for &fd in fds.iter().take(64) {
                let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 512);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high[n] = h;
                n += 1;
            }
            for (i, &h) in high[..n].iter().enumerate() {
                if libc::dup2(h, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    if !ready.starts_with("listening on") {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        panic!("the server did not start: {err}");
    }
    child
}

/// Inodes of the listening TCP sockets `pid` holds.
fn listening_ids(pid: u32) -> BTreeSet<u64> {
    common::listeners::listening(pid).into_iter().map(|(inode, _)| inode).collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn every_listener_is_stored_once_named_by_its_role() {
    let (_dir, sock, path) = notify_socket();
    let mut store = Store::default();
    let mut server =
        start(&store, &path, "16", &["--listen", "127.0.0.1:0", "--shards", "2", "--metrics-listen", "127.0.0.1:0"]);
    let seen = store.until_ready(&sock);
    let names: Vec<&str> = store.fds.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ricochet-ws", "ricochet-ws", "ricochet-metrics"], "{seen:?}");
    for (_, fd) in &store.fds {
        // SAFETY: a borrowed look at a descriptor the store owns.
        let l = std::mem::ManuallyDrop::new(unsafe { TcpListener::from_raw_fd(fd.as_raw_fd()) });
        assert!(l.local_addr().unwrap().ip().is_loopback());
    }
    // The shards' two SO_REUSEPORT sockets share one port, apart from the admin one.
    let port = |i: usize| {
        // SAFETY: as above.
        let l = std::mem::ManuallyDrop::new(unsafe { TcpListener::from_raw_fd(store.fds[i].1.as_raw_fd()) });
        l.local_addr().unwrap().port()
    };
    assert_eq!(port(0), port(1));
    assert_ne!(port(0), port(2));
    let _ = server.kill();
    let _ = server.wait();

    // Without $FDSTORE (no FileDescriptorStoreMax=) nothing is stored.
    let mut none = Store::default();
    let mut server = start(&none, &path, "", &["--listen", "127.0.0.1:0", "--shards", "2"]);
    let seen = none.until_ready(&sock);
    assert!(none.fds.is_empty() && seen.iter().all(|m| field(m, "FDSTORE").is_none()), "{seen:?}");
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_store_too_small_for_every_shard_takes_none_and_says_so() {
    let (_dir, sock, path) = notify_socket();
    let mut store = Store::default();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--shards", "2", "--no-pin", "--backend", &backend()])
        .env("NOTIFY_SOCKET", &path)
        .env("FDSTORE", "1");
    let server = Server::spawn(&mut cmd);
    let seen = store.until_ready(&sock);
    assert!(store.fds.is_empty(), "{seen:?}");
    let log = server.wait_for_log("FileDescriptorStoreMax=2");
    assert!(log.contains("none were stored"), "{log}");
}

#[test]
fn restarts_through_the_store_refuse_and_reset_nothing() {
    let (_dir, sock, path) = notify_socket();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let args = ["--listen", listen.as_str(), "--shards", "2"];
    let mut store = Store::default();
    // The first start binds its own sockets and stores them.
    let mut server = start(&store, &path, "16", &args);
    store.until_ready(&sock);
    let held = store.ids();
    assert_eq!(held.len(), 2, "one socket per shard");
    assert_eq!(listening_ids(server.id()), held);
    let tally = through_five_restarts(addr, |_| {
        // `systemctl restart`: stop (SIGTERM, drain, exit), then start with
        // what the store holds. Meanwhile only the store holds the sockets.
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
        assert!(server.wait().unwrap().success());
        server = start(&store, &path, "16", &args);
        store.until_ready(&sock);
        // The same two sockets, stored again and not added twice; the new
        // process serves them and bound nothing of its own.
        assert_eq!(store.ids(), held);
        assert_eq!(listening_ids(server.id()), held);
    });
    let line = tally.line();
    eprintln!("fd store restarts: {line}");
    assert_eq!(tally.get(&tally.refused) + tally.get(&tally.reset) + tally.get(&tally.wrong), 0, "{line}");
    assert!(tally.get(&tally.sessions) >= 30, "too few sessions to mean anything: {line}");
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_stored_socket_the_settings_no_longer_name_is_removed_from_the_store() {
    let (_dir, sock, path) = notify_socket();
    let mut store = Store::default();
    let mut server = start(&store, &path, "16", &["--listen", "127.0.0.1:0", "--shards", "1"]);
    store.until_ready(&sock);
    assert_eq!(store.fds.len(), 1);
    let old = store.ids();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
    // Restarted with another address: the old socket leaves the store (so
    // systemd does not keep its port bound), the new one enters it.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = start(&store, &path, "16", &["--listen", &listen, "--shards", "1"]);
    let seen = store.until_ready(&sock);
    assert_eq!(store.fds.len(), 1, "{seen:?}");
    assert!(store.ids().is_disjoint(&old), "{seen:?}");
    let _ = server.kill();
    let _ = server.wait();
}
