//! A server killed with SIGKILL while 100 clients echo, started again on
//! the same port as soon as it is reaped (what runit, a shell loop or
//! systemd's `Restart=` with its 100 ms `RestartSec` do), starts: the
//! second-instance probe must not take the dying process's sockets (an
//! io_uring ring's listener torn down after the exit, connections closing)
//! for a live server. A live second instance is still refused
//! (`tests/second_instance_on_a_port_is_refused.rs`).

mod common;

use common::backend;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RESTARTS: usize = 20;

/// Starts `ricochet serve` on `addr`; the child once it printed `listening
/// on`, or its exit code and standard error if it stopped instead.
fn start(addr: &str) -> Result<Child, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--listen", addr, "--shards", "2", "--no-pin", "--backend", &backend()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ricochet");
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    if line.starts_with("listening on") {
        return Ok(child);
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
    Err(format!("{status}: {err}"))
}

#[test]
fn a_server_killed_under_load_starts_again_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let url = format!("ws://{addr}/");
    let mut server = start(&addr).expect("first start");
    for i in 0..RESTARTS {
        // 100 clients echoing (the load generator fails once the server dies).
        let mut load = Command::new(env!("CARGO_BIN_EXE_ricochet"))
            .args(["bench", &url, "--connections", "100", "--duration", "30s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        server.kill().unwrap();
        server.wait().unwrap();
        let t0 = Instant::now();
        server = match start(&addr) {
            Ok(s) => s,
            Err(e) => {
                let _ = load.kill();
                panic!("restart {i} of {RESTARTS} was refused: {e}");
            }
        };
        eprintln!("restart {i}: serving again {:?} after the old one was reaped", t0.elapsed());
        let _ = load.kill();
        let _ = load.wait();
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
