//! Signals keep working when standard output and error are pipes whose
//! reader has gone (`ricochet serve 2>&1 | head -3`, a log shipper that
//! died): SIGTERM still shuts down gracefully, and SIGHUP (a dropped ssh
//! session) is never fatal.

mod common;

use common::{backend, http_exchange};
use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn pipe() -> (std::fs::File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two new descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are new and owned here only.
    unsafe { (std::fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn serve(stdout: Stdio, stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--no-pin", "--backend", &backend()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn ricochet")
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill with a live child's pid.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Reads lines from `r` until `listening on`; returns the address.
fn address(r: &mut impl BufRead) -> std::net::SocketAddr {
    let mut line = String::new();
    for _ in 0..20 {
        line.clear();
        r.read_line(&mut line).unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            return a.trim().parse().unwrap();
        }
    }
    panic!("no `listening on` line");
}

#[test]
fn sigterm_shuts_down_after_the_log_reader_has_gone() {
    // stdout and stderr into one pipe, as `2>&1 | head -3`.
    let (read, write) = pipe();
    let mut child = serve(Stdio::from(write.try_clone().unwrap()), Stdio::from(write));
    let mut reader = BufReader::new(read);
    let addr = address(&mut reader);
    drop(reader); // the reader exits: every later log write gets EPIPE
                  // SIGHUP, then SIGTERM: each logs a line into the broken pipe.
    signal(&child, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP killed the server");
    assert!(http_exchange(addr, "GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("still serving 10 s after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_closed_stderr_pipe_does_not_stop_the_start() {
    let (read, write) = pipe();
    drop(read); // stderr's reader is gone before the server writes anything
    let mut child = serve(Stdio::piped(), Stdio::from(write));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let addr = address(&mut out);
    assert!(http_exchange(addr, "GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("did not exit after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn sighup_is_logged_and_the_server_keeps_serving() {
    let mut server = common::Server::start(&[]);
    server.signal(libc::SIGHUP);
    let log = server.wait_for_log("SIGHUP");
    assert!(log.contains("SIGHUP: nothing to reload, still serving"), "{log}");
    assert!(server.wait_exit(Duration::from_millis(300)).is_none(), "SIGHUP ended the server");
    let mut c = common::RawClient::open(server.addr);
    c.send(true, ricochet::ws::frame::OpCode::Text, b"still here");
    assert!(c.next_frame().is_some_and(|f| f.payload == b"still here"));
}

/// The line that says a shutdown started is never lost, even when an idle
/// server's shards stop before the signal thread runs again: on one CPU, 4
/// of 40 SIGINTs exited without it before the exit waited for the line.
#[test]
fn the_shutdown_line_is_written_on_one_cpu_too() {
    use std::os::unix::process::CommandExt;
    for i in 0..30 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--no-pin", "--backend", &backend()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: sched_setaffinity is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let mut ready = String::new();
        let mut out = BufReader::new(child.stdout.as_ref().map(|o| o.try_clone_fd()).unwrap());
        out.read_line(&mut ready).unwrap();
        assert!(ready.starts_with("listening on"), "{ready}");
        // SAFETY: kill sends a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let done = child.wait_with_output().unwrap();
        assert!(done.status.success(), "{:?}", done.status);
        let log = String::from_utf8_lossy(&done.stderr);
        assert!(log.contains("shutting down gracefully"), "run {i}: the line is missing:\n{log}");
    }
}

trait CloneFd {
    fn try_clone_fd(&self) -> std::fs::File;
}

impl CloneFd for std::process::ChildStdout {
    fn try_clone_fd(&self) -> std::fs::File {
        use std::os::fd::AsFd;
        std::fs::File::from(self.as_fd().try_clone_to_owned().unwrap())
    }
}
