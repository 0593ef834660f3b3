//! `--reply room` with independent clients: Python `websockets` and Node's
//! `ws` members in one room on a 2-shard server, with members on both
//! shards (per-shard metrics say so). Every member gets every member's
//! messages (0 B to 1 MiB, text and binary, fragmented sends) whole, once
//! and in each sender's order; `--room-exclude-sender` leaves its own out;
//! another room hears nothing. The clients are tests/python/rooms.py and
//! tests/node/rooms.mjs.

mod common;

use common::admin::{scrape, sum, wait_for};
use common::{python, Server};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Messages each member sends (SPEC in the scripts).
const PER_MEMBER: u64 = 7;

struct Script {
    child: Child,
    lines: mpsc::Receiver<String>,
    out: String,
}

impl Script {
    fn start(mut cmd: Command) -> Script {
        let mut child = cmd
            .env("RICOCHET_TEST_CA", common::tls::shared().0.ca_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a client script");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Script { child, lines, out: String::new() }
    }

    /// Waits for its members to be open.
    fn joined(&mut self) {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("never joined: {}", self.out));
            self.out.push_str(&l);
            self.out.push('\n');
            if l == "joined" {
                return;
            }
        }
    }

    fn go(&mut self, all: &str) {
        writeln!(self.child.stdin.as_mut().unwrap(), "go {all}").unwrap();
    }

    /// Waits for its verdict; returns (passed, everything it printed).
    fn finish(mut self) -> (bool, String) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(150) {
            match self.lines.recv_timeout(Duration::from_secs(1)) {
                Ok(l) => {
                    self.out.push_str(&l);
                    self.out.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(_) => {}
            }
        }
        let _ = self.child.kill();
        let ok = self.child.wait().is_ok_and(|s| s.success()) && self.out.contains(" passed, 0 failed");
        (ok, std::mem::take(&mut self.out))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_script(url: &str, name: &str, members: usize, senders: usize, extra: &[&str]) -> Command {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");
    assert!(
        std::path::Path::new(dir).join("node_modules/ws").exists(),
        "Node's ws missing: run `make node-deps` (or `make test`)"
    );
    let mut c = Command::new("node");
    c.arg(format!("{dir}/rooms.mjs")).arg(url).arg(name).arg(members.to_string()).arg(senders.to_string()).args(extra);
    c
}

fn python_script(url: &str, name: &str, members: usize, senders: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/rooms.py"))
        .arg(url)
        .arg(name)
        .arg(members.to_string())
        .arg(senders.to_string())
        .args(extra);
    c
}

/// Opens 3 Python and 2 Node members of `/room`, until they sit on both
/// shards (the kernel spreads connections over the shards' listeners by a
/// hash: with 5 connections all may land on one, about 1 time in 16, and
/// then they are opened again), lets them all send, and checks every one.
fn room_of_five(server: &Server, exclude_sender: bool) {
    let url = format!("{}room", server.url());
    let extra: &[&str] = if exclude_sender { &["--exclude-sender"] } else { &[] };
    let admin = server.metrics.expect("--metrics-listen");
    for attempt in 0..6 {
        let mut py = Script::start(python_script(&url, "py", 3, 5, extra));
        let mut js = Script::start(node_script(&url, "js", 2, 5, extra));
        py.joined();
        js.joined();
        let m = wait_for(admin, "5 members", |m| sum(m, "ricochet_room_members", &[]) == 5.0);
        let (a, b) =
            (sum(&m, "ricochet_room_members", &["shard=\"0\""]), sum(&m, "ricochet_room_members", &["shard=\"1\""]));
        if a == 0.0 || b == 0.0 {
            assert!(attempt < 5, "members never landed on both shards");
            drop((py, js));
            wait_for(admin, "the room emptied", |m| sum(m, "ricochet_room_members", &[]) == 0.0);
            continue;
        }
        let before = scrape(admin);
        let all = "py0,py1,py2,js0,js1";
        py.go(all);
        js.go(all);
        let (py_ok, py_out) = py.finish();
        let (js_ok, js_out) = js.finish();
        assert!(py_ok && js_ok, "python:\n{py_out}\nnode:\n{js_out}\nserver log:\n{}", server.log());
        let after = scrape(admin);
        let delta = |name: &str| sum(&after, name, &[]) - sum(&before, name, &[]);
        assert_eq!(delta("ricochet_room_messages_published_total"), (5 * PER_MEMBER) as f64);
        let receivers = if exclude_sender { 4 } else { 5 };
        assert_eq!(delta("ricochet_room_deliveries_total"), (5 * PER_MEMBER * receivers) as f64);
        assert_eq!(delta("ricochet_room_drops_total") + delta("ricochet_room_slow_closes_total"), 0.0);
        return;
    }
}

fn room_server(extra: &[&str]) -> Server {
    // A backlog larger than a burst of every member's 1 MiB message: the
    // slow-member policy has tests of its own.
    let mut args =
        vec!["--reply", "room", "--shards", "2", "--metrics-listen", "127.0.0.1:0", "--room-backlog", "64MiB"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn python_and_node_members_on_both_shards_get_every_message_in_order() {
    let server = room_server(&[]);
    room_of_five(&server, false);
}

#[test]
fn exclude_sender_leaves_a_members_own_messages_out() {
    let server = room_server(&["--room-exclude-sender"]);
    room_of_five(&server, true);
}
